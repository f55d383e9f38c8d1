//! Workflow timing through the real scheduler: the clock is moved by hand, never slept on.

use crate::helpers::{number, pin_in, spawn_app};

#[tokio::test]
async fn workflow_1_calls_after_125_seconds_with_the_same_pin_and_expires_in_the_end() {
    let Some(app) = spawn_app().await else {
        return;
    };
    let n = number(700);
    let id = app.start(&n).await;
    let first = app.pin(&n, &id).await;

    app.advance(124).await;
    let search = app
        .call_get("/verify/search/json", &[("request_id", &id)])
        .await;
    assert_eq!(
        search["events"].as_array().unwrap().len(),
        1,
        "nothing before 125 s"
    );

    app.advance(1).await;
    let list = app.messages_for(&n, &id, 2).await;
    assert_eq!(list[0]["channel"], "voice");
    assert_eq!(pin_in(list[0]["text"].as_str().unwrap()), first);

    app.advance(180).await;
    let list = app.messages_for(&n, &id, 3).await;
    let second = pin_in(list[0]["text"].as_str().unwrap());
    assert_ne!(
        second, first,
        "the first PIN expired at 300 s: the last call brings a new one"
    );
    let old = app
        .call(
            "/verify/check/json",
            &[("request_id", &id), ("code", &first)],
        )
        .await;
    assert_eq!(old["status"], "16", "the expired PIN no longer matches");

    app.advance(300).await;
    let search = app
        .call_get("/verify/search/json", &[("request_id", &id)])
        .await;
    assert_eq!(search["status"], "EXPIRED");
    assert_ne!(search["date_finalized"], "");
    let late = app
        .call(
            "/verify/check/json",
            &[("request_id", &id), ("code", &second)],
        )
        .await;
    assert_eq!(late["status"], "6");
    let again = app.start(&n).await;
    assert_ne!(again, id, "an expired request frees the number");
}

#[tokio::test]
async fn next_event_wait_and_pin_expiry_shape_the_workflow() {
    let Some(app) = spawn_app().await else {
        return;
    };
    let n = number(701);
    let id = app
        .start_with(
            &n,
            &[
                ("workflow_id", "4"),
                ("next_event_wait", "60"),
                ("pin_expiry", "60"),
            ],
        )
        .await;
    let first = app.pin(&n, &id).await;
    app.advance(60).await;
    let list = app.messages_for(&n, &id, 2).await;
    assert_eq!(list[0]["channel"], "sms", "workflow 4 sends a second SMS");
    let second = pin_in(list[0]["text"].as_str().unwrap());
    assert_ne!(
        second, first,
        "pin_expiry = next_event_wait: a new PIN every event"
    );
    let ok = app
        .call(
            "/verify/check/json",
            &[("request_id", &id), ("code", &second)],
        )
        .await;
    assert_eq!(ok["status"], "0");
}

#[tokio::test]
async fn a_new_pin_gives_three_new_tries() {
    let Some(app) = spawn_app().await else {
        return;
    };
    let n = number(702);
    let id = app
        .start_with(
            &n,
            &[
                ("workflow_id", "4"),
                ("next_event_wait", "60"),
                ("pin_expiry", "60"),
            ],
        )
        .await;
    let first = app.pin(&n, &id).await;
    let wrong = if first == "0000" { "1111" } else { "0000" };
    for _ in 0..2 {
        assert_eq!(
            app.call(
                "/verify/check/json",
                &[("request_id", &id), ("code", wrong)]
            )
            .await["status"],
            "16"
        );
    }
    app.advance(60).await;
    let list = app.messages_for(&n, &id, 2).await;
    let second = pin_in(list[0]["text"].as_str().unwrap());
    let wrong = if second == "0000" { "1111" } else { "0000" };
    for _ in 0..2 {
        assert_eq!(
            app.call(
                "/verify/check/json",
                &[("request_id", &id), ("code", wrong)]
            )
            .await["status"],
            "16"
        );
    }
    assert_eq!(
        app.call(
            "/verify/check/json",
            &[("request_id", &id), ("code", &second)]
        )
        .await["status"],
        "0"
    );
}
