//! Every v1 failure and the `status` / `error_text` it is answered with: the only place that
//! picks v1 status codes.

use crate::domain::destinations::Refusal;
use crate::domain::RequestId;

/// Which endpoint answers; some texts differ between endpoints in the API's own examples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Request,
    Psd2,
    Check,
    Search,
    Control,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum V1Error {
    #[error("missing parameter {0}")]
    Missing(&'static str),
    #[error("invalid parameter {0}")]
    Invalid(&'static str),
    #[error("bad credentials")]
    BadCredentials,
    #[error("internal error")]
    Internal,
    #[error("a limit is reached: {0}")]
    Throttled(&'static str),
    #[error("the key is disabled")]
    Barred,
    #[error("a verification to this number is in progress")]
    Concurrent(RequestId),
    #[error("this key may not set pin_code")]
    CustomPinNotAllowed,
    #[error("the number is blocked: {0}")]
    Blacklisted(Refusal),
    #[error("the number is of a refused type: {0}")]
    UnsupportedNetwork(Refusal),
    #[error("the destination is not permitted: {0}")]
    NonPermitted(Refusal),
    #[error("check on an unknown or finished request")]
    CheckNotFound(String),
    #[error("wrong code")]
    WrongCode,
    #[error("too many wrong codes")]
    TooManyWrongCodes,
    #[error("more than 10 request_ids")]
    TooManyRequestIds,
    #[error("search found nothing")]
    SearchNotFound,
    #[error("control on an unknown or finished request")]
    ControlNotFound(String),
    #[error("cancel within the first 30 seconds")]
    CancelTooEarly(String),
    #[error("cancel after the second event")]
    CancelTooLate(String),
    #[error("no events left")]
    NoMoreEvents(String),
}

impl V1Error {
    pub fn status(&self) -> &'static str {
        match self {
            V1Error::Throttled(_) => "1",
            V1Error::Missing(_) => "2",
            V1Error::Invalid(_) => "3",
            V1Error::BadCredentials => "4",
            V1Error::Internal => "5",
            V1Error::CheckNotFound(_) | V1Error::ControlNotFound(_) => "6",
            V1Error::Barred => "8",
            V1Error::Concurrent(_) => "10",
            V1Error::WrongCode => "16",
            V1Error::TooManyWrongCodes => "17",
            V1Error::TooManyRequestIds => "18",
            V1Error::CancelTooEarly(_) | V1Error::CancelTooLate(_) | V1Error::NoMoreEvents(_) => {
                "19"
            }
            V1Error::CustomPinNotAllowed => "20",
            V1Error::Blacklisted(_) => "7",
            V1Error::UnsupportedNetwork(_) => "15",
            V1Error::NonPermitted(_) => "29",
            V1Error::SearchNotFound => "101",
        }
    }

    /// The texts are the API's own (spec examples), byte for byte, including the double space
    /// and the "its" of two of them.
    pub fn text(&self, endpoint: Endpoint) -> String {
        match self {
            V1Error::Missing(p @ ("api_key" | "api_secret")) => format!("Missing {p}"),
            V1Error::Missing(p) => {
                format!("Your request is incomplete and missing the mandatory parameter `{p}`")
            }
            V1Error::Invalid("number") => "Invalid value for number".into(),
            V1Error::Invalid(p) => format!("Invalid value for param: {p}"),
            V1Error::BadCredentials => match endpoint {
                Endpoint::Request | Endpoint::Psd2 => "Invalid credentials were provided".into(),
                _ => "Bad credentials".into(),
            },
            V1Error::Internal => "Internal Error".into(),
            V1Error::Throttled(limit) => format!("Throttled: the {limit} limit is reached"),
            V1Error::Barred => {
                "The api_key you supplied is for an account that has been barred from submitting messages."
                    .into()
            }
            V1Error::Concurrent(_) => {
                "Concurrent verifications to the same number are not allowed".into()
            }
            V1Error::CustomPinNotAllowed => {
                "This account does not support the parameter: pin_code.".into()
            }
            V1Error::Blacklisted(_) => {
                "The number you are trying to verify is blacklisted for verification.".into()
            }
            V1Error::UnsupportedNetwork(_) => {
                "The destination number is not in a supported network".into()
            }
            V1Error::NonPermitted(_) => "Non-Permitted Destination".into(),
            V1Error::CheckNotFound(id) => format!(
                "The Vonage platform was unable to process this message for the following reason: \
                 Request '{id}' was not found or it has been verified already."
            ),
            V1Error::WrongCode => "The code inserted does not match the expected value".into(),
            V1Error::TooManyWrongCodes => {
                "The wrong code was provided too many times. Request terminated".into()
            }
            V1Error::TooManyRequestIds => "Too many request_ids provided".into(),
            V1Error::SearchNotFound => "No response found".into(),
            V1Error::ControlNotFound(id) => {
                format!("The requestId '{id}' does not exist or its no longer active.")
            }
            V1Error::CancelTooEarly(id) => format!(
                "Verification request ['{id}'] can't be cancelled within the first 30 seconds."
            ),
            V1Error::CancelTooLate(id) => format!(
                "Verification request  ['{id}'] can't be cancelled now. Too many attempts to \
                 re-deliver have already been made."
            ),
            V1Error::NoMoreEvents(id) => {
                format!("No more events are left to execute for the request ['{id}']")
            }
        }
    }
}

/// Every failure of `/verify/network-unblock`, which speaks HTTP status codes and the API's
/// problem format instead of `status` strings.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UnblockError {
    #[error("{0}")]
    Auth(V1Error),
    #[error("no network given")]
    NoNetwork,
    #[error("unblock_duration is not 0 to 86400 seconds")]
    BadDuration,
    #[error("the network has no block in force")]
    NotBlocked,
    #[error("a limit is reached")]
    Throttled,
}

/// A problem answer: status, type slug, title, detail, and the parameter it is about.
pub struct Problem {
    pub status: axum::http::StatusCode,
    pub kind: &'static str,
    pub title: &'static str,
    pub detail: &'static str,
    pub invalid: Option<(&'static str, &'static str)>,
}

impl UnblockError {
    /// The answer, with the texts of the API's examples.
    pub fn problem(&self) -> Problem {
        use axum::http::StatusCode;
        let (status, kind, title, detail, invalid) = match self {
            UnblockError::Auth(V1Error::Internal) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal-error",
                "Internal Error",
                "An error occurred processing this request.",
                None,
            ),
            UnblockError::Auth(_) => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Unauthorized",
                "You did not provide correct credentials.",
                None,
            ),
            UnblockError::NoNetwork => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-paramater",
                "Network not found.",
                "Network is not in the request.",
                Some(("network", "Network not found")),
            ),
            UnblockError::BadDuration => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-paramater",
                "Invalid unblock_duration parameter",
                "Unblock duration is invalid.",
                Some((
                    "unblock_duration",
                    "Must be a whole number of seconds from 0 to 86400",
                )),
            ),
            UnblockError::NotBlocked => (
                StatusCode::NOT_FOUND,
                "bad-request",
                "Not Found",
                "The network you provided does not have an active block.",
                None,
            ),
            UnblockError::Throttled => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limit",
                "Rate Limit Hit",
                "Please wait, then retry your request",
                None,
            ),
        };
        Problem {
            status,
            kind,
            title,
            detail,
            invalid,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_texts_match_the_spec_examples_exactly() {
        let id = "abcdef0123456789abcdef0123456789".to_owned();
        assert_eq!(
            V1Error::CancelTooLate(id.clone()).text(Endpoint::Control),
            "Verification request  ['abcdef0123456789abcdef0123456789'] can't be cancelled now. \
             Too many attempts to re-deliver have already been made."
        );
        assert_eq!(
            V1Error::CheckNotFound(id).text(Endpoint::Check),
            "The Vonage platform was unable to process this message for the following reason: \
             Request 'abcdef0123456789abcdef0123456789' was not found or it has been verified already."
        );
        assert_eq!(
            V1Error::ControlNotFound("abcdef0123456789abcdef".into()).text(Endpoint::Control),
            "The requestId 'abcdef0123456789abcdef' does not exist or its no longer active."
        );
    }
}
