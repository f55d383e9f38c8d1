//! API keys: create, disable and enable, rotate the secret, and set a key's own limits and
//! countries. A new secret is shown once, in the answer to the form that made it.

use std::collections::HashMap;

use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{csrf_field, store_error, Admin};
use crate::api::html::escape;
use crate::api::AppState;
use crate::auth::{self, LimitsChange, NewKey};
use crate::store::{ApiKeyRecord, KeyState};

/// Every setting of a key's own limits, in the order the form shows them.
const LIMIT_FIELDS: [&str; 11] = [
    "requests_per_second",
    "searches_per_second",
    "per_destination",
    "per_prefix",
    "per_country",
    "per_ip",
    "verifications_per_hour",
    "verifications_per_day",
    "sms_countries",
    "voice_countries",
    "whatsapp_countries",
];

fn limits_summary(k: &ApiKeyRecord) -> String {
    let own = k.limits.to_string();
    if own.is_empty() {
        "the file's".into()
    } else {
        own
    }
}

fn keys_table(admin: &Admin, keys: &[ApiKeyRecord]) -> String {
    let token = csrf_field(admin);
    let mut out = String::from(
        "<table id=keys><thead><tr><th>API key</th><th>Name</th><th>State</th><th>Own PIN</th>\
         <th>Created (UTC)</th><th>Limits</th><th>Actions</th></tr></thead><tbody>",
    );
    for k in keys {
        let key = escape(&k.api_key);
        let toggle = match k.state {
            KeyState::Active => format!(
                "<form class=inline method=post action=\"/dashboard/keys/{key}/state\">{token}\
                 <input type=hidden name=state value=disabled><button class=secondary type=submit>Disable</button></form>"
            ),
            KeyState::Disabled => format!(
                "<form class=inline method=post action=\"/dashboard/keys/{key}/state\">{token}\
                 <input type=hidden name=state value=active><button class=secondary type=submit>Enable</button></form>"
            ),
            KeyState::Revoked => String::new(),
        };
        let rotate = if k.state == KeyState::Revoked {
            String::new()
        } else {
            format!(
                "<form class=inline method=post action=\"/dashboard/keys/{key}/rotate\">{token}\
                 <button class=danger type=submit>Rotate secret</button></form>"
            )
        };
        out.push_str(&format!(
            "<tr><td><a href=\"/dashboard/keys/{key}\"><code>{key}</code></a></td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{toggle} {rotate}</td></tr>",
            escape(&k.name),
            k.state.as_str(),
            if k.allow_custom_pin { "allowed" } else { "refused" },
            k.created_at.format("%Y-%m-%d %H:%M"),
            escape(&limits_summary(k)),
        ));
    }
    if keys.is_empty() {
        out.push_str("<tr><td colspan=7 class=empty>No keys.</td></tr>");
    }
    out.push_str("</tbody></table>");
    out
}

/// The Verify v2 applications (`verifyd apps create` registers them: a public key is a file).
fn apps_table(apps: &[crate::store::AppRecord]) -> String {
    let mut out = String::from(
        "<h2>Applications (Verify v2)</h2><table id=apps><thead><tr><th>Application</th>\
         <th>API key</th><th>Callbacks to</th><th>Created (UTC)</th></tr></thead><tbody>",
    );
    for a in apps {
        out.push_str(&format!(
            "<tr><td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            escape(&a.application_id),
            escape(&a.api_key),
            escape(a.status_url.as_deref().unwrap_or("—")),
            a.created_at.format("%Y-%m-%d %H:%M"),
        ));
    }
    if apps.is_empty() {
        out.push_str(
            "<tr><td colspan=4 class=empty>None: <code>verifyd apps create --key KEY \
             --public-key PEM</code> registers one.</td></tr>",
        );
    }
    out.push_str("</tbody></table>");
    out
}

fn create_form(admin: &Admin) -> String {
    format!(
        "<h2>New key</h2><form class=filters method=post action=\"/dashboard/keys\">{}\
         <label>Name <input name=name maxlength=100></label>\
         <label>Caller-chosen PINs <select name=custom_pin><option value=yes>allowed</option>\
         <option value=no>refused (status 20)</option></select></label>\
         <button type=submit>Create key</button></form>",
        csrf_field(admin)
    )
}

/// The keys page, with `notice` (already HTML) above the table.
async fn keys_page(app: &AppState, admin: &Admin, notice: &str) -> Response {
    let keys = match app.dashboard.store.list_keys().await {
        Ok(keys) => keys,
        Err(e) => {
            tracing::error!(error = %e, "dashboard: could not list the keys");
            return store_error();
        }
    };
    let apps = match app.dashboard.store.list_apps().await {
        Ok(apps) => apps,
        Err(e) => {
            tracing::error!(error = %e, "dashboard: could not list the applications");
            return store_error();
        }
    };
    let body = format!(
        "{notice}{}{}<p class=hint>A disabled key is answered with status 8; a change reaches \
         every node within 2 s.</p>{}",
        keys_table(admin, &keys),
        create_form(admin),
        apps_table(&apps)
    );
    admin.page("API keys", "/dashboard/keys", "", &body)
}

pub async fn list(State(app): State<AppState>, admin: Admin) -> Response {
    keys_page(&app, &admin, "").await
}

fn secret_notice(what: &str, key: &NewKey) -> String {
    format!(
        "<div class=notice role=status><p>{what} Its secret is shown only now:</p>\
         <p>API key <code>{}</code> secret <code class=secret>{}</code></p></div>",
        escape(&key.api_key),
        escape(&key.api_secret)
    )
}

#[derive(Deserialize)]
pub struct CreateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    custom_pin: String,
}

pub async fn create(
    State(app): State<AppState>,
    admin: Admin,
    Form(form): Form<CreateForm>,
) -> Response {
    if let Err(r) = admin.check_form(&app, &form.csrf) {
        return r.into_response();
    }
    let name: String = form.name.trim().chars().take(100).collect();
    let custom = form.custom_pin != "no";
    let api_key = crate::crypto::new_api_key();
    let detail = format!("name {name:?}, own PIN {custom}");
    if let Err(r) = admin.audit(&app, "key.create", &api_key, &detail).await {
        return r.into_response();
    }
    let store = app.dashboard.store.as_ref();
    match auth::insert_key(store, &api_key, &name, custom, chrono::Utc::now()).await {
        Ok(key) => {
            let notice = secret_notice("The key was created.", &key);
            keys_page(&app, &admin, &notice).await
        }
        Err(e) => {
            tracing::error!(error = %e, "dashboard: could not create a key");
            store_error()
        }
    }
}

#[derive(Deserialize)]
pub struct StateForm {
    #[serde(default)]
    csrf: String,
    state: String,
}

/// The answer when a change found no key to change: there is none, or it is revoked for good.
async fn not_changed(app: &AppState, admin: &Admin, key: &str) -> Response {
    match app.dashboard.store.get_key(key).await {
        Ok(Some(k)) if k.state == KeyState::Revoked => {
            let body = format!(
                "<p class=error role=alert>API key {} is revoked, for good: it cannot be \
                 enabled or given a new secret.</p>",
                escape(key)
            );
            let page = admin.page("API keys", "/dashboard/keys", "", &body);
            (StatusCode::CONFLICT, page).into_response()
        }
        Ok(_) => no_key(admin, key),
        Err(e) => {
            tracing::error!(error = %e, "dashboard: could not read a key");
            store_error()
        }
    }
}

fn no_key(admin: &Admin, key: &str) -> Response {
    let body = format!(
        "<p class=error role=alert>There is no API key {}.</p>",
        escape(key)
    );
    (
        StatusCode::NOT_FOUND,
        admin.page("API keys", "/dashboard/keys", "", &body),
    )
        .into_response()
}

pub async fn set_state(
    State(app): State<AppState>,
    admin: Admin,
    Path(key): Path<String>,
    Form(form): Form<StateForm>,
) -> Response {
    if let Err(r) = admin.check_form(&app, &form.csrf) {
        return r.into_response();
    }
    let state = match form.state.as_str() {
        "active" => KeyState::Active,
        "disabled" => KeyState::Disabled,
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                "state must be active or disabled\n",
            )
                .into_response()
        }
    };
    let action = if state == KeyState::Active {
        "key.enable"
    } else {
        "key.disable"
    };
    if let Err(r) = admin.audit(&app, action, &key, "").await {
        return r.into_response();
    }
    match app.dashboard.store.set_key_state(&key, state).await {
        Ok(true) => Redirect::to("/dashboard/keys").into_response(),
        Ok(false) => not_changed(&app, &admin, &key).await,
        Err(e) => {
            tracing::error!(error = %e, "dashboard: could not change a key's state");
            store_error()
        }
    }
}

#[derive(Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    csrf: String,
}

pub async fn rotate(
    State(app): State<AppState>,
    admin: Admin,
    Path(key): Path<String>,
    Form(form): Form<TokenForm>,
) -> Response {
    if let Err(r) = admin.check_form(&app, &form.csrf) {
        return r.into_response();
    }
    if let Err(r) = admin.audit(&app, "key.rotate", &key, "").await {
        return r.into_response();
    }
    match auth::rotate_key(app.dashboard.store.as_ref(), &key).await {
        Ok(Some(new)) => {
            let notice = secret_notice(
                "The key has a new secret; the old one stops working within 2 s.",
                &new,
            );
            keys_page(&app, &admin, &notice).await
        }
        Ok(None) => not_changed(&app, &admin, &key).await,
        Err(e) => {
            tracing::error!(error = %e, "dashboard: could not rotate a key");
            store_error()
        }
    }
}

/// Each limit's value as a key's page shows it: its own, else `default`.
fn limit_values(k: &ApiKeyRecord) -> HashMap<String, String> {
    let own: HashMap<&str, String> = k.limits.entries().into_iter().collect();
    LIMIT_FIELDS
        .iter()
        .map(|name| {
            let value = own.get(name).cloned().unwrap_or_else(|| "default".into());
            ((*name).to_owned(), value)
        })
        .collect()
}

/// A key's page: `shown` in the fields, and `was` (the stored values the page was made from)
/// in hidden fields, so that a save writes only what the admin changed.
fn detail_page(
    admin: &Admin,
    k: &ApiKeyRecord,
    shown: &HashMap<String, String>,
    was: &HashMap<String, String>,
    message: &str,
    status: StatusCode,
) -> Response {
    let mut fields = String::new();
    for name in LIMIT_FIELDS {
        let value =
            |map: &HashMap<String, String>| escape(map.get(name).map_or("default", String::as_str));
        fields.push_str(&format!(
            "<label>{name} <input name={name} value=\"{}\"></label>\
             <input type=hidden name=was_{name} value=\"{}\">",
            value(shown),
            value(was)
        ));
    }
    let body = format!(
        "{message}<dl class=facts><dt>API key</dt><dd><code>{key}</code></dd><dt>Name</dt><dd>{}</dd>\
         <dt>State</dt><dd>{}</dd></dl><h2>Limits and countries</h2>\
         <form class=limits method=post action=\"/dashboard/keys/{key}/limits\">{}{fields}\
         <button type=submit>Save</button></form>\
         <p class=hint>A rate is <code>5/10m</code> (a count for the <code>_per_second</code>, \
         <code>_per_hour</code> and <code>_per_day</code> ones); <code>none</code> means no limit \
         for this key and <code>default</code> the configuration file's. Countries are \
         <code>all</code>, codes such as <code>GB,IE</code>, or <code>default</code>.</p>",
        escape(&k.name),
        k.state.as_str(),
        csrf_field(admin),
        key = escape(&k.api_key),
    );
    (status, admin.page("API key", "/dashboard/keys", "", &body)).into_response()
}

pub async fn detail(
    State(app): State<AppState>,
    admin: Admin,
    Path(key): Path<String>,
) -> Response {
    match app.dashboard.store.get_key(&key).await {
        Ok(Some(k)) => {
            let values = limit_values(&k);
            detail_page(&admin, &k, &values, &values, "", StatusCode::OK)
        }
        Ok(None) => no_key(&admin, &key),
        Err(e) => {
            tracing::error!(error = %e, "dashboard: could not read a key");
            store_error()
        }
    }
}

pub async fn set_limits(
    State(app): State<AppState>,
    admin: Admin,
    Path(key): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let token = form
        .iter()
        .find(|(k, _)| k == "csrf")
        .map_or("", |(_, v)| v.as_str());
    if let Err(r) = admin.check_form(&app, token) {
        return r.into_response();
    }
    let store = app.dashboard.store.as_ref();
    let record = match store.get_key(&key).await {
        Ok(Some(k)) => k,
        Ok(None) => return no_key(&admin, &key),
        Err(e) => {
            tracing::error!(error = %e, "dashboard: could not read a key");
            return store_error();
        }
    };
    // Only the fields changed on the page: a value left as the page showed it is not written
    // again over a change made elsewhere meanwhile.
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim());
    let stored = limit_values(&record);
    let mut shown = HashMap::new();
    let mut was = HashMap::new();
    let mut changes: Vec<(&str, &str)> = Vec::new();
    for name in LIMIT_FIELDS {
        let before = field(&format!("was_{name}")).unwrap_or(stored[name].as_str());
        let value = field(name).unwrap_or(before);
        if value != before {
            changes.push((name, value));
        }
        shown.insert(name.to_owned(), value.to_owned());
        was.insert(name.to_owned(), before.to_owned());
    }
    let detail: Vec<String> = changes.iter().map(|(n, v)| format!("{n}={v}")).collect();
    if let Err(r) = admin
        .audit(&app, "key.limits", &key, &detail.join(" "))
        .await
    {
        return r.into_response();
    }
    // What the admin typed stays in the fields of a page that refuses it.
    let refused = |why: String| {
        let message = format!("<p class=error role=alert>{}</p>", escape(&why));
        detail_page(
            &admin,
            &record,
            &shown,
            &was,
            &message,
            StatusCode::BAD_REQUEST,
        )
    };
    match auth::change_key_limits(store, &key, &changes).await {
        Ok(LimitsChange::Set(limits)) => {
            let saved = ApiKeyRecord {
                limits,
                ..record.clone()
            };
            let values = limit_values(&saved);
            let message =
                "<p class=notice role=status>Saved; every node applies it within 2 s.</p>";
            detail_page(&admin, &saved, &values, &values, message, StatusCode::OK)
        }
        Ok(LimitsChange::NoKey) => no_key(&admin, &key),
        Ok(LimitsChange::Invalid(_, why)) => refused(why),
        Ok(LimitsChange::Busy) => refused("The limits keep changing elsewhere; try again.".into()),
        Err(e) => {
            tracing::error!(error = %e, "dashboard: could not set a key's limits");
            store_error()
        }
    }
}
