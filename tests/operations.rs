//! What operators watch: `/metrics` in Prometheus's text format and `/readyz`, on a real
//! server with a real SQLite file and the inbox as its channel.

mod support;

use std::collections::HashMap;

use support::app::serve;

const INBOX_ROUTES: &str = r#"
[[routes]]
kind = "sms"
channels = ["inbox"]
"#;

/// Every sample of a Prometheus text exposition, keyed by its name and sorted labels as written.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
            (
                series.to_owned(),
                value.parse().expect("a sample's value is a number"),
            )
        })
        .collect()
}

/// The sum of the samples named `name` whose labels include every one of `labels`.
fn total(samples: &HashMap<String, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|(series, _)| {
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|(_, v)| v)
        .sum()
}

async fn scrape(server: &support::app::Server) -> HashMap<String, f64> {
    let response = server
        .http
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let kind = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(kind.starts_with("text/plain"), "{kind}");
    samples(&response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_verifications_checks_and_sends_as_they_happen() {
    let server = serve(INBOX_ROUTES).await;
    let before = scrape(&server).await;
    let number = "447700100123";
    let id = server.start(number, &[]).await;
    let inbox = support::inbox_until(&server.http, &server.base, number, |m| !m.is_empty()).await;
    let pin = support::pin_in(inbox[0]["text"].as_str().unwrap());
    assert_eq!(server.check(&id, "0000").await, "16");
    assert_eq!(server.check(&id, &pin).await, "0");
    let after = scrape(&server).await;
    let grew = |name: &str, labels: &[(&str, &str)]| {
        total(&after, name, labels) - total(&before, name, labels)
    };

    let v1_post = [
        ("surface", "v1"),
        ("endpoint", "/verify/{format}"),
        ("method", "POST"),
        ("status", "200"),
    ];
    assert_eq!(grew("verifyd_http_requests_total", &v1_post), 1.0);
    let checks = [("surface", "v1"), ("endpoint", "/verify/check/{format}")];
    assert_eq!(grew("verifyd_http_requests_total", &checks), 2.0);
    assert_eq!(
        grew("verifyd_http_request_duration_seconds_count", &checks),
        2.0
    );
    assert_eq!(
        grew("verifyd_verifications_total", &[("outcome", "started")]),
        1.0
    );
    assert_eq!(grew("verifyd_checks_total", &[("outcome", "wrong")]), 1.0);
    assert_eq!(
        grew("verifyd_checks_total", &[("outcome", "verified")]),
        1.0
    );
    let sms = [
        ("kind", "sms"),
        ("channel", "inbox"),
        ("route", "0"),
        ("country", "GB"),
        ("outcome", "delivered"),
    ];
    assert_eq!(grew("verifyd_sends_total", &sms), 1.0);
    assert_eq!(
        grew(
            "verifyd_store_operation_duration_seconds_count",
            &[("operation", "create")]
        ),
        1.0
    );
    // The inbox's own pages are counted under their surface; nothing under a raw path.
    assert!(grew("verifyd_http_requests_total", &[("surface", "inbox")]) >= 1.0);
    assert!(
        !after
            .keys()
            .any(|series| series.contains(&id) || series.contains(number)),
        "a request id or a number in a label"
    );
    server.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_lists_the_database_and_every_channel() {
    let server = serve(INBOX_ROUTES).await;
    assert_eq!(
        server.get_text("/readyz").await,
        (200, "database ok\nchannel inbox ok\n".to_owned())
    );
    server.app.stop().await;
}

#[test]
fn json_logs_are_one_object_per_line_with_the_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let server = support::start(
        dir.path(),
        &dir.path().join("v.db"),
        &["--log-format", "json"],
    );
    let answer: serde_json::Value = support::client()
        .post(format!("{}/verify/json", server.base("http")))
        .header("X-Request-Id", "ops-test-42")
        .form(&[
            ("api_key", "nobody"),
            ("api_secret", "wrong"),
            ("number", "447700100123"),
        ])
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(answer["status"], "4");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let log = loop {
        let log = server.log();
        if log.contains("ops-test-42") || std::time::Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let events: Vec<serde_json::Value> = log
        .lines()
        // The first key's notice is written before logging is the server's.
        .filter(|l| !l.starts_with("No API key existed"))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(events
        .iter()
        .any(|e| e["fields"]["message"] == "verifyd is listening"));
    let refused = events
        .iter()
        .find(|e| e["fields"]["message"] == "v1 request refused")
        .expect("the refusal is logged");
    assert_eq!(
        refused["spans"][0]["request_id"], "ops-test-42",
        "{refused}"
    );
    assert_eq!(refused["level"], "INFO");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_made_up_method_is_counted_as_other_not_as_a_series_of_its_own() {
    let server = serve(INBOX_ROUTES).await;
    let made_up = reqwest::Method::from_bytes(b"PUMPXYZ").unwrap();
    let response = server
        .http
        .request(made_up, format!("{}/healthz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    let after = scrape(&server).await;
    assert!(!after.keys().any(|series| series.contains("PUMPXYZ")));
    assert!(
        total(
            &after,
            "verifyd_http_requests_total",
            &[("method", "other")]
        ) >= 1.0
    );
    server.app.stop().await;
}
