//! The whole defence against SMS pumping, on two nodes of one PostgreSQL database: a bot sends
//! to 2,000 numbers of one prefix and never converts, while people elsewhere type four codes in
//! five. The prefix is blocked within its floor (docs/configuration.md, "Fraud"), on both nodes
//! at once; the people are never refused; a limit counted on both nodes holds as one. Runs when
//! `VERIFYD_TEST_POSTGRES_URL` is set; passes without running otherwise.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::client;
use support::cluster::{cluster, Cluster};

/// The bot's numbers: one Nigerian mobile prefix (234 803 123), the last four digits its own.
fn bot_number(i: usize) -> String {
    format!("234803123{i:04}")
}
const BOT_PREFIX: &str = "prefix:234803123";
const BOT_SENDS: usize = 2_000;
/// `[fraud] prefix_per_hour`, the documented bound.
const PREFIX_FLOOR: usize = 10;

/// People: UK mobiles, each their own.
fn person(i: usize) -> String {
    format!("4477001{:05}", 20_000 + i)
}
const PEOPLE: usize = 100;

const CONFIG: &str = r#"
[[routes]]
kind = "sms"
channels = ["inbox"]

[[routes]]
kind = "voice"
channels = ["inbox"]

[fraud]
mode = "block"
prefix_per_hour = 10

[limits]
per_destination = "2/h"
"#;

fn start(c: &Cluster, node: usize, to: &str, ip: &str) -> Value {
    c.post(
        node,
        "/verify/json",
        &[("number", to), ("brand", "Acme"), ("ip_address", ip)],
    )
    .unwrap()
}

/// The code of request `id` to `to`, as the inbox on `node` shows it (bounded wait).
fn code(c: &Cluster, node: usize, to: &str, id: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let list: Vec<Value> = client()
            .get(format!("{}/inbox/messages", c.base(node)))
            .query(&[("to", to)])
            .send()
            .unwrap()
            .json()
            .unwrap();
        if let Some(m) = list.iter().find(|m| m["request_id"] == id) {
            return support::pin_in(m["text"].as_str().unwrap());
        }
        assert!(Instant::now() < deadline, "no message for {id}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A person: starts on one node, reads the code, and (unless they give up) checks it on the
/// other. Every answer must be a success.
fn person_verifies(c: &Cluster, i: usize) {
    let to = person(i);
    let ip = format!("198.51.100.{}", i % 250);
    let started = start(c, i % 2, &to, &ip);
    assert_eq!(started["status"], "0", "person {i}: {started}");
    let id = started["request_id"].as_str().unwrap();
    let pin = code(c, i % 2, &to, id);
    if i % 5 == 4 {
        return;
    }
    let checked = c
        .post(
            (i + 1) % 2,
            "/verify/check/json",
            &[("request_id", id), ("code", &pin)],
        )
        .unwrap();
    assert_eq!(checked["status"], "0", "person {i}: {checked}");
}

#[test]
#[cfg_attr(not(pg_tests), ignore = "needs VERIFYD_TEST_POSTGRES_URL")]
fn a_pumping_bot_is_blocked_within_its_floor_on_both_nodes_and_people_never_are() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("verifyd.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let Some(c) = cluster(2, &["--config", config.to_str().unwrap()]) else {
        return;
    };
    let accepted = AtomicUsize::new(0);
    let blocked = AtomicUsize::new(0);
    let next_person = AtomicUsize::new(0);
    std::thread::scope(|s| {
        // The bot: four workers over both nodes, a new address for each send (a proxy pool).
        for worker in 0..4 {
            let (c, accepted, blocked) = (&c, &accepted, &blocked);
            s.spawn(move || {
                for i in (worker..BOT_SENDS).step_by(4) {
                    let ip = format!("203.0.{}.{}", i / 250, i % 250);
                    let answer = start(c, i % 2, &bot_number(i), &ip);
                    match answer["status"].as_str() {
                        Some("0") => accepted.fetch_add(1, Ordering::Relaxed),
                        Some("7") => blocked.fetch_add(1, Ordering::Relaxed),
                        _ => panic!("bot send {i}: {answer}"),
                    };
                }
            });
        }
        // People, two at a time, all along.
        for _ in 0..2 {
            let (c, next_person) = (&c, &next_person);
            s.spawn(move || loop {
                let i = next_person.fetch_add(1, Ordering::Relaxed);
                if i >= PEOPLE {
                    return;
                }
                person_verifies(c, i);
            });
        }
    });
    let accepted = accepted.into_inner();
    assert!(
        (1..=PREFIX_FLOOR).contains(&accepted),
        "the bot got {accepted} sends through"
    );
    assert_eq!(accepted + blocked.into_inner(), BOT_SENDS);

    // Both nodes refuse the prefix, naming it; the block is the first of its kind.
    for node in 0..2 {
        let answer = start(&c, node, &bot_number(BOT_SENDS + node), "203.0.9.1");
        assert_eq!(answer["status"], "7", "node {node}: {answer}");
        assert_eq!(answer["network"], "234803123");
    }
    let report: Value = client()
        .get(format!("{}/v2/verify/attempts/summary?since=1h", c.base(1)))
        .basic_auth(&c.key, Some(&c.secret))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let blocks = report["blocks"].as_array().unwrap();
    assert_eq!(blocks.len(), 1, "{report}");
    assert_eq!(blocks[0]["subject"], BOT_PREFIX);
    assert_eq!(blocks[0]["times"], 1);
    let bot = report["prefixes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| format!("prefix:{}", p["prefix"].as_str().unwrap()) == BOT_PREFIX)
        .unwrap();
    // Counted: the sends let through, and those that took the prefix over its floor at once
    // (one per bot worker at most); not those refused by the block in force.
    let counted = bot["attempts"].as_u64().unwrap() as usize;
    assert!((accepted + 1..=accepted + 4).contains(&counted), "{report}");
    assert_eq!(bot["converted"], 0);
    let gb = report["countries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["country"] == "GB")
        .unwrap();
    assert_eq!(
        (gb["attempts"].as_u64(), gb["converted"].as_u64()),
        (Some(100), Some(80))
    );

    // One number tried twenty times at once on both nodes: `per_destination = "2/h"` lets two
    // tries through in all (one starts, one finds it in progress), not two per node.
    let to = person(PEOPLE + 1);
    let answers: Vec<Value> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let (c, to) = (&c, &to);
                s.spawn(move || start(c, i % 2, to, "198.51.100.77"))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let statuses: Vec<&str> = answers
        .iter()
        .map(|a| a["status"].as_str().unwrap())
        .collect();
    let through = statuses.iter().filter(|s| **s != "1").count();
    assert_eq!(through, 2, "{statuses:?}");
    assert_eq!(
        statuses.iter().filter(|s| **s == "0").count(),
        1,
        "{statuses:?}"
    );
}
