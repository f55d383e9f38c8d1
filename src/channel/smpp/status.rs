//! What an SMSC's command_status means for a submit or a bind. SMPP 3.4 (§5.1.3) names the
//! codes; which of them pass is read from their definitions: a fault of the destination or of
//! the message is permanent, a busy or failing SMSC temporary, and anything else (a code of the
//! SMSC's own, a setting the SMSC refuses) temporary, so that the route's other channels and
//! later rounds still get their chance.

use std::time::Duration;

use crate::channel::{Failure, SendError};

pub const THROTTLED: u32 = 0x58;
pub const QUEUE_FULL: u32 = 0x14;

/// The specification's name for `status`, when it has one.
pub fn name(status: u32) -> Option<&'static str> {
    Some(match status {
        0x00 => "ESME_ROK",
        0x01 => "ESME_RINVMSGLEN",
        0x02 => "ESME_RINVCMDLEN",
        0x03 => "ESME_RINVCMDID",
        0x04 => "ESME_RINVBNDSTS",
        0x05 => "ESME_RALYBND",
        0x06 => "ESME_RINVPRTFLG",
        0x07 => "ESME_RINVREGDLVFLG",
        0x08 => "ESME_RSYSERR",
        0x0A => "ESME_RINVSRCADR",
        0x0B => "ESME_RINVDSTADR",
        0x0C => "ESME_RINVMSGID",
        0x0D => "ESME_RBINDFAIL",
        0x0E => "ESME_RINVPASWD",
        0x0F => "ESME_RINVSYSID",
        0x14 => "ESME_RMSGQFUL",
        0x15 => "ESME_RINVSERTYP",
        0x43 => "ESME_RINVESMCLASS",
        0x45 => "ESME_RSUBMITFAIL",
        0x48 => "ESME_RINVSRCTON",
        0x49 => "ESME_RINVSRCNPI",
        0x50 => "ESME_RINVDSTTON",
        0x51 => "ESME_RINVDSTNPI",
        0x53 => "ESME_RINVSYSTYP",
        0x58 => "ESME_RTHROTTLED",
        0x61 => "ESME_RINVSCHED",
        0x62 => "ESME_RINVEXPIRY",
        0x64 => "ESME_RX_T_APPN",
        0x65 => "ESME_RX_P_APPN",
        0x66 => "ESME_RX_R_APPN",
        0xC0 => "ESME_RINVTLVSTREAM",
        0xC1 => "ESME_RTLVNOTALLWD",
        0xC2 => "ESME_RINVTLVLEN",
        0xC3 => "ESME_RMISSINGTLV",
        0xC4 => "ESME_RINVTLVVAL",
        0xFE => "ESME_RDELIVERYFAILURE",
        0xFF => "ESME_RUNKNOWNERR",
        _ => return None,
    })
}

/// The failure's code: the status's name, else its number.
pub fn code(status: u32) -> String {
    name(status).map_or_else(|| format!("smpp-0x{status:08X}"), str::to_owned)
}

/// A refused submit_sm as the router sees it.
pub fn submit_error(status: u32, retry_after: Duration) -> SendError {
    let failure = Failure::new(
        code(status),
        format!("the SMSC refused the submit_sm (command_status 0x{status:08X})"),
    );
    match status {
        THROTTLED | QUEUE_FULL => SendError::Throttled {
            retry_after,
            failure,
        },
        // The message or its destination is at fault: no SMSC takes it. (A refused TON or NPI
        // is this SMSC's setting, and stays temporary: another channel may take the message.)
        0x01 | 0x0B | 0x65 | 0x66 | 0xFE => SendError::Rejected(failure),
        _ => SendError::Temporary(failure),
    }
}

/// Why an SMSC refused a bind, in words for the log and `send-test`.
pub fn bind_refusal(status: u32) -> Failure {
    let why = match status {
        0x0E => "wrong password",
        0x0F => "unknown system_id",
        0x53 => "system_type not accepted",
        0x05 => "already bound (the account's bind limit is reached?)",
        0x0D => "bind failed (the account's bind limit, or this address not allowed)",
        0x08 => "the SMSC had a system error",
        _ => "refused",
    };
    Failure::new(
        code(status),
        format!("the SMSC refused the bind: {why} (command_status 0x{status:08X})"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_and_a_full_queue_ask_to_slow_down() {
        for status in [THROTTLED, QUEUE_FULL] {
            assert!(matches!(
                submit_error(status, Duration::from_millis(250)),
                SendError::Throttled { retry_after, .. } if retry_after == Duration::from_millis(250)
            ));
        }
    }

    #[test]
    fn a_bad_destination_is_permanent_and_a_failing_smsc_temporary() {
        let e = submit_error(0x0B, Duration::ZERO);
        assert!(matches!(&e, SendError::Rejected(f) if f.code == "ESME_RINVDSTADR"));
        for status in [0x08, 0x45, 0x64, 0xFF, 0x0A, 0x50, 0x51, 0x1234] {
            assert!(
                matches!(
                    submit_error(status, Duration::ZERO),
                    SendError::Temporary(_)
                ),
                "{status:#x}"
            );
        }
        assert_eq!(code(0x1234), "smpp-0x00001234");
    }

    #[test]
    fn a_refused_bind_says_which_credential_is_wrong() {
        let f = bind_refusal(0x0E);
        assert_eq!(f.code, "ESME_RINVPASWD");
        assert!(f.text.contains("wrong password"), "{}", f.text);
        assert!(bind_refusal(0x0F).text.contains("unknown system_id"));
    }
}
