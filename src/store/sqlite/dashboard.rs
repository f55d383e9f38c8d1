//! The dashboard's users, audit log and look-ups, on SQLite.

use async_trait::async_trait;
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, OptionalExtension};

use super::{db_err, load, ms_to_instant, SqliteStore};
use crate::domain::{Instant, RequestId, Verification};
use crate::store::admin::{AdminStore, AdminUser, AuditEntry};
use crate::store::report::{Found, ReportStore, SearchFilter, Started, Tried};
use crate::store::{AttemptState, StoreError, StoreResult};

#[async_trait]
impl AdminStore for SqliteStore {
    async fn put_admin(&self, user: AdminUser, replace: bool) -> StoreResult<bool> {
        self.write(move |conn| {
            let sql = if replace {
                "insert into admin_user (name, password_hash, created_at) values (?1, ?2, ?3) \
                 on conflict (name) do update set password_hash = excluded.password_hash"
            } else {
                "insert into admin_user (name, password_hash, created_at) values (?1, ?2, ?3) \
                 on conflict (name) do nothing"
            };
            let n = conn
                .execute(
                    sql,
                    params![
                        user.name,
                        user.password_hash,
                        user.created_at.timestamp_millis()
                    ],
                )
                .map_err(db_err)?;
            Ok(n > 0)
        })
        .await
    }

    async fn get_admin(&self, name: &str) -> StoreResult<Option<AdminUser>> {
        let name = name.to_owned();
        self.read(move |conn| {
            let row: Option<(String, String, i64)> = conn
                .prepare_cached(
                    "select name, password_hash, created_at from admin_user where name = ?1",
                )
                .map_err(db_err)?
                .query_row(params![name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()
                .map_err(db_err)?;
            row.map(admin_user).transpose()
        })
        .await
    }

    async fn list_admins(&self) -> StoreResult<Vec<AdminUser>> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "select name, password_hash, created_at from admin_user order by name",
                )
                .map_err(db_err)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .map_err(db_err)?;
            rows.map(|r| admin_user(r.map_err(db_err)?)).collect()
        })
        .await
    }

    async fn remove_admin(&self, name: &str) -> StoreResult<bool> {
        let name = name.to_owned();
        self.write(move |conn| {
            let n = conn
                .execute("delete from admin_user where name = ?1", params![name])
                .map_err(db_err)?;
            Ok(n > 0)
        })
        .await
    }

    async fn record_audit(&self, entry: AuditEntry) -> StoreResult<()> {
        self.write(move |conn| {
            conn.prepare_cached(
                "insert into audit_log (at, admin, action, target, detail) \
                 values (?1, ?2, ?3, ?4, ?5)",
            )
            .map_err(db_err)?
            .execute(params![
                entry.at.timestamp_millis(),
                entry.admin,
                entry.action,
                entry.target,
                entry.detail
            ])
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn audit_log(&self, limit: usize) -> StoreResult<Vec<AuditEntry>> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "select at, admin, action, target, detail from audit_log \
                     order by seq desc limit ?1",
                )
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![limit as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
                .map_err(db_err)?;
            rows.map(|r| {
                let (at, admin, action, target, detail) = r.map_err(db_err)?;
                Ok(AuditEntry {
                    at: ms_to_instant(at)?,
                    admin,
                    action,
                    target,
                    detail,
                })
            })
            .collect()
        })
        .await
    }
}

fn admin_user((name, password_hash, created_at): (String, String, i64)) -> StoreResult<AdminUser> {
    Ok(AdminUser {
        name,
        password_hash,
        created_at: ms_to_instant(created_at)?,
    })
}

/// The `where` clause of a search and its values, numbered from `?1`.
fn search_clause(filter: &SearchFilter) -> (String, Vec<Value>) {
    let mut parts = Vec::new();
    let mut values = Vec::new();
    let mut add = |sql: &str, value: Value| {
        values.push(value);
        parts.push(format!("{sql} ?{}", values.len()));
    };
    if let Some(number) = &filter.number {
        add("number =", Value::Text(number.clone()));
    }
    if let Some(id) = &filter.request_id {
        add("request_id =", Value::Text(id.as_str().to_owned()));
    }
    if let Some(state) = filter.state {
        add("state =", Value::Integer(state));
    }
    if let Some(from) = filter.from {
        add("submitted_at >=", Value::Integer(from.timestamp_millis()));
    }
    if let Some(until) = filter.until {
        add("submitted_at <", Value::Integer(until.timestamp_millis()));
    }
    let clause = if parts.is_empty() {
        String::new()
    } else {
        format!("where {}", parts.join(" and "))
    };
    (clause, values)
}

#[async_trait]
impl ReportStore for SqliteStore {
    async fn search(&self, filter: &SearchFilter, limit: usize) -> StoreResult<Vec<Found>> {
        let (clause, mut values) = search_clause(filter);
        values.push(Value::Integer(limit as i64));
        let sql = format!(
            "select request_id, account, number, state, submitted_at from verification {clause} \
             order by submitted_at desc limit ?{}",
            values.len()
        );
        self.read(move |conn| {
            let mut stmt = conn.prepare(&sql).map_err(db_err)?;
            let rows = stmt
                .query_map(params_from_iter(values), |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
                .map_err(db_err)?;
            rows.map(|r| {
                let (request_id, account, number, state, at) = r.map_err(db_err)?;
                Ok(Found {
                    request_id,
                    account,
                    number,
                    state,
                    submitted_at: ms_to_instant(at)?,
                })
            })
            .collect()
        })
        .await
    }

    async fn verification_any(&self, id: &RequestId) -> StoreResult<Option<Verification>> {
        let id = id.as_str().to_owned();
        self.read(move |conn| {
            load(
                conn,
                "select body from verification where request_id = ?1 and state >= 0",
                params![id],
            )
        })
        .await
    }

    async fn started_since(&self, since: Instant, limit: usize) -> StoreResult<Vec<Started>> {
        let since = since.timestamp_millis();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "select submitted_at, number, state from verification \
                     where submitted_at >= ?1 order by submitted_at desc limit ?2",
                )
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![since, limit as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .map_err(db_err)?;
            rows.map(|r| {
                let (at, number, state) = r.map_err(db_err)?;
                Ok(Started {
                    at: ms_to_instant(at)?,
                    number,
                    state,
                })
            })
            .collect()
        })
        .await
    }

    async fn tried_since(&self, since: Instant, limit: usize) -> StoreResult<Vec<Tried>> {
        let since = since.timestamp_millis();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "select channel, route, state, created_at, updated_at from delivery_attempt \
                     where created_at >= ?1 order by created_at desc limit ?2",
                )
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![since, limit as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
                .map_err(db_err)?;
            rows.map(|r| {
                let (channel, route, state, created, updated): (String, _, String, _, _) =
                    r.map_err(db_err)?;
                Ok(Tried {
                    channel,
                    route,
                    state: AttemptState::parse(&state)
                        .ok_or_else(|| StoreError::Corrupt(format!("attempt state {state:?}")))?,
                    created_at: ms_to_instant(created)?,
                    updated_at: ms_to_instant(updated)?,
                })
            })
            .collect()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_search_numbers_its_values_in_the_order_of_its_clause() {
        let filter = SearchFilter {
            number: Some("447700900123".into()),
            state: Some(1),
            ..SearchFilter::default()
        };
        let (clause, values) = search_clause(&filter);
        assert_eq!(clause, "where number = ?1 and state = ?2");
        assert_eq!(
            values,
            vec![Value::Text("447700900123".into()), Value::Integer(1)]
        );
        assert_eq!(search_clause(&SearchFilter::default()).0, "");
    }
}
