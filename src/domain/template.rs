//! A caller's own words for a message (a Verify v2 template fragment). `${code}`, `${brand}`,
//! `${time-limit}` and `${time-limit-unit}` are filled in when the message is sent; anything
//! else is sent as written.

use super::locale::Locale;

/// Templates one account may keep.
pub const MAX_TEMPLATES: usize = 10;
/// Characters in a fragment's text: room for a long e-mail, far more than an SMS.
pub const MAX_TEXT_CHARS: usize = 2000;

/// A template's name: 1–64 letters, digits, `_` and `-`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TemplateName(String);

impl TemplateName {
    pub fn parse(raw: &str) -> Option<Self> {
        let ok = (1..=64).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        ok.then(|| Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A fragment's text: 1 to [`MAX_TEXT_CHARS`] characters that say the code (`${code}`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TemplateText(String);

/// Why a text is not a fragment's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextError {
    Empty,
    TooLong,
    /// It never says the code, so the user would receive no code.
    NoCode,
}

impl TemplateText {
    pub fn parse(raw: &str) -> Result<Self, TextError> {
        if raw.trim().is_empty() {
            Err(TextError::Empty)
        } else if raw.chars().count() > MAX_TEXT_CHARS {
            Err(TextError::TooLong)
        } else {
            let text = Self(raw.to_owned());
            let says_code = text
                .pieces()
                .iter()
                .any(|p| matches!(p, TextPiece::Variable { name: "code", .. }));
            if says_code {
                Ok(text)
            } else {
                Err(TextError::NoCode)
            }
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text with `value(name)` in place of each `${name}` it knows, in one pass: a brand
    /// that itself holds `${code}` is printed as written.
    pub fn fill<'a>(&self, value: impl Fn(&str) -> Option<&'a str>) -> String {
        let mut out = String::with_capacity(self.0.len() + 32);
        for piece in self.pieces() {
            match piece {
                TextPiece::Said(text) => out.push_str(text),
                TextPiece::Variable { name, written } => {
                    out.push_str(value(name).unwrap_or(written));
                }
            }
        }
        out
    }

    /// The text cut at its `${…}` variables, whatever their names.
    pub fn pieces(&self) -> Vec<TextPiece<'_>> {
        let mut pieces = Vec::new();
        let mut rest = self.0.as_str();
        while let Some(open) = rest.find("${") {
            let Some(close) = rest[open + 2..].find('}') else {
                break;
            };
            if open > 0 {
                pieces.push(TextPiece::Said(&rest[..open]));
            }
            pieces.push(TextPiece::Variable {
                name: &rest[open + 2..open + 2 + close],
                written: &rest[open..open + 2 + close + 1],
            });
            rest = &rest[open + 2 + close + 1..];
        }
        if !rest.is_empty() {
            pieces.push(TextPiece::Said(rest));
        }
        pieces
    }
}

/// A piece of a fragment's text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextPiece<'a> {
    Said(&'a str),
    /// `${name}`.
    Variable {
        name: &'a str,
        written: &'a str,
    },
}

/// How long a code is good for, as `${time-limit}` and `${time-limit-unit}` say it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeLimit {
    pub value: i64,
    pub unit: TimeUnit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeUnit {
    Seconds,
    Minutes,
}

impl TimeLimit {
    /// Whole minutes when the time is some, or ten minutes or more (rounded down: the code is
    /// never said to last longer than it does); seconds otherwise.
    pub fn of_seconds(seconds: i64) -> Self {
        let seconds = seconds.max(0);
        if seconds >= 60 && (seconds % 60 == 0 || seconds >= 600) {
            Self {
                value: seconds / 60,
                unit: TimeUnit::Minutes,
            }
        } else {
            Self {
                value: seconds,
                unit: TimeUnit::Seconds,
            }
        }
    }

    /// The unit in `locale`'s words, in the form its number takes.
    pub fn unit_word(self, locale: Locale) -> &'static str {
        let words = unit_words(locale.as_str());
        let forms = match self.unit {
            TimeUnit::Minutes => words.minute,
            TimeUnit::Seconds => words.second,
        };
        forms[plural(words.rule, self.value) as usize]
    }
}

/// Which form of a noun a number takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Form {
    One = 0,
    Few = 1,
    Other = 2,
}

/// How a language picks a form (simplified CLDR rules: where a language has more forms than
/// three, the nearest of these is used).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rule {
    /// 1 is singular, everything else plural.
    OneOther,
    /// 0 and 1 are singular (French, Hindi, Portuguese).
    ZeroOneOther,
    /// Russian and Bulgarian-style: 1, 21, 31… / 2–4, 22–24… / the rest.
    EastSlavic,
    /// Polish: 1 / 2–4, 22–24… (not 12–14) / the rest.
    Polish,
    /// Czech and Slovak: 1 / 2–4 / the rest.
    CzechSlovak,
    /// Lithuanian: 1, 21… (not 11) / 2–9, 22–29… (not 12–19) / the rest.
    Lithuanian,
    /// Slovenian: 1, 101… / 2–4, 102–104… / the rest (dual folded into "few").
    Slovenian,
    /// Arabic: 1 and 2 / 3–10, 103–110… / the rest.
    Arabic,
}

fn plural(rule: Rule, n: i64) -> Form {
    let (n10, n100) = (n % 10, n % 100);
    let slavic_few = (2..=4).contains(&n10) && !(12..=14).contains(&n100);
    match rule {
        Rule::OneOther if n == 1 => Form::One,
        Rule::ZeroOneOther if n <= 1 => Form::One,
        Rule::EastSlavic if n10 == 1 && n100 != 11 => Form::One,
        Rule::EastSlavic if slavic_few => Form::Few,
        Rule::Polish if n == 1 => Form::One,
        Rule::Polish if slavic_few => Form::Few,
        Rule::CzechSlovak if n == 1 => Form::One,
        Rule::CzechSlovak if (2..=4).contains(&n) => Form::Few,
        Rule::Lithuanian if n10 == 1 && !(11..=19).contains(&n100) => Form::One,
        Rule::Lithuanian if n10 >= 2 && !(11..=19).contains(&n100) => Form::Few,
        Rule::Slovenian if n100 == 1 => Form::One,
        Rule::Slovenian if (2..=4).contains(&n100) => Form::Few,
        Rule::Arabic if n == 1 || n == 2 => Form::One,
        Rule::Arabic if (3..=10).contains(&n100) => Form::Few,
        _ => Form::Other,
    }
}

struct UnitWords {
    /// A language tag (`zh-tw`) or a language (`zh`).
    tag: &'static str,
    rule: Rule,
    minute: [&'static str; 3],
    second: [&'static str; 3],
}

const fn words(
    tag: &'static str,
    rule: Rule,
    minute: [&'static str; 3],
    second: [&'static str; 3],
) -> UnitWords {
    UnitWords {
        tag,
        rule,
        minute,
        second,
    }
}

use Rule::*;

/// One form, two, or three: `[one, few, other]`.
static UNIT_WORDS: &[UnitWords] = &[
    words(
        "en",
        OneOther,
        ["minute", "minutes", "minutes"],
        ["second", "seconds", "seconds"],
    ),
    words(
        "ar",
        Arabic,
        ["دقيقة", "دقائق", "دقيقة"],
        ["ثانية", "ثوان", "ثانية"],
    ),
    words(
        "bg",
        OneOther,
        ["минута", "минути", "минути"],
        ["секунда", "секунди", "секунди"],
    ),
    words(
        "cs",
        CzechSlovak,
        ["minuta", "minuty", "minut"],
        ["sekunda", "sekundy", "sekund"],
    ),
    words(
        "cy",
        OneOther,
        ["munud", "munud", "munud"],
        ["eiliad", "eiliad", "eiliad"],
    ),
    words(
        "da",
        OneOther,
        ["minut", "minutter", "minutter"],
        ["sekund", "sekunder", "sekunder"],
    ),
    words(
        "de",
        OneOther,
        ["Minute", "Minuten", "Minuten"],
        ["Sekunde", "Sekunden", "Sekunden"],
    ),
    words(
        "ee",
        OneOther,
        ["minut", "minutit", "minutit"],
        ["sekund", "sekundit", "sekundit"],
    ),
    words(
        "el",
        OneOther,
        ["λεπτό", "λεπτά", "λεπτά"],
        ["δευτερόλεπτο", "δευτερόλεπτα", "δευτερόλεπτα"],
    ),
    words(
        "es",
        OneOther,
        ["minuto", "minutos", "minutos"],
        ["segundo", "segundos", "segundos"],
    ),
    words(
        "fi",
        OneOther,
        ["minuutti", "minuuttia", "minuuttia"],
        ["sekunti", "sekuntia", "sekuntia"],
    ),
    words(
        "fil",
        OneOther,
        ["minuto", "minuto", "minuto"],
        ["segundo", "segundo", "segundo"],
    ),
    words(
        "fr",
        ZeroOneOther,
        ["minute", "minutes", "minutes"],
        ["seconde", "secondes", "secondes"],
    ),
    words(
        "ga",
        OneOther,
        ["nóiméad", "nóiméad", "nóiméad"],
        ["soicind", "soicind", "soicind"],
    ),
    words(
        "hi",
        ZeroOneOther,
        ["मिनट", "मिनट", "मिनट"],
        ["सेकंड", "सेकंड", "सेकंड"],
    ),
    words(
        "hu",
        OneOther,
        ["perc", "perc", "perc"],
        ["másodperc", "másodperc", "másodperc"],
    ),
    words(
        "id",
        OneOther,
        ["menit", "menit", "menit"],
        ["detik", "detik", "detik"],
    ),
    words(
        "is",
        OneOther,
        ["mínúta", "mínútur", "mínútur"],
        ["sekúnda", "sekúndur", "sekúndur"],
    ),
    words(
        "it",
        OneOther,
        ["minuto", "minuti", "minuti"],
        ["secondo", "secondi", "secondi"],
    ),
    words("ja", OneOther, ["分", "分", "分"], ["秒", "秒", "秒"]),
    words("ko", OneOther, ["분", "분", "분"], ["초", "초", "초"]),
    words(
        "lt",
        Lithuanian,
        ["minutė", "minutės", "minučių"],
        ["sekundė", "sekundės", "sekundžių"],
    ),
    words(
        "lv",
        OneOther,
        ["minūte", "minūtes", "minūtes"],
        ["sekunde", "sekundes", "sekundes"],
    ),
    words(
        "mt",
        OneOther,
        ["minuta", "minuti", "minuti"],
        ["sekonda", "sekondi", "sekondi"],
    ),
    words(
        "nb",
        OneOther,
        ["minutt", "minutter", "minutter"],
        ["sekund", "sekunder", "sekunder"],
    ),
    words(
        "nl",
        OneOther,
        ["minuut", "minuten", "minuten"],
        ["seconde", "seconden", "seconden"],
    ),
    words(
        "pl",
        Polish,
        ["minuta", "minuty", "minut"],
        ["sekunda", "sekundy", "sekund"],
    ),
    words(
        "pt",
        ZeroOneOther,
        ["minuto", "minutos", "minutos"],
        ["segundo", "segundos", "segundos"],
    ),
    words(
        "ro",
        OneOther,
        ["minut", "minute", "minute"],
        ["secundă", "secunde", "secunde"],
    ),
    words(
        "ru",
        EastSlavic,
        ["минута", "минуты", "минут"],
        ["секунда", "секунды", "секунд"],
    ),
    words(
        "sk",
        CzechSlovak,
        ["minúta", "minúty", "minút"],
        ["sekunda", "sekundy", "sekúnd"],
    ),
    words(
        "sl",
        Slovenian,
        ["minuta", "minute", "minut"],
        ["sekunda", "sekunde", "sekund"],
    ),
    words(
        "sv",
        OneOther,
        ["minut", "minuter", "minuter"],
        ["sekund", "sekunder", "sekunder"],
    ),
    words(
        "th",
        OneOther,
        ["นาที", "นาที", "นาที"],
        ["วินาที", "วินาที", "วินาที"],
    ),
    words(
        "tr",
        OneOther,
        ["dakika", "dakika", "dakika"],
        ["saniye", "saniye", "saniye"],
    ),
    words(
        "vi",
        OneOther,
        ["phút", "phút", "phút"],
        ["giây", "giây", "giây"],
    ),
    words(
        "zh-tw",
        OneOther,
        ["分鐘", "分鐘", "分鐘"],
        ["秒", "秒", "秒"],
    ),
    words(
        "yue",
        OneOther,
        ["分鐘", "分鐘", "分鐘"],
        ["秒", "秒", "秒"],
    ),
    words("zh", OneOther, ["分钟", "分钟", "分钟"], ["秒", "秒", "秒"]),
];

/// The words for `tag`: its own entry, else its language's, else English.
fn unit_words(tag: &str) -> &'static UnitWords {
    let language = tag.split('-').next().unwrap_or(tag);
    UNIT_WORDS
        .iter()
        .find(|w| w.tag == tag)
        .or_else(|| UNIT_WORDS.iter().find(|w| w.tag == language))
        .unwrap_or(&UNIT_WORDS[0])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::locale::{PSD2_LOCALES, STANDARD_LOCALES};

    fn text(raw: &str) -> TemplateText {
        TemplateText::parse(raw).unwrap()
    }

    #[test]
    fn a_name_is_1_to_64_letters_digits_underscores_and_hyphens() {
        assert!(TemplateName::parse("my-template_2").is_some());
        assert!(TemplateName::parse(&"a".repeat(64)).is_some());
        for bad in ["", "a b", "é", "x/y", &"a".repeat(65)] {
            assert!(TemplateName::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn a_text_must_say_the_code_and_stay_within_its_length() {
        assert_eq!(TemplateText::parse("  "), Err(TextError::Empty));
        assert_eq!(TemplateText::parse("Your code"), Err(TextError::NoCode));
        assert_eq!(TemplateText::parse("{code}"), Err(TextError::NoCode));
        // Variables end at the first `}`: these never say the code.
        assert_eq!(
            TemplateText::parse("Code: ${${code}"),
            Err(TextError::NoCode)
        );
        assert_eq!(
            TemplateText::parse("${brand ${code}"),
            Err(TextError::NoCode)
        );
        let long = format!("${{code}}{}", "é".repeat(MAX_TEXT_CHARS - 7));
        assert!(TemplateText::parse(&long).is_ok());
        assert_eq!(
            TemplateText::parse(&format!("{long}x")),
            Err(TextError::TooLong)
        );
    }

    #[test]
    fn variables_are_filled_once_and_unknown_ones_are_kept_as_written() {
        let t = text("${brand}: ${code} ${nope} {code} $ ${time-limit} ${time-limit-unit}${");
        let out = t.fill(|name| match name {
            "brand" => Some("${code}"),
            "code" => Some("1234"),
            "time-limit" => Some("5"),
            "time-limit-unit" => Some("minutes"),
            _ => None,
        });
        assert_eq!(out, "${code}: 1234 ${nope} {code} $ 5 minutes${");
    }

    #[test]
    fn a_time_limit_is_said_in_whole_minutes_when_it_can_be() {
        let limit = |s| {
            let l = TimeLimit::of_seconds(s);
            (l.value, l.unit)
        };
        assert_eq!(limit(300), (5, TimeUnit::Minutes));
        assert_eq!(limit(90), (90, TimeUnit::Seconds));
        assert_eq!(limit(59), (59, TimeUnit::Seconds));
        assert_eq!(limit(659), (10, TimeUnit::Minutes));
        assert_eq!(limit(-3), (0, TimeUnit::Seconds));
    }

    #[test]
    fn units_take_the_form_their_number_takes_in_the_locales_language() {
        let word =
            |tag, value, unit| TimeLimit { value, unit }.unit_word(Locale::from_tag(tag).unwrap());
        assert_eq!(word("en-us", 1, TimeUnit::Minutes), "minute");
        assert_eq!(word("en-gb", 5, TimeUnit::Minutes), "minutes");
        assert_eq!(word("fr-fr", 0, TimeUnit::Seconds), "seconde");
        assert_eq!(word("ru-ru", 3, TimeUnit::Minutes), "минуты");
        assert_eq!(word("ru-ru", 5, TimeUnit::Minutes), "минут");
        assert_eq!(word("ru-ru", 21, TimeUnit::Minutes), "минута");
        assert_eq!(word("pl-pl", 12, TimeUnit::Minutes), "minut");
        assert_eq!(word("pl-pl", 22, TimeUnit::Minutes), "minuty");
        assert_eq!(word("lt-lt", 15, TimeUnit::Seconds), "sekundžių");
        assert_eq!(word("zh-tw", 5, TimeUnit::Minutes), "分鐘");
        assert_eq!(word("zh-cn", 5, TimeUnit::Minutes), "分钟");
    }

    #[test]
    fn every_locale_has_unit_words_of_its_own_language() {
        for tag in STANDARD_LOCALES.iter().chain(PSD2_LOCALES.iter()) {
            let language = tag.split('-').next().unwrap();
            let found = unit_words(tag);
            assert!(
                found.tag == *tag || found.tag == language,
                "{tag} falls back to {}",
                found.tag
            );
        }
    }
}
