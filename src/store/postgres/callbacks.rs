//! The callback outbox on PostgreSQL: written in the transaction of the change it tells of;
//! nodes claim due callbacks with `skip locked` and hold them by a lease in database time.

use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::{ms_to_instant, pg_err, PgStore, DB_NOW_MS};
use crate::domain::{Notice, RequestId, Status, Verification};
use crate::store::{new_uuid, Callback, CallbackOutbox, StoreError, StoreResult};

/// Writes the callbacks `v`'s change from status `was` calls for, due now.
pub(super) async fn enqueue(
    c: &impl GenericClient,
    v: &Verification,
    was: Status,
) -> StoreResult<()> {
    let Some(target) = &v.callback else {
        return Ok(());
    };
    for notice in v.notices(was) {
        c.execute(
            &c.prepare_cached(&format!(
                "insert into callback (id, request_id, account, target, notice, next_attempt_at, created_at) \
                 values ($1, $2, $3, $4, $5, {DB_NOW_MS}, {DB_NOW_MS})"
            ))
            .await
            .map_err(pg_err)?,
            &[
                &new_uuid(),
                &v.id.as_str(),
                &v.account,
                target,
                &notice.as_str(),
            ],
        )
        .await
        .map_err(pg_err)?;
    }
    Ok(())
}

fn callback(row: &Row) -> StoreResult<Callback> {
    let request_id: String = row.get(1);
    let notice: String = row.get(4);
    Ok(Callback {
        id: row.get(0),
        request_id: RequestId::from_hex(&request_id)
            .ok_or_else(|| StoreError::Corrupt("a callback names a malformed request id".into()))?,
        account: row.get(2),
        target: row.get(3),
        notice: Notice::parse(&notice)
            .ok_or_else(|| StoreError::Corrupt("a callback of an unknown kind".into()))?,
        attempts: row.get(5),
        created_at: ms_to_instant(row.get(6))?,
        claim: row.get(7),
    })
}

#[async_trait]
impl CallbackOutbox for PgStore {
    async fn claim_callbacks(&self, limit: usize, lease: Duration) -> StoreResult<Vec<Callback>> {
        let client = self.client().await?;
        let rows = client
            .query(
                &client
                    .prepare_cached(&format!(
                        "update callback set lease_until = {DB_NOW_MS} + $2, claims = claims + 1 \
                         where id in \
                         (select id from callback where next_attempt_at <= {DB_NOW_MS} \
                          and lease_until <= {DB_NOW_MS} order by next_attempt_at limit $1 \
                          for update skip locked) \
                         returning id, request_id, account, target, notice, attempts, created_at, claims"
                    ))
                    .await
                    .map_err(pg_err)?,
                &[&(limit as i64), &(lease.as_millis() as i64)],
            )
            .await
            .map_err(pg_err)?;
        rows.iter().map(callback).collect()
    }

    async fn callback_sent(&self, callback: &Callback) -> StoreResult<()> {
        let client = self.client().await?;
        client
            .execute(
                &client
                    .prepare_cached("delete from callback where id = $1 and claims = $2")
                    .await
                    .map_err(pg_err)?,
                &[&callback.id, &callback.claim],
            )
            .await
            .map_err(pg_err)?;
        Ok(())
    }

    async fn callback_failed(&self, callback: &Callback, retry_in: Duration) -> StoreResult<()> {
        let client = self.client().await?;
        client
            .execute(
                &client
                    .prepare_cached(&format!(
                        "update callback set attempts = attempts + 1, \
                         next_attempt_at = {DB_NOW_MS} + $2, lease_until = 0 \
                         where id = $1 and claims = $3"
                    ))
                    .await
                    .map_err(pg_err)?,
                &[
                    &callback.id,
                    &(retry_in.as_millis() as i64),
                    &callback.claim,
                ],
            )
            .await
            .map_err(pg_err)?;
        Ok(())
    }
}
