//! Conversion monitoring against SMS pumping: every send is counted per number prefix, country
//! and client, with whether it converted (a successful check). A subject whose unconverted sends
//! in the last hour or day pass a threshold learned from its own conversions is blocked for a
//! while (or only written down), the way Twilio's Fraud Guard blocks prefixes and Authgear
//! compares unverified codes with the verified ones.

use std::fmt;

use super::limits::{client_range, prefix};
use super::step::Destination;
use super::Instant;

/// What sends are counted under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dimension {
    /// The number without its last four digits.
    Prefix,
    Country,
    /// The client's address (IPv6: its /64).
    Ip,
}

impl Dimension {
    pub const ALL: [Dimension; 3] = [Dimension::Prefix, Dimension::Country, Dimension::Ip];

    pub fn name(self) -> &'static str {
        match self {
            Dimension::Prefix => "prefix",
            Dimension::Country => "country",
            Dimension::Ip => "ip",
        }
    }
}

/// One thing sends are counted under: `prefix:4477001`, `country:GB`, `ip:203.0.113.9`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subject {
    pub dimension: Dimension,
    pub value: String,
}

impl Subject {
    /// As the store keys it.
    pub fn key(&self) -> String {
        format!("{}:{}", self.dimension.name(), self.value)
    }

    pub fn parse(key: &str) -> Option<Self> {
        let (name, value) = key.split_once(':')?;
        let dimension = Dimension::ALL.into_iter().find(|d| d.name() == name)?;
        Some(Self {
            dimension,
            value: value.to_owned(),
        })
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.dimension.name(), self.value)
    }
}

/// What a send to `to` for `client` counts under: nothing for an e-mail address.
pub fn subjects(to: &Destination, client: Option<&str>) -> Vec<Subject> {
    let Some(number) = to.phone() else {
        return Vec::new();
    };
    let mut found = vec![Subject {
        dimension: Dimension::Prefix,
        value: prefix(number.digits()).to_owned(),
    }];
    if let Some(region) = number.region() {
        found.push(Subject {
            dimension: Dimension::Country,
            value: region.to_owned(),
        });
    }
    if let Some(client) = client {
        found.push(Subject {
            dimension: Dimension::Ip,
            value: client.to_owned(),
        });
    }
    found
}

/// A client address as a subject's value and a verification keeps it.
pub fn client_value(ip: std::net::IpAddr) -> String {
    client_range(ip)
}

/// What happens when a subject passes its threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Nothing is counted or decided.
    Off,
    /// The decision is written down; nothing is blocked.
    Record,
    /// The subject is blocked, and the decision written down.
    Block,
}

impl Mode {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "off" => Some(Mode::Off),
            "record" => Some(Mode::Record),
            "block" => Some(Mode::Block),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Record => "record",
            Mode::Block => "block",
        }
    }
}

/// The unconverted sends a subject may have before it is over its threshold, whatever its
/// conversions, per hour and per day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Floors {
    pub hour: u64,
    pub day: u64,
}

/// `[fraud]`.
#[derive(Clone, Debug, PartialEq)]
pub struct FraudRules {
    pub mode: Mode,
    /// Per dimension, in [`Dimension::ALL`]'s order.
    pub floors: [Floors; 3],
    /// How many unconverted sends each conversion allows above the floor: at 1, a subject
    /// passes once fewer than half its sends convert (and it has more than the floor).
    pub unconverted_per_conversion: f64,
    pub blocks: BlockLengths,
}

/// How long blocks last: the first `first_secs`, each later one of the same subject twice the
/// one before, up to `longest_secs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockLengths {
    pub first_secs: i64,
    pub longest_secs: i64,
}

impl BlockLengths {
    /// How long the `times`-th block of one subject lasts.
    pub fn of(self, times: u32) -> i64 {
        let doubled = self
            .first_secs
            .saturating_mul(1i64 << times.saturating_sub(1).min(20));
        doubled.min(self.longest_secs)
    }
}

impl Default for FraudRules {
    fn default() -> Self {
        Self {
            mode: Mode::Record,
            floors: [
                Floors { hour: 10, day: 30 },
                Floors {
                    hour: 100,
                    day: 500,
                },
                Floors { hour: 10, day: 30 },
            ],
            unconverted_per_conversion: 1.0,
            blocks: BlockLengths {
                first_secs: 12 * 3_600,
                longest_secs: 7 * 86_400,
            },
        }
    }
}

/// Sends and conversions of one subject in one hour (conversions counted in the hour of their
/// send).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HourTally {
    /// Start of the hour, in ms since the epoch.
    pub hour: i64,
    pub sent: u64,
    pub converted: u64,
}

pub const HOUR_MS: i64 = 3_600_000;

/// The start of `now`'s hour, in ms.
pub fn hour_of(now: Instant) -> i64 {
    let ms = now.timestamp_millis();
    ms - ms.rem_euclid(HOUR_MS)
}

/// Which window a subject passed its threshold in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    Hour,
    Day,
}

/// A subject over its threshold: what was counted and what was allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub subject: Subject,
    pub window: Window,
    pub sent: u64,
    pub converted: u64,
    pub allowed_unconverted: u64,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} unconverted of {} sends to {} in the last {} (allowed: {})",
            self.sent - self.converted.min(self.sent),
            self.sent,
            self.subject,
            match self.window {
                Window::Hour => "hour",
                Window::Day => "day",
            },
            self.allowed_unconverted
        )
    }
}

impl FraudRules {
    /// The first subject over its threshold at `now`, from each subject's hourly tallies (the
    /// send being made counted). The hour slides: the previous hour counts for the part of it
    /// still within the last 60 minutes; the day is the last 24 hours plus this one.
    pub fn assess(&self, tallies: &[(Subject, Vec<HourTally>)], now: Instant) -> Option<Finding> {
        let this_hour = hour_of(now);
        let elapsed = now.timestamp_millis() - this_hour;
        for (subject, hours) in tallies {
            let floors = self.floors[Dimension::ALL
                .iter()
                .position(|d| *d == subject.dimension)
                .unwrap_or(0)];
            let (mut hour_sent, mut hour_converted) = (0f64, 0f64);
            let (mut day_sent, mut day_converted) = (0u64, 0u64);
            for t in hours {
                if t.hour == this_hour {
                    hour_sent += t.sent as f64;
                    hour_converted += t.converted as f64;
                } else if t.hour == this_hour - HOUR_MS {
                    let share = (HOUR_MS - elapsed) as f64 / HOUR_MS as f64;
                    hour_sent += t.sent as f64 * share;
                    hour_converted += t.converted as f64 * share;
                }
                if t.hour > this_hour - 24 * HOUR_MS {
                    day_sent += t.sent;
                    day_converted += t.converted;
                }
            }
            // Sends that may still be in the hour count whole, conversions only once whole:
            // a burst across the top of an hour gets no more than its floor.
            let windows = [
                (
                    Window::Hour,
                    hour_sent.ceil() as u64,
                    hour_converted.floor() as u64,
                    floors.hour,
                ),
                (Window::Day, day_sent, day_converted, floors.day),
            ];
            for (window, sent, converted, floor) in windows {
                let allowed =
                    floor.max((converted as f64 * self.unconverted_per_conversion).floor() as u64);
                if sent.saturating_sub(converted) > allowed {
                    return Some(Finding {
                        subject: subject.clone(),
                        window,
                        sent,
                        converted,
                        allowed_unconverted: allowed,
                    });
                }
            }
        }
        None
    }
}

/// A subject blocked for an account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    pub subject: Subject,
    /// The network of a blocked prefix, from the operator's map, when it names one.
    pub network: Option<String>,
    pub until: Instant,
    /// How many times the subject has been blocked.
    pub times: u32,
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::types::PhoneNumber;

    /// `secs` after the start of an hour (1 800 000 000 s is a whole hour).
    fn at(secs: i64) -> Instant {
        chrono::DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn prefix_subject() -> Subject {
        Subject::parse("prefix:4477001").unwrap()
    }

    fn tallies(rows: &[(i64, u64, u64)]) -> Vec<(Subject, Vec<HourTally>)> {
        let base = hour_of(at(0));
        vec![(
            prefix_subject(),
            rows.iter()
                .map(|&(h, sent, converted)| HourTally {
                    hour: base + h * HOUR_MS,
                    sent,
                    converted,
                })
                .collect(),
        )]
    }

    #[test]
    fn a_send_counts_under_its_prefix_country_and_client() {
        let to = Destination::Phone(PhoneNumber::parse("447700100123", None).unwrap());
        let keys: Vec<String> = subjects(&to, Some("203.0.113.9"))
            .iter()
            .map(Subject::key)
            .collect();
        assert_eq!(keys, ["prefix:44770010", "country:GB", "ip:203.0.113.9"]);
        assert_eq!(
            Subject::parse("ip:2001:db8::/64").unwrap().value,
            "2001:db8::/64"
        );
        assert_eq!(Subject::parse("network:1"), None);
    }

    #[test]
    fn unconverted_sends_over_the_floor_pass_the_threshold_and_conversions_raise_it() {
        let rules = FraudRules::default();
        // Ten unconverted sends this hour are the floor; the eleventh passes it.
        assert_eq!(rules.assess(&tallies(&[(0, 10, 0)]), at(600)), None);
        let found = rules.assess(&tallies(&[(0, 11, 0)]), at(600)).unwrap();
        assert_eq!(
            (found.window, found.sent, found.allowed_unconverted),
            (Window::Hour, 11, 10)
        );
        // Real users convert four times in five: forty sends, eight unconverted, never over.
        assert_eq!(rules.assess(&tallies(&[(0, 40, 32)]), at(600)), None);
        // Thirty conversions allow thirty unconverted sends in the hour.
        assert_eq!(rules.assess(&tallies(&[(0, 60, 30)]), at(600)), None);
        assert!(rules.assess(&tallies(&[(0, 61, 30)]), at(600)).is_some());
    }

    #[test]
    fn the_hour_slides_and_the_day_adds_up_its_hours() {
        let rules = FraudRules::default();
        // Four in the previous hour, 45 minutes in: one still counts, with nine now; ten
        // minutes in, three do.
        assert_eq!(
            rules.assess(&tallies(&[(-1, 4, 0), (0, 9, 0)]), at(2_700)),
            None
        );
        assert!(rules
            .assess(&tallies(&[(-1, 4, 0), (0, 9, 0)]), at(600))
            .is_some());
        // A burst of ten at the end of an hour, then one 200 s into the next: the ten may all
        // still be within the last 60 minutes, so the eleventh is over the floor.
        assert!(rules
            .assess(&tallies(&[(-1, 10, 0), (0, 1, 0)]), at(200))
            .is_some());
        // Nine a hour for four hours: never ten in an hour, 36 in the day.
        let day = tallies(&[(-3, 9, 0), (-2, 9, 0), (-1, 9, 0), (0, 9, 0)]);
        let found = rules.assess(&day, at(3_599)).unwrap();
        assert_eq!((found.window, found.sent), (Window::Day, 36));
        // Hours older than a day are not counted.
        let old = tallies(&[(-24, 30, 0), (0, 1, 0)]);
        assert_eq!(rules.assess(&old, at(10)), None);
    }

    #[test]
    fn blocks_get_longer_on_repeat_up_to_the_longest() {
        let lengths = FraudRules::default().blocks;
        assert_eq!(lengths.of(1), 12 * 3_600);
        assert_eq!(lengths.of(2), 24 * 3_600);
        assert_eq!(lengths.of(3), 48 * 3_600);
        assert_eq!(lengths.of(10), 7 * 86_400);
        assert_eq!(lengths.of(u32::MAX), 7 * 86_400);
    }
}
