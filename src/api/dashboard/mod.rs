//! The dashboard at `/dashboard`: server-rendered pages for operators, behind its own logins
//! (`verifyd admin create`), never an API key. Sessions are signed cookies ([`session`]); every
//! form carries a token bound to its session, and a POST from another origin is refused.
//! Every change an admin makes is written to the audit log before the page answers.

mod assets;
mod audit;
mod channels;
mod keys;
mod login;
mod overview;
pub mod report;
pub mod session;
mod verifications;

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request};
use axum::http::header::{self, HeaderValue};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;

use super::html::{self, Viewer};
use super::AppState;
use crate::crypto::ServerKey;
use crate::store::admin::AuditEntry;
use crate::store::Store;
use session::Session;

/// What the dashboard's pages reach beyond the API's state.
pub struct Dashboard {
    pub store: Arc<dyn Store>,
    pub key: ServerKey,
    /// Whether cookies are marked Secure (the server speaks HTTPS).
    pub secure: bool,
    pub logins: login::Throttle,
}

impl Dashboard {
    pub fn new(store: Arc<dyn Store>, key: ServerKey, secure: bool) -> Self {
        crate::auth::password::warm();
        Self {
            store,
            key,
            secure,
            logins: login::Throttle::default(),
        }
    }
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/dashboard", get(overview::page))
        .route("/dashboard/login", get(login::form).post(login::submit))
        .route("/dashboard/logout", post(login::logout))
        .route("/dashboard/verifications", get(verifications::search))
        .route(
            "/dashboard/verifications/{id}",
            get(verifications::timeline),
        )
        .route("/dashboard/keys", get(keys::list).post(keys::create))
        .route("/dashboard/keys/{key}", get(keys::detail))
        .route("/dashboard/keys/{key}/state", post(keys::set_state))
        .route("/dashboard/keys/{key}/rotate", post(keys::rotate))
        .route("/dashboard/keys/{key}/limits", post(keys::set_limits))
        .route("/dashboard/channels", get(channels::list))
        .route("/dashboard/channels/{name}/test", post(channels::send_test))
        .route("/dashboard/audit", get(audit::page))
        .route("/dashboard/assets/{file}", get(assets::serve))
        .route_layer(middleware::from_fn(guard))
}

/// The policy of every dashboard response: scripts, styles and forms of this origin only, no
/// framing, nothing cached; and no POST from another origin.
async fn guard(req: Request, next: Next) -> Response {
    let authority = req.uri().authority().map(|a| a.as_str().to_owned());
    if req.method() == Method::POST && !same_origin(req.headers(), authority.as_deref()) {
        return (
            StatusCode::FORBIDDEN,
            "The dashboard takes forms only from its own pages (Origin header).\n",
        )
            .into_response();
    }
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// A request without Origin (an older browser) passes: the form token still protects it. One
/// with Origin must name the host it was sent to: HTTP/2's authority, else the Host header.
fn same_origin(headers: &axum::http::HeaderMap, authority: Option<&str>) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
        return true;
    };
    let host = authority.or_else(|| headers.get(header::HOST).and_then(|h| h.to_str().ok()));
    let Some(host) = host else {
        return false;
    };
    let authority = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    authority.is_some_and(|a| a.eq_ignore_ascii_case(host))
}

/// A request from a logged-in admin. A request without a valid session is sent to the login
/// page (a GET) or refused (anything else).
pub struct Admin {
    pub session: Session,
    pub csrf: String,
}

impl Admin {
    pub fn viewer(&self) -> Viewer<'_> {
        Viewer {
            admin: &self.session.admin,
            csrf: &self.csrf,
        }
    }

    /// A page of the dashboard for this admin.
    pub fn page(&self, title: &str, current: &str, head: &str, body: &str) -> Response {
        Html(html::page(title, current, Some(&self.viewer()), head, body)).into_response()
    }

    /// Refuses a form whose token is not this session's.
    pub fn check_form(&self, app: &AppState, token: &str) -> Result<(), Refused> {
        if self.session.csrf_matches(&app.dashboard.key, token) {
            Ok(())
        } else {
            Err(Refused::new((
                StatusCode::FORBIDDEN,
                "This form is out of date or not from this dashboard; reload the page and try again.\n",
            )))
        }
    }

    /// Writes an admin action to the audit log. Callers record an action before doing it, so
    /// that none is done unrecorded: one the store cannot record is not done.
    pub async fn audit(
        &self,
        app: &AppState,
        action: &str,
        target: &str,
        detail: &str,
    ) -> Result<(), Refused> {
        record(app, &self.session.admin, action, target, detail).await
    }
}

/// Writes one audit entry; an error page when the store refuses it.
pub async fn record(
    app: &AppState,
    admin: &str,
    action: &str,
    target: &str,
    detail: &str,
) -> Result<(), Refused> {
    let entry = AuditEntry {
        at: chrono::Utc::now(),
        admin: admin.to_owned(),
        action: action.to_owned(),
        target: target.to_owned(),
        detail: detail.to_owned(),
    };
    app.dashboard.store.record_audit(entry).await.map_err(|e| {
        tracing::error!(error = %e, action, "could not write the audit log; the action was not done");
        Refused(Box::new(store_error()))
    })
}

/// A form refused, or an action not done: the page that says so.
pub struct Refused(Box<Response>);

impl Refused {
    pub fn new(r: impl IntoResponse) -> Self {
        Refused(Box::new(r.into_response()))
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        *self.0
    }
}

/// The answer to a store failure; the caller has logged it.
pub fn store_error() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Html("<p>The database could not be reached; nothing was changed. Try again.</p>"),
    )
        .into_response()
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Response> {
        let refuse = |parts: &Parts| {
            if parts.method == Method::GET {
                Redirect::to("/dashboard/login").into_response()
            } else {
                (StatusCode::UNAUTHORIZED, "Log in to the dashboard first.\n").into_response()
            }
        };
        let Some(cookie) = session::cookie_in(&parts.headers, session::COOKIE) else {
            return Err(refuse(parts));
        };
        let Some(unverified) = Session::parse(cookie) else {
            return Err(refuse(parts));
        };
        let user = match app.dashboard.store.get_admin(unverified.admin()).await {
            Ok(Some(user)) => user,
            Ok(None) => return Err(refuse(parts)),
            Err(e) => {
                tracing::error!(error = %e, "could not read the dashboard's users");
                return Err(store_error());
            }
        };
        let stamp = session::password_stamp(&user.password_hash);
        let Some(session) =
            unverified.verify(&app.dashboard.key, &stamp, chrono::Utc::now().timestamp())
        else {
            return Err(refuse(parts));
        };
        let csrf = session.csrf_token(&app.dashboard.key);
        Ok(Admin { session, csrf })
    }
}

/// A form's hidden token field.
pub fn csrf_field(admin: &Admin) -> String {
    format!(
        "<input type=hidden name=csrf value=\"{}\">",
        html::escape(&admin.csrf)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, host.parse().unwrap());
        if let Some(o) = origin {
            h.insert(header::ORIGIN, o.parse().unwrap());
        }
        h
    }

    #[test]
    fn a_post_from_another_origin_is_refused() {
        let same = |origin, host| same_origin(&headers(origin, host), None);
        assert!(same(None, "127.0.0.1:8080"));
        assert!(same(Some("http://127.0.0.1:8080"), "127.0.0.1:8080"));
        assert!(same(Some("https://verify.example"), "Verify.Example"));
        assert!(!same(Some("http://evil.example"), "127.0.0.1:8080"));
        assert!(!same(Some("null"), "127.0.0.1:8080"));
        assert!(!same(Some("http://127.0.0.1:8081"), "127.0.0.1:8080"));
    }

    #[test]
    fn an_http2_request_is_held_against_its_authority() {
        let mut h = HeaderMap::new();
        h.insert(header::ORIGIN, "https://verify.example".parse().unwrap());
        assert!(
            same_origin(&h, Some("verify.example")),
            "no Host header in HTTP/2"
        );
        assert!(!same_origin(&h, Some("other.example")));
        assert!(!same_origin(&h, None));
    }
}
