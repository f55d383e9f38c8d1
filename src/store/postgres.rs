//! The PostgreSQL engine, for several verifyd nodes on one database.
//!
//! Each operation is one transaction that locks the rows it changes (`for update`); PostgreSQL
//! commits concurrent transactions together (its own group commit), so there is no writer thread.
//! The scheduler claims due verifications with `for update skip locked`, so every step is taken
//! by exactly one node. Deliveries are leased in *database* time, which all nodes share: a node
//! that dies holding deliveries loses them to another node's sweep when the lease runs out. The
//! "one verification in progress per key and number" rule is a unique partial index, so it holds
//! across nodes whatever they do.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::error::SqlState;
use tokio_postgres::NoTls;

use super::{
    corrupt_json, encode, ApiKeyRecord, BoxMinter, Command, CommandOutcome, CreateOutcome,
    InboxLog, InboxMessage, KeyState, KeyStore, MetaStore, SharedClock, StoreError, StoreResult,
    VerificationStore,
};
use crate::channel::inbox::InboxLogError;
use crate::domain::{DeliveryOrder, EventId, Instant, RequestId, Status, Verification};

const MIGRATIONS: &[&str] = &[include_str!("../../migrations/postgres/0001_init.sql")];
const POOL_SIZE: usize = 16;
pub const DEFAULT_DELIVERY_LEASE: Duration = super::sqlite::DEFAULT_DELIVERY_LEASE;
/// The database's clock in milliseconds: leases compare with it, never with a node's clock.
/// `statement_timestamp()` is stable within a statement, so comparisons with it can use the
/// `delivery_lease` index (`clock_timestamp()`, being volatile, could not).
const DB_NOW_MS: &str = "(extract(epoch from statement_timestamp()) * 1000)::bigint";
const STATE_SET_ASIDE: i32 = -1;
/// A create that loses a race for the same number on another node runs again, and then sees
/// the winner's verification.
const CREATE_TRIES: usize = 3;

pub struct PgStore {
    pool: Pool,
    lease_ms: i64,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").finish_non_exhaustive()
    }
}

/// A database error, without its DETAIL (which quotes row values, such as numbers).
fn pg_err(e: tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) if *db.code() == SqlState::DISK_FULL => StoreError::DiskFull(db.message().into()),
        Some(db) => StoreError::Backend(format!("{}: {}", db.code().code(), db.message())),
        None => StoreError::Backend(e.to_string()),
    }
}

fn pool_err(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => pg_err(e),
        other => StoreError::Backend(format!("connection pool: {other}")),
    }
}

fn is_active_number_conflict(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|db| {
        *db.code() == SqlState::UNIQUE_VIOLATION
            && db.constraint() == Some("verification_active_number")
    })
}

fn ms_to_instant(ms: i64) -> StoreResult<Instant> {
    chrono::DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| StoreError::Corrupt("timestamp out of range".into()))
}

impl PgStore {
    /// Connects to `url` (postgres://…), checks the connection and brings the schema up to date.
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        let config = tokio_postgres::Config::from_str(url)
            .context("the PostgreSQL URL is not valid (postgres://user@host:port/database)")?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(10)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .context("cannot build the PostgreSQL connection pool")?;
        let store = Self {
            pool,
            lease_ms: DEFAULT_DELIVERY_LEASE.as_millis() as i64,
        };
        store.migrate().await?;
        Ok(store)
    }

    /// How long deliveries stay leased to the node that made them before a sweep may resend them.
    pub fn with_delivery_lease(mut self, lease: Duration) -> Self {
        self.lease_ms = lease.as_millis() as i64;
        self
    }

    async fn migrate(&self) -> anyhow::Result<()> {
        let mut client = self
            .pool
            .get()
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to PostgreSQL: {}", pool_err(e)))?;
        let tx = client.transaction().await?;
        // Nodes starting together migrate one at a time (per schema).
        tx.execute(
            "select pg_advisory_xact_lock(hashtext('verifyd-migrate:' || current_schema()))",
            &[],
        )
        .await?;
        tx.batch_execute(
            "create table if not exists verifyd_schema (version integer primary key, \
             applied_at timestamptz not null default now())",
        )
        .await?;
        let version: i32 = tx
            .query_one("select coalesce(max(version), 0) from verifyd_schema", &[])
            .await?
            .get(0);
        let known = MIGRATIONS.len() as i32;
        if version > known {
            anyhow::bail!(
                "the database schema is version {version}, newer than this verifyd knows ({known}); \
                 upgrade verifyd"
            );
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.batch_execute(sql)
                .await
                .with_context(|| format!("while applying PostgreSQL migration {}", i + 1))?;
            tx.execute(
                "insert into verifyd_schema (version) values ($1)",
                &[&(i as i32 + 1)],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn client(&self) -> StoreResult<deadpool_postgres::Client> {
        self.pool.get().await.map_err(pool_err)
    }
}

// Every statement below goes through the connection's statement cache (`prepare_cached`): a
// plain `execute(&str)` makes PostgreSQL parse and plan the text again each time and costs an
// extra round trip to describe it.

fn decode(body: &str) -> StoreResult<Verification> {
    serde_json::from_str(body).map_err(corrupt_json)
}

async fn save(c: &impl GenericClient, v: &Verification) -> StoreResult<()> {
    let body = encode(v)?;
    let next_due = v.next_due().map(|t| t.timestamp_millis());
    let state = v.status().code() as i32;
    c.execute(
        &c.prepare_cached(
            "update verification set state = $1, next_due_at = $2, body = $3 where request_id = $4",
        )
        .await
        .map_err(pg_err)?,
        &[&state, &next_due, &body, &v.id.as_str()],
    )
    .await
    .map_err(pg_err)?;
    if v.status() != Status::InProgress {
        // Nothing is delivered for an ended request, and its sealed PIN copies go with it.
        c.execute(
            &c.prepare_cached("delete from delivery where request_id = $1")
                .await
                .map_err(pg_err)?,
            &[&v.id.as_str()],
        )
        .await
        .map_err(pg_err)?;
    }
    Ok(())
}

async fn set_aside(
    c: &impl GenericClient,
    request_id: &str,
    error: &StoreError,
) -> StoreResult<()> {
    tracing::error!(request_id, %error, "a stored verification cannot be read; it is set aside");
    c.execute(
        &c.prepare_cached(
            "update verification set state = $1, next_due_at = null where request_id = $2",
        )
        .await
        .map_err(pg_err)?,
        &[&STATE_SET_ASIDE, &request_id],
    )
    .await
    .map_err(pg_err)?;
    Ok(())
}

async fn insert_delivery(
    c: &impl GenericClient,
    order: &DeliveryOrder,
    lease_ms: i64,
) -> StoreResult<()> {
    let body = encode(order)?;
    c.execute(
        &c.prepare_cached(&format!(
            "insert into delivery (event_id, request_id, body, created_at, lease_until) \
             values ($1, $2, $3, $4, {DB_NOW_MS} + $5)"
        ))
        .await
        .map_err(pg_err)?,
        &[
            &order.event_id.as_str(),
            &order.request_id.as_str(),
            &body,
            &order.created_at.timestamp_millis(),
            &lease_ms,
        ],
    )
    .await
    .map_err(pg_err)?;
    Ok(())
}

enum CreateTry {
    Done(CreateOutcome),
    /// Another node inserted a verification for the number between our look and our insert.
    LostRace,
}

impl PgStore {
    async fn try_create(
        &self,
        v: &Verification,
        first: &DeliveryOrder,
        now: Instant,
    ) -> StoreResult<CreateTry> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let holder = tx
            .query_opt(
                &tx.prepare_cached(
                    "select request_id, body from verification \
                 where account = $1 and number = $2 and state = 0 for update",
                )
                .await
                .map_err(pg_err)?,
                &[&v.account, &v.number.digits()],
            )
            .await
            .map_err(pg_err)?;
        if let Some(row) = holder {
            let holder_id: String = row.get(0);
            match decode(row.get(1)) {
                Ok(mut existing) => {
                    existing.settle(now);
                    if existing.status() == Status::InProgress {
                        tx.rollback().await.map_err(pg_err)?;
                        return Ok(CreateTry::Done(CreateOutcome::Concurrent(existing.id)));
                    }
                    save(&tx, &existing).await?;
                }
                Err(e) => set_aside(&tx, &holder_id, &e).await?,
            }
        }
        let body = encode(v)?;
        let inserted = tx
            .execute(
                &tx.prepare_cached(
                    "insert into verification \
                 (request_id, account, number, state, next_due_at, submitted_at, body) \
                 values ($1, $2, $3, $4, $5, $6, $7)",
                )
                .await
                .map_err(pg_err)?,
                &[
                    &v.id.as_str(),
                    &v.account,
                    &v.number.digits(),
                    &(v.status().code() as i32),
                    &v.next_due().map(|t| t.timestamp_millis()),
                    &v.submitted_at.timestamp_millis(),
                    &body,
                ],
            )
            .await;
        match inserted {
            Ok(_) => {}
            Err(e) if is_active_number_conflict(&e) => {
                tx.rollback().await.map_err(pg_err)?;
                return Ok(CreateTry::LostRace);
            }
            Err(e) => return Err(pg_err(e)),
        }
        insert_delivery(&tx, first, self.lease_ms).await?;
        tx.commit().await.map_err(pg_err)?;
        Ok(CreateTry::Done(CreateOutcome::Created))
    }
}

#[async_trait]
impl VerificationStore for PgStore {
    async fn create(
        &self,
        verification: Verification,
        first: DeliveryOrder,
        now: Instant,
    ) -> StoreResult<CreateOutcome> {
        for _ in 0..CREATE_TRIES {
            if let CreateTry::Done(outcome) = self.try_create(&verification, &first, now).await? {
                return Ok(outcome);
            }
        }
        Err(StoreError::Backend(
            "a verification for this number kept appearing and disappearing".into(),
        ))
    }

    async fn apply(
        &self,
        account: &str,
        id: &RequestId,
        command: Command,
        clock: SharedClock,
        mut minter: BoxMinter,
    ) -> StoreResult<Option<(CommandOutcome, Verification)>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let Some(row) = tx
            .query_opt(
                &tx.prepare_cached("select body from verification where request_id = $1 and account = $2 for update").await.map_err(pg_err)?,
                &[&id.as_str(), &account],
            )
            .await
            .map_err(pg_err)?
        else {
            tx.rollback().await.map_err(pg_err)?;
            return Ok(None);
        };
        let mut v = decode(row.get(0))?;
        // Read the time only now that the row is ours: operations on one verification see time in
        // the order they are applied.
        let now = clock.now();
        let outcome = match command {
            Command::Check {
                code_hash,
                code_len,
            } => CommandOutcome::Checked(v.check(&code_hash, code_len, now)),
            Command::Cancel => CommandOutcome::Cancelled(v.cancel(now)),
            Command::TriggerNext => CommandOutcome::Triggered(v.trigger_next(now, minter.as_mut())),
        };
        save(&tx, &v).await?;
        if let CommandOutcome::Triggered(Ok(order)) = &outcome {
            insert_delivery(&tx, order, self.lease_ms).await?;
        }
        tx.commit().await.map_err(pg_err)?;
        Ok(Some((outcome, v)))
    }

    async fn find(&self, account: &str, ids: &[RequestId]) -> StoreResult<Vec<Verification>> {
        let client = self.client().await?;
        let wanted: Vec<&str> = ids.iter().map(RequestId::as_str).collect();
        let rows = client
            .query(
                &client
                    .prepare_cached(
                        "select request_id, body from verification \
                 where request_id = any($1) and account = $2",
                    )
                    .await
                    .map_err(pg_err)?,
                &[&wanted, &account],
            )
            .await
            .map_err(pg_err)?;
        let mut found: Vec<(String, Verification)> = Vec::with_capacity(rows.len());
        for row in rows {
            found.push((row.get(0), decode(row.get(1))?));
        }
        // In the order asked.
        Ok(wanted
            .iter()
            .filter_map(|id| {
                found
                    .iter()
                    .position(|(f, _)| f == id)
                    .map(|i| found[i].1.clone())
            })
            .collect())
    }

    async fn claim_due(
        &self,
        clock: SharedClock,
        limit: usize,
        mut minter: BoxMinter,
    ) -> StoreResult<Vec<DeliveryOrder>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let horizon = clock.now().timestamp_millis();
        let rows = tx
            .query(
                &tx.prepare_cached(
                    "select request_id, body from verification \
                 where state = 0 and next_due_at <= $1 \
                 order by next_due_at limit $2 for update skip locked",
                )
                .await
                .map_err(pg_err)?,
                &[&horizon, &(limit as i64)],
            )
            .await
            .map_err(pg_err)?;
        let now = clock.now();
        let mut orders = Vec::new();
        for row in rows {
            let request_id: String = row.get(0);
            let mut v = match decode(row.get(1)) {
                Ok(v) => v,
                Err(e) => {
                    set_aside(&tx, &request_id, &e).await?;
                    continue;
                }
            };
            let order = v.advance(now, minter.as_mut());
            save(&tx, &v).await?;
            if let Some(order) = order {
                insert_delivery(&tx, &order, self.lease_ms).await?;
                orders.push(order);
            }
        }
        tx.commit().await.map_err(pg_err)?;
        Ok(orders)
    }

    async fn next_due(&self) -> StoreResult<Option<Instant>> {
        let client = self.client().await?;
        let row = client
            .query_one(
                &client
                    .prepare_cached("select min(next_due_at) from verification where state = 0")
                    .await
                    .map_err(pg_err)?,
                &[],
            )
            .await
            .map_err(pg_err)?;
        row.get::<_, Option<i64>>(0).map(ms_to_instant).transpose()
    }

    async fn undelivered(&self, limit: usize) -> StoreResult<Vec<DeliveryOrder>> {
        let client = self.client().await?;
        let rows = client
            .query(
                &client
                    .prepare_cached("select body from delivery order by created_at limit $1")
                    .await
                    .map_err(pg_err)?,
                &[&(limit as i64)],
            )
            .await
            .map_err(pg_err)?;
        rows.iter()
            .map(|r| serde_json::from_str(r.get(0)).map_err(corrupt_json))
            .collect()
    }

    async fn claim_stale_deliveries(&self, limit: usize) -> StoreResult<Vec<DeliveryOrder>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        // Deliveries of requests that ended (or were set aside) are not sent.
        tx.execute(
            &tx.prepare_cached(&format!(
                "delete from delivery where event_id in \
                 (select d.event_id from delivery d where d.lease_until <= {DB_NOW_MS} and not exists \
                  (select 1 from verification v where v.request_id = d.request_id and v.state = 0) \
                  for update of d skip locked)"
            ))
            .await
            .map_err(pg_err)?,
            &[],
        )
        .await
        .map_err(pg_err)?;
        let rows = tx
            .query(
                &tx.prepare_cached(&format!(
                    "update delivery set lease_until = {DB_NOW_MS} + $1 where event_id in \
                     (select event_id from delivery where lease_until <= {DB_NOW_MS} \
                      order by created_at limit $2 for update skip locked) \
                     returning event_id, body"
                ))
                .await
                .map_err(pg_err)?,
                &[&self.lease_ms, &(limit as i64)],
            )
            .await
            .map_err(pg_err)?;
        let mut orders = Vec::with_capacity(rows.len());
        for row in rows {
            let event_id: String = row.get(0);
            match serde_json::from_str::<DeliveryOrder>(row.get(1)) {
                Ok(order) => orders.push(order),
                Err(e) => {
                    tracing::error!(event_id, error = %corrupt_json(e), "a stored delivery cannot be read; dropped");
                    tx.execute(
                        &tx.prepare_cached("delete from delivery where event_id = $1")
                            .await
                            .map_err(pg_err)?,
                        &[&event_id],
                    )
                    .await
                    .map_err(pg_err)?;
                }
            }
        }
        tx.commit().await.map_err(pg_err)?;
        Ok(orders)
    }

    async fn mark_delivered(&self, done: Vec<(RequestId, EventId)>) -> StoreResult<()> {
        let client = self.client().await?;
        // Event ids are unique on their own here (primary key).
        let ids: Vec<&str> = done.iter().map(|(_, e)| e.as_str()).collect();
        client
            .execute(
                &client
                    .prepare_cached("delete from delivery where event_id = any($1)")
                    .await
                    .map_err(pg_err)?,
                &[&ids],
            )
            .await
            .map_err(pg_err)?;
        Ok(())
    }
}

const KEY_COLUMNS: &str = "api_key, name, secret_hash, state, allow_custom_pin, created_at";

fn key_record(row: &tokio_postgres::Row) -> StoreResult<ApiKeyRecord> {
    let hash: Vec<u8> = row.get(2);
    let state: i32 = row.get(3);
    Ok(ApiKeyRecord {
        api_key: row.get(0),
        name: row.get(1),
        secret_hash: hash
            .try_into()
            .map_err(|_| StoreError::Corrupt("secret hash size".into()))?,
        state: KeyState::from_code(i64::from(state))
            .ok_or_else(|| StoreError::Corrupt("key state".into()))?,
        allow_custom_pin: row.get(4),
        created_at: ms_to_instant(row.get(5))?,
    })
}

#[async_trait]
impl KeyStore for PgStore {
    async fn insert_key(&self, key: ApiKeyRecord) -> StoreResult<()> {
        let client = self.client().await?;
        client
            .execute(
                &client
                    .prepare_cached(&format!(
                        "insert into api_key ({KEY_COLUMNS}) values ($1, $2, $3, $4, $5, $6)"
                    ))
                    .await
                    .map_err(pg_err)?,
                &[
                    &key.api_key,
                    &key.name,
                    &&key.secret_hash[..],
                    &(key.state.code() as i32),
                    &key.allow_custom_pin,
                    &key.created_at.timestamp_millis(),
                ],
            )
            .await
            .map_err(pg_err)?;
        Ok(())
    }

    async fn list_keys(&self) -> StoreResult<Vec<ApiKeyRecord>> {
        let client = self.client().await?;
        let rows = client
            .query(
                &client
                    .prepare_cached(&format!(
                        "select {KEY_COLUMNS} from api_key order by created_at, api_key"
                    ))
                    .await
                    .map_err(pg_err)?,
                &[],
            )
            .await
            .map_err(pg_err)?;
        rows.iter().map(key_record).collect()
    }

    async fn get_key(&self, api_key: &str) -> StoreResult<Option<ApiKeyRecord>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &client
                    .prepare_cached(&format!(
                        "select {KEY_COLUMNS} from api_key where api_key = $1"
                    ))
                    .await
                    .map_err(pg_err)?,
                &[&api_key],
            )
            .await
            .map_err(pg_err)?;
        row.as_ref().map(key_record).transpose()
    }

    async fn set_key_state(&self, api_key: &str, state: KeyState) -> StoreResult<bool> {
        let client = self.client().await?;
        let n = client
            .execute(
                &client
                    .prepare_cached("update api_key set state = $1 where api_key = $2")
                    .await
                    .map_err(pg_err)?,
                &[&(state.code() as i32), &api_key],
            )
            .await
            .map_err(pg_err)?;
        Ok(n > 0)
    }
}

#[async_trait]
impl MetaStore for PgStore {
    async fn get_meta(&self, name: &str) -> StoreResult<Option<String>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &client
                    .prepare_cached("select value from meta where name = $1")
                    .await
                    .map_err(pg_err)?,
                &[&name],
            )
            .await
            .map_err(pg_err)?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn set_meta(&self, name: &str, value: &str) -> StoreResult<()> {
        let client = self.client().await?;
        client
            .execute(
                &client
                    .prepare_cached(
                        "insert into meta (name, value) values ($1, $2) \
                 on conflict (name) do update set value = excluded.value",
                    )
                    .await
                    .map_err(pg_err)?,
                &[&name, &value],
            )
            .await
            .map_err(pg_err)?;
        Ok(())
    }
}

fn inbox_err(e: StoreError) -> InboxLogError {
    InboxLogError(e.to_string())
}

#[async_trait]
impl InboxLog for PgStore {
    async fn append(&self, m: InboxMessage) -> Result<(), InboxLogError> {
        let created = chrono::DateTime::parse_from_rfc3339(&m.created_at)
            .map_err(|e| InboxLogError(format!("created_at: {e}")))?
            .timestamp_millis();
        let client = self.client().await.map_err(inbox_err)?;
        client
            .execute(
                &client
                    .prepare_cached(
                        "insert into inbox_message \
                 (message_id, channel, to_number, from_id, text, locale, request_id, created_at) \
                 values ($1, $2, $3, $4, $5, $6, $7, $8) on conflict (message_id) do nothing",
                    )
                    .await
                    .map_err(|e| inbox_err(pg_err(e)))?,
                &[
                    &m.id,
                    &m.channel,
                    &m.to,
                    &m.from,
                    &m.text,
                    &m.locale,
                    &m.request_id,
                    &created,
                ],
            )
            .await
            .map_err(|e| inbox_err(pg_err(e)))?;
        Ok(())
    }

    async fn list(
        &self,
        to: Option<&str>,
        limit: usize,
    ) -> Result<Vec<InboxMessage>, InboxLogError> {
        let client = self.client().await.map_err(inbox_err)?;
        let columns = "select message_id, channel, to_number, from_id, text, locale, request_id, \
                       created_at from inbox_message";
        let limit = limit as i64;
        // Two statements, not one with "$1 is null or to_number = $1", which a cached plan
        // cannot answer from the index on to_number.
        let rows = match to {
            Some(to) => {
                let sql = format!("{columns} where to_number = $1 order by seq desc limit $2");
                let stmt = client.prepare_cached(&sql).await;
                client
                    .query(&stmt.map_err(|e| inbox_err(pg_err(e)))?, &[&to, &limit])
                    .await
            }
            None => {
                let sql = format!("{columns} order by seq desc limit $1");
                let stmt = client.prepare_cached(&sql).await;
                client
                    .query(&stmt.map_err(|e| inbox_err(pg_err(e)))?, &[&limit])
                    .await
            }
        }
        .map_err(|e| inbox_err(pg_err(e)))?;
        rows.iter()
            .map(|r| {
                let created = ms_to_instant(r.get(7)).map_err(inbox_err)?;
                Ok(InboxMessage {
                    id: r.get(0),
                    channel: r.get(1),
                    to: r.get(2),
                    from: r.get(3),
                    text: r.get(4),
                    locale: r.get(5),
                    request_id: r.get(6),
                    created_at: created.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                })
            })
            .collect()
    }
}
