use serde_json::{json, Value};

use crate::helpers::{number, spawn_app, v1_json};

#[tokio::test]
async fn a_request_answers_a_32_hex_request_id_and_sends_an_sms() {
    let Some(app) = spawn_app().await else {
        return;
    };
    let body = app
        .call(
            "/verify/json",
            &[("number", &number(1)), ("brand", "AcmeInc")],
        )
        .await;
    assert_eq!(body["status"], "0");
    let id = body["request_id"].as_str().unwrap();
    assert_eq!(id.len(), 32);
    assert!(id
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    assert_eq!(body.as_object().unwrap().len(), 2, "{body}");

    let messages = app.messages_for(&number(1), id, 1).await;
    let sms = &messages[0];
    assert_eq!(sms["channel"], "sms");
    assert_eq!(sms["from"], "VERIFY", "default sender id");
    assert_eq!(sms["to"], number(1));
    let text = sms["text"].as_str().unwrap();
    assert!(text.contains("AcmeInc"), "{text}");
    assert_eq!(crate::helpers::pin_in(text).len(), 4, "default code length");
}

#[tokio::test]
async fn get_with_query_parameters_works_like_the_seed_curl_example() {
    let Some(app) = spawn_app().await else {
        return;
    };
    let body = app
        .call_get(
            "/verify/json",
            &[("number", &number(2)), ("brand", "AcmeInc")],
        )
        .await;
    assert_eq!(body["status"], "0", "{body}");
}

#[tokio::test]
async fn a_json_body_with_numbers_as_strings_and_strings_as_numbers_is_accepted() {
    let Some(app) = spawn_app().await else {
        return;
    };
    let body = json!({
        "api_key": app.key, "api_secret": app.secret,
        "number": 447700100003u64, "brand": "AcmeInc", "workflow_id": "6",
        "code_length": 6, "pin_expiry": "120", "lg": "en-gb"
    });
    let response = app
        .client
        .post(app.url("/verify/json"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let body = v1_json(response).await;
    assert_eq!(body["status"], "0", "{body}");
    let id = body["request_id"].as_str().unwrap();
    let pin = app.pin(&number(3), id).await;
    assert_eq!(pin.len(), 6);
}

#[tokio::test]
async fn a_form_body_labelled_json_is_read_as_a_form() {
    let Some(app) = spawn_app().await else {
        return;
    };
    let form = format!(
        "api_key={}&api_secret={}&number={}&brand=AcmeInc",
        app.key,
        app.secret,
        number(4)
    );
    let response = app
        .client
        .post(app.url("/verify/json"))
        .header("content-type", "application/json")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(v1_json(response).await["status"], "0");
}

#[tokio::test]
async fn a_json_body_without_content_type_is_read_as_json() {
    let Some(app) = spawn_app().await else {
        return;
    };
    let body =
        json!({"api_key": app.key, "api_secret": app.secret, "number": number(5), "brand": "X"});
    let response = app
        .client
        .post(app.url("/verify/json"))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(v1_json(response).await["status"], "0");
}

#[tokio::test]
async fn xml_requests_answer_xml_with_the_spec_root_element() {
    let Some(app) = spawn_app().await else {
        return;
    };
    let response = app
        .client
        .post(app.url("/verify/xml"))
        .form(&[
            ("api_key", app.key.as_str()),
            ("api_secret", &app.secret),
            ("number", &number(6)),
            ("brand", "AcmeInc"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/xml");
    let text = response.text().await.unwrap();
    assert!(text.contains("<verify_response><request_id>"), "{text}");
    assert!(
        text.contains("<status>0</status></verify_response>"),
        "{text}"
    );
}

#[tokio::test]
async fn an_unknown_format_is_not_found() {
    let Some(app) = spawn_app().await else {
        return;
    };
    let response = app
        .client
        .get(app.url("/verify/yaml"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

async fn expect(app: &crate::helpers::TestApp, params: &[(&str, &str)], status: &str, text: &str) {
    let body = app.call("/verify/json", params).await;
    assert_eq!(body["status"], status, "{params:?}: {body}");
    assert_eq!(body["error_text"], text, "{params:?}: {body}");
    assert_eq!(body["request_id"], "", "{params:?}: {body}");
}

#[tokio::test]
async fn every_validation_rule_of_the_request_is_enforced() {
    let Some(app) = spawn_app().await else {
        return;
    };
    let n = number(7);
    let missing =
        |p: &str| format!("Your request is incomplete and missing the mandatory parameter `{p}`");
    let invalid = |p: &str| format!("Invalid value for param: {p}");
    expect(&app, &[("brand", "A")], "2", &missing("number")).await;
    expect(&app, &[("number", &n)], "2", &missing("brand")).await;
    expect(
        &app,
        &[("number", "12"), ("brand", "A")],
        "3",
        "Invalid value for number",
    )
    .await;
    expect(
        &app,
        &[("number", "447700900000"), ("brand", "A")],
        "3",
        "Invalid value for number",
    )
    .await;
    expect(
        &app,
        &[("number", "07700100007"), ("brand", "A")],
        "3",
        "Invalid value for number",
    )
    .await;
    expect(
        &app,
        &[("number", &n), ("brand", "A"), ("country", "GBR")],
        "3",
        &invalid("country"),
    )
    .await;
    expect(
        &app,
        &[("number", &n), ("brand", "1234567890123456789")],
        "3",
        &invalid("brand"),
    )
    .await;
    expect(
        &app,
        &[
            ("number", &n),
            ("brand", "A"),
            ("sender_id", "123456789012"),
        ],
        "3",
        &invalid("sender_id"),
    )
    .await;
    expect(
        &app,
        &[("number", &n), ("brand", "A"), ("code_length", "5")],
        "3",
        &invalid("code_length"),
    )
    .await;
    expect(
        &app,
        &[("number", &n), ("brand", "A"), ("pin_expiry", "59")],
        "3",
        &invalid("pin_expiry"),
    )
    .await;
    expect(
        &app,
        &[("number", &n), ("brand", "A"), ("pin_expiry", "3601")],
        "3",
        &invalid("pin_expiry"),
    )
    .await;
    expect(
        &app,
        &[("number", &n), ("brand", "A"), ("next_event_wait", "59")],
        "3",
        &invalid("next_event_wait"),
    )
    .await;
    expect(
        &app,
        &[("number", &n), ("brand", "A"), ("next_event_wait", "901")],
        "3",
        &invalid("next_event_wait"),
    )
    .await;
    expect(
        &app,
        &[("number", &n), ("brand", "A"), ("workflow_id", "0")],
        "3",
        &invalid("workflow_id"),
    )
    .await;
    expect(
        &app,
        &[("number", &n), ("brand", "A"), ("workflow_id", "8")],
        "3",
        &invalid("workflow_id"),
    )
    .await;
    expect(
        &app,
        &[("number", &n), ("brand", "A"), ("workflow_id", "x")],
        "3",
        &invalid("workflow_id"),
    )
    .await;
    expect(
        &app,
        &[("number", &n), ("brand", "A"), ("lg", "xx-yy")],
        "3",
        &invalid("lg"),
    )
    .await;
    expect(
        &app,
        &[("number", &n), ("brand", "A"), ("lg", "bg-bg")],
        "3",
        &invalid("lg"),
    )
    .await;
    expect(
        &app,
        &[("number", &n), ("brand", "A"), ("pin_code", "123")],
        "3",
        &invalid("pin_code"),
    )
    .await;
    expect(
        &app,
        &[("number", &n), ("brand", "A"), ("pin_code", "12345678901")],
        "3",
        &invalid("pin_code"),
    )
    .await;
    for pin in ["AKFG 3424", "----", "12_34"] {
        expect(
            &app,
            &[("number", &n), ("brand", "A"), ("pin_code", pin)],
            "3",
            &invalid("pin_code"),
        )
        .await;
    }
    // Nothing above started a verification.
    assert!(app.inbox(&n).await.is_empty());
}

#[tokio::test]
async fn the_longest_allowed_values_are_accepted() {
    let Some(app) = spawn_app().await else {
        return;
    };
    let body = app
        .call(
            "/verify/json",
            &[
                ("number", &number(8)),
                ("brand", "123456789012345678"),
                ("sender_id", "12345678901"),
                ("pin_expiry", "3600"),
                ("next_event_wait", "900"),
                ("workflow_id", "7"),
            ],
        )
        .await;
    assert_eq!(body["status"], "0", "{body}");
    let id = body["request_id"].as_str().unwrap();
    let m = app.messages_for(&number(8), id, 1).await;
    assert_eq!(m[0]["channel"], "voice", "workflow 7 calls");
}

#[tokio::test]
async fn a_national_number_is_accepted_with_its_country() {
    let Some(app) = spawn_app().await else {
        return;
    };
    let id = app.start_with("07700 100009", &[("country", "GB")]).await;
    let m = app.messages_for(&number(9), &id, 1).await;
    assert_eq!(m[0]["to"], number(9));
}

#[tokio::test]
async fn a_second_request_to_a_number_in_progress_answers_10_with_the_first_request_id() {
    let Some(app) = spawn_app().await else {
        return;
    };
    let first = app.start(&number(10)).await;
    let body = app
        .call(
            "/verify/json",
            &[("number", &number(10)), ("brand", "Other")],
        )
        .await;
    assert_eq!(body["status"], "10");
    assert_eq!(body["request_id"], first.as_str());
    assert_eq!(
        body["error_text"],
        "Concurrent verifications to the same number are not allowed"
    );
}

#[tokio::test]
async fn another_key_may_verify_the_same_number_and_never_learns_the_other_request() {
    let Some(app) = spawn_app().await else {
        return;
    };
    app.start(&number(11)).await;
    let (key, secret) = app.new_key(true).await;
    let response = app
        .client
        .post(app.url("/verify/json"))
        .basic_auth(&key, Some(&secret))
        .form(&[("number", number(11).as_str()), ("brand", "Other")])
        .send()
        .await
        .unwrap();
    assert_eq!(v1_json(response).await["status"], "0");
}

#[tokio::test]
async fn a_finished_request_frees_the_number() {
    let Some(app) = spawn_app().await else {
        return;
    };
    let id = app.start(&number(12)).await;
    let pin = app.pin(&number(12), &id).await;
    let ok = app
        .call("/verify/check/json", &[("request_id", &id), ("code", &pin)])
        .await;
    assert_eq!(ok["status"], "0");
    let again = app.start(&number(12)).await;
    assert_ne!(again, id);
}

#[tokio::test]
async fn a_custom_pin_is_sent_and_checked_as_written() {
    let Some(app) = spawn_app().await else {
        return;
    };
    // The second is the spec's own example; a hyphen is part of the code.
    for (n, pin, not_it) in [(13, "AKFG3424", "AKFG-3424"), (19, "AKFG-3424", "AKFG3424")] {
        let id = app.start_with(&number(n), &[("pin_code", pin)]).await;
        let m = app.messages_for(&number(n), &id, 1).await;
        assert!(m[0]["text"].as_str().unwrap().contains(pin), "{}", m[0]);
        let wrong = app
            .call(
                "/verify/check/json",
                &[("request_id", &id), ("code", not_it)],
            )
            .await;
        assert_eq!(wrong["status"], "16", "{pin}: {wrong}");
        let ok = app
            .call("/verify/check/json", &[("request_id", &id), ("code", pin)])
            .await;
        assert_eq!(ok["status"], "0", "{pin}: {ok}");
    }
}

#[tokio::test]
async fn a_key_without_custom_pins_gets_status_20() {
    let Some(app) = spawn_app().await else {
        return;
    };
    let (key, secret) = app.new_key(false).await;
    let response = app
        .client
        .post(app.url("/verify/json"))
        .form(&[
            ("api_key", key.as_str()),
            ("api_secret", &secret),
            ("number", &number(14)),
            ("brand", "A"),
            ("pin_code", "1234"),
        ])
        .send()
        .await
        .unwrap();
    let body: Value = v1_json(response).await;
    assert_eq!(body["status"], "20");
    assert_eq!(
        body["error_text"],
        "This account does not support the parameter: pin_code."
    );
}

#[tokio::test]
async fn without_lg_the_locale_follows_the_country_of_the_number() {
    let Some(app) = spawn_app().await else {
        return;
    };
    let au = app.start("61412345678").await;
    assert_eq!(
        app.messages_for("61412345678", &au, 1).await[0]["locale"],
        "en-au"
    );
    let fr = app.start("33612345678").await;
    let m = app.messages_for("33612345678", &fr, 1).await;
    assert_eq!(m[0]["locale"], "fr-fr");
    let us = app.start("14155550100").await;
    assert_eq!(
        app.messages_for("14155550100", &us, 1).await[0]["locale"],
        "en-us"
    );
    let lg = app.start_with("491701234567", &[("lg", "es-MX")]).await;
    assert_eq!(
        app.messages_for("491701234567", &lg, 1).await[0]["locale"],
        "es-mx"
    );
}

#[tokio::test]
async fn a_sender_id_is_used_as_the_sms_sender() {
    let Some(app) = spawn_app().await else {
        return;
    };
    let id = app.start_with(&number(15), &[("sender_id", "ACME")]).await;
    assert_eq!(
        app.messages_for(&number(15), &id, 1).await[0]["from"],
        "ACME"
    );
}

#[tokio::test]
async fn an_unknown_country_is_reported_as_a_bad_country() {
    let Some(app) = spawn_app().await else {
        return;
    };
    let body = app
        .call(
            "/verify/json",
            &[("number", "07700100016"), ("brand", "A"), ("country", "ZZ")],
        )
        .await;
    assert_eq!(body["error_text"], "Invalid value for param: country");
}

#[tokio::test]
async fn a_json_body_labelled_as_a_form_is_read_as_json() {
    let Some(app) = spawn_app().await else {
        return;
    };
    let body =
        json!({"api_key": app.key, "api_secret": app.secret, "number": number(17), "brand": "X"});
    let response = app
        .client
        .post(app.url("/verify/json"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(v1_json(response).await["status"], "0");
}

#[tokio::test]
async fn a_stored_verification_that_cannot_be_read_answers_status_5_and_is_set_aside() {
    let Some(app) = spawn_app().await else {
        return;
    };
    let id = app.start(&number(18)).await;
    app.messages_for(&number(18), &id, 1).await;
    app.corrupt_body(&id);

    let body = app
        .call(
            "/verify/check/json",
            &[("request_id", &id), ("code", "1234")],
        )
        .await;
    assert_eq!(
        (body["status"].as_str(), body["error_text"].as_str()),
        (Some("5"), Some("Internal Error"))
    );
    // The scheduler sets it aside instead of failing on it forever, and the number is usable.
    app.advance(125).await;
    let again = app.start(&number(18)).await;
    assert_ne!(again, id);
    let left = app.inbox(&number(18)).await;
    assert!(
        left.iter().all(|m| m["request_id"] != id.as_str()),
        "its messages went with it: {left:?}"
    );
}

#[tokio::test]
async fn texts_with_controls_line_breaks_or_bidi_overrides_are_refused_naming_the_parameter() {
    let Some(app) = spawn_app().await else {
        return;
    };
    let n = number(15);
    for (name, value) in [
        ("brand", "Bank\nCode: 0000"),
        ("brand", "Bank\r"),
        ("brand", "A\u{0}B"),
        ("brand", "Bank\u{85}"),
        ("brand", "\u{202e}knaB"),
        ("brand", "Bank\u{2028}0000"),
        ("sender_id", "VERIFY\u{1}"),
        ("sender_id", "VER\tIFY"),
        ("sender_id", "\u{2066}VERIFY"),
    ] {
        let mut params = vec![("number", n.as_str()), (name, value)];
        if name != "brand" {
            params.push(("brand", "Bank"));
        }
        expect(
            &app,
            &params,
            "3",
            &format!("Invalid value for param: {name}"),
        )
        .await;
    }
    assert!(
        app.inbox(&n).await.is_empty(),
        "no SMS carries a forged line"
    );
}

#[tokio::test]
async fn head_neither_starts_nor_changes_a_verification() {
    let Some(app) = spawn_app().await else {
        return;
    };
    let n = number(16);
    for path in ["/verify/json", "/verify/xml", "/verify/psd2/json"] {
        let response = app
            .client
            .head(app.url(path))
            .query(&[
                ("api_key", app.key.as_str()),
                ("api_secret", &app.secret),
                ("number", &n),
                ("brand", "AcmeInc"),
                ("payee", "Shop"),
                ("amount", "1"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "{path}");
        assert_eq!(response.headers()["allow"], "GET, POST", "{path}");
    }
    assert!(app.inbox(&n).await.is_empty(), "nothing was started");
    for method in [
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
        reqwest::Method::OPTIONS,
    ] {
        let response = app
            .client
            .request(method.clone(), app.url("/verify/json"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "{method}");
        assert_eq!(response.headers()["allow"], "GET, POST", "{method}");
    }

    let id = app.start(&n).await;
    let pin = app.pin(&n, &id).await;
    for (path, extra) in [
        ("/verify/check/json", ("code", pin.as_str())),
        ("/verify/control/json", ("cmd", "cancel")),
        ("/verify/control/json", ("cmd", "trigger_next_event")),
    ] {
        let response = app
            .client
            .head(app.url(path))
            .query(&[
                ("api_key", app.key.as_str()),
                ("api_secret", &app.secret),
                ("request_id", &id),
                extra,
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "{path} {extra:?}");
    }
    let search = app
        .call("/verify/search/json", &[("request_id", &id)])
        .await;
    assert_eq!(search["status"], "IN PROGRESS", "{search}");
    assert_eq!(search["checks"].as_array().unwrap().len(), 0, "{search}");
    assert_eq!(search["events"].as_array().unwrap().len(), 1, "{search}");
}
