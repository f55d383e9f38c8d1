//! The delivery log on PostgreSQL. A receipt and the acceptance of the try it names may be
//! recorded by two nodes at once; both take a transaction-scoped advisory lock on the message
//! first, so that one of them always sees the other's row.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;

use super::{ms_to_instant, pg_err, PgStore, DB_NOW_MS};
use crate::domain::{EventId, Instant, RequestId};
use crate::store::{
    Attempt, AttemptError, AttemptId, AttemptState, DeliveryLog, ReceiptApplied, StoreError,
    StoreResult, KEEP_PENDING_RECEIPTS_MS,
};

/// Serialises the transactions that touch one gateway message.
const LOCK_MESSAGE: &str =
    "select pg_advisory_xact_lock(hashtextextended('verifyd-receipt:' || $1 || ':' || $2, 0))";

/// Applies a kept receipt for `(channel, message_id)` to its try, once that try has the id.
async fn apply_pending(c: &impl GenericClient, channel: &str, message_id: &str) -> StoreResult<()> {
    let pending = c
        .query_opt(
            &c.prepare_cached(
                "delete from delivery_receipt where channel = $1 and message_id = $2 \
                 returning state, error_code, error_text, received_at",
            )
            .await
            .map_err(pg_err)?,
            &[&channel, &message_id],
        )
        .await
        .map_err(pg_err)?;
    if let Some(row) = pending {
        let (state, code, text, at): (String, Option<String>, Option<String>, i64) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        c.execute(
            &c.prepare_cached(
                "update delivery_attempt set state = $1, error_code = coalesce($2, error_code), \
                 error_text = coalesce($3, error_text), updated_at = $4 \
                 where channel = $5 and message_id = $6",
            )
            .await
            .map_err(pg_err)?,
            &[&state, &code, &text, &at, &channel, &message_id],
        )
        .await
        .map_err(pg_err)?;
    }
    Ok(())
}

#[async_trait]
impl DeliveryLog for PgStore {
    async fn attempt_started(
        &self,
        request_id: &RequestId,
        event_id: &EventId,
        kind: &str,
        channel: &str,
        route: Option<&str>,
        at: Instant,
    ) -> StoreResult<Option<AttemptId>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let (request_id, event_id) = (request_id.as_str(), event_id.as_str());
        let at = at.timestamp_millis();
        let renew = format!(
            "update delivery set lease_until = {DB_NOW_MS} + $3 \
             where request_id = $1 and event_id = $2"
        );
        let stored = tx
            .execute(
                &tx.prepare_cached(&renew).await.map_err(pg_err)?,
                &[&request_id, &event_id, &self.lease_ms],
            )
            .await
            .map_err(pg_err)?;
        if stored == 0 {
            return Ok(None);
        }
        tx.execute(
            &tx.prepare_cached(
                "update delivery_attempt set state = 'failed', error_code = 'interrupted', \
                 error_text = 'the process stopped during this try', updated_at = $3 \
                 where request_id = $1 and event_id = $2 and state = 'queued'",
            )
            .await
            .map_err(pg_err)?,
            &[&request_id, &event_id, &at],
        )
        .await
        .map_err(pg_err)?;
        let row = tx
            .query_one(
                &tx.prepare_cached(
                    "insert into delivery_attempt \
                     (request_id, event_id, kind, channel, route, state, created_at, \
                     updated_at) values ($1, $2, $3, $4, $6, 'queued', $5, $5) returning id",
                )
                .await
                .map_err(pg_err)?,
                &[&request_id, &event_id, &kind, &channel, &at, &route],
            )
            .await
            .map_err(pg_err)?;
        tx.commit().await.map_err(pg_err)?;
        Ok(Some(row.get(0)))
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
        let state = if delivered {
            AttemptState::Delivered
        } else {
            AttemptState::Submitted
        };
        let at = at.timestamp_millis();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let channel: String = tx
            .query_one(
                &tx.prepare_cached("select channel from delivery_attempt where id = $1")
                    .await
                    .map_err(pg_err)?,
                &[&attempt],
            )
            .await
            .map_err(pg_err)?
            .get(0);
        tx.execute(
            &tx.prepare_cached(LOCK_MESSAGE).await.map_err(pg_err)?,
            &[&channel, &message_id],
        )
        .await
        .map_err(pg_err)?;
        tx.execute(
            &tx.prepare_cached(
                "update delivery_attempt set message_id = $2, state = $3, updated_at = $4 \
                 where id = $1",
            )
            .await
            .map_err(pg_err)?,
            &[&attempt, &message_id, &state.as_str(), &at],
        )
        .await
        .map_err(pg_err)?;
        apply_pending(&tx, &channel, message_id).await?;
        tx.execute(
            &tx.prepare_cached("delete from delivery where request_id = $1 and event_id = $2")
                .await
                .map_err(pg_err)?,
            &[&request_id.as_str(), &event_id.as_str()],
        )
        .await
        .map_err(pg_err)?;
        tx.commit().await.map_err(pg_err)
    }

    async fn attempt_failed(
        &self,
        attempt: AttemptId,
        error: AttemptError,
        at: Instant,
    ) -> StoreResult<()> {
        let client = self.client().await?;
        client
            .execute(
                &client
                    .prepare_cached(
                        "update delivery_attempt set state = 'failed', error_code = $2, \
                         error_text = $3, updated_at = $4 where id = $1",
                    )
                    .await
                    .map_err(pg_err)?,
                &[&attempt, &error.code, &error.text, &at.timestamp_millis()],
            )
            .await
            .map_err(pg_err)?;
        Ok(())
    }

    async fn renew_leases(&self, deliveries: Vec<(RequestId, EventId)>) -> StoreResult<()> {
        if deliveries.is_empty() {
            return Ok(());
        }
        let client = self.client().await?;
        let requests: Vec<&str> = deliveries.iter().map(|(r, _)| r.as_str()).collect();
        let events: Vec<&str> = deliveries.iter().map(|(_, e)| e.as_str()).collect();
        let sql = format!(
            "update delivery d set lease_until = {DB_NOW_MS} + $3 \
             from unnest($1::text[], $2::text[]) as k(request_id, event_id) \
             where d.request_id = k.request_id and d.event_id = k.event_id"
        );
        client
            .execute(
                &client.prepare_cached(&sql).await.map_err(pg_err)?,
                &[&requests, &events, &self.lease_ms],
            )
            .await
            .map_err(pg_err)?;
        Ok(())
    }

    async fn give_back(&self, deliveries: Vec<(RequestId, EventId)>) -> StoreResult<()> {
        if deliveries.is_empty() {
            return Ok(());
        }
        let client = self.client().await?;
        let requests: Vec<&str> = deliveries.iter().map(|(r, _)| r.as_str()).collect();
        let events: Vec<&str> = deliveries.iter().map(|(_, e)| e.as_str()).collect();
        client
            .execute(
                "update delivery d set lease_until = 0 \
                 from unnest($1::text[], $2::text[]) as k(request_id, event_id) \
                 where d.request_id = k.request_id and d.event_id = k.event_id",
                &[&requests, &events],
            )
            .await
            .map_err(pg_err)?;
        Ok(())
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
        let (code, text) = match &error {
            Some(e) => (Some(e.code.as_str()), Some(e.text.as_str())),
            None => (None, None),
        };
        let at = at.timestamp_millis();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        tx.execute(
            &tx.prepare_cached(LOCK_MESSAGE).await.map_err(pg_err)?,
            &[&channel, &message_id],
        )
        .await
        .map_err(pg_err)?;
        // Every try with the id (a delivery sent twice after a crash may have two).
        let before: Option<(i64, String)> = tx
            .query(
                &tx.prepare_cached(
                    "select created_at, state from delivery_attempt \
                     where channel = $1 and message_id = $2",
                )
                .await
                .map_err(pg_err)?,
                &[&channel, &message_id],
            )
            .await
            .map_err(pg_err)?
            .first()
            .map(|row| (row.get(0), row.get(1)));
        if before.is_some() {
            tx.execute(
                &tx.prepare_cached(
                    "update delivery_attempt set state = $3, error_code = coalesce($4, error_code), \
                     error_text = coalesce($5, error_text), updated_at = $6 \
                     where channel = $1 and message_id = $2",
                )
                .await
                .map_err(pg_err)?,
                &[&channel, &message_id, &state.as_str(), &code, &text, &at],
            )
            .await
            .map_err(pg_err)?;
        } else {
            tx.execute(
                &tx.prepare_cached(
                    "insert into delivery_receipt \
                     (channel, message_id, state, error_code, error_text, received_at) \
                     values ($1, $2, $3, $4, $5, $6) \
                     on conflict (channel, message_id) do update set state = excluded.state, \
                     error_code = excluded.error_code, error_text = excluded.error_text, \
                     received_at = excluded.received_at",
                )
                .await
                .map_err(pg_err)?,
                &[&channel, &message_id, &state.as_str(), &code, &text, &at],
            )
            .await
            .map_err(pg_err)?;
            tx.execute(
                &tx.prepare_cached("delete from delivery_receipt where received_at < $1")
                    .await
                    .map_err(pg_err)?,
                &[&(at - KEEP_PENDING_RECEIPTS_MS)],
            )
            .await
            .map_err(pg_err)?;
        }
        tx.commit().await.map_err(pg_err)?;
        Ok(match before {
            Some((_, was)) if AttemptState::parse(&was).is_some_and(AttemptState::is_final) => {
                ReceiptApplied::Again
            }
            Some((tried_at, _)) => ReceiptApplied::ToTry(ms_to_instant(tried_at)?),
            None => ReceiptApplied::Kept,
        })
    }

    async fn attempts(&self, request_id: &RequestId) -> StoreResult<Vec<Attempt>> {
        let client = self.client().await?;
        let rows = client
            .query(
                &client
                    .prepare_cached(
                        "select request_id, event_id, kind, channel, message_id, state, \
                         error_code, error_text, created_at, updated_at, route \
                         from delivery_attempt where request_id = $1 order by id",
                    )
                    .await
                    .map_err(pg_err)?,
                &[&request_id.as_str()],
            )
            .await
            .map_err(pg_err)?;
        rows.iter()
            .map(|r| {
                let state: String = r.get(5);
                Ok(Attempt {
                    request_id: r.get(0),
                    event_id: r.get(1),
                    kind: r.get(2),
                    channel: r.get(3),
                    route: r.get(10),
                    message_id: r.get(4),
                    state: AttemptState::parse(&state)
                        .ok_or_else(|| StoreError::Corrupt(format!("attempt state {state:?}")))?,
                    error_code: r.get(6),
                    error_text: r.get(7),
                    created_at: ms_to_instant(r.get(8))?,
                    updated_at: ms_to_instant(r.get(9))?,
                })
            })
            .collect()
    }
}
