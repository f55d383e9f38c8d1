//! The delivery log on SQLite: tries and receipts, written by the one writer thread, so that a
//! receipt and the acceptance it names are applied in some order, never both missed.

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};

use super::{db_err, ms_to_instant, SqliteStore};
use crate::domain::{EventId, Instant, RequestId};
use crate::store::{
    Attempt, AttemptError, AttemptId, AttemptState, DeliveryLog, ReceiptApplied, StoreError,
    StoreResult, KEEP_PENDING_RECEIPTS_MS,
};

/// Applies a kept receipt for `(channel, message_id)` to its try, once that try has the id.
fn apply_pending(conn: &Connection, channel: &str, message_id: &str) -> StoreResult<()> {
    let pending: Option<(String, Option<String>, Option<String>, i64)> = conn
        .prepare_cached(
            "delete from delivery_receipt where channel = ?1 and message_id = ?2 \
             returning state, error_code, error_text, received_at",
        )
        .map_err(db_err)?
        .query_row(params![channel, message_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()
        .map_err(db_err)?;
    if let Some((state, code, text, at)) = pending {
        conn.prepare_cached(
            "update delivery_attempt set state = ?1, error_code = coalesce(?2, error_code), \
             error_text = coalesce(?3, error_text), updated_at = ?4 \
             where channel = ?5 and message_id = ?6",
        )
        .map_err(db_err)?
        .execute(params![state, code, text, at, channel, message_id])
        .map_err(db_err)?;
    }
    Ok(())
}

fn attempt_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(Attempt, String, i64, i64)> {
    Ok((
        Attempt {
            request_id: r.get(0)?,
            event_id: r.get(1)?,
            kind: r.get(2)?,
            channel: r.get(3)?,
            route: r.get(10)?,
            message_id: r.get(4)?,
            state: AttemptState::Queued,
            error_code: r.get(6)?,
            error_text: r.get(7)?,
            created_at: Instant::default(),
            updated_at: Instant::default(),
        },
        r.get(5)?,
        r.get(8)?,
        r.get(9)?,
    ))
}

#[async_trait]
impl DeliveryLog for SqliteStore {
    async fn attempt_started(
        &self,
        request_id: &RequestId,
        event_id: &EventId,
        kind: &str,
        channel: &str,
        route: Option<&str>,
        at: Instant,
    ) -> StoreResult<Option<AttemptId>> {
        let (request_id, event_id) = (request_id.as_str().to_owned(), event_id.as_str().to_owned());
        let (kind, channel) = (kind.to_owned(), channel.to_owned());
        let route = route.map(str::to_owned);
        let at = at.timestamp_millis();
        let lease_until = self.lease_until();
        self.write(move |conn| {
            let stored = conn
                .prepare_cached(
                    "update delivery set lease_until = ?3 where request_id = ?1 and event_id = ?2",
                )
                .map_err(db_err)?
                .execute(params![request_id, event_id, lease_until])
                .map_err(db_err)?;
            if stored == 0 {
                return Ok(None);
            }
            conn.prepare_cached(
                "update delivery_attempt set state = 'failed', error_code = 'interrupted', \
                 error_text = 'the process stopped during this try', updated_at = ?3 \
                 where request_id = ?1 and event_id = ?2 and state = 'queued'",
            )
            .map_err(db_err)?
            .execute(params![request_id, event_id, at])
            .map_err(db_err)?;
            conn.prepare_cached(
                "insert into delivery_attempt \
                 (request_id, event_id, kind, channel, route, state, created_at, updated_at) \
                 values (?1, ?2, ?3, ?4, ?6, 'queued', ?5, ?5)",
            )
            .map_err(db_err)?
            .execute(params![request_id, event_id, kind, channel, at, route])
            .map_err(db_err)?;
            Ok(Some(conn.last_insert_rowid()))
        })
        .await
    }

    async fn attempt_accepted(
        &self,
        attempt: AttemptId,
        request_id: &RequestId,
        event_id: &EventId,
        message_id: &str,
        delivered: bool,
        at: Instant,
    ) -> StoreResult<()> {
        let (request_id, event_id) = (request_id.as_str().to_owned(), event_id.as_str().to_owned());
        let message_id = message_id.to_owned();
        let state = if delivered {
            AttemptState::Delivered
        } else {
            AttemptState::Submitted
        };
        let at = at.timestamp_millis();
        self.write(move |conn| {
            let channel: String = conn
                .prepare_cached(
                    "update delivery_attempt set message_id = ?2, state = ?3, updated_at = ?4 \
                     where id = ?1 returning channel",
                )
                .map_err(db_err)?
                .query_row(params![attempt, message_id, state.as_str(), at], |r| {
                    r.get(0)
                })
                .map_err(db_err)?;
            apply_pending(conn, &channel, &message_id)?;
            conn.prepare_cached("delete from delivery where request_id = ?1 and event_id = ?2")
                .map_err(db_err)?
                .execute(params![request_id, event_id])
                .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn attempt_failed(
        &self,
        attempt: AttemptId,
        error: AttemptError,
        at: Instant,
    ) -> StoreResult<()> {
        let at = at.timestamp_millis();
        self.write(move |conn| {
            conn.prepare_cached(
                "update delivery_attempt set state = 'failed', error_code = ?2, error_text = ?3, \
                 updated_at = ?4 where id = ?1",
            )
            .map_err(db_err)?
            .execute(params![attempt, error.code, error.text, at])
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn renew_leases(&self, deliveries: Vec<(RequestId, EventId)>) -> StoreResult<()> {
        let lease_until = self.lease_until();
        self.write(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "update delivery set lease_until = ?3 where request_id = ?1 and event_id = ?2",
                )
                .map_err(db_err)?;
            for (request_id, event_id) in &deliveries {
                stmt.execute(params![request_id.as_str(), event_id.as_str(), lease_until])
                    .map_err(db_err)?;
            }
            Ok(())
        })
        .await
    }

    async fn give_back(&self, deliveries: Vec<(RequestId, EventId)>) -> StoreResult<()> {
        self.write(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "update delivery set lease_until = 0 where request_id = ?1 and event_id = ?2",
                )
                .map_err(db_err)?;
            for (request_id, event_id) in &deliveries {
                stmt.execute(params![request_id.as_str(), event_id.as_str()])
                    .map_err(db_err)?;
            }
            Ok(())
        })
        .await
    }

    async fn apply_receipt(
        &self,
        channel: &str,
        message_id: &str,
        state: AttemptState,
        error: Option<AttemptError>,
        at: Instant,
    ) -> StoreResult<ReceiptApplied> {
        if !state.is_final() {
            return Ok(ReceiptApplied::NotFinal);
        }
        let (channel, message_id) = (channel.to_owned(), message_id.to_owned());
        let at = at.timestamp_millis();
        self.write(move |conn| {
            let (code, text) = match &error {
                Some(e) => (Some(e.code.as_str()), Some(e.text.as_str())),
                None => (None, None),
            };
            let before: Option<(i64, String)> = conn
                .prepare_cached(
                    "select created_at, state from delivery_attempt \
                     where channel = ?1 and message_id = ?2",
                )
                .map_err(db_err)?
                .query_row(params![channel, message_id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
                .map_err(db_err)?;
            if let Some((tried_at, was)) = before {
                conn.prepare_cached(
                    "update delivery_attempt set state = ?3, error_code = coalesce(?4, error_code), \
                     error_text = coalesce(?5, error_text), updated_at = ?6 \
                     where channel = ?1 and message_id = ?2",
                )
                .map_err(db_err)?
                .execute(params![channel, message_id, state.as_str(), code, text, at])
                .map_err(db_err)?;
                let settled = AttemptState::parse(&was).is_some_and(AttemptState::is_final);
                return Ok(if settled {
                    ReceiptApplied::Again
                } else {
                    ReceiptApplied::ToTry(ms_to_instant(tried_at)?)
                });
            }
            conn.prepare_cached(
                "insert into delivery_receipt \
                 (channel, message_id, state, error_code, error_text, received_at) \
                 values (?1, ?2, ?3, ?4, ?5, ?6) \
                 on conflict (channel, message_id) do update set state = excluded.state, \
                 error_code = excluded.error_code, error_text = excluded.error_text, \
                 received_at = excluded.received_at",
            )
            .map_err(db_err)?
            .execute(params![channel, message_id, state.as_str(), code, text, at])
            .map_err(db_err)?;
            conn.prepare_cached("delete from delivery_receipt where received_at < ?1")
                .map_err(db_err)?
                .execute(params![at - KEEP_PENDING_RECEIPTS_MS])
                .map_err(db_err)?;
            Ok(ReceiptApplied::Kept)
        })
        .await
    }

    async fn attempts(&self, request_id: &RequestId) -> StoreResult<Vec<Attempt>> {
        let request_id = request_id.as_str().to_owned();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "select request_id, event_id, kind, channel, message_id, state, error_code, \
                     error_text, created_at, updated_at, route from delivery_attempt \
                     where request_id = ?1 order by id",
                )
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![request_id], attempt_from_row)
                .map_err(db_err)?;
            let mut out = Vec::new();
            for row in rows {
                let (mut attempt, state, created, updated) = row.map_err(db_err)?;
                attempt.state = AttemptState::parse(&state)
                    .ok_or_else(|| StoreError::Corrupt(format!("attempt state {state:?}")))?;
                attempt.created_at = ms_to_instant(created)?;
                attempt.updated_at = ms_to_instant(updated)?;
                out.push(attempt);
            }
            Ok(out)
        })
        .await
    }
}
