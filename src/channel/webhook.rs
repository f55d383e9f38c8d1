//! Any HTTP gateway: a request built from the channel's URL, headers and body templates, with
//! `{{to}}`, `{{text}}` … replaced by values escaped for where they stand. Success is a 2xx;
//! 5xx, 408 and no answer are temporary; 429 slows down; any other 4xx refuses the message.
//!
//! With a `signing_secret`, requests carry `X-Verifyd-Signature: sha256=HEX`, the HMAC-SHA256 of
//! the body under that secret, and receipts posted back must carry the same of theirs. A receipt
//! is JSON: `{"message_id": "…", "state": "delivered" | "undeliverable" | "failed" | "submitted",
//! "error_code": "…", "error_text": "…"}` (the error fields optional).

use async_trait::async_trait;
use axum::http::{HeaderName, HeaderValue};
use hmac::{Hmac, Mac};
use serde::Deserialize;

use super::http::{answer, excerpt, status_error, transport_error};
use super::{
    Accepted, Channel, Failure, Outgoing, Receipt, ReceiptError, ReceiptRequest, ReceiptState,
    SendError,
};
use crate::config::delivery::{Webhook, WEBHOOK_FORM};
use crate::domain::Destination;

pub const SIGNATURE_HEADER: &str = "x-verifyd-signature";

pub struct WebhookChannel {
    name: String,
    config: Webhook,
    client: reqwest::Client,
}

/// How a value is written where a placeholder stands.
#[derive(Clone, Copy)]
enum Escape {
    /// Inside a JSON string.
    Json,
    /// A form or query value.
    Form,
}

/// `sha256=` and the hex HMAC-SHA256 of `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn fill(template: &str, m: &Outgoing, escape: Escape) -> String {
    let value = |name: &str| -> String {
        match name {
            "to" => match &m.to {
                Destination::Phone(number) => format!("+{}", number.digits()),
                Destination::Email(address) => address.as_str().to_owned(),
            },
            "from" => m.from.clone(),
            "text" => m.text.clone(),
            "id" => m.id.as_str().to_owned(),
            "request_id" => m.request_id.as_str().to_owned(),
            "kind" => m.kind.as_str().to_owned(),
            "locale" => m.locale.clone(),
            "valid_for" => m.valid_for.as_secs().to_string(),
            "receipt_url" => m.receipt_url.clone().unwrap_or_default(),
            _ => String::new(),
        }
    };
    let mut out = String::with_capacity(template.len() + m.text.len());
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            out.push_str(&rest[open..]);
            return out;
        };
        let raw = value(after[..close].trim());
        match escape {
            Escape::Json => {
                let quoted = serde_json::to_string(&raw).expect("a string");
                out.push_str(&quoted[1..quoted.len() - 1]);
            }
            Escape::Form => out.extend(form_urlencoded::byte_serialize(raw.as_bytes())),
        }
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    out
}

impl WebhookChannel {
    pub fn new(name: &str, config: Webhook, client: reqwest::Client) -> Self {
        Self {
            name: name.to_owned(),
            config,
            client,
        }
    }
}

#[derive(Deserialize)]
struct WebhookReceipt {
    message_id: String,
    state: String,
    #[serde(default)]
    error_code: Option<String>,
    #[serde(default)]
    error_text: Option<String>,
}

#[async_trait]
impl Channel for WebhookChannel {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, m: &Outgoing) -> Result<Accepted, SendError> {
        let c = &self.config;
        let url = fill(&c.url, m, Escape::Form);
        let body_escape = if c.content_type == WEBHOOK_FORM {
            Escape::Form
        } else {
            Escape::Json
        };
        let body = fill(&c.body, m, body_escape);
        let method = reqwest::Method::from_bytes(c.method.as_bytes())
            .expect("checked when the configuration was read");
        let mut request = self.client.request(method, url);
        for (name, value) in &c.headers {
            let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value.expose()),
            ) else {
                return Err(SendError::Rejected(Failure::new(
                    "config",
                    format!("header {name} cannot be sent"),
                )));
            };
            request = request.header(name, value);
        }
        if !body.is_empty() {
            request = request
                .header(reqwest::header::CONTENT_TYPE, &c.content_type)
                .body(body.clone());
        }
        if let Some(secret) = &c.signing_secret {
            request = request.header(
                SIGNATURE_HEADER,
                signature(secret.expose(), body.as_bytes()),
            );
        }
        let response = request.send().await.map_err(transport_error)?;
        let (status, headers, reply) = answer(response).await?;
        if !status.is_success() {
            let failure = Failure::new(format!("http-{}", status.as_u16()), excerpt(&reply, 200));
            return Err(status_error(status, &headers, failure));
        }
        let found = c.message_id.as_deref().and_then(|pointer| {
            let json: serde_json::Value = serde_json::from_str(&reply).ok()?;
            match json.pointer(pointer)? {
                serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            }
        });
        if c.message_id.is_some() && found.is_none() {
            tracing::warn!(
                channel = self.name,
                "the gateway accepted the message without the configured message_id; receipts are matched by the event id"
            );
        }
        Ok(Accepted {
            message_id: found.unwrap_or_else(|| m.id.as_str().to_owned()),
            delivered: false,
        })
    }

    fn receipt(&self, request: &ReceiptRequest) -> Result<Option<Receipt>, ReceiptError> {
        if let Some(secret) = &self.config.signing_secret {
            let given = request
                .headers
                .get(SIGNATURE_HEADER)
                .and_then(|v| v.to_str().ok())
                .ok_or(ReceiptError::BadSignature)?;
            let expected = signature(secret.expose(), &request.body);
            use subtle::ConstantTimeEq;
            if given.len() != expected.len()
                || !bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
            {
                return Err(ReceiptError::BadSignature);
            }
        }
        let receipt: WebhookReceipt = serde_json::from_slice(&request.body)
            .map_err(|e| ReceiptError::Malformed(e.to_string()))?;
        let state = match receipt.state.as_str() {
            "submitted" => ReceiptState::Submitted,
            "delivered" => ReceiptState::Delivered,
            "undeliverable" => ReceiptState::Undeliverable,
            "failed" => ReceiptState::Failed,
            other => {
                return Err(ReceiptError::Malformed(format!(
                    "state {other:?}: expected submitted, delivered, undeliverable or failed"
                )))
            }
        };
        let error = match (receipt.error_code, receipt.error_text) {
            (None, None) => None,
            (code, text) => Some(Failure::new(
                code.unwrap_or_default(),
                text.unwrap_or_default(),
            )),
        };
        Ok(Some(Receipt {
            message_id: receipt.message_id,
            state,
            error,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::delivery::Kind;
    use crate::domain::{EventId, PhoneNumber, RequestId};

    fn message(text: &str) -> Outgoing {
        Outgoing {
            id: EventId::from_bytes([1; 8]),
            request_id: RequestId::from_bytes([2; 16]),
            kind: Kind::Sms,
            to: Destination::Phone(PhoneNumber::parse("447700123456", None).unwrap()),
            email: None,
            code: None,
            from: "Acme & Co".into(),
            text: text.into(),
            locale: "en-gb".into(),
            created_at: chrono::DateTime::from_timestamp(0, 0).unwrap(),
            valid_for: std::time::Duration::from_secs(290),
            receipt_url: None,
            script: None,
        }
    }

    #[test]
    fn values_are_escaped_for_json_and_for_forms() {
        let m = message("Say \"hi\"\n& 1234");
        assert_eq!(
            fill(
                r#"{"to":"{{to}}","text":"{{text}}","ttl":{{valid_for}}}"#,
                &m,
                Escape::Json
            ),
            r#"{"to":"+447700123456","text":"Say \"hi\"\n& 1234","ttl":290}"#
        );
        assert_eq!(
            fill("to={{to}}&from={{ from }}&text={{text}}", &m, Escape::Form),
            "to=%2B447700123456&from=Acme+%26+Co&text=Say+%22hi%22%0A%26+1234"
        );
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_the_body() {
        // echo -n '{"a":1}' | openssl dgst -sha256 -hmac secret
        assert_eq!(
            signature("secret", br#"{"a":1}"#),
            "sha256=aa9e2e3575f5d7098b6caccd790888c36d5fdb63342a73bada2d6a51747a8494"
        );
    }
}
