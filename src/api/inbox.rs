//! The inbox channel's pages: `GET /inbox` for a person, `GET /inbox/messages` for tests and tools.
//! They show PINs in clear, so they answer only requests addressed to this machine by an address
//! or name (Host header) that a web page elsewhere cannot send: a page that rebinds its own name
//! to 127.0.0.1 still sends its own name.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::header::HOST;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use super::html::{self, escape};
use super::AppState;
use crate::config::InboxHost;
use crate::http::refusals::{self, Reason};
use crate::http::ConnInfo;
use crate::store::{InboxLog, InboxMessage};

const DEFAULT_LIMIT: usize = 200;
const MAX_LIMIT: usize = 5000;

/// The inbox's log and who may read it.
pub struct Inbox {
    pub log: Arc<dyn InboxLog>,
    pub access: InboxAccess,
}

/// The hosts the inbox answers to: loopback addresses, `localhost`, the listen address, the
/// address a connection reached, and names and addresses the operator allowed (`--inbox-host`).
pub struct InboxAccess {
    listen: IpAddr,
    names: Vec<InboxHost>,
}

impl InboxAccess {
    pub fn new(listen: IpAddr, names: Vec<InboxHost>) -> Self {
        Self { listen, names }
    }

    /// Whether a request for `host` (Host header or HTTP/2 authority, maybe with a port) that
    /// reached the local address `local` may read the inbox.
    pub fn allows(&self, host: Option<&str>, local: Option<IpAddr>) -> bool {
        let Some(name) = host.and_then(host_name) else {
            return false;
        };
        if let Ok(ip) = name.parse::<IpAddr>() {
            let ip = ip.to_canonical();
            let listen = self.listen.to_canonical();
            return ip.is_loopback()
                || (ip == listen && !listen.is_unspecified())
                || Some(ip) == local.map(|l| l.to_canonical())
                || self.names.iter().any(|n| n.as_str() == ip.to_string());
        }
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        name == "localhost" || self.names.iter().any(|n| n.as_str() == name)
    }
}

/// The name or address of a Host value, without its port and the brackets of an IPv6 address.
fn host_name(host: &str) -> Option<&str> {
    if let Some(rest) = host.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        return (after.is_empty() || after.starts_with(':')).then_some(inside);
    }
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        Some(_) => return None,
        None => host,
    };
    (!name.is_empty()).then_some(name)
}

pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/inbox", get(page))
        .route("/inbox/messages", get(messages))
        .route_layer(middleware::from_fn_with_state(state, only_local_hosts))
}

async fn only_local_hosts(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let Some(inbox) = &app.inbox else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let conn = req.extensions().get::<ConnInfo>().copied();
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| req.headers().get(HOST).and_then(|h| h.to_str().ok()));
    if inbox.access.allows(host, conn.map(|c| c.local.ip())) {
        return next.run(req).await;
    }
    let client = conn.map(|c| c.peer.ip());
    if app.refusals.count(client, Reason::InboxHost) {
        let shown: String = host.unwrap_or("").chars().take(64).collect();
        tracing::info!(client = %refusals::shown(client), host = ?shown, "inbox refused: the Host header names neither this machine nor an allowed name");
    }
    (
        StatusCode::FORBIDDEN,
        "The inbox answers only requests addressed to a loopback address, localhost or the \
         address verifyd listens on (Host header). Allow another name with --inbox-host.\n",
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
pub struct InboxQuery {
    to: Option<String>,
    limit: Option<usize>,
}

/// Accepts the number as people write it (`+44 7700…`) and as the API stores it (`447700…`),
/// or an e-mail address. `None` when it has no digits: that is refused rather than read as
/// "every number".
fn normalise_to(raw: &str) -> Option<String> {
    if let Some(address) = crate::domain::EmailAddress::parse(raw) {
        return Some(address.as_str().to_owned());
    }
    let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
    (!digits.is_empty()).then_some(digits)
}

async fn load(app: &AppState, q: &InboxQuery) -> Result<Vec<InboxMessage>, Response> {
    let Some(inbox) = &app.inbox else {
        return Err(StatusCode::NOT_FOUND.into_response());
    };
    let to = match q.to.as_deref().map(normalise_to) {
        Some(None) => {
            return Err((
                StatusCode::BAD_REQUEST,
                "`to` must be a phone number or an e-mail address; leave it out to list every \
                 message\n",
            )
                .into_response())
        }
        Some(Some(to)) => Some(to),
        None => None,
    };
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    inbox.log.list(to.as_deref(), limit).await.map_err(|e| {
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
    let body = format!(
        "<p class=hint>Every SMS and call verifyd would have sent, newest first. This page \
         refreshes every 2 seconds.</p>\
         <table id=inbox><thead><tr><th>Time (UTC)</th><th>Channel</th><th>To</th><th>From</th>\
         <th>Message</th><th>Locale</th><th>Request</th></tr></thead><tbody>{rows}</tbody></table>"
    );
    // It stays open without a login on this machine: the dashboard's look, not its session.
    let head = "<meta http-equiv=\"refresh\" content=\"2\">";
    Html(html::page("Inbox", "/inbox", None, head, &body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access() -> InboxAccess {
        InboxAccess::new(
            "192.0.2.10".parse().unwrap(),
            vec![
                InboxHost::parse("verifyd.test").unwrap(),
                InboxHost::parse("198.51.100.7").unwrap(),
                InboxHost::parse("2001:db8::7").unwrap(),
            ],
        )
    }

    #[test]
    fn loopback_localhost_the_listen_address_and_allowed_names_may_read_the_inbox() {
        let a = access();
        for host in [
            "127.0.0.1",
            "127.0.0.1:8080",
            "127.1.2.3:80",
            "[::1]:8080",
            "[::1]",
            "localhost",
            "LOCALHOST:8080",
            "localhost.",
            "192.0.2.10:8080",
            "verifyd.test:8080",
            "Verifyd.Test",
            "198.51.100.7:8081",
            "[2001:db8::7]:8081",
        ] {
            assert!(a.allows(Some(host), None), "{host}");
        }
    }

    #[test]
    fn other_names_no_host_and_malformed_hosts_are_refused() {
        let a = access();
        for host in [
            "attacker.example",
            "attacker.example:8080",
            "localhost.attacker.example",
            "192.0.2.11",
            "",
            "[::1",
            "127.0.0.1:80x",
            "verifyd.test.evil",
        ] {
            assert!(!a.allows(Some(host), None), "{host}");
        }
        assert!(!a.allows(None, None));
    }

    #[test]
    fn the_address_a_connection_reached_is_allowed_when_listening_on_every_address() {
        let a = InboxAccess::new("0.0.0.0".parse().unwrap(), vec![]);
        let local = Some("198.51.100.4".parse().unwrap());
        assert!(a.allows(Some("198.51.100.4:8080"), local));
        assert!(!a.allows(Some("198.51.100.5:8080"), local));
        assert!(
            !a.allows(Some("0.0.0.0:8080"), None),
            "no connection reaches 0.0.0.0"
        );
    }

    #[test]
    fn a_to_without_digits_is_an_error_not_every_number() {
        assert_eq!(normalise_to("+44 7700 900123").unwrap(), "447700900123");
        assert_eq!(normalise_to(""), None);
        assert_eq!(normalise_to("abc"), None);
        assert_eq!(normalise_to("+"), None);
        assert_eq!(
            normalise_to("alice@example.com").as_deref(),
            Some("alice@example.com")
        );
    }
}
