use serde_json::json;

use crate::helpers::{number, spawn_app, v1_json};
use verifyd::store::KeyState;

#[tokio::test]
async fn credentials_are_accepted_from_basic_auth_query_form_and_json() {
    let Some(app) = spawn_app().await else {
        return;
    };
    let n = |i: u32| number(100 + i);

    let basic = app
        .client
        .post(app.url("/verify/json"))
        .basic_auth(&app.key, Some(&app.secret))
        .json(&json!({"number": n(1), "brand": "A"}))
        .send()
        .await
        .unwrap();
    assert_eq!(v1_json(basic).await["status"], "0", "Basic header");

    let query = app
        .client
        .post(app.url("/verify/json"))
        .query(&[("api_key", &app.key), ("api_secret", &app.secret)])
        .form(&[("number", n(2).as_str()), ("brand", "A")])
        .send()
        .await
        .unwrap();
    assert_eq!(v1_json(query).await["status"], "0", "query string");

    let form = app
        .client
        .post(app.url("/verify/json"))
        .form(&[
            ("api_key", app.key.as_str()),
            ("api_secret", &app.secret),
            ("number", &n(3)),
            ("brand", "A"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(v1_json(form).await["status"], "0", "form body");

    let body = app
        .client
        .post(app.url("/verify/json"))
        .json(&json!({"api_key": app.key, "api_secret": app.secret, "number": n(4), "brand": "A"}))
        .send()
        .await
        .unwrap();
    assert_eq!(v1_json(body).await["status"], "0", "JSON body");
}

#[tokio::test]
async fn missing_credentials_answer_status_2_on_every_endpoint() {
    let Some(app) = spawn_app().await else {
        return;
    };
    for path in [
        "/verify/json",
        "/verify/check/json",
        "/verify/search/json",
        "/verify/control/json",
        "/verify/psd2/json",
    ] {
        let response = app
            .client
            .post(app.url(path))
            .form(&[("number", number(110).as_str())])
            .send()
            .await
            .unwrap();
        let body = v1_json(response).await;
        assert_eq!(body["status"], "2", "{path}: {body}");
        assert_eq!(body["error_text"], "Missing api_key", "{path}: {body}");
    }
    let response = app
        .client
        .post(app.url("/verify/json"))
        .form(&[("api_key", app.key.as_str())])
        .send()
        .await
        .unwrap();
    let body = v1_json(response).await;
    assert_eq!(
        (body["status"].as_str(), body["error_text"].as_str()),
        (Some("2"), Some("Missing api_secret"))
    );
}

#[tokio::test]
async fn wrong_credentials_answer_status_4_with_each_endpoints_text() {
    let Some(app) = spawn_app().await else {
        return;
    };
    for (path, text) in [
        ("/verify/json", "Invalid credentials were provided"),
        ("/verify/psd2/json", "Invalid credentials were provided"),
        ("/verify/check/json", "Bad credentials"),
        ("/verify/search/json", "Bad credentials"),
        ("/verify/control/json", "Bad credentials"),
    ] {
        let response = app
            .client
            .post(app.url(path))
            .basic_auth(&app.key, Some("wrong-secret"))
            .send()
            .await
            .unwrap();
        let body = v1_json(response).await;
        assert_eq!(body["status"], "4", "{path}: {body}");
        assert_eq!(body["error_text"], text, "{path}");
        let response = app
            .client
            .post(app.url(path))
            .basic_auth("nokey", Some(&app.secret))
            .send()
            .await
            .unwrap();
        assert_eq!(
            v1_json(response).await["status"],
            "4",
            "{path}: unknown key"
        );
    }
}

/// The server reads key changes made by other processes within its refresh interval (2 s); this
/// polls a side-effect-free call until the change shows, for at most 6 s.
async fn wait_for_status(app: &crate::helpers::TestApp, status: &str) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(6);
    loop {
        let body = app
            .call(
                "/verify/search/json",
                &[("request_id", "abcdef0123456789abcdef0123456789")],
            )
            .await;
        if body["status"] == status {
            return body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still {body}, expected status {status}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_disabled_key_answers_8_and_a_revoked_key_answers_4() {
    let Some(app) = spawn_app().await else {
        return;
    };
    let store = app.app.store();
    store
        .set_key_state(&app.key, KeyState::Disabled)
        .await
        .unwrap();
    wait_for_status(&app, "8").await;
    let body = app
        .call("/verify/json", &[("number", &number(120)), ("brand", "A")])
        .await;
    assert_eq!(body["status"], "8", "{body}");
    assert_eq!(
        body["error_text"],
        "The api_key you supplied is for an account that has been barred from submitting messages."
    );
    assert!(app.inbox(&number(120)).await.is_empty());

    store
        .set_key_state(&app.key, KeyState::Active)
        .await
        .unwrap();
    wait_for_status(&app, "101").await;

    store
        .set_key_state(&app.key, KeyState::Revoked)
        .await
        .unwrap();
    let body = wait_for_status(&app, "4").await;
    assert_eq!(body["error_text"], "Bad credentials");
}

#[tokio::test]
async fn a_key_created_while_the_server_runs_works_at_once() {
    let Some(app) = spawn_app().await else {
        return;
    };
    let (key, secret) = app.new_key(true).await;
    let response = app
        .client
        .get(app.url("/verify/json"))
        .query(&[
            ("api_key", key.as_str()),
            ("api_secret", &secret),
            ("number", &number(130)),
            ("brand", "A"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(v1_json(response).await["status"], "0");
}
