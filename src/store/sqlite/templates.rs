//! Verify v2 templates on SQLite. Every write runs on the one writer thread, so a check and the
//! write that follows it cannot be split by another writer.

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::{db_err, SqliteStore};
use crate::domain::locale::Locale;
use crate::domain::template::{TemplateText, MAX_TEMPLATES};
use crate::domain::{Channel, Instant};
use crate::store::templates::{
    channel_name, fragment_from_columns, template_from_columns, FragmentRecord, Page, Refusable,
    TemplateChange, TemplateRecord, TemplateRefusal, TemplateStore, Window,
};
use crate::store::StoreResult;

const TEMPLATE_COLUMNS: &str = "template_id, api_key, name, is_default, created_at";
const FRAGMENT_COLUMNS: &str =
    "f.fragment_id, f.template_id, f.channel, f.locale, f.text, f.created_at, f.updated_at";

type TemplateRow = (String, String, String, bool, i64);
type FragmentRow = (String, String, String, String, String, i64, i64);

fn template_row(r: &Row<'_>) -> rusqlite::Result<TemplateRow> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn template(row: TemplateRow) -> StoreResult<TemplateRecord> {
    let (id, account, name, is_default, created) = row;
    template_from_columns(id, account, &name, is_default, created)
}

fn fragment_row(r: &Row<'_>) -> rusqlite::Result<FragmentRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

fn fragment(row: FragmentRow) -> StoreResult<FragmentRecord> {
    let (id, template_id, channel, locale, text, created, updated) = row;
    fragment_from_columns(id, template_id, &channel, &locale, &text, created, updated)
}

fn find_template(
    conn: &Connection,
    account: &str,
    id: &str,
) -> StoreResult<Option<TemplateRecord>> {
    conn.prepare_cached(&format!(
        "select {TEMPLATE_COLUMNS} from template where template_id = ?1 and api_key = ?2"
    ))
    .map_err(db_err)?
    .query_row(params![id, account], template_row)
    .optional()
    .map_err(db_err)?
    .map(template)
    .transpose()
}

fn find_fragment(
    conn: &Connection,
    account: &str,
    template_id: &str,
    id: &str,
) -> Refusable<FragmentRecord> {
    if find_template(conn, account, template_id)?.is_none() {
        return Ok(Err(TemplateRefusal::TemplateNotFound));
    }
    let found = conn
        .prepare_cached(&format!(
            "select {FRAGMENT_COLUMNS} from template_fragment f
             where f.fragment_id = ?1 and f.template_id = ?2"
        ))
        .map_err(db_err)?
        .query_row(params![id, template_id], fragment_row)
        .optional()
        .map_err(db_err)?;
    match found {
        Some(row) => Ok(Ok(fragment(row)?)),
        None => Ok(Err(TemplateRefusal::FragmentNotFound)),
    }
}

fn name_taken(conn: &Connection, account: &str, name: &str, other_than: &str) -> StoreResult<bool> {
    conn.prepare_cached(
        "select 1 from template where api_key = ?1 and name = ?2 and template_id <> ?3",
    )
    .map_err(db_err)?
    .exists(params![account, name, other_than])
    .map_err(db_err)
}

fn count(conn: &Connection, sql: &str, key: &str) -> StoreResult<u64> {
    conn.prepare_cached(sql)
        .map_err(db_err)?
        .query_row(params![key], |r| r.get::<_, i64>(0))
        .map(|n| n as u64)
        .map_err(db_err)
}

fn window_params(window: Window) -> (i64, i64) {
    (
        i64::try_from(window.limit).unwrap_or(i64::MAX),
        i64::try_from(window.offset).unwrap_or(i64::MAX),
    )
}

#[async_trait]
impl TemplateStore for SqliteStore {
    async fn create_template(&self, new: TemplateRecord) -> Refusable<TemplateRecord> {
        self.write(move |conn| {
            let account = new.account.as_str();
            let kept = count(
                conn,
                "select count(*) from template where api_key = ?1",
                account,
            )?;
            if kept >= MAX_TEMPLATES as u64 {
                return Ok(Err(TemplateRefusal::TooMany));
            }
            if name_taken(conn, account, new.name.as_str(), &new.id)? {
                return Ok(Err(TemplateRefusal::NameTaken));
            }
            let has_default = conn
                .prepare_cached("select 1 from template where api_key = ?1 and is_default = 1")
                .map_err(db_err)?
                .exists(params![account])
                .map_err(db_err)?;
            conn.execute(
                &format!("insert into template ({TEMPLATE_COLUMNS}) values (?1, ?2, ?3, ?4, ?5)"),
                params![
                    new.id,
                    account,
                    new.name.as_str(),
                    !has_default,
                    new.created_at.timestamp_millis()
                ],
            )
            .map_err(db_err)?;
            Ok(Ok(TemplateRecord {
                is_default: !has_default,
                ..new.clone()
            }))
        })
        .await
    }

    async fn templates(&self, account: &str, window: Window) -> StoreResult<Page<TemplateRecord>> {
        let account = account.to_owned();
        self.read(move |conn| {
            let (limit, offset) = window_params(window);
            let items = conn
                .prepare_cached(&format!(
                    "select {TEMPLATE_COLUMNS} from template where api_key = ?1
                     order by created_at, rowid limit ?2 offset ?3"
                ))
                .map_err(db_err)?
                .query_map(params![account, limit, offset], template_row)
                .map_err(db_err)?
                .map(|row| template(row.map_err(db_err)?))
                .collect::<StoreResult<Vec<_>>>()?;
            let total = count(
                conn,
                "select count(*) from template where api_key = ?1",
                &account,
            )?;
            Ok(Page { items, total })
        })
        .await
    }

    async fn template(&self, account: &str, id: &str) -> StoreResult<Option<TemplateRecord>> {
        let (account, id) = (account.to_owned(), id.to_owned());
        self.read(move |conn| find_template(conn, &account, &id))
            .await
    }

    async fn update_template(
        &self,
        account: &str,
        id: &str,
        change: TemplateChange,
    ) -> Refusable<TemplateRecord> {
        let (account, id) = (account.to_owned(), id.to_owned());
        self.write(move |conn| {
            let Some(mut found) = find_template(conn, &account, &id)? else {
                return Ok(Err(TemplateRefusal::TemplateNotFound));
            };
            if let Some(name) = &change.name {
                if name_taken(conn, &account, name.as_str(), &id)? {
                    return Ok(Err(TemplateRefusal::NameTaken));
                }
                conn.execute(
                    "update template set name = ?1 where template_id = ?2",
                    params![name.as_str(), id],
                )
                .map_err(db_err)?;
                found.name = name.clone();
            }
            if let Some(is_default) = change.is_default {
                if is_default {
                    conn.execute(
                        "update template set is_default = 0 where api_key = ?1 and is_default = 1",
                        params![account],
                    )
                    .map_err(db_err)?;
                }
                conn.execute(
                    "update template set is_default = ?1 where template_id = ?2",
                    params![is_default, id],
                )
                .map_err(db_err)?;
                found.is_default = is_default;
            }
            Ok(Ok(found))
        })
        .await
    }

    async fn delete_template(&self, account: &str, id: &str) -> Refusable<()> {
        let (account, id) = (account.to_owned(), id.to_owned());
        self.write(move |conn| {
            if find_template(conn, &account, &id)?.is_none() {
                return Ok(Err(TemplateRefusal::TemplateNotFound));
            }
            let fragments = count(
                conn,
                "select count(*) from template_fragment where template_id = ?1",
                &id,
            )?;
            if fragments > 0 {
                return Ok(Err(TemplateRefusal::NotEmpty));
            }
            conn.execute("delete from template where template_id = ?1", params![id])
                .map_err(db_err)?;
            Ok(Ok(()))
        })
        .await
    }

    async fn create_fragment(
        &self,
        account: &str,
        new: FragmentRecord,
    ) -> Refusable<FragmentRecord> {
        let account = account.to_owned();
        self.write(move |conn| {
            if find_template(conn, &account, &new.template_id)?.is_none() {
                return Ok(Err(TemplateRefusal::TemplateNotFound));
            }
            let exists = conn
                .prepare_cached(
                    "select 1 from template_fragment
                     where template_id = ?1 and channel = ?2 and locale = ?3",
                )
                .map_err(db_err)?
                .exists(params![
                    new.template_id,
                    channel_name(new.channel),
                    new.locale.as_str()
                ])
                .map_err(db_err)?;
            if exists {
                return Ok(Err(TemplateRefusal::FragmentExists));
            }
            conn.execute(
                "insert into template_fragment
                 (fragment_id, template_id, channel, locale, text, created_at, updated_at)
                 values (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    new.id,
                    new.template_id,
                    channel_name(new.channel),
                    new.locale.as_str(),
                    new.text.as_str(),
                    new.created_at.timestamp_millis(),
                    new.updated_at.timestamp_millis()
                ],
            )
            .map_err(db_err)?;
            Ok(Ok(new.clone()))
        })
        .await
    }

    async fn fragments(
        &self,
        account: &str,
        template_id: &str,
        window: Window,
    ) -> Refusable<Page<FragmentRecord>> {
        let (account, template_id) = (account.to_owned(), template_id.to_owned());
        self.read(move |conn| {
            if find_template(conn, &account, &template_id)?.is_none() {
                return Ok(Err(TemplateRefusal::TemplateNotFound));
            }
            let (limit, offset) = window_params(window);
            let items = conn
                .prepare_cached(&format!(
                    "select {FRAGMENT_COLUMNS} from template_fragment f where f.template_id = ?1
                     order by f.created_at, f.rowid limit ?2 offset ?3"
                ))
                .map_err(db_err)?
                .query_map(params![template_id, limit, offset], fragment_row)
                .map_err(db_err)?
                .map(|row| fragment(row.map_err(db_err)?))
                .collect::<StoreResult<Vec<_>>>()?;
            let total = count(
                conn,
                "select count(*) from template_fragment where template_id = ?1",
                &template_id,
            )?;
            Ok(Ok(Page { items, total }))
        })
        .await
    }

    async fn fragment(
        &self,
        account: &str,
        template_id: &str,
        id: &str,
    ) -> Refusable<FragmentRecord> {
        let (account, template_id, id) =
            (account.to_owned(), template_id.to_owned(), id.to_owned());
        self.read(move |conn| find_fragment(conn, &account, &template_id, &id))
            .await
    }

    async fn update_fragment(
        &self,
        account: &str,
        template_id: &str,
        id: &str,
        text: TemplateText,
        now: Instant,
    ) -> Refusable<FragmentRecord> {
        let (account, template_id, id) =
            (account.to_owned(), template_id.to_owned(), id.to_owned());
        self.write(move |conn| {
            let mut found = match find_fragment(conn, &account, &template_id, &id)? {
                Ok(found) => found,
                Err(refusal) => return Ok(Err(refusal)),
            };
            conn.execute(
                "update template_fragment set text = ?1, updated_at = ?2 where fragment_id = ?3",
                params![text.as_str(), now.timestamp_millis(), id],
            )
            .map_err(db_err)?;
            found.text = text.clone();
            found.updated_at = now;
            Ok(Ok(found))
        })
        .await
    }

    async fn delete_fragment(&self, account: &str, template_id: &str, id: &str) -> Refusable<()> {
        let (account, template_id, id) =
            (account.to_owned(), template_id.to_owned(), id.to_owned());
        self.write(move |conn| {
            if let Err(refusal) = find_fragment(conn, &account, &template_id, &id)? {
                return Ok(Err(refusal));
            }
            conn.execute(
                "delete from template_fragment where fragment_id = ?1",
                params![id],
            )
            .map_err(db_err)?;
            Ok(Ok(()))
        })
        .await
    }

    async fn template_words(
        &self,
        account: &str,
        template_id: Option<&str>,
        locale: Locale,
    ) -> Refusable<Vec<(Channel, TemplateText)>> {
        let (account, named) = (account.to_owned(), template_id.map(str::to_owned));
        self.read(move |conn| {
            let id = match &named {
                Some(id) => match find_template(conn, &account, id)? {
                    Some(found) => found.id,
                    None => return Ok(Err(TemplateRefusal::TemplateNotFound)),
                },
                None => {
                    let default = conn
                        .prepare_cached(
                            "select template_id from template where api_key = ?1 and is_default = 1",
                        )
                        .map_err(db_err)?
                        .query_row(params![account], |r| r.get::<_, String>(0))
                        .optional()
                        .map_err(db_err)?;
                    match default {
                        Some(id) => id,
                        None => return Ok(Ok(Vec::new())),
                    }
                }
            };
            let words = conn
                .prepare_cached(&format!(
                    "select {FRAGMENT_COLUMNS} from template_fragment f
                     where f.template_id = ?1 and f.locale = ?2 order by f.channel"
                ))
                .map_err(db_err)?
                .query_map(params![id, locale.as_str()], fragment_row)
                .map_err(db_err)?
                .map(|row| {
                    let f = fragment(row.map_err(db_err)?)?;
                    Ok((f.channel, f.text))
                })
                .collect::<StoreResult<Vec<_>>>()?;
            Ok(Ok(words))
        })
        .await
    }
}
