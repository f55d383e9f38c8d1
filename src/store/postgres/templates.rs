//! Verify v2 templates on PostgreSQL. A write first locks the account's `api_key` row, so that
//! writes of one account run one at a time on every node: the count checked before an eleventh
//! template, or the name checked before a rename, still holds when the write commits.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::{pg_err, PgStore};
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
    "fragment_id, template_id, channel, locale, text, created_at, updated_at";

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

async fn rows(c: &impl GenericClient, sql: &str, params: Params<'_>) -> StoreResult<Vec<Row>> {
    let statement = c.prepare_cached(sql).await.map_err(pg_err)?;
    c.query(&statement, params).await.map_err(pg_err)
}

async fn execute(c: &impl GenericClient, sql: &str, params: Params<'_>) -> StoreResult<u64> {
    let statement = c.prepare_cached(sql).await.map_err(pg_err)?;
    c.execute(&statement, params).await.map_err(pg_err)
}

async fn count(c: &impl GenericClient, sql: &str, params: Params<'_>) -> StoreResult<u64> {
    let found = rows(c, sql, params).await?;
    Ok(found.first().map_or(0, |r| r.get::<_, i64>(0)) as u64)
}

fn template(row: &Row) -> StoreResult<TemplateRecord> {
    template_from_columns(row.get(0), row.get(1), row.get(2), row.get(3), row.get(4))
}

fn fragment(row: &Row) -> StoreResult<FragmentRecord> {
    fragment_from_columns(
        row.get(0),
        row.get(1),
        row.get(2),
        row.get(3),
        row.get(4),
        row.get(5),
        row.get(6),
    )
}

/// Makes the account's other template writes wait until this transaction ends.
async fn lock_account(c: &impl GenericClient, account: &str) -> StoreResult<()> {
    rows(
        c,
        "select 1 from api_key where api_key = $1 for update",
        &[&account],
    )
    .await?;
    Ok(())
}

async fn find_template(
    c: &impl GenericClient,
    account: &str,
    id: &str,
) -> StoreResult<Option<TemplateRecord>> {
    let sql =
        format!("select {TEMPLATE_COLUMNS} from template where template_id = $1 and api_key = $2");
    rows(c, &sql, &[&id, &account])
        .await?
        .first()
        .map(template)
        .transpose()
}

async fn find_fragment(
    c: &impl GenericClient,
    account: &str,
    template_id: &str,
    id: &str,
) -> Refusable<FragmentRecord> {
    if find_template(c, account, template_id).await?.is_none() {
        return Ok(Err(TemplateRefusal::TemplateNotFound));
    }
    let sql = format!(
        "select {FRAGMENT_COLUMNS} from template_fragment where fragment_id = $1 and template_id = $2"
    );
    match rows(c, &sql, &[&id, &template_id]).await?.first() {
        Some(row) => Ok(Ok(fragment(row)?)),
        None => Ok(Err(TemplateRefusal::FragmentNotFound)),
    }
}

async fn name_taken(
    c: &impl GenericClient,
    account: &str,
    name: &str,
    other_than: &str,
) -> StoreResult<bool> {
    let sql = "select 1 from template where api_key = $1 and name = $2 and template_id <> $3";
    Ok(!rows(c, sql, &[&account, &name, &other_than])
        .await?
        .is_empty())
}

fn window_params(window: Window) -> (i64, i64) {
    (
        i64::try_from(window.limit).unwrap_or(i64::MAX),
        i64::try_from(window.offset).unwrap_or(i64::MAX),
    )
}

#[async_trait]
impl TemplateStore for PgStore {
    async fn create_template(&self, new: TemplateRecord) -> Refusable<TemplateRecord> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let account = new.account.as_str();
        lock_account(&tx, account).await?;
        let kept = count(
            &tx,
            "select count(*) from template where api_key = $1",
            &[&account],
        )
        .await?;
        if kept >= MAX_TEMPLATES as u64 {
            return Ok(Err(TemplateRefusal::TooMany));
        }
        if name_taken(&tx, account, new.name.as_str(), &new.id).await? {
            return Ok(Err(TemplateRefusal::NameTaken));
        }
        let has_default = !rows(
            &tx,
            "select 1 from template where api_key = $1 and is_default",
            &[&account],
        )
        .await?
        .is_empty();
        let sql = format!("insert into template ({TEMPLATE_COLUMNS}) values ($1, $2, $3, $4, $5)");
        execute(
            &tx,
            &sql,
            &[
                &new.id,
                &account,
                &new.name.as_str(),
                &!has_default,
                &new.created_at.timestamp_millis(),
            ],
        )
        .await?;
        tx.commit().await.map_err(pg_err)?;
        Ok(Ok(TemplateRecord {
            is_default: !has_default,
            ..new
        }))
    }

    async fn templates(&self, account: &str, window: Window) -> StoreResult<Page<TemplateRecord>> {
        let client = self.client().await?;
        let (limit, offset) = window_params(window);
        let sql = format!(
            "select {TEMPLATE_COLUMNS} from template where api_key = $1
             order by created_at, position limit $2 offset $3"
        );
        let items = rows(&client, &sql, &[&account, &limit, &offset])
            .await?
            .iter()
            .map(template)
            .collect::<StoreResult<Vec<_>>>()?;
        let total = count(
            &client,
            "select count(*) from template where api_key = $1",
            &[&account],
        )
        .await?;
        Ok(Page { items, total })
    }

    async fn template(&self, account: &str, id: &str) -> StoreResult<Option<TemplateRecord>> {
        let client = self.client().await?;
        find_template(&client, account, id).await
    }

    async fn update_template(
        &self,
        account: &str,
        id: &str,
        change: TemplateChange,
    ) -> Refusable<TemplateRecord> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        lock_account(&tx, account).await?;
        let Some(mut found) = find_template(&tx, account, id).await? else {
            return Ok(Err(TemplateRefusal::TemplateNotFound));
        };
        if let Some(name) = change.name {
            if name_taken(&tx, account, name.as_str(), id).await? {
                return Ok(Err(TemplateRefusal::NameTaken));
            }
            execute(
                &tx,
                "update template set name = $1 where template_id = $2",
                &[&name.as_str(), &id],
            )
            .await?;
            found.name = name;
        }
        if let Some(is_default) = change.is_default {
            if is_default {
                execute(
                    &tx,
                    "update template set is_default = false where api_key = $1 and is_default",
                    &[&account],
                )
                .await?;
            }
            execute(
                &tx,
                "update template set is_default = $1 where template_id = $2",
                &[&is_default, &id],
            )
            .await?;
            found.is_default = is_default;
        }
        tx.commit().await.map_err(pg_err)?;
        Ok(Ok(found))
    }

    async fn delete_template(&self, account: &str, id: &str) -> Refusable<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        lock_account(&tx, account).await?;
        if find_template(&tx, account, id).await?.is_none() {
            return Ok(Err(TemplateRefusal::TemplateNotFound));
        }
        let fragments = count(
            &tx,
            "select count(*) from template_fragment where template_id = $1",
            &[&id],
        )
        .await?;
        if fragments > 0 {
            return Ok(Err(TemplateRefusal::NotEmpty));
        }
        execute(&tx, "delete from template where template_id = $1", &[&id]).await?;
        tx.commit().await.map_err(pg_err)?;
        Ok(Ok(()))
    }

    async fn create_fragment(
        &self,
        account: &str,
        new: FragmentRecord,
    ) -> Refusable<FragmentRecord> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        lock_account(&tx, account).await?;
        if find_template(&tx, account, &new.template_id)
            .await?
            .is_none()
        {
            return Ok(Err(TemplateRefusal::TemplateNotFound));
        }
        let exists = !rows(
            &tx,
            "select 1 from template_fragment where template_id = $1 and channel = $2 and locale = $3",
            &[&new.template_id, &channel_name(new.channel), &new.locale.as_str()],
        )
        .await?
        .is_empty();
        if exists {
            return Ok(Err(TemplateRefusal::FragmentExists));
        }
        let sql = format!(
            "insert into template_fragment ({FRAGMENT_COLUMNS}) values ($1, $2, $3, $4, $5, $6, $7)"
        );
        execute(
            &tx,
            &sql,
            &[
                &new.id,
                &new.template_id,
                &channel_name(new.channel),
                &new.locale.as_str(),
                &new.text.as_str(),
                &new.created_at.timestamp_millis(),
                &new.updated_at.timestamp_millis(),
            ],
        )
        .await?;
        tx.commit().await.map_err(pg_err)?;
        Ok(Ok(new))
    }

    async fn fragments(
        &self,
        account: &str,
        template_id: &str,
        window: Window,
    ) -> Refusable<Page<FragmentRecord>> {
        let client = self.client().await?;
        if find_template(&client, account, template_id)
            .await?
            .is_none()
        {
            return Ok(Err(TemplateRefusal::TemplateNotFound));
        }
        let (limit, offset) = window_params(window);
        let sql = format!(
            "select {FRAGMENT_COLUMNS} from template_fragment where template_id = $1
             order by created_at, position limit $2 offset $3"
        );
        let items = rows(&client, &sql, &[&template_id, &limit, &offset])
            .await?
            .iter()
            .map(fragment)
            .collect::<StoreResult<Vec<_>>>()?;
        let total = count(
            &client,
            "select count(*) from template_fragment where template_id = $1",
            &[&template_id],
        )
        .await?;
        Ok(Ok(Page { items, total }))
    }

    async fn fragment(
        &self,
        account: &str,
        template_id: &str,
        id: &str,
    ) -> Refusable<FragmentRecord> {
        let client = self.client().await?;
        find_fragment(&client, account, template_id, id).await
    }

    async fn update_fragment(
        &self,
        account: &str,
        template_id: &str,
        id: &str,
        text: TemplateText,
        now: Instant,
    ) -> Refusable<FragmentRecord> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        lock_account(&tx, account).await?;
        let mut found = match find_fragment(&tx, account, template_id, id).await? {
            Ok(found) => found,
            Err(refusal) => return Ok(Err(refusal)),
        };
        execute(
            &tx,
            "update template_fragment set text = $1, updated_at = $2 where fragment_id = $3",
            &[&text.as_str(), &now.timestamp_millis(), &id],
        )
        .await?;
        tx.commit().await.map_err(pg_err)?;
        found.text = text;
        found.updated_at = now;
        Ok(Ok(found))
    }

    async fn delete_fragment(&self, account: &str, template_id: &str, id: &str) -> Refusable<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        lock_account(&tx, account).await?;
        if let Err(refusal) = find_fragment(&tx, account, template_id, id).await? {
            return Ok(Err(refusal));
        }
        execute(
            &tx,
            "delete from template_fragment where fragment_id = $1",
            &[&id],
        )
        .await?;
        tx.commit().await.map_err(pg_err)?;
        Ok(Ok(()))
    }

    async fn template_words(
        &self,
        account: &str,
        template_id: Option<&str>,
        locale: Locale,
    ) -> Refusable<Vec<(Channel, TemplateText)>> {
        let client = self.client().await?;
        let id = match template_id {
            Some(id) => match find_template(&client, account, id).await? {
                Some(found) => found.id,
                None => return Ok(Err(TemplateRefusal::TemplateNotFound)),
            },
            None => {
                let default = rows(
                    &client,
                    "select template_id from template where api_key = $1 and is_default",
                    &[&account],
                )
                .await?;
                match default.first() {
                    Some(row) => row.get(0),
                    None => return Ok(Ok(Vec::new())),
                }
            }
        };
        let sql = format!(
            "select {FRAGMENT_COLUMNS} from template_fragment where template_id = $1 and locale = $2
             order by channel"
        );
        let words = rows(&client, &sql, &[&id, &locale.as_str()])
            .await?
            .iter()
            .map(|row| {
                let f = fragment(row)?;
                Ok((f.channel, f.text))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Ok(words))
    }
}
