//! Logs go to stderr (command output owns stdout). `RUST_LOG` filters them.

use tracing_subscriber::EnvFilter;

pub fn init() {
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
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}
