//! Calls through the providers' voice APIs, against local HTTP servers that check the exact
//! request: Twilio's Calls.json with inline TwiML, Vonage's /v1/calls with a JWT and an NCCO;
//! their status callbacks update the delivery record.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use support::app::serve;
use support::gateway::{Answer, Gateway};
use verifyd::store::AttemptState;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[tokio::test]
async fn twilio_voice_gets_calls_json_with_twiml_and_its_signed_status_callback_is_applied() {
    let gateway = Gateway::start(Answer::new(201, r#"{"sid":"CA{n}","status":"queued"}"#)).await;
    let config = format!(
        r#"
public_url = "{{public_url}}"
[channels.twilio-voice]
type = "twilio-voice"
account_sid = "AC0123456789"
auth_token = "${{TOKEN}}"
from = "+15550100"
base_url = "{}"
[[routes]]
kind = "voice"
channels = ["twilio-voice"]
"#,
        gateway.url()
    );
    let server = serve(&config).await;
    // Workflow 7: a call only.
    let id = server.start("447700100601", &[("workflow_id", "7")]).await;
    let seen = gateway.wait_for(1, Duration::from_secs(10)).await;
    let request = &seen[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/2010-04-01/Accounts/AC0123456789/Calls.json");
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode("AC0123456789:s3cr3t-token");
    assert_eq!(request.headers["authorization"], format!("Basic {basic}"));
    let form: Vec<(String, String)> = form_urlencoded::parse(request.body.as_bytes())
        .into_owned()
        .collect();
    let get = |name: &str| -> Vec<&str> {
        form.iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(get("To"), ["+447700100601"]);
    assert_eq!(get("From"), ["+15550100"]);
    assert_eq!(get("StatusCallback"), [server.receipt_url("twilio-voice")]);
    assert_eq!(
        get("StatusCallbackEvent"),
        ["initiated", "ringing", "answered", "completed"]
    );
    let twiml = get("Twiml")[0];
    assert!(
        twiml.starts_with("<Response><Say language=\"en-GB\">"),
        "{twiml}"
    );
    assert!(twiml.ends_with("</Say></Response>"), "{twiml}");
    assert!(
        !twiml.contains("loop"),
        "the script already repeats the code"
    );
    let spelled = twiml
        .split(": ")
        .nth(1)
        .unwrap()
        .split('.')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(
        twiml.matches(&spelled).count(),
        2,
        "the code twice: {twiml}"
    );
    roxmltree::Document::parse(twiml).expect("well-formed TwiML");

    server.wait_for_state(&id, AttemptState::Submitted).await;
    let callback = |status: &'static str| {
        let params = vec![
            ("CallSid".to_owned(), "CA1".to_owned()),
            ("CallStatus".to_owned(), status.to_owned()),
        ];
        let url = server.receipt_url("twilio-voice");
        let signature = verifyd::channel::twilio::signature("s3cr3t-token", &url, &params);
        server
            .http
            .post(url)
            .header("x-twilio-signature", signature)
            .form(&params)
            .send()
    };
    assert_eq!(callback("ringing").await.unwrap().status(), 204);
    assert_eq!(server.attempts(&id).await[0].state, AttemptState::Submitted);
    assert_eq!(callback("completed").await.unwrap().status(), 204);
    let attempts = server.wait_for_state(&id, AttemptState::Delivered).await;
    assert_eq!(attempts[0].state, AttemptState::Delivered);
    assert_eq!(attempts[0].message_id.as_deref(), Some("CA1"));
    gateway.stop();
}

#[tokio::test]
async fn vonage_voice_gets_a_signed_jwt_and_an_ncco_and_its_events_are_applied() {
    let gateway = Gateway::start(Answer::new(
        201,
        r#"{"uuid":"63f61863-4a51-4f6b-86e1-46edebcf9356","status":"started","direction":"outbound"}"#,
    ))
    .await;
    let config = format!(
        r#"
public_url = "{{public_url}}"
[channels.vonage-voice]
type = "vonage-voice"
application_id = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"
private_key = "{}"
from = "15550100"
base_url = "{}"
[[routes]]
kind = "voice"
channels = ["vonage-voice"]
"#,
        fixture("vonage-test-key.pem").display(),
        gateway.url()
    );
    let server = serve(&config).await;
    let busy = server
        .start("447700100602", &[("workflow_id", "7"), ("lg", "de-de")])
        .await;
    let seen = gateway.wait_for(1, Duration::from_secs(10)).await;
    let request = &seen[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("POST", "/v1/calls")
    );
    let jwt = request.headers["authorization"]
        .strip_prefix("Bearer ")
        .unwrap();
    let public = std::fs::read(fixture("vonage-test-key.pub.pem")).unwrap();
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(&public).unwrap();
    let claims = jsonwebtoken::decode::<serde_json::Value>(
        jwt,
        &key,
        &jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256),
    )
    .expect("a JWT signed with the application's key")
    .claims;
    assert_eq!(
        claims["application_id"],
        "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"
    );
    assert!(claims["jti"].as_str().is_some_and(|j| j.len() == 32));
    let body = request.json();
    assert_eq!(
        body["to"],
        serde_json::json!([{"type": "phone", "number": "447700100602"}])
    );
    assert_eq!(
        body["from"],
        serde_json::json!({"type": "phone", "number": "15550100"})
    );
    assert_eq!(
        body["event_url"],
        serde_json::json!([server.receipt_url("vonage-voice")])
    );
    let ncco = body["ncco"].as_array().unwrap();
    assert_eq!(ncco.len(), 1);
    assert_eq!(ncco[0]["action"], "talk");
    assert_eq!(ncco[0]["language"], "de-DE");
    assert!(ncco[0].get("loop").is_none());
    assert!(ncco[0]["text"].as_str().unwrap().contains("AcmeInc"));

    server.wait_for_state(&busy, AttemptState::Submitted).await;
    let event = |status: &str| {
        server
            .http
            .post(server.receipt_url("vonage-voice"))
            .json(&serde_json::json!({
                "uuid": "63f61863-4a51-4f6b-86e1-46edebcf9356",
                "status": status,
                "direction": "outbound",
            }))
            .send()
    };
    assert_eq!(event("ringing").await.unwrap().status(), 204);
    assert_eq!(event("busy").await.unwrap().status(), 204);
    let attempts = server
        .wait_for_state(&busy, AttemptState::Undeliverable)
        .await;
    assert_eq!(attempts[0].state, AttemptState::Undeliverable);
    assert_eq!(attempts[0].error_code.as_deref(), Some("busy"));
    gateway.stop();
}

#[test]
fn a_missing_or_broken_vonage_key_is_refused_when_the_file_is_loaded() {
    for (path, expected) in [
        ("/nonexistent/key.pem".to_owned(), "cannot read"),
        (
            fixture("vonage-test-key.pub.pem").display().to_string(),
            "not an RSA private key",
        ),
    ] {
        let text = format!(
            "[channels.v]\ntype = \"vonage-voice\"\napplication_id = \"a\"\nprivate_key = \"{path}\"\nfrom = \"1\"\n[[routes]]\nkind = \"voice\"\nchannels = [\"v\"]\n"
        );
        let e =
            verifyd::config::file::ConfigFile::parse(std::path::Path::new("v.toml"), &text, |_| {
                None
            })
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("channels.v.private_key") && e.contains(expected),
            "{e}"
        );
    }
}
