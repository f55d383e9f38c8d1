//! Verify v2 callbacks end to end: a receiver on loopback checks each one's signature and payload
//! hash; one that is down for a minute gets every callback once it is back; a server killed with
//! callbacks pending sends them after its restart.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::gateway::{Answer, Gateway, Seen};

const PRIVATE_KEY: &str = include_str!("fixtures/vonage-test-key.pem");
const PUBLIC_KEY: &str = include_str!("fixtures/vonage-test-key.pub.pem");

const INBOX_ROUTES: &str = "[[routes]]\nkind = \"sms\"\nchannels = [\"inbox\"]\n\
                            [[routes]]\nkind = \"voice\"\nchannels = [\"inbox\"]\n";

fn jwt(application_id: &str) -> String {
    let now = chrono::Utc::now().timestamp();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &json!({ "application_id": application_id, "iat": now, "exp": now + 900 }),
        &jsonwebtoken::EncodingKey::from_rsa_pem(PRIVATE_KEY.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// Checks what a receiver must: the `Authorization` JWT is HS256 with `secret`, and its
/// `payload_hash` is the SHA-256 of the body. Returns the token's claims.
fn verified(seen: &Seen, secret: &str) -> Value {
    let auth = seen.headers.get("authorization").expect("signed");
    let token = auth.strip_prefix("Bearer ").expect("a bearer token");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    let claims = jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )
    .expect("signed with the application's signature secret")
    .claims;
    assert_eq!(
        claims["payload_hash"],
        hex::encode(Sha256::digest(seen.body.as_bytes())),
        "the payload hash covers the body"
    );
    assert_eq!(
        seen.headers.get("content-type").unwrap(),
        "application/json"
    );
    claims
}

/// A v2 request of one SMS to `to`, made as the application; its id.
async fn start(http: &reqwest::Client, base: &str, token: &str, to: &str) -> String {
    let answer: Value = http
        .post(format!("{base}/v2/verify"))
        .bearer_auth(token)
        .json(&json!({ "brand": "Acme", "client_ref": "ref7", "workflow": [{ "channel": "sms", "to": to }] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["request_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{answer}"))
        .to_owned()
}

/// The code the inbox shows for request `id` (waits at most 10 s).
async fn code(http: &reqwest::Client, base: &str, to: &str, id: &str) -> String {
    let hex = id.replace('-', "");
    let mine = |m: &Value| m["request_id"] == hex.as_str();
    let inbox = support::inbox_until(http, base, to, |inbox| inbox.iter().any(mine)).await;
    let message = inbox.iter().find(|m| mine(m));
    support::pin_in(
        message.unwrap_or_else(|| panic!("no message for {id}"))["text"]
            .as_str()
            .unwrap(),
    )
}

async fn check(http: &reqwest::Client, base: &str, token: &str, id: &str, code: &str) -> u16 {
    http.post(format!("{base}/v2/verify/{id}"))
        .bearer_auth(token)
        .json(&json!({ "code": code }))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The callbacks the receiver answered 2xx, by their id (the JWT's `jti`).
fn taken(seen: &[Seen], secret: &str, ok_from: usize) -> Vec<(String, Value)> {
    seen[ok_from..]
        .iter()
        .map(|s| {
            let claims = verified(s, secret);
            (claims["jti"].as_str().unwrap().to_owned(), s.json())
        })
        .collect()
}

#[tokio::test]
async fn a_request_made_with_a_jwt_tells_its_application_how_it_ended_signed() {
    let receiver = Gateway::start(Answer::new(200, "")).await;
    let server = support::app::serve(INBOX_ROUTES).await;
    let store = server.app.store();
    let app = verifyd::auth::apps::create_app(
        store.as_ref(),
        store.as_ref(),
        &verifyd::crypto::ServerKey::from_hex(support::app::KEY_HEX).unwrap(),
        &server.key.0,
        PUBLIC_KEY,
        Some(&format!("{}/verify/status", receiver.url())),
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    let token = jwt(&app.application_id);
    let (http, base) = (&server.http, server.base.as_str());

    let to = "447700100801";
    let id = start(http, base, &token, to).await;
    let pin = code(http, base, to, &id).await;
    assert_eq!(check(http, base, &token, &id, &pin).await, 200);
    // A request made with Basic credentials names no application: nothing is sent for it.
    let basic = http
        .post(format!("{base}/v2/verify"))
        .basic_auth(&server.key.0, Some(&server.key.1))
        .json(&json!({ "brand": "Acme", "workflow": [{ "channel": "sms", "to": "447700100802" }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 202);

    let seen = receiver.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen
        .iter()
        .all(|s| s.path == "/verify/status" && s.method == "POST"));
    let mut got = taken(&seen, &app.signature_secret, 0);
    got.sort_by_key(|(_, body)| body["type"].as_str().unwrap().to_owned());
    let (event, summary) = (&got[0].1, &got[1].1);
    assert_ne!(got[0].0, got[1].0, "each callback has its own id");
    assert_eq!(event["type"], "event");
    assert_eq!(
        (
            event["request_id"].as_str(),
            event["channel"].as_str(),
            event["status"].as_str()
        ),
        (Some(id.as_str()), Some("sms"), Some("completed"))
    );
    assert_eq!(summary["type"], "summary");
    assert_eq!(summary["status"], "completed");
    assert_eq!(summary["client_ref"], "ref7");
    assert_eq!(summary["channel_timeout"], 180);
    assert_eq!(summary["workflow"][0]["status"], "completed");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(receiver.seen().len(), 2, "each callback taken is sent once");
}

#[tokio::test]
async fn a_receiver_that_is_down_for_a_minute_gets_every_callback_once_it_is_back() {
    let receiver = Gateway::start(Answer::new(503, "")).await;
    let server = support::app::serve(INBOX_ROUTES).await;
    let store = server.app.store();
    let app = verifyd::auth::apps::create_app(
        store.as_ref(),
        store.as_ref(),
        &verifyd::crypto::ServerKey::from_hex(support::app::KEY_HEX).unwrap(),
        &server.key.0,
        PUBLIC_KEY,
        Some(&receiver.url()),
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    let token = jwt(&app.application_id);
    let (http, base) = (&server.http, server.base.as_str());
    let mut ids = Vec::new();
    for n in 0..3 {
        let to = format!("44770010081{n}");
        let id = start(http, base, &token, &to).await;
        let pin = code(http, base, &to, &id).await;
        assert_eq!(check(http, base, &token, &id, &pin).await, 200);
        ids.push(id);
    }
    tokio::time::sleep(Duration::from_secs(60)).await;
    let refused = receiver.seen().len();
    assert!(
        refused >= 6 * 5,
        "tried again and again while down: {refused}"
    );
    receiver.answer_with(Answer::new(200, ""));
    let seen = receiver
        .wait_for(refused + 6, Duration::from_secs(40))
        .await;
    let got = taken(&seen, &app.signature_secret, refused);
    assert_eq!(got.len(), 6, "every callback, once: {got:?}");
    let mut jtis: Vec<&str> = got.iter().map(|(jti, _)| jti.as_str()).collect();
    jtis.sort();
    jtis.dedup();
    assert_eq!(jtis.len(), 6);
    for id in &ids {
        let told: Vec<&str> = got
            .iter()
            .filter(|(_, b)| b["request_id"] == id.as_str())
            .map(|(_, b)| b["type"].as_str().unwrap())
            .collect();
        assert_eq!(told.len(), 2, "{id}: {told:?}");
    }
    // The same callback keeps its id and body across its retries.
    let first_try = &seen[0];
    let jti = verified(first_try, &app.signature_secret)["jti"].clone();
    let retried = got.iter().find(|(j, _)| jti == j.as_str()).unwrap();
    assert_eq!(&retried.1, &first_try.json());
}

#[tokio::test]
async fn a_server_killed_with_callbacks_pending_sends_them_after_its_restart() {
    let receiver = Gateway::start(Answer::new(500, "")).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("v.db");
    let mut server = support::start(dir.path(), &db, &[]);
    let (key, _) = server.first_key.clone().unwrap();
    let public = dir.path().join("public.pem");
    std::fs::write(&public, PUBLIC_KEY).unwrap();
    let (ok, out) = support::run_bounded(
        std::process::Command::new(support::BIN)
            .args(["apps", "create", "--key", &key, "--public-key"])
            .arg(&public)
            .args(["--status-url", &receiver.url()])
            .arg("--database")
            .arg(format!("sqlite://{}", db.display())),
        Duration::from_secs(30),
    );
    assert!(ok, "{out}");
    let app: Value =
        serde_json::from_str(out.lines().find(|l| l.starts_with('{')).unwrap()).unwrap();
    let secret = app["signature_secret"].as_str().unwrap().to_owned();
    let token = jwt(app["application_id"].as_str().unwrap());
    let http = reqwest::Client::new();
    let base = server.base("http");
    let to = "447700100821";
    let id = start(&http, &base, &token, to).await;
    let pin = code(&http, &base, to, &id).await;
    assert_eq!(check(&http, &base, &token, &id, &pin).await, 200);
    let refused = receiver.wait_for(2, Duration::from_secs(10)).await.len();
    assert!(refused >= 2, "tried before the kill");
    server.kill9();

    receiver.answer_with(Answer::new(204, ""));
    let _restarted = support::start_on(dir.path(), &db, server.port, &[]);
    let seen = receiver
        .wait_for(refused + 2, Duration::from_secs(90))
        .await;
    let got = taken(&seen, &secret, refused);
    let mut types: Vec<&str> = got
        .iter()
        .map(|(_, b)| b["type"].as_str().unwrap())
        .collect();
    types.sort();
    assert_eq!(types, ["event", "summary"], "{seen:?}");
    assert!(got.iter().all(|(_, b)| b["request_id"] == id.as_str()));
}
