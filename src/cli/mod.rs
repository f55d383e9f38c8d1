//! The command line: `verifyd serve` (the default), `verifyd keys …`, `verifyd apps …`,
//! `verifyd migrate`, `verifyd config check`, `verifyd send-test`, `verifyd deliveries`.

mod admin;
mod apps;
pub mod deliveries;
mod fraud;
mod resolve;
pub mod send_test;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::bail;
use clap::{Args, Parser, Subcommand};

use crate::auth;
use crate::config::file::ConfigFile;
use crate::config::DatabaseUrl;

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
    /// [default: sqlite://verifyd.db]
    #[arg(long, global = true, env = "VERIFYD_DATABASE_URL")]
    pub database: Option<String>,

    /// Configuration file (TOML, docs/configuration.md). Its top-level keys are the defaults of
    /// the flags of the same names; environment variables and flags override them.
    #[arg(long, global = true, env = "VERIFYD_CONFIG")]
    pub config: Option<PathBuf>,

    /// How log lines are written to stderr: `text` for people, `json` (one object per line)
    /// for a log collector. Logging starts before the configuration file is read, so this is a
    /// flag and an environment variable only.
    #[arg(
        long,
        global = true,
        env = "VERIFYD_LOG_FORMAT",
        value_enum,
        default_value_t
    )]
    pub log_format: crate::telemetry::LogFormat,

    /// Export traces (each request's, delivery's and callback's span) to this OpenTelemetry
    /// collector over OTLP/HTTP: its base URL, such as http://127.0.0.1:4318 (`/v1/traces` is
    /// added). Off when not given. A flag and an environment variable only, as the log format.
    #[arg(
        long,
        global = true,
        env = "OTEL_EXPORTER_OTLP_ENDPOINT",
        value_name = "URL"
    )]
    pub otlp_endpoint: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

/// `verifyd` with no command (only flags, or nothing) means `verifyd serve`, which is what
/// `cargo run --release` starts. Flags must then belong to `serve`; clap reports any that do not.
pub fn with_default_command(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    use clap::CommandFactory;
    // Every command clap knows, and its generated `help`.
    let commands: Vec<String> = Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_owned())
        .chain(["help".to_owned()])
        .collect();
    const TOP_LEVEL_ONLY: [&str; 4] = ["-h", "--help", "-V", "--version"];
    let named = |list: &[&str]| {
        args.iter()
            .skip(1)
            .any(|a| a.to_str().is_some_and(|a| list.contains(&a)))
    };
    let commands: Vec<&str> = commands.iter().map(String::as_str).collect();
    if !named(&commands) && !named(&TOP_LEVEL_ONLY) {
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
    /// Manage the dashboard's users (`/dashboard`).
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// Manage Verify v2 applications (JWT authentication).
    #[command(subcommand)]
    Apps(apps::AppsCommand),
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// The configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Send one test message through one configured channel; exit 0 only if its gateway
    /// accepted it.
    SendTest(send_test::SendTestArgs),
    /// Every delivery attempt of a verification, one JSON object per line.
    Deliveries {
        /// The verification's request_id.
        request_id: String,
    },
    /// Conversion monitoring against SMS pumping.
    #[command(subcommand)]
    Fraud(fraud::FraudCommand),
    /// Delete everything kept about one phone number, for a person's erasure request: its
    /// verifications of every key, in progress or ended, with their deliveries and tries, the
    /// inbox messages to it and its limit counters. Prints what was deleted, as JSON.
    Erase {
        /// The number: international digits with the country code (`+` allowed).
        #[arg(long)]
        number: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check the configuration file, the environment and the flags as `serve` would, and print
    /// the configuration that takes effect (secrets as ***). Exit 0 when valid, 2 otherwise.
    Check(Box<ServeArgs>),
}

/// The server's settings. Each also comes from the configuration file's key of the same name
/// (with `_` for `-`); the environment variable and the flag win over the file.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "VERIFYD_LISTEN")]
    pub listen: Option<SocketAddr>,

    /// PEM certificate chain; with --tls-key serves HTTPS on the same port.
    #[arg(long, env = "VERIFYD_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for --tls-cert.
    #[arg(long, env = "VERIFYD_TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// Run workflow time N times faster than real time (only when every route ends in the
    /// inbox), to try expiry flows in seconds. Continues across restarts. [default: 1]
    #[arg(long, env = "VERIFYD_CLOCK_SPEED")]
    pub clock_speed: Option<f64>,

    /// `inbox`: every message to the inbox at /inbox, whatever the configuration file's routes
    /// say. Without a configuration file that is what happens anyway.
    #[arg(long = "channel", env = "VERIFYD_CHANNEL", value_enum)]
    pub channel: Option<ChannelArg>,

    /// File with the server key (64 hex characters) that protects PINs; created if missing.
    /// Default: the database path plus `.key`. VERIFYD_SECRET_KEY (the hex itself) takes
    /// precedence.
    #[arg(long, env = "VERIFYD_SECRET_KEY_FILE")]
    pub secret_key_file: Option<PathBuf>,

    /// Currency that check and search report prices in [default: EUR].
    #[arg(long, env = "VERIFYD_CURRENCY")]
    pub currency: Option<String>,

    /// Price reported for a successful verification [default: 0].
    #[arg(long, env = "VERIFYD_PRICE_VERIFICATION")]
    pub price_verification: Option<String>,

    /// Price reported per SMS sent (in estimated_price_messages_sent) [default: 0].
    #[arg(long, env = "VERIFYD_PRICE_SMS")]
    pub price_sms: Option<String>,

    /// Price reported per call placed (in estimated_price_messages_sent) [default: 0].
    #[arg(long, env = "VERIFYD_PRICE_CALL")]
    pub price_call: Option<String>,

    /// Seconds a stored delivery belongs to the node that made it; if that node dies, another
    /// node sends it once this has passed (1–3600) [default: 60].
    #[arg(long, env = "VERIFYD_DELIVERY_LEASE")]
    pub delivery_lease: Option<u64>,

    /// Seconds a client has to send its request headers, from opening the connection or from
    /// the first byte of a later request on it (1–3600) [default: 10].
    #[arg(long, env = "VERIFYD_HEADER_TIMEOUT")]
    pub header_timeout: Option<u64>,

    /// Seconds a client has to send a request's body once its headers are in (1–3600)
    /// [default: 10].
    #[arg(long, env = "VERIFYD_BODY_TIMEOUT")]
    pub body_timeout: Option<u64>,

    /// Seconds a keep-alive connection may wait for its next request before it is closed
    /// (1–86400) [default: 60].
    #[arg(long, env = "VERIFYD_IDLE_TIMEOUT")]
    pub idle_timeout: Option<u64>,

    /// Connections open at once; more wait until one closes, and idle keep-alive connections
    /// close to make room. Default: three quarters of the open-file limit (ulimit -n), and never
    /// more than that.
    #[arg(long, env = "VERIFYD_MAX_CONNECTIONS")]
    pub max_connections: Option<u64>,

    /// Base URL at which gateways reach this server, for delivery receipts
    /// (https://verify.example.com).
    #[arg(long, env = "VERIFYD_PUBLIC_URL")]
    pub public_url: Option<String>,

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
// Parsed once per run: the size of its largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
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
    /// Give a key a new secret; prints {"api_key":…,"api_secret":…}. The old secret stops
    /// working within 2 s; the new one is shown only here.
    Rotate { key: String },
    /// Disable a key: it is answered with status 8 until enabled again.
    Disable { key: String },
    /// Enable a disabled key.
    Enable { key: String },
    /// Show or set a key's own limits, in place of the file's `[limits]`. Each VALUE is a rate
    /// (`5/10m`; a count for the `_per_second`, `_per_hour` and `_per_day` ones), `none` (no limit for this key) or
    /// `default` (the file's). Prints {"api_key":…,"limits":{…}}; a running server applies it
    /// within 2 s.
    Limits {
        key: String,
        #[arg(long, value_name = "VALUE")]
        requests_per_second: Option<String>,
        #[arg(long, value_name = "VALUE")]
        searches_per_second: Option<String>,
        #[arg(long, value_name = "VALUE")]
        per_destination: Option<String>,
        #[arg(long, value_name = "VALUE")]
        per_prefix: Option<String>,
        #[arg(long, value_name = "VALUE")]
        per_country: Option<String>,
        #[arg(long, value_name = "VALUE")]
        per_ip: Option<String>,
        /// The send budget: a count of verifications started per hour.
        #[arg(long, value_name = "VALUE")]
        verifications_per_hour: Option<String>,
        #[arg(long, value_name = "VALUE")]
        verifications_per_day: Option<String>,
        /// The countries this key's SMS may reach: `all`, codes such as `GB,IE`, or `default`
        /// (the file's `[destinations]`).
        #[arg(long, value_name = "COUNTRIES")]
        sms_countries: Option<String>,
        #[arg(long, value_name = "COUNTRIES")]
        voice_countries: Option<String>,
        #[arg(long, value_name = "COUNTRIES")]
        whatsapp_countries: Option<String>,
    },
}

/// Opens the database for a command-line tool, next to a running server if there is one.
async fn open_for_admin(database: &DatabaseUrl) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match database {
        DatabaseUrl::Sqlite(path) => Arc::new(SqliteStore::open(path)?),
        DatabaseUrl::Postgres(url) => Arc::new(PgStore::open(url).await?),
    })
}

/// The digits `verifyd erase --number` deletes: the number as verifyd stores it, or, for one
/// that today's numbering data refuses (stored under older data), its plain digits.
fn erasable_digits(number: &str) -> anyhow::Result<String> {
    if let Ok(parsed) = crate::domain::PhoneNumber::parse(number, None) {
        return Ok(parsed.digits().to_owned());
    }
    let digits = number.trim().trim_start_matches('+');
    if (6..=17).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(digits.to_owned());
    }
    anyhow::bail!(
        "{number:?} is not a valid international number: write its digits with the country \
         code, e.g. 447700123456"
    )
}

/// Exit status of a `config check` that finds a problem.
const INVALID_CONFIGURATION: u8 = 2;

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Config(ConfigCommand::Check(args)) = &cli.command {
        return Ok(match config_check(&cli, args) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(INVALID_CONFIGURATION)
            }
        });
    }
    let file = resolve::load(cli.config.as_ref())?;
    let database = resolve::database(cli.database.as_deref(), file.as_ref())?;
    match cli.command {
        Command::Serve(args) => {
            let (path, flag) = (cli.config.as_ref(), cli.database.as_deref());
            serve(path, flag, database, file.as_ref(), &args).await?
        }
        Command::Migrate => {
            open_for_admin(&database).await?;
            eprintln!("the database schema is up to date");
        }
        Command::Keys(cmd) => keys(database, cmd).await?,
        Command::Apps(cmd) => {
            let store = open_for_admin(&database).await?;
            apps::run(store, &database, file.as_ref(), cmd).await?
        }
        Command::Admin(cmd) => {
            let store = open_for_admin(&database).await?;
            admin::run(store.as_ref(), cmd).await?;
        }
        Command::SendTest(args) => return send_test::run(file.as_ref(), &args).await,
        Command::Deliveries { request_id } => {
            let store = open_for_admin(&database).await?;
            deliveries::print(store.as_ref(), &request_id).await?;
        }
        Command::Erase { number } => {
            let digits = erasable_digits(&number)?;
            let store = open_for_admin(&database).await?;
            let erased = store.erase_number(&digits).await?;
            println!("{}", serde_json::to_string(&erased)?);
        }
        Command::Fraud(cmd) => {
            let store = open_for_admin(&database).await?;
            fraud::run(store.as_ref(), cmd).await?;
        }
        Command::Config(_) => unreachable!("handled above"),
    }
    Ok(ExitCode::SUCCESS)
}

/// What `serve` would run with, as TOML, or why it would not start.
fn config_check(cli: &Cli, args: &ServeArgs) -> anyhow::Result<String> {
    let file = resolve::load(cli.config.as_ref())?;
    let database = resolve::database(cli.database.as_deref(), file.as_ref())?;
    let settings = resolve::settings(database, file.as_ref(), args)?;
    let from_env = file.map(|f| f.from_env).unwrap_or_default();
    Ok(crate::config::show::effective_toml(&settings, &from_env))
}

/// Serves until stopped; on SIGHUP the configuration file (`config_path`) and the environment
/// are read again, with the same flags.
async fn serve(
    config_path: Option<&PathBuf>,
    database_flag: Option<&str>,
    database: DatabaseUrl,
    file: Option<&ConfigFile>,
    args: &ServeArgs,
) -> anyhow::Result<()> {
    let settings = resolve::settings(database.clone(), file, args)?;
    let hangups = crate::startup::hangup_signals()?;
    let app = Application::build(settings).await?;
    app.run_until_stopped(hangups, || {
        let file = resolve::load(config_path)?;
        let database = resolve::database(database_flag, file.as_ref())?;
        resolve::settings(database, file.as_ref(), args)
    })
    .await
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
                    "limits": limits_json(&k.limits),
                });
                println!("{line}");
            }
        }
        KeysCommand::Rotate { key } => match auth::rotate_key(store.as_ref(), &key).await? {
            Some(key) => println!("{}", serde_json::to_string(&key)?),
            None => bail!("no API key {key:?} in this database, or it is revoked"),
        },
        KeysCommand::Revoke { key } => set_state(store.as_ref(), &key, KeyState::Revoked).await?,
        KeysCommand::Disable { key } => set_state(store.as_ref(), &key, KeyState::Disabled).await?,
        KeysCommand::Enable { key } => set_state(store.as_ref(), &key, KeyState::Active).await?,
        KeysCommand::Limits {
            key,
            requests_per_second,
            searches_per_second,
            per_destination,
            per_prefix,
            per_country,
            per_ip,
            verifications_per_hour,
            verifications_per_day,
            sms_countries,
            voice_countries,
            whatsapp_countries,
        } => {
            let given = [
                ("requests_per_second", requests_per_second),
                ("searches_per_second", searches_per_second),
                ("per_destination", per_destination),
                ("per_prefix", per_prefix),
                ("per_country", per_country),
                ("per_ip", per_ip),
                ("verifications_per_hour", verifications_per_hour),
                ("verifications_per_day", verifications_per_day),
                ("sms_countries", sms_countries),
                ("voice_countries", voice_countries),
                ("whatsapp_countries", whatsapp_countries),
            ];
            let changes: Vec<(&str, &str)> = given
                .iter()
                .filter_map(|(name, value)| Some((*name, value.as_deref()?)))
                .collect();
            let own = match auth::change_key_limits(store.as_ref(), &key, &changes).await? {
                auth::LimitsChange::Set(own) => own,
                auth::LimitsChange::NoKey => bail!("no API key {key:?} in this database"),
                auth::LimitsChange::Invalid(name, why) => {
                    let flag = format!("--{}", name.replace('_', "-"));
                    bail!("{}", why.replacen(&name, &flag, 1))
                }
                auth::LimitsChange::Busy => {
                    bail!("the key's limits keep changing under this command; try again")
                }
            };
            let line = serde_json::json!({ "api_key": key, "limits": limits_json(&own) });
            println!("{line}");
        }
    }
    Ok(())
}

/// A key's own limits as `keys list` and `keys limits` print them.
fn limits_json(own: &crate::domain::limits::KeyLimits) -> serde_json::Value {
    own.entries()
        .into_iter()
        .map(|(name, value)| (name.to_owned(), serde_json::Value::String(value)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

async fn set_state(store: &dyn KeyStore, key: &str, state: KeyState) -> anyhow::Result<()> {
    if !store.set_key_state(key, state).await? {
        match store.get_key(key).await? {
            Some(k) if k.state == KeyState::Revoked => bail!("key {key} is revoked, for good"),
            _ => bail!("no API key {key:?} in this database"),
        }
    }
    eprintln!("key {key} is now {}", state.as_str());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erase_takes_a_number_as_stored_or_its_plain_digits() {
        assert_eq!(erasable_digits("+447700123456").unwrap(), "447700123456");
        // Refused by today's numbering data, erased as written.
        assert_eq!(erasable_digits("+44770012").unwrap(), "44770012");
        assert!(erasable_digits("12").is_err());
        assert!(erasable_digits("+44 7700 abc").is_err());
    }

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
