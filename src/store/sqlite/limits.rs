//! Limit counters on SQLite, counted in memory. One process owns the file (a second server on
//! it is refused), so the counts it holds are the counts, and a call's counting costs no write
//! of its own. What changed is written to the file by the writer thread, queued by the first
//! call [`WRITE_EVERY`] or more after the previous write, by `forget_expired` (every minute)
//! and when the store is dropped; it is read back when the file is opened. A restart keeps the
//! counts, a crash loses those not written yet.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{params, Connection};

use super::{db_err, SqliteStore};
use crate::domain::limits::{Bucket, Refused};
use crate::domain::Instant;
use crate::store::limits::{expiry, longest, room, windows, LimitStore};
use crate::store::StoreResult;

/// How often a call queues the counted hits for the file, at most.
pub(super) const WRITE_EVERY: Duration = Duration::from_secs(1);

/// One bucket's fixed windows that can still weigh: start (ms) and hits, and when each stops
/// being of use.
#[derive(Clone, Debug, Default)]
struct Windows(Vec<Window>);

#[derive(Clone, Copy, Debug)]
struct Window {
    start: i64,
    hits: i64,
    expires_at: i64,
}

impl Windows {
    fn hits(&self, start: i64) -> i64 {
        self.0
            .iter()
            .find(|w| w.start == start)
            .map_or(0, |w| w.hits)
    }
}

#[derive(Debug)]
struct State {
    buckets: HashMap<String, Windows>,
    /// Buckets counted since they were last written.
    dirty: HashSet<String>,
    last_write: std::time::Instant,
}

/// The counters of one SQLite file's process.
#[derive(Debug)]
pub(super) struct Counters(Mutex<State>);

impl Counters {
    /// The counters the file holds.
    pub(super) fn load(conn: &Connection) -> rusqlite::Result<Self> {
        let mut buckets: HashMap<String, Windows> = HashMap::new();
        let mut stmt =
            conn.prepare("select bucket, window_start, hits, expires_at from limit_counter")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                Window {
                    start: r.get(1)?,
                    hits: r.get(2)?,
                    expires_at: r.get(3)?,
                },
            ))
        })?;
        for row in rows {
            let (bucket, window) = row?;
            buckets.entry(bucket).or_default().0.push(window);
        }
        Ok(Self(Mutex::new(State {
            buckets,
            dirty: HashSet::new(),
            last_write: std::time::Instant::now(),
        })))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a hit in every bucket if each has room; whether it is time to write them down.
    fn take(&self, buckets: &[Bucket], now: Instant) -> (Result<(), Refused>, bool) {
        let mut state = self.state();
        let verdicts = buckets.iter().map(|bucket| {
            let (start, previous, elapsed) = windows(bucket, now);
            let kept = state.buckets.get(&bucket.key);
            let hits = |at| kept.map_or(0, |w: &Windows| w.hits(at));
            room(bucket, hits(previous), hits(start), elapsed)
        });
        if let Err(refused) = longest(verdicts.collect::<Vec<_>>()) {
            return (Err(refused), false);
        }
        for bucket in buckets {
            let (start, previous, _) = windows(bucket, now);
            let kept = state.buckets.entry(bucket.key.clone()).or_default();
            kept.0.retain(|w| w.start >= previous);
            match kept.0.iter_mut().find(|w| w.start == start) {
                Some(window) => window.hits += 1,
                None => kept.0.push(Window {
                    start,
                    hits: 1,
                    expires_at: expiry(bucket, start),
                }),
            }
            state.dirty.insert(bucket.key.clone());
        }
        (Ok(()), state.last_write.elapsed() >= WRITE_EVERY)
    }

    /// Forgets the buckets whose key ends with `suffix` (`:` and a number, for an erasure).
    pub(super) fn forget_named(&self, suffix: &str) {
        let mut state = self.state();
        state.buckets.retain(|key, _| !key.ends_with(suffix));
        state.dirty.retain(|key| !key.ends_with(suffix));
    }

    /// Forgets the windows no call at `now` or later can use; how many.
    fn forget(&self, now_ms: i64) -> (u64, Vec<Dirty>) {
        let mut state = self.state();
        let mut forgotten = 0;
        state.buckets.retain(|_, kept| {
            let before = kept.0.len();
            kept.0.retain(|w| w.expires_at > now_ms);
            forgotten += (before - kept.0.len()) as u64;
            !kept.0.is_empty()
        });
        (forgotten, state.drain())
    }
}

/// A bucket's windows as they are to be written (none: the bucket is gone).
type Dirty = (String, Vec<Window>);

impl State {
    fn drain(&mut self) -> Vec<Dirty> {
        self.last_write = std::time::Instant::now();
        let dirty = std::mem::take(&mut self.dirty);
        dirty
            .into_iter()
            .map(|key| {
                let kept = self
                    .buckets
                    .get(&key)
                    .map(|w| w.0.clone())
                    .unwrap_or_default();
                (key, kept)
            })
            .collect()
    }
}

/// Writes buckets' windows as memory holds them: each bucket's rows replaced by its windows.
fn write(conn: &Connection, dirty: &[Dirty]) -> StoreResult<()> {
    for (bucket, kept) in dirty {
        conn.prepare_cached("delete from limit_counter where bucket = ?1")
            .map_err(db_err)?
            .execute(params![bucket])
            .map_err(db_err)?;
        for w in kept {
            conn.prepare_cached(
                "insert into limit_counter (bucket, window_start, hits, expires_at)
                 values (?1, ?2, ?3, ?4)",
            )
            .map_err(db_err)?
            .execute(params![bucket, w.start, w.hits, w.expires_at])
            .map_err(db_err)?;
        }
    }
    Ok(())
}

/// How long a store being dropped waits for its last counts to be written.
const LAST_WRITE_WAIT: Duration = Duration::from_secs(2);

impl SqliteStore {
    /// Queues the counters counted since the last write, without waiting: the call does not
    /// wait for the file. A full queue leaves them to the next write. What says when they are
    /// committed, if they were queued.
    fn write_counters_behind(&self) -> Option<tokio::sync::oneshot::Receiver<StoreResult<()>>> {
        let dirty = self.counters.state().drain();
        if dirty.is_empty() {
            return None;
        }
        let keys: Vec<String> = dirty.iter().map(|(key, _)| key.clone()).collect();
        let committed = self.write_behind(move |conn| write(conn, &dirty));
        if committed.is_none() {
            self.counters.state().dirty.extend(keys);
        }
        committed
    }

    /// Writes the last counts when the store is dropped (the server stops), waiting a little
    /// for their commit, so that a stop and a start keep every count. It may run on an async
    /// worker, which must not block on a channel: it looks every millisecond.
    pub(super) fn write_last_counts(&self) {
        let Some(mut committed) = self.write_counters_behind() else {
            return;
        };
        let deadline = std::time::Instant::now() + LAST_WRITE_WAIT;
        while std::time::Instant::now() < deadline {
            match committed.try_recv() {
                Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                _ => return,
            }
        }
    }
}

#[async_trait]
impl LimitStore for SqliteStore {
    async fn take(&self, buckets: Vec<Bucket>, now: Instant) -> StoreResult<Result<(), Refused>> {
        if buckets.is_empty() {
            return Ok(Ok(()));
        }
        let (verdict, due) = self.counters.take(&buckets, now);
        if due {
            self.write_counters_behind();
        }
        Ok(verdict)
    }

    async fn forget_expired(&self, now: Instant) -> StoreResult<u64> {
        let now_ms = now.timestamp_millis();
        let (forgotten, dirty) = self.counters.forget(now_ms);
        self.write(move |conn| {
            write(conn, &dirty)?;
            conn.execute(
                "delete from limit_counter where expires_at <= ?1",
                params![now_ms],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await?;
        Ok(forgotten)
    }
}
