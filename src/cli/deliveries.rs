//! `verifyd deliveries REQUEST_ID`: every try to deliver a verification's events, one JSON
//! object per line, oldest first. Without a configuration file the inbox keeps no separate
//! record: its stored message is the record of its delivery (and leaves with the verification's
//! end).

use anyhow::Context;

use crate::domain::{Instant, RequestId};
use crate::store::Store;

fn time(t: Instant) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A request_id as the API gives it: 32 lowercase hex, or a Verify v2 UUID.
pub fn parse_request_id(raw: &str) -> Option<RequestId> {
    RequestId::from_hex(raw).or_else(|| {
        uuid::Uuid::parse_str(raw)
            .ok()
            .map(|u| RequestId::from_bytes(u.into_bytes()))
    })
}

pub async fn print(store: &dyn Store, request_id: &str) -> anyhow::Result<()> {
    let id = parse_request_id(request_id).with_context(|| {
        format!("{request_id:?} is not a request_id (32 lowercase hex, or a Verify v2 UUID)")
    })?;
    for (_, line) in records(store, &id).await? {
        println!("{line}");
    }
    Ok(())
}

/// Every try of the verification `id`, oldest first, with its start time: the delivery log's,
/// and the inbox's messages that the log does not hold.
pub async fn records(
    store: &dyn Store,
    id: &RequestId,
) -> anyhow::Result<Vec<(Instant, serde_json::Value)>> {
    let mut lines: Vec<(Instant, serde_json::Value)> = Vec::new();
    let attempts = store.attempts(id).await?;
    let recorded: std::collections::HashSet<(String, String)> = attempts
        .iter()
        .map(|a| (a.event_id.clone(), a.channel.clone()))
        .collect();
    for a in attempts {
        let error = match (&a.error_code, &a.error_text) {
            (None, None) => serde_json::Value::Null,
            (code, text) => format!(
                "{}: {}",
                code.as_deref().unwrap_or(""),
                text.as_deref().unwrap_or("")
            )
            .into(),
        };
        lines.push((
            a.created_at,
            serde_json::json!({
                "event_id": a.event_id,
                "kind": a.kind,
                "channel": a.channel,
                "route": a.route,
                "message_id": a.message_id,
                "state": a.state.as_str(),
                "error": error,
                "created_at": time(a.created_at),
                "updated_at": time(a.updated_at),
            }),
        ));
    }
    let inbox = crate::config::delivery::INBOX;
    for m in store
        .of_request(id.as_str())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .into_iter()
        .filter(|m| !recorded.contains(&(m.id.clone(), inbox.to_owned())))
    {
        let at = chrono::DateTime::parse_from_rfc3339(&m.created_at)
            .map(|t| t.with_timezone(&chrono::Utc))
            .unwrap_or_default();
        lines.push((
            at,
            serde_json::json!({
                "event_id": m.id,
                "kind": m.channel,
                "channel": inbox,
                "route": null,
                "message_id": m.id,
                "state": "delivered",
                "error": null,
                "created_at": m.created_at,
                "updated_at": m.created_at,
            }),
        ));
    }
    lines.sort_by_key(|(at, _)| *at);
    Ok(lines)
}
