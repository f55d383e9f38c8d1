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
    pub app_secret: Secret,
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

    /// The template language for a request in `locale`: the code Meta's list of template
    /// languages gives it (a region only where Meta has one: `pt_BR`, `en_GB`, `es_MX` …),
    /// English where Meta has none (Welsh, Icelandic, Maltese).
    pub fn language_for(&self, locale: &str) -> String {
        if let Some(language) = &self.language {
            return language.clone();
        }
        let code = match locale {
            "en-gb" => "en_GB",
            "en-us" => "en_US",
            "es-es" => "es_ES",
            "es-mx" => "es_MX",
            "pt-br" => "pt_BR",
            "pt-pt" => "pt_PT",
            "zh-cn" => "zh_CN",
            "zh-tw" => "zh_TW",
            "yue-cn" => "zh_HK",
            "nb-no" => "nb",
            "fil-ph" => "fil",
            "ee-et" => "et",
            "cy-cy" | "cy-gb" | "is-is" | "mt-mt" => "en",
            other => other.split('-').next().unwrap_or("en"),
        };
        code.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whatsapp(extra: &str) -> Result<WhatsApp, Problem> {
        let text = format!(
            "phone_number_id = \"106540352242922\"\naccess_token = \"t\"\napp_secret = \"s\"\ntemplate = \"verify_code\"\n{extra}"
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
        assert_eq!(c.language_for("de-de"), "de");
        assert_eq!(c.language_for("ar-xa"), "ar");
        assert_eq!(c.language_for("en-au"), "en");
        assert_eq!(c.language_for("cy-gb"), "en");
        // Every locale gets a code of Meta's shape: a language, and a region in capitals.
        let locales = crate::domain::locale::STANDARD_LOCALES
            .iter()
            .chain(crate::domain::locale::PSD2_LOCALES.iter());
        for locale in locales {
            let code = c.language_for(locale);
            let (lang, region) = code.split_once('_').unwrap_or((code.as_str(), "XX"));
            assert!(
                (2..=3).contains(&lang.len()) && lang.bytes().all(|b| b.is_ascii_lowercase()),
                "{locale}: {code}"
            );
            assert!(
                region.len() == 2 && region.bytes().all(|b| b.is_ascii_uppercase()),
                "{locale}: {code}"
            );
        }
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
            "phone_number_id = \"+1555\"\naccess_token = \"t\"\napp_secret = \"s\"\ntemplate = \"Verify Code\"",
        )
        .unwrap();
        let c: WhatsApp = crate::config::file::deserialize("channels.wa", value).unwrap();
        assert_eq!(
            c.check("channels.wa").unwrap_err().key,
            "channels.wa.phone_number_id"
        );
    }
}
