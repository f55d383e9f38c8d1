//! The callback outbox on SQLite: written by the writer thread in the transaction of the change it
//! tells of, claimed and settled there too.

use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{params, Connection};

use super::{db_err, ms_to_instant, real_now_ms, SqliteStore};
use crate::domain::{Notice, RequestId, Status, Verification};
use crate::store::{new_uuid, Callback, CallbackOutbox, StoreError, StoreResult};

/// Writes the callbacks `v`'s change from status `was` calls for, due now.
pub(super) fn enqueue(conn: &Connection, v: &Verification, was: Status) -> StoreResult<()> {
    let Some(target) = &v.callback else {
        return Ok(());
    };
    let now = real_now_ms();
    for notice in v.notices(was) {
        conn.prepare_cached(
            "insert into callback (id, request_id, account, target, notice, next_attempt_at, created_at) \
             values (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        )
        .map_err(db_err)?
        .execute(params![
            new_uuid(),
            v.id.as_str(),
            v.account,
            target,
            notice.as_str(),
            now
        ])
        .map_err(db_err)?;
    }
    Ok(())
}

type Row = (String, String, String, String, String, i64, i64, i64);

fn callback(row: Row) -> StoreResult<Callback> {
    let (id, request_id, account, target, notice, attempts, created_at, claim) = row;
    Ok(Callback {
        id,
        request_id: RequestId::from_hex(&request_id)
            .ok_or_else(|| StoreError::Corrupt("a callback names a malformed request id".into()))?,
        account,
        target,
        notice: Notice::parse(&notice)
            .ok_or_else(|| StoreError::Corrupt("a callback of an unknown kind".into()))?,
        attempts,
        claim,
        created_at: ms_to_instant(created_at)?,
    })
}

#[async_trait]
impl CallbackOutbox for SqliteStore {
    async fn claim_callbacks(&self, limit: usize, lease: Duration) -> StoreResult<Vec<Callback>> {
        self.write(move |conn| {
            let now = real_now_ms();
            let rows: Vec<Row> = {
                let mut stmt = conn
                    .prepare_cached(
                        "select id, request_id, account, target, notice, attempts, created_at, \
                         claims + 1 from callback where next_attempt_at <= ?1 and lease_until <= ?1 \
                         order by next_attempt_at limit ?2",
                    )
                    .map_err(db_err)?;
                let rows = stmt
                    .query_map(params![now, limit as i64], |r| {
                        Ok((
                            r.get(0)?,
                            r.get(1)?,
                            r.get(2)?,
                            r.get(3)?,
                            r.get(4)?,
                            r.get(5)?,
                            r.get(6)?,
                            r.get(7)?,
                        ))
                    })
                    .map_err(db_err)?;
                rows.collect::<Result<_, _>>().map_err(db_err)?
            };
            let until = now + lease.as_millis() as i64;
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                conn.prepare_cached(
                    "update callback set lease_until = ?1, claims = claims + 1 where id = ?2",
                )
                .map_err(db_err)?
                .execute(params![until, row.0])
                    .map_err(db_err)?;
                out.push(callback(row)?);
            }
            Ok(out)
        })
        .await
    }

    async fn callback_sent(&self, callback: &Callback) -> StoreResult<()> {
        let (id, claim) = (callback.id.clone(), callback.claim);
        self.write(move |conn| {
            conn.prepare_cached("delete from callback where id = ?1 and claims = ?2")
                .map_err(db_err)?
                .execute(params![id, claim])
                .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn callback_failed(&self, callback: &Callback, retry_in: Duration) -> StoreResult<()> {
        let (id, claim) = (callback.id.clone(), callback.claim);
        self.write(move |conn| {
            conn.prepare_cached(
                "update callback set attempts = attempts + 1, next_attempt_at = ?1, \
                 lease_until = 0 where id = ?2 and claims = ?3",
            )
            .map_err(db_err)?
            .execute(params![
                real_now_ms() + retry_in.as_millis() as i64,
                id,
                claim
            ])
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }
}
