//! The SQLite engine: one file in WAL mode, one writer thread, a few reader threads.
//!
//! Every write goes to the writer thread. It opens a transaction, runs the waiting operation and
//! every one that arrives while it works (up to [`MAX_BATCH`]), and commits them together: one
//! fsync for many requests (group commit). An operation that fails on its own is undone without
//! undoing the others: the group is rolled back and its other operations run again, each inside
//! its own savepoint (see [`run_batch`]). When SQLite itself abandons the transaction (disk full,
//! I/O error), every operation of the group fails and nothing of it is kept. Reads never wait for
//! the writer (WAL): short ones run on the caller's thread, longer ones on reader threads.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension};
use tokio::sync::{mpsc, oneshot};

use super::body::status_code;
use super::{
    ApiKeyRecord, BoxMinter, CreateOutcome, InboxLog, InboxMessage, KeyState, KeyStore, MetaStore,
    SharedClock, StoreError, StoreResult, VerificationStore,
};
use crate::channel::inbox::InboxLogError;
use crate::domain::{
    Command, CommandOutcome, DeliveryOrder, EventId, Instant, Minter, RequestId, Status,
    Verification,
};
use crate::store::LimitsSet;

mod apps;
mod attempts;
pub mod body;
mod cache;
mod callbacks;
mod dashboard;
mod fraud;
mod limits;
mod retention;
mod templates;
use body::Body;
use cache::SharedCache;

/// Most operations committed by one transaction.
const MAX_BATCH: usize = 512;
/// Operations queued for the writer before callers wait (back-pressure).
const WRITE_QUEUE: usize = 8192;
const READERS: usize = 4;
/// How long a process owns a delivery it stored before a sweep may take it over.
pub const DEFAULT_DELIVERY_LEASE: Duration = Duration::from_secs(60);
/// `state` of a row whose body could not be read; it leaves every index of live rows.
const STATE_SET_ASIDE: i64 = -1;

const MIGRATIONS: &[&str] = &[
    include_str!("../../../migrations/sqlite/0001_init.sql"),
    include_str!("../../../migrations/sqlite/0002_keys_by_request.sql"),
    include_str!("../../../migrations/sqlite/0003_inbox_ends_with_its_request.sql"),
    include_str!("../../../migrations/sqlite/0004_delivery_attempts.sql"),
    include_str!("../../../migrations/sqlite/0005_applications.sql"),
    include_str!("../../../migrations/sqlite/0006_callbacks.sql"),
    include_str!("../../../migrations/sqlite/0007_templates.sql"),
    include_str!("../../../migrations/sqlite/0008_limits.sql"),
    include_str!("../../../migrations/sqlite/0009_key_limits.sql"),
    include_str!("../../../migrations/sqlite/0010_fraud.sql"),
    include_str!("../../../migrations/sqlite/0011_dashboard.sql"),
];

/// What an operation sees on the writer thread.
struct Tx<'a> {
    conn: &'a Connection,
    cache: &'a SharedCache,
    /// Verifications this operation wrote, for the cache once its group commits.
    written: &'a mut Vec<Arc<Verification>>,
}

/// A write operation on the writer thread. It may run twice: when another operation of its
/// group fails, the group is rolled back and run again without that one.
trait WriteOp: Send {
    /// Runs the operation; whether it succeeded.
    fn run(&mut self, conn: &Connection, cache: &SharedCache) -> bool;
    /// Answers the caller once the group's fate is known (`Ok` when it committed), and keeps
    /// what a committed operation wrote in the cache.
    fn finish(self: Box<Self>, commit: StoreResult<()>, cache: &SharedCache);
}

type WriteJob = Box<dyn WriteOp>;

struct Op<T, F> {
    f: F,
    /// The last run's result; none if it never ran or panicked.
    outcome: Option<StoreResult<T>>,
    written: Vec<Arc<Verification>>,
    reply: oneshot::Sender<StoreResult<T>>,
}

impl<T, F> WriteOp for Op<T, F>
where
    T: Send,
    F: FnMut(&mut Tx<'_>) -> StoreResult<T> + Send,
{
    fn run(&mut self, conn: &Connection, cache: &SharedCache) -> bool {
        self.outcome = None;
        self.written.clear();
        let mut tx = Tx {
            conn,
            cache,
            written: &mut self.written,
        };
        let outcome = (self.f)(&mut tx);
        let ok = outcome.is_ok();
        self.outcome = Some(outcome);
        ok
    }

    fn finish(self: Box<Self>, commit: StoreResult<()>, cache: &SharedCache) {
        let Op {
            outcome,
            written,
            reply,
            ..
        } = *self;
        let outcome = commit.and_then(|()| {
            outcome
                .unwrap_or_else(|| Err(StoreError::Backend("the store operation panicked".into())))
        });
        if outcome.is_ok() {
            written.into_iter().for_each(|v| cache.put(v));
        }
        let _ = reply.send(outcome);
    }
}
type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

pub struct SqliteStore {
    writer: mpsc::Sender<WriteJob>,
    readers: crossbeam_channel::Sender<ReadJob>,
    /// Read-only connections for [`Self::read_here`]: at most one per thread that reads at once.
    quick_readers: std::sync::Mutex<Vec<Connection>>,
    /// What the writer wrote last, decoded; searches look here before reading the file.
    cache: Arc<SharedCache>,
    path: PathBuf,
    lease: Duration,
    stop_checkpointer: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The limits' counters, counted in memory (`limits.rs`).
    counters: limits::Counters,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.stop_checkpointer
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.write_last_counts();
    }
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

fn real_now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn open_connection(path: &Path, flags: OpenFlags) -> anyhow::Result<Connection> {
    let conn = Connection::open_with_flags(path, flags)
        .with_context(|| format!("cannot open the SQLite database {}", path.display()))?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn)
}

fn open_reader(path: &Path) -> anyhow::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = open_connection(path, flags)?;
    conn.execute_batch("pragma query_only = on")?;
    Ok(conn)
}

/// Creates `path` empty, readable and writable by its owner only, unless it exists. SQLite gives
/// the WAL and shared-memory files the database file's mode, so they are private too.
pub fn create_private_file(path: &Path) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot create the database {}", path.display())),
    }
}

/// Opens (creating if needed) the database file and brings its schema up to date.
pub fn open_and_migrate(path: &Path) -> anyhow::Result<Connection> {
    create_private_file(path)?;
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
    // synchronous=full: a commit is on disk (WAL fsync'd) before any caller hears "0".
    // secure_delete: deleted rows (sealed PINs of finished requests) are zeroed, not left in
    // free pages.
    conn.execute_batch(
        "pragma synchronous = full; pragma foreign_keys = on; pragma secure_delete = on;",
    )?;
    migrate(&conn).with_context(|| format!("while migrating {}", path.display()))?;
    Ok(conn)
}

/// How often the checkpointer moves WAL pages into the database file. Often, so that little is
/// left for the writer's restarting checkpoint: with 200 ms these took 3–18 ms in a benchmark,
/// with 25 ms 0–6 ms.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(25);
/// Past this size the writer thread truncates the WAL itself (see [`writer_loop`]). Under
/// constant load PASSIVE checkpoints never let the WAL start over, so without this it grows
/// without bound (3.3 GB after 200,000 requests in a benchmark), and a restart must read all of
/// it before serving.
const WAL_LIMIT_BYTES: u64 = 64 * 1024 * 1024;

/// Checkpoints the WAL in PASSIVE mode on a connection of its own, so that the writer thread
/// mostly appends to the WAL: with SQLite's automatic checkpoints the commit that crosses the
/// threshold copies pages into the database file while every request of its group waits. PASSIVE
/// never blocks the writer or readers. The thread ends when the store is dropped.
fn spawn_checkpointer(
    path: &Path,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<()> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = open_connection(path, flags)?;
    thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                thread::sleep(CHECKPOINT_EVERY);
                let began = std::time::Instant::now();
                let done = conn.query_row("pragma wal_checkpoint(passive)", [], |_| Ok(()));
                tracing::trace!(
                    ms = began.elapsed().as_millis() as u64,
                    "passive checkpoint"
                );
                if let Err(e) = done {
                    tracing::warn!(error = %e, "WAL checkpoint failed; will retry");
                }
            }
        })?;
    Ok(())
}

fn wal_path(db: &Path) -> PathBuf {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    PathBuf::from(wal)
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
        Self::open_with_wal_limit(path, WAL_LIMIT_BYTES)
    }

    fn open_with_wal_limit(path: &Path, wal_limit: u64) -> anyhow::Result<Self> {
        let writer_conn = open_and_migrate(path)?;
        writer_conn.execute_batch("pragma wal_autocheckpoint = 0")?;
        writer_conn.execute_batch(&format!("pragma journal_size_limit = {wal_limit}"))?;
        let counters = limits::Counters::load(&writer_conn)?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        spawn_checkpointer(path, stop.clone())?;
        let (writer, rx) = mpsc::channel::<WriteJob>(WRITE_QUEUE);
        let wal = wal_path(path);
        let cache = Arc::new(SharedCache::new(cache::CAPACITY));
        let writer_cache = cache.clone();
        thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer_loop(writer_conn, &writer_cache, rx, &wal, wal_limit))?;

        let (readers, read_rx) = crossbeam_channel::unbounded::<ReadJob>();
        for i in 0..READERS {
            let conn = open_reader(path)?;
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
            quick_readers: std::sync::Mutex::new(Vec::new()),
            cache,
            path: path.to_owned(),
            lease: DEFAULT_DELIVERY_LEASE,
            stop_checkpointer: stop,
            counters,
        })
    }

    /// How long deliveries stay leased to this process before a sweep may resend them.
    pub fn with_delivery_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lease_until(&self) -> i64 {
        real_now_ms() + self.lease.as_millis() as i64
    }

    /// Applies `command` to `id`, of `account` when one is named.
    async fn apply_as(
        &self,
        account: Option<&str>,
        id: &RequestId,
        command: Command,
        clock: SharedClock,
        mut minter: BoxMinter,
    ) -> StoreResult<Option<(CommandOutcome, Verification)>> {
        let account = account.map(str::to_owned);
        let id = id.clone();
        let lease_until = self.lease_until();
        self.write_tx(move |tx| {
            apply_in(
                tx,
                account.as_deref(),
                &id,
                &command,
                clock.now(),
                minter.as_mut(),
                lease_until,
            )
        })
        .await
        .map(|found| found.map(|(outcome, v)| (outcome, cache::unshare(v))))
    }

    /// Ends every lease. Only for a process that holds the database alone (the server's lock
    /// file): leases of a process that died mean nothing, and its deliveries are due now.
    pub async fn release_leases(&self) -> StoreResult<usize> {
        self.write(|conn| {
            let deliveries = conn
                .execute("update delivery set lease_until = 0", [])
                .map_err(db_err)?;
            conn.execute("update callback set lease_until = 0", [])
                .map_err(db_err)?;
            Ok(deliveries)
        })
        .await
    }

    async fn write<T: Send + 'static>(
        &self,
        mut f: impl FnMut(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        self.write_tx(move |tx| f(tx.conn)).await
    }

    /// A write that reads or writes verifications, through the writer's cache.
    async fn write_tx<T: Send + 'static>(
        &self,
        f: impl FnMut(&mut Tx<'_>) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let (tx, rx) = oneshot::channel();
        let job: WriteJob = Box::new(Op {
            f,
            outcome: None,
            written: Vec::new(),
            reply: tx,
        });
        self.writer
            .send(job)
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Queues a write without waiting for it, or for room in the writer's queue; what says
    /// when it is committed, or `None` when the queue is full.
    fn write_behind(
        &self,
        mut f: impl FnMut(&Connection) -> StoreResult<()> + Send + 'static,
    ) -> Option<oneshot::Receiver<StoreResult<()>>> {
        let (tx, rx) = oneshot::channel();
        let job: WriteJob = Box::new(Op {
            f: move |tx: &mut Tx<'_>| f(tx.conn),
            outcome: None,
            written: Vec::new(),
            reply: tx,
        });
        self.writer.try_send(job).ok().map(|()| rx)
    }

    /// Runs a short read (one verification or key by its primary key, some microseconds) on the
    /// calling thread, on a read-only connection taken from a pool. Handing such a read to a
    /// reader thread cost more than the read itself: two thread wake-ups per request, about a
    /// tenth of the server's CPU in the search benchmark. Longer reads still go to the reader
    /// threads ([`Self::read`]), so they never hold up an async worker.
    fn read_here<T>(&self, f: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
        let pooled = self
            .quick_readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => open_reader(&self.path).map_err(|e| StoreError::Backend(format!("{e:#}")))?,
        };
        let out = f(&conn);
        self.quick_readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(conn);
        out
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

/// Runs groups of writes. Between groups it keeps the WAL under `wal_limit`: the checkpointer's
/// PASSIVE passes have copied nearly all of it, so a RESTART here only copies the rest, and the
/// next group writes the WAL from its start again (`journal_size_limit` trims the file to the
/// limit). Done by the writer itself because from another connection such a checkpoint must take
/// the write lock away from the writer, and SQLite's busy handler then parks the writer in sleeps
/// of up to 100 ms: stalls of 180 ms and more in benchmarks at 5,000 requests/s. RESTART rather
/// than TRUNCATE: shortening and regrowing the file cost 21–37 ms per checkpoint, RESTART 0–6 ms.
fn writer_loop(
    conn: Connection,
    cache: &SharedCache,
    mut rx: mpsc::Receiver<WriteJob>,
    wal: &Path,
    wal_limit: u64,
) {
    while let Some(first) = rx.blocking_recv() {
        run_batch(&conn, cache, first, &mut rx);
        // One stat per group: microseconds against a group's fsync.
        if std::fs::metadata(wal).is_ok_and(|m| m.len() > wal_limit) {
            let began = std::time::Instant::now();
            let done = conn.query_row("pragma wal_checkpoint(restart)", [], |_| Ok(()));
            tracing::trace!(
                ms = began.elapsed().as_millis() as u64,
                "restarting checkpoint"
            );
            if let Err(e) = done {
                tracing::warn!(error = %e, "could not truncate the WAL; will retry");
            }
        }
    }
}

/// Moves whenever another connection commits to the file (never for this connection's commits).
fn data_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("pragma data_version")?
        .query_row([], |r| r.get(0))
}

/// Runs a statement the writer runs all the time without parsing it again.
fn exec_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// Runs one operation, catching a panic: a panicking operation fails alone instead of taking the
/// writer thread down.
fn run_op(conn: &Connection, cache: &SharedCache, op: &mut dyn WriteOp) -> bool {
    catch_unwind(AssertUnwindSafe(|| op.run(conn, cache))).unwrap_or_else(|_| {
        tracing::error!("a store operation panicked; it is undone and reported as failed");
        false
    })
}

/// Runs one operation inside its own savepoint, undone alone when it fails.
fn run_in_savepoint(conn: &Connection, cache: &SharedCache, op: &mut dyn WriteOp) -> bool {
    if let Err(e) = exec_cached(conn, "savepoint op") {
        tracing::error!(error = %db_err(e), "could not open a savepoint");
        return false;
    }
    let ok = run_op(conn, cache, op);
    if !conn.is_autocommit() {
        let end = if ok {
            exec_cached(conn, "release op")
        } else {
            exec_cached(conn, "rollback to op").and_then(|()| exec_cached(conn, "release op"))
        };
        if let Err(e) = end {
            tracing::error!(error = %e, "could not end a savepoint");
        }
    }
    ok
}

/// One transaction: `first`, then every operation that arrives while the transaction runs (up to
/// [`MAX_BATCH`]), then one commit. Taking in what queued up during the work keeps groups large
/// without ever waiting on purpose.
///
/// Operations run without savepoints: a savepoint per operation made SQLite copy every page an
/// operation touched that an earlier one had already changed (the tail pages of each table and
/// index, so nearly all of them) into its statement journal, about a tenth of the writer's work.
/// Operations fail rarely, so when one does the whole group is rolled back, the failed one is
/// answered, and the others run again in a new transaction, each in its own savepoint.
fn run_batch(
    conn: &Connection,
    cache: &SharedCache,
    first: WriteJob,
    rx: &mut mpsc::Receiver<WriteJob>,
) {
    let began = std::time::Instant::now();
    let mut ops: Vec<WriteJob> = Vec::with_capacity(64);
    if let Err(e) = exec_cached(conn, "begin immediate") {
        first.finish(Err(db_err(e)), cache);
        return;
    }
    // Inside the transaction, so no other connection can commit until this group has.
    match data_version(conn) {
        Ok(version) => cache.saw_version(version),
        Err(e) => {
            let _ = exec_cached(conn, "rollback");
            first.finish(Err(db_err(e)), cache);
            return;
        }
    }
    let mut next = Some(first);
    let mut failed = None;
    while let Some(mut op) = next {
        let ok = run_op(conn, cache, op.as_mut());
        if conn.is_autocommit() {
            // SQLite rolled the whole transaction back (disk full, I/O error): what ran is gone.
            ops.push(op);
            return abandon(ops, cache);
        }
        if !ok {
            failed = Some(op);
            break;
        }
        ops.push(op);
        next = if ops.len() < MAX_BATCH {
            rx.try_recv().ok()
        } else {
            None
        };
    }
    if let Some(failed) = failed {
        if let Err(e) = exec_cached(conn, "rollback") {
            tracing::error!(error = %db_err(e), "could not roll back a group of writes");
        }
        // Its result is its error, whatever happens to the others.
        failed.finish(Ok(()), cache);
        if let Err(e) = exec_cached(conn, "begin immediate") {
            let err = db_err(e);
            return ops
                .into_iter()
                .for_each(|op| op.finish(Err(err.clone()), cache));
        }
        let mut kept = Vec::with_capacity(ops.len());
        for mut op in ops {
            if run_in_savepoint(conn, cache, op.as_mut()) {
                kept.push(op);
            } else if conn.is_autocommit() {
                kept.push(op);
                return abandon(kept, cache);
            } else {
                op.finish(Ok(()), cache);
            }
        }
        ops = kept;
    }
    match exec_cached(conn, "commit") {
        Ok(()) => {
            tracing::trace!(
                operations = ops.len(),
                us = began.elapsed().as_micros() as u64,
                "group committed"
            );
            ops.into_iter().for_each(|op| op.finish(Ok(()), cache));
        }
        Err(e) => {
            let err = db_err(e);
            tracing::error!(error = %err, "a group of writes could not be committed");
            let _ = conn.execute_batch("rollback");
            ops.into_iter()
                .for_each(|op| op.finish(Err(err.clone()), cache));
        }
    }
}

/// SQLite rolled the transaction back on its own: every operation of the group fails.
fn abandon(ops: Vec<WriteJob>, cache: &SharedCache) {
    let err = StoreError::Backend("the transaction was rolled back by SQLite".into());
    tracing::error!(error = %err, "a group of writes failed");
    ops.into_iter()
        .for_each(|op| op.finish(Err(err.clone()), cache));
}

fn load_body(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> StoreResult<Option<Body>> {
    conn.prepare_cached(sql)
        .map_err(db_err)?
        .query_row(params, |r| r.get(0))
        .optional()
        .map_err(db_err)
}

fn load(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> StoreResult<Option<Verification>> {
    load_body(conn, sql, params)?
        .map(|b| body::decode(&b.0))
        .transpose()
}

/// Writes `v` back, with the callbacks its change from status `was` calls for, and keeps it for
/// the cache; returns the copy the cache will share, so that whoever wants one more makes it off
/// the writer thread.
fn save(tx: &mut Tx<'_>, v: Verification, was: Status) -> StoreResult<Arc<Verification>> {
    let conn = tx.conn;
    // Whoever changes a verification has taken it out of the cache already; this makes sure.
    tx.cache.take(v.id.as_str());
    let body = body::encode(&v)?;
    let saved = conn
        .prepare_cached(
            "update verification set state = ?1, next_due_at = ?2, body = ?3 where request_id = ?4",
        )
        .map_err(db_err)?
        .execute(params![
            status_code(v.status),
            v.next_due().map(|t| t.timestamp_millis()),
            body,
            v.id.as_str()
        ])
        .map_err(db_err)?;
    callbacks::enqueue(conn, &v, was)?;
    if v.status != Status::InProgress {
        // Nothing is delivered for an ended request; its sealed PIN copies and the inbox
        // messages that show its PIN go with it.
        for sql in [
            "delete from delivery where request_id = ?1",
            "delete from inbox_message where request_id = ?1",
        ] {
            conn.prepare_cached(sql)
                .map_err(db_err)?
                .execute(params![v.id.as_str()])
                .map_err(db_err)?;
        }
    }
    let v = Arc::new(v);
    // A row deleted meanwhile (retention, an erasure) stays deleted, and out of the cache.
    if saved > 0 {
        tx.written.push(v.clone());
    }
    Ok(v)
}

/// Takes a row whose body does not decode out of every live index, so it cannot stall the
/// scheduler or block its number; logged once, by request id only.
fn set_aside(tx: &mut Tx<'_>, request_id: &str, error: &StoreError) -> StoreResult<()> {
    tracing::error!(request_id, %error, "a stored verification cannot be read; it is set aside");
    tx.cache.take(request_id);
    tx.conn
        .prepare_cached(
            "update verification set state = ?1, next_due_at = null where request_id = ?2",
        )
        .map_err(db_err)?
        .execute(params![STATE_SET_ASIDE, request_id])
        .map_err(db_err)?;
    // It has ended for good: the messages that show its PIN go, as at any other end.
    tx.conn
        .prepare_cached("delete from inbox_message where request_id = ?1")
        .map_err(db_err)?
        .execute(params![request_id])
        .map_err(db_err)?;
    Ok(())
}

fn insert_delivery(conn: &Connection, order: &DeliveryOrder, lease_until: i64) -> StoreResult<()> {
    insert_delivery_body(conn, order, &body::encode(order)?, lease_until)
}

fn insert_delivery_body(
    conn: &Connection,
    order: &DeliveryOrder,
    body: &[u8],
    lease_until: i64,
) -> StoreResult<()> {
    conn.prepare_cached(
        "insert into delivery (event_id, request_id, body, created_at, lease_until) \
         values (?1, ?2, ?3, ?4, ?5)",
    )
    .map_err(db_err)?
    .execute(params![
        order.event_id.as_str(),
        order.request_id.as_str(),
        body,
        order.created_at.timestamp_millis(),
        lease_until
    ])
    .map_err(db_err)?;
    Ok(())
}

/// A new verification and its first delivery, with their bodies encoded by the caller: encoding
/// is pure work, and the writer is the one thread every write waits for.
struct NewRow {
    verification: Verification,
    body: Vec<u8>,
    first: DeliveryOrder,
    first_body: Vec<u8>,
    /// A copy of `verification` for the cache, made by the caller too; a second run of the
    /// operation (after another one of its group failed) copies again.
    spare: Option<Verification>,
}

fn create_in(
    tx: &mut Tx<'_>,
    new: &mut NewRow,
    now: Instant,
    lease_until: i64,
) -> StoreResult<CreateOutcome> {
    // Inserted first, and the holder looked for only when the unique index turns the row away:
    // a new number (nearly every request) costs one statement instead of two.
    if !insert_verification(tx.conn, &new.verification, &new.body)? {
        let v = &new.verification;
        let holder = tx
            .conn
            .prepare_cached(
                "select request_id, body from verification where account = ?1 and number = ?2 and state = 0",
            )
            .map_err(db_err)?
            .query_row(params![v.account, v.destination_key()], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Body>(1)?))
            })
            .optional()
            .map_err(db_err)?;
        let Some((holder_id, body)) = holder else {
            return Err(StoreError::Backend(
                "a new verification was refused, and no verification holds its number".into(),
            ));
        };
        let cached = tx.cache.take(&holder_id).map(Ok);
        match cached.unwrap_or_else(|| body::decode::<Verification>(&body.0)) {
            Ok(mut existing) => {
                let was = existing.status;
                existing.settle(now);
                if existing.status == Status::InProgress {
                    // Unchanged, but what was read may be an earlier operation's change in this
                    // group: it goes back to the cache only once the group has committed.
                    let id = existing.id.clone();
                    tx.written.push(Arc::new(existing));
                    return Ok(CreateOutcome::Concurrent(id));
                }
                save(tx, existing, was)?;
            }
            Err(e) => set_aside(tx, &holder_id, &e)?,
        }
        if !insert_verification(tx.conn, &new.verification, &new.body)? {
            return Err(StoreError::Backend(
                "a new verification was refused after its number was freed".into(),
            ));
        }
    }
    insert_delivery_body(tx.conn, &new.first, &new.first_body, lease_until)?;
    let v = &new.verification;
    tx.written
        .push(Arc::new(new.spare.take().unwrap_or_else(|| v.clone())));
    Ok(CreateOutcome::Created)
}

/// Inserts a new verification unless a uniqueness rule refuses it (its number is held, or its
/// id exists); whether it went in.
fn insert_verification(conn: &Connection, v: &Verification, body: &[u8]) -> StoreResult<bool> {
    let inserted = conn
        .prepare_cached(
            "insert into verification (request_id, account, number, state, next_due_at, submitted_at, body) \
             values (?1, ?2, ?3, ?4, ?5, ?6, ?7) on conflict do nothing",
        )
        .map_err(db_err)?
        .execute(params![
            v.id.as_str(),
            v.account,
            v.destination_key(),
            status_code(v.status),
            v.next_due().map(|t| t.timestamp_millis()),
            v.submitted_at.timestamp_millis(),
            body
        ])
        .map_err(db_err)?;
    Ok(inserted == 1)
}

fn apply_in(
    tx: &mut Tx<'_>,
    account: Option<&str>,
    id: &RequestId,
    command: &Command,
    now: Instant,
    minter: &mut (dyn Minter + Send),
    lease_until: i64,
) -> StoreResult<Option<(CommandOutcome, Arc<Verification>)>> {
    let cached = match account {
        Some(account) => tx.cache.take_for(account, id),
        None => tx.cache.take(id.as_str()),
    };
    let found = match cached {
        Some(v) => Some(v),
        None => load(
            tx.conn,
            "select body from verification where request_id = ?1 and (?2 is null or account = ?2)",
            params![id.as_str(), account],
        )?,
    };
    let Some(mut v) = found else {
        return Ok(None);
    };
    let was = v.status;
    let outcome = v.apply(command, now, minter);
    let v = save(tx, v, was)?;
    if let Some(order) = outcome.delivery() {
        insert_delivery(tx.conn, order, lease_until)?;
    }
    Ok(Some((outcome, v)))
}

fn claim_due_in(
    tx: &mut Tx<'_>,
    now: Instant,
    limit: usize,
    minter: &mut (dyn Minter + Send),
    lease_until: i64,
) -> StoreResult<Vec<DeliveryOrder>> {
    let rows: Vec<(String, Body)> = {
        let mut stmt = tx
            .conn
            .prepare_cached(
                "select request_id, body from verification where state = 0 and next_due_at <= ?1 \
                 order by next_due_at limit ?2",
            )
            .map_err(db_err)?;
        let rows = stmt
            .query_map(params![now.timestamp_millis(), limit as i64], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(db_err)?;
        rows.collect::<Result<_, _>>().map_err(db_err)?
    };
    let mut orders = Vec::new();
    for (request_id, body) in rows {
        let cached = tx.cache.take(&request_id).map(Ok);
        let mut v: Verification = match cached.unwrap_or_else(|| body::decode(&body.0)) {
            Ok(v) => v,
            Err(e) => {
                set_aside(tx, &request_id, &e)?;
                continue;
            }
        };
        let was = v.status;
        let order = v.advance(now, minter);
        save(tx, v, was)?;
        if let Some(order) = order {
            insert_delivery(tx.conn, &order, lease_until)?;
            orders.push(order);
        }
    }
    Ok(orders)
}

fn claim_stale_in(
    conn: &Connection,
    limit: usize,
    lease_until: i64,
) -> StoreResult<Vec<DeliveryOrder>> {
    let now = real_now_ms();
    // Deliveries of requests that ended (or were set aside) are not sent.
    conn.prepare_cached(
        "delete from delivery where lease_until <= ?1 and not exists \
         (select 1 from verification v where v.request_id = delivery.request_id and v.state = 0)",
    )
    .map_err(db_err)?
    .execute(params![now])
    .map_err(db_err)?;
    let rows: Vec<(String, String, Body)> = {
        let mut stmt = conn
            .prepare_cached(
                "select request_id, event_id, body from delivery where lease_until <= ?1 \
                 order by rowid limit ?2",
            )
            .map_err(db_err)?;
        let rows = stmt
            .query_map(params![now, limit as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .map_err(db_err)?;
        rows.collect::<Result<_, _>>().map_err(db_err)?
    };
    let mut orders = Vec::with_capacity(rows.len());
    let mut lease = conn
        .prepare_cached(
            "update delivery set lease_until = ?1 where request_id = ?2 and event_id = ?3",
        )
        .map_err(db_err)?;
    let mut drop_row = conn
        .prepare_cached("delete from delivery where request_id = ?1 and event_id = ?2")
        .map_err(db_err)?;
    for (request_id, event_id, body) in rows {
        match body::decode::<DeliveryOrder>(&body.0) {
            Ok(order) => {
                lease
                    .execute(params![lease_until, request_id, event_id])
                    .map_err(db_err)?;
                orders.push(order);
            }
            Err(e) => {
                tracing::error!(event_id, error = %e, "a stored delivery cannot be read; dropped");
                drop_row
                    .execute(params![request_id, event_id])
                    .map_err(db_err)?;
            }
        }
    }
    Ok(orders)
}

fn ms_to_instant(ms: i64) -> StoreResult<Instant> {
    chrono::DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| StoreError::Corrupt("timestamp out of range".into()))
}

#[async_trait]
impl VerificationStore for SqliteStore {
    async fn create(
        &self,
        verification: Verification,
        first: DeliveryOrder,
        now: Instant,
    ) -> StoreResult<CreateOutcome> {
        let lease_until = self.lease_until();
        let mut new = NewRow {
            body: body::encode(&verification)?,
            first_body: body::encode(&first)?,
            spare: Some(verification.clone()),
            verification,
            first,
        };
        self.write_tx(move |tx| create_in(tx, &mut new, now, lease_until))
            .await
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
        let cached: Vec<Option<Arc<Verification>>> = ids
            .iter()
            .map(|id| self.cache.get_for(account, id))
            .collect();
        if cached.iter().all(Option::is_some) {
            return Ok(cached
                .iter()
                .flatten()
                .map(|v| Verification::clone(v))
                .collect());
        }
        // In the order asked; what the cache lacks is read from the file.
        self.read_here(|conn| {
            let mut out = Vec::with_capacity(ids.len());
            for (id, hit) in ids.iter().zip(cached) {
                let found = match hit {
                    Some(v) => Some(Verification::clone(&v)),
                    None => load(
                        conn,
                        "select body from verification where request_id = ?1 and account = ?2",
                        params![id.as_str(), account],
                    )?,
                };
                out.extend(found);
            }
            Ok(out)
        })
    }

    async fn claim_due(
        &self,
        clock: SharedClock,
        limit: usize,
        mut minter: BoxMinter,
    ) -> StoreResult<Vec<DeliveryOrder>> {
        let lease_until = self.lease_until();
        self.write_tx(move |tx| claim_due_in(tx, clock.now(), limit, minter.as_mut(), lease_until))
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
                .prepare_cached("select body from delivery order by rowid limit ?1")
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![limit as i64], |r| r.get::<_, Body>(0))
                .map_err(db_err)?;
            let mut out = Vec::new();
            for row in rows {
                out.push(body::decode(&row.map_err(db_err)?.0)?);
            }
            Ok(out)
        })
        .await
    }

    async fn claim_stale_deliveries(&self, limit: usize) -> StoreResult<Vec<DeliveryOrder>> {
        let lease_until = self.lease_until();
        self.write(move |conn| claim_stale_in(conn, limit, lease_until))
            .await
    }

    async fn mark_delivered(&self, done: Vec<(RequestId, EventId)>) -> StoreResult<()> {
        self.write(move |conn| {
            let mut stmt = conn
                .prepare_cached("delete from delivery where request_id = ?1 and event_id = ?2")
                .map_err(db_err)?;
            for (request_id, event_id) in &done {
                stmt.execute(params![request_id.as_str(), event_id.as_str()])
                    .map_err(db_err)?;
            }
            Ok(())
        })
        .await
    }
}

const KEY_COLUMNS: &str = "api_key, name, secret_hash, state, allow_custom_pin, created_at, limits";

type KeyRow = (String, String, Vec<u8>, i64, bool, i64, String);

fn key_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<KeyRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

fn key_record(row: KeyRow) -> StoreResult<ApiKeyRecord> {
    let (api_key, name, hash, state, allow_custom_pin, created, limits) = row;
    Ok(ApiKeyRecord {
        api_key,
        name,
        secret_hash: hash
            .try_into()
            .map_err(|_| StoreError::Corrupt("secret hash size".into()))?,
        state: KeyState::from_code(state).ok_or_else(|| StoreError::Corrupt("key state".into()))?,
        allow_custom_pin,
        created_at: ms_to_instant(created)?,
        limits: crate::store::key_limits(&limits)?,
    })
}

#[async_trait]
impl KeyStore for SqliteStore {
    async fn insert_key(&self, key: ApiKeyRecord) -> StoreResult<()> {
        self.write(move |conn| {
            conn.execute(
                &format!("insert into api_key ({KEY_COLUMNS}) values (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
                params![
                    key.api_key,
                    key.name,
                    &key.secret_hash[..],
                    key.state.code(),
                    key.allow_custom_pin,
                    key.created_at.timestamp_millis(),
                    key.limits.to_string()
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
                .prepare_cached(&format!(
                    "select {KEY_COLUMNS} from api_key order by created_at, api_key"
                ))
                .map_err(db_err)?;
            let rows = stmt.query_map([], key_from_row).map_err(db_err)?;
            rows.map(|row| key_record(row.map_err(db_err)?)).collect()
        })
        .await
    }

    async fn get_key(&self, api_key: &str) -> StoreResult<Option<ApiKeyRecord>> {
        let api_key = api_key.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "select {KEY_COLUMNS} from api_key where api_key = ?1"
            ))
            .map_err(db_err)?
            .query_row(params![api_key], key_from_row)
            .optional()
            .map_err(db_err)?
            .map(key_record)
            .transpose()
        })
        .await
    }

    async fn set_key_limits(
        &self,
        api_key: &str,
        was: &crate::domain::limits::KeyLimits,
        limits: crate::domain::limits::KeyLimits,
    ) -> StoreResult<LimitsSet> {
        let (api_key, was, text) = (api_key.to_owned(), was.clone(), limits.to_string());
        // In the writer's transaction, which holds the file's write lock from its start.
        self.write(move |conn| {
            let current: Option<String> = conn
                .query_row(
                    "select limits from api_key where api_key = ?1",
                    params![api_key],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err)?;
            let Some(current) = current else {
                return Ok(LimitsSet::NoKey);
            };
            let current = super::key_limits(&current)?;
            if current != was {
                return Ok(LimitsSet::Changed(current));
            }
            conn.execute(
                "update api_key set limits = ?1 where api_key = ?2",
                params![text, api_key],
            )
            .map_err(db_err)?;
            Ok(LimitsSet::Set)
        })
        .await
    }

    async fn set_key_state(&self, api_key: &str, state: KeyState) -> StoreResult<bool> {
        let api_key = api_key.to_owned();
        self.write(move |conn| {
            let n = conn
                .execute(
                    "update api_key set state = ?1 where api_key = ?2 and (state <> 2 or ?1 = 2)",
                    params![state.code(), api_key],
                )
                .map_err(db_err)?;
            Ok(n > 0)
        })
        .await
    }

    async fn set_key_secret(&self, api_key: &str, secret_hash: [u8; 32]) -> StoreResult<bool> {
        let api_key = api_key.to_owned();
        self.write(move |conn| {
            let n = conn
                .execute(
                    "update api_key set secret_hash = ?1 where api_key = ?2 and state <> 2",
                    params![secret_hash.as_slice(), api_key],
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

const INBOX_TO_NUMBER: &str =
    "select message_id, channel, to_number, from_id, text, locale, request_id, created_at \
     from inbox_message where to_number = ?1 order by seq desc limit ?2";
const INBOX_OF_REQUEST: &str =
    "select message_id, channel, to_number, from_id, text, locale, request_id, created_at \
     from inbox_message where request_id = ?1 order by seq";
const INBOX_ALL: &str =
    "select message_id, channel, to_number, from_id, text, locale, request_id, created_at \
     from inbox_message order by seq desc limit ?1";

fn inbox_err(e: StoreError) -> InboxLogError {
    InboxLogError(e.to_string())
}

#[async_trait]
impl InboxLog for SqliteStore {
    async fn append(&self, m: InboxMessage) -> Result<(), InboxLogError> {
        let created = chrono::DateTime::parse_from_rfc3339(&m.created_at)
            .map_err(|e| InboxLogError(format!("created_at: {e}")))?
            .timestamp_millis();
        self.write(move |conn| {
            // A message whose verification ended while it was on its way is not kept: the end
            // took the verification's other messages already.
            conn.prepare_cached(
                "insert into inbox_message \
                 (message_id, channel, to_number, from_id, text, locale, request_id, created_at) \
                 select ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8 where exists \
                   (select 1 from verification where request_id = ?7 and state = 0) \
                 on conflict (request_id, message_id) do nothing",
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
        .map_err(inbox_err)
    }

    async fn list(
        &self,
        to: Option<&str>,
        limit: usize,
    ) -> Result<Vec<InboxMessage>, InboxLogError> {
        let to = to.map(str::to_owned);
        self.read(move |conn| {
            // Two statements, not one with "?1 is null or to_number = ?1": SQLite cannot use the
            // index on to_number for that, and scans every message (seconds in a big inbox).
            let limit = limit as i64;
            match &to {
                Some(to) => inbox_rows(conn, INBOX_TO_NUMBER, params![to, limit]),
                None => inbox_rows(conn, INBOX_ALL, params![limit]),
            }
        })
        .await
        .map_err(inbox_err)
    }

    async fn of_request(&self, request_id: &str) -> Result<Vec<InboxMessage>, InboxLogError> {
        let request_id = request_id.to_owned();
        self.read(move |conn| inbox_rows(conn, INBOX_OF_REQUEST, params![request_id]))
            .await
            .map_err(inbox_err)
    }
}

fn inbox_rows(
    conn: &Connection,
    sql: &str,
    bound: impl rusqlite::Params,
) -> StoreResult<Vec<InboxMessage>> {
    let mut stmt = conn.prepare_cached(sql).map_err(db_err)?;
    let rows = stmt.query(bound).map_err(db_err)?.mapped(|r| {
        Ok((
            InboxMessage {
                id: r.get(0)?,
                channel: r.get(1)?,
                to: r.get(2)?,
                from: r.get(3)?,
                text: r.get(4)?,
                locale: r.get(5)?,
                request_id: r.get(6)?,
                created_at: String::new(),
            },
            r.get::<_, i64>(7)?,
        ))
    });
    let mut out = Vec::new();
    for row in rows {
        let (mut message, created) = row.map_err(db_err)?;
        message.created_at =
            ms_to_instant(created)?.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        out.push(message);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (SqliteStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).unwrap();
        (store, dir)
    }

    async fn count(store: &SqliteStore) -> i64 {
        store
            .read(|c| {
                c.query_row("select count(*) from meta", [], |r| r.get(0))
                    .map_err(db_err)
            })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn the_inbox_of_one_number_is_read_through_its_index_not_a_scan() {
        let (store, _dir) = store();
        let plan: Vec<String> = store
            .read(|c| {
                let mut stmt = c
                    .prepare(&format!("explain query plan {INBOX_TO_NUMBER}"))
                    .map_err(db_err)?;
                let rows = stmt
                    .query_map(params!["447700100001", 10], |r| r.get::<_, String>(3))
                    .map_err(db_err)?;
                rows.collect::<Result<_, _>>().map_err(db_err)
            })
            .await
            .unwrap();
        assert!(
            plan.iter().any(|step| step.contains("inbox_message_to")),
            "{plan:?}"
        );
        assert!(
            !plan.iter().any(|step| step.starts_with("SCAN")),
            "{plan:?}"
        );
    }

    #[tokio::test]
    async fn a_failing_operation_in_a_group_is_undone_alone() {
        let (store, _dir) = store();
        let store = std::sync::Arc::new(store);
        let tasks = spawn_inserts(&store, 50, 25);
        let failed = count_failed(tasks).await;
        assert_eq!(failed, 1);
        assert_eq!(
            count(&store).await,
            49,
            "the failed operation's row is gone, the others kept"
        );
    }

    #[tokio::test]
    async fn the_checkpointer_moves_committed_pages_into_the_database_file() {
        let (store, dir) = store();
        let db = dir.path().join("t.db");
        let before = std::fs::metadata(&db).unwrap().len();
        store
            .write(|c| {
                for i in 0..2000 {
                    c.execute(
                        "insert into meta (name, value) values (?1, ?2)",
                        params![format!("k{i}"), "x".repeat(200)],
                    )
                    .map_err(db_err)?;
                }
                Ok(())
            })
            .await
            .unwrap();
        // The writer never checkpoints (wal_autocheckpoint = 0): only the checkpointer thread
        // grows the main file.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::fs::metadata(&db).unwrap().len() < before + 200_000 {
            assert!(
                std::time::Instant::now() < deadline,
                "no checkpoint within 5 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test]
    async fn the_wal_stays_bounded_under_constant_writes() {
        let dir = tempfile::tempdir().unwrap();
        let limit = 1024 * 1024;
        let store = SqliteStore::open_with_wal_limit(&dir.path().join("t.db"), limit).unwrap();
        let store = std::sync::Arc::new(store);
        let wal = dir.path().join("t.db-wal");
        let biggest = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        // Several writers at once, so that a transaction is nearly always in flight.
        let mut tasks = Vec::new();
        for t in 0..4 {
            let store = store.clone();
            let (wal, biggest) = (wal.clone(), biggest.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0..400 {
                    let size = std::fs::metadata(&wal).map_or(0, |m| m.len());
                    biggest.fetch_max(size, std::sync::atomic::Ordering::Relaxed);
                    store
                        .write(move |c| {
                            c.execute(
                                "insert or replace into meta (name, value) values (?1, ?2)",
                                params![format!("k{t}-{}", i % 50), "x".repeat(4000)],
                            )
                            .map_err(db_err)?;
                            Ok(())
                        })
                        .await
                        .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        // 1,600 rows of 4 KB went through the WAL; what it held at any time stays near the
        // limit plus one group's pages.
        let biggest = biggest.load(std::sync::atomic::Ordering::Relaxed);
        assert!(biggest > 0);
        assert!(biggest < 4 * limit, "the WAL grew to {biggest} bytes");
    }

    #[tokio::test]
    async fn when_an_operation_fails_the_others_of_its_group_run_again_and_are_kept() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let (store, _dir) = store();
        let store = std::sync::Arc::new(store);
        // Holds the writer so that the ten operations below queue up and join its group.
        let first_runs = std::sync::Arc::new(AtomicUsize::new(0));
        let runs = first_runs.clone();
        let first = tokio::spawn({
            let store = store.clone();
            async move {
                store
                    .write(move |c| {
                        runs.fetch_add(1, Ordering::SeqCst);
                        if runs.load(Ordering::SeqCst) == 1 {
                            std::thread::sleep(Duration::from_millis(300));
                        }
                        c.execute("insert into meta (name, value) values ('first', 'x')", [])
                            .map_err(db_err)
                            .map(|_| ())
                    })
                    .await
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let tasks = spawn_inserts(&store, 10, 5);
        first.await.unwrap().unwrap();
        let failed = count_failed(tasks).await;
        assert_eq!(failed, 1);
        assert_eq!(count(&store).await, 10, "the first and nine of ten kept");
        assert_eq!(
            first_runs.load(Ordering::SeqCst),
            2,
            "the group was rolled back and its first operation ran again"
        );
    }

    /// `n` concurrent writes, each inserting a row of its own; the one numbered `failing` then
    /// fails.
    fn spawn_inserts(
        store: &std::sync::Arc<SqliteStore>,
        n: usize,
        failing: usize,
    ) -> Vec<tokio::task::JoinHandle<StoreResult<()>>> {
        (0..n)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .write(move |c| {
                            c.execute(
                                "insert into meta (name, value) values (?1, 'x')",
                                params![format!("k{i}")],
                            )
                            .map_err(db_err)?;
                            if i == failing {
                                return Err(StoreError::Backend("this one fails".into()));
                            }
                            Ok(())
                        })
                        .await
                })
            })
            .collect()
    }

    async fn count_failed(tasks: Vec<tokio::task::JoinHandle<StoreResult<()>>>) -> usize {
        let mut failed = 0;
        for t in tasks {
            failed += usize::from(t.await.unwrap().is_err());
        }
        failed
    }

    #[tokio::test]
    async fn a_panicking_operation_fails_alone_and_the_writer_keeps_working() {
        let (store, _dir) = store();
        let r = store
            .write(|c| -> StoreResult<()> {
                c.execute("insert into meta (name, value) values ('p', 'x')", [])
                    .map_err(db_err)?;
                panic!("boom")
            })
            .await;
        assert!(r.is_err());
        store.set_meta("after", "1").await.unwrap();
        assert_eq!(
            count(&store).await,
            1,
            "only the row written after the panic"
        );
    }

    fn started(n: u8) -> (Verification, DeliveryOrder) {
        started_as(n, n)
    }

    /// A verification with the id made of byte `id`, to the number numbered `n`.
    fn started_as(n: u8, id: u8) -> (Verification, DeliveryOrder) {
        use crate::api::v1::workflow::Workflow;
        use crate::domain::testing::SequenceMinter;
        let new = Workflow::DEFAULT.request(
            RequestId::from_bytes([id; 16]),
            "k1",
            &format!("4477001000{n:02}"),
        );
        Verification::start(new, at_secs(0), &mut SequenceMinter::new())
    }

    fn at_secs(secs: i64) -> Instant {
        chrono::DateTime::from_timestamp(1_750_000_000 + secs, 0).unwrap()
    }

    fn wrong_code() -> Command {
        Command::Check {
            code_hash: crate::domain::testing::SequenceMinter::hash("9999"),
            code_len: 4,
        }
    }

    async fn check_wrong(
        store: &SqliteStore,
        v: &Verification,
        secs: i64,
    ) -> StoreResult<CommandOutcome> {
        let clock: SharedClock = std::sync::Arc::new(crate::clock::ManualClock::new(at_secs(secs)));
        let minter = Box::new(crate::domain::testing::SequenceMinter::new());
        let found = store
            .apply("k1", &v.id, wrong_code(), clock, minter)
            .await?;
        Ok(found.expect("the verification exists").0)
    }

    #[tokio::test]
    async fn a_verification_another_connection_changed_is_read_again_from_the_file() {
        let (store, dir) = store();
        let (v, first) = started(2);
        store.create(v.clone(), first, at_secs(0)).await.unwrap();
        let other = Connection::open(dir.path().join("t.db")).unwrap();
        other.busy_timeout(Duration::from_secs(5)).unwrap();
        other
            .execute(
                "update verification set body = 'not json' where request_id = ?1",
                params![v.id.as_str()],
            )
            .unwrap();
        assert!(
            matches!(
                check_wrong(&store, &v, 1).await,
                Err(StoreError::Corrupt(_))
            ),
            "the writer read what the other connection wrote, not what it remembered"
        );
    }

    /// A store whose one request and its delivery are rows as a version before format 2 wrote
    /// them (JSON text); with a connection of its own to the file.
    async fn legacy_rows() -> (
        SqliteStore,
        tempfile::TempDir,
        Verification,
        DeliveryOrder,
        Verification,
        Connection,
    ) {
        use crate::store::body::tests::{DELIVERY_1, FORMAT_1};
        let (store, dir) = store();
        let (v, first) = started(2);
        store
            .create(v.clone(), first.clone(), at_secs(0))
            .await
            .unwrap();
        // The rows become a request and its delivery as a version before format 2 wrote them.
        let legacy: Verification = body::decode(FORMAT_1.as_bytes()).unwrap();
        let legacy_first: DeliveryOrder = body::decode(DELIVERY_1.as_bytes()).unwrap();
        let other = Connection::open(dir.path().join("t.db")).unwrap();
        other.busy_timeout(Duration::from_secs(5)).unwrap();
        other
            .execute(
                "update delivery set body = ?1, request_id = ?2, event_id = ?3",
                params![
                    DELIVERY_1,
                    legacy.id.as_str(),
                    legacy_first.event_id.as_str()
                ],
            )
            .unwrap();
        other
            .execute(
                "update verification set body = ?1, request_id = ?2, account = ?3, number = ?4 \
                 where request_id = ?5",
                params![
                    FORMAT_1,
                    legacy.id.as_str(),
                    legacy.account,
                    legacy.destination_key(),
                    v.id.as_str()
                ],
            )
            .unwrap();
        (store, dir, legacy, legacy_first, v, other)
    }

    #[tokio::test]
    async fn an_erasure_finds_rows_an_earlier_version_stored_as_json_text() {
        let (store, _dir, legacy, _, _, _) = legacy_rows().await;
        let erased = crate::store::RetentionStore::erase_number(&store, legacy.destination_key())
            .await
            .unwrap();
        assert_eq!(erased.verifications, 1);
        store.cache.take(legacy.id.as_str());
        let found = store
            .find(&legacy.account, std::slice::from_ref(&legacy.id))
            .await
            .unwrap();
        assert!(found.is_empty());
    }

    #[tokio::test]
    async fn a_verification_and_delivery_stored_as_json_by_an_earlier_version_still_serve() {
        let (store, _dir, legacy, legacy_first, v, other) = legacy_rows().await;
        assert_eq!(store.undelivered(10).await.unwrap(), vec![legacy_first]);
        let stored_type = |other: &Connection| -> String {
            other
                .query_row(
                    "select typeof(body) from verification where request_id = ?1",
                    params![legacy.id.as_str()],
                    |r| r.get(0),
                )
                .unwrap()
        };
        assert_eq!(stored_type(&other), "text");

        store.cache.take(v.id.as_str());
        let found = store
            .find(&legacy.account, std::slice::from_ref(&legacy.id))
            .await
            .unwrap();
        assert_eq!(found, vec![legacy.clone()]);
        let wrong = Command::Check {
            code_hash: [0; 32],
            code_len: 4,
        };
        let outcome = store
            .apply(
                &legacy.account,
                &legacy.id,
                wrong,
                Arc::new(crate::clock::ManualClock::new(legacy.submitted_at)),
                Box::new(crate::domain::testing::SequenceMinter::new()),
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
        assert_eq!(
            stored_type(&other),
            "blob",
            "written back in the new format"
        );
        let found = store
            .find(&legacy.account, std::slice::from_ref(&legacy.id))
            .await
            .unwrap();
        assert_eq!(found[0].checks.len(), 1);
        assert_eq!(found[0].steps, legacy.steps);
    }

    /// Holds the writer with an operation that waits for the returned sender, so that what the
    /// test queues next joins one group.
    async fn hold_writer(
        store: &std::sync::Arc<SqliteStore>,
    ) -> (
        std::sync::mpsc::Sender<()>,
        tokio::task::JoinHandle<StoreResult<()>>,
    ) {
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let blocker = {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .write(move |_| {
                        release_rx.recv().unwrap();
                        Ok(())
                    })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        (release_tx, blocker)
    }

    /// Queues an operation after which SQLite abandons the transaction, as on disk full.
    async fn queue_abandoner(
        store: &std::sync::Arc<SqliteStore>,
    ) -> tokio::task::JoinHandle<StoreResult<()>> {
        let abandoner = {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .write(|c| c.execute_batch("rollback").map_err(db_err))
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        abandoner
    }

    #[tokio::test]
    async fn a_check_whose_group_sqlite_abandoned_is_not_remembered_by_the_writer() {
        let (store, _dir) = store();
        let store = std::sync::Arc::new(store);
        let (v, first) = started(1);
        store.create(v.clone(), first, at_secs(0)).await.unwrap();
        // Hold the writer, then queue a check (of the verification the create left in the
        // writer's cache) and an operation after which SQLite abandons the transaction.
        let (release_tx, blocker) = hold_writer(&store).await;
        let lost_check = {
            let (store, v) = (store.clone(), v.clone());
            tokio::spawn(async move { check_wrong(&store, &v, 1).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let abandoner = queue_abandoner(&store).await;
        release_tx.send(()).unwrap();
        blocker.await.unwrap().unwrap_err();
        lost_check.await.unwrap().unwrap_err();
        abandoner.await.unwrap().unwrap_err();
        assert_eq!(
            check_wrong(&store, &v, 2).await.unwrap(),
            CommandOutcome::Checked(crate::domain::CheckOutcome::Mismatch { checks_left: 2 }),
            "the lost check did not count: only what was committed is remembered"
        );
    }

    #[tokio::test]
    async fn a_second_request_for_a_number_whose_group_sqlite_abandoned_leaves_no_trace_in_the_writer(
    ) {
        let (store, _dir) = store();
        let store = std::sync::Arc::new(store);
        let (v, first) = started(3);
        store.create(v.clone(), first, at_secs(0)).await.unwrap();
        // In one group: a wrong check, then a second request for the same number (which reads
        // the check's uncommitted change), then an operation after which SQLite abandons it.
        let (release_tx, blocker) = hold_writer(&store).await;
        let lost_check = {
            let (store, v) = (store.clone(), v.clone());
            tokio::spawn(async move { check_wrong(&store, &v, 1).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let lost_request = {
            let store = store.clone();
            let (again, first) = started_as(3, 4);
            tokio::spawn(async move { store.create(again, first, at_secs(1)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let abandoner = queue_abandoner(&store).await;
        release_tx.send(()).unwrap();
        blocker.await.unwrap().unwrap_err();
        lost_check.await.unwrap().unwrap_err();
        lost_request.await.unwrap().unwrap_err();
        abandoner.await.unwrap().unwrap_err();
        assert_eq!(
            check_wrong(&store, &v, 2).await.unwrap(),
            CommandOutcome::Checked(crate::domain::CheckOutcome::Mismatch { checks_left: 2 }),
            "the lost check did not count"
        );
    }

    async fn checks_found(store: &SqliteStore, v: &Verification) -> usize {
        let found = store.find("k1", std::slice::from_ref(&v.id)).await.unwrap();
        found[0].checks.len()
    }

    #[tokio::test]
    async fn a_search_shows_a_check_once_its_group_commits_and_not_before() {
        let (store, _dir) = store();
        let store = std::sync::Arc::new(store);
        let (v, first) = started(5);
        store.create(v.clone(), first, at_secs(0)).await.unwrap();
        // The check runs in a group that a second holder keeps from committing.
        let (release_first, first_holder) = hold_writer(&store).await;
        let check = {
            let (store, v) = (store.clone(), v.clone());
            tokio::spawn(async move { check_wrong(&store, &v, 1).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let (release_second, second_holder) = hold_writer(&store).await;
        release_first.send(()).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!check.is_finished(), "the group has not committed");
        assert_eq!(
            checks_found(&store, &v).await,
            0,
            "nothing uncommitted shows"
        );

        release_second.send(()).unwrap();
        first_holder.await.unwrap().unwrap();
        second_holder.await.unwrap().unwrap();
        check.await.unwrap().unwrap();
        assert_eq!(checks_found(&store, &v).await, 1, "what was answered shows");
    }

    #[tokio::test]
    async fn a_search_of_several_ids_answers_in_the_order_asked_from_the_cache_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let (a, b, c) = (started(6), started(7), started(8));
        {
            let earlier = SqliteStore::open(&path).unwrap();
            earlier.create(a.0.clone(), a.1, at_secs(0)).await.unwrap();
            earlier.create(b.0.clone(), b.1, at_secs(0)).await.unwrap();
        }
        // A new store remembers nothing: only c, which it writes, is in its cache.
        let store = SqliteStore::open(&path).unwrap();
        store.create(c.0.clone(), c.1, at_secs(0)).await.unwrap();
        let ids = [a.0.id.clone(), c.0.id.clone(), b.0.id.clone()];
        let found = store.find("k1", &ids).await.unwrap();
        assert_eq!(found, vec![a.0.clone(), c.0.clone(), b.0.clone()]);
        assert!(
            store.find("k2", &ids).await.unwrap().is_empty(),
            "only the account's own"
        );
    }

    #[tokio::test]
    async fn when_sqlite_abandons_the_transaction_no_operation_of_the_group_is_kept() {
        let (store, _dir) = store();
        let store = std::sync::Arc::new(store);
        // Hold the writer so that the next operations queue up and join its group.
        let (release_tx, blocker) = hold_writer(&store).await;
        let mut tasks = Vec::new();
        for i in 0..3 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .write(move |c| {
                        c.execute(
                            "insert into meta (name, value) values (?1, 'x')",
                            params![format!("g{i}")],
                        )
                        .map_err(db_err)?;
                        if i == 1 {
                            // What SQLite does on disk full or an I/O error.
                            c.execute_batch("rollback").map_err(db_err)?;
                        }
                        Ok(())
                    })
                    .await
            }));
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        release_tx.send(()).unwrap();
        // The operations queued while the first ran join its transaction, so the first is lost
        // with them; the one after the failure had not run yet and runs in a group of its own.
        blocker.await.unwrap().unwrap_err();
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.unwrap().is_ok());
        }
        assert_eq!(results, [false, false, true]);
        assert_eq!(
            count(&store).await,
            1,
            "only the operation that ran after the failure"
        );
        store.set_meta("after", "1").await.unwrap();
        assert_eq!(count(&store).await, 2);
    }
}
