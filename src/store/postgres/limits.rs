//! Limit counters on PostgreSQL: one row per bucket and fixed window, counted by every node,
//! so every node counts against the same numbers.

use std::collections::HashMap;

use async_trait::async_trait;

use deadpool_postgres::Pool;

use super::{pg_err, pool_err, PgStore};
use crate::domain::limits::{Bucket, Refused};
use crate::domain::Instant;
use crate::store::limits::{expiry, longest, room, windows, LimitStore};
use crate::store::{StoreError, StoreResult};

#[async_trait]
impl LimitStore for PgStore {
    // One statement counts the hit in every bucket's current window and reads its previous
    // one; a call that does not fit takes its hits back with a second. A key's busiest row (its
    // per-second window) is locked only while one statement runs and commits, on a connection
    // that does not wait for the commit to reach the disk (`counters`): a crash of PostgreSQL
    // may forget the last hits of a window, never count one twice. Between a refused call's
    // count and its taking back, a call sharing one of its buckets sees one hit too many and
    // may be refused with it; none gets through over a limit. Old windows are left to
    // `forget_expired` (every minute).
    async fn take(&self, buckets: Vec<Bucket>, now: Instant) -> StoreResult<Result<(), Refused>> {
        if buckets.is_empty() {
            return Ok(Ok(()));
        }
        // A call dropped between the count and the taking back (its client hung up) would
        // leave its hits counted against every bucket, a key's day among them: the take runs
        // on a task of its own, which finishes whatever becomes of the call.
        tokio::spawn(take_on(self.counters.clone(), buckets, now))
            .await
            .map_err(|e| StoreError::Backend(format!("the limits' count stopped: {e}")))?
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

/// [`PgStore::take`]'s count, decision and taking back, on a connection of `pool`.
async fn take_on(
    pool: Pool,
    buckets: Vec<Bucket>,
    now: Instant,
) -> StoreResult<Result<(), Refused>> {
    // Rows are locked in the order of their keys and windows, so two calls never wait on
    // each other in a circle.
    let mut current: Vec<(&str, i64, i64)> = buckets
        .iter()
        .map(|bucket| {
            let start = windows(bucket, now).0;
            (bucket.key.as_str(), start, expiry(bucket, start))
        })
        .collect();
    current.sort_unstable();
    current.dedup_by(|a, b| (a.0, a.1) == (b.0, b.1));
    let keys: Vec<&str> = current.iter().map(|r| r.0).collect();
    let starts: Vec<i64> = current.iter().map(|r| r.1).collect();
    let expiries: Vec<i64> = current.iter().map(|r| r.2).collect();
    let previous: Vec<i64> = buckets.iter().map(|b| windows(b, now).1).collect();
    let previous_keys: Vec<&str> = buckets.iter().map(|b| b.key.as_str()).collect();
    let client = pool.get().await.map_err(pool_err)?;
    let count = client
        .prepare_cached(
            "with counted as (
                 insert into limit_counter (bucket, window_start, hits, expires_at)
                 select b, w, 1, e from unnest($1::text[], $2::int8[], $3::int8[]) as t(b, w, e)
                 order by b, w
                 on conflict (bucket, window_start) do update set hits = limit_counter.hits + 1
                 returning bucket, window_start, hits - 1)
             select * from counted
             union all
             select bucket, window_start, hits from limit_counter
             where (bucket, window_start) in (
                 select * from unnest($4::text[], $5::int8[]))",
        )
        .await
        .map_err(pg_err)?;
    let counted: HashMap<(String, i64), i64> = client
        .query(
            &count,
            &[&keys, &starts, &expiries, &previous_keys, &previous],
        )
        .await
        .map_err(pg_err)?
        .iter()
        .map(|r| ((r.get(0), r.get(1)), r.get(2)))
        .collect();
    let hits = |key: &str, start: i64| counted.get(&(key.to_owned(), start)).copied().unwrap_or(0);
    let verdicts: Vec<_> = buckets
        .iter()
        .map(|bucket| {
            let (start, previous, elapsed) = windows(bucket, now);
            room(
                bucket,
                hits(&bucket.key, previous),
                hits(&bucket.key, start),
                elapsed,
            )
        })
        .collect();
    if let Err(refused) = longest(verdicts) {
        let take_back = client
            .prepare_cached(
                "insert into limit_counter (bucket, window_start, hits, expires_at)
                 select b, w, 0, e from unnest($1::text[], $2::int8[], $3::int8[]) as t(b, w, e)
                 order by b, w
                 on conflict (bucket, window_start) do update set hits = limit_counter.hits - 1",
            )
            .await
            .map_err(pg_err)?;
        client
            .execute(&take_back, &[&keys, &starts, &expiries])
            .await
            .map_err(pg_err)?;
        return Ok(Err(refused));
    }
    Ok(Ok(()))
}
