//! The HTTP server under the API: it accepts connections up to a cap, serves HTTP/1.1 and HTTP/2
//! (over TLS when configured) with hyper, and closes connections that send nothing, send their
//! headers or body too slowly, or sit idle between requests (`conn.rs`). axum's router answers
//! the requests.
//!
//! hyper's own header timeout is not used: it starts only once a connection has chosen HTTP/1
//! (a socket that never sends a byte is never timed out), and it runs from the end of one answer
//! to the headers of the next, so a keep-alive connection could not idle longer than a client
//! may take to send headers.

mod conn;
pub mod refusals;
mod tls;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

pub use self::conn::{BodyTimeout, ConnInfo};
use self::conn::{ConnService, Expiry, Watch, WatchedIo};
use self::refusals::{Reason, Refusals};
use crate::config::HttpLimits;

pub use self::tls::acceptor as tls_acceptor;

/// The share of the open-file limit that connections may take; the rest is kept for the
/// database's files and outgoing connections.
const CONNECTIONS_SHARE: (u64, u64) = (3, 4);
/// Larger caps are lowered to this (far beyond what one process serves).
const MAX_CAP: usize = 1 << 24;
/// At most one line per this much time about the cap or failing accepts.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The connection cap to use: `configured`, or three quarters of the process's open-file limit
/// (`ulimit -n`). A configured cap beyond that is lowered to it, with a warning: connections that
/// use every descriptor leave none for the database, and the server stops answering.
pub fn connection_cap(configured: Option<usize>) -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    let room = limit
        .map(|n| (n / CONNECTIONS_SHARE.1 * CONNECTIONS_SHARE.0) as usize)
        .unwrap_or(MAX_CAP)
        .clamp(1, MAX_CAP);
    match configured {
        None => room,
        Some(n) if n <= room => n,
        Some(n) => {
            tracing::warn!(
                max_connections = n,
                open_file_limit = limit,
                using = room,
                "max_connections is more than the open-file limit leaves for connections; \
                 raise the limit (ulimit -n, LimitNOFILE=) to allow more"
            );
            room
        }
    }
}

/// What the server serves and how.
pub struct Config {
    pub router: Router,
    pub limits: HttpLimits,
    /// From [`connection_cap`].
    pub max_connections: usize,
    pub tls: Option<TlsAcceptor>,
    pub refusals: Arc<Refusals>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    No,
    /// Stop accepting; close connections once their answers are out, or at the instant.
    Gracefully(Instant),
    Now,
}

/// A running server; dropping it stops it at once.
pub struct Server {
    stop: watch::Sender<Stop>,
    task: JoinHandle<()>,
    ended: bool,
}

struct Shared {
    router: Router,
    builder: auto::Builder<TokioExecutor>,
    tls: Option<TlsAcceptor>,
    limits: HttpLimits,
    refusals: Arc<Refusals>,
    /// Counts the times the cap was reached; idle connections close when it moves.
    pressure: watch::Sender<u64>,
}

/// Serves on `listener` (already bound) until told to stop.
pub fn spawn(listener: std::net::TcpListener, config: Config) -> io::Result<Server> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let shared = Arc::new(Shared {
        router: config.router,
        builder: auto::Builder::new(TokioExecutor::new()),
        tls: config.tls,
        limits: config.limits,
        refusals: config.refusals,
        pressure: watch::Sender::new(0),
    });
    let (stop, stopping) = watch::channel(Stop::No);
    let task = tokio::spawn(accept_loop(
        listener,
        shared,
        config.max_connections,
        stopping,
    ));
    Ok(Server {
        stop,
        task,
        ended: false,
    })
}

impl Server {
    /// Stops accepting; connections close once their answers are out, and at `grace` at the
    /// latest.
    pub fn graceful_shutdown(&self, grace: Duration) {
        self.stop
            .send_replace(Stop::Gracefully(Instant::now() + grace));
    }

    /// Stops accepting and closes every connection now.
    pub fn shutdown(&self) {
        self.stop.send_replace(Stop::Now);
    }

    /// Waits until the listener is closed and every connection has ended.
    pub async fn stopped(&mut self) {
        if !self.ended {
            let _ = (&mut self.task).await;
            self.ended = true;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.send_replace(Stop::Now);
        self.task.abort();
    }
}

/// Resolves when a stop is asked for (or the server is dropped), with what was asked.
async fn stop_asked(stopping: &mut watch::Receiver<Stop>) -> Stop {
    loop {
        let now = *stopping.borrow_and_update();
        if now != Stop::No {
            return now;
        }
        if stopping.changed().await.is_err() {
            return Stop::Now;
        }
    }
}

/// A warning that repeats at most once per [`WARN_EVERY`], saying how often it was held back.
#[derive(Default)]
struct Throttled {
    last: Option<Instant>,
    held_back: u64,
}

impl Throttled {
    /// `Some(times held back since the last line)` when a line is due.
    fn due(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.last.is_some_and(|at| now - at < WARN_EVERY) {
            self.held_back += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held_back))
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    max_connections: usize,
    mut stopping: watch::Receiver<Stop>,
) {
    let slots = Arc::new(Semaphore::new(max_connections));
    let mut cap_warning = Throttled::default();
    let mut accept_warning = Throttled::default();
    loop {
        // A slot first: at the cap, new connections wait in the kernel's listen backlog, where
        // they hold no descriptor of ours, and idle keep-alive connections make room for them.
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                shared.pressure.send_modify(|times| *times += 1);
                if let Some(held_back) = cap_warning.due() {
                    tracing::warn!(
                        max_connections,
                        times_since_last_line = held_back,
                        "connection limit reached: new connections wait until one closes"
                    );
                }
                tokio::select! {
                    slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
                    _ = stop_asked(&mut stopping) => break,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) if out_of_resources(&e) => {
                    // Another part of the process used the descriptors (or memory) up; accepting
                    // again at once would spin.
                    if let Some(held_back) = accept_warning.due() {
                        tracing::warn!(error = %e, times_since_last_line = held_back, "cannot accept a connection");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(50)) => continue,
                        _ = stop_asked(&mut stopping) => break,
                    }
                }
                // The client gave up before it was accepted.
                Err(_) => continue,
            },
            _ = stop_asked(&mut stopping) => break,
        };
        let local = match stream.local_addr() {
            Ok(local) => local,
            Err(_) => continue,
        };
        tokio::spawn(serve(
            stream,
            ConnInfo { peer, local },
            slot,
            shared.clone(),
            stopping.clone(),
        ));
    }
    drop(listener);
    // Every connection holds a slot until it ends.
    let _ = slots.acquire_many(max_connections as u32).await;
}

/// How long an idle connection that was asked to close may take to say goodbye (an HTTP/2
/// GOAWAY) before it is dropped.
const GOODBYE: Duration = Duration::from_secs(1);

/// Accept errors that come from this process or machine running short, not from the client.
fn out_of_resources(e: &io::Error) -> bool {
    use rustix::io::Errno;
    let code = e.raw_os_error().map(Errno::from_raw_os_error);
    matches!(
        code,
        Some(Errno::MFILE | Errno::NFILE | Errno::NOBUFS | Errno::NOMEM)
    )
}

async fn serve(
    stream: TcpStream,
    info: ConnInfo,
    _slot: OwnedSemaphorePermit,
    shared: Arc<Shared>,
    mut stopping: watch::Receiver<Stop>,
) {
    let limits = &shared.limits;
    let watch = Watch::new(limits.header_timeout, limits.idle_timeout);
    let io = WatchedIo::new(stream, watch.clone());
    let service = ConnService {
        router: shared.router.clone(),
        watch: watch.clone(),
        info,
        body_timeout: limits.body_timeout,
    };
    let mut conn = Conn {
        builder: &shared.builder,
        watch: &watch,
        pressure: shared.pressure.subscribe(),
        stopping: &mut stopping,
    };
    let result = match &shared.tls {
        None => conn.drive(TokioIo::new(io), service).await,
        Some(tls) => {
            let handshake = tokio::select! {
                done = tls.accept(io) => Some(done),
                _ = watch.expiry() => None,
                _ = stop_asked(conn.stopping) => None,
            };
            match handshake {
                Some(Ok(io)) => conn.drive(TokioIo::new(io), service).await,
                Some(Err(e)) => Err(e.into()),
                None => Ok(()),
            }
        }
    };
    match watch.expired() {
        Some(Expiry::Headers) => {
            if shared
                .refusals
                .count(Some(info.peer.ip()), Reason::HeaderTimeout)
            {
                tracing::info!(
                    client = %info.peer.ip(),
                    timeout_s = limits.header_timeout.as_secs_f64(),
                    "connection closed: no complete request headers within the header timeout"
                );
            }
        }
        Some(Expiry::Idle) => tracing::debug!(client = %info.peer.ip(), "idle connection closed"),
        None => {
            if let Err(e) = result {
                tracing::debug!(client = %info.peer.ip(), error = %e, "connection ended with an error");
            }
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What one connection's task watches besides the connection itself.
struct Conn<'a> {
    builder: &'a auto::Builder<TokioExecutor>,
    watch: &'a Watch,
    /// Moves when the cap is reached: an idle connection then makes room.
    pressure: watch::Receiver<u64>,
    stopping: &'a mut watch::Receiver<Stop>,
}

impl Conn<'_> {
    /// Serves the connection until it ends, its deadline passes, the cap needs its slot while it
    /// is idle, or a stop says so.
    async fn drive<I>(&mut self, io: I, service: ConnService) -> Result<(), BoxError>
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let conn = self.builder.serve_connection(io, service);
        tokio::pin!(conn);
        let expiry = self.watch.expiry();
        tokio::pin!(expiry);
        let goodbye_by = loop {
            tokio::select! {
                done = conn.as_mut() => return done,
                why = expiry.as_mut() => match why {
                    // Mid-request: nothing to finish, and a slow client would take its time.
                    Expiry::Headers => return Ok(()),
                    Expiry::Idle => break Instant::now() + GOODBYE,
                },
                Ok(()) = self.pressure.changed() => {
                    if self.watch.idle() {
                        tracing::debug!("idle connection closed to make room under the cap");
                        break Instant::now() + GOODBYE;
                    }
                }
                stop = stop_asked(self.stopping) => match stop {
                    Stop::Gracefully(deadline) => break deadline,
                    Stop::No | Stop::Now => return Ok(()),
                },
            }
        };
        conn.as_mut().graceful_shutdown();
        tokio::select! {
            done = conn.as_mut() => done,
            _ = tokio::time::sleep_until(goodbye_by) => Ok(()),
            _ = stop_now_asked(self.stopping) => Ok(()),
        }
    }
}

/// Resolves when an immediate stop is asked for (or the server is dropped).
async fn stop_now_asked(stopping: &mut watch::Receiver<Stop>) {
    while *stopping.borrow_and_update() != Stop::Now {
        if stopping.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cap_leaves_a_quarter_of_the_open_file_limit() {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
        let cap = connection_cap(None);
        let expected = limit.map_or(MAX_CAP, |n| (n / 4 * 3) as usize);
        assert_eq!(cap, expected.clamp(1, MAX_CAP));
        assert_eq!(connection_cap(Some(3)), 3);
        assert_eq!(
            connection_cap(Some(usize::MAX)),
            cap,
            "lowered to what fits"
        );
    }

    #[test]
    fn a_repeated_warning_is_written_once_per_period_with_the_count_held_back() {
        let mut w = Throttled::default();
        assert_eq!(w.due(), Some(0));
        assert_eq!(w.due(), None);
        assert_eq!(w.due(), None);
        w.last = Some(Instant::now() - WARN_EVERY);
        assert_eq!(w.due(), Some(2));
    }
}
