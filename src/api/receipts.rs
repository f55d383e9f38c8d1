//! Delivery receipts that gateways post back: `/receipts/{channel}/{token}`, the URL each
//! gateway was given (`public_url` + that path). The token makes the URL unguessable; the
//! channel then checks its gateway's own signature and reads the receipt, and the store applies
//! it to the try it names.

use std::collections::BTreeMap;

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::AppState;
use crate::channel::{ReceiptError, ReceiptRequest};
use crate::delivery::router::RECEIPTS_PATH;
use crate::http::refusals::{self, Reason};
use crate::http::ConnInfo;

/// A receipt is a few hundred bytes.
const MAX_BODY: usize = 16 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new().route(
        &format!("{RECEIPTS_PATH}/{{channel}}/{{token}}"),
        get(receive).post(receive),
    )
}

async fn receive(
    State(app): State<AppState>,
    Path((channel, token)): Path<(String, String)>,
    request: Request,
) -> Response {
    let client = request.extensions().get::<ConnInfo>().map(|c| c.peer.ip());
    let router = app.delivery.current();
    let Some((target, url)) = router.receipt_target(&channel, &token) else {
        if app.refusals.count(client, Reason::BadReceipt) {
            tracing::info!(client = %refusals::shown(client), "receipt refused: no channel has this receipt URL");
        }
        return StatusCode::NOT_FOUND.into_response();
    };
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "a receipt is small\n").into_response();
    };
    let mut params: BTreeMap<String, String> = parts
        .uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    if body.first() != Some(&b'{') {
        params.extend(form_urlencoded::parse(&body).into_owned());
    }
    let receipt_request = ReceiptRequest {
        url: url.to_owned(),
        headers: parts.headers,
        params,
        body,
    };
    if let Some(challenge) = target.challenge(&receipt_request) {
        return (StatusCode::OK, challenge).into_response();
    }
    let receipts = match target.receipts(&receipt_request) {
        Ok(receipts) => receipts,
        Err(ReceiptError::BadSignature) => {
            if app.refusals.count(client, Reason::BadReceipt) {
                tracing::info!(client = %refusals::shown(client), %channel, "receipt refused: bad signature");
            }
            return (StatusCode::FORBIDDEN, "bad signature\n").into_response();
        }
        Err(e @ ReceiptError::Malformed(_)) => {
            tracing::info!(%channel, error = %e, "receipt refused");
            return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response();
        }
    };
    for receipt in receipts {
        if let Err(e) =
            crate::delivery::receipts::record(app.deliveries.as_ref(), &channel, receipt).await
        {
            // The gateway sends it again on an error answer.
            tracing::error!(%channel, error = %e, "could not record a receipt");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    }
    StatusCode::NO_CONTENT.into_response()
}
