//! One connection's clock: when it must be closed, the requests in flight on it, and the deadline
//! of each request's body.
//!
//! A connection is *free* while no request of it is being answered. A free connection has one
//! deadline: the header timeout from its opening until its first request's headers are in; the
//! header timeout from the first byte of a later request; otherwise the idle timeout from the end
//! of its last answer. The connection's task waits for that deadline beside the connection
//! ([`Watch::expiry`]) and closes it then, whatever the socket is doing: hyper reads a free
//! socket only when it has something to read, so a check inside reads would never run for a
//! client that sends nothing. A request's body must be in by the body timeout from its headers.
//!
//! Requests and reads only note what happened; nothing wakes the waiting task. It looks again at
//! the deadline it computed, and at least once per header timeout, which is soon enough to catch
//! any deadline on time: waking it at the end of every answer cost an extra poll of the
//! connection per request (2 µs of server CPU on a search, `verifyd-bench run`).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::Request;
use axum::response::Response;
use axum::Router;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};
use tower::Service;

/// The two ends of a request's connection, in its extensions for the handlers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub local: SocketAddr,
}

/// Why a free connection was closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// A request's headers (or a new connection's first request) did not arrive in time.
    Headers,
    /// Nothing was asked for the idle timeout after the last answer.
    Idle,
}

/// What a connection is doing, shared by its socket, its requests and its task.
pub struct Watch {
    opened: Instant,
    header_timeout: Duration,
    idle_timeout: Duration,
    phase: Mutex<Phase>,
}

struct Phase {
    in_flight: usize,
    served: u64,
    /// When the connection last became free.
    free_since: Instant,
    /// The first byte read while free, after the first request.
    first_byte: Option<Instant>,
    /// HTTP/2 reads frames (pings, window updates) that start no request, so only the idle
    /// timeout applies once its first request is in.
    http2: bool,
    expired: Option<Expiry>,
}

impl Watch {
    pub fn new(header_timeout: Duration, idle_timeout: Duration) -> Arc<Self> {
        let now = Instant::now();
        Arc::new(Self {
            opened: now,
            header_timeout,
            idle_timeout,
            phase: Mutex::new(Phase {
                in_flight: 0,
                served: 0,
                free_since: now,
                first_byte: None,
                http2: false,
                expired: None,
            }),
        })
    }

    fn phase(&self) -> MutexGuard<'_, Phase> {
        // Nothing panics while holding it; a poisoned lock still holds consistent counts.
        self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// When the connection must be closed, and why; none while a request is being answered.
    pub fn deadline(&self) -> Option<(Instant, Expiry)> {
        let p = self.phase();
        if p.in_flight > 0 {
            return None;
        }
        if p.served == 0 {
            return Some((self.opened + self.header_timeout, Expiry::Headers));
        }
        match p.first_byte {
            Some(at) if !p.http2 => Some((at + self.header_timeout, Expiry::Headers)),
            _ => Some((p.free_since + self.idle_timeout, Expiry::Idle)),
        }
    }

    fn bytes_read(&self) {
        let mut p = self.phase();
        if p.in_flight == 0 && p.served > 0 && p.first_byte.is_none() {
            p.first_byte = Some(Instant::now());
        }
    }

    /// Whether the connection waits between requests with nothing of the next one read.
    pub fn idle(&self) -> bool {
        let p = self.phase();
        p.in_flight == 0 && p.served > 0 && p.first_byte.is_none()
    }

    /// Resolves once the connection is free and past its deadline, with the reason.
    ///
    /// Deadlines only move later except one: the first byte of a later request sets one at most
    /// a header timeout away. Looking at least once per header timeout therefore finds every
    /// deadline before it passes, and the timer is then set to it exactly.
    pub async fn expiry(&self) -> Expiry {
        let timer = tokio::time::sleep_until(self.opened + self.header_timeout);
        tokio::pin!(timer);
        loop {
            timer.as_mut().await;
            let now = Instant::now();
            let next_look = now + self.header_timeout;
            match self.deadline() {
                Some((at, why)) if now >= at => {
                    self.phase().expired = Some(why);
                    return why;
                }
                Some((at, _)) => timer.as_mut().reset(at.min(next_look)),
                None => timer.as_mut().reset(next_look),
            }
        }
    }

    /// Why the connection was closed by its deadline, if it was.
    pub fn expired(&self) -> Option<Expiry> {
        self.phase().expired
    }

    /// Marks a request whose headers are in; the connection is busy until the guard is dropped.
    fn request_started(self: &Arc<Self>, version: axum::http::Version) -> InFlight {
        let mut p = self.phase();
        p.in_flight += 1;
        p.served += 1;
        p.first_byte = None;
        p.http2 |= version == axum::http::Version::HTTP_2;
        InFlight(self.clone())
    }
}

/// A request being answered; dropped when its answer is ready (or the request is abandoned).
pub struct InFlight(Arc<Watch>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut p = self.0.phase();
        p.in_flight -= 1;
        if p.in_flight == 0 {
            p.free_since = Instant::now();
            p.first_byte = None;
        }
    }
}

pin_project_lite::pin_project! {
    /// A socket that tells its watch when bytes arrive.
    pub struct WatchedIo<T> {
        #[pin]
        inner: T,
        watch: Arc<Watch>,
    }
}

impl<T> WatchedIo<T> {
    pub fn new(inner: T, watch: Arc<Watch>) -> Self {
        Self { inner, watch }
    }
}

impl<T: AsyncRead> AsyncRead for WatchedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let read = this.inner.poll_read(cx, buf);
        if buf.filled().len() > before {
            this.watch.bytes_read();
        }
        read
    }
}

impl<T: AsyncWrite> AsyncWrite for WatchedIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

/// The error a request body gives once its deadline has passed; `api/v1/params.rs` answers it
/// with 408.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within the body timeout")]
pub struct BodyTimeout;

pin_project_lite::pin_project! {
    /// A request body that fails once its deadline has passed. The timer is made only if the
    /// body is not all there when first read, which for the API's small bodies is rare.
    pub struct DeadlineBody {
        #[pin]
        inner: Incoming,
        deadline: Instant,
        timer: Option<Pin<Box<Sleep>>>,
    }
}

impl Body for DeadlineBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => {
                let deadline = *this.deadline;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout)))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The router as hyper calls it for one connection: each request carries the connection's
/// addresses and a body deadline, and keeps the connection busy until it is answered.
#[derive(Clone)]
pub struct ConnService {
    pub router: Router,
    pub watch: Arc<Watch>,
    pub info: ConnInfo,
    pub body_timeout: Duration,
}

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response;
    type Error = Infallible;
    type Future = Answering<axum::routing::future::RouteFuture<Infallible>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let in_flight = self.watch.request_started(req.version());
        let (mut parts, body) = req.into_parts();
        parts.extensions.insert(self.info);
        let body = DeadlineBody {
            inner: body,
            deadline: Instant::now() + self.body_timeout,
            timer: None,
        };
        Answering {
            inner: self.router.clone().call(Request::from_parts(parts, body)),
            _in_flight: in_flight,
        }
    }
}

pin_project_lite::pin_project! {
    /// A request's answer being made; the connection is busy until it is ready.
    pub struct Answering<F> {
        #[pin]
        inner: F,
        _in_flight: InFlight,
    }
}

impl<F: Future> Future for Answering<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.project().inner.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: Duration = Duration::from_secs(10);
    const IDLE: Duration = Duration::from_secs(60);

    #[tokio::test(start_paused = true)]
    async fn a_new_connection_has_the_header_timeout_to_send_its_first_request() {
        let watch = Watch::new(HEADER, IDLE);
        let (at, why) = watch.deadline().unwrap();
        assert_eq!((at - watch.opened, why), (HEADER, Expiry::Headers));
        // Bytes of the first request do not extend it.
        tokio::time::advance(Duration::from_secs(3)).await;
        watch.bytes_read();
        assert_eq!(watch.deadline().unwrap().0 - watch.opened, HEADER);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_answering_a_request_has_no_deadline_and_is_idle_after() {
        let watch = Watch::new(HEADER, IDLE);
        let busy = watch.request_started(axum::http::Version::HTTP_11);
        assert_eq!(watch.deadline(), None);
        tokio::time::advance(Duration::from_secs(100)).await;
        assert_eq!(watch.deadline(), None, "however long the answer takes");
        drop(busy);
        let (at, why) = watch.deadline().unwrap();
        assert_eq!((at - Instant::now(), why), (IDLE, Expiry::Idle));
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_byte_of_a_later_request_starts_its_header_timeout() {
        let watch = Watch::new(HEADER, IDLE);
        drop(watch.request_started(axum::http::Version::HTTP_11));
        tokio::time::advance(Duration::from_secs(30)).await;
        watch.bytes_read();
        let byte_at = Instant::now();
        tokio::time::advance(Duration::from_secs(4)).await;
        watch.bytes_read();
        let (at, why) = watch.deadline().unwrap();
        assert_eq!((at - byte_at, why), (HEADER, Expiry::Headers));
    }

    #[tokio::test(start_paused = true)]
    async fn an_http2_connection_is_bounded_by_the_idle_timeout_between_requests() {
        let watch = Watch::new(HEADER, IDLE);
        drop(watch.request_started(axum::http::Version::HTTP_2));
        let free_at = Instant::now();
        tokio::time::advance(Duration::from_secs(1)).await;
        watch.bytes_read();
        let (at, why) = watch.deadline().unwrap();
        assert_eq!((at - free_at, why), (IDLE, Expiry::Idle));
    }

    #[tokio::test(start_paused = true)]
    async fn expiry_comes_at_the_header_timeout_of_a_silent_connection() {
        let watch = Watch::new(HEADER, IDLE);
        let opened = Instant::now();
        assert_eq!(watch.expiry().await, Expiry::Headers);
        assert_eq!(Instant::now() - opened, HEADER);
        assert_eq!(watch.expired(), Some(Expiry::Headers));
    }

    #[tokio::test(start_paused = true)]
    async fn expiry_waits_for_an_answer_however_long_and_then_for_the_idle_timeout() {
        let watch = Watch::new(HEADER, IDLE);
        let busy = watch.request_started(axum::http::Version::HTTP_11);
        let waiting = tokio::spawn({
            let watch = watch.clone();
            async move { watch.expiry().await }
        });
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert!(!waiting.is_finished());
        let answered = Instant::now();
        drop(busy);
        assert_eq!(waiting.await.unwrap(), Expiry::Idle);
        assert_eq!(Instant::now() - answered, IDLE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_first_byte_while_idle_brings_the_expiry_forward() {
        let watch = Watch::new(HEADER, IDLE);
        drop(watch.request_started(axum::http::Version::HTTP_11));
        let waiting = tokio::spawn({
            let watch = watch.clone();
            async move { watch.expiry().await }
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        let byte_at = Instant::now();
        watch.bytes_read();
        assert_eq!(waiting.await.unwrap(), Expiry::Headers);
        assert_eq!(Instant::now() - byte_at, HEADER);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_free_only_once_all_its_requests_are_answered() {
        let watch = Watch::new(HEADER, IDLE);
        let a = watch.request_started(axum::http::Version::HTTP_2);
        let b = watch.request_started(axum::http::Version::HTTP_2);
        drop(a);
        assert_eq!(watch.deadline(), None);
        drop(b);
        assert!(watch.deadline().is_some());
    }
}
