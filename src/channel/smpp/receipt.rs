//! Delivery receipts: a deliver_sm whose esm_class says "SMSC delivery receipt". Its text is
//! SMPP 3.4's Appendix B form, `id:… sub:… dlvrd:… submit date:… done date:… stat:… err:…`;
//! the receipted_message_id and message_state TLVs, when present, say the same more exactly and
//! win.

use crate::channel::{Failure, Receipt, ReceiptState};

/// The fields of a deliver_sm a receipt is read from.
#[derive(Clone, Debug, Default)]
pub struct Delivered<'a> {
    pub esm_class: u8,
    pub short_message: &'a [u8],
    pub receipted_message_id: Option<String>,
    pub message_state: Option<u8>,
}

/// Bits 5–2 of esm_class: 0001 is an SMSC delivery receipt.
const MESSAGE_TYPE: u8 = 0b0011_1100;
const DELIVERY_RECEIPT: u8 = 0b0000_0100;

/// The receipt `d` carries; `None` when it is not a receipt (a message from a phone) or names
/// no message.
pub fn read(d: &Delivered<'_>) -> Option<Receipt> {
    if d.esm_class & MESSAGE_TYPE != DELIVERY_RECEIPT {
        return None;
    }
    let text = String::from_utf8_lossy(d.short_message);
    let message_id = d
        .receipted_message_id
        .clone()
        .filter(|id| !id.is_empty())
        .or_else(|| field(&text, "id:").map(str::to_owned))?;
    let stat = field(&text, "stat:").map(str::to_ascii_uppercase);
    let state = match d.message_state {
        Some(s) => from_message_state(s),
        None => from_stat(stat.as_deref().unwrap_or("UNKNOWN")),
    };
    let error = (state != ReceiptState::Delivered && state != ReceiptState::Submitted).then(|| {
        let err = field(&text, "err:").unwrap_or("000");
        Failure::new(
            stat.clone().unwrap_or_else(|| "UNDELIV".into()),
            format!("the SMSC reports err:{err}"),
        )
    });
    Some(Receipt {
        message_id,
        state,
        error,
    })
}

/// The value after `name` in a receipt text (case aside), up to the next space.
fn field<'t>(text: &'t str, name: &str) -> Option<&'t str> {
    let lower = text.to_ascii_lowercase();
    let mut from = 0;
    while let Some(at) = lower[from..].find(name) {
        let start = from + at;
        // `id:` must not match the end of another word.
        if start == 0 || text.as_bytes()[start - 1] == b' ' {
            let value = &text[start + name.len()..];
            let end = value.find(' ').unwrap_or(value.len());
            return Some(&value[..end]).filter(|v| !v.is_empty());
        }
        from = start + name.len();
    }
    None
}

/// The message_state TLV (§5.2.28).
fn from_message_state(state: u8) -> ReceiptState {
    match state {
        2 => ReceiptState::Delivered,
        3 | 5 => ReceiptState::Undeliverable,
        4 | 8 => ReceiptState::Failed,
        _ => ReceiptState::Submitted,
    }
}

/// The `stat:` word of the receipt text (Appendix B).
fn from_stat(stat: &str) -> ReceiptState {
    match stat {
        "DELIVRD" => ReceiptState::Delivered,
        "UNDELIV" | "EXPIRED" => ReceiptState::Undeliverable,
        "REJECTD" | "DELETED" => ReceiptState::Failed,
        _ => ReceiptState::Submitted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt(text: &str) -> Delivered<'_> {
        Delivered {
            esm_class: 0x04,
            short_message: text.as_bytes(),
            ..Delivered::default()
        }
    }

    #[test]
    fn a_delivered_receipt_is_read_from_its_text() {
        let r = read(&receipt(
            "id:0123456789 sub:001 dlvrd:001 submit date:2612062245 done date:2612062246 \
             stat:DELIVRD err:000 text:Your code is",
        ))
        .unwrap();
        assert_eq!(r.message_id, "0123456789");
        assert_eq!(r.state, ReceiptState::Delivered);
        assert_eq!(r.error, None);
    }

    #[test]
    fn an_undeliverable_receipt_keeps_its_stat_and_err() {
        let r = read(&receipt("id:abc sub:001 dlvrd:000 stat:UNDELIV err:001")).unwrap();
        assert_eq!(r.state, ReceiptState::Undeliverable);
        let error = r.error.unwrap();
        assert_eq!(error.code, "UNDELIV");
        assert!(error.text.contains("err:001"));
        let r = read(&receipt("id:abc stat:EXPIRED err:000")).unwrap();
        assert_eq!(r.state, ReceiptState::Undeliverable);
        let r = read(&receipt("id:abc stat:REJECTD err:009")).unwrap();
        assert_eq!(r.state, ReceiptState::Failed);
        let r = read(&receipt("id:abc stat:ENROUTE err:000")).unwrap();
        assert_eq!(r.state, ReceiptState::Submitted);
    }

    #[test]
    fn the_tlvs_win_over_the_text() {
        let mut d = receipt("id:from-text stat:UNDELIV err:001");
        d.receipted_message_id = Some("from-tlv".into());
        d.message_state = Some(2);
        let r = read(&d).unwrap();
        assert_eq!(r.message_id, "from-tlv");
        assert_eq!(r.state, ReceiptState::Delivered);
    }

    #[test]
    fn a_message_from_a_phone_is_not_a_receipt() {
        let d = Delivered {
            esm_class: 0x00,
            short_message: b"id:123 stat:DELIVRD",
            ..Delivered::default()
        };
        assert_eq!(read(&d), None);
        assert_eq!(read(&receipt("hello, no id here")), None);
    }

    #[test]
    fn field_names_match_whole_words_and_any_case() {
        let r = read(&receipt("ID:7F3A SUB:001 Stat:delivrd")).unwrap();
        assert_eq!(r.message_id, "7F3A");
        assert_eq!(r.state, ReceiptState::Delivered);
        let r = read(&receipt("msgid:no id:yes stat:DELIVRD")).unwrap();
        assert_eq!(r.message_id, "yes");
    }
}
