//! The providers' language codes (BCP 47, `en-GB`) for verifyd's locales (`en-gb`).

/// `locale` as a provider's speech engine names the language.
pub fn bcp47(locale: &str) -> String {
    match locale {
        // Vonage's own tags for Modern Standard Arabic and Estonian.
        "ar-xa" => "ar".to_owned(),
        "ee-et" => "et-EE".to_owned(),
        _ => match locale.split_once('-') {
            Some((language, region)) => format!("{language}-{}", region.to_ascii_uppercase()),
            None => locale.to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locales_become_language_and_upper_case_region() {
        assert_eq!(bcp47("en-gb"), "en-GB");
        assert_eq!(bcp47("yue-cn"), "yue-CN");
        assert_eq!(bcp47("fil-ph"), "fil-PH");
        assert_eq!(bcp47("ar-xa"), "ar");
        assert_eq!(bcp47("ee-et"), "et-EE");
    }
}
