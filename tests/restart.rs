//! A server killed with SIGKILL and started again on the same database loses nothing: checks
//! still work, events that came due while it was down fire once, nothing fires twice.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;

/// Workflow time runs 20x: workflow 1's call at 125 s comes 6.25 s of real time after the start,
/// which leaves a loaded machine time to make the requests before the kill.
const SPEED: &str = "20";

use support::client;

fn inbox(base: &str, to: &str) -> Vec<Value> {
    client()
        .get(format!("{base}/inbox/messages"))
        .query(&[("to", to)])
        .send()
        .unwrap()
        .json()
        .unwrap()
}

fn wait_for(base: &str, to: &str, n: usize, within: Duration) -> Vec<Value> {
    let deadline = Instant::now() + within;
    loop {
        let list = inbox(base, to);
        if list.len() >= n || Instant::now() > deadline {
            return list;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn after_sigkill_checks_still_work_and_due_events_fire_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("verifyd.db");
    let mut server = support::start(dir.path(), &db, &["--clock-speed", SPEED]);
    let started = Instant::now();
    let (key, secret) = server.first_key.clone().unwrap();
    let base = server.base("http");
    let numbers: Vec<String> = (0..4)
        .map(|i| format!("4477001{:05}", 90_000 + i))
        .collect();

    let mut ids = Vec::new();
    for n in &numbers {
        let body: Value = client()
            .post(format!("{base}/verify/json"))
            .basic_auth(&key, Some(&secret))
            .form(&[("number", n.as_str()), ("brand", "AcmeInc")])
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(body["status"], "0", "{body}");
        ids.push(body["request_id"].as_str().unwrap().to_owned());
    }
    let mut first_pins = Vec::new();
    for n in &numbers {
        let list = wait_for(&base, n, 1, Duration::from_secs(5));
        assert_eq!(list.len(), 1, "the first SMS was sent before the kill");
        first_pins.push(support::pin_in(list[0]["text"].as_str().unwrap()));
    }
    // One wrong check before the kill: the count of tries must survive too.
    let body: Value = client()
        .post(format!("{base}/verify/check/json"))
        .basic_auth(&key, Some(&secret))
        .form(&[("request_id", ids[0].as_str()), ("code", "00000")])
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(body["status"], "16");

    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the kill must come before the call is due (6.25 s)"
    );
    server.kill9();

    // Stay down past the call at 125 s of workflow time (6.25 s real at 20x).
    let down_until = started + Duration::from_millis(7_000);
    std::thread::sleep(down_until.saturating_duration_since(Instant::now()));

    let server = support::start(dir.path(), &db, &["--clock-speed", SPEED]);
    assert!(
        server.first_key.is_none(),
        "the key of the first run is still there"
    );
    let base = server.base("http");
    for (i, n) in numbers.iter().enumerate() {
        let list = wait_for(&base, n, 2, Duration::from_secs(5));
        assert_eq!(
            list.len(),
            2,
            "{n}: the SMS from before and the call that came due: {list:?}"
        );
        assert_eq!(list[0]["channel"], "voice");
        assert_eq!(list[1]["channel"], "sms");
        assert_eq!(list[0]["request_id"], ids[i].as_str());
        // 125 s < pin_expiry 300 s: the call reads the PIN of the SMS.
        assert_eq!(
            support::pin_in(list[0]["text"].as_str().unwrap()),
            first_pins[i]
        );
    }
    // Give a duplicate the chance to appear: the next event is 180 s (9 s real) away.
    std::thread::sleep(Duration::from_millis(700));
    for n in &numbers {
        assert_eq!(inbox(&base, n).len(), 2, "{n}: nothing fired twice");
    }

    for (i, id) in ids.iter().enumerate() {
        let body: Value = client()
            .post(format!("{base}/verify/check/json"))
            .basic_auth(&key, Some(&secret))
            .form(&[
                ("request_id", id.as_str()),
                ("code", first_pins[i].as_str()),
            ])
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(body["status"], "0", "check after restart: {body}");
    }
    let search: Value = client()
        .get(format!("{base}/verify/search/json"))
        .basic_auth(&key, Some(&secret))
        .query(&[("request_id", ids[0].as_str())])
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        search["checks"].as_array().unwrap().len(),
        2,
        "the wrong check from before the kill is kept"
    );
    assert_eq!(search["events"].as_array().unwrap().len(), 2);
}

#[test]
fn a_delivery_committed_but_not_sent_before_a_crash_is_sent_once_on_the_next_start() {
    use verifyd::api::v1::workflow::Workflow;
    use verifyd::crypto::{OsMinter, ServerKey};
    use verifyd::domain::{Purpose, RequestId, Verification};
    use verifyd::store::sqlite::SqliteStore;
    use verifyd::store::VerificationStore;

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("verifyd.db");
    let mut server = support::start(dir.path(), &db, &[]);
    let (key, _) = server.first_key.clone().unwrap();
    server.kill9();

    // What a crash right after the commit leaves: the verification and its first delivery, stored
    // with the server's own key, and nothing sent.
    let number = "447700199001";
    let id = RequestId::from_bytes([42; 16]);
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let server_key = ServerKey::load_or_create(&dir.path().join("verifyd.db.key")).unwrap();
        let store = SqliteStore::open(&db).unwrap();
        let mut new = Workflow::DEFAULT.request(id.clone(), &key, number);
        new.purpose = Purpose::Brand {
            brand: "AcmeInc".into(),
        };
        let now = chrono::Utc::now();
        let (v, first) = Verification::start(new, now, &mut OsMinter::new(server_key));
        store.create(v, first, now).await.unwrap();
    });

    let server = support::start(dir.path(), &db, &[]);
    let base = server.base("http");
    let list = wait_for(&base, number, 1, Duration::from_secs(5));
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["request_id"], id.as_str());
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(inbox(&base, number).len(), 1, "sent once");
    assert!(
        server.log().contains("left unsent by the last run"),
        "{}",
        server.log()
    );
}

#[test]
fn messages_waiting_for_a_gateway_that_is_down_survive_a_sigkill_and_go_out_once() {
    use support::gateway::{closed_port, Answer, Gateway};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("verifyd.db");
    let gateway_addr = closed_port();
    let config = dir.path().join("verifyd.toml");
    std::fs::write(
        &config,
        format!(
            "[channels.gw]\ntype = \"webhook\"\nurl = \"http://{gateway_addr}/send\"\n\
             body = '{{\"id\":\"{{{{id}}}}\",\"to\":\"{{{{to}}}}\"}}'\nmessage_id = \"/message_id\"\n\
             timeout = 2\n[[routes]]\nkind = \"sms\"\nchannels = [\"gw\"]\n"
        ),
    )
    .unwrap();
    let flags = ["--config", config.to_str().unwrap()];
    let port = support::free_port();
    let mut server = support::start_on(dir.path(), &db, port, &flags);
    let (key, secret) = server.first_key.clone().unwrap();
    let base = server.base("http");
    for i in 0..5 {
        let body: Value = client()
            .post(format!("{base}/verify/json"))
            .form(&[
                ("api_key", key.as_str()),
                ("api_secret", secret.as_str()),
                ("number", format!("4477001007{i:02}").as_str()),
                ("brand", "Acme"),
                ("workflow_id", "6"),
            ])
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(body["status"], "0", "{body}");
    }
    // The gateway is down: the first rounds fail, and the messages wait.
    std::thread::sleep(Duration::from_millis(1_500));
    server.kill9();

    let gateway = runtime.block_on(Gateway::start_on(
        gateway_addr,
        Answer::new(200, r#"{"message_id":"G{n}"}"#),
    ));
    let _server = support::start_on(dir.path(), &db, port, &flags);
    let seen = runtime.block_on(gateway.wait_for(5, Duration::from_secs(20)));
    assert_eq!(seen.len(), 5, "every message went out: {seen:?}");
    std::thread::sleep(Duration::from_secs(3));
    let mut ids: Vec<String> = gateway
        .seen()
        .iter()
        .map(|s| s.json()["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    let total = ids.len();
    ids.dedup();
    assert_eq!((ids.len(), total), (5, 5), "each once: {ids:?}");
}
