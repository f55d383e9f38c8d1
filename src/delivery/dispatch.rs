//! Works through deliveries: renders each message, tries the channels of its route as the
//! failover policy says, records every try in the store, and keeps the delivery leased while it
//! is being worked on.
//!
//! A try is recorded as `queued` before the channel is called, and its acceptance in the same
//! transaction that removes the delivery from the store. So once a gateway's acceptance is
//! recorded, nothing sends the event again; the one window that at-least-once leaves is a
//! gateway that accepted while this process stopped before that one commit.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::policy::{Failover, Next};
use super::router::{Routes, Step};
use crate::channel::{Accepted, Failure, Outgoing, SendError, DEFAULT_SENDER};
use crate::clock::Clock;
use crate::config::delivery::Kind;
use crate::crypto::OsMinter;
use crate::crypto::ServerKey;
use crate::domain::{
    message, Command, CommandOutcome, DeliveryOrder, Destination, EventId, Instant, RequestId,
};
use crate::store::{AttemptError, AttemptId, DeliveryStore};

/// Deliveries waiting for the dispatcher; beyond this they wait in the store for a sweep.
const DISPATCH_QUEUE: usize = 16_384;
/// Deliveries in flight at once.
const MAX_IN_FLIGHT: usize = 256;
/// How long a delivery stored by an earlier version (without its PIN's end) is tried.
const LEGACY_VALIDITY: chrono::Duration = chrono::Duration::minutes(10);

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
        queue_depth(self.tx.max_capacity() - self.tx.capacity());
    }
}

/// What every delivery task shares.
struct Shared {
    store: Arc<dyn DeliveryStore>,
    router: Arc<Routes>,
    key: ServerKey,
    clock: Arc<dyn Clock>,
    /// Every delivery the dispatcher holds (waiting in a lane, being tried, or waiting between
    /// rounds): their leases are kept alive, and a second copy (a sweep that took one up again)
    /// is dropped on arrival.
    working: Mutex<HashSet<(RequestId, EventId)>>,
    /// Deliveries the inbox took, to be removed from the store in batches.
    done: mpsc::UnboundedSender<(RequestId, EventId)>,
    /// The dispatcher's own queue, for the next step of a verification whose step could not be
    /// delivered; weak, so that the queue still closes when every `Dispatcher` is gone.
    requeue: mpsc::WeakSender<DeliveryOrder>,
}

impl Shared {
    fn working(&self) -> std::sync::MutexGuard<'_, HashSet<(RequestId, EventId)>> {
        self.working.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn key_of(order: &DeliveryOrder) -> (RequestId, EventId) {
    (order.request_id.clone(), order.event_id.clone())
}

/// A delivery as the dispatcher works on it; one that comes back after waiting between rounds
/// carries where its failover stands.
struct Job {
    order: DeliveryOrder,
    failover: Option<Failover>,
}

/// How a turn at a delivery ended.
enum Outcome {
    /// Sent, refused for good, or given up: it has left the dispatcher.
    Finished,
    /// Every channel failed; the next round starts at this workflow time.
    RetryAt(Instant, Failover),
}

/// The running dispatcher: [`Worker::stop`] ends it for a shutdown, [`Worker::abort`] at once.
pub struct Worker {
    task: JoinHandle<()>,
    marks: JoinHandle<()>,
    stop: tokio::sync::watch::Sender<bool>,
    shared: Arc<Shared>,
}

/// How long the inbox's last records of sent deliveries may take to be written at a stop.
const LAST_MARKS: Duration = Duration::from_secs(5);

impl Worker {
    /// Stops for a shutdown: no delivery is started any more, tries in progress get `within`
    /// to end (then they are cut off: a call in progress is hung up when its channel closes,
    /// and a cut try counts as interrupted), and every delivery not sent is given back to the
    /// store, its lease ended, so that the next sweep of any node sends it at once. Returns how
    /// many were given back.
    pub async fn stop(mut self, within: Duration) -> usize {
        let _ = self.stop.send(true);
        if tokio::time::timeout(within, &mut self.task).await.is_err() {
            tracing::warn!(
                "deliveries still being tried {within:?} after the stop began are cut off"
            );
            self.task.abort();
            let _ = (&mut self.task).await;
        }
        let left: Vec<(RequestId, EventId)> = self.shared.working().drain().collect();
        let store = self.shared.store.clone();
        // The inbox's records of what it took are written once nothing else can add to them.
        drop(self.shared);
        let _ = tokio::time::timeout(LAST_MARKS, &mut self.marks).await;
        if left.is_empty() {
            return 0;
        }
        if let Err(e) = store.give_back(left.clone()).await {
            tracing::warn!(error = %e, "could not give back unsent deliveries; they wait for their lease to run out");
        }
        left.len()
    }

    /// Stops every delivery at once.
    pub fn abort(&self) {
        self.task.abort();
        self.marks.abort();
    }
}

/// Starts the delivery worker. It runs until every [`Dispatcher`] is dropped or
/// [`Worker::stop`]; aborting it stops every delivery it runs.
///
/// Deliveries of different verifications go out concurrently; those of one verification go out
/// one after another, in the order they were dispatched. After a crash the first tick hands over
/// an SMS the dead process left and the call that came due meanwhile together, and sent side by
/// side the call could reach the phone before the SMS it follows. A delivery that waits between
/// rounds gives its verification's turn to the next one: the call comes at its time even while
/// the SMS before it cannot get through.
pub fn spawn_dispatcher(
    store: Arc<dyn DeliveryStore>,
    router: Arc<Routes>,
    key: ServerKey,
    clock: Arc<dyn Clock>,
    lease: Duration,
) -> (Dispatcher, Worker) {
    let (tx, mut rx) = mpsc::channel::<DeliveryOrder>(DISPATCH_QUEUE);
    let (stop_tx, mut stop) = tokio::sync::watch::channel(false);
    let (done_tx, done_rx) = mpsc::unbounded_channel::<(RequestId, EventId)>();
    let shared = Arc::new(Shared {
        store: store.clone(),
        router,
        key,
        clock,
        working: Mutex::default(),
        done: done_tx,
        requeue: tx.downgrade(),
    });
    let marks = tokio::spawn(mark_delivered_loop(store, done_rx));
    let worker_shared = shared.clone();
    let handle = tokio::spawn(async move {
        // Every task of the dispatcher lives in this set, so that stopping the dispatcher stops
        // them all.
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(renew_leases_loop(shared.clone(), lease / 3));
        let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        let (turn_tx, mut turn_rx) = mpsc::unbounded_channel::<(DeliveryOrder, Outcome)>();
        let (retry_tx, mut retry_rx) = mpsc::unbounded_channel::<Job>();
        let mut lanes = Lanes::default();
        let mut waiting_between_rounds = 0usize;
        let mut open = true;
        // Stopping: nothing more is started, and the loop ends with the last try in flight.
        let mut stopping = false;
        let mut in_flight = 0usize;
        while (open || !lanes.is_empty() || waiting_between_rounds > 0)
            && !(stopping && in_flight == 0)
        {
            let ready = tokio::select! {
                biased;
                Ok(()) = stop.changed(), if !stopping => {
                    stopping = true;
                    open = false;
                    // What waits in the queue is leased to this process: held here, it is
                    // given back with the rest.
                    rx.close();
                    while let Ok(order) = rx.try_recv() {
                        shared.working().insert(key_of(&order));
                    }
                    None
                }
                Some((order, outcome)) = turn_rx.recv() => {
                    in_flight -= 1;
                    match outcome {
                        Outcome::Finished => {
                            shared.working().remove(&key_of(&order));
                        }
                        Outcome::RetryAt(at, failover) => {
                            waiting_between_rounds += 1;
                            let wait = shared.clock.real_until(at);
                            let retry = retry_tx.clone();
                            let job = Job { order: order.clone(), failover: Some(failover) };
                            tasks.spawn(async move {
                                tokio::time::sleep(wait).await;
                                let _ = retry.send(job);
                            });
                        }
                    }
                    lanes.finished(&order.request_id)
                }
                Some(job) = retry_rx.recv() => {
                    waiting_between_rounds -= 1;
                    lanes.arrived(job)
                }
                order = rx.recv(), if open => match order {
                    Some(order) => {
                        queue_depth(rx.len());
                        if shared.working().insert(key_of(&order)) {
                            lanes.arrived(Job { order, failover: None })
                        } else {
                            tracing::debug!(event_id = order.event_id.as_str(), "a delivery already being worked on came again; dropped");
                            None
                        }
                    }
                    None => {
                        open = false;
                        None
                    }
                },
            };
            if let Some(job) = ready.filter(|_| !stopping) {
                in_flight += 1;
                start(&mut tasks, &shared, &permits, &turn_tx, job).await;
            }
            // Finished tasks are let go of here, without waking the loop for each of them.
            while tasks.try_join_next().is_some() {}
        }
    });
    let worker = Worker {
        task: handle,
        marks,
        stop: stop_tx,
        shared: worker_shared,
    };
    (Dispatcher { tx }, worker)
}
/// Hands `job` to a task of its own once fewer than [`MAX_IN_FLIGHT`] are being tried.
async fn start(
    tasks: &mut tokio::task::JoinSet<()>,
    shared: &Arc<Shared>,
    permits: &Arc<Semaphore>,
    turns: &mpsc::UnboundedSender<(DeliveryOrder, Outcome)>,
    job: Job,
) {
    let permit = permits.clone().acquire_owned().await.expect("never closed");
    let (shared, turns) = (shared.clone(), turns.clone());
    tasks.spawn(async move {
        let outcome = deliver(&shared, &job).await;
        drop(permit);
        let _ = turns.send((job.order, outcome));
    });
}

/// The verifications with a delivery in flight, each with the deliveries waiting behind it.
#[derive(Default)]
struct Lanes {
    waiting: HashMap<RequestId, VecDeque<Job>>,
}

impl Lanes {
    /// A delivery to make: returned to be sent now when its verification has none in flight,
    /// else queued behind it.
    fn arrived(&mut self, job: Job) -> Option<Job> {
        match self.waiting.entry(job.order.request_id.clone()) {
            Entry::Occupied(mut lane) => {
                lane.get_mut().push_back(job);
                None
            }
            Entry::Vacant(lane) => {
                lane.insert(VecDeque::new());
                Some(job)
            }
        }
    }

    /// The delivery in flight for `request_id` is finished with (or waits between rounds): the
    /// next one of that verification, to be sent now.
    fn finished(&mut self, request_id: &RequestId) -> Option<Job> {
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

/// Removes the deliveries the inbox took from the store, in batches. If that keeps failing they
/// stay and are sent again after their lease (the inbox keeps one copy of each).
async fn mark_delivered_loop(
    store: Arc<dyn DeliveryStore>,
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

/// Keeps the leases of deliveries being worked on (waiting between rounds, say) from running
/// out, so that no sweep on this or another node sends them meanwhile.
async fn renew_leases_loop(shared: Arc<Shared>, every: Duration) {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let working: Vec<(RequestId, EventId)> = shared.working().iter().cloned().collect();
        if working.is_empty() {
            continue;
        }
        if let Err(e) = shared.store.renew_leases(working).await {
            tracing::warn!(error = %e, "could not renew the leases of deliveries in progress");
        }
    }
}

async fn deliver(shared: &Shared, job: &Job) -> Outcome {
    let order = &job.order;
    let span = tracing::info_span!(
        "deliver",
        request_id = %order.request_id,
        event_id = order.event_id.as_str(),
        kind = Kind::of(order.channel).as_str(),
        to = %order.to.masked(),
    );
    deliver_in_span(shared, job).instrument(span).await
}

/// Removes a delivery that will not be sent (given up, or refused for good) from the store.
async fn give_up(shared: &Shared, order: &DeliveryOrder) -> Outcome {
    let done = vec![key_of(order)];
    if let Err(e) = shared.store.mark_delivered(done).await {
        tracing::warn!(error = %e, "could not remove a delivery that was given up; a sweep will look at it again");
    }
    Outcome::Finished
}

/// The step's message cannot be delivered at all: its verification may move on to its next step
/// now (Verify v2 does); that step's delivery, stored and leased to this dispatcher, joins the
/// queue.
async fn step_failed(shared: &Shared, order: &DeliveryOrder) -> Outcome {
    let command = Command::StepFailed {
        event_id: order.event_id.clone(),
    };
    let minter = Box::new(OsMinter::new(shared.key.clone()));
    let applied = shared
        .store
        .apply_internal(&order.request_id, command, shared.clock.clone(), minter)
        .await;
    match applied {
        Ok(Some((CommandOutcome::Advanced(Ok(next)), _))) => {
            tracing::info!("the verification moves on to its next step now");
            let sent = shared
                .requeue
                .upgrade()
                .is_some_and(|tx| tx.try_send(*next).is_ok());
            if !sent {
                tracing::warn!("the dispatcher is busy or stopping; the next step waits in the store for a sweep");
            }
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(error = %e, "could not move the verification on; its next step comes at its time")
        }
    }
    Outcome::Finished
}

/// A gateway's error, for the record and the logs, with the PIN taken out: some gateways echo
/// the message they refused, and what is recorded must not show a code.
fn attempt_error(failure: &Failure, pin: &str, to: &Destination) -> AttemptError {
    // Gateways echo what they refused: an SMTP server the recipient's address, an SMS gateway
    // the number. Neither is kept whole.
    let scrub = |text: &str| {
        let mut text = text.to_owned();
        if !pin.is_empty() {
            text = text.replace(pin, "****");
        }
        text.replace(to.key(), &to.masked())
    };
    AttemptError {
        code: scrub(&failure.code),
        text: scrub(&failure.text),
    }
}

fn real_now() -> Instant {
    chrono::Utc::now()
}

/// How the start of a try was recorded.
enum Started {
    /// The try is recorded as this attempt.
    Recorded(AttemptId),
    /// The channel keeps its own record (the inbox).
    Unrecorded,
    /// The delivery is no longer in the store: another copy of it was accepted, or its
    /// verification ended. Nothing is sent.
    Gone,
}

async fn deliver_in_span(shared: &Shared, job: &Job) -> Outcome {
    let order = &job.order;
    let kind = Kind::of(order.channel);
    // The routes as they are now; a reload swaps them for the next delivery, and this one keeps
    // the channels it started with.
    let router = shared.router.current();
    let Some(steps) = router.plan(kind, &order.to) else {
        tracing::error!("no route carries this kind of message; it is not sent");
        let recorded = async {
            let started = shared
                .store
                .attempt_started(
                    &order.request_id,
                    &order.event_id,
                    kind.as_str(),
                    crate::config::delivery::NO_CHANNEL,
                    None,
                    real_now(),
                )
                .await?;
            let Some(id) = started else {
                return Ok(());
            };
            let error = AttemptError {
                code: "no-route".into(),
                text: format!("no route carries {} messages to this number", kind.as_str()),
            };
            shared.store.attempt_failed(id, error, real_now()).await
        };
        if let Err(e) = recorded.await {
            tracing::warn!(error = %e, "could not record a delivery that has no route");
        }
        give_up(shared, order).await;
        return step_failed(shared, order).await;
    };
    let deadline = order
        .pin_expires_at
        .unwrap_or(order.created_at + LEGACY_VALIDITY);
    if shared.clock.now() >= deadline {
        tracing::error!("the PIN expired before its message could be sent; it is not sent");
        return give_up(shared, order).await;
    }
    let pin = match shared.key.unseal_pin(&order.request_id, &order.sealed_pin) {
        Ok(pin) => pin,
        Err(e) => {
            tracing::error!(error = %e, "cannot open the PIN of this delivery; dropping it");
            return give_up(shared, order).await;
        }
    };
    let rendered = message::render(order, &pin);
    let (text, script, email) = (rendered.text, rendered.script, rendered.email);
    let mut failover = match &job.failover {
        Some(f) => {
            let mut f = f.clone();
            f.retrying(steps.len());
            f
        }
        None => Failover::new(steps.len()),
    };
    loop {
        let step = &steps[failover.position()];
        let outgoing = Outgoing {
            id: order.event_id.clone(),
            request_id: order.request_id.clone(),
            kind,
            to: order.to.clone(),
            from: step
                .from
                .clone()
                .or_else(|| order.from.clone())
                .unwrap_or_else(|| DEFAULT_SENDER.to_owned()),
            text: text.clone(),
            email: email.clone(),
            code: (order.channel == crate::domain::Channel::WhatsApp).then(|| pin.clone()),
            locale: order.locale.as_str().to_owned(),
            created_at: order.created_at,
            valid_for: shared.clock.real_until(deadline),
            receipt_url: step.receipt_url.clone(),
            script: script.clone(),
        };
        let channel = step.channel.name().to_owned();
        let attempt = match record_start(shared, order, kind, step).await {
            Ok(Started::Recorded(id)) => Some(id),
            Ok(Started::Unrecorded) => None,
            Ok(Started::Gone) => {
                tracing::info!("the delivery is no longer stored (sent by another try, or its verification ended); not sent");
                return Outcome::Finished;
            }
            Err(e) => {
                // Without a record the message is not sent; the delivery stays leased and a
                // sweep takes it up again.
                tracing::error!(%channel, error = %e, "cannot record a try; the delivery waits in the store");
                return Outcome::Finished;
            }
        };
        let trying = std::time::Instant::now();
        let sent = match tokio::time::timeout(step.timeout, step.channel.send(&outgoing)).await {
            Ok(sent) => sent,
            Err(_) => Err(SendError::Temporary(Failure::new(
                "timeout",
                format!("no answer within {:?}", step.timeout),
            ))),
        };
        count_send(kind, step, &order.to, &sent, trying.elapsed());
        let error = match sent {
            Ok(accepted) => {
                accepted_by(shared, order, step, attempt, &accepted).await;
                return Outcome::Finished;
            }
            Err(error) => error,
        };
        let recorded = attempt_error(error.failure(), &pin, &order.to);
        if let Some(id) = attempt {
            if let Err(e) = shared
                .store
                .attempt_failed(id, recorded.clone(), real_now())
                .await
            {
                tracing::warn!(error = %e, "could not record a failed try");
            }
        }
        let shown = format!("{}: {}", recorded.code, recorded.text);
        let retry_after = match &error {
            SendError::Rejected(_) => {
                tracing::error!(%channel, error = %shown, "the gateway refused the message for good; it is not sent");
                give_up(shared, order).await;
                return step_failed(shared, order).await;
            }
            SendError::Temporary(_) => None,
            SendError::Throttled { retry_after, .. } => Some(*retry_after),
        };
        tracing::warn!(%channel, error = %shown, "try failed");
        match failover.failed(retry_after, shared.clock.now(), deadline) {
            Next::Try(_) => {}
            Next::RetryAt(at) => return Outcome::RetryAt(at, failover),
            Next::GiveUp => {
                tracing::error!(
                    "every channel failed until the PIN expired; the message is not sent"
                );
                return give_up(shared, order).await;
            }
        }
    }
}

/// Deliveries waiting in the dispatcher's queue, set by both of its ends: the enqueuing side
/// alone would leave a stale value on a node whose scheduler stops dispatching.
fn queue_depth(waiting: usize) {
    metrics::gauge!(crate::metrics::DISPATCH_QUEUE).set(waiting as f64);
}

/// One try in the metrics: by kind, channel, route, country and how it ended.
fn count_send(
    kind: Kind,
    step: &Step,
    to: &Destination,
    sent: &Result<Accepted, SendError>,
    took: Duration,
) {
    let outcome = match sent {
        Ok(accepted) if accepted.delivered => "delivered",
        Ok(_) => "accepted",
        Err(SendError::Rejected(_)) => "rejected",
        Err(SendError::Temporary(_)) => "failed",
        Err(SendError::Throttled { .. }) => "throttled",
    };
    let country = to
        .phone()
        .and_then(|n| n.region())
        .unwrap_or("none")
        .to_owned();
    metrics::counter!(crate::metrics::SENDS,
        "kind" => kind.as_str(),
        "channel" => step.channel.name().to_owned(),
        "route" => step.route.clone(),
        "country" => country,
        "outcome" => outcome)
    .increment(1);
    metrics::histogram!(crate::metrics::SEND_SECONDS,
        "kind" => kind.as_str(),
        "channel" => step.channel.name().to_owned())
    .record(took.as_secs_f64());
}

/// Records the start of a try, unless the channel keeps its own record.
async fn record_start(
    shared: &Shared,
    order: &DeliveryOrder,
    kind: Kind,
    step: &Step,
) -> Result<Started, crate::store::StoreError> {
    if step.records_itself {
        return Ok(Started::Unrecorded);
    }
    let started = shared
        .store
        .attempt_started(
            &order.request_id,
            &order.event_id,
            kind.as_str(),
            step.channel.name(),
            Some(&*step.route),
            real_now(),
        )
        .await?;
    Ok(started.map_or(Started::Gone, Started::Recorded))
}

/// Tries to record an acceptance this many times before leaving the delivery to a sweep.
const ACCEPTANCE_TRIES: u32 = 3;

async fn accepted_by(
    shared: &Shared,
    order: &DeliveryOrder,
    step: &Step,
    attempt: Option<AttemptId>,
    accepted: &Accepted,
) {
    let channel = step.channel.name();
    let Some(id) = attempt else {
        let _ = shared.done.send(key_of(order));
        tracing::info!(channel, "delivered");
        return;
    };
    for try_number in 1..=ACCEPTANCE_TRIES {
        let recorded = shared
            .store
            .attempt_accepted(
                id,
                &order.request_id,
                &order.event_id,
                &accepted.message_id,
                accepted.delivered,
                real_now(),
            )
            .await;
        match recorded {
            Ok(()) => {
                tracing::info!(channel, message_id = %accepted.message_id, "accepted by the gateway");
                return;
            }
            Err(e) if try_number < ACCEPTANCE_TRIES => {
                tracing::warn!(channel, error = %e, "could not record an acceptance; trying again");
                tokio::time::sleep(Duration::from_millis(100 << try_number)).await;
            }
            // The one window of at-least-once: a sweep may send it again.
            Err(e) => tracing::error!(
                channel,
                message_id = %accepted.message_id,
                error = %e,
                "the gateway accepted the message but that could not be recorded; it may be sent again"
            ),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::channel::Channel;
    use crate::config::delivery::{DeliveryConfig, Route};
    use crate::delivery::Router;
    use crate::domain::locale::Locale;
    use crate::domain::{Channel as Medium, Destination, PhoneNumber, Purpose};
    use crate::store::sqlite::SqliteStore;
    use crate::store::{AttemptState, DeliveryLog, VerificationStore};

    /// Records what it sends; an SMS waits for a permit of `gate` before it counts as sent.
    pub(crate) struct GatedChannel {
        pub(crate) sent: Mutex<Vec<String>>,
        pub(crate) gate: Semaphore,
    }

    #[async_trait::async_trait]
    impl Channel for GatedChannel {
        fn name(&self) -> &str {
            "gated"
        }
        async fn send(&self, m: &Outgoing) -> Result<Accepted, SendError> {
            self.sent
                .lock()
                .unwrap()
                .push(format!("{} started", m.id.as_str()));
            if m.kind == Kind::Sms {
                self.gate.acquire().await.unwrap().forget();
            }
            self.sent
                .lock()
                .unwrap()
                .push(format!("{} sent", m.id.as_str()));
            Ok(Accepted {
                message_id: m.id.as_str().to_owned(),
                delivered: true,
            })
        }
    }

    pub(crate) fn order(key: &ServerKey, request: u8, event: u8, channel: Medium) -> DeliveryOrder {
        let request_id = RequestId::from_bytes([request; 16]);
        DeliveryOrder {
            event_id: EventId::from_bytes([event; 8]),
            sealed_pin: key.seal_pin(&request_id, "1234"),
            request_id,
            channel,
            to: Destination::Phone(PhoneNumber::parse("447700123456", None).unwrap()),
            from: None,
            app_hash: None,
            purpose: Purpose::Brand {
                brand: "Acme".into(),
            },
            locale: Locale::from_tag("en-gb").unwrap(),
            created_at: chrono::Utc::now(),
            pin_expires_at: Some(chrono::Utc::now() + chrono::Duration::minutes(5)),
            text: None,
        }
    }

    pub(crate) async fn until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !done() {
            assert!(tokio::time::Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn clock() -> Arc<dyn Clock> {
        Arc::new(crate::clock::ManualClock::new(chrono::Utc::now()))
    }

    /// Real time, for what waits between rounds.
    fn real_clock() -> Arc<dyn Clock> {
        let anchor =
            crate::clock::ClockAnchor::resume(None, 1.0, chrono::Utc::now().timestamp_millis()).0;
        Arc::new(crate::clock::ScaledClock::new(anchor))
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
        let router = Routes::new(Router::with_inbox_channel(channel.clone()));
        let (dispatcher, _worker) =
            spawn_dispatcher(store, router, key.clone(), clock(), Duration::from_secs(60));
        let (sms_a, call_a) = (
            order(&key, 1, 1, Medium::Sms),
            order(&key, 1, 2, Medium::Voice),
        );
        let sms_b = order(&key, 2, 3, Medium::Sms);
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

    /// Answers each try with the next result of its script (the last one repeats).
    struct ScriptedChannel {
        name: &'static str,
        script: Mutex<VecDeque<Result<Accepted, SendError>>>,
        tries: Mutex<u32>,
    }

    impl ScriptedChannel {
        fn new(name: &'static str, script: Vec<Result<Accepted, SendError>>) -> Arc<Self> {
            Arc::new(Self {
                name,
                script: Mutex::new(script.into()),
                tries: Mutex::new(0),
            })
        }

        fn tries(&self) -> u32 {
            *self.tries.lock().unwrap()
        }
    }

    #[async_trait::async_trait]
    impl Channel for ScriptedChannel {
        fn name(&self) -> &str {
            self.name
        }
        async fn send(&self, _: &Outgoing) -> Result<Accepted, SendError> {
            *self.tries.lock().unwrap() += 1;
            let mut script = self.script.lock().unwrap();
            if script.len() > 1 {
                script.pop_front().unwrap()
            } else {
                script.front().unwrap().clone()
            }
        }
    }

    fn accepted(id: &str) -> Result<Accepted, SendError> {
        Ok(Accepted {
            message_id: id.into(),
            delivered: false,
        })
    }

    /// A channel whose sends wait for a permit of `gate`, then are accepted.
    struct HeldChannel {
        gate: Semaphore,
        sent: Mutex<Vec<String>>,
    }

    #[async_trait::async_trait]
    impl Channel for HeldChannel {
        fn name(&self) -> &str {
            "held"
        }
        async fn send(&self, m: &Outgoing) -> Result<Accepted, SendError> {
            self.gate.acquire().await.unwrap().forget();
            self.sent.lock().unwrap().push(m.id.as_str().to_owned());
            Ok(Accepted {
                message_id: format!("H-{}", self.sent.lock().unwrap().len()),
                delivered: false,
            })
        }
    }

    fn down() -> Result<Accepted, SendError> {
        Err(SendError::Temporary(Failure::new(
            "connect",
            "connection refused",
        )))
    }

    fn sms_route(channels: &[&str]) -> DeliveryConfig {
        DeliveryConfig {
            routes: vec![Route {
                kind: Kind::Sms,
                to: vec![],
                channels: channels.iter().map(|c| c.to_string()).collect(),
                from: None,
            }],
            from_file: true,
            ..DeliveryConfig::default()
        }
    }

    /// Stores `order` as the scheduler would, dispatches it and waits until it has left the store.
    async fn deliver_through(
        router: Router,
        order: DeliveryOrder,
        key: &ServerKey,
    ) -> (Arc<SqliteStore>, tempfile::TempDir) {
        let (store, dir) = stored(&order).await;
        let (dispatcher, _worker) = spawn_dispatcher(
            store.clone(),
            Routes::new(router),
            key.clone(),
            clock(),
            Duration::from_secs(60),
        );
        dispatcher.dispatch([order]);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !store.undelivered(10).await.unwrap().is_empty() {
            assert!(tokio::time::Instant::now() < deadline, "still stored");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (store, dir)
    }

    /// A store holding `order`'s verification (workflow 5: an SMS, then a call) and delivery.
    async fn stored(order: &DeliveryOrder) -> (Arc<SqliteStore>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("d.db")).unwrap());
        store_order(&store, order).await;
        (store, dir)
    }

    /// Stores `order`'s verification and delivery in `store`.
    async fn store_order(store: &SqliteStore, order: &DeliveryOrder) {
        let mut minter = crate::domain::testing::SequenceMinter { pins: 0, events: 1 };
        let mut new = crate::api::v1::workflow::Workflow::parse(5)
            .unwrap()
            .request(order.request_id.clone(), "k", order.to.key());
        new.purpose = order.purpose.clone();
        new.locale = order.locale;
        let (v, _) = crate::domain::Verification::start(new, chrono::Utc::now(), &mut minter);
        store
            .create(v, order.clone(), chrono::Utc::now())
            .await
            .unwrap();
    }

    /// A channel that takes 200 ms to accept a message, and never answers for request 9.
    struct SlowChannel;

    #[async_trait::async_trait]
    impl Channel for SlowChannel {
        fn name(&self) -> &str {
            "slow"
        }
        async fn send(&self, m: &Outgoing) -> Result<Accepted, SendError> {
            if m.request_id == RequestId::from_bytes([9; 16]) {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            accepted("S-1")
        }
    }

    #[tokio::test]
    async fn a_stop_lets_tries_in_progress_end_and_gives_back_what_it_could_not_send() {
        let key = ServerKey::from_bytes([7; 32]);
        let router = Router::with_channels(
            sms_route(&["slow"]),
            vec![("slow", Arc::new(SlowChannel) as Arc<dyn Channel>)],
        );
        let to = |o: DeliveryOrder, number: &str| DeliveryOrder {
            to: Destination::Phone(PhoneNumber::parse(number, None).unwrap()),
            ..o
        };
        let (quick, stuck, queued) = (
            order(&key, 8, 8, Medium::Sms),
            to(order(&key, 9, 9, Medium::Sms), "447700123457"),
            to(order(&key, 10, 10, Medium::Sms), "447700123458"),
        );
        let (store, _dir) = stored(&quick).await;
        store_order(&store, &stuck).await;
        store_order(&store, &queued).await;
        let (dispatcher, worker) = spawn_dispatcher(
            store.clone(),
            Routes::new(router),
            key,
            clock(),
            Duration::from_secs(60),
        );
        dispatcher.dispatch([quick.clone(), stuck.clone()]);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let stopping = tokio::spawn(worker.stop(Duration::from_secs(1)));
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Comes after the stop began: not started.
        dispatcher.dispatch([queued.clone()]);
        assert_eq!(stopping.await.unwrap(), 1, "the stuck try is given back");
        let attempts = store.attempts(&quick.request_id).await.unwrap();
        assert_eq!(
            attempts[0].state,
            AttemptState::Submitted,
            "the quick try ended"
        );
        assert!(store.attempts(&queued.request_id).await.unwrap().is_empty());
        let mut swept: Vec<RequestId> = store
            .claim_stale_deliveries(10)
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.request_id)
            .collect();
        swept.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        assert_eq!(
            swept,
            [stuck.request_id],
            "given back at once; the one queued after the stop keeps its lease"
        );
    }

    #[tokio::test]
    async fn a_second_copy_of_a_delivery_being_sent_is_not_sent_again() {
        let key = ServerKey::from_bytes([7; 32]);
        let held = Arc::new(HeldChannel {
            gate: Semaphore::new(0),
            sent: Mutex::default(),
        });
        let router = Router::with_channels(sms_route(&["held"]), vec![("held", held.clone())]);
        let o = order(&key, 7, 7, Medium::Sms);
        let (store, _dir) = stored(&o).await;
        let (dispatcher, _worker) = spawn_dispatcher(
            store.clone(),
            Routes::new(router),
            key,
            clock(),
            Duration::from_secs(60),
        );
        dispatcher.dispatch([o.clone()]);
        tokio::time::sleep(Duration::from_millis(100)).await;
        // As a sweep would, while the first is still with the gateway.
        dispatcher.dispatch([o.clone()]);
        tokio::time::sleep(Duration::from_millis(100)).await;
        held.gate.add_permits(5);
        until("the delivery is accepted", || {
            !held.sent.lock().unwrap().is_empty()
        })
        .await;
        // A copy after the acceptance finds the delivery gone from the store.
        tokio::time::sleep(Duration::from_millis(100)).await;
        dispatcher.dispatch([o.clone()]);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(held.sent.lock().unwrap().len(), 1);
        assert_eq!(store.attempts(&o.request_id).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_call_goes_at_its_time_while_the_sms_before_it_waits_between_rounds() {
        let key = ServerKey::from_bytes([7; 32]);
        let sms = ScriptedChannel::new("sms", vec![down()]);
        // The calls go to a channel that keeps its own record (the inbox, as without a
        // configuration file), so the call needs no stored delivery of its own here.
        let calls = ScriptedChannel::new("inbox", vec![accepted("C1")]);
        let mut config = sms_route(&["sms"]);
        config.from_file = false;
        config.routes.push(Route {
            kind: Kind::Voice,
            to: vec![],
            channels: vec!["inbox".into()],
            from: None,
        });
        let router =
            Router::with_channels(config, vec![("sms", sms.clone()), ("inbox", calls.clone())]);
        let (first, call) = (
            order(&key, 8, 8, Medium::Sms),
            order(&key, 8, 9, Medium::Voice),
        );
        let (store, _dir) = stored(&first).await;
        let (dispatcher, _worker) = spawn_dispatcher(
            store,
            Routes::new(router),
            key,
            real_clock(),
            Duration::from_secs(60),
        );
        dispatcher.dispatch([first, call]);
        until("the call goes out", || calls.tries() == 1).await;
        assert!(sms.tries() >= 1);
    }

    #[tokio::test]
    async fn a_verification_that_ends_stops_the_retries_of_its_message() {
        let key = ServerKey::from_bytes([7; 32]);
        let sms = ScriptedChannel::new("sms", vec![down()]);
        let router = Router::with_channels(sms_route(&["sms"]), vec![("sms", sms.clone())]);
        let o = order(&key, 9, 10, Medium::Sms);
        let (store, _dir) = stored(&o).await;
        let (dispatcher, _worker) = spawn_dispatcher(
            store.clone(),
            Routes::new(router),
            key,
            real_clock(),
            Duration::from_secs(60),
        );
        dispatcher.dispatch([o.clone()]);
        until("the first try fails", || sms.tries() >= 1).await;
        let right = crate::domain::Command::Check {
            code_hash: crate::domain::testing::SequenceMinter::hash("0001"),
            code_len: 4,
        };
        let now: crate::store::SharedClock =
            Arc::new(crate::clock::ManualClock::new(chrono::Utc::now()));
        let minter = Box::new(crate::domain::testing::SequenceMinter {
            pins: 0,
            events: 99,
        });
        store
            .apply("k", &o.request_id, right, now, minter)
            .await
            .unwrap()
            .unwrap();
        let tries = sms.tries();
        // The next rounds would come 1 s and 3 s after the first try.
        tokio::time::sleep(Duration::from_millis(3_500)).await;
        assert_eq!(sms.tries(), tries, "no round after the end");
    }

    async fn states(store: &SqliteStore, order: &DeliveryOrder) -> Vec<(String, AttemptState)> {
        let attempts = store.attempts(&order.request_id).await.unwrap();
        attempts.into_iter().map(|a| (a.channel, a.state)).collect()
    }

    #[tokio::test]
    async fn a_channel_that_is_down_hands_the_message_to_the_next_at_once() {
        let key = ServerKey::from_bytes([7; 32]);
        let first = ScriptedChannel::new("first", vec![down()]);
        let second = ScriptedChannel::new("second", vec![accepted("M2")]);
        let router = Router::with_channels(
            sms_route(&["first", "second"]),
            vec![("first", first.clone()), ("second", second.clone())],
        );
        let o = order(&key, 3, 3, Medium::Sms);
        let (store, _dir) = deliver_through(router, o.clone(), &key).await;
        assert_eq!(
            states(&store, &o).await,
            [
                ("first".into(), AttemptState::Failed),
                ("second".into(), AttemptState::Submitted)
            ]
        );
        let attempts = store.attempts(&o.request_id).await.unwrap();
        assert_eq!(attempts[0].error_code.as_deref(), Some("connect"));
        assert_eq!(attempts[1].message_id.as_deref(), Some("M2"));
    }

    #[tokio::test]
    async fn a_rejection_is_final_and_no_other_channel_is_tried() {
        let key = ServerKey::from_bytes([7; 32]);
        let first = ScriptedChannel::new(
            "first",
            vec![Err(SendError::Rejected(Failure::new(
                "21211",
                "invalid To",
            )))],
        );
        let second = ScriptedChannel::new("second", vec![accepted("M2")]);
        let router = Router::with_channels(
            sms_route(&["first", "second"]),
            vec![("first", first.clone()), ("second", second.clone())],
        );
        let o = order(&key, 4, 4, Medium::Sms);
        let (store, _dir) = deliver_through(router, o.clone(), &key).await;
        assert_eq!(
            states(&store, &o).await,
            [("first".into(), AttemptState::Failed)]
        );
        assert_eq!(second.tries(), 0);
    }

    #[tokio::test]
    async fn when_every_channel_is_down_the_route_is_tried_again_until_one_takes_it() {
        let key = ServerKey::from_bytes([7; 32]);
        let first = ScriptedChannel::new("first", vec![down(), down(), accepted("M1")]);
        let second = ScriptedChannel::new("second", vec![down()]);
        let router = Router::with_channels(
            sms_route(&["first", "second"]),
            vec![("first", first.clone()), ("second", second.clone())],
        );
        let o = order(&key, 5, 5, Medium::Sms);
        let (store, _dir) = deliver_through(router, o.clone(), &key).await;
        let s = states(&store, &o).await;
        assert_eq!(s.len(), 5, "{s:?}");
        assert_eq!(
            s.last().unwrap(),
            &("first".into(), AttemptState::Submitted)
        );
        assert_eq!((first.tries(), second.tries()), (3, 2));
    }

    #[tokio::test]
    async fn a_kind_without_a_route_is_recorded_as_failed_and_not_sent() {
        let key = ServerKey::from_bytes([7; 32]);
        let sms = ScriptedChannel::new("sms", vec![accepted("M")]);
        let router = Router::with_channels(sms_route(&["sms"]), vec![("sms", sms.clone())]);
        let o = order(&key, 6, 6, Medium::Voice);
        let (store, _dir) = deliver_through(router, o.clone(), &key).await;
        let attempts = store.attempts(&o.request_id).await.unwrap();
        assert_eq!(attempts.len(), 1);
        assert_eq!(
            (
                attempts[0].channel.as_str(),
                attempts[0].state,
                attempts[0].error_code.as_deref()
            ),
            ("none", AttemptState::Failed, Some("no-route"))
        );
        assert_eq!(sms.tries(), 0);
    }
}
