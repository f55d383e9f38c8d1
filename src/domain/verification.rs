//! The verification state machine.
//!
//! A verification walks its steps (an SMS, a call …), each at a known time. Every step delivers
//! the current code, or a new one when its step asks for one or the current code has expired.
//! The policy says how many checks a code gets, how long it lives and when cancelling is allowed.
//! A verification ends succeeded, failed, cancelled, or expired once no step is left and the last
//! code has expired.
//!
//! Expiry is also *derived* on every read and write ([`Verification::settle`]), so a late scheduler
//! never lets a dead code pass, and a search shows the truth even before the expiry step has run.

use chrono::{DateTime, Duration, Utc};
use subtle::ConstantTimeEq;

use super::locale::Locale;
use super::step::{Channel, CodeLife, Destination, Policy, Step};
use super::template::TemplateText;
use super::types::{CodeLength, EventId, RequestId};

pub type Instant = DateTime<Utc>;

/// A PIN as the store keeps it: a keyed hash to check against, and a sealed (encrypted) copy that
/// later steps with the same PIN need for re-delivery. Neither reveals the PIN without the server
/// key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedPin {
    pub hash: [u8; 32],
    pub sealed: Vec<u8>,
}

/// Source of everything random the state machine needs. Production draws from the OS RNG and the
/// server key; tests use a deterministic one.
pub trait Minter {
    fn pin(&mut self, request_id: &RequestId, length: CodeLength) -> IssuedPin;
    fn event_id(&mut self) -> EventId;
}

/// What the verification is for, which decides the message text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// A normal verification, named by the caller's brand.
    Brand { brand: String },
    /// A PSD2 payment confirmation: the message names the payee and the amount (euro).
    Payment { payee: String, amount: String },
}

/// Where a verification stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    InProgress,
    Success,
    Failed,
    Expired,
    Cancelled,
}

/// The current code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinState {
    pub hash: [u8; 32],
    /// Dropped as soon as the verification ends: nothing can be delivered any more.
    pub sealed: Option<Vec<u8>>,
    pub issued_at: Instant,
    pub expires_at: Instant,
    /// Checks made against this code.
    pub checks: u8,
    /// Chosen by the caller, so a new code is this one again.
    pub custom: bool,
}

/// One step that has started. The `n`th record is the `n`th step's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRecord {
    pub id: EventId,
    pub channel: Channel,
    pub at: Instant,
}

/// One check. The code typed is not kept: a valid one is the PIN, and an invalid one is often a
/// near miss of it. Only its length is, so a search can show a masked code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckRecord {
    pub at: Instant,
    pub valid: bool,
    pub code_len: u8,
}

/// Everything needed to deliver one step, self-contained so a delivery can be retried after a
/// restart without reading the verification again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryOrder {
    pub event_id: EventId,
    pub request_id: RequestId,
    pub channel: Channel,
    pub to: Destination,
    /// The step's sender, if it names one.
    pub from: Option<String>,
    pub app_hash: Option<String>,
    pub purpose: Purpose,
    pub locale: Locale,
    pub sealed_pin: Vec<u8>,
    pub created_at: Instant,
    /// When the PIN this step carries stops being accepted, or the next step replaces it with a
    /// new one: a gateway that takes a validity period gets what is left of it, and a delivery
    /// that keeps failing is given up then. Deliveries stored by early versions have none.
    pub pin_expires_at: Option<Instant>,
    /// The step's own words, if it has them.
    pub text: Option<TemplateText>,
}

/// The caller's request, already validated by its surface.
#[derive(Clone, Debug)]
pub struct NewVerification {
    pub id: RequestId,
    pub account: String,
    pub purpose: Purpose,
    pub locale: Locale,
    /// At least one.
    pub steps: Vec<Step>,
    pub policy: Policy,
    /// The caller's own reference, kept to be shown back.
    pub reference: Option<String>,
    /// Who is told how the verification ends (a Verify v2 application), if anyone.
    pub callback: Option<String>,
    /// The client the start was made for, as limits and fraud monitoring count it (an
    /// address, an IPv6 /64), where the app named one.
    pub client: Option<String>,
    /// A caller-chosen PIN, already hashed and sealed; it is reused whenever a new PIN is due.
    pub custom_pin: Option<IssuedPin>,
}

/// A change asked for by a caller.
#[derive(Clone, Debug)]
pub enum Command {
    /// A code typed by the user, as its keyed hash and its length.
    Check {
        code_hash: [u8; 32],
        code_len: u8,
    },
    Cancel,
    /// Start the next step now instead of at its time.
    Next,
    /// The message of the step `event_id` could not be delivered at all.
    StepFailed {
        event_id: EventId,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandOutcome {
    Checked(CheckOutcome),
    Cancelled(Result<(), ControlError>),
    Advanced(Result<Box<DeliveryOrder>, ControlError>),
}

impl CommandOutcome {
    /// The delivery the command produced, which the store keeps with the verification.
    pub fn delivery(&self) -> Option<&DeliveryOrder> {
        match self {
            CommandOutcome::Advanced(Ok(order)) => Some(order.as_ref()),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckOutcome {
    /// The code matched; the verification has succeeded.
    Verified { event_id: EventId },
    /// Wrong code; more tries remain on this code.
    Mismatch { checks_left: u8 },
    /// Wrong code for the last allowed time; the verification has failed.
    TooManyAttempts,
    /// The current step takes no code.
    NoCode,
    /// The verification has ended (or never was this caller's).
    NotActive,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("the request is not active")]
    NotActive,
    #[error("cancel is not allowed this soon after the start")]
    CancelTooEarly,
    #[error("cancel is not allowed once the later steps have started")]
    CancelTooLate,
    #[error("no steps are left")]
    NoMoreEvents,
    /// A failure the verification does not act on: not its current step's, or its policy waits.
    #[error("nothing to do")]
    Ignored,
}

/// What a verification's callback target is told, once, as it happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notice {
    /// The step in progress ended with the verification: succeeded or failed.
    StepEnded,
    /// The verification ended.
    Ended,
}

impl Notice {
    pub fn as_str(self) -> &'static str {
        match self {
            Notice::StepEnded => "step_ended",
            Notice::Ended => "ended",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Notice::StepEnded, Notice::Ended]
            .into_iter()
            .find(|n| n.as_str() == raw)
    }
}

/// A verification's whole state, as the store keeps it. Read through [`Verification`], which
/// alone changes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    pub id: RequestId,
    pub account: String,
    pub purpose: Purpose,
    pub locale: Locale,
    pub steps: Vec<Step>,
    pub policy: Policy,
    pub reference: Option<String>,
    pub callback: Option<String>,
    pub client: Option<String>,
    pub submitted_at: Instant,
    pub status: Status,
    pub finalized_at: Option<Instant>,
    pub pin: PinState,
    pub events: Vec<EventRecord>,
    pub checks: Vec<CheckRecord>,
    pub next_event_at: Option<Instant>,
}

/// One verification request and its whole history. Its state is read through `Deref`; only the
/// methods below change it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verification(State);

impl std::ops::Deref for Verification {
    type Target = State;
    fn deref(&self) -> &State {
        &self.0
    }
}

impl Verification {
    /// Starts a verification: issues the first PIN and starts the first step at `now`.
    pub fn start(
        new: NewVerification,
        now: Instant,
        minter: &mut dyn Minter,
    ) -> (Self, DeliveryOrder) {
        assert!(
            !new.steps.is_empty(),
            "a verification has at least one step"
        );
        let (issued, custom) = match new.custom_pin {
            Some(pin) => (pin, true),
            None => (minter.pin(&new.id, new.policy.code_length), false),
        };
        let pin = PinState {
            hash: issued.hash,
            sealed: Some(issued.sealed),
            issued_at: now,
            expires_at: now,
            checks: 0,
            custom,
        };
        let mut v = Self(State {
            id: new.id,
            account: new.account,
            purpose: new.purpose,
            locale: new.locale,
            steps: new.steps,
            policy: new.policy,
            reference: new.reference,
            callback: new.callback,
            client: new.client,
            submitted_at: now,
            status: Status::InProgress,
            finalized_at: None,
            pin,
            events: Vec::new(),
            checks: Vec::new(),
            next_event_at: Some(now),
        });
        v.0.pin.expires_at = v.expiry_of_new_code(0, now);
        let first = v.fire(now, minter);
        (v, first)
    }

    /// A verification as the store kept it.
    pub fn restore(state: State) -> Self {
        Self(state)
    }

    /// The destination of the first step: one verification in progress per account and key.
    pub fn destination_key(&self) -> &str {
        self.0.steps[0].to.key()
    }

    /// Applies a command at `now`: the one place commands change a verification, whichever
    /// engine holds it.
    pub fn apply(
        &mut self,
        command: &Command,
        now: Instant,
        minter: &mut dyn Minter,
    ) -> CommandOutcome {
        match command {
            Command::Check {
                code_hash,
                code_len,
            } => CommandOutcome::Checked(self.check(code_hash, *code_len, now)),
            Command::Cancel => CommandOutcome::Cancelled(self.cancel(now)),
            Command::Next => CommandOutcome::Advanced(self.trigger_next(now, minter).map(Box::new)),
            Command::StepFailed { event_id } => {
                CommandOutcome::Advanced(self.step_failed(event_id, now, minter).map(Box::new))
            }
        }
    }

    /// Applies whatever time alone decides: the verification expires once no step is left and
    /// the last code has expired. Every other operation settles first.
    pub fn settle(&mut self, now: Instant) {
        if self.0.status == Status::InProgress
            && self.0.next_event_at.is_none()
            && now >= self.0.pin.expires_at
        {
            let at = self.0.pin.expires_at;
            self.finish(Status::Expired, at);
        }
    }

    /// Starts the next step if it is due at `now`. The scheduler calls this for due
    /// verifications; a step that came due while nothing ran starts now, and the rest follow
    /// from now.
    pub fn advance(&mut self, now: Instant, minter: &mut dyn Minter) -> Option<DeliveryOrder> {
        self.settle(now);
        match self.0.next_event_at {
            Some(at) if self.0.status == Status::InProgress && at <= now => {
                Some(self.fire(now, minter))
            }
            _ => None,
        }
    }

    /// Checks a code, given as its keyed hash. The check is counted before the comparison, so a
    /// failing store write can never hand out a free guess.
    fn check(&mut self, candidate_hash: &[u8; 32], code_len: u8, now: Instant) -> CheckOutcome {
        self.settle(now);
        if self.0.status != Status::InProgress {
            return CheckOutcome::NotActive;
        }
        if !self.current_step().channel.takes_code() {
            return CheckOutcome::NoCode;
        }
        let s = &mut self.0;
        s.pin.checks = s.pin.checks.saturating_add(1);
        let matches: bool = s.pin.hash.ct_eq(candidate_hash).into();
        let valid = matches && now < s.pin.expires_at;
        s.checks.push(CheckRecord {
            at: now,
            valid,
            code_len,
        });
        if valid {
            self.finish(Status::Success, now);
            let event_id = self.0.events.last().map(|e| e.id.clone());
            return CheckOutcome::Verified {
                event_id: event_id.expect("a started verification has an event"),
            };
        }
        let tries = self.0.policy.tries_per_code;
        if self.0.pin.checks >= tries {
            self.finish(Status::Failed, now);
            return CheckOutcome::TooManyAttempts;
        }
        CheckOutcome::Mismatch {
            checks_left: tries - self.0.pin.checks,
        }
    }

    /// Cancels the verification inside the policy's window.
    fn cancel(&mut self, now: Instant) -> Result<(), ControlError> {
        self.settle(now);
        if self.0.status != Status::InProgress {
            return Err(ControlError::NotActive);
        }
        let window = self.0.policy.cancel;
        if now < self.0.submitted_at + secs(window.not_before) {
            return Err(ControlError::CancelTooEarly);
        }
        if self.0.events.len() >= window.until_steps {
            return Err(ControlError::CancelTooLate);
        }
        self.finish(Status::Cancelled, now);
        Ok(())
    }

    /// Starts the next step now instead of at its time.
    fn trigger_next(
        &mut self,
        now: Instant,
        minter: &mut dyn Minter,
    ) -> Result<DeliveryOrder, ControlError> {
        self.settle(now);
        if self.0.status != Status::InProgress {
            return Err(ControlError::NotActive);
        }
        if self.0.next_event_at.is_none() {
            return Err(ControlError::NoMoreEvents);
        }
        Ok(self.fire(now, minter))
    }

    /// A step whose message could not be delivered gives way to the next now, if the policy
    /// says so and it is still the current step.
    fn step_failed(
        &mut self,
        event_id: &EventId,
        now: Instant,
        minter: &mut dyn Minter,
    ) -> Result<DeliveryOrder, ControlError> {
        self.settle(now);
        if self.0.status != Status::InProgress {
            return Err(ControlError::NotActive);
        }
        let current = self.0.events.last().is_some_and(|e| &e.id == event_id);
        if !self.0.policy.next_on_failure || !current {
            return Err(ControlError::Ignored);
        }
        self.trigger_next(now, minter)
    }

    /// Status as of `now`, including an expiry that has not been written yet.
    pub fn status_at(&self, now: Instant) -> Status {
        let mut probe = self.clone();
        probe.settle(now);
        probe.0.status
    }

    /// When the verification ended, as of `now`.
    pub fn finalized_at(&self, now: Instant) -> Option<Instant> {
        match self.0.finalized_at {
            Some(at) => Some(at),
            None if self.status_at(now) == Status::Expired => Some(self.0.pin.expires_at),
            None => None,
        }
    }

    /// When the scheduler must look at this verification again: the next step, or the expiry of
    /// the last code. `None` once it has ended.
    pub fn next_due(&self) -> Option<Instant> {
        match self.0.status {
            Status::InProgress => Some(self.0.next_event_at.unwrap_or(self.0.pin.expires_at)),
            _ => None,
        }
    }

    /// What the callback target is to be told about the change from status `was` to now:
    /// nothing unless the verification has just ended and has a target.
    pub fn notices(&self, was: Status) -> &'static [Notice] {
        if self.0.callback.is_none() || was != Status::InProgress {
            return &[];
        }
        match self.0.status {
            Status::InProgress => &[],
            Status::Success | Status::Failed => &[Notice::StepEnded, Notice::Ended],
            Status::Expired => &[Notice::Ended],
            // The caller cancelled it itself and was told; a summary has no word for it.
            Status::Cancelled => &[],
        }
    }

    /// The step started last.
    pub fn current_step(&self) -> &Step {
        &self.0.steps[self.0.events.len().max(1) - 1]
    }

    fn fire(&mut self, now: Instant, minter: &mut dyn Minter) -> DeliveryOrder {
        let index = self.0.events.len();
        let step = self.0.steps[index].clone();
        if index > 0 && (step.new_code || now >= self.0.pin.expires_at) {
            self.renew_pin(index, now, minter);
        } else if self.0.policy.code_life == CodeLife::UntilWorkflowEnds {
            self.0.pin.expires_at = self.expiry_of_new_code(index, now);
        }
        let event_id = minter.event_id();
        self.0.events.push(EventRecord {
            id: event_id.clone(),
            channel: step.channel,
            at: now,
        });
        self.0.next_event_at = (index + 1 < self.0.steps.len()).then(|| now + secs(step.wait));
        // A code the next step replaces is worth delivering only until then.
        let replaced_at = self
            .0
            .next_event_at
            .filter(|_| self.0.steps[index + 1].new_code);
        let deliver_until =
            replaced_at.map_or(self.0.pin.expires_at, |at| at.min(self.0.pin.expires_at));
        DeliveryOrder {
            event_id,
            request_id: self.0.id.clone(),
            channel: step.channel,
            to: step.to,
            from: step.from,
            app_hash: step.app_hash,
            purpose: self.0.purpose.clone(),
            locale: self.0.locale,
            sealed_pin: self
                .0
                .pin
                .sealed
                .clone()
                .expect("an active verification keeps its sealed PIN"),
            created_at: now,
            pin_expires_at: Some(deliver_until),
            text: step.text,
        }
    }

    /// When a code issued as step `index` starts at `now` expires.
    fn expiry_of_new_code(&self, index: usize, now: Instant) -> Instant {
        match self.0.policy.code_life {
            CodeLife::Fixed(life) => now + secs(life),
            CodeLife::UntilWorkflowEnds => {
                let rest: u32 = self.0.steps[index..].iter().map(|s| s.wait).sum();
                now + secs(rest)
            }
        }
    }

    fn renew_pin(&mut self, index: usize, now: Instant, minter: &mut dyn Minter) {
        let expires_at = self.expiry_of_new_code(index, now);
        let s = &mut self.0;
        if !s.pin.custom {
            let issued = minter.pin(&s.id, s.policy.code_length);
            s.pin.hash = issued.hash;
            s.pin.sealed = Some(issued.sealed);
        }
        s.pin.issued_at = now;
        s.pin.expires_at = expires_at;
        s.pin.checks = 0;
    }

    fn finish(&mut self, status: Status, at: Instant) {
        let s = &mut self.0;
        s.status = status;
        s.finalized_at = Some(at);
        s.next_event_at = None;
        s.pin.sealed = None;
    }
}

fn secs(s: u32) -> Duration {
    Duration::seconds(i64::from(s))
}
