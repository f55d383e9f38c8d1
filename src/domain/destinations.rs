//! Where verifications may go: the countries each channel may reach (for every key, or a key's
//! own), the number types refused (premium-rate and the like), prefixes blocked by the operator,
//! and the operator's map of prefixes to the networks they belong to. A start passes through
//! [`Destinations::admit`] before anything is counted or sent.

use std::fmt;

use super::fraud::Block;
use super::numbering::{number_type, NumberType};
use super::step::{Channel, Destination, Step};

/// The countries one channel may reach: every one, or these (ISO 3166 alpha-2, upper case).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Countries {
    #[default]
    All,
    Only(Vec<String>),
}

impl Countries {
    /// `all`, or country codes separated by commas (`GB,IE`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("all") {
            return Ok(Countries::All);
        }
        Self::from_list(text.split(','))
    }

    /// Country codes as a list; an empty list reaches no country.
    pub fn from_list<'a>(codes: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut only: Vec<String> = Vec::new();
        for code in codes {
            let code = code.trim().to_ascii_uppercase();
            if code.is_empty() {
                continue;
            }
            if code.parse::<phonenumber::country::Id>().is_err() {
                return Err(format!(
                    "{code:?} is not a country code (ISO 3166, such as GB)"
                ));
            }
            if !only.contains(&code) {
                only.push(code);
            }
        }
        Ok(Countries::Only(only))
    }

    /// Whether a number of `region` may be reached; a number of no region (+800) only when
    /// every country may.
    pub fn allows(&self, region: Option<&str>) -> bool {
        match self {
            Countries::All => true,
            Countries::Only(list) => region.is_some_and(|r| list.iter().any(|c| c == r)),
        }
    }
}

impl fmt::Display for Countries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Countries::All => f.write_str("all"),
            Countries::Only(list) => f.write_str(&list.join(",")),
        }
    }
}

/// The channels whose countries are set, with the name of their setting.
pub const COUNTRY_SETTINGS: [(Channel, &str); 3] = [
    (Channel::Sms, "sms_countries"),
    (Channel::Voice, "voice_countries"),
    (Channel::WhatsApp, "whatsapp_countries"),
];

fn country_slot(channel: Channel) -> Option<usize> {
    COUNTRY_SETTINGS.iter().position(|(c, _)| *c == channel)
}

/// One key's own countries per channel, in place of the file's; `None` keeps the file's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyCountries([Option<Countries>; 3]);

impl KeyCountries {
    /// Sets `name` (one of [`COUNTRY_SETTINGS`]) from `value`: `all`, a list, or `default`.
    /// `Ok(false)` when `name` is not one of them.
    pub fn set(&mut self, name: &str, value: &str) -> Result<bool, String> {
        let Some(slot) = COUNTRY_SETTINGS.iter().position(|(_, n)| *n == name) else {
            return Ok(false);
        };
        self.0[slot] = match value.trim() {
            "default" => None,
            v => Some(
                Countries::parse(v)
                    .map_err(|e| format!("{name}: {e}; expected all, GB,IE or default"))?,
            ),
        };
        Ok(true)
    }

    /// Each setting this key has, with its value as [`Self::set`] takes it.
    pub fn entries(&self) -> Vec<(&'static str, String)> {
        COUNTRY_SETTINGS
            .iter()
            .zip(&self.0)
            .filter_map(|((_, name), own)| own.as_ref().map(|c| (*name, c.to_string())))
            .collect()
    }
}

/// A network that numbers of a prefix belong to, from the operator's map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Network {
    /// Leading digits of the numbers, country code included.
    pub prefix: String,
    /// Its MCC-MNC (`23410`), the name Vonage's answers and network-unblock use.
    pub id: String,
    pub name: String,
}

/// Why a start is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The number is in a blocked prefix.
    Blocked {
        prefix: String,
        network: Option<Network>,
    },
    /// The number's type is refused, or it is a fixed line and every step is an SMS.
    NumberType(NumberType),
    /// No step's channel may reach the number's country.
    Country {
        channel: Channel,
        country: Option<String>,
    },
    /// Conversion monitoring has blocked the number's prefix, country or client.
    Fraud(Block),
}

impl Refusal {
    /// What an answer names a blocked number's network by: its MCC-MNC where the operator's
    /// map has it, else the blocked prefix. Empty for other refusals.
    pub fn network(&self) -> String {
        match self {
            Refusal::Blocked { prefix, network } => network
                .as_ref()
                .map_or_else(|| prefix.clone(), |n| n.id.clone()),
            Refusal::Fraud(block) => block
                .network
                .clone()
                .unwrap_or_else(|| block.subject.value.clone()),
            _ => String::new(),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Blocked { network, .. } => match network {
                Some(n) => write!(
                    f,
                    "the number's prefix is blocked (network {} {})",
                    n.id, n.name
                ),
                None => f.write_str("the number's prefix is blocked"),
            },
            Refusal::NumberType(NumberType::FixedLine) => {
                f.write_str("the number is a fixed line, which cannot receive SMS")
            }
            Refusal::NumberType(t) => write!(f, "numbers of type {} are refused", t.name()),
            Refusal::Fraud(block) => write!(
                f,
                "the {} is blocked until {} ({})",
                block.subject.dimension.name(),
                block.until,
                block.reason
            ),
            Refusal::Country { channel, country } => write!(
                f,
                "{} to {} is not allowed",
                channel_name(*channel),
                country.as_deref().unwrap_or("numbers of no country")
            ),
        }
    }
}

fn channel_name(channel: Channel) -> &'static str {
    match channel {
        Channel::Sms => "SMS",
        Channel::Voice => "a call",
        Channel::Email => "e-mail",
        Channel::WhatsApp => "WhatsApp",
    }
}

/// The number types refused unless the file says otherwise: ranges that cost the sender per
/// message or minute, or that no person answers.
pub const REFUSED_BY_DEFAULT: [NumberType; 5] = [
    NumberType::PremiumRate,
    NumberType::SharedCost,
    NumberType::Uan,
    NumberType::Pager,
    NumberType::Voicemail,
];

/// The rules for every key (`[destinations]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destinations {
    /// Per channel of [`COUNTRY_SETTINGS`].
    pub countries: [Countries; 3],
    pub refused_types: Vec<NumberType>,
    /// Leading digits (country code included) no verification may go to.
    pub blocked_prefixes: Vec<String>,
    pub networks: Vec<Network>,
}

impl Default for Destinations {
    fn default() -> Self {
        Self {
            countries: Default::default(),
            refused_types: REFUSED_BY_DEFAULT.to_vec(),
            blocked_prefixes: Vec::new(),
            networks: Vec::new(),
        }
    }
}

impl Destinations {
    /// The countries `channel` may reach for a key with `own` settings.
    pub fn countries<'a>(&'a self, own: &'a KeyCountries, channel: Channel) -> &'a Countries {
        static ALL: Countries = Countries::All;
        match country_slot(channel) {
            Some(slot) => own.0[slot].as_ref().unwrap_or(&self.countries[slot]),
            None => &ALL,
        }
    }

    /// The network of the longest prefix of the map that `digits` start with.
    pub fn network_of(&self, digits: &str) -> Option<&Network> {
        self.networks
            .iter()
            .filter(|n| digits.starts_with(&n.prefix))
            .max_by_key(|n| n.prefix.len())
    }

    /// The steps of a start that may go where they are going: a step whose channel may not
    /// reach its number's country is left out, and so is an SMS to a fixed line, so that the
    /// workflow goes on with its next step (a call). Refused whole when a number is blocked or
    /// of a refused type, or when no step is left.
    pub fn admit(&self, own: &KeyCountries, steps: Vec<Step>) -> Result<Vec<Step>, Refusal> {
        let mut first_left_out = None;
        let mut admitted = Vec::with_capacity(steps.len());
        for step in steps {
            let Destination::Phone(number) = &step.to else {
                admitted.push(step);
                continue;
            };
            let digits = number.digits();
            if let Some(prefix) = self
                .blocked_prefixes
                .iter()
                .find(|p| digits.starts_with(*p))
            {
                return Err(Refusal::Blocked {
                    prefix: prefix.clone(),
                    network: self.network_of(digits).cloned(),
                });
            }
            let kind = number_type(digits).unwrap_or(NumberType::Unknown);
            if self.refused_types.contains(&kind) {
                return Err(Refusal::NumberType(kind));
            }
            let left_out = if step.channel == Channel::Sms && kind == NumberType::FixedLine {
                Some(Refusal::NumberType(kind))
            } else if !self.countries(own, step.channel).allows(number.region()) {
                Some(Refusal::Country {
                    channel: step.channel,
                    country: number.region().map(str::to_owned),
                })
            } else {
                None
            };
            match left_out {
                Some(reason) => {
                    first_left_out.get_or_insert(reason);
                }
                None => admitted.push(step),
            }
        }
        match (admitted.is_empty(), first_left_out) {
            (true, Some(reason)) => Err(reason),
            _ => Ok(admitted),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::types::{EmailAddress, PhoneNumber};

    fn step(channel: Channel, to: &str) -> Step {
        let to = match to.contains('@') {
            true => Destination::Email(EmailAddress::parse(to).unwrap()),
            false => Destination::Phone(PhoneNumber::parse(to, None).unwrap()),
        };
        Step {
            channel,
            to,
            from: None,
            app_hash: None,
            new_code: false,
            wait: 60,
            text: None,
        }
    }

    fn channels(steps: &[Step]) -> Vec<Channel> {
        steps.iter().map(|s| s.channel).collect()
    }

    const MOBILE: &str = "447700123456";
    const LANDLINE: &str = "442079460123";
    const PREMIUM: &str = "449098790123";

    #[test]
    fn premium_rate_and_other_costly_types_are_refused_by_default_and_voip_by_choice() {
        let d = Destinations::default();
        let own = KeyCountries::default();
        assert_eq!(
            d.admit(&own, vec![step(Channel::Sms, PREMIUM)]),
            Err(Refusal::NumberType(NumberType::PremiumRate))
        );
        assert!(d.admit(&own, vec![step(Channel::Sms, MOBILE)]).is_ok());
        let voip = "445612345678";
        assert_eq!(number_type(voip), Some(NumberType::Voip));
        assert!(d.admit(&own, vec![step(Channel::Sms, voip)]).is_ok());
        let strict = Destinations {
            refused_types: vec![NumberType::Voip],
            ..Destinations::default()
        };
        assert_eq!(
            strict.admit(&own, vec![step(Channel::Voice, voip)]),
            Err(Refusal::NumberType(NumberType::Voip))
        );
    }

    #[test]
    fn an_sms_to_a_fixed_line_falls_through_to_the_call_after_it() {
        let d = Destinations::default();
        let own = KeyCountries::default();
        let steps = vec![
            step(Channel::Sms, LANDLINE),
            step(Channel::Voice, LANDLINE),
            step(Channel::Voice, LANDLINE),
        ];
        assert_eq!(
            channels(&d.admit(&own, steps).unwrap()),
            [Channel::Voice, Channel::Voice]
        );
        assert_eq!(
            d.admit(&own, vec![step(Channel::Sms, LANDLINE)]),
            Err(Refusal::NumberType(NumberType::FixedLine))
        );
        // The US plan cannot tell a fixed line from a mobile: SMS is tried.
        assert!(d
            .admit(&own, vec![step(Channel::Sms, "12015550123")])
            .is_ok());
    }

    #[test]
    fn countries_are_allowed_per_channel_and_a_key_may_have_its_own() {
        let d = Destinations {
            countries: [
                Countries::parse("GB,ie").unwrap(),
                Countries::parse("IE").unwrap(),
                Countries::All,
            ],
            ..Destinations::default()
        };
        let own = KeyCountries::default();
        let workflow = || vec![step(Channel::Sms, MOBILE), step(Channel::Voice, MOBILE)];
        assert_eq!(
            channels(&d.admit(&own, workflow()).unwrap()),
            [Channel::Sms]
        );
        assert_eq!(
            d.admit(&own, vec![step(Channel::Voice, MOBILE)]),
            Err(Refusal::Country {
                channel: Channel::Voice,
                country: Some("GB".into())
            })
        );
        let mut own = KeyCountries::default();
        assert_eq!(own.set("voice_countries", "GB"), Ok(true));
        assert_eq!(own.set("sms_countries", "FR"), Ok(true));
        assert_eq!(
            channels(&d.admit(&own, workflow()).unwrap()),
            [Channel::Voice]
        );
        assert_eq!(
            own.entries(),
            [
                ("sms_countries", "FR".to_owned()),
                ("voice_countries", "GB".to_owned())
            ]
        );
        assert_eq!(own.set("sms_countries", "default"), Ok(true));
        assert_eq!(own.set("fax_countries", "GB"), Ok(false));
        assert!(own.set("voice_countries", "GB,Britain").is_err());
        // E-mail goes anywhere.
        let mail = vec![step(Channel::Email, "a@example.com")];
        assert!(d.admit(&own, mail).is_ok());
        // A number of no country only where every country is allowed.
        assert!(!Countries::parse("GB").unwrap().allows(None));
        assert!(Countries::All.allows(None));
    }

    #[test]
    fn a_blocked_prefix_refuses_the_start_and_names_its_network() {
        let d = Destinations {
            blocked_prefixes: vec!["4477001".into()],
            networks: vec![
                Network {
                    prefix: "44770".into(),
                    id: "23410".into(),
                    name: "O2 UK".into(),
                },
                Network {
                    prefix: "447700".into(),
                    id: "23415".into(),
                    name: "Vodafone UK".into(),
                },
            ],
            ..Destinations::default()
        };
        let own = KeyCountries::default();
        let Err(Refusal::Blocked { prefix, network }) =
            d.admit(&own, vec![step(Channel::Sms, MOBILE)])
        else {
            panic!("not blocked")
        };
        assert_eq!(prefix, "4477001");
        assert_eq!(network.unwrap().id, "23415", "the longest prefix names it");
        assert!(d
            .admit(&own, vec![step(Channel::Sms, "447911123456")])
            .is_ok());
    }
}
