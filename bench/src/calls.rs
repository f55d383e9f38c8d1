//! `verifyd-bench calls`: speech and SIP calls on this machine.
//!
//! 1. **Cold start**: for each locale, the first call's speech rendered from nothing (espeak-ng
//!    runs for every phrase and character), then a second call with another code (everything
//!    from the cache).
//! 2. **Concurrent calls**: `--calls` calls placed at once through verifyd's SIP channel to SIPp
//!    answering (tests/sip/answer.xml), started `--rate` a second, every call's audio sent to one socket here; per call,
//!    how far each frame's arrival is from 20 ms after the one before (jitter), and how long the
//!    channel took from the event to the trunk's first answer to the INVITE.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hdrhistogram::Histogram;
use verifyd::channel::sip::SipChannel;
use verifyd::channel::{Channel, NotRecorded, Outgoing, Receipt, ReceiptSink, ReceiptState};
use verifyd::domain::message::Script;
use verifyd::speech::Speech;

#[derive(clap::Args, Clone)]
pub struct CallsArgs {
    /// Calls placed at once (comma-separated for several runs).
    #[arg(long, value_delimiter = ',', default_value = "10,50,100")]
    calls: Vec<usize>,
    /// Calls placed a second: a run's calls start spread over calls/rate seconds (a prompt lasts
    /// about 16 s, so about 16 × rate are in progress at once).
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Locales whose cold start is measured (comma-separated; default every locale).
    #[arg(long, value_delimiter = ',')]
    locales: Vec<String>,
}

#[derive(Default)]
struct Outcomes(Mutex<Vec<Receipt>>);

#[async_trait]
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

pub async fn run(args: CallsArgs) -> anyhow::Result<()> {
    cold_start(&args).await?;
    for &n in &args.calls {
        concurrent(n, args.rate).await?;
    }
    Ok(())
}

async fn cold_start(args: &CallsArgs) -> anyhow::Result<()> {
    let locales: Vec<String> = if args.locales.is_empty() {
        verifyd::speech::voices::VOICES
            .iter()
            .map(|v| v.locale.to_owned())
            .collect()
    } else {
        args.locales.clone()
    };
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    for locale in &locales {
        let speech = Speech::default();
        let started = Instant::now();
        speech.render(locale, &script("4815")).await?;
        cold.push(started.elapsed().as_secs_f64() * 1000.0);
        let started = Instant::now();
        speech.render(locale, &script("5184")).await?;
        warm.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let max = cold.iter().cloned().fold(0.0, f64::max);
    println!(
        "speech, {} locales: first call cold median {:.0} ms (max {:.0}), next call {:.2} ms",
        locales.len(),
        super::median(cold),
        max,
        super::median(warm)
    );
    Ok(())
}

async fn concurrent(calls: usize, rate: f64) -> anyhow::Result<()> {
    let audio = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let rtp_port = audio.local_addr()?.port();
    let sip_port = super::free_port();
    let scenario = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/sip/answer.xml");
    let dir = tempfile::tempdir()?;
    let mut sipp = tokio::process::Command::new("sipp")
        .arg("-sf")
        .arg(&scenario)
        .args([
            "-i",
            "127.0.0.1",
            "-p",
            &sip_port.to_string(),
            "-m",
            &calls.to_string(),
        ])
        .args([
            "-nostdin",
            "-timeout",
            "120s",
            "-l",
            "5000",
            "-set",
            "rtp",
            &rtp_port.to_string(),
        ])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let text = format!(
        "[channels.pbx]\ntype = \"sip\"\nproxy = \"127.0.0.1:{sip_port}\"\n\
         from = \"sip:verifyd@127.0.0.1\"\nto = \"sip:{{e164}}@127.0.0.1:{sip_port}\"\n\
         local_ip = \"127.0.0.1\"\n[[routes]]\nkind = \"voice\"\nchannels = [\"pbx\"]\n"
    );
    let file =
        verifyd::config::file::ConfigFile::parse(std::path::Path::new("b.toml"), &text, |_| None)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    let config = &file.delivery.channels["pbx"];
    let verifyd::config::delivery::ChannelSpec::Sip(sip) = &config.spec else {
        unreachable!("a sip channel")
    };
    let speech = Arc::new(Speech::default());
    speech.render("en-gb", &script("0123456789")).await?;
    let outcomes = Arc::new(Outcomes::default());
    let pbx = Arc::new(SipChannel::new(
        "pbx",
        sip.clone(),
        config.timeout,
        speech,
        outcomes.clone(),
    ));

    // Every frame as it arrives: (ssrc, arrival).
    let frames: Arc<Mutex<Vec<(u32, Instant)>>> = Arc::default();
    let seen = frames.clone();
    let receiver = tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_secs(3), audio.recv(&mut buf)).await
        {
            if n >= 12 {
                let ssrc = u32::from_be_bytes(buf[8..12].try_into().unwrap());
                seen.lock().unwrap().push((ssrc, Instant::now()));
            }
        }
    });
    let mut placed = tokio::task::JoinSet::new();
    let start = tokio::time::Instant::now();
    for i in 0..calls {
        tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / rate)).await;
        let pbx = pbx.clone();
        placed.spawn(async move {
            let started = Instant::now();
            let sent = pbx.send(&call(i)).await;
            (
                started.elapsed(),
                sent.err().map(|e| e.failure().code.clone()),
            )
        });
    }
    let mut to_invite = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)?;
    let mut refused: HashMap<String, usize> = HashMap::new();
    while let Some(done) = placed.join_next().await {
        let (took, error) = done?;
        to_invite.saturating_record(took.as_micros() as u64);
        if let Some(code) = error {
            *refused.entry(code).or_default() += 1;
        }
    }
    receiver.await?;
    let _ = tokio::time::timeout(Duration::from_secs(30), sipp.wait()).await;
    let delivered = outcomes
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.state == ReceiptState::Delivered)
        .count();
    let mut streams: HashMap<u32, Vec<Instant>> = HashMap::new();
    for (ssrc, at) in frames.lock().unwrap().iter() {
        streams.entry(*ssrc).or_default().push(*at);
    }
    let mut jitter = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)?;
    for arrivals in streams.values() {
        for pair in arrivals.windows(2) {
            let gap = (pair[1] - pair[0]).as_micros() as i64;
            jitter.saturating_record((gap - 20_000).unsigned_abs());
        }
    }
    // The most calls in progress at once: every stream's first to last frame.
    let mut edges: Vec<(Instant, i32)> = streams
        .values()
        .flat_map(|a| [(a[0], 1), (*a.last().expect("a frame"), -1)])
        .collect();
    edges.sort();
    let peak = edges
        .iter()
        .scan(0, |open, (_, d)| {
            *open += d;
            Some(*open)
        })
        .max()
        .unwrap_or(0);
    println!(
        "{calls} calls at {rate}/s (at most {peak} at once): {delivered} delivered, refused {refused:?}, {} audio streams; \
         frame jitter p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; event → trunk's answer to the INVITE p50 {:.1} ms, p99 {:.1} ms",
        streams.len(),
        jitter.value_at_quantile(0.5) as f64 / 1000.0,
        jitter.value_at_quantile(0.99) as f64 / 1000.0,
        jitter.max() as f64 / 1000.0,
        to_invite.value_at_quantile(0.5) as f64 / 1000.0,
        to_invite.value_at_quantile(0.99) as f64 / 1000.0,
    );
    pbx.close().await;
    Ok(())
}

fn call(i: usize) -> Outgoing {
    let code = format!("{:04}", i % 10_000);
    Outgoing {
        id: verifyd::domain::EventId::from_bytes((i as u64).to_be_bytes()),
        request_id: verifyd::domain::RequestId::from_bytes([0; 16]),
        kind: verifyd::config::delivery::Kind::Voice,
        to: verifyd::domain::Destination::Phone(
            verifyd::domain::PhoneNumber::parse(&super::number(i as u64), None).expect("a number"),
        ),
        email: None,
        code: None,
        from: "VERIFY".into(),
        text: String::new(),
        locale: "en-gb".into(),
        created_at: chrono::Utc::now(),
        valid_for: Duration::from_secs(300),
        receipt_url: None,
        script: Some(script(&code)),
    }
}
