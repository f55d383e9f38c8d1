//! Limits end to end on this binary's engine: a call over a limit is refused with v1 status 1
//! or v2's 429 and Retry-After, does nothing, and is let through once the window has moved on.

use reqwest::Method;
use serde_json::json;
use verifyd::clock::Clock;
use verifyd::domain::limits::{KeyLimits, Limits};

use crate::helpers::{number, spawn_app_with, v1_json};
use crate::v2::{problem, Auth};

fn limits(pairs: &[(&str, &str)]) -> Limits {
    pairs
        .iter()
        .try_fold(Limits::default(), |l, (name, value)| l.with(name, value))
        .unwrap()
}

#[tokio::test]
async fn v1_calls_over_a_limit_get_status_1_and_start_nothing() {
    let Some(app) = spawn_app_with(|s| {
        s.limits = limits(&[("requests_per_second", "3"), ("per_prefix", "2/h")])
    })
    .await
    else {
        return;
    };
    let start = |to: String| {
        let app = &app;
        async move {
            app.call("/verify/json", &[("number", &to), ("brand", "AcmeInc")])
                .await
        }
    };
    // Three calls in one second; the fourth is one too many.
    assert_eq!(start(number(700)).await["status"], "0");
    assert_eq!(start(number(701)).await["status"], "0");
    let third = start(number(10702)).await;
    assert_eq!(third["status"], "0", "{third}");
    let fourth = start(number(10703)).await;
    assert_eq!(fourth["status"], "1", "{fourth}");
    assert!(
        fourth["error_text"]
            .as_str()
            .unwrap()
            .contains("requests per second"),
        "{fourth}"
    );
    assert!(
        app.inbox(&number(10703)).await.is_empty(),
        "nothing was sent"
    );

    app.advance(2).await;
    // number(700) and number(701) share a prefix (the number without its last four digits),
    // which has had its two this hour; number(10702) and number(10703) have another.
    let same_prefix = start(number(702)).await;
    assert_eq!(same_prefix["status"], "1", "{same_prefix}");
    assert!(same_prefix["error_text"]
        .as_str()
        .unwrap()
        .contains("per prefix"));
    assert_eq!(start(number(10703)).await["status"], "0");
}

#[tokio::test]
async fn v2_calls_over_a_limit_get_429_with_retry_after() {
    let Some(app) = spawn_app_with(|s| s.limits = limits(&[("per_destination", "1/10m")])).await
    else {
        return;
    };
    let to = number(710);
    let body = json!({ "brand": "Acme", "workflow": [{ "channel": "sms", "to": to }] });
    let id = app.v2_start(body.clone()).await;
    let code = app.v2_code(&to, &id, "sms", 1).await;
    assert_eq!(app.v2_check(&id, &code).await.status, 200);
    let again = app
        .v2(Method::POST, "/v2/verify", Some(body.clone()), Auth::Basic)
        .await;
    problem(&again, 429, "throttled");
    // The raw answer carries when to come back: within the ten minutes, not before a second.
    let raw = app
        .client
        .post(app.url("/v2/verify"))
        .basic_auth(&app.key, Some(&app.secret))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 429);
    let retry: u64 = raw.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=600).contains(&retry), "{retry}");
    // Another destination is not held back.
    let other = json!({ "brand": "Acme", "workflow": [{ "channel": "sms", "to": number(711) }] });
    app.v2_start(other).await;
}

#[tokio::test]
async fn searches_have_their_own_rate() {
    let Some(app) = spawn_app_with(|s| s.limits = limits(&[("searches_per_second", "1")])).await
    else {
        return;
    };
    let id = app.start(&number(720)).await;
    let params = [("request_id", id.as_str())];
    let first = app.call("/verify/search/json", &params).await;
    assert_eq!(first["status"], "IN PROGRESS", "{first}");
    let second = app.call("/verify/search/json", &params).await;
    assert_eq!(second["status"], "1", "{second}");
    // Starts and checks are not searches.
    let pin = app.pin(&number(720), &id).await;
    let checked = app
        .call("/verify/check/json", &[("request_id", &id), ("code", &pin)])
        .await;
    assert_eq!(checked["status"], "0", "{checked}");
}

#[tokio::test]
async fn a_keys_own_limits_take_the_place_of_the_files() {
    let Some(app) = spawn_app_with(|s| s.limits = limits(&[("per_destination", "5/10m")])).await
    else {
        return;
    };
    let (key, secret) = app.new_key(true).await;
    let mut own = KeyLimits::default();
    own.set("per_destination", "1/10m").unwrap();
    let none = KeyLimits::default();
    let set = app.app.store().set_key_limits(&key, &none, own).await;
    assert_eq!(set.unwrap(), verifyd::store::LimitsSet::Set);
    // As a running server's refresh does within 2 s.
    app.app.reload_keys().await.unwrap();
    let as_key =
        |path: &'static str, key: &str, secret: &str, params: Vec<(&'static str, String)>| {
            let mut form = vec![
                ("api_key", key.to_owned()),
                ("api_secret", secret.to_owned()),
            ];
            form.extend(params);
            let app = &app;
            async move {
                let response = app
                    .client
                    .post(app.url(path))
                    .form(&form)
                    .send()
                    .await
                    .unwrap();
                v1_json(response).await
            }
        };
    let start = |key: &str, secret: &str| {
        let params = vec![("number", number(730)), ("brand", "AcmeInc".to_owned())];
        as_key("/verify/json", key, secret, params)
    };
    // Both starts within one fixed ten-minute window: across two, the sliding window would
    // count the first as partly slid out.
    let into_window = app.clock.now().timestamp().rem_euclid(600);
    app.advance(600 - into_window).await;
    let first = start(&key, &secret).await;
    assert_eq!(first["status"], "0", "{first}");
    let id = first["request_id"].as_str().unwrap().to_owned();
    app.advance(31).await;
    let cancel = vec![("request_id", id), ("cmd", "cancel".to_owned())];
    let cancelled = as_key("/verify/control/json", &key, &secret, cancel).await;
    assert_eq!(cancelled["status"], "0", "{cancelled}");
    let second = start(&key, &secret).await;
    assert_eq!(second["status"], "1", "the key's own 1/10m: {second}");
    // The test's own key keeps the file's five.
    let mine = start(&app.key, &app.secret).await;
    assert_eq!(mine["status"], "0", "{mine}");
}

#[tokio::test]
async fn numbers_of_one_workflow_in_one_prefix_count_once_and_a_malformed_check_is_no_search() {
    let Some(app) = spawn_app_with(|s| {
        s.limits = limits(&[("per_prefix", "2/h"), ("searches_per_second", "1")])
    })
    .await
    else {
        return;
    };
    // 447700100740 and 447700100741: one prefix, one start.
    let id = app
        .v2_start(json!({ "brand": "Acme", "workflow": [
            { "channel": "sms", "to": number(740) }, { "channel": "voice", "to": number(741) }] }))
        .await;
    app.v2_start(json!({ "brand": "Acme", "workflow": [{ "channel": "sms", "to": number(742) }] }))
        .await;
    let third = app
        .v2(
            Method::POST,
            "/v2/verify",
            Some(json!({ "brand": "Acme", "workflow": [{ "channel": "sms", "to": number(743) }] })),
            Auth::Basic,
        )
        .await;
    problem(&third, 429, "throttled");

    let shown = app
        .v2(Method::GET, &format!("/v2/verify/{id}"), None, Auth::Basic)
        .await;
    assert_eq!(shown.status, 200);
    // The one search of this second is spent; a check with a malformed body is still a 422.
    let malformed = app
        .v2(
            Method::POST,
            &format!("/v2/verify/{id}"),
            Some(json!({ "code": 12 })),
            Auth::Basic,
        )
        .await;
    problem(&malformed, 422, "invalid-params");
}

#[tokio::test]
async fn starts_count_per_client_address_and_an_ipv6_client_as_its_64() {
    let Some(app) = spawn_app_with(|s| s.limits = limits(&[("per_ip", "2/h")])).await else {
        return;
    };
    let start = |to: String, ip: &'static str| {
        let app = &app;
        async move {
            app.call(
                "/verify/json",
                &[("number", &to), ("brand", "AcmeInc"), ("ip_address", ip)],
            )
            .await
        }
    };
    assert_eq!(start(number(730), "203.0.113.5").await["status"], "0");
    assert_eq!(start(number(731), "203.0.113.5").await["status"], "0");
    let third = start(number(732), "203.0.113.5").await;
    assert_eq!(third["status"], "1", "{third}");
    assert!(third["error_text"]
        .as_str()
        .unwrap()
        .contains("per IP address"));
    assert!(app.inbox(&number(732)).await.is_empty(), "nothing was sent");
    // Another address, and a start that names none, are not held back.
    assert_eq!(start(number(732), "203.0.113.6").await["status"], "0");
    let unnamed = app
        .call(
            "/verify/json",
            &[("number", &number(733)), ("brand", "AcmeInc")],
        )
        .await;
    assert_eq!(unnamed["status"], "0", "{unnamed}");
    // A wrong address is the caller's mistake, not a way around the limit.
    let wrong = start(number(734), "203.0.113.999").await;
    assert_eq!(wrong["status"], "3", "{wrong}");
    assert_eq!(wrong["error_text"], "Invalid value for param: ip_address");

    // v2: one IPv6 /64 is one client, in the body or in verifyd's header.
    let body = |n: u32, ip: Option<&str>| {
        let mut b = json!({ "brand": "Acme", "workflow": [{ "channel": "sms", "to": number(n) }] });
        if let Some(ip) = ip {
            b["ip_address"] = json!(ip);
        }
        b
    };
    app.v2_start(body(740, Some("2001:db8:7:7::1"))).await;
    let with_header = app
        .client
        .post(app.url("/v2/verify"))
        .basic_auth(&app.key, Some(&app.secret))
        .header("Verifyd-Client-Ip", "2001:db8:7:7:ffff::2")
        .json(&body(741, None))
        .send()
        .await
        .unwrap();
    assert_eq!(with_header.status(), 202);
    let same_64 = app
        .v2(
            Method::POST,
            "/v2/verify",
            Some(body(742, Some("2001:db8:7:7:1::3"))),
            Auth::Basic,
        )
        .await;
    problem(&same_64, 429, "throttled");
    app.v2_start(body(742, Some("2001:db8:7:8::1"))).await;
    let bad = app
        .v2(
            Method::POST,
            "/v2/verify",
            Some(body(743, Some("localhost"))),
            Auth::Basic,
        )
        .await;
    problem(&bad, 422, "invalid-params");
}

#[tokio::test]
async fn a_keys_send_budget_holds_per_hour_and_per_day() {
    let Some(app) = spawn_app_with(|s| {
        s.limits = limits(&[
            ("verifications_per_hour", "2"),
            ("verifications_per_day", "3"),
        ])
    })
    .await
    else {
        return;
    };
    // A sliding window is estimated from the fixed windows (UTC days) it spans: two hours that
    // cross midnight would carry only part of the first day's starts. The test runs inside one
    // day, from 01:00 on, whatever the time it starts at.
    let now = verifyd::clock::Clock::now(app.clock.as_ref()).timestamp();
    app.advance(86_400 - now.rem_euclid(86_400) + 3_600).await;
    let id = app.start(&number(750)).await;
    app.start(&number(751)).await;
    let over = app
        .call(
            "/verify/json",
            &[("number", &number(752)), ("brand", "AcmeInc")],
        )
        .await;
    assert_eq!(over["status"], "1", "{over}");
    assert!(over["error_text"]
        .as_str()
        .unwrap()
        .contains("verifications per hour"));
    // Checks and searches spend nothing of it.
    let search = app
        .call("/verify/search/json", &[("request_id", &id)])
        .await;
    assert_eq!(search["status"], "IN PROGRESS", "{search}");

    // Two hours on, the hour has room again but the day's third is its last.
    app.advance(2 * 3600).await;
    app.start(&number(753)).await;
    let over_day = app
        .call(
            "/verify/json",
            &[("number", &number(754)), ("brand", "AcmeInc")],
        )
        .await;
    assert_eq!(over_day["status"], "1", "{over_day}");
    assert!(over_day["error_text"]
        .as_str()
        .unwrap()
        .contains("verifications per day"));
}
