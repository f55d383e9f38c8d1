//! Finding a verification (by number, request id, status and date) and its timeline: its
//! start, every step, every check and every try to deliver it with its channel, route, state and
//! receipt. PINs are never shown: the store keeps none in clear.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{NaiveDate, TimeZone, Utc};
use serde::Deserialize;

use super::{store_error, Admin};
use crate::api::html::escape;
use crate::api::AppState;
use crate::cli::deliveries;
use crate::config::delivery::Kind;
use crate::domain::{Instant, Verification};
use crate::store::body::status_code;
use crate::store::report::SearchFilter;

/// Most verifications one search shows.
const SHOWN: usize = 100;

/// Each status's code (as stored) and name.
const STATUSES: [(i64, &str); 6] = [
    (0, "in progress"),
    (1, "success"),
    (2, "failed"),
    (3, "expired"),
    (4, "cancelled"),
    (-1, "unreadable"),
];

fn status_name(code: i64) -> &'static str {
    STATUSES
        .iter()
        .find(|(c, _)| *c == code)
        .map_or("unknown", |(_, n)| n)
}

fn time(at: Instant) -> String {
    at.format("%Y-%m-%d %H:%M:%S").to_string()
}

#[derive(Debug, Default, Deserialize)]
pub struct SearchForm {
    #[serde(default)]
    number: String,
    #[serde(default)]
    request_id: String,
    #[serde(default)]
    status: String,
    /// A day, `YYYY-MM-DD` (UTC), from its start.
    #[serde(default)]
    from: String,
    /// A day, `YYYY-MM-DD` (UTC), to its end.
    #[serde(default)]
    to: String,
}

/// The search a form asks for, or what is wrong with it.
fn parse(form: &SearchForm) -> Result<SearchFilter, String> {
    let mut filter = SearchFilter::default();
    let number = form.number.trim();
    if !number.is_empty() {
        let digits: String = number.chars().filter(char::is_ascii_digit).collect();
        if digits.is_empty() {
            return Err(format!("{number:?} is not a phone number"));
        }
        filter.number = Some(digits);
    }
    let id = form.request_id.trim();
    if !id.is_empty() {
        filter.request_id = Some(deliveries::parse_request_id(id).ok_or_else(|| {
            format!("{id:?} is not a request id (32 hex characters, or a Verify v2 UUID)")
        })?);
    }
    let status = form.status.trim();
    if !status.is_empty() {
        filter.state = Some(
            STATUSES
                .iter()
                .find(|(_, name)| *name == status)
                .map(|(code, _)| *code)
                .ok_or_else(|| format!("{status:?} is not a status"))?,
        );
    }
    let day = |raw: &str, what: &str| -> Result<Option<NaiveDate>, String> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Ok(None);
        }
        NaiveDate::parse_from_str(raw, "%Y-%m-%d")
            .map(Some)
            .map_err(|_| format!("{what} {raw:?} is not a date (YYYY-MM-DD)"))
    };
    let midnight = |d: NaiveDate| Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight"));
    filter.from = day(&form.from, "from")?.map(midnight);
    filter.until = day(&form.to, "to")?
        .and_then(|d| d.succ_opt())
        .map(midnight);
    Ok(filter)
}

fn search_form(form: &SearchForm) -> String {
    let mut options = String::from("<option value=\"\">any</option>");
    for (_, name) in STATUSES {
        let selected = if form.status == name { " selected" } else { "" };
        options.push_str(&format!("<option{selected}>{name}</option>"));
    }
    format!(
        "<form id=search class=filters method=get action=\"/dashboard/verifications\">\
         <label>Number <input name=number value=\"{}\" placeholder=\"+447700900123\"></label>\
         <label>Request id <input name=request_id value=\"{}\" size=34></label>\
         <label>Status <select name=status>{options}</select></label>\
         <label>From <input type=date name=from value=\"{}\"></label>\
         <label>To <input type=date name=to value=\"{}\"></label>\
         <button type=submit>Search</button></form>",
        escape(&form.number),
        escape(&form.request_id),
        escape(&form.from),
        escape(&form.to),
    )
}

pub async fn search(
    State(app): State<AppState>,
    admin: Admin,
    Query(form): Query<SearchForm>,
) -> Response {
    let mut body = search_form(&form);
    let filter = match parse(&form) {
        Ok(filter) => filter,
        Err(why) => {
            body.push_str(&format!("<p class=error role=alert>{}</p>", escape(&why)));
            let page = admin.page("Verifications", "/dashboard/verifications", "", &body);
            return (StatusCode::BAD_REQUEST, page).into_response();
        }
    };
    let found = match app.dashboard.store.search(&filter, SHOWN).await {
        Ok(found) => found,
        Err(e) => {
            tracing::error!(error = %e, "dashboard: could not search verifications");
            return store_error();
        }
    };
    body.push_str(
        "<table id=results><thead><tr><th>Started (UTC)</th><th>Request</th><th>Number</th>\
         <th>Status</th><th>API key</th></tr></thead><tbody>",
    );
    for f in &found {
        body.push_str(&format!(
            "<tr><td>{}</td><td><a class=request href=\"/dashboard/verifications/{id}\"><code>{id}</code></a></td>\
             <td>+{}</td><td><span class=\"status s{}\">{}</span></td><td><code>{}</code></td></tr>",
            time(f.submitted_at),
            escape(&f.number),
            f.state,
            status_name(f.state),
            escape(&f.account),
            id = escape(&f.request_id),
        ));
    }
    if found.is_empty() {
        body.push_str("<tr><td colspan=5 class=empty>No verification matches.</td></tr>");
    }
    body.push_str("</tbody></table>");
    if found.len() == SHOWN {
        body.push_str(&format!(
            "<p class=hint>The newest {SHOWN} are shown; narrow the search to see others.</p>"
        ));
    }
    admin.page("Verifications", "/dashboard/verifications", "", &body)
}

/// One row of a timeline.
struct Entry {
    at: Instant,
    what: String,
    detail: String,
}

fn entries(v: &Verification, tries: &[(Instant, serde_json::Value)]) -> Vec<Entry> {
    let mut out = vec![Entry {
        at: v.submitted_at,
        what: "started".into(),
        detail: format!(
            "{} step(s), {}-digit code, {} tries per code",
            v.steps.len(),
            v.policy.code_length.get(),
            v.policy.tries_per_code
        ),
    }];
    for (n, event) in v.events.iter().enumerate() {
        let to = v.steps.get(n).map_or_else(String::new, |s| match &s.to {
            crate::domain::Destination::Phone(p) => format!("+{}", p.digits()),
            other => other.key().to_owned(),
        });
        out.push(Entry {
            at: event.at,
            what: format!("step {}", n + 1),
            detail: format!("{} to {to}", Kind::of(event.channel).as_str()),
        });
    }
    for check in &v.checks {
        out.push(Entry {
            at: check.at,
            what: "check".into(),
            detail: if check.valid {
                "right code".into()
            } else {
                format!("wrong code ({} digits)", check.code_len)
            },
        });
    }
    for (at, t) in tries {
        let field = |name: &str| t[name].as_str().unwrap_or("").to_owned();
        let mut detail = format!("{} on channel {}", field("kind"), field("channel"));
        if !field("route").is_empty() {
            detail.push_str(&format!(", route {}", field("route")));
        }
        detail.push_str(&format!(": {}", field("state")));
        if !field("message_id").is_empty() {
            detail.push_str(&format!(", message {}", field("message_id")));
        }
        if !field("error").is_empty() {
            detail.push_str(&format!(" ({})", field("error")));
        }
        if field("updated_at") != field("created_at") {
            detail.push_str(&format!(", last receipt {}", field("updated_at")));
        }
        out.push(Entry {
            at: *at,
            what: "delivery".into(),
            detail,
        });
    }
    if let Some(end) = v.finalized_at {
        out.push(Entry {
            at: end,
            what: "ended".into(),
            detail: status_name(status_code(v.status)).into(),
        });
    }
    out.sort_by_key(|e| e.at);
    out
}

pub async fn timeline(
    State(app): State<AppState>,
    admin: Admin,
    Path(raw): Path<String>,
) -> Response {
    let not_found = |admin: &Admin| {
        let body = format!(
            "<p class=error role=alert>No verification {} is stored (it may have ended longer \
             ago than the retention period).</p>",
            escape(&raw)
        );
        let page = admin.page("Verification", "/dashboard/verifications", "", &body);
        (StatusCode::NOT_FOUND, page).into_response()
    };
    let Some(id) = deliveries::parse_request_id(&raw) else {
        return not_found(&admin);
    };
    let store = app.dashboard.store.as_ref();
    let v = match store.verification_any(&id).await {
        Ok(Some(v)) => v,
        Ok(None) => return not_found(&admin),
        Err(e) => {
            tracing::error!(error = %e, "dashboard: could not read a verification");
            return store_error();
        }
    };
    let tries = match deliveries::records(store, &id).await {
        Ok(tries) => tries,
        Err(e) => {
            tracing::error!(error = %e, "dashboard: could not read a verification's tries");
            return store_error();
        }
    };
    let mut body = format!(
        "<dl class=facts><dt>Request</dt><dd><code>{}</code></dd><dt>Status</dt><dd>\
         <span class=\"status s{code}\">{}</span></dd><dt>API key</dt><dd><code>{}</code></dd>\
         <dt>Reference</dt><dd>{}</dd></dl>",
        escape(id.as_str()),
        status_name(status_code(v.status)),
        escape(&v.account),
        escape(v.reference.as_deref().unwrap_or("—")),
        code = status_code(v.status),
    );
    body.push_str(
        "<table id=timeline><thead><tr><th>Time (UTC)</th><th>What</th><th>Detail</th></tr>\
         </thead><tbody>",
    );
    for e in entries(&v, &tries) {
        body.push_str(&format!(
            "<tr class=entry><td>{}</td><td>{}</td><td>{}</td></tr>",
            time(e.at),
            escape(&e.what),
            escape(&e.detail)
        ));
    }
    body.push_str("</tbody></table>");
    admin.page("Verification", "/dashboard/verifications", "", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(number: &str, status: &str, from: &str, to: &str) -> SearchForm {
        SearchForm {
            number: number.into(),
            status: status.into(),
            from: from.into(),
            to: to.into(),
            ..SearchForm::default()
        }
    }

    #[test]
    fn a_search_takes_numbers_as_people_write_them_and_whole_days() {
        let f = parse(&form(
            "+44 7700 900123",
            "success",
            "2026-12-01",
            "2026-12-02",
        ))
        .unwrap();
        assert_eq!(f.number.as_deref(), Some("447700900123"));
        assert_eq!(f.state, Some(1));
        assert_eq!(f.from.unwrap().to_rfc3339(), "2026-12-01T00:00:00+00:00");
        assert_eq!(
            f.until.unwrap().to_rfc3339(),
            "2026-12-03T00:00:00+00:00",
            "to the end of the last day"
        );
        assert_eq!(
            parse(&SearchForm::default()).unwrap(),
            SearchFilter::default()
        );
    }

    #[test]
    fn a_wrong_field_is_named_not_ignored() {
        assert!(parse(&form("abc", "", "", ""))
            .unwrap_err()
            .contains("phone number"));
        assert!(parse(&form("", "done", "", ""))
            .unwrap_err()
            .contains("status"));
        assert!(parse(&form("", "", "1/12/2026", ""))
            .unwrap_err()
            .contains("from"));
        let bad_id = SearchForm {
            request_id: "xyz".into(),
            ..SearchForm::default()
        };
        assert!(parse(&bad_id).unwrap_err().contains("request id"));
    }
}
