//! The command line: `verifyd serve` (the default), `verifyd keys …`, `verifyd migrate`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};

use crate::auth;
use crate::config::{ChannelKind, DatabaseUrl, HttpLimits, InboxHost, KeySource, Settings, Tls};
use crate::domain::Price;
use crate::service::Pricing;
use crate::startup::Application;
use crate::store::postgres::PgStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{KeyState, KeyStore, Store};

#[derive(Debug, Parser)]
#[command(
    name = "verifyd",
    version,
    about = "Self-hosted phone verification, compatible with the Vonage Verify API"
)]
pub struct Cli {
    /// Database URL: sqlite://PATH or postgres://USER@HOST:PORT/DATABASE
    #[arg(
        long,
        global = true,
        env = "VERIFYD_DATABASE_URL",
        default_value = "sqlite://verifyd.db"
    )]
    pub database: String,

    #[command(subcommand)]
    pub command: Command,
}

/// `verifyd` with no command (only flags, or nothing) means `verifyd serve`, which is what
/// `cargo run --release` starts. Flags must then belong to `serve`; clap reports any that do not.
pub fn with_default_command(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    const COMMANDS: [&str; 4] = ["serve", "keys", "migrate", "help"];
    const TOP_LEVEL_ONLY: [&str; 4] = ["-h", "--help", "-V", "--version"];
    let named = |list: &[&str]| {
        args.iter()
            .skip(1)
            .any(|a| a.to_str().is_some_and(|a| list.contains(&a)))
    };
    if !named(&COMMANDS) && !named(&TOP_LEVEL_ONLY) {
        args.insert(1.min(args.len()), "serve".into());
    }
    args
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API, the scheduler and the delivery channels (the default command).
    Serve(Box<ServeArgs>),
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Create or upgrade the database schema, then exit.
    Migrate,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "VERIFYD_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// PEM certificate chain; with --tls-key serves HTTPS on the same port.
    #[arg(long, env = "VERIFYD_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for --tls-cert.
    #[arg(long, env = "VERIFYD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Run workflow time N times faster than real time (inbox channel only), to try expiry flows
    /// in seconds. Continues across restarts.
    #[arg(long, env = "VERIFYD_CLOCK_SPEED", default_value_t = 1.0)]
    pub clock_speed: f64,

    /// Delivery channel. `inbox` shows every message at /inbox instead of sending it.
    #[arg(
        long = "channel",
        env = "VERIFYD_CHANNEL",
        value_enum,
        default_value = "inbox"
    )]
    pub channel: ChannelArg,

    /// File with the server key (64 hex characters) that protects PINs; created if missing.
    /// Default: the database path plus `.key`. VERIFYD_SECRET_KEY (the hex itself) takes
    /// precedence.
    #[arg(long, env = "VERIFYD_SECRET_KEY_FILE")]
    pub secret_key_file: Option<PathBuf>,

    /// Currency that check and search report prices in.
    #[arg(long, env = "VERIFYD_CURRENCY", default_value = "EUR")]
    pub currency: String,

    /// Price reported for a successful verification.
    #[arg(long, env = "VERIFYD_PRICE_VERIFICATION", default_value = "0")]
    pub price_verification: String,

    /// Price reported per SMS sent (in estimated_price_messages_sent).
    #[arg(long, env = "VERIFYD_PRICE_SMS", default_value = "0")]
    pub price_sms: String,

    /// Price reported per call placed (in estimated_price_messages_sent).
    #[arg(long, env = "VERIFYD_PRICE_CALL", default_value = "0")]
    pub price_call: String,

    /// Seconds a stored delivery belongs to the node that made it; if that node dies, another
    /// node sends it once this has passed.
    #[arg(long, env = "VERIFYD_DELIVERY_LEASE", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub delivery_lease: u64,

    /// Seconds a client has to send its request headers, from opening the connection or from
    /// the first byte of a later request on it.
    #[arg(long, env = "VERIFYD_HEADER_TIMEOUT", default_value_t = HttpLimits::default().header_timeout.as_secs(), value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_timeout: u64,

    /// Seconds a client has to send a request's body once its headers are in.
    #[arg(long, env = "VERIFYD_BODY_TIMEOUT", default_value_t = HttpLimits::default().body_timeout.as_secs(), value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub body_timeout: u64,

    /// Seconds a keep-alive connection may wait for its next request before it is closed.
    #[arg(long, env = "VERIFYD_IDLE_TIMEOUT", default_value_t = HttpLimits::default().idle_timeout.as_secs(), value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub idle_timeout: u64,

    /// Connections open at once; more wait until one closes, and idle keep-alive connections
    /// close to make room. Default: three quarters of the open-file limit (ulimit -n), and never
    /// more than that.
    #[arg(long, env = "VERIFYD_MAX_CONNECTIONS", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: Option<u64>,

    /// A host name or IP address the inbox pages answer to (as clients write it in the Host
    /// header), besides loopback addresses, `localhost` and the listen address (repeat the flag;
    /// comma-separated in the environment).
    #[arg(
        long = "inbox-host",
        env = "VERIFYD_INBOX_HOSTS",
        value_delimiter = ','
    )]
    pub inbox_hosts: Vec<String>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ChannelArg {
    Inbox,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key; prints {"api_key":…,"api_secret":…}. The secret is shown only here.
    Create {
        /// A name to recognise the key by.
        #[arg(long, default_value = "")]
        name: String,
        /// Refuse `pin_code` (caller-chosen PINs) for this key: status 20.
        #[arg(long)]
        no_custom_pin: bool,
    },
    /// List keys (never their secrets), one JSON object per line.
    List,
    /// Revoke a key for good: it is answered like an unknown key (status 4).
    Revoke { key: String },
    /// Disable a key: it is answered with status 8 until enabled again.
    Disable { key: String },
    /// Enable a disabled key.
    Enable { key: String },
}

fn price(flag: &str, raw: &str) -> anyhow::Result<Price> {
    Price::parse(raw).with_context(|| {
        format!("--{flag} must be a non-negative decimal with at most 8 decimals, not {raw:?}")
    })
}

fn settings(database: DatabaseUrl, args: &ServeArgs) -> anyhow::Result<Settings> {
    let key = match std::env::var("VERIFYD_SECRET_KEY") {
        Ok(hex) if !hex.trim().is_empty() => KeySource::Hex(hex),
        _ => KeySource::File(
            args.secret_key_file
                .clone()
                .unwrap_or_else(|| database.default_key_file()),
        ),
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(Tls {
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ => None,
    };
    let currency = args.currency.trim().to_ascii_uppercase();
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_alphabetic()) {
        bail!("--currency must be a three-letter code such as EUR");
    }
    Ok(Settings {
        listen: args.listen,
        database,
        key,
        tls,
        clock_speed: args.clock_speed,
        channels: match args.channel {
            ChannelArg::Inbox => vec![ChannelKind::Inbox],
        },
        pricing: Pricing {
            currency,
            verification: price("price-verification", &args.price_verification)?,
            per_sms: price("price-sms", &args.price_sms)?,
            per_call: price("price-call", &args.price_call)?,
        },
        delivery_lease: std::time::Duration::from_secs(args.delivery_lease),
        http: HttpLimits {
            header_timeout: Duration::from_secs(args.header_timeout),
            body_timeout: Duration::from_secs(args.body_timeout),
            idle_timeout: Duration::from_secs(args.idle_timeout),
            max_connections: args
                .max_connections
                .map(|n| n.min(usize::MAX as u64) as usize),
        },
        inbox_hosts: args
            .inbox_hosts
            .iter()
            .map(|h| InboxHost::parse(h).context("--inbox-host"))
            .collect::<anyhow::Result<_>>()?,
    })
}

/// Opens the database for a command-line tool, next to a running server if there is one.
async fn open_for_admin(database: &DatabaseUrl) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match database {
        DatabaseUrl::Sqlite(path) => Arc::new(SqliteStore::open(path)?),
        DatabaseUrl::Postgres(url) => Arc::new(PgStore::open(url).await?),
    })
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let database = DatabaseUrl::parse(&cli.database)?;
    match cli.command {
        Command::Serve(args) => serve(database, &args).await,
        Command::Migrate => {
            open_for_admin(&database).await?;
            eprintln!("the database schema is up to date");
            Ok(())
        }
        Command::Keys(cmd) => keys(database, cmd).await,
    }
}

async fn serve(database: DatabaseUrl, args: &ServeArgs) -> anyhow::Result<()> {
    let app = Application::build(settings(database, args)?).await?;
    app.run_until_stopped().await
}

async fn keys(database: DatabaseUrl, cmd: KeysCommand) -> anyhow::Result<()> {
    let store = open_for_admin(&database).await?;
    let now = chrono::Utc::now();
    match cmd {
        KeysCommand::Create {
            name,
            no_custom_pin,
        } => {
            let key = auth::create_key(store.as_ref(), &name, !no_custom_pin, now).await?;
            println!("{}", serde_json::to_string(&key)?);
        }
        KeysCommand::List => {
            for k in store.list_keys().await? {
                let line = serde_json::json!({
                    "api_key": k.api_key,
                    "name": k.name,
                    "state": k.state.as_str(),
                    "custom_pin": k.allow_custom_pin,
                    "created_at": k.created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                });
                println!("{line}");
            }
        }
        KeysCommand::Revoke { key } => set_state(store.as_ref(), &key, KeyState::Revoked).await?,
        KeysCommand::Disable { key } => set_state(store.as_ref(), &key, KeyState::Disabled).await?,
        KeysCommand::Enable { key } => set_state(store.as_ref(), &key, KeyState::Active).await?,
    }
    Ok(())
}

async fn set_state(store: &dyn KeyStore, key: &str, state: KeyState) -> anyhow::Result<()> {
    if !store.set_key_state(key, state).await? {
        bail!("no API key {key:?} in this database");
    }
    eprintln!("key {key} is now {}", state.as_str());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        let os = list.iter().map(std::ffi::OsString::from).collect();
        with_default_command(os)
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn no_command_means_serve() {
        assert_eq!(args(&["verifyd"]), ["verifyd", "serve"]);
        assert_eq!(
            args(&["verifyd", "--listen", "0.0.0.0:80"]),
            ["verifyd", "serve", "--listen", "0.0.0.0:80"]
        );
        assert_eq!(
            args(&["verifyd", "keys", "list"]),
            ["verifyd", "keys", "list"]
        );
        assert_eq!(args(&["verifyd", "--help"]), ["verifyd", "--help"]);
    }

    #[test]
    fn a_serve_flag_before_the_command_is_an_error_not_ignored() {
        let parsed = Cli::try_parse_from(args(&["verifyd", "--listen", "127.0.0.1:1", "serve"]));
        assert!(parsed.is_err());
    }

    #[test]
    fn serve_settings_from_the_environment_do_not_affect_other_commands() {
        // `keys` has no --listen, so VERIFYD_LISTEN is never parsed for it.
        let parsed = Cli::try_parse_from(args(&["verifyd", "keys", "list"])).unwrap();
        assert!(matches!(parsed.command, Command::Keys(KeysCommand::List)));
    }
}
