//! verifyd's benchmark: one command measures the floor (a bare axum server answering a fixed
//! Verify-shaped JSON) and then verifyd itself, under the same load over loopback, and prints
//! every figure with its ratio to the floor measured in the same run (docs/benchmarks.md).

mod calls;
mod durable;
mod load;
mod smpp;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::{Parser, Subcommand};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use load::{Expect, Report, Target};

#[derive(Parser)]
#[command(about = "Benchmarks verifyd against a bare axum floor on the same machine")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run every scenario and print the table.
    Run(RunArgs),
    /// Many verifications in progress: the server's memory, and how long a restart takes until
    /// it serves again.
    Pending(PendingArgs),
    /// Events coming due at a steady rate: how late the scheduler fires them.
    Due(DueArgs),
    /// Two verifyd nodes sharing one PostgreSQL database: requests per second, one node alone and
    /// both together.
    Cluster(ClusterArgs),
    /// verifyd's SMPP channel against a local SMSC: submit_sm per second, and the time from
    /// `POST /verify/json` to the submit_sm at a fixed rate.
    Smpp(smpp::SmppArgs),
    /// Speech and SIP calls: a locale's cold start, and calls at once with their RTP jitter.
    Calls(calls::CallsArgs),
    /// The floor: a bare axum server answering a fixed Verify-shaped JSON (started by `run`).
    Floor {
        #[arg(long)]
        listen: SocketAddr,
        /// The durable floor instead: every answer waits until a row for it is committed to
        /// this SQLite file (see `durable.rs`).
        #[arg(long)]
        durable: Option<PathBuf>,
        /// What the durable floor writes with.
        #[arg(long, value_enum, default_value = "sqlite", requires = "durable")]
        engine: durable::Engine,
    },
}

#[derive(clap::Args, Clone)]
struct RunArgs {
    /// Seconds of load per throughput scenario.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Checks to make (each needs a verification created first).
    #[arg(long, default_value_t = 60_000)]
    checks: u64,
    /// Rate of the fixed-rate latency scenario, requests per second.
    #[arg(long, default_value_t = 5_000)]
    rate: u64,
    /// The verifyd binary (default: the release build next to this binary).
    #[arg(long)]
    verifyd: Option<PathBuf>,
    /// Only these scenarios (comma-separated), for profiling one of them; search needs the
    /// verifications check creates, so it creates them if check is left out.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "request,check,search,rate,durable"
    )]
    only: Vec<Scenario>,
    /// For `mixed`: how many starts behind each check is (the verifications it checks were
    /// started this many starts earlier).
    #[arg(long, default_value_t = 10_000)]
    lag: usize,
    /// A configuration file for the server (`verifyd serve --config`), e.g. to measure what
    /// `[limits]` cost: give it routes to the inbox, or messages are not sent.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Run verifyd on PostgreSQL instead of a SQLite file: a fresh database `verifyd_bench_run`
    /// on this server (dropped again at the end).
    #[arg(long)]
    postgres: Option<String>,
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq, Debug)]
enum Scenario {
    /// POST /verify/json, a new number each, as fast as answers come.
    Request,
    /// POST /verify/check/json with the right code.
    Check,
    /// GET /verify/search/json.
    Search,
    /// POST /verify/json at `--rate`.
    Rate,
    /// Starts and checks interleaved, each check `--lag` starts behind (not in the default run).
    Mixed,
    /// The durable floor: one row inserted, then one row rewritten, per request, each answer
    /// after its group commit.
    Durable,
}

#[derive(clap::Args, Clone)]
struct PendingArgs {
    /// Verifications to leave in progress.
    #[arg(long, default_value_t = 1_000_000)]
    count: u64,
    /// Concurrent keep-alive connections while creating them.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// The verifyd binary (default: the release build next to this binary).
    #[arg(long)]
    verifyd: Option<PathBuf>,
}

#[derive(clap::Args, Clone)]
struct DueArgs {
    /// Verifications started per second; their calls come due at the same rate 60 s later.
    #[arg(long, default_value_t = 2_000)]
    rate: u64,
    /// Seconds of starting verifications.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Verifications put in progress first (workflow 1, nothing due for 15 minutes), so that the
    /// scheduler works on top of a full store.
    #[arg(long, default_value_t = 1_000_000)]
    pending: u64,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// The verifyd binary (default: the release build next to this binary).
    #[arg(long)]
    verifyd: Option<PathBuf>,
}

#[derive(clap::Args, Clone)]
struct ClusterArgs {
    /// A PostgreSQL server to create the benchmark's database on (dropped again at the end).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    postgres: String,
    /// Seconds of load per scenario.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Concurrent keep-alive connections, spread over the nodes.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// The verifyd binary (default: the release build next to this binary).
    #[arg(long)]
    verifyd: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Floor {
            listen,
            durable: None,
            ..
        } => floor(listen),
        Cmd::Floor {
            listen,
            durable: Some(db),
            engine,
        } => durable::serve(listen, db, engine),
        Cmd::Run(args) => block_on(run(args)),
        Cmd::Pending(args) => block_on(pending(args)),
        Cmd::Due(args) => block_on(due(args)),
        Cmd::Cluster(args) => block_on(cluster(args)),
        Cmd::Smpp(args) => block_on(smpp::run(args)),
        Cmd::Calls(args) => block_on(calls::run(args)),
    }
}

fn block_on(scenario: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(scenario)
}

/// What a cheap verify endpoint answers; the floor does nothing else.
const FLOOR_BODY: &str = r#"{"request_id":"abcdef0123456789abcdef0123456789","status":"0"}"#;

fn floor(listen: SocketAddr) -> anyhow::Result<()> {
    // The same runtime shape as verifyd's (multi-threaded, all cores).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let reply = || async {
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                FLOOR_BODY,
            )
        };
        let app = axum::Router::new().fallback(reply);
        let listener = tokio::net::TcpListener::bind(listen).await?;
        axum::serve(listener, app).await?;
        Ok(())
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_listening(addr: SocketAddr) -> anyhow::Result<()> {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("nothing listens on {addr} after 10 s")
}

struct Verifyd {
    child: Child,
    addr: SocketAddr,
    key: String,
    secret: String,
}

/// The server's log filter: `warn`, or `VERIFYD_BENCH_LOG` to look inside a run (for example
/// `verifyd::store=trace` logs every group commit with its size).
fn server_log_filter() -> String {
    std::env::var("VERIFYD_BENCH_LOG").unwrap_or_else(|_| "warn".into())
}

fn sqlite_url(db: &Path) -> String {
    format!("sqlite://{}", db.display())
}

fn spawn_verifyd(bin: &Path, db: &Path, addr: SocketAddr) -> anyhow::Result<Child> {
    spawn_verifyd_on(bin, &sqlite_url(db), addr)
}

/// `verifyd serve` on `database` at `addr`, logging to this terminal; the caller picks stdout.
fn verifyd_command(bin: &Path, database: &str, addr: SocketAddr) -> Command {
    let mut command = Command::new(bin);
    command
        .args([
            "serve",
            "--listen",
            &addr.to_string(),
            "--database",
            database,
        ])
        .env("RUST_LOG", server_log_filter())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    command
}

fn spawn_verifyd_on(bin: &Path, database: &str, addr: SocketAddr) -> anyhow::Result<Child> {
    verifyd_command(bin, database, addr)
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))
}

/// Resident memory of a process, from /proc.
fn rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .context("no VmRSS")?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kib / 1024.0)
}

/// CPU time (user and system) a process has used so far, from /proc: `self` or a pid.
fn cpu_time(pid: &str) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces; the fields after it are plain numbers.
    let after_name = &stat[stat.rfind(')').context("no command name in stat")? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    // SAFETY: sysconf only reads a constant of the running system.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(Duration::from_micros(ticks * 1_000_000 / per_second))
}

/// A scenario's report with the CPU the server and this load generator spent on it. Throughput
/// on a shared machine moves with its neighbours; the CPU spent per request moves much less, so
/// it shows whether a change made verifyd cheaper.
struct Measured {
    report: Report,
    server_cpu: Duration,
    client_cpu: Duration,
}

impl Measured {
    fn server_us_per_request(&self) -> f64 {
        self.server_cpu.as_secs_f64() * 1e6 / self.report.requests.max(1) as f64
    }

    fn client_us_per_request(&self) -> f64 {
        self.client_cpu.as_secs_f64() * 1e6 / self.report.requests.max(1) as f64
    }
}

async fn measured(
    server_pid: u32,
    scenario: impl std::future::Future<Output = anyhow::Result<Report>>,
) -> anyhow::Result<Measured> {
    let server = server_pid.to_string();
    let (server_before, client_before) = (cpu_time(&server)?, cpu_time("self")?);
    let report = scenario.await?;
    Ok(Measured {
        report,
        server_cpu: cpu_time(&server)?.saturating_sub(server_before),
        client_cpu: cpu_time("self")?.saturating_sub(client_before),
    })
}

/// The floor: this binary's `floor` command in a process of its own.
struct Floor {
    child: Child,
    addr: SocketAddr,
    target: Target,
    pid: u32,
}

impl Floor {
    async fn start(exe: &Path) -> anyhow::Result<Self> {
        Self::start_with(exe, &[]).await
    }

    /// The durable floor, committing to `db`.
    async fn start_durable(exe: &Path, db: &Path, engine: durable::Engine) -> anyhow::Result<Self> {
        let engine = match engine {
            durable::Engine::Sqlite => "sqlite",
            durable::Engine::Log => "log",
        };
        let args = [
            "--durable".as_ref(),
            db.as_os_str(),
            "--engine".as_ref(),
            engine.as_ref(),
        ];
        Self::start_with(exe, &args).await
    }

    async fn start_with(exe: &Path, extra: &[&std::ffi::OsStr]) -> anyhow::Result<Self> {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
        let child = Command::new(exe)
            .args(["floor", "--listen", &addr.to_string()])
            .args(extra)
            .kill_on_drop(true)
            .spawn()?;
        wait_listening(addr).await?;
        let pid = child.id().context("the floor exited")?;
        Ok(Self {
            child,
            addr,
            target: Target::post(addr, "/verify/json", None),
            pid,
        })
    }

    /// Two seconds of warm-up, then `duration` measured.
    async fn measure(&self, connections: usize, duration: Duration) -> anyhow::Result<Measured> {
        let body = form(&[("number", "12015550123"), ("brand", "AcmeInc")]);
        let fixed = move |_| body.clone();
        load::closed_loop(
            &self.target,
            connections,
            Duration::from_secs(2),
            fixed.clone(),
            Expect::Status0,
        )
        .await?;
        measured(
            self.pid,
            load::closed_loop(&self.target, connections, duration, fixed, Expect::Status0),
        )
        .await
    }
}

/// A verification that stays in progress for the whole run: workflow 1 with the longest waits.
fn pending_form(i: u64) -> Bytes {
    let n = number(i);
    form(&[
        ("number", &n),
        ("brand", "AcmeInc"),
        ("next_event_wait", "900"),
        ("pin_expiry", "3600"),
    ])
}

async fn pending(args: PendingArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let bin = args
        .verifyd
        .clone()
        .unwrap_or_else(|| exe.with_file_name("verifyd"));
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("pending.db");
    let mut server = start_verifyd(&bin, &db).await?;
    let auth = Some((server.key.clone(), server.secret.clone()));
    let request = Target::post(server.addr, "/verify/json", auth.clone());
    let started = std::time::Instant::now();
    let ids = load::collect_ids(&request, args.connections, args.count, pending_form).await?;
    let created = started.elapsed();
    let pid = server.child.id().context("verifyd exited")?;
    let rss_loaded = rss_mib(pid)?;
    let db_mib = std::fs::metadata(&db)?.len() as f64 / 1048576.0;
    let wal = db.with_extension("db-wal");
    let wal_mib = std::fs::metadata(&wal).map_or(0.0, |m| m.len() as f64 / 1048576.0);

    // SIGKILL, then time a new process until it answers an authenticated search.
    server.child.kill().await?;
    let addr = server.addr;
    let restart = std::time::Instant::now();
    let mut child = spawn_verifyd(&bin, &db, addr)?;
    let probe = Target::get(addr, auth.clone(), {
        let id = ids[0].clone();
        move |_| format!("/verify/search/json?request_id={id}")
    });
    loop {
        let answered = load::fixed_count(&probe, 1, 1, |_| Bytes::new(), Expect::Found).await;
        if matches!(&answered, Ok(r) if r.errors == 0) {
            break;
        }
        if restart.elapsed() > Duration::from_secs(60) {
            bail!("the restarted server did not serve within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let restart_to_serving = restart.elapsed();
    let rss_restarted = rss_mib(child.id().context("verifyd exited")?)?;
    child.kill().await?;

    println!("| measure | value |");
    println!("|---|---|");
    println!("| verifications in progress | {} |", ids.len());
    println!(
        "| time to create them | {:.1} s ({:.0}/s) |",
        created.as_secs_f64(),
        ids.len() as f64 / created.as_secs_f64()
    );
    println!("| database file | {db_mib:.0} MiB |");
    println!("| WAL file before the kill | {wal_mib:.0} MiB |");
    println!("| server RSS after creating them | {rss_loaded:.1} MiB |");
    println!(
        "| restart (SIGKILL, new process) to first answered search | {:.0} ms |",
        restart_to_serving.as_secs_f64() * 1000.0
    );
    println!("| server RSS after the restart | {rss_restarted:.1} MiB |");
    Ok(())
}

/// Starts `rate` verifications per second (workflow 5: an SMS now, a call 60 s later) for
/// `seconds`, waits for every call, and reports how long after its due time each call fired,
/// from the inbox's millisecond timestamps (SMS at t, call due at t + 60 s).
async fn due(args: DueArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let bin = args
        .verifyd
        .clone()
        .unwrap_or_else(|| exe.with_file_name("verifyd"));
    let dir = tempfile::tempdir()?;
    let server = start_verifyd(&bin, &dir.path().join("due.db")).await?;
    let auth = Some((server.key.clone(), server.secret.clone()));
    let request = Target::post(server.addr, "/verify/json", auth.clone());
    let filled = std::time::Instant::now();
    let pending = load::collect_ids(&request, args.connections, args.pending, |i| {
        pending_form(i)
    })
    .await?;
    let filled = filled.elapsed();
    // The numbers of the measured verifications follow those of the pending ones.
    let first = args.pending;
    let count = args.rate * args.seconds;
    let started = load::fixed_rate(
        &request,
        args.connections,
        args.rate,
        Duration::from_secs(args.seconds),
        move |i| {
            let n = number(first + i);
            form(&[
                ("number", &n),
                ("brand", "AcmeInc"),
                ("workflow_id", "5"),
                ("next_event_wait", "60"),
            ])
        },
    )
    .await?;
    if started.errors > 0 {
        bail!("{} of {count} starts failed", started.errors);
    }
    // The last calls come due 60 s after the last start.
    tokio::time::sleep(Duration::from_secs(62)).await;
    let lateness = Arc::new(std::sync::Mutex::new(hdrhistogram::Histogram::<u64>::new(
        3,
    )?));
    let missing = Arc::new(AtomicU64::new(0));
    let inbox = Target::get(server.addr, None, move |i| {
        format!("/inbox/messages?to={}", number(first + i))
    });
    let (late, miss) = (lateness.clone(), missing.clone());
    load::fixed_count_inspect(
        &inbox,
        args.connections,
        count,
        |_| Bytes::new(),
        move |body| {
            let list: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
            let at = |kind: &str| {
                list.as_array()?
                    .iter()
                    .find(|m| m["channel"] == kind)
                    .and_then(|m| m["created_at"].as_str())
                    .and_then(chrono_ms)
            };
            match (at("sms"), at("voice")) {
                (Some(sms), Some(call)) => {
                    let ms = (call - sms - 60_000).max(0) as u64;
                    late.lock().unwrap().saturating_record(ms);
                }
                _ => {
                    miss.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(())
        },
    )
    .await?;
    let h = lateness.lock().unwrap();
    let rss = rss_mib(server.child.id().context("verifyd exited")?)?;
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| verifications in progress before the run | {} (created in {:.1} s) |",
        pending.len(),
        filled.as_secs_f64()
    );
    println!("| server RSS at the end | {rss:.1} MiB |");
    println!(
        "| calls due | {count} ({} per second for {} s) |",
        args.rate, args.seconds
    );
    println!("| calls missing | {} |", missing.load(Ordering::Relaxed));
    for q in [0.5, 0.99, 0.999, 1.0] {
        println!(
            "| lateness p{} | {} ms |",
            q * 100.0,
            h.value_at_quantile(q)
        );
    }
    Ok(())
}

/// Milliseconds since the epoch of an RFC 3339 time with milliseconds (`…T12:00:00.123Z`).
fn chrono_ms(t: &str) -> Option<i64> {
    let (date, time) = t.trim_end_matches('Z').split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut parts = hms.split(':').map(|p| p.parse::<i64>());
    let (h, min, s) = (
        parts.next()?.ok()?,
        parts.next()?.ok()?,
        parts.next()?.ok()?,
    );
    let ms: i64 = format!("{frac:0<3}")[..3].parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + h) * 60 + min) * 60_000 + s * 1000 + ms)
}

async fn start_verifyd(bin: &Path, db: &Path) -> anyhow::Result<Verifyd> {
    start_verifyd_on(bin, &sqlite_url(db)).await
}

/// Starts verifyd on a new database and reads the API key it creates and prints.
async fn start_verifyd_on(bin: &Path, database: &str) -> anyhow::Result<Verifyd> {
    start_verifyd_with(bin, database, &[]).await
}

/// As [`start_verifyd_on`], with more `serve` flags.
async fn start_verifyd_with(bin: &Path, database: &str, extra: &[&str]) -> anyhow::Result<Verifyd> {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
    let mut child = verifyd_command(bin, database, addr)
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .context("verifyd printed no key within 30 s")??
        .context("verifyd exited")?;
    let key: serde_json::Value = serde_json::from_str(&line)?;
    wait_listening(addr).await?;
    Ok(Verifyd {
        child,
        addr,
        key: key["api_key"].as_str().unwrap().to_owned(),
        secret: key["api_secret"].as_str().unwrap().to_owned(),
    })
}

/// Distinct valid numbers: US numbers in real area codes, exchanges 200–999.
fn number(i: u64) -> String {
    const AREAS: [u32; 10] = [201, 202, 212, 213, 305, 312, 415, 617, 718, 917];
    let area = AREAS[(i % 10) as usize];
    let rest = i / 10;
    let exchange = 200 + (rest / 10_000) % 800;
    let line = rest % 10_000;
    format!("1{area}{exchange}{line:04}")
}

fn form(pairs: &[(&str, &str)]) -> Bytes {
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    Bytes::from(out)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn row(name: &str, m: &Measured, floor_rps: f64) -> String {
    let r = &m.report;
    format!(
        "| {name} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {:.1} | {:.1} |",
        r.rps(),
        r.rps() / floor_rps,
        r.quantile_ms(0.50),
        r.quantile_ms(0.99),
        r.quantile_ms(0.999),
        r.quantile_ms(1.0),
        r.errors,
        m.server_us_per_request(),
        m.client_us_per_request(),
    )
}

/// The database `run --postgres` makes on the server it names.
const RUN_DATABASE: &str = "verifyd_bench_run";

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let Some(server) = &args.postgres else {
        return run_on(&args, None).await;
    };
    let (admin, conn) = tokio_postgres::connect(server, tokio_postgres::NoTls)
        .await
        .with_context(|| format!("cannot connect to {server}"))?;
    tokio::spawn(conn);
    let drop = format!("drop database if exists {RUN_DATABASE} with (force)");
    admin.batch_execute(&drop).await?;
    admin
        .batch_execute(&format!("create database {RUN_DATABASE}"))
        .await?;
    let result = run_on(&args, Some(with_database(server, RUN_DATABASE)?)).await;
    admin.batch_execute(&drop).await?;
    result
}

/// `run` on the PostgreSQL database `postgres`, or on a SQLite file of its own.
async fn run_on(args: &RunArgs, postgres: Option<String>) -> anyhow::Result<()> {
    let duration = Duration::from_secs(args.duration);
    let exe = std::env::current_exe()?;
    let verifyd_bin = args
        .verifyd
        .clone()
        .unwrap_or_else(|| exe.with_file_name("verifyd"));
    let dir = tempfile::tempdir()?;
    let wanted = |s: Scenario| args.only.contains(&s);
    println!(
        "verifyd benchmark: {} connections, {} s per scenario, {} cores",
        args.connections,
        args.duration,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    // Floor: the same request shape, a fixed answer. The floor of one machine moves by up to
    // half between measurements minutes apart (docs/benchmarks.md), so it is measured before
    // each throughput scenario and the ratios use the median of those measurements.
    let mut floor = Floor::start(&exe).await?;
    let mut floors = Vec::new();

    // The durable floor, measured right after each verifyd scenario it bounds (so that both see
    // the same moment of this machine and its disk), or on its own when it is all that runs.
    let durable = if wanted(Scenario::Durable) {
        Some(DurableFloors::start(&exe, dir.path()).await?)
    } else {
        None
    };
    let alone = ![Scenario::Request, Scenario::Check, Scenario::Rate]
        .into_iter()
        .any(wanted);

    let database = postgres.unwrap_or_else(|| sqlite_url(&dir.path().join("bench.db")));
    let server = match &args.config {
        Some(file) => {
            let file = file.to_string_lossy();
            start_verifyd_with(&verifyd_bin, &database, &["--config", &file]).await?
        }
        None => start_verifyd_on(&verifyd_bin, &database).await?,
    };
    let auth = Some((server.key.clone(), server.secret.clone()));
    let server_pid = server.child.id().context("verifyd exited")?;
    let counter = Arc::new(AtomicU64::new(0));
    let mut rows: Vec<(String, Measured)> = Vec::new();

    // POST /verify/json, every request a new number.
    let request = Target::post(server.addr, "/verify/json", auth.clone());
    let next = counter.clone();
    let make = move |_| {
        let n = number(next.fetch_add(1, Ordering::Relaxed));
        form(&[("number", &n), ("brand", "AcmeInc")])
    };
    if wanted(Scenario::Request) {
        floors.push(("request", floor.measure(args.connections, duration).await?));
        load::closed_loop(
            &request,
            args.connections,
            Duration::from_secs(2),
            make.clone(),
            Expect::Status0,
        )
        .await?;
        let report = measured(
            server_pid,
            load::closed_loop(&request, args.connections, duration, make, Expect::Status0),
        )
        .await?;
        rows.push((REQUEST.into(), report));
        if let Some(durable) = &durable {
            rows.extend(durable.inserts(args.connections, duration).await?);
        }
    }

    // POST /verify/check/json with right codes: verifications made first with a known pin_code.
    if wanted(Scenario::Check) || wanted(Scenario::Search) {
        if wanted(Scenario::Check) {
            floors.push(("check", floor.measure(args.connections, duration).await?));
        }
        let next = counter.clone();
        let ids = load::collect_ids(&request, args.connections, args.checks, move |_| {
            let n = number(next.fetch_add(1, Ordering::Relaxed));
            form(&[("number", &n), ("brand", "AcmeInc"), ("pin_code", "4815")])
        })
        .await?;
        let ids = Arc::new(ids);
        if wanted(Scenario::Check) {
            let check = Target::post(server.addr, "/verify/check/json", auth.clone());
            let check_ids = ids.clone();
            let report = measured(
                server_pid,
                load::fixed_count(
                    &check,
                    args.connections,
                    check_ids.len() as u64,
                    move |i| form(&[("request_id", &check_ids[i as usize]), ("code", "4815")]),
                    Expect::Status0,
                ),
            )
            .await?;
            rows.push((CHECK.into(), report));
            if let Some(durable) = &durable {
                rows.extend(durable.rewrites(args.connections, args.checks).await?);
            }
        }

        // GET /verify/search/json over those verifications.
        if wanted(Scenario::Search) {
            floors.push(("search", floor.measure(args.connections, duration).await?));
            let search_ids = ids.clone();
            let search = Target::get(server.addr, auth.clone(), move |i| {
                format!(
                    "/verify/search/json?request_id={}",
                    search_ids[(i as usize) % search_ids.len()]
                )
            });
            let report = measured(
                server_pid,
                load::closed_loop(
                    &search,
                    args.connections,
                    duration,
                    |_| Bytes::new(),
                    Expect::Found,
                ),
            )
            .await?;
            rows.push(("GET /verify/search/json".into(), report));
        }
    }

    // Starts and checks interleaved, as an application sends them.
    if wanted(Scenario::Mixed) {
        floors.push(("mixed", floor.measure(args.connections, duration).await?));
        let check = Target::post(server.addr, "/verify/check/json", auth.clone());
        let next = counter.clone();
        let start_body = move |_| {
            let n = number(next.fetch_add(1, Ordering::Relaxed));
            form(&[("number", &n), ("brand", "AcmeInc"), ("pin_code", "4815")])
        };
        let check_body = |id: &str| form(&[("request_id", id), ("code", "4815")]);
        let lag = args.lag as u64;
        let started = load::start_some(&request, args.connections, lag, start_body.clone()).await?;
        let report = measured(
            server_pid,
            load::start_then_check(
                &request,
                &check,
                args.connections,
                duration,
                started,
                lag,
                start_body,
                check_body,
            ),
        )
        .await?;
        rows.push((
            format!("start, then check {} starts behind", args.lag),
            report,
        ));
    }

    // Latency at a fixed rate: new requests at `rate` per second.
    if wanted(Scenario::Rate) {
        let next = counter.clone();
        let make = move |_| {
            let n = number(next.fetch_add(1, Ordering::Relaxed));
            form(&[("number", &n), ("brand", "AcmeInc")])
        };
        // Two seconds at the same rate first, as the closed-loop scenarios warm up: a fresh
        // server's first second (an empty WAL file growing, cold caches) is not its steady state.
        load::fixed_rate(
            &request,
            args.connections,
            args.rate,
            Duration::from_secs(2),
            make.clone(),
        )
        .await?;
        let report = measured(
            server_pid,
            load::fixed_rate(&request, args.connections, args.rate, duration, make),
        )
        .await?;
        rows.push((format!("POST /verify/json at {} req/s", args.rate), report));
        if let Some(durable) = &durable {
            rows.extend(
                durable
                    .at_rate(args.connections, args.rate, duration)
                    .await?,
            );
        }
    }

    drop(server);

    if let (Some(durable), true) = (&durable, alone) {
        floors.push((
            "durable floor",
            floor.measure(args.connections, duration).await?,
        ));
        rows.extend(durable.inserts(args.connections, duration).await?);
        rows.extend(
            durable
                .at_rate(args.connections, args.rate, duration)
                .await?,
        );
        rows.extend(durable.rewrites(args.connections, args.checks).await?);
    }
    drop(durable);
    floor.child.kill().await?;
    // With no throughput scenario there is no floor, and the ratio column says nothing.
    let floor_rps = if floors.is_empty() {
        f64::NAN
    } else {
        median(floors.iter().map(|(_, m)| m.report.rps()).collect())
    };
    println!();
    println!(
        "| scenario | req/s | × floor | p50 ms | p99 ms | p99.9 ms | max ms | errors \
         | server CPU µs/req | load generator CPU µs/req |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (before, report) in &floors {
        println!(
            "{}",
            row(
                &format!("floor (bare axum, fixed JSON), before {before}"),
                report,
                floor_rps
            )
        );
    }
    if !floors.is_empty() {
        println!("| floor, median of the above | {floor_rps:.0} | 1.00 | | | | | | | |");
    }
    for (name, report) in &rows {
        println!("{}", row(name, report, floor_rps));
    }
    let find = |name: &str| rows.iter().find(|(n, _)| n == name).map(|(_, m)| &m.report);
    let sqlite = |what: &str| format!("durable floor ({DURABLE_SQLITE}): {what}");
    let pairs = [
        ("new request", REQUEST.to_owned(), sqlite(DURABLE_INSERT)),
        ("check", CHECK.to_owned(), sqlite(DURABLE_REWRITE)),
    ];
    let mut against: Vec<String> = pairs
        .iter()
        .filter_map(|(what, ours, floor)| {
            let (ours, floor) = (find(ours)?, find(floor)?);
            Some(format!(
                "| {what}, req/s | {:.0} | {:.0} | {:.2} |",
                ours.rps(),
                floor.rps(),
                ours.rps() / floor.rps()
            ))
        })
        .collect();
    let rate_ours = format!("POST /verify/json at {} req/s", args.rate);
    let rate_floor = sqlite(&format!("{DURABLE_INSERT} at {} req/s", args.rate));
    if let (Some(ours), Some(floor)) = (find(&rate_ours), find(&rate_floor)) {
        against.push(format!(
            "| new request at {} req/s, p99 ms | {:.2} | {:.2} | {:.2} |",
            args.rate,
            ours.quantile_ms(0.99),
            floor.quantile_ms(0.99),
            ours.quantile_ms(0.99) / floor.quantile_ms(0.99)
        ));
    }
    if !against.is_empty() {
        println!();
        println!("| verifyd against the durable floor ({DURABLE_SQLITE}), measured right after | verifyd | durable floor | ratio |");
        println!("|---|---|---|---|");
        for line in against {
            println!("{line}");
        }
    }
    Ok(())
}

const REQUEST: &str = "POST /verify/json (new number each)";
const CHECK: &str = "POST /verify/check/json (right code)";

/// The durable floor's two servers: SQLite, written as verifyd's engine writes, and a plain file.
struct DurableFloors {
    servers: Vec<(&'static str, Floor)>,
}

impl DurableFloors {
    async fn start(exe: &Path, dir: &Path) -> anyhow::Result<Self> {
        let mut servers = Vec::new();
        for (engine, file, name) in [
            (durable::Engine::Sqlite, "durable.db", DURABLE_SQLITE),
            (
                durable::Engine::Log,
                "durable.log",
                "plain file + fdatasync",
            ),
        ] {
            servers.push((
                name,
                Floor::start_durable(exe, &dir.join(file), engine).await?,
            ));
        }
        Ok(Self { servers })
    }

    /// A row inserted per request, closed loop with warm-up (as `request`).
    async fn inserts(
        &self,
        connections: usize,
        duration: Duration,
    ) -> anyhow::Result<Vec<(String, Measured)>> {
        let mut rows = Vec::new();
        for (name, server) in &self.servers {
            let m = server.measure(connections, duration).await?;
            rows.push((format!("durable floor ({name}): {DURABLE_INSERT}"), m));
        }
        Ok(rows)
    }

    /// A row inserted per request at `rate`, after two seconds at that rate (as `rate`).
    async fn at_rate(
        &self,
        connections: usize,
        rate: u64,
        duration: Duration,
    ) -> anyhow::Result<Vec<(String, Measured)>> {
        let mut rows = Vec::new();
        let nothing = |_| Bytes::new();
        for (name, server) in &self.servers {
            let warm_up = Duration::from_secs(2);
            load::fixed_rate(&server.target, connections, rate, warm_up, nothing).await?;
            let m = measured(
                server.pid,
                load::fixed_rate(&server.target, connections, rate, duration, nothing),
            )
            .await?;
            rows.push((
                format!("durable floor ({name}): {DURABLE_INSERT} at {rate} req/s"),
                m,
            ));
        }
        Ok(rows)
    }

    /// `count` rows inserted, then each rewritten once (as `check`).
    async fn rewrites(
        &self,
        connections: usize,
        count: u64,
    ) -> anyhow::Result<Vec<(String, Measured)>> {
        let mut rows = Vec::new();
        for (name, server) in &self.servers {
            let ids = load::collect_ids(&server.target, connections, count, |_| Bytes::new());
            let ids = Arc::new(ids.await?);
            let rewrite = Target::post(server.addr, "/verify/check/json", None);
            let m = measured(
                server.pid,
                load::fixed_count(
                    &rewrite,
                    connections,
                    ids.len() as u64,
                    move |i| form(&[("request_id", &ids[i as usize])]),
                    Expect::Status0,
                ),
            )
            .await?;
            rows.push((format!("durable floor ({name}): {DURABLE_REWRITE}"), m));
        }
        Ok(rows)
    }
}

const DURABLE_SQLITE: &str = "SQLite";
const DURABLE_INSERT: &str = "a row inserted per request";
const DURABLE_REWRITE: &str = "a row rewritten per request";

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> anyhow::Result<String> {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let (server, _) = base
        .rsplit_once('/')
        .filter(|(server, _)| server.contains("://") && !server.ends_with('/'))
        .with_context(|| format!("{url} names no database"))?;
    Ok(match query {
        Some(q) => format!("{server}/{name}?{q}"),
        None => format!("{server}/{name}"),
    })
}

async fn cluster(args: ClusterArgs) -> anyhow::Result<()> {
    const DATABASE: &str = "verifyd_bench";
    let exe = std::env::current_exe()?;
    let bin = args
        .verifyd
        .clone()
        .unwrap_or_else(|| exe.with_file_name("verifyd"));
    let (admin, conn) = tokio_postgres::connect(&args.postgres, tokio_postgres::NoTls)
        .await
        .with_context(|| format!("cannot connect to {}", args.postgres))?;
    tokio::spawn(conn);
    // One statement per call: several in one string run as one transaction, which neither
    // statement accepts.
    admin
        .batch_execute(&format!("drop database if exists {DATABASE} with (force)"))
        .await?;
    admin
        .batch_execute(&format!("create database {DATABASE}"))
        .await?;
    let url = with_database(&args.postgres, DATABASE)?;
    let result = cluster_on(&bin, &url, &args).await;
    admin
        .batch_execute(&format!("drop database if exists {DATABASE} with (force)"))
        .await?;
    result
}

async fn cluster_on(bin: &Path, url: &str, args: &ClusterArgs) -> anyhow::Result<()> {
    let duration = Duration::from_secs(args.duration);
    // The target is absolute (requests per second), and this machine's speed moves by half
    // between hours: the floor measured in the same run says which kind of hour it was.
    let mut floor = Floor::start(&std::env::current_exe()?).await?;
    let floor_rps = floor
        .measure(args.connections, duration)
        .await?
        .report
        .rps();
    floor.child.kill().await?;
    let first = start_verifyd_on(bin, url).await?;
    let second_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
    let mut second = spawn_verifyd_on(bin, url, second_addr)?;
    wait_listening(second_addr).await?;
    let auth = Some((first.key.clone(), first.secret.clone()));
    let counter = Arc::new(AtomicU64::new(0));
    let make = move |_| {
        let n = number(counter.fetch_add(1, Ordering::Relaxed));
        form(&[("number", &n), ("brand", "AcmeInc")])
    };
    let one = Target::post(first.addr, "/verify/json", auth.clone());
    let both = one.clone().across(&[first.addr, second_addr]);
    let mut reports = Vec::new();
    for (name, target) in [("one node", &one), ("two nodes", &both)] {
        load::closed_loop(
            target,
            args.connections,
            Duration::from_secs(2),
            make.clone(),
            Expect::Status0,
        )
        .await?;
        let report = load::closed_loop(
            target,
            args.connections,
            duration,
            make.clone(),
            Expect::Status0,
        )
        .await?;
        reports.push((name, report));
    }
    second.kill().await?;
    drop(first);
    println!(
        "POST /verify/json (new number each) on PostgreSQL, {} connections, {} s",
        args.connections, args.duration
    );
    println!();
    println!("| nodes | req/s | × floor | p50 ms | p99 ms | p99.9 ms | max ms | errors |");
    println!("|---|---|---|---|---|---|---|---|");
    println!("| floor (bare axum, fixed JSON, measured first) | {floor_rps:.0} | 1.00 | | | | | |");
    for (name, r) in reports {
        println!(
            "| {name} | {:.0} | {:.3} | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
            r.rps(),
            r.rps() / floor_rps,
            r.quantile_ms(0.50),
            r.quantile_ms(0.99),
            r.quantile_ms(0.999),
            r.quantile_ms(1.0),
            r.errors
        );
    }
    Ok(())
}

impl Drop for Verifyd {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbox_times_convert_to_epoch_milliseconds() {
        assert_eq!(
            chrono_ms("2026-11-22T00:00:00.123Z"),
            Some(1_795_305_600_123)
        );
        assert_eq!(
            chrono_ms("2024-02-29T23:59:59.005Z"),
            Some(1_709_251_199_005)
        );
        assert_eq!(chrono_ms("garbage"), None);
    }

    #[test]
    fn a_postgres_url_gets_another_database_and_keeps_its_options() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "b").unwrap(),
            "postgres://postgres@127.0.0.1:5432/b"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "b").unwrap(),
            "postgres://u:p@h/b?sslmode=disable"
        );
        assert!(with_database("postgres://h:5432", "b").is_err());
    }

    #[test]
    fn the_floor_is_the_middle_measurement_or_the_mean_of_the_middle_two() {
        assert_eq!(median(vec![240_000.0, 120_000.0, 130_000.0]), 130_000.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    #[test]
    fn benchmark_numbers_are_distinct_and_valid_shaped() {
        let a: std::collections::HashSet<String> = (0..100_000).map(number).collect();
        assert_eq!(a.len(), 100_000);
        assert!(a.iter().all(|n| n.len() == 11 && n.starts_with('1')));
    }
}
