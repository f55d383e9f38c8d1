//! Conversion monitoring end to end on this binary's engine: a prefix pumped without
//! conversions is blocked (or only written down), people who type their codes keep verifying,
//! the attempts summary shows it all to its key alone, and `POST /verify/network-unblock` lifts a
//! block as Vonage documents it.

use reqwest::Method;
use serde_json::{json, Value};
use verifyd::clock::Clock;
use verifyd::domain::destinations::{Destinations, Network};
use verifyd::domain::fraud::{Floors, FraudRules, Mode};
use verifyd::domain::limits::Limits;

use crate::helpers::{number, spawn_app_with, TestApp};
use crate::v2::{problem, Auth};

/// A prefix (the numbers 4477001 9xxxx) named after a network in the operator's map.
const PUMPED: u32 = 90_000;
const NETWORK: &str = "23499";

/// Three unconverted sends an hour per prefix; the other dimensions far away.
fn rules(mode: Mode) -> FraudRules {
    let mut rules = FraudRules {
        mode,
        ..FraudRules::default()
    };
    rules.floors[0] = Floors { hour: 3, day: 30 };
    rules
}

async fn app(mode: Mode) -> Option<TestApp> {
    spawn_app_with(|s| {
        s.fraud = rules(mode);
        s.destinations = Destinations {
            networks: vec![Network {
                prefix: "44770019".into(),
                id: NETWORK.into(),
                name: "Premium Example".into(),
            }],
            ..Destinations::default()
        };
    })
    .await
}

/// A start to `n`, and its v1 answer.
async fn start(app: &TestApp, n: u32) -> Value {
    app.call(
        "/verify/json",
        &[("number", &number(n)), ("brand", "AcmeInc")],
    )
    .await
}

/// A person who types the code they got.
async fn converts(app: &TestApp, n: u32) {
    let id = app.start(&number(n)).await;
    let pin = app.pin(&number(n), &id).await;
    let checked = app
        .call("/verify/check/json", &[("request_id", &id), ("code", &pin)])
        .await;
    assert_eq!(checked["status"], "0", "{checked}");
}

async fn summary(app: &TestApp, query: &str) -> Value {
    let answer = app
        .v2(
            Method::GET,
            &format!("/v2/verify/attempts/summary{query}"),
            None,
            Auth::Basic,
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body
}

async fn unblock(app: &TestApp, key: &str, secret: &str, body: Value) -> (u16, Value) {
    let response = app
        .client
        .post(app.url("/verify/network-unblock"))
        .basic_auth(key, Some(secret))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn a_pumped_prefix_is_blocked_after_its_floor_while_people_who_convert_keep_verifying() {
    let Some(app) = app(Mode::Block).await else {
        return;
    };
    // People in another prefix convert four times in five, beyond the floor, all along.
    for n in 0..10 {
        if n % 5 == 4 {
            assert_eq!(start(&app, 20_000 + n).await["status"], "0");
        } else {
            converts(&app, 20_000 + n).await;
        }
    }
    // Three unconverted sends to the pumped prefix are its floor; the fourth is refused, and
    // so is every later one, on both surfaces.
    for n in 0..3 {
        assert_eq!(start(&app, PUMPED + n).await["status"], "0");
    }
    let refused = start(&app, PUMPED + 3).await;
    assert_eq!(refused["status"], "7", "{refused}");
    assert_eq!(refused["network"], NETWORK);
    assert_eq!(start(&app, PUMPED + 4).await["status"], "7");
    let v2 = app
        .v2(
            Method::POST,
            "/v2/verify",
            Some(json!({ "brand": "Acme", "workflow": [{ "channel": "sms", "to": number(PUMPED + 5) }] })),
            Auth::Basic,
        )
        .await;
    problem(&v2, 403, "forbidden");
    assert!(app.inbox(&number(PUMPED + 3)).await.is_empty());
    converts(&app, 20_200).await;

    let report = summary(&app, "?since=1h").await;
    let blocks = report["blocks"].as_array().unwrap();
    assert_eq!(blocks.len(), 1, "{report}");
    assert_eq!(blocks[0]["subject"], "prefix:44770019");
    assert_eq!(blocks[0]["network"], NETWORK);
    assert_eq!(blocks[0]["times"], 1);
    let pumped = report["prefixes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["prefix"] == "44770019")
        .unwrap();
    assert_eq!(
        (pumped["attempts"].as_u64(), pumped["converted"].as_u64()),
        (Some(4), Some(0))
    );
    assert_eq!(report["countries"][0]["country"], "GB", "{report}");
    assert_eq!(report["decisions"][0]["action"], "block", "{report}");
    // People: 11 sends, 9 converted; the bot: 4 counted (those refused are not).
    assert_eq!(report["total_attempts"], 15, "{report}");
    assert_eq!(report["total_converted"], 9, "{report}");
    assert_eq!(report["conversion_rate_percentage"], "60.00");

    // The operator's unblock lets the prefix through for its duration.
    let (status, body) = unblock(
        &app,
        &app.key,
        &app.secret,
        json!({"network": NETWORK, "unblock_duration": 600}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["network"], NETWORK);
    let until =
        chrono::DateTime::parse_from_rfc3339(body["unblocked_until"].as_str().unwrap()).unwrap();
    let expected = app.clock.now() + chrono::Duration::seconds(600);
    assert!(
        (until.timestamp() - expected.timestamp()).abs() <= 1,
        "{body}"
    );
    assert_eq!(start(&app, PUMPED + 6).await["status"], "0");
    assert_eq!(start(&app, PUMPED + 7).await["status"], "0");
    // Nothing is blocked any more: a second unblock finds nothing.
    let (status, body) = unblock(&app, &app.key, &app.secret, json!({"network": NETWORK})).await;
    assert_eq!(status, 404, "{body}");
    // Once the unblock has run out, the prefix, still pumped, is blocked again, for longer.
    app.advance(601).await;
    assert_eq!(start(&app, PUMPED + 8).await["status"], "7");
    let report = summary(&app, "").await;
    assert_eq!(report["blocks"][0]["times"], 2, "{report}");
}

#[tokio::test]
async fn a_blocked_bot_does_not_spend_the_keys_send_budget() {
    let Some(app) = spawn_app_with(|s| {
        s.fraud = rules(Mode::Block);
        s.limits = Limits::default()
            .with("verifications_per_hour", "6")
            .unwrap();
    })
    .await
    else {
        return;
    };
    // Three sends and the fourth, which takes the prefix over its floor, are counted.
    for n in 0..4 {
        start(&app, PUMPED + n).await;
    }
    for n in 4..24 {
        assert_eq!(start(&app, PUMPED + n).await["status"], "7");
    }
    for n in 0..2 {
        converts(&app, 20_000 + n).await;
    }
    let over = start(&app, 20_002).await;
    assert_eq!(over["status"], "1", "{over}");
}

#[tokio::test]
async fn by_default_a_subject_over_its_threshold_is_only_written_down() {
    let Some(app) = app(Mode::Record).await else {
        return;
    };
    for n in 0..8 {
        assert_eq!(start(&app, PUMPED + n).await["status"], "0");
    }
    let report = summary(&app, "?since=90m").await;
    assert_eq!(report["blocks"], json!([]), "{report}");
    let decisions = report["decisions"].as_array().unwrap();
    // Written once for the hour, however many sends pass it.
    assert_eq!(decisions.len(), 1, "{report}");
    assert_eq!(decisions[0]["action"], "record");
    assert_eq!(decisions[0]["subject"], "prefix:44770019");
    assert!(
        decisions[0]["reason"]
            .as_str()
            .unwrap()
            .contains("4 unconverted of 4 sends"),
        "{report}"
    );
    assert_eq!(report["total_unconverted"], 8);
}

#[tokio::test]
async fn one_key_never_sees_or_lifts_anothers_blocks() {
    let Some(app) = app(Mode::Block).await else {
        return;
    };
    for n in 0..4 {
        start(&app, PUMPED + n).await;
    }
    let (other, secret) = app.new_key(false).await;
    let (status, body) = unblock(&app, &other, &secret, json!({"network": NETWORK})).await;
    assert_eq!(status, 404, "{body}");
    // The other key's summary is empty; its sends to the prefix are its own.
    let theirs = app
        .client
        .get(app.url("/v2/verify/attempts/summary"))
        .basic_auth(&other, Some(&secret))
        .send()
        .await
        .unwrap();
    let theirs: Value = theirs.json().await.unwrap();
    assert_eq!(theirs["total_attempts"], 0, "{theirs}");
    assert_eq!(theirs["blocks"], json!([]));
    assert_eq!(start(&app, PUMPED + 4).await["status"], "7");
}

#[tokio::test]
async fn network_unblock_and_the_summary_refuse_what_they_cannot_read() {
    let Some(app) = app(Mode::Block).await else {
        return;
    };
    let (key, secret) = (app.key.clone(), app.secret.clone());
    let (status, body) = unblock(&app, &key, "wrong", json!({"network": NETWORK})).await;
    assert_eq!(
        (status, body["title"].as_str()),
        (401, Some("Unauthorized"))
    );
    let (status, body) = unblock(&app, &key, &secret, json!({})).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["invalid_parameters"][0]["name"], "network", "{body}");
    for duration in [json!(86_401), json!(-1), json!("soon")] {
        let (status, body) = unblock(
            &app,
            &key,
            &secret,
            json!({"network": NETWORK, "unblock_duration": duration}),
        )
        .await;
        assert_eq!(status, 422, "{duration}: {body}");
    }
    // Vonage's older name for the duration is read too.
    let (status, body) = unblock(
        &app,
        &key,
        &secret,
        json!({"network": NETWORK, "duration": 90_000}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = unblock(
        &app,
        &key,
        &secret,
        json!({"network": NETWORK, "duration": 60}),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["title"], "Not Found");

    for bad in ["?since=32d", "?since=soon", "?since=0h"] {
        let answer = app
            .v2(
                Method::GET,
                &format!("/v2/verify/attempts/summary{bad}"),
                None,
                Auth::Basic,
            )
            .await;
        problem(&answer, 422, "invalid-params");
    }
    let answer = app
        .v2(Method::GET, "/v2/verify/attempts/summary", None, Auth::None)
        .await;
    assert_eq!(answer.status, 401);
}
