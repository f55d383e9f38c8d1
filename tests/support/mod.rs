//! Runs the real `verifyd` binary for tests that need a whole process: SDKs, restarts, the CLI.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_verifyd");

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
    let stderr = dir.join(format!("server-{port}-{}.log", std::process::id()));
    let mut child = Command::new(BIN)
        .arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--database")
        .arg(format!("sqlite://{}", db.display()))
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
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
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
        std::thread::sleep(Duration::from_millis(50));
    }
    // A new database prints its first key on stdout before listening.
    let first_key = rx
        .recv_timeout(Duration::from_millis(300))
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

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
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
pub fn pin_in(text: &str) -> String {
    let compact = text.replace(", ", "");
    compact
        .split(|c: char| !c.is_ascii_digit())
        .filter(|run| run.len() >= 4)
        .max_by_key(|run| run.len())
        .unwrap_or_else(|| panic!("no code in {text:?}"))
        .to_owned()
}
