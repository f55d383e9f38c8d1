//! Production hygiene on a real server. Test numbers (`[test_numbers]`): a verification to one
//! is made and checked with its fixed code on both surfaces, nothing reaches a gateway, and no
//! limit counts it, while a real number on the same key is limited and sent as usual. Retention
//! (`[retention]`): an ended verification is deleted once past its period.

mod support;

use std::time::Duration;

use serde_json::json;
use support::app::serve;
use support::gateway::{Answer, Gateway};
use verifyd::store::AttemptState;

const TEST_NUMBER: &str = "447700123456";

fn config(gateway: &str) -> String {
    format!(
        r#"
[test_numbers]
"+{TEST_NUMBER}" = "424242"

[limits]
per_destination = "1/h"
verifications_per_hour = 1

[channels.gw]
type = "webhook"
url = "{gateway}/send"
body = '{{"to":"{{{{to}}}}","text":"{{{{text}}}}"}}'

[[routes]]
kind = "sms"
channels = ["gw"]
"#
    )
}

#[tokio::test]
async fn a_test_number_takes_its_fixed_code_sends_nothing_and_counts_toward_no_limit() {
    let gateway = Gateway::start(Answer::new(200, "{}")).await;
    let server = serve(&config(&gateway.url())).await;

    // Three in a row to one number, over a per-destination limit of one an hour and a budget
    // of one verification an hour.
    for _ in 0..3 {
        let id = server.start(TEST_NUMBER, &[]).await;
        let attempts = server.wait_for_state(&id, AttemptState::Submitted).await;
        let tried: Vec<(&str, AttemptState)> = attempts
            .iter()
            .map(|a| (a.channel.as_str(), a.state))
            .collect();
        assert_eq!(tried, [("test-number", AttemptState::Submitted)]);
        assert_eq!(
            server.check(&id, "111111").await,
            "16",
            "a wrong code is wrong"
        );
        assert_eq!(
            server.check(&id, "424242").await,
            "0",
            "the fixed code verifies"
        );
    }

    let (status, body) = server
        .v2_post(
            "/v2/verify",
            Some(json!({"brand": "Acme", "workflow": [{"channel": "sms", "to": TEST_NUMBER}]})),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let id = body["request_id"].as_str().unwrap();
    let (status, body) = server
        .v2_post(&format!("/v2/verify/{id}"), Some(json!({"code": "424242"})))
        .await;
    assert_eq!(
        (status, &body["status"]),
        (200, &json!("completed")),
        "{body}"
    );

    // A real number on the same key: sent, and it spends the hour's budget of one.
    server.start("447700123457", &[]).await;
    gateway.wait_for(1, Duration::from_secs(10)).await;
    let refused = server.request("447700123458", &[]).await;
    assert_eq!(
        refused["status"], "1",
        "the budget holds for real numbers: {refused}"
    );
    server.app.run_due_steps().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent: Vec<String> = gateway
        .seen()
        .iter()
        .map(|s| s.json()["to"].to_string())
        .collect();
    assert_eq!(
        sent,
        ["\"+447700123457\""],
        "nothing went to the test number"
    );
}

#[tokio::test]
async fn an_ended_verification_is_deleted_once_past_its_retention_and_one_in_progress_stays() {
    let clock = std::sync::Arc::new(verifyd::clock::ManualClock::new(chrono::Utc::now()));
    let config =
        "[[routes]]\nkind = \"sms\"\nchannels = [\"inbox\"]\n[retention]\nended = \"1h\"\n";
    let server = support::app::serve_with_clock(config, Some(clock.clone())).await;
    // Ended at once (three wrong codes); the other stays in progress in the store however old
    // it gets, as no due step is run.
    let ended = server.start("447700123456", &[]).await;
    for _ in 0..3 {
        server.check(&ended, "000000").await;
    }
    let running = server.start("447700123457", &[]).await;
    clock.advance(chrono::Duration::minutes(30));
    assert_eq!(server.search_status(&ended).await, "FAILED");
    server.app.run_housekeeping().await;
    assert_eq!(
        server.search_status(&ended).await,
        "FAILED",
        "kept within the hour"
    );

    clock.advance(chrono::Duration::minutes(31));
    server.app.run_housekeeping().await;
    assert_eq!(
        server.search_status(&ended).await,
        "101",
        "deleted past its retention"
    );
    assert_ne!(
        server.search_status(&running).await,
        "101",
        "a verification the store holds in progress is never deleted"
    );
}
