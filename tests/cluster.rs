//! Several `verifyd serve` processes on one PostgreSQL database: every event delivered exactly
//! once, "one verification per number" held by the database, key changes seen by every node, and
//! a node killed with SIGKILL under traffic leaving nothing it acknowledged undone. Runs when
//! `VERIFYD_TEST_POSTGRES_URL` is set; passes without running otherwise.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::cluster::{cluster, wait_until, Cluster};
use support::{client, PgSchema};

fn number(i: usize) -> String {
    format!("4477001{:05}", 70_000 + i)
}

#[test]
#[cfg_attr(not(pg_tests), ignore = "needs VERIFYD_TEST_POSTGRES_URL")]
fn two_nodes_deliver_every_event_exactly_once() {
    // Workflow time at 20x: the calls 60 s after each SMS come 3 s later in real time.
    let Some(c) = cluster(2, &["--clock-speed", "20"]) else {
        return;
    };
    let mut ids = Vec::new();
    for i in 0..30 {
        let n = number(i);
        let body = c
            .post(
                i % 2,
                "/verify/json",
                &[
                    ("number", &n),
                    ("brand", "Acme"),
                    ("workflow_id", "5"),
                    ("next_event_wait", "60"),
                ],
            )
            .unwrap();
        assert_eq!(body["status"], "0", "{body}");
        ids.push(body["request_id"].as_str().unwrap().to_owned());
    }
    let complete =
        |by: &HashMap<String, Vec<Value>>| ids.iter().all(|id| by.get(id).map_or(0, Vec::len) >= 2);
    wait_until(&c, 0, Duration::from_secs(20), complete);
    // A duplicate would show up now if any event were claimed twice.
    std::thread::sleep(Duration::from_millis(1500));
    for node in 0..2 {
        let by = c.messages_by_request(node);
        for id in &ids {
            let list = by.get(id).cloned().unwrap_or_default();
            let kinds: Vec<&str> = list
                .iter()
                .map(|m| m["channel"].as_str().unwrap())
                .collect();
            assert_eq!(
                kinds,
                ["voice", "sms"],
                "node {node}, request {id}: one SMS and one call"
            );
        }
    }
}

#[test]
#[cfg_attr(not(pg_tests), ignore = "needs VERIFYD_TEST_POSTGRES_URL")]
fn one_verification_per_number_holds_across_nodes() {
    let Some(c) = cluster(2, &[]) else {
        return;
    };
    let n = number(100);
    let first = c
        .post(0, "/verify/json", &[("number", &n), ("brand", "Acme")])
        .unwrap();
    assert_eq!(first["status"], "0");
    let second = c
        .post(1, "/verify/json", &[("number", &n), ("brand", "Acme")])
        .unwrap();
    assert_eq!(second["status"], "10", "{second}");
    assert_eq!(second["request_id"], first["request_id"]);

    // Racing: the same number on both nodes at once, many times; exactly one wins each time.
    for round in 0..10 {
        let n = number(200 + round);
        let winners: Vec<Value> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|i| {
                    let c = &c;
                    let n = n.clone();
                    s.spawn(move || {
                        c.post(i % 2, "/verify/json", &[("number", &n), ("brand", "A")])
                            .unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let started: Vec<&Value> = winners.iter().filter(|b| b["status"] == "0").collect();
        assert_eq!(started.len(), 1, "round {round}: {winners:?}");
        let id = &started[0]["request_id"];
        for b in winners.iter().filter(|b| b["status"] != "0") {
            assert_eq!(b["status"], "10");
            assert_eq!(&b["request_id"], id, "every loser names the winner");
        }
    }
}

#[test]
#[cfg_attr(not(pg_tests), ignore = "needs VERIFYD_TEST_POSTGRES_URL")]
fn a_revoked_key_stops_working_on_every_node_within_seconds() {
    let Some(c) = cluster(2, &[]) else {
        return;
    };
    let search = |node: usize| {
        c.post(
            node,
            "/verify/search/json",
            &[("request_id", "abcdef0123456789abcdef0123456789")],
        )
        .unwrap()["status"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(search(0), "101");
    assert_eq!(search(1), "101");
    let (ok, out) = support::run_bounded(
        std::process::Command::new(support::BIN).args([
            "keys",
            "revoke",
            &c.key,
            "--database",
            &c.schema.url,
        ]),
        Duration::from_secs(20),
    );
    assert!(ok, "{out}");
    let revoked_at = Instant::now();
    for node in 0..2 {
        while search(node) != "4" {
            assert!(
                revoked_at.elapsed() < Duration::from_secs(5),
                "node {node} still accepts the key"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
#[cfg_attr(not(pg_tests), ignore = "needs VERIFYD_TEST_POSTGRES_URL")]
fn a_node_killed_under_traffic_leaves_every_acknowledged_verification_to_the_other() {
    // A short lease: what the killed node had committed but not sent is the survivor's after 2 s.
    let Some(mut c) = cluster(2, &["--delivery-lease", "2"]) else {
        return;
    };
    let acknowledged: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let bases = [c.base(0), c.base(1)];
    let (key, secret) = (c.key.clone(), c.secret.clone());
    // A node's first request to a calling code compiles that code's number patterns: about 2 s
    // in a debug build on a slow machine. One request to each node first keeps that out of the
    // traffic window, which otherwise could end before either node had answered.
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    for (i, base) in bases.iter().enumerate() {
        let n = number(900 + i);
        let body: Value = http
            .post(format!("{base}/verify/json"))
            .basic_auth(&key, Some(&secret))
            .form(&[("number", n.as_str()), ("brand", "Acme")])
            .send()
            .and_then(|r| r.json())
            .unwrap();
        assert_eq!(body["status"], "0", "{body}");
        let id = body["request_id"].as_str().unwrap().to_owned();
        acknowledged.lock().unwrap().push((n, id));
    }
    let started = Instant::now();
    let senders: Vec<_> = (0..4)
        .map(|t| {
            let acknowledged = acknowledged.clone();
            let bases = bases.clone();
            let (key, secret) = (key.clone(), secret.clone());
            std::thread::spawn(move || {
                let http = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .unwrap();
                let mut i = 0;
                while started.elapsed() < Duration::from_millis(3000) {
                    let n = number(1000 + t * 10_000 + i);
                    let base = &bases[i % 2];
                    i += 1;
                    let answer = http
                        .post(format!("{base}/verify/json"))
                        .basic_auth(&key, Some(&secret))
                        .form(&[("number", n.as_str()), ("brand", "Acme")])
                        .send()
                        .and_then(|r| r.json::<Value>());
                    // Requests to the dead node fail: they were never acknowledged.
                    if let Ok(body) = answer {
                        if body["status"] == "0" {
                            let id = body["request_id"].as_str().unwrap().to_owned();
                            acknowledged.lock().unwrap().push((n, id));
                        }
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1200));
    c.nodes[0].kill9();
    for s in senders {
        s.join().unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() > 50,
        "traffic ran: {} acknowledged",
        acknowledged.len()
    );
    println!(
        "{} verifications acknowledged by the two nodes",
        acknowledged.len()
    );

    // Every acknowledged verification gets its SMS (the survivor sweeps what the dead node held)…
    let by = wait_until(&c, 1, Duration::from_secs(20), |by| {
        acknowledged.iter().all(|(_, id)| by.contains_key(id))
    });
    let missing: Vec<&String> = acknowledged
        .iter()
        .map(|(_, id)| id)
        .filter(|id| !by.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} never delivered",
        missing.len(),
        acknowledged.len()
    );
    // …exactly once…
    for (_, id) in &acknowledged {
        assert_eq!(by[id].len(), 1, "request {id} got {:?}", by[id]);
    }
    // …and completes through the survivor.
    for (_, id) in &acknowledged {
        let pin = support::pin_in(by[id][0]["text"].as_str().unwrap());
        let body = c
            .post(
                1,
                "/verify/check/json",
                &[("request_id", id), ("code", &pin)],
            )
            .unwrap();
        assert_eq!(body["status"], "0", "{id}: {body}");
    }
}

#[test]
#[cfg_attr(not(pg_tests), ignore = "needs VERIFYD_TEST_POSTGRES_URL")]
fn the_health_check_fails_while_the_database_does() {
    let Some(c) = cluster(1, &[]) else {
        return;
    };
    let health = || {
        client()
            .get(format!("{}/healthz", c.base(0)))
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(health(), 200);
    c.schema
        .execute("alter table verification rename to verification_gone");
    assert_eq!(health(), 503);
    c.schema
        .execute("alter table verification_gone rename to verification");
    assert_eq!(health(), 200);
}

#[test]
fn a_delivery_held_by_a_node_that_died_is_sent_by_another_once_its_lease_runs_out() {
    use verifyd::api::v1::workflow::Workflow;
    use verifyd::crypto::{OsMinter, ServerKey};
    use verifyd::domain::{RequestId, Verification};
    use verifyd::store::postgres::PgStore;
    use verifyd::store::VerificationStore;

    let Some(schema) = PgSchema::create() else {
        eprintln!("skipped: VERIFYD_TEST_POSTGRES_URL is not set");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("cluster.key");
    let lease = Duration::from_secs(3);
    let number = "447700179001";
    let id = RequestId::from_bytes([7; 16]);

    // The "dead node": it stores a verification and its first delivery, leased to itself for
    // 3 s, and never sends it.
    let stored_at = Instant::now();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let server_key = ServerKey::load_or_create(&key_file).unwrap();
        let store = PgStore::open(&schema.url)
            .await
            .unwrap()
            .with_delivery_lease(lease);
        let new = Workflow::DEFAULT.request(id.clone(), "deadnode", number);
        let now = chrono::Utc::now();
        let (v, first) = Verification::start(new, now, &mut OsMinter::new(server_key));
        store.create(v, first, now).await.unwrap();
    });

    let node = support::start_url(
        dir.path(),
        &schema.url,
        &["--secret-key-file", key_file.to_str().unwrap()],
    );
    let inbox = || -> Vec<Value> {
        client()
            .get(format!("{}/inbox/messages", node.base("http")))
            .query(&[("to", number)])
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    let deadline = stored_at + Duration::from_secs(10);
    let list = loop {
        let list = inbox();
        if !list.is_empty() || Instant::now() > deadline {
            break list;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let waited = stored_at.elapsed();
    assert_eq!(list.len(), 1, "sent once by the live node: {list:?}");
    assert_eq!(list[0]["request_id"], id.as_str());
    assert!(
        waited >= lease - Duration::from_millis(300),
        "not before the lease ran out ({waited:?})"
    );
    assert!(node.log().contains("lease ran out"), "{}", node.log());
}

/// Brute force across nodes (issue 22 §4): `codes` checked against request `id` all at once,
/// alternating between the two nodes, through v1; their statuses in order.
fn v1_checks_at_once(c: &Cluster, id: &str, codes: &[String]) -> Vec<String> {
    let barrier = std::sync::Barrier::new(codes.len());
    std::thread::scope(|s| {
        let handles: Vec<_> = codes
            .iter()
            .enumerate()
            .map(|(i, code)| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    let body = c
                        .post(
                            i % 2,
                            "/verify/check/json",
                            &[("request_id", id), ("code", code)],
                        )
                        .unwrap();
                    body["status"].as_str().unwrap().to_owned()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// As [`v1_checks_at_once`], through v2: each answer's HTTP status.
fn v2_checks_at_once(c: &Cluster, id: &str, codes: &[String]) -> Vec<u16> {
    let barrier = std::sync::Barrier::new(codes.len());
    std::thread::scope(|s| {
        let handles: Vec<_> = codes
            .iter()
            .enumerate()
            .map(|(i, code)| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    client()
                        .post(format!("{}/v2/verify/{id}", c.base(i % 2)))
                        .basic_auth(&c.key, Some(&c.secret))
                        .json(&serde_json::json!({ "code": code }))
                        .send()
                        .unwrap()
                        .status()
                        .as_u16()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// `n` different wrong codes of the PIN's length.
fn guesses(pin: &str, n: usize) -> Vec<String> {
    let width = pin.len();
    (0u64..)
        .map(|i| format!("{:0width$}", i * 7919 % 10u64.pow(width as u32)))
        .filter(|g| g != pin)
        .take(n)
        .collect()
}

/// Starts a v1 request to `to` on `node`; its id and PIN.
fn start_v1(c: &Cluster, node: usize, to: &str) -> (String, String) {
    let body = c
        .post(node, "/verify/json", &[("number", to), ("brand", "Acme")])
        .unwrap();
    assert_eq!(body["status"], "0", "{body}");
    let id = body["request_id"].as_str().unwrap().to_owned();
    let by = wait_until(c, node, Duration::from_secs(10), |by| by.contains_key(&id));
    let pin = support::pin_in(by[&id][0]["text"].as_str().unwrap());
    (id, pin)
}

fn count<T: PartialEq>(list: &[T], what: T) -> usize {
    list.iter().filter(|x| **x == what).count()
}

/// The `status` of each check a v1 search on `node` shows.
fn searched_checks(c: &Cluster, node: usize, id: &str) -> (String, Vec<String>) {
    let found = c
        .post(node, "/verify/search/json", &[("request_id", id)])
        .unwrap();
    let checks = found["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("{found}"))
        .iter()
        .map(|c| c["status"].as_str().unwrap().to_owned())
        .collect();
    (found["status"].as_str().unwrap().to_owned(), checks)
}

#[test]
#[cfg_attr(not(pg_tests), ignore = "needs VERIFYD_TEST_POSTGRES_URL")]
fn concurrent_wrong_codes_on_two_nodes_compare_at_most_the_allowed_tries() {
    use verifyd::api::v1::workflow::TRIES_PER_CODE;
    let Some(c) = cluster(2, &[]) else {
        return;
    };
    let tries = usize::from(TRIES_PER_CODE);
    let (id, pin) = start_v1(&c, 0, &number(3000));
    let answers = v1_checks_at_once(&c, &id, &guesses(&pin, 50));
    assert_eq!(count(&answers, "16".into()), tries - 1, "{answers:?}");
    assert_eq!(count(&answers, "17".into()), 1, "{answers:?}");
    assert_eq!(count(&answers, "6".into()), 50 - tries, "{answers:?}");
    // The right code, on both nodes at once, is refused now.
    let right = v1_checks_at_once(&c, &id, &vec![pin; 10]);
    assert!(right.iter().all(|s| s == "6"), "{right:?}");
    for node in 0..2 {
        let (status, checks) = searched_checks(&c, node, &id);
        assert_eq!(status, "FAILED", "node {node}");
        assert_eq!(checks, vec!["INVALID"; tries], "node {node}");
    }

    // v2, the same: 400 for each wrong code but the last allowed, 410 from then on.
    let to = number(3001);
    let started: Value = client()
        .post(format!("{}/v2/verify", c.base(1)))
        .basic_auth(&c.key, Some(&c.secret))
        .json(&serde_json::json!({ "brand": "Acme", "workflow": [{ "channel": "sms", "to": to }] }))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let uuid = started["request_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{started}"));
    let hex = uuid.replace('-', "");
    let by = wait_until(&c, 1, Duration::from_secs(10), |by| by.contains_key(&hex));
    let code = support::pin_in(by[&hex][0]["text"].as_str().unwrap());
    let answers = v2_checks_at_once(&c, uuid, &guesses(&code, 50));
    assert_eq!(count(&answers, 400), tries - 1, "{answers:?}");
    assert_eq!(count(&answers, 410), 50 - (tries - 1), "{answers:?}");
    let right = v2_checks_at_once(&c, uuid, &vec![code; 10]);
    assert!(right.iter().all(|s| *s == 410), "{right:?}");
    let (status, checks) = searched_checks(&c, 0, &hex);
    assert_eq!(status, "FAILED");
    assert_eq!(checks, vec!["INVALID"; tries]);
}

#[test]
#[cfg_attr(not(pg_tests), ignore = "needs VERIFYD_TEST_POSTGRES_URL")]
fn concurrent_right_and_wrong_codes_on_two_nodes_verify_at_most_once() {
    use verifyd::api::v1::workflow::TRIES_PER_CODE;
    let Some(c) = cluster(2, &[]) else {
        return;
    };
    let tries = usize::from(TRIES_PER_CODE);
    for round in 0..6 {
        let (id, pin) = start_v1(&c, round % 2, &number(3100 + round));
        // Twelve wrong codes and four right ones, interleaved.
        let mut wrong = guesses(&pin, 12).into_iter();
        let codes: Vec<String> = (0..16)
            .map(|i| {
                if i % 4 == 2 {
                    pin.clone()
                } else {
                    wrong.next().unwrap()
                }
            })
            .collect();
        let answers = v1_checks_at_once(&c, &id, &codes);
        let verified = count(&answers, "0".into());
        let wrong = count(&answers, "16".into());
        let too_many = count(&answers, "17".into());
        let gone = count(&answers, "6".into());
        assert_eq!(verified + wrong + too_many + gone, 16, "{answers:?}");
        assert!(verified <= 1, "round {round}: {answers:?}");
        assert_eq!(verified + too_many, 1, "round {round}: {answers:?}");
        assert!(wrong < tries, "round {round}: {answers:?}");
        let (status, checks) = searched_checks(&c, (round + 1) % 2, &id);
        assert_eq!(checks.len(), verified + wrong + too_many, "round {round}");
        if verified == 1 {
            assert_eq!(status, "SUCCESS");
        } else {
            assert_eq!(status, "FAILED");
            assert_eq!(checks, vec!["INVALID"; tries]);
        }
        println!("round {round}: {verified} verified, {wrong} wrong");
    }
}
