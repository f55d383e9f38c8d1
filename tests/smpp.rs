//! The SMPP channel against a real SMSC on loopback (`support/smsc.rs`: the smpp34 crate's
//! server, another implementation than verifyd's client): binds, what a submit_sm carries,
//! encodings and concatenation, throttling, the window, drops, receipts on the bind, an SMSC
//! that is down, failover to an HTTP gateway, and the unbind at shutdown.

mod support;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use support::app::serve;
use support::gateway::{Answer, Gateway};
use support::smsc::{texts, Proxy, Smsc};
use support::{run_bounded, BIN};
use verifyd::channel::smpp::SmppChannel;
use verifyd::channel::{Channel, NotRecorded, Outgoing, Receipt, ReceiptSink};
use verifyd::config::delivery::Kind;
use verifyd::domain::{EventId, PhoneNumber, RequestId};
use verifyd::store::AttemptState;

fn smpp_config(port: u16, password: &str, extra: &str) -> String {
    format!(
        r#"
public_url = "{{public_url}}"
[channels.smsc]
type = "smpp"
host = "127.0.0.1"
port = {port}
system_id = "verifyd"
password = "{password}"
{extra}
[[routes]]
kind = "sms"
channels = ["smsc"]
"#
    )
}

const NUMBER: &str = "447700100123";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verifications_sms_reaches_the_smsc_as_submit_sm_and_its_code_checks() {
    let smsc = Smsc::start("secret").await;
    let server = serve(&smpp_config(smsc.port, "secret", "")).await;
    let id = server.start(NUMBER, &[("sender_id", "AcmeInc")]).await;
    let submits = smsc.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(submits.len(), 1);
    let s = &submits[0];
    assert_eq!(
        (s.destination_addr.as_str(), s.dest_ton, s.dest_npi),
        (NUMBER, 1, 1)
    );
    assert_eq!(
        (s.source_addr.as_str(), s.source_ton, s.source_npi),
        ("AcmeInc", 5, 0)
    );
    assert_eq!(
        (s.registered_delivery, s.data_coding, s.esm_class),
        (1, 0, 0)
    );
    // The PIN lives 300 s: the validity period is what is left of it, in relative form.
    let v = &s.validity_period;
    assert!(v.starts_with("00000000") && v.ends_with("000R"), "{v}");
    let minutes: u64 = v[8..10].parse().unwrap();
    let seconds: u64 = v[10..12].parse().unwrap();
    assert!((290..=300).contains(&(minutes * 60 + seconds)), "{v}");
    let text = &texts(&submits)[0];
    assert!(text.starts_with("AcmeInc"), "{text}");
    let attempts = server.wait_for_state(&id, AttemptState::Submitted).await;
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].channel, "smsc");
    assert_eq!(attempts[0].message_id, s.message_id);
    assert_eq!(server.check(&id, &support::pin_in(text)).await, "0");
    server.app.stop().await;
    smsc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_on_the_bind_are_answered_and_update_verifyd_deliveries() {
    let smsc = Smsc::start("secret").await;
    let server = serve(&smpp_config(smsc.port, "secret", "")).await;
    let delivered = server.start(NUMBER, &[]).await;
    let lost = server.start("447700100124", &[]).await;
    let submits = smsc.wait_for(2, Duration::from_secs(10)).await;
    let id_of = |number: &str| {
        submits
            .iter()
            .find(|s| s.destination_addr == number)
            .and_then(|s| s.message_id.clone())
            .unwrap()
    };
    // The text form alone, then the TLVs (which a receipt's reader prefers).
    assert_eq!(smsc.receipt(&id_of(NUMBER), "DELIVRD", false).await, 0);
    assert_eq!(
        smsc.receipt(&id_of("447700100124"), "UNDELIV", true).await,
        0
    );
    // A receipt for a message verifyd never sent is answered all the same.
    assert_eq!(smsc.receipt("no-such-message", "DELIVRD", true).await, 0);
    let attempts = server
        .wait_for_state(&delivered, AttemptState::Delivered)
        .await;
    assert_eq!(attempts[0].state, AttemptState::Delivered);
    let attempts = server
        .wait_for_state(&lost, AttemptState::Undeliverable)
        .await;
    assert_eq!(attempts[0].state, AttemptState::Undeliverable);
    assert_eq!(attempts[0].error_code.as_deref(), Some("UNDELIV"));

    let database = format!("sqlite://{}", server.database().display());
    let (ok, out) = tokio::task::spawn_blocking(move || {
        run_bounded(
            Command::new(BIN).args(["deliveries", &delivered, "--database", &database]),
            Duration::from_secs(20),
        )
    })
    .await
    .unwrap();
    assert!(ok, "{out}");
    let line: serde_json::Value =
        serde_json::from_str(out.lines().find(|l| l.starts_with('{')).expect("a try")).unwrap();
    assert_eq!(line["channel"], "smsc");
    assert_eq!(line["state"], "delivered", "{line}");
    server.app.stop().await;
    smsc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_refused_logged_with_its_status_and_explained_by_send_test() {
    let smsc = Smsc::start("secret").await;
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong.toml");
    let file = |password: &str| {
        smpp_config(smsc.port, password, "").replace("public_url = \"{public_url}\"", "")
    };
    std::fs::write(&wrong, file("guess")).unwrap();
    let right = dir.path().join("right.toml");
    std::fs::write(&right, file("secret")).unwrap();
    let send_test = |config: std::path::PathBuf| {
        tokio::task::spawn_blocking(move || {
            run_bounded(
                Command::new(BIN)
                    .args(["send-test", "--channel", "smsc", "--to", "+447700100123"])
                    .arg("--config")
                    .arg(config),
                Duration::from_secs(30),
            )
        })
    };
    let (ok, out) = send_test(wrong.clone()).await.unwrap();
    assert!(!ok, "{out}");
    assert!(out.contains("ESME_RINVPASWD"), "{out}");
    assert!(out.contains("wrong password"), "{out}");
    let advice = out
        .lines()
        .find(|l| l.starts_with("advice: the SMSC refused the password"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        !advice.contains("  "),
        "one sentence, evenly spaced: {advice}"
    );
    assert!(smsc.refused_binds() >= 1);

    let (ok, out) = send_test(right).await.unwrap();
    assert!(ok, "{out}");
    assert!(out.contains("\"message_id\":\"smsc-"), "{out}");
    let texts = texts(&smsc.wait_for(1, Duration::from_secs(5)).await);
    assert_eq!(texts, ["verifyd test message: channel smsc works."]);

    // The server logs the refusal with the SMSC's status.
    let db = dir.path().join("v.db");
    let home = dir.path().to_owned();
    let server = tokio::task::spawn_blocking(move || {
        let config = wrong.display().to_string();
        support::start(&home, &db, &["--config", &config])
    })
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !server.log().contains("could not bind to the SMSC")
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = server.log();
    let line = log
        .lines()
        .find(|l| l.contains("could not bind to the SMSC"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        line.contains("ESME_RINVPASWD") && line.contains("wrong password"),
        "{line}"
    );
    assert!(!log.contains("guess"), "the password is not logged: {log}");
    drop(server);
    smsc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bind_over_tls_checks_the_smscs_certificate_against_the_trusted_roots() {
    let smsc = Smsc::start("secret").await;
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let acceptor = verifyd::http::tls_acceptor(&cert_path, &key_path).unwrap();
    let proxy = Proxy::start_tls(smsc.port, acceptor).await;
    let config = dir.path().join("tls.toml");
    let text = smpp_config(proxy.port, "secret", "tls = true")
        .replace("public_url = \"{public_url}\"", "")
        .replace("host = \"127.0.0.1\"", "host = \"localhost\"");
    std::fs::write(&config, text).unwrap();
    let send_test = |trusted: Option<std::path::PathBuf>| {
        let config = config.clone();
        tokio::task::spawn_blocking(move || {
            let mut command = Command::new(BIN);
            command
                .args([
                    "send-test",
                    "--channel",
                    "smsc",
                    "--to",
                    "+447700100123",
                    "--config",
                ])
                .arg(config);
            match trusted {
                // Only this certificate is trusted: the system's roots are not read.
                Some(file) => command
                    .env("SSL_CERT_FILE", file)
                    .env("SSL_CERT_DIR", "/nonexistent"),
                None => command.env_remove("SSL_CERT_FILE"),
            };
            run_bounded(&mut command, Duration::from_secs(30))
        })
    };
    let (ok, out) = send_test(None).await.unwrap();
    assert!(!ok, "a self-signed certificate is not trusted: {out}");
    assert!(out.contains("smsc: tls:"), "{out}");
    assert!(out.contains("advice: the TLS handshake failed"), "{out}");
    let (ok, out) = send_test(Some(cert_path)).await.unwrap();
    assert!(ok, "{out}");
    let texts = texts(&smsc.wait_for(1, Duration::from_secs(5)).await);
    assert_eq!(texts, ["verifyd test message: channel smsc works."]);
    smsc.stop().await;
}

/// Outgoing messages for a channel tested on its own.
fn outgoing(text: &str) -> Outgoing {
    Outgoing {
        id: EventId::from_bytes([7; 8]),
        request_id: RequestId::from_bytes([9; 16]),
        kind: Kind::Sms,
        to: verifyd::domain::Destination::Phone(PhoneNumber::parse("+447700100123", None).unwrap()),
        email: None,
        code: None,
        from: "+15005550006".into(),
        text: text.into(),
        locale: "en-gb".into(),
        created_at: chrono::Utc::now(),
        valid_for: Duration::from_secs(600),
        receipt_url: None,
        script: None,
    }
}

struct Kept(std::sync::Mutex<Vec<Receipt>>);

#[async_trait::async_trait]
impl ReceiptSink for Kept {
    async fn receipt(&self, _: &str, receipt: Receipt) -> Result<(), NotRecorded> {
        self.0.lock().unwrap().push(receipt);
        Ok(())
    }
}

fn channel(port: u16, extra: &str) -> SmppChannel {
    let text = format!(
        "[channels.smsc]\ntype = \"smpp\"\nhost = \"127.0.0.1\"\nport = {port}\nsystem_id = \"verifyd\"\npassword = \"secret\"\n{extra}\n[[routes]]\nkind = \"sms\"\nchannels = [\"smsc\"]\n"
    );
    let file =
        verifyd::config::file::ConfigFile::parse(std::path::Path::new("t.toml"), &text, |_| None)
            .unwrap();
    let config = &file.delivery.channels["smsc"];
    let verifyd::config::delivery::ChannelSpec::Smpp(smpp) = &config.spec else {
        unreachable!()
    };
    SmppChannel::start(
        "smsc",
        smpp.clone(),
        config.timeout,
        Arc::new(Kept(Default::default())),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ucs2_and_long_texts_reach_the_smsc_in_parts_that_reassemble_to_the_exact_text() {
    let smsc = Smsc::start("secret").await;
    let sms = channel(smsc.port, "");
    let sent = [
        "Ihr Code: 1234 {gültig} [5 Min] ~ € | ^ \\ ".repeat(6),
        "Ваш код подтверждения: 1234. Никому его не сообщайте.".to_owned(),
        "您的验证码是 1234，请勿告诉他人。🔐 ".repeat(5),
        "a".repeat(160),
        "a".repeat(161),
    ];
    for text in &sent {
        sms.send(&outgoing(text)).await.expect("accepted");
    }
    let submits = smsc.submits();
    let got = texts(&submits);
    assert_eq!(got, sent);
    // Concatenated parts carry the header flag; the Cyrillic text is one UCS-2 message.
    assert!(submits
        .iter()
        .any(|s| s.esm_class == 0x40 && s.data_coding == 0));
    assert!(submits
        .iter()
        .any(|s| s.esm_class == 0x40 && s.data_coding == 8));
    assert_eq!(submits.iter().filter(|s| s.esm_class == 0).count(), 2);
    assert_eq!(submits.last().unwrap().source_ton, 1);
    sms.close().await;
    assert_eq!(smsc.unbinds(), 1, "closing the channel unbinds");
    smsc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttling_smsc_is_given_a_pause_and_then_takes_the_same_message() {
    let smsc = Smsc::start("secret").await;
    let server = serve(&smpp_config(smsc.port, "secret", "")).await;
    smsc.throttle(3);
    let id = server.start(NUMBER, &[]).await;
    let accepted = smsc.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(accepted.len(), 1);
    assert_eq!(smsc.submits().len(), 4, "three throttled, then accepted");
    let attempts = server.wait_for_state(&id, AttemptState::Submitted).await;
    assert_eq!(attempts.len(), 1, "one try: the pauses are inside it");
    assert_eq!(attempts[0].message_id, accepted[0].message_id);
    server.app.stop().await;
    smsc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttling_answer_holds_back_every_submit_of_the_channel_for_the_pause() {
    let smsc = Smsc::start("secret").await;
    let sms = Arc::new(channel(smsc.port, "window = 1"));
    sms.send(&outgoing("bound")).await.expect("accepted");
    smsc.throttle(1);
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..2 {
        let sms = sms.clone();
        sends.spawn(async move { sms.send(&outgoing(&format!("code {i}"))).await });
    }
    while let Some(sent) = sends.join_next().await {
        sent.unwrap().expect("accepted");
    }
    let submits = smsc.submits();
    assert_eq!(submits.len(), 4);
    let throttled = submits.iter().position(|s| s.message_id.is_none()).unwrap();
    assert_eq!(throttled, 1);
    // The next submit, whichever send it is, waits out the first pause (100 ms).
    let gap = submits[2].at - submits[1].at;
    assert!(gap >= Duration::from_millis(95), "{gap:?}");
    sms.close().await;
    smsc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_more_than_window_submits_await_their_answer() {
    let smsc = Smsc::start("secret").await;
    let sms = Arc::new(channel(smsc.port, "window = 2"));
    smsc.hold();
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..5 {
        let sms = sms.clone();
        sends.spawn(async move { sms.send(&outgoing(&format!("code {i}"))).await });
    }
    assert_eq!(smsc.wait_for_waiting(2, Duration::from_secs(5)).await, 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(smsc.wait_for_waiting(3, Duration::ZERO).await, 2);
    smsc.release();
    while let Some(sent) = sends.join_next().await {
        sent.unwrap().expect("accepted");
    }
    assert_eq!(smsc.submits().len(), 5);
    sms.close().await;
    smsc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_smsc_drops_the_bind_with_submits_in_flight_every_message_still_arrives() {
    let smsc = Smsc::start("secret").await;
    let proxy = Proxy::start(smsc.port).await;
    let server = serve(&smpp_config(proxy.port, "secret", "")).await;
    let numbers: Vec<String> = (0..5).map(|i| format!("44770010020{i}")).collect();
    smsc.hold();
    let mut ids = Vec::new();
    for n in &numbers {
        ids.push(server.start(n, &[]).await);
    }
    assert_eq!(smsc.wait_for_waiting(5, Duration::from_secs(10)).await, 5);
    proxy.cut();
    smsc.release();
    for id in &ids {
        let attempts = server.wait_for_state(id, AttemptState::Submitted).await;
        let last = attempts.last().unwrap();
        assert_eq!(last.state, AttemptState::Submitted, "{attempts:?}");
        // The try cut off is recorded as a temporary failure.
        assert!(attempts.len() >= 2, "{attempts:?}");
        assert_eq!(attempts[0].state, AttemptState::Failed, "{attempts:?}");
    }
    let reached: std::collections::BTreeSet<String> = smsc
        .submits()
        .into_iter()
        .filter(|s| s.message_id.is_some())
        .map(|s| s.destination_addr)
        .collect();
    assert_eq!(reached, numbers.into_iter().collect());
    assert!(smsc.binds() >= 2, "bound again");
    server.app.stop().await;
    smsc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_that_hangs_is_closed_and_bound_again_after_a_submit_times_out() {
    let smsc = Smsc::start("secret").await;
    let proxy = Proxy::start(smsc.port).await;
    let sms = channel(proxy.port, "timeout = 0.5");
    sms.send(&outgoing("code 1")).await.expect("accepted");
    assert_eq!(smsc.binds(), 1);
    proxy.freeze();
    let e = sms.send(&outgoing("code 2")).await.unwrap_err();
    assert_eq!(e.failure().code, "timeout", "{e:?}");
    // The enquire_link that follows gets no answer either: the connection is closed, and the
    // next bind goes through the proxy on a new connection, which passes.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let sent = loop {
        match sms.send(&outgoing("code 3")).await {
            Ok(sent) => break sent,
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("not bound again: {e:?}"),
        }
    };
    assert!(sent.message_id.starts_with("smsc-"));
    assert_eq!(smsc.binds(), 2, "bound again");
    sms.close().await;
    smsc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_smsc_down_at_start_gets_the_waiting_messages_once_it_is_up() {
    let port = support::free_port();
    let server = serve(&smpp_config(port, "secret", "")).await;
    let id = server.start(NUMBER, &[]).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let attempts = server.attempts(&id).await;
    assert!(!attempts.is_empty());
    assert!(
        attempts.iter().all(|a| a.state == AttemptState::Failed),
        "{attempts:?}"
    );
    assert_eq!(attempts[0].error_code.as_deref(), Some("connect"));
    let smsc = Smsc::start_on(port, "secret").await;
    let submits = smsc.wait_for(1, Duration::from_secs(40)).await;
    assert_eq!(submits.len(), 1);
    let attempts = server.wait_for_state(&id, AttemptState::Submitted).await;
    assert_eq!(attempts.last().unwrap().state, AttemptState::Submitted);
    server.app.stop().await;
    smsc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_smsc_is_down_an_http_gateway_carries_the_message_within_5_s() {
    let gateway = Gateway::start(Answer::new(200, r#"{"id":"gw-1"}"#)).await;
    let config = format!(
        r#"
[channels.smsc]
type = "smpp"
host = "127.0.0.1"
port = {}
system_id = "verifyd"
password = "secret"
[channels.gateway]
type = "webhook"
url = "{}/send"
body = '{{"to":"{{{{to}}}}","text":"{{{{text}}}}"}}'
message_id = "/id"
[[routes]]
kind = "sms"
channels = ["smsc", "gateway"]
"#,
        support::free_port(),
        gateway.url()
    );
    let server = serve(&config).await;
    // The first bind is tried at once and fails; the message then goes on without waiting.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    let id = server.start(NUMBER, &[]).await;
    let seen = gateway.wait_for(1, Duration::from_secs(5)).await;
    let took = started.elapsed();
    assert_eq!(seen.len(), 1);
    assert!(took < Duration::from_secs(5), "{took:?}");
    let attempts = server.wait_for_state(&id, AttemptState::Submitted).await;
    let channels: Vec<&str> = attempts.iter().map(|a| a.channel.as_str()).collect();
    assert_eq!(channels, ["smsc", "gateway"]);
    assert_eq!(attempts[0].error_code.as_deref(), Some("connect"));
    server.app.stop().await;
    gateway.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stops_unbinds_from_the_smsc() {
    let smsc = Smsc::start("secret").await;
    let server = serve(&smpp_config(smsc.port, "secret", "")).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while smsc.binds() == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(smsc.binds(), 1);
    server.app.stop().await;
    assert_eq!(smsc.unbinds(), 1);
    smsc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_while_the_smpp_channel_is_not_bound_and_200_once_it_is() {
    let port = support::free_port();
    let server = serve(&smpp_config(port, "secret", "")).await;
    let ready = || server.get_text("/readyz");
    let (status, body) = ready().await;
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("database ok\nchannel smsc: "), "{body}");
    let smsc = Smsc::start_on(port, "secret").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    let (status, body) = loop {
        let (status, body) = ready().await;
        if status == 200 || tokio::time::Instant::now() > deadline {
            break (status, body);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        (status, body.as_str()),
        (200, "database ok\nchannel smsc ok\n")
    );
    server.app.stop().await;
    smsc.stop().await;
}
