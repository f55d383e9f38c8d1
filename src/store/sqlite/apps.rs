//! Verify v2 applications on SQLite.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, Row};

use super::{db_err, ms_to_instant, SqliteStore};
use crate::store::{AppRecord, AppStore, StoreResult};

const COLUMNS: &str =
    "application_id, api_key, public_key, status_url, signature_secret_sealed, created_at";

type AppRow = (String, String, String, Option<String>, Vec<u8>, i64);

fn from_row(r: &Row<'_>) -> rusqlite::Result<AppRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

fn record(row: AppRow) -> StoreResult<AppRecord> {
    let (application_id, api_key, public_key, status_url, signature_secret_sealed, created_at) =
        row;
    Ok(AppRecord {
        application_id,
        api_key,
        public_key,
        status_url,
        signature_secret_sealed,
        created_at: ms_to_instant(created_at)?,
    })
}

#[async_trait]
impl AppStore for SqliteStore {
    async fn insert_app(&self, app: AppRecord) -> StoreResult<()> {
        self.write(move |conn| {
            conn.execute(
                &format!("insert into application ({COLUMNS}) values (?1, ?2, ?3, ?4, ?5, ?6)"),
                params![
                    app.application_id,
                    app.api_key,
                    app.public_key,
                    app.status_url,
                    app.signature_secret_sealed,
                    app.created_at.timestamp_millis()
                ],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn get_app(&self, application_id: &str) -> StoreResult<Option<AppRecord>> {
        let application_id = application_id.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "select {COLUMNS} from application where application_id = ?1"
            ))
            .map_err(db_err)?
            .query_row(params![application_id], from_row)
            .optional()
            .map_err(db_err)?
            .map(record)
            .transpose()
        })
        .await
    }

    async fn list_apps(&self) -> StoreResult<Vec<AppRecord>> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "select {COLUMNS} from application order by created_at, application_id"
                ))
                .map_err(db_err)?;
            let rows = stmt.query_map([], from_row).map_err(db_err)?;
            rows.map(|row| record(row.map_err(db_err)?)).collect()
        })
        .await
    }
}
