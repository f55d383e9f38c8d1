//! API keys: who is calling. Keys are read from the store into an in-memory snapshot that is
//! refreshed every [`REFRESH_EVERY`], so a known key never waits for the database, and a key
//! disabled or revoked by `verifyd keys` (or on another node) stops working within that time. A key
//! missing from the snapshot (just created) is looked up by itself, without any lock.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

pub mod apps;
pub mod password;

use crate::crypto;
use crate::store::{ApiKeyRecord, KeyState, KeyStore, LimitsSet, StoreError};

pub const REFRESH_EVERY: Duration = Duration::from_secs(2);

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub api_key: String,
    pub allow_custom_pin: bool,
    /// The Verify v2 application the caller acts as (a JWT names one), which is told how its
    /// verifications end.
    pub application: Option<String>,
    /// The key's own limits, in place of the file's.
    pub limits: crate::domain::limits::KeyLimits,
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
}

impl KeyCache {
    pub async fn load(store: Arc<dyn KeyStore>) -> Result<Arc<Self>, StoreError> {
        let cache = Arc::new(Self {
            store,
            keys: ArcSwap::from_pointee(HashMap::new()),
        });
        cache.reload().await?;
        Ok(cache)
    }

    pub async fn reload(&self) -> Result<(), StoreError> {
        let keys = self.store.list_keys().await?;
        let map = keys.into_iter().map(|k| (k.api_key.clone(), k)).collect();
        self.keys.store(Arc::new(map));
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

    /// Looks up one key missing from the snapshot (e.g. one `verifyd keys create` just made) and
    /// adds it, so the next request finds it in memory.
    async fn lookup_missing(&self, api_key: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let Some(record) = self.store.get_key(api_key).await? else {
            return Ok(None);
        };
        self.keys.rcu(|map| {
            let mut map = HashMap::clone(map);
            map.insert(record.api_key.clone(), record.clone());
            map
        });
        Ok(Some(record))
    }

    pub async fn authenticate(&self, api_key: &str, secret: &str) -> Result<Account, AuthError> {
        let record = self.record(api_key).await?;
        if !crypto::secret_matches(secret, &record.secret_hash) {
            return Err(AuthError::BadCredentials);
        }
        Self::account_of(record)
    }

    /// The account of a key the caller has proved it may use another way (a JWT signed by one
    /// of the key's applications).
    pub async fn account(&self, api_key: &str) -> Result<Account, AuthError> {
        Self::account_of(self.record(api_key).await?)
    }

    async fn record(&self, api_key: &str) -> Result<ApiKeyRecord, AuthError> {
        let found = self.keys.load().get(api_key).cloned();
        match found {
            Some(r) => Ok(r),
            None => self
                .lookup_missing(api_key)
                .await?
                .ok_or(AuthError::BadCredentials),
        }
    }

    fn account_of(record: ApiKeyRecord) -> Result<Account, AuthError> {
        match record.state {
            KeyState::Active => Ok(Account {
                api_key: record.api_key,
                allow_custom_pin: record.allow_custom_pin,
                application: None,
                limits: record.limits,
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
        match insert_key(store, &crypto::new_api_key(), name, allow_custom_pin, now).await {
            Ok(key) => return Ok(key),
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.expect("at least one attempt"))
}

/// Creates the active key `api_key` (from [`crypto::new_api_key`]), once: for a caller that
/// names the key before it exists (the dashboard's audit log).
pub async fn insert_key(
    store: &dyn KeyStore,
    api_key: &str,
    name: &str,
    allow_custom_pin: bool,
    now: crate::domain::Instant,
) -> Result<NewKey, StoreError> {
    let api_secret = crypto::new_api_secret();
    let record = ApiKeyRecord {
        api_key: api_key.to_owned(),
        name: name.to_owned(),
        secret_hash: crypto::hash_secret(&api_secret),
        state: KeyState::Active,
        allow_custom_pin,
        created_at: now,
        limits: Default::default(),
    };
    store.insert_key(record).await?;
    Ok(NewKey {
        api_key: api_key.to_owned(),
        api_secret,
    })
}

/// What [`change_key_limits`] did.
#[derive(Debug)]
pub enum LimitsChange {
    Set(crate::domain::limits::KeyLimits),
    NoKey,
    /// A value was refused: the limit's name and why.
    Invalid(String, String),
    /// Other changes kept coming first.
    Busy,
}

/// Sets each `(name, value)` of the key's own limits ([`KeyLimits::set`]), on the limits as
/// they are when written: a change made at the same time elsewhere is read again and kept.
///
/// [`KeyLimits::set`]: crate::domain::limits::KeyLimits::set
pub async fn change_key_limits(
    store: &dyn KeyStore,
    api_key: &str,
    changes: &[(&str, &str)],
) -> Result<LimitsChange, StoreError> {
    let Some(record) = store.get_key(api_key).await? else {
        return Ok(LimitsChange::NoKey);
    };
    let apply = |was: &crate::domain::limits::KeyLimits| {
        let mut own = was.clone();
        for (name, value) in changes {
            own.set(name, value).map_err(|e| ((*name).to_owned(), e))?;
        }
        Ok(own)
    };
    let mut was = record.limits;
    for _ in 0..10 {
        let own = match apply(&was) {
            Ok(own) => own,
            Err((name, why)) => return Ok(LimitsChange::Invalid(name, why)),
        };
        if changes.is_empty() {
            return Ok(LimitsChange::Set(own));
        }
        match store.set_key_limits(api_key, &was, own.clone()).await? {
            LimitsSet::Set => return Ok(LimitsChange::Set(own)),
            LimitsSet::NoKey => return Ok(LimitsChange::NoKey),
            LimitsSet::Changed(now) => was = now,
        }
    }
    Ok(LimitsChange::Busy)
}

/// Gives a key a new secret; the old one stops working (on every node within
/// [`REFRESH_EVERY`]). `None` when there is no such key, or it is revoked.
pub async fn rotate_key(store: &dyn KeyStore, api_key: &str) -> Result<Option<NewKey>, StoreError> {
    let api_secret = crypto::new_api_secret();
    let rotated = store
        .set_key_secret(api_key, crypto::hash_secret(&api_secret))
        .await?;
    Ok(rotated.then(|| NewKey {
        api_key: api_key.to_owned(),
        api_secret,
    }))
}
