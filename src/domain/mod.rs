//! The verification domain: pure code, no I/O, no clock. Every function that depends on time takes
//! `now` as an argument, and everything random comes through [`Minter`], so the whole state machine
//! is tested by passing times and deterministic minters.

pub mod destinations;
pub mod fraud;
pub mod limits;
pub mod locale;
pub mod message;
pub mod numbering;
pub mod plain;
pub mod step;
pub mod template;
pub mod test_numbers;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod texts;
pub mod types;
pub mod verification;

pub use step::*;
pub use types::*;
pub use verification::*;
