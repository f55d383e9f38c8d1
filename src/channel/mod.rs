//! Delivery channels: how a rendered message reaches a phone. A channel gets one message at a time
//! and never sees the store or the PIN's lifecycle; the scheduler decides what to send and when.

pub mod inbox;

use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::{EventId, EventKind, Instant, PhoneNumber, RequestId};

/// One message ready to go out. It holds the PIN in clear, so `Debug` leaves the text out.
#[derive(Clone)]
pub struct OutgoingMessage {
    /// The event's id; a channel can use it to drop duplicates of a retried delivery.
    pub id: EventId,
    pub kind: EventKind,
    pub to: PhoneNumber,
    pub from: String,
    pub text: String,
    pub locale: String,
    pub request_id: RequestId,
    pub created_at: Instant,
}

impl std::fmt::Debug for OutgoingMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutgoingMessage")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("to", &self.to.masked())
            .field("request_id", &self.request_id)
            .finish_non_exhaustive()
    }
}

/// Why a delivery failed; decides whether it is retried.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The other side refused this message; sending it again will not help.
    #[error("rejected: {0}")]
    Rejected(String),
    /// A failure that may pass (network, storage, a busy peer).
    #[error("temporary failure: {0}")]
    Transient(String),
}

#[async_trait]
pub trait DeliveryChannel: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// Whether this channel delivers SMS, voice, or both.
    fn handles(&self, kind: EventKind) -> bool;
    async fn send(&self, message: &OutgoingMessage) -> Result<(), ChannelError>;
}

/// The configured channels; the first one that handles a kind delivers it.
#[derive(Clone, Default)]
pub struct Channels {
    list: Vec<Arc<dyn DeliveryChannel>>,
}

impl Channels {
    pub fn new(list: Vec<Arc<dyn DeliveryChannel>>) -> Self {
        Self { list }
    }

    pub fn for_kind(&self, kind: EventKind) -> Option<&Arc<dyn DeliveryChannel>> {
        self.list.iter().find(|c| c.handles(kind))
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.list.iter().map(|c| c.name()).collect()
    }
}
