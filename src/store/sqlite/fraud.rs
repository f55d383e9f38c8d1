//! Conversion monitoring on SQLite: every call runs on the writer thread, so a send's check of
//! the blocks, its count and the read of its tallies are one step.

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};

use super::{db_err, SqliteStore};
use crate::domain::fraud::{hour_of, Block, BlockLengths, Dimension, HourTally, Subject};
use crate::domain::Instant;
use crate::store::fraud::{
    at_ms, count, first_hour, key_range, prefix_key, subject, unblocked, Attempts, AttemptsOf,
    Decision, FraudStore, BLOCKED,
};
use crate::store::StoreResult;

/// The block of `subject` in force at `now_ms`, if any.
fn block_of(
    conn: &Connection,
    account: &str,
    subject: &Subject,
    now_ms: i64,
) -> StoreResult<Option<Block>> {
    conn.prepare_cached(
        "select network, blocked_until, times, reason from fraud_block
         where account = ?1 and subject = ?2 and blocked_until > ?3",
    )
    .map_err(db_err)?
    .query_row(params![account, subject.key(), now_ms], |r| {
        Ok(Block {
            subject: subject.clone(),
            network: r.get(0)?,
            until: at_ms(r.get(1)?),
            times: r.get(2)?,
            reason: r.get(3)?,
        })
    })
    .optional()
    .map_err(db_err)
}

fn insert_decision(conn: &Connection, d: &Decision) -> StoreResult<()> {
    conn.prepare_cached(
        "insert into fraud_decision (account, subject, action, reason, at, until)
         values (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .map_err(db_err)?
    .execute(params![
        d.account,
        d.subject.key(),
        d.action,
        d.reason,
        d.at.timestamp_millis(),
        d.until.map(|t| t.timestamp_millis())
    ])
    .map_err(db_err)?;
    Ok(())
}

#[async_trait]
impl FraudStore for SqliteStore {
    async fn blocked(
        &self,
        account: &str,
        subjects: Vec<Subject>,
        now: Instant,
    ) -> StoreResult<Option<Block>> {
        let account = account.to_owned();
        self.read(move |conn| {
            for s in &subjects {
                if let Some(block) = block_of(conn, &account, s, now.timestamp_millis())? {
                    return Ok(Some(block));
                }
            }
            Ok(None)
        })
        .await
    }

    async fn record_send(
        &self,
        account: &str,
        subjects: Vec<Subject>,
        now: Instant,
    ) -> StoreResult<Result<Vec<(Subject, Vec<HourTally>)>, Block>> {
        let account = account.to_owned();
        self.write(move |conn| {
            let now_ms = now.timestamp_millis();
            for s in &subjects {
                if let Some(block) = block_of(conn, &account, s, now_ms)? {
                    return Ok(Err(block));
                }
            }
            let mut found = Vec::with_capacity(subjects.len());
            for s in &subjects {
                let key = s.key();
                conn.prepare_cached(
                    "insert into fraud_tally (account, subject, hour, sent) values (?1, ?2, ?3, 1)
                     on conflict (account, subject, hour) do update set sent = sent + 1",
                )
                .map_err(db_err)?
                .execute(params![account, key, hour_of(now)])
                .map_err(db_err)?;
                let hours = conn
                    .prepare_cached(
                        "select hour, sent, converted from fraud_tally
                         where account = ?1 and subject = ?2 and hour >= ?3",
                    )
                    .map_err(db_err)?
                    .query_map(params![account, key, first_hour(now)], |r| {
                        Ok(HourTally {
                            hour: r.get(0)?,
                            sent: count(r.get(1)?),
                            converted: count(r.get(2)?),
                        })
                    })
                    .map_err(db_err)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(db_err)?;
                found.push((s.clone(), hours));
            }
            Ok(Ok(found))
        })
        .await
    }

    async fn record_conversion(
        &self,
        account: &str,
        subjects: Vec<Subject>,
        sent_at: Instant,
    ) -> StoreResult<()> {
        let account = account.to_owned();
        self.write(move |conn| {
            for s in &subjects {
                conn.prepare_cached(
                    "insert into fraud_tally (account, subject, hour, converted)
                     values (?1, ?2, ?3, 1)
                     on conflict (account, subject, hour) do update set converted = converted + 1",
                )
                .map_err(db_err)?
                .execute(params![account, s.key(), hour_of(sent_at)])
                .map_err(db_err)?;
            }
            Ok(())
        })
        .await
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
        let account = account.to_owned();
        self.write(move |conn| {
            let row = conn
                .prepare_cached(
                    "select times, exempt_until from fraud_block
                     where account = ?1 and subject = ?2",
                )
                .map_err(db_err)?
                .query_row(params![account, subject.key()], |r| {
                    Ok((r.get::<_, u32>(0)?, r.get::<_, i64>(1)?))
                })
                .optional()
                .map_err(db_err)?;
            if row.is_some_and(|(_, exempt_until)| exempt_until > now_ms) {
                return Ok(None);
            }
            if let Some(block) = block_of(conn, &account, &subject, now_ms)? {
                return Ok(Some(block));
            }
            let times = row.map_or(0, |(times, _)| times) + 1;
            let until = at_ms(now_ms + lengths.of(times) * 1_000);
            conn.prepare_cached(
                "insert into fraud_block (account, subject, network, blocked_until, times, reason)
                 values (?1, ?2, ?3, ?4, ?5, ?6)
                 on conflict (account, subject) do update set network = ?3, blocked_until = ?4,
                     times = ?5, reason = ?6",
            )
            .map_err(db_err)?
            .execute(params![
                account,
                subject.key(),
                network,
                until.timestamp_millis(),
                times,
                reason
            ])
            .map_err(db_err)?;
            insert_decision(
                conn,
                &Decision {
                    account: account.clone(),
                    subject: subject.clone(),
                    action: BLOCKED.into(),
                    reason: reason.clone(),
                    at: now,
                    until: Some(until),
                },
            )?;
            Ok(Some(Block {
                subject: subject.clone(),
                network: network.clone(),
                until,
                times,
                reason: reason.clone(),
            }))
        })
        .await
    }

    async fn unblock(
        &self,
        account: &str,
        network: &str,
        until: Instant,
        now: Instant,
    ) -> StoreResult<Option<Instant>> {
        let (account, network) = (account.to_owned(), network.to_owned());
        self.write(move |conn| {
            let lifted = conn
                .prepare_cached(
                    "update fraud_block set blocked_until = ?4, exempt_until = ?5
                     where account = ?1 and (network = ?2 or subject = ?3) and blocked_until > ?4
                     returning subject",
                )
                .map_err(db_err)?
                .query_map(
                    params![
                        account,
                        network,
                        prefix_key(&network),
                        now.timestamp_millis(),
                        until.timestamp_millis()
                    ],
                    |r| r.get::<_, String>(0),
                )
                .map_err(db_err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db_err)?;
            for key in &lifted {
                insert_decision(conn, &unblocked(&account, subject(key)?, now, until))?;
            }
            Ok((!lifted.is_empty()).then_some(until))
        })
        .await
    }

    async fn record_decision(&self, decision: Decision) -> StoreResult<bool> {
        self.write(move |conn| {
            let recent: Option<i64> = conn
                .prepare_cached(
                    "select 1 from fraud_decision
                     where account = ?1 and subject = ?2 and action = ?3 and at > ?4 limit 1",
                )
                .map_err(db_err)?
                .query_row(
                    params![
                        decision.account,
                        decision.subject.key(),
                        decision.action,
                        decision.at.timestamp_millis() - crate::domain::fraud::HOUR_MS
                    ],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err)?;
            if recent.is_some() {
                return Ok(false);
            }
            insert_decision(conn, &decision)?;
            Ok(true)
        })
        .await
    }

    async fn fraud_attempts(
        &self,
        account: Option<&str>,
        dimension: Dimension,
        since: Instant,
        limit: u32,
    ) -> StoreResult<AttemptsOf> {
        let account = account.map(str::to_owned);
        self.read(move |conn| {
            let (from, to) = key_range(dimension);
            let filter = params![account, hour_of(since), from, to];
            let (sent, converted) = conn
                .prepare_cached(
                    "select coalesce(sum(sent), 0), coalesce(sum(converted), 0) from fraud_tally
                     where (?1 is null or account = ?1) and hour >= ?2
                       and subject >= ?3 and subject < ?4",
                )
                .map_err(db_err)?
                .query_row(filter, |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
                .map_err(db_err)?;
            let top = conn
                .prepare_cached(
                    "select subject, sum(sent), sum(converted) from fraud_tally
                     where (?1 is null or account = ?1) and hour >= ?2
                       and subject >= ?3 and subject < ?4
                     group by subject order by sum(sent) desc, subject limit ?5",
                )
                .map_err(db_err)?
                .query_map(params![account, hour_of(since), from, to, limit], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })
                .map_err(db_err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db_err)?;
            Ok(AttemptsOf {
                sent: count(sent),
                converted: count(converted),
                top: top
                    .into_iter()
                    .map(|(key, sent, converted)| {
                        Ok(Attempts {
                            subject: subject(&key)?,
                            sent: count(sent),
                            converted: count(converted),
                        })
                    })
                    .collect::<StoreResult<_>>()?,
            })
        })
        .await
    }

    async fn decisions(&self, account: Option<&str>, since: Instant) -> StoreResult<Vec<Decision>> {
        let account = account.map(str::to_owned);
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "select account, subject, action, reason, at, until from fraud_decision
                     where (?1 is null or account = ?1) and at >= ?2
                     order by at desc, id desc limit 1000",
                )
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![account, since.timestamp_millis()], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, Option<i64>>(5)?,
                    ))
                })
                .map_err(db_err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db_err)?;
            rows.into_iter()
                .map(|(account, key, action, reason, at, until)| {
                    Ok(Decision {
                        account,
                        subject: subject(&key)?,
                        action,
                        reason,
                        at: at_ms(at),
                        until: until.map(at_ms),
                    })
                })
                .collect()
        })
        .await
    }

    async fn blocks(&self, account: Option<&str>, now: Instant) -> StoreResult<Vec<Block>> {
        let account = account.map(str::to_owned);
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "select subject, network, blocked_until, times, reason from fraud_block
                     where (?1 is null or account = ?1) and blocked_until > ?2
                     order by blocked_until desc limit 1000",
                )
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![account, now.timestamp_millis()], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, u32>(3)?,
                        r.get::<_, String>(4)?,
                    ))
                })
                .map_err(db_err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db_err)?;
            rows.into_iter()
                .map(|(key, network, until, times, reason)| {
                    Ok(Block {
                        subject: subject(&key)?,
                        network,
                        until: at_ms(until),
                        times,
                        reason,
                    })
                })
                .collect()
        })
        .await
    }

    async fn forget_tallies(&self, before: Instant) -> StoreResult<u64> {
        let before = before.timestamp_millis();
        self.write(move |conn| {
            conn.execute("delete from fraud_tally where hour < ?1", params![before])
                .map(|n| n as u64)
                .map_err(db_err)
        })
        .await
    }
}
