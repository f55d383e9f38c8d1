//! Turns a delivery order and its PIN into the words the user receives.

use super::locale::Locale;
use super::step::Channel;
use super::template::{TemplateText, TextPiece, TimeLimit};
use super::texts::{LocaleTexts, LOCALE_TEXTS};
use super::verification::{DeliveryOrder, Purpose};

/// The text of one SMS or the script of one call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderedMessage {
    pub channel: Channel,
    /// The SMS text, the call's words, or an e-mail's plain part.
    pub text: String,
    /// An e-mail's subject and HTML part.
    pub email: Option<EmailParts>,
    /// For a call, the script in pieces: a speech engine renders what repeats (the fixed
    /// phrases, each character of a code) once and keeps it.
    pub script: Option<Script>,
}

/// What an e-mail has besides its plain text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmailParts {
    pub subject: String,
    pub html: String,
}

/// A call's script before it is filled in. It holds the PIN in clear, so `Debug` leaves it out.
#[derive(Clone, PartialEq, Eq)]
pub struct Script {
    pub wording: Wording,
    pub brand: String,
    pub payee: String,
    pub amount: String,
    /// The code as typed; it is read one character at a time.
    pub code: String,
    /// `${time-limit}` and `${time-limit-unit}` of the caller's own words.
    pub time_limit: String,
    pub time_unit: &'static str,
}

/// Whose words a script says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wording {
    /// The locale's voice template, with `{brand}`, `{payee}`, `{amount}` and `{code}`.
    BuiltIn(&'static str),
    /// The caller's own (a template fragment), with `${…}` variables.
    Own(TemplateText),
}

impl std::fmt::Debug for Script {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Script")
            .field("wording", &self.wording)
            .finish_non_exhaustive()
    }
}

/// One piece of a script to speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Words of the template.
    Said(&'a str),
    /// A brand, payee or amount.
    Value(&'a str),
    /// The code, to be read one character at a time.
    Code(&'a str),
}

impl Script {
    /// A script in the locale's own words (`template`), which take no time limit.
    pub fn built_in(
        template: &'static str,
        brand: &str,
        payee: &str,
        amount: &str,
        code: &str,
    ) -> Self {
        Self {
            wording: Wording::BuiltIn(template),
            brand: brand.to_owned(),
            payee: payee.to_owned(),
            amount: amount.to_owned(),
            code: code.to_owned(),
            time_limit: String::new(),
            time_unit: "",
        }
    }

    /// The caller's own words cut at their variables, with this script's values in their
    /// places; a variable it does not know is said as written.
    pub fn own_pieces<'a>(&'a self, text: &'a TemplateText) -> Vec<Piece<'a>> {
        text.pieces()
            .into_iter()
            .map(|piece| match piece {
                TextPiece::Said(said) => Piece::Said(said),
                TextPiece::Variable { name, written } => match name {
                    "code" => Piece::Code(&self.code),
                    "brand" => Piece::Value(&self.brand),
                    "time-limit" => Piece::Value(&self.time_limit),
                    "time-limit-unit" => Piece::Value(self.time_unit),
                    _ => Piece::Said(written),
                },
            })
            .collect()
    }

    /// `template` (this script's own, or a speech engine's rewording of it) cut at its
    /// placeholders, with this script's values in their places.
    pub fn pieces<'a>(&'a self, template: &'a str) -> Vec<Piece<'a>> {
        let mut pieces = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            let after = &rest[open + 1..];
            let Some(close) = after.find('}') else {
                break;
            };
            let piece = match &after[..close] {
                "brand" => Piece::Value(&self.brand),
                "payee" => Piece::Value(&self.payee),
                "amount" => Piece::Value(&self.amount),
                "code" => Piece::Code(&self.code),
                _ => {
                    pieces.push(Piece::Said(&rest[..open + 1]));
                    rest = after;
                    continue;
                }
            };
            if open > 0 {
                pieces.push(Piece::Said(&rest[..open]));
            }
            pieces.push(piece);
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Said(rest));
        }
        pieces
    }
}

/// Renders the message for `order` with the clear `pin`. Voice scripts read the code one character
/// at a time (`4, 8, 1, 5`) so a speech engine never reads it as a number.
pub fn render(order: &DeliveryOrder, pin: &str) -> RenderedMessage {
    if let Some(own) = &order.text {
        return render_own(order, own, pin);
    }
    let texts = texts_for(order.locale);
    let code = match order.channel {
        Channel::Sms | Channel::Email | Channel::WhatsApp => pin.to_owned(),
        Channel::Voice => spell(pin),
    };
    // An e-mail says what the SMS says; so does a WhatsApp message where a channel shows it
    // (the inbox: WhatsApp itself sends its own template).
    let template = match (&order.purpose, order.channel) {
        (Purpose::Brand { .. }, Channel::Sms | Channel::Email | Channel::WhatsApp) => texts.sms,
        (Purpose::Brand { .. }, Channel::Voice) => texts.tts,
        (Purpose::Payment { .. }, Channel::Sms | Channel::Email | Channel::WhatsApp) => {
            texts.psd2_sms
        }
        (Purpose::Payment { .. }, Channel::Voice) => texts.psd2_tts,
    };
    let (brand, payee, amount) = match &order.purpose {
        Purpose::Brand { brand, .. } => (brand.as_str(), "", ""),
        Purpose::Payment { payee, amount } => ("", payee.as_str(), amount.as_str()),
    };
    let mut text = fill(template, |name| match name {
        "brand" => Some(brand),
        "payee" => Some(payee),
        "amount" => Some(amount),
        "code" => Some(code.as_str()),
        _ => None,
    });
    // Android's SMS Retriever API reads the code itself from a message that ends with its app's
    // hash.
    if let (Channel::Sms, Some(hash)) = (order.channel, &order.app_hash) {
        text.push('\n');
        text.push_str(hash);
    }
    let email = (order.channel == Channel::Email).then(|| {
        let (brand, payee, amount) = (escaped(brand), escaped(payee), escaped(amount));
        let strong = format!("<strong>{}</strong>", escaped(&code));
        let body = fill(template, |name| match name {
            "brand" => Some(brand.as_str()),
            "payee" => Some(payee.as_str()),
            "amount" => Some(amount.as_str()),
            "code" => Some(strong.as_str()),
            _ => None,
        });
        EmailParts {
            subject: text.clone(),
            html: html_page(order.locale, &body),
        }
    });
    let script = (order.channel == Channel::Voice)
        .then(|| Script::built_in(template, brand, payee, amount, pin));
    RenderedMessage {
        channel: order.channel,
        text,
        email,
        script,
    }
}

/// The message in the caller's own words. An e-mail keeps the built-in subject: the words are
/// its body.
fn render_own(order: &DeliveryOrder, own: &TemplateText, pin: &str) -> RenderedMessage {
    let brand = match &order.purpose {
        Purpose::Brand { brand, .. } => brand.as_str(),
        Purpose::Payment { payee, .. } => payee.as_str(),
    };
    // What the code is good for from the moment this step starts.
    let seconds = order
        .pin_expires_at
        .map_or(0, |until| (until - order.created_at).num_seconds());
    let limit = TimeLimit::of_seconds(seconds);
    let time_limit = limit.value.to_string();
    let time_unit = limit.unit_word(order.locale);
    let code = match order.channel {
        Channel::Voice => spell(pin),
        Channel::Sms | Channel::Email | Channel::WhatsApp => pin.to_owned(),
    };
    let fill = |brand: &str, code: &str| {
        own.fill(|name| match name {
            "code" => Some(code),
            "brand" => Some(brand),
            "time-limit" => Some(time_limit.as_str()),
            "time-limit-unit" => Some(time_unit),
            _ => None,
        })
    };
    let mut text = fill(brand, &code);
    if let (Channel::Sms, Some(hash)) = (order.channel, &order.app_hash) {
        text.push('\n');
        text.push_str(hash);
    }
    let email = (order.channel == Channel::Email).then(|| {
        let subject = render(
            &DeliveryOrder {
                text: None,
                ..order.clone()
            },
            pin,
        )
        .text;
        // The words are plain text: every piece is escaped, and a line break in them is one in
        // the page.
        let code = format!("<strong>{}</strong>", escaped(pin));
        let mut body = String::new();
        for piece in own.pieces() {
            match piece {
                TextPiece::Said(said) => body.push_str(&escaped(said)),
                TextPiece::Variable { name, written } => body.push_str(&match name {
                    "code" => code.clone(),
                    "brand" => escaped(brand),
                    "time-limit" => escaped(&time_limit),
                    "time-limit-unit" => escaped(time_unit),
                    _ => escaped(written),
                }),
            }
        }
        let body = body.replace("\r\n", "\n").replace('\n', "<br>\n");
        EmailParts {
            subject,
            html: html_page(order.locale, &body),
        }
    });
    let script = (order.channel == Channel::Voice).then(|| Script {
        wording: Wording::Own(own.clone()),
        brand: brand.to_owned(),
        payee: String::new(),
        amount: String::new(),
        code: pin.to_owned(),
        time_limit: time_limit.clone(),
        time_unit,
    });
    RenderedMessage {
        channel: order.channel,
        text,
        email,
        script,
    }
}

fn escaped(value: &str) -> String {
    let mut out = String::new();
    crate::xml::push_text(&mut out, value);
    out
}

fn html_page(locale: Locale, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"{}\"><head><meta charset=\"utf-8\"></head>\
         <body><p style=\"font-size:16px\">{body}</p></body></html>\n",
        locale.as_str()
    )
}

/// Writes the characters of `pin` separated so that they are read one by one.
pub fn spell(pin: &str) -> String {
    let mut out = String::with_capacity(pin.len() * 3);
    for (i, c) in pin.chars().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push(c);
    }
    out
}

fn texts_for(locale: Locale) -> &'static LocaleTexts {
    LOCALE_TEXTS
        .iter()
        .find(|t| t.tag == locale.as_str())
        .expect("every locale has texts (locale::tests::every_accepted_locale_has_texts)")
}

/// Substitutes `{name}` placeholders in one pass, so a brand that itself contains `{code}` is
/// printed as written and never expanded.
fn fill<'a>(template: &str, value: impl Fn(&str) -> Option<&'a str>) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after
            .find('}')
            .and_then(|close| value(&after[..close]).map(|v| (close, v)))
        {
            Some((close, v)) => {
                out.push_str(v);
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::step::Destination;
    use crate::domain::template::TemplateText;
    use crate::domain::types::{EventId, PhoneNumber, RequestId};
    use chrono::DateTime;

    fn order(channel: Channel, purpose: Purpose, locale: &str) -> DeliveryOrder {
        DeliveryOrder {
            event_id: EventId::from_bytes([1; 8]),
            request_id: RequestId::from_bytes([2; 16]),
            channel,
            to: Destination::Phone(PhoneNumber::parse("447700123456", None).unwrap()),
            from: None,
            app_hash: None,
            purpose,
            locale: Locale::from_tag(locale).unwrap(),
            sealed_pin: vec![],
            created_at: DateTime::from_timestamp(0, 0).unwrap(),
            pin_expires_at: None,
            text: None,
        }
    }

    fn brand(b: &str) -> Purpose {
        Purpose::Brand { brand: b.into() }
    }

    #[test]
    fn an_sms_names_the_brand_and_the_code() {
        let m = render(&order(Channel::Sms, brand("AcmeInc"), "en-us"), "4815");
        assert!(m.text.contains("AcmeInc"), "{}", m.text);
        assert!(m.text.contains("4815"), "{}", m.text);
    }

    #[test]
    fn a_voice_script_reads_the_digits_one_by_one_twice() {
        let m = render(&order(Channel::Voice, brand("AcmeInc"), "en-gb"), "4815");
        assert_eq!(m.text.matches("4, 8, 1, 5").count(), 2, "{}", m.text);
        assert!(!m.text.contains("4815"));
    }

    #[test]
    fn a_call_comes_with_its_script_in_pieces_and_an_sms_without() {
        let m = render(&order(Channel::Voice, brand("AcmeInc"), "en-gb"), "4815");
        let script = m.script.unwrap();
        let Wording::BuiltIn(template) = script.wording else {
            panic!("built-in words")
        };
        let pieces = script.pieces(template);
        assert_eq!(
            pieces.iter().filter(|p| **p == Piece::Code("4815")).count(),
            2
        );
        assert!(pieces.contains(&Piece::Value("AcmeInc")));
        assert!(matches!(pieces[0], Piece::Said(s) if s.starts_with("Hello")));
        assert!(!format!("{script:?}").contains("4815"));
        assert!(render(&order(Channel::Sms, brand("A"), "en-gb"), "1")
            .script
            .is_none());
    }

    #[test]
    fn pieces_keep_text_around_unknown_braces() {
        let script = Script::built_in("", "B", "", "", "12");
        assert_eq!(
            script.pieces("a {x} {brand}: {code}."),
            [
                Piece::Said("a {"),
                Piece::Said("x} "),
                Piece::Value("B"),
                Piece::Said(": "),
                Piece::Code("12"),
                Piece::Said(".")
            ]
        );
    }

    fn own(channel: Channel, words: &str) -> DeliveryOrder {
        let mut o = order(channel, brand("Acme <Shop>"), "de-de");
        o.pin_expires_at = Some(o.created_at + chrono::Duration::seconds(300));
        o.text = Some(TemplateText::parse(words).unwrap());
        o
    }

    #[test]
    fn own_words_are_sent_with_their_variables_filled_in() {
        let words = "${brand}: ${code}, gültig ${time-limit} ${time-limit-unit}. ${other}";
        let m = render(&own(Channel::Sms, words), "4815");
        assert_eq!(m.text, "Acme <Shop>: 4815, gültig 5 Minuten. ${other}");
        let mut hashed = own(Channel::Sms, words);
        hashed.app_hash = Some("FA+9qCX9VSu".into());
        assert!(render(&hashed, "4815")
            .text
            .ends_with("${other}\nFA+9qCX9VSu"));
    }

    #[test]
    fn own_words_in_a_call_read_the_code_one_character_at_a_time() {
        let m = render(
            &own(
                Channel::Voice,
                "Code ${code}, ${time-limit} ${time-limit-unit}",
            ),
            "4815",
        );
        assert_eq!(m.text, "Code 4, 8, 1, 5, 5 Minuten");
        let script = m.script.unwrap();
        let Wording::Own(text) = &script.wording else {
            panic!("own words")
        };
        assert_eq!(
            script.own_pieces(text),
            [
                Piece::Said("Code "),
                Piece::Code("4815"),
                Piece::Said(", "),
                Piece::Value("5"),
                Piece::Said(" "),
                Piece::Value("Minuten"),
            ]
        );
    }

    #[test]
    fn an_email_in_own_words_keeps_the_built_in_subject_and_escapes_its_page() {
        let m = render(
            &own(
                Channel::Email,
                "${brand}\nIhr Code: ${code} <a href=x>&</a> ${x}",
            ),
            "4815",
        );
        assert_eq!(m.text, "Acme <Shop>\nIhr Code: 4815 <a href=x>&</a> ${x}");
        let email = m.email.unwrap();
        assert_eq!(
            email.subject,
            render(
                &order(Channel::Email, brand("Acme <Shop>"), "de-de"),
                "4815"
            )
            .text
        );
        assert!(
            email
                .html
                .contains("Acme &lt;Shop&gt;<br>\nIhr Code: <strong>4815</strong> &lt;a href=x&gt;&amp;&lt;/a&gt; ${x}"),
            "{}",
            email.html
        );
    }

    #[test]
    fn a_payment_message_names_the_payee_and_the_amount() {
        let p = Purpose::Payment {
            payee: "Acme Shop".into(),
            amount: "48.00".into(),
        };
        let m = render(&order(Channel::Sms, p, "de-de"), "123456");
        assert!(
            m.text.contains("Acme Shop") && m.text.contains("48.00") && m.text.contains("123456")
        );
    }

    #[test]
    fn an_sms_with_an_app_hash_ends_with_it_and_a_call_does_not_say_it() {
        let mut o = order(Channel::Sms, brand("Acme"), "en-us");
        o.app_hash = Some("FA+9qCX9VSu".into());
        assert!(render(&o, "4815").text.ends_with("\nFA+9qCX9VSu"));
        o.channel = Channel::Voice;
        assert!(!render(&o, "4815").text.contains("FA+9qCX9VSu"));
    }

    #[test]
    fn an_email_has_the_sms_words_as_subject_and_text_and_an_escaped_html_part() {
        let mut o = order(Channel::Email, brand("A<b>&Co"), "fr-fr");
        o.to = Destination::Email(crate::domain::EmailAddress::parse("a@example.com").unwrap());
        let m = render(&o, "4815");
        let email = m.email.unwrap();
        assert_eq!(email.subject, m.text);
        assert!(
            m.text.contains("4815") && m.text.contains("A<b>&Co"),
            "{}",
            m.text
        );
        assert!(
            email.html.contains("<strong>4815</strong>"),
            "{}",
            email.html
        );
        assert!(email.html.contains("A&lt;b&gt;&amp;Co"), "{}", email.html);
        assert!(email.html.contains(r#"lang="fr-fr""#));
        assert!(render(&order(Channel::Sms, brand("A"), "en-gb"), "1")
            .email
            .is_none());
    }

    #[test]
    fn no_sms_text_holds_a_character_html_would_read_as_markup() {
        for t in LOCALE_TEXTS {
            for template in [t.sms, t.psd2_sms] {
                assert!(!template.contains(['<', '>', '&']), "{}: {template}", t.tag);
            }
        }
    }

    #[test]
    fn a_brand_containing_a_placeholder_is_not_expanded() {
        let m = render(&order(Channel::Sms, brand("{code}"), "en-us"), "4815");
        assert_eq!(m.text.matches("4815").count(), 1, "{}", m.text);
        assert!(m.text.contains("{code}"));
    }

    #[test]
    fn every_locale_renders_both_kinds_without_leftover_braces() {
        for t in LOCALE_TEXTS {
            for kind in [Channel::Sms, Channel::Voice] {
                let m = render(&order(kind, brand("Acme"), t.tag), "9876");
                assert!(!m.text.contains('{'), "{}: {}", t.tag, m.text);
                let p = Purpose::Payment {
                    payee: "Shop".into(),
                    amount: "1.00".into(),
                };
                let m = render(&order(kind, p, t.tag), "9876");
                assert!(!m.text.contains('{'), "{}: {}", t.tag, m.text);
            }
        }
    }
}
