//! `whatsapp`: the code in an authentication template message, `POST
//! {base_url}/{phone_number_id}/messages` with a Bearer token (Meta's WhatsApp Cloud API). The
//! answer's `messages[0].id` (`wamid.…`) names the message in the receipts Meta posts to the
//! channel's webhook: `statuses` of `sent`, `delivered`, `read` or `failed`, signed with
//! `X-Hub-Signature-256` when an app secret is configured. The webhook's subscription check
//! (`hub.mode=subscribe`) is answered with its challenge when it names the verify token.

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};

use super::http::{answer, excerpt, status_error, transport_error};
use super::{
    Accepted, Channel, Failure, Outgoing, Receipt, ReceiptError, ReceiptRequest, ReceiptState,
    SendError,
};
use crate::config::whatsapp::WhatsApp;

pub struct WhatsAppChannel {
    name: String,
    config: WhatsApp,
    client: reqwest::Client,
}

impl WhatsAppChannel {
    pub fn new(name: &str, config: WhatsApp, client: reqwest::Client) -> Self {
        Self {
            name: name.to_owned(),
            config,
            client,
        }
    }
}

/// Meta's error object: `{"error": {"message", "code", …}}`.
fn meta_failure(status: u16, body: &str) -> Failure {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    match error {
        Some(e) => Failure::new(
            format!("meta-{}", e["code"].as_i64().unwrap_or(0)),
            e["message"].as_str().unwrap_or("").to_owned(),
        ),
        None => Failure::new(format!("http-{status}"), excerpt(body, 200)),
    }
}

/// Meta's error answer as the router sees it.
fn refusal(
    status: reqwest::StatusCode,
    headers: &axum::http::HeaderMap,
    failure: Failure,
) -> SendError {
    match failure.code.as_str() {
        // Meta says "slow down" with a 400 and one of these codes.
        "meta-4" | "meta-80007" | "meta-130429" | "meta-131056" => SendError::Throttled {
            retry_after: std::time::Duration::from_secs(60),
            failure,
        },
        // Meta's own trouble, and an expired token: not this message's fault, so not a reason
        // to move on to the next channel.
        "meta-1" | "meta-2" | "meta-131000" | "meta-131016" | "meta-190" => {
            SendError::Temporary(failure)
        }
        _ => status_error(status, headers, failure),
    }
}

#[async_trait]
impl Channel for WhatsAppChannel {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, m: &Outgoing) -> Result<Accepted, SendError> {
        let to = m.number()?.digits().to_owned();
        let code = m.code.as_deref().ok_or_else(|| {
            SendError::Rejected(Failure::new(
                "message",
                "a WhatsApp template needs the code itself (send-test cannot send one)",
            ))
        })?;
        let body = json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to,
            "type": "template",
            "template": {
                "name": self.config.template,
                "language": { "code": self.config.language_for(&m.locale) },
                "components": [
                    { "type": "body", "parameters": [{ "type": "text", "text": code }] },
                    { "type": "button", "sub_type": "url", "index": "0",
                      "parameters": [{ "type": "text", "text": code }] },
                ],
            },
            "biz_opaque_callback_data": m.id.as_str(),
        });
        let url = format!(
            "{}/{}/messages",
            self.config.base_url.trim_end_matches('/'),
            self.config.phone_number_id
        );
        let response = self
            .client
            .post(url)
            .bearer_auth(self.config.access_token.expose())
            .json(&body)
            .send()
            .await
            .map_err(transport_error)?;
        let (status, headers, text) = answer(response).await?;
        if !status.is_success() {
            return Err(refusal(
                status,
                &headers,
                meta_failure(status.as_u16(), &text),
            ));
        }
        let parsed: Value = serde_json::from_str(&text)
            .map_err(|_| SendError::Temporary(Failure::new("answer", excerpt(&text, 200))))?;
        let id = parsed["messages"][0]["id"].as_str().ok_or_else(|| {
            SendError::Temporary(Failure::new(
                "answer",
                "the answer names no message id".to_owned(),
            ))
        })?;
        Ok(Accepted {
            message_id: id.to_owned(),
            delivered: false,
        })
    }

    fn challenge(&self, request: &ReceiptRequest) -> Option<String> {
        use subtle::ConstantTimeEq;
        let token = self.config.verify_token.as_ref()?;
        let p = &request.params;
        let given = p.get("hub.verify_token")?;
        let named = p.get("hub.mode").map(String::as_str) == Some("subscribe")
            && bool::from(given.as_bytes().ct_eq(token.expose().as_bytes()));
        // Meta's challenge is a number; nothing else is echoed.
        let challenge = p
            .get("hub.challenge")
            .filter(|c| (1..=64).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_digit()))?;
        named.then(|| challenge.clone())
    }

    fn receipts(&self, request: &ReceiptRequest) -> Result<Vec<Receipt>, ReceiptError> {
        {
            let secret = &self.config.app_secret;
            let given = request
                .headers
                .get("x-hub-signature-256")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("sha256="))
                .and_then(|hex_text| hex::decode(hex_text).ok())
                .ok_or(ReceiptError::BadSignature)?;
            let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.expose().as_bytes())
                .expect("any key length");
            mac.update(&request.body);
            mac.verify_slice(&given)
                .map_err(|_| ReceiptError::BadSignature)?;
        }
        let body: Value = serde_json::from_slice(&request.body)
            .map_err(|_| ReceiptError::Malformed("not JSON".into()))?;
        let mut out = Vec::new();
        let entries = body["entry"].as_array().cloned().unwrap_or_default();
        for change in entries
            .iter()
            .flat_map(|e| e["changes"].as_array().cloned().unwrap_or_default())
        {
            for status in change["value"]["statuses"]
                .as_array()
                .cloned()
                .unwrap_or_default()
            {
                let Some(id) = status["id"].as_str() else {
                    continue;
                };
                let state = match status["status"].as_str() {
                    Some("delivered" | "read") => ReceiptState::Delivered,
                    Some("failed") => ReceiptState::Failed,
                    _ => ReceiptState::Submitted,
                };
                let error = status["errors"][0].as_object().map(|e| {
                    Failure::new(
                        format!(
                            "meta-{}",
                            e.get("code").and_then(Value::as_i64).unwrap_or(0)
                        ),
                        e.get("title")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_owned(),
                    )
                });
                out.push(Receipt {
                    message_id: id.to_owned(),
                    state,
                    error,
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(status: u16, code: i64) -> SendError {
        let body = format!(r#"{{"error":{{"message":"m","code":{code}}}}}"#);
        let status = reqwest::StatusCode::from_u16(status).unwrap();
        refusal(
            status,
            &Default::default(),
            meta_failure(status.as_u16(), &body),
        )
    }

    #[test]
    fn meta_errors_are_throttling_trouble_or_a_refusal_of_the_message() {
        assert!(matches!(refused(400, 130429), SendError::Throttled { .. }));
        assert!(matches!(refused(400, 80007), SendError::Throttled { .. }));
        assert!(matches!(refused(500, 131000), SendError::Temporary(_)));
        assert!(matches!(refused(401, 190), SendError::Temporary(_)));
        assert!(matches!(refused(400, 131026), SendError::Rejected(_)));
        assert!(matches!(refused(400, 132001), SendError::Rejected(_)));
        assert_eq!(refused(400, 131026).failure().code, "meta-131026");
        let garbled = meta_failure(502, "<html>bad gateway</html>");
        assert_eq!(garbled.code, "http-502");
    }
}
