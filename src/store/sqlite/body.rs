//! How the SQLite engine frames a body (`store/body` has the records): a first byte of
//! [`MESSAGEPACK`] then the record of format 2 in MessagePack, with hashes and sealed PINs as
//! bytes instead of hex. Bodies of format 1 start with [`MESSAGEPACK_1`] (MessagePack) or `{`
//! (JSON, before that); both are still read, and written back as format 2 when they change.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ValueRef};

use crate::store::body::{self as stored, Stored};
use crate::store::{StoreError, StoreResult};

/// First byte of a body of format 2: no JSON document starts with it.
const MESSAGEPACK: u8 = 2;
/// First byte of a MessagePack body of format 1.
const MESSAGEPACK_1: u8 = 1;

pub fn encode<T: Stored>(value: &T) -> StoreResult<Vec<u8>> {
    let mut out = Vec::with_capacity(384);
    out.push(MESSAGEPACK);
    rmp_serde::encode::write(&mut out, &value.record())
        .map_err(|e| StoreError::Corrupt(format!("cannot encode a body: {e}")))?;
    Ok(out)
}

pub fn decode<T: Stored>(body: &[u8]) -> StoreResult<T> {
    match body.first() {
        Some(&MESSAGEPACK) => {
            T::from_record(rmp_serde::from_slice(&body[1..]).map_err(corrupt_messagepack)?)
        }
        Some(&MESSAGEPACK_1) => {
            T::from_legacy(rmp_serde::from_slice(&body[1..]).map_err(corrupt_messagepack)?)
        }
        Some(b'{') => stored::from_json(body),
        _ => Err(StoreError::Corrupt(
            "a body is neither MessagePack nor JSON".into(),
        )),
    }
}

/// A `body` column as stored: text (JSON, and any row an operator wrote by hand) or a blob.
pub(super) struct Body(pub Vec<u8>);

impl FromSql for Body {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        match value {
            ValueRef::Text(b) | ValueRef::Blob(b) => Ok(Body(b.to_vec())),
            _ => Err(FromSqlError::InvalidType),
        }
    }
}

/// Like `store::body::corrupt_json`: the kind of error only, since a message can quote the stored value.
fn corrupt_messagepack(e: rmp_serde::decode::Error) -> StoreError {
    use rmp_serde::decode::Error as E;
    let kind = match e {
        E::InvalidMarkerRead(_) | E::InvalidDataRead(_) => "truncated",
        E::TypeMismatch(_) => "type mismatch",
        E::OutOfRange => "number out of range",
        E::LengthMismatch(_) => "wrong number of fields",
        E::Utf8Error(_) => "invalid UTF-8",
        E::DepthLimitExceeded => "nested too deep",
        E::Uncategorized(_) | E::Syntax(_) => "invalid value",
    };
    StoreError::Corrupt(format!("MessagePack body: {kind}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::template::TemplateText;
    use crate::domain::{DeliveryOrder, Verification};
    use crate::store::body::tests::{DELIVERY_1, FORMAT_1};

    /// [`FORMAT_1`] as versions before format 2 stored it in SQLite (MessagePack, format 1).
    const MESSAGEPACK_FORMAT_1: &str = concat!(
        "019fd9203031613230323338623764333334303662376432326534613936663636336261a8653163",
        "336135303892ab3132303135353530313233a2555393a56272616e64a441636d65a6564552494659",
        "a5656e2d7573040192c0cd012ccf000001a20238b7d3aa496e50726f6772657373c096c420200c67",
        "1fdfdba4065bec7fbe2dac18aae274264447f5d57e32e5418a9151c84bc42cdf9cee7ea6ae845387",
        "5a6b4c83886620c3df6be4a478c30642ec7e9acfbc66905801b74502cdf09ad0c0f64ecf000001a2",
        "0238b7d3cf000001a2023d4bb300c29193b033374146373432413641363732384342a3736d73cf00",
        "0001a20238b7d390cf000001a2023aa01b",
    );

    /// The same verification as this version writes it. If this test fails, the stored format
    /// changed: every body already written would read differently.
    const GOLDEN: &str = concat!(
        "02dc001002d9203031613230323338623764333334303662376432326534613936663636336261a8",
        "653163336135303892a56272616e64a441636d65a5656e2d75739396a3736d7381a570686f6e6592",
        "ab3132303135353530313233a25553a6564552494659c0c27d96a5766f69636581a570686f6e6592",
        "ab3132303135353530313233a25553a6564552494659c0c2ccb496a5766f69636581a570686f6e65",
        "92ab3132303135353530313233a25553a6564552494659c0c20096040381a56669786564cd012c1e",
        "02c2c0cf000001a20238b7d300c096c420200c671fdfdba4065bec7fbe2dac18aae274264447f5d5",
        "7e32e5418a9151c84bc42cdf9cee7ea6ae8453875a6b4c83886620c3df6be4a478c30642ec7e9acf",
        "bc66905801b74502cdf09ad0c0f64ecf000001a20238b7d3cf000001a2023d4bb300c29193b03337",
        "4146373432413641363732384342a3736d73cf000001a20238b7d390cf000001a2023aa01bc0",
    );

    /// The same, as this format was written before it had a callback target and the policy's
    /// `next_on_failure`.
    const GOLDEN_WITHOUT_CALLBACK: &str = concat!(
        "029f02d9203031613230323338623764333334303662376432326534613936663636336261a86531",
        "63336135303892a56272616e64a441636d65a5656e2d75739396a3736d7381a570686f6e6592ab31",
        "32303135353530313233a25553a6564552494659c0c27d96a5766f69636581a570686f6e6592ab31",
        "32303135353530313233a25553a6564552494659c0c2ccb496a5766f69636581a570686f6e6592ab",
        "3132303135353530313233a25553a6564552494659c0c20095040381a56669786564cd012c1e02c0",
        "cf000001a20238b7d300c096c420200c671fdfdba4065bec7fbe2dac18aae274264447f5d57e32e5",
        "418a9151c84bc42cdf9cee7ea6ae8453875a6b4c83886620c3df6be4a478c30642ec7e9acfbc6690",
        "5801b74502cdf09ad0c0f64ecf000001a20238b7d3cf000001a2023d4bb300c29193b03337414637",
        "3432413641363732384342a3736d73cf000001a20238b7d390cf000001a2023aa01b",
    );

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn unhex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    fn legacy() -> Verification {
        decode(FORMAT_1.as_bytes()).unwrap()
    }

    #[test]
    fn a_format_1_body_in_messagepack_reads_as_the_same_one_in_json() {
        let packed: Verification = decode(&unhex(MESSAGEPACK_FORMAT_1)).unwrap();
        assert_eq!(packed, legacy());
    }

    #[test]
    fn a_verification_reads_back_from_messagepack_unchanged_and_smaller() {
        let v = legacy();
        let body = encode(&v).unwrap();
        assert_eq!(body[0], MESSAGEPACK);
        let json = crate::store::body::to_json(&v).unwrap();
        assert!(body.len() < json.len() / 2, "{} bytes", body.len());
        assert_eq!(decode::<Verification>(&body).unwrap(), v);
    }

    #[test]
    fn the_stored_format_of_a_verification_does_not_change() {
        assert_eq!(hex(&encode(&legacy()).unwrap()), GOLDEN);
    }

    #[test]
    fn a_format_2_body_without_a_callback_target_reads_as_having_none() {
        let v: Verification = decode(&unhex(GOLDEN_WITHOUT_CALLBACK)).unwrap();
        assert_eq!(v, legacy());
        assert_eq!(v.callback, None);
    }

    #[test]
    fn a_step_in_its_own_words_reads_back_from_either_encoding() {
        let mut state = (*legacy()).clone();
        let words = TemplateText::parse("${brand}: ${code} (${time-limit} ${time-limit-unit})");
        state.steps[1].text = Some(words.unwrap());
        let v = Verification::restore(state);
        assert_eq!(decode::<Verification>(&encode(&v).unwrap()).unwrap(), v);
        let json = crate::store::body::to_json(&v).unwrap();
        assert_eq!(
            crate::store::body::from_json::<Verification>(json.as_bytes()).unwrap(),
            v
        );

        let mut d: DeliveryOrder = decode(DELIVERY_1.as_bytes()).unwrap();
        d.text = v.steps[1].text.clone();
        assert_eq!(decode::<DeliveryOrder>(&encode(&d).unwrap()).unwrap(), d);
        let json = crate::store::body::to_json(&d).unwrap();
        assert_eq!(
            crate::store::body::from_json::<DeliveryOrder>(json.as_bytes()).unwrap(),
            d
        );
    }

    #[test]
    fn a_format_1_delivery_reads_and_round_trips() {
        let d: DeliveryOrder = decode(DELIVERY_1.as_bytes()).unwrap();
        assert_eq!(decode::<DeliveryOrder>(&encode(&d).unwrap()).unwrap(), d);
    }

    #[test]
    fn a_damaged_body_is_refused_without_quoting_it() {
        let body = encode(&legacy()).unwrap();
        for damaged in [
            &body[..body.len() / 2],
            b"not a body",
            b"",
            &[MESSAGEPACK, 0x93, 1],
            &[MESSAGEPACK_1, 0x93, 1],
        ] {
            match decode::<Verification>(damaged) {
                Err(StoreError::Corrupt(message)) => {
                    assert!(!message.contains("e1c3a508") && !message.contains("1201555"));
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
