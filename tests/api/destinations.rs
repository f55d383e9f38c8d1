//! Where verifications may go, end to end on this binary's engine: number types refused,
//! countries per channel (the file's and a key's own), blocked prefixes named after their
//! network, and an SMS to a fixed line giving way to the call after it.

use reqwest::Method;
use serde_json::json;
use verifyd::domain::destinations::{Countries, Destinations, Network};
use verifyd::domain::limits::KeyLimits;
use verifyd::domain::numbering::NumberType;

use crate::helpers::{number, spawn_app_with};
use crate::v2::{problem, Auth};

/// A UK premium-rate number, a London fixed line and an Irish mobile.
const PREMIUM: &str = "449098790123";
const LANDLINE: &str = "442079460123";
const IRISH: &str = "353851234567";

#[tokio::test]
async fn costly_number_types_are_refused_with_status_15_and_403_and_send_nothing() {
    let Some(app) = spawn_app_with(|_| {}).await else {
        return;
    };
    let v1 = app
        .call("/verify/json", &[("number", PREMIUM), ("brand", "AcmeInc")])
        .await;
    assert_eq!(v1["status"], "15", "{v1}");
    assert_eq!(
        v1["error_text"],
        "The destination number is not in a supported network"
    );
    let v2 = app
        .v2(
            Method::POST,
            "/v2/verify",
            Some(json!({ "brand": "Acme", "workflow": [{ "channel": "voice", "to": PREMIUM }] })),
            Auth::Basic,
        )
        .await;
    problem(&v2, 403, "forbidden");
    assert!(app.inbox(PREMIUM).await.is_empty());
}

#[tokio::test]
async fn an_sms_to_a_fixed_line_gives_way_to_the_call_and_sms_alone_is_refused() {
    let Some(app) = spawn_app_with(|_| {}).await else {
        return;
    };
    // Workflow 1 is SMS, call, call: the fixed line gets the call at once.
    let id = app.start(LANDLINE).await;
    let messages = app.messages_for(LANDLINE, &id, 1).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0]["channel"], "voice");
    let search = app
        .call("/verify/search/json", &[("request_id", &id)])
        .await;
    assert_eq!(search["events"][0]["type"], "tts", "{search}");
    // Workflow 6 is one SMS: nothing can reach the line.
    let sms_only = app
        .call(
            "/verify/json",
            &[
                ("number", LANDLINE),
                ("brand", "AcmeInc"),
                ("workflow_id", "6"),
            ],
        )
        .await;
    assert_eq!(sms_only["status"], "15", "{sms_only}");
}

#[tokio::test]
async fn countries_are_allowed_per_channel_and_a_key_may_have_its_own() {
    let Some(app) = spawn_app_with(|s| {
        s.destinations.countries = [
            Countries::parse("GB").unwrap(),
            Countries::parse("GB,IE").unwrap(),
            Countries::All,
        ];
    })
    .await
    else {
        return;
    };
    // SMS may not reach Ireland, calls may: workflow 1 starts with its call.
    let id = app.start(IRISH).await;
    assert_eq!(app.messages_for(IRISH, &id, 1).await[0]["channel"], "voice");
    let sms_only = app
        .call(
            "/verify/json",
            &[
                ("number", "353851234568"),
                ("brand", "AcmeInc"),
                ("workflow_id", "6"),
            ],
        )
        .await;
    assert_eq!(sms_only["status"], "29", "{sms_only}");
    assert_eq!(sms_only["error_text"], "Non-Permitted Destination");
    let v2 = app
        .v2(
            Method::POST,
            "/v2/verify",
            Some(json!({ "brand": "Acme", "workflow": [{ "channel": "sms", "to": "353851234569" }] })),
            Auth::Basic,
        )
        .await;
    problem(&v2, 403, "forbidden");

    // This key's SMS may reach Ireland too; another key keeps the file's rule.
    let mut own = KeyLimits::default();
    own.set("sms_countries", "GB,IE").unwrap();
    let none = KeyLimits::default();
    let set = app.app.store().set_key_limits(&app.key, &none, own).await;
    assert_eq!(set.unwrap(), verifyd::store::LimitsSet::Set);
    app.app.reload_keys().await.unwrap();
    let now_allowed = app
        .call(
            "/verify/json",
            &[
                ("number", "353851234568"),
                ("brand", "AcmeInc"),
                ("workflow_id", "6"),
            ],
        )
        .await;
    assert_eq!(now_allowed["status"], "0", "{now_allowed}");
    let (other, secret) = app.new_key(false).await;
    let refused = app
        .client
        .post(app.url("/verify/json"))
        .form(&[
            ("api_key", other.as_str()),
            ("api_secret", secret.as_str()),
            ("number", "353851234570"),
            ("brand", "AcmeInc"),
            ("workflow_id", "6"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(crate::helpers::v1_json(refused).await["status"], "29");
}

#[tokio::test]
async fn a_blocked_prefix_is_answered_with_status_7_and_its_network() {
    let Some(app) = spawn_app_with(|s| {
        s.destinations = Destinations {
            blocked_prefixes: vec!["4477001009".into(), "4477001008".into()],
            networks: vec![Network {
                prefix: "4477001009".into(),
                id: "23410".into(),
                name: "O2 UK".into(),
            }],
            refused_types: vec![NumberType::PremiumRate],
            ..Destinations::default()
        };
    })
    .await
    else {
        return;
    };
    let blocked = app
        .call(
            "/verify/json",
            &[("number", &number(900)), ("brand", "AcmeInc")],
        )
        .await;
    assert_eq!(blocked["status"], "7", "{blocked}");
    assert_eq!(
        blocked["error_text"],
        "The number you are trying to verify is blacklisted for verification."
    );
    assert_eq!(blocked["network"], "23410");
    assert!(blocked.get("request_id").is_none(), "{blocked}");
    // A prefix the map does not name is named by its digits.
    let unnamed = app
        .call(
            "/verify/json",
            &[("number", &number(800)), ("brand", "AcmeInc")],
        )
        .await;
    assert_eq!(unnamed["network"], "4477001008", "{unnamed}");
    let v2 = app
        .v2(
            Method::POST,
            "/v2/verify",
            Some(json!({ "brand": "Acme", "workflow": [{ "channel": "sms", "to": number(901) }] })),
            Auth::Basic,
        )
        .await;
    problem(&v2, 403, "forbidden");
    assert_eq!(v2.body["network"], "23410");
    assert!(app.inbox(&number(900)).await.is_empty());
    // Next to the block, numbers go through.
    app.start(&number(1000)).await;
}
