//! Server settings, filled from the command line and environment (src/cli.rs) and passed
//! explicitly to [`crate::startup::Application::build`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::bail;

use crate::service::Pricing;

/// Where the data lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
}

impl DatabaseUrl {
    /// `sqlite://verifyd.db` (relative), `sqlite:///var/lib/verifyd/verifyd.db` (absolute) or
    /// `sqlite:verifyd.db`. Other schemes are refused with the list of supported ones.
    pub fn parse(url: &str) -> anyhow::Result<Self> {
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
                 sqlite://verifyd.db)"
            ),
        }
    }

    /// Default place of the server key: beside the SQLite file.
    pub fn default_key_file(&self) -> PathBuf {
        match self {
            DatabaseUrl::Sqlite(path) => {
                let mut name = path.as_os_str().to_owned();
                name.push(".key");
                PathBuf::from(name)
            }
        }
    }

    pub fn sqlite_path(&self) -> &Path {
        match self {
            DatabaseUrl::Sqlite(path) => path,
        }
    }
}

/// Where the server key comes from.
#[derive(Clone, Debug)]
pub enum KeySource {
    /// A file holding 64 hex characters; created with a fresh key when missing.
    File(PathBuf),
    /// The key itself, in hex (from `VERIFYD_SECRET_KEY`).
    Hex(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelKind {
    Inbox,
}

#[derive(Clone, Debug)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Clone, Debug)]
pub struct Settings {
    pub listen: SocketAddr,
    pub database: DatabaseUrl,
    pub key: KeySource,
    pub tls: Option<Tls>,
    /// Workflow time runs this many times faster than real time (inbox channel only).
    pub clock_speed: f64,
    pub channels: Vec<ChannelKind>,
    pub pricing: Pricing,
}

impl Settings {
    /// Settings for a server on `listen` with the SQLite file `db`, everything else default.
    pub fn sqlite(listen: SocketAddr, db: &Path) -> Self {
        let database = DatabaseUrl::Sqlite(db.to_owned());
        Self {
            listen,
            key: KeySource::File(database.default_key_file()),
            database,
            tls: None,
            clock_speed: 1.0,
            channels: vec![ChannelKind::Inbox],
            pricing: Pricing::default(),
        }
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
    fn unknown_schemes_are_refused_with_advice() {
        let e = DatabaseUrl::parse("mysql://x").unwrap_err().to_string();
        assert!(e.contains("sqlite://"), "{e}");
        assert!(DatabaseUrl::parse("sqlite::memory:").is_err());
    }
}
