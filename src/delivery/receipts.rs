//! Receipts into the delivery log, from wherever they arrive: a gateway's callback
//! (`api/receipts.rs`) or a channel's own connection (an SMSC's deliver_sm).

use std::sync::Arc;

use async_trait::async_trait;

use crate::channel::{NotRecorded, Receipt, ReceiptSink, ReceiptState};
use crate::store::{AttemptError, AttemptState, DeliveryLog, ReceiptApplied, StoreError};

fn state(s: ReceiptState) -> AttemptState {
    match s {
        ReceiptState::Submitted => AttemptState::Submitted,
        ReceiptState::Delivered => AttemptState::Delivered,
        ReceiptState::Undeliverable => AttemptState::Undeliverable,
        ReceiptState::Failed => AttemptState::Failed,
    }
}

/// Applies `receipt` of `channel` to the try it names (or keeps it for the try's acceptance).
pub async fn record(
    log: &dyn DeliveryLog,
    channel: &str,
    receipt: Receipt,
) -> Result<(), StoreError> {
    let error = receipt.error.map(|f| AttemptError {
        code: f.code,
        text: f.text,
    });
    let now = chrono::Utc::now();
    let applied = crate::metrics::timed_store(
        "apply_receipt",
        log.apply_receipt(
            channel,
            &receipt.message_id,
            state(receipt.state),
            error,
            now,
        ),
    )
    .await?;
    tracing::info!(%channel, message_id = %receipt.message_id, state = ?receipt.state, "receipt");
    let shown = match receipt.state {
        ReceiptState::Submitted => "submitted",
        ReceiptState::Delivered => "delivered",
        ReceiptState::Undeliverable => "undeliverable",
        ReceiptState::Failed => "failed",
    };
    metrics::counter!(crate::metrics::RECEIPTS, "channel" => channel.to_owned(), "state" => shown)
        .increment(1);
    if let ReceiptApplied::ToTry(tried_at) = applied {
        let latency = (now - tried_at).num_milliseconds().max(0) as f64 / 1_000.0;
        metrics::histogram!(crate::metrics::RECEIPT_SECONDS, "channel" => channel.to_owned(), "state" => shown)
            .record(latency);
    }
    Ok(())
}

/// The sink channels with their own receipts hand them to.
pub struct StoreReceipts(pub Arc<dyn DeliveryLog>);

#[async_trait]
impl ReceiptSink for StoreReceipts {
    async fn receipt(&self, channel: &str, receipt: Receipt) -> Result<(), NotRecorded> {
        record(self.0.as_ref(), channel, receipt)
            .await
            .map_err(|e| {
                tracing::error!(%channel, error = %e, "could not record a receipt");
                NotRecorded
            })
    }
}
