//! A deterministic [`Minter`] for tests of the state machine and of store engines. Not used by
//! the server.

use super::types::{CodeLength, EventId, RequestId};
use super::verification::{IssuedPin, Minter};

/// Issues PINs `0001`, `0002`, … (zero-padded to the code length), "sealed" as their own bytes
/// and hashed with [`SequenceMinter::hash`], so a test can tell which PIN an event carried.
#[derive(Debug, Default)]
pub struct SequenceMinter {
    pub pins: u32,
    pub events: u64,
}

impl SequenceMinter {
    pub fn new() -> Self {
        Self::default()
    }

    /// The stand-in hash of `code`: its bytes, zero-padded.
    pub fn hash(code: &str) -> [u8; 32] {
        let mut h = [0u8; 32];
        for (i, b) in code.bytes().take(32).enumerate() {
            h[i] = b;
        }
        h
    }
}

impl Minter for SequenceMinter {
    fn pin(&mut self, _: &RequestId, length: CodeLength) -> IssuedPin {
        self.pins += 1;
        let code = format!("{:0width$}", self.pins, width = usize::from(length.get()));
        IssuedPin {
            hash: Self::hash(&code),
            sealed: code.into_bytes(),
        }
    }

    fn event_id(&mut self) -> EventId {
        self.events += 1;
        EventId::from_bytes(self.events.to_be_bytes())
    }
}
