//! Delivery channels: how a rendered message reaches a phone. A channel is one file behind
//! [`Channel`]: it sends one message at a time and reads its gateway's receipts, and never sees
//! the store or the PIN's lifecycle. Which channel carries a message, and what happens when it
//! fails, is decided in `delivery/`.

/// The sender a message shows when neither its route, its channel nor its request names one.
pub const DEFAULT_SENDER: &str = "VERIFY";

pub mod gsm;
pub mod http;
pub mod inbox;
pub mod language;
pub mod sip;
pub mod smpp;
pub mod smtp;
pub mod test_number;
pub mod twilio;
pub mod twilio_sms;
pub mod twilio_voice;
pub mod vonage_sms;
pub mod vonage_voice;
pub mod webhook;
pub mod whatsapp;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;

use crate::config::delivery::Kind;
use crate::domain::{Destination, EventId, Instant, PhoneNumber, RequestId};

/// One message ready to go out. It holds the PIN in clear, so `Debug` leaves the text out.
#[derive(Clone)]
pub struct Outgoing {
    /// The event's id; a channel can use it to drop duplicates of a retried delivery.
    pub id: EventId,
    pub request_id: RequestId,
    pub kind: Kind,
    pub to: Destination,
    pub from: String,
    pub text: String,
    /// An e-mail's subject and HTML part; the text is its plain part.
    pub email: Option<crate::domain::message::EmailParts>,
    /// The code itself, for a channel whose gateway fills it into a template of its own
    /// (WhatsApp); `None` for every other channel.
    pub code: Option<String>,
    pub locale: String,
    pub created_at: Instant,
    /// What is left of the PIN's life when the message is sent; a gateway that takes a validity
    /// period is given it.
    pub valid_for: Duration,
    /// Where this channel's gateway is to post delivery receipts, when the server has a
    /// `public_url`.
    pub receipt_url: Option<String>,
    /// A call's script in pieces, for channels that render speech themselves.
    pub script: Option<crate::domain::message::Script>,
}

impl Outgoing {
    /// The phone number this goes to; a phone channel given anything else refuses it for good
    /// (a route that sends e-mail to it is a configuration mistake `config check` reports).
    pub fn number(&self) -> Result<&PhoneNumber, SendError> {
        self.to.phone().ok_or_else(|| {
            SendError::Rejected(Failure::new(
                "destination",
                "this channel delivers to phone numbers only",
            ))
        })
    }
}

impl std::fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outgoing")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("to", &self.to.masked())
            .field("request_id", &self.request_id)
            .finish_non_exhaustive()
    }
}

/// A gateway took the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// The gateway's id for the message; receipts name it.
    pub message_id: String,
    /// Already at the phone (the inbox), not only accepted for delivery.
    pub delivered: bool,
}

/// Why a try failed; decides what the router does next.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The gateway refused this message for good (a 4xx, an invalid number): no other channel
    /// and no retry will do better.
    #[error("rejected: {0}")]
    Rejected(Failure),
    /// A failure that may pass (refused connection, 5xx, no answer in time).
    #[error("temporary failure: {0}")]
    Temporary(Failure),
    /// The gateway asked to slow down.
    #[error("throttled for {retry_after:?}: {failure}")]
    Throttled {
        retry_after: Duration,
        failure: Failure,
    },
}

impl SendError {
    pub fn failure(&self) -> &Failure {
        match self {
            SendError::Rejected(f) | SendError::Temporary(f) => f,
            SendError::Throttled { failure, .. } => failure,
        }
    }
}

/// A gateway's (or the transport's) error code and text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// `http-503`, the gateway's own code (`21211`), or `connect`, `timeout`, …
    pub code: String,
    pub text: String,
}

impl Failure {
    pub fn new(code: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            text: text.into(),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.text)
    }
}

/// What a gateway says happened to a message it accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReceiptState {
    /// Still on its way (queued, sent, buffered): nothing changes.
    Submitted,
    Delivered,
    /// The network could not deliver it (a phone off for too long, a number not in service).
    Undeliverable,
    Failed,
}

/// A delivery receipt, read from a gateway's callback.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    pub message_id: String,
    pub state: ReceiptState,
    pub error: Option<Failure>,
}

/// A callback as it reached the server.
#[derive(Clone, Debug)]
pub struct ReceiptRequest {
    /// The full URL the gateway called (the one it was given).
    pub url: String,
    pub headers: axum::http::HeaderMap,
    /// Query string and form body, merged (a gateway may use either).
    pub params: BTreeMap<String, String>,
    pub body: axum::body::Bytes,
}

/// Why a callback is not taken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// Its signature is missing or wrong: 403.
    #[error("bad signature")]
    BadSignature,
    /// It cannot be read: 400.
    #[error("not a receipt: {0}")]
    Malformed(String),
}

/// A receipt that could not be recorded: the gateway is asked to send it again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotRecorded;

/// Where a channel that hears receipts on its own connection (an SMSC's deliver_sm) hands them.
#[async_trait]
pub trait ReceiptSink: Send + Sync + 'static {
    async fn receipt(&self, channel: &str, receipt: Receipt) -> Result<(), NotRecorded>;
}

#[async_trait]
pub trait Channel: Send + Sync + 'static {
    fn name(&self) -> &str;
    /// Sends one message; the caller bounds how long it may take.
    async fn send(&self, message: &Outgoing) -> Result<Accepted, SendError>;
    /// Reads a receipt this channel's gateway posted; `Ok(None)` for a callback that says
    /// nothing about a message (a test ping).
    fn receipt(&self, request: &ReceiptRequest) -> Result<Option<Receipt>, ReceiptError> {
        let _ = request;
        Err(ReceiptError::Malformed(
            "this channel takes no receipts".into(),
        ))
    }

    /// Reads every receipt of one callback (a gateway may put several in one).
    fn receipts(&self, request: &ReceiptRequest) -> Result<Vec<Receipt>, ReceiptError> {
        self.receipt(request).map(|r| r.into_iter().collect())
    }

    /// The answer to a gateway's check of its callback URL (a webhook subscription), when the
    /// request is one.
    fn challenge(&self, request: &ReceiptRequest) -> Option<String> {
        let _ = request;
        None
    }
    /// Lets go of the channel's connections (an SMPP unbind) before the server stops.
    async fn close(&self) {}

    /// Lets go of the channel once a configuration reload left it out and no try uses it any
    /// more: what it still does on its own (a call in progress) may end first.
    async fn retire(&self) {
        self.close().await;
    }

    /// Whether the channel can take a message now, as `/readyz` shows it. A channel without a
    /// connection of its own (an HTTP gateway, reached per message) is ready.
    fn readiness(&self) -> Result<(), String> {
        Ok(())
    }
}
