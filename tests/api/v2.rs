//! Verify v2 end to end: every endpoint, status and field against the current specification, with
//! Basic and JWT authentication, on this binary's engine.

use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use verifyd::auth::apps::create_app;
use verifyd::crypto::ServerKey;

use crate::helpers::{number, pin_in, spawn_app, wrong_code, TestApp};

const PRIVATE_KEY: &str = include_str!("../fixtures/vonage-test-key.pem");
const PUBLIC_KEY: &str = include_str!("../fixtures/vonage-test-key.pub.pem");

pub(crate) enum Auth<'a> {
    Basic,
    Jwt(&'a str),
    Header(&'a str),
    None,
}

pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) content_type: String,
    pub(crate) body: Value,
}

impl TestApp {
    pub(crate) async fn v2(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        auth: Auth<'_>,
    ) -> Answer {
        let mut request = self.client.request(method, self.url(path));
        request = match auth {
            Auth::Basic => request.basic_auth(&self.key, Some(&self.secret)),
            Auth::Jwt(token) => request.bearer_auth(token),
            Auth::Header(value) => request.header("authorization", value),
            Auth::None => request,
        };
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
        };
        Answer {
            status,
            content_type,
            body,
        }
    }

    /// Starts `body` with Basic credentials; its request id.
    pub(crate) async fn v2_start(&self, body: Value) -> String {
        let a = self
            .v2(Method::POST, "/v2/verify", Some(body), Auth::Basic)
            .await;
        assert_eq!(a.status, 202, "{}", a.body);
        a.body["request_id"].as_str().unwrap().to_owned()
    }

    pub(crate) async fn v2_check(&self, id: &str, code: &str) -> Answer {
        let path = format!("/v2/verify/{id}");
        self.v2(
            Method::POST,
            &path,
            Some(json!({ "code": code })),
            Auth::Basic,
        )
        .await
    }

    /// The code of the newest message of request `id` on `channel`.
    pub(crate) async fn v2_code(&self, to: &str, id: &str, channel: &str, n: usize) -> String {
        let hex = id.replace('-', "");
        let list = self.messages_for(to, &hex, n).await;
        let newest = list
            .iter()
            .find(|m| m["channel"] == channel)
            .unwrap_or_else(|| panic!("no {channel} message in {list:?}"));
        pin_in(newest["text"].as_str().unwrap())
    }

    async fn application(&self) -> String {
        let store = self.app.store();
        // The signature secret is sealed with a key of its own here: nothing in these tests
        // opens it.
        let app = create_app(
            store.as_ref(),
            store.as_ref(),
            &ServerKey::from_bytes([5; 32]),
            &self.key,
            PUBLIC_KEY,
            Some("https://example.com/status"),
            chrono::Utc::now(),
        )
        .await
        .unwrap();
        app.application_id
    }
}

fn sms(to: &str) -> Value {
    json!({ "channel": "sms", "to": to })
}

fn voice(to: &str) -> Value {
    json!({ "channel": "voice", "to": to })
}

pub(crate) fn problem(a: &Answer, status: u16, slug: &str) {
    assert_eq!(a.status, status, "{}", a.body);
    assert_eq!(a.content_type, "application/problem+json", "{}", a.body);
    let kind = a.body["type"].as_str().unwrap();
    assert!(
        kind.starts_with("https://developer.vonage.com/en/api-errors")
            && kind.ends_with(&format!("#{slug}")),
        "{kind}"
    );
    assert!(
        a.body["title"].is_string() && a.body["detail"].is_string(),
        "{}",
        a.body
    );
    assert!(
        a.body["instance"].as_str().is_some_and(|i| !i.is_empty()),
        "{}",
        a.body
    );
}

fn jwt(application_id: &str, expires_in: i64) -> String {
    let now = chrono::Utc::now().timestamp();
    signed(json!({
        "application_id": application_id,
        "iat": now,
        "jti": "5b1c4f0e-7a9d-4f39-8f3c-2d4b6a1e9c07",
        "exp": now + expires_in,
    }))
}

fn signed(claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_rsa_pem(PRIVATE_KEY.as_bytes()).unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn a_request_is_created_checked_wrong_then_right_and_found_by_v1_search() {
    let Some(app) = spawn_app().await else { return };
    let to = number(600);
    let id = app
        .v2_start(json!({ "brand": "AcmeInc", "workflow": [sms(&to)], "client_ref": "ref1" }))
        .await;
    assert!(uuid::Uuid::try_parse(&id).is_ok(), "{id}");
    let code = app.v2_code(&to, &id, "sms", 1).await;
    assert_eq!(code.len(), 4);
    let sms_text = app.messages_for(&to, &id.replace('-', ""), 1).await[0]["text"].clone();
    assert!(sms_text.as_str().unwrap().contains("AcmeInc"), "{sms_text}");

    let wrong = app.v2_check(&id, &wrong_code(&code)).await;
    problem(&wrong, 400, "invalid-code");
    let right = app.v2_check(&id, &code).await;
    assert_eq!(right.status, 200);
    assert_eq!(right.content_type, "application/json");
    assert_eq!(
        right.body,
        json!({ "request_id": id, "status": "completed" })
    );

    let shown = app
        .v2(Method::GET, &format!("/v2/verify/{id}"), None, Auth::Basic)
        .await;
    assert_eq!(shown.status, 200);
    assert_eq!(shown.body["status"], "completed");
    assert_eq!(shown.body["client_ref"], "ref1");
    assert_eq!(shown.body["workflow"][0]["status"], "completed");
    assert_eq!(shown.body["checks"].as_array().unwrap().len(), 2);

    let v1 = app
        .call(
            "/verify/search/json",
            &[("request_id", &id.replace('-', ""))],
        )
        .await;
    assert_eq!(v1["status"], "SUCCESS", "{v1}");
    assert_eq!(v1["number"], to.as_str());
}

#[tokio::test]
async fn three_wrong_codes_end_the_request_and_later_checks_are_gone() {
    let Some(app) = spawn_app().await else { return };
    let to = number(601);
    let id = app
        .v2_start(json!({ "brand": "Acme", "workflow": [sms(&to)] }))
        .await;
    let code = app.v2_code(&to, &id, "sms", 1).await;
    let wrong = wrong_code(&code);
    problem(&app.v2_check(&id, &wrong).await, 400, "invalid-code");
    problem(&app.v2_check(&id, &wrong).await, 400, "invalid-code");
    problem(&app.v2_check(&id, &wrong).await, 410, "expired");
    problem(&app.v2_check(&id, &code).await, 410, "expired");
    let shown = app
        .v2(Method::GET, &format!("/v2/verify/{id}"), None, Auth::Basic)
        .await;
    assert_eq!(shown.body["status"], "failed");
}

#[tokio::test]
async fn any_code_of_4_to_10_characters_is_checked_and_one_no_pin_can_be_is_a_wrong_try() {
    let Some(app) = spawn_app().await else { return };
    let to = number(602);
    // The start's path as the specification writes it, with its slash.
    let started = app
        .v2(
            Method::POST,
            "/v2/verify/",
            Some(json!({ "brand": "Acme", "workflow": [sms(&to)] })),
            Auth::Basic,
        )
        .await;
    assert_eq!(started.status, 202, "{}", started.body);
    let id = started.body["request_id"].as_str().unwrap().to_owned();
    let code = app.v2_code(&to, &id, "sms", 1).await;
    problem(&app.v2_check(&id, "ab-d").await, 400, "invalid-code");
    problem(&app.v2_check(&id, "été été").await, 400, "invalid-code");
    // Those were two of the three tries.
    problem(&app.v2_check(&id, "x.y.z").await, 410, "expired");
    problem(&app.v2_check(&id, &code).await, 410, "expired");

    // A v1 custom PIN with a dash is checked through v2 too.
    let v1 = app
        .call(
            "/verify/json",
            &[
                ("number", &number(603)),
                ("brand", "AcmeInc"),
                ("pin_code", "AKFG-3424"),
            ],
        )
        .await;
    assert_eq!(v1["status"], "0", "{v1}");
    let uuid = uuid::Uuid::parse_str(v1["request_id"].as_str().unwrap()).unwrap();
    let checked = app
        .v2_check(&uuid.hyphenated().to_string(), "AKFG-3424")
        .await;
    assert_eq!(checked.status, 200, "{}", checked.body);
}

#[tokio::test]
async fn a_second_request_to_the_same_number_is_a_conflict_naming_the_first() {
    let Some(app) = spawn_app().await else { return };
    let to = number(602);
    let first = app
        .v2_start(json!({ "brand": "Acme", "workflow": [sms(&to)] }))
        .await;
    let second = app
        .v2(
            Method::POST,
            "/v2/verify",
            Some(json!({ "brand": "Acme", "workflow": [voice(&to)] })),
            Auth::Basic,
        )
        .await;
    problem(&second, 409, "concurrent");
    assert_eq!(second.body["request_id"], first.as_str());
}

#[tokio::test]
async fn cancel_is_refused_for_30_seconds_then_ends_the_request() {
    let Some(app) = spawn_app().await else { return };
    let to = number(603);
    let id = app
        .v2_start(json!({ "brand": "Acme", "workflow": [sms(&to), voice(&to)] }))
        .await;
    let path = format!("/v2/verify/{id}");
    let code = app.v2_code(&to, &id, "sms", 1).await;
    problem(
        &app.v2(Method::DELETE, &path, None, Auth::Basic).await,
        409,
        "conflict",
    );
    app.advance(31).await;
    let cancelled = app.v2(Method::DELETE, &path, None, Auth::Basic).await;
    assert_eq!(cancelled.status, 204);
    assert_eq!(cancelled.body, Value::Null);
    problem(
        &app.v2(Method::DELETE, &path, None, Auth::Basic).await,
        404,
        "request-not-found",
    );
    problem(&app.v2_check(&id, &code).await, 404, "request-not-found");
    let shown = app.v2(Method::GET, &path, None, Auth::Basic).await;
    assert_eq!(shown.body["status"], "cancelled");
    assert_eq!(shown.body["workflow"][1]["status"], "unused");
}

#[tokio::test]
async fn cancel_is_refused_once_the_second_channel_has_started() {
    let Some(app) = spawn_app().await else { return };
    let to = number(604);
    let id = app
        .v2_start(
            json!({ "brand": "Acme", "channel_timeout": 60, "workflow": [sms(&to), voice(&to)] }),
        )
        .await;
    app.advance(60).await;
    app.v2_code(&to, &id, "voice", 2).await;
    let path = format!("/v2/verify/{id}");
    problem(
        &app.v2(Method::DELETE, &path, None, Auth::Basic).await,
        409,
        "conflict",
    );
}

#[tokio::test]
async fn next_workflow_calls_now_with_a_new_code_and_the_old_one_stops_working() {
    let Some(app) = spawn_app().await else { return };
    let to = number(605);
    let id = app
        .v2_start(json!({ "brand": "Acme", "workflow": [sms(&to), voice(&to)] }))
        .await;
    let sms_code = app.v2_code(&to, &id, "sms", 1).await;
    // As the Node SDK sends it: no body, labelled JSON.
    let next = app
        .client
        .post(app.url(&format!("/v2/verify/{id}/next_workflow")))
        .basic_auth(&app.key, Some(&app.secret))
        .header(CONTENT_TYPE, "application/json")
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(next.status(), 200);
    let voice_code = app.v2_code(&to, &id, "voice", 2).await;
    assert_ne!(
        voice_code, sms_code,
        "each channel has its own code unless reuse_code"
    );
    problem(&app.v2_check(&id, &sms_code).await, 400, "invalid-code");
    assert_eq!(app.v2_check(&id, &voice_code).await.status, 200);
    let shown = app
        .v2(Method::GET, &format!("/v2/verify/{id}"), None, Auth::Basic)
        .await;
    let steps: Vec<&str> = shown.body["workflow"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["expired", "completed"]);
}

#[tokio::test]
async fn reuse_code_keeps_the_code_and_no_channel_is_left_after_the_last() {
    let Some(app) = spawn_app().await else { return };
    let to = number(606);
    let id = app
        .v2_start(json!({ "brand": "Acme", "workflow": [sms(&to), { "channel": "voice", "to": to, "reuse_code": true }] }))
        .await;
    let sms_code = app.v2_code(&to, &id, "sms", 1).await;
    let path = format!("/v2/verify/{id}/next_workflow");
    assert_eq!(
        app.v2(Method::POST, &path, None, Auth::Basic).await.status,
        200
    );
    assert_eq!(app.v2_code(&to, &id, "voice", 2).await, sms_code);
    problem(
        &app.v2(Method::POST, &path, None, Auth::Basic).await,
        409,
        "no-events",
    );
    let unknown = "/v2/verify/0194f4a2-c1d3-7e3a-9b1c-2d3e4f506172/next_workflow";
    problem(
        &app.v2(Method::POST, unknown, None, Auth::Basic).await,
        404,
        "request-not-found",
    );
}

#[tokio::test]
async fn each_channel_lasts_channel_timeout_and_the_request_expires_after_the_last() {
    let Some(app) = spawn_app().await else { return };
    let to = number(607);
    let id = app
        .v2_start(
            json!({ "brand": "Acme", "channel_timeout": 60, "workflow": [sms(&to), voice(&to)] }),
        )
        .await;
    app.advance(59).await;
    assert_eq!(
        app.messages_for(&to, &id.replace('-', ""), 1).await.len(),
        1
    );
    app.advance(1).await;
    let voice_code = app.v2_code(&to, &id, "voice", 2).await;
    app.advance(60).await;
    let shown = app
        .v2(Method::GET, &format!("/v2/verify/{id}"), None, Auth::Basic)
        .await;
    assert_eq!(shown.body["status"], "expired", "{}", shown.body);
    assert!(shown.body["finalized_at"].is_string());
    problem(
        &app.v2_check(&id, &voice_code).await,
        404,
        "request-not-found",
    );
}

#[tokio::test]
async fn code_length_sets_the_digits_and_an_app_hash_ends_the_sms() {
    let Some(app) = spawn_app().await else { return };
    let to = number(608);
    let id = app
        .v2_start(json!({ "brand": "Acme", "code_length": 6,
            "workflow": [{ "channel": "sms", "to": to, "app_hash": "FA+9qCX9VSu" }] }))
        .await;
    let message = &app.messages_for(&to, &id.replace('-', ""), 1).await[0];
    let text = message["text"].as_str().unwrap();
    assert!(text.ends_with("\nFA+9qCX9VSu"), "{text}");
    assert_eq!(message["from"], "Acme", "the sender defaults to the brand");
    let code = pin_in(text);
    assert_eq!(code.len(), 6);
    assert_eq!(app.v2_check(&id, &code).await.status, 200);
}

#[tokio::test]
async fn locale_sender_and_fraud_check_are_taken_as_the_spec_names_them() {
    let Some(app) = spawn_app().await else { return };
    let to = number(613);
    let id = app
        .v2_start(
            json!({ "brand": "Acme", "locale": "de-de", "fraud_check": true,
            "workflow": [{ "channel": "sms", "to": to, "from": "447700400080" }] }),
        )
        .await;
    let message = &app.messages_for(&to, &id.replace('-', ""), 1).await[0];
    assert_eq!(message["from"], "447700400080");
    assert_eq!(message["locale"], "de-de");
    let text = message["text"].as_str().unwrap();
    assert!(text.contains("Bestätigungscode"), "German: {text}");
    let shown = app
        .v2(Method::GET, &format!("/v2/verify/{id}"), None, Auth::Basic)
        .await;
    assert_eq!(shown.body["locale"], "de-de");
}

#[tokio::test]
async fn invalid_parameters_are_each_named_in_one_422() {
    let Some(app) = spawn_app().await else { return };
    let a = app
        .v2(
            Method::POST,
            "/v2/verify",
            Some(
                json!({ "brand": "Acme/Inc", "channel_timeout": 10, "code_length": 11,
                "workflow": [{ "channel": "rcs", "to": "447700100600" }, sms("12")] }),
            ),
            Auth::Basic,
        )
        .await;
    problem(&a, 422, "invalid-params");
    let names: Vec<&str> = a.body["invalid_parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert!(p["reason"].is_string());
            p["name"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        names,
        [
            "brand",
            "channel_timeout",
            "code_length",
            "workflow[0].channel",
            "workflow[1].to"
        ]
    );
    let missing = app
        .v2(Method::POST, "/v2/verify", Some(json!({})), Auth::Basic)
        .await;
    problem(&missing, 422, "invalid-params");
    let to = number(614);
    let id = app
        .v2_start(json!({ "brand": "Acme", "workflow": [sms(&to)] }))
        .await;
    let code = app
        .v2(
            Method::POST,
            &format!("/v2/verify/{id}"),
            Some(json!({ "code": "12" })),
            Auth::Basic,
        )
        .await;
    problem(&code, 422, "invalid-params");
    let unknown = app
        .v2(
            Method::POST,
            "/v2/verify/0194f4a2-c1d3-7e3a-9b1c-2d3e4f506172",
            Some(json!({ "code": "12" })),
            Auth::Basic,
        )
        .await;
    problem(&unknown, 404, "request-not-found");
}

#[tokio::test]
async fn a_key_that_may_not_choose_codes_is_refused_a_custom_code() {
    let Some(app) = spawn_app().await else { return };
    let (key, secret) = app.new_key(false).await;
    let body = json!({ "brand": "Acme", "code": "AKFG3424", "workflow": [sms(&number(609))] });
    let refused = app
        .client
        .post(app.url("/v2/verify"))
        .basic_auth(&key, Some(&secret))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 422);
    let id = app.v2_start(body).await;
    assert_eq!(app.v2_check(&id, "AKFG3424").await.status, 200);
}

#[tokio::test]
async fn unknown_and_malformed_ids_are_not_found() {
    let Some(app) = spawn_app().await else { return };
    for path in [
        "/v2/verify/0194f4a2-c1d3-7e3a-9b1c-2d3e4f506172",
        "/v2/verify/not-a-uuid",
        "/v2/verify/0194f4a2c1d37e3a9b1c2d3e4f506172",
    ] {
        problem(
            &app.v2(Method::GET, path, None, Auth::Basic).await,
            404,
            "request-not-found",
        );
        problem(
            &app.v2(Method::DELETE, path, None, Auth::Basic).await,
            404,
            "request-not-found",
        );
        let check = app
            .v2(
                Method::POST,
                path,
                Some(json!({ "code": "1234" })),
                Auth::Basic,
            )
            .await;
        problem(&check, 404, "request-not-found");
    }
}

#[tokio::test]
async fn a_request_of_another_account_is_not_found() {
    let Some(app) = spawn_app().await else { return };
    let id = app
        .v2_start(json!({ "brand": "Acme", "workflow": [sms(&number(610))] }))
        .await;
    let (key, secret) = app.new_key(true).await;
    let other = app
        .client
        .get(app.url(&format!("/v2/verify/{id}")))
        .basic_auth(&key, Some(&secret))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
}

#[tokio::test]
async fn an_application_jwt_acts_for_its_key_and_bad_tokens_are_refused() {
    let Some(app) = spawn_app().await else { return };
    let application = app.application().await;
    let token = jwt(&application, 900);
    let to = number(611);
    let started = app
        .v2(
            Method::POST,
            "/v2/verify",
            Some(json!({ "brand": "Acme", "workflow": [sms(&to)] })),
            Auth::Jwt(&token),
        )
        .await;
    assert_eq!(started.status, 202, "{}", started.body);
    let id = started.body["request_id"].as_str().unwrap().to_owned();
    let shown = app
        .v2(Method::GET, &format!("/v2/verify/{id}"), None, Auth::Basic)
        .await;
    assert_eq!(
        shown.status, 200,
        "the request belongs to the application's key"
    );

    let body = Some(json!({ "brand": "Acme", "workflow": [sms(&number(612))] }));
    problem(
        &app.v2(
            Method::POST,
            "/v2/verify",
            body.clone(),
            Auth::Jwt(&jwt(&application, -120)),
        )
        .await,
        401,
        "jwt-expired",
    );
    let other_app = jwt("0d9e1b2c-3a4f-4e5d-9c8b-7a6f5e4d3c2b", 900);
    problem(
        &app.v2(
            Method::POST,
            "/v2/verify",
            body.clone(),
            Auth::Jwt(&other_app),
        )
        .await,
        401,
        "unauthorized",
    );
    let now = chrono::Utc::now().timestamp();
    let b64 = |v: Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let claims = json!({ "application_id": application, "iat": now, "exp": now + 900 });
    let unsigned = format!(
        "{}.{}.",
        b64(json!({ "alg": "none", "typ": "JWT" })),
        b64(claims.clone())
    );
    // HS256 with the public key as its secret: the algorithm confusion attack.
    let confused = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(PUBLIC_KEY.as_bytes()),
    )
    .unwrap();
    let no_exp = signed(json!({ "application_id": application, "iat": now }));
    let not_yet =
        signed(json!({ "application_id": application, "exp": now + 900, "nbf": now + 600 }));
    let for_years = jwt(&application, 10 * 365 * 24 * 3600);
    for token in [unsigned, confused, no_exp, not_yet, for_years] {
        let a = app
            .v2(Method::POST, "/v2/verify", body.clone(), Auth::Jwt(&token))
            .await;
        problem(&a, 401, "unauthorized");
    }
    let mut forged = token.clone();
    forged.push('x');
    problem(
        &app.v2(Method::POST, "/v2/verify", body.clone(), Auth::Jwt(&forged))
            .await,
        401,
        "unauthorized",
    );
    problem(
        &app.v2(Method::POST, "/v2/verify", body.clone(), Auth::None)
            .await,
        401,
        "unauthorized",
    );
    problem(
        &app.v2(
            Method::POST,
            "/v2/verify",
            body.clone(),
            Auth::Header("Basic bm90OnJpZ2h0"),
        )
        .await,
        401,
        "unauthorized",
    );
    app.app
        .store()
        .set_key_state(&app.key, verifyd::store::KeyState::Disabled)
        .await
        .unwrap();
    // The key snapshot refreshes every 2 s; a disabled key is refused within that.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let a = app
            .v2(Method::POST, "/v2/verify", body.clone(), Auth::Jwt(&token))
            .await;
        if a.status == 401 {
            problem(&a, 401, "unauthorized");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", a.body);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_wrong_method_or_a_body_too_large_is_answered_as_a_problem_too() {
    let Some(app) = spawn_app().await else { return };
    let put = app.v2(Method::PUT, "/v2/verify", None, Auth::Basic).await;
    problem(&put, 405, "method-not-allowed");
    let large = json!({ "brand": "A", "padding": "x".repeat(70_000) });
    let too_large = app
        .v2(Method::POST, "/v2/verify", Some(large), Auth::Basic)
        .await;
    problem(&too_large, 413, "payload-too-large");
}

#[tokio::test]
async fn an_email_step_reaches_the_inbox_under_its_address_and_its_code_checks_out() {
    let Some(app) = spawn_app().await else { return };
    let address = "alice.v2@example.com";
    let id = app
        .v2_start(json!({ "brand": "Acme", "workflow": [{ "channel": "email", "to": address }] }))
        .await;
    let code = app.v2_code(address, &id, "email", 1).await;
    assert_eq!(app.v2_check(&id, &code).await.status, 200);
    let shown = app
        .v2(Method::GET, &format!("/v2/verify/{id}"), None, Auth::Basic)
        .await;
    assert_eq!(shown.body["workflow"][0]["channel"], "email");
    assert_eq!(shown.body["workflow"][0]["to"], address);
    let bad = app
        .v2(
            Method::POST,
            "/v2/verify",
            Some(json!({ "brand": "Acme", "workflow": [{ "channel": "email", "to": "not an address" }] })),
            Auth::Basic,
        )
        .await;
    problem(&bad, 422, "invalid-params");
}
