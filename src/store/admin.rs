//! The dashboard's own records: its admin users (never an API key: the dashboard has its own
//! logins) and the audit log of what they did.

use async_trait::async_trait;

use super::StoreResult;
use crate::domain::Instant;

/// An admin user as stored: the password only as an argon2id hash (a PHC string).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminUser {
    pub name: String,
    pub password_hash: String,
    pub created_at: Instant,
}

/// One admin action, as the audit log keeps it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AuditEntry {
    #[serde(serialize_with = "super::report::rfc3339")]
    pub at: Instant,
    /// The admin's name.
    pub admin: String,
    /// What was done: `login`, `key.create`, `key.disable`, ….
    pub action: String,
    /// What it was done to: an API key, a channel, a user.
    pub target: String,
    /// The particulars, for people (never a secret or a full number).
    pub detail: String,
}

#[async_trait]
pub trait AdminStore: Send + Sync + 'static {
    /// Adds a user, or replaces the password of one of that name when `replace`. False, writing
    /// nothing, when the name is taken and `replace` is false.
    async fn put_admin(&self, user: AdminUser, replace: bool) -> StoreResult<bool>;
    async fn get_admin(&self, name: &str) -> StoreResult<Option<AdminUser>>;
    async fn list_admins(&self) -> StoreResult<Vec<AdminUser>>;
    /// False when there was no such user.
    async fn remove_admin(&self, name: &str) -> StoreResult<bool>;

    async fn record_audit(&self, entry: AuditEntry) -> StoreResult<()>;
    /// The newest `limit` entries, newest first.
    async fn audit_log(&self, limit: usize) -> StoreResult<Vec<AuditEntry>>;
}
