//! What the request-id layer costs per request: a bare router, the same router behind verifyd's
//! `RequestIdLayer`, and behind the four tower-http and axum layers it replaced. In process, one
//! thread, no sockets, logging off as in the benchmarks: only the layers differ.
//!
//! `cargo bench --bench request_layer`

use std::time::Instant;

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::routing::get;
use axum::Router;
use tower::{Service, ServiceExt};
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;
use verifyd::api::request_id::RequestIdLayer;

const REQUESTS: u32 = 300_000;
const ROUNDS: usize = 5;

fn bare() -> Router {
    Router::new().route("/health", get(|| async { "ok" }))
}

#[derive(Clone, Default)]
struct Counter(u64);

impl MakeRequestId for Counter {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        self.0 += 1;
        HeaderValue::from_str(&format!("{:016x}", self.0))
            .ok()
            .map(RequestId::new)
    }
}

async fn pass(req: Request, next: axum::middleware::Next) -> axum::response::Response {
    next.run(req).await
}

/// The stack before `RequestIdLayer`: trace span, id propagated, id set, id filtered.
fn replaced() -> Router {
    let header = axum::http::HeaderName::from_static("x-request-id");
    bare()
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let id = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), request_id = %id)
        }))
        .layer(PropagateRequestIdLayer::new(header.clone()))
        .layer(SetRequestIdLayer::new(header, Counter::default()))
        .layer(axum::middleware::from_fn(pass))
}

async fn micros_per_request(app: Router) -> f64 {
    let mut svc = app.into_service::<axum::body::Body>();
    let began = Instant::now();
    for _ in 0..REQUESTS {
        let req = Request::builder()
            .uri("/health")
            .body(axum::body::Body::empty())
            .expect("a valid request");
        let res = svc.ready().await.expect("ready").call(req).await;
        assert!(res.expect("infallible").status().is_success());
    }
    began.elapsed().as_secs_f64() * 1e6 / f64::from(REQUESTS)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    // As in the benchmarks (RUST_LOG=warn): info spans are created but not recorded.
    let _logs = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .finish(),
    );
    let (mut b, mut ours, mut old) = (Vec::new(), Vec::new(), Vec::new());
    rt.block_on(async {
        for _ in 0..ROUNDS {
            b.push(micros_per_request(bare()).await);
            ours.push(micros_per_request(bare().layer(RequestIdLayer)).await);
            old.push(micros_per_request(replaced()).await);
        }
    });
    let (b, ours, old) = (median(b), median(ours), median(old));
    println!("µs per request, median of {ROUNDS} rounds of {REQUESTS}:");
    println!("  bare router                       {b:.2}");
    println!(
        "  RequestIdLayer                    {ours:.2}  (+{:.2})",
        ours - b
    );
    println!(
        "  trace + request-id layers + filter {old:.2}  (+{:.2})",
        old - b
    );
}
