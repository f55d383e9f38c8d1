//! Logs go to stderr (command output owns stdout). `RUST_LOG` filters them. With an OTLP
//! endpoint, the same spans (each request's, each delivery's, each callback's, with their
//! events) are also exported as OpenTelemetry traces over OTLP/HTTP.

use anyhow::bail;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing::Subscriber;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line per event for people to read (colours on a terminal).
    #[default]
    Text,
    /// One JSON object per event, with the request's span (its id) in `spans`.
    Json,
}

/// What must be flushed before the process ends: the trace exporter, when there is one.
pub struct Telemetry {
    traces: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Sends the spans still buffered (at most the exporter's timeout) and stops exporting.
    pub fn shutdown(self) {
        if let Some(provider) = self.traces {
            if let Err(e) = provider.shutdown() {
                eprintln!("warning: the last traces were not all exported: {e}");
            }
        }
    }
}

fn filter() -> EnvFilter {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // rusmpp logs every PDU it encodes or decodes at debug level (PINs, numbers, the bind's
    // password), rsipstack every SIP message at info: those never reach the log, whatever
    // RUST_LOG asks for.
    filter
        .add_directive("rusmpp=info".parse().expect("a valid directive"))
        .add_directive("rusmpp_core=info".parse().expect("a valid directive"))
        .add_directive("rusmppc=info".parse().expect("a valid directive"))
        // rsipstack logs every SIP message at info: numbers, SDP, digest answers.
        .add_directive("rsipstack=warn".parse().expect("a valid directive"))
        // tokio-postgres logs every statement with its parameters at debug: numbers, bodies,
        // inbox texts with their codes.
        .add_directive("tokio_postgres=info".parse().expect("a valid directive"))
        // The exporter's own debug lines describe every batch it sends.
        .add_directive("opentelemetry=warn".parse().expect("a valid directive"))
        .add_directive("opentelemetry_sdk=warn".parse().expect("a valid directive"))
        .add_directive(
            "opentelemetry_otlp=warn"
                .parse()
                .expect("a valid directive"),
        )
}

fn log_lines<S>(format: LogFormat) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    use std::io::IsTerminal;
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        LogFormat::Text => layer.with_ansi(std::io::stderr().is_terminal()).boxed(),
        LogFormat::Json => layer.json().with_current_span(false).boxed(),
    }
}

/// The collector's URL for traces: `endpoint` is its base (as `OTEL_EXPORTER_OTLP_ENDPOINT`
/// is), to which `/v1/traces` is added.
pub fn traces_url(endpoint: &str) -> anyhow::Result<String> {
    let endpoint = endpoint.trim();
    let Some(rest) = endpoint.strip_prefix("http://") else {
        bail!(
            "the OTLP endpoint {endpoint:?} must be an http:// URL (OTLP/HTTP without TLS, to a \
             collector on this machine or network), such as http://127.0.0.1:4318"
        );
    };
    if rest.is_empty() || rest.starts_with('/') {
        bail!("the OTLP endpoint {endpoint:?} names no host");
    }
    Ok(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
}

/// Starts logging, and trace export to `otlp` when it is given.
pub fn init(format: LogFormat, otlp: Option<&str>) -> anyhow::Result<Telemetry> {
    let traces = match otlp {
        Some(endpoint) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(traces_url(endpoint)?)
                .build()?;
            Some(
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(Resource::builder().with_service_name("verifyd").build())
                    .build(),
            )
        }
        None => None,
    };
    let export = traces.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("verifyd"))
            .with_tracked_inactivity(false)
    });
    let _ = tracing_subscriber::registry()
        .with(filter())
        .with(log_lines(format))
        .with(export)
        .try_init();
    Ok(Telemetry { traces })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_otlp_endpoint_is_a_base_url_to_which_the_traces_path_is_added() {
        assert_eq!(
            traces_url("http://127.0.0.1:4318").unwrap(),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://collector:4318/").unwrap(),
            "http://collector:4318/v1/traces"
        );
        assert!(traces_url("https://collector:4318").is_err());
        assert!(traces_url("collector:4318").is_err());
        assert!(traces_url("http://").is_err());
    }
}
