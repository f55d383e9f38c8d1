//! What the HTTP gateway channels share: one pooled client (rustls with ring, the server's own
//! TLS stack, and the system's root certificates), and how an HTTP answer or a transport error
//! becomes a [`SendError`].

use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};

use super::{Failure, SendError};

/// The client every gateway channel uses; connections are pooled per host.
pub fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .use_rustls_tls()
        .connect_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(90))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("verifyd/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

/// A request that got no answer: temporary, since the gateway may be back in a moment. The URL
/// is left out of the text (a webhook's may hold a token).
pub fn transport_error(e: reqwest::Error) -> SendError {
    let code = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "transport"
    };
    SendError::Temporary(Failure::new(code, error_chain(&e.without_url())))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let more = inner.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = inner.source();
    }
    text
}

/// An answer that is not a success: 429 asks to slow down (for its `Retry-After`, else a
/// second), 408 and 5xx may pass, any other 4xx refuses the message for good.
pub fn status_error(status: StatusCode, headers: &HeaderMap, failure: Failure) -> SendError {
    if status == StatusCode::TOO_MANY_REQUESTS {
        let retry_after = headers
            .get(axum::http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map_or(Duration::from_secs(1), Duration::from_secs);
        SendError::Throttled {
            retry_after: retry_after.min(Duration::from_secs(300)),
            failure,
        }
    } else if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
        SendError::Temporary(failure)
    } else {
        SendError::Rejected(failure)
    }
}

/// A gateway's answer: status, headers and body text.
pub async fn answer(
    response: reqwest::Response,
) -> Result<(StatusCode, HeaderMap, String), SendError> {
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.text().await.map_err(transport_error)?;
    Ok((status, headers, body))
}

/// At most `max` characters of a gateway's answer, for an error text.
pub fn excerpt(text: &str, max: usize) -> String {
    let mut out: String = text.chars().take(max).collect();
    if text.chars().count() > max {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified_by_status() {
        let f = || Failure::new("x", "y");
        let none = HeaderMap::new();
        assert!(matches!(
            status_error(StatusCode::BAD_REQUEST, &none, f()),
            SendError::Rejected(_)
        ));
        assert!(matches!(
            status_error(StatusCode::UNAUTHORIZED, &none, f()),
            SendError::Rejected(_)
        ));
        assert!(matches!(
            status_error(StatusCode::SERVICE_UNAVAILABLE, &none, f()),
            SendError::Temporary(_)
        ));
        let mut later = HeaderMap::new();
        later.insert(axum::http::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(
            status_error(StatusCode::TOO_MANY_REQUESTS, &later, f()),
            SendError::Throttled {
                retry_after: Duration::from_secs(7),
                failure: f()
            }
        );
    }
}
