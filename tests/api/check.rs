use crate::helpers::{number, spawn_app, spawn_app_with, wrong_code};
use verifyd::domain::Price;

const WRONG: &str = "The code inserted does not match the expected value";
const TOO_MANY: &str = "The wrong code was provided too many times. Request terminated";

#[tokio::test]
async fn the_right_code_answers_0_with_event_id_price_and_currency() {
    let Some(app) = spawn_app().await else {
        return;
    };
    let id = app.start(&number(200)).await;
    let pin = app.pin(&number(200), &id).await;
    let sms = app.messages_for(&number(200), &id, 1).await[0]["id"].clone();
    let body = app
        .call("/verify/check/json", &[("request_id", &id), ("code", &pin)])
        .await;
    assert_eq!(body["status"], "0", "{body}");
    assert_eq!(body["request_id"], id.as_str());
    assert_eq!(body["event_id"], sms);
    assert_eq!(body["price"], "0.00000000");
    assert_eq!(body["currency"], "EUR");
    assert_eq!(body["estimated_price_messages_sent"], "0.00000000");
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "request_id",
            "event_id",
            "status",
            "price",
            "currency",
            "estimated_price_messages_sent"
        ]
    );
}

#[tokio::test]
async fn prices_are_configurable() {
    let Some(app) = spawn_app_with(|s| {
        s.pricing.verification = Price::parse("0.1").unwrap();
        s.pricing.per_sms = Price::parse("0.0333").unwrap();
        s.pricing.currency = "USD".into();
    })
    .await
    else {
        return;
    };
    let id = app.start(&number(201)).await;
    let pin = app.pin(&number(201), &id).await;
    let body = app
        .call("/verify/check/json", &[("request_id", &id), ("code", &pin)])
        .await;
    assert_eq!(body["price"], "0.10000000");
    assert_eq!(body["currency"], "USD");
    assert_eq!(body["estimated_price_messages_sent"], "0.03330000");
}

#[tokio::test]
async fn two_wrong_codes_answer_16_and_the_third_answers_17_and_fails_the_request() {
    let Some(app) = spawn_app().await else {
        return;
    };
    let id = app.start(&number(202)).await;
    let pin = app.pin(&number(202), &id).await;
    let bad = wrong_code(&pin);
    for _ in 0..2 {
        let body = app
            .call("/verify/check/json", &[("request_id", &id), ("code", &bad)])
            .await;
        assert_eq!(
            (body["status"].as_str(), body["error_text"].as_str()),
            (Some("16"), Some(WRONG))
        );
        assert_eq!(body["request_id"], id.as_str());
    }
    let body = app
        .call("/verify/check/json", &[("request_id", &id), ("code", &bad)])
        .await;
    assert_eq!(
        (body["status"].as_str(), body["error_text"].as_str()),
        (Some("17"), Some(TOO_MANY))
    );
    let body = app
        .call("/verify/check/json", &[("request_id", &id), ("code", &pin)])
        .await;
    assert_eq!(
        body["status"], "6",
        "even the right code is refused now: {body}"
    );
    let search = app
        .call("/verify/search/json", &[("request_id", &id)])
        .await;
    assert_eq!(search["status"], "FAILED");
}

#[tokio::test]
async fn a_check_on_a_verified_request_answers_6_with_the_spec_text() {
    let Some(app) = spawn_app().await else {
        return;
    };
    let id = app.start(&number(203)).await;
    let pin = app.pin(&number(203), &id).await;
    app.call("/verify/check/json", &[("request_id", &id), ("code", &pin)])
        .await;
    let body = app
        .call("/verify/check/json", &[("request_id", &id), ("code", &pin)])
        .await;
    assert_eq!(body["status"], "6");
    assert_eq!(
        body["error_text"],
        format!("The Vonage platform was unable to process this message for the following reason: Request '{id}' was not found or it has been verified already.")
    );
}

#[tokio::test]
async fn unknown_ids_and_other_keys_requests_answer_6() {
    let Some(app) = spawn_app().await else {
        return;
    };
    let unknown = app
        .call(
            "/verify/check/json",
            &[
                ("request_id", "abcdef0123456789abcdef0123456789"),
                ("code", "1234"),
            ],
        )
        .await;
    assert_eq!(unknown["status"], "6");
    let odd = app
        .call(
            "/verify/check/json",
            &[("request_id", "not-an-id"), ("code", "1234")],
        )
        .await;
    assert_eq!(odd["status"], "6");

    let id = app.start(&number(204)).await;
    let pin = app.pin(&number(204), &id).await;
    let (key, secret) = app.new_key(true).await;
    let response = app
        .client
        .post(app.url("/verify/check/json"))
        .basic_auth(&key, Some(&secret))
        .form(&[("request_id", id.as_str()), ("code", &pin)])
        .send()
        .await
        .unwrap();
    assert_eq!(crate::helpers::v1_json(response).await["status"], "6");
    let still = app
        .call("/verify/check/json", &[("request_id", &id), ("code", &pin)])
        .await;
    assert_eq!(
        still["status"], "0",
        "the other key's try did not touch this request"
    );
}

#[tokio::test]
async fn check_parameters_are_validated() {
    let Some(app) = spawn_app().await else {
        return;
    };
    let id = "abcdef0123456789abcdef0123456789";
    let body = app.call("/verify/check/json", &[("code", "1234")]).await;
    assert_eq!(body["status"], "2");
    assert_eq!(
        body["error_text"],
        "Your request is incomplete and missing the mandatory parameter `request_id`"
    );
    let body = app.call("/verify/check/json", &[("request_id", id)]).await;
    assert_eq!(body["status"], "2");
    let body = app
        .call(
            "/verify/check/json",
            &[("request_id", &"a".repeat(33)), ("code", "1234")],
        )
        .await;
    assert_eq!(
        (body["status"].as_str(), body["error_text"].as_str()),
        (Some("3"), Some("Invalid value for param: request_id"))
    );
    let body = app
        .call("/verify/check/json", &[("request_id", id), ("code", "12")])
        .await;
    assert_eq!(
        (body["status"].as_str(), body["error_text"].as_str()),
        (Some("3"), Some("Invalid value for param: code"))
    );
}

#[tokio::test]
async fn a_check_answers_xml_when_asked() {
    let Some(app) = spawn_app().await else {
        return;
    };
    let id = app.start(&number(205)).await;
    let response = app
        .client
        .post(app.url("/verify/check/xml"))
        .basic_auth(&app.key, Some(&app.secret))
        .form(&[("request_id", id.as_str()), ("code", "0000")])
        .send()
        .await
        .unwrap();
    let text = response.text().await.unwrap();
    assert!(
        text.contains(&format!(
            "<verify_response><request_id>{id}</request_id><status>"
        )),
        "{text}"
    );
}

#[tokio::test]
async fn check_and_control_work_with_get_too() {
    let Some(app) = spawn_app().await else {
        return;
    };
    let id = app.start(&number(206)).await;
    let pin = app.pin(&number(206), &id).await;
    let body = app
        .call_get(
            "/verify/control/json",
            &[("request_id", &id), ("cmd", "trigger_next_event")],
        )
        .await;
    assert_eq!(body["status"], "0");
    let body = app
        .call_get("/verify/check/json", &[("request_id", &id), ("code", &pin)])
        .await;
    assert_eq!(body["status"], "0");
}

/// POSTs `form` to an XML endpoint and returns the answer, which must parse as XML 1.0.
async fn xml_answer(
    app: &crate::helpers::TestApp,
    path: &str,
    key: &str,
    form: &[(&str, &str)],
) -> String {
    let response = app
        .client
        .post(app.url(path))
        .basic_auth(key, Some(&app.secret))
        .form(form)
        .send()
        .await
        .unwrap();
    let xml = response.text().await.unwrap();
    if let Err(e) = roxmltree::Document::parse(&xml) {
        panic!("{path} answered ill-formed XML ({e}): {xml:?}");
    }
    xml
}

#[tokio::test]
async fn a_request_id_with_control_characters_is_invalid_and_never_echoed_raw() {
    let Some(app) = spawn_app().await else {
        return;
    };
    let odd = "ab\u{1}c\u{1b}[2J\u{ffff}";
    let xml = xml_answer(
        &app,
        "/verify/check/xml",
        &app.key,
        &[("request_id", odd), ("code", "1234")],
    )
    .await;
    assert!(xml.contains("<status>3</status>"), "{xml}");
    assert!(xml.contains("<request_id></request_id>"), "{xml}");
    assert!(xml.contains("Invalid value for param: request_id"), "{xml}");
    // Refused before the request id is looked at: still echoed, still well-formed.
    let xml = xml_answer(
        &app,
        "/verify/check/xml",
        "wrong-key",
        &[("request_id", odd), ("code", "1234")],
    )
    .await;
    assert!(xml.contains("<status>4</status>"), "{xml}");
    for cmd in ["cancel", "trigger_next_event"] {
        let xml = xml_answer(
            &app,
            "/verify/control/xml",
            &app.key,
            &[("request_id", odd), ("cmd", cmd)],
        )
        .await;
        assert!(xml.contains("<status>3</status>"), "{xml}");
        assert!(!xml.contains("ab"), "not echoed: {xml}");
    }
}
