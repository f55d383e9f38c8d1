//! The durable floor: the bare floor server, except that every answer waits until one row for
//! the request is on disk. It is the least a service with verifyd's promise ("status 0 means
//! committed and fsync'd") must do per request, with nothing of verifyd in it:
//!
//! - `POST /verify/json` inserts one row of [`ROW_BYTES`] bytes under a new id (an append to one
//!   b-tree, no index) and answers with that id as the request id;
//! - `POST /verify/check/json` rewrites the row named by `request_id` in place (the page of a row
//!   written earlier, as a check rewrites its verification).
//!
//! The shape of the writing is verifyd's SQLite engine's: one thread owns the write connection
//! and commits whatever has queued, up to [`GROUP`] operations, as one transaction (group commit)
//! with `synchronous = full` in WAL mode; another connection checkpoints every 25 ms, and past
//! [`WAL_LIMIT_BYTES`] the writer restarts the WAL, so that commits mostly overwrite a file of
//! steady size instead of growing it.
//!
//! With [`Engine::Log`] the same thread writes to a plain file of fixed size instead, written
//! once at start and then used as a ring: a group's new rows in one `pwrite` (two where the ring
//! wraps), each rewrite in its own `pwrite` at the row's place, then one `fdatasync` per group. No
//! database at all, and no file growing: what the disk and the kernel alone cost.
//!
//! A group with a request for a row that does not exist fails whole, in both engines. verifyd
//! would answer the others; the benchmark never sends such a request.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::post;
use bytes::Bytes;
use rusqlite::{params, Connection};
use tokio::sync::oneshot;

/// About what verifyd stores for one verification (its MessagePack body and keys).
pub const ROW_BYTES: usize = 320;

/// Operations one transaction takes at most, as verifyd's SQLite writer (`MAX_BATCH`).
const GROUP: usize = 512;

/// Past this WAL size the SQLite writer restarts the WAL, as verifyd's does (`WAL_LIMIT_BYTES`).
const WAL_LIMIT_BYTES: u64 = 64 * 1024 * 1024;

/// The plain file's size: as much as verifyd lets its WAL reach.
const RING_ROWS: u64 = WAL_LIMIT_BYTES / ROW_BYTES as u64;

/// The bytes of each row written: random once, then stamped with a count of rows written in its
/// first eight bytes, so that no two rows are alike and the writer makes no system call for them.
struct Rows {
    body: Vec<u8>,
    written: u64,
}

impl Rows {
    fn new() -> Self {
        let mut body = vec![0u8; ROW_BYTES];
        getrandom::fill(&mut body).expect("the system's random source");
        Self { body, written: 0 }
    }

    fn next(&mut self) -> &[u8] {
        self.written += 1;
        self.body[..8].copy_from_slice(&self.written.to_le_bytes());
        &self.body
    }
}

#[cfg(test)]
fn stamp(row: &[u8]) -> u64 {
    u64::from_le_bytes(row[..8].try_into().unwrap())
}

#[derive(Clone, Copy)]
enum Op {
    Insert,
    Rewrite(i64),
}

struct Job {
    op: Op,
    done: oneshot::Sender<Result<i64, String>>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// One SQLite table, as verifyd's SQLite engine writes.
    Sqlite,
    /// A plain file and `fdatasync`.
    Log,
}

pub fn serve(listen: SocketAddr, db: PathBuf, engine: Engine) -> anyhow::Result<()> {
    let jobs = spawn_writer(engine, &db)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let app = axum::Router::new()
            .route("/verify/json", post(insert))
            .route("/verify/check/json", post(rewrite))
            .with_state(jobs);
        let listener = tokio::net::TcpListener::bind(listen).await?;
        axum::serve(listener, app).await?;
        Ok(())
    })
}

/// Starts the thread that commits what is sent to it (and, for SQLite, a checkpointer that stops
/// with it). The writer stops when every sender is gone.
fn spawn_writer(engine: Engine, db: &Path) -> anyhow::Result<mpsc::Sender<Job>> {
    let (jobs, queue) = mpsc::channel::<Job>();
    match engine {
        Engine::Sqlite => {
            let store = Sqlite::new(db, WAL_LIMIT_BYTES)?;
            let running = std::sync::Arc::new(());
            let alive = std::sync::Arc::downgrade(&running);
            std::thread::Builder::new()
                .name("durable-writer".into())
                .spawn(move || {
                    commit_loop(store, queue);
                    drop(running);
                })?;
            let checkpointer = open(db)?;
            std::thread::Builder::new()
                .name("durable-checkpoint".into())
                .spawn(move || {
                    while alive.upgrade().is_some() {
                        std::thread::sleep(Duration::from_millis(25));
                        let done = checkpointer.query_row(
                            "pragma wal_checkpoint(passive)",
                            [],
                            |_| Ok(()),
                        );
                        if let Err(e) = done {
                            eprintln!("durable floor: checkpoint failed: {e}");
                        }
                    }
                })?;
        }
        Engine::Log => {
            let store = LogFile::create(db, RING_ROWS)?;
            std::thread::Builder::new()
                .name("durable-writer".into())
                .spawn(move || commit_loop(store, queue))?;
        }
    }
    Ok(jobs)
}

fn open(db: &Path) -> anyhow::Result<Connection> {
    let conn = Connection::open(db).with_context(|| format!("cannot open {}", db.display()))?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.query_row("pragma journal_mode = wal", [], |r| r.get::<_, String>(0))?;
    conn.execute_batch(
        "pragma synchronous = full;
         pragma wal_autocheckpoint = 0;
         create table if not exists request (id integer primary key, body blob not null);",
    )?;
    Ok(conn)
}

/// Whatever has queued, up to [`GROUP`] jobs; waits for the first.
fn next_group(queue: &mpsc::Receiver<Job>) -> Option<Vec<Job>> {
    let mut group = vec![queue.recv().ok()?];
    while group.len() < GROUP {
        match queue.try_recv() {
            Ok(job) => group.push(job),
            Err(_) => break,
        }
    }
    Some(group)
}

fn reply(group: Vec<Job>, outcome: Result<Vec<i64>, String>) {
    match outcome {
        Ok(ids) => {
            for (job, id) in group.into_iter().zip(ids) {
                let _ = job.done.send(Ok(id));
            }
        }
        Err(e) => {
            for job in group {
                let _ = job.done.send(Err(e.clone()));
            }
        }
    }
}

/// One way of making a group of operations durable.
trait Commit: Send + 'static {
    /// Applies `ops` and makes them durable, or none of them; the ids they name, in order.
    fn commit(&mut self, ops: &[Op]) -> Result<Vec<i64>, String>;
}

fn commit_loop(mut store: impl Commit, queue: mpsc::Receiver<Job>) {
    while let Some(group) = next_group(&queue) {
        let ops: Vec<Op> = group.iter().map(|job| job.op).collect();
        let outcome = store.commit(&ops);
        reply(group, outcome);
    }
}

/// A file of `capacity` rows, used as a ring: row `id` lives at `(id - 1) % capacity`.
struct LogFile {
    file: std::fs::File,
    capacity: u64,
    /// Rows committed so far (the last id given).
    rows: u64,
    appended: Vec<u8>,
    body: Rows,
}

impl LogFile {
    /// Writes the whole file once and syncs it, so that no group's `fdatasync` grows it.
    fn create(path: &Path, capacity: u64) -> anyhow::Result<Self> {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let zeros = vec![0u8; 1024 * ROW_BYTES];
        let mut left = capacity * ROW_BYTES as u64;
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            file.write_all(&zeros[..n])?;
            left -= n as u64;
        }
        file.sync_all()?;
        Ok(Self {
            file,
            capacity,
            rows: 0,
            appended: Vec::with_capacity(GROUP * ROW_BYTES),
            body: Rows::new(),
        })
    }

    fn offset(&self, id: u64) -> u64 {
        (id - 1) % self.capacity * ROW_BYTES as u64
    }

    /// Writes `appended` (rows `first..`) at their places, in two pieces where the ring wraps.
    fn write_appended(&self, first: u64) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let at = self.offset(first);
        let room = (self.capacity * ROW_BYTES as u64 - at) as usize;
        let (head, tail) = self.appended.split_at(room.min(self.appended.len()));
        self.file.write_all_at(head, at)?;
        self.file.write_all_at(tail, 0)
    }
}

impl Commit for LogFile {
    fn commit(&mut self, ops: &[Op]) -> Result<Vec<i64>, String> {
        use std::os::unix::fs::FileExt;
        // Refuse before writing anything: a refused group leaves no trace.
        let oldest = self.rows.saturating_sub(self.capacity) + 1;
        if ops
            .iter()
            .any(|op| matches!(*op, Op::Rewrite(id) if id < oldest as i64 || id > self.rows as i64))
        {
            return Err("no such row".into());
        }
        let first_new = self.rows + 1;
        self.appended.clear();
        let mut ids = Vec::with_capacity(ops.len());
        let mut write = || -> std::io::Result<()> {
            for op in ops {
                ids.push(match *op {
                    Op::Insert => {
                        self.appended.extend_from_slice(self.body.next());
                        (first_new - 1) as i64 + (self.appended.len() / ROW_BYTES) as i64
                    }
                    Op::Rewrite(id) => {
                        let at = self.offset(id as u64);
                        self.file.write_all_at(self.body.next(), at)?;
                        id
                    }
                });
            }
            self.write_appended(first_new)?;
            self.file.sync_data()
        };
        write().map_err(|e| e.to_string())?;
        // Only a group that reached the disk moves the end: a failed one is written over.
        self.rows += (self.appended.len() / ROW_BYTES) as u64;
        Ok(ids)
    }
}

struct Sqlite {
    conn: Connection,
    wal: PathBuf,
    wal_limit: u64,
    body: Rows,
}

impl Sqlite {
    fn new(db: &Path, wal_limit: u64) -> anyhow::Result<Self> {
        let conn = open(db)?;
        conn.execute_batch(&format!("pragma journal_size_limit = {wal_limit}"))?;
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        Ok(Self {
            conn,
            wal: wal.into(),
            wal_limit,
            body: Rows::new(),
        })
    }
}

impl Commit for Sqlite {
    fn commit(&mut self, ops: &[Op]) -> Result<Vec<i64>, String> {
        let body = &mut self.body;
        let tx = self.conn.transaction().map_err(|e| e.to_string())?;
        let mut ids = Vec::with_capacity(ops.len());
        (|| -> rusqlite::Result<()> {
            let mut insert = tx.prepare_cached("insert into request (body) values (?1)")?;
            let mut rewrite = tx.prepare_cached("update request set body = ?1 where id = ?2")?;
            for op in ops {
                ids.push(match *op {
                    Op::Insert => {
                        insert.execute(params![body.next()])?;
                        tx.last_insert_rowid()
                    }
                    Op::Rewrite(id) => {
                        if rewrite.execute(params![body.next(), id])? != 1 {
                            return Err(rusqlite::Error::QueryReturnedNoRows);
                        }
                        id
                    }
                });
            }
            Ok(())
        })()
        .map_err(|e| e.to_string())?;
        // Dropping the transaction on an error above rolls the whole group back.
        tx.commit().map_err(|e| e.to_string())?;
        // As verifyd's writer: under steady load passive checkpoints never let the WAL start
        // over, so past the limit the writer restarts it (and `journal_size_limit` trims it).
        if std::fs::metadata(&self.wal).is_ok_and(|m| m.len() > self.wal_limit) {
            let restart = self
                .conn
                .query_row("pragma wal_checkpoint(restart)", [], |_| Ok(()));
            if let Err(e) = restart {
                eprintln!("durable floor: could not restart the WAL: {e}");
            }
        }
        Ok(ids)
    }
}

async fn submit(jobs: &mpsc::Sender<Job>, op: Op) -> Result<i64, String> {
    let (done, answer) = oneshot::channel();
    jobs.send(Job { op, done })
        .map_err(|_| "the writer stopped".to_owned())?;
    answer.await.map_err(|_| "the writer stopped".to_owned())?
}

fn answer(outcome: Result<i64, String>) -> impl IntoResponse {
    let body = match outcome {
        Ok(id) => format!(r#"{{"request_id":"{id:032x}","status":"0"}}"#),
        Err(e) => serde_json::json!({"status": "5", "error_text": e}).to_string(),
    };
    ([(CONTENT_TYPE, "application/json")], body)
}

async fn insert(State(jobs): State<mpsc::Sender<Job>>) -> impl IntoResponse {
    answer(submit(&jobs, Op::Insert).await)
}

async fn rewrite(State(jobs): State<mpsc::Sender<Job>>, body: Bytes) -> impl IntoResponse {
    // The load generator's form holds only hex digits and `=`/`&`: no decoding is needed.
    let id = std::str::from_utf8(&body)
        .ok()
        .and_then(|form| form.split('&').find_map(|p| p.strip_prefix("request_id=")))
        .and_then(|id| i64::from_str_radix(id, 16).ok());
    match id {
        Some(id) => answer(submit(&jobs, Op::Rewrite(id)).await),
        None => answer(Err("no request_id".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three rows; a refused group that rewrites row 1 and inserts before naming a row that does
    /// not exist (none of it may count); then a group that rewrites row 2 and inserts. Returns
    /// the stamps the four rows then hold, read back through `stamps`.
    fn inserts_then_rewrites(store: &mut impl Commit, stamps: impl Fn() -> Vec<u64>) {
        use Op::*;
        assert_eq!(store.commit(&[Insert, Insert, Insert]), Ok(vec![1, 2, 3]));
        let before = stamps();
        assert!(store.commit(&[Rewrite(1), Insert, Rewrite(9)]).is_err());
        assert_eq!(stamps(), before, "a refused group changed nothing");
        assert_eq!(store.commit(&[Rewrite(2), Insert]), Ok(vec![2, 4]));
        let after = stamps();
        assert_eq!(after.len(), 4);
        assert_eq!(after[0], before[0]);
        assert_eq!(after[2], before[2]);
        assert!(
            after[1] > after[2],
            "row 2 was rewritten after row 3 was written"
        );
        assert!(after[3] > after[1], "row 4 came after row 2's rewrite");
    }

    fn sqlite_stamps(db: &Path) -> Vec<u64> {
        let conn = Connection::open(db).unwrap();
        let mut rows = conn
            .prepare("select body from request order by id")
            .unwrap();
        rows.query_map([], |r| r.get::<_, Vec<u8>>(0))
            .unwrap()
            .map(|body| {
                let body = body.unwrap();
                assert_eq!(body.len(), ROW_BYTES);
                stamp(&body)
            })
            .collect()
    }

    fn log_stamps(path: &Path, rows: u64) -> Vec<u64> {
        let bytes = std::fs::read(path).unwrap();
        (0..rows as usize)
            .map(|i| stamp(&bytes[i * ROW_BYTES..]))
            .collect()
    }

    #[test]
    fn the_sqlite_durable_floor_commits_whole_groups_and_rewrites_the_row_named() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("durable.db");
        let mut store = Sqlite::new(&db, WAL_LIMIT_BYTES).unwrap();
        inserts_then_rewrites(&mut store, || sqlite_stamps(&db));
    }

    #[test]
    fn the_plain_file_durable_floor_commits_whole_groups_and_rewrites_the_row_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("durable.log");
        let mut store = LogFile::create(&path, 16).unwrap();
        inserts_then_rewrites(&mut store, || {
            let rows = store_rows(&path);
            log_stamps(&path, rows)
        });
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            16 * ROW_BYTES as u64
        );
    }

    /// Rows written so far in a ring file: those with a stamp (unwritten places are zeros).
    fn store_rows(path: &Path) -> u64 {
        let bytes = std::fs::read(path).unwrap();
        bytes
            .chunks(ROW_BYTES)
            .filter(|row| stamp(row) != 0)
            .count() as u64
    }

    #[test]
    fn the_plain_file_keeps_its_size_and_wraps_around() {
        use Op::*;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("durable.log");
        let mut store = LogFile::create(&path, 4).unwrap();
        assert_eq!(store.commit(&[Insert, Insert, Insert]), Ok(vec![1, 2, 3]));
        // Rows 4 to 6: the group wraps, and rows 5 and 6 take the places of 1 and 2.
        assert_eq!(store.commit(&[Insert, Insert, Insert]), Ok(vec![4, 5, 6]));
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            4 * ROW_BYTES as u64
        );
        let stamps = log_stamps(&path, 4);
        assert_eq!(stamps, [5, 6, 3, 4]);
        assert!(
            store.commit(&[Rewrite(2)]).is_err(),
            "row 2 was written over"
        );
        assert_eq!(store.commit(&[Rewrite(3)]), Ok(vec![3]));
        assert_eq!(log_stamps(&path, 4), [5, 6, 7, 4]);
    }

    #[test]
    fn the_sqlite_writer_restarts_its_wal_past_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("durable.db");
        let limit = 256 * 1024;
        let mut store = Sqlite::new(&db, limit).unwrap();
        for _ in 0..40 {
            store.commit(&[Op::Insert; GROUP]).unwrap();
        }
        // 20,480 rows of 320 bytes: about 7 MB of WAL if it never started over.
        let wal = std::fs::metadata(dir.path().join("durable.db-wal"))
            .unwrap()
            .len();
        assert!(wal < 4 * limit, "the WAL is {wal} bytes");
    }

    #[test]
    fn an_answer_names_the_row_its_group_committed_on_either_engine() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for (engine, file) in [(Engine::Log, "durable.log"), (Engine::Sqlite, "durable.db")] {
            let jobs = spawn_writer(engine, &dir.path().join(file)).unwrap();
            let first = rt.block_on(submit(&jobs, Op::Insert));
            let again = rt.block_on(submit(&jobs, Op::Rewrite(1)));
            let missing = rt.block_on(submit(&jobs, Op::Rewrite(7)));
            assert_eq!((first, again), (Ok(1), Ok(1)));
            assert!(missing.is_err());
        }
    }
}
