//! The development channel: every SMS and call lands in an inbox that a person reads at
//! `GET /inbox`, and tests read at `GET /inbox/messages`. Nothing leaves the machine.

use std::sync::Arc;

use async_trait::async_trait;

use super::{ChannelError, DeliveryChannel, OutgoingMessage};
use crate::domain::EventKind;
use crate::store::{InboxLog, InboxMessage, StoreError};

pub struct InboxChannel {
    log: Arc<dyn InboxLog>,
}

impl InboxChannel {
    pub fn new(log: Arc<dyn InboxLog>) -> Self {
        Self { log }
    }
}

#[async_trait]
impl DeliveryChannel for InboxChannel {
    fn name(&self) -> &'static str {
        "inbox"
    }

    fn handles(&self, _: EventKind) -> bool {
        true
    }

    async fn send(&self, m: &OutgoingMessage) -> Result<(), ChannelError> {
        let message = InboxMessage {
            id: m.id.as_str().to_owned(),
            channel: match m.kind {
                EventKind::Sms => "sms",
                EventKind::Tts => "voice",
            }
            .to_owned(),
            to: m.to.digits().to_owned(),
            from: m.from.clone(),
            text: m.text.clone(),
            locale: m.locale.clone(),
            request_id: m.request_id.as_str().to_owned(),
            created_at: m
                .created_at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        };
        self.log.append(message).await.map_err(|e| match e {
            StoreError::Corrupt(e) => ChannelError::Rejected(e),
            other => ChannelError::Transient(other.to_string()),
        })
    }
}
