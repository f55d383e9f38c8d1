//! Conversion monitoring on PostgreSQL. A send's count takes the lock of its subjects' rows of
//! the hour (in the order of their keys), so the tallies it reads back include every send
//! counted before it on any node, and the send that passes a threshold is known exactly.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;

use super::{pg_err, PgStore};
use crate::domain::fraud::{hour_of, Block, BlockLengths, Dimension, HourTally, Subject, HOUR_MS};
use crate::domain::Instant;
use crate::store::fraud::{
    at_ms, count, first_hour, key_range, prefix_key, subject, unblocked, Attempts, AttemptsOf,
    Decision, FraudStore, BLOCKED,
};
use crate::store::StoreResult;

async fn block_of(
    client: &impl GenericClient,
    account: &str,
    subject: &Subject,
    now_ms: i64,
) -> StoreResult<Option<Block>> {
    let row = client
        .query_opt(
            "select network, blocked_until, times, reason from fraud_block
             where account = $1 and subject = $2 and blocked_until > $3",
            &[&account, &subject.key(), &now_ms],
        )
        .await
        .map_err(pg_err)?;
    Ok(row.map(|r| Block {
        subject: subject.clone(),
        network: r.get(0),
        until: at_ms(r.get(1)),
        times: r.get::<_, i32>(2).max(0) as u32,
        reason: r.get(3),
    }))
}

/// The block in force at `now_ms` of one of `subjects`, if any, in one query.
async fn block_among(
    client: &impl GenericClient,
    account: &str,
    subjects: &[Subject],
    now_ms: i64,
) -> StoreResult<Option<Block>> {
    let keys = sorted_keys(subjects);
    let row = client
        .query_opt(
            "select subject, network, blocked_until, times, reason from fraud_block
             where account = $1 and subject = any($2) and blocked_until > $3 limit 1",
            &[&account, &keys, &now_ms],
        )
        .await
        .map_err(pg_err)?;
    row.map(|r| {
        Ok(Block {
            subject: subject(r.get(0))?,
            network: r.get(1),
            until: at_ms(r.get(2)),
            times: r.get::<_, i32>(3).max(0) as u32,
            reason: r.get(4),
        })
    })
    .transpose()
}

/// Subjects' keys in one order, so that statements locking their rows never wait on each
/// other in a circle.
fn sorted_keys(subjects: &[Subject]) -> Vec<String> {
    let mut keys: Vec<String> = subjects.iter().map(Subject::key).collect();
    keys.sort();
    keys.dedup();
    keys
}

async fn insert_decision(client: &impl GenericClient, d: &Decision) -> StoreResult<()> {
    client
        .execute(
            "insert into fraud_decision (account, subject, action, reason, at, until)
             values ($1, $2, $3, $4, $5, $6)",
            &[
                &d.account,
                &d.subject.key(),
                &d.action,
                &d.reason,
                &d.at.timestamp_millis(),
                &d.until.map(|t| t.timestamp_millis()),
            ],
        )
        .await
        .map_err(pg_err)?;
    Ok(())
}

#[async_trait]
impl FraudStore for PgStore {
    async fn blocked(
        &self,
        account: &str,
        subjects: Vec<Subject>,
        now: Instant,
    ) -> StoreResult<Option<Block>> {
        let client = self.client().await?;
        block_among(&client, account, &subjects, now.timestamp_millis()).await
    }

    // Each statement commits on its own: a subject's row (a country's, hit by every send to
    // it) is locked only while one statement adds to it, not across a transaction's round
    // trips.
    async fn record_send(
        &self,
        account: &str,
        subjects: Vec<Subject>,
        now: Instant,
    ) -> StoreResult<Result<Vec<(Subject, Vec<HourTally>)>, Block>> {
        let client = self.counters().await?;
        if let Some(block) =
            block_among(&client, account, &subjects, now.timestamp_millis()).await?
        {
            return Ok(Err(block));
        }
        let keys = sorted_keys(&subjects);
        // The earlier hours as the statement's snapshot sees them, this hour as it counted it.
        let rows = client
            .query(
                "with counted as (
                     insert into fraud_tally (account, subject, hour, sent)
                     select $1, subject, $3, 1 from unnest($2::text[]) as subject
                     on conflict (account, subject, hour)
                     do update set sent = fraud_tally.sent + 1
                     returning subject, hour, sent, converted)
                 select subject, hour, sent, converted from counted
                 union all
                 select subject, hour, sent, converted from fraud_tally
                 where account = $1 and subject = any($2) and hour >= $4 and hour < $3",
                &[&account, &keys, &hour_of(now), &first_hour(now)],
            )
            .await
            .map_err(pg_err)?;
        let mut found: Vec<(Subject, Vec<HourTally>)> =
            subjects.into_iter().map(|s| (s, Vec::new())).collect();
        for r in &rows {
            let key: &str = r.get(0);
            if let Some((_, hours)) = found.iter_mut().find(|(s, _)| s.key() == key) {
                hours.push(HourTally {
                    hour: r.get(1),
                    sent: count(r.get(2)),
                    converted: count(r.get(3)),
                });
            }
        }
        Ok(Ok(found))
    }

    async fn record_conversion(
        &self,
        account: &str,
        subjects: Vec<Subject>,
        sent_at: Instant,
    ) -> StoreResult<()> {
        let client = self.counters().await?;
        client
            .execute(
                "insert into fraud_tally (account, subject, hour, converted)
                 select $1, subject, $3, 1 from unnest($2::text[]) as subject
                 on conflict (account, subject, hour)
                 do update set converted = fraud_tally.converted + 1",
                &[&account, &sorted_keys(&subjects), &hour_of(sent_at)],
            )
            .await
            .map_err(pg_err)?;
        Ok(())
    }

    async fn block(
        &self,
        account: &str,
        subject: Subject,
        network: Option<String>,
        reason: String,
        now: Instant,
        lengths: BlockLengths,
    ) -> StoreResult<Option<Block>> {
        let now_ms = now.timestamp_millis();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        // The row exists (and is locked) before it is read, so two nodes blocking one subject
        // at once count its blocks one after the other.
        tx.execute(
            "insert into fraud_block (account, subject, network, blocked_until, times, reason)
             values ($1, $2, $3, 0, 0, '') on conflict (account, subject) do nothing",
            &[&account, &subject.key(), &network],
        )
        .await
        .map_err(pg_err)?;
        let row = tx
            .query_one(
                "select times, exempt_until, blocked_until from fraud_block
                 where account = $1 and subject = $2 for update",
                &[&account, &subject.key()],
            )
            .await
            .map_err(pg_err)?;
        let (times, exempt_until, blocked_until): (i32, i64, i64) =
            (row.get(0), row.get(1), row.get(2));
        if exempt_until > now_ms {
            tx.commit().await.map_err(pg_err)?;
            return Ok(None);
        }
        if blocked_until > now_ms {
            let block = block_of(&tx, account, &subject, now_ms).await?;
            tx.commit().await.map_err(pg_err)?;
            return Ok(block);
        }
        let times = times.max(0) as u32 + 1;
        let until = at_ms(now_ms + lengths.of(times) * 1_000);
        tx.execute(
            "update fraud_block set network = $3, blocked_until = $4, times = $5, reason = $6
             where account = $1 and subject = $2",
            &[
                &account,
                &subject.key(),
                &network,
                &until.timestamp_millis(),
                &(times as i32),
                &reason,
            ],
        )
        .await
        .map_err(pg_err)?;
        insert_decision(
            &tx,
            &Decision {
                account: account.to_owned(),
                subject: subject.clone(),
                action: BLOCKED.into(),
                reason: reason.clone(),
                at: now,
                until: Some(until),
            },
        )
        .await?;
        tx.commit().await.map_err(pg_err)?;
        Ok(Some(Block {
            subject,
            network,
            until,
            times,
            reason,
        }))
    }

    async fn unblock(
        &self,
        account: &str,
        network: &str,
        until: Instant,
        now: Instant,
    ) -> StoreResult<Option<Instant>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let lifted = tx
            .query(
                "update fraud_block set blocked_until = $4, exempt_until = $5
                 where account = $1 and (network = $2 or subject = $3) and blocked_until > $4
                 returning subject",
                &[
                    &account,
                    &network,
                    &prefix_key(network),
                    &now.timestamp_millis(),
                    &until.timestamp_millis(),
                ],
            )
            .await
            .map_err(pg_err)?;
        for row in &lifted {
            let decision = unblocked(account, subject(row.get(0))?, now, until);
            insert_decision(&tx, &decision).await?;
        }
        tx.commit().await.map_err(pg_err)?;
        Ok((!lifted.is_empty()).then_some(until))
    }

    async fn record_decision(&self, decision: Decision) -> StoreResult<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        // One account's decisions are written one at a time, so two nodes cannot both find
        // none in the hour and both write.
        tx.execute(
            "select pg_advisory_xact_lock(hashtext('fraud_decision:' || $1))",
            &[&decision.account],
        )
        .await
        .map_err(pg_err)?;
        let recent = tx
            .query_opt(
                "select 1 from fraud_decision
                 where account = $1 and subject = $2 and action = $3 and at > $4 limit 1",
                &[
                    &decision.account,
                    &decision.subject.key(),
                    &decision.action,
                    &(decision.at.timestamp_millis() - HOUR_MS),
                ],
            )
            .await
            .map_err(pg_err)?;
        if recent.is_some() {
            tx.commit().await.map_err(pg_err)?;
            return Ok(false);
        }
        insert_decision(&tx, &decision).await?;
        tx.commit().await.map_err(pg_err)?;
        Ok(true)
    }

    async fn fraud_attempts(
        &self,
        account: Option<&str>,
        dimension: Dimension,
        since: Instant,
        limit: u32,
    ) -> StoreResult<AttemptsOf> {
        let client = self.client().await?;
        let (from, to) = key_range(dimension);
        let hour = hour_of(since);
        let totals = client
            .query_one(
                "select coalesce(sum(sent), 0)::bigint, coalesce(sum(converted), 0)::bigint
                 from fraud_tally
                 where ($1::text is null or account = $1) and hour >= $2
                   and subject >= $3 and subject < $4",
                &[&account, &hour, &from, &to],
            )
            .await
            .map_err(pg_err)?;
        let rows = client
            .query(
                "select subject, sum(sent)::bigint, sum(converted)::bigint from fraud_tally
                 where ($1::text is null or account = $1) and hour >= $2
                   and subject >= $3 and subject < $4
                 group by subject order by sum(sent) desc, subject limit $5",
                &[&account, &hour, &from, &to, &i64::from(limit)],
            )
            .await
            .map_err(pg_err)?;
        Ok(AttemptsOf {
            sent: count(totals.get(0)),
            converted: count(totals.get(1)),
            top: rows
                .iter()
                .map(|r| {
                    Ok(Attempts {
                        subject: subject(r.get(0))?,
                        sent: count(r.get(1)),
                        converted: count(r.get(2)),
                    })
                })
                .collect::<StoreResult<_>>()?,
        })
    }

    async fn decisions(&self, account: Option<&str>, since: Instant) -> StoreResult<Vec<Decision>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "select account, subject, action, reason, at, until from fraud_decision
                 where ($1::text is null or account = $1) and at >= $2
                 order by at desc, id desc limit 1000",
                &[&account, &since.timestamp_millis()],
            )
            .await
            .map_err(pg_err)?;
        rows.iter()
            .map(|r| {
                Ok(Decision {
                    account: r.get(0),
                    subject: subject(r.get(1))?,
                    action: r.get(2),
                    reason: r.get(3),
                    at: at_ms(r.get(4)),
                    until: r.get::<_, Option<i64>>(5).map(at_ms),
                })
            })
            .collect()
    }

    async fn blocks(&self, account: Option<&str>, now: Instant) -> StoreResult<Vec<Block>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "select subject, network, blocked_until, times, reason from fraud_block
                 where ($1::text is null or account = $1) and blocked_until > $2
                 order by blocked_until desc limit 1000",
                &[&account, &now.timestamp_millis()],
            )
            .await
            .map_err(pg_err)?;
        rows.iter()
            .map(|r| {
                Ok(Block {
                    subject: subject(r.get(0))?,
                    network: r.get(1),
                    until: at_ms(r.get(2)),
                    times: r.get::<_, i32>(3).max(0) as u32,
                    reason: r.get(4),
                })
            })
            .collect()
    }

    async fn forget_tallies(&self, before: Instant) -> StoreResult<u64> {
        let client = self.client().await?;
        client
            .execute(
                "delete from fraud_tally where hour < $1",
                &[&before.timestamp_millis()],
            )
            .await
            .map_err(pg_err)
    }
}
