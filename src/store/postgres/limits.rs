//! Limit counters on PostgreSQL: the rows of each bucket's previous and current windows are
//! locked (in the order of the buckets' names, then of the windows, so two calls never wait on
//! each other in a circle) while they are checked and counted, so every node counts against the
//! same numbers.

use async_trait::async_trait;

use super::{pg_err, PgStore};
use crate::domain::limits::{Bucket, Refused};
use crate::domain::Instant;
use crate::store::limits::{expiry, longest, room, windows, LimitStore};
use crate::store::StoreResult;

#[async_trait]
impl LimitStore for PgStore {
    async fn take(&self, buckets: Vec<Bucket>, now: Instant) -> StoreResult<Result<(), Refused>> {
        if buckets.is_empty() {
            return Ok(Ok(()));
        }
        let mut order: Vec<&Bucket> = buckets.iter().collect();
        order.sort_by(|a, b| a.key.cmp(&b.key));
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let lock = tx
            .prepare_cached(
                "insert into limit_counter (bucket, window_start, hits, expires_at)
                 values ($1, $2, 0, $3)
                 on conflict (bucket, window_start) do update set hits = limit_counter.hits
                 returning hits",
            )
            .await
            .map_err(pg_err)?;
        let mut counted = std::collections::HashMap::new();
        for bucket in &order {
            let (start, previous, _) = windows(bucket, now);
            // The previous window's row is locked too (first, as every call does): a call still
            // counting into it must commit before this one reads it.
            let before: i64 = tx
                .query_one(&lock, &[&bucket.key, &previous, &expiry(bucket, previous)])
                .await
                .map_err(pg_err)?
                .get(0);
            let current: i64 = tx
                .query_one(&lock, &[&bucket.key, &start, &expiry(bucket, start)])
                .await
                .map_err(pg_err)?
                .get(0);
            counted.insert(bucket.key.as_str(), (before, current));
        }
        let verdicts: Vec<_> = buckets
            .iter()
            .map(|bucket| {
                let (before, current) = counted[bucket.key.as_str()];
                room(bucket, before, current, windows(bucket, now).2)
            })
            .collect();
        if let Err(refused) = longest(verdicts) {
            return Ok(Err(refused));
        }
        for bucket in &order {
            let (start, previous, _) = windows(bucket, now);
            tx.execute(
                "update limit_counter set hits = hits + 1 where bucket = $1 and window_start = $2",
                &[&bucket.key, &start],
            )
            .await
            .map_err(pg_err)?;
            // One window more is kept: a node whose clock is a little behind may still hold
            // it. Older rows a call is still holding (its `now` read long before it got a
            // connection) are skipped, not waited for: that call may be waiting on a row this
            // one holds. What is skipped is deleted later, or when it expires.
            tx.execute(
                "delete from limit_counter where (bucket, window_start) in (
                     select bucket, window_start from limit_counter
                     where bucket = $1 and window_start < $2 for update skip locked)",
                &[&bucket.key, &(previous - (start - previous))],
            )
            .await
            .map_err(pg_err)?;
        }
        tx.commit().await.map_err(pg_err)?;
        Ok(Ok(()))
    }

    async fn forget_expired(&self, now: Instant) -> StoreResult<u64> {
        let client = self.client().await?;
        client
            .execute(
                "delete from limit_counter where expires_at <= $1",
                &[&now.timestamp_millis()],
            )
            .await
            .map_err(pg_err)
    }
}
