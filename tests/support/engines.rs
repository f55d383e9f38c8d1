//! A fresh, empty store of every engine, for the store suites. PostgreSQL joins when
//! `VERIFYD_TEST_POSTGRES_URL` is set (a schema of its own per store).

use std::sync::Arc;

use verifyd::store::postgres::PgStore;
use verifyd::store::sqlite::SqliteStore;
use verifyd::store::Store;

/// What keeps a test's database alive: a temp dir or a PostgreSQL schema.
pub type Guard = Box<dyn std::any::Any>;

/// A fresh, empty store per engine, with a name for failure messages. The guard lives as long
/// as the store is used.
pub async fn engines() -> Vec<(&'static str, Arc<dyn Store>, Guard)> {
    engines_with_lease(verifyd::store::sqlite::DEFAULT_DELIVERY_LEASE).await
}

/// A fresh, empty store per engine whose deliveries stay leased to their maker for `lease`.
pub async fn engines_with_lease(
    lease: std::time::Duration,
) -> Vec<(&'static str, Arc<dyn Store>, Guard)> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(&dir.path().join("contract.db"))
        .unwrap()
        .with_delivery_lease(lease);
    let mut engines: Vec<(&'static str, Arc<dyn Store>, Guard)> =
        vec![("sqlite", Arc::new(sqlite), Box::new(dir))];
    if let Some(schema) = super::PgSchema::create() {
        let pg = PgStore::open(&schema.url)
            .await
            .unwrap()
            .with_delivery_lease(lease);
        engines.push(("postgres", Arc::new(pg), Box::new(schema)));
    }
    engines
}
