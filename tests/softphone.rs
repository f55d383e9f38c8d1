//! A real softphone takes the call: baresip (Debian, installed by .ci/run) answers verifyd's SIP
//! channel on loopback and records what it hears; the recording is the prompt with the right
//! code, by its length, its energy, and its likeness to renderings of this code and of others.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use verifyd::channel::sip::SipChannel;
use verifyd::channel::{Channel, NotRecorded, Outgoing, Receipt, ReceiptSink, ReceiptState};
use verifyd::config::delivery::{ChannelSpec, Kind};
use verifyd::domain::message::Script;
use verifyd::domain::{EventId, PhoneNumber, RequestId};
use verifyd::speech::{espeak, g711, Speech};

const NUMBER: &str = "447700100123";

struct Baresip {
    child: Child,
    port: u16,
    recordings: std::path::PathBuf,
    lines: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Baresip {
    /// baresip answering `sip:NUMBER@127.0.0.1:PORT`, ready to take a call.
    fn start() -> Self {
        for _ in 0..5 {
            if let Some(b) = Self::try_start() {
                return b;
            }
        }
        panic!("baresip did not start (Debian: apt-get install baresip)");
    }

    fn try_start() -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let port = support::free_port();
        let rtp = 30_000 + (port % 1000) * 20;
        let recordings = dir.path().join("rec");
        std::fs::create_dir(&recordings).unwrap();
        let template = include_str!("baresip/config");
        let config = template
            .replace("{port}", &port.to_string())
            .replace("{rtp}", &rtp.to_string())
            .replace("{rtp_last}", &(rtp + 19).to_string())
            .replace("{recordings}", &recordings.display().to_string());
        std::fs::write(dir.path().join("config"), config).unwrap();
        std::fs::write(
            dir.path().join("accounts"),
            format!("<sip:{NUMBER}@127.0.0.1>;regint=0;answermode=auto;audio_codecs=PCMA,PCMU\n"),
        )
        .unwrap();
        let mut child = Command::new("baresip")
            .arg("-f")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("baresip runs (Debian: apt-get install baresip)");
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let seen = lines.clone();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                seen.lock().unwrap().push(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if lines
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains("baresip is ready"))
            {
                return Some(Self {
                    child,
                    port,
                    recordings,
                    lines,
                    _dir: dir,
                });
            }
            // A port taken by another process: exit code 98; try another.
            if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn saw(&self, text: &str) -> bool {
        self.lines.lock().unwrap().iter().any(|l| l.contains(text))
    }

    /// Stops baresip (SIGTERM, so that it closes its recording) and returns what it heard.
    fn recording(mut self) -> Vec<i16> {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "baresip did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
        let file = std::fs::read_dir(&self.recordings)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
            .expect("baresip recorded the call");
        let (rate, samples) = espeak::read_wav(&std::fs::read(file).unwrap()).unwrap();
        assert_eq!(rate, 8_000);
        samples
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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

fn script(code: &str) -> Script {
    Script::built_in(
        "Hello. This is your verification code from {brand}: {code}. I repeat, your code is: {code}.",
        "AcmeInc",
        "",
        "",
        code,
    )
}

/// `audio` as it sounds after A-law (the codec baresip is offered first).
fn through_pcma(audio: &[i16]) -> Vec<i16> {
    audio
        .iter()
        .map(|&s| g711::alaw_decode(g711::alaw(s)))
        .collect()
}

/// The best normalised correlation of `heard` with `reference` over small shifts.
fn likeness(heard: &[i16], reference: &[i16]) -> f64 {
    let n = heard.len().min(reference.len());
    (0..=320)
        .step_by(4)
        .flat_map(|shift| [(shift, 0), (0, shift)])
        .map(|(a, b)| {
            let len = n.saturating_sub(a.max(b));
            let (x, y) = (&heard[a..a + len], &reference[b..b + len]);
            let dot: f64 = x
                .iter()
                .zip(y)
                .map(|(&p, &q)| f64::from(p) * f64::from(q))
                .sum();
            let ex: f64 = x.iter().map(|&p| f64::from(p).powi(2)).sum();
            let ey: f64 = y.iter().map(|&q| f64::from(q).powi(2)).sum();
            dot / (ex.sqrt() * ey.sqrt()).max(1.0)
        })
        .fold(f64::MIN, f64::max)
}

fn rms(audio: &[i16]) -> f64 {
    (audio.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / audio.len().max(1) as f64).sqrt()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_softphone_answers_and_hears_the_prompt_with_the_right_code() {
    let phone = Baresip::start();
    let text = format!(
        "[channels.pbx]\ntype = \"sip\"\nproxy = \"127.0.0.1:{port}\"\n\
         from = \"sip:verifyd@127.0.0.1\"\nto = \"sip:{{number}}@127.0.0.1:{port}\"\n\
         local_ip = \"127.0.0.1\"\n[[routes]]\nkind = \"voice\"\nchannels = [\"pbx\"]\n",
        port = phone.port
    );
    let file =
        verifyd::config::file::ConfigFile::parse(std::path::Path::new("t.toml"), &text, |_| None)
            .unwrap();
    let config = &file.delivery.channels["pbx"];
    let ChannelSpec::Sip(sip) = &config.spec else {
        unreachable!()
    };
    let speech = Arc::new(Speech::default());
    let outcomes = Arc::new(Outcomes::default());
    let pbx = SipChannel::new(
        "pbx",
        sip.clone(),
        config.timeout,
        speech.clone(),
        outcomes.clone(),
    );
    let message = Outgoing {
        id: EventId::from_bytes([5; 8]),
        request_id: RequestId::from_bytes([6; 16]),
        kind: Kind::Voice,
        to: verifyd::domain::Destination::Phone(PhoneNumber::parse(NUMBER, None).unwrap()),
        email: None,
        code: None,
        from: "VERIFY".into(),
        text: String::new(),
        locale: "en-gb".into(),
        created_at: chrono::Utc::now(),
        valid_for: Duration::from_secs(300),
        receipt_url: None,
        script: Some(script("4815")),
    };
    pbx.send(&message).await.expect("baresip takes the call");
    let deadline = Instant::now() + Duration::from_secs(40);
    let outcome = loop {
        if let Some(r) = outcomes.0.lock().unwrap().first().cloned() {
            break r;
        }
        assert!(Instant::now() < deadline, "the call did not end");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(outcome.state, ReceiptState::Delivered, "{outcome:?}");
    assert!(phone.saw("Call established"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !phone.saw("session closed") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let heard = phone.recording();
    pbx.close().await;

    let sent = speech.render("en-gb", &script("4815")).await.unwrap();
    let secs = |a: &[i16]| a.len() as f64 / 8_000.0;
    // The recording starts with the first frame and ends with the last.
    assert!(
        (secs(&heard) - secs(&sent)).abs() < 0.25,
        "{} s heard, {} s sent",
        secs(&heard),
        secs(&sent)
    );
    let level = rms(&heard) / rms(&sent);
    assert!(
        (0.8..1.25).contains(&level),
        "heard at {level} of the level sent"
    );
    let right = likeness(&heard, &through_pcma(&sent));
    assert!(right > 0.9, "the recording is the prompt: {right}");
    for other in ["5184", "1623", "9070", "4816"] {
        let wrong = speech.render("en-gb", &script(other)).await.unwrap();
        let score = likeness(&heard, &through_pcma(&wrong));
        assert!(right > score + 0.1, "code {other}: {score} against {right}");
    }
}
