//! `GET /v2/verify/{id}`: a request's state and its steps. Vonage has no such call (state comes
//! only from callbacks); its users ask for one, so verifyd answers in the words of the callbacks.

use serde_json::{json, Value};

use super::uuid_of;
use crate::domain::{Channel, Instant, Purpose, Status, Verification};
use crate::service::Report;

pub(super) fn time(t: Instant) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub(super) fn status(s: Status) -> &'static str {
    match s {
        Status::InProgress => "in_progress",
        Status::Success => "completed",
        Status::Failed => "failed",
        Status::Expired => "expired",
        Status::Cancelled => "cancelled",
    }
}

pub(super) fn channel(c: Channel) -> &'static str {
    match c {
        Channel::Sms => "sms",
        Channel::Voice => "voice",
        Channel::Email => "email",
        Channel::WhatsApp => "whatsapp",
    }
}

/// Where step `index` of `v` stands when the request's status is `now`. A step before the last
/// one started gave way to the next: as a callback says it, it expired. The last one started
/// shares the request's end.
pub(super) fn step_status(v: &Verification, index: usize, now: Status) -> &'static str {
    let started = v.events.len();
    match index {
        i if i >= started => "unused",
        i if i + 1 < started => "expired",
        _ => status(now),
    }
}

pub fn json(r: &Report) -> Value {
    let v = &r.verification;
    let workflow: Vec<Value> = v
        .steps
        .iter()
        .enumerate()
        .map(|(i, step)| {
            json!({
                "channel": channel(step.channel),
                "to": step.to.key(),
                "initiated_at": v.events.get(i).map(|e| time(e.at)),
                "status": step_status(v, i, r.status),
            })
        })
        .collect();
    let checks: Vec<Value> = v
        .checks
        .iter()
        .map(|c| json!({ "date": time(c.at), "status": if c.valid { "valid" } else { "invalid" } }))
        .collect();
    let brand = match &v.purpose {
        Purpose::Brand { brand } => brand.as_str(),
        Purpose::Payment { payee, .. } => payee.as_str(),
    };
    json!({
        "request_id": uuid_of(&v.id),
        "status": status(r.status),
        "brand": brand,
        "client_ref": v.reference,
        "locale": v.locale.as_str(),
        "code_length": v.policy.code_length.get(),
        "submitted_at": time(v.submitted_at),
        "finalized_at": r.finalized_at.map(time),
        "workflow": workflow,
        "checks": checks,
    })
}
