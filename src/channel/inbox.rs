//! The development channel: every SMS and call lands in an inbox that a person reads at
//! `GET /inbox`, and tests read at `GET /inbox/messages`. Nothing leaves the machine.
//!
//! The channel keeps its messages through [`InboxLog`]; the server's store engine implements it
//! (so the inbox survives restarts and is shared by nodes), but the channel sees nothing else.
//! The stored message is also the record of the delivery: the inbox keeps no other.

use std::sync::Arc;

use async_trait::async_trait;

use super::{Accepted, Channel, Failure, Outgoing, SendError};
use crate::config::delivery::INBOX;

/// One message as the inbox keeps it. It holds the PIN in clear, so `Debug` leaves the text out.
#[derive(Clone, PartialEq, Eq, serde::Serialize)]
pub struct InboxMessage {
    pub id: String,
    /// `sms` or `voice`.
    pub channel: String,
    pub to: String,
    pub from: String,
    pub text: String,
    pub locale: String,
    pub request_id: String,
    pub created_at: String,
}

impl std::fmt::Debug for InboxMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboxMessage")
            .field("id", &self.id)
            .field("channel", &self.channel)
            .field("request_id", &self.request_id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("inbox log: {0}")]
pub struct InboxLogError(pub String);

/// Where the inbox keeps its messages. Appending an id twice keeps one copy, so a delivery
/// retried after a crash shows once; a message whose verification has ended is not kept.
#[async_trait]
pub trait InboxLog: Send + Sync + 'static {
    async fn append(&self, message: InboxMessage) -> Result<(), InboxLogError>;
    /// Newest first; only messages to `to` when given.
    async fn list(
        &self,
        to: Option<&str>,
        limit: usize,
    ) -> Result<Vec<InboxMessage>, InboxLogError>;
    /// The messages of one verification, oldest first.
    async fn of_request(&self, request_id: &str) -> Result<Vec<InboxMessage>, InboxLogError>;
}

pub struct InboxChannel {
    log: Arc<dyn InboxLog>,
}

impl InboxChannel {
    pub fn new(log: Arc<dyn InboxLog>) -> Self {
        Self { log }
    }
}

#[async_trait]
impl Channel for InboxChannel {
    fn name(&self) -> &str {
        INBOX
    }

    async fn send(&self, m: &Outgoing) -> Result<Accepted, SendError> {
        let message = InboxMessage {
            id: m.id.as_str().to_owned(),
            channel: m.kind.as_str().to_owned(),
            to: m.to.key().to_owned(),
            from: m.from.clone(),
            text: m.text.clone(),
            locale: m.locale.clone(),
            request_id: m.request_id.as_str().to_owned(),
            created_at: m
                .created_at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        };
        // Storage failures pass (disk space returns, a lock clears): retry.
        self.log
            .append(message)
            .await
            .map_err(|e| SendError::Temporary(Failure::new("store", e.to_string())))?;
        Ok(Accepted {
            message_id: m.id.as_str().to_owned(),
            delivered: true,
        })
    }
}
