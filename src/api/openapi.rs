//! verifyd's OpenAPI documents, built into the binary: `GET /openapi/` lists them as JSON and
//! `GET /openapi/{name}.yaml` serves each as `application/yaml` (RFC 9512). They describe the
//! Verify v1 surface, the Verify v2 surface and verifyd's own endpoints, hold no secret, and so
//! take no credentials. The files are `openapi/*.yaml` at the repository root; `tests/openapi.rs`
//! checks that every route of the router is in them, and `tests/schemathesis.rs` that the
//! server answers within them.

use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use super::AppState;

/// The media type the documents are served as.
pub const MEDIA_TYPE: &str = "application/yaml";

/// One document: its name, where it is served, what it covers, and its text.
pub struct Document {
    pub name: &'static str,
    pub url: &'static str,
    pub describes: &'static str,
    pub text: &'static str,
}

pub const VERIFY_V1: Document = Document {
    name: "verify-v1",
    url: "/openapi/verify-v1.yaml",
    describes: "Verify v1, wire-compatible with Vonage's: /verify/…",
    text: include_str!("../../openapi/verify-v1.yaml"),
};

pub const VERIFY_V2: Document = Document {
    name: "verify-v2",
    url: "/openapi/verify-v2.yaml",
    describes: "Verify v2, wire-compatible with Vonage's: /v2/verify…",
    text: include_str!("../../openapi/verify-v2.yaml"),
};

pub const OPERATIONS: Document = Document {
    name: "operations",
    url: "/openapi/operations.yaml",
    describes: "verifyd's own: /healthz, /readyz, /metrics, /inbox, /receipts/…, /openapi/",
    text: include_str!("../../openapi/operations.yaml"),
};

/// Every document, in the order `GET /openapi/` lists them.
pub const DOCUMENTS: [&Document; 3] = [&VERIFY_V1, &VERIFY_V2, &OPERATIONS];

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/openapi/", get(list))
        .route("/openapi/verify-v1.yaml", get(|| serve(&VERIFY_V1)))
        .route("/openapi/verify-v2.yaml", get(|| serve(&VERIFY_V2)))
        .route("/openapi/operations.yaml", get(|| serve(&OPERATIONS)))
}

async fn serve(document: &'static Document) -> Response {
    ([(CONTENT_TYPE, MEDIA_TYPE)], document.text).into_response()
}

async fn list() -> Response {
    let documents: Vec<serde_json::Value> = DOCUMENTS
        .iter()
        .map(|d| {
            serde_json::json!({
                "name": d.name,
                "url": d.url,
                "media_type": MEDIA_TYPE,
                "describes": d.describes,
            })
        })
        .collect();
    Json(serde_json::json!({ "documents": documents })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_document_is_served_under_its_own_name() {
        for d in DOCUMENTS {
            assert_eq!(d.url, format!("/openapi/{}.yaml", d.name));
            assert!(d.text.contains("\nopenapi: 3.0.3\n"), "{}", d.name);
        }
    }
}
