//! `[limits]` of the configuration file: the limits every API key has unless `verifyd keys
//! limits` sets its own (docs/configuration.md). A key left out is no limit.

use serde::Deserialize;

use super::file::Problem;
use crate::domain::limits::{Limits, Rate};

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    requests_per_second: Option<u32>,
    searches_per_second: Option<u32>,
    per_destination: Option<String>,
    per_prefix: Option<String>,
    per_country: Option<String>,
}

impl LimitsFile {
    pub fn limits(&self) -> Result<Limits, Problem> {
        let per_second = |key: &str, n: Option<u32>| match n {
            Some(0) => Err(Problem::new(format!("limits.{key}"), "must be at least 1")),
            n => Ok(n.map(Rate::per_second)),
        };
        let rate = |key: &str, text: &Option<String>| {
            text.as_deref()
                .map(|t| {
                    Rate::parse(t).ok_or_else(|| {
                        Problem::new(
                            format!("limits.{key}"),
                            format!(
                                "expected a count over a period such as \"5/10m\" (s, m, h, d; up to 7d), not {t:?}"
                            ),
                        )
                    })
                })
                .transpose()
        };
        Ok(Limits {
            requests: per_second("requests_per_second", self.requests_per_second)?,
            searches: per_second("searches_per_second", self.searches_per_second)?,
            per_destination: rate("per_destination", &self.per_destination)?,
            per_prefix: rate("per_prefix", &self.per_prefix)?,
            per_country: rate("per_country", &self.per_country)?,
        })
    }
}

/// The limits as the file writes them, for `config check`.
pub fn to_toml(limits: &Limits) -> toml::Table {
    let mut table = toml::Table::new();
    if let Some(r) = limits.requests {
        table.insert("requests_per_second".into(), i64::from(r.count).into());
    }
    if let Some(r) = limits.searches {
        table.insert("searches_per_second".into(), i64::from(r.count).into());
    }
    for (key, rate) in [
        ("per_destination", limits.per_destination),
        ("per_prefix", limits.per_prefix),
        ("per_country", limits.per_country),
    ] {
        if let Some(r) = rate {
            table.insert(key.into(), r.to_string().into());
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::file::ConfigFile;

    fn parse(text: &str) -> Result<Limits, String> {
        ConfigFile::parse(std::path::Path::new("v.toml"), text, |_| None)
            .map(|f| f.limits)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn limits_are_read_with_their_rates_and_written_back_the_same() {
        let text = "[limits]\nrequests_per_second = 30\nsearches_per_second = 1\n\
                    per_destination = \"5/10m\"\nper_prefix = \"50/h\"\nper_country = \"500/h\"\n";
        let limits = parse(text).unwrap();
        assert_eq!(limits.requests, Some(Rate::per_second(30)));
        assert_eq!(limits.per_destination, Rate::parse("5/10m"));
        let back = toml::to_string(&to_toml(&limits)).unwrap();
        assert_eq!(parse(&format!("[limits]\n{back}")).unwrap(), limits);
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn a_wrong_limit_is_refused_with_its_key() {
        assert_eq!(
            parse("[limits]\nper_prefix = \"50 an hour\"\n").unwrap_err(),
            "v.toml: limits.per_prefix: expected a count over a period such as \"5/10m\" (s, m, h, d; up to 7d), not \"50 an hour\""
        );
        assert_eq!(
            parse("[limits]\nrequests_per_second = 0\n").unwrap_err(),
            "v.toml: limits.requests_per_second: must be at least 1"
        );
        assert!(parse("[limits]\nper_number = \"5/m\"\n")
            .unwrap_err()
            .starts_with("v.toml: limits.per_number: unknown field"));
    }
}
