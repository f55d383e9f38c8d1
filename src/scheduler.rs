//! Moves verifications along in time and hands their deliveries to the dispatcher.
//!
//! The [`Scheduler`] asks the store for verifications whose next step is due (the store fires the
//! event or records the expiry and stores the delivery, leased to this process, in the same
//! transaction), and sweeps up deliveries whose lease ran out: those a crashed process left, or
//! that this one could not send. What happens to a delivery then (which channel, failover,
//! retries, receipts) is `delivery/`'s business.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::clock::Clock;
use crate::crypto::{OsMinter, ServerKey};
use crate::delivery::Dispatcher;
use crate::store::{StoreError, VerificationStore};

/// Verifications advanced per store call.
const CLAIM_BATCH: usize = 512;
/// Deliveries taken over per sweep.
const SWEEP_BATCH: usize = 512;
/// Longest real-time sleep between looks at the store; bounds how late a step can be when the
/// store changed without telling us (another process, a clock change).
const MAX_IDLE: Duration = Duration::from_millis(500);

/// How the service tells the scheduler that a verification has a new step, without making it look
/// at the store for every request. The scheduler publishes when it will look next (real time);
/// only a step due before that wakes it. Under load every request used to wake it, and each
/// wake-up cost two writes and two reads of the store, back to back.
pub struct SchedulerWake {
    notify: Notify,
    /// Real time origin of `looks_at_us`.
    origin: std::time::Instant,
    /// When the scheduler will look at the store next, in microseconds since `origin`; 0 until
    /// its first look (which reads everything anyway).
    looks_at_us: AtomicU64,
}

impl Default for SchedulerWake {
    fn default() -> Self {
        Self {
            notify: Notify::new(),
            origin: std::time::Instant::now(),
            looks_at_us: AtomicU64::new(0),
        }
    }
}

impl SchedulerWake {
    /// A step was stored that comes due `wait` (real time) from now: wakes the scheduler if it
    /// would look later than that. Call after the step is committed.
    pub fn step_due_in(&self, wait: Duration) {
        let due_us = self.micros_from_now(wait);
        if wakes_scheduler(due_us, self.looks_at_us.load(Ordering::SeqCst)) {
            self.notify.notify_one();
        }
    }

    /// The scheduler is about to look at the store, and will look again at most `longest` from
    /// now. Published before the look: a step committed too late for the look to see it then
    /// finds a look time no later than the real one.
    fn looking(&self, longest: Duration) {
        self.looks_at_us
            .store(self.micros_from_now(longest), Ordering::SeqCst);
    }

    /// Sleeps for `wait` (at most the `longest` of the last [`Self::looking`]), or until a step
    /// due earlier is stored.
    async fn sleep(&self, wait: Duration) {
        self.will_look_in(wait);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = self.notify.notified() => {}
        }
    }

    /// Lowers the published look time to `wait` from now; a later one stays (it only costs a
    /// wake-up that was not needed).
    fn will_look_in(&self, wait: Duration) {
        self.looks_at_us
            .fetch_min(self.micros_from_now(wait), Ordering::SeqCst);
    }

    fn micros_from_now(&self, wait: Duration) -> u64 {
        (self.origin.elapsed() + wait).as_micros() as u64
    }
}

/// Whether a step due at `due_us` needs the scheduler woken, when it looks next at `looks_at_us`
/// (both on [`SchedulerWake`]'s clock). 0 means it has not looked yet: its first look finds
/// every step.
fn wakes_scheduler(due_us: u64, looks_at_us: u64) -> bool {
    looks_at_us != 0 && due_us < looks_at_us
}

/// Claims due steps and stale deliveries from the store and feeds the dispatcher.
pub struct Scheduler {
    store: Arc<dyn VerificationStore>,
    clock: Arc<dyn Clock>,
    key: ServerKey,
    dispatcher: Dispatcher,
    wake: Arc<SchedulerWake>,
}

impl Scheduler {
    pub fn new(
        store: Arc<dyn VerificationStore>,
        clock: Arc<dyn Clock>,
        key: ServerKey,
        dispatcher: Dispatcher,
        wake: Arc<SchedulerWake>,
    ) -> Self {
        Self {
            store,
            clock,
            key,
            dispatcher,
            wake,
        }
    }

    /// Takes over deliveries whose lease ran out, then runs every step due now. Returns how many
    /// deliveries it started.
    ///
    /// The sweep goes first, and again before every further batch of due steps: a delivery left
    /// by a process that died is older than any step due now, and handing the step to the
    /// dispatcher first would let a call overtake the SMS it follows. Steps that keep coming due
    /// (after a restart, those of every verification the dead process started) can hold the tick
    /// in its claiming for seconds, and leases run out meanwhile.
    pub async fn tick(&self) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            total += self.sweep().await?;
            let minter = Box::new(OsMinter::new(self.key.clone()));
            let orders = crate::metrics::timed_store(
                "claim_due",
                self.store
                    .claim_due(self.clock.clone(), CLAIM_BATCH, minter),
            )
            .await?;
            total += orders.len();
            self.dispatcher.dispatch(orders);
            let now = self.clock.now();
            let next = self.store.next_due().await?;
            let behind = next.filter(|t| *t <= now).map_or(0.0, |t| {
                (now - t).num_milliseconds().max(0) as f64 / 1_000.0
            });
            metrics::gauge!(crate::metrics::SCHEDULER_LAG).set(behind);
            match next {
                Some(t) if t <= now => continue,
                _ => return Ok(total),
            }
        }
    }

    /// Hands every delivery whose lease ran out to the dispatcher; returns how many.
    async fn sweep(&self) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let stale = self.store.claim_stale_deliveries(SWEEP_BATCH).await?;
            let full = stale.len() == SWEEP_BATCH;
            if !stale.is_empty() {
                tracing::info!(
                    count = stale.len(),
                    "sending deliveries whose lease ran out"
                );
            }
            total += stale.len();
            self.dispatcher.dispatch(stale);
            if !full {
                return Ok(total);
            }
        }
    }

    /// Runs steps as they come due, until `stop` turns true: a tick in progress ends first, so
    /// that what it claimed reaches the dispatcher.
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        while !*stop.borrow_and_update() {
            self.wake.looking(MAX_IDLE);
            let wait = match self.tick().await {
                Ok(_) => match self.store.next_due().await {
                    Ok(Some(t)) => self.clock.real_until(t).min(MAX_IDLE),
                    Ok(None) => MAX_IDLE,
                    Err(e) => {
                        tracing::error!(error = %e, "scheduler could not read the next due time");
                        MAX_IDLE
                    }
                },
                Err(e) => {
                    tracing::error!(error = %e, "scheduler could not advance due verifications");
                    MAX_IDLE
                }
            };
            tokio::select! {
                _ = self.wake.sleep(wait) => {}
                _ = stop.changed() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::dispatch::tests::{order, until, GatedChannel};
    use crate::delivery::{spawn_dispatcher, Router, Routes};
    use crate::domain::{Channel as Medium, DeliveryOrder, EventId, RequestId};
    use crate::store::{Attempt, AttemptError, AttemptId, AttemptState, DeliveryLog};
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use tokio::sync::Semaphore;

    /// A store whose sweeps and claims follow a script; a tick uses nothing else of it.
    struct ScriptedStore {
        stale: Mutex<VecDeque<Vec<DeliveryOrder>>>,
        due: Mutex<VecDeque<Vec<DeliveryOrder>>>,
    }

    #[async_trait::async_trait]
    impl VerificationStore for ScriptedStore {
        async fn create(
            &self,
            _: crate::domain::Verification,
            _: DeliveryOrder,
            _: crate::domain::Instant,
        ) -> crate::store::StoreResult<crate::store::CreateOutcome> {
            unreachable!("a tick creates nothing")
        }
        async fn apply(
            &self,
            _: &str,
            _: &RequestId,
            _: crate::domain::Command,
            _: crate::store::SharedClock,
            _: crate::store::BoxMinter,
        ) -> crate::store::StoreResult<
            Option<(crate::domain::CommandOutcome, crate::domain::Verification)>,
        > {
            unreachable!("a tick applies nothing")
        }
        async fn apply_internal(
            &self,
            _: &RequestId,
            _: crate::domain::Command,
            _: crate::store::SharedClock,
            _: crate::store::BoxMinter,
        ) -> crate::store::StoreResult<
            Option<(crate::domain::CommandOutcome, crate::domain::Verification)>,
        > {
            unreachable!("a tick applies nothing")
        }
        async fn find(
            &self,
            _: &str,
            _: &[RequestId],
        ) -> crate::store::StoreResult<Vec<crate::domain::Verification>> {
            unreachable!("a tick finds nothing")
        }
        async fn claim_due(
            &self,
            _: crate::store::SharedClock,
            _: usize,
            _: crate::store::BoxMinter,
        ) -> crate::store::StoreResult<Vec<DeliveryOrder>> {
            Ok(self.due.lock().unwrap().pop_front().unwrap_or_default())
        }
        async fn next_due(&self) -> crate::store::StoreResult<Option<crate::domain::Instant>> {
            // Something left in the script is due already.
            Ok((!self.due.lock().unwrap().is_empty())
                .then(|| chrono::DateTime::from_timestamp(0, 0).unwrap()))
        }
        async fn undelivered(&self, _: usize) -> crate::store::StoreResult<Vec<DeliveryOrder>> {
            unreachable!("a tick reads no undelivered list")
        }
        async fn claim_stale_deliveries(
            &self,
            _: usize,
        ) -> crate::store::StoreResult<Vec<DeliveryOrder>> {
            Ok(self.stale.lock().unwrap().pop_front().unwrap_or_default())
        }
        async fn mark_delivered(
            &self,
            _: Vec<(RequestId, EventId)>,
        ) -> crate::store::StoreResult<()> {
            Ok(())
        }
    }

    /// The channel here keeps its own record, so the log is never written.
    #[async_trait::async_trait]
    impl DeliveryLog for ScriptedStore {
        async fn attempt_started(
            &self,
            _: &RequestId,
            _: &EventId,
            _: &str,
            _: &str,
            _: Option<&str>,
            _: crate::domain::Instant,
        ) -> crate::store::StoreResult<Option<AttemptId>> {
            unreachable!("no try is recorded")
        }
        async fn attempt_accepted(
            &self,
            _: AttemptId,
            _: &RequestId,
            _: &EventId,
            _: &str,
            _: bool,
            _: crate::domain::Instant,
        ) -> crate::store::StoreResult<()> {
            unreachable!("no try is recorded")
        }
        async fn attempt_failed(
            &self,
            _: AttemptId,
            _: AttemptError,
            _: crate::domain::Instant,
        ) -> crate::store::StoreResult<()> {
            unreachable!("no try is recorded")
        }
        async fn renew_leases(
            &self,
            _: Vec<(RequestId, EventId)>,
        ) -> crate::store::StoreResult<()> {
            Ok(())
        }
        async fn give_back(&self, _: Vec<(RequestId, EventId)>) -> crate::store::StoreResult<()> {
            Ok(())
        }
        async fn apply_receipt(
            &self,
            _: &str,
            _: &str,
            _: AttemptState,
            _: Option<AttemptError>,
            _: crate::domain::Instant,
        ) -> crate::store::StoreResult<crate::store::ReceiptApplied> {
            unreachable!("no receipts here")
        }
        async fn attempts(&self, _: &RequestId) -> crate::store::StoreResult<Vec<Attempt>> {
            unreachable!("nothing reads the log")
        }
    }

    #[tokio::test]
    async fn an_sms_whose_lease_runs_out_while_the_tick_claims_goes_before_its_call() {
        let key = ServerKey::from_bytes([7; 32]);
        let (sms_a, call_a) = (
            order(&key, 1, 1, Medium::Sms),
            order(&key, 1, 2, Medium::Voice),
        );
        let call_b = order(&key, 2, 3, Medium::Voice);
        let name = |o: &DeliveryOrder, what: &str| format!("{} {what}", o.event_id.as_str());
        let (sms_a_sent, call_a_started) = (name(&sms_a, "sent"), name(&call_a, "started"));
        // As after a restart: the first claim takes B's call with more still due; by the second,
        // the lease on A's SMS (left by the dead process) has run out, and A's call is due.
        let store = Arc::new(ScriptedStore {
            stale: Mutex::new(VecDeque::from([vec![], vec![sms_a]])),
            due: Mutex::new(VecDeque::from([vec![call_b], vec![call_a]])),
        });
        let channel = Arc::new(GatedChannel {
            sent: Mutex::default(),
            gate: Semaphore::new(10),
        });
        let clock = Arc::new(crate::clock::ManualClock::new(
            chrono::DateTime::from_timestamp(1_000, 0).unwrap(),
        ));
        let (dispatcher, _worker) = spawn_dispatcher(
            store.clone(),
            Routes::new(Router::with_inbox_channel(channel.clone())),
            key.clone(),
            clock.clone(),
            Duration::from_secs(60),
        );
        let scheduler = Scheduler::new(
            store,
            clock,
            key,
            dispatcher,
            Arc::new(SchedulerWake::default()),
        );

        assert_eq!(scheduler.tick().await.unwrap(), 3);
        let sent = || channel.sent.lock().unwrap().clone();
        until("A's call goes out", || sent().contains(&call_a_started)).await;
        let log = sent();
        let position = |e: &String| log.iter().position(|x| x == e);
        assert!(
            position(&sms_a_sent).is_some_and(|sms| sms < position(&call_a_started).unwrap()),
            "{log:?}"
        );
    }

    /// Whether the scheduler's sleep would end now, without waiting for its timer.
    async fn woken(wake: &SchedulerWake) -> bool {
        // Timeout polls the inner future before its timer: zero means "ready now or not".
        tokio::time::timeout(Duration::ZERO, wake.notify.notified())
            .await
            .is_ok()
    }

    #[test]
    fn only_a_step_due_before_the_next_look_needs_the_scheduler() {
        assert!(wakes_scheduler(1_000, 2_000));
        assert!(!wakes_scheduler(2_000, 2_000));
        assert!(!wakes_scheduler(3_000, 2_000));
    }

    #[test]
    fn before_its_first_look_nothing_wakes_the_scheduler() {
        assert!(!wakes_scheduler(1, 0));
    }

    #[tokio::test]
    async fn a_step_due_after_the_planned_look_leaves_the_scheduler_asleep() {
        let wake = SchedulerWake::default();
        wake.looking(MAX_IDLE);
        wake.step_due_in(Duration::from_secs(60));
        assert!(!woken(&wake).await);
    }

    #[tokio::test]
    async fn a_step_due_before_the_planned_look_wakes_the_scheduler() {
        let wake = SchedulerWake::default();
        wake.looking(MAX_IDLE);
        wake.step_due_in(Duration::from_millis(10));
        assert!(woken(&wake).await);
    }

    #[tokio::test]
    async fn a_shorter_sleep_lowers_the_published_look_time() {
        let wake = SchedulerWake::default();
        wake.looking(Duration::from_secs(10));
        wake.will_look_in(Duration::from_millis(100));
        // Due after the short sleep ends but well before the longest one would.
        wake.step_due_in(Duration::from_secs(5));
        assert!(!woken(&wake).await);
        wake.step_due_in(Duration::from_millis(1));
        assert!(woken(&wake).await);
    }
}
