//! Logging in and out. A login checks the password with argon2 off the async threads; a client
//! that fails [`MAX_FAILURES`] times in [`WINDOW`] is refused until the window ends.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Form, State};
use axum::http::header::{self, HeaderMap};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::session::{self, Session};
use super::{record, store_error, Admin};
use crate::api::html;
use crate::api::AppState;
use crate::auth::password;
use crate::http::ConnInfo;

pub const MAX_FAILURES: u32 = 5;
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Clients remembered at most; the oldest windows are dropped first.
const REMEMBERED: usize = 10_000;

/// Password checks that run at once: each takes 19 MiB and tens of milliseconds of a core.
const CHECKS_AT_ONCE: usize = 2;

/// Logins per client address: a try is counted when it starts (so that tries sent at once
/// cannot all pass before one fails) and given back when it succeeds; and a bound on the
/// password checks running at once.
pub struct Throttle {
    clients: Mutex<HashMap<IpAddr, (u32, Instant)>>,
    checks: tokio::sync::Semaphore,
}

impl Default for Throttle {
    fn default() -> Self {
        Self {
            clients: Mutex::default(),
            checks: tokio::sync::Semaphore::new(CHECKS_AT_ONCE),
        }
    }
}

impl Throttle {
    /// Counts a try by `client` at `now`; false, counting nothing, when its window has no try
    /// left.
    pub fn take(&self, client: IpAddr, now: Instant) -> bool {
        let mut map = self.clients.lock().expect("throttle lock");
        if map.len() >= REMEMBERED && !map.contains_key(&client) {
            map.retain(|_, (_, since)| now.duration_since(*since) < WINDOW);
            if map.len() >= REMEMBERED {
                // Still full: the client whose window started first is forgotten.
                let oldest = map
                    .iter()
                    .min_by_key(|(_, (_, since))| *since)
                    .map(|(ip, _)| *ip);
                if let Some(ip) = oldest {
                    map.remove(&ip);
                }
            }
        }
        let entry = map.entry(client).or_insert((0, now));
        if now.duration_since(entry.1) >= WINDOW {
            *entry = (0, now);
        }
        if entry.0 >= MAX_FAILURES {
            return false;
        }
        entry.0 += 1;
        true
    }

    /// A login succeeded: the client's count starts again.
    pub fn succeeded(&self, client: IpAddr) {
        self.clients.lock().expect("throttle lock").remove(&client);
    }

    /// Waits for a turn to check a password.
    pub async fn check_turn(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.checks.acquire().await.ok()
    }
}

fn login_page(token: &str, error: Option<&str>, status: StatusCode) -> Response {
    let error = error
        .map(|e| format!("<p class=error role=alert>{}</p>", html::escape(e)))
        .unwrap_or_default();
    let body = format!(
        "{error}<form class=login method=post action=\"/dashboard/login\">\
         <input type=hidden name=csrf value=\"{token}\">\
         <label>User <input name=name autocomplete=username required maxlength=64 autofocus></label>\
         <label>Password <input name=password type=password autocomplete=current-password required></label>\
         <button type=submit>Log in</button></form>\
         <p class=hint>Users are made on the server: <code>verifyd admin create --name NAME</code> \
         (the password on stdin).</p>",
        token = html::escape(token),
    );
    (status, Html(html::page("Log in", "", None, "", &body))).into_response()
}

/// A login form with a fresh cookie nonce and the token bound to it.
fn fresh_form(app: &AppState, error: Option<&str>, status: StatusCode) -> Response {
    let mut nonce = [0u8; 16];
    crate::crypto::os_random(&mut nonce);
    let nonce = hex::encode(nonce);
    let token = session::login_token(&app.dashboard.key, &nonce);
    let mut response = login_page(&token, error, status);
    let cookie = session::set_cookie(session::LOGIN_COOKIE, &nonce, 3600, app.dashboard.secure);
    if let Ok(value) = cookie.parse() {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

pub async fn form(State(app): State<AppState>) -> Response {
    fresh_form(&app, None, StatusCode::OK)
}

#[derive(Deserialize)]
pub struct Login {
    name: String,
    password: String,
    #[serde(default)]
    csrf: String,
}

pub async fn submit(
    State(app): State<AppState>,
    conn: Option<axum::Extension<ConnInfo>>,
    headers: HeaderMap,
    Form(login): Form<Login>,
) -> Response {
    let dashboard = &app.dashboard;
    let nonce = session::cookie_in(&headers, session::LOGIN_COOKIE).unwrap_or("");
    if !session::login_token_matches(&dashboard.key, nonce, &login.csrf) {
        return fresh_form(
            &app,
            Some("The form had expired; log in again."),
            StatusCode::FORBIDDEN,
        );
    }
    let client = conn
        .map(|c| c.peer.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    if !dashboard.logins.take(client, Instant::now()) {
        return fresh_form(
            &app,
            Some("Too many failed logins from this address; wait 15 minutes."),
            StatusCode::TOO_MANY_REQUESTS,
        );
    }
    let name: String = login.name.chars().take(64).collect();
    let user = match dashboard.store.get_admin(&name).await {
        Ok(user) => user,
        Err(e) => {
            tracing::error!(error = %e, "could not read the dashboard's users");
            return store_error();
        }
    };
    let password = login.password;
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    let _turn = dashboard.logins.check_turn().await;
    let matched = tokio::task::spawn_blocking(move || match stored {
        Some(stored) => password::matches(&password, &stored),
        None => {
            password::matches_nothing(&password);
            false
        }
    })
    .await
    .unwrap_or(false);
    let known = user.is_some();
    let Some(user) = user.filter(|_| matched) else {
        tracing::info!(client = %client, "dashboard login refused: wrong user or password");
        // What was typed as the name may be a password typed in the wrong field: it is written
        // down only when it names a user.
        let target = if known {
            name.as_str()
        } else {
            "(no such user)"
        };
        let from = format!("from {client}");
        if let Err(r) = record(&app, "-", "login.failed", target, &from).await {
            return r.into_response();
        }
        return fresh_form(
            &app,
            Some("Wrong user or password."),
            StatusCode::UNAUTHORIZED,
        );
    };
    dashboard.logins.succeeded(client);
    if let Err(r) = record(
        &app,
        &user.name,
        "login",
        &user.name,
        &format!("from {client}"),
    )
    .await
    {
        return r.into_response();
    }
    let session = Session::new(&user.name, chrono::Utc::now().timestamp());
    let value = session.encode(
        &dashboard.key,
        &session::password_stamp(&user.password_hash),
    );
    let mut response = Redirect::to("/dashboard").into_response();
    let headers = response.headers_mut();
    for cookie in [
        session::set_cookie(
            session::COOKIE,
            &value,
            session::LIFETIME_SECS,
            dashboard.secure,
        ),
        session::set_cookie(session::LOGIN_COOKIE, "", 0, dashboard.secure),
    ] {
        if let Ok(v) = cookie.parse() {
            headers.append(header::SET_COOKIE, v);
        }
    }
    response
}

#[derive(Deserialize)]
pub struct Token {
    #[serde(default)]
    pub csrf: String,
}

/// Ends the session in this browser. The cookie stays valid until it ends if it was copied:
/// `verifyd admin create --replace` (a new password) ends every session of the user.
pub async fn logout(
    State(app): State<AppState>,
    admin: Admin,
    Form(form): Form<Token>,
) -> Response {
    if let Err(r) = admin.check_form(&app, &form.csrf) {
        return r.into_response();
    }
    if let Err(r) = admin.audit(&app, "logout", &admin.session.admin, "").await {
        return r.into_response();
    }
    let mut response = Redirect::to("/dashboard/login").into_response();
    let cookie = session::set_cookie(session::COOKIE, "", 0, app.dashboard.secure);
    if let Ok(v) = cookie.parse() {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_that_keeps_failing_waits_for_the_window_to_end() {
        let t = Throttle::default();
        let client: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let start = Instant::now();
        for _ in 0..MAX_FAILURES {
            assert!(t.take(client, start));
        }
        assert!(!t.take(client, start + Duration::from_secs(60)));
        assert!(t.take(other, start));
        assert!(
            t.take(client, start + WINDOW),
            "a new window counts from one"
        );
    }

    #[test]
    fn a_login_gives_back_the_tries_before_it() {
        let t = Throttle::default();
        let client: IpAddr = "192.0.2.1".parse().unwrap();
        let now = Instant::now();
        for _ in 0..MAX_FAILURES {
            t.take(client, now);
        }
        t.succeeded(client);
        assert!(t.take(client, now));
    }

    #[test]
    fn a_full_table_forgets_its_oldest_client_not_the_new_one() {
        let t = Throttle::default();
        let start = Instant::now();
        for n in 0..REMEMBERED as u32 {
            let ip = IpAddr::from((0x0a00_0000 + n).to_be_bytes());
            for _ in 0..MAX_FAILURES {
                t.take(ip, start + Duration::from_millis(u64::from(n.min(999))));
            }
        }
        let newcomer: IpAddr = "192.0.2.9".parse().unwrap();
        assert!(t.take(newcomer, start + Duration::from_secs(2)));
        let first = IpAddr::from(0x0a00_0000u32.to_be_bytes());
        assert!(
            t.take(first, start + Duration::from_secs(2)),
            "the oldest was forgotten"
        );
        let late = IpAddr::from((0x0a00_0000u32 + 5000).to_be_bytes());
        assert!(
            !t.take(late, start + Duration::from_secs(2)),
            "the others are kept"
        );
    }
}
