//! Requests and connections refused before anyone was authenticated, logged in aggregate: a flood
//! of them would otherwise write a line each (25,000 lines in 4 s were seen). In each window the
//! first refusal of a client gets a line of its own (at most [`LINES_PER_WINDOW`] such lines); the
//! others are counted per client and logged as one line per client when the window ends.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often the counts are logged.
pub const WINDOW: Duration = Duration::from_secs(10);
/// Refusals logged one by one per window, all clients together.
const LINES_PER_WINDOW: u32 = 20;
/// Clients counted one by one per window; refusals of further clients are counted together.
const CLIENTS_PER_WINDOW: usize = 1024;
/// Clients named in a window's summary, the busiest first; the rest share one line.
const CLIENTS_SUMMED_UP: usize = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    MissingCredentials,
    BadCredentials,
    DisabledKey,
    /// An inbox page asked for under a host name the inbox does not answer to.
    InboxHost,
    /// A connection that sent no complete request headers within the header timeout.
    HeaderTimeout,
    /// A request whose body did not arrive within the body timeout.
    BodyTimeout,
    /// A receipt callback with an unknown URL or a bad signature.
    BadReceipt,
}

const REASONS: [Reason; 7] = [
    Reason::MissingCredentials,
    Reason::BadCredentials,
    Reason::DisabledKey,
    Reason::InboxHost,
    Reason::HeaderTimeout,
    Reason::BodyTimeout,
    Reason::BadReceipt,
];

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MissingCredentials => "missing credentials",
            Reason::BadCredentials => "bad credentials",
            Reason::DisabledKey => "disabled key",
            Reason::InboxHost => "inbox asked for under another host name",
            Reason::HeaderTimeout => "request headers too slow",
            Reason::BodyTimeout => "request body too slow",
            Reason::BadReceipt => "receipt with an unknown URL or a bad signature",
        }
    }

    fn index(self) -> usize {
        REASONS.iter().position(|r| *r == self).expect("listed")
    }
}

/// A client as refusals are counted: an IPv4 address, or the /64 of an IPv6 address (what one
/// subscriber is usually given).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Client(IpAddr);

impl Client {
    pub fn of(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(_) => Client(addr),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Client(IpAddr::V4(v4)),
                None => {
                    let bits = u128::from(v6) & !((1u128 << 64) - 1);
                    Client(IpAddr::V6(bits.into()))
                }
            },
        }
    }
}

impl std::fmt::Display for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// A client address for a log line: the address, or `unknown`.
pub fn shown(addr: Option<IpAddr>) -> impl std::fmt::Display {
    match addr {
        Some(addr) => addr.to_string(),
        None => "unknown".to_owned(),
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Tally {
    /// Refusals counted without a line of their own, by reason.
    unlogged: [u64; REASONS.len()],
    logged: u64,
}

impl Tally {
    fn unlogged(&self) -> u64 {
        self.unlogged.iter().sum()
    }
}

#[derive(Default)]
struct Window {
    lines: u32,
    clients: HashMap<Client, Tally>,
    /// Clients past [`CLIENTS_PER_WINDOW`], together.
    others: Tally,
}

/// One line of a window's summary: refusals that were counted without a line of their own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// `None` for the clients not named, together.
    pub client: Option<Client>,
    pub refused: u64,
    /// "bad credentials: 24999, missing credentials: 1"
    pub reasons: String,
}

#[derive(Default)]
pub struct Refusals {
    window: Mutex<Window>,
}

impl Refusals {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Counts a refusal; true when the caller should log it on a line of its own.
    pub fn count(&self, addr: Option<IpAddr>, reason: Reason) -> bool {
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let known = w.clients.len();
        let w = &mut *w;
        let tally = match addr.map(Client::of) {
            Some(client) if known < CLIENTS_PER_WINDOW || w.clients.contains_key(&client) => {
                w.clients.entry(client).or_default()
            }
            _ => &mut w.others,
        };
        let line = tally.logged == 0 && w.lines < LINES_PER_WINDOW;
        if line {
            tally.logged += 1;
            w.lines += 1;
        } else {
            tally.unlogged[reason.index()] += 1;
        }
        line
    }

    /// Ends the window: what was counted without a line, the busiest clients first.
    pub fn take(&self) -> Vec<Summary> {
        let window = std::mem::take(&mut *self.window.lock().unwrap_or_else(|e| e.into_inner()));
        let mut busy: Vec<(Client, Tally)> = window
            .clients
            .into_iter()
            .filter(|(_, t)| t.unlogged() > 0)
            .collect();
        busy.sort_by_key(|(_, t)| std::cmp::Reverse(t.unlogged()));
        let mut out: Vec<Summary> = Vec::new();
        let mut rest = window.others;
        for (i, (client, tally)) in busy.into_iter().enumerate() {
            if i < CLIENTS_SUMMED_UP {
                out.push(summary(Some(client), &tally));
            } else {
                for (sum, n) in rest.unlogged.iter_mut().zip(tally.unlogged) {
                    *sum += n;
                }
            }
        }
        if rest.unlogged() > 0 {
            out.push(summary(None, &rest));
        }
        out
    }

    /// Logs each window's summary, forever.
    pub async fn log_forever(self: Arc<Self>) {
        let mut every = tokio::time::interval(WINDOW);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        every.tick().await;
        loop {
            every.tick().await;
            for s in self.take() {
                let client = s.client.map(|c| c.to_string());
                tracing::info!(
                    client = %client.as_deref().unwrap_or("others"),
                    refused = s.refused,
                    reasons = %s.reasons,
                    window_s = WINDOW.as_secs(),
                    "refused requests, counted instead of logged one by one"
                );
            }
        }
    }
}

fn summary(client: Option<Client>, tally: &Tally) -> Summary {
    let reasons = REASONS
        .iter()
        .zip(tally.unlogged)
        .filter(|(_, n)| *n > 0)
        .map(|(r, n)| format!("{}: {n}", r.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    Summary {
        client,
        refused: tally.unlogged(),
        reasons,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn a_flood_from_one_client_gets_one_line_and_one_summary() {
        let r = Refusals::default();
        let lines = (0..25_000)
            .filter(|_| r.count(ip("192.0.2.7"), Reason::BadCredentials))
            .count();
        assert_eq!(lines, 1);
        assert!(!r.count(ip("192.0.2.7"), Reason::MissingCredentials));
        let summary = r.take();
        assert_eq!(
            summary,
            [Summary {
                client: Some(Client::of("192.0.2.7".parse().unwrap())),
                refused: 25_000,
                reasons: "missing credentials: 1, bad credentials: 24999".into(),
            }]
        );
        assert!(r.take().is_empty(), "a new window starts empty");
        assert!(
            r.count(ip("192.0.2.7"), Reason::BadCredentials),
            "and logs the client's first refusal again"
        );
    }

    #[test]
    fn a_single_refusal_is_logged_and_not_summed_up() {
        let r = Refusals::default();
        assert!(r.count(ip("192.0.2.1"), Reason::BadCredentials));
        assert!(r.take().is_empty());
    }

    #[test]
    fn lines_per_window_are_bounded_whatever_the_number_of_clients() {
        let r = Refusals::default();
        let lines = (0..5_000u32)
            .filter(|i| {
                let addr = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
                r.count(Some(addr), Reason::BadCredentials)
            })
            .count();
        assert_eq!(lines, LINES_PER_WINDOW as usize);
        let summary = r.take();
        assert_eq!(summary.len(), CLIENTS_SUMMED_UP + 1, "{summary:?}");
        assert_eq!(summary[CLIENTS_SUMMED_UP].client, None);
        let refused: u64 = summary.iter().map(|s| s.refused).sum();
        assert_eq!(refused, 5_000 - u64::from(LINES_PER_WINDOW));
    }

    #[test]
    fn the_busiest_clients_are_named_first_and_the_rest_share_a_line() {
        let r = Refusals::default();
        for i in 0..15u32 {
            let addr = IpAddr::V4(std::net::Ipv4Addr::from(0xc000_0200 + i));
            for _ in 0..=(i + 1) {
                r.count(Some(addr), Reason::BadCredentials);
            }
        }
        let summary = r.take();
        assert_eq!(summary.len(), CLIENTS_SUMMED_UP + 1);
        assert_eq!(summary[0].client.unwrap().to_string(), "192.0.2.14");
        assert_eq!(summary[0].refused, 15);
        assert_eq!(summary[CLIENTS_SUMMED_UP].refused, 1 + 2 + 3 + 4 + 5);
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64_bit_prefix() {
        let r = Refusals::default();
        assert!(r.count(ip("2001:db8:1:2::1"), Reason::BadCredentials));
        assert!(!r.count(ip("2001:db8:1:2:ffff::9"), Reason::BadCredentials));
        assert!(r.count(ip("2001:db8:1:3::1"), Reason::BadCredentials));
        assert_eq!(r.take()[0].client.unwrap().to_string(), "2001:db8:1:2::/64");
        assert_eq!(
            Client::of("::ffff:192.0.2.1".parse().unwrap()).to_string(),
            "192.0.2.1"
        );
    }

    #[test]
    fn refusals_without_an_address_are_counted_together() {
        let r = Refusals::default();
        assert!(r.count(None, Reason::HeaderTimeout));
        assert!(!r.count(None, Reason::HeaderTimeout));
        let summary = r.take();
        assert_eq!(summary[0].client, None);
        assert_eq!(summary[0].refused, 1);
    }
}
