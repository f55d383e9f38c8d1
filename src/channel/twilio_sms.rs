//! Twilio's Messages API: `POST {base_url}/2010-04-01/Accounts/{sid}/Messages.json` with Basic
//! auth and form fields `To`, `From` or `MessagingServiceSid`, `Body`, `ValidityPeriod` and
//! `StatusCallback`. Status callbacks are taken only with a valid `X-Twilio-Signature`.

use async_trait::async_trait;

use super::{
    twilio, Accepted, Channel, Failure, Outgoing, Receipt, ReceiptError, ReceiptRequest,
    ReceiptState, SendError,
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
}

#[async_trait]
impl Channel for TwilioSmsChannel {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, m: &Outgoing) -> Result<Accepted, SendError> {
        let mut form: Vec<(&str, String)> = vec![("To", format!("+{}", m.number()?.digits()))];
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
        let sid = twilio::create(
            &self.client,
            &self.config.base_url,
            &self.config.account_sid,
            self.config.auth_token.expose(),
            "Messages",
            &form,
        )
        .await?;
        Ok(Accepted {
            message_id: sid,
            delivered: false,
        })
    }

    fn receipt(&self, request: &ReceiptRequest) -> Result<Option<Receipt>, ReceiptError> {
        let params = twilio::signed_params(self.config.auth_token.expose(), request)?;
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
            twilio::signature(
                "12345",
                "https://mycompany.com/myapp.php?foo=1&bar=2",
                &params
            ),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
    }
}
