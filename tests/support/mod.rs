//! Runs the real `verifyd` binary for tests that need a whole process: SDKs, restarts, the CLI.
#![allow(dead_code)]

pub mod app;
pub mod cluster;
pub mod engines;
pub mod gateway;
pub mod smsc;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_verifyd");

/// One HTTP client for a whole test binary, with a new connection per request (servers are
/// killed and started again on the same port). Building a client loads the system's root
/// certificates, tens of milliseconds each time.
pub fn client() -> reqwest::blocking::Client {
    static CLIENT: std::sync::OnceLock<reqwest::blocking::Client> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(10))
                .pool_max_idle_per_host(0)
                .build()
                .unwrap()
        })
        .clone()
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Server {
    child: Option<Child>,
    pub port: u16,
    pub stderr: PathBuf,
    /// The first key, when this start created it.
    pub first_key: Option<(String, String)>,
}

/// Starts `verifyd serve` on a free port with the database `db`; waits (at most 20 s) until it
/// accepts connections. `extra` are more flags.
pub fn start(dir: &Path, db: &Path, extra: &[&str]) -> Server {
    start_on(dir, db, free_port(), extra)
}

pub fn start_on(dir: &Path, db: &Path, port: u16, extra: &[&str]) -> Server {
    start_with_url(dir, &format!("sqlite://{}", db.display()), port, extra)
}

/// Starts a server on any database URL (a PostgreSQL schema, say) on a free port.
pub fn start_url(dir: &Path, url: &str, extra: &[&str]) -> Server {
    start_with_url(dir, url, free_port(), extra)
}

fn start_with_url(dir: &Path, url: &str, port: u16, extra: &[&str]) -> Server {
    start_command(Command::new(BIN), dir, url, port, extra)
}

/// Starts `verifyd serve` with the database `db` from a shell that first runs `setup` (say
/// `ulimit -n 128; umask 022`).
pub fn start_after(dir: &Path, db: &Path, setup: &str, extra: &[&str]) -> Server {
    let mut shell = Command::new("sh");
    shell
        .arg("-c")
        .arg(format!("{setup}\nexec \"$0\" \"$@\""))
        .arg(BIN);
    let url = format!("sqlite://{}", db.display());
    start_command(shell, dir, &url, free_port(), extra)
}

fn start_command(mut command: Command, dir: &Path, url: &str, port: u16, extra: &[&str]) -> Server {
    let stderr = dir.join(format!("server-{port}-{}.log", std::process::id()));
    let mut child = command
        .arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--database")
        .arg(url)
        .args(extra)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("verifyd starts");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // The port is bound before the database is opened, so an accepted connection does not mean
    // the server is ready; its log line does, and the first key is printed before it.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if std::fs::read_to_string(&stderr).is_ok_and(|log| log.contains("verifyd is listening")) {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "verifyd exited with {status}: {}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "verifyd did not start listening within 20 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The key line is in the pipe already; this only waits for the reading thread.
    let first_key = rx
        .recv_timeout(Duration::from_millis(500))
        .ok()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(&line).expect("the key line is JSON");
            (
                v["api_key"].as_str().unwrap().to_owned(),
                v["api_secret"].as_str().unwrap().to_owned(),
            )
        });
    Server {
        child: Some(child),
        port,
        stderr,
        first_key,
    }
}

impl Server {
    pub fn base(&self, scheme: &str) -> String {
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The server's process id (while it runs).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Waits (at most `limit`) for the process to end by itself; its exit status, or `None`
    /// (then it is killed).
    pub fn wait(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        let child = self.child.as_mut().expect("running");
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                self.kill9();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// `npm ci` in `dir` from its committed lock file, unless that exact lock file was installed
/// there already (at most 10 minutes).
pub fn npm_ci(dir: &Path) {
    let lock = std::fs::read_to_string(dir.join("package-lock.json")).unwrap();
    let stamp = dir.join("node_modules/.verifyd-installed-lock");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(lock.as_str()) {
        return;
    }
    let (ok, out) = run_bounded(
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(dir),
        Duration::from_secs(600),
    );
    assert!(ok, "npm ci failed in {}:\n{out}", dir.display());
    std::fs::write(&stamp, lock).unwrap();
}

/// Runs a command to completion with a deadline; returns (success, stdout+stderr).
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> (bool, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || std::io::read_to_string(out).unwrap_or_default());
    let err_t = std::thread::spawn(move || std::io::read_to_string(err).unwrap_or_default());
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
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = format!("{}{}", out_t.join().unwrap(), err_t.join().unwrap());
    match status {
        Some(s) => (s.success(), text),
        None => (false, format!("{text}\n(killed after {limit:?})")),
    }
}

/// The code in an inbox message: the digits of an SMS, or the spelled-out digits of a call script.
/// The longest run of 4+ digits, so a PSD2 amount (`48.00`) is never taken for it.
/// The inbox messages to `to` (newest first) once `done` says they are all there, waiting at
/// most 10 s; what is there then, if never.
#[allow(dead_code)]
pub async fn inbox_until(
    http: &reqwest::Client,
    base: &str,
    to: &str,
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let inbox: Vec<serde_json::Value> = http
            .get(format!("{base}/inbox/messages?to={to}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if done(&inbox) || tokio::time::Instant::now() > deadline {
            return inbox;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn pin_in(text: &str) -> String {
    let compact = text.replace(", ", "");
    compact
        .split(|c: char| !c.is_ascii_digit())
        .filter(|run| run.len() >= 4)
        .max_by_key(|run| run.len())
        .unwrap_or_else(|| panic!("no code in {text:?}"))
        .to_owned()
}

/// The PostgreSQL server the tests may use: `VERIFYD_TEST_POSTGRES_URL`, e.g.
/// `postgres://postgres@127.0.0.1:5432/postgres`. Without it the PostgreSQL tests skip.
pub fn postgres_url() -> Option<String> {
    std::env::var("VERIFYD_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
}

/// A schema of its own in the test database for one test, dropped (with everything in it) when
/// this is dropped. `url` points a connection at it through `search_path`.
pub struct PgSchema {
    pub url: String,
    base: String,
    name: String,
}

/// Runs a few statements on a short-lived connection, on a thread of its own so that it works from
/// synchronous tests and from inside a test's runtime alike.
fn pg_run(url: &str, sql: String) {
    let url = url.to_owned();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|e| panic!("cannot connect to VERIFYD_TEST_POSTGRES_URL: {e}"));
            let driver = tokio::spawn(connection);
            client.batch_execute(&sql).await.unwrap();
            drop(client);
            let _ = driver.await;
        });
    })
    .join()
    .unwrap();
}

impl PgSchema {
    pub fn create() -> Option<Self> {
        let base = postgres_url()?;
        let mut bytes = [0u8; 6];
        getrandom::fill(&mut bytes).unwrap();
        let name = format!("verifyd_t_{}", hex::encode(bytes));
        pg_run(&base, format!("create schema {name}"));
        let sep = if base.contains('?') { '&' } else { '?' };
        // application_name lets the drop find this schema's connections.
        let url = format!("{base}{sep}options=-csearch_path%3D{name}&application_name={name}");
        Some(Self { url, base, name })
    }

    /// Runs SQL inside this schema.
    pub fn execute(&self, sql: &str) {
        pg_run(&self.url, sql.to_owned());
    }
}

impl Drop for PgSchema {
    /// Ends the connections a test left open (a server it killed, a pool not yet closed) so that
    /// the drop cannot wait on their locks.
    fn drop(&mut self) {
        let name = &self.name;
        pg_run(
            &self.base,
            format!(
                "select pg_terminate_backend(pid) from pg_stat_activity \
                 where application_name = '{name}' and pid <> pg_backend_pid(); \
                 drop schema if exists {name} cascade"
            ),
        );
    }
}
