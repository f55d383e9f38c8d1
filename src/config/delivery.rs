//! Where messages go: the channels of the configuration file and the routes that choose among
//! them per kind of message and destination. Parsed and checked once, before the server listens.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::file::{Problem, Table};
use super::sip::Sip;
use super::smpp::Smpp;
use super::smtp::Smtp;
use super::voice::{TwilioVoice, VonageVoice};
use super::whatsapp::WhatsApp;
use crate::domain::Channel;

/// The built-in development channel: every message lands at `/inbox`.
pub const INBOX: &str = "inbox";
/// The channel a try is recorded on when no route carries its kind.
pub const NO_CHANNEL: &str = "none";
/// The channel a message to a test number is recorded on: it sends nothing.
pub const TEST_NUMBER: &str = "test-number";
/// How long a channel waits for a gateway's answer unless its `timeout` says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
pub const TWILIO_BASE_URL: &str = "https://api.twilio.com";
pub const VONAGE_BASE_URL: &str = "https://rest.nexmo.com";

/// What a route carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Sms,
    Voice,
    Email,
    WhatsApp,
}

pub const KINDS: [Kind; 4] = [Kind::Sms, Kind::Voice, Kind::Email, Kind::WhatsApp];

impl Kind {
    pub fn parse(raw: &str) -> Option<Self> {
        KINDS.into_iter().find(|k| k.as_str() == raw)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Sms => "sms",
            Kind::Voice => "voice",
            Kind::Email => "email",
            Kind::WhatsApp => "whatsapp",
        }
    }

    pub fn of(channel: Channel) -> Self {
        match channel {
            Channel::Sms => Kind::Sms,
            Channel::Voice => Kind::Voice,
            Channel::Email => Kind::Email,
            Channel::WhatsApp => Kind::WhatsApp,
        }
    }
}

/// A value that must not be shown: `Debug` and the effective configuration print `***`.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// One configured channel.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelConfig {
    pub name: String,
    /// How long one try may take before it counts as a temporary failure.
    pub timeout: Duration,
    pub spec: ChannelSpec,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ChannelSpec {
    TwilioSms(TwilioSms),
    VonageSms(VonageSms),
    Webhook(Webhook),
    Smpp(Smpp),
    Sip(Sip),
    VonageVoice(VonageVoice),
    TwilioVoice(TwilioVoice),
    Smtp(Smtp),
    WhatsApp(WhatsApp),
}

impl ChannelSpec {
    pub fn type_name(&self) -> &'static str {
        match self {
            ChannelSpec::TwilioSms(_) => "twilio-sms",
            ChannelSpec::VonageSms(_) => "vonage-sms",
            ChannelSpec::Webhook(_) => "webhook",
            ChannelSpec::Smpp(_) => "smpp",
            ChannelSpec::Sip(_) => "sip",
            ChannelSpec::VonageVoice(_) => "vonage-voice",
            ChannelSpec::TwilioVoice(_) => "twilio-voice",
            ChannelSpec::Smtp(_) => "smtp",
            ChannelSpec::WhatsApp(_) => "whatsapp",
        }
    }

    pub fn kinds(&self) -> &'static [Kind] {
        match self {
            ChannelSpec::Sip(_) | ChannelSpec::VonageVoice(_) | ChannelSpec::TwilioVoice(_) => {
                &[Kind::Voice]
            }
            ChannelSpec::Smtp(_) => &[Kind::Email],
            ChannelSpec::WhatsApp(_) => &[Kind::WhatsApp],
            _ => &[Kind::Sms],
        }
    }
}

pub const CHANNEL_TYPES: [&str; 9] = [
    "twilio-sms",
    "vonage-sms",
    "webhook",
    "smpp",
    "sip",
    "vonage-voice",
    "twilio-voice",
    "smtp",
    "whatsapp",
];

/// Twilio's Messages API.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioSms {
    pub account_sid: String,
    pub auth_token: Secret,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub messaging_service_sid: Option<String>,
    #[serde(default = "twilio_base_url")]
    pub base_url: String,
}

fn twilio_base_url() -> String {
    TWILIO_BASE_URL.to_owned()
}

/// Vonage's SMS API.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VonageSms {
    pub api_key: String,
    pub api_secret: Secret,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default = "vonage_base_url")]
    pub base_url: String,
}

fn vonage_base_url() -> String {
    VONAGE_BASE_URL.to_owned()
}

/// Any HTTP gateway: a request built from templates.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    pub url: String,
    #[serde(default = "post")]
    pub method: String,
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// Empty for a GET, whose URL carries the values.
    #[serde(default)]
    pub body: String,
    #[serde(default = "json_content_type")]
    pub content_type: String,
    #[serde(default)]
    pub signing_secret: Option<Secret>,
    /// A JSON pointer (RFC 6901) to the gateway's message id in its answer.
    #[serde(default)]
    pub message_id: Option<String>,
    #[serde(default)]
    pub from: Option<String>,
}

fn post() -> String {
    "POST".to_owned()
}

fn json_content_type() -> String {
    WEBHOOK_JSON.to_owned()
}

pub const WEBHOOK_JSON: &str = "application/json";
pub const WEBHOOK_FORM: &str = "application/x-www-form-urlencoded";
/// The placeholders a webhook's body (and URL) may use.
pub const WEBHOOK_PLACEHOLDERS: [&str; 9] = [
    "to",
    "from",
    "text",
    "id",
    "request_id",
    "kind",
    "locale",
    "valid_for",
    "receipt_url",
];

/// One `[[routes]]` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub kind: Kind,
    /// Destination prefixes as E.164 digits without `+`; empty for the default route.
    pub to: Vec<String>,
    /// Channel names, tried in this order.
    pub channels: Vec<String>,
    /// The sender for these destinations.
    pub from: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteEntry {
    kind: String,
    #[serde(default)]
    to: Vec<String>,
    channels: Vec<String>,
    #[serde(default)]
    from: Option<String>,
}

/// Channels and routes, checked against each other.
#[derive(Clone, Debug, PartialEq)]
pub struct DeliveryConfig {
    /// Base of the receipt callback URLs given to gateways.
    pub public_url: Option<String>,
    pub channels: BTreeMap<String, ChannelConfig>,
    pub routes: Vec<Route>,
    /// Without a configuration file every kind goes to the inbox; with one, only what a route
    /// sends there.
    pub from_file: bool,
    /// `[test_numbers]`: nothing is sent to them, whatever the routes say.
    pub test_numbers: crate::domain::test_numbers::TestNumbers,
}

impl Default for DeliveryConfig {
    /// No configuration file: the inbox gets everything.
    fn default() -> Self {
        Self {
            public_url: None,
            channels: BTreeMap::new(),
            routes: KINDS
                .into_iter()
                .map(|kind| Route {
                    kind,
                    to: Vec::new(),
                    channels: vec![INBOX.to_owned()],
                    from: None,
                })
                .collect(),
            from_file: false,
            test_numbers: Default::default(),
        }
    }
}

impl DeliveryConfig {
    /// The route for a message of `kind` to `digits` (E.164 without `+`): the longest prefix that
    /// matches, else the kind's default route.
    pub fn route_for(&self, kind: Kind, digits: &str) -> Option<&Route> {
        self.route_index_for(kind, digits).map(|i| &self.routes[i])
    }

    /// As [`Self::route_for`], the route's position in [`Self::routes`].
    pub fn route_index_for(&self, kind: Kind, digits: &str) -> Option<usize> {
        let mut best: Option<(usize, usize)> = None;
        for (index, route) in self
            .routes
            .iter()
            .enumerate()
            .filter(|(_, r)| r.kind == kind)
        {
            let length = if route.to.is_empty() {
                Some(0)
            } else {
                route
                    .to
                    .iter()
                    .filter(|p| digits.starts_with(p.as_str()))
                    .map(|p| p.len() + 1)
                    .max()
            };
            if let Some(length) = length {
                if best.is_none_or(|(_, l)| length > l) {
                    best = Some((index, length));
                }
            }
        }
        best.map(|(index, _)| index)
    }

    /// Kinds no route carries: their messages are not sent.
    pub fn unrouted_kinds(&self) -> Vec<Kind> {
        KINDS
            .into_iter()
            .filter(|k| !self.routes.iter().any(|r| r.kind == *k))
            .collect()
    }

    /// Whether a route names the inbox.
    pub fn uses_inbox(&self) -> bool {
        self.routes
            .iter()
            .any(|r| r.channels.iter().any(|c| c == INBOX))
    }

    /// Whether a channel reads codes aloud in calls of its own (SIP), which needs espeak-ng.
    pub fn speaks(&self) -> bool {
        self.channels
            .values()
            .any(|c| matches!(c.spec, ChannelSpec::Sip(_)))
    }

    /// Whether every route ends in the inbox (no message leaves the machine).
    pub fn only_inbox(&self) -> bool {
        self.routes
            .iter()
            .all(|r| r.channels.iter().all(|c| c == INBOX))
    }

    /// Parses `[channels.*]` (with `${NAME}` already replaced) and `[[routes]]`.
    pub fn parse(
        public_url: Option<String>,
        channels: &Table,
        routes: &[toml::Value],
    ) -> Result<Self, Problem> {
        let mut parsed = BTreeMap::new();
        for (name, value) in channels {
            let key = format!("channels.{name}");
            if name == INBOX || name == NO_CHANNEL || name == TEST_NUMBER {
                return Err(Problem::new(
                    key,
                    format!("`{name}` is reserved; give this channel another name"),
                ));
            }
            let valid = !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid {
                return Err(Problem::new(
                    key,
                    "a channel's name is up to 64 letters, digits, `-` and `_` (it is part of its receipt URL)",
                ));
            }
            let table = value
                .as_table()
                .ok_or_else(|| Problem::new(&key, "expected a table ([channels.NAME])"))?;
            parsed.insert(name.clone(), parse_channel(name, table)?);
        }
        let mut parsed_routes = Vec::new();
        for (i, value) in routes.iter().enumerate() {
            let key = format!("routes[{i}]");
            let entry: RouteEntry = super::file::deserialize(&key, value.clone())?;
            parsed_routes.push(check_route(&key, entry, &parsed)?);
        }
        for kind in KINDS {
            let of_kind: Vec<&Route> = parsed_routes.iter().filter(|r| r.kind == kind).collect();
            if of_kind.is_empty() {
                continue;
            }
            let defaults = of_kind.iter().filter(|r| r.to.is_empty()).count();
            if defaults != 1 {
                let problem = if defaults == 0 {
                    "routes of this kind need a default route: one without `to`"
                } else {
                    "only one route of a kind may leave out `to` (the default route)"
                };
                return Err(Problem::new(
                    format!("routes (kind = \"{}\")", kind.as_str()),
                    problem,
                ));
            }
            let mut seen = std::collections::BTreeSet::new();
            for prefix in of_kind.iter().flat_map(|r| r.to.iter()) {
                if !seen.insert(prefix) {
                    return Err(Problem::new(
                        format!("routes (kind = \"{}\")", kind.as_str()),
                        format!("the prefix +{prefix} is in two routes; each prefix may be in one"),
                    ));
                }
            }
        }
        if let Some(url) = &public_url {
            check_http_url("public_url", url)?;
        }
        Ok(Self {
            public_url: public_url.map(|u| u.trim_end_matches('/').to_owned()),
            channels: parsed,
            routes: parsed_routes,
            from_file: true,
            test_numbers: Default::default(),
        })
    }
}

fn parse_channel(name: &str, table: &Table) -> Result<ChannelConfig, Problem> {
    let key = format!("channels.{name}");
    let mut table = table.clone();
    let type_name = match table.remove("type") {
        Some(toml::Value::String(t)) => t,
        Some(_) => return Err(Problem::new(format!("{key}.type"), "expected a string")),
        None => {
            return Err(Problem::new(
                format!("{key}.type"),
                format!("missing; expected one of {}", CHANNEL_TYPES.join(", ")),
            ))
        }
    };
    let timeout = match table.remove("timeout") {
        None if type_name == "smpp" => super::smpp::DEFAULT_TIMEOUT,
        None => DEFAULT_TIMEOUT,
        Some(value) => {
            let secs = match value {
                toml::Value::Integer(n) => n as f64,
                toml::Value::Float(f) => f,
                _ => f64::NAN,
            };
            if !(secs > 0.0 && secs <= 300.0) {
                return Err(Problem::new(
                    format!("{key}.timeout"),
                    "expected a number of seconds above 0 and at most 300",
                ));
            }
            Duration::from_secs_f64(secs)
        }
    };
    let value = toml::Value::Table(table);
    let spec = match type_name.as_str() {
        "twilio-sms" => {
            let c: TwilioSms = super::file::deserialize(&key, value)?;
            match (&c.from, &c.messaging_service_sid) {
                (Some(_), Some(_)) | (None, None) => {
                    return Err(Problem::new(
                        &key,
                        "expected exactly one of `from` and `messaging_service_sid`",
                    ))
                }
                _ => {}
            }
            check_http_url(&format!("{key}.base_url"), &c.base_url)?;
            ChannelSpec::TwilioSms(c)
        }
        "vonage-sms" => {
            let c: VonageSms = super::file::deserialize(&key, value)?;
            check_http_url(&format!("{key}.base_url"), &c.base_url)?;
            ChannelSpec::VonageSms(c)
        }
        "webhook" => {
            let c: Webhook = super::file::deserialize(&key, value)?;
            check_webhook(&key, &c)?;
            ChannelSpec::Webhook(c)
        }
        "smpp" => {
            let c: Smpp = super::file::deserialize(&key, value)?;
            c.check(&key)?;
            ChannelSpec::Smpp(c)
        }
        "sip" => {
            let c: Sip = super::file::deserialize(&key, value)?;
            c.check(&key)?;
            ChannelSpec::Sip(c)
        }
        "vonage-voice" => {
            let c: VonageVoice = super::file::deserialize(&key, value)?;
            ChannelSpec::VonageVoice(c.load(&key)?)
        }
        "twilio-voice" => {
            let c: TwilioVoice = super::file::deserialize(&key, value)?;
            c.check(&key)?;
            ChannelSpec::TwilioVoice(c)
        }
        "smtp" => {
            let c: Smtp = super::file::deserialize(&key, value)?;
            c.check(&key)?;
            ChannelSpec::Smtp(c)
        }
        "whatsapp" => {
            let c: WhatsApp = super::file::deserialize(&key, value)?;
            c.check(&key)?;
            ChannelSpec::WhatsApp(c)
        }
        other => {
            return Err(Problem::new(
                format!("{key}.type"),
                format!(
                    "unknown type {other:?}; expected one of {}",
                    CHANNEL_TYPES.join(", ")
                ),
            ))
        }
    };
    Ok(ChannelConfig {
        name: name.to_owned(),
        timeout,
        spec,
    })
}

pub fn check_http_url(key: &str, url: &str) -> Result<(), Problem> {
    let ok = ["http://", "https://"]
        .iter()
        .any(|s| url.strip_prefix(s).is_some_and(|rest| !rest.is_empty()))
        && reqwest::Url::parse(url).is_ok();
    if ok {
        Ok(())
    } else {
        Err(Problem::new(
            key,
            format!("expected an http:// or https:// URL, not {url:?}"),
        ))
    }
}

fn check_webhook(key: &str, c: &Webhook) -> Result<(), Problem> {
    check_http_url(&format!("{key}.url"), &c.url)?;
    if !matches!(c.method.as_str(), "POST" | "PUT" | "GET") {
        return Err(Problem::new(
            format!("{key}.method"),
            format!("expected POST, PUT or GET, not {:?}", c.method),
        ));
    }
    if !matches!(c.content_type.as_str(), WEBHOOK_JSON | WEBHOOK_FORM) {
        return Err(Problem::new(
            format!("{key}.content_type"),
            format!(
                "expected {WEBHOOK_JSON} or {WEBHOOK_FORM}, not {:?}",
                c.content_type
            ),
        ));
    }
    for (field, template) in [("body", &c.body), ("url", &c.url)] {
        if let Some(unknown) = unknown_placeholder(template) {
            return Err(Problem::new(
                format!("{key}.{field}"),
                format!(
                    "unknown placeholder {{{{{unknown}}}}}; expected one of {}",
                    WEBHOOK_PLACEHOLDERS
                        .map(|p| format!("{{{{{p}}}}}"))
                        .join(", ")
                ),
            ));
        }
    }
    if let Some(pointer) = &c.message_id {
        if !pointer.is_empty() && !pointer.starts_with('/') {
            return Err(Problem::new(
                format!("{key}.message_id"),
                format!("expected a JSON pointer such as \"/message_id\", not {pointer:?}"),
            ));
        }
    }
    for (name, value) in &c.headers {
        if axum::http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(Problem::new(
                format!("{key}.headers.{name}"),
                "not a valid header name",
            ));
        }
        if axum::http::HeaderValue::from_str(value.expose()).is_err() {
            return Err(Problem::new(
                format!("{key}.headers.{name}"),
                "not a valid header value (a line break or a control character?)",
            ));
        }
    }
    Ok(())
}

/// The first `{{name}}` of `template` that is not a known placeholder.
pub fn unknown_placeholder(template: &str) -> Option<String> {
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let close = after.find("}}")?;
        let name = after[..close].trim();
        if !WEBHOOK_PLACEHOLDERS.contains(&name) {
            return Some(name.to_owned());
        }
        rest = &after[close + 2..];
    }
    None
}

fn check_route(
    key: &str,
    entry: RouteEntry,
    channels: &BTreeMap<String, ChannelConfig>,
) -> Result<Route, Problem> {
    let kind = Kind::parse(&entry.kind).ok_or_else(|| {
        Problem::new(
            format!("{key}.kind"),
            format!(
                "unknown kind {:?}; expected one of {}",
                entry.kind,
                KINDS.map(Kind::as_str).join(", ")
            ),
        )
    })?;
    if entry.channels.is_empty() {
        return Err(Problem::new(
            format!("{key}.channels"),
            "expected at least one channel",
        ));
    }
    for name in &entry.channels {
        let kinds: &[Kind] = match channels.get(name) {
            Some(c) => c.spec.kinds(),
            None if name == INBOX => &KINDS,
            None => {
                let known: Vec<&str> = std::iter::once(INBOX)
                    .chain(channels.keys().map(String::as_str))
                    .collect();
                return Err(Problem::new(
                    format!("{key}.channels"),
                    format!(
                        "unknown channel {name:?}; expected one of {}",
                        known.join(", ")
                    ),
                ));
            }
        };
        if !kinds.contains(&kind) {
            return Err(Problem::new(
                format!("{key}.channels"),
                format!("channel {name:?} does not carry {} messages", kind.as_str()),
            ));
        }
    }
    if kind == Kind::Email && !entry.to.is_empty() {
        return Err(Problem::new(
            format!("{key}.to"),
            "routes for e-mail take no number prefixes",
        ));
    }
    let mut to = Vec::new();
    for prefix in &entry.to {
        let digits = prefix.trim().trim_start_matches('+');
        if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Problem::new(
                format!("{key}.to"),
                format!(
                    "expected destination prefixes such as \"+1\" or \"+4477\", not {prefix:?}"
                ),
            ));
        }
        to.push(digits.to_owned());
    }
    if let Some(from) = &entry.from {
        if from.is_empty() || !crate::domain::plain::is_plain(from) || from.chars().count() > 16 {
            return Err(Problem::new(
                format!("{key}.from"),
                "expected a sender: a number or up to 11 letters and digits",
            ));
        }
    }
    Ok(Route {
        kind,
        to,
        channels: entry.channels,
        from: entry.from,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::file::ConfigFile;
    use std::path::Path;

    /// The example of the issue that fixed this file's shape, with its secrets in the environment.
    pub(crate) const EXAMPLE: &str = r#"
public_url = "https://verify.example.com"

[channels.twilio]
type = "twilio-sms"
account_sid = "AC0123"
auth_token = "${TWILIO_AUTH_TOKEN}"
from = "+15005550006"
base_url = "https://api.twilio.com"

[channels.vonage]
type = "vonage-sms"
api_key = "key"
api_secret = "${VONAGE_API_SECRET}"
base_url = "https://rest.nexmo.com"

[channels.gateway]
type = "webhook"
url = "https://sms.example.com/send"
method = "POST"
headers = { Authorization = "Bearer ${GW_TOKEN}" }
body = '{"to":"{{to}}","from":"{{from}}","text":"{{text}}","id":"{{id}}"}'
content_type = "application/json"
signing_secret = "${GW_SECRET}"
message_id = "/message_id"
timeout = 2

[[routes]]
kind = "sms"
to = ["+1"]
channels = ["twilio", "gateway"]
from = "+15005550006"

[[routes]]
kind = "sms"
channels = ["vonage", "gateway"]
"#;

    fn env(name: &str) -> Option<String> {
        Some(format!("value-of-{name}"))
    }

    fn parse(text: &str) -> Result<DeliveryConfig, String> {
        ConfigFile::parse(Path::new("v.toml"), text, env)
            .map(|f| f.delivery)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_documented_example_parses_with_its_defaults() {
        let d = parse(EXAMPLE).unwrap();
        assert_eq!(d.public_url.as_deref(), Some("https://verify.example.com"));
        assert_eq!(d.channels.len(), 3);
        let ChannelSpec::Webhook(gw) = &d.channels["gateway"].spec else {
            panic!("a webhook")
        };
        assert_eq!(
            gw.headers["Authorization"].expose(),
            "Bearer value-of-GW_TOKEN"
        );
        assert_eq!(d.channels["gateway"].timeout, Duration::from_secs(2));
        assert_eq!(d.channels["twilio"].timeout, DEFAULT_TIMEOUT);
        assert_eq!(
            d.unrouted_kinds(),
            [Kind::Voice, Kind::Email, Kind::WhatsApp]
        );
        assert!(!d.only_inbox());
    }

    #[test]
    fn the_longest_matching_prefix_wins_and_the_default_takes_the_rest() {
        let d = parse(
            "[[routes]]\nkind = \"sms\"\nto = [\"+1\"]\nchannels = [\"inbox\"]\nfrom = \"A\"\n\
             [[routes]]\nkind = \"sms\"\nto = [\"+1555\", \"44\"]\nchannels = [\"inbox\"]\nfrom = \"B\"\n\
             [[routes]]\nkind = \"sms\"\nchannels = [\"inbox\"]\nfrom = \"C\"\n",
        )
        .unwrap();
        let from = |digits: &str| {
            d.route_for(Kind::Sms, digits)
                .unwrap()
                .from
                .clone()
                .unwrap()
        };
        assert_eq!(from("15551234567"), "B");
        assert_eq!(from("12125551234"), "A");
        assert_eq!(from("447700900123"), "B");
        assert_eq!(from("33612345678"), "C");
        assert!(d.route_for(Kind::Voice, "15551234567").is_none());
    }

    #[test]
    fn without_a_file_every_kind_goes_to_the_inbox() {
        let d = DeliveryConfig::default();
        for kind in KINDS {
            assert_eq!(d.route_for(kind, "447700900123").unwrap().channels, [INBOX]);
        }
        assert!(d.only_inbox());
        assert!(d.unrouted_kinds().is_empty());
    }

    #[test]
    fn each_kind_of_mistake_is_refused_with_its_key() {
        for (text, expected) in [
            (
                "[[routes]]\nkind = \"sms\"\nchannels = [\"nope\"]",
                "v.toml: routes[0].channels: unknown channel \"nope\"; expected one of inbox",
            ),
            (
                "[[routes]]\nkind = \"fax\"\nchannels = [\"inbox\"]",
                "v.toml: routes[0].kind: unknown kind \"fax\"; expected one of sms, voice",
            ),
            (
                "[[routes]]\nkind = \"sms\"\nto = [\"+1\"]\nchannels = [\"inbox\"]",
                "v.toml: routes (kind = \"sms\"): routes of this kind need a default route: one without `to`",
            ),
            (
                "[channels.t]\ntype = \"twilio-sms\"\nauth_token = \"x\"\nfrom = \"+1\"",
                "v.toml: channels.t: missing field `account_sid`",
            ),
            (
                "[channels.t]\ntype = \"twilio-sms\"\naccount_sid = \"AC\"\nauth_token = \"x\"",
                "v.toml: channels.t: expected exactly one of `from` and `messaging_service_sid`",
            ),
            (
                "[channels.t]\ntype = \"smoke-signal\"",
                "v.toml: channels.t.type: unknown type \"smoke-signal\"; expected one of twilio-sms, vonage-sms, webhook, smpp, sip, vonage-voice, twilio-voice",
            ),
            (
                "[channels.v]\ntype = \"vonage-sms\"\napi_key = \"k\"\napi_secret = \"s\"\napi_secert = \"s\"",
                "v.toml: channels.v.api_secert: unknown field `api_secert`, expected one of `api_key`",
            ),
            (
                "[channels.v]\ntype = \"vonage-sms\"\napi_key = 5\napi_secret = \"s\"",
                "v.toml: channels.v.api_key: invalid type: integer `5`, expected a string",
            ),
            (
                "[channels.v]\ntype = \"vonage-sms\"\napi_key = \"k\"\napi_secret = \"s\"\n\
                 [[routes]]\nkind = \"voice\"\nchannels = [\"v\"]",
                "v.toml: routes[0].channels: channel \"v\" does not carry voice messages",
            ),
            (
                "[channels.w]\ntype = \"webhook\"\nurl = \"https://x.test\"\nbody = \"{{txt}}\"",
                "v.toml: channels.w.body: unknown placeholder {{txt}}",
            ),
            (
                "[channels.inbox]\ntype = \"webhook\"",
                "v.toml: channels.inbox: `inbox` is reserved",
            ),
            (
                "[channels.\"a b\"]\ntype = \"webhook\"",
                "v.toml: channels.a b: a channel's name is up to 64 letters",
            ),
            (
                "[channels.w]\ntype = \"webhook\"\nurl = \"https://x.test\"\nheaders = { X = \"a\\nb\" }",
                "v.toml: channels.w.headers.X: not a valid header value",
            ),
            (
                "[[routes]]\nkind = \"sms\"\nto = [\"+1x\"]\nchannels = [\"inbox\"]",
                "v.toml: routes[0].to: expected destination prefixes",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.starts_with(expected), "{text}\n  gave: {e}\n  expected: {expected}");
        }
    }
}
