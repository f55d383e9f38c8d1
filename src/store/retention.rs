//! What is kept, and for how long: ended verifications are forgotten after the configured period
//! (`[retention]`), and a person's number can be erased at once (`verifyd erase --number`).

use async_trait::async_trait;

use super::StoreResult;
use crate::domain::{Instant, Verification};

/// What an erasure deleted.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Erased {
    /// Verifications to the number, in progress or ended, with their deliveries, tries and
    /// callbacks.
    pub verifications: usize,
    /// Inbox messages to the number.
    pub inbox_messages: usize,
}

#[async_trait]
pub trait RetentionStore: Send + Sync {
    /// Deletes up to `limit` verifications that have ended and were started before `before`,
    /// with their deliveries, tries, callbacks and inbox messages; how many.
    async fn forget_ended(&self, before: Instant, limit: usize) -> StoreResult<usize>;

    /// Deletes every verification with a step to `digits` (a number's international digits),
    /// whatever its state or account, with everything recorded about it, the inbox messages to
    /// the number and the limit counters named after it.
    async fn erase_number(&self, digits: &str) -> StoreResult<Erased>;
}

/// Whether one of `v`'s steps goes to the number `digits` (a body that mentions the digits may
/// only hold them inside a longer number).
pub(crate) fn goes_to(v: &Verification, digits: &str) -> bool {
    v.steps
        .iter()
        .any(|s| s.to.phone().is_some_and(|n| n.digits() == digits))
}

/// How many ended verifications one statement group forgets.
pub const FORGET_BATCH: usize = 500;
