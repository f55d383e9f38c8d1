//! Vonage's Voice API: `POST {base_url}/v1/calls` with a JWT (RS256, signed with the
//! application's private key) and an inline NCCO `talk` action reading the script in the
//! locale's language (the script already says the code twice, so it is not looped). Call events
//! are posted to the receipt URL (`event_url`).

use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::http::{answer, excerpt, status_error, transport_error};
use super::language::bcp47;
use super::{
    Accepted, Channel, Failure, Outgoing, Receipt, ReceiptError, ReceiptRequest, ReceiptState,
    SendError,
};
use crate::config::voice::VonageVoice;

/// How long a request's JWT is good for.
const JWT_LIFE_SECS: u64 = 300;

pub struct VonageVoiceChannel {
    name: String,
    config: VonageVoice,
    key: jsonwebtoken::EncodingKey,
    client: reqwest::Client,
}

#[derive(Serialize, Deserialize)]
pub struct Claims {
    pub application_id: String,
    pub iat: u64,
    pub exp: u64,
    pub jti: String,
}

impl VonageVoiceChannel {
    pub fn new(name: &str, config: VonageVoice, client: reqwest::Client) -> Self {
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(config.key_pem.expose().as_bytes())
            .expect("the key was checked when the configuration was loaded");
        Self {
            name: name.to_owned(),
            config,
            key,
            client,
        }
    }

    fn jwt(&self) -> Result<String, SendError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let mut jti = [0u8; 16];
        crate::crypto::os_random(&mut jti);
        let claims = Claims {
            application_id: self.config.application_id.clone(),
            iat: now,
            exp: now + JWT_LIFE_SECS,
            jti: hex::encode(jti),
        };
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            &self.key,
        )
        .map_err(|e| SendError::Temporary(Failure::new("jwt", e.to_string())))
    }
}

#[derive(Deserialize)]
struct Created {
    uuid: String,
}

#[derive(Deserialize)]
struct Event {
    uuid: Option<String>,
    status: Option<String>,
}

#[async_trait]
impl Channel for VonageVoiceChannel {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, m: &Outgoing) -> Result<Accepted, SendError> {
        let mut body = serde_json::json!({
            "to": [{"type": "phone", "number": m.number()?.digits()}],
            "from": {"type": "phone", "number": self.config.from.trim_start_matches('+')},
            "ncco": [{
                "action": "talk",
                "text": m.text,
                "language": bcp47(&m.locale),
            }],
        });
        if let Some(url) = &m.receipt_url {
            body["event_url"] = serde_json::json!([url]);
            body["event_method"] = "POST".into();
        }
        let url = format!("{}/v1/calls", self.config.base_url.trim_end_matches('/'));
        let response = self
            .client
            .post(url)
            .bearer_auth(self.jwt()?)
            .json(&body)
            .send()
            .await
            .map_err(transport_error)?;
        let (status, headers, text) = answer(response).await?;
        if !status.is_success() {
            let failure = Failure::new(format!("http-{}", status.as_u16()), excerpt(&text, 200));
            return Err(status_error(status, &headers, failure));
        }
        let created: Created = serde_json::from_str(&text).map_err(|_| {
            SendError::Temporary(Failure::new(
                "answer",
                format!(
                    "Vonage answered without a call uuid: {}",
                    excerpt(&text, 200)
                ),
            ))
        })?;
        Ok(Accepted {
            message_id: created.uuid,
            delivered: false,
        })
    }

    fn receipt(&self, request: &ReceiptRequest) -> Result<Option<Receipt>, ReceiptError> {
        let event: Event = serde_json::from_slice(&request.body)
            .map_err(|e| ReceiptError::Malformed(e.to_string()))?;
        let (Some(uuid), Some(status)) = (event.uuid, event.status) else {
            return Ok(None);
        };
        let (state, error) = match status.as_str() {
            // The call ended after it was answered: the script was read.
            "completed" => (ReceiptState::Delivered, None),
            "busy" | "cancelled" | "rejected" | "timeout" | "unanswered" => (
                ReceiptState::Undeliverable,
                Some(Failure::new(
                    &status,
                    format!("Vonage call status {status}"),
                )),
            ),
            "failed" => (
                ReceiptState::Failed,
                Some(Failure::new("failed", "Vonage call status failed")),
            ),
            _ => (ReceiptState::Submitted, None),
        };
        Ok(Some(Receipt {
            message_id: uuid,
            state,
            error,
        }))
    }
}
