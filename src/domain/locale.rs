//! Locales the API accepts, and the default locale for a number's country.

/// The 39 values of `lg` for a normal verification.
pub const STANDARD_LOCALES: [&str; 39] = [
    "ar-xa", "cs-cz", "cy-cy", "cy-gb", "da-dk", "de-de", "el-gr", "en-au", "en-gb", "en-in",
    "en-us", "es-es", "es-mx", "es-us", "fi-fi", "fil-ph", "fr-ca", "fr-fr", "hi-in", "hu-hu",
    "id-id", "is-is", "it-it", "ja-jp", "ko-kr", "nb-no", "nl-nl", "pl-pl", "pt-br", "pt-pt",
    "ro-ro", "ru-ru", "sv-se", "th-th", "tr-tr", "vi-vn", "yue-cn", "zh-cn", "zh-tw",
];

/// The values of `lg` for a PSD2 payment confirmation.
pub const PSD2_LOCALES: [&str; 21] = [
    "en-gb", "bg-bg", "cs-cz", "da-dk", "de-de", "ee-et", "el-gr", "es-es", "fi-fi", "fr-fr",
    "ga-ie", "hu-hu", "it-it", "lv-lv", "lt-lt", "mt-mt", "nl-nl", "pl-pl", "sk-sk", "sl-si",
    "sv-se",
];

pub const STANDARD_DEFAULT: &str = "en-us";
pub const PSD2_DEFAULT: &str = "en-gb";

/// A locale verifyd has texts for: one of [`STANDARD_LOCALES`] or [`PSD2_LOCALES`], lower case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Locale(&'static str);

impl Locale {
    /// Any tag of either list (what the store holds), case-insensitively.
    pub fn from_tag(tag: &str) -> Option<Self> {
        let tag = tag.to_ascii_lowercase();
        STANDARD_LOCALES
            .iter()
            .chain(PSD2_LOCALES.iter())
            .find(|t| **t == tag)
            .map(|t| Locale(t))
    }

    pub fn as_str(self) -> &'static str {
        self.0
    }
}

impl std::fmt::Display for Locale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// Which list a locale must come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocaleSet {
    Standard,
    Psd2,
}

impl LocaleSet {
    fn list(self) -> &'static [&'static str] {
        match self {
            LocaleSet::Standard => &STANDARD_LOCALES,
            LocaleSet::Psd2 => &PSD2_LOCALES,
        }
    }

    /// Accepts `lg` case-insensitively, from this set only.
    pub fn parse(self, lg: &str) -> Option<Locale> {
        let lg = lg.to_ascii_lowercase();
        self.list().iter().find(|t| **t == lg).map(|t| Locale(t))
    }

    /// The locale for a number from `region` (ISO alpha-2) when the caller gave no `lg`: the main
    /// language of that country if this set has it, otherwise the set's default.
    pub fn for_region(self, region: Option<&str>) -> Locale {
        let default = match self {
            LocaleSet::Standard => STANDARD_DEFAULT,
            LocaleSet::Psd2 => PSD2_DEFAULT,
        };
        region
            .and_then(|r| {
                REGION_LOCALES
                    .iter()
                    .find(|(regions, tag)| regions.contains(&r) && self.list().contains(tag))
            })
            .map_or(Locale(default), |(_, tag)| Locale(tag))
    }
}

/// Country → locale, first match in the set wins. Countries with several languages get the one
/// most of their mobile users read; callers override with `lg`.
const REGION_LOCALES: &[(&[&str], &str)] = &[
    (
        &[
            "AE", "SA", "EG", "QA", "KW", "BH", "OM", "JO", "LB", "IQ", "SY", "YE", "LY", "DZ",
            "MA", "TN", "SD", "PS",
        ],
        "ar-xa",
    ),
    (&["CZ"], "cs-cz"),
    (&["DK", "GL", "FO"], "da-dk"),
    (&["DE", "AT", "LI"], "de-de"),
    (&["GR", "CY"], "el-gr"),
    (&["AU", "NZ"], "en-au"),
    (&["GB", "IE", "GG", "JE", "IM", "GI", "MT"], "en-gb"),
    (&["IN"], "en-in"),
    (&["US", "CA", "PR"], "en-us"),
    (&["ES", "AD"], "es-es"),
    (
        &[
            "MX", "AR", "CO", "CL", "PE", "VE", "EC", "GT", "CU", "BO", "DO", "HN", "PY", "SV",
            "NI", "CR", "PA", "UY",
        ],
        "es-mx",
    ),
    (&["FI", "AX"], "fi-fi"),
    (&["PH"], "fil-ph"),
    (
        &[
            "FR", "BE", "LU", "MC", "CH", "RE", "GP", "MQ", "GF", "YT", "PF", "NC",
        ],
        "fr-fr",
    ),
    (&["HU"], "hu-hu"),
    (&["ID"], "id-id"),
    (&["IS"], "is-is"),
    (&["IT", "SM", "VA"], "it-it"),
    (&["JP"], "ja-jp"),
    (&["KR"], "ko-kr"),
    (&["NO", "SJ"], "nb-no"),
    (&["NL", "SR", "AW", "CW", "SX", "BQ"], "nl-nl"),
    (&["PL"], "pl-pl"),
    (&["BR"], "pt-br"),
    (&["PT", "AO", "MZ", "CV", "GW", "ST", "TL"], "pt-pt"),
    (&["RO", "MD"], "ro-ro"),
    (&["RU", "BY", "KZ", "KG"], "ru-ru"),
    (&["SE"], "sv-se"),
    (&["TH"], "th-th"),
    (&["TR"], "tr-tr"),
    (&["VN"], "vi-vn"),
    (&["HK", "MO"], "yue-cn"),
    (&["CN"], "zh-cn"),
    (&["TW"], "zh-tw"),
    // Only in the PSD2 list: these countries are in the EU payment area.
    (&["BG"], "bg-bg"),
    (&["EE"], "ee-et"),
    (&["LV"], "lv-lv"),
    (&["LT"], "lt-lt"),
    (&["SK"], "sk-sk"),
    (&["SI"], "sl-si"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::texts::LOCALE_TEXTS;

    #[test]
    fn a_61_number_reads_in_australian_english() {
        assert_eq!(LocaleSet::Standard.for_region(Some("AU")).as_str(), "en-au");
    }

    #[test]
    fn unknown_countries_fall_back_to_the_documented_defaults() {
        assert_eq!(LocaleSet::Standard.for_region(Some("ZZ")).as_str(), "en-us");
        assert_eq!(LocaleSet::Standard.for_region(None).as_str(), "en-us");
        assert_eq!(LocaleSet::Psd2.for_region(Some("JP")).as_str(), "en-gb");
    }

    #[test]
    fn psd2_uses_its_own_list() {
        assert_eq!(LocaleSet::Psd2.for_region(Some("BG")).as_str(), "bg-bg");
        assert_eq!(LocaleSet::Standard.for_region(Some("BG")).as_str(), "en-us");
        assert_eq!(LocaleSet::Psd2.for_region(Some("US")).as_str(), "en-gb");
        assert_eq!(
            LocaleSet::Psd2.parse("GA-IE").map(Locale::as_str),
            Some("ga-ie")
        );
        assert_eq!(LocaleSet::Psd2.parse("en-us"), None);
        assert_eq!(
            LocaleSet::Standard.parse("en-US").map(Locale::as_str),
            Some("en-us")
        );
        assert_eq!(Locale::from_tag("sl-si").map(Locale::as_str), Some("sl-si"));
        assert_eq!(Locale::from_tag("xx-yy"), None);
    }

    #[test]
    fn every_country_mapping_names_a_locale_of_some_list() {
        for (_, tag) in REGION_LOCALES {
            assert!(
                STANDARD_LOCALES.contains(tag) || PSD2_LOCALES.contains(tag),
                "{tag}"
            );
        }
    }

    #[test]
    fn every_accepted_locale_has_texts() {
        for tag in STANDARD_LOCALES.iter().chain(PSD2_LOCALES.iter()) {
            assert!(
                LOCALE_TEXTS.iter().any(|t| t.tag == *tag),
                "no texts for {tag}"
            );
        }
    }
}
