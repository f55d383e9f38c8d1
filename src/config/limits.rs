//! `[limits]` of the configuration file: the limits every API key has unless `verifyd keys
//! limits` sets its own (docs/configuration.md). A key left out is no limit.

use serde::Deserialize;

use super::file::Problem;
use crate::domain::limits::{Limit, Limits};

/// The table as written: each key one of [`Limit::ALL`]'s names, a count for the limits over a
/// fixed period (`requests_per_second = 30`), else a rate (`per_prefix = "30/h"`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(transparent)]
pub struct LimitsFile(toml::Table);

impl LimitsFile {
    pub fn limits(&self) -> Result<Limits, Problem> {
        let mut limits = Limits::default();
        for (key, value) in &self.0 {
            let problem = |p: String| Problem::new(format!("limits.{key}"), p);
            let Some(limit) = Limit::from_name(key) else {
                let names: Vec<&str> = Limit::ALL.iter().map(|l| l.name()).collect();
                return Err(problem(format!(
                    "unknown field `{key}`, expected one of {}",
                    names.join(", ")
                )));
            };
            let text = match value {
                toml::Value::Integer(n) => n.to_string(),
                toml::Value::String(s) => s.clone(),
                other => return Err(problem(format!("expected a count or a rate, not {other}"))),
            };
            let rate = limit.parse_value(&text).map_err(|e| {
                // The reason without the name it starts with: the key says it.
                problem(
                    e.trim_start_matches(limit.name())
                        .trim_start_matches(": ")
                        .to_owned(),
                )
            })?;
            limits.set(limit, Some(rate));
        }
        Ok(limits)
    }
}

/// The limits as the file writes them, for `config check`.
pub fn to_toml(limits: &Limits) -> toml::Table {
    let mut table = toml::Table::new();
    for limit in Limit::ALL {
        if let Some(rate) = limits.get(limit) {
            let text = limit.write_value(rate);
            let value = match text.parse::<i64>() {
                Ok(n) => toml::Value::Integer(n),
                Err(_) => toml::Value::String(text),
            };
            table.insert(limit.name().into(), value);
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::file::ConfigFile;
    use crate::domain::limits::Rate;

    fn parse(text: &str) -> Result<Limits, String> {
        ConfigFile::parse(std::path::Path::new("v.toml"), text, |_| None)
            .map(|f| f.limits)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn limits_are_read_with_their_rates_and_written_back_the_same() {
        let text = "[limits]\nrequests_per_second = 30\nsearches_per_second = 1\n\
                    per_destination = \"5/10m\"\nper_prefix = \"50/h\"\nper_country = \"500/h\"\n\
                    per_ip = \"10/h\"\nverifications_per_hour = 200\nverifications_per_day = 2000\n";
        let limits = parse(text).unwrap();
        assert_eq!(limits.get(Limit::Requests), Some(Rate::per_second(30)));
        assert_eq!(limits.get(Limit::PerDestination), Rate::parse("5/10m"));
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
            "v.toml: limits.requests_per_second: expected a count from 1, not \"0\""
        );
        assert!(parse("[limits]\nper_number = \"5/m\"\n")
            .unwrap_err()
            .starts_with("v.toml: limits.per_number: unknown field"));
    }
}
