//! Forgetting ended verifications and erasing a number, on SQLite.

use async_trait::async_trait;
use rusqlite::{params, Connection};

use super::{body, db_err, SqliteStore};
use crate::domain::{Instant, Verification};
use crate::store::retention::{goes_to, Erased, RetentionStore};
use crate::store::StoreResult;

/// What is recorded about a verification: its tries, deliveries, callbacks and inbox messages,
/// then the verification. (A receipt is kept only until its try is known, and names no one.)
const DELETE_REQUEST: [&str; 5] = [
    "delete from delivery_attempt where request_id = ?1",
    "delete from delivery where request_id = ?1",
    "delete from callback where request_id = ?1",
    "delete from inbox_message where request_id = ?1",
    "delete from verification where request_id = ?1",
];

fn delete_request(conn: &Connection, id: &str) -> StoreResult<()> {
    for sql in DELETE_REQUEST {
        conn.prepare_cached(sql)
            .map_err(db_err)?
            .execute(params![id])
            .map_err(db_err)?;
    }
    Ok(())
}

#[async_trait]
impl RetentionStore for SqliteStore {
    async fn forget_ended(&self, before: Instant, limit: usize) -> StoreResult<usize> {
        let before = before.timestamp_millis();
        let ids: Vec<String> = self
            .read(move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "select request_id from verification \
                         where submitted_at < ?1 and state <> 0 limit ?2",
                    )
                    .map_err(db_err)?;
                let rows = stmt
                    .query_map(params![before, limit as i64], |r| r.get(0))
                    .map_err(db_err)?;
                rows.collect::<Result<_, _>>().map_err(db_err)
            })
            .await?;
        if ids.is_empty() {
            return Ok(0);
        }
        self.write_tx(move |tx| {
            for id in &ids {
                tx.cache.take(id);
                delete_request(tx.conn, id)?;
            }
            Ok(ids.len())
        })
        .await
    }

    async fn erase_number(&self, digits: &str) -> StoreResult<Erased> {
        let wanted = digits.to_owned();
        let ids: Vec<String> = self
            .read(move |conn| {
                // A body holds the number of every step: one that mentions the digits is read
                // to tell a step to the number from a longer number.
                let mut stmt = conn
                    .prepare_cached(
                        "select request_id, number, body from verification \
                         where number = ?1 or instr(body, ?2) > 0",
                    )
                    .map_err(db_err)?;
                let rows = stmt
                    .query_map(params![wanted, wanted.as_bytes()], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            // MessagePack, or JSON text from versions before it.
                            r.get::<_, body::Body>(2)?,
                        ))
                    })
                    .map_err(db_err)?;
                let mut ids = Vec::new();
                for row in rows {
                    let (id, number, body) = row.map_err(db_err)?;
                    let to_it = number == wanted
                        || body::decode::<Verification>(&body.0)
                            .is_ok_and(|v| goes_to(&v, &wanted));
                    if to_it {
                        ids.push(id);
                    }
                }
                Ok(ids)
            })
            .await?;
        let suffix = format!(":{digits}");
        self.counters.forget_named(&suffix);
        let digits = digits.to_owned();
        let (verifications, inbox_messages) = self
            .write_tx(move |tx| {
                let inbox = tx
                    .conn
                    .prepare_cached("delete from inbox_message where to_number = ?1")
                    .map_err(db_err)?
                    .execute(params![digits])
                    .map_err(db_err)?;
                for id in &ids {
                    tx.cache.take(id);
                    delete_request(tx.conn, id)?;
                }
                tx.conn
                    .prepare_cached("delete from limit_counter where bucket like '%' || ?1")
                    .map_err(db_err)?
                    .execute(params![suffix])
                    .map_err(db_err)?;
                Ok((ids.len(), inbox))
            })
            .await?;
        Ok(Erased {
            verifications,
            inbox_messages,
        })
    }
}
