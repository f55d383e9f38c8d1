//! E-mail through a real SMTP server on loopback (aiosmtpd, installed by .ci/run): STARTTLS with
//! a login, implicit TLS, a refused recipient, and a Verify v2 workflow sms → email → voice.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use support::{run_bounded, BIN};

/// The SMTP server of `tests/smtp/server.py`, stopped when dropped.
struct Smtp {
    child: Child,
    port: u16,
    out: PathBuf,
}

/// A Python that has aiosmtpd: Debian's (python3-aiosmtpd), which may not be the first
/// `python3` on the PATH.
fn python() -> &'static str {
    ["/usr/bin/python3", "python3"]
        .into_iter()
        .find(|p| {
            Command::new(p)
                .args(["-c", "import aiosmtpd"])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .expect("a python3 with aiosmtpd (Debian: apt-get install python3-aiosmtpd)")
}

impl Smtp {
    fn start(dir: &Path, extra: &[&str]) -> Self {
        let port = support::free_port();
        let out = dir.join(format!("mail-{port}.jsonl"));
        let mut child = Command::new(python())
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/smtp/server.py"))
            .arg(port.to_string())
            .arg(&out)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
        assert_eq!(line.trim(), "ready", "the SMTP server did not start");
        Self { child, port, out }
    }

    /// The messages received so far, waiting (at most 10 s) for `n`.
    fn messages(&self, n: usize) -> Vec<Value> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let got: Vec<Value> = std::fs::read_to_string(&self.out)
                .unwrap_or_default()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            if got.len() >= n || std::time::Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

fn config(dir: &Path, port: u16, tls: &str, login: bool) -> PathBuf {
    let login = if login {
        "username = \"verifyd\"\npassword = \"${SMTP_PASSWORD}\"\n"
    } else {
        ""
    };
    let text = format!(
        "[channels.mail]\ntype = \"smtp\"\nhost = \"localhost\"\nport = {port}\ntls = \"{tls}\"\n\
         {login}from = \"Acme <noreply@acme.example>\"\n\n\
         [[routes]]\nkind = \"email\"\nchannels = [\"mail\"]\n"
    );
    let path = dir.join(format!("smtp-{port}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// `verifyd send-test` to `to` through the channel `mail`, trusting only `cert` when given.
fn send_test(config: &Path, to: &str, cert: Option<&Path>) -> (bool, String) {
    let mut command = Command::new(BIN);
    command
        .args(["send-test", "--channel", "mail", "--to", to, "--config"])
        .arg(config)
        .env("SMTP_PASSWORD", "s3cret");
    match cert {
        Some(file) => command
            .env("SSL_CERT_FILE", file)
            .env("SSL_CERT_DIR", "/nonexistent"),
        None => command
            .env("SSL_CERT_FILE", "/nonexistent")
            .env("SSL_CERT_DIR", "/nonexistent"),
    };
    run_bounded(&mut command, Duration::from_secs(30))
}

#[test]
fn starttls_and_a_login_carry_a_message_with_a_plain_and_an_html_part() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path());
    let server = Smtp::start(
        dir.path(),
        &[
            "--starttls",
            cert.to_str().unwrap(),
            key.to_str().unwrap(),
            "--auth",
            "verifyd:s3cret",
        ],
    );
    let config = config(dir.path(), server.port, "starttls", true);
    let (ok, out) = send_test(&config, "alice@example.com", None);
    assert!(!ok, "a certificate nobody trusts is refused: {out}");
    assert!(server.messages(0).is_empty());
    let (ok, out) = send_test(&config, "alice@example.com", Some(&cert));
    assert!(ok, "{out}");
    let mail = &server.messages(1)[0];
    assert_eq!(mail["to"], json!(["alice@example.com"]));
    assert_eq!(mail["from"], "noreply@acme.example");
    assert_eq!(mail["auth"], true);
    assert_eq!(mail["tls"], true);
    assert_eq!(
        mail["text"].as_str().unwrap().trim(),
        "verifyd test message: channel mail works."
    );
    assert!(
        mail["html"]
            .as_str()
            .unwrap()
            .contains("channel mail works."),
        "{mail}"
    );
    assert!(!out.contains("s3cret"), "{out}");
}

#[test]
fn a_wrong_password_or_a_refused_recipient_fails_the_try_with_the_servers_answer() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path());
    let server = Smtp::start(
        dir.path(),
        &[
            "--implicit",
            cert.to_str().unwrap(),
            key.to_str().unwrap(),
            "--auth",
            "verifyd:other",
        ],
    );
    let wrong = config(dir.path(), server.port, "implicit", true);
    let (ok, out) = send_test(&wrong, "alice@example.com", Some(&cert));
    assert!(!ok && out.contains("535"), "the login is refused: {out}");
    assert!(out.contains("username and password"), "{out}");

    let open = Smtp::start(
        dir.path(),
        &["--implicit", cert.to_str().unwrap(), key.to_str().unwrap()],
    );
    let plain = config(dir.path(), open.port, "implicit", false);
    let (ok, out) = send_test(&plain, "refused@example.com", Some(&cert));
    assert!(!ok && out.contains("550"), "{out}");
    let (ok, out) = send_test(&plain, "bob@example.com", Some(&cert));
    assert!(ok, "implicit TLS: {out}");
    let got = open.messages(1);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["tls"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_v2_workflow_sends_an_sms_then_an_email_then_calls() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = Smtp::start(dir.path(), &[]);
    let routes = format!(
        "[channels.mail]\ntype = \"smtp\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n\
         from = \"Acme <noreply@acme.example>\"\n\n\
         [[routes]]\nkind = \"email\"\nchannels = [\"mail\"]\n\
         [[routes]]\nkind = \"sms\"\nchannels = [\"inbox\"]\n\
         [[routes]]\nkind = \"voice\"\nchannels = [\"inbox\"]\n",
        smtp.port
    );
    let server = support::app::serve(&routes).await;
    let (http, base) = (&server.http, server.base.as_str());
    let to = "447700100901";
    let body = json!({ "brand": "Acme", "locale": "de-de", "workflow": [
        { "channel": "sms", "to": to },
        { "channel": "email", "to": "alice@example.com" },
        { "channel": "voice", "to": to },
    ]});
    let (_, started) = server.v2_post("/v2/verify", Some(body)).await;
    let id = started["request_id"].as_str().unwrap().to_owned();
    let next = || async {
        let path = format!("/v2/verify/{id}/next_workflow");
        assert_eq!(server.v2_post(&path, None).await.0, 200);
    };
    next().await;
    let mails = tokio::task::block_in_place(|| smtp.messages(1));
    assert_eq!(mails.len(), 1, "{mails:?}");
    let mail = &mails[0];
    assert_eq!(mail["to"], json!(["alice@example.com"]));
    let code = support::pin_in(mail["text"].as_str().unwrap());
    assert!(
        mail["html"]
            .as_str()
            .unwrap()
            .contains(&format!("<strong>{code}</strong>")),
        "{mail}"
    );
    assert!(
        mail["text"].as_str().unwrap().contains("Bestätigungscode"),
        "{mail}"
    );
    assert_eq!(mail["subject"], mail["text"].as_str().unwrap().trim());
    next().await;
    let inbox = support::inbox_until(http, base, to, |inbox| inbox.len() >= 2).await;
    let channels: Vec<&str> = inbox
        .iter()
        .map(|m| m["channel"].as_str().unwrap())
        .collect();
    assert_eq!(channels, ["voice", "sms"], "newest first");
    let voice_code = support::pin_in(inbox[0]["text"].as_str().unwrap());
    assert_ne!(voice_code, code);
    let (_, check) = server
        .v2_post(
            &format!("/v2/verify/{id}"),
            Some(json!({ "code": voice_code })),
        )
        .await;
    assert_eq!(check["status"], "completed");
    let attempts = server.attempts(&id.replace('-', "")).await;
    let kinds: Vec<(&str, &str)> = attempts
        .iter()
        .map(|a| (a.kind.as_str(), a.channel.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [("sms", "inbox"), ("email", "mail"), ("voice", "inbox")]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_recipient_fails_the_email_step_and_the_workflow_moves_on_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = Smtp::start(dir.path(), &[]);
    let routes = format!(
        "[channels.mail]\ntype = \"smtp\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n\
         from = \"noreply@acme.example\"\n\n\
         [[routes]]\nkind = \"email\"\nchannels = [\"mail\"]\n\
         [[routes]]\nkind = \"sms\"\nchannels = [\"inbox\"]\n",
        smtp.port
    );
    let server = support::app::serve(&routes).await;
    let (http, base) = (&server.http, server.base.as_str());
    let to = "447700100902";
    let body = json!({ "brand": "Acme", "channel_timeout": 900, "workflow": [
        { "channel": "email", "to": "refused.user@example.com" },
        { "channel": "sms", "to": to },
    ]});
    let (_, started) = server.v2_post("/v2/verify", Some(body)).await;
    let id = started["request_id"].as_str().unwrap().replace('-', "");
    // The SMS step is 900 s away by the clock; it comes now because the e-mail was refused.
    let mine = |m: &Value| m["request_id"] == id.as_str();
    let inbox = support::inbox_until(http, base, to, |inbox| inbox.iter().any(mine)).await;
    let sms = inbox
        .iter()
        .find(|m| mine(m))
        .expect("an SMS after the refused e-mail");
    assert_eq!(sms["channel"], "sms");
    let attempts = server.attempts(&id).await;
    let email = attempts.iter().find(|a| a.kind == "email").unwrap();
    assert_eq!(email.state, verifyd::store::AttemptState::Failed);
    assert_eq!(email.error_code.as_deref(), Some("550"));
    assert!(tokio::task::block_in_place(|| smtp.messages(0)).is_empty());
}
