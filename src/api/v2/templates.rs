//! `/v2/verify/templates…`: an account's templates and their fragments, as HAL documents with
//! absolute links. A list is paged by `page_size` (1–100, default 10) and `page` (from 1); its
//! `next` and `prev` links are there only when such a page is.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::error::{InvalidParameter, V2Error};
use super::fields::{object, Fields};
use super::{finish, internal, Call};
use crate::api::AppState;
use crate::domain::locale::LocaleSet;
use crate::domain::template::{TemplateName, TemplateText, TextError, MAX_TEXT_CHARS};
use crate::domain::Channel;
use crate::store::new_uuid;
use crate::store::templates::{
    channel_name, FragmentRecord, Page, Refusable, TemplateChange, TemplateRecord, TemplateRefusal,
    Window,
};

const DEFAULT_PAGE_SIZE: u64 = 10;
const MAX_PAGE_SIZE: u64 = 100;

/// A template or fragment id from a path or a body: a hyphenated UUID, in either case, as the
/// store keeps it (lower case).
pub fn parse_uuid(raw: &str) -> Option<String> {
    let uuid = uuid::Uuid::try_parse(raw).ok()?;
    (raw.len() == 36).then(|| uuid.hyphenated().to_string())
}

/// A template store's answer: a failure is logged and answered 500, a refusal mapped by
/// [`refused`].
fn stored<T>(answer: Refusable<T>) -> Result<T, V2Error> {
    answer.map_err(internal)?.map_err(refused)
}

/// The one place a store's refusal becomes this surface's error.
fn refused(refusal: TemplateRefusal) -> V2Error {
    match refusal {
        TemplateRefusal::TemplateNotFound => V2Error::TemplateNotFound,
        TemplateRefusal::FragmentNotFound => V2Error::FragmentNotFound,
        TemplateRefusal::NameTaken => V2Error::TemplateExists,
        TemplateRefusal::TooMany => V2Error::MaxTemplates,
        TemplateRefusal::NotEmpty => V2Error::NotEmptyTemplate,
        TemplateRefusal::FragmentExists => V2Error::FragmentExists,
    }
}

/// Where this server is, as the caller reached it: the base of the links it writes. HTTP/2
/// names the host in the request's authority, HTTP/1.1 in `Host`.
pub(super) struct Base(String);

impl axum::extract::FromRequestParts<AppState> for Base {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        app: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
        let scheme = match header("x-forwarded-proto") {
            Some(proto @ ("http" | "https")) => proto,
            _ if app.tls => "https",
            _ => "http",
        };
        let host = parts
            .uri
            .authority()
            .map(|a| a.as_str())
            .or_else(|| header("host"))
            .unwrap_or("localhost");
        Ok(Self(format!("{scheme}://{host}")))
    }
}

fn link(href: String) -> Value {
    json!({ "href": href })
}

fn template_url(base: &str, id: &str) -> String {
    format!("{base}/v2/verify/templates/{id}")
}

fn template_json(base: &str, t: &TemplateRecord) -> Value {
    let url = template_url(base, &t.id);
    json!({
        "template_id": t.id,
        "name": t.name.as_str(),
        "is_default": t.is_default,
        "_links": {
            "self": link(url.clone()),
            "fragments": link(format!("{url}/template_fragments")),
        },
    })
}

fn fragment_json(base: &str, f: &FragmentRecord) -> Value {
    let template = template_url(base, &f.template_id);
    let date =
        |at: chrono::DateTime<chrono::Utc>| at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    json!({
        "template_fragment_id": f.id,
        "channel": channel_name(f.channel),
        "locale": f.locale.as_str(),
        "text": f.text.as_str(),
        "date_updated": date(f.updated_at),
        "date_created": date(f.created_at),
        "_links": {
            "self": link(format!("{template}/template_fragments/{}", f.id)),
            "template": link(template),
        },
    })
}

/// `page_size` and `page` of a query; anything else in it is ignored.
fn window(query: Option<&str>) -> Result<(u64, u64), V2Error> {
    let (mut size, mut page) = (DEFAULT_PAGE_SIZE, 1);
    let mut invalid = Vec::new();
    for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let (slot, range, reason) = match name.as_ref() {
            "page_size" => (
                &mut size,
                1..=MAX_PAGE_SIZE,
                "must be an integer from 1 to 100",
            ),
            "page" => (
                &mut page,
                1..=u64::from(u32::MAX),
                "must be an integer from 1",
            ),
            _ => continue,
        };
        match value.parse::<u64>() {
            Ok(n) if range.contains(&n) => *slot = n,
            _ => invalid.push(InvalidParameter::new(name.as_ref(), reason)),
        }
    }
    if invalid.is_empty() {
        Ok((size, page))
    } else {
        Err(V2Error::InvalidParams(invalid))
    }
}

fn store_window((size, page): (u64, u64)) -> Window {
    Window {
        offset: (page - 1) * size,
        limit: size,
    }
}

/// A page of a list as HAL: `items` under `_embedded.{key}`, and links to its neighbours.
fn page_json<T>(
    url: &str,
    key: &str,
    (size, page): (u64, u64),
    found: &Page<T>,
    item: impl Fn(&T) -> Value,
) -> Value {
    let pages = found.total.div_ceil(size).max(1);
    let at = |n: u64| link(format!("{url}?page_size={size}&page={n}"));
    let mut links = json!({ "self": at(page), "first": at(1), "last": at(pages) });
    if page < pages {
        links["next"] = at(page + 1);
    }
    if page > 1 {
        links["prev"] = at((page - 1).min(pages));
    }
    json!({
        "page_size": size,
        "page": page,
        "total_pages": pages,
        "total_items": found.total,
        "_embedded": { key: found.items.iter().map(item).collect::<Vec<_>>() },
        "_links": links,
    })
}

/// A name field, checked.
fn name(f: &mut Fields<'_, '_>, required: bool) -> Option<TemplateName> {
    let raw = if required {
        f.required("name", "name")?
    } else {
        f.string("name")?
    };
    let name = TemplateName::parse(raw);
    if name.is_none() {
        f.refuse("name", "must be 1 to 64 letters, digits, _ or -");
    }
    name
}

/// A text field, checked.
fn text(f: &mut Fields<'_, '_>) -> Option<TemplateText> {
    let raw = f.required("text", "text")?;
    match TemplateText::parse(raw) {
        Ok(text) => Some(text),
        Err(e) => {
            let reason = match e {
                TextError::Empty => "must not be empty".to_owned(),
                TextError::TooLong => format!("must be at most {MAX_TEXT_CHARS} characters"),
                TextError::NoCode => "must say the code: ${code}".to_owned(),
            };
            f.refuse("text", reason);
            None
        }
    }
}

/// Runs `read` over the body's fields; a 422 lists every wrong one.
fn fields<T>(
    body: &[u8],
    read: impl FnOnce(&mut Fields<'_, '_>) -> Option<T>,
) -> Result<T, V2Error> {
    let map = object(body)?;
    let mut invalid = Vec::new();
    let mut f = Fields {
        map: &map,
        prefix: String::new(),
        invalid: &mut invalid,
    };
    let read = read(&mut f);
    match read {
        Some(value) if invalid.is_empty() => Ok(value),
        _ => Err(V2Error::InvalidParams(invalid)),
    }
}

fn template_id(raw: &str) -> Result<String, V2Error> {
    parse_uuid(raw).ok_or(V2Error::TemplateNotFound)
}

fn ids(raw: &(String, String)) -> Result<(String, String), V2Error> {
    Ok((
        template_id(&raw.0)?,
        parse_uuid(&raw.1).ok_or(V2Error::FragmentNotFound)?,
    ))
}

pub(super) async fn list(
    State(app): State<AppState>,
    Base(base): Base,
    RawQuery(query): RawQuery,
    call: Call,
) -> Response {
    let result = async {
        let wanted = window(query.as_deref())?;
        let found = app
            .templates
            .templates(&call.account.api_key, store_window(wanted))
            .await
            .map_err(internal)?;
        let url = format!("{base}/v2/verify/templates");
        let page = page_json(&url, "templates", wanted, &found, |t| {
            template_json(&base, t)
        });
        Ok(Json(page).into_response())
    }
    .await;
    finish(&call.instance, result)
}

pub(super) async fn create(State(app): State<AppState>, Base(base): Base, call: Call) -> Response {
    let result = async {
        let name = fields(&call.body, |f| name(f, true))?;
        let new = TemplateRecord {
            id: new_uuid(),
            account: call.account.api_key.clone(),
            name,
            is_default: false,
            created_at: app.service.now(),
        };
        let made = stored(app.templates.create_template(new).await)?;
        let body = template_json(&base, &made);
        Ok((StatusCode::CREATED, Json(body)).into_response())
    }
    .await;
    finish(&call.instance, result)
}

pub(super) async fn show(
    State(app): State<AppState>,
    Base(base): Base,
    Path(raw): Path<String>,
    call: Call,
) -> Response {
    let result = async {
        let id = template_id(&raw)?;
        let found = app
            .templates
            .template(&call.account.api_key, &id)
            .await
            .map_err(internal)?
            .ok_or(V2Error::TemplateNotFound)?;
        Ok(Json(template_json(&base, &found)).into_response())
    }
    .await;
    finish(&call.instance, result)
}

pub(super) async fn update(
    State(app): State<AppState>,
    Base(base): Base,
    Path(raw): Path<String>,
    call: Call,
) -> Response {
    let result = async {
        let id = template_id(&raw)?;
        let change = fields(&call.body, |f| {
            let name = name(f, false);
            let is_default = f.boolean("is_default");
            Some(TemplateChange { name, is_default })
        })?;
        let changed = stored(
            app.templates
                .update_template(&call.account.api_key, &id, change)
                .await,
        )?;
        Ok(Json(template_json(&base, &changed)).into_response())
    }
    .await;
    finish(&call.instance, result)
}

pub(super) async fn delete(
    State(app): State<AppState>,
    Path(raw): Path<String>,
    call: Call,
) -> Response {
    let result = async {
        let id = template_id(&raw)?;
        stored(
            app.templates
                .delete_template(&call.account.api_key, &id)
                .await,
        )?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }
    .await;
    finish(&call.instance, result)
}

pub(super) async fn list_fragments(
    State(app): State<AppState>,
    Base(base): Base,
    Path(raw): Path<String>,
    RawQuery(query): RawQuery,
    call: Call,
) -> Response {
    let result = async {
        let id = template_id(&raw)?;
        let wanted = window(query.as_deref())?;
        let found = stored(
            app.templates
                .fragments(&call.account.api_key, &id, store_window(wanted))
                .await,
        )?;
        let url = format!("{}/template_fragments", template_url(&base, &id));
        let page = page_json(&url, "template_fragments", wanted, &found, |f| {
            fragment_json(&base, f)
        });
        Ok(Json(page).into_response())
    }
    .await;
    finish(&call.instance, result)
}

pub(super) async fn create_fragment(
    State(app): State<AppState>,
    Base(base): Base,
    Path(raw): Path<String>,
    call: Call,
) -> Response {
    let result = async {
        let id = template_id(&raw)?;
        let (channel, locale, text) = fields(&call.body, |f| {
            let channel = match f.required("channel", "channel") {
                Some("sms") => Some(Channel::Sms),
                Some("voice") => Some(Channel::Voice),
                Some("email") => Some(Channel::Email),
                Some(_) => {
                    f.refuse("channel", "must be sms, voice or email");
                    None
                }
                None => None,
            };
            let locale = f.required("locale", "locale").and_then(|tag| {
                let found = LocaleSet::Standard.parse(tag);
                if found.is_none() {
                    f.refuse("locale", "is not a supported locale");
                }
                found
            });
            let text = text(f);
            Some((channel?, locale?, text?))
        })?;
        let now = app.service.now();
        let new = FragmentRecord {
            id: new_uuid(),
            template_id: id,
            channel,
            locale,
            text,
            created_at: now,
            updated_at: now,
        };
        let made = stored(
            app.templates
                .create_fragment(&call.account.api_key, new)
                .await,
        )?;
        let body = fragment_json(&base, &made);
        Ok((StatusCode::CREATED, Json(body)).into_response())
    }
    .await;
    finish(&call.instance, result)
}

pub(super) async fn show_fragment(
    State(app): State<AppState>,
    Base(base): Base,
    Path(raw): Path<(String, String)>,
    call: Call,
) -> Response {
    let result = async {
        let (template, id) = ids(&raw)?;
        let found = stored(
            app.templates
                .fragment(&call.account.api_key, &template, &id)
                .await,
        )?;
        Ok(Json(fragment_json(&base, &found)).into_response())
    }
    .await;
    finish(&call.instance, result)
}

pub(super) async fn update_fragment(
    State(app): State<AppState>,
    Base(base): Base,
    Path(raw): Path<(String, String)>,
    call: Call,
) -> Response {
    let result = async {
        let (template, id) = ids(&raw)?;
        let text = fields(&call.body, text)?;
        let changed = stored(
            app.templates
                .update_fragment(
                    &call.account.api_key,
                    &template,
                    &id,
                    text,
                    app.service.now(),
                )
                .await,
        )?;
        Ok(Json(fragment_json(&base, &changed)).into_response())
    }
    .await;
    finish(&call.instance, result)
}

pub(super) async fn delete_fragment(
    State(app): State<AppState>,
    Path(raw): Path<(String, String)>,
    call: Call,
) -> Response {
    let result = async {
        let (template, id) = ids(&raw)?;
        stored(
            app.templates
                .delete_fragment(&call.account.api_key, &template, &id)
                .await,
        )?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }
    .await;
    finish(&call.instance, result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_is_chosen_by_page_size_and_page_within_their_ranges() {
        assert_eq!(window(None).unwrap(), (10, 1));
        assert_eq!(window(Some("page_size=2&page=3&x=y")).unwrap(), (2, 3));
        for bad in [
            "page_size=0",
            "page_size=101",
            "page=0",
            "page=-1",
            "page=x",
        ] {
            assert!(
                matches!(window(Some(bad)), Err(V2Error::InvalidParams(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_page_links_to_its_neighbours_only_where_they_are() {
        let found = Page {
            items: vec![1, 2],
            total: 5,
        };
        let json = page_json(
            "https://h/v2/verify/templates",
            "templates",
            (2, 2),
            &found,
            |n| json!(n),
        );
        assert_eq!(json["total_pages"], 3);
        assert_eq!(json["total_items"], 5);
        assert_eq!(json["_embedded"]["templates"], json!([1, 2]));
        let href = |k: &str| json["_links"][k]["href"].as_str().map(str::to_owned);
        assert_eq!(
            href("next").unwrap(),
            "https://h/v2/verify/templates?page_size=2&page=3"
        );
        assert_eq!(
            href("prev").unwrap(),
            "https://h/v2/verify/templates?page_size=2&page=1"
        );
        assert_eq!(
            href("last").unwrap(),
            "https://h/v2/verify/templates?page_size=2&page=3"
        );
        let last = page_json("u", "templates", (2, 3), &found, |n| json!(n));
        assert!(last["_links"].get("next").is_none());
        let empty = Page::<i32> {
            items: vec![],
            total: 0,
        };
        let first = page_json("u", "templates", (10, 1), &empty, |n| json!(n));
        assert_eq!(first["total_pages"], 1);
        assert!(first["_links"].get("prev").is_none() && first["_links"].get("next").is_none());
    }
}
