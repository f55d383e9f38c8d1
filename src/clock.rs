//! Time for the service. Workflow time may run faster than real time (`--clock-speed`) for trying
//! expiry flows by hand; the anchor of that accelerated time lives in the database so that it
//! continues across restarts instead of jumping back.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::Instant;

pub trait Clock: Send + Sync + 'static {
    /// Workflow time now.
    fn now(&self) -> Instant;
    /// Real time left until workflow time reaches `t` (zero if it has).
    fn real_until(&self, t: Instant) -> Duration;
}

fn real_now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Maps real time to workflow time: `virtual = anchor_virtual + (real - anchor_real) * speed`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClockAnchor {
    pub real_ms: i64,
    pub virtual_ms: i64,
    pub speed: f64,
}

impl ClockAnchor {
    fn virtual_at(&self, real_ms: i64) -> i64 {
        self.virtual_ms + ((real_ms - self.real_ms) as f64 * self.speed) as i64
    }

    /// The anchor to run with after a start at `real_ms` with `speed`. Workflow time keeps running
    /// at the old speed while the server is down (so events due meanwhile fire on start) and never
    /// goes backwards. Returns the anchor and whether it changed (and must be stored).
    pub fn resume(stored: Option<ClockAnchor>, speed: f64, real_ms: i64) -> (ClockAnchor, bool) {
        match stored {
            None => (
                ClockAnchor {
                    real_ms,
                    virtual_ms: real_ms,
                    speed,
                },
                true,
            ),
            Some(old) if old.speed == speed => (old, false),
            Some(old) => {
                let virtual_ms = old.virtual_at(real_ms).max(old.virtual_ms);
                (
                    ClockAnchor {
                        real_ms,
                        virtual_ms,
                        speed,
                    },
                    true,
                )
            }
        }
    }
}

/// The production clock: real time, possibly accelerated from an anchor.
#[derive(Debug)]
pub struct ScaledClock {
    anchor: ClockAnchor,
}

impl ScaledClock {
    pub fn new(anchor: ClockAnchor) -> Self {
        Self { anchor }
    }

    pub fn speed(&self) -> f64 {
        self.anchor.speed
    }
}

impl Clock for ScaledClock {
    fn now(&self) -> Instant {
        let ms = self.anchor.virtual_at(real_now_ms());
        chrono::DateTime::from_timestamp_millis(ms).expect("clock within chrono's range")
    }

    fn real_until(&self, t: Instant) -> Duration {
        let ahead_ms = (t - self.now()).num_milliseconds();
        if ahead_ms <= 0 {
            return Duration::ZERO;
        }
        Duration::from_millis((ahead_ms as f64 / self.anchor.speed).ceil() as u64)
    }
}

/// A clock that moves only when told to; for tests of time-dependent behaviour.
#[derive(Debug)]
pub struct ManualClock {
    ms: AtomicI64,
}

impl ManualClock {
    pub fn new(start: Instant) -> Self {
        Self {
            ms: AtomicI64::new(start.timestamp_millis()),
        }
    }

    pub fn advance(&self, by: chrono::Duration) {
        self.ms.fetch_add(by.num_milliseconds(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        chrono::DateTime::from_timestamp_millis(self.ms.load(Ordering::SeqCst)).expect("in range")
    }

    fn real_until(&self, t: Instant) -> Duration {
        // Manual time never advances by itself: poll again soon.
        if t <= self.now() {
            Duration::ZERO
        } else {
            Duration::from_millis(50)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_start_anchors_workflow_time_at_real_time() {
        let (a, changed) = ClockAnchor::resume(None, 10.0, 1_000);
        assert!(changed);
        assert_eq!(a.virtual_at(1_000), 1_000);
        assert_eq!(a.virtual_at(2_000), 11_000);
    }

    #[test]
    fn accelerated_time_keeps_running_while_stopped_and_continues_after_a_restart() {
        let (a, _) = ClockAnchor::resume(None, 10.0, 1_000);
        // Restart 5 s later with the same speed: time went on at 10x.
        let (b, changed) = ClockAnchor::resume(Some(a), 10.0, 6_000);
        assert!(!changed);
        assert_eq!(b.virtual_at(6_000), 51_000);
    }

    #[test]
    fn a_new_speed_reanchors_without_jumping_back() {
        let (a, _) = ClockAnchor::resume(None, 10.0, 1_000);
        let (b, changed) = ClockAnchor::resume(Some(a), 1.0, 2_000);
        assert!(changed);
        assert_eq!(
            b.virtual_at(2_000),
            11_000,
            "continues from where 10x time was"
        );
        assert_eq!(b.virtual_at(3_000), 12_000, "then at real speed");
    }
}
