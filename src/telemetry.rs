//! Logs go to stderr (command output owns stdout). `RUST_LOG` filters them.

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line per event for people to read (colours on a terminal).
    #[default]
    Text,
    /// One JSON object per event, with the request's span (its id) in `spans`.
    Json,
}

pub fn init(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // rusmpp logs every PDU it encodes or decodes at debug level (PINs, numbers, the bind's
    // password), rsipstack every SIP message at info: those never reach the log, whatever
    // RUST_LOG asks for.
    let filter = filter
        .add_directive("rusmpp=info".parse().expect("a valid directive"))
        .add_directive("rusmpp_core=info".parse().expect("a valid directive"))
        .add_directive("rusmppc=info".parse().expect("a valid directive"))
        // rsipstack logs every SIP message at info: numbers, SDP, digest answers.
        .add_directive("rsipstack=warn".parse().expect("a valid directive"))
        // tokio-postgres logs every statement with its parameters at debug: numbers, bodies,
        // inbox texts with their codes.
        .add_directive("tokio_postgres=info".parse().expect("a valid directive"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().with_current_span(false).try_init(),
    };
}
