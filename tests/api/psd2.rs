use serde_json::json;

use crate::helpers::{number, spawn_app, v1_json};

#[tokio::test]
async fn a_psd2_request_names_the_payee_and_the_amount() {
    let Some(app) = spawn_app().await else {
        return;
    };
    let response = app
        .client
        .post(app.url("/verify/psd2/json"))
        .basic_auth(&app.key, Some(&app.secret))
        .json(&json!({"number": number(500), "payee": "Acme Shop", "amount": 48}))
        .send()
        .await
        .unwrap();
    let body = v1_json(response).await;
    assert_eq!(body["status"], "0", "{body}");
    let id = body["request_id"].as_str().unwrap();
    let sms = &app.messages_for(&number(500), id, 1).await[0];
    let text = sms["text"].as_str().unwrap();
    assert!(
        text.contains("Acme Shop") && text.contains("48.00"),
        "{text}"
    );
    assert_eq!(sms["locale"], "en-gb", "PSD2's default locale");
    let pin = crate::helpers::pin_in(text);
    let ok = app
        .call("/verify/check/json", &[("request_id", id), ("code", &pin)])
        .await;
    assert_eq!(ok["status"], "0");
}

#[tokio::test]
async fn a_psd2_amount_may_be_a_string_and_the_locale_comes_from_its_own_list() {
    let Some(app) = spawn_app().await else {
        return;
    };
    let body = app
        .call(
            "/verify/psd2/json",
            &[
                ("number", "359881234567"),
                ("payee", "Shop"),
                ("amount", "12.5"),
            ],
        )
        .await;
    assert_eq!(body["status"], "0", "{body}");
    let id = body["request_id"].as_str().unwrap();
    let m = &app.messages_for("359881234567", id, 1).await[0];
    assert_eq!(
        m["locale"], "bg-bg",
        "a Bulgarian number reads in Bulgarian"
    );
    assert!(m["text"].as_str().unwrap().contains("12.50"));

    let body = app
        .call(
            "/verify/psd2/json",
            &[
                ("number", &number(501)),
                ("payee", "Shop"),
                ("amount", "1"),
                ("lg", "ga-ie"),
            ],
        )
        .await;
    assert_eq!(body["status"], "0");
    let body = app
        .call(
            "/verify/psd2/json",
            &[
                ("number", &number(502)),
                ("payee", "Shop"),
                ("amount", "1"),
                ("lg", "en-us"),
            ],
        )
        .await;
    assert_eq!(
        (body["status"].as_str(), body["error_text"].as_str()),
        (Some("3"), Some("Invalid value for param: lg"))
    );
}

#[tokio::test]
async fn psd2_parameters_are_validated() {
    let Some(app) = spawn_app().await else {
        return;
    };
    let n = number(503);
    let body = app
        .call("/verify/psd2/json", &[("number", &n), ("amount", "1")])
        .await;
    assert_eq!(body["status"], "2");
    assert_eq!(
        body["error_text"],
        "Your request is incomplete and missing the mandatory parameter `payee`"
    );
    let body = app
        .call("/verify/psd2/json", &[("number", &n), ("payee", "Shop")])
        .await;
    assert_eq!(
        body["error_text"],
        "Your request is incomplete and missing the mandatory parameter `amount`"
    );
    let body = app
        .call(
            "/verify/psd2/json",
            &[("number", &n), ("payee", "Shop"), ("amount", "-3")],
        )
        .await;
    assert_eq!(body["error_text"], "Invalid value for param: amount");
    let body = app
        .call(
            "/verify/psd2/json",
            &[
                ("number", &n),
                ("payee", "1234567890123456789"),
                ("amount", "1"),
            ],
        )
        .await;
    assert_eq!(body["error_text"], "Invalid value for param: payee");
    let body = app
        .call("/verify/psd2/json", &[("payee", "Shop"), ("amount", "1")])
        .await;
    assert_eq!(
        body["error_text"],
        "Your request is incomplete and missing the mandatory parameter `number`"
    );
}

#[tokio::test]
async fn psd2_has_no_xml() {
    let Some(app) = spawn_app().await else {
        return;
    };
    let response = app
        .client
        .post(app.url("/verify/psd2/xml"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn psd2_validates_code_length_workflow_and_timings_like_a_request() {
    let Some(app) = spawn_app().await else {
        return;
    };
    let n = number(504);
    for (param, value) in [
        ("code_length", "5"),
        ("workflow_id", "8"),
        ("pin_expiry", "30"),
        ("next_event_wait", "1000"),
        ("country", "ZZ"),
    ] {
        let body = app
            .call(
                "/verify/psd2/json",
                &[
                    ("number", &n),
                    ("payee", "Shop"),
                    ("amount", "1"),
                    (param, value),
                ],
            )
            .await;
        assert_eq!(
            body["error_text"],
            format!("Invalid value for param: {param}"),
            "{param}: {body}"
        );
    }
    let body = app
        .call(
            "/verify/psd2/json",
            &[
                ("number", &n),
                ("payee", "Shop"),
                ("amount", "1"),
                ("code_length", "6"),
                ("workflow_id", "6"),
            ],
        )
        .await;
    assert_eq!(body["status"], "0");
    let id = body["request_id"].as_str().unwrap();
    assert_eq!(app.pin(&n, id).await.len(), 6);
}

#[tokio::test]
async fn amounts_that_two_decimals_would_round_are_refused() {
    let Some(app) = spawn_app().await else {
        return;
    };
    for amount in ["0.001", "0.005", "48.123", "0", "0.00", "-1", "1e3"] {
        let body = app
            .call(
                "/verify/psd2/json",
                &[
                    ("number", &number(510)),
                    ("payee", "Shop"),
                    ("amount", amount),
                ],
            )
            .await;
        assert_eq!(body["status"], "3", "{amount}: {body}");
        assert_eq!(
            body["error_text"], "Invalid value for param: amount",
            "{amount}"
        );
    }
    assert!(app.inbox(&number(510)).await.is_empty());
    let body = app
        .call(
            "/verify/psd2/json",
            &[
                ("number", &number(510)),
                ("payee", "Shop"),
                ("amount", "0.01"),
            ],
        )
        .await;
    assert_eq!(body["status"], "0", "{body}");
    let id = body["request_id"].as_str().unwrap();
    let sms = &app.messages_for(&number(510), id, 1).await[0];
    assert!(sms["text"].as_str().unwrap().contains("0.01 EUR"), "{sms}");
}

#[tokio::test]
async fn a_payee_with_a_line_break_is_refused() {
    let Some(app) = spawn_app().await else {
        return;
    };
    for payee in ["Shop\nCode: 0000", "Shop\u{202e}", "Shop\u{0}"] {
        let body = app
            .call(
                "/verify/psd2/json",
                &[("number", &number(511)), ("payee", payee), ("amount", "5")],
            )
            .await;
        assert_eq!(body["status"], "3", "{payee:?}: {body}");
        assert_eq!(body["error_text"], "Invalid value for param: payee");
    }
    assert!(app.inbox(&number(511)).await.is_empty());
}
