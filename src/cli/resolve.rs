//! Where each setting comes from: built-in defaults, then the configuration file, then
//! `VERIFYD_*` environment variables, then command-line flags (clap reads the last two, flags
//! first). A value that is refused names where it came from.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};

use super::{ChannelArg, ServeArgs};
use crate::config::delivery::DeliveryConfig;
use crate::config::file::{ConfigFile, Decimal};
use crate::config::retention::DEFAULT_KEEP_ENDED;
use crate::config::{DatabaseUrl, HttpLimits, InboxHost, KeySource, Settings, Tls};
use crate::domain::Price;
use crate::service::Pricing;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATABASE: &str = "sqlite://verifyd.db";
pub const DEFAULT_CURRENCY: &str = "EUR";
pub const DEFAULT_DELIVERY_LEASE_SECS: u64 = 60;

/// Where a value came from, for messages about it.
struct Origin<'a> {
    flag: &'static str,
    file: Option<&'a Path>,
    from_file: bool,
}

impl std::fmt::Display for Origin<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.from_file, self.file) {
            (true, Some(file)) => write!(f, "{}: {}", file.display(), self.flag.replace('-', "_")),
            _ => write!(
                f,
                "--{} (or VERIFYD_{})",
                self.flag,
                self.flag.replace('-', "_").to_ascii_uppercase()
            ),
        }
    }
}

/// The value of one setting: the flag (or its environment variable) if given, else the file's.
fn pick<'a, T>(
    flag: &'static str,
    given: Option<T>,
    in_file: Option<T>,
    file: Option<&'a Path>,
) -> (Option<T>, Origin<'a>) {
    let from_file = given.is_none() && in_file.is_some();
    (
        given.or(in_file),
        Origin {
            flag,
            file,
            from_file,
        },
    )
}

/// The database URL: `--database` / `VERIFYD_DATABASE_URL`, else the file's, else the default.
pub fn database(given: Option<&str>, file: Option<&ConfigFile>) -> anyhow::Result<DatabaseUrl> {
    let in_file = file.and_then(|f| f.top.database.as_deref());
    let (url, origin) = pick("database", given, in_file, file.map(|f| f.path.as_path()));
    DatabaseUrl::parse(url.unwrap_or(DEFAULT_DATABASE)).with_context(|| origin.to_string())
}

fn seconds(
    origin: &Origin<'_>,
    value: Option<u64>,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> anyhow::Result<Duration> {
    let secs = value.unwrap_or(default);
    if !range.contains(&secs) {
        bail!(
            "{origin} must be between {} and {} seconds, not {secs}",
            range.start(),
            range.end()
        );
    }
    Ok(Duration::from_secs(secs))
}

fn price(origin: &Origin<'_>, raw: Option<&str>) -> anyhow::Result<Price> {
    let raw = raw.unwrap_or("0");
    Price::parse(raw.trim()).with_context(|| {
        format!("{origin} must be a non-negative decimal with at most 8 decimals, not {raw:?}")
    })
}

/// Where the server key comes from: `VERIFYD_SECRET_KEY`, else the key file of the flag, the
/// file or the default next to the database.
pub fn key_source(
    database: &DatabaseUrl,
    file: Option<&ConfigFile>,
    flag: Option<std::path::PathBuf>,
) -> KeySource {
    let path = file.map(|f| f.path.as_path());
    let top = file.map(|f| f.top.clone()).unwrap_or_default();
    let (secret_key_file, _) = pick("secret-key-file", flag, top.secret_key_file, path);
    match std::env::var("VERIFYD_SECRET_KEY") {
        Ok(hex) if !hex.trim().is_empty() => KeySource::Hex(hex),
        _ => KeySource::File(secret_key_file.unwrap_or_else(|| database.default_key_file())),
    }
}

/// The server's settings from every source.
pub fn settings(
    database: DatabaseUrl,
    file: Option<&ConfigFile>,
    args: &ServeArgs,
) -> anyhow::Result<Settings> {
    let path = file.map(|f| f.path.as_path());
    let top = file.map(|f| f.top.clone()).unwrap_or_default();

    let (listen, _) = pick("listen", args.listen, top.listen, path);
    let listen: SocketAddr = match listen {
        Some(addr) => addr,
        None => DEFAULT_LISTEN.parse().expect("a socket address"),
    };
    let key = key_source(&database, file, args.secret_key_file.clone());
    let (tls_cert, _) = pick("tls-cert", args.tls_cert.clone(), top.tls_cert, path);
    let (tls_key, key_origin) = pick("tls-key", args.tls_key.clone(), top.tls_key, path);
    let tls = match (tls_cert, tls_key) {
        (Some(cert), Some(key)) => Some(Tls { cert, key }),
        (None, None) => None,
        _ => bail!("{key_origin}: tls_cert and tls_key go together"),
    };
    let (clock_speed, origin) = pick("clock-speed", args.clock_speed, top.clock_speed, path);
    let clock_speed = clock_speed.unwrap_or(1.0);
    if !(clock_speed.is_finite() && clock_speed > 0.0) {
        bail!("{origin} must be a positive number, not {clock_speed}");
    }
    let (currency, origin) = pick("currency", args.currency.clone(), top.currency, path);
    let currency = currency
        .unwrap_or_else(|| DEFAULT_CURRENCY.into())
        .trim()
        .to_ascii_uppercase();
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_alphabetic()) {
        bail!("{origin} must be a three-letter code such as EUR");
    }
    let text = |d: Option<Decimal>| d.map(|d| d.0);
    let (raw, origin) = pick(
        "price-verification",
        args.price_verification.clone(),
        text(top.price_verification),
        path,
    );
    let verification = price(&origin, raw.as_deref())?;
    let (raw, origin) = pick(
        "price-sms",
        args.price_sms.clone(),
        text(top.price_sms),
        path,
    );
    let per_sms = price(&origin, raw.as_deref())?;
    let (raw, origin) = pick(
        "price-call",
        args.price_call.clone(),
        text(top.price_call),
        path,
    );
    let per_call = price(&origin, raw.as_deref())?;
    let (lease, origin) = pick(
        "delivery-lease",
        args.delivery_lease,
        top.delivery_lease,
        path,
    );
    let delivery_lease = seconds(&origin, lease, DEFAULT_DELIVERY_LEASE_SECS, 1..=3600)?;
    let defaults = HttpLimits::default();
    let (v, origin) = pick(
        "header-timeout",
        args.header_timeout,
        top.header_timeout,
        path,
    );
    let header_timeout = seconds(&origin, v, defaults.header_timeout.as_secs(), 1..=3600)?;
    let (v, origin) = pick("body-timeout", args.body_timeout, top.body_timeout, path);
    let body_timeout = seconds(&origin, v, defaults.body_timeout.as_secs(), 1..=3600)?;
    let (v, origin) = pick("idle-timeout", args.idle_timeout, top.idle_timeout, path);
    let idle_timeout = seconds(&origin, v, defaults.idle_timeout.as_secs(), 1..=86_400)?;
    let (max_connections, origin) = pick(
        "max-connections",
        args.max_connections,
        top.max_connections,
        path,
    );
    if max_connections == Some(0) {
        bail!("{origin} must be at least 1");
    }
    let hosts = (!args.inbox_hosts.is_empty()).then(|| args.inbox_hosts.clone());
    let (hosts, origin) = pick("inbox-host", hosts, top.inbox_hosts, path);
    let inbox_hosts = hosts
        .unwrap_or_default()
        .iter()
        .map(|h| InboxHost::parse(h).with_context(|| origin.to_string()))
        .collect::<anyhow::Result<_>>()?;

    let mut delivery = file.map(|f| f.delivery.clone()).unwrap_or_default();
    if let Some(url) = &args.public_url {
        let origin = Origin {
            flag: "public-url",
            file: None,
            from_file: false,
        };
        crate::config::delivery::check_http_url("public_url", url)
            .map_err(|p| anyhow::anyhow!("{origin}: {}", p.problem))?;
        delivery.public_url = Some(url.trim_end_matches('/').to_owned());
    }
    if let Some(ChannelArg::Inbox) = args.channel {
        // Every kind to the inbox, whatever the file's routes say (its channels stay known).
        delivery = DeliveryConfig {
            public_url: delivery.public_url,
            channels: delivery.channels,
            test_numbers: delivery.test_numbers,
            ..DeliveryConfig::default()
        };
    }
    let settings = Settings {
        listen,
        database,
        key,
        tls,
        clock_speed,
        pricing: Pricing {
            currency,
            verification,
            per_sms,
            per_call,
        },
        delivery_lease,
        http: HttpLimits {
            header_timeout,
            body_timeout,
            idle_timeout,
            max_connections: max_connections.map(|n| n.min(usize::MAX as u64) as usize),
        },
        inbox_hosts,
        limits: file.map(|f| f.limits).unwrap_or_default(),
        destinations: file.map(|f| f.destinations.clone()).unwrap_or_default(),
        fraud: file.map(|f| f.fraud.clone()).unwrap_or_default(),
        keep_ended: file.map_or(Some(DEFAULT_KEEP_ENDED), |f| f.keep_ended),
        delivery,
    };
    settings.validate()?;
    Ok(settings)
}

/// The configuration file, when one is given.
pub fn load(path: Option<&PathBuf>) -> anyhow::Result<Option<ConfigFile>> {
    path.map(|p| ConfigFile::load(p).map_err(anyhow::Error::from))
        .transpose()
}
