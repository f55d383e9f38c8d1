//! The counters of the limits, shared by every node of a database.

use async_trait::async_trait;

use super::StoreResult;
use crate::domain::limits::{fits, Bucket, Refused};
use crate::domain::Instant;

#[async_trait]
pub trait LimitStore: Send + Sync + 'static {
    /// Counts one hit in every bucket if each has room for it at `now`; else counts none and
    /// names the full one that frees up last (so that its wait is the one to keep).
    async fn take(&self, buckets: Vec<Bucket>, now: Instant) -> StoreResult<Result<(), Refused>>;

    /// Deletes the counters no window at `now` or later can use; how many.
    async fn forget_expired(&self, now: Instant) -> StoreResult<u64>;
}

/// When the row of the window starting at `start` is of no use: once the window after it has
/// passed too.
pub(crate) fn expiry(bucket: &Bucket, start: i64) -> i64 {
    start + 2 * i64::from(bucket.rate.window_secs) * 1_000
}

/// Where a bucket's fixed windows start at `now`: this one and the one before, in ms.
pub(crate) fn windows(bucket: &Bucket, now: Instant) -> (i64, i64, i64) {
    let width = i64::from(bucket.rate.window_secs) * 1_000;
    let now_ms = now.timestamp_millis();
    let start = now_ms - now_ms.rem_euclid(width);
    (start, start - width, now_ms - start)
}

/// Whether `bucket` has room with `previous` and `current` hits counted, `elapsed` ms into its
/// window.
pub(crate) fn room(
    bucket: &Bucket,
    previous: i64,
    current: i64,
    elapsed: i64,
) -> Result<(), Refused> {
    fits(
        bucket.rate,
        previous.max(0) as u64,
        current.max(0) as u64,
        elapsed.max(0) as u64,
    )
    .map_err(|retry_after_ms| Refused {
        limit: bucket.limit.shown(),
        retry_after_ms,
    })
}

/// Of the buckets' verdicts, the refusal with the longest wait, if any.
pub(crate) fn longest(
    verdicts: impl IntoIterator<Item = Result<(), Refused>>,
) -> Result<(), Refused> {
    verdicts
        .into_iter()
        .filter_map(Result::err)
        .max_by_key(|r| r.retry_after_ms)
        .map_or(Ok(()), Err)
}
