//! What the dashboard reads: verifications found by number, request id, status and date, one
//! verification whatever its key, and the rows its charts are drawn from.

use async_trait::async_trait;

use super::{AttemptState, StoreResult};
use crate::domain::{Instant, RequestId, Verification};

/// A search; every part given must match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SearchFilter {
    /// The number's international digits, as stored.
    pub number: Option<String>,
    pub request_id: Option<RequestId>,
    /// A status's code (`domain::Status::code`).
    pub state: Option<i64>,
    /// Started at or after.
    pub from: Option<Instant>,
    /// Started before.
    pub until: Option<Instant>,
}

/// One verification a search found, newest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub request_id: String,
    pub account: String,
    pub number: String,
    /// A status's code; -1 for a row set aside because its body could not be read.
    pub state: i64,
    pub submitted_at: Instant,
}

/// A verification's start, for the charts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Started {
    pub at: Instant,
    pub number: String,
    pub state: i64,
}

/// A try, for the charts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tried {
    pub channel: String,
    pub route: Option<String>,
    pub state: AttemptState,
    pub created_at: Instant,
    pub updated_at: Instant,
}

#[async_trait]
pub trait ReportStore: Send + Sync + 'static {
    /// Up to `limit` verifications that match, newest first.
    async fn search(&self, filter: &SearchFilter, limit: usize) -> StoreResult<Vec<Found>>;

    /// The verification `id` of any key.
    async fn verification_any(&self, id: &RequestId) -> StoreResult<Option<Verification>>;

    /// The newest `limit` verifications started at or after `since`.
    async fn started_since(&self, since: Instant, limit: usize) -> StoreResult<Vec<Started>>;

    /// The newest `limit` tries started at or after `since`.
    async fn tried_since(&self, since: Instant, limit: usize) -> StoreResult<Vec<Tried>>;
}

pub(crate) fn rfc3339<S: serde::Serializer>(at: &Instant, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}
