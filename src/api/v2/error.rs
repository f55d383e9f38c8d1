//! Every way a Verify v2 call is refused, and the one place each becomes an HTTP status and an
//! RFC 7807 `application/problem+json` body with Vonage's type URL, title and detail.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::domain::destinations::Refusal;
use crate::domain::RequestId;

/// Vonage's error pages: general ones, and those of Verify v2.
const GENERAL: &str = "https://developer.vonage.com/en/api-errors";
const VERIFY: &str = "https://developer.vonage.com/en/api-errors/verify-v2";

/// One parameter that was refused, and why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct InvalidParameter {
    pub name: String,
    pub reason: String,
}

impl InvalidParameter {
    pub fn new(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            reason: reason.into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum V2Error {
    #[error("no credentials, or wrong ones")]
    Unauthorized,
    #[error("the JWT has expired")]
    JwtExpired,
    #[error("the API key is disabled")]
    Disabled,
    #[error("invalid parameters: {}", names(.0))]
    InvalidParams(Vec<InvalidParameter>),
    #[error("a verification to this destination is in progress")]
    Concurrent(RequestId),
    #[error("no such request")]
    NotFound,
    #[error("wrong code")]
    InvalidCode,
    #[error("too many wrong codes")]
    TooManyWrongCodes,
    #[error("the current step takes no code")]
    NoCode,
    #[error("cancel is not allowed now")]
    CancelRefused,
    #[error("no step is left")]
    NoMoreSteps,
    #[error("no such template")]
    TemplateNotFound,
    #[error("no such template fragment")]
    FragmentNotFound,
    #[error("a template of this name exists")]
    TemplateExists,
    #[error("the account has as many templates as it may")]
    MaxTemplates,
    #[error("the template has fragments")]
    NotEmptyTemplate,
    #[error("a fragment for this channel and locale exists")]
    FragmentExists,
    #[error("a limit is reached")]
    Throttled { retry_after_secs: u64 },
    #[error("the destination is not permitted: {0}")]
    Forbidden(Refusal),
    #[error("internal error")]
    Internal,
}

fn names(params: &[InvalidParameter]) -> String {
    params
        .iter()
        .map(|p| p.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl V2Error {
    pub fn status(&self) -> StatusCode {
        match self {
            V2Error::Unauthorized | V2Error::JwtExpired | V2Error::Disabled => {
                StatusCode::UNAUTHORIZED
            }
            V2Error::InvalidParams(_) => StatusCode::UNPROCESSABLE_ENTITY,
            V2Error::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            V2Error::Concurrent(_)
            | V2Error::NoCode
            | V2Error::CancelRefused
            | V2Error::NoMoreSteps
            | V2Error::TemplateExists
            | V2Error::MaxTemplates
            | V2Error::NotEmptyTemplate
            | V2Error::FragmentExists => StatusCode::CONFLICT,
            V2Error::NotFound | V2Error::TemplateNotFound | V2Error::FragmentNotFound => {
                StatusCode::NOT_FOUND
            }
            V2Error::InvalidCode => StatusCode::BAD_REQUEST,
            V2Error::Forbidden(_) => StatusCode::FORBIDDEN,
            V2Error::TooManyWrongCodes => StatusCode::GONE,
            V2Error::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The type URL, title and detail, as Vonage writes them.
    fn problem(&self) -> (String, &'static str, &'static str) {
        let (base, slug, title, detail) = match self {
            V2Error::Unauthorized => (
                GENERAL,
                "unauthorized",
                "Unauthorized",
                "You did not provide correct credentials.",
            ),
            V2Error::JwtExpired => (
                GENERAL,
                "jwt-expired",
                "You did not provide correct credentials.",
                "The JWT provided has expired.",
            ),
            V2Error::Disabled => (
                GENERAL,
                "unauthorized",
                "Unauthorized",
                "The API key of these credentials is disabled.",
            ),
            V2Error::InvalidParams(_) => (
                GENERAL,
                "invalid-params",
                "Invalid params",
                "The value of one or more parameters is invalid.",
            ),
            V2Error::Concurrent(_) => (
                VERIFY,
                "concurrent",
                "Conflict",
                "Concurrent verifications to the same number are not allowed.",
            ),
            V2Error::NotFound => (
                VERIFY,
                "request-not-found",
                "Not Found",
                "The request ID provided could not be found.",
            ),
            V2Error::InvalidCode => (
                VERIFY,
                "invalid-code",
                "Invalid Code",
                "The code you provided does not match the expected value.",
            ),
            V2Error::TooManyWrongCodes => (
                VERIFY,
                "expired",
                "Invalid Code",
                "An incorrect code has been provided too many times. Workflow terminated.",
            ),
            V2Error::NoCode => (
                VERIFY,
                "no-code",
                "Conflict",
                "The current Verify workflow step does not support a code.",
            ),
            V2Error::CancelRefused => (
                VERIFY,
                "conflict",
                "Conflict",
                "A request can be cancelled from 30 seconds after it started until its second channel starts.",
            ),
            V2Error::NoMoreSteps => (
                VERIFY,
                "no-events",
                "Conflict",
                "The workflow has no further channel to move on to.",
            ),
            V2Error::TemplateNotFound => (
                VERIFY,
                "template-not-found",
                "Not Found",
                "Template not found.",
            ),
            V2Error::FragmentNotFound => (
                VERIFY,
                "template-fragment-not-found",
                "Not Found",
                "Template Fragment not found.",
            ),
            V2Error::TemplateExists => (
                VERIFY,
                "template-exists",
                "Conflict",
                "A template with this name already exists.",
            ),
            V2Error::MaxTemplates => (
                VERIFY,
                "max-templates",
                "Conflict",
                "An account can only have a maximum of 10 custom templates.",
            ),
            V2Error::NotEmptyTemplate => (
                VERIFY,
                "not-empty-template",
                "Conflict",
                "The template is not empty and cannot be deleted. Please delete its fragments first.",
            ),
            V2Error::FragmentExists => (
                VERIFY,
                "fragment-exists",
                "Conflict",
                "A template fragment for this channel and locale already exists.",
            ),
            V2Error::Throttled { .. } => (
                GENERAL,
                "throttled",
                "Rate Limit Hit",
                "Please wait, then retry your request.",
            ),
            V2Error::Forbidden(Refusal::Blocked { .. } | Refusal::Fraud(_)) => (
                GENERAL,
                "forbidden",
                "Forbidden",
                "The destination's network is blocked for verification.",
            ),
            V2Error::Forbidden(Refusal::NumberType(_)) => (
                GENERAL,
                "forbidden",
                "Forbidden",
                "The destination number is not in a supported network.",
            ),
            V2Error::Forbidden(Refusal::Country { .. }) => (
                GENERAL,
                "forbidden",
                "Forbidden",
                "This destination is not permitted for your account.",
            ),
            V2Error::Internal => (
                GENERAL,
                "internal-error",
                "Internal error",
                "There was an error processing your request in the Platform.",
            ),
        };
        (format!("{base}#{slug}"), title, detail)
    }

    /// The answer, with `instance` set to the request's log id.
    pub fn response(&self, instance: &str) -> Response {
        let (kind, title, detail) = self.problem();
        let mut body = serde_json::json!({
            "type": kind,
            "title": title,
            "detail": detail,
            "instance": instance,
        });
        match self {
            V2Error::InvalidParams(params) => {
                body["invalid_parameters"] = serde_json::json!(params);
            }
            V2Error::Concurrent(id) => {
                body["request_id"] = super::uuid_of(id).into();
            }
            V2Error::Forbidden(refusal @ (Refusal::Blocked { .. } | Refusal::Fraud(_))) => {
                body["network"] = refusal.network().into();
            }
            _ => {}
        }
        let mut answer = (self.status(), body.to_string()).into_response();
        if let V2Error::Throttled { retry_after_secs } = self {
            answer
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
        }
        answer.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        answer
    }
}

/// An answer made before the surface's own parsing (a body too large or too slow, a method the
/// path does not take), restated as a problem with the same status and headers.
pub fn restate(answer: Response, instance: &str) -> Response {
    let status = answer.status();
    let title = status.canonical_reason().unwrap_or("Error");
    let slug = title.to_ascii_lowercase().replace(' ', "-");
    let body = serde_json::json!({
        "type": format!("{GENERAL}#{slug}"),
        "title": title,
        "detail": format!("The request was refused: {}.", title.to_ascii_lowercase()),
        "instance": instance,
    });
    let (mut parts, _) = answer.into_parts();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(body.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_its_own_status_and_a_vonage_type_url() {
        let all = [
            V2Error::Unauthorized,
            V2Error::JwtExpired,
            V2Error::Disabled,
            V2Error::InvalidParams(vec![InvalidParameter::new("brand", "required")]),
            V2Error::Concurrent(RequestId::from_bytes([1; 16])),
            V2Error::NotFound,
            V2Error::InvalidCode,
            V2Error::TooManyWrongCodes,
            V2Error::NoCode,
            V2Error::CancelRefused,
            V2Error::NoMoreSteps,
            V2Error::TemplateNotFound,
            V2Error::FragmentNotFound,
            V2Error::TemplateExists,
            V2Error::MaxTemplates,
            V2Error::NotEmptyTemplate,
            V2Error::FragmentExists,
            V2Error::Throttled {
                retry_after_secs: 1,
            },
            V2Error::Internal,
        ];
        let statuses: Vec<u16> = all.iter().map(|e| e.status().as_u16()).collect();
        assert_eq!(
            statuses,
            [
                401, 401, 401, 422, 409, 404, 400, 410, 409, 409, 409, 404, 404, 409, 409, 409,
                409, 429, 500
            ]
        );
        for e in &all {
            let (kind, _, _) = e.problem();
            assert!(kind.starts_with("https://developer.vonage.com/en/api-errors"));
        }
    }
}
