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

async fn inbox_status(app: &crate::helpers::TestApp, host: Option<&str>, query: &str) -> u16 {
    let mut request = app.client.get(app.url(&format!("/inbox/messages{query}")));
    if let Some(host) = host {
        request = request.header("host", host);
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn the_inbox_answers_only_a_host_that_names_this_machine_or_an_allowed_name() {
    let Some(app) = crate::helpers::spawn_app_with(|s| {
        s.inbox_hosts = vec![verifyd::config::InboxHost::parse("verifyd.test").unwrap()];
    })
    .await
    else {
        return;
    };
    let port = app.app.port();
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        format!("verifyd.test:{port}"),
    ] {
        assert_eq!(inbox_status(&app, Some(&host), "").await, 200, "{host}");
    }
    // A page on another site whose name was rebound to 127.0.0.1 sends its own name.
    for host in [
        format!("attacker.example:{port}"),
        "attacker.example".to_owned(),
        format!("localhost.attacker.example:{port}"),
    ] {
        assert_eq!(inbox_status(&app, Some(&host), "").await, 403, "{host}");
        let page = app
            .client
            .get(app.url("/inbox"))
            .header("host", &host)
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 403, "{host}");
    }
}

#[tokio::test]
async fn a_to_without_digits_is_an_error_not_every_message() {
    let Some(app) = spawn_app().await else {
        return;
    };
    app.start(&number(610)).await;
    for query in ["?to=", "?to=abc", "?to=%2B"] {
        assert_eq!(inbox_status(&app, None, query).await, 400, "{query}");
    }
}

#[tokio::test]
async fn a_verifications_messages_leave_the_inbox_when_it_ends() {
    let Some(app) = spawn_app().await else {
        return;
    };
    let verified = app.start(&number(620)).await;
    let pin = app.pin(&number(620), &verified).await;
    let cancelled = app.start(&number(621)).await;
    app.messages_for(&number(621), &cancelled, 1).await;
    let expiring = app.start_with(&number(622), &[("workflow_id", "6")]).await;
    app.messages_for(&number(622), &expiring, 1).await;
    let going_on = app.start(&number(623)).await;
    app.messages_for(&number(623), &going_on, 1).await;

    let ok = app
        .call(
            "/verify/check/json",
            &[("request_id", &verified), ("code", &pin)],
        )
        .await;
    assert_eq!(ok["status"], "0", "{ok}");
    app.advance(31).await;
    let cancel = app
        .call(
            "/verify/control/json",
            &[("request_id", &cancelled), ("cmd", "cancel")],
        )
        .await;
    assert_eq!(cancel["status"], "0", "{cancel}");
    app.advance(300).await;
    for n in [620, 621, 622] {
        assert!(app.inbox(&number(n)).await.is_empty(), "{}", number(n));
    }
    assert!(
        !app.inbox(&number(623)).await.is_empty(),
        "still in progress"
    );
}
