//! Forgetting ended verifications and erasing a number, on PostgreSQL.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;

use super::{decode, pg_err, PgStore};
use crate::domain::{Instant, Verification};
use crate::store::retention::{goes_to, Erased, RetentionStore};
use crate::store::StoreResult;

/// What is recorded about verifications: their tries, deliveries, callbacks and inbox messages,
/// then the verifications. (A receipt is kept only until its try is known, and names no one.)
const DELETE_REQUESTS: [&str; 5] = [
    "delete from delivery_attempt where request_id = any($1)",
    "delete from delivery where request_id = any($1)",
    "delete from callback where request_id = any($1)",
    "delete from inbox_message where request_id = any($1)",
    "delete from verification where request_id = any($1)",
];

async fn delete_requests(c: &impl GenericClient, ids: &[String]) -> StoreResult<()> {
    for sql in DELETE_REQUESTS {
        c.execute(&c.prepare_cached(sql).await.map_err(pg_err)?, &[&ids])
            .await
            .map_err(pg_err)?;
    }
    Ok(())
}

#[async_trait]
impl RetentionStore for PgStore {
    async fn forget_ended(&self, before: Instant, limit: usize) -> StoreResult<usize> {
        let mut client = self.client().await?;
        let rows = client
            .query(
                &client
                    .prepare_cached(
                        "select request_id from verification \
                         where submitted_at < $1 and state <> 0 limit $2",
                    )
                    .await
                    .map_err(pg_err)?,
                &[&before.timestamp_millis(), &(limit as i64)],
            )
            .await
            .map_err(pg_err)?;
        let ids: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        if ids.is_empty() {
            return Ok(0);
        }
        let tx = client.transaction().await.map_err(pg_err)?;
        delete_requests(&tx, &ids).await?;
        tx.commit().await.map_err(pg_err)?;
        Ok(ids.len())
    }

    async fn erase_number(&self, digits: &str) -> StoreResult<Erased> {
        let mut client = self.client().await?;
        // A body holds the number of every step: one that mentions the digits is read to tell
        // a step to the number from a longer number.
        let rows = client
            .query(
                "select request_id, number, body from verification \
                 where number = $1 or strpos(body, $1) > 0",
                &[&digits],
            )
            .await
            .map_err(pg_err)?;
        let mut ids: Vec<String> = Vec::new();
        for row in &rows {
            let number: &str = row.get(1);
            let to_it = number == digits
                || decode::<Verification>(row.get(2)).is_ok_and(|v| goes_to(&v, digits));
            if to_it {
                ids.push(row.get(0));
            }
        }
        let suffix = format!(":{digits}");
        let tx = client.transaction().await.map_err(pg_err)?;
        let inbox_messages = tx
            .execute("delete from inbox_message where to_number = $1", &[&digits])
            .await
            .map_err(pg_err)?;
        delete_requests(&tx, &ids).await?;
        tx.execute(
            "delete from limit_counter where bucket like '%' || $1",
            &[&suffix],
        )
        .await
        .map_err(pg_err)?;
        tx.commit().await.map_err(pg_err)?;
        Ok(Erased {
            verifications: ids.len(),
            inbox_messages: inbox_messages as usize,
        })
    }
}
