//! The PostgreSQL engine, for several verifyd nodes on one database.
//!
//! Creates and inbox appends, the operations every request makes, are grouped: a few lanes each
//! take whatever is queued and write it as one statement (`store::batch`), so PostgreSQL pays one
//! round trip and one commit for many requests. Every other operation is one transaction that
//! locks the rows it changes (`for update`). The scheduler claims due verifications with
//! `for update skip locked`, so every step is taken by exactly one node. Deliveries are leased in
//! *database* time, which all nodes share: a node that dies holding deliveries loses them to
//! another node's sweep when the lease runs out. The "one verification in progress per key and
//! number" rule is a unique partial index, so it holds across nodes whatever they do.

mod apps;
mod attempts;
mod callbacks;
mod dashboard;
mod fraud;
mod limits;
mod retention;
mod templates;
pub mod tls;

use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::oneshot;
use tokio_postgres::error::SqlState;

use crate::store::LimitsSet;

use super::batch::Batcher;
use super::body::{self, status_code, Stored};
use super::{
    ApiKeyRecord, BoxMinter, CreateOutcome, InboxLog, InboxMessage, KeyState, KeyStore, MetaStore,
    SharedClock, StoreError, StoreResult, VerificationStore,
};
use crate::channel::inbox::InboxLogError;
use crate::domain::{
    Command, CommandOutcome, DeliveryOrder, EventId, Instant, RequestId, Status, Verification,
};

const MIGRATIONS: &[&str] = &[
    include_str!("../../../migrations/postgres/0001_init.sql"),
    include_str!("../../../migrations/postgres/0002_inbox_ends_with_its_request.sql"),
    include_str!("../../../migrations/postgres/0003_delivery_attempts.sql"),
    include_str!("../../../migrations/postgres/0004_applications.sql"),
    include_str!("../../../migrations/postgres/0005_callbacks.sql"),
    include_str!("../../../migrations/postgres/0006_templates.sql"),
    include_str!("../../../migrations/postgres/0007_limits.sql"),
    include_str!("../../../migrations/postgres/0008_key_limits.sql"),
    include_str!("../../../migrations/postgres/0009_fraud.sql"),
    include_str!("../../../migrations/postgres/0010_dashboard.sql"),
];
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

/// Creates and inbox appends waiting at most this many per batch.
const BATCH_MAX: usize = 256;
/// Batches of one kind in flight at once, per node: while one waits for its commit the next
/// gathers jobs. More lanes leave lanes idle and batches small. On two cores shared with
/// PostgreSQL, two lanes for creates gave two nodes 14,900–15,400 requests/s, one lane 13,100
/// (docs/benchmarks.md).
const CREATE_LANES: usize = 2;
const INBOX_LANES: usize = 1;

pub struct PgStore {
    pool: Pool,
    /// Connections whose commits do not wait for the disk, for counters (limits, conversion
    /// tallies) whose last increments a crash of PostgreSQL may lose without harm: a hot row is
    /// then locked for a statement, not for a flush of the log.
    counters: Pool,
    lease_ms: i64,
    creates: Batcher<CreateJob>,
    inbox: Batcher<InboxJob>,
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
        // Not from the server (a connection or TLS failure): its causes say what went wrong
        // ("invalid peer certificate: NotValidForName").
        None => {
            let mut text = e.to_string();
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                text.push_str(&format!(": {c}"));
                cause = c.source();
            }
            StoreError::Backend(text)
        }
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
    /// Applies `command` to `id`, of `account` when one is named.
    async fn apply_as(
        &self,
        account: Option<&str>,
        id: &RequestId,
        command: Command,
        clock: SharedClock,
        mut minter: BoxMinter,
    ) -> StoreResult<Option<(CommandOutcome, Verification)>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let Some(row) = tx
            .query_opt(
                &tx.prepare_cached("select body from verification where request_id = $1 and ($2::text is null or account = $2) for update").await.map_err(pg_err)?,
                &[&id.as_str(), &account],
            )
            .await
            .map_err(pg_err)?
        else {
            tx.rollback().await.map_err(pg_err)?;
            return Ok(None);
        };
        let mut v: Verification = decode(row.get(0))?;
        // Read the time only now that the row is ours: operations on one verification see time in
        // the order they are applied.
        let now = clock.now();
        let was = v.status;
        let outcome = v.apply(&command, now, minter.as_mut());
        save(&tx, &v, was).await?;
        if let Some(order) = outcome.delivery() {
            insert_delivery(&tx, order, self.lease_ms).await?;
        }
        tx.commit().await.map_err(pg_err)?;
        Ok(Some((outcome, v)))
    }

    /// Connects to `url` (postgres://…), checks the connection and brings the schema up to date.
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        let tls::Connection { config, tls } = tls::connection(url)?;
        let mut relaxed = config.clone();
        relaxed.options(&match config.get_options() {
            Some(given) => format!("{given} -c synchronous_commit=off"),
            None => "-c synchronous_commit=off".to_owned(),
        });
        let pool = pool_of(config, tls.clone())?;
        let counters = pool_of(relaxed, tls)?;
        let creates = {
            let pool = pool.clone();
            Batcher::spawn(CREATE_LANES, BATCH_MAX, move |jobs| {
                create_batch(pool.clone(), jobs)
            })
        };
        let inbox = {
            let pool = pool.clone();
            Batcher::spawn(INBOX_LANES, BATCH_MAX, move |jobs| {
                append_batch(pool.clone(), jobs)
            })
        };
        let store = Self {
            pool,
            counters,
            lease_ms: DEFAULT_DELIVERY_LEASE.as_millis() as i64,
            creates,
            inbox,
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

    /// A connection for counters only: see [`PgStore::counters`].
    async fn counters(&self) -> StoreResult<deadpool_postgres::Client> {
        self.counters.get().await.map_err(pool_err)
    }
}

fn pool_of(
    config: tokio_postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
) -> anyhow::Result<Pool> {
    let manager = Manager::from_config(
        config,
        tls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(POOL_SIZE)
        .wait_timeout(Some(Duration::from_secs(10)))
        .create_timeout(Some(Duration::from_secs(10)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .context("cannot build the PostgreSQL connection pool")
}

// Every statement below goes through the connection's statement cache (`prepare_cached`): a
// plain `execute(&str)` makes PostgreSQL parse and plan the text again each time and costs an
// extra round trip to describe it.

fn encode<T: Stored>(value: &T) -> StoreResult<String> {
    body::to_json(value)
}

fn decode<T: Stored>(text: &str) -> StoreResult<T> {
    body::from_json(text.as_bytes())
}

/// Writes `v` back, with the callbacks its change from status `was` calls for.
async fn save(c: &impl GenericClient, v: &Verification, was: Status) -> StoreResult<()> {
    let body = encode(v)?;
    let next_due = v.next_due().map(|t| t.timestamp_millis());
    let state = status_code(v.status) as i32;
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
    callbacks::enqueue(c, v, was).await?;
    if v.status != Status::InProgress {
        // Nothing is delivered for an ended request; its sealed PIN copies and the inbox
        // messages that show its PIN go with it.
        for sql in [
            "delete from delivery where request_id = $1",
            "delete from inbox_message where request_id = $1",
        ] {
            c.execute(
                &c.prepare_cached(sql).await.map_err(pg_err)?,
                &[&v.id.as_str()],
            )
            .await
            .map_err(pg_err)?;
        }
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
    // It has ended for good: the messages that show its PIN go, as at any other end.
    c.execute(
        &c.prepare_cached("delete from inbox_message where request_id = $1")
            .await
            .map_err(pg_err)?,
        &[&request_id],
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

/// One create waiting for its batch.
struct CreateJob {
    verification: Verification,
    first: DeliveryOrder,
    now: Instant,
    lease_ms: i64,
    reply: oneshot::Sender<StoreResult<CreateOutcome>>,
}

/// Inserts a batch of new verifications with their first deliveries in one statement (one
/// round trip, one commit). The unique index on numbers in progress decides, across nodes, which
/// rows go in; a create it turns away (its number has a verification in progress, or had one
/// that has since expired) goes the careful way, one transaction of its own that looks at the
/// holder, as does every create of a batch whose statement failed.
async fn create_batch(pool: Pool, jobs: Vec<CreateJob>) {
    let mut ready = Vec::with_capacity(jobs.len());
    let mut bodies = Vec::with_capacity(jobs.len());
    for job in jobs {
        match encode(&job.verification).and_then(|v| Ok((v, encode(&job.first)?))) {
            Ok(encoded) => {
                bodies.push(encoded);
                ready.push(job);
            }
            Err(e) => {
                let _ = job.reply.send(Err(e));
            }
        }
    }
    if ready.is_empty() {
        return;
    }
    let inserted = insert_batch(&pool, &ready, &bodies).await;
    if let Err(e) = &inserted {
        tracing::warn!(error = %e, creates = ready.len(), "a batch of creates failed; each is tried alone");
    }
    for job in ready {
        match &inserted {
            Ok(ids) if ids.contains(job.verification.id.as_str()) => {
                let _ = job.reply.send(Ok(CreateOutcome::Created));
            }
            Ok(_) | Err(_) => {
                let pool = pool.clone();
                tokio::spawn(async move {
                    let outcome =
                        create_one(&pool, job.lease_ms, &job.verification, &job.first, job.now)
                            .await;
                    let _ = job.reply.send(outcome);
                });
            }
        }
    }
}

async fn insert_batch(
    pool: &Pool,
    jobs: &[CreateJob],
    bodies: &[(String, String)],
) -> StoreResult<std::collections::HashSet<String>> {
    let client = pool.get().await.map_err(pool_err)?;
    let stmt = client
        .prepare_cached(&format!(
            "with v as (\
               insert into verification \
                 (request_id, account, number, state, next_due_at, submitted_at, body) \
               select * from unnest($1::text[], $2::text[], $3::text[], $4::int[], \
                                    $5::bigint[], $6::bigint[], $7::text[]) \
               on conflict (account, number) where state = 0 do nothing \
               returning request_id) \
             insert into delivery (event_id, request_id, body, created_at, lease_until) \
             select d.event_id, d.request_id, d.body, d.created_at, {DB_NOW_MS} + d.lease \
             from unnest($8::text[], $9::text[], $10::text[], $11::bigint[], $12::bigint[]) \
                  as d(event_id, request_id, body, created_at, lease) \
             join v on v.request_id = d.request_id \
             returning request_id"
        ))
        .await
        .map_err(pg_err)?;
    let vs = jobs.iter().map(|j| &j.verification);
    let request_ids: Vec<&str> = vs.clone().map(|v| v.id.as_str()).collect();
    let accounts: Vec<&str> = vs.clone().map(|v| v.account.as_str()).collect();
    let numbers: Vec<&str> = vs.clone().map(|v| v.destination_key()).collect();
    let states: Vec<i32> = vs.clone().map(|v| status_code(v.status) as i32).collect();
    let next_due: Vec<Option<i64>> = vs
        .clone()
        .map(|v| v.next_due().map(|t| t.timestamp_millis()))
        .collect();
    let submitted: Vec<i64> = vs.map(|v| v.submitted_at.timestamp_millis()).collect();
    let v_bodies: Vec<&str> = bodies.iter().map(|(v, _)| v.as_str()).collect();
    let firsts = jobs.iter().map(|j| &j.first);
    let event_ids: Vec<&str> = firsts.clone().map(|d| d.event_id.as_str()).collect();
    let d_requests: Vec<&str> = firsts.clone().map(|d| d.request_id.as_str()).collect();
    let d_bodies: Vec<&str> = bodies.iter().map(|(_, d)| d.as_str()).collect();
    let created: Vec<i64> = firsts.map(|d| d.created_at.timestamp_millis()).collect();
    let leases: Vec<i64> = jobs.iter().map(|j| j.lease_ms).collect();
    let rows = client
        .query(
            &stmt,
            &[
                &request_ids,
                &accounts,
                &numbers,
                &states,
                &next_due,
                &submitted,
                &v_bodies,
                &event_ids,
                &d_requests,
                &d_bodies,
                &created,
                &leases,
            ],
        )
        .await
        .map_err(pg_err)?;
    Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
}

async fn create_one(
    pool: &Pool,
    lease_ms: i64,
    v: &Verification,
    first: &DeliveryOrder,
    now: Instant,
) -> StoreResult<CreateOutcome> {
    for _ in 0..CREATE_TRIES {
        if let CreateTry::Done(outcome) = try_create(pool, lease_ms, v, first, now).await? {
            return Ok(outcome);
        }
    }
    Err(StoreError::Backend(
        "a verification for this number kept appearing and disappearing".into(),
    ))
}

async fn try_create(
    pool: &Pool,
    lease_ms: i64,
    v: &Verification,
    first: &DeliveryOrder,
    now: Instant,
) -> StoreResult<CreateTry> {
    let mut client = pool.get().await.map_err(pool_err)?;
    let tx = client.transaction().await.map_err(pg_err)?;
    let holder = tx
        .query_opt(
            &tx.prepare_cached(
                "select request_id, body from verification \
             where account = $1 and number = $2 and state = 0 for update",
            )
            .await
            .map_err(pg_err)?,
            &[&v.account, &v.destination_key()],
        )
        .await
        .map_err(pg_err)?;
    if let Some(row) = holder {
        let holder_id: String = row.get(0);
        match decode::<Verification>(row.get(1)) {
            Ok(mut existing) => {
                let was = existing.status;
                existing.settle(now);
                if existing.status == Status::InProgress {
                    tx.rollback().await.map_err(pg_err)?;
                    return Ok(CreateTry::Done(CreateOutcome::Concurrent(
                        existing.id.clone(),
                    )));
                }
                save(&tx, &existing, was).await?;
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
                &v.destination_key(),
                &(status_code(v.status) as i32),
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
    insert_delivery(&tx, first, lease_ms).await?;
    tx.commit().await.map_err(pg_err)?;
    Ok(CreateTry::Done(CreateOutcome::Created))
}

#[async_trait]
impl VerificationStore for PgStore {
    async fn create(
        &self,
        verification: Verification,
        first: DeliveryOrder,
        now: Instant,
    ) -> StoreResult<CreateOutcome> {
        let (reply, answer) = oneshot::channel();
        self.creates
            .submit(CreateJob {
                verification,
                first,
                now,
                lease_ms: self.lease_ms,
                reply,
            })
            .await?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn apply(
        &self,
        account: &str,
        id: &RequestId,
        command: Command,
        clock: SharedClock,
        minter: BoxMinter,
    ) -> StoreResult<Option<(CommandOutcome, Verification)>> {
        self.apply_as(Some(account), id, command, clock, minter)
            .await
    }

    async fn apply_internal(
        &self,
        id: &RequestId,
        command: Command,
        clock: SharedClock,
        minter: BoxMinter,
    ) -> StoreResult<Option<(CommandOutcome, Verification)>> {
        self.apply_as(None, id, command, clock, minter).await
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
            let mut v: Verification = match decode(row.get(1)) {
                Ok(v) => v,
                Err(e) => {
                    set_aside(&tx, &request_id, &e).await?;
                    continue;
                }
            };
            let was = v.status;
            let order = v.advance(now, minter.as_mut());
            save(&tx, &v, was).await?;
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
        rows.iter().map(|r| decode(r.get(0))).collect()
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
            match decode::<DeliveryOrder>(row.get(1)) {
                Ok(order) => orders.push(order),
                Err(e) => {
                    tracing::error!(event_id, error = %e, "a stored delivery cannot be read; dropped");
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

const KEY_COLUMNS: &str = "api_key, name, secret_hash, state, allow_custom_pin, created_at, limits";

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
        limits: crate::store::key_limits(row.get(6))?,
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
                        "insert into api_key ({KEY_COLUMNS}) values ($1, $2, $3, $4, $5, $6, $7)"
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
                    &key.limits.to_string(),
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

    async fn set_key_limits(
        &self,
        api_key: &str,
        was: &crate::domain::limits::KeyLimits,
        limits: crate::domain::limits::KeyLimits,
    ) -> StoreResult<LimitsSet> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let row = tx
            .query_opt(
                "select limits from api_key where api_key = $1 for update",
                &[&api_key],
            )
            .await
            .map_err(pg_err)?;
        let Some(row) = row else {
            return Ok(LimitsSet::NoKey);
        };
        let current = super::key_limits(row.get(0))?;
        if &current != was {
            return Ok(LimitsSet::Changed(current));
        }
        tx.execute(
            "update api_key set limits = $1 where api_key = $2",
            &[&limits.to_string(), &api_key],
        )
        .await
        .map_err(pg_err)?;
        tx.commit().await.map_err(pg_err)?;
        Ok(LimitsSet::Set)
    }

    async fn set_key_state(&self, api_key: &str, state: KeyState) -> StoreResult<bool> {
        let client = self.client().await?;
        let n = client
            .execute(
                &client
                    .prepare_cached("update api_key set state = $1 where api_key = $2 and (state <> 2 or $1 = 2)")
                    .await
                    .map_err(pg_err)?,
                &[&(state.code() as i32), &api_key],
            )
            .await
            .map_err(pg_err)?;
        Ok(n > 0)
    }

    async fn set_key_secret(&self, api_key: &str, secret_hash: [u8; 32]) -> StoreResult<bool> {
        let client = self.client().await?;
        let n = client
            .execute(
                &client
                    .prepare_cached(
                        "update api_key set secret_hash = $1 where api_key = $2 and state <> 2",
                    )
                    .await
                    .map_err(pg_err)?,
                &[&secret_hash.as_slice(), &api_key],
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

/// One inbox message waiting for its batch.
struct InboxJob {
    message: InboxMessage,
    created: i64,
    reply: oneshot::Sender<StoreResult<()>>,
}

/// Appends a batch of inbox messages in one statement; a message already there (sent again
/// after a crash) is kept once, and one whose verification is no longer in progress is not kept.
/// The share lock on the verification's row orders the insert with the transaction that ends
/// it (which holds the row `for update`): either that transaction's delete sees the message, or
/// the insert sees the end. This relies on read committed, PostgreSQL's default and what every
/// transaction here runs at: each statement of the ending transaction sees what committed before
/// it started.
async fn append_batch(pool: Pool, jobs: Vec<InboxJob>) {
    let result = append_all(&pool, &jobs).await;
    for job in jobs {
        let _ = job.reply.send(result.clone());
    }
}

async fn append_all(pool: &Pool, jobs: &[InboxJob]) -> StoreResult<()> {
    let client = pool.get().await.map_err(pool_err)?;
    let stmt = client
        .prepare_cached(
            "insert into inbox_message \
               (message_id, channel, to_number, from_id, text, locale, request_id, created_at) \
             select m.* from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
                                    $6::text[], $7::text[], $8::bigint[]) \
                  as m(message_id, channel, to_number, from_id, text, locale, request_id, created_at) \
             where exists (select 1 from verification v \
                           where v.request_id = m.request_id and v.state = 0 for share) \
             on conflict (message_id) do nothing",
        )
        .await
        .map_err(pg_err)?;
    let column = |f: fn(&InboxMessage) -> &str| -> Vec<&str> {
        jobs.iter().map(|j| f(&j.message)).collect()
    };
    let created: Vec<i64> = jobs.iter().map(|j| j.created).collect();
    client
        .execute(
            &stmt,
            &[
                &column(|m| &m.id),
                &column(|m| &m.channel),
                &column(|m| &m.to),
                &column(|m| &m.from),
                &column(|m| &m.text),
                &column(|m| &m.locale),
                &column(|m| &m.request_id),
                &created,
            ],
        )
        .await
        .map_err(pg_err)?;
    Ok(())
}

#[async_trait]
impl InboxLog for PgStore {
    async fn append(&self, m: InboxMessage) -> Result<(), InboxLogError> {
        let created = chrono::DateTime::parse_from_rfc3339(&m.created_at)
            .map_err(|e| InboxLogError(format!("created_at: {e}")))?
            .timestamp_millis();
        let (reply, answer) = oneshot::channel();
        self.inbox
            .submit(InboxJob {
                message: m,
                created,
                reply,
            })
            .await
            .map_err(inbox_err)?;
        answer
            .await
            .map_err(|_| inbox_err(StoreError::Closed))?
            .map_err(inbox_err)
    }

    async fn of_request(&self, request_id: &str) -> Result<Vec<InboxMessage>, InboxLogError> {
        let client = self.client().await.map_err(inbox_err)?;
        let stmt = client
            .prepare_cached(
                "select message_id, channel, to_number, from_id, text, locale, request_id, \
                 created_at from inbox_message where request_id = $1 order by seq",
            )
            .await
            .map_err(|e| inbox_err(pg_err(e)))?;
        let rows = client
            .query(&stmt, &[&request_id])
            .await
            .map_err(|e| inbox_err(pg_err(e)))?;
        inbox_messages(&rows)
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
        inbox_messages(&rows)
    }
}

fn inbox_messages(rows: &[tokio_postgres::Row]) -> Result<Vec<InboxMessage>, InboxLogError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::v1::workflow::Workflow;
    use crate::domain::testing::SequenceMinter;

    /// A schema of its own on `VERIFYD_TEST_POSTGRES_URL`, dropped at the end; `None` (the test
    /// skips, saying so) without that variable.
    async fn scratch_schema() -> Option<(String, String, tokio_postgres::Client)> {
        let Some(base) = std::env::var("VERIFYD_TEST_POSTGRES_URL")
            .ok()
            .filter(|u| !u.trim().is_empty())
        else {
            eprintln!("skipped: VERIFYD_TEST_POSTGRES_URL is not set");
            return None;
        };
        let (client, connection) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let mut bytes = [0u8; 6];
        getrandom::fill(&mut bytes).unwrap();
        let name = format!("verifyd_u_{}", hex::encode(bytes));
        client
            .batch_execute(&format!("create schema {name}"))
            .await
            .unwrap();
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-csearch_path%3D{name}");
        Some((url, name, client))
    }

    fn job(id: u8, number: &str) -> (CreateJob, oneshot::Receiver<StoreResult<CreateOutcome>>) {
        let now = chrono::DateTime::from_timestamp(1_750_000_000, 0).unwrap();
        let mut minter = SequenceMinter {
            pins: 0,
            events: u64::from(id) << 32,
        };
        let (verification, first) = Verification::start(
            Workflow::DEFAULT.request(RequestId::from_bytes([id; 16]), "k1", number),
            now,
            &mut minter,
        );
        let (reply, answer) = oneshot::channel();
        let job = CreateJob {
            verification,
            first,
            now,
            lease_ms: 60_000,
            reply,
        };
        (job, answer)
    }

    /// The batch statement is the fast path; were it broken, every create would still succeed
    /// through the one-by-one fallback, so only a test of the statement itself can tell.
    #[tokio::test]
    #[cfg_attr(not(pg_tests), ignore = "needs VERIFYD_TEST_POSTGRES_URL")]
    async fn one_statement_inserts_a_batch_and_turns_away_a_repeated_number() {
        let Some((url, schema, admin)) = scratch_schema().await else {
            return;
        };
        let store = PgStore::open(&url).await.unwrap();
        let (a, _) = job(1, "447700100301");
        let (b, _) = job(2, "447700100302");
        let (repeat, _) = job(3, "447700100301");
        let jobs = vec![a, b, repeat];
        let bodies: Vec<(String, String)> = jobs
            .iter()
            .map(|j| (encode(&j.verification).unwrap(), encode(&j.first).unwrap()))
            .collect();
        let inserted = insert_batch(&store.pool, &jobs, &bodies).await.unwrap();
        let mut inserted: Vec<String> = inserted.into_iter().collect();
        inserted.sort();
        let mut expected = vec![
            jobs[0].verification.id.as_str().to_owned(),
            jobs[1].verification.id.as_str().to_owned(),
        ];
        expected.sort();
        assert_eq!(inserted, expected);
        assert_eq!(
            store.undelivered(10).await.unwrap().len(),
            2,
            "only the inserted verifications have their first delivery"
        );
        drop(store);
        admin
            .batch_execute(&format!("drop schema {schema} cascade"))
            .await
            .unwrap();
    }

    #[tokio::test]
    #[cfg_attr(not(pg_tests), ignore = "needs VERIFYD_TEST_POSTGRES_URL")]
    async fn a_verification_and_delivery_stored_as_format_1_still_serve_and_are_written_back_as_format_2(
    ) {
        use crate::store::body::tests::{DELIVERY_1, FORMAT_1};
        let Some((url, schema, admin)) = scratch_schema().await else {
            return;
        };
        let store = PgStore::open(&url).await.unwrap();
        let legacy: Verification = decode(FORMAT_1).unwrap();
        let legacy_first: DeliveryOrder = decode(DELIVERY_1).unwrap();
        admin
            .execute(
                &format!(
                    "insert into {schema}.verification \
                     (request_id, account, number, state, next_due_at, submitted_at, body) \
                     values ($1, $2, $3, 0, $4, $5, $6)"
                ),
                &[
                    &legacy.id.as_str(),
                    &legacy.account,
                    &legacy.destination_key(),
                    &legacy.next_due().map(|t| t.timestamp_millis()),
                    &legacy.submitted_at.timestamp_millis(),
                    &FORMAT_1,
                ],
            )
            .await
            .unwrap();
        admin
            .execute(
                &format!(
                    "insert into {schema}.delivery (event_id, request_id, body, created_at, lease_until) \
                     values ($1, $2, $3, $4, 0)"
                ),
                &[
                    &legacy_first.event_id.as_str(),
                    &legacy.id.as_str(),
                    &DELIVERY_1,
                    &legacy_first.created_at.timestamp_millis(),
                ],
            )
            .await
            .unwrap();
        assert_eq!(store.undelivered(10).await.unwrap(), vec![legacy_first]);
        let found = store
            .find(&legacy.account, std::slice::from_ref(&legacy.id))
            .await
            .unwrap();
        assert_eq!(found, vec![legacy.clone()]);
        let wrong = Command::Check {
            code_hash: [0; 32],
            code_len: 4,
        };
        let clock: SharedClock =
            std::sync::Arc::new(crate::clock::ManualClock::new(legacy.submitted_at));
        let outcome = store
            .apply(
                &legacy.account,
                &legacy.id,
                wrong,
                clock,
                Box::new(SequenceMinter::new()),
            )
            .await
            .unwrap();
        assert!(matches!(
            outcome,
            Some((
                CommandOutcome::Checked(crate::domain::CheckOutcome::Mismatch { .. }),
                _
            ))
        ));
        let body: String = admin
            .query_one(
                &format!("select body from {schema}.verification where request_id = $1"),
                &[&legacy.id.as_str()],
            )
            .await
            .unwrap()
            .get(0);
        assert!(body.starts_with("{\"format\":2,"), "{body}");
        let found = store
            .find(&legacy.account, std::slice::from_ref(&legacy.id))
            .await
            .unwrap();
        assert_eq!((found[0].checks.len(), &found[0].steps), (1, &legacy.steps));
        drop(store);
        admin
            .batch_execute(&format!("drop schema {schema} cascade"))
            .await
            .unwrap();
    }
}
