//! Test numbers: numbers the operator configures with a fixed code (`[test_numbers]`), for app
//! store reviewers and CI pipelines. A verification to them is made and checked like any other,
//! with that code, and nothing is ever sent; no limit counts it and conversion monitoring does
//! not see it.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{CustomPin, Destination};

/// Each test number (its digits, as [`Destination::key`] gives them) with its code.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TestNumbers(Arc<BTreeMap<String, CustomPin>>);

impl TestNumbers {
    pub fn new(codes: BTreeMap<String, CustomPin>) -> Self {
        Self(Arc::new(codes))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, to: &Destination) -> bool {
        to.phone().is_some_and(|n| self.0.contains_key(n.digits()))
    }

    /// The code of a verification that goes to `to`: the first destination's fixed code when
    /// every destination is a test number, else `None` (a real destination makes it a real
    /// verification).
    pub fn code_for<'a>(
        &self,
        mut to: impl Iterator<Item = &'a Destination>,
    ) -> Option<&CustomPin> {
        let first = to.next()?;
        let code = self.0.get(first.phone()?.digits())?;
        to.all(|d| self.contains(d)).then_some(code)
    }

    /// The numbers, without their codes.
    pub fn numbers(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EmailAddress, PhoneNumber};

    fn phone(n: &str) -> Destination {
        Destination::Phone(PhoneNumber::parse(n, None).unwrap())
    }

    fn numbers() -> TestNumbers {
        let mut codes = BTreeMap::new();
        codes.insert("447700123456".into(), CustomPin::parse("123456").unwrap());
        codes.insert("447700123457".into(), CustomPin::parse("0000").unwrap());
        TestNumbers::new(codes)
    }

    #[test]
    fn a_verification_only_to_test_numbers_takes_the_first_ones_code() {
        let (a, b) = (phone("447700123456"), phone("+447700123457"));
        let code = numbers().code_for([&a, &b].into_iter()).cloned();
        assert_eq!(code, CustomPin::parse("123456"));
        let code = numbers().code_for([&b].into_iter()).cloned();
        assert_eq!(code, CustomPin::parse("0000"));
    }

    #[test]
    fn one_real_destination_makes_a_real_verification() {
        let (test, real) = (phone("447700123456"), phone("447700123458"));
        let email = Destination::Email(EmailAddress::parse("a@example.com").unwrap());
        assert_eq!(numbers().code_for([&test, &real].into_iter()), None);
        assert_eq!(numbers().code_for([&real, &test].into_iter()), None);
        assert_eq!(numbers().code_for([&test, &email].into_iter()), None);
        assert_eq!(numbers().code_for(std::iter::empty()), None);
        assert!(!TestNumbers::default().contains(&test));
    }
}
