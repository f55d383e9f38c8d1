//! What a verification is made of, whichever surface asked for it: channel steps with their waits,
//! and a policy for codes and cancelling. Each surface builds these from its own parameters (v1's
//! seven workflows are a table in `api/v1/workflow.rs`).

use super::template::TemplateText;
use super::types::{CodeLength, EmailAddress, PhoneNumber};

/// How one step reaches the user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    Sms,
    /// A call that reads the code aloud.
    Voice,
    Email,
    /// A WhatsApp message with the code.
    WhatsApp,
}

impl Channel {
    /// Whether the user can type a code while this step is current. Every channel so far
    /// delivers one; a channel that verifies without a code (a tap, a network check) will not.
    pub fn takes_code(self) -> bool {
        match self {
            Channel::Sms | Channel::Voice | Channel::Email | Channel::WhatsApp => true,
        }
    }
}

/// Where a step delivers.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Destination {
    Phone(PhoneNumber),
    Email(EmailAddress),
}

impl Destination {
    /// The destination as the store indexes it: one verification in progress per account and
    /// destination.
    pub fn key(&self) -> &str {
        match self {
            Destination::Phone(number) => number.digits(),
            Destination::Email(address) => address.as_str(),
        }
    }

    pub fn phone(&self) -> Option<&PhoneNumber> {
        match self {
            Destination::Phone(number) => Some(number),
            Destination::Email(_) => None,
        }
    }

    /// A form safe for logs.
    pub fn masked(&self) -> String {
        match self {
            Destination::Phone(number) => number.masked(),
            Destination::Email(address) => address.masked(),
        }
    }
}

/// One step of a verification: a message on one channel, then a wait.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub channel: Channel,
    pub to: Destination,
    /// The sender the message shows (an SMS sender id); the channel's own when `None`.
    pub from: Option<String>,
    /// An Android app's hash, put at the end of an SMS so the app reads the code itself.
    pub app_hash: Option<String>,
    /// Whether this step sends a new code even when the current one is still valid.
    pub new_code: bool,
    /// Seconds from this step's start to the next step's. For the last step, how long the
    /// verification lasts after it when codes live until the workflow ends ([`CodeLife`]).
    pub wait: u32,
    /// The caller's own words for this step's message (a Verify v2 template fragment chosen
    /// when the verification started); the locale's built-in text when `None`.
    pub text: Option<TemplateText>,
}

/// How long a code is accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeLife {
    /// This many seconds from its issue; a step that starts after it has expired issues a new
    /// one. The verification ends when the code of its last step expires.
    Fixed(u32),
    /// Until the workflow ends: the last step's wait after the last step starts. Moving to a
    /// step sooner brings the end forward with it.
    UntilWorkflowEnds,
}

/// When a verification may be cancelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CancelWindow {
    /// Not before this many seconds after the start.
    pub not_before: u32,
    /// Not once this many steps have started.
    pub until_steps: usize,
}

/// The rules a surface sets for its verifications.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub code_length: CodeLength,
    /// Checks allowed per code; the last wrong one ends the verification.
    pub tries_per_code: u8,
    pub code_life: CodeLife,
    pub cancel: CancelWindow,
    /// Whether a step whose message could not be delivered at all gives way to the next step
    /// at once, instead of at its time.
    pub next_on_failure: bool,
}
