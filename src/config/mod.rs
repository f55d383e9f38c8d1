//! Server settings: built-in defaults, then the configuration file (`file.rs`), then `VERIFYD_*`
//! environment variables, then command-line flags (src/cli.rs); passed explicitly to
//! [`crate::startup::Application::build`].

pub mod delivery;
pub mod destinations;
pub mod file;
pub mod fraud;
pub mod limits;
pub mod retention;
pub mod show;
pub mod sip;
pub mod smpp;
pub mod smtp;
pub mod test_numbers;
pub mod voice;
pub mod whatsapp;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::bail;

use crate::service::Pricing;

/// Where the data lives.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    /// A `postgres://` or `postgresql://` URL, as libpq takes it.
    Postgres(String),
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl DatabaseUrl {
    /// `sqlite://verifyd.db` (relative), `sqlite:///var/lib/verifyd/verifyd.db` (absolute) or
    /// `sqlite:verifyd.db`. Other schemes are refused with the list of supported ones.
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DatabaseUrl::Postgres(url.to_owned()));
        }
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"));
        match path {
            Some("") | Some(":memory:") => {
                bail!("{url}: give the SQLite database a file path, e.g. sqlite://verifyd.db")
            }
            Some(path) => Ok(DatabaseUrl::Sqlite(PathBuf::from(path))),
            None => bail!(
                "{url} is not a supported database URL. Use sqlite://PATH (for example \
                 sqlite://verifyd.db) or postgres://USER@HOST:PORT/DATABASE"
            ),
        }
    }

    /// Default place of the server key: beside the SQLite file; for PostgreSQL `verifyd.key` in
    /// the working directory (a cluster gives every node the same key, see docs/cluster.md).
    pub fn default_key_file(&self) -> PathBuf {
        match self {
            DatabaseUrl::Sqlite(path) => {
                let mut name = path.as_os_str().to_owned();
                name.push(".key");
                PathBuf::from(name)
            }
            DatabaseUrl::Postgres(_) => PathBuf::from("verifyd.key"),
        }
    }

    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            DatabaseUrl::Sqlite(path) => Some(path),
            DatabaseUrl::Postgres(_) => None,
        }
    }

    /// The URL for logs: a PostgreSQL password is replaced by `***`.
    pub fn describe(&self) -> String {
        match self {
            DatabaseUrl::Sqlite(path) => format!("sqlite://{}", path.display()),
            DatabaseUrl::Postgres(url) => redact_password(url),
        }
    }
}

/// Where the server key comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// A file holding 64 hex characters; created with a fresh key when missing.
    File(PathBuf),
    /// The key itself, in hex (from `VERIFYD_SECRET_KEY`).
    Hex(String),
}

fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            let user = userinfo.split(':').next().unwrap_or("");
            let redacted = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                user.to_owned()
            };
            format!("{scheme}://{redacted}{}", &rest[at..])
        }
        None => url.to_owned(),
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// How long the HTTP server waits for clients, and how many connections it keeps open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// From a connection's opening (or the first byte of a later request) until its request
    /// headers are in.
    pub header_timeout: Duration,
    /// From a request's headers until its body is in.
    pub body_timeout: Duration,
    /// How long a keep-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Connections open at once; `None`: three quarters of the open-file limit
    /// ([`crate::http::connection_cap`]).
    pub max_connections: Option<usize>,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: None,
        }
    }
}

/// A host the inbox pages answer to besides loopback and the listen address: a name or an IP
/// address, without port, as it appears in the Host header (the address a port mapping or a
/// proxy puts there, say).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboxHost(String);

impl InboxHost {
    pub fn parse(raw: &str) -> anyhow::Result<Self> {
        let bare = raw.trim().trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
            return Ok(Self(ip.to_canonical().to_string()));
        }
        let name = raw.trim().trim_end_matches('.').to_ascii_lowercase();
        let valid = !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !valid {
            bail!("{raw:?} is not a host name (letters, digits, hyphens and dots; no port)");
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Clone, Debug)]
pub struct Settings {
    pub listen: SocketAddr,
    pub database: DatabaseUrl,
    pub key: KeySource,
    pub tls: Option<Tls>,
    /// Workflow time runs this many times faster than real time (inbox channel only).
    pub clock_speed: f64,
    /// Channels and routes: the configuration file's, or every kind to the inbox.
    pub delivery: delivery::DeliveryConfig,
    pub pricing: Pricing,
    /// How long a stored delivery belongs to the node that made it before another node's sweep
    /// may send it.
    pub delivery_lease: std::time::Duration,
    pub http: HttpLimits,
    /// Host names the inbox pages answer to, besides loopback and the listen address.
    pub inbox_hosts: Vec<InboxHost>,
    /// The limits of every key that has none of its own; none without a configuration file.
    pub limits: crate::domain::limits::Limits,
    /// Where verifications may go; the defaults (costly number types refused) without a file.
    pub destinations: crate::domain::destinations::Destinations,
    /// Conversion monitoring; recording only by default.
    pub fraud: crate::domain::fraud::FraudRules,
    /// How long after its start an ended verification is kept; `None` for ever.
    pub keep_ended: Option<chrono::Duration>,
}

impl Settings {
    /// Settings for a server on `listen` with the SQLite file `db`, everything else default.
    pub fn sqlite(listen: SocketAddr, db: &Path) -> Self {
        Self::new(listen, DatabaseUrl::Sqlite(db.to_owned()))
    }

    /// Settings for a server on `listen` with `database`, everything else default.
    pub fn new(listen: SocketAddr, database: DatabaseUrl) -> Self {
        Self {
            listen,
            key: KeySource::File(database.default_key_file()),
            database,
            tls: None,
            clock_speed: 1.0,
            delivery: delivery::DeliveryConfig::default(),
            pricing: Pricing::default(),
            delivery_lease: crate::store::sqlite::DEFAULT_DELIVERY_LEASE,
            http: HttpLimits::default(),
            inbox_hosts: Vec::new(),
            limits: Default::default(),
            destinations: Default::default(),
            fraud: Default::default(),
            keep_ended: Some(retention::DEFAULT_KEEP_ENDED),
        }
    }
}

impl Settings {
    /// What can be checked without opening anything, before the server listens.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !(self.clock_speed.is_finite() && self.clock_speed > 0.0) {
            bail!(
                "the clock speed (--clock-speed, clock_speed) must be a positive number, not {}",
                self.clock_speed
            );
        }
        if self.clock_speed != 1.0 && !self.delivery.only_inbox() {
            bail!(
                "the clock speed (--clock-speed, clock_speed) may differ from 1 only when every \
                 route ends in the inbox: real users would get calls at the wrong times"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_name_a_file() {
        assert_eq!(
            DatabaseUrl::parse("sqlite://verifyd.db").unwrap(),
            DatabaseUrl::Sqlite("verifyd.db".into())
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite:///var/x.db").unwrap(),
            DatabaseUrl::Sqlite("/var/x.db".into())
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite://verifyd.db")
                .unwrap()
                .default_key_file(),
            PathBuf::from("verifyd.db.key")
        );
    }

    #[test]
    fn postgres_urls_are_kept_and_their_password_never_shown() {
        let url =
            DatabaseUrl::parse("postgres://app:s3cret@db:5432/verifyd?sslmode=disable").unwrap();
        assert_eq!(
            url.describe(),
            "postgres://app:***@db:5432/verifyd?sslmode=disable"
        );
        assert!(!format!("{url:?}").contains("s3cret"));
        let url = DatabaseUrl::parse("postgresql://postgres@127.0.0.1/postgres").unwrap();
        assert_eq!(url.describe(), "postgresql://postgres@127.0.0.1/postgres");
    }

    #[test]
    fn inbox_hosts_are_bare_host_names() {
        assert_eq!(
            InboxHost::parse("Verifyd.Local.").unwrap().as_str(),
            "verifyd.local"
        );
        assert!(InboxHost::parse("verifyd:8080").is_err());
        assert!(InboxHost::parse("").is_err());
        assert!(InboxHost::parse("a..b").is_err());
        assert!(InboxHost::parse("evil.com/x").is_err());
        assert_eq!(
            InboxHost::parse("192.0.2.10").unwrap().as_str(),
            "192.0.2.10"
        );
        assert_eq!(
            InboxHost::parse("[2001:DB8::1]").unwrap().as_str(),
            "2001:db8::1"
        );
    }

    #[test]
    fn unknown_schemes_are_refused_with_advice() {
        let e = DatabaseUrl::parse("mysql://x").unwrap_err().to_string();
        assert!(e.contains("sqlite://"), "{e}");
        assert!(DatabaseUrl::parse("sqlite::memory:").is_err());
    }
}
