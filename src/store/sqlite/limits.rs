//! Limit counters on SQLite: counted on the writer thread, so a check and its count are one step.

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};

use super::{db_err, SqliteStore};
use crate::domain::limits::{Bucket, Refused};
use crate::domain::Instant;
use crate::store::limits::{expiry, longest, room, windows, LimitStore};
use crate::store::StoreResult;

fn hits(conn: &Connection, bucket: &str, start: i64) -> StoreResult<i64> {
    Ok(conn
        .prepare_cached("select hits from limit_counter where bucket = ?1 and window_start = ?2")
        .map_err(db_err)?
        .query_row(params![bucket, start], |r| r.get(0))
        .optional()
        .map_err(db_err)?
        .unwrap_or(0))
}

#[async_trait]
impl LimitStore for SqliteStore {
    async fn take(&self, buckets: Vec<Bucket>, now: Instant) -> StoreResult<Result<(), Refused>> {
        if buckets.is_empty() {
            return Ok(Ok(()));
        }
        self.write(move |conn| {
            let mut verdicts = Vec::with_capacity(buckets.len());
            for bucket in &buckets {
                let (start, previous, elapsed) = windows(bucket, now);
                let counted = (
                    hits(conn, &bucket.key, previous)?,
                    hits(conn, &bucket.key, start)?,
                );
                verdicts.push(room(bucket, counted.0, counted.1, elapsed));
            }
            if let Err(refused) = longest(verdicts) {
                return Ok(Err(refused));
            }
            for bucket in &buckets {
                let (start, previous, _) = windows(bucket, now);
                conn.prepare_cached(
                    "insert into limit_counter (bucket, window_start, hits, expires_at)
                     values (?1, ?2, 1, ?3)
                     on conflict (bucket, window_start) do update set hits = hits + 1",
                )
                .map_err(db_err)?
                .execute(params![bucket.key, start, expiry(bucket, start)])
                .map_err(db_err)?;
                conn.prepare_cached(
                    "delete from limit_counter where bucket = ?1 and window_start < ?2",
                )
                .map_err(db_err)?
                .execute(params![bucket.key, previous])
                .map_err(db_err)?;
            }
            Ok(Ok(()))
        })
        .await
    }

    async fn forget_expired(&self, now: Instant) -> StoreResult<u64> {
        let now_ms = now.timestamp_millis();
        self.write(move |conn| {
            conn.execute(
                "delete from limit_counter where expires_at <= ?1",
                params![now_ms],
            )
            .map(|n| n as u64)
            .map_err(db_err)
        })
        .await
    }
}
