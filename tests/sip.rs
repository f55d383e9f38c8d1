//! The SIP channel against SIPp (Debian's sip-tester, installed by .ci/run) answering on
//! loopback with the scenarios in tests/sip/: an answered call gets the prompt as paced RTP and
//! a BYE; busy, no answer (CANCEL) and digest challenges end as the channel documents.

mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use verifyd::channel::sip::{rtp, sdp, SipChannel};
use verifyd::channel::{
    Channel, NotRecorded, Outgoing, Receipt, ReceiptSink, ReceiptState, SendError,
};
use verifyd::config::delivery::{ChannelSpec, Kind};
use verifyd::domain::locale::Locale;
use verifyd::domain::message::render;
use verifyd::domain::verification::{DeliveryOrder, Purpose};
use verifyd::domain::{Channel as Medium, Destination, EventId, PhoneNumber, RequestId};
use verifyd::speech::Speech;

/// SIPp running one scenario as the answering side, stopped when dropped.
struct Sipp {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Sipp {
    fn start(scenario: &str, rtp_port: Option<u16>) -> Self {
        Self::start_over(scenario, rtp_port, "u1")
    }

    /// As [`Self::start`], over `transport` (`u1` UDP, `t1` TCP).
    fn start_over(scenario: &str, rtp_port: Option<u16>, transport: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = support::free_port();
        let log = dir.path().join("sipp.log");
        let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/sip")
            .join(scenario);
        let mut command = Command::new("sipp");
        command
            .arg("-sf")
            .arg(&file)
            .args([
                "-i",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-m",
                "1",
                "-nostdin",
            ])
            .args([
                "-timeout",
                "60s",
                "-t",
                transport,
                "-trace_err",
                "-error_file",
            ])
            .arg(dir.path().join("errors.log"))
            .current_dir(dir.path())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null());
        if let Some(rtp) = rtp_port {
            command.args(["-set", "rtp", &rtp.to_string()]);
        }
        let child = command
            .spawn()
            .expect("sipp runs (Debian: apt-get install sip-tester)");
        // SIPp listens once it has read its scenario: over TCP that can be seen; over UDP a
        // request sent early is sent again.
        let deadline = Instant::now() + Duration::from_secs(10);
        if transport == "t1" {
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(Instant::now() < deadline, "SIPp did not listen");
                std::thread::sleep(Duration::from_millis(20));
            }
        } else {
            std::thread::sleep(Duration::from_millis(300));
        }
        Self {
            child: Some(child),
            port,
            log,
            _dir: dir,
        }
    }

    /// Waits (at most `limit`) for SIPp to finish its one call; whether the scenario passed.
    async fn passed(mut self, limit: Duration) -> (bool, String) {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let errors =
            std::fs::read_to_string(self._dir.path().join("errors.log")).unwrap_or_default();
        (status.is_some_and(|s| s.success()), errors)
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = &self.log;
    }
}

#[derive(Default)]
struct Outcomes(Mutex<Vec<Receipt>>);

#[async_trait::async_trait]
impl ReceiptSink for Outcomes {
    async fn receipt(&self, _: &str, receipt: Receipt) -> Result<(), NotRecorded> {
        self.0.lock().unwrap().push(receipt);
        Ok(())
    }
}

impl Outcomes {
    async fn wait(&self, limit: Duration) -> Receipt {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(r) = self.0.lock().unwrap().first().cloned() {
                return r;
            }
            assert!(Instant::now() < deadline, "no outcome within {limit:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn channel(sipp_port: u16, extra: &str, outcomes: Arc<Outcomes>) -> SipChannel {
    channel_naming(sipp_port, "127.0.0.1", extra, outcomes)
}

/// A channel whose Contact, Via and SDP name `local_ip`.
fn channel_naming(
    sipp_port: u16,
    local_ip: &str,
    extra: &str,
    outcomes: Arc<Outcomes>,
) -> SipChannel {
    let text = format!(
        "[channels.pbx]\ntype = \"sip\"\nproxy = \"127.0.0.1:{sipp_port}\"\n\
         from = \"sip:verifyd@127.0.0.1\"\nto = \"sip:{{e164}}@127.0.0.1:{sipp_port}\"\n\
         local_ip = \"{local_ip}\"\ntimeout = 2\n{extra}\n\
         [[routes]]\nkind = \"voice\"\nchannels = [\"pbx\"]\n"
    );
    let file =
        verifyd::config::file::ConfigFile::parse(std::path::Path::new("t.toml"), &text, |_| None)
            .unwrap();
    let config = &file.delivery.channels["pbx"];
    let ChannelSpec::Sip(sip) = &config.spec else {
        unreachable!()
    };
    SipChannel::new(
        "pbx",
        sip.clone(),
        config.timeout,
        Arc::new(Speech::default()),
        outcomes,
    )
}

fn call(code: &str) -> Outgoing {
    let order = DeliveryOrder {
        event_id: EventId::from_bytes([3; 8]),
        request_id: RequestId::from_bytes([4; 16]),
        channel: Medium::Voice,
        to: Destination::Phone(PhoneNumber::parse("447700100123", None).unwrap()),
        from: None,
        app_hash: None,
        purpose: Purpose::Brand {
            brand: "AcmeInc".into(),
        },
        locale: Locale::from_tag("en-gb").unwrap(),
        sealed_pin: vec![],
        created_at: chrono::Utc::now(),
        pin_expires_at: None,
        text: None,
    };
    let rendered = render(&order, code);
    Outgoing {
        id: order.event_id.clone(),
        request_id: order.request_id.clone(),
        kind: Kind::Voice,
        to: order.to.clone(),
        email: None,
        code: None,
        from: "VERIFY".into(),
        text: rendered.text,
        locale: "en-gb".into(),
        created_at: order.created_at,
        valid_for: Duration::from_secs(300),
        receipt_url: None,
        script: rendered.script,
    }
}

/// RTP packets as they arrived, until none came for a second.
async fn capture(socket: &UdpSocket, first_within: Duration) -> Vec<(Instant, Vec<u8>)> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 2048];
    let mut wait = first_within;
    while let Ok(Ok(n)) = tokio::time::timeout(wait, socket.recv(&mut buf)).await {
        got.push((Instant::now(), buf[..n].to_vec()));
        wait = Duration::from_secs(1);
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answered_call_hears_the_prompt_as_paced_rtp_and_is_hung_up() {
    let audio = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let sipp = Sipp::start("answer.xml", Some(audio.local_addr().unwrap().port()));
    let outcomes = Arc::new(Outcomes::default());
    let pbx = channel(sipp.port, "", outcomes.clone());
    let message = call("4815");
    let accepted = pbx.send(&message).await.expect("the trunk takes the call");
    let packets = capture(&audio, Duration::from_secs(10)).await;
    let outcome = outcomes.wait(Duration::from_secs(10)).await;
    assert_eq!(outcome.message_id, accepted.message_id);
    assert_eq!(outcome.state, ReceiptState::Delivered, "{outcome:?}");
    let (passed, errors) = sipp.passed(Duration::from_secs(10)).await;
    assert!(passed, "SIPp saw the call go wrong: {errors}");

    // Exactly the prompt, in PCMA as the answer chose, framed and timed as RTP wants.
    let expected = Speech::default()
        .render("en-gb", message.script.as_ref().unwrap())
        .await
        .unwrap();
    let frames = expected.len().div_ceil(rtp::FRAME);
    assert_eq!(packets.len(), frames);
    let header = |p: &[u8]| {
        (
            u16::from_be_bytes([p[2], p[3]]),
            u32::from_be_bytes(p[4..8].try_into().unwrap()),
            u32::from_be_bytes(p[8..12].try_into().unwrap()),
        )
    };
    let (seq0, ts0, ssrc) = header(&packets[0].1);
    assert_eq!(packets[0].1[1], 0x80 | sdp::PCMA, "marker on the first");
    let reference = rtp::packets(&expected, sdp::PCMA, ssrc, seq0, ts0);
    for (i, (_, p)) in packets.iter().enumerate() {
        let (seq, ts, s) = header(p);
        assert_eq!(seq, seq0.wrapping_add(i as u16));
        assert_eq!(ts, ts0.wrapping_add(160 * i as u32));
        assert_eq!(s, ssrc);
        assert_eq!(p, &reference[i], "frame {i} is the prompt's");
    }
    let spread = packets.last().unwrap().0 - packets[0].0;
    let expected_spread = rtp::FRAME_TIME * (frames as u32 - 1);
    let ratio = spread.as_secs_f64() / expected_spread.as_secs_f64();
    assert!(
        (0.95..1.05).contains(&ratio),
        "{spread:?} for {expected_spread:?}"
    );
    pbx.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_goes_over_tcp_when_the_channel_says_so() {
    let audio = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let sipp = Sipp::start_over("answer.xml", Some(audio.local_addr().unwrap().port()), "t1");
    let outcomes = Arc::new(Outcomes::default());
    let pbx = channel(sipp.port, "transport = \"tcp\"", outcomes.clone());
    pbx.send(&call("4815"))
        .await
        .expect("the trunk takes the call over TCP");
    let packets = capture(&audio, Duration::from_secs(10)).await;
    assert!(packets.len() > 100, "{} frames", packets.len());
    assert_eq!(
        outcomes.wait(Duration::from_secs(10)).await.state,
        ReceiptState::Delivered
    );
    let (passed, errors) = sipp.passed(Duration::from_secs(10)).await;
    assert!(passed, "{errors}");
    pbx.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_callee_makes_the_call_undeliverable_with_486() {
    let sipp = Sipp::start("busy.xml", None);
    let outcomes = Arc::new(Outcomes::default());
    let pbx = channel(sipp.port, "", outcomes.clone());
    pbx.send(&call("4815"))
        .await
        .expect("accepted: the trunk answered");
    let outcome = outcomes.wait(Duration::from_secs(10)).await;
    assert_eq!(outcome.state, ReceiptState::Undeliverable);
    assert_eq!(outcome.error.unwrap().code, "sip-486");
    let (passed, errors) = sipp.passed(Duration::from_secs(10)).await;
    assert!(passed, "{errors}");
    pbx.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_nobody_answers_is_cancelled_after_answer_timeout() {
    let sipp = Sipp::start("noanswer.xml", None);
    let outcomes = Arc::new(Outcomes::default());
    let pbx = channel(sipp.port, "answer_timeout = 2", outcomes.clone());
    let started = Instant::now();
    pbx.send(&call("4815")).await.expect("accepted: it rings");
    let outcome = outcomes.wait(Duration::from_secs(15)).await;
    let took = started.elapsed();
    assert_eq!(outcome.state, ReceiptState::Undeliverable);
    assert_eq!(
        outcome.error.as_ref().unwrap().code,
        "sip-487",
        "{outcome:?}"
    );
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "{took:?}"
    );
    let (passed, errors) = sipp.passed(Duration::from_secs(10)).await;
    assert!(passed, "SIPp got its CANCEL: {errors}");
    pbx.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_407_challenge_is_answered_with_the_credentials() {
    let audio = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let sipp = Sipp::start("auth407.xml", Some(audio.local_addr().unwrap().port()));
    let outcomes = Arc::new(Outcomes::default());
    let pbx = channel(
        sipp.port,
        "username = \"alice\"\npassword = \"secret\"",
        outcomes.clone(),
    );
    pbx.send(&call("4815")).await.expect("accepted");
    let packets = capture(&audio, Duration::from_secs(10)).await;
    assert!(packets.len() > 100);
    assert_eq!(
        outcomes.wait(Duration::from_secs(10)).await.state,
        ReceiptState::Delivered
    );
    let (passed, errors) = sipp.passed(Duration::from_secs(10)).await;
    assert!(passed, "{errors}");
    pbx.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_digest_is_checked_by_the_trunk_and_a_wrong_password_fails_over() {
    let audio = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let sipp = Sipp::start("auth401.xml", Some(audio.local_addr().unwrap().port()));
    let outcomes = Arc::new(Outcomes::default());
    let pbx = channel(
        sipp.port,
        "username = \"alice\"\npassword = \"secret\"",
        outcomes.clone(),
    );
    pbx.send(&call("4815")).await.expect("accepted");
    capture(&audio, Duration::from_secs(10)).await;
    assert_eq!(
        outcomes.wait(Duration::from_secs(10)).await.state,
        ReceiptState::Delivered
    );
    let (passed, errors) = sipp.passed(Duration::from_secs(10)).await;
    assert!(passed, "SIPp checked the digest: {errors}");
    pbx.close().await;

    let sipp = Sipp::start("auth401.xml", Some(audio.local_addr().unwrap().port()));
    let outcomes = Arc::new(Outcomes::default());
    let pbx = channel(
        sipp.port,
        "username = \"alice\"\npassword = \"guess\"",
        outcomes.clone(),
    );
    let e = pbx.send(&call("4815")).await.unwrap_err();
    assert!(
        matches!(&e, SendError::Temporary(f) if f.code == "sip-403"),
        "{e:?}"
    );
    pbx.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_workflow_sends_the_sms_by_smpp_then_calls_by_sip_at_125_s() {
    let smsc = support::smsc::Smsc::start("secret").await;
    let audio = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let sipp = Sipp::start("answer.xml", Some(audio.local_addr().unwrap().port()));
    let config = format!(
        r#"
[channels.smsc]
type = "smpp"
host = "127.0.0.1"
port = {}
system_id = "verifyd"
password = "secret"
[channels.pbx]
type = "sip"
proxy = "127.0.0.1:{port}"
from = "sip:verifyd@127.0.0.1"
to = "sip:{{e164}}@127.0.0.1:{port}"
local_ip = "127.0.0.1"
[[routes]]
kind = "sms"
channels = ["smsc"]
[[routes]]
kind = "voice"
channels = ["pbx"]
"#,
        smsc.port,
        port = sipp.port
    );
    let clock = Arc::new(verifyd::clock::ManualClock::new(chrono::Utc::now()));
    let server = support::app::serve_with_clock(&config, Some(clock.clone())).await;
    let id = server.start("447700100123", &[("workflow_id", "1")]).await;
    let sms = smsc.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(sms.len(), 1);
    let code = support::pin_in(&support::smsc::texts(&sms)[0]);

    // Nothing is called before the call's time.
    clock.advance(chrono::Duration::seconds(124));
    server.app.run_due_steps().await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), audio.recv(&mut [0u8; 2048]))
            .await
            .is_err()
    );
    clock.advance(chrono::Duration::seconds(1));
    server.app.run_due_steps().await.unwrap();
    let packets = capture(&audio, Duration::from_secs(30)).await;
    assert!(packets.len() > 200, "{} frames", packets.len());
    let attempts = server
        .wait_for_state(&id, verifyd::store::AttemptState::Delivered)
        .await;
    let record: Vec<(&str, &str, verifyd::store::AttemptState)> = attempts
        .iter()
        .map(|a| (a.kind.as_str(), a.channel.as_str(), a.state))
        .collect();
    use verifyd::store::AttemptState::{Delivered, Submitted};
    assert_eq!(
        record,
        [("sms", "smsc", Submitted), ("voice", "pbx", Delivered)]
    );
    let (passed, errors) = sipp.passed(Duration::from_secs(10)).await;
    assert!(passed, "{errors}");
    let database = format!("sqlite://{}", server.database().display());
    let request = id.clone();
    let (ok, out) = tokio::task::spawn_blocking(move || {
        support::run_bounded(
            Command::new(support::BIN).args(["deliveries", &request, "--database", &database]),
            Duration::from_secs(20),
        )
    })
    .await
    .unwrap();
    assert!(ok, "{out}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let shown: Vec<(&str, &str, &str)> = lines
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
        shown,
        [("sms", "smsc", "submitted"), ("voice", "pbx", "delivered")]
    );
    assert_eq!(server.check(&id, &code).await, "0");
    server.app.stop().await;
    smsc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_that_does_not_answer_is_a_temporary_failure_within_timeout() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let outcomes = Arc::new(Outcomes::default());
    let pbx = channel(port, "", outcomes.clone());
    let message = call("4815");
    // The speech is rendered first (cold here: a few seconds), then the INVITE waits `timeout`.
    let started = Instant::now();
    let e = pbx.send(&message).await.unwrap_err();
    assert!(
        matches!(&e, SendError::Temporary(f) if f.code == "timeout"),
        "{e:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    pbx.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_ip_is_the_address_requests_name_not_one_the_channel_binds() {
    // A NAT's public address (a documentation address here: nothing is sent to it).
    let trunk = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = trunk.local_addr().unwrap().port();
    let pbx = Arc::new(channel_naming(
        port,
        "192.0.2.7",
        "",
        Arc::new(Outcomes::default()),
    ));
    let calling = {
        let pbx = pbx.clone();
        tokio::spawn(async move { pbx.send(&call("4815")).await })
    };
    let mut buf = vec![0u8; 8192];
    let (n, from) = tokio::time::timeout(Duration::from_secs(20), trunk.recv_from(&mut buf))
        .await
        .expect("an INVITE within 20 s")
        .unwrap();
    let invite = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(invite.starts_with("INVITE "), "{invite}");
    assert_eq!(
        from.ip().to_string(),
        "127.0.0.1",
        "sent from the bound interface"
    );
    let header = |name: &str| {
        invite
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with(&format!("{name}:")))
            .unwrap_or_else(|| panic!("no {name} in {invite}"))
            .to_owned()
    };
    assert!(header("contact").contains("192.0.2.7:"), "{invite}");
    assert!(header("via").contains("192.0.2.7:"), "{invite}");
    assert!(invite.contains("c=IN IP4 192.0.2.7"), "{invite}");
    let e = calling.await.unwrap().unwrap_err();
    assert!(
        matches!(&e, SendError::Temporary(f) if f.code == "timeout"),
        "{e:?}"
    );
    pbx.close().await;
}

#[test]
fn without_espeak_ng_a_server_with_a_sip_channel_stops_at_start_and_says_what_to_install() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("voice.toml");
    std::fs::write(
        &config,
        "[channels.pbx]\ntype = \"sip\"\nproxy = \"127.0.0.1:5060\"\nfrom = \"sip:v@127.0.0.1\"\n\
         to = \"sip:{e164}@127.0.0.1\"\n[[routes]]\nkind = \"voice\"\nchannels = [\"pbx\"]\n",
    )
    .unwrap();
    let empty = dir.path().join("bin");
    std::fs::create_dir(&empty).unwrap();
    let (ok, out) = support::run_bounded(
        Command::new(support::BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--database"])
            .arg(format!("sqlite://{}", dir.path().join("v.db").display()))
            .arg("--config")
            .arg(&config)
            .env("PATH", &empty),
        Duration::from_secs(20),
    );
    assert!(!ok, "{out}");
    assert!(out.contains("espeak-ng"), "{out}");
    assert!(out.contains("apt-get install espeak-ng"), "{out}");

    // Without a voice channel nothing of espeak-ng is needed.
    let db = dir.path().join("sms.db");
    let server = support::start_after(
        dir.path(),
        &db,
        &format!("export PATH={}", empty.display()),
        &[],
    );
    let health = support::client()
        .get(format!("http://127.0.0.1:{}/healthz", server.port))
        .send()
        .unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_trunk_does_not_answer_the_next_channel_of_the_route_calls() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let gateway =
        support::gateway::Gateway::start(support::gateway::Answer::new(201, r#"{"sid":"CA9"}"#))
            .await;
    let config = format!(
        r#"
[channels.pbx]
type = "sip"
proxy = "127.0.0.1:{port}"
from = "sip:verifyd@127.0.0.1"
to = "sip:{{e164}}@127.0.0.1:{port}"
local_ip = "127.0.0.1"
timeout = 1
[channels.twilio-voice]
type = "twilio-voice"
account_sid = "AC1"
auth_token = "t"
from = "+15550100"
base_url = "{}"
[[routes]]
kind = "voice"
channels = ["pbx", "twilio-voice"]
"#,
        gateway.url()
    );
    let server = support::app::serve(&config).await;
    let id = server.start("447700100123", &[("workflow_id", "7")]).await;
    let seen = gateway.wait_for(1, Duration::from_secs(15)).await;
    assert_eq!(seen.len(), 1, "the provider got the call");
    let attempts = server
        .wait_for_state(&id, verifyd::store::AttemptState::Submitted)
        .await;
    let tried: Vec<(&str, Option<&str>)> = attempts
        .iter()
        .map(|a| (a.channel.as_str(), a.error_code.as_deref()))
        .collect();
    assert_eq!(tried, [("pbx", Some("timeout")), ("twilio-voice", None)]);
    server.app.stop().await;
    gateway.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_test_places_a_call_and_its_log_shows_no_number_or_digest_even_at_debug() {
    let sipp = Sipp::start("auth401.xml", None);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pbx.toml");
    std::fs::write(
        &config,
        format!(
            "[channels.pbx]\ntype = \"sip\"\nproxy = \"127.0.0.1:{port}\"\n\
             from = \"sip:verifyd@127.0.0.1\"\nto = \"sip:{{e164}}@127.0.0.1:{port}\"\n\
             local_ip = \"127.0.0.1\"\nusername = \"alice\"\npassword = \"guess\"\n\
             [[routes]]\nkind = \"voice\"\nchannels = [\"pbx\"]\n",
            port = sipp.port
        ),
    )
    .unwrap();
    let (ok, out) = tokio::task::spawn_blocking(move || {
        support::run_bounded(
            Command::new(support::BIN)
                .args([
                    "send-test",
                    "--channel",
                    "pbx",
                    "--to",
                    "+447700100123",
                    "--config",
                ])
                .arg(&config)
                .env("RUST_LOG", "debug"),
            Duration::from_secs(60),
        )
    })
    .await
    .unwrap();
    // The wrong password: 100 Trying, then 403 — a temporary failure with advice.
    assert!(!ok, "{out}");
    assert!(out.contains("pbx: sip-403"), "{out}");
    assert!(out.contains("advice:"), "{out}");
    assert!(
        !out.contains("447700100123"),
        "a full number in the log: {out}"
    );
    assert!(!out.contains("Digest"), "a digest answer in the log: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_that_closes_mid_call_hangs_up_with_bye() {
    let audio = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let sipp = Sipp::start("answer.xml", Some(audio.local_addr().unwrap().port()));
    let outcomes = Arc::new(Outcomes::default());
    let pbx = channel(sipp.port, "", outcomes.clone());
    pbx.send(&call("4815")).await.expect("accepted");
    let mut buf = [0u8; 2048];
    tokio::time::timeout(Duration::from_secs(10), audio.recv(&mut buf))
        .await
        .expect("the prompt starts")
        .unwrap();
    let started = Instant::now();
    pbx.close().await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let outcome = outcomes.wait(Duration::from_secs(1)).await;
    assert_eq!(outcome.state, ReceiptState::Undeliverable);
    assert_eq!(outcome.error.unwrap().code, "shutdown");
    let (passed, errors) = sipp.passed(Duration::from_secs(10)).await;
    assert!(passed, "SIPp got its BYE: {errors}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_a_reload_retires_lets_its_call_play_to_the_end_then_closes() {
    let audio = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let sipp = Sipp::start("answer.xml", Some(audio.local_addr().unwrap().port()));
    let outcomes = Arc::new(Outcomes::default());
    let pbx = channel(sipp.port, "", outcomes.clone());
    pbx.send(&call("4815")).await.expect("accepted");
    let mut buf = [0u8; 2048];
    tokio::time::timeout(Duration::from_secs(10), audio.recv(&mut buf))
        .await
        .expect("the prompt starts")
        .unwrap();
    pbx.retire().await;
    let outcome = outcomes.wait(Duration::from_secs(1)).await;
    assert_eq!(outcome.state, ReceiptState::Delivered, "{outcome:?}");
    let (passed, errors) = sipp.passed(Duration::from_secs(10)).await;
    assert!(passed, "SIPp got its BYE at the prompt's end: {errors}");
}
