//! What conversion monitoring saw over a period: sends and conversions in all, by country, number
//! prefix and client address, the blocks in force and the decisions taken, as Twilio's Attempts
//! Summary counts them. `verifyd fraud report` prints it for one key or all of them,
//! `GET /v2/verify/attempts/summary` answers it for the caller's key.

use chrono::Duration;
use serde_json::{json, Value};

use crate::domain::fraud::Dimension;
use crate::domain::Instant;
use crate::store::fraud::{Attempts, FraudStore};
use crate::store::StoreResult;

/// The subjects of one dimension a report lists, those of most sends first.
pub const MOST_SUBJECTS: u32 = 100;

/// The longest period a report covers: how long the tallies are kept.
pub const LONGEST: Duration = Duration::days(31);

/// The period a report covers when none is named.
pub const DEFAULT_PERIOD: &str = "24h";

/// A period written `<n>m`, `<n>h` or `<n>d`, from a minute to [`LONGEST`].
pub fn parse_period(text: &str) -> Result<Duration, String> {
    let refuse = || format!("{text:?} is not a period: write 90m, 24h or 7d, at most 31d");
    let unit = text.chars().last().ok_or_else(refuse)?;
    let number: i64 = text[..text.len() - unit.len_utf8()]
        .parse()
        .ok()
        .filter(|n| *n > 0 && *n <= 31 * 24 * 60)
        .ok_or_else(refuse)?;
    let period = match unit {
        'm' => Duration::minutes(number),
        'h' => Duration::hours(number),
        'd' => Duration::days(number),
        _ => return Err(refuse()),
    };
    if period > LONGEST {
        return Err(refuse());
    }
    Ok(period)
}

fn time(t: Instant) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A conversion rate as Twilio writes it: a percentage with two decimals, in a string.
fn rate(sent: u64, converted: u64) -> String {
    if sent == 0 {
        return "0.00".into();
    }
    format!("{:.2}", converted.min(sent) as f64 * 100.0 / sent as f64)
}

fn counts(sent: u64, converted: u64) -> serde_json::Map<String, Value> {
    let mut line = serde_json::Map::new();
    line.insert("attempts".into(), sent.into());
    line.insert("converted".into(), converted.min(sent).into());
    line.insert("unconverted".into(), sent.saturating_sub(converted).into());
    line.insert(
        "conversion_rate_percentage".into(),
        rate(sent, converted).into(),
    );
    line
}

fn subject_line(a: &Attempts) -> Value {
    let mut line = serde_json::Map::new();
    line.insert(
        a.subject.dimension.name().into(),
        a.subject.value.clone().into(),
    );
    line.extend(counts(a.sent, a.converted));
    line.into()
}

/// The report of `account` (every account's together when `None`) from `now - period` to `now`.
pub async fn build(
    store: &dyn FraudStore,
    account: Option<&str>,
    period: Duration,
    now: Instant,
) -> StoreResult<Value> {
    let since = now - period;
    let mut by = serde_json::Map::new();
    let mut total = (0, 0);
    for (dimension, name) in [
        (Dimension::Country, "countries"),
        (Dimension::Prefix, "prefixes"),
        (Dimension::Ip, "ips"),
    ] {
        let found = store
            .fraud_attempts(account, dimension, since, MOST_SUBJECTS)
            .await?;
        // Every send to a number counts under one prefix: the prefixes' sum is the total.
        if dimension == Dimension::Prefix {
            total = (found.sent, found.converted);
        }
        by.insert(name.into(), found.top.iter().map(subject_line).collect());
    }
    let blocks: Vec<Value> = store
        .blocks(account, now)
        .await?
        .into_iter()
        .map(|b| {
            json!({
                "subject": b.subject.key(),
                "network": b.network,
                "blocked_until": time(b.until),
                "times": b.times,
                "reason": b.reason,
            })
        })
        .collect();
    let decisions: Vec<Value> = store
        .decisions(account, since)
        .await?
        .into_iter()
        .map(|d| {
            let mut line = json!({
                "at": time(d.at),
                "action": d.action,
                "subject": d.subject.key(),
                "reason": d.reason,
                "until": d.until.map(time),
            });
            if account.is_none() {
                line["api_key"] = d.account.into();
            }
            line
        })
        .collect();
    let mut report = serde_json::Map::new();
    report.insert("since".into(), time(since).into());
    report.insert("until".into(), time(now).into());
    let (sent, converted) = total;
    report.insert("total_attempts".into(), sent.into());
    report.insert("total_converted".into(), converted.min(sent).into());
    report.insert(
        "total_unconverted".into(),
        sent.saturating_sub(converted).into(),
    );
    report.insert(
        "conversion_rate_percentage".into(),
        rate(sent, converted).into(),
    );
    report.extend(by);
    report.insert("blocks".into(), blocks.into());
    report.insert("decisions".into(), decisions.into());
    Ok(report.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_period_is_minutes_hours_or_days_up_to_a_month() {
        assert_eq!(parse_period("90m"), Ok(Duration::minutes(90)));
        assert_eq!(parse_period("24h"), Ok(Duration::hours(24)));
        assert_eq!(parse_period("31d"), Ok(Duration::days(31)));
        for bad in [
            "", "h", "0h", "-1h", "32d", "745h", "1w", "1.5h", "24 h", "1é",
        ] {
            assert!(parse_period(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_conversion_rate_is_a_percentage_with_two_decimals() {
        assert_eq!(rate(0, 0), "0.00");
        assert_eq!(rate(11, 3), "27.27");
        assert_eq!(rate(4, 4), "100.00");
    }
}
