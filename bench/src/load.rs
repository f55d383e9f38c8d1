//! A small HTTP/1.1 load generator: keep-alive connections over loopback, closed loop (as fast as
//! answers come), fixed count, or fixed rate (latency measured from the planned send time, so a
//! slow server cannot hide its queueing).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::Request;
use hyper_util::rt::TokioIo;

/// What a correct answer contains.
#[derive(Clone, Copy)]
pub enum Expect {
    /// `"status":"0"`.
    Status0,
    /// A search result (`"request_id":"…"` with no `error_text`).
    Found,
}

impl Expect {
    fn ok(self, body: &[u8]) -> bool {
        let text = std::str::from_utf8(body).unwrap_or("");
        match self {
            Expect::Status0 => text.contains(r#""status":"0""#),
            Expect::Found => text.contains(r#""account_id""#) && !text.contains("error_text"),
        }
    }
}

type PathFn = Arc<dyn Fn(u64) -> String + Send + Sync>;

/// Where requests go and how they are authenticated.
#[derive(Clone)]
pub struct Target {
    /// Connection `k` goes to `addrs[k % addrs.len()]`: several nodes share the connections.
    addrs: Vec<SocketAddr>,
    method: hyper::Method,
    path: PathFn,
    authorization: Option<String>,
}

fn basic(auth: Option<(String, String)>) -> Option<String> {
    auth.map(|(k, s)| {
        let raw = format!("{k}:{s}");
        format!("Basic {}", base64_encode(raw.as_bytes()))
    })
}

fn base64_encode(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(T[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

impl Target {
    pub fn post(addr: SocketAddr, path: &str, auth: Option<(String, String)>) -> Self {
        let path = path.to_owned();
        Self {
            addrs: vec![addr],
            method: hyper::Method::POST,
            path: Arc::new(move |_| path.clone()),
            authorization: basic(auth),
        }
    }

    pub fn get(
        addr: SocketAddr,
        auth: Option<(String, String)>,
        path: impl Fn(u64) -> String + Send + Sync + 'static,
    ) -> Self {
        Self {
            addrs: vec![addr],
            method: hyper::Method::GET,
            path: Arc::new(path),
            authorization: basic(auth),
        }
    }

    /// The same requests, with the connections spread over `addrs` in turn.
    pub fn across(mut self, addrs: &[SocketAddr]) -> Self {
        assert!(!addrs.is_empty(), "a target needs an address");
        self.addrs = addrs.to_vec();
        self
    }

    async fn connect(&self, k: usize) -> anyhow::Result<SendRequest<Full<Bytes>>> {
        let stream = tokio::net::TcpStream::connect(self.addrs[k % self.addrs.len()]).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(sender)
    }

    fn request(&self, i: u64, body: Bytes) -> Request<Full<Bytes>> {
        let mut b = Request::builder()
            .method(self.method.clone())
            .uri((self.path)(i))
            .header("host", "127.0.0.1");
        if let Some(a) = &self.authorization {
            b = b.header("authorization", a);
        }
        if !body.is_empty() {
            b = b.header("content-type", "application/x-www-form-urlencoded");
        }
        b.body(Full::new(body)).unwrap()
    }
}

/// One scenario's results.
pub struct Report {
    pub requests: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub latency_us: Histogram<u64>,
}

impl Report {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    pub fn quantile_ms(&self, q: f64) -> f64 {
        self.latency_us.value_at_quantile(q) as f64 / 1000.0
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).unwrap()
}

/// Sends one request and reads the whole answer; returns the body when the answer is HTTP 200.
async fn send(
    sender: &mut SendRequest<Full<Bytes>>,
    req: Request<Full<Bytes>>,
) -> anyhow::Result<Bytes> {
    sender.ready().await?;
    let response = sender.send_request(req).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    if status != 200 {
        bail!("HTTP {status}");
    }
    Ok(body)
}

struct Shared {
    next: AtomicU64,
    errors: AtomicU64,
    latency: Mutex<Histogram<u64>>,
}

/// `connections` connections send requests back to back until `duration` has passed.
pub async fn closed_loop(
    target: &Target,
    connections: usize,
    duration: Duration,
    body: impl Fn(u64) -> Bytes + Send + Sync + Clone + 'static,
    expect: Expect,
) -> anyhow::Result<Report> {
    run(target, connections, body, expect, Plan::Until(duration)).await
}

/// Sends exactly `count` requests (numbered 0..count) over `connections` connections.
pub async fn fixed_count(
    target: &Target,
    connections: usize,
    count: u64,
    body: impl Fn(u64) -> Bytes + Send + Sync + Clone + 'static,
    expect: Expect,
) -> anyhow::Result<Report> {
    run(target, connections, body, expect, Plan::Count(count)).await
}

/// Sends `rate` requests per second for `duration`; each latency counts from when the request was
/// due, so queueing shows.
pub async fn fixed_rate(
    target: &Target,
    connections: usize,
    rate: u64,
    duration: Duration,
    body: impl Fn(u64) -> Bytes + Send + Sync + Clone + 'static,
) -> anyhow::Result<Report> {
    let count = rate * duration.as_secs();
    run(
        target,
        connections,
        body,
        Expect::Status0,
        Plan::Rate { rate, count },
    )
    .await
}

/// Sends requests 0..count (bodies from `body`) and hands every answer to `inspect`; the first
/// error it returns stops the run.
pub async fn fixed_count_inspect(
    target: &Target,
    connections: usize,
    count: u64,
    body: impl Fn(u64) -> Bytes + Send + Sync + Clone + 'static,
    inspect: impl Fn(&[u8]) -> anyhow::Result<()> + Send + Sync + Clone + 'static,
) -> anyhow::Result<()> {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for k in 0..connections {
        let target = target.clone();
        let next = next.clone();
        let body = body.clone();
        let inspect = inspect.clone();
        tasks.push(tokio::spawn(async move {
            let mut sender = target.connect(k).await?;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return anyhow::Ok(());
                }
                let answer = send(&mut sender, target.request(i, body(i))).await?;
                inspect(&answer)?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// Verifications started and not yet checked, oldest first.
pub type Started = Arc<Mutex<std::collections::VecDeque<String>>>;

/// Starts `count` verifications (numbered 0..count) for [`start_then_check`] to check later.
pub async fn start_some(
    start: &Target,
    connections: usize,
    count: u64,
    start_body: impl Fn(u64) -> Bytes + Send + Sync + Clone + 'static,
) -> anyhow::Result<Started> {
    let started: Started = Arc::default();
    let queue = started.clone();
    fixed_count_inspect(start, connections, count, start_body, move |answer| {
        queue.lock().unwrap().push_back(started_id(answer)?);
        Ok(())
    })
    .await?;
    Ok(started)
}

/// Starts and checks verifications as an application does: each connection starts one (request
/// `lag`, `lag + 1`, … with the body from `start_body`) and then checks the oldest in `started`
/// (with `check_body(request_id)`), back to back until `duration` has passed. With `lag`
/// verifications started first ([`start_some`]), each check is of the one started `lag` starts
/// earlier. Both kinds of request count in the report.
#[allow(clippy::too_many_arguments)] // the two targets and their two bodies read best side by side
pub async fn start_then_check(
    start: &Target,
    check: &Target,
    connections: usize,
    duration: Duration,
    started: Started,
    lag: u64,
    start_body: impl Fn(u64) -> Bytes + Send + Sync + Clone + 'static,
    check_body: impl Fn(&str) -> Bytes + Send + Sync + Clone + 'static,
) -> anyhow::Result<Report> {
    let next = Arc::new(AtomicU64::new(lag));
    let errors = Arc::new(AtomicU64::new(0));
    let latency = Arc::new(Mutex::new(histogram()));
    let mut senders = Vec::with_capacity(connections);
    for k in 0..connections {
        senders.push((start.connect(k).await?, check.connect(k).await?));
    }
    let began = Instant::now();
    let mut tasks = Vec::new();
    for (mut to_start, mut to_check) in senders {
        let (start, check) = (start.clone(), check.clone());
        let (started, next, errors, latency) = (
            started.clone(),
            next.clone(),
            errors.clone(),
            latency.clone(),
        );
        let (start_body, check_body) = (start_body.clone(), check_body.clone());
        tasks.push(tokio::spawn(async move {
            let mut local = histogram();
            while began.elapsed() < duration {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let sent = Instant::now();
                let answer = send(&mut to_start, start.request(i, start_body(i))).await?;
                local.saturating_record(sent.elapsed().as_micros().max(1) as u64);
                match started_id(&answer) {
                    Ok(id) => started.lock().unwrap().push_back(id),
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                let Some(id) = started.lock().unwrap().pop_front() else {
                    continue;
                };
                let sent = Instant::now();
                let answer = send(&mut to_check, check.request(i, check_body(&id))).await?;
                local.saturating_record(sent.elapsed().as_micros().max(1) as u64);
                if !Expect::Status0.ok(&answer) {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            latency.lock().unwrap().add(&local).unwrap();
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let elapsed = began.elapsed();
    let latency_us = latency.lock().unwrap().clone();
    Ok(Report {
        requests: latency_us.len(),
        errors: errors.load(Ordering::Relaxed),
        elapsed,
        latency_us,
    })
}

/// The request id of an answer with status 0.
fn started_id(answer: &[u8]) -> anyhow::Result<String> {
    let v: serde_json::Value = serde_json::from_slice(answer)?;
    if v["status"] != "0" {
        bail!("creating a verification failed: {v}");
    }
    Ok(v["request_id"]
        .as_str()
        .context("no request_id")?
        .to_owned())
}

/// Creates `count` verifications and returns their request ids.
pub async fn collect_ids(
    target: &Target,
    connections: usize,
    count: u64,
    body: impl Fn(u64) -> Bytes + Send + Sync + Clone + 'static,
) -> anyhow::Result<Vec<String>> {
    let ids = Arc::new(Mutex::new(Vec::with_capacity(count as usize)));
    let collected = ids.clone();
    fixed_count_inspect(target, connections, count, body, move |answer| {
        collected.lock().unwrap().push(started_id(answer)?);
        Ok(())
    })
    .await?;
    let ids = std::mem::take(&mut *ids.lock().unwrap());
    Ok(ids)
}

enum Plan {
    Until(Duration),
    Count(u64),
    Rate { rate: u64, count: u64 },
}

async fn run(
    target: &Target,
    connections: usize,
    body: impl Fn(u64) -> Bytes + Send + Sync + Clone + 'static,
    expect: Expect,
    plan: Plan,
) -> anyhow::Result<Report> {
    let shared = Arc::new(Shared {
        next: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        latency: Mutex::new(histogram()),
    });
    let plan = Arc::new(plan);
    // Every connection is open before the clock starts: at a fixed rate the first requests are
    // due at once, and counting the handshakes against them measured the load generator.
    let mut senders = Vec::with_capacity(connections);
    for k in 0..connections {
        senders.push(target.connect(k).await?);
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (k, mut sender) in senders.into_iter().enumerate() {
        let target = target.clone();
        let shared = shared.clone();
        let body = body.clone();
        let plan = plan.clone();
        tasks.push(tokio::spawn(async move {
            let mut local = histogram();
            loop {
                let i = shared.next.fetch_add(1, Ordering::Relaxed);
                let due = match *plan {
                    Plan::Until(d) => {
                        if start.elapsed() >= d {
                            break;
                        }
                        Instant::now()
                    }
                    Plan::Count(n) => {
                        if i >= n {
                            break;
                        }
                        Instant::now()
                    }
                    Plan::Rate { rate, count } => {
                        if i >= count {
                            break;
                        }
                        let due = start + Duration::from_nanos(i * 1_000_000_000 / rate);
                        tokio::time::sleep_until(due.into()).await;
                        due
                    }
                };
                let req = target.request(i, body(i));
                match send(&mut sender, req).await {
                    Ok(answer) if expect.ok(&answer) => {}
                    Ok(_) => {
                        shared.errors.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        shared.errors.fetch_add(1, Ordering::Relaxed);
                        sender = target.connect(k).await?;
                    }
                }
                let us = due.elapsed().as_micros() as u64;
                local.saturating_record(us.max(1));
            }
            shared.latency.lock().unwrap().add(&local).unwrap();
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let elapsed = start.elapsed();
    let latency_us = shared.latency.lock().unwrap().clone();
    Ok(Report {
        requests: latency_us.len(),
        errors: shared.errors.load(Ordering::Relaxed),
        elapsed,
        latency_us,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_base64_with_padding() {
        assert_eq!(base64_encode(b"key:secret"), "a2V5OnNlY3JldA==");
        assert_eq!(base64_encode(b"ab"), "YWI=");
        assert_eq!(base64_encode(b"abc"), "YWJj");
    }
}
