//! The official SDKs, installed from npm and PyPI by this test, run unchanged against a real
//! `verifyd serve`: Node `@vonage/verify` over HTTP, Python `vonage` 4.x over HTTPS (it cannot
//! speak plain HTTP) with a certificate this test makes.

mod support;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::run_bounded;

const CLOCK_SPEED: &str = "20";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Tests in this file run in parallel; two installers in one directory break each other.
static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The Node SDKs, from their committed lock file.
fn node_modules() {
    let _one_at_a_time = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    support::npm_ci(&repo().join("tests/sdk/node"));
}

/// A virtualenv with the pinned Python SDK, kept in the target directory between runs.
fn python() -> PathBuf {
    let _one_at_a_time = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sdk-venv");
    let python = venv.join("bin/python");
    let requirements = repo().join("tests/sdk/python/requirements.txt");
    let stamp = venv.join("requirements.installed");
    let wanted = std::fs::read_to_string(&requirements).unwrap();
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return python;
    }
    let (ok, out) = run_bounded(
        Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(&venv),
        Duration::from_secs(300),
    );
    assert!(
        ok,
        "python3 -m venv failed (on Debian: apt-get install python3-venv):\n{out}"
    );
    let (ok, out) = run_bounded(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(&requirements),
        Duration::from_secs(600),
    );
    assert!(ok, "pip install failed:\n{out}");
    std::fs::write(&stamp, wanted).unwrap();
    python
}

/// A self-signed certificate for 127.0.0.1 and localhost.
fn certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

/// `verifyd serve` with TLS on a certificate this makes (the Python SDK speaks HTTPS only); the
/// server and the certificate its clients must trust.
fn https_server(dir: &Path, db: &Path) -> (support::Server, PathBuf) {
    let (cert, key_pem) = certificate(dir);
    let server = support::start(
        dir,
        db,
        &[
            "--clock-speed",
            CLOCK_SPEED,
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key_pem.to_str().unwrap(),
        ],
    );
    (server, cert)
}

/// `program script` from the repository root, told how to reach `server`: over HTTP, or over HTTPS
/// trusting `cert` (then also VERIFYD_HOST, the host the Python SDK is handed).
fn sdk_script(
    program: impl AsRef<OsStr>,
    script: &str,
    server: &support::Server,
    cert: Option<&Path>,
) -> Command {
    let mut command = Command::new(program);
    command
        .arg(script)
        .current_dir(repo())
        .env("VERIFYD_CLOCK_SPEED", CLOCK_SPEED);
    match cert {
        None => command.env("VERIFYD_URL", server.base("http")),
        Some(cert) => command
            .env("VERIFYD_URL", server.base("https"))
            .env("VERIFYD_HOST", format!("127.0.0.1:{}", server.port))
            .env("REQUESTS_CA_BUNDLE", cert),
    };
    command
}

/// Runs an SDK script (bounded by `limit`), prints its output and asserts that it passed every
/// step; returns the output.
fn run_script(script: &mut Command, limit: Duration, server: &support::Server) -> String {
    let (ok, out) = run_bounded(script, limit);
    println!("{out}");
    assert!(
        ok,
        "SDK script failed:\n{out}\n--- server log ---\n{}",
        server.log()
    );
    assert!(!out.contains("not ok"), "{out}");
    out
}

#[test]
fn the_node_sdk_starts_checks_searches_cancels_and_triggers_unchanged() {
    node_modules();
    let dir = tempfile::tempdir().unwrap();
    let server = support::start(
        dir.path(),
        &dir.path().join("node.db"),
        &["--clock-speed", CLOCK_SPEED],
    );
    let (key, secret) = server
        .first_key
        .clone()
        .expect("a new database prints its key");
    let out = run_script(
        sdk_script("node", "tests/sdk/node/verify_sdk.mjs", &server, None)
            .env("VERIFYD_API_KEY", key)
            .env("VERIFYD_API_SECRET", secret),
        Duration::from_secs(120),
        &server,
    );
    assert!(out.contains("15 of 15 steps passed"), "{out}");
}

#[test]
fn the_python_sdk_works_unchanged_over_https() {
    let python = python();
    let dir = tempfile::tempdir().unwrap();
    let (server, cert) = https_server(dir.path(), &dir.path().join("python.db"));
    let (key, secret) = server
        .first_key
        .clone()
        .expect("a new database prints its key");
    let out = run_script(
        sdk_script(
            python,
            "tests/sdk/python/verify_sdk.py",
            &server,
            Some(&cert),
        )
        .env("VERIFYD_API_KEY", key)
        .env("VERIFYD_API_SECRET", secret),
        Duration::from_secs(120),
        &server,
    );
    assert!(out.contains("17 of 17 steps passed"), "{out}");
}

const PRIVATE_KEY: &str = "tests/fixtures/vonage-test-key.pem";
const PUBLIC_KEY: &str = "tests/fixtures/vonage-test-key.pub.pem";

/// Registers an application for `key` with `verifyd apps create`, as an operator would, next to
/// the running server; its id.
fn application(db: &Path, key: &str) -> String {
    let (ok, out) = run_bounded(
        Command::new(support::BIN)
            .args(["apps", "create", "--key", key, "--public-key"])
            .arg(repo().join(PUBLIC_KEY))
            .args(["--status-url", "https://example.com/verify-status"])
            .arg("--database")
            .arg(format!("sqlite://{}", db.display())),
        Duration::from_secs(30),
    );
    assert!(ok, "apps create failed:\n{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with('{'))
        .expect("one JSON line");
    let app: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(app["api_key"], key);
    assert_eq!(app["signature_secret"].as_str().unwrap().len(), 32);
    app["application_id"].as_str().unwrap().to_owned()
}

#[test]
fn the_node_verify2_sdk_runs_a_v2_workflow_with_jwt_unchanged() {
    node_modules();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("node2.db");
    let server = support::start(dir.path(), &db, &["--clock-speed", CLOCK_SPEED]);
    let (key, _) = server
        .first_key
        .clone()
        .expect("a new database prints its key");
    let application_id = application(&db, &key);
    let out = run_script(
        sdk_script("node", "tests/sdk/node/verify2_sdk.mjs", &server, None)
            .env("VERIFYD_APPLICATION_ID", application_id)
            .env("VERIFYD_PRIVATE_KEY_FILE", repo().join(PRIVATE_KEY)),
        Duration::from_secs(180),
        &server,
    );
    assert!(out.contains("28 of 28 steps passed"), "{out}");
}

#[test]
fn the_python_sdk_runs_a_v2_workflow_with_basic_and_with_jwt_unchanged() {
    let python = python();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("python2.db");
    let (server, cert) = https_server(dir.path(), &db);
    let (key, secret) = server
        .first_key
        .clone()
        .expect("a new database prints its key");
    let application_id = application(&db, &key);
    for auth in ["basic", "jwt"] {
        let out = run_script(
            sdk_script(
                &python,
                "tests/sdk/python/verify2_sdk.py",
                &server,
                Some(&cert),
            )
            .env("VERIFYD_AUTH", auth)
            .env("VERIFYD_API_KEY", &key)
            .env("VERIFYD_API_SECRET", &secret)
            .env("VERIFYD_APPLICATION_ID", &application_id)
            .env("VERIFYD_PRIVATE_KEY_FILE", repo().join(PRIVATE_KEY)),
            Duration::from_secs(180),
            &server,
        );
        assert!(out.contains("20 of 20 steps passed"), "{auth}: {out}");
    }
}
