//! The providers' voice APIs: `[channels.NAME] type = "vonage-voice"` and `"twilio-voice"`.

use std::path::PathBuf;

use serde::Deserialize;

use super::delivery::{check_http_url, Secret};
use super::file::Problem;

pub const VONAGE_API_URL: &str = "https://api.nexmo.com";

/// Vonage's Voice API: calls created with a JWT signed by the application's private key.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VonageVoice {
    pub application_id: String,
    /// The application's private key (PEM), read when the configuration is loaded.
    pub private_key: PathBuf,
    pub from: String,
    #[serde(default = "vonage_api_url")]
    pub base_url: String,
    /// The key's PEM, read from `private_key`.
    #[serde(skip)]
    pub key_pem: Secret,
}

fn vonage_api_url() -> String {
    VONAGE_API_URL.to_owned()
}

impl VonageVoice {
    /// Checks the values and reads the private key, so that a missing or broken key stops the
    /// server before it listens.
    pub fn load(mut self, key: &str) -> Result<Self, Problem> {
        check_http_url(&format!("{key}.base_url"), &self.base_url)?;
        if self.application_id.trim().is_empty() {
            return Err(Problem::new(
                format!("{key}.application_id"),
                "must not be empty",
            ));
        }
        if self.from.trim().is_empty() {
            return Err(Problem::new(format!("{key}.from"), "must not be empty"));
        }
        let pem = std::fs::read_to_string(&self.private_key).map_err(|e| {
            Problem::new(
                format!("{key}.private_key"),
                format!("cannot read {}: {e}", self.private_key.display()),
            )
        })?;
        // Reading the PEM checks only its armour: signing once checks the key.
        let signed = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).and_then(|k| {
            let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
            jsonwebtoken::encode(&header, &serde_json::json!({}), &k)
        });
        signed.map_err(|e| {
            Problem::new(
                format!("{key}.private_key"),
                format!(
                    "{} is not an RSA private key in PEM: {e}",
                    self.private_key.display()
                ),
            )
        })?;
        self.key_pem = Secret::new(pem);
        Ok(self)
    }
}

/// Twilio's Programmable Voice: `Calls.json` with inline TwiML.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioVoice {
    pub account_sid: String,
    pub auth_token: Secret,
    pub from: String,
    #[serde(default = "twilio_api_url")]
    pub base_url: String,
}

fn twilio_api_url() -> String {
    super::delivery::TWILIO_BASE_URL.to_owned()
}

impl TwilioVoice {
    pub fn check(&self, key: &str) -> Result<(), Problem> {
        check_http_url(&format!("{key}.base_url"), &self.base_url)?;
        if self.from.trim().is_empty() {
            return Err(Problem::new(format!("{key}.from"), "must not be empty"));
        }
        Ok(())
    }
}
