//! Limits that bound what a caller can make verifyd do, and so what it can cost: rates per API
//! key, and verifications started per destination, number prefix and country. Counted in the
//! shared store per bucket with a sliding window (the current fixed window plus the previous
//! one's share of the time that still overlaps), so that every node sees the same counts.

use std::fmt;
use std::net::IpAddr;

use super::destinations::{KeyCountries, COUNTRY_SETTINGS};
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

/// One of the limits a key can have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Limit {
    /// Calls per key (starts, checks, cancels, next steps), a count per second.
    Requests,
    /// Searches and status reads per key, a count per second.
    Searches,
    /// Verifications started to one destination (a number or an address).
    PerDestination,
    /// Verifications started to one number prefix: the number without its last four digits.
    PerPrefix,
    /// Verifications started to one country.
    PerCountry,
    /// Verifications started for one client IP address (IPv6: its /64), where the app says it.
    PerIp,
    /// The key's send budget: verifications started per hour, a count.
    PerHour,
    /// The key's send budget per day, a count.
    PerDay,
}

/// How a limit's value is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Written {
    /// A count over a fixed period of this many seconds (`30` for `requests_per_second`).
    Count(u32),
    /// A count over a period of its own (`5/10m`).
    Rate,
}

impl Limit {
    pub const ALL: [Limit; 8] = [
        Limit::Requests,
        Limit::Searches,
        Limit::PerDestination,
        Limit::PerPrefix,
        Limit::PerCountry,
        Limit::PerIp,
        Limit::PerHour,
        Limit::PerDay,
    ];

    /// Its name, as the file, the command line and the stored text write it.
    pub fn name(self) -> &'static str {
        match self {
            Limit::Requests => "requests_per_second",
            Limit::Searches => "searches_per_second",
            Limit::PerDestination => "per_destination",
            Limit::PerPrefix => "per_prefix",
            Limit::PerCountry => "per_country",
            Limit::PerIp => "per_ip",
            Limit::PerHour => "verifications_per_hour",
            Limit::PerDay => "verifications_per_day",
        }
    }

    pub fn from_name(name: &str) -> Option<Limit> {
        Limit::ALL.into_iter().find(|l| l.name() == name)
    }

    /// How a refusal names it.
    pub fn shown(self) -> &'static str {
        match self {
            Limit::Requests => "requests per second",
            Limit::Searches => "searches per second",
            Limit::PerDestination => "per destination",
            Limit::PerPrefix => "per prefix",
            Limit::PerCountry => "per country",
            Limit::PerIp => "per IP address",
            Limit::PerHour => "verifications per hour",
            Limit::PerDay => "verifications per day",
        }
    }

    /// The first part of its buckets' names in the store.
    fn bucket(self) -> &'static str {
        match self {
            Limit::Requests => "requests",
            Limit::Searches => "searches",
            Limit::PerDestination => "destination",
            Limit::PerPrefix => "prefix",
            Limit::PerCountry => "country",
            Limit::PerIp => "ip",
            Limit::PerHour => "hour",
            Limit::PerDay => "day",
        }
    }

    fn written(self) -> Written {
        match self {
            Limit::Requests | Limit::Searches => Written::Count(1),
            Limit::PerHour => Written::Count(3_600),
            Limit::PerDay => Written::Count(86_400),
            _ => Written::Rate,
        }
    }

    /// Its value from text: a count for the limits over a fixed period, else a rate.
    pub fn parse_value(self, text: &str) -> Result<Rate, String> {
        let text = text.trim();
        match self.written() {
            Written::Count(window_secs) => match text.parse::<u32>() {
                Ok(count) if count > 0 => Ok(Rate { count, window_secs }),
                _ => Err(format!("{}: expected a count from 1, not {text:?}", self.name())),
            },
            Written::Rate => Rate::parse(text).ok_or_else(|| {
                format!(
                    "{}: expected a count over a period such as \"5/10m\" (s, m, h, d; up to 7d), not {text:?}",
                    self.name()
                )
            }),
        }
    }

    /// Its value as [`Self::parse_value`] reads it.
    pub fn write_value(self, rate: Rate) -> String {
        match self.written() {
            Written::Count(_) => rate.count.to_string(),
            Written::Rate => rate.to_string(),
        }
    }

    fn index(self) -> usize {
        Limit::ALL.iter().position(|l| *l == self).unwrap_or(0)
    }
}

/// The limits in force for one API key; `None` is no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits([Option<Rate>; 8]);

impl Limits {
    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }

    pub fn get(&self, limit: Limit) -> Option<Rate> {
        self.0[limit.index()]
    }

    pub fn set(&mut self, limit: Limit, rate: Option<Rate>) {
        self.0[limit.index()] = rate;
    }

    /// These limits with `name` set from `value` as [`Limit::parse_value`] reads it.
    pub fn with(mut self, name: &str, value: &str) -> Result<Self, String> {
        let limit = Limit::from_name(name).ok_or_else(|| not_a_limit(name))?;
        self.set(limit, Some(limit.parse_value(value)?));
        Ok(self)
    }

    /// These limits as one key has them: its own where it sets one.
    pub fn for_key(self, own: &KeyLimits) -> Limits {
        let mut key = self;
        for limit in Limit::ALL {
            if let Some(setting) = own.get(limit) {
                key.set(limit, setting);
            }
        }
        key
    }
}

fn not_a_limit(name: &str) -> String {
    let names: Vec<&str> = Limit::ALL
        .iter()
        .map(|l| l.name())
        .chain(COUNTRY_SETTINGS.iter().map(|(_, name)| *name))
        .collect();
    format!("{name:?} is not a limit (one of {})", names.join(", "))
}

/// One key's own limits, in place of `[limits]`: for each, `None` keeps the file's, `Some(None)`
/// is no limit for this key, `Some(Some(rate))` its own rate. With them, the countries each
/// channel may reach for this key, in place of `[destinations]`'s.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyLimits {
    rates: [Option<Option<Rate>>; 8],
    pub countries: KeyCountries,
}

impl KeyLimits {
    pub fn get(&self, limit: Limit) -> Option<Option<Rate>> {
        self.rates[limit.index()]
    }

    /// Sets limit `name` from `value`: its value ([`Limit::parse_value`]), `none` (no limit for
    /// this key) or `default` (the file's); or a channel's countries ([`KeyCountries::set`]).
    /// The reason when either is wrong.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        if self.countries.set(name, value)? {
            return Ok(());
        }
        let limit = Limit::from_name(name).ok_or_else(|| not_a_limit(name))?;
        self.rates[limit.index()] = match value.trim() {
            "default" => None,
            "none" => Some(None),
            v => Some(Some(
                limit
                    .parse_value(v)
                    .map_err(|e| format!("{e}, none or default"))?,
            )),
        };
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
        let mut entries: Vec<(&'static str, String)> = Limit::ALL
            .into_iter()
            .filter_map(|limit| {
                let value = self.get(limit)?;
                Some((
                    limit.name(),
                    value.map_or_else(|| "none".to_owned(), |rate| limit.write_value(rate)),
                ))
            })
            .collect();
        entries.extend(self.countries.entries());
        entries
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

/// One counter a call must fit in: its name in the store, its limit and rate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bucket {
    pub key: String,
    pub limit: Limit,
    pub rate: Rate,
}

/// Which limit refused a call, and when it would be let through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub limit: &'static str,
    pub retry_after_ms: u64,
}

/// Collects the buckets of one call, each once.
struct Buckets<'a> {
    limits: &'a Limits,
    account: &'a str,
    found: Vec<Bucket>,
}

impl Buckets<'_> {
    /// The key's own bucket of `limit`.
    fn add_key(&mut self, limit: Limit) {
        self.push(limit, format!("{}:{}", limit.bucket(), self.account));
    }

    /// The bucket of `limit` for `value`, where there is one (an address has no country).
    fn add(&mut self, limit: Limit, value: Option<&str>) {
        if let Some(value) = value {
            self.push(
                limit,
                format!("{}:{}:{value}", limit.bucket(), self.account),
            );
        }
    }

    fn push(&mut self, limit: Limit, key: String) {
        let Some(rate) = self.limits.get(limit) else {
            return;
        };
        // Two numbers of one workflow may share a prefix or a country: it counts once.
        if !self.found.iter().any(|b| b.key == key) {
            self.found.push(Bucket { key, limit, rate });
        }
    }
}

/// The buckets a call of `account` counts in; a start also counts in its client's, the key's
/// send budget, and each of its destinations'.
pub fn buckets(
    limits: &Limits,
    account: &str,
    kind: CallKind,
    start: Option<(Option<IpAddr>, &[&Destination])>,
) -> Vec<Bucket> {
    let mut b = Buckets {
        limits,
        account,
        found: Vec::new(),
    };
    b.add_key(match kind {
        CallKind::Request => Limit::Requests,
        CallKind::Search => Limit::Searches,
    });
    if let Some((client, to)) = start {
        if let Some(client) = client {
            b.add(Limit::PerIp, Some(&client_range(client)));
        }
        b.add_key(Limit::PerHour);
        b.add_key(Limit::PerDay);
        for destination in to {
            b.add(Limit::PerDestination, Some(destination.key()));
            let phone = destination.phone();
            b.add(Limit::PerPrefix, phone.map(|n| prefix(n.digits())));
            b.add(Limit::PerCountry, phone.and_then(|n| n.region()));
        }
    }
    b.found
}

/// The addresses one client may be: an IPv4 address, or an IPv6 address's /64, which one
/// household or host is given whole (an IPv4 address mapped into IPv6 counts as itself).
pub fn client_range(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// A number's prefix: the number without its last four digits, where numbers of one range
/// (and one premium-rate operator) differ.
pub fn prefix(digits: &str) -> &str {
    &digits[..digits.len().saturating_sub(4)]
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

    fn limits(pairs: &[(&str, &str)]) -> Limits {
        pairs
            .iter()
            .try_fold(Limits::default(), |l, (name, value)| l.with(name, value))
            .unwrap()
    }

    #[test]
    fn a_key_keeps_the_files_limits_but_those_it_sets_or_turns_off() {
        let file = limits(&[
            ("requests_per_second", "30"),
            ("per_destination", "5/10m"),
            ("per_prefix", "30/h"),
        ]);
        let mut own = KeyLimits::default();
        own.set("per_destination", "1/m").unwrap();
        own.set("per_prefix", "none").unwrap();
        own.set("per_country", "9/h").unwrap();
        let key = file.for_key(&own);
        assert_eq!(key.get(Limit::Requests), Some(Rate::per_second(30)));
        assert_eq!(key.get(Limit::PerDestination), Rate::parse("1/m"));
        assert_eq!(key.get(Limit::PerPrefix), None);
        assert_eq!(key.get(Limit::PerCountry), Rate::parse("9/h"));
        assert_eq!(file.for_key(&KeyLimits::default()), file);
        assert!(Limits::default().is_empty() && !key.is_empty());
    }

    #[test]
    fn budgets_are_counts_per_hour_and_day_and_rates_are_counts_over_a_period() {
        let l = limits(&[
            ("verifications_per_hour", "100"),
            ("verifications_per_day", "1000"),
            ("per_ip", "10/h"),
        ]);
        assert_eq!(l.get(Limit::PerHour), Rate::parse("100/h"));
        assert_eq!(l.get(Limit::PerDay), Rate::parse("1000/d"));
        assert_eq!(l.get(Limit::PerIp), Rate::parse("10/h"));
        assert!(Limits::default()
            .with("verifications_per_hour", "100/h")
            .is_err());
        assert!(Limits::default().with("per_ip", "10").is_err());
        assert!(Limits::default().with("per_number", "1/h").is_err());
        for limit in Limit::ALL {
            assert_eq!(Limit::from_name(limit.name()), Some(limit));
        }
    }

    #[test]
    fn a_keys_limits_are_stored_as_text_and_read_back() {
        let mut own = KeyLimits::default();
        own.set("requests_per_second", "5").unwrap();
        own.set("per_prefix", "none").unwrap();
        own.set("per_destination", "3/10m").unwrap();
        own.set("verifications_per_day", "200").unwrap();
        let text = own.to_string();
        assert_eq!(
            text,
            "requests_per_second=5 per_destination=3/10m per_prefix=none verifications_per_day=200"
        );
        assert_eq!(KeyLimits::parse(&text), Ok(own.clone()));
        own.set("per_prefix", "default").unwrap();
        own.set("verifications_per_day", "default").unwrap();
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

    fn keys(found: Vec<Bucket>) -> Vec<String> {
        found.into_iter().map(|b| b.key).collect()
    }

    #[test]
    fn a_start_counts_per_client_budget_destination_prefix_and_country_of_its_account() {
        let limits = limits(&[
            ("requests_per_second", "30"),
            ("per_destination", "5/10m"),
            ("per_prefix", "50/h"),
            ("per_country", "500/h"),
            ("per_ip", "10/h"),
            ("verifications_per_hour", "100"),
        ]);
        let number = Destination::Phone(PhoneNumber::parse("447700100123", None).unwrap());
        let client = "203.0.113.9".parse().ok();
        assert_eq!(
            keys(buckets(
                &limits,
                "k1",
                CallKind::Request,
                Some((client, &[&number]))
            )),
            [
                "requests:k1",
                "ip:k1:203.0.113.9",
                "hour:k1",
                "destination:k1:447700100123",
                "prefix:k1:44770010",
                "country:k1:GB"
            ]
        );
        // Two numbers of one prefix: the prefix and the country count once.
        let other = Destination::Phone(PhoneNumber::parse("447700100999", None).unwrap());
        assert_eq!(
            keys(buckets(
                &limits,
                "k1",
                CallKind::Request,
                Some((None, &[&number, &other]))
            ))
            .len(),
            6
        );
        let address = Destination::Email(EmailAddress::parse("a@example.com").unwrap());
        assert_eq!(
            keys(buckets(
                &limits,
                "k1",
                CallKind::Search,
                Some((None, &[&address]))
            )),
            ["hour:k1", "destination:k1:a@example.com"]
        );
        assert_eq!(
            keys(buckets(&limits, "k1", CallKind::Request, None)),
            ["requests:k1"]
        );
        assert!(buckets(
            &Limits::default(),
            "k1",
            CallKind::Request,
            Some((client, &[&address]))
        )
        .is_empty());
    }

    #[test]
    fn an_ipv6_client_counts_as_its_64_and_a_mapped_ipv4_as_itself() {
        let range = |ip: &str| client_range(ip.parse().unwrap());
        assert_eq!(range("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(
            range("2001:db8:1:2:ffff:ffff:ffff:ffff"),
            "2001:db8:1:2::/64"
        );
        assert_ne!(range("2001:db8:1:3::1"), range("2001:db8:1:2::1"));
        assert_eq!(range("::ffff:198.51.100.7"), "198.51.100.7");
        assert_eq!(range("198.51.100.7"), "198.51.100.7");
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
