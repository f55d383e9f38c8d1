//! Operations' endpoints: `GET /healthz` for load balancers (200 when this node can reach its
//! database, 503 otherwise), `GET /readyz` (the database and every channel: an SMPP channel
//! while it is bound), and `GET /metrics` for Prometheus.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::AppState;
use crate::metrics;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(health))
        .route("/readyz", get(ready))
        .route("/metrics", get(scrape))
}

async fn health(State(app): State<AppState>) -> Response {
    match app.service.database_reachable().await {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => {
            tracing::error!(error = %e, "health check: the database is not reachable");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable\n").into_response()
        }
    }
}

/// One line per dependency, `name ok` or `name: why not`; 503 when one is not ready.
async fn ready(State(app): State<AppState>) -> Response {
    let mut all = true;
    let mut body = match app.service.database_reachable().await {
        Ok(()) => "database ok\n".to_owned(),
        Err(e) => {
            all = false;
            tracing::warn!(error = %e, "readiness: the database is not reachable");
            "database: unreachable\n".to_owned()
        }
    };
    let router = app.delivery.current();
    for (name, readiness) in router.readiness() {
        match readiness {
            Ok(()) => body.push_str(&format!("channel {name} ok\n")),
            Err(why) => {
                all = false;
                body.push_str(&format!("channel {name}: {why}\n"));
            }
        }
    }
    let status = if all {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body).into_response()
}

async fn scrape() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics::handle().render(),
    )
        .into_response()
}

/// Counts and times every request that matched a route, labelled with the route's pattern (not
/// the path, which carries ids and tokens).
pub async fn track(request: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let endpoint = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let method = method_label(request.method());
    let response = next.run(request).await;
    let surface = metrics::surface(&endpoint);
    ::metrics::counter!(metrics::HTTP_REQUESTS,
        "surface" => surface,
        "endpoint" => endpoint.clone(),
        "method" => method,
        "status" => response.status().as_str().to_owned())
    .increment(1);
    ::metrics::histogram!(metrics::HTTP_SECONDS, "surface" => surface, "endpoint" => endpoint)
        .record(started.elapsed().as_secs_f64());
    response
}

/// A method as a label: any name is a valid HTTP method, so those outside the standard ones
/// are one series, not one each.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}
