//! The dashboard against the real binary: users made by `verifyd admin create`, signed session
//! cookies, form tokens, the Origin check, the login throttle, key actions that the API obeys,
//! the audit log, and a real browser (Debian's Chromium through playwright-core, headless) that
//! logs in, finds a verification and sees its timeline and charts, with a screenshot of each
//! page in target/browser-screenshots/.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, Response};
use reqwest::header::{CONTENT_SECURITY_POLICY, COOKIE, LOCATION, ORIGIN, SET_COOKIE};
use serde_json::Value;

const PASSWORD: &str = "correct horse battery staple";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `verifyd admin ARGS` on `db` with `stdin`; (success, stdout, stderr).
fn admin(db: &Path, args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = Command::new(support::BIN)
        .arg("admin")
        .args(args)
        .arg("--database")
        .arg(format!("sqlite://{}", db.display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A client that shows redirects instead of following them.
fn client() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// The value of cookie `name` that a response sets.
fn set_cookie(r: &Response, name: &str) -> Option<String> {
    r.headers().get_all(SET_COOKIE).iter().find_map(|h| {
        let h = h.to_str().ok()?;
        let (pair, _) = h.split_once(';')?;
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| v.to_owned())
    })
}

/// The `csrf` field of the first form in `html`.
fn token(html: &str) -> String {
    let re = regex::Regex::new(r#"name=csrf value="([0-9a-f]+)""#).unwrap();
    re.captures(html).expect("a form with a token")[1].to_owned()
}

struct Dash {
    base: String,
    http: Client,
}

impl Dash {
    fn new(port: u16) -> Self {
        Self {
            base: format!("http://127.0.0.1:{port}"),
            http: client(),
        }
    }

    /// Logs in; the login's answer and the session cookie it set.
    fn login(&self, name: &str, password: &str) -> (u16, Option<String>) {
        let form = self
            .http
            .get(format!("{}/dashboard/login", self.base))
            .send()
            .unwrap();
        let nonce = set_cookie(&form, "verifyd_login").expect("the login form sets its cookie");
        let csrf = token(&form.text().unwrap());
        let r = self
            .http
            .post(format!("{}/dashboard/login", self.base))
            .header(COOKIE, format!("verifyd_login={nonce}"))
            .form(&[("name", name), ("password", password), ("csrf", &csrf)])
            .send()
            .unwrap();
        (r.status().as_u16(), set_cookie(&r, "verifyd_session"))
    }

    fn get(&self, session: &str, path: &str) -> (u16, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header(COOKIE, format!("verifyd_session={session}"))
            .send()
            .unwrap();
        (r.status().as_u16(), r.text().unwrap())
    }

    fn post(&self, session: &str, path: &str, form: &[(&str, &str)]) -> (u16, String) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header(COOKIE, format!("verifyd_session={session}"))
            .form(form)
            .send()
            .unwrap();
        (r.status().as_u16(), r.text().unwrap())
    }

    /// The page's form token, for a POST.
    fn csrf(&self, session: &str) -> String {
        token(&self.get(session, "/dashboard/keys").1)
    }
}

/// A server with one admin user, `ops`.
fn server(dir: &Path) -> support::Server {
    let db = dir.join("v.db");
    let (ok, _, err) = admin(&db, &["create", "--name", "ops"], &format!("{PASSWORD}\n"));
    assert!(ok, "{err}");
    support::start(dir, &db, &[])
}

fn v1(base: &str, path: &str, form: &[(&str, &str)]) -> Value {
    support::client()
        .post(format!("{base}{path}"))
        .form(form)
        .send()
        .unwrap()
        .json()
        .unwrap()
}

#[test]
fn pages_need_a_session_and_forms_need_their_token_and_origin() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let dash = Dash::new(server.port);
    let r = dash
        .http
        .get(format!("{}/dashboard/keys", dash.base))
        .send()
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()[LOCATION], "/dashboard/login");
    let (status, _) = dash.post("forged", "/dashboard/keys", &[("name", "x")]);
    assert_eq!(status, 401);

    let (status, session) = dash.login("ops", PASSWORD);
    assert_eq!(status, 303);
    let session = session.expect("a session cookie");
    let page = dash
        .http
        .get(format!("{}/dashboard", dash.base))
        .header(COOKIE, format!("verifyd_session={session}"))
        .send()
        .unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert!(page.text().unwrap().contains("<h1>Overview</h1>"));

    // A form without this session's token, and one from another origin, change nothing.
    let (status, _) = dash.post(&session, "/dashboard/keys", &[("name", "x"), ("csrf", "0")]);
    assert_eq!(status, 403);
    let csrf = dash.csrf(&session);
    let r = dash
        .http
        .post(format!("{}/dashboard/keys", dash.base))
        .header(COOKIE, format!("verifyd_session={session}"))
        .header(ORIGIN, "http://evil.example")
        .form(&[("name", "x"), ("csrf", csrf.as_str())])
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    let (_, keys) = dash.get(&session, "/dashboard/keys");
    assert!(!keys.contains("<td>x</td>"), "no key was made");

    // A login form posted without the cookie it was given is refused.
    let form = dash
        .http
        .get(format!("{}/dashboard/login", dash.base))
        .send()
        .unwrap();
    let login_token = token(&form.text().unwrap());
    let r = dash
        .http
        .post(format!("{}/dashboard/login", dash.base))
        .form(&[
            ("name", "ops"),
            ("password", PASSWORD),
            ("csrf", login_token.as_str()),
        ])
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(set_cookie(&r, "verifyd_session").is_none());
}

#[test]
fn keys_made_rotated_and_disabled_on_the_dashboard_act_on_the_api_and_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let dash = Dash::new(server.port);
    let base = dash.base.clone();
    let session = dash.login("ops", PASSWORD).1.unwrap();
    let csrf = dash.csrf(&session);
    let secret = regex::Regex::new(
        r#"API key <code>([0-9a-f]+)</code> secret <code class=secret>([^<]+)</code>"#,
    )
    .unwrap();

    let (status, page) = dash.post(
        &session,
        "/dashboard/keys",
        &[("name", "shop"), ("custom_pin", "yes"), ("csrf", &csrf)],
    );
    assert_eq!(status, 200);
    let found = secret.captures(&page).expect("the new secret is shown");
    let (key, first) = (found[1].to_owned(), found[2].to_owned());
    let search = |secret: &str| {
        v1(
            &base,
            "/verify/search/json",
            &[
                ("api_key", &key),
                ("api_secret", secret),
                ("request_id", "0123456789abcdef0123456789abcdef"),
            ],
        )["status"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    // 101: no such request, for an accepted key.
    assert_eq!(search(&first), "101");

    let (status, page) = dash.post(
        &session,
        &format!("/dashboard/keys/{key}/rotate"),
        &[("csrf", &csrf)],
    );
    assert_eq!(status, 200);
    let second = secret.captures(&page).expect("the new secret is shown")[2].to_owned();
    assert_ne!(first, second);
    let deadline = Instant::now() + Duration::from_secs(10);
    while search(&first) != "4" {
        assert!(Instant::now() < deadline, "the old secret still works");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(search(&second), "101");

    let (status, page) = dash.post(
        &session,
        &format!("/dashboard/keys/{key}/limits"),
        &[
            ("per_destination", "3/10m"),
            ("sms_countries", "GB,IE"),
            ("csrf", &csrf),
        ],
    );
    assert_eq!(status, 200, "{page}");
    let (_, keys) = dash.get(&session, "/dashboard/keys");
    assert!(keys.contains("per_destination=3/10m"), "{keys}");
    assert!(keys.contains("sms_countries=GB,IE"), "{keys}");
    // A page made before that change, saved with one field changed: only that field is written.
    let (status, page) = dash.post(
        &session,
        &format!("/dashboard/keys/{key}/limits"),
        &[
            ("per_destination", "4/10m"),
            ("was_per_destination", "default"),
            ("sms_countries", "default"),
            ("was_sms_countries", "default"),
            ("csrf", &csrf),
        ],
    );
    assert_eq!(status, 200, "{page}");
    let (_, keys) = dash.get(&session, "/dashboard/keys");
    assert!(keys.contains("per_destination=4/10m"), "{keys}");
    assert!(
        keys.contains("sms_countries=GB,IE"),
        "the other change is kept: {keys}"
    );
    let (status, page) = dash.post(
        &session,
        &format!("/dashboard/keys/{key}/limits"),
        &[("per_ip", "lots"), ("csrf", &csrf)],
    );
    assert_eq!(status, 400);
    assert!(page.contains("class=error"), "{page}");
    assert!(
        page.contains("value=\"lots\""),
        "what was typed stays: {page}"
    );

    let (status, _) = dash.post(
        &session,
        &format!("/dashboard/keys/{key}/state"),
        &[("state", "disabled"), ("csrf", &csrf)],
    );
    assert_eq!(status, 303);
    let deadline = Instant::now() + Duration::from_secs(10);
    while search(&second) != "8" {
        assert!(Instant::now() < deadline, "the disabled key still works");
        std::thread::sleep(Duration::from_millis(200));
    }

    let (_, audit) = dash.get(&session, "/dashboard/audit");
    for action in [
        "login",
        "key.create",
        "key.rotate",
        "key.limits",
        "key.disable",
    ] {
        assert!(
            audit.contains(&format!("<td>{action}</td>")),
            "{action}: {audit}"
        );
    }
    assert!(
        !audit.contains(&first) && !audit.contains(&second),
        "no secret in the log"
    );
}

#[test]
fn wrong_passwords_are_refused_then_throttled_and_a_new_password_ends_old_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let dash = Dash::new(server.port);
    let session = dash.login("ops", PASSWORD).1.unwrap();
    assert_eq!(dash.get(&session, "/dashboard").0, 200);

    let db = dir.path().join("v.db");
    let (ok, _, err) = admin(&db, &["create", "--name", "ops"], "another long password\n");
    assert!(!ok && err.contains("--replace"), "{err}");
    let (ok, _, err) = admin(&db, &["create", "--name", "x", "--replace"], "short\n");
    assert!(!ok && err.contains("12 characters"), "{err}");
    let (ok, _, err) = admin(
        &db,
        &["create", "--name", "ops", "--replace"],
        "another long password\n",
    );
    assert!(ok, "{err}");
    assert_eq!(
        dash.get(&session, "/dashboard").0,
        303,
        "the old password's session has ended"
    );
    let (ok, list, _) = admin(&db, &["list"], "");
    assert!(
        ok && list.contains("\"ops\"") && !list.contains("argon2"),
        "{list}"
    );

    let (_, session) = dash.login("ops", "another long password");
    let session = session.expect("the new password logs in");

    // A wrong user, then ten wrong passwords at once: of the five tries an address has, four
    // are left to check; the rest are refused before any check.
    assert_eq!(dash.login("correct horse battery staple!", PASSWORD).0, 401);
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let tries: Vec<_> = (0..10)
            .map(|_| scope.spawn(|| dash.login("ops", PASSWORD).0))
            .collect();
        tries.into_iter().map(|t| t.join().unwrap()).collect()
    });
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        4,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        6,
        "{statuses:?}"
    );
    let (status, refused) = dash.login("ops", "another long password");
    assert_eq!(
        status, 429,
        "five failures from one address wait 15 minutes"
    );
    assert!(refused.is_none());

    let (_, audit) = dash.get(&session, "/dashboard/audit");
    assert_eq!(audit.matches("<td>login.failed</td>").count(), 5, "{audit}");
    assert!(audit.contains("<code>(no such user)</code>"), "{audit}");
    assert!(
        !audit.contains("correct horse battery staple!"),
        "a name that is no user's is not written down"
    );
}

#[test]
fn an_admin_logs_in_finds_a_verification_and_sees_its_timeline_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let base = format!("http://127.0.0.1:{}", server.port);
    let (key, secret) = server.first_key.clone().expect("the first key");
    let number = "447700123456";
    let started = v1(
        &base,
        "/verify/json",
        &[
            ("api_key", &key),
            ("api_secret", &secret),
            ("number", number),
            ("brand", "Acme"),
        ],
    );
    assert_eq!(started["status"], "0", "{started}");
    let request_id = started["request_id"].as_str().unwrap().to_owned();

    let browser = repo().join("tests/browser");
    support::npm_ci(&browser);
    let screenshots = repo().join("target/browser-screenshots");
    let _ = std::fs::remove_dir_all(&screenshots);
    let (ok, out) = support::run_bounded(
        Command::new("node")
            .arg(browser.join("dashboard.mjs"))
            .env("BASE_URL", &base)
            .env("ADMIN_NAME", "ops")
            .env("ADMIN_PASSWORD", PASSWORD)
            .env("NUMBER", number)
            .env("REQUEST_ID", &request_id)
            .env("SCREENSHOTS", &screenshots),
        Duration::from_secs(320),
    );
    assert!(ok, "{out}");
    let shots: Vec<String> = std::fs::read_dir(&screenshots)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".png"))
        .collect();
    for page in [
        "login", "overview", "search", "timeline", "keys", "channels", "audit", "inbox",
    ] {
        assert!(
            shots.iter().any(|s| s.contains(page)),
            "no screenshot of {page}: {shots:?}"
        );
    }
}
