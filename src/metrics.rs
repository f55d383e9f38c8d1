//! Prometheus metrics, served at `/metrics` (docs/operations.md lists every series). Values are
//! recorded through the `metrics` facade where things happen; this module names the series
//! once, so that a name is never spelled twice.
//!
//! The recorder is the process's: every server a process runs (tests run several) adds to the
//! same series.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const HTTP_REQUESTS: &str = "verifyd_http_requests_total";
pub const HTTP_SECONDS: &str = "verifyd_http_request_duration_seconds";
pub const VERIFICATIONS: &str = "verifyd_verifications_total";
pub const CHECKS: &str = "verifyd_checks_total";
pub const SENDS: &str = "verifyd_sends_total";
pub const SEND_SECONDS: &str = "verifyd_send_duration_seconds";
pub const RECEIPTS: &str = "verifyd_receipts_total";
pub const RECEIPT_SECONDS: &str = "verifyd_receipt_latency_seconds";
pub const SCHEDULER_LAG: &str = "verifyd_scheduler_lag_seconds";
pub const DISPATCH_QUEUE: &str = "verifyd_dispatch_queue_depth";
pub const STORE_SECONDS: &str = "verifyd_store_operation_duration_seconds";

/// Bucket bounds of every `_seconds` histogram: from a fast store write to a slow gateway.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Bucket bounds of the receipts' latency: a network reports a message at the phone within
/// seconds, or minutes when the phone is off.
const RECEIPT_BUCKETS: &[f64] = &[
    1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// The process's recorder, installed on first use; what `/metrics` renders.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(RECEIPT_SECONDS.into()), RECEIPT_BUCKETS)
            .expect("the buckets are not empty")
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
            .expect("the buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder (a library's, in a test) keeps its place; `/metrics` then shows
        // nothing but is still served.
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
        }
        describe();
        let upkeep = handle.clone();
        // Histograms keep their samples until rendered; without a scrape they would grow.
        std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_secs(5));
                upkeep.run_upkeep();
            })
            .expect("a thread can be started");
        handle
    })
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by surface, endpoint (the route's pattern), method and status"
    );
    describe_histogram!(
        HTTP_SECONDS,
        Unit::Seconds,
        "time to answer an HTTP request, by surface and endpoint"
    );
    describe_counter!(
        VERIFICATIONS,
        "verification starts, by outcome (started, concurrent, refused)"
    );
    describe_counter!(
        CHECKS,
        "code checks, by outcome (verified, wrong, failed, no_code, not_active)"
    );
    describe_counter!(
        SENDS,
        "tries to send a message, by kind, channel, route, country and outcome (accepted, delivered, failed, rejected, throttled)"
    );
    describe_histogram!(
        SEND_SECONDS,
        Unit::Seconds,
        "time a channel took to accept or refuse a message, by kind and channel"
    );
    describe_counter!(RECEIPTS, "delivery receipts recorded, by channel and state");
    describe_histogram!(
        RECEIPT_SECONDS,
        Unit::Seconds,
        "time from a try's start to the receipt that settled it, by channel and state"
    );
    describe_gauge!(
        SCHEDULER_LAG,
        Unit::Seconds,
        "how long the earliest due step had been due when the scheduler last looked (0 when none)"
    );
    describe_gauge!(
        DISPATCH_QUEUE,
        "deliveries handed to the dispatcher and not yet taken up"
    );
    describe_histogram!(
        STORE_SECONDS,
        Unit::Seconds,
        "time of a store operation, by operation: create (a start), check, find (a search), \
         claim_due (the scheduler's claim of due steps), apply_receipt"
    );
}

/// Which surface a path belongs to, for the `surface` label.
pub fn surface(path: &str) -> &'static str {
    if path.starts_with("/v2/") {
        "v2"
    } else if path.starts_with("/verify") {
        "v1"
    } else if path.starts_with("/receipts") {
        "receipts"
    } else if path.starts_with("/inbox") {
        "inbox"
    } else if path.starts_with("/dashboard") {
        "dashboard"
    } else {
        "operations"
    }
}

/// Times one store operation into [`STORE_SECONDS`].
pub async fn timed_store<T>(operation: &'static str, f: impl std::future::Future<Output = T>) -> T {
    let started = std::time::Instant::now();
    let out = f.await;
    metrics::histogram!(STORE_SECONDS, "operation" => operation)
        .record(started.elapsed().as_secs_f64());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_fall_under_their_surface() {
        assert_eq!(surface("/verify/json"), "v1");
        assert_eq!(surface("/verify/check/{format}"), "v1");
        assert_eq!(surface("/v2/verify"), "v2");
        assert_eq!(surface("/receipts/{channel}/{token}"), "receipts");
        assert_eq!(surface("/inbox"), "inbox");
        assert_eq!(surface("/healthz"), "operations");
        assert_eq!(surface("/metrics"), "operations");
    }
}
