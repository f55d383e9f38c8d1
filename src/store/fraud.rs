//! What conversion monitoring keeps, shared by every node of a database: sends and conversions
//! per subject and hour, the subjects blocked, and every decision with its reason.

use async_trait::async_trait;

use super::StoreResult;
use crate::domain::fraud::{Block, BlockLengths, Dimension, HourTally, Subject};
use crate::domain::Instant;

/// A decision of the monitor, as written down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub account: String,
    pub subject: Subject,
    /// `block`, `record` or `unblock`.
    pub action: String,
    pub reason: String,
    pub at: Instant,
    /// Until when, for a block.
    pub until: Option<Instant>,
}

/// Sends and conversions of one subject over a period.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempts {
    pub subject: Subject,
    pub sent: u64,
    pub converted: u64,
}

/// Sends and conversions of one dimension over a period: all its subjects' together, and the
/// subjects with the most sends.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttemptsOf {
    pub sent: u64,
    pub converted: u64,
    /// Most sends first (then by subject), at most the limit asked for.
    pub top: Vec<Attempts>,
}

#[async_trait]
pub trait FraudStore: Send + Sync + 'static {
    /// The block in force at `now` of one of `subjects`, if any; a read, counting nothing.
    async fn blocked(
        &self,
        account: &str,
        subjects: Vec<Subject>,
        now: Instant,
    ) -> StoreResult<Option<Block>>;

    /// Counts a send of `account` under each subject in `now`'s hour and returns each subject's
    /// hours of the last day, unless one of the subjects is blocked at `now`: then counts
    /// nothing and returns that block.
    async fn record_send(
        &self,
        account: &str,
        subjects: Vec<Subject>,
        now: Instant,
    ) -> StoreResult<Result<Vec<(Subject, Vec<HourTally>)>, Block>>;

    /// Counts a conversion under each subject, in the hour of its send.
    async fn record_conversion(
        &self,
        account: &str,
        subjects: Vec<Subject>,
        sent_at: Instant,
    ) -> StoreResult<()>;

    /// Blocks `subject` from `now` for `lengths.of(times)` seconds, `times` being how many
    /// times it has been blocked with this one, and writes the decision down; the block in
    /// force if there is one already; `None` when the operator's unblock exempts it at `now`.
    async fn block(
        &self,
        account: &str,
        subject: Subject,
        network: Option<String>,
        reason: String,
        now: Instant,
        lengths: BlockLengths,
    ) -> StoreResult<Option<Block>>;

    /// Lifts the blocks of `account` whose network (or prefix) is `network`, exempts them from
    /// new blocks until `until` and writes each down; `None` when none is in force at `now`.
    async fn unblock(
        &self,
        account: &str,
        network: &str,
        until: Instant,
        now: Instant,
    ) -> StoreResult<Option<Instant>>;

    /// Writes a decision down, unless one of the same account, subject and action was written
    /// in the hour before it; whether it was written.
    async fn record_decision(&self, decision: Decision) -> StoreResult<bool>;

    /// Sends and conversions of `dimension`'s subjects in the hours from `since`'s, one
    /// account's or every account's together, with the `limit` subjects of most sends.
    async fn fraud_attempts(
        &self,
        account: Option<&str>,
        dimension: Dimension,
        since: Instant,
        limit: u32,
    ) -> StoreResult<AttemptsOf>;

    /// Decisions since `since`, newest first.
    async fn decisions(&self, account: Option<&str>, since: Instant) -> StoreResult<Vec<Decision>>;

    /// Blocks in force at `now`.
    async fn blocks(&self, account: Option<&str>, now: Instant) -> StoreResult<Vec<Block>>;

    /// Deletes tallies of hours before `before`; how many rows.
    async fn forget_tallies(&self, before: Instant) -> StoreResult<u64>;
}

/// The hours of the last day a send's assessment reads: the day, and the hour before it that
/// the sliding hour may still count.
pub(crate) fn first_hour(now: Instant) -> i64 {
    crate::domain::fraud::hour_of(now) - 24 * crate::domain::fraud::HOUR_MS
}

/// A stored count, which is never below zero.
pub(crate) fn count(stored: i64) -> u64 {
    stored.max(0) as u64
}

/// A time stored in ms.
pub(crate) fn at_ms(ms: i64) -> Instant {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// A stored subject key, read back.
pub(crate) fn subject(key: &str) -> super::StoreResult<Subject> {
    Subject::parse(key)
        .ok_or_else(|| super::StoreError::Corrupt(format!("a fraud subject: {key:?}")))
}

/// The range of stored subject keys of `dimension`: from `prefix:` up to `prefix;`, which an
/// index on the key reads as a range.
pub(crate) fn key_range(dimension: Dimension) -> (String, String) {
    (
        format!("{}:", dimension.name()),
        format!("{};", dimension.name()),
    )
}

/// The stored key of a prefix that a network-unblock may name instead of a network.
pub(crate) fn prefix_key(network: &str) -> String {
    format!("prefix:{network}")
}

/// The actions a decision is written down with.
pub const BLOCKED: &str = "block";
pub const RECORDED: &str = "record";
pub const UNBLOCKED: &str = "unblock";

/// The decision an operator's unblock of `subject` is written down as.
pub(crate) fn unblocked(account: &str, subject: Subject, now: Instant, until: Instant) -> Decision {
    Decision {
        account: account.to_owned(),
        subject,
        action: UNBLOCKED.into(),
        reason: "lifted by network-unblock".into(),
        at: now,
        until: Some(until),
    }
}
