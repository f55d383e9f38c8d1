//! Every request gets an id for its log lines: the caller's `X-Request-Id` when it is a short
//! token, otherwise one of ours. The request runs inside a span that carries the id, the answer
//! carries it back, and an answer with a server error is logged once, here.
//!
//! One layer does what tower-http's trace and request-id layers and a filter in front of them
//! did; those four boxed or cloned the inner service for every request. They added 1.27 µs to a
//! request, this layer 0.36 µs (`cargo bench --bench request_layer`, docs/benchmarks.md).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;
use tower::{Layer, Service};
use tracing::instrument::{Instrument, Instrumented};

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

#[derive(Clone, Copy, Debug, Default)]
pub struct RequestIdLayer;

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestIdService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestIdService { inner }
    }
}

#[derive(Clone, Debug)]
pub struct RequestIdService<S> {
    inner: S,
}

impl<S> Service<Request> for RequestIdService<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = RequestIdFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let id = match req.headers().get(&REQUEST_ID_HEADER) {
            Some(given) if acceptable_request_id(given) => given.clone(),
            _ => {
                let ours = HeaderValue::from_str(&hex::encode(log_request_id().to_be_bytes()))
                    .expect("hex is a valid header value");
                // Handlers that report the id (network unblock) read it from the request.
                req.headers_mut().insert(REQUEST_ID_HEADER, ours.clone());
                ours
            }
        };
        // The path only: the query string carries credentials and numbers.
        let span = tracing::info_span!(
            "http",
            method = %req.method(),
            path = %loggable_path(req.uri().path()),
            request_id = %id.to_str().unwrap_or(""),
        );
        RequestIdFuture {
            inner: self.inner.call(req).instrument(span),
            id: Some(id),
            started: Instant::now(),
        }
    }
}

pin_project_lite::pin_project! {
    pub struct RequestIdFuture<F> {
        #[pin]
        inner: Instrumented<F>,
        id: Option<HeaderValue>,
        started: Instant,
    }
}

impl<F> Future for RequestIdFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let mut res = match ready!(this.inner.as_mut().poll(cx)) {
            Ok(res) => res,
            Err(never) => match never {},
        };
        let id = this.id.take().expect("polled after completion");
        if res.status().is_server_error() {
            let _in_request = this.inner.span().enter();
            // The id again on the line itself: below info level the span is off, and an error
            // line without its request id cannot be matched to anything.
            tracing::error!(
                request_id = %id.to_str().unwrap_or(""),
                status = res.status().as_u16(),
                latency_ms = this.started.elapsed().as_millis() as u64,
                "response failed"
            );
        }
        res.headers_mut().insert(REQUEST_ID_HEADER, id);
        Poll::Ready(Ok(res))
    }
}

/// The path as logs show it: a receipt URL's last segment is the token that lets a gateway in,
/// and is left out.
fn loggable_path(path: &str) -> std::borrow::Cow<'_, str> {
    use crate::delivery::router::RECEIPTS_PATH;
    let receipt = path
        .strip_prefix(RECEIPTS_PATH)
        .and_then(|rest| rest.strip_prefix('/'))
        .and_then(|rest| rest.split_once('/'));
    match receipt {
        Some((channel, _token)) => format!("{RECEIPTS_PATH}/{channel}/…").into(),
        None => path.into(),
    }
}

/// A caller's `X-Request-Id` is kept only if it is a short token: it goes into every log line of
/// the request, where a caller must not be able to write arbitrary text.
fn acceptable_request_id(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    (1..=64).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A distinct id for every request this process serves, for matching log lines. It guards
/// nothing, so it needs no system call: a counter from a random start, scrambled by a bijection
/// so that ids do not read as a sequence.
fn log_request_id() -> u64 {
    static NEXT: std::sync::OnceLock<std::sync::atomic::AtomicU64> = std::sync::OnceLock::new();
    let next = NEXT.get_or_init(|| {
        let mut seed = [0u8; 8];
        crate::crypto::os_random(&mut seed);
        std::sync::atomic::AtomicU64::new(u64::from_le_bytes(seed))
    });
    let mut x = next
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^= x >> 29;
    x.wrapping_mul(0xbf58_476d_1ce4_e5b9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receipt_urls_token_stays_out_of_the_logs() {
        assert_eq!(
            loggable_path("/receipts/twilio/0123abcd"),
            "/receipts/twilio/…"
        );
        assert_eq!(loggable_path("/verify/json"), "/verify/json");
        assert_eq!(loggable_path("/receipts/twilio"), "/receipts/twilio");
    }

    use axum::http::StatusCode;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    /// A router that answers with the request id its handler saw, and fails on `/fail`.
    fn app() -> Router {
        let seen = |req: Request| async move {
            req.headers()
                .get(&REQUEST_ID_HEADER)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default()
        };
        Router::new()
            .route("/seen", get(seen))
            .route(
                "/fail",
                get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "failed") }),
            )
            .layer(RequestIdLayer)
    }

    async fn call(path: &str, given: Option<&str>) -> (StatusCode, Option<String>, String) {
        let mut req = Request::builder().uri(path);
        if let Some(given) = given {
            req = req.header("x-request-id", given);
        }
        let res = app()
            .oneshot(req.body(axum::body::Body::empty()).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let id = res
            .headers()
            .get("x-request-id")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = axum::body::to_bytes(res.into_body(), 1024).await.unwrap();
        (status, id, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn a_request_without_an_id_gets_one_that_the_handler_and_the_caller_both_see() {
        let (_, answered, seen) = call("/seen", None).await;
        let answered = answered.expect("the answer carries an id");
        assert_eq!(answered.len(), 16);
        assert!(answered.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(seen, answered);
    }

    #[tokio::test]
    async fn a_short_token_from_the_caller_is_kept() {
        let (_, answered, seen) = call("/seen", Some("trace-42.a_b")).await;
        assert_eq!(answered.as_deref(), Some("trace-42.a_b"));
        assert_eq!(seen, "trace-42.a_b");
    }

    #[tokio::test]
    async fn an_id_that_could_write_into_the_logs_is_replaced() {
        for given in ["two words", "quote\"d", &"x".repeat(65)] {
            let (_, answered, seen) = call("/seen", Some(given)).await;
            let answered = answered.unwrap();
            assert_ne!(answered, given);
            assert_eq!(answered.len(), 16);
            assert_eq!(seen, answered);
        }
    }

    /// Log output of the current thread, as text.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    // The only test that calls `/fail`: tracing caches per call site whether anyone listens, and
    // a test on another thread without this subscriber could otherwise race that cache.
    #[tokio::test]
    async fn a_server_error_keeps_its_status_and_is_logged_once_with_the_request_id() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .finish();
        // Below info, as the benchmarks run: the request's span is off, the error line is not.
        let _default = tracing::subscriber::set_default(subscriber);
        call("/seen", Some("fine-1")).await;
        let (status, answered, body) = call("/fail", Some("broken-1")).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(answered.as_deref(), Some("broken-1"));
        assert_eq!(body, "failed");
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        assert!(lines[0].contains("ERROR"), "{text}");
        assert!(lines[0].contains("request_id=broken-1"), "{text}");
        assert!(lines[0].contains("status=500"), "{text}");
    }

    #[test]
    fn log_request_ids_do_not_repeat_and_do_not_count_up() {
        let ids: Vec<u64> = (0..100_000).map(|_| log_request_id()).collect();
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
        let rising = ids.windows(2).filter(|w| w[1] > w[0]).count();
        assert!(rising < 60_000, "{rising} of 100,000 ids rose");
    }
}
