//! The durable floor: the bare floor server, except that every answer waits until one row for
//! the request is on disk. It is the least a service with verifyd's promise ("status 0 means
//! committed and fsync'd") must do per request, with nothing of verifyd in it:
//!
//! - `POST /verify/json` inserts one row of [`ROW_BYTES`] random bytes under a new rowid (an
//!   append to one b-tree, no index) and answers with that rowid as the request id;
//! - `POST /verify/check/json` rewrites the row named by `request_id` in place (the page of a row
//!   written earlier, as a check rewrites its verification).
//!
//! The shape of the writing is verifyd's SQLite engine's: one thread owns the write connection
//! and commits whatever has queued as one transaction (group commit) with `synchronous = full`
//! in WAL mode; another connection checkpoints every 25 ms, so the writer never does.
//!
//! With [`Engine::Log`] the same thread writes the group's rows to a plain file instead (appended,
//! or rewritten in place at `id × ROW_BYTES`) and calls `fdatasync` once per group: no database at
//! all, what the disk and the kernel alone cost.

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

/// Operations one transaction takes at most, as verifyd's SQLite writer.
const GROUP: usize = 256;

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
            let writer = open(db)?;
            let running = std::sync::Arc::new(());
            let alive = std::sync::Arc::downgrade(&running);
            std::thread::Builder::new()
                .name("durable-writer".into())
                .spawn(move || {
                    commit_loop(
                        Sqlite {
                            conn: writer,
                            body: vec![0u8; ROW_BYTES],
                        },
                        queue,
                    );
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
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(true)
                .read(true)
                .write(true)
                .open(db)
                .with_context(|| format!("cannot open {}", db.display()))?;
            std::thread::Builder::new()
                .name("durable-writer".into())
                .spawn(move || commit_loop(LogFile::new(file), queue))?;
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

struct LogFile {
    file: std::fs::File,
    rows: i64,
    appended: Vec<u8>,
    body: Vec<u8>,
}

impl LogFile {
    fn new(file: std::fs::File) -> Self {
        Self {
            file,
            rows: 0,
            appended: Vec::with_capacity(GROUP * ROW_BYTES),
            body: vec![0u8; ROW_BYTES],
        }
    }
}

impl Commit for LogFile {
    fn commit(&mut self, ops: &[Op]) -> Result<Vec<i64>, String> {
        use std::os::unix::fs::FileExt;
        let first_new = self.rows;
        self.appended.clear();
        let mut ids = Vec::with_capacity(ops.len());
        let mut outcome = || -> std::io::Result<()> {
            for op in ops {
                getrandom::fill(&mut self.body).expect("the system's random source");
                ids.push(match *op {
                    Op::Insert => {
                        self.appended.extend_from_slice(&self.body);
                        first_new + 1 + (self.appended.len() / ROW_BYTES - 1) as i64
                    }
                    Op::Rewrite(id) => {
                        if id < 1 || id > first_new {
                            return Err(std::io::Error::other("no such row"));
                        }
                        let at = (id as u64 - 1) * ROW_BYTES as u64;
                        self.file.write_all_at(&self.body, at)?;
                        id
                    }
                });
            }
            let at = first_new as u64 * ROW_BYTES as u64;
            self.file.write_all_at(&self.appended, at)?;
            self.file.sync_data()
        };
        outcome().map_err(|e| e.to_string())?;
        // Only a group that reached the disk moves the end: a refused one is written over.
        self.rows = first_new + (self.appended.len() / ROW_BYTES) as i64;
        Ok(ids)
    }
}

struct Sqlite {
    conn: Connection,
    body: Vec<u8>,
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
                getrandom::fill(body).expect("the system's random source");
                ids.push(match *op {
                    Op::Insert => {
                        insert.execute(params![&body[..]])?;
                        tx.last_insert_rowid()
                    }
                    Op::Rewrite(id) => {
                        if rewrite.execute(params![&body[..], id])? != 1 {
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

    /// Three rows, a group refused because it rewrites a row that does not exist (its insert
    /// must not count), then a group that inserts and rewrites.
    fn inserts_then_rewrites(store: &mut impl Commit) {
        use Op::*;
        assert_eq!(store.commit(&[Insert, Insert, Insert]), Ok(vec![1, 2, 3]));
        assert!(store.commit(&[Insert, Rewrite(9)]).is_err());
        assert_eq!(store.commit(&[Rewrite(2), Insert]), Ok(vec![2, 4]));
    }

    #[test]
    fn the_sqlite_durable_floor_commits_whole_groups_and_rewrites_only_rows_it_has() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("durable.db");
        let mut store = Sqlite {
            conn: open(&db).unwrap(),
            body: vec![0u8; ROW_BYTES],
        };
        inserts_then_rewrites(&mut store);
        let conn = Connection::open(&db).unwrap();
        let (rows, bytes): (i64, i64) = conn
            .query_row("select count(*), sum(length(body)) from request", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((rows, bytes), (4, 4 * ROW_BYTES as i64));
    }

    #[test]
    fn the_plain_file_durable_floor_commits_whole_groups_and_rewrites_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("durable.log");
        let file = std::fs::OpenOptions::new()
            .create_new(true)
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        inserts_then_rewrites(&mut LogFile::new(file));
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            4 * ROW_BYTES as u64
        );
    }

    #[test]
    fn an_answer_waits_for_its_group_and_names_its_row() {
        let dir = tempfile::tempdir().unwrap();
        let jobs = spawn_writer(Engine::Log, &dir.path().join("durable.log")).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let first = rt.block_on(submit(&jobs, Op::Insert));
        let again = rt.block_on(submit(&jobs, Op::Rewrite(1)));
        let missing = rt.block_on(submit(&jobs, Op::Rewrite(7)));
        assert_eq!((first, again), (Ok(1), Ok(1)));
        assert!(missing.is_err());
    }
}
