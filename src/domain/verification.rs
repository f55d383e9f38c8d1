//! The verification state machine.
//!
//! A verification walks its workflow's events (SMS or voice), each at a known time. Every event
//! delivers the current PIN, or a new one when the current PIN has expired. The user gets three
//! checks per PIN; the request ends SUCCESS, FAILED, CANCELLED, or EXPIRED once no event is left and
//! the last PIN has expired.
//!
//! Expiry is also *derived* on every read and write ([`Verification::settle`]), so a late scheduler
//! never lets a dead PIN pass, and search shows the truth even before the expiry step has run.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::locale::Locale;
use super::types::{CodeLength, EventId, PhoneNumber, RequestId};
use super::workflow::{EventKind, Workflow};

pub type Instant = DateTime<Utc>;

/// Checks allowed per PIN; the third wrong code ends the request.
pub const MAX_CHECKS_PER_PIN: u8 = 3;
/// Cancel is refused this soon after the request started.
pub const CANCEL_NOT_BEFORE_SECS: i64 = 30;
pub const DEFAULT_PIN_EXPIRY_SECS: u32 = 300;
pub const PIN_EXPIRY_RANGE: std::ops::RangeInclusive<i64> = 60..=3600;
pub const NEXT_EVENT_WAIT_RANGE: std::ops::RangeInclusive<i64> = 60..=900;

/// A PIN as the store keeps it: a keyed hash to check against, and a sealed (encrypted) copy that
/// later events of the same PIN need for re-delivery. Neither reveals the PIN without the server key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedPin {
    #[serde(with = "hex_bytes32")]
    pub hash: [u8; 32],
    #[serde(with = "hex_vec")]
    pub sealed: Vec<u8>,
}

/// Source of everything random the state machine needs. Production draws from the OS RNG and the
/// server key; tests use a deterministic one.
pub trait Minter {
    fn pin(&mut self, request_id: &RequestId, length: CodeLength) -> IssuedPin;
    fn event_id(&mut self) -> EventId;
}

/// What the verification is for, which decides the message text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Purpose {
    /// A normal verification, named by the caller's brand.
    Brand { brand: String, sender_id: String },
    /// A PSD2 payment confirmation: the message names the payee and the amount (euro).
    Payment { payee: String, amount: String },
}

impl Purpose {
    /// The sender id shown on SMS; PSD2 has no `sender_id` parameter and uses the default.
    pub fn sender_id(&self) -> &str {
        match self {
            Purpose::Brand { sender_id, .. } => sender_id,
            Purpose::Payment { .. } => DEFAULT_SENDER_ID,
        }
    }
}

pub const DEFAULT_SENDER_ID: &str = "VERIFY";

/// Event timing of one verification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timing {
    /// Replaces every default wait of the workflow when set.
    pub next_event_wait: Option<u32>,
    /// Lifetime of each PIN, in seconds.
    pub pin_expiry: u32,
}

impl Timing {
    /// Applies the rule that `pin_expiry` (given or the default 300) is a multiple of
    /// `next_event_wait`, or else becomes `next_event_wait`. Applying it to the default too means a
    /// long `next_event_wait` alone never leaves a stretch with no valid PIN. Ranges are checked
    /// at the edge.
    pub fn new(pin_expiry: Option<u32>, next_event_wait: Option<u32>) -> Self {
        let given = pin_expiry.unwrap_or(DEFAULT_PIN_EXPIRY_SECS);
        let pin_expiry = match next_event_wait {
            Some(w) if w > 0 && !given.is_multiple_of(w) => w,
            _ => given,
        };
        Self {
            next_event_wait,
            pin_expiry,
        }
    }
}

impl Default for Timing {
    fn default() -> Self {
        Self::new(None, None)
    }
}

/// The outcome a search reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    InProgress,
    Success,
    Failed,
    Expired,
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::InProgress => "IN PROGRESS",
            Status::Success => "SUCCESS",
            Status::Failed => "FAILED",
            Status::Expired => "EXPIRED",
            Status::Cancelled => "CANCELLED",
        }
    }

    /// A small stable number for the store's `state` column.
    pub fn code(self) -> i64 {
        match self {
            Status::InProgress => 0,
            Status::Success => 1,
            Status::Failed => 2,
            Status::Expired => 3,
            Status::Cancelled => 4,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct PinState {
    #[serde(with = "hex_bytes32")]
    hash: [u8; 32],
    /// Dropped as soon as the request ends: nothing can be delivered any more.
    #[serde(with = "hex_opt_vec", default)]
    sealed: Option<Vec<u8>>,
    #[serde(with = "ms")]
    issued_at: Instant,
    #[serde(with = "ms")]
    expires_at: Instant,
    checks: u8,
    custom: bool,
}

/// One delivery event (an SMS or a call) that has started.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    pub id: EventId,
    pub kind: EventKind,
    #[serde(with = "ms")]
    pub at: Instant,
}

/// One check. The code typed is not kept: a valid one is the PIN, and an invalid one is often a
/// near miss of it. Only its length is, so search can show a masked code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckRecord {
    #[serde(with = "ms")]
    pub at: Instant,
    pub valid: bool,
    pub code_len: u8,
}

/// Everything needed to deliver one event, self-contained so a delivery can be retried after a
/// restart without reading the verification again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryOrder {
    pub event_id: EventId,
    pub request_id: RequestId,
    pub kind: EventKind,
    pub to: PhoneNumber,
    pub purpose: Purpose,
    pub locale: Locale,
    #[serde(with = "hex_vec")]
    pub sealed_pin: Vec<u8>,
    #[serde(with = "ms")]
    pub created_at: Instant,
    /// When the PIN this event carries stops being accepted: a gateway that takes a validity
    /// period gets what is left of it, and a delivery that keeps failing is given up then.
    /// Deliveries stored by earlier versions have none.
    #[serde(default, with = "ms_opt")]
    pub pin_expires_at: Option<Instant>,
}

/// The caller's request, already validated.
#[derive(Clone, Debug)]
pub struct NewVerification {
    pub id: RequestId,
    pub account: String,
    pub number: PhoneNumber,
    pub purpose: Purpose,
    pub locale: Locale,
    pub code_length: CodeLength,
    pub workflow: Workflow,
    pub timing: Timing,
    /// A caller-chosen PIN, already hashed and sealed; it is reused whenever a new PIN is due.
    pub custom_pin: Option<IssuedPin>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckOutcome {
    /// The code matched; the request is now SUCCESS.
    Verified { event_id: EventId },
    /// Wrong code; more tries remain on this PIN.
    Mismatch { checks_left: u8 },
    /// Wrong code for the last allowed time; the request is now FAILED.
    TooManyAttempts,
    /// The request has ended (or never was this caller's).
    NotActive,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("the request is not active")]
    NotActive,
    #[error("cancel is not allowed within the first 30 seconds")]
    CancelTooEarly,
    #[error("cancel is not allowed once the second event has started")]
    CancelTooLate,
    #[error("no events are left")]
    NoMoreEvents,
}

/// One verification request and its whole history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    pub id: RequestId,
    pub account: String,
    pub number: PhoneNumber,
    pub purpose: Purpose,
    pub locale: Locale,
    pub code_length: CodeLength,
    pub workflow: Workflow,
    pub timing: Timing,
    #[serde(with = "ms")]
    pub submitted_at: Instant,
    status: Status,
    #[serde(with = "ms_opt", default)]
    finalized_at: Option<Instant>,
    pin: PinState,
    events: Vec<EventRecord>,
    checks: Vec<CheckRecord>,
    #[serde(with = "ms_opt", default)]
    next_event_at: Option<Instant>,
}

impl Verification {
    /// Starts a verification: issues the first PIN and fires the first event at `now`.
    pub fn start(
        new: NewVerification,
        now: Instant,
        minter: &mut dyn Minter,
    ) -> (Self, DeliveryOrder) {
        let (issued, custom) = match new.custom_pin {
            Some(pin) => (pin, true),
            None => (minter.pin(&new.id, new.code_length), false),
        };
        let pin = PinState {
            hash: issued.hash,
            sealed: Some(issued.sealed),
            issued_at: now,
            expires_at: now + secs(new.timing.pin_expiry),
            checks: 0,
            custom,
        };
        let mut v = Self {
            id: new.id,
            account: new.account,
            number: new.number,
            purpose: new.purpose,
            locale: new.locale,
            code_length: new.code_length,
            workflow: new.workflow,
            timing: new.timing,
            submitted_at: now,
            status: Status::InProgress,
            finalized_at: None,
            pin,
            events: Vec::new(),
            checks: Vec::new(),
            next_event_at: Some(now),
        };
        let first = v.fire(now, minter);
        (v, first)
    }

    /// Applies whatever time alone decides: the request expires once no event is left and the last
    /// PIN has expired. Every other operation settles first.
    pub fn settle(&mut self, now: Instant) {
        if self.status == Status::InProgress
            && self.next_event_at.is_none()
            && now >= self.pin.expires_at
        {
            let at = self.pin.expires_at;
            self.finish(Status::Expired, at);
        }
    }

    /// Runs the next event if it is due at `now`. The scheduler calls this for due requests; an
    /// event that came due while nothing ran fires now, and the workflow continues from now.
    pub fn advance(&mut self, now: Instant, minter: &mut dyn Minter) -> Option<DeliveryOrder> {
        self.settle(now);
        match self.next_event_at {
            Some(at) if self.status == Status::InProgress && at <= now => {
                Some(self.fire(now, minter))
            }
            _ => None,
        }
    }

    /// Checks a code, given as its keyed hash. The check is counted before the comparison, so a
    /// failing store write can never hand out a free guess.
    pub fn check(&mut self, candidate_hash: &[u8; 32], code_len: u8, now: Instant) -> CheckOutcome {
        self.settle(now);
        if self.status != Status::InProgress {
            return CheckOutcome::NotActive;
        }
        self.pin.checks = self.pin.checks.saturating_add(1);
        let matches: bool = self.pin.hash.ct_eq(candidate_hash).into();
        let valid = matches && now < self.pin.expires_at;
        self.checks.push(CheckRecord {
            at: now,
            valid,
            code_len,
        });
        if valid {
            self.finish(Status::Success, now);
            let event_id = self.events.last().map(|e| e.id.clone());
            return CheckOutcome::Verified {
                event_id: event_id.expect("a started verification has an event"),
            };
        }
        if self.pin.checks >= MAX_CHECKS_PER_PIN {
            self.finish(Status::Failed, now);
            return CheckOutcome::TooManyAttempts;
        }
        CheckOutcome::Mismatch {
            checks_left: MAX_CHECKS_PER_PIN - self.pin.checks,
        }
    }

    /// Cancels the request: allowed from 30 s after the start until the second event starts.
    pub fn cancel(&mut self, now: Instant) -> Result<(), ControlError> {
        self.settle(now);
        if self.status != Status::InProgress {
            return Err(ControlError::NotActive);
        }
        if now < self.submitted_at + Duration::seconds(CANCEL_NOT_BEFORE_SECS) {
            return Err(ControlError::CancelTooEarly);
        }
        if self.events.len() >= 2 {
            return Err(ControlError::CancelTooLate);
        }
        self.finish(Status::Cancelled, now);
        Ok(())
    }

    /// Runs the next event now instead of at its scheduled time.
    pub fn trigger_next(
        &mut self,
        now: Instant,
        minter: &mut dyn Minter,
    ) -> Result<DeliveryOrder, ControlError> {
        self.settle(now);
        if self.status != Status::InProgress {
            return Err(ControlError::NotActive);
        }
        if self.next_event_at.is_none() {
            return Err(ControlError::NoMoreEvents);
        }
        Ok(self.fire(now, minter))
    }

    /// Status as of `now`, including an expiry that has not been written yet.
    pub fn status_at(&self, now: Instant) -> Status {
        let mut probe = self.clone();
        probe.settle(now);
        probe.status
    }

    /// The stored status, without applying time.
    pub fn status(&self) -> Status {
        self.status
    }

    /// When the request ended, as of `now`.
    pub fn finalized_at(&self, now: Instant) -> Option<Instant> {
        match self.finalized_at {
            Some(at) => Some(at),
            None if self.status_at(now) == Status::Expired => Some(self.pin.expires_at),
            None => None,
        }
    }

    /// When the scheduler must look at this request again: the next event, or the expiry of the
    /// last PIN. `None` once the request has ended.
    pub fn next_due(&self) -> Option<Instant> {
        match self.status {
            Status::InProgress => Some(self.next_event_at.unwrap_or(self.pin.expires_at)),
            _ => None,
        }
    }

    pub fn next_event_at(&self) -> Option<Instant> {
        self.next_event_at
    }

    pub fn pin_expires_at(&self) -> Instant {
        self.pin.expires_at
    }

    pub fn events(&self) -> &[EventRecord] {
        &self.events
    }

    pub fn checks(&self) -> &[CheckRecord] {
        &self.checks
    }

    fn fire(&mut self, now: Instant, minter: &mut dyn Minter) -> DeliveryOrder {
        let index = self.events.len();
        let events = self.workflow.events();
        let kind = events[index];
        if now >= self.pin.expires_at {
            self.renew_pin(now, minter);
        }
        let event_id = minter.event_id();
        self.events.push(EventRecord {
            id: event_id.clone(),
            kind,
            at: now,
        });
        self.next_event_at =
            (index + 1 < events.len()).then(|| now + secs(self.wait_before(index + 1)));
        DeliveryOrder {
            event_id,
            request_id: self.id.clone(),
            kind,
            to: self.number.clone(),
            purpose: self.purpose.clone(),
            locale: self.locale,
            sealed_pin: self
                .pin
                .sealed
                .clone()
                .expect("an active verification keeps its sealed PIN"),
            created_at: now,
            pin_expires_at: Some(self.pin.expires_at),
        }
    }

    fn renew_pin(&mut self, now: Instant, minter: &mut dyn Minter) {
        if !self.pin.custom {
            let issued = minter.pin(&self.id, self.code_length);
            self.pin.hash = issued.hash;
            self.pin.sealed = Some(issued.sealed);
        }
        self.pin.issued_at = now;
        self.pin.expires_at = now + secs(self.timing.pin_expiry);
        self.pin.checks = 0;
    }

    fn wait_before(&self, index: usize) -> u32 {
        self.timing
            .next_event_wait
            .or_else(|| self.workflow.default_wait_before(index))
            .expect("every event after the first has a wait")
    }

    fn finish(&mut self, status: Status, at: Instant) {
        self.status = status;
        self.finalized_at = Some(at);
        self.next_event_at = None;
        self.pin.sealed = None;
    }
}

fn secs(s: u32) -> Duration {
    Duration::seconds(i64::from(s))
}

/// Instants are stored as milliseconds since the Unix epoch.
pub(crate) mod ms {
    use super::Instant;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(t: &Instant, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(t.timestamp_millis())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Instant, D::Error> {
        let v = i64::deserialize(d)?;
        chrono::DateTime::from_timestamp_millis(v)
            .ok_or_else(|| serde::de::Error::custom("timestamp out of range"))
    }
}

pub(crate) mod ms_opt {
    use super::Instant;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(t: &Option<Instant>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_some(&t.timestamp_millis()),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Instant>, D::Error> {
        match Option::<i64>::deserialize(d)? {
            Some(v) => chrono::DateTime::from_timestamp_millis(v)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom("timestamp out of range")),
            None => Ok(None),
        }
    }
}

/// Hex in stored bodies, read and written without a `String` in between. Every check decodes
/// and encodes a stored body on the SQLite writer, and every search decodes one: with
/// `hex::encode`/`decode` over owned strings a body took 856–944 ns to encode and 1,450–1,524
/// to decode, this way 538–572 and 1,208–1,227 (`cargo bench --bench stored_body`).
///
/// Formats that are not human-readable (the SQLite engine's MessagePack) get the bytes as they
/// are: half the size, and nothing to decode.
mod hex_text {
    use serde::de::{Error, Visitor};
    use serde::{Deserializer, Serializer};

    /// Writes `bytes` as lower-case hex, through a buffer on the stack when it is short.
    pub(super) fn write<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        if !s.is_human_readable() {
            return s.serialize_bytes(bytes);
        }
        let mut buf = [0u8; 128];
        match buf.get_mut(..bytes.len() * 2) {
            Some(out) => {
                hex::encode_to_slice(bytes, out).expect("twice as long");
                s.serialize_str(std::str::from_utf8(out).expect("hex is ASCII"))
            }
            None => s.serialize_str(&hex::encode(bytes)),
        }
    }

    /// Reads a hex string and decodes it with `from_hex`, or takes raw bytes with `from_bytes`.
    pub(super) fn read<'de, D, T>(
        d: D,
        from_hex: fn(&str) -> Result<T, hex::FromHexError>,
        from_bytes: fn(&[u8]) -> Option<T>,
    ) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
    {
        struct Hex<T> {
            from_hex: fn(&str) -> Result<T, hex::FromHexError>,
            from_bytes: fn(&[u8]) -> Option<T>,
        }
        impl<T> Visitor<'_> for Hex<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a hex string or bytes")
            }
            fn visit_str<E: Error>(self, v: &str) -> Result<T, E> {
                (self.from_hex)(v).map_err(E::custom)
            }
            fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<T, E> {
                (self.from_bytes)(v).ok_or_else(|| E::invalid_length(v.len(), &self))
            }
        }
        let visitor = Hex {
            from_hex,
            from_bytes,
        };
        if d.is_human_readable() {
            d.deserialize_str(visitor)
        } else {
            d.deserialize_bytes(visitor)
        }
    }
}

mod hex_vec {
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        super::hex_text::write(v, s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        // Not `hex::decode`, which collects through an iterator of results.
        super::hex_text::read(
            d,
            |text| {
                let mut out = vec![0u8; text.len() / 2];
                hex::decode_to_slice(text, &mut out).map(|()| out)
            },
            |bytes| Some(bytes.to_vec()),
        )
    }
}

mod hex_opt_vec {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_some(&Hex(v)),
            None => s.serialize_none(),
        }
    }

    struct Hex<'a>(&'a [u8]);

    impl serde::Serialize for Hex<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            super::hex_text::write(self.0, s)
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        #[derive(Deserialize)]
        struct Bytes(#[serde(with = "super::hex_vec")] Vec<u8>);
        Ok(Option::<Bytes>::deserialize(d)?.map(|b| b.0))
    }
}

mod hex_bytes32 {
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        super::hex_text::write(v, s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        super::hex_text::read(
            d,
            |text| {
                let mut out = [0u8; 32];
                hex::decode_to_slice(text, &mut out).map(|()| out)
            },
            |bytes| bytes.try_into().ok(),
        )
    }
}
