//! Verify v2 applications on PostgreSQL.

use async_trait::async_trait;
use tokio_postgres::Row;

use super::{ms_to_instant, pg_err, PgStore};
use crate::store::{AppRecord, AppStore, StoreResult};

const COLUMNS: &str =
    "application_id, api_key, public_key, status_url, signature_secret_sealed, created_at";

fn record(row: &Row) -> StoreResult<AppRecord> {
    Ok(AppRecord {
        application_id: row.get(0),
        api_key: row.get(1),
        public_key: row.get(2),
        status_url: row.get(3),
        signature_secret_sealed: row.get(4),
        created_at: ms_to_instant(row.get(5))?,
    })
}

#[async_trait]
impl AppStore for PgStore {
    async fn insert_app(&self, app: AppRecord) -> StoreResult<()> {
        let client = self.client().await?;
        client
            .execute(
                &client
                    .prepare_cached(&format!(
                        "insert into application ({COLUMNS}) values ($1, $2, $3, $4, $5, $6)"
                    ))
                    .await
                    .map_err(pg_err)?,
                &[
                    &app.application_id,
                    &app.api_key,
                    &app.public_key,
                    &app.status_url,
                    &app.signature_secret_sealed,
                    &app.created_at.timestamp_millis(),
                ],
            )
            .await
            .map_err(pg_err)?;
        Ok(())
    }

    async fn get_app(&self, application_id: &str) -> StoreResult<Option<AppRecord>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &client
                    .prepare_cached(&format!(
                        "select {COLUMNS} from application where application_id = $1"
                    ))
                    .await
                    .map_err(pg_err)?,
                &[&application_id],
            )
            .await
            .map_err(pg_err)?;
        row.as_ref().map(record).transpose()
    }

    async fn list_apps(&self) -> StoreResult<Vec<AppRecord>> {
        let client = self.client().await?;
        let rows = client
            .query(
                &client
                    .prepare_cached(&format!(
                        "select {COLUMNS} from application order by created_at, application_id"
                    ))
                    .await
                    .map_err(pg_err)?,
                &[],
            )
            .await
            .map_err(pg_err)?;
        rows.iter().map(record).collect()
    }
}
