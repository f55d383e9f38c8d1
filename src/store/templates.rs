//! Verify v2 templates: an account's own words for its messages, one fragment per channel and
//! locale. A template's fragments are chosen when a verification starts and kept with it, so
//! a template changed or deleted later does not change a verification already under way.

use async_trait::async_trait;

use super::{StoreError, StoreResult};
use crate::domain::locale::Locale;
use crate::domain::template::{TemplateName, TemplateText};
use crate::domain::{Channel, Instant};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateRecord {
    /// A UUID, hyphenated, lower case.
    pub id: String,
    /// The API key the template belongs to.
    pub account: String,
    pub name: TemplateName,
    /// Whether requests that name no template use this one. An account has one default at most.
    pub is_default: bool,
    pub created_at: Instant,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FragmentRecord {
    /// A UUID, hyphenated, lower case.
    pub id: String,
    pub template_id: String,
    /// SMS, voice or e-mail.
    pub channel: Channel,
    pub locale: Locale,
    pub text: TemplateText,
    pub created_at: Instant,
    pub updated_at: Instant,
}

/// A change to a template; `None` leaves that part as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TemplateChange {
    pub name: Option<TemplateName>,
    /// `true` makes it the account's default (the previous one stops being it); `false` leaves
    /// the account without one if it was.
    pub is_default: Option<bool>,
}

/// Why a template operation was refused; nothing was changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TemplateRefusal {
    /// No such template in this account.
    TemplateNotFound,
    /// No such fragment in this template.
    FragmentNotFound,
    /// The account has a template of this name.
    NameTaken,
    /// The account has [`crate::domain::template::MAX_TEMPLATES`] templates.
    TooMany,
    /// The template still has fragments.
    NotEmpty,
    /// The template has a fragment for this channel and locale.
    FragmentExists,
}

/// One page of a list, with the length of the whole list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
}

/// Which rows of a list a page holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub offset: u64,
    pub limit: u64,
}

pub type Refusable<T> = StoreResult<Result<T, TemplateRefusal>>;

#[async_trait]
pub trait TemplateStore: Send + Sync + 'static {
    /// Adds a template; it is the account's default when the account has no default yet.
    async fn create_template(&self, template: TemplateRecord) -> Refusable<TemplateRecord>;
    /// The account's templates, oldest first.
    async fn templates(&self, account: &str, window: Window) -> StoreResult<Page<TemplateRecord>>;
    async fn template(&self, account: &str, id: &str) -> StoreResult<Option<TemplateRecord>>;
    async fn update_template(
        &self,
        account: &str,
        id: &str,
        change: TemplateChange,
    ) -> Refusable<TemplateRecord>;
    /// Deletes a template that has no fragments.
    async fn delete_template(&self, account: &str, id: &str) -> Refusable<()>;

    async fn create_fragment(
        &self,
        account: &str,
        fragment: FragmentRecord,
    ) -> Refusable<FragmentRecord>;
    /// A template's fragments, oldest first.
    async fn fragments(
        &self,
        account: &str,
        template_id: &str,
        window: Window,
    ) -> Refusable<Page<FragmentRecord>>;
    async fn fragment(
        &self,
        account: &str,
        template_id: &str,
        id: &str,
    ) -> Refusable<FragmentRecord>;
    async fn update_fragment(
        &self,
        account: &str,
        template_id: &str,
        id: &str,
        text: TemplateText,
        now: Instant,
    ) -> Refusable<FragmentRecord>;
    async fn delete_fragment(&self, account: &str, template_id: &str, id: &str) -> Refusable<()>;

    /// The words a new verification in `locale` takes, per channel: from the template named, or
    /// from the account's default one when none is named (no words when it has none).
    async fn template_words(
        &self,
        account: &str,
        template_id: Option<&str>,
        locale: Locale,
    ) -> Refusable<Vec<(Channel, TemplateText)>>;
}

/// A channel as the template tables name it.
pub(crate) fn channel_name(channel: Channel) -> &'static str {
    match channel {
        Channel::Sms => "sms",
        Channel::Voice => "voice",
        Channel::Email => "email",
        Channel::WhatsApp => "whatsapp",
    }
}

pub(crate) fn channel_from_name(name: &str) -> Option<Channel> {
    [
        Channel::Sms,
        Channel::Voice,
        Channel::Email,
        Channel::WhatsApp,
    ]
    .into_iter()
    .find(|c| channel_name(*c) == name)
}

/// A template from its columns.
pub(crate) fn template_from_columns(
    id: String,
    account: String,
    name: &str,
    is_default: bool,
    created_ms: i64,
) -> StoreResult<TemplateRecord> {
    Ok(TemplateRecord {
        id,
        account,
        name: TemplateName::parse(name).ok_or_else(|| corrupt("template name"))?,
        is_default,
        created_at: instant(created_ms)?,
    })
}

/// A fragment from its columns.
pub(crate) fn fragment_from_columns(
    id: String,
    template_id: String,
    channel: &str,
    locale: &str,
    text: &str,
    created_ms: i64,
    updated_ms: i64,
) -> StoreResult<FragmentRecord> {
    Ok(FragmentRecord {
        id,
        template_id,
        channel: channel_from_name(channel).ok_or_else(|| corrupt("fragment channel"))?,
        locale: Locale::from_tag(locale).ok_or_else(|| corrupt("fragment locale"))?,
        text: TemplateText::parse(text).map_err(|_| corrupt("fragment text"))?,
        created_at: instant(created_ms)?,
        updated_at: instant(updated_ms)?,
    })
}

fn instant(ms: i64) -> StoreResult<Instant> {
    chrono::DateTime::from_timestamp_millis(ms).ok_or_else(|| corrupt("timestamp out of range"))
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}
