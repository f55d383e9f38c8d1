//! Signals to the real binary. SIGHUP reloads the configuration: new routes and limits come
//! into force without a restart, a send in flight on a replaced channel finishes there, requests
//! keep being answered throughout, and a file that does not validate changes nothing. SIGTERM
//! stops the server after the sends in flight end.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::gateway::{Answer, Gateway};
use verifyd::domain::RequestId;
use verifyd::store::{AttemptState, DeliveryLog};

fn config(gateway: &str, extra: &str) -> String {
    format!(
        r#"{extra}
[channels.gw]
type = "webhook"
url = "{gateway}/send"
body = '{{"to":"{{{{to}}}}","text":"{{{{text}}}}"}}'
timeout = 10

[[routes]]
kind = "sms"
channels = ["gw"]
"#
    )
}

fn signal(server: &support::Server, name: &str) {
    let status = std::process::Command::new("kill")
        .args([name, &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn hangup(server: &support::Server) {
    signal(server, "-HUP");
}

/// Waits (at most 10 s) until the server's log holds `text` `n` times.
async fn logged(server: &support::Server, text: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.log().matches(text).count() < n {
        assert!(
            Instant::now() < deadline,
            "no {text:?} in the log: {}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Client {
    http: reqwest::Client,
    base: String,
    key: (String, String),
}

impl Client {
    async fn start(&self, number: &str) -> Value {
        self.http
            .post(format!("{}/verify/json", self.base))
            .form(&[
                ("api_key", self.key.0.as_str()),
                ("api_secret", self.key.1.as_str()),
                ("number", number),
                ("brand", "Acme"),
                ("workflow_id", "6"),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn started(&self, number: &str) -> String {
        let body = self.start(number).await;
        assert_eq!(body["status"], "0", "{number}: {body}");
        body["request_id"].as_str().unwrap().to_owned()
    }
}

fn numbers(gateway: &Gateway) -> Vec<String> {
    gateway
        .seen()
        .iter()
        .map(|s| {
            s.json()["to"]
                .as_str()
                .unwrap()
                .trim_start_matches('+')
                .to_owned()
        })
        .collect()
}

async fn attempt_states(db: &Path, request_id: &str) -> Vec<(String, AttemptState)> {
    let store = verifyd::store::sqlite::SqliteStore::open(db).unwrap();
    let id = RequestId::from_hex(request_id).unwrap();
    store
        .attempts(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.channel, a.state))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_puts_new_routes_and_limits_in_force_and_a_bad_file_changes_nothing() {
    let first = Gateway::start(Answer::new(200, "{}")).await;
    let second = Gateway::start(Answer::new(200, "{}")).await;
    let dir = tempfile::tempdir().unwrap();
    let (file, db) = (dir.path().join("verifyd.toml"), dir.path().join("v.db"));
    std::fs::write(&file, config(&first.url(), "")).unwrap();
    let server = support::start(dir.path(), &db, &["--config", file.to_str().unwrap()]);
    let client = Client {
        http: reqwest::Client::new(),
        base: server.base("http"),
        key: server.first_key.clone().unwrap(),
    };

    // Two verifications to one prefix: no limit yet.
    client.started("447700100001").await;
    first.wait_for(1, Duration::from_secs(10)).await;
    first.hold_for(Duration::from_secs(2));
    let in_flight = client.started("447700100002").await;
    assert_eq!(first.wait_for(2, Duration::from_secs(10)).await.len(), 2);

    // Requests go on being answered while the configuration changes.
    let health = {
        let (http, url) = (client.http.clone(), format!("{}/healthz", client.base));
        tokio::spawn(async move {
            let mut answered = Vec::new();
            for _ in 0..100 {
                answered.push(http.get(&url).send().await.map(|r| r.status().as_u16()));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            answered
        })
    };
    // The same channel now posts to the second gateway; one start per prefix an hour; a price
    // changes too, which only a restart applies.
    let limited = config(
        &second.url(),
        "currency = \"USD\"\n[limits]\nper_prefix = \"1/h\"\n",
    );
    std::fs::write(&file, &limited).unwrap();
    hangup(&server);
    logged(&server, "configuration reloaded", 1).await;
    assert!(
        server.log().contains("take effect only after a restart"),
        "{}",
        server.log()
    );

    let after = "447700300001";
    client.started(after).await;
    second.wait_for(1, Duration::from_secs(10)).await;
    let refused = client.start("447700300002").await;
    assert_eq!(
        refused["status"], "1",
        "the reloaded per_prefix limit: {refused}"
    );

    // The send that was in flight on the replaced channel finished there, and was not sent again.
    let deadline = Instant::now() + Duration::from_secs(10);
    let states = loop {
        let states = attempt_states(&db, &in_flight).await;
        if states.iter().all(|(_, s)| *s != AttemptState::Queued) || Instant::now() > deadline {
            break states;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(states, [("gw".to_owned(), AttemptState::Submitted)]);
    assert_eq!(numbers(&first), ["447700100001", "447700100002"]);
    assert_eq!(numbers(&second), [after]);
    // The replaced channel is closed once that send is over, not before.
    logged(&server, "a channel the reload left out is closed", 1).await;
    let log = server.log();
    let closed = log.find("a channel the reload left out is closed").unwrap();
    let sent = log
        .find("to=44********02}: accepted by the gateway")
        .unwrap();
    assert!(sent < closed, "{log}");

    let answered = health.await.unwrap();
    assert!(
        answered.iter().all(|r| matches!(r, Ok(200))),
        "{answered:?}"
    );

    // A file that does not validate: refused, and the running configuration stays.
    std::fs::write(&file, limited.replace("kind = \"sms\"", "kind = \"fax\"")).unwrap();
    hangup(&server);
    logged(&server, "configuration not reloaded", 1).await;
    client.started("447700123461").await;
    second.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(numbers(&second), [after, "447700123461"]);
    let refused = client.start("447700123462").await;
    assert_eq!(refused["status"], "1", "the limit stays: {refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_send_in_flight_end_before_the_server_stops() {
    let gateway = Gateway::start(Answer::new(200, "{}")).await;
    gateway.hold_for(Duration::from_millis(1500));
    let dir = tempfile::tempdir().unwrap();
    let (file, db) = (dir.path().join("verifyd.toml"), dir.path().join("v.db"));
    std::fs::write(&file, config(&gateway.url(), "")).unwrap();
    let mut server = support::start(dir.path(), &db, &["--config", file.to_str().unwrap()]);
    let client = Client {
        http: reqwest::Client::new(),
        base: server.base("http"),
        key: server.first_key.clone().unwrap(),
    };
    let id = client.started("447700100001").await;
    gateway.wait_for(1, Duration::from_secs(10)).await;

    signal(&server, "-TERM");
    let status = server
        .wait(Duration::from_secs(20))
        .expect("stops within 20 s");
    assert!(status.success(), "{status}: {}", server.log());
    assert_eq!(
        attempt_states(&db, &id).await,
        [("gw".to_owned(), AttemptState::Submitted)],
        "{}",
        server.log()
    );
    let log = server.log();
    let at = |text: &str| {
        log.find(text)
            .unwrap_or_else(|| panic!("no {text:?}: {log}"))
    };
    assert!(at("shutting down") < at("accepted by the gateway"), "{log}");
    assert!(
        at("accepted by the gateway") < at("verifyd stopped"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_refuses_real_routes_on_a_server_whose_clock_runs_fast() {
    let gateway = Gateway::start(Answer::new(200, "{}")).await;
    let dir = tempfile::tempdir().unwrap();
    let (file, db) = (dir.path().join("verifyd.toml"), dir.path().join("v.db"));
    let fast = "clock_speed = 60\n[[routes]]\nkind = \"sms\"\nchannels = [\"inbox\"]\n";
    std::fs::write(&file, fast).unwrap();
    let server = support::start(dir.path(), &db, &["--config", file.to_str().unwrap()]);
    // On its own this file is valid (its clock runs at 1); the running clock does not change.
    std::fs::write(&file, config(&gateway.url(), "")).unwrap();
    hangup(&server);
    logged(&server, "configuration not reloaded", 1).await;
    assert!(server.log().contains("clock"), "{}", server.log());
    let client = Client {
        http: reqwest::Client::new(),
        base: server.base("http"),
        key: server.first_key.clone().unwrap(),
    };
    client.started("447700100001").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(gateway.seen().is_empty(), "the inbox route stays");
}
