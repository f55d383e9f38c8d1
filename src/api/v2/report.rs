//! `GET /v2/verify/{id}`: a request's state and its steps. Vonage has no such call (state comes
//! only from callbacks); its users ask for one, so verifyd answers in the words of the callbacks.

use serde_json::{json, Value};

use super::uuid_of;
use crate::domain::{Channel, Instant, Purpose, Status};
use crate::service::Report;

fn time(t: Instant) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn status(s: Status) -> &'static str {
    match s {
        Status::InProgress => "in_progress",
        Status::Success => "completed",
        Status::Failed => "failed",
        Status::Expired => "expired",
        Status::Cancelled => "cancelled",
    }
}

fn channel(c: Channel) -> &'static str {
    match c {
        Channel::Sms => "sms",
        Channel::Voice => "voice",
    }
}

pub fn json(r: &Report) -> Value {
    let v = &r.verification;
    let started = v.events.len();
    let workflow: Vec<Value> = v
        .steps
        .iter()
        .enumerate()
        .map(|(i, step)| {
            // A step before the last one started gave way to the next: as a callback says it,
            // it expired. The last one started shares the request's end.
            let state = match i {
                i if i >= started => "unused",
                i if i + 1 < started => "expired",
                _ => status(r.status),
            };
            json!({
                "channel": channel(step.channel),
                "to": step.to.key(),
                "initiated_at": v.events.get(i).map(|e| time(e.at)),
                "status": state,
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
