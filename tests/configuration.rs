//! The configuration file as operators use it, through the real binary: mistakes stop the
//! server with one line naming the file and the key, `config check` shows what takes effect
//! with secrets masked, flags and the environment win over the file, and `send-test` turns a
//! gateway's answer into advice.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::gateway::{closed_port, Answer, Gateway};
use support::{run_bounded, BIN};

/// Runs verifyd (at most 20 s) with `args`, the environment `env`; returns (exit code, stdout,
/// stderr).
fn verifyd(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_remove("VERIFYD_CONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_bounded(child, Duration::from_secs(20));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn wait_bounded(mut child: std::process::Child, limit: Duration) -> std::process::Output {
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn write(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("verifyd.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn every_kind_of_mistake_stops_the_server_before_it_listens_naming_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/v.db", dir.path().display());
    for (text, key, problem) in [
        ("lisen = \"127.0.0.1:1\"", "lisen", "unknown field `lisen`"),
        ("header_timeout = \"ten\"", "header_timeout", "expected u64"),
        (
            "[[routes]]\nkind = \"sms\"\nchannels = [\"twilio\"]",
            "routes[0].channels",
            "unknown channel \"twilio\"",
        ),
        (
            "[[routes]]\nkind = \"fax\"\nchannels = [\"inbox\"]",
            "routes[0].kind",
            "unknown kind \"fax\"",
        ),
        (
            "[channels.t]\ntype = \"twilio-sms\"\nauth_token = \"x\"\nfrom = \"+1\"",
            "channels.t",
            "missing field `account_sid`",
        ),
        (
            "[[routes]]\nkind = \"sms\"\nto = [\"+1\"]\nchannels = [\"inbox\"]",
            "routes (kind = \"sms\")",
            "need a default route",
        ),
        (
            "[channels.g]\ntype = \"webhook\"\nurl = \"https://x.test/${UNSET_VAR_FOR_TEST}\"",
            "channels.g.url",
            "UNSET_VAR_FOR_TEST is not set",
        ),
    ] {
        let file = write(dir.path(), text);
        let file = file.to_str().unwrap();
        let (code, _, err) = verifyd(
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--database",
                &db,
                "--config",
                file,
            ],
            &[],
        );
        assert_eq!(code, Some(1), "{text}: {err}");
        let expected = format!("{file}: {key}: ");
        assert!(
            err.contains(&expected) && err.contains(problem),
            "{text}\n{err}"
        );
        assert!(!err.contains("listening"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        let (code, out, err) = verifyd(&["config", "check", "--config", file], &[]);
        assert_eq!(code, Some(2), "config check: {out}{err}");
        assert!(err.contains(&expected), "{err}");
    }
}

#[test]
fn config_check_prints_what_takes_effect_with_every_secret_masked() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        r#"
listen = "127.0.0.1:9000"
currency = "usd"
price_sms = 0.05
public_url = "https://verify.example.com"

[channels.twilio]
type = "twilio-sms"
account_sid = "AC42"
auth_token = "${TWILIO_AUTH_TOKEN}"
from = "+15005550006"

[channels.gw]
type = "webhook"
url = "https://sms.example.com/send?key=${GW_KEY}"
headers = { Authorization = "Bearer literal-token" }
body = '{"to":"{{to}}","text":"{{text}}"}'
signing_secret = "whsec-literal"

[[routes]]
kind = "sms"
to = ["+1"]
channels = ["twilio", "gw"]

[[routes]]
kind = "sms"
channels = ["gw"]

[test_numbers]
"+447700123456" = "98765432"
"#,
    );
    let env = [
        ("TWILIO_AUTH_TOKEN", "tw-secret-value"),
        ("GW_KEY", "gw-key-value"),
        ("VERIFYD_LISTEN", "127.0.0.1:9100"),
        ("VERIFYD_PUBLIC_URL", "https://callbacks.example.net/"),
    ];
    let (code, out, err) = verifyd(
        &[
            "config",
            "check",
            "--config",
            file.to_str().unwrap(),
            "--currency",
            "gbp",
        ],
        &env,
    );
    assert_eq!(code, Some(0), "{err}");
    let shown: toml::Table = toml::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(
        shown["listen"].as_str(),
        Some("127.0.0.1:9100"),
        "the environment wins over the file"
    );
    assert_eq!(
        shown["currency"].as_str(),
        Some("GBP"),
        "the flag wins over the file"
    );
    assert_eq!(
        shown["price_sms"].as_str(),
        Some("0.05000000"),
        "the file wins over the default"
    );
    assert_eq!(
        shown["header_timeout"].as_integer(),
        Some(10),
        "the default"
    );
    assert_eq!(
        shown["public_url"].as_str(),
        Some("https://callbacks.example.net"),
        "the environment wins over the file"
    );
    let twilio = &shown["channels"]["twilio"];
    assert_eq!(twilio["auth_token"].as_str(), Some("***"));
    assert_eq!(twilio["account_sid"].as_str(), Some("AC42"));
    assert_eq!(twilio["base_url"].as_str(), Some("https://api.twilio.com"));
    let gw = &shown["channels"]["gw"];
    assert_eq!(gw["url"].as_str(), Some("***"), "it came from ${{GW_KEY}}");
    assert_eq!(gw["signing_secret"].as_str(), Some("***"));
    assert_eq!(gw["headers"]["Authorization"].as_str(), Some("***"));
    for secret in [
        "tw-secret-value",
        "gw-key-value",
        "literal-token",
        "whsec-literal",
        "98765432",
    ] {
        assert!(!out.contains(secret), "{secret} shown:\n{out}");
    }
    assert_eq!(
        shown["test_numbers"]["447700123456"].as_str(),
        Some("***"),
        "a test number's code verifies it"
    );
    let routes = shown["routes"].as_array().unwrap();
    assert_eq!(routes.len(), 2);
    assert_eq!(routes[0]["to"].as_array().unwrap()[0].as_str(), Some("+1"));
}

#[test]
fn a_bad_value_from_a_flag_or_the_environment_is_named_by_its_flag() {
    let (code, _, err) = verifyd(&["config", "check", "--public-url", "ftp://x"], &[]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("--public-url") && err.contains("http://"),
        "{err}"
    );
    let (code, _, err) = verifyd(&["config", "check"], &[("VERIFYD_CURRENCY", "euro")]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--currency (or VERIFYD_CURRENCY)"), "{err}");
}

#[test]
fn without_a_file_every_kind_goes_to_the_inbox_and_config_check_says_so() {
    let (code, out, err) = verifyd(&["config", "check"], &[]);
    assert_eq!(code, Some(0), "{err}");
    let shown: toml::Table = toml::from_str(&out).unwrap();
    let routes = shown["routes"].as_array().unwrap();
    let kinds: Vec<&str> = routes.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["sms", "voice", "email", "whatsapp"]);
    assert!(routes
        .iter()
        .all(|r| r["channels"].as_array().unwrap()[0].as_str() == Some("inbox")));
    assert_eq!(shown["database"].as_str(), Some("sqlite://verifyd.db"));
}

#[test]
fn a_kind_without_a_route_is_named_when_the_server_starts() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "[[routes]]\nkind = \"sms\"\nchannels = [\"inbox\"]\n",
    );
    let server = support::start(
        dir.path(),
        &dir.path().join("v.db"),
        &["--config", file.to_str().unwrap()],
    );
    let log = server.log();
    let line = log
        .lines()
        .find(|l| l.contains("no route carries this kind of message"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        line.contains("kind=\"voice\"") || line.contains("kind=voice"),
        "{line}"
    );
}

fn send_test(file: &Path, channel: &str) -> (Option<i32>, String, String) {
    verifyd(
        &[
            "send-test",
            "--config",
            file.to_str().unwrap(),
            "--channel",
            channel,
            "--to",
            "+447700100601",
        ],
        &[],
    )
}

#[test]
fn send_test_reports_the_gateways_id_or_advice_for_what_went_wrong() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ok = runtime.block_on(Gateway::start(Answer::new(201, r#"{"sid":"SMtest"}"#)));
    let refusing = runtime.block_on(Gateway::start(Answer::new(
        401,
        r#"{"code":20003,"message":"Authenticate","status":401}"#,
    )));
    let sender = runtime.block_on(Gateway::start(Answer::new(
        400,
        r#"{"code":21212,"message":"Invalid From Number","status":400}"#,
    )));
    let dir = tempfile::tempdir().unwrap();
    let channel = |name: &str, url: &str| {
        format!(
            "[channels.{name}]\ntype = \"twilio-sms\"\naccount_sid = \"AC1\"\nauth_token = \"t\"\n\
             from = \"+15005550006\"\nbase_url = \"{url}\"\ntimeout = 3\n"
        )
    };
    let text = [
        channel("ok", &ok.url()),
        channel("refusing", &refusing.url()),
        channel("sender", &sender.url()),
        channel("down", &format!("http://{}", closed_port())),
    ]
    .join("\n");
    let file = write(dir.path(), &text);

    let (code, out, err) = send_test(&file, "ok");
    assert_eq!(code, Some(0), "{err}");
    let line: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(line["message_id"], "SMtest");
    assert_eq!(ok.seen()[0].form()["To"], "+447700100601");

    let (code, _, err) = send_test(&file, "refusing");
    assert_eq!(code, Some(1));
    assert!(
        err.contains("20003") && err.contains("credentials"),
        "{err}"
    );
    let (code, _, err) = send_test(&file, "sender");
    assert_eq!(code, Some(1));
    assert!(err.contains("21212") && err.contains("sender"), "{err}");
    let (code, _, err) = send_test(&file, "down");
    assert_eq!(code, Some(1));
    assert!(
        err.contains("could not be reached") && err.contains("base_url"),
        "{err}"
    );
    let (code, _, err) = send_test(&file, "nope");
    assert_eq!(code, Some(1));
    assert!(
        err.contains("no channel \"nope\"") && err.contains("down, ok, refusing, sender"),
        "{err}"
    );
}

#[test]
fn deliveries_prints_one_json_line_per_try() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let gateway = runtime.block_on(Gateway::start(Answer::new(200, r#"{"message_id":"G{n}"}"#)));
    let dir = tempfile::tempdir().unwrap();
    let down = closed_port();
    let file = write(
        dir.path(),
        &format!(
            "[channels.down]\ntype = \"webhook\"\nurl = \"http://{down}/\"\nbody = \"{{{{text}}}}\"\n\
             [channels.up]\ntype = \"webhook\"\nurl = \"{}/\"\nbody = \"{{{{text}}}}\"\n\
             message_id = \"/message_id\"\n\
             [[routes]]\nkind = \"sms\"\nchannels = [\"down\", \"up\"]\n\
             [[routes]]\nkind = \"voice\"\nchannels = [\"inbox\"]\n",
            gateway.url()
        ),
    );
    let db = dir.path().join("v.db");
    let server = support::start(dir.path(), &db, &["--config", file.to_str().unwrap()]);
    let (key, secret) = server.first_key.clone().unwrap();
    let body: serde_json::Value = support::client()
        .post(format!("{}/verify/json", server.base("http")))
        .form(&[
            ("api_key", key.as_str()),
            ("api_secret", secret.as_str()),
            ("number", "447700100602"),
            ("brand", "Acme"),
            ("workflow_id", "5"),
        ])
        .send()
        .unwrap()
        .json()
        .unwrap();
    let id = body["request_id"].as_str().unwrap().to_owned();
    runtime.block_on(gateway.wait_for(1, Duration::from_secs(10)));
    // The call (workflow 5's second event) goes to the inbox.
    let trigger: serde_json::Value = support::client()
        .post(format!("{}/verify/control/json", server.base("http")))
        .form(&[
            ("api_key", key.as_str()),
            ("api_secret", secret.as_str()),
            ("request_id", id.as_str()),
            ("cmd", "trigger_next_event"),
        ])
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(trigger["status"], "0", "{trigger}");
    let database = format!("sqlite://{}", db.display());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let lines: Vec<serde_json::Value> = loop {
        let (ok, out) = run_bounded(
            Command::new(BIN).args(["deliveries", &id, "--database", &database]),
            Duration::from_secs(20),
        );
        assert!(ok, "{out}");
        let lines: Vec<serde_json::Value> = out
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        // The inbox try is written `queued` and then `delivered`: wait for the second.
        let settled = lines.len() >= 3 && lines[2]["state"] != "queued";
        if settled || std::time::Instant::now() > deadline {
            break lines;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let summary: Vec<(&str, &str, &str)> = lines
        .iter()
        .map(|l| {
            (
                l["kind"].as_str().unwrap(),
                l["channel"].as_str().unwrap(),
                l["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("sms", "down", "failed"),
            ("sms", "up", "submitted"),
            ("voice", "inbox", "delivered")
        ],
        "{lines:?}"
    );
    assert!(
        lines[0]["error"].as_str().unwrap().starts_with("connect: "),
        "{}",
        lines[0]
    );
    assert_eq!(lines[1]["message_id"], "G1");
    // Both SMS tries were the first route's; the call's, the second's.
    let routes: Vec<&serde_json::Value> = lines.iter().map(|l| &l["route"]).collect();
    assert_eq!(routes, ["0", "0", "1"]);
    for line in &lines {
        let keys: Vec<&str> = line
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "event_id",
                "kind",
                "channel",
                "route",
                "message_id",
                "state",
                "error",
                "created_at",
                "updated_at"
            ]
        );
    }
    assert_eq!(lines[0]["event_id"], lines[1]["event_id"]);

    // With a configuration file the inbox's tries are recorded like any other channel's, and
    // stay when the verification ends (and its inbox messages go).
    let pin = support::pin_in(&gateway.seen()[0].body);
    let check: serde_json::Value = support::client()
        .post(format!("{}/verify/check/json", server.base("http")))
        .form(&[
            ("api_key", key.as_str()),
            ("api_secret", secret.as_str()),
            ("request_id", id.as_str()),
            ("code", pin.as_str()),
        ])
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(check["status"], "0", "{check}");
    let (ok, out) = run_bounded(
        Command::new(BIN).args(["deliveries", &id, "--database", &database]),
        Duration::from_secs(20),
    );
    assert!(ok, "{out}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with('{')).count(),
        3,
        "{out}"
    );
}

#[test]
fn the_example_configuration_is_valid() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/verifyd.toml");
    let env = [
        ("TWILIO_AUTH_TOKEN", "t"),
        ("VONAGE_API_SECRET", "v"),
        ("GW_TOKEN", "g"),
        ("GW_SECRET", "s"),
        ("SMPP_PASSWORD", "p"),
        ("SIP_PASSWORD", "s"),
        ("SMTP_PASSWORD", "m"),
    ];
    let (code, out, err) = verifyd(
        &["config", "check", "--config", example.to_str().unwrap()],
        &env,
    );
    assert_eq!(code, Some(0), "{err}");
    let shown: toml::Table = toml::from_str(&out).unwrap();
    assert_eq!(shown["channels"].as_table().unwrap().len(), 7);
    assert_eq!(shown["routes"].as_array().unwrap().len(), 5);
    assert_eq!(shown["channels"]["mail"]["password"].as_str(), Some("***"));
    assert_eq!(shown["channels"]["mail"]["port"].as_integer(), Some(587));
    assert_eq!(shown["channels"]["smsc"]["password"].as_str(), Some("***"));
    assert_eq!(shown["channels"]["pbx"]["password"].as_str(), Some("***"));
    assert_eq!(
        shown["channels"]["pbx"]["to"].as_str(),
        Some("sip:{e164}@sip.example.net")
    );
    assert_eq!(
        shown["limits"]["requests_per_second"].as_integer(),
        Some(30)
    );
    assert_eq!(shown["limits"]["per_destination"].as_str(), Some("5/10m"));
    assert_eq!(shown["limits"]["per_prefix"].as_str(), Some("30/h"));
}
