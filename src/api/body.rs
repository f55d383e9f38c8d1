//! What every surface does with a request before its own parsing: read the body within the body
//! timeout, note where the request came from, and decode `Authorization: Basic`.

use std::net::IpAddr;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONNECTION;
use axum::http::{HeaderValue, StatusCode, Version};
use axum::response::{IntoResponse, Response};
use base64::Engine;

use crate::api::AppState;
use crate::http::refusals::{self, Reason};
use crate::http::{BodyTimeout, ConnInfo};

/// Largest body accepted; a verification request is a few hundred bytes.
pub const MAX_BODY: usize = 64 * 1024;

/// The body and the address the request came from (when it came over a socket). A body that
/// does not arrive within the body timeout is answered 408 here, and counted as a refusal.
pub async fn read(req: Request, app: &AppState) -> Result<(Bytes, Option<IpAddr>), Response> {
    let client = req.extensions().get::<ConnInfo>().map(|c| c.peer.ip());
    let http1 = req.version() < Version::HTTP_2;
    match Bytes::from_request(req, app).await {
        Ok(bytes) => Ok((bytes, client)),
        Err(rejection) if caused_by::<BodyTimeout>(&rejection) => {
            if app.refusals.count(client, Reason::BodyTimeout) {
                tracing::info!(client = %refusals::shown(client), "request refused: its body did not arrive within the body timeout");
            }
            let mut answer =
                (StatusCode::REQUEST_TIMEOUT, "request body too slow\n").into_response();
            if http1 {
                // The rest of the body may still come; the connection cannot be read further.
                answer
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
            Err(answer)
        }
        Err(rejection) => Err(rejection.into_response()),
    }
}

/// Key and secret from an `Authorization: Basic` header, when it is one and well formed.
pub fn parse_basic(header: &str) -> Option<(String, String)> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (key, secret) = text.split_once(':')?;
    Some((key.to_owned(), secret.to_owned()))
}

/// Whether `error` or one of its sources is an `E`.
fn caused_by<E: std::error::Error + 'static>(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.is::<E>() {
            return true;
        }
        next = e.source();
    }
    false
}
