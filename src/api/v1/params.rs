//! Request parameters as the Verify v1 API takes them: query string, form body and JSON body,
//! merged. The body is parsed by its content, not its Content-Type, because official SDKs send
//! form bodies labelled `application/json` (vonage-python-sdk issue #323).

use std::net::IpAddr;

use axum::extract::{FromRequest, Request};
use axum::http::header::AUTHORIZATION;
use axum::response::Response;

use crate::api::body::{self, parse_basic};
use crate::api::AppState;

pub use crate::api::body::MAX_BODY;

/// Merged parameters, body values first so they win over the query string. They include the
/// secret, so `Debug` shows parameter names only.
#[derive(Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
    /// Credentials from `Authorization: Basic`, when present and well formed.
    basic: Option<(String, String)>,
    /// The address the request came from, when it came over a socket.
    client: Option<IpAddr>,
}

impl std::fmt::Debug for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.pairs.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("Params")
            .field("names", &names)
            .field("basic", &self.basic.is_some())
            .finish()
    }
}

impl Params {
    pub fn from_parts(query: Option<&str>, body: &[u8], authorization: Option<&str>) -> Self {
        let mut pairs = body_pairs(body);
        if let Some(q) = query {
            pairs.extend(form_urlencoded::parse(q.as_bytes()).into_owned());
        }
        Self {
            pairs,
            basic: authorization.and_then(parse_basic),
            client: None,
        }
    }

    pub fn client(&self) -> Option<IpAddr> {
        self.client
    }

    /// The first non-empty value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// Every non-empty value of `name`, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn basic(&self) -> Option<(&str, &str)> {
        self.basic.as_ref().map(|(k, s)| (k.as_str(), s.as_str()))
    }
}

fn body_pairs(body: &[u8]) -> Vec<(String, String)> {
    let trimmed = body.trim_ascii_start();
    if trimmed.first() == Some(&b'{') {
        if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(trimmed) {
            let mut out = Vec::with_capacity(map.len());
            for (k, v) in map {
                push_json(&mut out, &k, v);
            }
            return out;
        }
    }
    form_urlencoded::parse(body).into_owned().collect()
}

/// Numbers and booleans become their text, so `"workflow_id": 4` and `"workflow_id": "4"` read
/// the same; arrays give one pair per element (`request_ids`).
fn push_json(out: &mut Vec<(String, String)>, key: &str, v: serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::String(s) => out.push((key.to_owned(), s)),
        Value::Number(n) => out.push((key.to_owned(), n.to_string())),
        Value::Bool(b) => out.push((key.to_owned(), b.to_string())),
        Value::Array(items) => items.into_iter().for_each(|i| push_json(out, key, i)),
        Value::Null | Value::Object(_) => {}
    }
}

/// An integer sent as a string or a number; `"4"`, `4` and `4.0` all read 4.
pub fn parse_int(raw: &str) -> Option<i64> {
    let raw = raw.trim();
    raw.parse::<i64>().ok().or_else(|| {
        let f = raw.parse::<f64>().ok()?;
        (f.is_finite() && f.fract() == 0.0 && f.abs() < 1e15).then_some(f as i64)
    })
}

impl FromRequest<AppState> for Params {
    type Rejection = Response;

    async fn from_request(req: Request, app: &AppState) -> Result<Self, Self::Rejection> {
        let query = req.uri().query().map(str::to_owned);
        let authorization = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let (bytes, client) = body::read(req, app).await?;
        let mut params = Params::from_parts(query.as_deref(), &bytes, authorization.as_deref());
        params.client = client;
        Ok(params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_form_and_json_values_are_merged_with_the_body_first() {
        let p = Params::from_parts(Some("brand=Q&number=1"), b"brand=B", None);
        assert_eq!(p.get("brand"), Some("B"));
        assert_eq!(p.get("number"), Some("1"));
        let p = Params::from_parts(None, br#"{"workflow_id":4,"brand":"A","x":true}"#, None);
        assert_eq!(p.get("workflow_id"), Some("4"));
        assert_eq!(p.get("x"), Some("true"));
    }

    #[test]
    fn a_form_body_is_read_whatever_it_claims_to_be() {
        let p = Params::from_parts(None, b"request_id=abc&code=5678", None);
        assert_eq!(p.get("code"), Some("5678"));
    }

    #[test]
    fn repeated_and_array_values_are_all_kept() {
        let p = Params::from_parts(Some("request_ids=a&request_ids=b"), b"", None);
        assert_eq!(p.all("request_ids"), ["a", "b"]);
        let p = Params::from_parts(None, br#"{"request_ids":["a","b"]}"#, None);
        assert_eq!(p.all("request_ids"), ["a", "b"]);
    }

    #[test]
    fn basic_credentials_are_decoded() {
        let p = Params::from_parts(None, b"", Some("Basic a2V5OnNlY3JldA=="));
        assert_eq!(p.basic(), Some(("key", "secret")));
        let p = Params::from_parts(None, b"", Some("Bearer x"));
        assert_eq!(p.basic(), None);
    }

    #[test]
    fn integers_arrive_as_strings_or_numbers() {
        assert_eq!(parse_int("4"), Some(4));
        assert_eq!(parse_int("4.0"), Some(4));
        assert_eq!(parse_int("4.5"), None);
        assert_eq!(parse_int("x"), None);
    }
}
