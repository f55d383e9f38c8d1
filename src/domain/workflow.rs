//! The seven Verify v1 workflows and their default timings (docs/workflows.md has the table and
//! its source).

use serde::{Deserialize, Serialize};

/// What one workflow event does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Sms,
    Tts,
}

impl EventKind {
    /// The name search reports in `events[].type`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Sms => "sms",
            EventKind::Tts => "tts",
        }
    }
}

/// A workflow id, 1–7.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workflow(u8);

use EventKind::{Sms, Tts};

/// Events of each workflow and the default wait, in seconds, before each event after the first.
/// The time the last PIN stays valid comes from `pin_expiry`, not from this table.
const WORKFLOWS: [(&[EventKind], &[u32]); 7] = [
    (&[Sms, Tts, Tts], &[125, 180]),
    (&[Sms, Sms, Tts], &[125, 180]),
    (&[Tts, Tts], &[150]),
    (&[Sms, Sms], &[120]),
    (&[Sms, Tts], &[120]),
    (&[Sms], &[]),
    (&[Tts], &[]),
];

impl Workflow {
    pub const DEFAULT: Workflow = Workflow(1);

    pub fn parse(id: i64) -> Option<Self> {
        (1..=7).contains(&id).then_some(Self(id as u8))
    }

    pub fn id(self) -> u8 {
        self.0
    }

    pub fn events(self) -> &'static [EventKind] {
        WORKFLOWS[usize::from(self.0 - 1)].0
    }

    /// The default wait before event `index` (1-based position after the first event).
    pub fn default_wait_before(self, index: usize) -> Option<u32> {
        index
            .checked_sub(1)
            .and_then(|i| WORKFLOWS[usize::from(self.0 - 1)].1.get(i).copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_workflow_has_one_wait_between_each_pair_of_events() {
        for id in 1..=7 {
            let wf = Workflow::parse(id).unwrap();
            let n = wf.events().len();
            for i in 1..n {
                assert!(
                    wf.default_wait_before(i).is_some(),
                    "workflow {id} event {i}"
                );
            }
            assert_eq!(wf.default_wait_before(n), None, "workflow {id}");
        }
    }

    #[test]
    fn workflow_ids_outside_1_to_7_are_refused() {
        assert!(Workflow::parse(0).is_none());
        assert!(Workflow::parse(8).is_none());
    }
}
