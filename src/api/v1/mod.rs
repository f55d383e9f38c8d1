//! The Vonage Verify v1 surface: `/verify/{json,xml}`, `/verify/check/…`, `/verify/search/…`,
//! `/verify/control/…` and `/verify/psd2/json`, on GET and POST alike.

pub mod error;
pub mod fuzz;
pub mod params;
pub mod response;
pub mod workflow;

use std::net::IpAddr;

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::handler::Handler;
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::Router;

use self::error::{Endpoint, UnblockError, V1Error};
use self::params::{parse_int, Params};
use self::response::{Fields, Format, Reply};
use self::workflow::{Workflow, NEXT_EVENT_WAIT_RANGE, PIN_EXPIRY_RANGE};
use super::AppState;
use crate::auth::{Account, AuthError};
use crate::domain::destinations::Refusal;
use crate::domain::locale::{Locale, LocaleSet};
use crate::domain::plain;
use crate::domain::{
    Candidate, Channel, CodeLength, Country, CustomPin, Instant, PhoneNumber, Purpose, RequestId,
    Status,
};
use crate::http::refusals::{self, Reason};
use crate::service::{
    CheckResult, ControlCommand, ControlResult, Report, ServiceError, StartOutcome, StartRequest,
    Words,
};

const MAX_BRAND: usize = 18;
const MAX_SENDER_ID: usize = 11;
const MAX_PAYEE: usize = 18;
const MAX_SEARCH_IDS: usize = 10;
/// The sender id shown on SMS when the request names none; PSD2 has no `sender_id` parameter.
pub const DEFAULT_SENDER_ID: &str = crate::channel::DEFAULT_SENDER;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/verify/{format}", get_or_post(request))
        .route("/verify/psd2/{format}", get_or_post(psd2))
        .route("/verify/check/{format}", get_or_post(check))
        .route("/verify/search/{format}", get_or_post(search))
        .route("/verify/control/{format}", get_or_post(control))
        .route("/verify/network-unblock", post(network_unblock))
        .layer(DefaultBodyLimit::max(params::MAX_BODY))
}

/// GET and POST only. axum answers HEAD with a GET route (dropping the body), and a HEAD that
/// starts a verification throws its request_id away; it is refused like every other method.
fn get_or_post<H, T>(handler: H) -> MethodRouter<AppState>
where
    H: Handler<T, AppState>,
    T: 'static,
{
    get(handler.clone())
        .post(handler)
        .head(method_not_allowed)
        .fallback(method_not_allowed)
}

async fn method_not_allowed() -> impl IntoResponse {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(axum::http::header::ALLOW, "GET, POST")],
    )
}

/// The refusals that come before a caller is known, counted by client instead of one line each.
fn unauthenticated(e: &V1Error) -> Option<Reason> {
    match e {
        V1Error::Missing("api_key" | "api_secret") => Some(Reason::MissingCredentials),
        V1Error::BadCredentials => Some(Reason::BadCredentials),
        V1Error::Barred => Some(Reason::DisabledKey),
        _ => None,
    }
}

/// Logs a refused request: once per request once the caller is known; before that, the first
/// of each client per window, and the rest in aggregate (`http::refusals`).
fn log_refusal(app: &AppState, p: &Params, e: &V1Error) {
    if *e == V1Error::Internal {
        return; // logged with its cause where it happened
    }
    let status = e.status();
    match unauthenticated(e) {
        Some(reason) => {
            if app.refusals.count(p.client(), reason) {
                tracing::info!(status, reason = %e, client = %refusals::shown(p.client()), "v1 request refused");
            }
        }
        None => tracing::info!(status, reason = %e, "v1 request refused"),
    }
}

/// Writes the reply or the error in the endpoint's own shape, and logs the error: this is the one
/// place a v1 error is logged.
fn finish(
    app: &AppState,
    p: &Params,
    endpoint: Endpoint,
    format: Format,
    result: Result<Reply, V1Error>,
    echo_id: &str,
) -> Response {
    match result {
        Ok(reply) => reply.render(format),
        Err(e) => {
            let status = e.status();
            log_refusal(app, p, &e);
            let text = e.text(endpoint);
            let (root, fields) = match endpoint {
                Endpoint::Request | Endpoint::Psd2 => match &e {
                    // A blocked number's answer names its network and no request.
                    V1Error::Blacklisted(refusal) => (
                        "verify_response",
                        Fields::new().text("network", refusal.network()),
                    ),
                    V1Error::Concurrent(id) => (
                        "verify_response",
                        Fields::new().text("request_id", id.as_str()),
                    ),
                    _ => ("verify_response", Fields::new().text("request_id", "")),
                },
                Endpoint::Check => (
                    "verify_response",
                    Fields::new().text("request_id", echo_id.to_owned()),
                ),
                Endpoint::Search => ("verify_request", Fields::new().text("request_id", "")),
                Endpoint::Control => ("response", Fields::new()),
            };
            let fields = fields.text("status", status).text("error_text", text);
            Reply {
                root: Some(root),
                fields,
            }
            .render(format)
        }
    }
}

/// Logs a failure the caller cannot fix, with its cause, and answers status 5.
/// A service call that did not run: a limit (status 1), or a failure the caller cannot fix.
fn service_failed(e: ServiceError) -> V1Error {
    match e {
        ServiceError::Limited(refused) => V1Error::Throttled(refused.limit),
        e => internal(e),
    }
}

fn internal(e: impl std::fmt::Display) -> V1Error {
    tracing::error!(error = %e, "internal error");
    V1Error::Internal
}

async fn authenticate(app: &AppState, p: &Params) -> Result<Account, V1Error> {
    let (key, secret) = match p.basic() {
        Some(credentials) => credentials,
        None => (
            p.get("api_key").ok_or(V1Error::Missing("api_key"))?,
            p.get("api_secret").ok_or(V1Error::Missing("api_secret"))?,
        ),
    };
    app.keys
        .authenticate(key, secret)
        .await
        .map_err(|e| match e {
            AuthError::BadCredentials => V1Error::BadCredentials,
            AuthError::Disabled => V1Error::Barred,
            AuthError::Store(e) => internal(e),
        })
}

fn required<'a>(p: &'a Params, name: &'static str) -> Result<&'a str, V1Error> {
    p.get(name).ok_or(V1Error::Missing(name))
}

fn optional_int(
    p: &Params,
    name: &'static str,
    valid: impl Fn(i64) -> bool,
) -> Result<Option<i64>, V1Error> {
    match p.get(name) {
        None => Ok(None),
        Some(raw) => parse_int(raw)
            .filter(|n| valid(*n))
            .map(Some)
            .ok_or(V1Error::Invalid(name)),
    }
}

/// A text that goes into a message or an answer: at most `max` characters, none that could
/// break a line or an answer ([`plain::is_plain`]).
fn text_param<'a>(
    p: &'a Params,
    name: &'static str,
    max: usize,
) -> Result<Option<&'a str>, V1Error> {
    match p.get(name) {
        None => Ok(None),
        Some(text) if text.chars().count() <= max && plain::is_plain(text) => Ok(Some(text)),
        Some(_) => Err(V1Error::Invalid(name)),
    }
}

/// `ip_address`: the address of the person asking, which a start counts against the limit per
/// client (verifyd's own on a start; check's `ip_address`, which the API no longer uses, is
/// ignored).
fn client_ip(p: &Params) -> Result<Option<IpAddr>, V1Error> {
    p.get("ip_address")
        .map(|raw| {
            raw.trim()
                .parse()
                .map_err(|_| V1Error::Invalid("ip_address"))
        })
        .transpose()
}

/// The parameters `/verify` and `/verify/psd2` share: number, country, code length, locale,
/// workflow and timings.
struct Common {
    number: PhoneNumber,
    code_length: CodeLength,
    locale: Locale,
    workflow: Workflow,
    next_event_wait: Option<u32>,
    pin_expiry: u32,
}

impl Common {
    fn parse(p: &Params, locales: LocaleSet) -> Result<Self, V1Error> {
        let number = required(p, "number")?;
        let country = match p.get("country") {
            Some(c) => Some(Country::parse(c).ok_or(V1Error::Invalid("country"))?),
            None => None,
        };
        let number = PhoneNumber::parse(number, country).map_err(|_| V1Error::Invalid("number"))?;
        let code_length = optional_int(p, "code_length", |n| matches!(n, 4 | 6))?
            .and_then(CodeLength::new)
            .unwrap_or(CodeLength::DEFAULT);
        let locale = match p.get("lg") {
            Some(lg) => locales.parse(lg).ok_or(V1Error::Invalid("lg"))?,
            None => locales.for_region(number.region()),
        };
        let pin_expiry = optional_int(p, "pin_expiry", |n| PIN_EXPIRY_RANGE.contains(&n))?;
        let next_event_wait =
            optional_int(p, "next_event_wait", |n| NEXT_EVENT_WAIT_RANGE.contains(&n))?
                .map(|n| n as u32);
        let workflow = optional_int(p, "workflow_id", |n| Workflow::parse(n).is_some())?
            .and_then(Workflow::parse)
            .unwrap_or(Workflow::DEFAULT);
        Ok(Self {
            number,
            code_length,
            locale,
            workflow,
            next_event_wait,
            pin_expiry: workflow::pin_expiry(pin_expiry.map(|n| n as u32), next_event_wait),
        })
    }

    /// The request to start, with every step showing `sender`.
    fn start(
        self,
        purpose: Purpose,
        sender: &str,
        custom_pin: Option<CustomPin>,
        client: Option<IpAddr>,
    ) -> StartRequest {
        StartRequest {
            client,
            steps: self
                .workflow
                .steps(&self.number, sender, self.next_event_wait),
            policy: workflow::policy(self.code_length, self.pin_expiry),
            purpose,
            locale: self.locale,
            reference: None,
            custom_pin,
            words: Words::BuiltIn,
        }
    }
}

fn started(outcome: StartOutcome) -> Result<Reply, V1Error> {
    match outcome {
        StartOutcome::Started(id) => Ok(Reply {
            root: Some("verify_response"),
            fields: Fields::new()
                .text("request_id", id.as_str())
                .text("status", "0"),
        }),
        StartOutcome::Concurrent(id) => Err(V1Error::Concurrent(id)),
        StartOutcome::CustomPinNotAllowed => Err(V1Error::CustomPinNotAllowed),
        StartOutcome::Refused(refusal) => Err(match refusal {
            Refusal::Blocked { .. } | Refusal::Fraud(_) => V1Error::Blacklisted(refusal),
            Refusal::NumberType(_) => V1Error::UnsupportedNetwork(refusal),
            Refusal::Country { .. } => V1Error::NonPermitted(refusal),
        }),
        // v1 names no template; were one ever named, it is this server's fault, not the caller's.
        StartOutcome::UnknownTemplate => Err(V1Error::Internal),
    }
}

async fn request(State(app): State<AppState>, Path(format): Path<String>, p: Params) -> Response {
    let Some(format) = Format::parse(&format) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let result = async {
        let account = authenticate(&app, &p).await?;
        let common = Common::parse(&p, LocaleSet::Standard)?;
        let brand = text_param(&p, "brand", MAX_BRAND)?.ok_or(V1Error::Missing("brand"))?;
        let sender_id = text_param(&p, "sender_id", MAX_SENDER_ID)?.unwrap_or(DEFAULT_SENDER_ID);
        let custom_pin = match p.get("pin_code") {
            Some(raw) => Some(CustomPin::parse(raw).ok_or(V1Error::Invalid("pin_code"))?),
            None => None,
        };
        let purpose = Purpose::Brand {
            brand: brand.to_owned(),
        };
        let req = common.start(purpose, sender_id, custom_pin, client_ip(&p)?);
        started(
            app.service
                .start(&account, req)
                .await
                .map_err(service_failed)?,
        )
    }
    .await;
    finish(&app, &p, Endpoint::Request, format, result, "")
}

/// A payment amount in euro as the message shows it, with two decimals. Only what two decimals
/// show exactly is taken: `0.001` would read "0.00" and `0.005` "0.01" on the phone.
fn parse_amount(raw: &str) -> Option<String> {
    const MAX_WHOLE_DIGITS: usize = 12;
    let raw = raw.trim();
    let (whole, cents) = raw.split_once('.').unwrap_or((raw, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || whole.len() > MAX_WHOLE_DIGITS || !digits(whole) || !digits(cents) {
        return None;
    }
    if cents.len() > 2 || (raw.contains('.') && cents.is_empty()) {
        return None;
    }
    let whole: u64 = whole.parse().ok()?;
    let cents: u64 = format!("{cents:0<2}").parse().ok()?;
    (whole > 0 || cents > 0).then(|| format!("{whole}.{cents:02}"))
}

async fn psd2(State(app): State<AppState>, Path(format): Path<String>, p: Params) -> Response {
    // The API documents no XML for PSD2.
    if format != "json" {
        return StatusCode::NOT_FOUND.into_response();
    }
    let result = async {
        let account = authenticate(&app, &p).await?;
        let common = Common::parse(&p, LocaleSet::Psd2)?;
        let payee = text_param(&p, "payee", MAX_PAYEE)?.ok_or(V1Error::Missing("payee"))?;
        let amount = parse_amount(required(&p, "amount")?).ok_or(V1Error::Invalid("amount"))?;
        let purpose = Purpose::Payment {
            payee: payee.to_owned(),
            amount,
        };
        let req = common.start(purpose, DEFAULT_SENDER_ID, None, client_ip(&p)?);
        started(
            app.service
                .start(&account, req)
                .await
                .map_err(service_failed)?,
        )
    }
    .await;
    finish(&app, &p, Endpoint::Psd2, Format::Json, result, "")
}

/// A request id as given, which some answers echo: at most the API's 32 characters, and plain
/// text.
fn is_echoable_id(raw: &str) -> bool {
    raw.len() <= 32 && plain::is_plain(raw)
}

/// A `request_id` parameter: longer than the API's 32 characters, or holding a control
/// character, is invalid; any other string that is not one of ours is simply not found.
fn request_id_param(p: &Params) -> Result<(String, Option<RequestId>), V1Error> {
    let raw = required(p, "request_id")?;
    if !is_echoable_id(raw) {
        return Err(V1Error::Invalid("request_id"));
    }
    Ok((raw.to_owned(), RequestId::from_hex(raw)))
}

async fn check(State(app): State<AppState>, Path(format): Path<String>, p: Params) -> Response {
    let Some(format) = Format::parse(&format) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    // Every check error echoes the request id, once it is one that may be echoed.
    let echo = p
        .get("request_id")
        .filter(|raw| is_echoable_id(raw))
        .unwrap_or("")
        .to_owned();
    let result = async {
        let account = authenticate(&app, &p).await?;
        let (raw, id) = request_id_param(&p)?;
        let code = Candidate::parse(required(&p, "code")?).ok_or(V1Error::Invalid("code"))?;
        let Some(id) = id else {
            return Err(V1Error::CheckNotFound(raw));
        };
        match app
            .service
            .check(&account, &id, &code)
            .await
            .map_err(service_failed)?
        {
            CheckResult::Verified {
                event_id,
                price,
                estimated_messages,
            } => Ok(Reply {
                root: Some("verify_response"),
                fields: Fields::new()
                    .text("request_id", id.as_str())
                    .text("event_id", event_id.as_str())
                    .text("status", "0")
                    .text("price", price.to_string())
                    .text("currency", app.service.pricing().currency.clone())
                    .text(
                        "estimated_price_messages_sent",
                        estimated_messages.to_string(),
                    ),
            }),
            CheckResult::WrongCode => Err(V1Error::WrongCode),
            CheckResult::TooManyWrongCodes => Err(V1Error::TooManyWrongCodes),
            // v1's channels all take a code; a step that takes none is not one it can start.
            CheckResult::NotActive(_) | CheckResult::NoCode => Err(V1Error::CheckNotFound(raw)),
        }
    }
    .await;
    finish(&app, &p, Endpoint::Check, format, result, &echo)
}

/// `YYYY-MM-DD HH:MM:SS` in UTC, as search writes every date.
fn date(t: Instant) -> String {
    use chrono::{Datelike, Timelike};
    // Digits written by hand: `t.format(…)` parses its format string on every call (5 % of a
    // search's CPU), and `format!` with six padded numbers took 155 ns against 31 ns for this
    // (a search writes four or five dates).
    let day = t.date_naive();
    let (year, secs) = (day.year(), t.num_seconds_from_midnight());
    if !(0..=9999).contains(&year) {
        return t.format("%Y-%m-%d %H:%M:%S").to_string();
    }
    let year = year as u32;
    let mut out = *b"0000-00-00 00:00:00";
    for (at, value) in [
        (0, year / 100),
        (2, year % 100),
        (5, day.month()),
        (8, day.day()),
        (11, secs / 3600),
        (14, secs / 60 % 60),
        (17, secs % 60),
    ] {
        out[at] = b'0' + (value / 10) as u8;
        out[at + 1] = b'0' + (value % 10) as u8;
    }
    out.iter().map(|&b| char::from(b)).collect()
}

/// A status as search writes it.
fn status_text(status: Status) -> &'static str {
    match status {
        Status::InProgress => "IN PROGRESS",
        Status::Success => "SUCCESS",
        Status::Failed => "FAILED",
        Status::Expired => "EXPIRED",
        Status::Cancelled => "CANCELLED",
    }
}

/// An event's `type` as search writes it.
fn event_type(channel: Channel) -> &'static str {
    match channel {
        Channel::Sms => "sms",
        Channel::Voice => "tts",
        Channel::Email => "email",
        Channel::WhatsApp => "whatsapp",
    }
}

fn report_fields(r: &Report, currency: &str) -> Fields {
    let v = &r.verification;
    let checks = v
        .checks
        .iter()
        .map(|c| {
            Fields::new()
                .text("date_received", date(c.at))
                // The code typed is never stored; its length is shown masked.
                .text("code", "*".repeat(usize::from(c.code_len)))
                .text("status", if c.valid { "VALID" } else { "INVALID" })
                .text("ip_address", "")
        })
        .collect();
    let events = v
        .events
        .iter()
        .map(|e| {
            Fields::new()
                .text("type", event_type(e.channel))
                .text("id", e.id.as_str())
        })
        .collect();
    let first = v.events.first().map(|e| date(e.at)).unwrap_or_default();
    let last = v.events.last().map(|e| date(e.at)).unwrap_or_default();
    let step = &v.steps[0];
    Fields::new()
        .text("request_id", v.id.as_str())
        .text("account_id", v.account.clone())
        .text("status", status_text(r.status))
        .text("number", step.to.key())
        .text("price", r.price.to_string())
        .text("currency", currency)
        .text(
            "sender_id",
            step.from.as_deref().unwrap_or(DEFAULT_SENDER_ID),
        )
        .text("date_submitted", date(v.submitted_at))
        .text(
            "date_finalized",
            r.finalized_at.map(date).unwrap_or_default(),
        )
        .text("first_event_date", first)
        .text("last_event_date", last)
        .list("checks", "check", checks)
        .list("events", "event", events)
        .text(
            "estimated_price_messages_sent",
            r.estimated_messages.to_string(),
        )
}

/// The ids a search names (`request_ids`, several, or `request_id`), each once, and whether it
/// named several; ids that are well formed but no request id find nothing.
fn search_ids(p: &Params) -> Result<(Vec<RequestId>, bool), V1Error> {
    let many = p.all("request_ids");
    let (raws, several) = if !many.is_empty() {
        (many, true)
    } else {
        (vec![required(p, "request_id")?], false)
    };
    if raws.len() > MAX_SEARCH_IDS {
        return Err(V1Error::TooManyRequestIds);
    }
    if !raws.iter().all(|r| is_echoable_id(r)) {
        return Err(V1Error::Invalid(if several {
            "request_ids"
        } else {
            "request_id"
        }));
    }
    let mut ids: Vec<RequestId> = Vec::with_capacity(raws.len());
    for id in raws.iter().filter_map(|r| RequestId::from_hex(r)) {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok((ids, several))
}

async fn search(State(app): State<AppState>, Path(format): Path<String>, p: Params) -> Response {
    let Some(format) = Format::parse(&format) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let result = async {
        let account = authenticate(&app, &p).await?;
        let (ids, several) = search_ids(&p)?;
        let reports = app
            .service
            .search(&account, &ids)
            .await
            .map_err(service_failed)?;
        if reports.is_empty() {
            return Err(V1Error::SearchNotFound);
        }
        let currency = app.service.pricing().currency.clone();
        if several {
            let records = reports
                .iter()
                .map(|r| report_fields(r, &currency))
                .collect();
            Ok(Reply {
                root: None,
                fields: Fields::new().list("verification_requests", "verify_request", records),
            })
        } else {
            Ok(Reply {
                root: Some("verify_request"),
                fields: report_fields(&reports[0], &currency),
            })
        }
    }
    .await;
    finish(&app, &p, Endpoint::Search, format, result, "")
}

async fn control(State(app): State<AppState>, Path(format): Path<String>, p: Params) -> Response {
    let Some(format) = Format::parse(&format) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let result = async {
        let account = authenticate(&app, &p).await?;
        let (raw, id) = request_id_param(&p)?;
        let (cmd, command) = match required(&p, "cmd")? {
            "cancel" => ("cancel", ControlCommand::Cancel),
            "trigger_next_event" => ("trigger_next_event", ControlCommand::Next),
            _ => return Err(V1Error::Invalid("cmd")),
        };
        let Some(id) = id else {
            return Err(V1Error::ControlNotFound(raw));
        };
        match app
            .service
            .control(&account, &id, command)
            .await
            .map_err(service_failed)?
        {
            ControlResult::Done => Ok(Reply {
                root: Some("response"),
                fields: Fields::new().text("status", "0").text("command", cmd),
            }),
            ControlResult::NotActive => Err(V1Error::ControlNotFound(raw)),
            ControlResult::CancelTooEarly => Err(V1Error::CancelTooEarly(raw)),
            ControlResult::CancelTooLate => Err(V1Error::CancelTooLate(raw)),
            ControlResult::NoMoreEvents => Err(V1Error::NoMoreEvents(raw)),
        }
    }
    .await;
    finish(&app, &p, Endpoint::Control, format, result, "")
}

/// Longest and default unblock, in seconds (the API's).
const MAX_UNBLOCK: i64 = 86_400;
const DEFAULT_UNBLOCK: i64 = 3_600;

async fn network_unblock(State(app): State<AppState>, headers: HeaderMap, p: Params) -> Response {
    let instance = headers
        .get(&crate::api::request_id::REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let result = async {
        let account = authenticate(&app, &p).await.map_err(|e| {
            log_refusal(&app, &p, &e);
            UnblockError::Auth(e)
        })?;
        let network = p.get("network").map(str::trim).unwrap_or("");
        if network.is_empty() || network.len() > 16 || !network.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(UnblockError::NoNetwork);
        }
        // The Python SDK sends `duration`.
        let seconds = match p.get("unblock_duration").or_else(|| p.get("duration")) {
            None => DEFAULT_UNBLOCK,
            Some(raw) => parse_int(raw)
                .filter(|n| (0..=MAX_UNBLOCK).contains(n))
                .ok_or(UnblockError::BadDuration)?,
        };
        let until = app
            .service
            .unblock(&account, network, seconds)
            .await
            .map_err(|e| match e {
                ServiceError::Limited(_) => UnblockError::Throttled,
                e => UnblockError::Auth(internal(e)),
            })?
            .ok_or(UnblockError::NotBlocked)?;
        Ok((network.to_owned(), until))
    }
    .await;
    match result {
        Ok((network, until)) => (
            StatusCode::ACCEPTED,
            axum::Json(serde_json::json!({
                "network": network,
                "unblocked_until": until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            })),
        )
            .into_response(),
        Err(e) => {
            if !matches!(e, UnblockError::Auth(_)) {
                tracing::info!(reason = %e, "network unblock refused");
            }
            let problem = e.problem();
            let mut body = serde_json::json!({
                "type": format!("https://developer.vonage.com/api-errors#{}", problem.kind),
                "title": problem.title,
                "detail": problem.detail,
                "instance": instance,
            });
            if let Some((name, reason)) = problem.invalid {
                body["invalid_parameters"] =
                    serde_json::json!([{ "name": name, "reason": reason }]);
            }
            (problem.status, axum::Json(body)).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_written_as_chrono_writes_them_with_the_api_format() {
        // The epoch, a leap day, today, the last millisecond of a year, years 1 and 9999, and
        // years past what four digits can write.
        for ms in [
            0_i64,
            951_782_400_000,
            1_763_786_096_789,
            4_102_444_799_999,
            -62_135_596_800_000,
            253_402_300_799_999,
            -62_198_755_200_000,
            253_402_300_800_000,
        ] {
            let t = chrono::DateTime::from_timestamp_millis(ms).unwrap();
            assert_eq!(date(t), t.format("%Y-%m-%d %H:%M:%S").to_string());
        }
    }

    #[test]
    fn amounts_are_positive_numbers_printed_with_two_decimals() {
        assert_eq!(parse_amount("48").as_deref(), Some("48.00"));
        assert_eq!(parse_amount("48.5").as_deref(), Some("48.50"));
        assert_eq!(parse_amount(" 0.01 ").as_deref(), Some("0.01"));
        assert_eq!(parse_amount("007.10").as_deref(), Some("7.10"));
        assert_eq!(
            parse_amount("999999999999.99").as_deref(),
            Some("999999999999.99")
        );
        for refused in [
            "0",
            "0.00",
            "-1",
            "NaN",
            "abc",
            "",
            ".5",
            "5.",
            "1e3",
            "+5",
            "1 000",
            "1000000000000",
        ] {
            assert_eq!(parse_amount(refused), None, "{refused:?}");
        }
    }

    #[test]
    fn amounts_that_two_decimals_cannot_show_are_refused() {
        assert_eq!(parse_amount("0.001"), None, "would read 0.00");
        assert_eq!(parse_amount("0.005"), None, "would read 0.01");
        assert_eq!(parse_amount("48.123"), None);
        assert_eq!(parse_amount("48.100"), None);
    }
}
