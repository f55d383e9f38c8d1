//! Storage: one trait per concern, one implementation per engine. Every engine runs the same
//! suite (tests/store_contract.rs).
//!
//! The verification store works at the level of domain operations ("apply this check now"), not
//! rows, so that an engine can batch many operations into one transaction (SQLite: one writer
//! thread with group commit) or lock one row per operation (PostgreSQL) without the callers knowing.
//! Operations that depend on time get the clock, not a time: the engine reads it once it holds the
//! row, so operations on one verification see time in the order they are applied.
//!
//! Deliveries are stored with the step that produced them and *leased* (in real time) to the
//! process that made them. That process hands them to a channel and deletes them; a delivery whose
//! lease ran out (the process died, or lost it) is claimed again by whoever sweeps next.

pub mod admin;
mod batch;
pub mod body;
pub mod fraud;
pub mod limits;
pub mod postgres;
pub mod report;
pub mod retention;
pub mod sqlite;
pub mod templates;

pub use crate::channel::inbox::{InboxLog, InboxMessage};
pub use admin::AdminStore;
pub use fraud::FraudStore;
pub use limits::LimitStore;
pub use report::ReportStore;
pub use retention::RetentionStore;
pub use templates::TemplateStore;

use async_trait::async_trait;

use std::sync::Arc;

use crate::clock::Clock;
use crate::domain::{
    Command, CommandOutcome, DeliveryOrder, EventId, Instant, Minter, Notice, RequestId,
    Verification,
};

/// The clock handed to store operations.
pub type SharedClock = Arc<dyn Clock>;

/// Why a store operation failed. Clone, because one failed group commit fails every operation in
/// the group.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// The disk is full; nothing of the failed operation was written.
    #[error("the database disk is full: {0}")]
    DiskFull(String),
    /// Any other failure of the engine or its files.
    #[error("database error: {0}")]
    Backend(String),
    /// The stored data could not be read back as the domain expects.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The store is shutting down or its worker has stopped.
    #[error("the store is not running")]
    Closed,
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A minter handed to one store operation; the store runs domain code that may need new PINs.
pub type BoxMinter = Box<dyn Minter + Send>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CreateOutcome {
    Created,
    /// The caller already has a verification in progress for this number.
    Concurrent(RequestId),
}

#[async_trait]
pub trait VerificationStore: Send + Sync + 'static {
    /// Stores a new verification and its first delivery, unless the account already has one in
    /// progress for the same number. Returns once both are durable.
    async fn create(
        &self,
        verification: Verification,
        first: DeliveryOrder,
        now: Instant,
    ) -> StoreResult<CreateOutcome>;

    /// Applies `command` to the account's verification `id` at the clock's time once the
    /// verification is held, and returns the outcome with the verification as it now is. `None`
    /// when the account has no such verification. Deliveries the command produces are stored
    /// (leased to the caller) before returning.
    async fn apply(
        &self,
        account: &str,
        id: &RequestId,
        command: Command,
        clock: SharedClock,
        minter: BoxMinter,
    ) -> StoreResult<Option<(CommandOutcome, Verification)>>;

    /// As [`Self::apply`], for the server's own decisions (a step whose message could not be
    /// delivered): whichever account the verification belongs to.
    async fn apply_internal(
        &self,
        id: &RequestId,
        command: Command,
        clock: SharedClock,
        minter: BoxMinter,
    ) -> StoreResult<Option<(CommandOutcome, Verification)>>;

    /// The account's verifications among `ids`, in the order asked; unknown ids are left out.
    async fn find(&self, account: &str, ids: &[RequestId]) -> StoreResult<Vec<Verification>>;

    /// Advances up to `limit` verifications whose next step is due: fires due events and records
    /// expiries. Returns the deliveries to make, already stored and leased to the caller. Each due
    /// step is claimed by exactly one caller.
    async fn claim_due(
        &self,
        clock: SharedClock,
        limit: usize,
        minter: BoxMinter,
    ) -> StoreResult<Vec<DeliveryOrder>>;

    /// The earliest time any verification needs the scheduler.
    async fn next_due(&self) -> StoreResult<Option<Instant>>;

    /// Deliveries stored and not yet handed to a channel, leased or not, oldest first.
    async fn undelivered(&self, limit: usize) -> StoreResult<Vec<DeliveryOrder>>;

    /// Leases to the caller up to `limit` deliveries whose lease has run out, for requests still in
    /// progress, and drops those of requests that have ended.
    async fn claim_stale_deliveries(&self, limit: usize) -> StoreResult<Vec<DeliveryOrder>>;

    /// Forgets deliveries that were handed to their channel (or refused by it for good), each
    /// named by its request and event.
    async fn mark_delivered(&self, done: Vec<(RequestId, EventId)>) -> StoreResult<()>;
}

/// An API key as stored: the secret only as a hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub api_key: String,
    pub name: String,
    pub secret_hash: [u8; 32],
    pub state: KeyState,
    /// Whether this key may send its own PIN (`pin_code`); status 20 otherwise.
    pub allow_custom_pin: bool,
    pub created_at: Instant,
    /// Its own limits, in place of the file's.
    pub limits: crate::domain::limits::KeyLimits,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyState {
    Active,
    /// Answered with status 8: the account is barred.
    Disabled,
    /// Answered like an unknown key (status 4).
    Revoked,
}

impl KeyState {
    pub fn code(self) -> i64 {
        match self {
            KeyState::Active => 0,
            KeyState::Disabled => 1,
            KeyState::Revoked => 2,
        }
    }

    pub fn from_code(code: i64) -> Option<Self> {
        match code {
            0 => Some(KeyState::Active),
            1 => Some(KeyState::Disabled),
            2 => Some(KeyState::Revoked),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Active => "active",
            KeyState::Disabled => "disabled",
            KeyState::Revoked => "revoked",
        }
    }
}

#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    async fn insert_key(&self, key: ApiKeyRecord) -> StoreResult<()>;
    async fn list_keys(&self) -> StoreResult<Vec<ApiKeyRecord>>;
    async fn get_key(&self, api_key: &str) -> StoreResult<Option<ApiKeyRecord>>;
    /// Returns false when the key does not exist or is revoked: a revoked key stays revoked.
    async fn set_key_state(&self, api_key: &str, state: KeyState) -> StoreResult<bool>;
    /// Replaces the key's secret (its hash): the old secret stops working. False when the key
    /// does not exist or is revoked.
    async fn set_key_secret(&self, api_key: &str, secret_hash: [u8; 32]) -> StoreResult<bool>;
    /// Replaces the key's own limits if they are still `was` (read before the caller changed
    /// them): two changes made at once never lose one another.
    async fn set_key_limits(
        &self,
        api_key: &str,
        was: &crate::domain::limits::KeyLimits,
        limits: crate::domain::limits::KeyLimits,
    ) -> StoreResult<LimitsSet>;
}

/// What [`KeyStore::set_key_limits`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LimitsSet {
    Set,
    /// Another change came first: the limits are these now, and nothing was written.
    Changed(crate::domain::limits::KeyLimits),
    NoKey,
}

/// A Verify v2 application, as `verifyd apps create` registered it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppRecord {
    /// A UUID, the `application_id` claim of the application's JWTs.
    pub application_id: String,
    /// The API key whose account the application's requests belong to.
    pub api_key: String,
    /// The application's RSA public key, PEM.
    pub public_key: String,
    /// Where the application's callbacks go.
    pub status_url: Option<String>,
    /// The signature secret, sealed with the server key (`ServerKey::seal_secret`).
    pub signature_secret_sealed: Vec<u8>,
    pub created_at: Instant,
}

#[async_trait]
pub trait AppStore: Send + Sync + 'static {
    /// Fails when the API key does not exist.
    async fn insert_app(&self, app: AppRecord) -> StoreResult<()>;
    async fn get_app(&self, application_id: &str) -> StoreResult<Option<AppRecord>>;
    async fn list_apps(&self) -> StoreResult<Vec<AppRecord>>;
}

/// A callback waiting to be sent, as the outbox keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Callback {
    /// Stable across retries, so that the receiver can tell a repeat.
    pub id: String,
    pub request_id: RequestId,
    pub account: String,
    /// Who is told: the verification's callback target.
    pub target: String,
    pub notice: Notice,
    /// Sends tried so far.
    pub attempts: i64,
    /// Which claim of it this is: a result is recorded only under the claim that holds it, so
    /// a sender whose lease ran out cannot undo another's.
    pub claim: i64,
    /// When the verification's change wrote it (real time).
    pub created_at: Instant,
}

/// Callbacks written with the change they tell of, in the same transaction, so that none is
/// lost; sent at least once by whichever node claims them. Times are real time.
#[async_trait]
pub trait CallbackOutbox: Send + Sync + 'static {
    /// Leases to the caller, for `lease`, up to `limit` callbacks that are due and not leased.
    async fn claim_callbacks(
        &self,
        limit: usize,
        lease: std::time::Duration,
    ) -> StoreResult<Vec<Callback>>;

    /// The receiver took it: it is forgotten (unless another claim holds it now).
    async fn callback_sent(&self, callback: &Callback) -> StoreResult<()>;

    /// It was not taken: tried again after `retry_in` (unless another claim holds it now).
    async fn callback_failed(
        &self,
        callback: &Callback,
        retry_in: std::time::Duration,
    ) -> StoreResult<()>;
}

/// A key's limits as stored.
pub(crate) fn key_limits(text: &str) -> StoreResult<crate::domain::limits::KeyLimits> {
    crate::domain::limits::KeyLimits::parse(text)
        .map_err(|e| StoreError::Corrupt(format!("a key's limits: {e}")))
}

/// A new id (a callback's, a template's): 16 random bytes as a UUID.
pub(crate) fn new_uuid() -> String {
    let mut bytes = [0u8; 16];
    crate::crypto::os_random(&mut bytes);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}

/// Small named values the server keeps about itself (clock anchor, key fingerprint).
#[async_trait]
pub trait MetaStore: Send + Sync + 'static {
    async fn get_meta(&self, name: &str) -> StoreResult<Option<String>>;
    async fn set_meta(&self, name: &str, value: &str) -> StoreResult<()>;
}

/// What a receipt did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReceiptApplied {
    /// It settled its try, which started at this time.
    ToTry(Instant),
    /// It came again for a try a receipt had settled already (a gateway's retry): the try
    /// takes what it says, and the first one's time stands.
    Again,
    /// It is kept until its try's acceptance is recorded.
    Kept,
    /// It says the message is still on its way: nothing changes.
    NotFinal,
}

/// Where one try of one event on one channel stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptState {
    /// Handed to the channel; no answer yet (or the process stopped before one came).
    Queued,
    /// The gateway accepted it.
    Submitted,
    /// The gateway reports it at the phone.
    Delivered,
    /// The network could not deliver it.
    Undeliverable,
    /// The try or the message failed.
    Failed,
}

impl AttemptState {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptState::Queued => "queued",
            AttemptState::Submitted => "submitted",
            AttemptState::Delivered => "delivered",
            AttemptState::Undeliverable => "undeliverable",
            AttemptState::Failed => "failed",
        }
    }

    /// The states a receipt may set: one that says "still on its way" changes nothing.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            AttemptState::Delivered | AttemptState::Undeliverable | AttemptState::Failed
        )
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [
            AttemptState::Queued,
            AttemptState::Submitted,
            AttemptState::Delivered,
            AttemptState::Undeliverable,
            AttemptState::Failed,
        ]
        .into_iter()
        .find(|s| s.as_str() == raw)
    }
}

/// One recorded try, as `verifyd deliveries` prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub request_id: String,
    pub event_id: String,
    /// `sms` or `voice`.
    pub kind: String,
    pub channel: String,
    /// The route that chose the channel; none for tries recorded before routes were kept.
    pub route: Option<String>,
    pub message_id: Option<String>,
    pub state: AttemptState,
    pub error_code: Option<String>,
    pub error_text: Option<String>,
    pub created_at: Instant,
    pub updated_at: Instant,
}

/// How long a receipt that names no recorded try is kept: the acceptance it waits for comes in
/// milliseconds; what is still unmatched after a day never will be.
pub const KEEP_PENDING_RECEIPTS_MS: i64 = 24 * 60 * 60 * 1000;

/// A recorded try, as the store names it.
pub type AttemptId = i64;

/// The error a try or a receipt recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptError {
    pub code: String,
    pub text: String,
}

/// The record of every try to deliver an event, and the receipts gateways send about them.
/// Times are real time (the wall clock), not workflow time.
#[async_trait]
pub trait DeliveryLog: Send + Sync + 'static {
    /// Records a try of the event on `channel` about to be made, closes earlier tries of it
    /// that never finished (a process that stopped), and starts the delivery's lease again.
    /// `None`, recording nothing, when the delivery is no longer stored: another try of it was
    /// accepted, or its verification ended. Then it must not be sent.
    async fn attempt_started(
        &self,
        request_id: &RequestId,
        event_id: &EventId,
        kind: &str,
        channel: &str,
        route: Option<&str>,
        at: Instant,
    ) -> StoreResult<Option<AttemptId>>;

    /// The gateway took the message, as `message_id`. In one transaction: the try becomes
    /// submitted (delivered when `delivered`), a receipt that came before is applied, and the
    /// delivery leaves the store, so that nothing sends the event again.
    async fn attempt_accepted(
        &self,
        attempt: AttemptId,
        request_id: &RequestId,
        event_id: &EventId,
        message_id: &str,
        delivered: bool,
        at: Instant,
    ) -> StoreResult<()>;

    /// The try failed with `error`; the delivery stays unless the caller gives it up
    /// ([`VerificationStore::mark_delivered`]).
    async fn attempt_failed(
        &self,
        attempt: AttemptId,
        error: AttemptError,
        at: Instant,
    ) -> StoreResult<()>;

    /// Starts the leases of deliveries still being worked on again, so that no sweep takes them.
    async fn renew_leases(&self, deliveries: Vec<(RequestId, EventId)>) -> StoreResult<()>;

    /// Ends the leases of deliveries this process will not send (it is stopping), so that the
    /// next sweep, of any node, takes them at once.
    async fn give_back(&self, deliveries: Vec<(RequestId, EventId)>) -> StoreResult<()>;

    /// A gateway's receipt for `message_id` on `channel`: applied to its try now, or kept and
    /// applied when the try's acceptance is recorded. Only a final state (delivered,
    /// undeliverable, failed) changes a try.
    async fn apply_receipt(
        &self,
        channel: &str,
        message_id: &str,
        state: AttemptState,
        error: Option<AttemptError>,
        at: Instant,
    ) -> StoreResult<ReceiptApplied>;

    /// Every try of a verification's events, oldest first.
    async fn attempts(&self, request_id: &RequestId) -> StoreResult<Vec<Attempt>>;
}

/// Everything a running server needs from one engine. The engine also keeps the inbox channel's
/// log ([`InboxLog`]), which the channel sees only through that trait.
pub trait Store:
    DeliveryStore
    + RetentionStore
    + KeyStore
    + AppStore
    + TemplateStore
    + LimitStore
    + FraudStore
    + CallbackOutbox
    + MetaStore
    + InboxLog
    + AdminStore
    + ReportStore
{
}
impl<
        T: DeliveryStore
            + RetentionStore
            + KeyStore
            + AppStore
            + TemplateStore
            + LimitStore
            + FraudStore
            + CallbackOutbox
            + MetaStore
            + InboxLog
            + AdminStore
            + ReportStore,
    > Store for T
{
}

/// What the delivery dispatcher needs of an engine.
pub trait DeliveryStore: VerificationStore + DeliveryLog {}
impl<T: VerificationStore + DeliveryLog> DeliveryStore for T {}
