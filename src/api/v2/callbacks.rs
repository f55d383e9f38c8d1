//! Verify v2's callbacks as the application receives them: an `event` when the step in progress
//! ends with the request, a `summary` when the request ends, each signed as Vonage signs its
//! webhooks (a `Bearer` JWT, HS256 with the application's signature secret, whose `payload_hash`
//! claim is the SHA-256 of the body).

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::report::{channel, step_status, time};
use super::uuid_of;
use crate::domain::{Notice, Status, Verification};

/// The body of the callback `notice` of `v`, which has ended. `None` when there is nothing to
/// tell: a cancelled request (the caller cancelled it itself, and the specification's summary
/// has no word for it).
pub fn body(notice: Notice, v: &Verification) -> Option<String> {
    let finalized_at = v.finalized_at?;
    let status = match v.status {
        Status::Success => "completed",
        Status::Failed => "failed",
        Status::Expired => "expired",
        Status::Cancelled | Status::InProgress => return None,
    };
    let value = match notice {
        Notice::StepEnded => {
            let index = v.events.len().checked_sub(1)?;
            if v.status == Status::Expired {
                return None;
            }
            json!({
                "request_id": uuid_of(&v.id),
                "triggered_at": time(v.events[index].at),
                "type": "event",
                "channel": channel(v.steps[index].channel),
                "status": status,
                "finalized_at": time(finalized_at),
                "client_ref": v.reference,
            })
        }
        Notice::Ended => {
            let workflow: Vec<_> = v
                .steps
                .iter()
                .enumerate()
                .map(|(i, step)| {
                    let mut item = json!({
                        "channel": channel(step.channel),
                        "status": step_status(v, i, v.status),
                    });
                    if let Some(e) = v.events.get(i) {
                        item["initiated_at"] = time(e.at).into();
                    }
                    item
                })
                .collect();
            json!({
                "request_id": uuid_of(&v.id),
                "submitted_at": time(v.submitted_at),
                "status": status,
                "type": "summary",
                "channel_timeout": v.steps[0].wait,
                "workflow": workflow,
                "client_ref": v.reference,
            })
        }
    };
    Some(value.to_string())
}

/// The `Authorization` value for `body`: a JWT whose `jti` is the callback's id, the same on
/// every retry, so that a receiver can tell a repeat. `iss` is `Vonage`, as receivers written
/// for Vonage check it.
pub fn signature(
    body: &str,
    callback_id: &str,
    application_id: &str,
    api_key: &str,
    secret: &str,
    now: i64,
) -> String {
    let claims = json!({
        "iat": now,
        "jti": callback_id,
        "iss": "Vonage",
        "payload_hash": hex::encode(Sha256::digest(body.as_bytes())),
        "api_key": api_key,
        "application_id": application_id,
    });
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("HS256 signing of a JSON object cannot fail");
    format!("Bearer {token}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::v1::workflow::Workflow;
    use crate::domain::testing::SequenceMinter;
    use crate::domain::{Command, RequestId};

    fn ended(code: &str) -> Verification {
        let mut new = Workflow::parse(5).unwrap().request(
            RequestId::from_bytes([3; 16]),
            "k",
            "447700100600",
        );
        new.reference = Some("ref1".into());
        let t0 = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let (mut v, _) = Verification::start(new, t0, &mut SequenceMinter::new());
        let check = Command::Check {
            code_hash: SequenceMinter::hash(code),
            code_len: 4,
        };
        for _ in 0..3 {
            v.apply(
                &check,
                t0 + chrono::Duration::seconds(5),
                &mut SequenceMinter::new(),
            );
        }
        v
    }

    #[test]
    fn a_completed_request_tells_its_event_and_summary_as_the_specification_shapes_them() {
        let v = ended("0001");
        let event: serde_json::Value =
            serde_json::from_str(&body(Notice::StepEnded, &v).unwrap()).unwrap();
        assert_eq!(
            event,
            json!({
                "request_id": "03030303-0303-0303-0303-030303030303",
                "triggered_at": "2027-01-15T08:00:00.000Z",
                "type": "event",
                "channel": "sms",
                "status": "completed",
                "finalized_at": "2027-01-15T08:00:05.000Z",
                "client_ref": "ref1",
            })
        );
        let summary: serde_json::Value =
            serde_json::from_str(&body(Notice::Ended, &v).unwrap()).unwrap();
        assert_eq!(
            summary,
            json!({
                "request_id": "03030303-0303-0303-0303-030303030303",
                "submitted_at": "2027-01-15T08:00:00.000Z",
                "status": "completed",
                "type": "summary",
                "channel_timeout": 120,
                "workflow": [
                    {"channel": "sms", "initiated_at": "2027-01-15T08:00:00.000Z", "status": "completed"},
                    {"channel": "voice", "status": "unused"},
                ],
                "client_ref": "ref1",
            })
        );
    }

    #[test]
    fn a_failed_request_says_failed_and_the_same_body_comes_every_time() {
        let v = ended("9999");
        let summary = body(Notice::Ended, &v).unwrap();
        assert!(summary.contains(r#""status":"failed""#), "{summary}");
        assert_eq!(body(Notice::Ended, &v).unwrap(), summary);
    }

    #[test]
    fn the_signature_is_an_hs256_jwt_over_the_body() {
        let auth = signature(
            r#"{"a":1}"#,
            "cb-1",
            "app-1",
            "key1",
            "s3cret",
            1_800_000_000,
        );
        let token = auth.strip_prefix("Bearer ").unwrap();
        let mut validation = jsonwebtoken::Validation::new(Algorithm::HS256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        let data = jsonwebtoken::decode::<serde_json::Value>(
            token,
            &jsonwebtoken::DecodingKey::from_secret(b"s3cret"),
            &validation,
        )
        .unwrap();
        assert_eq!(
            data.claims["payload_hash"],
            hex::encode(Sha256::digest(br#"{"a":1}"#))
        );
        assert_eq!(data.claims["jti"], "cb-1");
        assert_eq!(data.claims["application_id"], "app-1");
    }
}
