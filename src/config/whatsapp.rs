//! `[channels.NAME] type = "whatsapp"`: the code in an authentication template message through
//! Meta's WhatsApp Cloud API.

use serde::Deserialize;

use super::delivery::Secret;
use super::file::Problem;

pub const WHATSAPP_BASE_URL: &str = "https://graph.facebook.com/v21.0";

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhatsApp {
    /// The sending number's id in the WhatsApp Business account.
    pub phone_number_id: String,
    pub access_token: Secret,
    /// An approved template of the authentication category (its body takes the code, and its
    /// copy-code button too).
    pub template: String,
    /// The template's language (`en_US`); by default the request's locale (`en-gb` is `en_GB`).
    #[serde(default)]
    pub language: Option<String>,
    /// The app secret: receipts must carry `X-Hub-Signature-256` made with it.
    #[serde(default)]
    pub app_secret: Option<Secret>,
    /// What the webhook's subscription check must name to be answered.
    #[serde(default)]
    pub verify_token: Option<Secret>,
    #[serde(default = "base_url")]
    pub base_url: String,
}

fn base_url() -> String {
    WHATSAPP_BASE_URL.to_owned()
}

impl WhatsApp {
    pub fn check(&self, key: &str) -> Result<(), Problem> {
        if self.phone_number_id.is_empty()
            || !self.phone_number_id.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(Problem::new(
                format!("{key}.phone_number_id"),
                "expected the digits of the number's id in the WhatsApp Business account",
            ));
        }
        let name_ok = !self.template.is_empty()
            && self.template.len() <= 512
            && self
                .template
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !name_ok {
            return Err(Problem::new(
                format!("{key}.template"),
                "expected a template name: lower-case letters, digits and underscores",
            ));
        }
        if let Some(language) = &self.language {
            let ok = (2..=10).contains(&language.len())
                && language
                    .bytes()
                    .all(|b| b.is_ascii_alphabetic() || b == b'_');
            if !ok {
                return Err(Problem::new(
                    format!("{key}.language"),
                    "expected a template language code such as \"en_US\"",
                ));
            }
        }
        super::delivery::check_http_url(&format!("{key}.base_url"), &self.base_url)
    }

    /// The template language for a request in `locale` (`pt-br` is `pt_BR`).
    pub fn language_for(&self, locale: &str) -> String {
        if let Some(language) = &self.language {
            return language.clone();
        }
        match locale.split_once('-') {
            Some((lang, region)) => format!("{lang}_{}", region.to_ascii_uppercase()),
            None => locale.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whatsapp(extra: &str) -> Result<WhatsApp, Problem> {
        let text = format!(
            "phone_number_id = \"106540352242922\"\naccess_token = \"t\"\ntemplate = \"verify_code\"\n{extra}"
        );
        let value: toml::Value = toml::from_str(&text).unwrap();
        let c: WhatsApp = crate::config::file::deserialize("channels.wa", value)?;
        c.check("channels.wa")?;
        Ok(c)
    }

    #[test]
    fn the_language_is_the_requests_locale_unless_one_is_set() {
        let c = whatsapp("").unwrap();
        assert_eq!(c.language_for("pt-br"), "pt_BR");
        assert_eq!(c.language_for("en-gb"), "en_GB");
        assert_eq!(c.base_url, WHATSAPP_BASE_URL);
        let c = whatsapp("language = \"en_US\"").unwrap();
        assert_eq!(c.language_for("pt-br"), "en_US");
    }

    #[test]
    fn a_bad_number_id_template_language_or_url_is_named() {
        for (extra, key) in [
            ("language = \"en US\"", "channels.wa.language"),
            ("base_url = \"ftp://x\"", "channels.wa.base_url"),
        ] {
            assert_eq!(whatsapp(extra).unwrap_err().key, key);
        }
        let value: toml::Value = toml::from_str(
            "phone_number_id = \"+1555\"\naccess_token = \"t\"\ntemplate = \"Verify Code\"",
        )
        .unwrap();
        let c: WhatsApp = crate::config::file::deserialize("channels.wa", value).unwrap();
        assert_eq!(
            c.check("channels.wa").unwrap_err().key,
            "channels.wa.phone_number_id"
        );
    }
}
