//! Moves verifications along in time and hands their messages to channels.
//!
//! The [`Scheduler`] asks the store for verifications whose next step is due (the store fires the
//! event or records the expiry and stores the delivery, leased to this process, in the same
//! transaction), and sweeps up deliveries whose lease ran out: those a crashed process left, or
//! that this one could not send. The [`Dispatcher`] renders each delivery, passes it to its channel
//! and then deletes it from the store. Delivery is at least once; the inbox drops a repeated event
//! id, so it shows every message once.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Notify, Semaphore};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::channel::{ChannelError, Channels, OutgoingMessage};
use crate::clock::Clock;
use crate::crypto::{OsMinter, ServerKey};
use crate::domain::{message, DeliveryOrder, EventId, RequestId};
use crate::store::{StoreError, VerificationStore};

/// Verifications advanced per store call.
const CLAIM_BATCH: usize = 512;
/// Deliveries taken over per sweep.
const SWEEP_BATCH: usize = 512;
/// Longest real-time sleep between looks at the store; bounds how late a step can be when the
/// store changed without telling us (another process, a clock change).
const MAX_IDLE: Duration = Duration::from_millis(500);
/// Deliveries waiting for the dispatcher; beyond this they wait in the store for a sweep.
const DISPATCH_QUEUE: usize = 16_384;
/// Deliveries in flight at once.
const MAX_IN_FLIGHT: usize = 256;
/// Tries of a delivery that fails transiently, with doubling pauses from one second; after that
/// it stays in the store and is tried again when its lease runs out.
const MAX_TRIES: u32 = 5;

/// Handle to the delivery worker.
#[derive(Clone)]
pub struct Dispatcher {
    tx: mpsc::Sender<DeliveryOrder>,
}

impl Dispatcher {
    pub fn dispatch(&self, orders: impl IntoIterator<Item = DeliveryOrder>) {
        for order in orders {
            // A full queue (or a stopping worker) leaves the delivery in the store, leased;
            // the sweep sends it when the lease runs out.
            if let Err(e) = self.tx.try_send(order) {
                tracing::warn!(
                    event_id = e.into_inner().event_id.as_str(),
                    "delivery queue full; the delivery waits in the store"
                );
            }
        }
    }
}

/// Starts the delivery worker. It runs until every [`Dispatcher`] is dropped.
///
/// Deliveries of different verifications go out concurrently; those of one verification go out
/// one after another, in the order they were dispatched. After a crash the first tick hands over
/// an SMS the dead process left and the call that came due meanwhile together, and sent side by
/// side the call could reach the phone before the SMS it follows.
pub fn spawn_dispatcher(
    store: Arc<dyn VerificationStore>,
    channels: Channels,
    key: ServerKey,
) -> (Dispatcher, JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<DeliveryOrder>(DISPATCH_QUEUE);
    let (done_tx, done_rx) = mpsc::unbounded_channel::<(RequestId, EventId)>();
    let marker = tokio::spawn(mark_delivered_loop(store, done_rx));
    let handle = tokio::spawn(async move {
        let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        let (finished_tx, mut finished_rx) = mpsc::unbounded_channel::<RequestId>();
        let mut lanes = Lanes::default();
        let start = |order: DeliveryOrder, permit| {
            let (channels, key) = (channels.clone(), key.clone());
            let (done, finished) = (done_tx.clone(), finished_tx.clone());
            tokio::spawn(async move {
                let request_id = order.request_id.clone();
                if deliver(&channels, &key, &order).await {
                    let _ = done.send((request_id.clone(), order.event_id));
                }
                drop(permit);
                let _ = finished.send(request_id);
            });
        };
        let mut open = true;
        while open || !lanes.is_empty() {
            let ready = tokio::select! {
                biased;
                Some(request_id) = finished_rx.recv() => lanes.finished(&request_id),
                order = rx.recv(), if open => match order {
                    Some(order) => lanes.arrived(order),
                    None => {
                        open = false;
                        None
                    }
                },
            };
            if let Some(order) = ready {
                let permit = permits.clone().acquire_owned().await.expect("never closed");
                start(order, permit);
            }
        }
        drop(done_tx);
        let _ = marker.await;
    });
    (Dispatcher { tx }, handle)
}

/// The verifications with a delivery in flight, each with the deliveries waiting behind it.
#[derive(Default)]
struct Lanes {
    waiting: HashMap<RequestId, VecDeque<DeliveryOrder>>,
}

impl Lanes {
    /// A new delivery: returned to be sent now when its verification has none in flight, else
    /// queued behind it.
    fn arrived(&mut self, order: DeliveryOrder) -> Option<DeliveryOrder> {
        match self.waiting.entry(order.request_id.clone()) {
            Entry::Occupied(mut lane) => {
                lane.get_mut().push_back(order);
                None
            }
            Entry::Vacant(lane) => {
                lane.insert(VecDeque::new());
                Some(order)
            }
        }
    }

    /// The delivery in flight for `request_id` is finished with: the next one of that
    /// verification, to be sent now.
    fn finished(&mut self, request_id: &RequestId) -> Option<DeliveryOrder> {
        let lane = self.waiting.get_mut(request_id)?;
        let next = lane.pop_front();
        if next.is_none() {
            self.waiting.remove(request_id);
        }
        next
    }

    fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

/// Confirms finished deliveries to the store in batches. If that keeps failing the deliveries
/// stay in the store and are sent again after their lease: at least once, never lost.
async fn mark_delivered_loop(
    store: Arc<dyn VerificationStore>,
    mut rx: mpsc::UnboundedReceiver<(RequestId, EventId)>,
) {
    while let Some(first) = rx.recv().await {
        let mut ids = vec![first];
        while let Ok(id) = rx.try_recv() {
            ids.push(id);
        }
        for attempt in 0..5u32 {
            match store.mark_delivered(ids.clone()).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "could not record sent deliveries; retrying");
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
            }
        }
    }
}

/// Returns whether the delivery is finished with (sent, or refused for good) and can leave the
/// store.
async fn deliver(channels: &Channels, key: &ServerKey, order: &DeliveryOrder) -> bool {
    let span = tracing::info_span!(
        "deliver",
        request_id = %order.request_id,
        event_id = order.event_id.as_str(),
        kind = order.kind.as_str(),
        to = %order.to.masked(),
    );
    deliver_in_span(channels, key, order).instrument(span).await
}

async fn deliver_in_span(channels: &Channels, key: &ServerKey, order: &DeliveryOrder) -> bool {
    let Some(channel) = channels.for_kind(order.kind) else {
        tracing::error!("no channel delivers this kind of event; dropping it");
        return true;
    };
    let pin = match key.unseal_pin(&order.request_id, &order.sealed_pin) {
        Ok(pin) => pin,
        Err(e) => {
            tracing::error!(error = %e, "cannot open the PIN of this delivery; dropping it");
            return true;
        }
    };
    let rendered = message::render(order, &pin);
    let outgoing = OutgoingMessage {
        id: order.event_id.clone(),
        kind: order.kind,
        to: order.to.clone(),
        from: order.purpose.sender_id().to_owned(),
        text: rendered.text,
        locale: order.locale.as_str().to_owned(),
        request_id: order.request_id.clone(),
        created_at: order.created_at,
    };
    let channel_name = channel.name();
    let mut attempt = 1;
    loop {
        match channel.send(&outgoing).await {
            Ok(()) => {
                tracing::info!(channel = channel_name, "delivered");
                return true;
            }
            Err(ChannelError::Rejected(reason)) => {
                tracing::error!(channel = channel_name, %reason, "delivery rejected");
                return true;
            }
            Err(ChannelError::Transient(reason)) if attempt < MAX_TRIES => {
                tracing::warn!(channel = channel_name, %reason, attempt, "delivery failed; will retry");
                tokio::time::sleep(Duration::from_secs(1 << (attempt - 1))).await;
                attempt += 1;
            }
            Err(ChannelError::Transient(reason)) => {
                tracing::error!(
                    channel = channel_name,
                    %reason,
                    "delivery failed; it stays stored and is tried again when its lease runs out"
                );
                return false;
            }
        }
    }
}

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
            let orders = self
                .store
                .claim_due(self.clock.clone(), CLAIM_BATCH, minter)
                .await?;
            total += orders.len();
            self.dispatcher.dispatch(orders);
            match self.store.next_due().await? {
                Some(t) if t <= self.clock.now() => continue,
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

    /// Runs steps as they come due, forever.
    pub async fn run(self: Arc<Self>) {
        loop {
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
            self.wake.sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::DeliveryChannel;
    use crate::domain::locale::Locale;
    use crate::domain::{EventKind, PhoneNumber, Purpose};
    use crate::store::sqlite::SqliteStore;
    use std::sync::Mutex;

    /// Records what it sends; an SMS waits for a permit of `gate` before it counts as sent.
    struct GatedChannel {
        sent: Mutex<Vec<String>>,
        gate: Semaphore,
    }

    #[async_trait::async_trait]
    impl DeliveryChannel for GatedChannel {
        fn name(&self) -> &'static str {
            "gated"
        }
        fn handles(&self, _: EventKind) -> bool {
            true
        }
        async fn send(&self, m: &OutgoingMessage) -> Result<(), ChannelError> {
            self.sent
                .lock()
                .unwrap()
                .push(format!("{} started", m.id.as_str()));
            if m.kind == EventKind::Sms {
                self.gate.acquire().await.unwrap().forget();
            }
            self.sent
                .lock()
                .unwrap()
                .push(format!("{} sent", m.id.as_str()));
            Ok(())
        }
    }

    fn order(key: &ServerKey, request: u8, event: u8, kind: EventKind) -> DeliveryOrder {
        let request_id = RequestId::from_bytes([request; 16]);
        DeliveryOrder {
            event_id: EventId::from_bytes([event; 8]),
            sealed_pin: key.seal_pin(&request_id, "1234"),
            request_id,
            kind,
            to: PhoneNumber::parse("447700123456", None).unwrap(),
            purpose: Purpose::Brand {
                brand: "Acme".into(),
                sender_id: "VERIFY".into(),
            },
            locale: Locale::from_tag("en-gb").unwrap(),
            created_at: chrono::DateTime::from_timestamp(0, 0).unwrap(),
        }
    }

    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !done() {
            assert!(tokio::time::Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_verification_s_call_waits_for_its_sms_while_other_verifications_go_ahead() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("d.db")).unwrap());
        let channel = Arc::new(GatedChannel {
            sent: Mutex::default(),
            gate: Semaphore::new(0),
        });
        let key = ServerKey::from_bytes([7; 32]);
        let (dispatcher, _worker) =
            spawn_dispatcher(store, Channels::new(vec![channel.clone()]), key.clone());
        let (sms_a, call_a) = (
            order(&key, 1, 1, EventKind::Sms),
            order(&key, 1, 2, EventKind::Tts),
        );
        let sms_b = order(&key, 2, 3, EventKind::Sms);
        let name = |o: &DeliveryOrder, what: &str| format!("{} {what}", o.event_id.as_str());
        let (sms_a_sent, call_a_started) = (name(&sms_a, "sent"), name(&call_a, "started"));
        let sms_b_started = name(&sms_b, "started");
        let sent = || channel.sent.lock().unwrap().clone();

        dispatcher.dispatch([sms_a, call_a, sms_b]);
        until("the other verification's SMS goes out meanwhile", || {
            sent().contains(&sms_b_started)
        })
        .await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!sent().contains(&call_a_started), "{:?}", sent());

        channel.gate.add_permits(2);
        until("the call follows its SMS", || {
            sent().contains(&call_a_started)
        })
        .await;
        let log = sent();
        let position = |e: &String| log.iter().position(|x| x == e).unwrap();
        assert!(position(&sms_a_sent) < position(&call_a_started), "{log:?}");
    }

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
            _: crate::store::Command,
            _: crate::store::SharedClock,
            _: crate::store::BoxMinter,
        ) -> crate::store::StoreResult<
            Option<(crate::store::CommandOutcome, crate::domain::Verification)>,
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

    #[tokio::test]
    async fn an_sms_whose_lease_runs_out_while_the_tick_claims_goes_before_its_call() {
        let key = ServerKey::from_bytes([7; 32]);
        let (sms_a, call_a) = (
            order(&key, 1, 1, EventKind::Sms),
            order(&key, 1, 2, EventKind::Tts),
        );
        let call_b = order(&key, 2, 3, EventKind::Tts);
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
        let (dispatcher, _worker) = spawn_dispatcher(
            store.clone(),
            Channels::new(vec![channel.clone()]),
            key.clone(),
        );
        let clock = Arc::new(crate::clock::ManualClock::new(
            chrono::DateTime::from_timestamp(1_000, 0).unwrap(),
        ));
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
