//! Real messages through the HTTP gateways: each gateway's request as its provider documents
//! it, receipts posted back, failover between channels, and what is recorded for each try.
//! The gateways are local HTTP servers (`support/gateway.rs`); everything is on loopback.

mod support;

use std::time::Duration;

use support::app::serve;
use support::gateway::{closed_port, Answer, Gateway};
use verifyd::store::AttemptState;

fn twilio_config(gateway: &Gateway) -> String {
    format!(
        r#"
public_url = "{{public_url}}"
[channels.twilio]
type = "twilio-sms"
account_sid = "AC0123456789"
auth_token = "${{TOKEN}}"
from = "+15005550006"
base_url = "{}"
[[routes]]
kind = "sms"
channels = ["twilio"]
"#,
        gateway.url()
    )
}

#[tokio::test]
async fn twilio_gets_the_documented_request_and_its_signed_status_callback_is_applied() {
    let gateway = Gateway::start(Answer::new(201, r#"{"sid":"SM{n}","status":"queued"}"#)).await;
    let server = serve(&twilio_config(&gateway)).await;
    let id = server.start("447700100501", &[]).await;
    let seen = gateway.wait_for(1, Duration::from_secs(10)).await;
    let request = &seen[0];
    assert_eq!(request.method, "POST");
    assert_eq!(
        request.path,
        "/2010-04-01/Accounts/AC0123456789/Messages.json"
    );
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode("AC0123456789:s3cr3t-token");
    assert_eq!(request.headers["authorization"], format!("Basic {basic}"));
    let form = request.form();
    assert_eq!(form["To"], "+447700100501");
    assert_eq!(form["From"], "+15005550006");
    assert!(
        form["Body"].starts_with("AcmeInc: your verification code is "),
        "{form:?}"
    );
    let validity: u64 = form["ValidityPeriod"].parse().unwrap();
    assert!((290..=300).contains(&validity), "{validity}");
    assert_eq!(form["StatusCallback"], server.receipt_url("twilio"));
    assert_eq!(form.len(), 5, "{form:?}");

    let attempts = server.wait_for_state(&id, AttemptState::Submitted).await;
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].message_id.as_deref(), Some("SM1"));

    let url = server.receipt_url("twilio");
    let params: Vec<(String, String)> = [("MessageSid", "SM1"), ("MessageStatus", "delivered")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let forged = server
        .http
        .post(&url)
        .header("x-twilio-signature", "bm90IGl0")
        .form(&params)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert_eq!(server.attempts(&id).await[0].state, AttemptState::Submitted);

    let signature = verifyd::channel::twilio::signature("s3cr3t-token", &url, &params);
    let signed = server
        .http
        .post(&url)
        .header("x-twilio-signature", signature)
        .form(&params)
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), 204);
    assert_eq!(server.attempts(&id).await[0].state, AttemptState::Delivered);

    let wrong_token = format!("{}/receipts/twilio/0000", server.base);
    let response = server
        .http
        .post(wrong_token)
        .form(&params)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn vonage_gets_the_documented_request_unicode_when_needed_and_its_receipt_is_applied() {
    let gateway = Gateway::start(Answer::new(
        200,
        r#"{"message-count":"1","messages":[{"to":"x","message-id":"V{n}","status":"0"}]}"#,
    ))
    .await;
    let config = format!(
        r#"
public_url = "{{public_url}}"
[channels.vonage]
type = "vonage-sms"
api_key = "key1"
api_secret = "${{TOKEN}}"
base_url = "{}"
[[routes]]
kind = "sms"
channels = ["vonage"]
"#,
        gateway.url()
    );
    let server = serve(&config).await;
    let latin = server.start("447700100502", &[("sender_id", "Acme")]).await;
    let greek = server.start("306912345678", &[("lg", "el-gr")]).await;
    let seen = gateway.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(seen.len(), 2);
    for request in &seen {
        assert_eq!(
            (request.method.as_str(), request.path.as_str()),
            ("POST", "/sms/json")
        );
        let form = request.form();
        assert_eq!(form["api_key"], "key1");
        assert_eq!(form["api_secret"], "s3cr3t-token");
        assert_eq!(form["status-report-req"], "1");
        assert_eq!(form["callback"], server.receipt_url("vonage"));
        let ttl: u64 = form["ttl"].parse().unwrap();
        assert!((290_000..=300_000).contains(&ttl), "{ttl}");
        match form["to"].as_str() {
            "447700100502" => {
                assert_eq!(form["from"], "Acme", "the request's sender_id");
                assert!(!form.contains_key("type"), "{form:?}");
            }
            "306912345678" => assert_eq!(form["type"], "unicode", "{form:?}"),
            other => panic!("to {other}"),
        }
    }
    let latin_attempts = server.wait_for_state(&latin, AttemptState::Submitted).await;
    let message_id = latin_attempts[0].message_id.clone().unwrap();
    server.wait_for_state(&greek, AttemptState::Submitted).await;

    // Vonage posts receipts as a query unless the account says otherwise.
    let receipt = server
        .http
        .get(server.receipt_url("vonage"))
        .query(&[
            ("messageId", message_id.as_str()),
            ("status", "expired"),
            ("err-code", "5"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(receipt.status(), 204);
    let attempt = &server.attempts(&latin).await[0];
    assert_eq!(attempt.state, AttemptState::Undeliverable);
    assert_eq!(attempt.error_code.as_deref(), Some("vonage-dlr-5"));
}

fn webhook_channel(name: &str, url: &str) -> String {
    format!(
        r#"
[channels.{name}]
type = "webhook"
url = "{url}/send"
headers = {{ Authorization = "Bearer ${{TOKEN}}" }}
body = '{{"to":"{{{{to}}}}","from":"{{{{from}}}}","text":"{{{{text}}}}","id":"{{{{id}}}}"}}'
signing_secret = "whsec"
message_id = "/message_id"
timeout = 2
"#
    )
}

#[tokio::test]
async fn a_webhook_sends_its_template_signed_and_takes_signed_receipts() {
    let gateway = Gateway::start(Answer::new(202, r#"{"message_id":"W{n}"}"#)).await;
    let config = format!(
        "public_url = \"{{public_url}}\"\n{}\n[[routes]]\nkind = \"sms\"\nchannels = [\"gw\"]\nfrom = \"ACME\"\n",
        webhook_channel("gw", &gateway.url())
    );
    let server = serve(&config).await;
    let id = server.start("447700100503", &[]).await;
    let seen = gateway.wait_for(1, Duration::from_secs(10)).await;
    let request = &seen[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("POST", "/send")
    );
    assert_eq!(request.headers["authorization"], "Bearer s3cr3t-token");
    assert_eq!(request.headers["content-type"], "application/json");
    assert_eq!(
        request.headers["x-verifyd-signature"],
        verifyd::channel::webhook::signature("whsec", request.body.as_bytes())
    );
    let body = request.json();
    assert_eq!(body["to"], "+447700100503");
    assert_eq!(body["from"], "ACME", "the route's sender");
    assert!(
        body["text"].as_str().unwrap().starts_with("AcmeInc: "),
        "{body}"
    );
    let attempts = server.wait_for_state(&id, AttemptState::Submitted).await;
    assert_eq!(attempts[0].message_id.as_deref(), Some("W1"));
    assert_eq!(body["id"], attempts[0].event_id.as_str());

    let receipt = serde_json::json!({"message_id": "W1", "state": "delivered"}).to_string();
    let unsigned = server
        .http
        .post(server.receipt_url("gw"))
        .body(receipt.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 403);
    let signed = server
        .http
        .post(server.receipt_url("gw"))
        .header(
            "x-verifyd-signature",
            verifyd::channel::webhook::signature("whsec", receipt.as_bytes()),
        )
        .body(receipt)
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), 204);
    assert_eq!(server.attempts(&id).await[0].state, AttemptState::Delivered);
    // The receipt's latency, from the try to the receipt, is a histogram sample.
    let (_, metrics) = server.get_text("/metrics").await;
    let count = metrics
        .lines()
        .find(|l| {
            l.starts_with("verifyd_receipt_latency_seconds_count{")
                && l.contains("channel=\"gw\"")
                && l.contains("state=\"delivered\"")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
    assert!(count.is_some_and(|n| n >= 1.0), "{metrics}");
    assert!(
        metrics.contains("verifyd_receipt_latency_seconds_bucket{channel=\"gw\",state=\"delivered\",le=\"3600\"}"),
        "the receipts' own buckets: {metrics}"
    );
}

fn failover_config(first: &str, second: &str) -> String {
    format!(
        "{}\n{}\n[[routes]]\nkind = \"sms\"\nchannels = [\"first\", \"second\"]\n",
        webhook_channel("first", first),
        webhook_channel("second", second)
    )
}

#[tokio::test]
async fn when_the_first_gateway_is_down_the_second_carries_the_message_within_5_s() {
    let second = Gateway::start(Answer::new(200, r#"{"message_id":"S{n}"}"#)).await;
    let down = format!("http://{}", closed_port());
    let server = serve(&failover_config(&down, &second.url())).await;
    let started = std::time::Instant::now();
    let id = server.start("447700100504", &[]).await;
    assert_eq!(second.wait_for(1, Duration::from_secs(5)).await.len(), 1);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let attempts = server.wait_for_state(&id, AttemptState::Submitted).await;
    let tried: Vec<(&str, AttemptState, Option<&str>)> = attempts
        .iter()
        .map(|a| (a.channel.as_str(), a.state, a.error_code.as_deref()))
        .collect();
    assert_eq!(
        tried,
        [
            ("first", AttemptState::Failed, Some("connect")),
            ("second", AttemptState::Submitted, None)
        ]
    );
}

#[tokio::test]
async fn a_permanent_rejection_does_not_fall_over_to_the_next_gateway() {
    let first = Gateway::start(Answer::new(400, r#"{"error":"invalid number"}"#)).await;
    let second = Gateway::start(Answer::new(200, r#"{"message_id":"S{n}"}"#)).await;
    let server = serve(&failover_config(&first.url(), &second.url())).await;
    let id = server.start("447700100505", &[]).await;
    let attempts = server.wait_for_state(&id, AttemptState::Failed).await;
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(attempts[0].error_code.as_deref(), Some("http-400"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(second.seen().is_empty(), "nothing fell over");
    assert_eq!(first.seen().len(), 1, "and nothing was retried");
}

#[tokio::test]
async fn when_every_gateway_is_down_the_message_goes_once_one_is_back() {
    let (first, second) = (closed_port(), closed_port());
    let config = failover_config(&format!("http://{first}"), &format!("http://{second}"));
    let server = serve(&config).await;
    let id = server.start("447700100506", &[]).await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let failed = server.attempts(&id).await;
    assert!(failed.len() >= 2, "a round at least: {failed:?}");
    assert!(failed.iter().all(|a| a.state == AttemptState::Failed));
    let back = Gateway::start_on(second, Answer::new(200, r#"{"message_id":"B{n}"}"#)).await;
    assert_eq!(back.wait_for(1, Duration::from_secs(10)).await.len(), 1);
    server.wait_for_state(&id, AttemptState::Submitted).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(back.seen().len(), 1, "delivered once");
}
