use crate::helpers::{number, spawn_app};

#[tokio::test]
async fn the_inbox_lists_messages_to_a_number_newest_first_with_every_field() {
    let Some(app) = spawn_app().await else {
        return;
    };
    let a = app.start_with(&number(600), &[("workflow_id", "5")]).await;
    app.call(
        "/verify/control/json",
        &[("request_id", &a), ("cmd", "trigger_next_event")],
    )
    .await;
    app.start(&number(601)).await;
    let list = app.messages_for(&number(600), &a, 2).await;
    assert_eq!(list.len(), 2, "only messages to that number");
    assert_eq!(list[0]["channel"], "voice");
    let fields: Vec<&str> = list[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        fields,
        [
            "id",
            "channel",
            "to",
            "from",
            "text",
            "locale",
            "request_id",
            "created_at"
        ]
    );
    let with_plus = app.inbox(&format!("+{}", number(600))).await;
    assert_eq!(with_plus.len(), 2, "a leading + is accepted");
}

#[tokio::test]
async fn a_voice_message_shows_the_script_with_the_digits_as_numerals_read_twice() {
    let Some(app) = spawn_app().await else {
        return;
    };
    let id = app
        .start_with(&number(602), &[("workflow_id", "7"), ("lg", "en-us")])
        .await;
    let call = &app.messages_for(&number(602), &id, 1).await[0];
    let text = call["text"].as_str().unwrap();
    let pin = crate::helpers::pin_in(text);
    let spelled: Vec<String> = pin.chars().map(String::from).collect();
    assert_eq!(text.matches(&spelled.join(", ")).count(), 2, "{text}");
}

#[tokio::test]
async fn the_inbox_page_is_html_that_refreshes_itself() {
    let Some(app) = spawn_app().await else {
        return;
    };
    let id = app.start(&number(603)).await;
    app.messages_for(&number(603), &id, 1).await;
    let response = app.client.get(app.url("/inbox")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = response.text().await.unwrap();
    assert!(html.contains("http-equiv=\"refresh\""), "{html}");
    assert!(html.contains(&id), "{html}");
    assert!(html.contains("AcmeInc"));
}

#[tokio::test]
async fn the_health_check_answers_ok_while_the_database_is_reachable() {
    let Some(app) = spawn_app().await else {
        return;
    };
    let response = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "ok\n");
}
