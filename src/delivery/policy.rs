//! What to do after a try fails: the retry and failover policy, as pure code that takes `now`.
//!
//! A temporary failure moves on to the route's next channel at once. When every channel of the
//! route has failed in a round, the next round starts from the first channel after a pause that
//! doubles from a second up to a minute (longer if a gateway asked to be left alone longer),
//! for as long as the event's PIN is valid. A permanent rejection ends the event's delivery.

use std::time::Duration;

use crate::domain::Instant;

const FIRST_PAUSE: Duration = Duration::from_secs(1);
const LONGEST_PAUSE: Duration = Duration::from_secs(60);
/// The last round starts this long before the PIN's end, at the latest.
const LAST_ROUND: Duration = Duration::from_secs(1);

/// Where an event's delivery stands among the channels of its route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failover {
    channels: usize,
    position: usize,
    round: u32,
    /// The longest `retry_after` a throttling gateway asked for in this round.
    throttled: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Try the route's channel at this position now.
    Try(usize),
    /// Start the next round, from the first channel, at this time.
    RetryAt(Instant),
    /// Stop: the PIN expires before another try could be made.
    GiveUp,
}

impl Failover {
    pub fn new(channels: usize) -> Self {
        assert!(channels > 0, "a route has at least one channel");
        Self {
            channels,
            position: 0,
            round: 0,
            throttled: Duration::ZERO,
        }
    }

    /// The position of the channel to try now.
    pub fn position(&self) -> usize {
        self.position
    }

    /// The try at [`Self::position`] failed for a while (`retry_after` when the gateway said
    /// how long), at `now`; the event's PIN expires at `deadline`.
    pub fn failed(
        &mut self,
        retry_after: Option<Duration>,
        now: Instant,
        deadline: Instant,
    ) -> Next {
        if let Some(wait) = retry_after {
            self.throttled = self.throttled.max(wait);
        }
        if now >= deadline {
            return Next::GiveUp;
        }
        if self.position + 1 < self.channels {
            self.position += 1;
            return Next::Try(self.position);
        }
        let pause = FIRST_PAUSE
            .saturating_mul(1 << self.round.min(16))
            .min(LONGEST_PAUSE)
            .max(self.throttled);
        self.round += 1;
        self.position = 0;
        self.throttled = Duration::ZERO;
        let at = now + chrono::Duration::from_std(pause).expect("a pause of at most minutes");
        if at < deadline {
            return Next::RetryAt(at);
        }
        // A pause that would pass the PIN's end leaves room for one last round just before it.
        let last = deadline - chrono::Duration::from_std(LAST_ROUND).expect("a second");
        if last > now {
            Next::RetryAt(last)
        } else {
            Next::GiveUp
        }
    }

    /// The next round has begun over a route of `channels` channels (a configuration reload
    /// may have changed the route since the last round); the first channel is tried.
    pub fn retrying(&mut self, channels: usize) -> usize {
        assert!(channels > 0, "a route has at least one channel");
        self.channels = channels;
        self.position = 0;
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Instant {
        chrono::DateTime::from_timestamp(1_750_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn a_temporary_failure_moves_to_the_next_channel_at_once() {
        let mut f = Failover::new(3);
        assert_eq!(f.position(), 0);
        assert_eq!(f.failed(None, t(0), t(300)), Next::Try(1));
        assert_eq!(f.failed(None, t(0), t(300)), Next::Try(2));
    }

    #[test]
    fn after_every_channel_failed_the_rounds_restart_with_doubling_pauses() {
        let mut f = Failover::new(2);
        let mut now = t(0);
        let mut pauses = Vec::new();
        for _ in 0..9 {
            assert_eq!(f.failed(None, now, t(3_600)), Next::Try(1));
            match f.failed(None, now, t(3_600)) {
                Next::RetryAt(at) => {
                    pauses.push((at - now).num_seconds());
                    now = at;
                    assert_eq!(f.retrying(2), 0);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(pauses, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn a_throttling_gateway_lengthens_the_pause() {
        let mut f = Failover::new(1);
        assert_eq!(
            f.failed(Some(Duration::from_secs(30)), t(0), t(300)),
            Next::RetryAt(t(30))
        );
        assert_eq!(
            f.failed(None, t(30), t(300)),
            Next::RetryAt(t(32)),
            "for its round only"
        );
    }

    #[test]
    fn a_round_after_a_reload_shortened_the_route_stays_within_it() {
        let mut f = Failover::new(3);
        assert_eq!(f.failed(None, t(0), t(300)), Next::Try(1));
        assert_eq!(f.failed(None, t(0), t(300)), Next::Try(2));
        let Next::RetryAt(at) = f.failed(None, t(0), t(300)) else {
            panic!("a new round")
        };
        assert_eq!(f.retrying(1), 0);
        assert!(
            matches!(f.failed(None, at, t(300)), Next::RetryAt(_)),
            "one channel left: the round ends with it"
        );
    }

    #[test]
    fn a_last_round_comes_just_before_the_pins_end_and_nothing_after() {
        let mut f = Failover::new(1);
        assert_eq!(
            f.failed(Some(Duration::from_secs(60)), t(280), t(300)),
            Next::RetryAt(t(299))
        );
        assert_eq!(f.failed(None, t(299), t(300)), Next::GiveUp);
        let mut f = Failover::new(1);
        assert_eq!(f.failed(None, t(299), t(300)), Next::GiveUp);
        let mut f = Failover::new(2);
        assert_eq!(f.failed(None, t(300), t(300)), Next::GiveUp);
    }
}
