//! The verifications the writer thread wrote last, kept decoded, for the writer and for searches.
//!
//! A check (or a cancel, or the scheduler's next step) mostly concerns a verification created a
//! short while before. Reading its row back and decoding it was about a third of the writer's
//! time for each check (`docs/benchmarks.md`), and the writer is the one thread every write waits
//! for. A search mostly asks about a verification started or checked a short while before too;
//! reading its row was a quarter of a search's CPU, most of it starting and ending SQLite's read
//! transaction. The writer is the only process that writes verifications (the server's lock file
//! keeps a second one away), so what it last wrote is what the file holds.
//!
//! What makes it safe with group commit: an operation that changes a verification first takes it
//! out of the cache, and only once its group has committed is the new state put back. So an
//! entry never shows a change that could still be rolled back. A later operation of the same
//! group that finds no entry reads the row, where its own transaction sees the change; a search
//! that finds no entry reads the row on its own connection, which sees only what was committed.
//! Searches only look: what they read from the file never goes in, because by the time it would,
//! the writer may have committed a newer state.
//!
//! Another connection can still commit to the file (an operator's `sqlite3`, a test): SQLite's
//! `data_version` tells, and the writer then forgets everything ([`SharedCache::saw_version`]) at
//! the start of its next group; until then a search may show what the writer last wrote.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::domain::{RequestId, Verification};

/// Verifications kept: about 45 MiB when full (`verifyd-bench pending`, docs/benchmarks.md).
/// Checks and searches of verifications written this many writes ago or less skip reading and
/// decoding.
pub(super) const CAPACITY: usize = 65_536;

/// The cache, shared by the writer thread and the threads that search. Each call holds the lock
/// for a map operation, never across a statement or a commit.
pub(super) struct SharedCache(Mutex<VerificationCache>);

impl SharedCache {
    pub(super) fn new(capacity: usize) -> Self {
        Self(Mutex::new(VerificationCache::new(capacity)))
    }

    fn lock(&self) -> MutexGuard<'_, VerificationCache> {
        // Every change is a map operation that leaves the cache whole; a panic elsewhere while
        // it was held does not make it wrong.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// See [`VerificationCache::saw_version`].
    pub(super) fn saw_version(&self, version: i64) {
        self.lock().saw_version(version);
    }

    /// See [`VerificationCache::take_for`].
    pub(super) fn take_for(&self, account: &str, id: &RequestId) -> Option<Verification> {
        // Copied, if a search still holds it, after letting go of the lock.
        let taken = self.lock().take_for(account, id);
        taken.map(unshare)
    }

    /// See [`VerificationCache::take`].
    pub(super) fn take(&self, id: &str) -> Option<Verification> {
        let taken = self.lock().take(id);
        taken.map(unshare)
    }

    /// See [`VerificationCache::put`].
    pub(super) fn put(&self, v: Arc<Verification>) {
        self.lock().put(v);
    }

    /// The account's verification as last committed, if it is here; for searches, which leave
    /// it in place.
    pub(super) fn get_for(&self, account: &str, id: &RequestId) -> Option<Arc<Verification>> {
        self.lock().get_for(account, id)
    }
}

/// A shared verification, owned: copied only if someone else (the cache, a search) still holds
/// it.
pub(super) fn unshare(v: Arc<Verification>) -> Verification {
    Arc::try_unwrap(v).unwrap_or_else(|shared| (*shared).clone())
}

pub(super) struct VerificationCache {
    capacity: usize,
    /// Each entry, by request id (its 128 bits: no string to allocate), with the number of the
    /// put that stored it.
    /// Behind a pointer: a map's buckets are twice as many as its entries, and an inline
    /// verification would make each bucket 384 bytes. Shared, so that a search copies it after
    /// letting go of the lock.
    entries: HashMap<u128, (u64, Arc<Verification>)>,
    /// Puts, oldest first. An entry replaced or taken since leaves its old put behind here;
    /// those are skipped when they come up and swept when they pile up.
    order: VecDeque<(u64, u128)>,
    puts: u64,
    /// The writer connection's `pragma data_version` when the cache was last known to be right.
    data_version: Option<i64>,
}

impl VerificationCache {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: HashMap::with_capacity(capacity.min(1 << 20)),
            order: VecDeque::new(),
            puts: 0,
            data_version: None,
        }
    }

    /// Told the writer connection's `data_version` at the start of each group: it moves only
    /// when another connection has committed, and then nothing here can be trusted.
    pub(super) fn saw_version(&mut self, version: i64) {
        if self.data_version != Some(version) {
            if self.data_version.is_some() {
                self.entries.clear();
                self.order.clear();
            }
            self.data_version = Some(version);
        }
    }

    /// Takes the account's verification out, for an operation that is about to change it. A
    /// verification of another account stays where it is, and the caller gets nothing.
    pub(super) fn take_for(&mut self, account: &str, id: &RequestId) -> Option<Arc<Verification>> {
        let key = key(id.as_str())?;
        match self.entries.get(&key) {
            Some((_, v)) if v.account == account => self.entries.remove(&key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Takes a verification out whoever's it is (the scheduler's steps).
    pub(super) fn take(&mut self, id: &str) -> Option<Arc<Verification>> {
        self.entries.remove(&key(id)?).map(|(_, v)| v)
    }

    /// The account's verification, left in place.
    pub(super) fn get_for(&self, account: &str, id: &RequestId) -> Option<Arc<Verification>> {
        match self.entries.get(&key(id.as_str())?) {
            Some((_, v)) if v.account == account => Some(v.clone()),
            _ => None,
        }
    }

    /// Keeps `v` as committed, pushing out the oldest entries beyond the capacity.
    pub(super) fn put(&mut self, v: Arc<Verification>) {
        let Some(id) = key(v.id.as_str()) else {
            return;
        };
        self.puts += 1;
        self.order.push_back((self.puts, id));
        self.entries.insert(id, (self.puts, v));
        while self.entries.len() > self.capacity {
            let Some((put, id)) = self.order.pop_front() else {
                break;
            };
            if self.entries.get(&id).is_some_and(|(p, _)| *p == put) {
                self.entries.remove(&id);
            }
        }
        if self.order.len() > 2 * self.capacity + 64 {
            let entries = &self.entries;
            self.order
                .retain(|(put, id)| entries.get(id).is_some_and(|(p, _)| p == put));
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// A request id's 32 hex digits as one number. Ids that are not that shape are not cached:
/// `from_str_radix` alone would also take a sign or capitals, and give two ids one key.
fn key(id: &str) -> Option<u128> {
    let canonical = id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    canonical.then(|| u128::from_str_radix(id, 16).ok())?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::v1::workflow::Workflow;
    use crate::domain::locale::Locale;
    use crate::domain::testing::SequenceMinter;

    fn verification(n: u8) -> Verification {
        let mut new =
            Workflow::DEFAULT.request(RequestId::from_bytes([n; 16]), "acct", "14155550123");
        new.locale = Locale::from_tag("en-us").unwrap();
        let now = chrono::DateTime::from_timestamp_millis(1_700_000_000_000).unwrap();
        Verification::start(new, now, &mut SequenceMinter::new()).0
    }

    #[test]
    fn only_the_exact_shape_of_a_request_id_has_a_key() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(key(id), Some(0x0123456789abcdef0123456789abcdef));
        assert_eq!(key(&id.to_uppercase()), None);
        assert_eq!(key(&format!("+{}", &id[1..])), None);
        assert_eq!(key(&id[1..]), None);
    }

    #[test]
    fn a_verification_is_taken_only_by_its_own_account() {
        let cache = SharedCache::new(4);
        let v = verification(1);
        let id = v.id.clone();
        let account = v.account.clone();
        cache.put(Arc::new(v));
        assert!(cache.take_for("someone-else", &id).is_none());
        assert_eq!(
            cache.take_for(&account, &id).map(|v| v.id.clone()),
            Some(id.clone())
        );
        assert!(
            cache.take_for(&account, &id).is_none(),
            "taking leaves nothing behind"
        );
    }

    #[test]
    fn the_oldest_entries_go_first_once_the_cache_is_full() {
        let cache = SharedCache::new(2);
        let (a, b, c) = (verification(1), verification(2), verification(3));
        let (ida, idb, idc) = (a.id.clone(), b.id.clone(), c.id.clone());
        let account = a.account.clone();
        cache.put(Arc::new(a));
        cache.put(Arc::new(b));
        cache.put(Arc::new(c));
        assert_eq!(cache.lock().len(), 2);
        assert!(cache.take_for(&account, &ida).is_none());
        assert!(cache.take_for(&account, &idb).is_some());
        assert!(cache.take_for(&account, &idc).is_some());
    }

    #[test]
    fn a_commit_by_another_connection_empties_the_cache() {
        let cache = SharedCache::new(4);
        cache.saw_version(1);
        let v = verification(1);
        let (id, account) = (v.id.clone(), v.account.clone());
        cache.put(Arc::new(v.clone()));
        cache.saw_version(1);
        assert!(cache.take_for(&account, &id).is_some(), "nothing changed");
        cache.put(Arc::new(v));
        cache.saw_version(2);
        assert!(cache.take_for(&account, &id).is_none());
    }

    #[test]
    fn putting_one_verification_again_and_again_keeps_the_bookkeeping_bounded() {
        let cache = SharedCache::new(2);
        let v = verification(1);
        for _ in 0..10_000 {
            cache.put(Arc::new(v.clone()));
        }
        assert_eq!(cache.lock().len(), 1);
        assert!(cache.lock().order.len() <= 2 * 2 + 64 + 1);
    }

    #[test]
    fn a_verification_put_back_later_is_not_pushed_out_by_its_old_place() {
        let cache = SharedCache::new(2);
        let (a, b, c) = (verification(1), verification(2), verification(3));
        let (ida, idb, idc) = (a.id.clone(), b.id.clone(), c.id.clone());
        let account = a.account.clone();
        cache.put(Arc::new(a));
        let a = cache.take(ida.as_str()).unwrap();
        cache.put(Arc::new(b));
        cache.put(Arc::new(a));
        cache.put(Arc::new(c));
        assert!(
            cache.take_for(&account, &idb).is_none(),
            "b is the oldest now"
        );
        assert!(cache.take_for(&account, &ida).is_some());
        assert!(cache.take_for(&account, &idc).is_some());
    }
}
