//! Twilio's Messages API: `POST {base_url}/2010-04-01/Accounts/{sid}/Messages.json` with Basic
//! auth and form fields `To`, `From` or `MessagingServiceSid`, `Body`, `ValidityPeriod` and
//! `StatusCallback`. Status callbacks are taken only with a valid `X-Twilio-Signature`.

use std::collections::BTreeMap;

use async_trait::async_trait;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Deserialize;

use super::http::{answer, excerpt, status_error, transport_error};
use super::{
    Accepted, Channel, Failure, Outgoing, Receipt, ReceiptError, ReceiptRequest, ReceiptState,
    SendError,
};
use crate::config::delivery::TwilioSms;

/// Twilio takes a validity period of 1 s to 10 h.
const MAX_VALIDITY_SECS: u64 = 36_000;

pub struct TwilioSmsChannel {
    name: String,
    config: TwilioSms,
    client: reqwest::Client,
}

impl TwilioSmsChannel {
    pub fn new(name: &str, config: TwilioSms, client: reqwest::Client) -> Self {
        Self {
            name: name.to_owned(),
            config,
            client,
        }
    }

    fn url(&self) -> String {
        format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            self.config.base_url.trim_end_matches('/'),
            self.config.account_sid
        )
    }

    /// Twilio's signature of a callback: HMAC-SHA1 with the auth token over the URL followed by
    /// every form parameter's name and value, sorted by name.
    pub fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
        let mut sorted: Vec<&(String, String)> = params.iter().collect();
        sorted.sort();
        let mut mac = <Hmac<sha1::Sha1> as Mac>::new_from_slice(auth_token.as_bytes())
            .expect("HMAC takes any key length");
        mac.update(url.as_bytes());
        for (name, value) in sorted {
            mac.update(name.as_bytes());
            mac.update(value.as_bytes());
        }
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    }
}

#[derive(Deserialize)]
struct Created {
    sid: String,
}

#[derive(Deserialize)]
struct TwilioError {
    code: Option<i64>,
    message: Option<String>,
}

#[async_trait]
impl Channel for TwilioSmsChannel {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, m: &Outgoing) -> Result<Accepted, SendError> {
        let mut form: Vec<(&str, String)> = vec![("To", format!("+{}", m.to.digits()))];
        match &self.config.messaging_service_sid {
            Some(sid) => form.push(("MessagingServiceSid", sid.clone())),
            None => form.push(("From", m.from.clone())),
        }
        form.push(("Body", m.text.clone()));
        let validity = m.valid_for.as_secs().clamp(1, MAX_VALIDITY_SECS);
        form.push(("ValidityPeriod", validity.to_string()));
        if let Some(url) = &m.receipt_url {
            form.push(("StatusCallback", url.clone()));
        }
        let response = self
            .client
            .post(self.url())
            .basic_auth(
                &self.config.account_sid,
                Some(self.config.auth_token.expose()),
            )
            .form(&form)
            .send()
            .await
            .map_err(transport_error)?;
        let (status, headers, body) = answer(response).await?;
        if status.is_success() {
            let created: Created = serde_json::from_str(&body).map_err(|_| {
                SendError::Temporary(Failure::new(
                    "answer",
                    format!(
                        "Twilio answered {status} without a message sid: {}",
                        excerpt(&body, 200)
                    ),
                ))
            })?;
            return Ok(Accepted {
                message_id: created.sid,
                delivered: false,
            });
        }
        let failure = match serde_json::from_str::<TwilioError>(&body) {
            Ok(TwilioError {
                code: Some(code),
                message,
            }) => Failure::new(code.to_string(), message.unwrap_or_default()),
            _ => Failure::new(format!("http-{}", status.as_u16()), excerpt(&body, 200)),
        };
        Err(status_error(status, &headers, failure))
    }

    fn receipt(&self, request: &ReceiptRequest) -> Result<Option<Receipt>, ReceiptError> {
        let params: Vec<(String, String)> =
            form_urlencoded::parse(&request.body).into_owned().collect();
        let given = request
            .headers
            .get("x-twilio-signature")
            .and_then(|v| v.to_str().ok())
            .ok_or(ReceiptError::BadSignature)?;
        let expected = Self::signature(self.config.auth_token.expose(), &request.url, &params);
        use subtle::ConstantTimeEq;
        if given.len() != expected.len() || !bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
        {
            return Err(ReceiptError::BadSignature);
        }
        let params: BTreeMap<String, String> = params.into_iter().collect();
        let Some(sid) = params.get("MessageSid").filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        let status = params
            .get("MessageStatus")
            .map(String::as_str)
            .unwrap_or("");
        let state = match status {
            "delivered" | "read" => ReceiptState::Delivered,
            "undelivered" => ReceiptState::Undeliverable,
            "failed" | "canceled" => ReceiptState::Failed,
            _ => ReceiptState::Submitted,
        };
        let error = params
            .get("ErrorCode")
            .filter(|c| !c.is_empty() && c.as_str() != "0")
            .map(|code| Failure::new(code.clone(), format!("Twilio status {status}")));
        Ok(Some(Receipt {
            message_id: sid.clone(),
            state,
            error,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_twilios_documented_example() {
        // https://www.twilio.com/docs/usage/security#validating-requests
        let params: Vec<(String, String)> = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            TwilioSmsChannel::signature(
                "12345",
                "https://mycompany.com/myapp.php?foo=1&bar=2",
                &params
            ),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
    }
}
