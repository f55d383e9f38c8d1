//! API keys: who is calling. Keys are read from the store into an in-memory snapshot that is
//! refreshed every few seconds and on a miss, so a request never waits for the database to
//! authenticate, and a key changed by `verifyd keys` (or another node) takes effect within
//! [`REFRESH_EVERY`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::crypto;
use crate::store::{ApiKeyRecord, KeyState, KeyStore, StoreError};

pub const REFRESH_EVERY: Duration = Duration::from_secs(2);
/// Misses reload the table at most this often, so unknown keys cannot hammer the database; a miss
/// inside the gap waits for it to pass (which also slows down guessing).
const MISS_RELOAD_MIN_GAP_MS: i64 = 100;

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub api_key: String,
    pub allow_custom_pin: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("unknown key or wrong secret")]
    BadCredentials,
    #[error("the key is disabled")]
    Disabled,
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct KeyCache {
    store: Arc<dyn KeyStore>,
    keys: ArcSwap<HashMap<String, ApiKeyRecord>>,
    last_reload_ms: AtomicI64,
    /// Serialises reloads; the hit path never touches it.
    reloading: tokio::sync::Mutex<()>,
}

fn monotonic_ms() -> i64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as i64
}

impl KeyCache {
    pub async fn load(store: Arc<dyn KeyStore>) -> Result<Arc<Self>, StoreError> {
        let cache = Arc::new(Self {
            store,
            keys: ArcSwap::from_pointee(HashMap::new()),
            last_reload_ms: AtomicI64::new(i64::MIN / 2),
            reloading: tokio::sync::Mutex::new(()),
        });
        cache.reload().await?;
        Ok(cache)
    }

    pub async fn reload(&self) -> Result<(), StoreError> {
        let _one_at_a_time = self.reloading.lock().await;
        self.reload_locked().await
    }

    /// `last_reload_ms` records when the read *started*, once the snapshot is in place: the
    /// snapshot holds every key that existed at that time.
    async fn reload_locked(&self) -> Result<(), StoreError> {
        let started = monotonic_ms();
        let keys = self.store.list_keys().await?;
        let map = keys.into_iter().map(|k| (k.api_key.clone(), k)).collect();
        self.keys.store(Arc::new(map));
        self.last_reload_ms.store(started, Ordering::Relaxed);
        Ok(())
    }

    /// Keeps the snapshot fresh until the task is dropped.
    pub async fn refresh_forever(self: Arc<Self>) {
        let mut tick = tokio::time::interval(REFRESH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self.reload().await {
                tracing::warn!(error = %e, "could not refresh API keys; keeping the previous ones");
            }
        }
    }

    /// Reloads the keys once for a key not in the snapshot, e.g. one `verifyd keys create` just
    /// made, and looks it up again.
    async fn reload_for_miss(&self, api_key: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let started = monotonic_ms();
        let _one_at_a_time = self.reloading.lock().await;
        if self.last_reload_ms.load(Ordering::Relaxed) < started {
            let since = monotonic_ms() - self.last_reload_ms.load(Ordering::Relaxed);
            if since < MISS_RELOAD_MIN_GAP_MS {
                let wait = (MISS_RELOAD_MIN_GAP_MS - since) as u64;
                tokio::time::sleep(Duration::from_millis(wait)).await;
            }
            self.reload_locked().await?;
        }
        Ok(self.keys.load().get(api_key).cloned())
    }

    pub async fn authenticate(&self, api_key: &str, secret: &str) -> Result<Account, AuthError> {
        let found = self.keys.load().get(api_key).cloned();
        let record = match found {
            Some(r) => r,
            None => self
                .reload_for_miss(api_key)
                .await?
                .ok_or(AuthError::BadCredentials)?,
        };
        if !crypto::secret_matches(secret, &record.secret_hash) {
            return Err(AuthError::BadCredentials);
        }
        match record.state {
            KeyState::Active => Ok(Account {
                api_key: record.api_key,
                allow_custom_pin: record.allow_custom_pin,
            }),
            KeyState::Disabled => Err(AuthError::Disabled),
            KeyState::Revoked => Err(AuthError::BadCredentials),
        }
    }
}

/// A key just created; the only moment its secret exists in clear.
#[derive(Clone, Debug, serde::Serialize)]
pub struct NewKey {
    pub api_key: String,
    pub api_secret: String,
}

/// Creates an active key. `api_key` values are random, so a clash is retried a few times.
pub async fn create_key(
    store: &dyn KeyStore,
    name: &str,
    allow_custom_pin: bool,
    now: crate::domain::Instant,
) -> Result<NewKey, StoreError> {
    let mut last_error = None;
    for _ in 0..5 {
        let api_key = crypto::new_api_key();
        let api_secret = crypto::new_api_secret();
        let record = ApiKeyRecord {
            api_key: api_key.clone(),
            name: name.to_owned(),
            secret_hash: crypto::hash_secret(&api_secret),
            state: KeyState::Active,
            allow_custom_pin,
            created_at: now,
        };
        match store.insert_key(record).await {
            Ok(()) => {
                return Ok(NewKey {
                    api_key,
                    api_secret,
                })
            }
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.expect("at least one attempt"))
}
