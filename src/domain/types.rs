//! Value types parsed once at the edge. Each has a private field and one fallible constructor.

use std::fmt;

/// A verification's identifier: 16 random bytes (the minter puts the time first). Each surface
/// shows them its own way (Verify v1 as hex, v2 as a UUID); the store keys rows by their 32
/// lowercase hex digits, which is how this value keeps them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RequestId(String);

impl RequestId {
    /// Accepts only 32 lowercase hex digits, so lookups never see other strings.
    pub fn from_hex(raw: &str) -> Option<Self> {
        let ok = raw.len() == 32 && raw.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        ok.then(|| Self(raw.to_owned()))
    }

    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(hex::encode(bytes))
    }

    pub fn bytes(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        hex::decode_to_slice(&self.0, &mut out).expect("32 hex digits");
        out
    }

    /// The 32 hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A delivery event's identifier (one SMS or one call), as search and check report it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EventId(String);

impl EventId {
    pub fn from_bytes(bytes: [u8; 8]) -> Self {
        Self(hex::encode_upper(bytes))
    }

    pub fn from_stored(raw: String) -> Self {
        Self(raw)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An ISO 3166 alpha-2 country known to the number plan (`country` parameter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Country(phonenumber::country::Id);

impl Country {
    pub fn parse(raw: &str) -> Option<Self> {
        if raw.len() != 2 || !raw.bytes().all(|b| b.is_ascii_alphabetic()) {
            return None;
        }
        raw.to_ascii_uppercase().parse().ok().map(Country)
    }
}

/// A phone number in E.164, stored without the leading `+` as the Verify API writes it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PhoneNumber {
    digits: String,
    /// ISO 3166 alpha-2 region of the number, upper case, when the number plan names one.
    region: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid phone number")]
pub struct InvalidPhoneNumber;

impl PhoneNumber {
    /// Parses `raw` as an international number (with or without `+`), or as a national number of
    /// `country` when one is given. Validity is decided by libphonenumber's metadata.
    pub fn parse(raw: &str, country: Option<Country>) -> Result<Self, InvalidPhoneNumber> {
        let raw = raw.trim();
        if raw.is_empty() || raw.len() > 32 {
            return Err(InvalidPhoneNumber);
        }
        let region = country.map(|c| c.0);
        if region.is_none() {
            // Plain digits, the usual input: the same answer as below without the crate's
            // parser whenever it gives one (`numbering::plain_international`).
            if let Some((digits, region)) = super::numbering::plain_international(raw) {
                return Ok(Self {
                    digits,
                    region: region.map(str::to_owned),
                });
            }
        }
        let international = if raw.starts_with('+') {
            raw.to_owned()
        } else {
            format!("+{raw}")
        };
        // With a country the number may be national ("07700 123456"); the API also sends
        // international numbers without "+" alongside a country, so both readings are tried.
        let candidates: Vec<(Option<phonenumber::country::Id>, &str)> = match region {
            Some(r) => vec![(Some(r), raw), (None, international.as_str())],
            None => vec![(None, international.as_str())],
        };
        for (region, text) in candidates {
            let Ok(number) = phonenumber::parse(region, text) else {
                continue;
            };
            let national = number.national().to_string();
            if let Some(region) = super::numbering::check(number.code().value(), &national) {
                let e164 = number.format().mode(phonenumber::Mode::E164).to_string();
                let digits = e164.trim_start_matches('+').to_owned();
                return Ok(Self {
                    digits,
                    region: region.map(str::to_owned),
                });
            }
        }
        Err(InvalidPhoneNumber)
    }

    /// Rebuilds a number that was parsed before (read back from the store).
    pub fn from_stored(digits: String, region: Option<String>) -> Self {
        Self { digits, region }
    }

    /// E.164 digits without `+`.
    pub fn digits(&self) -> &str {
        &self.digits
    }

    pub fn region(&self) -> Option<&str> {
        self.region.as_deref()
    }

    /// A form safe for logs: country code and the last two digits only.
    pub fn masked(&self) -> String {
        mask_digits(&self.digits)
    }
}

/// An e-mail address as RFC 5322 allows it in a mailbox (checked by the `email_address` crate),
/// at most 254 characters, without a display name; kept as written.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(raw: &str) -> Option<Self> {
        let raw = raw.trim();
        let valid = raw.len() <= 254
            && raw.bytes().all(|b| b.is_ascii_graphic())
            && email_address::EmailAddress::parse_with_options(
                raw,
                email_address::Options::default().without_display_text(),
            )
            .is_ok();
        // Domains are case-insensitive; the local part is the receiving server's to read.
        let (local, domain) = raw.rsplit_once('@')?;
        valid.then(|| Self(format!("{local}@{}", domain.to_ascii_lowercase())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A form safe for logs: the first character of the local part and the domain.
    pub fn masked(&self) -> String {
        match self.0.split_once('@') {
            Some((local, domain)) => {
                format!("{}***@{domain}", local.chars().next().unwrap_or('*'))
            }
            None => "***".into(),
        }
    }
}

/// Masks all but the first two and last two characters; used for any number that reaches a log.
pub fn mask_digits(digits: &str) -> String {
    let n = digits.chars().count();
    if n <= 4 {
        return "*".repeat(n);
    }
    digits
        .chars()
        .enumerate()
        .map(|(i, c)| if i < 2 || i >= n - 2 { c } else { '*' })
        .collect()
}

/// Length of generated PINs: 4 to 10 digits (each surface may allow fewer lengths).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodeLength(u8);

impl CodeLength {
    pub const DEFAULT: CodeLength = CodeLength(4);

    pub fn new(n: i64) -> Option<Self> {
        (4..=10).contains(&n).then_some(Self(n as u8))
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

/// Whether `raw` has the shape of a code: 4–10 ASCII letters, digits and hyphens, with at least
/// one letter or digit (the API's own example is `AKFG-3424`).
fn is_code(raw: &str) -> bool {
    (4..=10).contains(&raw.len())
        && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && raw.bytes().any(|b| b.is_ascii_alphanumeric())
}

/// A PIN chosen by the API caller (`pin_code`), shaped as [`is_code`] says.
#[derive(Clone, PartialEq, Eq)]
pub struct CustomPin(String);

impl CustomPin {
    pub fn parse(raw: &str) -> Option<Self> {
        is_code(raw).then(|| Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for CustomPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CustomPin(***)")
    }
}

/// A code typed by the user on check, shaped as a custom PIN may be (they reach 10 characters).
#[derive(Clone, PartialEq, Eq)]
pub struct Candidate(String);

impl Candidate {
    pub fn parse(raw: &str) -> Option<Self> {
        is_code(raw).then(|| Self(raw.to_owned()))
    }

    /// Whatever 4 to 10 characters a caller typed, as v2 takes a code: one that no PIN can
    /// be is compared like any other and is a wrong code.
    pub fn typed(raw: &str) -> Option<Self> {
        (4..=10)
            .contains(&raw.chars().count())
            .then(|| Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Candidate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Candidate(***)")
    }
}

/// A money amount in 1e-8 units of the configured currency, printed the way the Verify API prints
/// prices (`"0.10000000"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Price(u64);

impl Price {
    pub const ZERO: Price = Price(0);
    const SCALE: u64 = 100_000_000;

    /// Parses a non-negative decimal with up to 8 fractional digits.
    pub fn parse(raw: &str) -> Option<Self> {
        let (int, frac) = raw.split_once('.').unwrap_or((raw, ""));
        if int.is_empty() || frac.len() > 8 || !int.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let int: u64 = int.parse().ok()?;
        let frac_units: u64 = if frac.is_empty() {
            0
        } else {
            frac.parse::<u64>().ok()? * 10u64.pow(8 - frac.len() as u32)
        };
        int.checked_mul(Self::SCALE)?
            .checked_add(frac_units)
            .map(Self)
    }

    pub fn times(self, n: u64) -> Price {
        Price(self.0.saturating_mul(n))
    }

    pub fn plus(self, other: Price) -> Price {
        Price(self.0.saturating_add(other.0))
    }
}

impl fmt::Display for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:08}", self.0 / Self::SCALE, self.0 % Self::SCALE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_international_number_without_plus_is_accepted_and_normalised() {
        let n = PhoneNumber::parse("447700123456", None).unwrap();
        assert_eq!(n.digits(), "447700123456");
        assert_eq!(n.region(), Some("GB"));
    }

    #[test]
    fn a_national_number_is_accepted_with_its_country() {
        let n = PhoneNumber::parse("07700 123456", Country::parse("gb")).unwrap();
        assert_eq!(n.digits(), "447700123456");
        let n = PhoneNumber::parse("447700123456", Country::parse("GB")).unwrap();
        assert_eq!(n.digits(), "447700123456");
    }

    #[test]
    fn a_national_number_without_country_is_refused() {
        assert_eq!(
            PhoneNumber::parse("07700123456", None),
            Err(InvalidPhoneNumber)
        );
        assert!(PhoneNumber::parse("12", None).is_err());
        assert!(PhoneNumber::parse("abc", None).is_err());
        assert!(PhoneNumber::parse("", None).is_err());
    }

    #[test]
    fn countries_are_two_letters_known_to_the_number_plan() {
        assert!(Country::parse("gb").is_some());
        assert!(Country::parse("ZZ").is_none());
        assert!(Country::parse("GBR").is_none());
        assert!(Country::parse("1A").is_none());
    }

    #[test]
    fn an_australian_number_knows_its_region() {
        let n = PhoneNumber::parse("61412345678", None).unwrap();
        assert_eq!(n.region(), Some("AU"));
    }

    #[test]
    fn email_addresses_are_plain_mailboxes() {
        let a = EmailAddress::parse(" alice@Example.COM ").unwrap();
        assert_eq!(a.as_str(), "alice@example.com");
        assert_eq!(a.masked(), "a***@example.com");
        for bad in [
            "alice",
            "alice@",
            "@example.com",
            "Alice <alice@example.com>",
            "al ice@example.com",
            "alice@exa\nmple.com",
            "",
        ] {
            assert_eq!(EmailAddress::parse(bad), None, "{bad:?}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert_eq!(EmailAddress::parse(&long), None);
    }

    #[test]
    fn masking_keeps_only_the_ends() {
        assert_eq!(mask_digits("447700900123"), "44********23");
        assert_eq!(mask_digits("123"), "***");
    }

    #[test]
    fn request_ids_are_32_lowercase_hex_digits_of_their_bytes() {
        let id = RequestId::from_hex("abcdef0123456789abcdef0123456789").unwrap();
        assert_eq!(RequestId::from_bytes(id.bytes()), id);
        assert!(RequestId::from_hex("ABCDEF0123456789abcdef0123456789").is_none());
        assert!(RequestId::from_hex("abcdef0123456789abcdef012345678").is_none());
        assert!(RequestId::from_hex("zbcdef0123456789abcdef0123456789").is_none());
    }

    #[test]
    fn prices_parse_and_print_with_eight_decimals() {
        assert_eq!(Price::parse("0.1").unwrap().to_string(), "0.10000000");
        assert_eq!(Price::parse("0").unwrap().to_string(), "0.00000000");
        assert_eq!(
            Price::parse("1.0333").unwrap().times(2).to_string(),
            "2.06660000"
        );
        assert!(Price::parse("-1").is_none());
        assert!(Price::parse("0.123456789").is_none());
        assert!(Price::parse("x").is_none());
    }

    #[test]
    fn pins_and_candidates_are_4_to_10_letters_digits_and_hyphens() {
        assert!(CustomPin::parse("AKFG3424").is_some());
        assert!(
            CustomPin::parse("AKFG-3424").is_some(),
            "the API's own example"
        );
        assert!(Candidate::parse("AKFG-3424").is_some());
        assert!(CustomPin::parse("----").is_none());
        assert!(CustomPin::parse("12 34").is_none());
        assert!(CustomPin::parse("12_34").is_none());
        assert!(CustomPin::parse("123").is_none());
        assert!(CustomPin::parse("12345678901").is_none());
        assert!(Candidate::parse("1234").is_some());
        assert_eq!(
            format!("{:?}", Candidate::parse("1234").unwrap()),
            "Candidate(***)"
        );
    }
}
