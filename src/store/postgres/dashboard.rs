//! The dashboard's users, audit log and look-ups, on PostgreSQL.

use async_trait::async_trait;
use tokio_postgres::types::ToSql;

use super::{decode, ms_to_instant, pg_err, PgStore};
use crate::domain::{Instant, RequestId, Verification};
use crate::store::admin::{AdminStore, AdminUser, AuditEntry};
use crate::store::report::{Found, ReportStore, SearchFilter, Started, Tried};
use crate::store::{AttemptState, StoreError, StoreResult};

fn admin_user(r: &tokio_postgres::Row) -> StoreResult<AdminUser> {
    Ok(AdminUser {
        name: r.get(0),
        password_hash: r.get(1),
        created_at: ms_to_instant(r.get(2))?,
    })
}

#[async_trait]
impl AdminStore for PgStore {
    async fn put_admin(&self, user: AdminUser, replace: bool) -> StoreResult<bool> {
        let client = self.client().await?;
        let sql = if replace {
            "insert into admin_user (name, password_hash, created_at) values ($1, $2, $3) \
             on conflict (name) do update set password_hash = excluded.password_hash"
        } else {
            "insert into admin_user (name, password_hash, created_at) values ($1, $2, $3) \
             on conflict (name) do nothing"
        };
        let n = client
            .execute(
                &client.prepare_cached(sql).await.map_err(pg_err)?,
                &[
                    &user.name,
                    &user.password_hash,
                    &user.created_at.timestamp_millis(),
                ],
            )
            .await
            .map_err(pg_err)?;
        Ok(n > 0)
    }

    async fn get_admin(&self, name: &str) -> StoreResult<Option<AdminUser>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &client
                    .prepare_cached(
                        "select name, password_hash, created_at from admin_user where name = $1",
                    )
                    .await
                    .map_err(pg_err)?,
                &[&name],
            )
            .await
            .map_err(pg_err)?;
        row.as_ref().map(admin_user).transpose()
    }

    async fn list_admins(&self) -> StoreResult<Vec<AdminUser>> {
        let client = self.client().await?;
        let rows = client
            .query(
                &client
                    .prepare_cached(
                        "select name, password_hash, created_at from admin_user order by name",
                    )
                    .await
                    .map_err(pg_err)?,
                &[],
            )
            .await
            .map_err(pg_err)?;
        rows.iter().map(admin_user).collect()
    }

    async fn remove_admin(&self, name: &str) -> StoreResult<bool> {
        let client = self.client().await?;
        let n = client
            .execute(
                &client
                    .prepare_cached("delete from admin_user where name = $1")
                    .await
                    .map_err(pg_err)?,
                &[&name],
            )
            .await
            .map_err(pg_err)?;
        Ok(n > 0)
    }

    async fn record_audit(&self, entry: AuditEntry) -> StoreResult<()> {
        let client = self.client().await?;
        client
            .execute(
                &client
                    .prepare_cached(
                        "insert into audit_log (at, admin, action, target, detail) \
                         values ($1, $2, $3, $4, $5)",
                    )
                    .await
                    .map_err(pg_err)?,
                &[
                    &entry.at.timestamp_millis(),
                    &entry.admin,
                    &entry.action,
                    &entry.target,
                    &entry.detail,
                ],
            )
            .await
            .map_err(pg_err)?;
        Ok(())
    }

    async fn audit_log(&self, limit: usize) -> StoreResult<Vec<AuditEntry>> {
        let client = self.client().await?;
        let rows = client
            .query(
                &client
                    .prepare_cached(
                        "select at, admin, action, target, detail from audit_log \
                         order by seq desc limit $1",
                    )
                    .await
                    .map_err(pg_err)?,
                &[&(limit as i64)],
            )
            .await
            .map_err(pg_err)?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    at: ms_to_instant(r.get(0))?,
                    admin: r.get(1),
                    action: r.get(2),
                    target: r.get(3),
                    detail: r.get(4),
                })
            })
            .collect()
    }
}

#[async_trait]
impl ReportStore for PgStore {
    async fn search(&self, filter: &SearchFilter, limit: usize) -> StoreResult<Vec<Found>> {
        let mut conditions: Vec<(&str, Box<dyn ToSql + Sync + Send>)> = Vec::new();
        if let Some(number) = &filter.number {
            conditions.push(("number =", Box::new(number.clone())));
        }
        if let Some(id) = &filter.request_id {
            conditions.push(("request_id =", Box::new(id.as_str().to_owned())));
        }
        if let Some(state) = filter.state {
            conditions.push(("state =", Box::new(state as i32)));
        }
        if let Some(from) = filter.from {
            conditions.push(("submitted_at >=", Box::new(from.timestamp_millis())));
        }
        if let Some(until) = filter.until {
            conditions.push(("submitted_at <", Box::new(until.timestamp_millis())));
        }
        let parts: Vec<String> = conditions
            .iter()
            .enumerate()
            .map(|(i, (sql, _))| format!("{sql} ${}", i + 1))
            .collect();
        let limit = limit as i64;
        let mut values: Vec<&(dyn ToSql + Sync)> = conditions
            .iter()
            .map(|(_, v)| v.as_ref() as &(dyn ToSql + Sync))
            .collect();
        values.push(&limit);
        let clause = if parts.is_empty() {
            String::new()
        } else {
            format!("where {}", parts.join(" and "))
        };
        let sql = format!(
            "select request_id, account, number, state, submitted_at from verification {clause} \
             order by submitted_at desc limit ${}",
            values.len()
        );
        let client = self.client().await?;
        let rows = client
            .query(&client.prepare_cached(&sql).await.map_err(pg_err)?, &values)
            .await
            .map_err(pg_err)?;
        rows.iter()
            .map(|r| {
                Ok(Found {
                    request_id: r.get(0),
                    account: r.get(1),
                    number: r.get(2),
                    state: i64::from(r.get::<_, i32>(3)),
                    submitted_at: ms_to_instant(r.get(4))?,
                })
            })
            .collect()
    }

    async fn verification_any(&self, id: &RequestId) -> StoreResult<Option<Verification>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &client
                    .prepare_cached(
                        "select body from verification where request_id = $1 and state >= 0",
                    )
                    .await
                    .map_err(pg_err)?,
                &[&id.as_str()],
            )
            .await
            .map_err(pg_err)?;
        row.map(|r| decode(r.get(0))).transpose()
    }

    async fn started_since(&self, since: Instant, limit: usize) -> StoreResult<Vec<Started>> {
        let client = self.client().await?;
        let rows = client
            .query(
                &client
                    .prepare_cached(
                        "select submitted_at, number, state from verification \
                         where submitted_at >= $1 order by submitted_at desc limit $2",
                    )
                    .await
                    .map_err(pg_err)?,
                &[&since.timestamp_millis(), &(limit as i64)],
            )
            .await
            .map_err(pg_err)?;
        rows.iter()
            .map(|r| {
                Ok(Started {
                    at: ms_to_instant(r.get(0))?,
                    number: r.get(1),
                    state: i64::from(r.get::<_, i32>(2)),
                })
            })
            .collect()
    }

    async fn tried_since(&self, since: Instant, limit: usize) -> StoreResult<Vec<Tried>> {
        let client = self.client().await?;
        let rows = client
            .query(
                &client
                    .prepare_cached(
                        "select channel, route, state, created_at, updated_at \
                         from delivery_attempt where created_at >= $1 \
                         order by created_at desc limit $2",
                    )
                    .await
                    .map_err(pg_err)?,
                &[&since.timestamp_millis(), &(limit as i64)],
            )
            .await
            .map_err(pg_err)?;
        rows.iter()
            .map(|r| {
                let state: String = r.get(2);
                Ok(Tried {
                    channel: r.get(0),
                    route: r.get(1),
                    state: AttemptState::parse(&state)
                        .ok_or_else(|| StoreError::Corrupt(format!("attempt state {state:?}")))?,
                    created_at: ms_to_instant(r.get(3))?,
                    updated_at: ms_to_instant(r.get(4))?,
                })
            })
            .collect()
    }
}
