//! `verifyd-bench smpp`: verifyd's SMPP channel against an SMSC in this process (rusmpp's codec
//! on a tokio listener, accepting every bind and submit_sm at once).
//!
//! 1. **submit_sm per second**: the channel (window as configured, default 10) driven directly by
//!    many concurrent sends, as the dispatcher drives it; one GSM part each.
//! 2. **POST → submit_sm**: `verifyd serve` routing SMS to that SMSC, `POST /verify/json` at a
//!    fixed rate; for each verification, the time from the request's send to its submit_sm's
//!    arrival at the SMSC.
//!
//! The SMSC, the load generator and verifyd share the machine's cores.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use hdrhistogram::Histogram;
use rusmpp::tokio_codec::CommandCodec;
use tokio_util::codec::Framed;
use verifyd::channel::smpp::SmppChannel;
use verifyd::channel::{Channel, NotRecorded, Outgoing, Receipt, ReceiptSink};

use super::load::{self, Target};
use super::{form, number, start_verifyd_with};

#[derive(clap::Args, Clone)]
pub struct SmppArgs {
    /// Messages for the submit_sm-per-second run.
    #[arg(long, default_value_t = 20_000)]
    messages: u64,
    /// Concurrent sends in that run (the window holds how many await their answer).
    #[arg(long, default_value_t = 64)]
    senders: u64,
    /// The channel's window.
    #[arg(long, default_value_t = 10)]
    window: u32,
    /// Runs of each measurement; the median is reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Requests per second of the POST → submit_sm run.
    #[arg(long, default_value_t = 1_000)]
    rate: u64,
    /// Seconds of that run.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// The verifyd binary (default: the release build next to this binary).
    #[arg(long)]
    verifyd: Option<PathBuf>,
}

/// Notes when each destination's submit arrived.
struct Smsc {
    base: Instant,
    arrived: Mutex<HashMap<String, u64>>,
    submits: AtomicU64,
}

/// An SMSC on `listener`: binds, submits, enquire_links and unbinds are answered at once.
async fn serve_smsc(listener: tokio::net::TcpListener, smsc: Arc<Smsc>) {
    while let Ok((stream, _)) = listener.accept().await {
        let _ = stream.set_nodelay(true);
        tokio::spawn(session(stream, smsc.clone()));
    }
}

async fn session(stream: tokio::net::TcpStream, smsc: Arc<Smsc>) {
    use futures_util::{SinkExt, StreamExt};
    use rusmpp::pdus::{BindTransceiverResp, SubmitSmResp};
    use rusmpp::{Command, CommandStatus, Pdu};
    let mut framed = Framed::new(stream, CommandCodec::new());
    while let Some(Ok(command)) = framed.next().await {
        let sequence = command.sequence_number();
        let answer: Pdu = match command.pdu() {
            Some(Pdu::BindTransceiver(_)) => {
                BindTransceiverResp::new("BenchSMSC".parse().expect("fits"), None).into()
            }
            Some(Pdu::SubmitSm(sm)) => {
                let at = smsc.base.elapsed().as_nanos() as u64;
                let n = smsc.submits.fetch_add(1, Ordering::Relaxed);
                smsc.arrived
                    .lock()
                    .unwrap()
                    .insert(sm.destination_addr.to_string(), at);
                SubmitSmResp::new(format!("m{n}").parse().expect("fits"), Vec::new()).into()
            }
            Some(Pdu::EnquireLink) => Pdu::EnquireLinkResp,
            Some(Pdu::Unbind) => Pdu::UnbindResp,
            _ => continue,
        };
        let done = matches!(answer, Pdu::UnbindResp);
        if framed
            .send(Command::new(CommandStatus::EsmeRok, sequence, answer))
            .await
            .is_err()
            || done
        {
            return;
        }
    }
}

struct Ignore;

#[async_trait]
impl ReceiptSink for Ignore {
    async fn receipt(&self, _: &str, _: Receipt) -> Result<(), NotRecorded> {
        Ok(())
    }
}

pub async fn run(args: SmppArgs) -> anyhow::Result<()> {
    let base = Instant::now();
    let smsc = Arc::new(Smsc {
        base,
        arrived: Mutex::default(),
        submits: AtomicU64::new(0),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let server = tokio::spawn(serve_smsc(listener, smsc.clone()));

    let mut rates = Vec::new();
    for _ in 0..args.rounds {
        rates.push(submit_rate(&args, port).await?);
    }
    println!(
        "submit_sm per second (window {}, {} concurrent sends, {} messages): {} (median of {:?})",
        args.window,
        args.senders,
        args.messages,
        super::median(rates.clone()).round(),
        rates.iter().map(|r| r.round()).collect::<Vec<_>>()
    );

    let exe = std::env::current_exe()?;
    let bin = args
        .verifyd
        .clone()
        .unwrap_or_else(|| exe.with_file_name("verifyd"));
    let mut p50s = Vec::new();
    let mut p99s = Vec::new();
    for _ in 0..args.rounds {
        smsc.arrived.lock().unwrap().clear();
        let (p50, p99, missing) = post_to_submit(&args, port, &bin, &smsc).await?;
        println!(
            "  POST → submit_sm at {}/s: p50 {p50:.2} ms, p99 {p99:.2} ms ({missing} not arrived)",
            args.rate
        );
        p50s.push(p50);
        p99s.push(p99);
    }
    println!(
        "POST /verify/json → submit_sm at {}/s for {} s: p50 {:.2} ms, p99 {:.2} ms (medians of {})",
        args.rate,
        args.duration,
        super::median(p50s),
        super::median(p99s),
        args.rounds
    );
    server.abort();
    Ok(())
}

fn channel_config(port: u16, window: u32) -> anyhow::Result<verifyd::config::smpp::Smpp> {
    let text = format!(
        "[channels.smsc]\ntype = \"smpp\"\nhost = \"127.0.0.1\"\nport = {port}\n\
         system_id = \"bench\"\npassword = \"bench\"\nwindow = {window}\n\
         [[routes]]\nkind = \"sms\"\nchannels = [\"smsc\"]\n"
    );
    let file =
        verifyd::config::file::ConfigFile::parse(std::path::Path::new("b.toml"), &text, |_| None)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    match &file.delivery.channels["smsc"].spec {
        verifyd::config::delivery::ChannelSpec::Smpp(s) => Ok(s.clone()),
        _ => unreachable!("an smpp channel"),
    }
}

/// Sends `messages` through one channel from `senders` tasks; submits per second.
async fn submit_rate(args: &SmppArgs, port: u16) -> anyhow::Result<f64> {
    let channel = Arc::new(SmppChannel::start(
        "smsc",
        channel_config(port, args.window)?,
        Duration::from_secs(2),
        Arc::new(Ignore),
    ));
    // Bound before the clock starts.
    channel
        .send(&message(0))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let next = Arc::new(AtomicU64::new(1));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.senders {
        let (channel, next, total) = (channel.clone(), next.clone(), args.messages);
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i > total {
                    return anyhow::Ok(());
                }
                channel
                    .send(&message(i))
                    .await
                    .map_err(|e| anyhow::anyhow!("message {i}: {e}"))?;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let rate = args.messages as f64 / started.elapsed().as_secs_f64();
    channel.close().await;
    Ok(rate)
}

fn message(i: u64) -> Outgoing {
    Outgoing {
        id: verifyd::domain::EventId::from_bytes(i.to_be_bytes()),
        request_id: verifyd::domain::RequestId::from_bytes([0; 16]),
        kind: verifyd::config::delivery::Kind::Sms,
        to: verifyd::domain::Destination::Phone(
            verifyd::domain::PhoneNumber::parse(&number(i), None).expect("a valid number"),
        ),
        email: None,
        code: None,
        from: "AcmeInc".into(),
        text: "AcmeInc: your verification code is 481516".into(),
        locale: "en-us".into(),
        created_at: chrono::Utc::now(),
        valid_for: Duration::from_secs(300),
        receipt_url: None,
        script: None,
    }
}

/// `POST /verify/json` at `rate` for `duration` against a verifyd that routes SMS to the SMSC;
/// p50 and p99 (ms) of send → submit_sm, and how many never arrived.
async fn post_to_submit(
    args: &SmppArgs,
    port: u16,
    bin: &std::path::Path,
    smsc: &Smsc,
) -> anyhow::Result<(f64, f64, u64)> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("smpp.toml");
    std::fs::write(
        &config,
        format!(
            "[channels.smsc]\ntype = \"smpp\"\nhost = \"127.0.0.1\"\nport = {port}\n\
             system_id = \"bench\"\npassword = \"bench\"\nwindow = {}\n\
             [[routes]]\nkind = \"sms\"\nchannels = [\"smsc\"]\n",
            args.window
        ),
    )?;
    let database = format!("sqlite://{}", dir.path().join("smpp.db").display());
    let config = config.to_str().context("a UTF-8 path")?.to_owned();
    let server = start_verifyd_with(bin, &database, &["--config", &config]).await?;
    // The bind is up before the first request.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let count = args.rate * args.duration;
    let sent: Arc<Vec<AtomicU64>> = Arc::new((0..count).map(|_| AtomicU64::new(0)).collect());
    let base = smsc.base;
    let auth = Some((server.key.clone(), server.secret.clone()));
    let target = Target::post(server.addr, "/verify/json", auth);
    let stamps = sent.clone();
    let report = load::fixed_rate(
        &target,
        32,
        args.rate,
        Duration::from_secs(args.duration),
        move |i| {
            stamps[i as usize].store(base.elapsed().as_nanos() as u64, Ordering::Relaxed);
            form(&[
                ("number", &number(i)),
                ("brand", "AcmeInc"),
                ("workflow_id", "6"),
            ])
        },
    )
    .await?;
    anyhow::ensure!(report.errors == 0, "{} requests failed", report.errors);
    // Every submit arrives within a few seconds of its request.
    let deadline = Instant::now() + Duration::from_secs(10);
    while smsc.arrived.lock().unwrap().len() < count as usize && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let arrived = smsc.arrived.lock().unwrap().clone();
    let mut latency = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)?;
    let mut missing = 0;
    for i in 0..count {
        match arrived.get(&number(i)) {
            Some(&at) => {
                let from = sent[i as usize].load(Ordering::Relaxed);
                latency.saturating_record(at.saturating_sub(from).max(1) / 1_000);
            }
            None => missing += 1,
        }
    }
    drop(server);
    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1_000.0;
    Ok((ms(0.5), ms(0.99), missing))
}
