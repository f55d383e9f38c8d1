//! One scenario's logs, at every level (`RUST_LOG=trace`), hold none of the PINs, secrets and
//! full numbers it used (issue 22 §4): the real binary, its stdout and stderr captured whole, v1
//! and v2 requests with wrong and right checks, a PSD2 request, search, cancel, next, a callback
//! to an application, and calls refused for bad credentials. On SQLite always; on PostgreSQL too
//! when `VERIFYD_TEST_POSTGRES_URL` is set.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use support::gateway::{Answer, Gateway};
use support::PgSchema;

const PRIVATE_KEY: &str = include_str!("fixtures/vonage-test-key.pem");
const PUBLIC_KEY_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/vonage-test-key.pub.pem"
);

/// `verifyd serve` logging at every level, its stdout and stderr each in a file of its own.
struct Traced {
    child: Child,
    base: String,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Traced {
    fn start(dir: &Path, url: &str, key_file: &Path) -> Self {
        let port = support::free_port();
        let stdout = dir.join("stdout.log");
        let stderr = dir.join("stderr.log");
        let child = Command::new(support::BIN)
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--database", url])
            .args(["--secret-key-file", key_file.to_str().unwrap()])
            // Cancel is allowed 30 s after the start: a second of real time.
            .args(["--clock-speed", "40"])
            .env("RUST_LOG", "trace")
            .env_remove("VERIFYD_SECRET_KEY")
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("verifyd starts");
        let mut traced = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            stdout,
            stderr,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !traced.stderr().contains("verifyd is listening") {
            if let Ok(Some(status)) = traced.child.try_wait() {
                panic!("verifyd exited with {status}: {}", traced.stderr());
            }
            assert!(Instant::now() < deadline, "not listening within 30 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        traced
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// SIGTERM, so that what the server logs while it stops is captured too; SIGKILL after 10 s.
    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Traced {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Everything the scenario must never see in a log, by what it is.
#[derive(Default)]
struct Secrets(Vec<(String, String)>);

impl Secrets {
    fn add(&mut self, what: impl Into<String>, value: impl Into<String>) {
        let value = value.into();
        assert!(!value.is_empty());
        if !self.0.iter().any(|(_, v)| *v == value) {
            self.0.push((what.into(), value));
        }
    }

    /// A PIN as a message shows it: an SMS's digits, and a call's digits spoken one at a time.
    fn add_pin(&mut self, what: &str, text: &str) -> String {
        let pin = support::pin_in(text);
        let spoken: Vec<String> = pin.chars().map(String::from).collect();
        self.add(what, pin.clone());
        self.add(format!("{what}, spoken"), spoken.join(", "));
        pin
    }
}

/// The first line of `log` that shows `needle`. A line's timestamp is left out (its fraction of
/// a second is six digits), and a needle of digits only counts where no digit touches it: a
/// 6-digit PIN inside a longer run of digits (a port, a duration, a hex id) is another number.
fn find<'a>(log: &'a str, needle: &str) -> Option<&'a str> {
    let digits = needle.bytes().all(|b| b.is_ascii_digit());
    log.lines().find(|line| {
        let text = match line.split_once(' ') {
            Some((first, rest)) if is_timestamp(first) => rest,
            _ => line,
        };
        text.match_indices(needle).any(|(at, _)| {
            let before = text[..at].bytes().next_back();
            let after = text[at + needle.len()..].bytes().next();
            !digits
                || !(before.is_some_and(|b| b.is_ascii_digit())
                    || after.is_some_and(|b| b.is_ascii_digit()))
        })
    })
}

/// `2026-12-07T10:00:00.123456Z`, as the log's lines begin.
fn is_timestamp(word: &str) -> bool {
    word.len() >= 20
        && word.as_bytes()[4] == b'-'
        && word.as_bytes()[10] == b'T'
        && word.ends_with('Z')
}

struct Scenario {
    http: reqwest::Client,
    base: String,
    key: (String, String),
}

impl Scenario {
    async fn v1(&self, key: &(String, String), path: &str, params: &[(&str, &str)]) -> Value {
        let mut form = vec![("api_key", key.0.as_str()), ("api_secret", key.1.as_str())];
        form.extend_from_slice(params);
        self.http
            .post(format!("{}{path}", self.base))
            .form(&form)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn v1_basic(&self, key: &(String, String), path: &str, params: &[(&str, &str)]) -> Value {
        self.http
            .get(format!("{}{path}", self.base))
            .basic_auth(&key.0, Some(&key.1))
            .query(params)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// A v1 `GET` with whatever `params` say, credentials included.
    async fn v1_get(&self, path: &str, params: &[(&str, &str)]) -> Value {
        self.http
            .get(format!("{}{path}", self.base))
            .query(params)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// A v2 call with an `Authorization` header; the HTTP status and the JSON answer.
    async fn v2(
        &self,
        method: reqwest::Method,
        path: &str,
        auth: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("authorization", auth);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// The messages to `to` of request `id` (hex), once there are `n`, newest first.
    async fn messages(&self, to: &str, id: &str, n: usize) -> Vec<Value> {
        let mine = |m: &Value| m["request_id"] == id;
        let inbox = support::inbox_until(&self.http, &self.base, to, |inbox| {
            inbox.iter().filter(|m| mine(m)).count() >= n
        })
        .await;
        let list: Vec<Value> = inbox.into_iter().filter(mine).collect();
        assert!(list.len() >= n, "{n} messages for {id}: {list:?}");
        list
    }
}

fn cli(args: &[&str]) -> Value {
    let (ok, out) = support::run_bounded(
        Command::new(support::BIN).args(args).stdin(Stdio::null()),
        Duration::from_secs(30),
    );
    assert!(ok, "{args:?}: {out}");
    // Its stdout (the JSON line) comes first, then whatever it logged.
    out.lines()
        .find_map(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("{out}"))
}

fn basic(key: &str, secret: &str) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{key}:{secret}"));
    format!("Basic {token}")
}

fn number(i: u32) -> String {
    format!("4477001{:05}", 60_000 + i)
}

/// Runs the scenario against a server on `url` and checks its logs.
async fn scenario(url: &str, dir: &Path) {
    let key_file = dir.join("server.key");
    let mut server = Traced::start(dir, url, &key_file);
    let mut secrets = Secrets::default();
    let mut ids: Vec<String> = Vec::new();

    // The first key's secret is printed once, on stdout, as the first line: by design.
    let first_line = server.stdout().lines().next().map(str::to_owned);
    let first_line = first_line.expect("the first start prints its key");
    let first: Value = serde_json::from_str(&first_line).unwrap();
    let key = (
        first["api_key"].as_str().unwrap().to_owned(),
        first["api_secret"].as_str().unwrap().to_owned(),
    );
    secrets.add("the first key's secret", &key.1);
    secrets.add("the first key's Basic credentials", basic(&key.0, &key.1));
    secrets.add(
        "the server key",
        std::fs::read_to_string(&key_file).unwrap().trim(),
    );
    let s = Scenario {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        base: server.base.clone(),
        key: key.clone(),
    };

    // A second key, made with the CLI while the server runs, and used at once.
    let made = cli(&["keys", "create", "--name", "second", "--database", url]);
    let key2 = (
        made["api_key"].as_str().unwrap().to_owned(),
        made["api_secret"].as_str().unwrap().to_owned(),
    );
    secrets.add("the second key's secret", &key2.1);
    secrets.add(
        "the second key's Basic credentials",
        basic(&key2.0, &key2.1),
    );

    // v1: a 6-digit code, a wrong check, search, the right check.
    let n1 = number(1);
    secrets.add("a v1 number", &n1);
    let body = s
        .v1(
            &s.key,
            "/verify/json",
            &[("number", &n1), ("brand", "Acme"), ("code_length", "6")],
        )
        .await;
    assert_eq!(body["status"], "0", "{body}");
    let id1 = body["request_id"].as_str().unwrap().to_owned();
    let text = s.messages(&n1, &id1, 1).await[0]["text"].clone();
    let pin1 = secrets.add_pin("a v1 PIN", text.as_str().unwrap());
    let wrong = format!("{:06}", (pin1.parse::<u32>().unwrap() + 1) % 1_000_000);
    secrets.add("a wrong v1 code", &wrong);
    let body = s
        .v1(
            &s.key,
            "/verify/check/json",
            &[("request_id", &id1), ("code", &wrong)],
        )
        .await;
    assert_eq!(body["status"], "16", "{body}");
    let body = s
        .v1_basic(&s.key, "/verify/search/json", &[("request_id", &id1)])
        .await;
    assert_eq!(body["number"], n1.as_str(), "{body}");
    // As some clients send them: the credentials in the query string.
    let body = s
        .v1_get(
            "/verify/search/json",
            &[
                ("api_key", &s.key.0),
                ("api_secret", &s.key.1),
                ("request_id", &id1),
            ],
        )
        .await;
    assert_eq!(body["number"], n1.as_str(), "{body}");
    let body = s
        .v1(
            &s.key,
            "/verify/check/json",
            &[("request_id", &id1), ("code", &pin1)],
        )
        .await;
    assert_eq!(body["status"], "0", "{body}");
    ids.push(id1.clone());

    // v1 with the second key: a second request to a number in progress (10), next event (a
    // call, the code spoken), and a cancel refused once the call has started.
    let n2 = number(2);
    secrets.add("a second v1 number", &n2);
    let body = s
        .v1_basic(
            &key2,
            "/verify/json",
            &[("number", &n2), ("brand", "Acme"), ("code_length", "6")],
        )
        .await;
    assert_eq!(body["status"], "0", "{body}");
    let id2 = body["request_id"].as_str().unwrap().to_owned();
    let again = s
        .v1_basic(&key2, "/verify/json", &[("number", &n2), ("brand", "Acme")])
        .await;
    assert_eq!(again["status"], "10", "{again}");
    let body = s
        .v1(
            &key2,
            "/verify/control/json",
            &[("request_id", &id2), ("cmd", "trigger_next_event")],
        )
        .await;
    assert_eq!(body["status"], "0", "{body}");
    for m in s.messages(&n2, &id2, 2).await {
        secrets.add_pin("a v1 PIN, sent twice", m["text"].as_str().unwrap());
    }
    ids.push(id2.clone());

    // v1: a cancel that works (after 30 s of workflow time).
    let n3 = number(3);
    secrets.add("a cancelled request's number", &n3);
    let body = s
        .v1(
            &s.key,
            "/verify/json",
            &[("number", &n3), ("brand", "Acme"), ("code_length", "6")],
        )
        .await;
    assert_eq!(body["status"], "0", "{body}");
    let id3 = body["request_id"].as_str().unwrap().to_owned();
    let text = s.messages(&n3, &id3, 1).await[0]["text"].clone();
    secrets.add_pin("a cancelled request's PIN", text.as_str().unwrap());
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let body = s
        .v1(
            &s.key,
            "/verify/control/json",
            &[("request_id", &id3), ("cmd", "cancel")],
        )
        .await;
    assert_eq!(body["status"], "0", "{body}");
    ids.push(id3.clone());

    // PSD2.
    let n4 = number(4);
    secrets.add("a PSD2 number", &n4);
    let body = s
        .v1(
            &s.key,
            "/verify/psd2/json",
            &[
                ("number", &n4),
                ("payee", "Shop"),
                ("amount", "12.34"),
                ("code_length", "6"),
            ],
        )
        .await;
    assert_eq!(body["status"], "0", "{body}");
    let id4 = body["request_id"].as_str().unwrap().to_owned();
    let text = s.messages(&n4, &id4, 1).await[0]["text"].clone();
    let pin4 = secrets.add_pin("a PSD2 PIN", text.as_str().unwrap());
    let body = s
        .v1(
            &s.key,
            "/verify/check/json",
            &[("request_id", &id4), ("code", &pin4)],
        )
        .await;
    assert_eq!(body["status"], "0", "{body}");
    ids.push(id4.clone());

    // v2 with Basic credentials: SMS then a call, a wrong code, next, the call's code.
    let n5 = number(5);
    secrets.add("a v2 number", &n5);
    let auth2 = basic(&key2.0, &key2.1);
    let (status, body) = s
        .v2(
            reqwest::Method::POST,
            "/v2/verify",
            &auth2,
            Some(json!({ "brand": "Acme", "code_length": 8, "workflow": [
                { "channel": "sms", "to": n5 }, { "channel": "voice", "to": n5 }] })),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let uuid5 = body["request_id"].as_str().unwrap().to_owned();
    let id5 = uuid5.replace('-', "");
    let text = s.messages(&n5, &id5, 1).await[0]["text"].clone();
    let code5 = secrets.add_pin("a v2 code", text.as_str().unwrap());
    let path5 = format!("/v2/verify/{uuid5}");
    let wrong5 = format!("{:08}", (code5.parse::<u64>().unwrap() + 1) % 100_000_000);
    secrets.add("a wrong v2 code", &wrong5);
    let (status, _) = s
        .v2(
            reqwest::Method::POST,
            &path5,
            &auth2,
            Some(json!({ "code": wrong5 })),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = s.v2(reqwest::Method::GET, &path5, &auth2, None).await;
    assert_eq!(status, 200);
    let (status, _) = s
        .v2(
            reqwest::Method::POST,
            &format!("{path5}/next_workflow"),
            &auth2,
            None,
        )
        .await;
    assert_eq!(status, 200);
    let voice = s.messages(&n5, &id5, 2).await[0]["text"].clone();
    let code5b = secrets.add_pin("a v2 call's code", voice.as_str().unwrap());
    let (status, _) = s
        .v2(
            reqwest::Method::POST,
            &path5,
            &auth2,
            Some(json!({ "code": code5b })),
        )
        .await;
    assert_eq!(status, 200);
    ids.push(id5.clone());

    // v2 with an application's JWT and a callback to it.
    let receiver = Gateway::start(Answer::new(200, "")).await;
    let application = cli(&[
        "apps",
        "create",
        "--database",
        url,
        "--secret-key-file",
        key_file.to_str().unwrap(),
        "--key",
        &key.0,
        "--public-key",
        PUBLIC_KEY_FILE,
        "--status-url",
        &format!("{}/status", receiver.url()),
    ]);
    secrets.add(
        "an application's signature secret",
        application["signature_secret"].as_str().unwrap(),
    );
    let now = chrono::Utc::now().timestamp();
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &json!({ "application_id": application["application_id"], "iat": now, "exp": now + 600 }),
        &jsonwebtoken::EncodingKey::from_rsa_pem(PRIVATE_KEY.as_bytes()).unwrap(),
    )
    .unwrap();
    secrets.add("an application's JWT", &token);
    let bearer = format!("Bearer {token}");
    let n6 = number(6);
    secrets.add("a v2 number with a callback", &n6);
    let (status, body) = s
        .v2(
            reqwest::Method::POST,
            "/v2/verify",
            &bearer,
            Some(json!({ "brand": "Acme", "code_length": 10, "workflow": [{ "channel": "sms", "to": n6 }] })),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let uuid6 = body["request_id"].as_str().unwrap().to_owned();
    let id6 = uuid6.replace('-', "");
    let text = s.messages(&n6, &id6, 1).await[0]["text"].clone();
    let code6 = secrets.add_pin("a v2 code with a callback", text.as_str().unwrap());
    let (status, _) = s
        .v2(
            reqwest::Method::POST,
            &format!("/v2/verify/{uuid6}"),
            &bearer,
            Some(json!({ "code": code6 })),
        )
        .await;
    assert_eq!(status, 200);
    let seen = receiver.wait_for(2, Duration::from_secs(15)).await;
    assert_eq!(
        seen.len(),
        2,
        "the event and the summary were sent: {seen:?}"
    );
    ids.push(id6.clone());

    // Refused: a wrong secret (v1 form, v1 Basic, v2), an unknown key, a number that is not
    // one, a check of a request with a wrong secret carrying the right PIN of another request.
    let bad_secret = "Wr0ngS3cretZZ";
    secrets.add("a wrong secret", bad_secret);
    let bad = (key.0.clone(), bad_secret.to_owned());
    secrets.add("wrong Basic credentials", basic(&bad.0, &bad.1));
    let n7 = number(7);
    secrets.add("a number refused for bad credentials", &n7);
    let body = s
        .v1(&bad, "/verify/json", &[("number", &n7), ("brand", "Acme")])
        .await;
    assert_eq!(body["status"], "4", "{body}");
    let body = s
        .v1_basic(&bad, "/verify/json", &[("number", &n7), ("brand", "Acme")])
        .await;
    assert_eq!(body["status"], "4", "{body}");
    let body = s
        .v1(
            &bad,
            "/verify/check/json",
            &[("request_id", &id2), ("code", &pin1)],
        )
        .await;
    assert_eq!(body["status"], "4", "{body}");
    let body = s
        .v1_get(
            "/verify/search/json",
            &[
                ("api_key", &bad.0),
                ("api_secret", &bad.1),
                ("request_id", &id1),
            ],
        )
        .await;
    assert_eq!(body["status"], "4", "{body}");
    let body = s
        .v1_get(
            "/verify/search/json",
            &[
                ("api_key", &s.key.0),
                ("api_secret", &s.key.1),
                ("request_id", "ffffffffffffffffffffffffffffffff"),
            ],
        )
        .await;
    assert_eq!(body["status"], "101", "{body}");
    let unknown = ("0123abcd".to_owned(), "UnknownKeySecret9".to_owned());
    secrets.add("an unknown key's secret", &unknown.1);
    let body = s
        .v1(
            &unknown,
            "/verify/json",
            &[("number", &n7), ("brand", "Acme")],
        )
        .await;
    assert_eq!(body["status"], "4", "{body}");
    let (status, _) = s
        .v2(
            reqwest::Method::POST,
            "/v2/verify",
            &basic(&bad.0, &bad.1),
            Some(json!({ "brand": "Acme", "workflow": [{ "channel": "sms", "to": n7 }] })),
        )
        .await;
    assert_eq!(status, 401);
    let not_a_number = "44770019876";
    secrets.add("a number that is not one", not_a_number);
    let body = s
        .v1(
            &s.key,
            "/verify/json",
            &[("number", not_a_number), ("brand", "Acme")],
        )
        .await;
    assert_eq!(body["status"], "3", "{body}");
    // Several at once in one search.
    let body = s
        .v1_basic(
            &s.key,
            "/verify/search/json",
            &[("request_ids", id1.as_str()), ("request_ids", id3.as_str())],
        )
        .await;
    assert_eq!(body["verification_requests"].as_array().unwrap().len(), 2);

    server.stop();
    let stdout = server.stdout();
    let stderr = server.stderr();
    // The first line of stdout is the first key, printed once by design; it alone is left out.
    let rest_of_stdout = stdout.strip_prefix(first_line.as_str()).unwrap();
    assert_eq!(
        rest_of_stdout.trim(),
        "",
        "stdout holds the first key and nothing else"
    );
    let log = format!("{rest_of_stdout}\n{stderr}");

    // The search finds what is there: the log is long (every level), and shows the request
    // ids the deliveries were made for.
    assert!(
        log.lines().count() > 30 && log.contains(" DEBUG "),
        "every level is logged ({} lines):\n{log}",
        log.lines().count()
    );
    for id in &ids {
        assert!(find(&log, id).is_some(), "request {id} is in the log");
    }
    // …and would find a PIN logged next to a timestamp, and one in a field.
    let planted = "2026-12-07T10:00:00.123456Z DEBUG deliver: code=654321";
    assert!(find(planted, "654321").is_some() && find(planted, "123456").is_none());
    assert!(find("x{pin:\"00123456\"}", "00123456").is_some());
    let found: Vec<String> = secrets
        .0
        .iter()
        .filter_map(|(what, value)| {
            find(&log, value).map(|line| format!("{what} ({value}) in: {line}"))
        })
        .collect();
    assert!(
        found.is_empty(),
        "{} secrets in the log ({}):\n{}",
        found.len(),
        server.stderr.display(),
        found.join("\n")
    );
    println!(
        "{} lines searched for {} secrets",
        log.lines().count(),
        secrets.0.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_pin_secret_or_number_reaches_the_logs_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("verifyd.db").display());
    scenario(&url, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_pin_secret_or_number_reaches_the_logs_on_postgres() {
    let Some(schema) = PgSchema::create() else {
        eprintln!("skipped: VERIFYD_TEST_POSTGRES_URL is not set");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    scenario(&schema.url, dir.path()).await;
}
