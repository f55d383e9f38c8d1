//! The SQLite engine: one file in WAL mode, one writer thread, a few reader threads.
//!
//! Every write goes to the writer thread, which takes whatever has queued up (up to
//! [`MAX_BATCH`] operations) and commits it in one transaction: one fsync for many requests
//! (group commit). Each operation runs inside its own savepoint, so one failing operation does not
//! undo the others in its group. Reads run on reader threads, each with its own connection, and
//! never wait for the writer (WAL).

use std::path::{Path, PathBuf};
use std::thread;

use anyhow::Context;
use async_trait::async_trait;
use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension};
use tokio::sync::{mpsc, oneshot};

use super::{
    ApiKeyRecord, BoxMinter, Command, CommandOutcome, CreateOutcome, InboxLog, InboxMessage,
    KeyState, KeyStore, MetaStore, StoreError, StoreResult, VerificationStore,
};
use crate::domain::{DeliveryOrder, EventId, Instant, RequestId, Status, Verification};

/// Most operations committed by one transaction.
const MAX_BATCH: usize = 512;
/// Operations queued for the writer before callers wait (back-pressure).
const WRITE_QUEUE: usize = 8192;
const READERS: usize = 4;

const MIGRATIONS: &[&str] = &[include_str!("../../migrations/sqlite/0001_init.sql")];

type Finish = Box<dyn FnOnce(StoreResult<()>) + Send>;
/// A write operation. It receives the connection, or the error that kept its transaction from
/// starting, and returns whether it succeeded plus how to answer its caller once the commit is known.
type WriteJob = Box<dyn FnOnce(Result<&Connection, StoreError>) -> (bool, Finish) + Send>;
type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

pub struct SqliteStore {
    writer: mpsc::Sender<WriteJob>,
    readers: crossbeam_channel::Sender<ReadJob>,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

fn db_err(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::DiskFull => {
            StoreError::DiskFull(e.to_string())
        }
        _ => StoreError::Backend(e.to_string()),
    }
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn open_connection(path: &Path, flags: OpenFlags) -> anyhow::Result<Connection> {
    let conn = Connection::open_with_flags(path, flags)
        .with_context(|| format!("cannot open the SQLite database {}", path.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

/// Opens (creating if needed) the database file and brings its schema up to date.
pub fn open_and_migrate(path: &Path) -> anyhow::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = open_connection(path, flags)?;
    let mode: String = conn
        .query_row("pragma journal_mode = wal", [], |r| r.get(0))
        .with_context(|| format!("{} is not a usable SQLite database", path.display()))?;
    if !mode.eq_ignore_ascii_case("wal") {
        anyhow::bail!(
            "{} cannot use WAL mode (journal_mode is {mode})",
            path.display()
        );
    }
    // FULL: a commit is on disk (WAL fsync'd) before any caller hears "0".
    conn.execute_batch("pragma synchronous = full; pragma foreign_keys = on;")?;
    migrate(&conn).with_context(|| format!("while migrating {}", path.display()))?;
    Ok(conn)
}

fn migrate(conn: &Connection) -> anyhow::Result<()> {
    let version: i64 = conn.query_row("pragma user_version", [], |r| r.get(0))?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        anyhow::bail!(
            "the database schema is version {version}, newer than this verifyd knows ({known}); \
             upgrade verifyd"
        );
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(sql)?;
        tx.execute_batch(&format!("pragma user_version = {}", i + 1))?;
        tx.commit()?;
    }
    Ok(())
}

impl SqliteStore {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let writer_conn = open_and_migrate(path)?;
        let (writer, rx) = mpsc::channel::<WriteJob>(WRITE_QUEUE);
        thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer_loop(writer_conn, rx))?;

        let (readers, read_rx) = crossbeam_channel::unbounded::<ReadJob>();
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        for i in 0..READERS {
            let conn = open_connection(path, flags)?;
            conn.execute_batch("pragma query_only = on")?;
            let rx = read_rx.clone();
            thread::Builder::new()
                .name(format!("sqlite-reader-{i}"))
                .spawn(move || {
                    while let Ok(job) = rx.recv() {
                        job(&conn);
                    }
                })?;
        }
        Ok(Self {
            writer,
            readers,
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let (tx, rx) = oneshot::channel();
        let job: WriteJob = Box::new(move |conn| {
            let result = conn.and_then(f);
            let ok = result.is_ok();
            let finish: Finish = Box::new(move |commit| {
                let _ = tx.send(commit.and(result));
            });
            (ok, finish)
        });
        self.writer
            .send(job)
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let (tx, rx) = oneshot::channel();
        self.readers
            .send(Box::new(move |conn| {
                let _ = tx.send(f(conn));
            }))
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

fn writer_loop(conn: Connection, mut rx: mpsc::Receiver<WriteJob>) {
    let mut batch: Vec<WriteJob> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        run_batch(&conn, &mut batch);
    }
}

fn run_batch(conn: &Connection, batch: &mut Vec<WriteJob>) {
    if let Err(e) = conn.execute_batch("begin immediate") {
        let err = db_err(e);
        for job in batch.drain(..) {
            let (_, finish) = job(Err(err.clone()));
            finish(Err(err.clone()));
        }
        return;
    }
    let mut finishers: Vec<Finish> = Vec::with_capacity(batch.len());
    for job in batch.drain(..) {
        let savepoint = conn.execute_batch("savepoint op");
        let (ok, finish) = job(Ok(conn));
        if savepoint.is_ok() {
            let end = if ok {
                "release op"
            } else {
                "rollback to op; release op"
            };
            if let Err(e) = conn.execute_batch(end) {
                tracing::error!(error = %e, "savepoint end failed");
            }
        }
        finishers.push(finish);
    }
    match conn.execute_batch("commit") {
        Ok(()) => finishers.into_iter().for_each(|f| f(Ok(()))),
        Err(e) => {
            let err = db_err(e);
            let _ = conn.execute_batch("rollback");
            finishers.into_iter().for_each(|f| f(Err(err.clone())));
        }
    }
}

fn load(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> StoreResult<Option<Verification>> {
    let body: Option<String> = conn
        .prepare_cached(sql)
        .map_err(db_err)?
        .query_row(params, |r| r.get(0))
        .optional()
        .map_err(db_err)?;
    body.map(|b| serde_json::from_str(&b).map_err(corrupt))
        .transpose()
}

fn save(conn: &Connection, v: &Verification) -> StoreResult<()> {
    let body = serde_json::to_string(v).map_err(corrupt)?;
    conn.prepare_cached(
        "update verification set state = ?1, next_due_at = ?2, body = ?3 where request_id = ?4",
    )
    .map_err(db_err)?
    .execute(params![
        v.status().code(),
        v.next_due().map(|t| t.timestamp_millis()),
        body,
        v.id.as_str()
    ])
    .map_err(db_err)?;
    Ok(())
}

fn insert_delivery(conn: &Connection, order: &DeliveryOrder) -> StoreResult<()> {
    let body = serde_json::to_string(order).map_err(corrupt)?;
    conn.prepare_cached(
        "insert into delivery (event_id, request_id, body, created_at) values (?1, ?2, ?3, ?4)",
    )
    .map_err(db_err)?
    .execute(params![
        order.event_id.as_str(),
        order.request_id.as_str(),
        body,
        order.created_at.timestamp_millis()
    ])
    .map_err(db_err)?;
    Ok(())
}

fn create_in(
    conn: &Connection,
    v: &Verification,
    first: &DeliveryOrder,
    now: Instant,
) -> StoreResult<CreateOutcome> {
    let existing = load(
        conn,
        "select body from verification where account = ?1 and number = ?2 and state = 0",
        params![v.account, v.number.digits()],
    )?;
    if let Some(mut existing) = existing {
        existing.settle(now);
        if existing.status() == Status::InProgress {
            return Ok(CreateOutcome::Concurrent(existing.id));
        }
        save(conn, &existing)?;
    }
    let body = serde_json::to_string(v).map_err(corrupt)?;
    conn.prepare_cached(
        "insert into verification (request_id, account, number, state, next_due_at, submitted_at, body) \
         values (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .map_err(db_err)?
    .execute(params![
        v.id.as_str(),
        v.account,
        v.number.digits(),
        v.status().code(),
        v.next_due().map(|t| t.timestamp_millis()),
        v.submitted_at.timestamp_millis(),
        body
    ])
    .map_err(db_err)?;
    insert_delivery(conn, first)?;
    Ok(CreateOutcome::Created)
}

fn apply_in(
    conn: &Connection,
    account: &str,
    id: &RequestId,
    command: Command,
    now: Instant,
    mut minter: BoxMinter,
) -> StoreResult<Option<(CommandOutcome, Verification)>> {
    let Some(mut v) = load(
        conn,
        "select body from verification where request_id = ?1 and account = ?2",
        params![id.as_str(), account],
    )?
    else {
        return Ok(None);
    };
    let outcome = match command {
        Command::Check {
            code_hash,
            code_len,
        } => CommandOutcome::Checked(v.check(&code_hash, code_len, now)),
        Command::Cancel => CommandOutcome::Cancelled(v.cancel(now)),
        Command::TriggerNext => CommandOutcome::Triggered(v.trigger_next(now, minter.as_mut())),
    };
    save(conn, &v)?;
    if let CommandOutcome::Triggered(Ok(order)) = &outcome {
        insert_delivery(conn, order)?;
    }
    Ok(Some((outcome, v)))
}

fn claim_due_in(
    conn: &Connection,
    now: Instant,
    limit: usize,
    mut minter: BoxMinter,
) -> StoreResult<Vec<DeliveryOrder>> {
    let bodies: Vec<String> = {
        let mut stmt = conn
            .prepare_cached(
                "select body from verification where state = 0 and next_due_at <= ?1 \
                 order by next_due_at limit ?2",
            )
            .map_err(db_err)?;
        let rows = stmt
            .query_map(params![now.timestamp_millis(), limit as i64], |r| r.get(0))
            .map_err(db_err)?;
        rows.collect::<Result<_, _>>().map_err(db_err)?
    };
    let mut orders = Vec::new();
    for body in bodies {
        let mut v: Verification = serde_json::from_str(&body).map_err(corrupt)?;
        let order = v.advance(now, minter.as_mut());
        save(conn, &v)?;
        if let Some(order) = order {
            insert_delivery(conn, &order)?;
            orders.push(order);
        }
    }
    Ok(orders)
}

fn ms_to_instant(ms: i64) -> StoreResult<Instant> {
    chrono::DateTime::from_timestamp_millis(ms).ok_or_else(|| corrupt("timestamp out of range"))
}

#[async_trait]
impl VerificationStore for SqliteStore {
    async fn create(
        &self,
        verification: Verification,
        first: DeliveryOrder,
        now: Instant,
    ) -> StoreResult<CreateOutcome> {
        self.write(move |conn| create_in(conn, &verification, &first, now))
            .await
    }

    async fn apply(
        &self,
        account: &str,
        id: &RequestId,
        command: Command,
        now: Instant,
        minter: BoxMinter,
    ) -> StoreResult<Option<(CommandOutcome, Verification)>> {
        let account = account.to_owned();
        let id = id.clone();
        self.write(move |conn| apply_in(conn, &account, &id, command, now, minter))
            .await
    }

    async fn find(&self, account: &str, ids: &[RequestId]) -> StoreResult<Vec<Verification>> {
        let account = account.to_owned();
        let ids = ids.to_vec();
        self.read(move |conn| {
            let mut out = Vec::with_capacity(ids.len());
            for id in &ids {
                if let Some(v) = load(
                    conn,
                    "select body from verification where request_id = ?1 and account = ?2",
                    params![id.as_str(), account],
                )? {
                    out.push(v);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn claim_due(
        &self,
        now: Instant,
        limit: usize,
        minter: BoxMinter,
    ) -> StoreResult<Vec<DeliveryOrder>> {
        self.write(move |conn| claim_due_in(conn, now, limit, minter))
            .await
    }

    async fn next_due(&self) -> StoreResult<Option<Instant>> {
        self.read(|conn| {
            let ms: Option<i64> = conn
                .prepare_cached("select min(next_due_at) from verification where state = 0")
                .map_err(db_err)?
                .query_row([], |r| r.get(0))
                .map_err(db_err)?;
            ms.map(ms_to_instant).transpose()
        })
        .await
    }

    async fn undelivered(&self, limit: usize) -> StoreResult<Vec<DeliveryOrder>> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached("select body from delivery order by created_at limit ?1")
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![limit as i64], |r| r.get::<_, String>(0))
                .map_err(db_err)?;
            let mut out = Vec::new();
            for body in rows {
                out.push(serde_json::from_str(&body.map_err(db_err)?).map_err(corrupt)?);
            }
            Ok(out)
        })
        .await
    }

    async fn mark_delivered(&self, ids: Vec<EventId>) -> StoreResult<()> {
        self.write(move |conn| {
            let mut stmt = conn
                .prepare_cached("delete from delivery where event_id = ?1")
                .map_err(db_err)?;
            for id in &ids {
                stmt.execute(params![id.as_str()]).map_err(db_err)?;
            }
            Ok(())
        })
        .await
    }
}

fn key_from_row(
    r: &rusqlite::Row<'_>,
) -> rusqlite::Result<(String, String, Vec<u8>, i64, bool, i64)> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

#[async_trait]
impl KeyStore for SqliteStore {
    async fn insert_key(&self, key: ApiKeyRecord) -> StoreResult<()> {
        self.write(move |conn| {
            conn.execute(
                "insert into api_key (api_key, name, secret_hash, state, allow_custom_pin, created_at) \
                 values (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    key.api_key,
                    key.name,
                    &key.secret_hash[..],
                    key.state.code(),
                    key.allow_custom_pin,
                    key.created_at.timestamp_millis()
                ],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn list_keys(&self) -> StoreResult<Vec<ApiKeyRecord>> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "select api_key, name, secret_hash, state, allow_custom_pin, created_at \
                     from api_key order by created_at, api_key",
                )
                .map_err(db_err)?;
            let rows = stmt.query_map([], key_from_row).map_err(db_err)?;
            let mut out = Vec::new();
            for row in rows {
                let (api_key, name, hash, state, allow_custom_pin, created) =
                    row.map_err(db_err)?;
                out.push(ApiKeyRecord {
                    api_key,
                    name,
                    secret_hash: hash.try_into().map_err(|_| corrupt("secret hash size"))?,
                    state: KeyState::from_code(state).ok_or_else(|| corrupt("key state"))?,
                    allow_custom_pin,
                    created_at: ms_to_instant(created)?,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn set_key_state(&self, api_key: &str, state: KeyState) -> StoreResult<bool> {
        let api_key = api_key.to_owned();
        self.write(move |conn| {
            let n = conn
                .execute(
                    "update api_key set state = ?1 where api_key = ?2",
                    params![state.code(), api_key],
                )
                .map_err(db_err)?;
            Ok(n > 0)
        })
        .await
    }
}

#[async_trait]
impl MetaStore for SqliteStore {
    async fn get_meta(&self, name: &str) -> StoreResult<Option<String>> {
        let name = name.to_owned();
        self.read(move |conn| {
            conn.query_row(
                "select value from meta where name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err)
        })
        .await
    }

    async fn set_meta(&self, name: &str, value: &str) -> StoreResult<()> {
        let (name, value) = (name.to_owned(), value.to_owned());
        self.write(move |conn| {
            conn.execute(
                "insert into meta (name, value) values (?1, ?2) \
                 on conflict (name) do update set value = excluded.value",
                params![name, value],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl InboxLog for SqliteStore {
    async fn append(&self, m: InboxMessage) -> StoreResult<()> {
        let created = chrono::DateTime::parse_from_rfc3339(&m.created_at)
            .map_err(corrupt)?
            .timestamp_millis();
        self.write(move |conn| {
            conn.prepare_cached(
                "insert into inbox_message \
                 (message_id, channel, to_number, from_id, text, locale, request_id, created_at) \
                 values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) on conflict (message_id) do nothing",
            )
            .map_err(db_err)?
            .execute(params![
                m.id,
                m.channel,
                m.to,
                m.from,
                m.text,
                m.locale,
                m.request_id,
                created
            ])
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn list(&self, to: Option<&str>, limit: usize) -> StoreResult<Vec<InboxMessage>> {
        let to = to.map(str::to_owned);
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "select message_id, channel, to_number, from_id, text, locale, request_id, created_at \
                     from inbox_message where (?1 is null or to_number = ?1) order by seq desc limit ?2",
                )
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![to, limit as i64], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, String>(6)?,
                        r.get::<_, i64>(7)?,
                    ))
                })
                .map_err(db_err)?;
            let mut out = Vec::new();
            for row in rows {
                let (id, channel, to, from, text, locale, request_id, created) = row.map_err(db_err)?;
                out.push(InboxMessage {
                    id,
                    channel,
                    to,
                    from,
                    text,
                    locale,
                    request_id,
                    created_at: ms_to_instant(created)?
                        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                });
            }
            Ok(out)
        })
        .await
    }
}
