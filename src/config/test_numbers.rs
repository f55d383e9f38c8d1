//! `[test_numbers]` of the configuration file: numbers with a fixed code that never send
//! anything (docs/configuration.md, "Test numbers").

use std::collections::BTreeMap;

use serde::Deserialize;

use super::file::Problem;
use crate::domain::test_numbers::TestNumbers;
use crate::domain::{CustomPin, PhoneNumber};

/// Each number (international digits, `+` allowed) with its code.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(transparent)]
pub struct TestNumbersFile(BTreeMap<String, String>);

impl TestNumbersFile {
    pub fn test_numbers(&self) -> Result<TestNumbers, Problem> {
        let mut codes = BTreeMap::new();
        for (raw, code) in &self.0 {
            let key = format!("test_numbers.{raw:?}");
            let number = PhoneNumber::parse(raw, None).map_err(|_| {
                Problem::new(
                    &key,
                    "not a valid international number; write its digits with the country code, \
                     e.g. \"447700123456\"",
                )
            })?;
            let digits_only = code.bytes().all(|b| b.is_ascii_digit());
            let pin = CustomPin::parse(code)
                .filter(|_| digits_only)
                .ok_or_else(|| Problem::new(&key, "the code must be 4 to 10 digits"))?;
            if codes.insert(number.digits().to_owned(), pin).is_some() {
                return Err(Problem::new(
                    key,
                    format!("{} is listed twice", number.digits()),
                ));
            }
        }
        Ok(TestNumbers::new(codes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<TestNumbers, String> {
        let table: BTreeMap<String, String> = toml::from_str(text).unwrap();
        TestNumbersFile(table)
            .test_numbers()
            .map_err(|p| format!("{}: {}", p.key, p.problem))
    }

    #[test]
    fn numbers_are_kept_as_digits_with_their_codes() {
        let numbers = parse("\"+447700123456\" = \"123456\"\n\"447700123457\" = \"0042\"").unwrap();
        let listed: Vec<&str> = numbers.numbers().collect();
        assert_eq!(listed, ["447700123456", "447700123457"]);
    }

    #[test]
    fn a_bad_number_a_bad_code_or_a_number_twice_is_refused_with_its_key() {
        let e = parse("\"12\" = \"123456\"").unwrap_err();
        assert!(
            e.contains("test_numbers.\"12\"") && e.contains("international"),
            "{e}"
        );
        for code in ["123", "12345678901", "12ab", ""] {
            let e = parse(&format!("\"447700123456\" = \"{code}\"")).unwrap_err();
            assert!(e.contains("4 to 10 digits"), "{code}: {e}");
        }
        let e = parse("\"+447700123456\" = \"1234\"\n\"447700123456\" = \"5678\"").unwrap_err();
        assert!(e.contains("listed twice"), "{e}");
    }
}
