//! WhatsApp through a local stand-in for Meta's Cloud API: the template message as Meta documents
//! it, its refusals, and the webhook's receipts (signed) and subscription check.

mod support;

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use support::app::serve;
use support::gateway::{Answer, Gateway};
use verifyd::store::AttemptState;

fn config(gateway: &Gateway) -> String {
    format!(
        r#"
public_url = "{{public_url}}"
[channels.wa]
type = "whatsapp"
phone_number_id = "106540352242922"
access_token = "${{TOKEN}}"
template = "verify_code"
app_secret = "${{TOKEN}}"
verify_token = "${{TOKEN}}"
base_url = "{}/v21.0"
[[routes]]
kind = "whatsapp"
channels = ["wa"]
[[routes]]
kind = "sms"
channels = ["inbox"]
"#,
        gateway.url()
    )
}

/// A v2 request of one WhatsApp step to `to`; its request id as 32 hex digits.
async fn start(server: &support::app::Server, to: &str, locale: &str) -> String {
    let body = json!({ "brand": "Acme", "locale": locale, "workflow": [
        { "channel": "whatsapp", "to": to, "from": "447700400080" },
        { "channel": "sms", "to": to },
    ]});
    let (_, answer) = server.v2_post("/v2/verify", Some(body)).await;
    answer["request_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{answer}"))
        .replace('-', "")
}

fn signed(body: &str, secret: &str) -> String {
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test]
async fn the_code_goes_in_an_authentication_template_and_signed_receipts_are_applied() {
    let gateway = Gateway::start(Answer::new(
        200,
        r#"{"messaging_product":"whatsapp","contacts":[{"input":"447700100951","wa_id":"447700100951"}],"messages":[{"id":"wamid.HBg{n}"}]}"#,
    ))
    .await;
    let server = serve(&config(&gateway)).await;
    let id = start(&server, "447700100951", "pt-br").await;
    let seen = gateway.wait_for(1, Duration::from_secs(10)).await;
    let request = &seen[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/v21.0/106540352242922/messages");
    assert_eq!(request.headers["authorization"], "Bearer s3cr3t-token");
    let body = request.json();
    assert_eq!(body["messaging_product"], "whatsapp");
    assert_eq!(body["to"], "447700100951");
    assert_eq!(body["type"], "template");
    assert_eq!(body["template"]["name"], "verify_code");
    assert_eq!(body["template"]["language"]["code"], "pt_BR");
    let code = body["template"]["components"][0]["parameters"][0]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(code.len(), 4);
    assert_eq!(
        body["template"]["components"][1]["parameters"][0]["text"],
        code.as_str(),
        "the copy-code button carries the code too"
    );
    let attempts = server.wait_for_state(&id, AttemptState::Submitted).await;
    assert_eq!(attempts[0].message_id.as_deref(), Some("wamid.HBg1"));

    let url = server.receipt_url("wa");
    let receipt = json!({ "object": "whatsapp_business_account", "entry": [{ "changes": [{
        "field": "messages",
        "value": { "statuses": [
            { "id": "wamid.HBg1", "status": "sent" },
            { "id": "wamid.HBg1", "status": "delivered" },
        ]}
    }]}]})
    .to_string();
    let refused = server
        .http
        .post(&url)
        .header("x-hub-signature-256", signed(&receipt, "wrong"))
        .body(receipt.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let taken = server
        .http
        .post(&url)
        .header("x-hub-signature-256", signed(&receipt, "s3cr3t-token"))
        .header("content-type", "application/json")
        .body(receipt)
        .send()
        .await
        .unwrap();
    assert_eq!(taken.status(), 204);
    let attempts = server.wait_for_state(&id, AttemptState::Delivered).await;
    assert_eq!(attempts[0].state, AttemptState::Delivered);

    // Meta's check of the webhook before it sends anything.
    let check = server
        .http
        .get(format!(
            "{url}?hub.mode=subscribe&hub.verify_token=s3cr3t-token&hub.challenge=1158201444"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(check.status(), 200);
    assert_eq!(check.text().await.unwrap(), "1158201444");
    let wrong = server
        .http
        .get(format!(
            "{url}?hub.mode=subscribe&hub.verify_token=nope&hub.challenge=1"
        ))
        .send()
        .await
        .unwrap();
    assert_ne!(wrong.status(), 200);

    let path = format!("/v2/verify/{}", uuid::Uuid::parse_str(&id).unwrap());
    let (_, check) = server.v2_post(&path, Some(json!({ "code": code }))).await;
    assert_eq!(check["status"], "completed");
}

#[tokio::test]
async fn a_number_meta_refuses_fails_the_step_and_the_sms_comes_at_once() {
    let gateway = Gateway::start(Answer::new(
        400,
        r#"{"error":{"message":"(#131026) Message undeliverable","type":"OAuthException","code":131026,"fbtrace_id":"Az8"}}"#,
    ))
    .await;
    let server = serve(&config(&gateway)).await;
    let to = "447700100952";
    let id = start(&server, to, "en-gb").await;
    // The WhatsApp try fails; the SMS's try comes after it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let attempts = loop {
        let attempts = server.attempts(&id).await;
        if attempts
            .first()
            .is_some_and(|a| a.state == AttemptState::Failed)
        {
            break attempts;
        }
        assert!(tokio::time::Instant::now() < deadline, "{attempts:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(attempts[0].kind, "whatsapp");
    assert_eq!(attempts[0].error_code.as_deref(), Some("meta-131026"));
    assert!(
        attempts[0]
            .error_text
            .as_deref()
            .unwrap()
            .contains("undeliverable"),
        "{attempts:?}"
    );
    let mine = |m: &Value| m["request_id"] == id.as_str();
    let inbox = support::inbox_until(&server.http, &server.base, to, |inbox| {
        inbox.iter().any(mine)
    })
    .await;
    assert!(
        inbox.iter().any(mine),
        "no SMS after the refusal: {inbox:?}"
    );
}
