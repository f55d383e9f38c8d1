//! Limits that bound what a caller can make verifyd do, and so what it can cost: rates per API
//! key, and verifications started per destination, number prefix and country. Counted in the
//! shared store per bucket with a sliding window (the current fixed window plus the previous
//! one's share of the time that still overlaps), so that every node sees the same counts.

use std::fmt;

use super::step::Destination;

/// At most `count` in any `window_secs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rate {
    pub count: u32,
    pub window_secs: u32,
}

impl Rate {
    /// `N/period`: `30/s`, `5/10m`, `50/1h`, `1000/d` (units `s`, `m`, `h`, `d`; a period
    /// without a number is one unit). `N` from 1.
    pub fn parse(text: &str) -> Option<Self> {
        let (count, period) = text.trim().split_once('/')?;
        let count: u32 = count.trim().parse().ok().filter(|n| *n > 0)?;
        let period = period.trim();
        let unit = period.chars().last()?;
        let seconds = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            _ => return None,
        };
        let number = &period[..period.len() - 1];
        let times: u32 = if number.is_empty() {
            1
        } else {
            number.parse().ok().filter(|n| *n > 0)?
        };
        let window_secs = times.checked_mul(seconds).filter(|s| *s <= 7 * 86_400)?;
        Some(Self { count, window_secs })
    }

    pub fn per_second(count: u32) -> Self {
        Self {
            count,
            window_secs: 1,
        }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = self.window_secs;
        let (n, unit) = if w.is_multiple_of(86_400) {
            (w / 86_400, "d")
        } else if w.is_multiple_of(3_600) {
            (w / 3_600, "h")
        } else if w.is_multiple_of(60) {
            (w / 60, "m")
        } else {
            (w, "s")
        };
        if n == 1 {
            write!(f, "{}/{unit}", self.count)
        } else {
            write!(f, "{}/{n}{unit}", self.count)
        }
    }
}

/// The limits in force for one API key; `None` is no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// Calls per key (starts, checks, cancels, next steps), a rate per second.
    pub requests: Option<Rate>,
    /// Searches and status reads per key.
    pub searches: Option<Rate>,
    /// Verifications started to one destination (a number or an address).
    pub per_destination: Option<Rate>,
    /// Verifications started to one number prefix: the number without its last four digits.
    pub per_prefix: Option<Rate>,
    /// Verifications started to one country.
    pub per_country: Option<Rate>,
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }

    /// These limits as one key has them: its own where it sets one.
    pub fn for_key(self, own: &KeyLimits) -> Limits {
        Limits {
            requests: own.requests.unwrap_or(self.requests),
            searches: own.searches.unwrap_or(self.searches),
            per_destination: own.per_destination.unwrap_or(self.per_destination),
            per_prefix: own.per_prefix.unwrap_or(self.per_prefix),
            per_country: own.per_country.unwrap_or(self.per_country),
        }
    }
}

/// One key's own limits, in place of `[limits]`: for each, `None` keeps the file's, `Some(None)`
/// is no limit for this key, `Some(Some(rate))` its own rate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyLimits {
    pub requests: Option<Option<Rate>>,
    pub searches: Option<Option<Rate>>,
    pub per_destination: Option<Option<Rate>>,
    pub per_prefix: Option<Option<Rate>>,
    pub per_country: Option<Option<Rate>>,
}

/// The names of the limits, as the file, the command line and the stored text write them.
pub const NAMES: [&str; 5] = [
    "requests_per_second",
    "searches_per_second",
    "per_destination",
    "per_prefix",
    "per_country",
];

impl KeyLimits {
    fn slot(&mut self, name: &str) -> Option<&mut Option<Option<Rate>>> {
        Some(match name {
            "requests_per_second" => &mut self.requests,
            "searches_per_second" => &mut self.searches,
            "per_destination" => &mut self.per_destination,
            "per_prefix" => &mut self.per_prefix,
            "per_country" => &mut self.per_country,
            _ => return None,
        })
    }

    fn get(&self, name: &str) -> Option<Option<Rate>> {
        let mut copy = *self;
        copy.slot(name).and_then(|slot| *slot)
    }

    /// Sets limit `name` from `value`: a rate (a count per second for the two `_per_second`
    /// ones), `none` (no limit for this key) or `default` (the file's). The reason when either
    /// is wrong.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        let per_second = name.ends_with("_per_second");
        let setting = match value.trim() {
            "default" => None,
            "none" => Some(None),
            v if per_second => match v.parse::<u32>() {
                Ok(n) if n > 0 => Some(Some(Rate::per_second(n))),
                _ => return Err(format!("{name}: expected a count from 1, none or default, not {v:?}")),
            },
            v => match Rate::parse(v) {
                Some(rate) => Some(Some(rate)),
                None => {
                    return Err(format!(
                        "{name}: expected a count over a period such as 5/10m, none or default, not {v:?}"
                    ))
                }
            },
        };
        let slot = self
            .slot(name)
            .ok_or_else(|| format!("{name:?} is not a limit (one of {})", NAMES.join(", ")))?;
        *slot = setting;
        Ok(())
    }

    /// The stored text, `name=value` pairs separated by spaces (`per_prefix=none
    /// per_destination=3/10m`); empty when the key has none of its own.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut limits = KeyLimits::default();
        for pair in text.split_whitespace() {
            let (name, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("{pair:?} is not name=value"))?;
            limits.set(name, value)?;
        }
        Ok(limits)
    }

    /// Each limit this key sets, with its value as [`Self::set`] takes it.
    pub fn entries(&self) -> Vec<(&'static str, String)> {
        NAMES
            .iter()
            .filter_map(|name| {
                let value = self.get(name)?;
                Some((
                    *name,
                    match value {
                        None => "none".to_owned(),
                        Some(rate) if name.ends_with("_per_second") => rate.count.to_string(),
                        Some(rate) => rate.to_string(),
                    },
                ))
            })
            .collect()
    }
}

impl fmt::Display for KeyLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pairs: Vec<String> = self
            .entries()
            .into_iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        f.write_str(&pairs.join(" "))
    }
}

/// What a call of a key counts against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallKind {
    /// A start, a check, a cancel or a next step.
    Request,
    Search,
}

/// One counter a call must fit in: its name in the store, and its rate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bucket {
    pub key: String,
    pub rate: Rate,
}

/// Which limit refused a call, and when it would be let through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub limit: &'static str,
    pub retry_after_ms: u64,
}

/// The buckets of a call of `account`.
pub fn call_buckets(limits: &Limits, account: &str, kind: CallKind) -> Vec<Bucket> {
    let (name, rate) = match kind {
        CallKind::Request => ("requests", limits.requests),
        CallKind::Search => ("searches", limits.searches),
    };
    rate.map(|rate| Bucket {
        key: format!("{name}:{account}"),
        rate,
    })
    .into_iter()
    .collect()
}

/// The buckets a new verification of `account` to `to` counts in, besides its call's.
pub fn start_buckets(limits: &Limits, account: &str, to: &Destination) -> Vec<Bucket> {
    let mut buckets = Vec::new();
    let mut add = |name: &str, rate: Option<Rate>, value: Option<&str>| {
        if let (Some(rate), Some(value)) = (rate, value) {
            buckets.push(Bucket {
                key: format!("{name}:{account}:{value}"),
                rate,
            });
        }
    };
    add("destination", limits.per_destination, Some(to.key()));
    let phone = to.phone();
    let prefix = phone.map(|n| prefix(n.digits()));
    add("prefix", limits.per_prefix, prefix);
    add(
        "country",
        limits.per_country,
        phone.and_then(|n| n.region()),
    );
    buckets
}

/// A number's prefix: the number without its last four digits, where numbers of one range
/// (and one premium-rate operator) differ.
pub fn prefix(digits: &str) -> &str {
    &digits[..digits.len().saturating_sub(4)]
}

/// Which limit a bucket's key stands for, as a refusal names it.
pub fn limit_name(bucket: &Bucket) -> &'static str {
    match bucket.key.split(':').next() {
        Some("requests") => "requests per second",
        Some("searches") => "searches per second",
        Some("destination") => "per destination",
        Some("prefix") => "per prefix",
        Some("country") => "per country",
        _ => "limit",
    }
}

/// Whether one more fits a sliding window whose fixed window began `elapsed_ms` ago and holds
/// `current`, after one of `previous`; else how long until it would fit.
pub fn fits(rate: Rate, previous: u64, current: u64, elapsed_ms: u64) -> Result<(), u64> {
    let window = u64::from(rate.window_secs) * 1_000;
    let limit = u64::from(rate.count);
    let elapsed = elapsed_ms.min(window);
    // The previous window's hits spread evenly over it: the share still inside the last
    // `window` is the part of it that has not yet slid out.
    let carried = previous * (window - elapsed);
    if current * window + carried < limit * window {
        return Ok(());
    }
    if current >= limit {
        // Only the next fixed window can take it, once enough of these (its previous ones
        // then) have slid out: current·(window − t) < limit·window.
        let t = (current - limit) * window / current + 1;
        return Err(window - elapsed + t);
    }
    // Once enough of the previous window has slid out:
    // current·window + previous·(window − e) < limit·window.
    let e = (previous + current - limit) * window / previous + 1;
    Err(e.saturating_sub(elapsed).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::types::{EmailAddress, PhoneNumber};

    #[test]
    fn a_rate_is_a_count_over_a_period() {
        let rate = |t| Rate::parse(t).map(|r| (r.count, r.window_secs));
        assert_eq!(rate("30/s"), Some((30, 1)));
        assert_eq!(rate("5/10m"), Some((5, 600)));
        assert_eq!(rate(" 50 / 1h "), Some((50, 3_600)));
        assert_eq!(rate("1000/d"), Some((1_000, 86_400)));
        for bad in [
            "", "5", "0/s", "5/0m", "5/10", "5/10x", "-1/s", "5/8d", "x/s",
        ] {
            assert_eq!(Rate::parse(bad), None, "{bad:?}");
        }
        for text in ["30/s", "5/10m", "50/h", "1000/d", "7/90s"] {
            assert_eq!(Rate::parse(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn a_key_keeps_the_files_limits_but_those_it_sets_or_turns_off() {
        let file = Limits {
            requests: Some(Rate::per_second(30)),
            per_destination: Rate::parse("5/10m"),
            per_prefix: Rate::parse("30/h"),
            ..Limits::default()
        };
        let mut own = KeyLimits::default();
        own.set("per_destination", "1/m").unwrap();
        own.set("per_prefix", "none").unwrap();
        own.set("per_country", "9/h").unwrap();
        let key = file.for_key(&own);
        assert_eq!(key.requests, Some(Rate::per_second(30)));
        assert_eq!(key.per_destination, Rate::parse("1/m"));
        assert_eq!(key.per_prefix, None);
        assert_eq!(key.per_country, Rate::parse("9/h"));
        assert_eq!(file.for_key(&KeyLimits::default()), file);
        assert!(Limits::default().is_empty() && !key.is_empty());
    }

    #[test]
    fn a_keys_limits_are_stored_as_text_and_read_back() {
        let mut own = KeyLimits::default();
        own.set("requests_per_second", "5").unwrap();
        own.set("per_prefix", "none").unwrap();
        own.set("per_destination", "3/10m").unwrap();
        let text = own.to_string();
        assert_eq!(
            text,
            "requests_per_second=5 per_destination=3/10m per_prefix=none"
        );
        assert_eq!(KeyLimits::parse(&text), Ok(own));
        own.set("per_prefix", "default").unwrap();
        assert_eq!(
            own.to_string(),
            "requests_per_second=5 per_destination=3/10m"
        );
        assert_eq!(KeyLimits::parse(""), Ok(KeyLimits::default()));
        for bad in [
            "per_number=5/m",
            "per_prefix",
            "requests_per_second=5/m",
            "per_country=lots",
        ] {
            assert!(KeyLimits::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_start_counts_per_destination_prefix_and_country_of_its_account() {
        let limits = Limits {
            per_destination: Rate::parse("5/10m"),
            per_prefix: Rate::parse("50/h"),
            per_country: Rate::parse("500/h"),
            ..Limits::default()
        };
        let number = PhoneNumber::parse("447700100123", None).unwrap();
        let keys: Vec<String> = start_buckets(&limits, "k1", &Destination::Phone(number))
            .into_iter()
            .map(|b| b.key)
            .collect();
        assert_eq!(
            keys,
            [
                "destination:k1:447700100123",
                "prefix:k1:44770010",
                "country:k1:GB"
            ]
        );
        let address = Destination::Email(EmailAddress::parse("a@example.com").unwrap());
        let keys: Vec<String> = start_buckets(&limits, "k1", &address)
            .into_iter()
            .map(|b| b.key)
            .collect();
        assert_eq!(keys, ["destination:k1:a@example.com"]);
        assert!(start_buckets(&Limits::default(), "k1", &address).is_empty());
    }

    #[test]
    fn a_sliding_window_lets_the_count_through_and_says_when_the_next_one_fits() {
        let rate = Rate::parse("10/m").unwrap();
        assert_eq!(fits(rate, 0, 9, 0), Ok(()));
        // Ten in this window: the next fits once the window has turned and its own ten are
        // the previous ones, nearly all still inside the last minute.
        assert_eq!(fits(rate, 0, 10, 15_000), Err(45_000 + 1));
        assert_eq!(fits(rate, 10, 0, 1), Ok(()));
        assert!(fits(rate, 10, 0, 0).is_err());
        assert_eq!(fits(rate, 0, 20, 0), Err(60_000 + 30_001));
        // Ten in the previous window, a quarter of a minute in: 7.5 still count.
        assert_eq!(fits(rate, 10, 2, 15_000), Ok(()));
        assert!(fits(rate, 10, 3, 15_000).is_err());
        let Err(wait) = fits(rate, 10, 3, 15_000) else {
            unreachable!()
        };
        // After the wait the carried share plus three is below ten.
        assert_eq!(fits(rate, 10, 3, 15_000 + wait), Ok(()));
        assert!(fits(rate, 10, 3, 15_000 + wait - 1).is_err());
    }
}
