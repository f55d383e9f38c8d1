//! `[fraud]` of the configuration file: conversion monitoring (docs/configuration.md, "Fraud").

use serde::Deserialize;

use super::file::Problem;
use crate::domain::fraud::{BlockLengths, Floors, FraudRules, Mode};

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FraudFile {
    mode: Option<String>,
    block_hours: Option<u32>,
    longest_block_hours: Option<u32>,
    unconverted_per_conversion: Option<f64>,
    prefix_per_hour: Option<u64>,
    prefix_per_day: Option<u64>,
    country_per_hour: Option<u64>,
    country_per_day: Option<u64>,
    ip_per_hour: Option<u64>,
    ip_per_day: Option<u64>,
}

impl FraudFile {
    pub fn rules(&self) -> Result<FraudRules, Problem> {
        let mut rules = FraudRules::default();
        if let Some(mode) = &self.mode {
            rules.mode = Mode::parse(mode).ok_or_else(|| {
                Problem::new(
                    "fraud.mode",
                    format!("expected \"off\", \"record\" or \"block\", not {mode:?}"),
                )
            })?;
        }
        let hours = |key: &str, value: Option<u32>, default: i64| match value {
            Some(0) => Err(Problem::new(format!("fraud.{key}"), "must be at least 1")),
            Some(h) => Ok(i64::from(h) * 3_600),
            None => Ok(default),
        };
        rules.blocks = BlockLengths {
            first_secs: hours("block_hours", self.block_hours, rules.blocks.first_secs)?,
            longest_secs: hours(
                "longest_block_hours",
                self.longest_block_hours,
                rules.blocks.longest_secs,
            )?,
        };
        if rules.blocks.longest_secs < rules.blocks.first_secs {
            return Err(Problem::new(
                "fraud.longest_block_hours",
                "must be at least block_hours",
            ));
        }
        if let Some(ratio) = self.unconverted_per_conversion {
            if !(ratio.is_finite() && ratio >= 0.0) {
                return Err(Problem::new(
                    "fraud.unconverted_per_conversion",
                    "must be a number from 0",
                ));
            }
            rules.unconverted_per_conversion = ratio;
        }
        let given = [
            (self.prefix_per_hour, self.prefix_per_day),
            (self.country_per_hour, self.country_per_day),
            (self.ip_per_hour, self.ip_per_day),
        ];
        for (floors, (hour, day)) in rules.floors.iter_mut().zip(given) {
            *floors = Floors {
                hour: hour.unwrap_or(floors.hour),
                day: day.unwrap_or(floors.day),
            };
        }
        Ok(rules)
    }
}

/// The rules as the file writes them, for `config check`.
pub fn to_toml(rules: &FraudRules) -> toml::Table {
    let mut t = toml::Table::new();
    t.insert("mode".into(), rules.mode.name().into());
    t.insert(
        "block_hours".into(),
        (rules.blocks.first_secs / 3_600).into(),
    );
    t.insert(
        "longest_block_hours".into(),
        (rules.blocks.longest_secs / 3_600).into(),
    );
    t.insert(
        "unconverted_per_conversion".into(),
        rules.unconverted_per_conversion.into(),
    );
    for (name, floors) in ["prefix", "country", "ip"].iter().zip(rules.floors) {
        t.insert(format!("{name}_per_hour"), (floors.hour as i64).into());
        t.insert(format!("{name}_per_day"), (floors.day as i64).into());
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::file::ConfigFile;

    fn parse(text: &str) -> Result<FraudRules, String> {
        ConfigFile::parse(std::path::Path::new("v.toml"), text, |_| None)
            .map(|f| f.fraud)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn fraud_rules_are_read_and_written_back_the_same() {
        let rules = parse(
            "[fraud]\nmode = \"block\"\nblock_hours = 6\nprefix_per_hour = 5\nip_per_day = 50\n\
             unconverted_per_conversion = 0.5\n",
        )
        .unwrap();
        assert_eq!(rules.mode, Mode::Block);
        assert_eq!(rules.blocks.first_secs, 6 * 3_600);
        assert_eq!(rules.floors[0], Floors { hour: 5, day: 30 });
        assert_eq!(rules.floors[2].day, 50);
        let mut file = toml::Table::new();
        file.insert("fraud".into(), to_toml(&rules).into());
        assert_eq!(parse(&toml::to_string(&file).unwrap()).unwrap(), rules);
        assert_eq!(parse("").unwrap(), FraudRules::default());
        assert_eq!(FraudRules::default().mode, Mode::Record);
    }

    #[test]
    fn a_wrong_fraud_rule_is_refused_with_its_key() {
        assert_eq!(
            parse("[fraud]\nmode = \"deny\"\n").unwrap_err(),
            "v.toml: fraud.mode: expected \"off\", \"record\" or \"block\", not \"deny\""
        );
        assert_eq!(
            parse("[fraud]\nblock_hours = 0\n").unwrap_err(),
            "v.toml: fraud.block_hours: must be at least 1"
        );
        assert!(parse("[fraud]\nblock_hours = 200\n")
            .unwrap_err()
            .contains("fraud.longest_block_hours"));
        assert!(parse("[fraud]\nprefix_per_minute = 3\n")
            .unwrap_err()
            .starts_with("v.toml: fraud.prefix_per_minute: unknown field"));
    }
}
