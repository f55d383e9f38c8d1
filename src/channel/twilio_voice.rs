//! Twilio's Programmable Voice: `POST {base_url}/2010-04-01/Accounts/{sid}/Calls.json` with
//! Basic auth and form fields `To`, `From`, `Twiml` (`<Response><Say language="…">script</Say>
//! </Response>`: the script already says the code twice, so it is not looped) and
//! `StatusCallback` with its events. Status callbacks are taken only with a valid
//! `X-Twilio-Signature`.

use async_trait::async_trait;

use super::language::bcp47;
use super::{
    twilio, Accepted, Channel, Failure, Outgoing, Receipt, ReceiptError, ReceiptRequest,
    ReceiptState, SendError,
};
use crate::config::voice::TwilioVoice;

pub struct TwilioVoiceChannel {
    name: String,
    config: TwilioVoice,
    client: reqwest::Client,
}

impl TwilioVoiceChannel {
    pub fn new(name: &str, config: TwilioVoice, client: reqwest::Client) -> Self {
        Self {
            name: name.to_owned(),
            config,
            client,
        }
    }
}

/// The TwiML that reads `script` in `locale`.
pub fn twiml(script: &str, locale: &str) -> String {
    let mut out = format!("<Response><Say language=\"{}\">", bcp47(locale));
    crate::xml::push_text(&mut out, script);
    out.push_str("</Say></Response>");
    out
}

#[async_trait]
impl Channel for TwilioVoiceChannel {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, m: &Outgoing) -> Result<Accepted, SendError> {
        let mut form: Vec<(&str, String)> = vec![
            ("To", format!("+{}", m.number()?.digits())),
            ("From", self.config.from.clone()),
            ("Twiml", twiml(&m.text, &m.locale)),
        ];
        if let Some(url) = &m.receipt_url {
            form.push(("StatusCallback", url.clone()));
            form.push(("StatusCallbackMethod", "POST".into()));
            for event in ["initiated", "ringing", "answered", "completed"] {
                form.push(("StatusCallbackEvent", event.into()));
            }
        }
        let sid = twilio::create(
            &self.client,
            &self.config.base_url,
            &self.config.account_sid,
            self.config.auth_token.expose(),
            "Calls",
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
        let Some(sid) = params.get("CallSid").filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        let status = params.get("CallStatus").map(String::as_str).unwrap_or("");
        let (state, error) = match status {
            // A call that ends after it was answered was heard.
            "completed" => (ReceiptState::Delivered, None),
            "busy" | "no-answer" | "canceled" => (
                ReceiptState::Undeliverable,
                Some(Failure::new(status, format!("Twilio call status {status}"))),
            ),
            "failed" => (
                ReceiptState::Failed,
                Some(Failure::new(
                    params
                        .get("ErrorCode")
                        .cloned()
                        .unwrap_or_else(|| "failed".into()),
                    "Twilio call status failed".to_owned(),
                )),
            ),
            _ => (ReceiptState::Submitted, None),
        };
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
    fn the_twiml_says_the_script_once_in_the_locales_language() {
        assert_eq!(
            twiml("Your code: 1, 2. <again> 1, 2 & bye", "en-gb"),
            "<Response><Say language=\"en-GB\">Your code: 1, 2. &lt;again&gt; 1, 2 &amp; bye</Say></Response>"
        );
    }
}
