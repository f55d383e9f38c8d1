//! The command line as operators use it: keys, errors, exit codes.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{run_bounded, BIN};

fn verifyd(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn keys_create_list_disable_enable_and_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/v.db", dir.path().display());
    let (ok, out, _) = verifyd(&["keys", "create", "--name", "shop", "--database", &db]);
    assert!(ok);
    let key: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let api_key = key["api_key"].as_str().unwrap();
    assert_eq!(api_key.len(), 8);
    assert_eq!(key["api_secret"].as_str().unwrap().len(), 16);

    let (ok, out, _) = verifyd(&["keys", "list", "--database", &db]);
    assert!(ok);
    assert!(
        out.contains(api_key) && out.contains("\"shop\"") && out.contains("active"),
        "{out}"
    );
    assert!(
        !out.contains(key["api_secret"].as_str().unwrap()),
        "secrets are never listed"
    );

    for (cmd, state) in [
        ("disable", "disabled"),
        ("enable", "active"),
        ("revoke", "revoked"),
    ] {
        let (ok, _, err) = verifyd(&["keys", cmd, api_key, "--database", &db]);
        assert!(ok, "{cmd}: {err}");
        let (_, out, _) = verifyd(&["keys", "list", "--database", &db]);
        assert!(out.contains(state), "{cmd}: {out}");
    }
    let (ok, _, err) = verifyd(&["keys", "disable", "nosuchkey", "--database", &db]);
    assert!(!ok);
    assert!(err.contains("no API key"), "{err}");
}

#[test]
fn keys_limits_sets_shows_and_resets_a_keys_own_limits() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/v.db", dir.path().display());
    let (_, out, _) = verifyd(&["keys", "create", "--database", &db]);
    let key: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let api_key = key["api_key"].as_str().unwrap();
    let limits = |args: &[&str]| {
        let mut all = vec!["keys", "limits", api_key, "--database", &db];
        all.extend_from_slice(args);
        verifyd(&all)
    };
    let (ok, out, err) = limits(&[
        "--per-destination",
        "3/10m",
        "--per-prefix",
        "none",
        "--requests-per-second",
        "5",
    ]);
    assert!(ok, "{err}");
    let shown: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        shown["limits"],
        serde_json::json!({ "requests_per_second": "5", "per_destination": "3/10m", "per_prefix": "none" })
    );
    let (_, out, _) = verifyd(&["keys", "list", "--database", &db]);
    assert!(out.contains(r#""per_destination":"3/10m""#), "{out}");
    let (ok, out, _) = limits(&["--per-prefix", "default"]);
    assert!(ok);
    assert!(
        !out.contains("per_prefix") && out.contains("3/10m"),
        "{out}"
    );
    let (ok, _, err) = limits(&["--per-country", "lots"]);
    assert!(!ok);
    assert!(
        err.contains("--per-country: expected a count over a period"),
        "{err}"
    );
    let (ok, out, _) = limits(&[]);
    assert!(
        ok && out.contains("3/10m"),
        "a refused value changes nothing: {out}"
    );
    let (ok, _, err) = verifyd(&["keys", "limits", "nosuchkey", "--database", &db]);
    assert!(!ok && err.contains("no API key"), "{err}");
}

#[test]
fn a_bad_flag_fails_with_a_message() {
    let (ok, _, err) = verifyd(&["serve", "--no-such-flag"]);
    assert!(!ok);
    assert!(err.contains("--no-such-flag"), "{err}");
    let (ok, _, err) = verifyd(&["serve", "--listen", "not-an-address"]);
    assert!(!ok);
    assert!(err.contains("--listen"), "{err}");
}

#[test]
fn an_unusable_database_path_fails_with_a_message() {
    let (ok, _, err) = verifyd(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--database",
        "sqlite:///no/such/dir/v.db",
    ]);
    assert!(!ok);
    assert!(err.contains("/no/such/dir"), "{err}");
    let (ok, _, err) = verifyd(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--database",
        "mysql://x",
    ]);
    assert!(!ok);
    assert!(err.contains("sqlite://"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let not_db = dir.path().join("notes.txt");
    std::fs::write(
        &not_db,
        "this is not a database, just text long enough to look like a header",
    )
    .unwrap();
    let (ok, _, err) = verifyd(&[
        "keys",
        "list",
        "--database",
        &format!("sqlite://{}", not_db.display()),
    ]);
    assert!(!ok);
    assert!(err.contains("notes.txt"), "{err}");
}

#[test]
fn a_port_in_use_fails_with_a_message() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/v.db", dir.path().display());
    let (ok, out) = run_bounded(
        Command::new(BIN).args(["serve", "--listen", &addr, "--database", &db]),
        Duration::from_secs(20),
    );
    assert!(!ok);
    assert!(out.contains(&format!("cannot listen on {addr}")), "{out}");
}

#[test]
fn a_second_server_on_the_same_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("v.db");
    let _first = support::start(dir.path(), &db, &[]);
    let (ok, out) = run_bounded(
        Command::new(BIN).args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database",
            &format!("sqlite://{}", db.display()),
        ]),
        Duration::from_secs(20),
    );
    assert!(!ok);
    assert!(out.contains("another verifyd serve"), "{out}");
}

#[test]
fn the_first_start_prints_one_key_and_later_starts_print_none() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("v.db");
    let mut first = support::start(dir.path(), &db, &[]);
    assert!(first.first_key.is_some());
    first.kill9();
    let second = support::start(dir.path(), &db, &[]);
    assert!(second.first_key.is_none());
}

#[test]
fn clock_speed_must_be_positive() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/v.db", dir.path().display());
    let (ok, _, err) = verifyd(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--database",
        &db,
        "--clock-speed",
        "0",
    ]);
    assert!(!ok);
    assert!(err.contains("--clock-speed"), "{err}");
}

#[test]
fn migrate_creates_the_schema_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/v.db", dir.path().display());
    let (ok, _, err) = verifyd(&["migrate", "--database", &db]);
    assert!(ok, "{err}");
    assert!(dir.path().join("v.db").exists());
}

#[test]
fn migrate_creates_the_postgres_schema_too() {
    let Some(schema) = support::PgSchema::create() else {
        eprintln!("skipped: VERIFYD_TEST_POSTGRES_URL is not set");
        return;
    };
    let (ok, _, err) = verifyd(&["migrate", "--database", &schema.url]);
    assert!(ok, "{err}");
    let (ok, _, err) = verifyd(&["migrate", "--database", &schema.url]);
    assert!(ok, "a second migrate is a no-op: {err}");
    schema.execute("select request_id, account, number, state, next_due_at from verification");
    let (ok, out, err) = verifyd(&["keys", "create", "--database", &schema.url]);
    assert!(ok, "{err}");
    assert!(out.contains("api_secret"));
}

#[test]
fn an_unreachable_postgres_fails_with_a_message() {
    let port = support::free_port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let (ok, _, err) = verifyd(&["migrate", "--database", &url]);
    assert!(!ok);
    assert!(err.contains("cannot connect to PostgreSQL"), "{err}");
}

#[test]
fn apps_create_prints_the_application_once_and_list_never_shows_its_secret() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("v.db");
    let db = format!("sqlite://{}", db_path.display());
    let public = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/vonage-test-key.pub.pem"
    );
    let private = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/vonage-test-key.pem"
    );
    let (ok, out, _) = verifyd(&["keys", "create", "--database", &db]);
    assert!(ok);
    let key: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let api_key = key["api_key"].as_str().unwrap();

    let create = |args: &[&str]| {
        let mut all = vec!["apps", "create", "--database", &db];
        all.extend_from_slice(args);
        verifyd(&all)
    };
    // The server key is the server's: a command other than serve never makes one.
    let key_file = format!("{}.key", db_path.display());
    let (ok, _, err) = create(&["--key", api_key, "--public-key", public]);
    assert!(
        !ok && err.contains("cannot read the secret key file"),
        "{err}"
    );
    assert!(!std::path::Path::new(&key_file).exists());
    let server_key = "ab".repeat(32);
    std::fs::write(&key_file, &server_key).unwrap();
    let url = "https://example.com/verify/status";
    let (ok, out, err) = create(&[
        "--key",
        api_key,
        "--public-key",
        public,
        "--status-url",
        url,
    ]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 1, "one JSON object: {out}");
    let app: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let id = app["application_id"].as_str().unwrap();
    assert!(uuid::Uuid::try_parse(id).is_ok(), "{id}");
    assert_eq!(
        (app["api_key"].as_str(), app["status_url"].as_str()),
        (Some(api_key), Some(url))
    );
    let secret = app["signature_secret"].as_str().unwrap();
    assert_eq!(secret.len(), 32);

    let (ok, out, _) = verifyd(&["apps", "list", "--database", &db]);
    assert!(ok);
    assert!(out.contains(id) && out.contains(url), "{out}");
    assert!(!out.contains(secret), "secrets are never listed");
    // Sealed with the server key, not kept in clear.
    let conn = rusqlite::Connection::open(&db_path).unwrap();
    let sealed: Vec<u8> = conn
        .query_row("select signature_secret_sealed from application", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(!sealed.windows(secret.len()).any(|w| w == secret.as_bytes()));
    let opened = verifyd::crypto::ServerKey::from_hex(&server_key)
        .unwrap()
        .unseal_secret(id, &sealed)
        .unwrap();
    assert_eq!(opened, secret, "sealed with the server key");
    assert!(sealed.len() > secret.len());

    for (args, says) in [
        (
            vec!["--key", "nosuchkey", "--public-key", public],
            "no API key",
        ),
        (
            vec!["--key", api_key, "--public-key", private],
            "private key",
        ),
        (
            vec!["--key", api_key, "--public-key", "/nonexistent.pem"],
            "cannot read",
        ),
        (
            vec![
                "--key",
                api_key,
                "--public-key",
                public,
                "--status-url",
                "ftp://x",
            ],
            "status URL",
        ),
    ] {
        let (ok, out, err) = create(&args);
        assert!(!ok && out.is_empty(), "{args:?}: {out}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let (ok, _, err) = create(&["--key", api_key, "--public-key", not_pem.to_str().unwrap()]);
    assert!(!ok && err.contains("RSA public key"), "{err}");
}

#[test]
fn fraud_report_prints_attempts_blocks_and_decisions_as_json_for_a_key_or_all() {
    use verifyd::domain::fraud::{BlockLengths, Subject};
    use verifyd::store::FraudStore;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.db");
    let db = format!("sqlite://{}", path.display());
    let (_, out, _) = verifyd(&["keys", "create", "--database", &db]);
    let key: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let api_key = key["api_key"].as_str().unwrap();
    {
        let store = verifyd::store::sqlite::SqliteStore::open(&path).unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let now = chrono::Utc::now();
            let prefix = Subject::parse("prefix:88212345").unwrap();
            let sent = vec![prefix.clone(), Subject::parse("country:XX").unwrap()];
            for account in [api_key, "other"] {
                store
                    .record_send(account, sent.clone(), now)
                    .await
                    .unwrap()
                    .unwrap();
            }
            store.record_conversion(api_key, sent, now).await.unwrap();
            let lengths = BlockLengths {
                first_secs: 3_600,
                longest_secs: 7_200,
            };
            store
                .block(
                    "other",
                    prefix,
                    Some("90112".into()),
                    "pumping".into(),
                    now,
                    lengths,
                )
                .await
                .unwrap();
        });
    }
    let (ok, out, err) = verifyd(&["fraud", "report", "--key", api_key, "--database", &db]);
    assert!(ok, "{err}");
    let mine: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(mine["total_attempts"], 1, "{mine}");
    assert_eq!(mine["conversion_rate_percentage"], "100.00");
    assert_eq!(mine["prefixes"][0]["prefix"], "88212345");
    assert_eq!(mine["countries"][0]["country"], "XX");
    assert_eq!(mine["blocks"], serde_json::json!([]));

    let (ok, out, err) = verifyd(&["fraud", "report", "--since", "7d", "--database", &db]);
    assert!(ok, "{err}");
    let all: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(all["total_attempts"], 2, "{all}");
    assert_eq!(all["total_unconverted"], 1);
    assert_eq!(all["blocks"][0]["network"], "90112", "{all}");
    assert_eq!(all["decisions"][0]["api_key"], "other", "{all}");
    assert_eq!(all["decisions"][0]["action"], "block");

    let (ok, _, err) = verifyd(&["fraud", "report", "--since", "32d", "--database", &db]);
    assert!(!ok && err.contains("at most 31d"), "{err}");
    let (ok, _, err) = verifyd(&["fraud", "report", "--key", "nosuchkey", "--database", &db]);
    assert!(!ok && err.contains("no API key"), "{err}");
}

#[test]
fn erase_deletes_a_numbers_verifications_and_inbox_while_the_server_runs() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("v.db");
    let server = support::start(dir.path(), &db, &[]);
    let (key, secret) = server.first_key.clone().unwrap();
    let http = support::client();
    let post = |path: &str, form: &[(&str, &str)]| -> serde_json::Value {
        let mut all = vec![("api_key", key.as_str()), ("api_secret", secret.as_str())];
        all.extend_from_slice(form);
        http.post(format!("{}{path}", server.base("http")))
            .form(&all)
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    let start = |number: &str| {
        let body = post(
            "/verify/json",
            &[("number", number), ("brand", "Acme"), ("workflow_id", "6")],
        );
        assert_eq!(body["status"], "0", "{body}");
        body["request_id"].as_str().unwrap().to_owned()
    };
    let erased_id = start("447700123456");
    let kept_id = start("447700123457");
    let inbox = |number: &str| -> usize {
        let url = format!("{}/inbox/messages?to={number}", server.base("http"));
        let list: serde_json::Value = http.get(url).send().unwrap().json().unwrap();
        list.as_array().map_or(0, Vec::len)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while inbox("447700123456") == 0 {
        assert!(std::time::Instant::now() < deadline, "no inbox message");
        std::thread::sleep(Duration::from_millis(20));
    }

    let url = format!("sqlite://{}", db.display());
    let (ok, out, err) = verifyd(&["erase", "--number", "+447700123456", "--database", &url]);
    assert!(ok, "{err}");
    let erased: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(erased["verifications"], 1, "{out}");
    assert_eq!(erased["inbox_messages"], 1, "{out}");

    // The server's next write forgets what it kept in memory of the file.
    start("447700123458");
    let found = post("/verify/search/json", &[("request_id", &erased_id)]);
    assert_ne!(found["status"], "IN PROGRESS", "erased: {found}");
    assert_eq!(inbox("447700123456"), 0);
    let kept = post("/verify/search/json", &[("request_id", &kept_id)]);
    assert_eq!(kept["status"], "IN PROGRESS", "{kept}");
    // Its number is free again.
    start("447700123456");

    let (ok, _, err) = verifyd(&["erase", "--number", "12", "--database", &url]);
    assert!(!ok);
    assert!(err.contains("not a valid international number"), "{err}");
}

#[test]
fn keys_limits_run_at_once_each_keep_the_others_change() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/v.db", dir.path().display());
    let (_, out, _) = verifyd(&["keys", "create", "--database", &db]);
    let key: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let api_key = key["api_key"].as_str().unwrap().to_owned();
    let flags = [
        ("--requests-per-second", "7"),
        ("--searches-per-second", "2"),
        ("--per-destination", "3/10m"),
        ("--per-prefix", "9/h"),
        ("--per-country", "99/h"),
        ("--per-ip", "4/h"),
        ("--verifications-per-hour", "50"),
        ("--verifications-per-day", "500"),
    ];
    let running: Vec<std::process::Child> = flags
        .iter()
        .map(|(flag, value)| {
            Command::new(BIN)
                .args(["keys", "limits", &api_key, flag, value, "--database", &db])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in running {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (_, out, _) = verifyd(&["keys", "list", "--database", &db]);
    let listed: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let limits = &listed["limits"];
    assert_eq!(limits.as_object().map(|m| m.len()), Some(8), "{listed}");
}
