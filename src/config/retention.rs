//! `[retention]` of the configuration file: how long ended verifications are kept
//! (docs/configuration.md, "Retention").

use serde::Deserialize;

use super::file::Problem;

/// How long an ended verification is kept when the file says nothing.
pub const DEFAULT_KEEP_ENDED: chrono::Duration = chrono::Duration::days(90);

/// The longest period `ended` may name: ten years.
const LONGEST_DAYS: i64 = 3_650;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionFile {
    ended: Option<String>,
}

impl RetentionFile {
    /// How long after its start an ended verification is kept; `None` for ever (`"off"`).
    pub fn keep_ended(&self) -> Result<Option<chrono::Duration>, Problem> {
        match self.ended.as_deref().map(str::trim) {
            None => Ok(Some(DEFAULT_KEEP_ENDED)),
            Some("off") => Ok(None),
            Some(text) => parse(text).map(Some).ok_or_else(|| {
                Problem::new(
                    "retention.ended",
                    format!(
                        "{text:?} is not a period: write 12h, 30d or 365d (from 1h to \
                         {LONGEST_DAYS}d), or \"off\" to keep them"
                    ),
                )
            }),
        }
    }
}

fn parse(text: &str) -> Option<chrono::Duration> {
    let unit = text.chars().last()?;
    let number: i64 = text[..text.len() - unit.len_utf8()].parse().ok()?;
    let period = match unit {
        'h' => chrono::Duration::try_hours(number)?,
        'd' => chrono::Duration::try_days(number)?,
        _ => return None,
    };
    (number > 0 && period <= chrono::Duration::days(LONGEST_DAYS)).then_some(period)
}

/// `ended` as the file would write it.
pub fn to_toml(keep: Option<chrono::Duration>) -> String {
    match keep {
        None => "off".into(),
        Some(d) if d.num_hours() % 24 == 0 => format!("{}d", d.num_days()),
        Some(d) => format!("{}h", d.num_hours()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keep(ended: Option<&str>) -> Result<Option<chrono::Duration>, Problem> {
        RetentionFile {
            ended: ended.map(str::to_owned),
        }
        .keep_ended()
    }

    #[test]
    fn ended_verifications_are_kept_ninety_days_unless_the_file_says_otherwise() {
        assert_eq!(keep(None), Ok(Some(chrono::Duration::days(90))));
        assert_eq!(keep(Some("36h")), Ok(Some(chrono::Duration::hours(36))));
        assert_eq!(keep(Some("off")), Ok(None));
        for bad in [
            "0d",
            "90",
            "3651d",
            "1w",
            "-1d",
            "",
            "200000000000d",
            "9223372036854775807h",
        ] {
            let problem = keep(Some(bad)).unwrap_err();
            assert_eq!(problem.key, "retention.ended", "{bad}");
        }
        assert_eq!(to_toml(Some(chrono::Duration::hours(36))), "36h");
        assert_eq!(to_toml(Some(chrono::Duration::days(90))), "90d");
        assert_eq!(to_toml(None), "off");
    }
}
