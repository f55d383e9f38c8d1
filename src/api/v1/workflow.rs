//! Verify v1's seven workflows, their default timings (docs/workflows.md has the table and its
//! source) and v1's rules for codes and cancelling, as the steps and policy the domain runs.

use crate::domain::locale::Locale;
use crate::domain::{
    CancelWindow, Channel, CodeLength, CodeLife, Destination, NewVerification, PhoneNumber, Policy,
    Purpose, RequestId, Step,
};

/// A workflow id, 1–7.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Workflow(u8);

use Channel::{Sms, Voice};

/// Channels of each workflow and the default wait, in seconds, before each step after the first.
/// How long the last PIN stays valid comes from `pin_expiry`, not from this table.
const WORKFLOWS: [(&[Channel], &[u32]); 7] = [
    (&[Sms, Voice, Voice], &[125, 180]),
    (&[Sms, Sms, Voice], &[125, 180]),
    (&[Voice, Voice], &[150]),
    (&[Sms, Sms], &[120]),
    (&[Sms, Voice], &[120]),
    (&[Sms], &[]),
    (&[Voice], &[]),
];

/// v1's checks per PIN: the third wrong code ends the request.
pub const TRIES_PER_CODE: u8 = 3;
/// v1 refuses cancel this soon after the start, and once the second event has started.
pub const CANCEL_WINDOW: CancelWindow = CancelWindow {
    not_before: 30,
    until_steps: 2,
};
pub const DEFAULT_PIN_EXPIRY_SECS: u32 = 300;
pub const PIN_EXPIRY_RANGE: std::ops::RangeInclusive<i64> = 60..=3600;
pub const NEXT_EVENT_WAIT_RANGE: std::ops::RangeInclusive<i64> = 60..=900;

impl Workflow {
    pub const DEFAULT: Workflow = Workflow(1);

    pub fn parse(id: i64) -> Option<Self> {
        (1..=7).contains(&id).then_some(Self(id as u8))
    }

    pub fn id(self) -> u8 {
        self.0
    }

    pub fn channels(self) -> &'static [Channel] {
        WORKFLOWS[usize::from(self.0 - 1)].0
    }

    /// The default waits between steps.
    fn default_waits(self) -> &'static [u32] {
        WORKFLOWS[usize::from(self.0 - 1)].1
    }

    /// The workflow's steps to `number`, every one showing `sender`. `next_event_wait` replaces
    /// every default wait when given. The last step's wait is unused: v1 codes live `pin_expiry`.
    pub fn steps(
        self,
        number: &PhoneNumber,
        sender: &str,
        next_event_wait: Option<u32>,
    ) -> Vec<Step> {
        let waits = self.default_waits();
        self.channels()
            .iter()
            .enumerate()
            .map(|(i, &channel)| Step {
                channel,
                to: Destination::Phone(number.clone()),
                from: Some(sender.to_owned()),
                app_hash: None,
                new_code: false,
                wait: waits.get(i).map_or(0, |w| next_event_wait.unwrap_or(*w)),
                text: None,
            })
            .collect()
    }
}

impl Workflow {
    /// A request for this workflow with v1's defaults (brand `Acme`, sender `VERIFY`, en-gb,
    /// four digits, PINs of 300 s), as tests and benchmarks start one; its fields can be changed.
    pub fn request(self, id: RequestId, account: &str, number: &str) -> NewVerification {
        let number = PhoneNumber::parse(number, None).expect("a valid number");
        NewVerification {
            id,
            account: account.to_owned(),
            purpose: Purpose::Brand {
                brand: "Acme".into(),
            },
            locale: Locale::from_tag("en-gb").expect("a known locale"),
            steps: self.steps(&number, crate::channel::DEFAULT_SENDER, None),
            policy: policy(CodeLength::DEFAULT, DEFAULT_PIN_EXPIRY_SECS),
            reference: None,
            callback: None,
            client: None,
            custom_pin: None,
        }
    }
}

/// v1's policy for a request with `code_length` and the PIN lifetime [`pin_expiry`] settled.
pub fn policy(code_length: CodeLength, pin_expiry: u32) -> Policy {
    Policy {
        code_length,
        tries_per_code: TRIES_PER_CODE,
        code_life: CodeLife::Fixed(pin_expiry),
        cancel: CANCEL_WINDOW,
        // v1's events come at their times, whatever became of the one before.
        next_on_failure: false,
    }
}

/// The lifetime of each PIN: `pin_expiry` (given or the default 300) when it is a multiple of
/// `next_event_wait`, or else `next_event_wait`. Applying the rule to the default too means a
/// long `next_event_wait` alone never leaves a stretch with no valid PIN. Ranges are checked
/// when the parameters are read.
pub fn pin_expiry(pin_expiry: Option<u32>, next_event_wait: Option<u32>) -> u32 {
    let given = pin_expiry.unwrap_or(DEFAULT_PIN_EXPIRY_SECS);
    match next_event_wait {
        Some(w) if w > 0 && !given.is_multiple_of(w) => w,
        _ => given,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_workflow_has_one_wait_between_each_pair_of_steps() {
        for id in 1..=7 {
            let wf = Workflow::parse(id).unwrap();
            assert_eq!(
                wf.default_waits().len() + 1,
                wf.channels().len(),
                "workflow {id}"
            );
        }
    }

    #[test]
    fn workflow_ids_outside_1_to_7_are_refused() {
        assert!(Workflow::parse(0).is_none());
        assert!(Workflow::parse(8).is_none());
    }

    #[test]
    fn next_event_wait_replaces_every_wait_but_the_unused_last() {
        let number = PhoneNumber::parse("447700123456", None).unwrap();
        let steps = Workflow::DEFAULT.steps(&number, "VERIFY", Some(60));
        let waits: Vec<u32> = steps.iter().map(|s| s.wait).collect();
        assert_eq!(waits, [60, 60, 0]);
        let steps = Workflow::DEFAULT.steps(&number, "VERIFY", None);
        let waits: Vec<u32> = steps.iter().map(|s| s.wait).collect();
        assert_eq!(waits, [125, 180, 0]);
    }

    #[test]
    fn pin_expiry_becomes_the_wait_unless_it_is_a_multiple_of_it() {
        assert_eq!(pin_expiry(None, None), 300);
        assert_eq!(pin_expiry(Some(600), Some(200)), 600);
        assert_eq!(pin_expiry(Some(600), Some(250)), 250);
        assert_eq!(pin_expiry(None, Some(900)), 900);
    }
}
