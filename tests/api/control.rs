use crate::helpers::{number, spawn_app};

#[tokio::test]
async fn cancel_within_30_seconds_answers_19_and_works_after() {
    let Some(app) = spawn_app().await else {
        return;
    };
    let id = app.start(&number(400)).await;
    let body = app
        .call(
            "/verify/control/json",
            &[("request_id", &id), ("cmd", "cancel")],
        )
        .await;
    assert_eq!(body["status"], "19");
    assert_eq!(
        body["error_text"],
        format!("Verification request ['{id}'] can't be cancelled within the first 30 seconds.")
    );

    app.advance(30).await;
    let body = app
        .call(
            "/verify/control/json",
            &[("request_id", &id), ("cmd", "cancel")],
        )
        .await;
    assert_eq!(
        body,
        serde_json::json!({"status": "0", "command": "cancel"})
    );
    let search = app
        .call_get("/verify/search/json", &[("request_id", &id)])
        .await;
    assert_eq!(search["status"], "CANCELLED");
    assert_ne!(search["date_finalized"], "");

    let again = app
        .call(
            "/verify/control/json",
            &[("request_id", &id), ("cmd", "cancel")],
        )
        .await;
    assert_eq!(again["status"], "6");
    assert_eq!(
        again["error_text"],
        format!("The requestId '{id}' does not exist or its no longer active.")
    );
    // The number is free again.
    app.start(&number(400)).await;
}

#[tokio::test]
async fn cancel_after_the_second_event_answers_19_with_the_spec_text() {
    let Some(app) = spawn_app().await else {
        return;
    };
    let id = app.start(&number(401)).await;
    app.advance(40).await;
    let body = app
        .call(
            "/verify/control/json",
            &[("request_id", &id), ("cmd", "trigger_next_event")],
        )
        .await;
    assert_eq!(
        body,
        serde_json::json!({"status": "0", "command": "trigger_next_event"})
    );
    let body = app
        .call(
            "/verify/control/json",
            &[("request_id", &id), ("cmd", "cancel")],
        )
        .await;
    assert_eq!(body["status"], "19");
    assert_eq!(
        body["error_text"],
        format!("Verification request  ['{id}'] can't be cancelled now. Too many attempts to re-deliver have already been made.")
    );
}

#[tokio::test]
async fn trigger_runs_the_next_event_now_until_none_is_left() {
    let Some(app) = spawn_app().await else {
        return;
    };
    let id = app.start_with(&number(402), &[("workflow_id", "5")]).await;
    let body = app
        .call(
            "/verify/control/json",
            &[("request_id", &id), ("cmd", "trigger_next_event")],
        )
        .await;
    assert_eq!(body["status"], "0", "{body}");
    let messages = app.messages_for(&number(402), &id, 2).await;
    assert_eq!(
        messages[0]["channel"], "voice",
        "newest first: the triggered call"
    );
    assert_eq!(messages[1]["channel"], "sms");
    assert_eq!(
        crate::helpers::pin_in(messages[0]["text"].as_str().unwrap()),
        crate::helpers::pin_in(messages[1]["text"].as_str().unwrap()),
        "the PIN has not expired, so the call reads the same code"
    );
    let body = app
        .call(
            "/verify/control/json",
            &[("request_id", &id), ("cmd", "trigger_next_event")],
        )
        .await;
    assert_eq!(body["status"], "19");
    assert_eq!(
        body["error_text"],
        format!("No more events are left to execute for the request ['{id}']")
    );
    let search = app
        .call_get("/verify/search/json", &[("request_id", &id)])
        .await;
    assert_eq!(search["events"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn control_parameters_are_validated() {
    let Some(app) = spawn_app().await else {
        return;
    };
    let body = app.call("/verify/control/json", &[("cmd", "cancel")]).await;
    assert_eq!(body["status"], "2");
    let body = app
        .call(
            "/verify/control/json",
            &[("request_id", "abcdef0123456789abcdef0123456789")],
        )
        .await;
    assert_eq!(body["status"], "2");
    assert_eq!(
        body["error_text"],
        "Your request is incomplete and missing the mandatory parameter `cmd`"
    );
    let body = app
        .call(
            "/verify/control/json",
            &[
                ("request_id", "abcdef0123456789abcdef0123456789"),
                ("cmd", "stop"),
            ],
        )
        .await;
    assert_eq!(
        (body["status"].as_str(), body["error_text"].as_str()),
        (Some("3"), Some("Invalid value for param: cmd"))
    );
    let body = app
        .call(
            "/verify/control/json",
            &[
                ("request_id", "abcdef0123456789abcdef0123456789"),
                ("cmd", "cancel"),
            ],
        )
        .await;
    assert_eq!(body["status"], "6");
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["status", "error_text"]);
}

#[tokio::test]
async fn another_key_cannot_control_a_request() {
    let Some(app) = spawn_app().await else {
        return;
    };
    let id = app.start(&number(403)).await;
    app.advance(31).await;
    let (key, secret) = app.new_key(true).await;
    let response = app
        .client
        .post(app.url("/verify/control/json"))
        .basic_auth(&key, Some(&secret))
        .form(&[("request_id", id.as_str()), ("cmd", "cancel")])
        .send()
        .await
        .unwrap();
    assert_eq!(crate::helpers::v1_json(response).await["status"], "6");
    let search = app
        .call_get("/verify/search/json", &[("request_id", &id)])
        .await;
    assert_eq!(search["status"], "IN PROGRESS");
}

#[tokio::test]
async fn control_answers_xml_with_a_response_root() {
    let Some(app) = spawn_app().await else {
        return;
    };
    let id = app.start(&number(404)).await;
    let response = app
        .client
        .post(app.url("/verify/control/xml"))
        .basic_auth(&app.key, Some(&app.secret))
        .form(&[("request_id", id.as_str()), ("cmd", "trigger_next_event")])
        .send()
        .await
        .unwrap();
    let text = response.text().await.unwrap();
    assert!(
        text.ends_with(
            "<response><status>0</status><command>trigger_next_event</command></response>"
        ),
        "{text}"
    );
}
