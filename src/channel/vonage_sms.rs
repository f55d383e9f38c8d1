//! Vonage's SMS API: `POST {base_url}/sms/json` with `api_key`, `api_secret`, `from`, `to`,
//! `text` (`type=unicode` when the text is not GSM 03.38), `ttl`, and `status-report-req=1` with
//! a `callback` for delivery receipts. The status of each message in the answer decides.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::Deserialize;

use super::gsm::is_gsm7;
use super::http::{answer, excerpt, status_error, transport_error};
use super::{
    Accepted, Channel, Failure, Outgoing, Receipt, ReceiptError, ReceiptRequest, ReceiptState,
    SendError,
};
use crate::config::delivery::VonageSms;

/// Vonage takes a time to live of 20 s to 7 days, in milliseconds.
const TTL_MS: (u64, u64) = (20_000, 604_800_000);

pub struct VonageSmsChannel {
    name: String,
    config: VonageSms,
    client: reqwest::Client,
}

impl VonageSmsChannel {
    pub fn new(name: &str, config: VonageSms, client: reqwest::Client) -> Self {
        Self {
            name: name.to_owned(),
            config,
            client,
        }
    }
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    messages: Vec<Part>,
}

#[derive(Deserialize)]
struct Part {
    status: String,
    #[serde(rename = "message-id")]
    message_id: Option<String>,
    #[serde(rename = "error-text")]
    error_text: Option<String>,
}

#[async_trait]
impl Channel for VonageSmsChannel {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, m: &Outgoing) -> Result<Accepted, SendError> {
        let ttl = (m.valid_for.as_millis() as u64).clamp(TTL_MS.0, TTL_MS.1);
        let mut form: Vec<(&str, String)> = vec![
            ("api_key", self.config.api_key.clone()),
            ("api_secret", self.config.api_secret.expose().to_owned()),
            ("from", m.from.clone()),
            ("to", m.number()?.digits().to_owned()),
            ("text", m.text.clone()),
            ("ttl", ttl.to_string()),
            ("client-ref", m.id.as_str().to_owned()),
        ];
        if !is_gsm7(&m.text) {
            form.push(("type", "unicode".into()));
        }
        if let Some(url) = &m.receipt_url {
            form.push(("status-report-req", "1".into()));
            form.push(("callback", url.clone()));
        }
        let url = format!("{}/sms/json", self.config.base_url.trim_end_matches('/'));
        let response = self
            .client
            .post(url)
            .form(&form)
            .send()
            .await
            .map_err(transport_error)?;
        let (status, headers, body) = answer(response).await?;
        if !status.is_success() {
            let failure = Failure::new(format!("http-{}", status.as_u16()), excerpt(&body, 200));
            return Err(status_error(status, &headers, failure));
        }
        let answer: Answer = serde_json::from_str(&body).map_err(|_| {
            SendError::Temporary(Failure::new(
                "answer",
                format!("Vonage answered without messages: {}", excerpt(&body, 200)),
            ))
        })?;
        // A long text goes in parts; the first part's id names the message, and any part that
        // failed fails it.
        let Some(first) = answer.messages.first() else {
            return Err(SendError::Temporary(Failure::new(
                "answer",
                format!("Vonage answered without messages: {}", excerpt(&body, 200)),
            )));
        };
        if let Some(bad) = answer.messages.iter().find(|p| p.status != "0") {
            let failure = Failure::new(
                format!("vonage-{}", bad.status),
                bad.error_text.clone().unwrap_or_default(),
            );
            return Err(match bad.status.as_str() {
                "1" => SendError::Throttled {
                    retry_after: std::time::Duration::from_secs(1),
                    failure,
                },
                // Internal error, too many binds: they pass.
                "5" | "10" => SendError::Temporary(failure),
                _ => SendError::Rejected(failure),
            });
        }
        let message_id = first.message_id.clone().ok_or_else(|| {
            SendError::Temporary(Failure::new(
                "answer",
                "Vonage accepted without a message-id",
            ))
        })?;
        Ok(Accepted {
            message_id,
            delivered: false,
        })
    }

    fn receipt(&self, request: &ReceiptRequest) -> Result<Option<Receipt>, ReceiptError> {
        // Receipts come as a query (GET), a form or JSON, as the account is set up.
        let mut fields: BTreeMap<String, String> = request.params.clone();
        if request.body.first() == Some(&b'{') {
            let json: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(&request.body)
                    .map_err(|e| ReceiptError::Malformed(e.to_string()))?;
            for (k, v) in json {
                let text = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                fields.insert(k, text);
            }
        }
        let Some(id) = fields.get("messageId").filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        let status = fields.get("status").map(String::as_str).unwrap_or("");
        let state = match status {
            "delivered" => ReceiptState::Delivered,
            "expired" => ReceiptState::Undeliverable,
            "failed" | "rejected" => ReceiptState::Failed,
            _ => ReceiptState::Submitted,
        };
        let error = fields
            .get("err-code")
            .filter(|c| !c.is_empty() && c.as_str() != "0")
            .map(|code| {
                Failure::new(
                    format!("vonage-dlr-{code}"),
                    format!("Vonage status {status}"),
                )
            });
        Ok(Some(Receipt {
            message_id: id.clone(),
            state,
            error,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_outside_gsm_03_38_go_as_unicode() {
        assert!(is_gsm7("AcmeInc: your verification code is 4815"));
        assert!(is_gsm7("Ihr Bestätigungscode lautet {1234} €"));
        assert!(
            !is_gsm7("Ο κωδικός σας"),
            "lowercase Greek is not in the alphabet"
        );
        assert!(!is_gsm7("رمز التحقق"));
        assert!(!is_gsm7("code 🔐"));
    }
}
