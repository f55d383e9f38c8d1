//! The configuration file (`--config`, TOML): its top-level keys mirror the flags of `serve`, and
//! its `[channels.*]` and `[[routes]]` say where messages go (`delivery.rs`). Every problem is
//! reported as one line naming the file, the key and what is expected.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::delivery::DeliveryConfig;

pub type Table = toml::Table;

/// What is wrong with one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub problem: String,
}

impl Problem {
    pub fn new(key: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            problem: problem.into(),
        }
    }

    pub fn in_file(self, file: &Path) -> ConfigError {
        ConfigError {
            file: file.display().to_string(),
            key: self.key,
            problem: self.problem,
        }
    }
}

/// A configuration file that cannot be used, as one line: `FILE: KEY: what is expected`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {key}: {problem}")]
pub struct ConfigError {
    pub file: String,
    pub key: String,
    pub problem: String,
}

/// Deserializes `value` as the part of the file at `key`, naming the inner key of any problem.
pub fn deserialize<T: DeserializeOwned>(key: &str, value: toml::Value) -> Result<T, Problem> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.path().to_string();
        let key = match (key.is_empty(), inner.as_str()) {
            (_, "" | ".") => key.to_owned(),
            (true, inner) => inner.to_owned(),
            (false, inner) => format!("{key}.{inner}"),
        };
        // The TOML deserializer adds a line that names the key again.
        let text = e.into_inner().to_string();
        Problem::new(key, text.lines().next().unwrap_or_default())
    })
}

/// The top-level keys: each mirrors the `serve` flag of the same name.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopLevel {
    pub listen: Option<SocketAddr>,
    pub database: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub clock_speed: Option<f64>,
    pub secret_key_file: Option<PathBuf>,
    pub currency: Option<String>,
    pub price_verification: Option<Decimal>,
    pub price_sms: Option<Decimal>,
    pub price_call: Option<Decimal>,
    pub delivery_lease: Option<u64>,
    pub header_timeout: Option<u64>,
    pub body_timeout: Option<u64>,
    pub idle_timeout: Option<u64>,
    pub max_connections: Option<u64>,
    pub inbox_hosts: Option<Vec<String>>,
    pub public_url: Option<String>,
    pub channels: Option<Table>,
    pub routes: Option<Vec<toml::Value>>,
    pub limits: Option<super::limits::LimitsFile>,
    pub destinations: Option<super::destinations::DestinationsFile>,
    pub fraud: Option<super::fraud::FraudFile>,
    pub test_numbers: Option<super::test_numbers::TestNumbersFile>,
    pub retention: Option<super::retention::RetentionFile>,
}

/// A price written as a TOML number (`0.05`) or string (`"0.05"`), kept as its text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decimal(pub String);

impl<'de> Deserialize<'de> for Decimal {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Integer(i64),
            Float(f64),
        }
        Ok(Decimal(
            match Raw::deserialize(d)
                .map_err(|_| serde::de::Error::custom("expected a decimal number such as 0.05"))?
            {
                Raw::Text(t) => t,
                Raw::Integer(n) => n.to_string(),
                Raw::Float(f) => f.to_string(),
            },
        ))
    }
}

/// A configuration file, read and checked.
#[derive(Clone, Debug)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub top: TopLevel,
    pub delivery: DeliveryConfig,
    /// `[limits]`: every key's unless it has its own.
    pub limits: crate::domain::limits::Limits,
    /// `[destinations]`: where every key's verifications may go.
    pub destinations: crate::domain::destinations::Destinations,
    /// `[fraud]`: conversion monitoring.
    pub fraud: crate::domain::fraud::FraudRules,
    /// `[retention]`: how long ended verifications are kept (`None`: for ever).
    pub keep_ended: Option<chrono::Duration>,
    /// Keys (`channels.twilio.auth_token`) whose value came from the environment.
    pub from_env: BTreeSet<String>,
}

impl ConfigFile {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_with(path, |name| std::env::var(name).ok())
    }

    /// As [`Self::load`], with `env` in place of the process environment.
    pub fn load_with(
        path: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Problem::new("(file)", format!("cannot be read: {e}")).in_file(path))?;
        Self::parse(path, &text, env)
    }

    pub fn parse(
        path: &Path,
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut table: Table = toml::from_str(text).map_err(|e| {
            let at = e
                .span()
                .map(|span| {
                    let line = text[..span.start].matches('\n').count() + 1;
                    let column = span.start - text[..span.start].rfind('\n').map_or(0, |i| i + 1);
                    format!("line {line}, column {}", column + 1)
                })
                .unwrap_or_else(|| "(syntax)".into());
            Problem::new(at, format!("not valid TOML: {}", e.message().trim())).in_file(path)
        })?;
        let mut from_env = BTreeSet::new();
        if let Some(channels) = table.get_mut("channels") {
            expand_env(channels, "channels", &env, &mut from_env).map_err(|p| p.in_file(path))?;
        }
        let top: TopLevel =
            deserialize("", toml::Value::Table(table)).map_err(|p| p.in_file(path))?;
        let channels = top.channels.clone().unwrap_or_default();
        let routes = top.routes.clone().unwrap_or_default();
        let delivery = DeliveryConfig::parse(top.public_url.clone(), &channels, &routes)
            .map_err(|p| p.in_file(path))?;
        let limits = top
            .limits
            .clone()
            .unwrap_or_default()
            .limits()
            .map_err(|p| p.in_file(path))?;
        let destinations = top
            .destinations
            .clone()
            .unwrap_or_default()
            .destinations()
            .map_err(|p| p.in_file(path))?;
        let fraud = top
            .fraud
            .clone()
            .unwrap_or_default()
            .rules()
            .map_err(|p| p.in_file(path))?;
        let keep_ended = top
            .retention
            .clone()
            .unwrap_or_default()
            .keep_ended()
            .map_err(|p| p.in_file(path))?;
        let mut delivery = delivery;
        delivery.test_numbers = top
            .test_numbers
            .clone()
            .unwrap_or_default()
            .test_numbers()
            .map_err(|p| p.in_file(path))?;
        Ok(Self {
            path: path.to_owned(),
            top,
            delivery,
            limits,
            destinations,
            fraud,
            keep_ended,
            from_env,
        })
    }
}

/// Replaces `${NAME}` in every string under `value` (at `key`) by the environment variable NAME;
/// `$${` is a literal `${`. Records the keys whose value used the environment.
fn expand_env(
    value: &mut toml::Value,
    key: &str,
    env: &impl Fn(&str) -> Option<String>,
    from_env: &mut BTreeSet<String>,
) -> Result<(), Problem> {
    match value {
        toml::Value::String(s) => {
            let (expanded, used) = expand(s, env).map_err(|p| Problem::new(key, p))?;
            if used {
                from_env.insert(key.to_owned());
            }
            *s = expanded;
        }
        toml::Value::Table(t) => {
            for (k, v) in t.iter_mut() {
                expand_env(v, &format!("{key}.{k}"), env, from_env)?;
            }
        }
        toml::Value::Array(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                expand_env(v, &format!("{key}[{i}]"), env, from_env)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// `${NAME}` replaced by `env(NAME)`, `$${` by `${`; returns the text and whether any variable
/// was used.
pub fn expand(text: &str, env: &impl Fn(&str) -> Option<String>) -> Result<(String, bool), String> {
    let mut out = String::with_capacity(text.len());
    let mut used = false;
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(literal) = after.strip_prefix("${") {
            out.push_str("${");
            rest = literal;
        } else if let Some(inner) = after.strip_prefix('{') {
            let close = inner
                .find('}')
                .ok_or_else(|| "an unclosed ${ (write $${ for a literal ${)".to_owned())?;
            let name = &inner[..close];
            let valid = name
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !valid {
                return Err(format!(
                    "${{{name}}} is not a variable name (letters, digits, _)"
                ));
            }
            let value =
                env(name).ok_or_else(|| format!("the environment variable {name} is not set"))?;
            out.push_str(&value);
            used = true;
            rest = &inner[close + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok((out, used))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("s3cret".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn variables_are_replaced_and_a_doubled_dollar_is_literal() {
        assert_eq!(
            expand("Bearer ${TOKEN}", &env).unwrap(),
            ("Bearer s3cret".into(), true)
        );
        assert_eq!(
            expand("$${TOKEN}", &env).unwrap(),
            ("${TOKEN}".into(), false)
        );
        assert_eq!(expand("a$b $ c", &env).unwrap(), ("a$b $ c".into(), false));
        assert_eq!(expand("${EMPTY}x", &env).unwrap(), ("x".into(), true));
        assert_eq!(
            expand("$$${TOKEN}", &env).unwrap(),
            ("$${TOKEN}".into(), false)
        );
    }

    #[test]
    fn a_missing_variable_or_a_bad_reference_is_an_error_naming_it() {
        assert!(expand("${NOPE}", &env).unwrap_err().contains("NOPE"));
        assert!(expand("${TOKEN", &env).unwrap_err().contains("unclosed"));
        assert!(expand("${1X}", &env)
            .unwrap_err()
            .contains("not a variable name"));
    }

    fn parse(text: &str) -> Result<ConfigFile, ConfigError> {
        ConfigFile::parse(Path::new("v.toml"), text, env)
    }

    #[test]
    fn problems_name_the_file_and_the_key() {
        let e = parse("listen = 8080").unwrap_err();
        assert_eq!((e.file.as_str(), e.key.as_str()), ("v.toml", "listen"));
        let e = parse("lisen = \"127.0.0.1:8080\"").unwrap_err();
        assert!(e.problem.contains("unknown field `lisen`"), "{e}");
        let e = parse("listen = ").unwrap_err();
        assert!(e.key.starts_with("line 1"), "{e}");
        let e =
            parse("[channels.gw]\ntype = \"webhook\"\nurl = \"${NOPE}\"\nbody = \"\"").unwrap_err();
        assert_eq!(e.key, "channels.gw.url");
        assert!(e.problem.contains("NOPE"), "{e}");
    }

    #[test]
    fn values_from_the_environment_are_remembered_by_key() {
        let f = parse(
            "[channels.gw]\ntype = \"webhook\"\nurl = \"https://gw.test/send\"\nbody = \"{{text}}\"\n\
             headers = { Authorization = \"Bearer ${TOKEN}\" }\n",
        )
        .unwrap();
        assert_eq!(
            f.from_env.iter().collect::<Vec<_>>(),
            ["channels.gw.headers.Authorization"]
        );
    }

    #[test]
    fn prices_may_be_numbers_or_strings() {
        let f = parse("price_sms = 0.05\nprice_call = \"0.10\"\nprice_verification = 1").unwrap();
        assert_eq!(f.top.price_sms, Some(Decimal("0.05".into())));
        assert_eq!(f.top.price_call, Some(Decimal("0.10".into())));
        assert_eq!(f.top.price_verification, Some(Decimal("1".into())));
    }
}
