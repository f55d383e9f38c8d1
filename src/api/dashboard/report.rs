//! The charts' figures, from the rows the store gives: per time bucket (starts, verified,
//! conversion, tries delivered and failed, fraud blocks, receipt latency) and per country,
//! channel and route. Pure: the caller passes the rows and `now`.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::domain::Instant;
use crate::store::fraud::Decision;
use crate::store::report::{Started, Tried};
use crate::store::AttemptState;

/// Rows read per kind at most, for one chart page: the figures say when they were cut.
pub const MOST_ROWS: usize = 200_000;

/// The periods the overview offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Range {
    Day,
    Week,
    Month,
}

impl Range {
    pub const ALL: [Range; 3] = [Range::Day, Range::Week, Range::Month];

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == raw)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Range::Day => "24h",
            Range::Week => "7d",
            Range::Month => "30d",
        }
    }

    /// (bucket length in seconds, buckets).
    fn buckets(self) -> (i64, usize) {
        match self {
            Range::Day => (3600, 24),
            Range::Week => (6 * 3600, 28),
            Range::Month => (24 * 3600, 30),
        }
    }

    /// The first instant the range covers at `now`: the start of its first bucket.
    pub fn since(self, now: Instant) -> Instant {
        let (step, n) = self.buckets();
        let end = (now.timestamp().div_euclid(step) + 1) * step;
        chrono::DateTime::from_timestamp(end - step * n as i64, 0).unwrap_or_default()
    }
}

/// One country's, channel's or route's figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Row {
    pub name: String,
    /// Verifications started (countries) or tries made (channels, routes).
    pub total: u64,
    /// Verified (countries) or delivered (channels, routes).
    pub good: u64,
    /// Tries that failed or were undeliverable (channels, routes).
    pub failed: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Stats {
    /// Each bucket's start, unix seconds.
    pub times: Vec<i64>,
    pub started: Vec<u64>,
    pub verified: Vec<u64>,
    /// Verified per started, in percent; none for a bucket without starts.
    pub conversion: Vec<Option<f64>>,
    pub delivered: Vec<u64>,
    pub failed: Vec<u64>,
    pub blocks: Vec<u64>,
    /// Seconds from a try's start to its delivery receipt: median and 90th percentile.
    pub latency_p50: Vec<Option<f64>>,
    pub latency_p90: Vec<Option<f64>>,
    pub by_country: Vec<Row>,
    pub by_channel: Vec<Row>,
    pub by_route: Vec<Row>,
    /// Whether a kind of row reached [`MOST_ROWS`]: the oldest buckets then miss some.
    pub cut: bool,
}

/// Status code of a verified verification (`domain::Status::Success`).
const SUCCESS: i64 = 1;

pub fn stats(
    range: Range,
    now: Instant,
    started: &[Started],
    tried: &[Tried],
    decisions: &[Decision],
    country_of: impl Fn(&str) -> Option<String>,
) -> Stats {
    let (step, n) = range.buckets();
    let first = range.since(now).timestamp();
    let bucket = |at: Instant| -> Option<usize> {
        let i = (at.timestamp() - first).div_euclid(step);
        (0..n as i64).contains(&i).then_some(i as usize)
    };
    let mut s = Stats {
        times: (0..n as i64).map(|i| first + i * step).collect(),
        started: vec![0; n],
        verified: vec![0; n],
        delivered: vec![0; n],
        failed: vec![0; n],
        blocks: vec![0; n],
        cut: started.len() >= MOST_ROWS || tried.len() >= MOST_ROWS,
        ..Stats::default()
    };
    let mut countries: HashMap<String, Row> = HashMap::new();
    let mut known: HashMap<&str, Option<String>> = HashMap::new();
    for v in started {
        let Some(i) = bucket(v.at) else { continue };
        let verified = v.state == SUCCESS;
        s.started[i] += 1;
        s.verified[i] += u64::from(verified);
        let country = known
            .entry(v.number.as_str())
            .or_insert_with(|| country_of(&v.number))
            .clone()
            .unwrap_or_else(|| "other".into());
        let row = countries.entry(country).or_default();
        row.total += 1;
        row.good += u64::from(verified);
    }
    s.conversion = s
        .started
        .iter()
        .zip(&s.verified)
        .map(|(&n, &v)| (n > 0).then(|| 100.0 * v as f64 / n as f64))
        .collect();
    let mut latencies: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut channels: HashMap<String, Row> = HashMap::new();
    let mut routes: HashMap<String, Row> = HashMap::new();
    for t in tried {
        let Some(i) = bucket(t.created_at) else {
            continue;
        };
        let delivered = t.state == AttemptState::Delivered;
        let failed = matches!(t.state, AttemptState::Failed | AttemptState::Undeliverable);
        s.delivered[i] += u64::from(delivered);
        s.failed[i] += u64::from(failed);
        if delivered && t.updated_at > t.created_at {
            latencies[i].push((t.updated_at - t.created_at).num_milliseconds() as f64 / 1000.0);
        }
        let route = t.route.clone().unwrap_or_else(|| "—".into());
        for row in [
            channels.entry(t.channel.clone()).or_default(),
            routes.entry(route).or_default(),
        ] {
            row.total += 1;
            row.good += u64::from(delivered);
            row.failed += u64::from(failed);
        }
    }
    for mut l in latencies {
        l.sort_by(f64::total_cmp);
        s.latency_p50.push(percentile(&l, 0.5));
        s.latency_p90.push(percentile(&l, 0.9));
    }
    for d in decisions.iter().filter(|d| d.action == "block") {
        if let Some(i) = bucket(d.at) {
            s.blocks[i] += 1;
        }
    }
    s.by_country = ranked(countries);
    s.by_channel = ranked(channels);
    s.by_route = ranked(routes);
    s
}

/// The value below which `p` of the sorted `values` lie (nearest rank).
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// Rows by total, largest first, then by name.
fn ranked(rows: HashMap<String, Row>) -> Vec<Row> {
    let sorted: BTreeMap<String, Row> = rows.into_iter().collect();
    let mut out: Vec<Row> = sorted
        .into_iter()
        .map(|(name, row)| Row { name, ..row })
        .collect();
    out.sort_by_key(|r| std::cmp::Reverse(r.total));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fraud::{Dimension, Subject};

    fn at(s: &str) -> Instant {
        chrono::DateTime::parse_from_rfc3339(s).unwrap().into()
    }

    fn start(t: &str, number: &str, state: i64) -> Started {
        Started {
            at: at(t),
            number: number.into(),
            state,
        }
    }

    fn tried(channel: &str, route: Option<&str>, state: AttemptState, t: &str, secs: i64) -> Tried {
        Tried {
            channel: channel.into(),
            route: route.map(Into::into),
            state,
            created_at: at(t),
            updated_at: at(t) + chrono::Duration::seconds(secs),
        }
    }

    fn country(number: &str) -> Option<String> {
        Some(if number.starts_with("44") { "GB" } else { "FR" }.into())
    }

    const NOW: &str = "2026-12-07T10:30:00Z";

    #[test]
    fn starts_and_conversion_fall_in_their_hour_and_country() {
        let rows = [
            start("2026-12-07T10:05:00Z", "447700900001", 1),
            start("2026-12-07T10:10:00Z", "447700900002", 2),
            start("2026-12-07T09:59:59Z", "33612345678", 1),
            // Before the first bucket: left out.
            start("2026-12-06T10:59:59Z", "447700900003", 1),
        ];
        let s = stats(Range::Day, at(NOW), &rows, &[], &[], country);
        assert_eq!(s.times.len(), 24);
        assert_eq!(
            *s.times.last().unwrap(),
            at("2026-12-07T10:00:00Z").timestamp()
        );
        assert_eq!(s.started[23], 2);
        assert_eq!(s.verified[23], 1);
        assert_eq!(s.conversion[23], Some(50.0));
        assert_eq!(s.started[22], 1);
        assert_eq!(s.conversion[0], None);
        assert_eq!(
            s.by_country,
            vec![
                Row {
                    name: "GB".into(),
                    total: 2,
                    good: 1,
                    failed: 0
                },
                Row {
                    name: "FR".into(),
                    total: 1,
                    good: 1,
                    failed: 0
                },
            ]
        );
    }

    #[test]
    fn tries_count_by_channel_and_route_with_their_receipt_latency() {
        let rows = [
            tried(
                "smpp",
                Some("uk"),
                AttemptState::Delivered,
                "2026-12-07T10:01:00Z",
                4,
            ),
            tried(
                "smpp",
                Some("uk"),
                AttemptState::Delivered,
                "2026-12-07T10:02:00Z",
                2,
            ),
            tried(
                "smpp",
                Some("uk"),
                AttemptState::Delivered,
                "2026-12-07T10:03:00Z",
                10,
            ),
            tried(
                "http",
                None,
                AttemptState::Undeliverable,
                "2026-12-07T10:04:00Z",
                1,
            ),
            tried(
                "http",
                None,
                AttemptState::Submitted,
                "2026-12-07T10:04:00Z",
                0,
            ),
        ];
        let s = stats(Range::Day, at(NOW), &[], &rows, &[], country);
        assert_eq!(s.delivered[23], 3);
        assert_eq!(s.failed[23], 1);
        assert_eq!(s.latency_p50[23], Some(4.0));
        assert_eq!(s.latency_p90[23], Some(10.0));
        assert_eq!(s.latency_p50[22], None);
        assert_eq!(
            s.by_channel,
            vec![
                Row {
                    name: "smpp".into(),
                    total: 3,
                    good: 3,
                    failed: 0
                },
                Row {
                    name: "http".into(),
                    total: 2,
                    good: 0,
                    failed: 1
                },
            ]
        );
        assert_eq!(s.by_route[1].name, "—", "tries without a route");
    }

    #[test]
    fn only_blocks_count_as_fraud_blocks() {
        let decision = |action: &str| Decision {
            account: "k".into(),
            subject: Subject {
                dimension: Dimension::Country,
                value: "GB".into(),
            },
            action: action.into(),
            reason: String::new(),
            at: at("2026-12-07T10:00:00Z"),
            until: None,
        };
        let s = stats(
            Range::Week,
            at(NOW),
            &[],
            &[],
            &[decision("block"), decision("unblock"), decision("block")],
            country,
        );
        assert_eq!(s.times.len(), 28);
        assert_eq!(s.blocks.iter().sum::<u64>(), 2);
    }

    #[test]
    fn ranges_are_named_as_the_links_name_them() {
        for r in Range::ALL {
            assert_eq!(Range::parse(r.as_str()), Some(r));
        }
        assert_eq!(Range::parse("1y"), None);
        assert_eq!(
            Range::Month.since(at(NOW)),
            at("2026-11-08T00:00:00Z"),
            "30 whole days, the last one today"
        );
    }
}
