//! The inbox channel's pages: `GET /inbox` for a person, `GET /inbox/messages` for tests and tools.
//! They show PINs in clear; the server warns when they are reachable beyond loopback.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use super::AppState;
use crate::store::InboxMessage;

const DEFAULT_LIMIT: usize = 200;
const MAX_LIMIT: usize = 5000;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/inbox", get(page))
        .route("/inbox/messages", get(messages))
}

#[derive(Debug, Deserialize)]
pub struct InboxQuery {
    to: Option<String>,
    limit: Option<usize>,
}

/// Accepts the number as people write it (`+44 7700…`) and as the API stores it (`447700…`).
fn normalise_to(raw: &str) -> String {
    raw.chars().filter(char::is_ascii_digit).collect()
}

async fn load(app: &AppState, q: &InboxQuery) -> Result<Vec<InboxMessage>, Response> {
    let Some(log) = &app.inbox else {
        return Err(StatusCode::NOT_FOUND.into_response());
    };
    let to = q.to.as_deref().map(normalise_to).filter(|t| !t.is_empty());
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    log.list(to.as_deref(), limit).await.map_err(|e| {
        tracing::error!(error = %e, "could not read the inbox");
        StatusCode::INTERNAL_SERVER_ERROR.into_response()
    })
}

async fn messages(State(app): State<AppState>, Query(q): Query<InboxQuery>) -> Response {
    match load(&app, &q).await {
        Ok(list) => Json(list).into_response(),
        Err(r) => r,
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn page(State(app): State<AppState>, Query(q): Query<InboxQuery>) -> Response {
    let list = match load(&app, &q).await {
        Ok(list) => list,
        Err(r) => return r,
    };
    let mut rows = String::new();
    for m in &list {
        let icon = if m.channel == "voice" {
            "📞 call"
        } else {
            "✉️ SMS"
        };
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>+{}</td><td>{}</td><td class=text>{}</td><td>{}</td><td><code>{}</code></td></tr>\n",
            escape(&m.created_at),
            icon,
            escape(&m.to),
            escape(&m.from),
            escape(&m.text),
            escape(&m.locale),
            escape(&m.request_id),
        ));
    }
    if list.is_empty() {
        rows.push_str("<tr><td colspan=7 class=empty>No messages yet. Start a verification and it shows here.</td></tr>");
    }
    Html(format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="2">
<title>verifyd inbox</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ text-align: left; padding: .4rem .6rem; border-bottom: 1px solid #ddd; vertical-align: top; }}
th {{ background: #f4f4f4; }}
td.text {{ font-size: 1.05rem; }}
td.empty {{ color: #777; text-align: center; padding: 2rem; }}
</style></head>
<body>
<h1>verifyd inbox</h1>
<p>Every SMS and call verifyd would have sent, newest first. This page refreshes every 2 seconds.</p>
<table>
<tr><th>Time (UTC)</th><th>Channel</th><th>To</th><th>From</th><th>Message</th><th>Locale</th><th>Request</th></tr>
{rows}</table>
</body></html>"#
    ))
    .into_response()
}
