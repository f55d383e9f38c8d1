//! SMPP delivery receipts, read as the SMPP session reads a deliver_sm.
//!
//! Input: one byte that says what the rest is, then
//! - even: the body of a deliver_sm (mandatory parameters, short_message, TLVs). A 16-octet
//!   header is put in front, the PDU is decoded by rusmpp's codec with the client's largest
//!   command (rusmppc's 4096 octets), its esm_class, short_message, receipted_message_id and
//!   message_state are taken as `session.rs` takes them, and `receipt::read` reads them;
//! - odd: the fields themselves, for the receipt text without the PDU around it:
//!   `ESM_CLASS MESSAGE_STATE RECEIPTED_MESSAGE_ID \0 SHORT_MESSAGE` (message_state 0xff: no
//!   TLV; no NUL: no receipted_message_id, the rest is the short_message).
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rusmpp::tlvs::TlvValue;
use rusmpp::tokio_codec::CommandCodec;
use rusmpp::Pdu;
use tokio_util::codec::Decoder;
use verifyd::channel::smpp::receipt::{read, Delivered};

const HEADER: usize = 16;
const DELIVER_SM: u32 = 0x0000_0005;
/// rusmppc's default `max_command_length`, which verifyd keeps.
const MAX_COMMAND_LENGTH: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    if kind % 2 == 0 {
        deliver_sm(rest);
    } else {
        fields(rest);
    }
});

fn deliver_sm(body: &[u8]) {
    let Ok(length) = u32::try_from(HEADER + body.len()) else {
        return;
    };
    let mut src = BytesMut::with_capacity(HEADER + body.len());
    src.extend_from_slice(&length.to_be_bytes());
    src.extend_from_slice(&DELIVER_SM.to_be_bytes());
    src.extend_from_slice(&0u32.to_be_bytes()); // command_status
    src.extend_from_slice(&1u32.to_be_bytes()); // sequence_number
    src.extend_from_slice(body);
    let mut codec = CommandCodec::new().with_max_length(MAX_COMMAND_LENGTH);
    let Ok(Some(command)) = codec.decode(&mut src) else {
        return;
    };
    let Some(Pdu::DeliverSm(deliver)) = command.pdu() else {
        return;
    };
    // As `Session::incoming` (src/channel/smpp/session.rs) fills it.
    let mut delivered = Delivered {
        esm_class: u8::from(deliver.esm_class),
        short_message: deliver.short_message().as_ref(),
        ..Delivered::default()
    };
    for tlv in deliver.tlvs() {
        match tlv.value() {
            Some(TlvValue::ReceiptedMessageId(id)) => {
                delivered.receipted_message_id = Some(id.to_string());
            }
            Some(TlvValue::MessageState(state)) => {
                delivered.message_state = Some(u8::from(*state));
            }
            _ => {}
        }
    }
    let _ = read(&delivered);
}

fn fields(data: &[u8]) {
    let [esm_class, state, rest @ ..] = data else {
        return;
    };
    let (receipted_message_id, short_message) = match rest.iter().position(|&b| b == 0) {
        Some(nul) => (
            Some(String::from_utf8_lossy(&rest[..nul]).into_owned()),
            &rest[nul + 1..],
        ),
        None => (None, rest),
    };
    let _ = read(&Delivered {
        esm_class: *esm_class,
        short_message,
        receipted_message_id,
        message_state: (*state != 0xff).then_some(*state),
    });
}
