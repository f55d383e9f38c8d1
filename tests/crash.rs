//! Crashes under load and a full disk: nothing acknowledged is lost, nothing fires twice, and the
//! server recovers by itself when space returns.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::Server;

use support::client;

fn number(i: usize) -> String {
    format!("4477001{:05}", 50_000 + i)
}

/// Starts a verification of workflow 5 (an SMS, then a call 60 s later) for `number`.
fn start_workflow_5(
    http: &reqwest::blocking::Client,
    base: &str,
    key: &str,
    secret: &str,
    number: &str,
) -> reqwest::Result<Value> {
    http.post(format!("{base}/verify/json"))
        .basic_auth(key, Some(secret))
        .form(&[
            ("number", number),
            ("brand", "Acme"),
            ("workflow_id", "5"),
            ("next_event_wait", "60"),
            // 3 minutes of real time at 20x: checking a thousand verifications one by one in a
            // debug build outlasts the default 300 s (15 s).
            ("pin_expiry", "3600"),
        ])
        .send()
        .and_then(|r| r.json())
}

/// `threads` clients start verifications (workflow 5: an SMS, then a call 60 s later) as fast as
/// the server answers, until `until`. Returns (number, request id) of every status "0".
fn traffic(
    base: &str,
    key: &str,
    secret: &str,
    until: Instant,
    threads: usize,
) -> Vec<(String, String)> {
    let acknowledged: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (base, key, secret) = (base.to_owned(), key.to_owned(), secret.to_owned());
            let acknowledged = acknowledged.clone();
            std::thread::spawn(move || {
                let http = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(3))
                    .build()
                    .unwrap();
                let mut i = 0;
                while Instant::now() < until {
                    let n = number(t * 5_000 + i);
                    i += 1;
                    match start_workflow_5(&http, &base, &key, &secret, &n) {
                        Ok(body) if body["status"] == "0" => {
                            let id = body["request_id"].as_str().unwrap().to_owned();
                            acknowledged.lock().unwrap().push((n, id));
                        }
                        // Refused connections once the server is dead: never acknowledged.
                        _ => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let list = acknowledged.lock().unwrap().clone();
    list
}

fn inbox_by_request(base: &str) -> HashMap<String, Vec<Value>> {
    let list: Vec<Value> = client()
        .get(format!("{base}/inbox/messages"))
        .query(&[("limit", "5000")])
        .send()
        .unwrap()
        .json()
        .unwrap();
    let mut by: HashMap<String, Vec<Value>> = HashMap::new();
    for m in list {
        by.entry(m["request_id"].as_str().unwrap().to_owned())
            .or_default()
            .push(m);
    }
    by
}

/// Kills the server with SIGKILL in the middle of traffic, starts it again on the same
/// database, and checks every acknowledged verification.
fn crash_under_load(start: impl Fn() -> Server) {
    let mut server = start();
    let (key, secret) = server
        .first_key
        .clone()
        .expect("a new database prints its key");
    let base = server.base("http");
    // The first number of a calling code compiles its patterns: seconds in a debug build on a
    // loaded machine, longer than the traffic window before the kill. One request first keeps
    // that out of the window.
    let warm_up = number(19_999);
    let body = start_workflow_5(&client(), &base, &key, &secret, &warm_up).unwrap();
    assert_eq!(body["status"], "0", "{body}");
    let warmed_up = (warm_up, body["request_id"].as_str().unwrap().to_owned());
    let began = Instant::now();
    let traffic_thread = {
        let (key, secret) = (key.clone(), secret.clone());
        std::thread::spawn(move || {
            traffic(&base, &key, &secret, began + Duration::from_millis(3000), 4)
        })
    };
    std::thread::sleep(
        (began + Duration::from_millis(2000)).saturating_duration_since(Instant::now()),
    );
    server.kill9();
    let mut acknowledged = traffic_thread.join().unwrap();
    // A floor for a loaded CI machine; an idle one acknowledges 250–450 here.
    assert!(
        acknowledged.len() >= 100,
        "hundreds of requests per second: {}",
        acknowledged.len()
    );
    println!(
        "{} verifications acknowledged before the kill",
        acknowledged.len()
    );
    acknowledged.push(warmed_up);

    let server = start();
    let base = server.base("http");
    // Every acknowledged verification is there…
    for (_, id) in &acknowledged {
        let body: Value = client()
            .get(format!("{base}/verify/search/json"))
            .basic_auth(&key, Some(&secret))
            .query(&[("request_id", id.as_str())])
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(body["request_id"], id.as_str(), "search finds {id}: {body}");
    }
    // …its SMS and the call that came due (3 s of real time at 20x) are each delivered once…
    let deadline = Instant::now() + Duration::from_secs(30);
    let by = loop {
        let by = inbox_by_request(&base);
        let done = acknowledged
            .iter()
            .all(|(_, id)| by.get(id).map_or(0, Vec::len) >= 2);
        if done || Instant::now() > deadline {
            break by;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    std::thread::sleep(Duration::from_millis(1000));
    let by_after = inbox_by_request(&base);
    for (_, id) in &acknowledged {
        let kinds: Vec<&str> = by_after
            .get(id)
            .map(|l| l.iter().map(|m| m["channel"].as_str().unwrap()).collect())
            .unwrap_or_default();
        assert_eq!(kinds, ["voice", "sms"], "{id}: {:?}", by.get(id));
    }
    // …and it can be checked.
    for (_, id) in &acknowledged {
        let pin = support::pin_in(by_after[id][0]["text"].as_str().unwrap());
        let body: Value = client()
            .post(format!("{base}/verify/check/json"))
            .basic_auth(&key, Some(&secret))
            .form(&[("request_id", id.as_str()), ("code", pin.as_str())])
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(body["status"], "0", "{id}: {body}");
    }
}

#[test]
fn sqlite_a_sigkill_under_load_loses_no_acknowledged_verification() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.db");
    let port = support::free_port();
    crash_under_load(|| support::start_on(dir.path(), &db, port, &["--clock-speed", "20"]));
}

#[test]
fn postgres_a_sigkill_under_load_loses_no_acknowledged_verification() {
    let Some(schema) = support::PgSchema::create() else {
        eprintln!("skipped: VERIFYD_TEST_POSTGRES_URL is not set");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("crash.key");
    let key_arg = key_file.to_str().unwrap().to_owned();
    crash_under_load(|| {
        support::start_url(
            dir.path(),
            &schema.url,
            // A short lease: what the killed process held is sent by the next one within 2 s.
            &[
                "--clock-speed",
                "20",
                "--secret-key-file",
                &key_arg,
                "--delivery-lease",
                "2",
            ],
        )
    });
}

/// A tmpfs of `size` at a new directory, unmounted on drop; `None` where mounting is not allowed.
struct SmallDisk {
    path: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<Self> {
        let path = tempfile::tempdir().ok()?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path.path())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Self { path })
    }

    fn path(&self) -> &Path {
        self.path.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.path.path())
            .status();
    }
}

#[test]
fn a_full_disk_answers_status_5_keeps_what_was_committed_and_recovers_without_a_restart() {
    let Some(disk) = SmallDisk::mount("24m") else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let logs = tempfile::tempdir().unwrap();
    let db = disk.path().join("full.db");
    let server = support::start(logs.path(), &db, &[]);
    let (key, secret) = server.first_key.clone().unwrap();
    let base = server.base("http");
    let start = |n: &str| -> Value {
        client()
            .post(format!("{base}/verify/json"))
            .basic_auth(&key, Some(&secret))
            .form(&[("number", n), ("brand", "Acme")])
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    let before: Vec<(String, String)> = (0..20)
        .map(|i| {
            let n = number(40_000 + i);
            let body = start(&n);
            assert_eq!(body["status"], "0", "{body}");
            (n, body["request_id"].as_str().unwrap().to_owned())
        })
        .collect();

    // Fill the disk.
    let filler = disk.path().join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        for size in [64 * 1024, 4096] {
            let block = vec![0u8; size];
            while f.write_all(&block).is_ok() {}
        }
        let _ = f.sync_all();
    }
    // Commits may still fit where the WAL had started over (its pages are allocated already);
    // the first one that needs a new page is refused.
    let mut refused = 0;
    for i in 0..500 {
        let body = start(&number(41_000 + i));
        if body["status"] == "5" {
            assert_eq!(body["error_text"], "Internal Error");
            refused += 1;
            if refused == 5 {
                break;
            }
        }
    }
    assert!(
        refused > 0,
        "a full disk refuses new verifications with status 5"
    );
    assert!(
        server.log().contains("disk is full"),
        "the log says why: {}",
        server.log()
    );

    // What was committed before is intact and readable.
    for (_, id) in &before {
        let body: Value = client()
            .get(format!("{base}/verify/search/json"))
            .basic_auth(&key, Some(&secret))
            .query(&[("request_id", id.as_str())])
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(body["status"], "IN PROGRESS", "{id}: {body}");
    }

    // Space returns; the same process serves again.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let body = start(&number(42_000));
        if body["status"] == "0" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still refused after space returned: {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for (n, id) in &before {
        let list: Vec<Value> = client()
            .get(format!("{base}/inbox/messages"))
            .query(&[("to", n.as_str())])
            .send()
            .unwrap()
            .json()
            .unwrap();
        let pin = support::pin_in(list.last().unwrap()["text"].as_str().unwrap());
        let body: Value = client()
            .post(format!("{base}/verify/check/json"))
            .basic_auth(&key, Some(&secret))
            .form(&[("request_id", id.as_str()), ("code", pin.as_str())])
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(body["status"], "0", "{id}: {body}");
    }
    drop(server);
}
