//! `POST /v2/verify`'s body, checked against the current specification and turned into the
//! steps and policy of a verification. Every field that is wrong is named, so one answer lists
//! them all.

use std::net::IpAddr;

use serde_json::{Map, Value};

use super::error::{InvalidParameter, V2Error};
use super::fields::{object, Fields};
use crate::domain::locale::{Locale, LocaleSet};
use crate::domain::{
    plain, CancelWindow, Channel, CodeLength, CodeLife, CustomPin, Destination, EmailAddress,
    PhoneNumber, Policy, Purpose, Step,
};
use crate::service::{StartRequest, Words};

pub const DEFAULT_CHANNEL_TIMEOUT: u32 = 180;
const CHANNEL_TIMEOUT: std::ops::RangeInclusive<i64> = 15..=900;
const MAX_STEPS: usize = 3;
const MAX_BRAND: usize = 18;
/// v2 allows three tries per code, as v1 does.
pub const TRIES_PER_CODE: u8 = 3;
/// The documented rule, copied from v1: not in the first 30 s, not once the second channel has
/// started.
pub const CANCEL_WINDOW: CancelWindow = CancelWindow {
    not_before: 30,
    until_steps: 2,
};
const DEFAULT_LOCALE: &str = "en-us";

fn alphanumeric(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A brand as the specification allows it (1–18 characters, none of `/{}:$`) and as a message
/// may show it.
fn valid_brand(s: &str) -> bool {
    let n = s.chars().count();
    (1..=MAX_BRAND).contains(&n) && !s.contains(['/', '{', '}', ':', '$']) && plain::is_plain(s)
}

/// An SMS sender: up to 11 letters and digits, or up to 15 digits.
fn valid_sender(s: &str) -> bool {
    let digits = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits && s.len() <= 15) || ((1..=11).contains(&s.len()) && alphanumeric(s))
}

/// Reads a create body for an account.
pub fn parse(body: &[u8]) -> Result<StartRequest, V2Error> {
    let map = object(body)?;
    let mut invalid = Vec::new();
    let mut f = Fields {
        map: &map,
        prefix: String::new(),
        invalid: &mut invalid,
    };
    let brand = match f.required("brand", "Brand") {
        None => None,
        Some(b) if valid_brand(b) => Some(b),
        Some(_) => {
            f.refuse(
                "brand",
                "must be 1 to 18 characters, without / { } : $ or control characters",
            );
            None
        }
    };
    let locale = match f.string("locale") {
        None => Locale::from_tag(DEFAULT_LOCALE),
        Some(tag) => {
            let found = LocaleSet::Standard.parse(tag);
            if found.is_none() {
                f.refuse("locale", "is not a supported locale");
            }
            found
        }
    };
    let channel_timeout = match f.integer("channel_timeout") {
        None => Some(DEFAULT_CHANNEL_TIMEOUT),
        Some(n) if CHANNEL_TIMEOUT.contains(&n) => Some(n as u32),
        Some(_) => {
            f.refuse("channel_timeout", "must be between 15 and 900");
            None
        }
    };
    let reference = f.checked(
        "client_ref",
        |s| (1..=40).contains(&s.len()) && alphanumeric(s),
        "must be 1 to 40 letters and digits",
    );
    let code_length = match f.integer("code_length") {
        None => Some(CodeLength::DEFAULT),
        Some(n) => {
            let length = CodeLength::new(n);
            if length.is_none() {
                f.refuse("code_length", "must be between 4 and 10");
            }
            length
        }
    };
    let custom_pin = f
        .checked(
            "code",
            |s| (4..=10).contains(&s.len()) && alphanumeric(s),
            "must be 4 to 10 letters and digits",
        )
        .and_then(CustomPin::parse);
    // Fraud rules come with abuse limits; until then the flag is accepted and changes nothing.
    f.boolean("fraud_check");
    let words = match f.string("template_id") {
        None => Some(Words::AccountDefault),
        Some(raw) => {
            let id = super::templates::parse_uuid(raw).map(Words::Template);
            if id.is_none() {
                f.refuse("template_id", "must be the UUID of a template");
            }
            id
        }
    };
    // verifyd's own: the address of the person asking, for the limit per client.
    let client = f
        .checked(
            "ip_address",
            |s| s.parse::<IpAddr>().is_ok(),
            "must be an IPv4 or IPv6 address",
        )
        .and_then(|s| s.parse::<IpAddr>().ok());
    drop(f);
    let steps = workflow(
        &map,
        brand,
        channel_timeout.unwrap_or(DEFAULT_CHANNEL_TIMEOUT),
        &mut invalid,
    );
    match (brand, locale, channel_timeout, code_length, words) {
        (Some(brand), Some(locale), Some(_), Some(code_length), Some(words))
            if invalid.is_empty() && !steps.is_empty() =>
        {
            Ok(StartRequest {
                purpose: Purpose::Brand {
                    brand: brand.to_owned(),
                },
                locale,
                steps,
                policy: Policy {
                    code_length,
                    tries_per_code: TRIES_PER_CODE,
                    code_life: CodeLife::UntilWorkflowEnds,
                    cancel: CANCEL_WINDOW,
                    // The next channel takes over as soon as one cannot deliver.
                    next_on_failure: true,
                },
                reference: reference.map(str::to_owned),
                custom_pin,
                words,
                client,
            })
        }
        _ => Err(V2Error::InvalidParams(invalid)),
    }
}

/// The `workflow` array as steps, each lasting `timeout`.
fn workflow(
    map: &Map<String, Value>,
    brand: Option<&str>,
    timeout: u32,
    invalid: &mut Vec<InvalidParameter>,
) -> Vec<Step> {
    let items = match map.get("workflow") {
        Some(Value::Array(items)) if (1..=MAX_STEPS).contains(&items.len()) => items,
        Some(Value::Array(_)) => {
            invalid.push(InvalidParameter::new(
                "workflow",
                "must have 1 to 3 channels",
            ));
            return Vec::new();
        }
        None | Some(Value::Null) => {
            invalid.push(InvalidParameter::new("workflow", "Workflow is required"));
            return Vec::new();
        }
        Some(_) => {
            invalid.push(InvalidParameter::new("workflow", "must be an array"));
            return Vec::new();
        }
    };
    let mut steps = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Value::Object(fields) = item else {
            invalid.push(InvalidParameter::new(
                format!("workflow[{i}]"),
                "must be an object",
            ));
            continue;
        };
        let mut f = Fields {
            map: fields,
            prefix: format!("workflow[{i}]."),
            invalid,
        };
        if let Some(step) = step(&mut f, i, brand, timeout) {
            steps.push(step);
        }
    }
    steps
}

fn step(f: &mut Fields<'_, '_>, index: usize, brand: Option<&str>, timeout: u32) -> Option<Step> {
    let channel = match f.required("channel", "Channel") {
        Some("sms") => Some(Channel::Sms),
        Some("voice") => Some(Channel::Voice),
        Some("email") => Some(Channel::Email),
        Some("whatsapp") => Some(Channel::WhatsApp),
        Some("rcs" | "silent_auth" | "whatsapp_interactive") => {
            f.refuse("channel", "this channel is not offered by verifyd");
            None
        }
        Some(_) => {
            f.refuse(
                "channel",
                "must be one of sms, voice, email, whatsapp, rcs, silent_auth",
            );
            None
        }
        None => None,
    };
    // A channel refused above says why; its destination is not one to check.
    let to = match (channel, channel.and_then(|_| f.required("to", "To"))) {
        (_, None) => None,
        (Some(Channel::Email), Some(raw)) => match EmailAddress::parse(raw) {
            Some(address) => Some(Destination::Email(address)),
            None => {
                f.refuse("to", "Invalid e-mail address");
                None
            }
        },
        (_, Some(raw)) => match PhoneNumber::parse(raw, None) {
            Ok(number) if raw.len() <= 50 => Some(Destination::Phone(number)),
            _ => {
                f.refuse("to", "Invalid phone number");
                None
            }
        },
    };
    let reuse_code = f.boolean("reuse_code").unwrap_or(false);
    let (mut from, mut app_hash) = (None, None);
    if channel == Some(Channel::Email) {
        from = f
            .checked(
                "from",
                |s| EmailAddress::parse(s).is_some(),
                "Invalid e-mail address",
            )
            .map(str::to_owned);
    }
    if channel == Some(Channel::WhatsApp) {
        // The sending number is the channel's own (its `phone_number_id`); the request's must
        // be there, as the specification requires, and is kept for what it says.
        from = match f.required("from", "From") {
            Some(raw)
                if (1..=50).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_digit()) =>
            {
                Some(raw.to_owned())
            }
            Some(_) => {
                f.refuse("from", "must be the WhatsApp Business number, digits only");
                None
            }
            None => None,
        };
        // zero_tap (Android autofill) needs an app handshake verifyd does not make: the code
        // is sent as otp_code either way.
        f.checked(
            "mode",
            |m| matches!(m, "otp_code" | "zero_tap"),
            "must be otp_code or zero_tap",
        );
    }
    if channel == Some(Channel::Sms) {
        from = f
            .checked(
                "from",
                valid_sender,
                "must be up to 11 letters and digits, or up to 15 digits",
            )
            .or_else(|| brand.filter(|b| valid_sender(b)))
            .map(str::to_owned);
        app_hash = f
            .checked(
                "app_hash",
                |s| s.len() == 11 && s.bytes().all(|b| b.is_ascii_graphic()),
                "must be 11 characters",
            )
            .map(str::to_owned);
        // India's DLT identifiers: checked, and passed on by no gateway yet.
        for field in ["entity_id", "content_id"] {
            f.checked(
                field,
                |s| (1..=20).contains(&s.len()),
                "must be 1 to 20 characters",
            );
        }
    }
    Some(Step {
        channel: channel?,
        to: to?,
        from,
        app_hash,
        new_code: index > 0 && !reuse_code,
        wait: timeout,
        // Chosen by the service, from the template the request names or the account's default.
        text: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(body: &str) -> Vec<String> {
        match parse(body.as_bytes()) {
            Err(V2Error::InvalidParams(list)) => list.into_iter().map(|p| p.name).collect(),
            other => panic!("{body}: {other:?}"),
        }
    }

    #[test]
    fn a_minimal_request_takes_the_specified_defaults() {
        let r = parse(br#"{"brand":"Acme","workflow":[{"channel":"sms","to":"447700100600"}]}"#)
            .unwrap();
        assert_eq!(r.locale.as_str(), "en-us");
        assert_eq!(r.policy.code_length, CodeLength::DEFAULT);
        assert_eq!(r.policy.code_life, CodeLife::UntilWorkflowEnds);
        assert_eq!(r.policy.tries_per_code, 3);
        assert_eq!(r.steps.len(), 1);
        assert_eq!(r.steps[0].wait, 180);
        assert_eq!(
            r.steps[0].from.as_deref(),
            Some("Acme"),
            "from defaults to the brand"
        );
        assert_eq!(r.reference, None);
    }

    #[test]
    fn later_steps_get_a_new_code_unless_they_reuse_it() {
        let r = parse(
            br#"{"brand":"Acme Inc","channel_timeout":60,"code_length":6,"client_ref":"r1",
                "workflow":[{"channel":"sms","to":"447700100600","from":"ACME","app_hash":"FA+9qCX9VSu"},
                            {"channel":"voice","to":"447700100600"},
                            {"channel":"sms","to":"447700100601","reuse_code":true}]}"#,
        )
        .unwrap();
        let new_code: Vec<bool> = r.steps.iter().map(|s| s.new_code).collect();
        assert_eq!(new_code, [false, true, false]);
        assert!(r.steps.iter().all(|s| s.wait == 60));
        assert_eq!(r.steps[0].from.as_deref(), Some("ACME"));
        assert_eq!(r.steps[0].app_hash.as_deref(), Some("FA+9qCX9VSu"));
        assert_eq!(r.steps[1].from, None, "a call shows no sender");
        assert_eq!(r.steps[2].from, None, "a brand with a space is no sender");
        assert_eq!(r.policy.code_length.get(), 6);
        assert_eq!(r.reference.as_deref(), Some("r1"));
    }

    #[test]
    fn every_wrong_field_is_named_in_one_answer() {
        assert_eq!(
            invalid(
                r#"{"brand":"Acme/Inc","channel_timeout":10,"code_length":11,"client_ref":"a b",
                   "locale":"xx-yy","code":"12","workflow":[{"channel":"sms","to":"12"},
                   {"channel":"rcs","to":"447700100600"},{"channel":"fax","to":"447700100600"}]}"#
            ),
            [
                "brand",
                "locale",
                "channel_timeout",
                "client_ref",
                "code_length",
                "code",
                "workflow[0].to",
                "workflow[1].channel",
                "workflow[2].channel"
            ]
        );
    }

    #[test]
    fn an_email_step_goes_to_an_address_from_an_address() {
        let r = parse(
            br#"{"brand":"Acme","workflow":[{"channel":"email","to":"alice@example.com",
                "from":"noreply@acme.example"}]}"#,
        )
        .unwrap();
        assert_eq!(r.steps[0].channel, Channel::Email);
        assert_eq!(r.steps[0].to.key(), "alice@example.com");
        assert_eq!(r.steps[0].from.as_deref(), Some("noreply@acme.example"));
        assert_eq!(
            invalid(
                r#"{"brand":"A","workflow":[{"channel":"email","to":"447700100600","from":"x"}]}"#
            ),
            ["workflow[0].to", "workflow[0].from"]
        );
    }

    #[test]
    fn brand_and_workflow_are_required_and_a_workflow_has_one_to_three_channels() {
        assert_eq!(invalid("{}"), ["brand", "workflow"]);
        assert_eq!(invalid(r#"{"brand":"A","workflow":[]}"#), ["workflow"]);
        let four = r#"{"channel":"sms","to":"447700100600"}"#;
        let body = format!(r#"{{"brand":"A","workflow":[{four},{four},{four},{four}]}}"#);
        assert_eq!(invalid(&body), ["workflow"]);
        assert_eq!(invalid("[1]"), ["body"]);
        assert_eq!(invalid("not json"), ["body"]);
    }

    #[test]
    fn null_is_refused_where_a_value_is_required() {
        assert_eq!(
            invalid(
                r#"{"brand":null,"workflow":[{"channel":"sms","to":"447700100600"},
                   {"channel":"voice","to":null},{"channel":null,"to":"447700100600"}]}"#
            ),
            ["brand", "workflow[1].to", "workflow[2].channel"]
        );
        assert_eq!(
            invalid(r#"{"brand":"A","workflow":[{"channel":"sms","to":null}]}"#),
            ["workflow[0].to"]
        );
        assert_eq!(invalid(r#"{"brand":"A","workflow":null}"#), ["workflow"]);
    }

    #[test]
    fn fields_of_the_wrong_type_are_refused() {
        assert_eq!(
            invalid(
                r#"{"brand":5,"channel_timeout":"60","fraud_check":"yes",
                   "workflow":[{"channel":"sms","to":447700900000,"reuse_code":1}]}"#
            ),
            [
                "brand",
                "channel_timeout",
                "fraud_check",
                "workflow[0].to",
                "workflow[0].reuse_code"
            ]
        );
    }

    #[test]
    fn senders_app_hashes_and_templates_are_checked() {
        assert_eq!(
            invalid(
                r#"{"brand":"A","template_id":"4ed3027d8762-44a0-aa3f-c393717413a4",
                   "workflow":[{"channel":"sms","to":"447700100600","from":"TWELVECHARSX",
                   "app_hash":"short","entity_id":""}]}"#
            ),
            [
                "template_id",
                "workflow[0].from",
                "workflow[0].app_hash",
                "workflow[0].entity_id"
            ]
        );
        assert!(valid_sender("447700900000123"));
        assert!(!valid_sender("4477009000001234"));
        assert!(valid_sender("Acme2"));
    }

    #[test]
    fn a_request_names_a_template_by_its_uuid_or_takes_the_accounts_default() {
        let words = |extra: &str| {
            let body = format!(
                r#"{{"brand":"A",{extra}"workflow":[{{"channel":"sms","to":"447700100600"}}]}}"#
            );
            parse(body.as_bytes()).unwrap().words
        };
        assert_eq!(words(""), Words::AccountDefault);
        assert_eq!(
            words(r#""template_id":"4ED3027D-8762-44A0-AA3F-C393717413A4","#),
            Words::Template("4ed3027d-8762-44a0-aa3f-c393717413a4".into())
        );
    }
}
