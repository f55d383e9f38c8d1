//! Whether a parsed number is valid, and its region, decided from libphonenumber's metadata (the
//! copy inside the `phonenumber` crate) with each calling code's patterns compiled once, on the
//! first number of that code.
//!
//! Why not `phonenumber::is_valid` and `Country::id`: the crate keeps its compiled patterns in
//! one LRU cache behind a process-wide mutex, keyed by the pattern text, so every match locks it
//! (regex run included) and hashes the pattern with SipHash twice; and validity and region each
//! search the metadata again. Together they were 15 % of the server's CPU in the benchmark of new
//! verifications. The rules below are the crate's own (`validator::source_for`,
//! `validator::number_type`), and a test holds them to the crate on numbers of every calling code.

use std::sync::OnceLock;

use phonenumber::metadata::{Descriptor, Metadata, DATABASE};
use regex::Regex;

/// Calling codes are one to three digits.
const CODES: usize = 1000;

/// Validity of `national` (the national significant number, leading zeros included) under
/// `code`: `None` when invalid, else the number's ISO 3166 region when the plan names one (not
/// for non-geographic codes such as +800).
pub fn check(code: u16, national: &str) -> Option<Option<&'static str>> {
    plan(code)?.region_of(national).map(|r| r.id)
}

/// The number plan of a calling code, compiled on its first number.
fn plan(code: u16) -> Option<&'static Plan> {
    static PLANS: OnceLock<Vec<OnceLock<Option<Plan>>>> = OnceLock::new();
    let plans = PLANS.get_or_init(|| (0..CODES).map(|_| OnceLock::new()).collect());
    plans
        .get(usize::from(code))?
        .get_or_init(|| Plan::build(code))
        .as_ref()
}

/// A number written as plain international digits (`447700900123`, with or without `+`) that
/// is valid: its E.164 digits and region, found without the `phonenumber` crate's parser. That
/// parser took 2.66 µs of the 3.3 µs a new verification spent on its number (a bench over 1,000
/// US numbers), for what is, for such input, splitting off the calling code. `None` whenever
/// the answer might differ from the crate's: other characters than digits, an unknown calling
/// code, a national number that the crate would strip a national prefix or carrier code from
/// (for any region of the code), or a number that is not valid. The caller then asks the crate.
/// A test holds this to the crate on numbers of every calling code.
pub fn plain_international(raw: &str) -> Option<(String, Option<&'static str>)> {
    static PREFIXES: OnceLock<Vec<OnceLock<Option<Prefixes>>>> = OnceLock::new();
    let digits = raw.strip_prefix('+').unwrap_or(raw);
    if !(3..=20).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let prefixes = PREFIXES.get_or_init(|| (0..CODES).map(|_| OnceLock::new()).collect());
    // Calling codes are prefix-free: at most one of the first one to three digits is a code.
    let (code, national, prefixes) = (1..=3).find_map(|len| {
        let code: u16 = digits[..len].parse().ok()?;
        let known = prefixes
            .get(usize::from(code))?
            .get_or_init(|| Prefixes::build(code))
            .as_ref()?;
        Some((code, &digits[len..], known))
    })?;
    if !(MIN_NSN..=MAX_NSN).contains(&national.len()) || prefixes.might_strip(national) {
        return None;
    }
    check(code, national).map(|region| (digits.to_owned(), region))
}

/// The crate's national significant number lengths.
const MIN_NSN: usize = 2;
const MAX_NSN: usize = 17;

/// What the crate's parser strips from the front of a national number, for every region of one
/// calling code (it picks the region by the number, so all of them count).
struct Prefixes {
    national: Vec<&'static str>,
    /// Every region's pattern in one alternation: +1 has 25 regions, and one search over the
    /// alternation cost less than a third of 25 searches (`cargo bench --bench number`).
    for_parsing: Option<Regex>,
}

impl Prefixes {
    fn build(code: u16) -> Option<Self> {
        let metas = DATABASE.by_code(&code)?;
        let mut patterns: Vec<&str> = metas
            .iter()
            .filter_map(|m| m.national_prefix_for_parsing())
            .map(|r| r.as_str())
            .collect();
        patterns.sort_unstable();
        patterns.dedup();
        let for_parsing = (!patterns.is_empty()).then(|| {
            let alternatives: Vec<String> = patterns.iter().map(|p| format!("(?:{p})")).collect();
            anchored(&alternatives.join("|"))
        });
        Some(Self {
            national: metas.iter().filter_map(|m| m.national_prefix()).collect(),
            for_parsing,
        })
    }

    fn might_strip(&self, national: &str) -> bool {
        self.national.iter().any(|p| national.starts_with(p))
            || self
                .for_parsing
                .as_ref()
                .is_some_and(|r| r.is_match(national))
    }
}

/// A descriptor's pattern, anchored: the crate accepts a match only where it starts at the
/// first digit, which is what an anchored search answers without looking further.
struct Pattern {
    regex: Regex,
    lengths: Vec<u16>,
}

impl Pattern {
    fn new(d: &Descriptor) -> Self {
        Self {
            regex: anchored(d.national_number().as_str()),
            lengths: d.possible_length().to_vec(),
        }
    }

    fn matches(&self, national: &str) -> bool {
        let len = national.len() as u16;
        (self.lengths.is_empty() || self.lengths.contains(&len)) && self.regex.is_match(national)
    }
}

/// Compiled as the crate compiles its metadata: whitespace in a pattern is layout, not digits.
fn anchored(pattern: &str) -> Regex {
    regex::RegexBuilder::new(&format!("^(?:{pattern})"))
        .ignore_whitespace(true)
        .build()
        .expect("libphonenumber metadata patterns compile")
}

struct Region {
    id: Option<&'static str>,
    leading_digits: Option<Regex>,
    general: Pattern,
    /// Every number type the crate tells apart, in the order it tries them; a number is valid
    /// when one of them matches.
    types: Vec<(NumberType, Pattern)>,
    /// Whether the plan writes fixed lines and mobiles with one pattern (the US): then no
    /// number can be told to be either.
    fixed_is_mobile: bool,
}

impl Region {
    fn new(meta: &'static Metadata) -> Self {
        let d = meta.descriptors();
        let types = [
            (NumberType::PremiumRate, d.premium_rate()),
            (NumberType::TollFree, d.toll_free()),
            (NumberType::SharedCost, d.shared_cost()),
            (NumberType::Voip, d.voip()),
            (NumberType::PersonalNumber, d.personal_number()),
            (NumberType::Pager, d.pager()),
            (NumberType::Uan, d.uan()),
            (NumberType::Voicemail, d.voicemail()),
            (NumberType::FixedLine, d.fixed_line()),
            (NumberType::Mobile, d.mobile()),
        ];
        fn pattern(d: Option<&Descriptor>) -> Option<&str> {
            d.map(|d| d.national_number().as_str())
        }
        Self {
            id: meta
                .id()
                .parse::<phonenumber::country::Id>()
                .ok()
                .map(|_| meta.id()),
            leading_digits: meta.leading_digits().map(|r| anchored(r.as_str())),
            general: Pattern::new(d.general()),
            fixed_is_mobile: pattern(d.fixed_line()) == pattern(d.mobile()),
            types: types
                .into_iter()
                .filter_map(|(t, d)| d.map(|d| (t, Pattern::new(d))))
                .collect(),
        }
    }

    fn is_valid(&self, national: &str) -> bool {
        self.general.matches(national) && self.types.iter().any(|(_, p)| p.matches(national))
    }

    /// The type of a number valid here: the first type whose pattern matches, as the crate's
    /// `validator::number_type` decides it.
    fn number_type(&self, national: &str) -> NumberType {
        let matches = |wanted: NumberType| {
            self.types
                .iter()
                .any(|(t, p)| *t == wanted && p.matches(national))
        };
        match self.types.iter().find(|(_, p)| p.matches(national)) {
            Some((NumberType::FixedLine, _))
                if self.fixed_is_mobile || matches(NumberType::Mobile) =>
            {
                NumberType::FixedLineOrMobile
            }
            Some((t, _)) => *t,
            None => NumberType::Unknown,
        }
    }
}

/// What kind of line a number is, from the number plan (libphonenumber's types).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NumberType {
    FixedLine,
    Mobile,
    /// The plan cannot tell (the US and Canada).
    FixedLineOrMobile,
    TollFree,
    PremiumRate,
    SharedCost,
    PersonalNumber,
    Voip,
    Pager,
    /// "Universal access" company numbers.
    Uan,
    Voicemail,
    Unknown,
}

impl NumberType {
    pub const ALL: [NumberType; 12] = [
        NumberType::FixedLine,
        NumberType::Mobile,
        NumberType::FixedLineOrMobile,
        NumberType::TollFree,
        NumberType::PremiumRate,
        NumberType::SharedCost,
        NumberType::PersonalNumber,
        NumberType::Voip,
        NumberType::Pager,
        NumberType::Uan,
        NumberType::Voicemail,
        NumberType::Unknown,
    ];

    /// Its name in the configuration file and in answers.
    pub fn name(self) -> &'static str {
        match self {
            NumberType::FixedLine => "fixed_line",
            NumberType::Mobile => "mobile",
            NumberType::FixedLineOrMobile => "fixed_line_or_mobile",
            NumberType::TollFree => "toll_free",
            NumberType::PremiumRate => "premium_rate",
            NumberType::SharedCost => "shared_cost",
            NumberType::PersonalNumber => "personal_number",
            NumberType::Voip => "voip",
            NumberType::Pager => "pager",
            NumberType::Uan => "uan",
            NumberType::Voicemail => "voicemail",
            NumberType::Unknown => "unknown",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// The type of a valid number given as its E.164 digits; `None` when it is not valid.
pub fn number_type(digits: &str) -> Option<NumberType> {
    // Calling codes are prefix-free: at most one of the first one to three digits is a code.
    let (code, national) = (1..=3.min(digits.len())).find_map(|len| {
        let code: u16 = digits[..len].parse().ok()?;
        DATABASE.region(&code).map(|_| (code, &digits[len..]))
    })?;
    plan(code)?
        .region_of(national)
        .map(|r| r.number_type(national))
}

enum Plan {
    /// One region (or one non-geographic entity) for the code.
    Single(Region),
    /// Several regions share the code (+1, +7, +44, …): the first whose leading digits match
    /// decides, or else the first the number is valid in.
    Shared(Vec<Region>),
}

impl Plan {
    fn build(code: u16) -> Option<Self> {
        let regions = DATABASE.region(&code)?;
        if let [only] = regions[..] {
            let meta = if only == "001" {
                DATABASE.by_code(&code)?.into_iter().next()?
            } else {
                only.parse::<phonenumber::country::Id>().ok()?;
                DATABASE.by_id(only)?
            };
            return Some(Plan::Single(Region::new(meta)));
        }
        let shared = regions
            .into_iter()
            .map(|id| DATABASE.by_id(id).map(Region::new))
            .collect::<Option<Vec<_>>>()?;
        Some(Plan::Shared(shared))
    }

    /// The region a valid number is of.
    fn region_of(&self, national: &str) -> Option<&Region> {
        let (region, valid) = match self {
            Plan::Single(region) => (region, None),
            Plan::Shared(regions) => regions.iter().find_map(|r| match &r.leading_digits {
                Some(leading) => leading.is_match(national).then_some((r, None)),
                // Found because the number is valid there: no need to ask again.
                None => r.is_valid(national).then_some((r, Some(true))),
            })?,
        };
        valid
            .unwrap_or_else(|| region.is_valid(national))
            .then_some(region)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the crate itself answers: validity, and the region when valid.
    fn by_the_crate(number: &phonenumber::PhoneNumber) -> Option<Option<String>> {
        phonenumber::is_valid(number)
            .then(|| number.country().id().map(|id| id.as_ref().to_owned()))
    }

    /// Small deterministic generator: the same numbers on every run.
    struct Digits(u64);

    impl Digits {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn string(&mut self, len: usize) -> String {
            (0..len)
                .map(|_| char::from(b'0' + (self.next() % 10) as u8))
                .collect()
        }
    }

    /// Example numbers of every region and type, each also with its last digits changed, one
    /// digit short and one too long, plus random digits of every length under every code.
    fn candidates() -> Vec<(u16, String)> {
        let mut out = Vec::new();
        let mut digits = Digits(0x9e37_79b9_7f4a_7c15);
        for meta in DATABASE.iter() {
            let code = meta.country_code();
            let d = meta.descriptors();
            let all = [
                Some(d.general()),
                d.fixed_line(),
                d.mobile(),
                d.toll_free(),
                d.premium_rate(),
                d.shared_cost(),
                d.personal_number(),
                d.voip(),
                d.pager(),
                d.uan(),
                d.voicemail(),
            ];
            for example in all.into_iter().flatten().filter_map(|d| d.example()) {
                out.push((code, example.to_owned()));
                // Examples with their last one to three digits replaced are mostly valid too.
                for tail in [1, 2, 3, 3] {
                    let keep = example.len().saturating_sub(tail);
                    out.push((code, format!("{}{}", &example[..keep], digits.string(tail))));
                }
                out.push((code, example[..example.len() - 1].to_owned()));
                out.push((code, format!("{example}{}", digits.next() % 10)));
            }
            for len in 4..=13 {
                for _ in 0..3 {
                    out.push((code, digits.string(len)));
                }
            }
        }
        out
    }

    #[test]
    fn validity_and_region_agree_with_the_phonenumber_crate_on_every_calling_code() {
        let mut compared = 0;
        let mut valid = 0;
        for (code, national) in candidates() {
            let Ok(number) = phonenumber::parse(None, format!("+{code}{national}")) else {
                continue;
            };
            let national = number.national().to_string();
            let ours = check(number.code().value(), &national).map(|r| r.map(str::to_owned));
            let theirs = by_the_crate(&number);
            let code = number.code().value();
            assert_eq!(ours.is_some(), theirs.is_some(), "+{code} {national}");
            // The crate finds the region from the national number without its leading zeros
            // (Italian numbers), unlike its own validity check and libphonenumber; there the
            // region here is the one of the digits as dialled (see the test below).
            if !national.starts_with('0') {
                assert_eq!(ours, theirs, "+{code} {national}");
            }
            compared += 1;
            valid += usize::from(ours.is_some());
        }
        // Both kinds must be well represented, or the comparison proves little.
        assert!(compared > 10_000, "only {compared} numbers compared");
        assert!(valid > 3_000, "only {valid} valid numbers among {compared}");
        assert!(
            compared - valid > 3_000,
            "only {} invalid",
            compared - valid
        );
    }

    #[test]
    fn number_types_agree_with_the_phonenumber_crate_on_every_calling_code() {
        let mut seen = std::collections::HashMap::new();
        for (code, national) in candidates() {
            let Ok(number) = phonenumber::parse(None, format!("+{code}{national}")) else {
                continue;
            };
            if !phonenumber::is_valid(&number) {
                continue;
            }
            let national = number.national().to_string();
            // As above: the crate finds a leading zero's region differently.
            if national.starts_with('0') {
                continue;
            }
            let digits = format!("{}{national}", number.code().value());
            let theirs = format!("{:?}", number.number_type(&DATABASE));
            let ours = number_type(&digits).map(|t| format!("{t:?}"));
            assert_eq!(ours.as_deref(), Some(theirs.as_str()), "+{digits}");
            *seen.entry(theirs).or_insert(0) += 1;
        }
        // The types the destination rules act on must each be compared on many numbers.
        for kind in [
            "Mobile",
            "FixedLine",
            "FixedLineOrMobile",
            "PremiumRate",
            "TollFree",
            "SharedCost",
            "Voip",
        ] {
            let n = seen.get(kind).copied().unwrap_or(0);
            assert!(n >= 20, "only {n} {kind} numbers compared: {seen:?}");
        }
        for kind in ["Pager", "Uan", "Voicemail"] {
            assert!(
                seen.contains_key(kind),
                "no {kind} number compared: {seen:?}"
            );
        }
    }

    #[test]
    fn a_number_has_the_type_its_plan_gives_it() {
        assert_eq!(number_type("447700123456"), Some(NumberType::Mobile));
        assert_eq!(number_type("442079460123"), Some(NumberType::FixedLine));
        assert_eq!(
            number_type("12015550123"),
            Some(NumberType::FixedLineOrMobile)
        );
        assert_eq!(number_type("449098790123"), Some(NumberType::PremiumRate));
        assert_eq!(number_type("447700900123"), None, "not valid");
        assert_eq!(number_type(""), None);
        for t in NumberType::ALL {
            assert_eq!(NumberType::from_name(t.name()), Some(t));
        }
    }

    /// The slow path as `PhoneNumber::parse` takes it: the crate's parser, then `check`.
    fn through_the_crate(raw: &str) -> Option<(String, Option<&'static str>)> {
        let number = phonenumber::parse(None, format!("+{raw}")).ok()?;
        let region = check(number.code().value(), &number.national().to_string())?;
        let e164 = number.format().mode(phonenumber::Mode::E164).to_string();
        Some((e164.trim_start_matches('+').to_owned(), region))
    }

    #[test]
    fn plain_international_digits_give_what_the_crate_gives_whenever_they_give_anything() {
        let (mut answered, mut valid) = (0, 0);
        for (code, national) in candidates() {
            let raw = format!("{code}{national}");
            let slow = through_the_crate(&raw);
            valid += usize::from(slow.is_some());
            if let Some(fast) = plain_international(&raw) {
                assert_eq!(Some(&fast), slow.as_ref(), "+{raw}");
                assert_eq!(plain_international(&format!("+{raw}")), Some(fast));
                answered += 1;
            }
        }
        // The fast path must answer most valid numbers, or it saves nothing.
        assert!(valid > 3_000, "only {valid} valid numbers");
        assert!(
            answered * 10 > valid * 7,
            "answered {answered} of {valid} valid numbers"
        );
    }

    #[test]
    fn anything_but_plain_digits_is_left_to_the_crate() {
        assert_eq!(
            plain_international("12015550123"),
            Some(("12015550123".to_owned(), Some("US")))
        );
        for raw in ["447911123456", "+393123456789", "390612345678"] {
            let fast = plain_international(raw);
            assert!(fast.is_some(), "{raw}");
            assert_eq!(
                fast,
                through_the_crate(raw.trim_start_matches('+')),
                "{raw}"
            );
        }
        for raw in [
            "+1 201 555 0123",
            "1-201-555-0123",
            "tel:+12015550123",
            "12015550123 ext. 5",
            "",
            "+",
            "44",
            // A national prefix after the code: the crate strips it.
            "4407911123456",
            // Not valid (too short; Ofcom's range for drama): the crate decides.
            "12015550",
            "447700900123",
        ] {
            assert_eq!(plain_international(raw), None, "{raw:?}");
        }
    }

    #[test]
    fn a_code_without_a_plan_is_invalid() {
        assert_eq!(check(999, "123456789"), None);
        assert_eq!(check(0, "123456789"), None);
        assert_eq!(check(1000, "123456789"), None);
    }

    #[test]
    fn a_number_of_a_shared_code_gets_the_region_of_its_leading_digits() {
        assert_eq!(check(1, "2015550123"), Some(Some("US")));
        assert_eq!(check(1, "4165550123"), Some(Some("CA")));
        assert_eq!(check(44, "7700123456"), Some(Some("GB")));
        assert_eq!(check(800, "12345678"), Some(None));
    }

    #[test]
    fn an_italian_number_keeps_its_leading_zero_when_its_region_is_found() {
        // Rome, and the Vatican's numbers inside Rome's range.
        assert_eq!(check(39, "0612345678"), Some(Some("IT")));
        assert_eq!(check(39, "0669812345"), Some(Some("VA")));
        assert_eq!(check(39, "3123456789"), Some(Some("IT")));
    }
}
