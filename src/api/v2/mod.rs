//! The Vonage Verify v2 surface: `POST /v2/verify`, `POST|GET|DELETE /v2/verify/{id}`,
//! `POST /v2/verify/{id}/next_workflow`, the templates (`templates.rs`) and verifyd's attempts
//! summary (`attempts.rs`). JSON in and out, errors as `application/problem+json`,
//! request ids as UUIDs (the same 16 bytes Verify v1 shows as 32 hex digits).

mod attempts;
mod auth;
pub mod callbacks;
pub mod error;
mod fields;
mod report;
pub mod request;
mod templates;

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use self::error::{InvalidParameter, V2Error};
use super::AppState;
use crate::api::body;
use crate::auth::Account;
use crate::domain::{Candidate, RequestId, Status};
use crate::service::{CheckResult, ControlCommand, ControlResult, ServiceError, StartOutcome};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v2/verify", post(create).fallback(|h| refused(h, "POST")))
        // The specification's server is `…/v2/verify` and the start's path `/`.
        .route("/v2/verify/", post(create).fallback(|h| refused(h, "POST")))
        .route(
            "/v2/verify/{id}",
            post(check)
                .delete(cancel)
                .get(show)
                .fallback(|h| refused(h, "GET,HEAD,POST,DELETE")),
        )
        .route(
            "/v2/verify/{id}/next_workflow",
            post(next_workflow).fallback(|h| refused(h, "POST")),
        )
        .route(
            "/v2/verify/attempts/summary",
            get(attempts::summary).fallback(|h| refused(h, "GET,HEAD")),
        )
        .route(
            "/v2/verify/templates",
            get(templates::list)
                .post(templates::create)
                .fallback(|h| refused(h, "GET,HEAD,POST")),
        )
        .route(
            "/v2/verify/templates/{template_id}",
            get(templates::show)
                .patch(templates::update)
                .delete(templates::delete)
                .fallback(|h| refused(h, "GET,HEAD,PATCH,DELETE")),
        )
        .route(
            "/v2/verify/templates/{template_id}/template_fragments",
            get(templates::list_fragments)
                .post(templates::create_fragment)
                .fallback(|h| refused(h, "GET,HEAD,POST")),
        )
        .route(
            "/v2/verify/templates/{template_id}/template_fragments/{fragment_id}",
            get(templates::show_fragment)
                .patch(templates::update_fragment)
                .delete(templates::delete_fragment)
                .fallback(|h| refused(h, "GET,HEAD,PATCH,DELETE")),
        )
        .layer(axum::extract::DefaultBodyLimit::max(body::MAX_BODY))
}

/// A method the path does not take: v2's problem, with `Allow` naming the methods it does
/// (HEAD with GET, as axum serves it), as RFC 9110 asks of a 405.
async fn refused(headers: HeaderMap, allow: &'static str) -> Response {
    let mut answer = error::restate(
        StatusCode::METHOD_NOT_ALLOWED.into_response(),
        &instance(&headers),
    );
    answer.headers_mut().insert(
        axum::http::header::ALLOW,
        axum::http::HeaderValue::from_static(allow),
    );
    answer
}

/// A request id as v2 shows it.
pub fn uuid_of(id: &RequestId) -> String {
    uuid::Uuid::from_bytes(id.bytes()).hyphenated().to_string()
}

/// A request id from a path: a hyphenated UUID, in either case.
fn parse_id(raw: &str) -> Option<RequestId> {
    let uuid = uuid::Uuid::try_parse(raw).ok()?;
    (raw.len() == 36).then(|| RequestId::from_bytes(uuid.into_bytes()))
}

/// The id the request's log lines carry, which the answer names as `instance`.
fn instance(headers: &HeaderMap) -> String {
    headers
        .get(&crate::api::request_id::REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// Writes the answer, and logs a refusal: the one place a v2 error is logged.
fn finish(instance: &str, result: Result<Response, V2Error>) -> Response {
    match result {
        Ok(answer) => answer,
        Err(e) => {
            if e != V2Error::Internal {
                tracing::info!(status = e.status().as_u16(), reason = %e, "v2 request refused");
            }
            e.response(instance)
        }
    }
}

/// A service call that did not run: a limit (429), or a failure the caller cannot fix.
fn service_failed(e: ServiceError) -> V2Error {
    match e {
        ServiceError::Limited(refused) => V2Error::Throttled {
            retry_after_secs: refused.retry_after_ms.div_ceil(1_000).max(1),
        },
        e => internal(e),
    }
}

/// Logs a failure the caller cannot fix, with its cause, and answers 500.
fn internal(e: impl std::fmt::Display) -> V2Error {
    tracing::error!(error = %e, "internal error");
    V2Error::Internal
}

/// A call whose caller is known: its account, its body, and the id its answer names as
/// `instance`. A caller that is not known is answered 401 before any handler runs.
struct Call {
    account: Account,
    body: axum::body::Bytes,
    instance: String,
    /// `Verifyd-Client-Ip`, verifyd's own header for the address of the person asking, for
    /// callers that cannot add the body's `ip_address`.
    client_ip: Option<String>,
}

/// The header a caller names the person's address in.
const CLIENT_IP_HEADER: &str = "verifyd-client-ip";

impl axum::extract::FromRequest<AppState> for Call {
    type Rejection = Response;

    async fn from_request(req: Request, app: &AppState) -> Result<Self, Response> {
        let headers = req.headers().clone();
        let instance = instance(&headers);
        let (body, client) = body::read(req, app)
            .await
            .map_err(|answer| error::restate(answer, &instance))?;
        match auth::authenticate(app, &headers, client).await {
            Ok(account) => Ok(Self {
                account,
                body,
                instance,
                client_ip: headers
                    .get(CLIENT_IP_HEADER)
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
            }),
            Err(e) => Err(finish(&instance, Err(e))),
        }
    }
}

async fn create(State(app): State<AppState>, call: Call) -> Response {
    let result = async {
        let mut start = request::parse(&call.body)?;
        if let (None, Some(header)) = (start.client, &call.client_ip) {
            start.client = Some(header.trim().parse().map_err(|_| {
                V2Error::InvalidParams(vec![InvalidParameter::new(
                    "Verifyd-Client-Ip",
                    "must be an IPv4 or IPv6 address",
                )])
            })?);
        }
        match app
            .service
            .start(&call.account, start)
            .await
            .map_err(service_failed)?
        {
            StartOutcome::Started(id) => Ok((
                StatusCode::ACCEPTED,
                Json(serde_json::json!({ "request_id": uuid_of(&id) })),
            )
                .into_response()),
            StartOutcome::Concurrent(id) => Err(V2Error::Concurrent(id)),
            StartOutcome::CustomPinNotAllowed => {
                Err(V2Error::InvalidParams(vec![InvalidParameter::new(
                    "code",
                    "this API key may not choose its codes",
                )]))
            }
            StartOutcome::Refused(refusal) => Err(V2Error::Forbidden(refusal)),
            StartOutcome::UnknownTemplate => {
                Err(V2Error::InvalidParams(vec![InvalidParameter::new(
                    "template_id",
                    "no template of this account has this id",
                )]))
            }
        }
    }
    .await;
    finish(&call.instance, result)
}

async fn check(State(app): State<AppState>, Path(raw): Path<String>, call: Call) -> Response {
    let result = async {
        let id = parse_id(&raw).ok_or(V2Error::NotFound)?;
        let code = match check_code(&call.body) {
            Ok(code) => code,
            // An unknown request is not found, whatever the body says.
            Err(e) => {
                let known = app
                    .service
                    .knows(&call.account, &id)
                    .await
                    .map_err(service_failed)?;
                return Err(if known { e } else { V2Error::NotFound });
            }
        };
        match app
            .service
            .check(&call.account, &id, &code)
            .await
            .map_err(service_failed)?
        {
            CheckResult::Verified { .. } => Ok(Json(serde_json::json!({
                "request_id": uuid_of(&id),
                "status": "completed",
            }))
            .into_response()),
            CheckResult::WrongCode => Err(V2Error::InvalidCode),
            CheckResult::TooManyWrongCodes => Err(V2Error::TooManyWrongCodes),
            CheckResult::NoCode => Err(V2Error::NoCode),
            CheckResult::NotActive(Some(Status::Failed)) => Err(V2Error::TooManyWrongCodes),
            CheckResult::NotActive(_) => Err(V2Error::NotFound),
        }
    }
    .await;
    finish(&call.instance, result)
}

/// The code of a check body: `{"code": "…"}`, 4 to 10 characters, as the specification
/// allows; one no PIN can be (`ab-d`) is a wrong code, counted like any.
#[doc(hidden)] // public for fuzz/fuzz_targets/v2_request.rs
pub fn check_code(bytes: &[u8]) -> Result<Candidate, V2Error> {
    let refuse = |reason: &str| V2Error::InvalidParams(vec![InvalidParameter::new("code", reason)]);
    let body: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|_| refuse("the body must be a JSON object with a code"))?;
    match body.get("code") {
        Some(serde_json::Value::String(code)) => {
            Candidate::typed(code).ok_or_else(|| refuse("must be 4 to 10 characters"))
        }
        Some(_) => Err(refuse("must be 4 to 10 characters")),
        None if body.get("token").is_some() => Err(V2Error::NoCode),
        None => Err(refuse("Code is required")),
    }
}

async fn control(
    app: AppState,
    raw: String,
    call: Call,
    command: ControlCommand,
    done: fn() -> Response,
) -> Response {
    let result = async {
        let id = parse_id(&raw).ok_or(V2Error::NotFound)?;
        match app
            .service
            .control(&call.account, &id, command)
            .await
            .map_err(service_failed)?
        {
            ControlResult::Done => Ok(done()),
            ControlResult::NotActive => Err(V2Error::NotFound),
            ControlResult::CancelTooEarly | ControlResult::CancelTooLate => {
                Err(V2Error::CancelRefused)
            }
            ControlResult::NoMoreEvents => Err(V2Error::NoMoreSteps),
        }
    }
    .await;
    finish(&call.instance, result)
}

async fn cancel(State(app): State<AppState>, Path(raw): Path<String>, call: Call) -> Response {
    control(app, raw, call, ControlCommand::Cancel, || {
        StatusCode::NO_CONTENT.into_response()
    })
    .await
}

async fn next_workflow(
    State(app): State<AppState>,
    Path(raw): Path<String>,
    call: Call,
) -> Response {
    control(app, raw, call, ControlCommand::Next, || {
        StatusCode::OK.into_response()
    })
    .await
}

async fn show(State(app): State<AppState>, Path(raw): Path<String>, call: Call) -> Response {
    let result = async {
        let id = parse_id(&raw).ok_or(V2Error::NotFound)?;
        let found = app
            .service
            .search(&call.account, std::slice::from_ref(&id))
            .await
            .map_err(service_failed)?;
        let report = found.first().ok_or(V2Error::NotFound)?;
        Ok(Json(report::json(report)).into_response())
    }
    .await;
    finish(&call.instance, result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_shown_as_uuids_of_the_same_bytes_v1_shows_as_hex() {
        let id = RequestId::from_hex("0194f4a2c1d37e3a9b1c2d3e4f506172").unwrap();
        let uuid = uuid_of(&id);
        assert_eq!(uuid, "0194f4a2-c1d3-7e3a-9b1c-2d3e4f506172");
        assert_eq!(parse_id(&uuid), Some(id.clone()));
        assert_eq!(parse_id(&uuid.to_uppercase()), Some(id));
        assert_eq!(parse_id("0194f4a2c1d37e3a9b1c2d3e4f506172"), None);
        assert_eq!(parse_id("{0194f4a2-c1d3-7e3a-9b1c-2d3e4f506172}"), None);
        assert_eq!(parse_id("nope"), None);
    }

    #[test]
    fn a_check_body_holds_a_code_of_4_to_10_characters() {
        for good in [
            &br#"{"code":"1234"}"#[..],
            br#"{"code":"e4dR1Qz"}"#,
            br#"{"code":"12-34"}"#,
            br#"{"code":"\u00e9t\u00e9 \u00e9t\u00e9"}"#,
        ] {
            assert!(
                check_code(good).is_ok(),
                "{}",
                String::from_utf8_lossy(good)
            );
        }
        for bad in [
            &br#"{"code":"12"}"#[..],
            br#"{"code":"12345678901"}"#,
            br#"{"code":1234}"#,
            br#"{}"#,
            b"code=1234",
        ] {
            assert!(
                matches!(check_code(bad), Err(V2Error::InvalidParams(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            check_code(br#"{"token":"x"}"#).unwrap_err(),
            V2Error::NoCode
        );
    }
}
