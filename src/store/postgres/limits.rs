//! Limit counters on PostgreSQL: the current window's row of each bucket is locked (in the order
//! of the buckets' names, so two calls never wait on each other in a circle) while it is checked
//! and counted, so every node counts against the same numbers.

use async_trait::async_trait;

use super::{pg_err, PgStore};
use crate::domain::limits::{Bucket, Refused};
use crate::domain::Instant;
use crate::store::limits::{room, windows, LimitStore};
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
                "insert into limit_counter (bucket, window_start, hits) values ($1, $2, 0)
                 on conflict (bucket, window_start) do update set hits = limit_counter.hits
                 returning hits",
            )
            .await
            .map_err(pg_err)?;
        let previous_hits = tx
            .prepare_cached(
                "select coalesce(max(hits), 0) from limit_counter
                 where bucket = $1 and window_start = $2",
            )
            .await
            .map_err(pg_err)?;
        let mut counted = std::collections::HashMap::new();
        for bucket in &order {
            let (start, previous, _) = windows(bucket, now);
            let current: i64 = tx
                .query_one(&lock, &[&bucket.key, &start])
                .await
                .map_err(pg_err)?
                .get(0);
            let before: i64 = tx
                .query_one(&previous_hits, &[&bucket.key, &previous])
                .await
                .map_err(pg_err)?
                .get(0);
            counted.insert(bucket.key.as_str(), (before, current));
        }
        // Judged in the caller's order, as on every engine.
        for bucket in &buckets {
            let (before, current) = counted[bucket.key.as_str()];
            if let Err(refused) = room(bucket, before, current, windows(bucket, now).2) {
                return Ok(Err(refused));
            }
        }
        for bucket in &order {
            let (start, previous, _) = windows(bucket, now);
            tx.execute(
                "update limit_counter set hits = hits + 1 where bucket = $1 and window_start = $2",
                &[&bucket.key, &start],
            )
            .await
            .map_err(pg_err)?;
            tx.execute(
                "delete from limit_counter where bucket = $1 and window_start < $2",
                &[&bucket.key, &previous],
            )
            .await
            .map_err(pg_err)?;
        }
        tx.commit().await.map_err(pg_err)?;
        Ok(Ok(()))
    }
}
