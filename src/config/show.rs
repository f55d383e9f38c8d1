//! The effective configuration as TOML, for `verifyd config check`: every key with the value it
//! takes after defaults, file, environment and flags, and `***` for every password, secret or
//! token and every value that came from `${…}`.

use std::collections::BTreeSet;

use toml::{Table, Value};

use super::delivery::{ChannelSpec, DeliveryConfig, Secret};
use super::{KeySource, Settings};

const MASK: &str = "***";

pub fn effective_toml(settings: &Settings, from_env: &BTreeSet<String>) -> String {
    let mut top = Table::new();
    let mut put = |key: &str, value: Value| {
        top.insert(key.to_owned(), value);
    };
    put("listen", settings.listen.to_string().into());
    put("database", settings.database.describe().into());
    if let Some(tls) = &settings.tls {
        put("tls_cert", tls.cert.display().to_string().into());
        put("tls_key", tls.key.display().to_string().into());
    }
    put("clock_speed", settings.clock_speed.into());
    match &settings.key {
        KeySource::File(path) => put("secret_key_file", path.display().to_string().into()),
        // VERIFYD_SECRET_KEY has no key in the file; it is shown masked under its own name.
        KeySource::Hex(_) => put("secret_key", MASK.into()),
    }
    let pricing = &settings.pricing;
    put("currency", pricing.currency.clone().into());
    put(
        "price_verification",
        pricing.verification.to_string().into(),
    );
    put("price_sms", pricing.per_sms.to_string().into());
    put("price_call", pricing.per_call.to_string().into());
    put("delivery_lease", secs(settings.delivery_lease));
    let http = &settings.http;
    put("header_timeout", secs(http.header_timeout));
    put("body_timeout", secs(http.body_timeout));
    put("idle_timeout", secs(http.idle_timeout));
    put(
        "max_connections",
        (crate::http::connection_cap(http.max_connections) as i64).into(),
    );
    put(
        "inbox_hosts",
        Value::Array(
            settings
                .inbox_hosts
                .iter()
                .map(|h| h.as_str().into())
                .collect(),
        ),
    );
    let delivery = &settings.delivery;
    if let Some(url) = &delivery.public_url {
        put("public_url", url.clone().into());
    }
    top.insert(
        "channels".into(),
        Value::Table(channels(delivery, from_env)),
    );
    top.insert("routes".into(), Value::Array(routes(delivery)));
    top.insert(
        "limits".into(),
        Value::Table(super::limits::to_toml(&settings.limits)),
    );
    top.insert(
        "destinations".into(),
        Value::Table(super::destinations::to_toml(&settings.destinations)),
    );
    top.insert(
        "fraud".into(),
        Value::Table(super::fraud::to_toml(&settings.fraud)),
    );
    let mut retention = Table::new();
    retention.insert(
        "ended".into(),
        super::retention::to_toml(settings.keep_ended).into(),
    );
    top.insert("retention".into(), Value::Table(retention));
    // A test number's code lets anyone verify it: shown as a secret is.
    let test_numbers = delivery
        .test_numbers
        .numbers()
        .map(|n| (n.to_owned(), Value::from(MASK)))
        .collect();
    top.insert("test_numbers".into(), Value::Table(test_numbers));
    toml::to_string(&top).expect("a table of plain values")
}

fn secs(d: std::time::Duration) -> Value {
    if d.subsec_nanos() == 0 {
        (d.as_secs() as i64).into()
    } else {
        d.as_secs_f64().into()
    }
}

fn channels(delivery: &DeliveryConfig, from_env: &BTreeSet<String>) -> Table {
    let mut out = Table::new();
    for (name, channel) in &delivery.channels {
        let key = format!("channels.{name}");
        let mut t = Table::new();
        // A value from the environment is shown masked, whatever it is.
        let mut text = |field: &str, value: &str| {
            let shown = if from_env.contains(&format!("{key}.{field}")) {
                MASK
            } else {
                value
            };
            t.insert(field.to_owned(), shown.into());
        };
        text("type", channel.spec.type_name());
        match &channel.spec {
            ChannelSpec::TwilioSms(c) => {
                text("account_sid", &c.account_sid);
                text("auth_token", masked(&c.auth_token));
                if let Some(from) = &c.from {
                    text("from", from);
                }
                if let Some(sid) = &c.messaging_service_sid {
                    text("messaging_service_sid", sid);
                }
                text("base_url", &c.base_url);
            }
            ChannelSpec::VonageSms(c) => {
                text("api_key", &c.api_key);
                text("api_secret", masked(&c.api_secret));
                if let Some(from) = &c.from {
                    text("from", from);
                }
                text("base_url", &c.base_url);
            }
            ChannelSpec::Webhook(c) => {
                text("url", &masked_url(&c.url));
                text("method", &c.method);
                text("body", &c.body);
                text("content_type", &c.content_type);
                if let Some(secret) = &c.signing_secret {
                    text("signing_secret", masked(secret));
                }
                if let Some(pointer) = &c.message_id {
                    text("message_id", pointer);
                }
                if let Some(from) = &c.from {
                    text("from", from);
                }
                let headers: Table = c
                    .headers
                    .keys()
                    .map(|name| (name.clone(), Value::from(MASK)))
                    .collect();
                t.insert("headers".into(), Value::Table(headers));
            }
            ChannelSpec::WhatsApp(c) => {
                text("phone_number_id", &c.phone_number_id);
                text("access_token", masked(&c.access_token));
                text("template", &c.template);
                if let Some(language) = &c.language {
                    text("language", language);
                }
                text("app_secret", masked(&c.app_secret));
                if let Some(token) = &c.verify_token {
                    text("verify_token", masked(token));
                }
                text("base_url", &c.base_url);
            }
            ChannelSpec::Smtp(c) => {
                text("host", &c.host);
                let tls = match c.tls {
                    crate::config::smtp::SmtpTls::Starttls => "starttls",
                    crate::config::smtp::SmtpTls::Implicit => "implicit",
                    crate::config::smtp::SmtpTls::None => "none",
                };
                text("tls", tls);
                if let Some(user) = &c.username {
                    text("username", user);
                }
                if let Some(password) = &c.password {
                    text("password", masked(password));
                }
                text("from", &c.from);
                t.insert("port".into(), Value::Integer(c.port().into()));
            }
            ChannelSpec::Smpp(c) => {
                text("host", &c.host);
                text("system_id", &c.system_id);
                text("password", masked(&c.password));
                text("system_type", &c.system_type);
                if let Some(from) = &c.from {
                    text("from", from);
                }
                t.insert("port".into(), Value::Integer(c.port.into()));
                t.insert("tls".into(), Value::Boolean(c.tls));
                t.insert("window".into(), Value::Integer(c.window.into()));
                t.insert("max_rate".into(), Value::Float(c.max_rate));
            }
            ChannelSpec::Sip(c) => {
                text("proxy", &c.proxy);
                text("from", &c.from);
                text("to", &c.to);
                if let Some(user) = &c.username {
                    text("username", user);
                }
                if let Some(password) = &c.password {
                    text("password", masked(password));
                }
                if let Some(ports) = &c.rtp_ports {
                    text("rtp_ports", ports);
                }
                let transport = match c.transport {
                    crate::config::sip::Transport::Udp => "udp",
                    crate::config::sip::Transport::Tcp => "tcp",
                };
                text("transport", transport);
                if let Some(ip) = &c.local_ip {
                    text("local_ip", &ip.to_string());
                }
                t.insert(
                    "answer_timeout".into(),
                    Value::Integer(c.answer_timeout as i64),
                );
            }
            ChannelSpec::VonageVoice(c) => {
                text("application_id", &c.application_id);
                text("private_key", &c.private_key.display().to_string());
                text("from", &c.from);
                text("base_url", &c.base_url);
            }
            ChannelSpec::TwilioVoice(c) => {
                text("account_sid", &c.account_sid);
                text("auth_token", masked(&c.auth_token));
                text("from", &c.from);
                text("base_url", &c.base_url);
            }
        }
        t.insert("timeout".into(), secs(channel.timeout));
        out.insert(name.clone(), Value::Table(t));
    }
    out
}

fn masked(_: &Secret) -> &'static str {
    MASK
}

/// A URL with its password and the values of its query replaced by `***`: either may be a
/// token written into the file.
fn masked_url(url: &str) -> String {
    let Ok(mut parsed) = reqwest::Url::parse(url) else {
        return MASK.into();
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some(MASK));
    }
    if parsed.query().is_some() {
        let names: Vec<String> = parsed.query_pairs().map(|(k, _)| k.into_owned()).collect();
        parsed
            .query_pairs_mut()
            .clear()
            .extend_pairs(names.iter().map(|k| (k.as_str(), MASK)));
    }
    // The parser encoded what the file wrote; show the placeholders and the mask as written.
    parsed
        .to_string()
        .replace("%7B%7B", "{{")
        .replace("%7D%7D", "}}")
        .replace("%2A%2A%2A", MASK)
}

fn routes(delivery: &DeliveryConfig) -> Vec<Value> {
    delivery
        .routes
        .iter()
        .map(|r| {
            let mut t = Table::new();
            t.insert("kind".into(), r.kind.as_str().into());
            if !r.to.is_empty() {
                let to = r.to.iter().map(|p| Value::from(format!("+{p}"))).collect();
                t.insert("to".into(), Value::Array(to));
            }
            let channels = r.channels.iter().map(|c| Value::from(c.as_str())).collect();
            t.insert("channels".into(), Value::Array(channels));
            if let Some(from) = &r.from {
                t.insert("from".into(), from.as_str().into());
            }
            Value::Table(t)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_passwords_or_query_values() {
        assert_eq!(
            masked_url("https://user:pw@sms.test/send?key=abc&to={{to}}"),
            "https://user:***@sms.test/send?key=***&to=***"
        );
        assert_eq!(
            masked_url("https://sms.test/send/{{to}}"),
            "https://sms.test/send/{{to}}"
        );
    }
}
