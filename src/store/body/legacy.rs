//! Bodies of format 1: what versions before steps and policies wrote (the v1 domain objects as
//! they were then, in JSON or MessagePack). Every such body was a Verify v1 request, so it turns
//! into the steps and policy v1 builds today from the same workflow, timings and sender.

use serde::Deserialize;

use super::codec::{hex_vec, ms, ms_opt};
use super::{code_length, corrupt, locale, request_id, CheckRecordBody, PhoneRecord, PinRecord};
use crate::api::v1::workflow::{self, Workflow};
use crate::api::v1::DEFAULT_SENDER_ID;
use crate::domain::{
    Channel, DeliveryOrder, Destination, EventId, EventRecord, Instant, Purpose, State, Status,
    Verification,
};
use crate::store::StoreResult;

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub(super) enum Purpose1 {
    Brand { brand: String, sender_id: String },
    Payment { payee: String, amount: String },
}

impl Purpose1 {
    /// The purpose, and the sender every step showed.
    fn split(self) -> (Purpose, String) {
        match self {
            Purpose1::Brand { brand, sender_id } => (Purpose::Brand { brand }, sender_id),
            Purpose1::Payment { payee, amount } => (
                Purpose::Payment { payee, amount },
                DEFAULT_SENDER_ID.to_owned(),
            ),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Kind1 {
    Sms,
    Tts,
}

impl From<Kind1> for Channel {
    fn from(k: Kind1) -> Self {
        match k {
            Kind1::Sms => Channel::Sms,
            Kind1::Tts => Channel::Voice,
        }
    }
}

#[derive(Deserialize)]
pub(super) enum Status1 {
    InProgress,
    Success,
    Failed,
    Expired,
    Cancelled,
}

#[derive(Deserialize)]
pub(super) struct Timing1 {
    next_event_wait: Option<u32>,
    pin_expiry: u32,
}

#[derive(Deserialize)]
pub(super) struct Event1 {
    id: String,
    kind: Kind1,
    #[serde(with = "ms")]
    at: Instant,
}

/// A verification of format 1.
#[derive(Deserialize)]
pub struct Verification1 {
    id: String,
    account: String,
    number: PhoneRecord,
    purpose: Purpose1,
    locale: String,
    code_length: u8,
    workflow: u8,
    timing: Timing1,
    #[serde(with = "ms")]
    submitted_at: Instant,
    status: Status1,
    #[serde(with = "ms_opt", default)]
    finalized_at: Option<Instant>,
    pin: PinRecord,
    events: Vec<Event1>,
    checks: Vec<CheckRecordBody>,
    #[serde(with = "ms_opt", default)]
    next_event_at: Option<Instant>,
}

impl Verification1 {
    pub(super) fn upgrade(self) -> StoreResult<Verification> {
        let workflow = Workflow::parse(i64::from(self.workflow))
            .ok_or_else(|| corrupt("an unknown workflow"))?;
        let (purpose, sender) = self.purpose.split();
        let number = self.number.number();
        Ok(Verification::restore(State {
            id: request_id(&self.id)?,
            account: self.account,
            purpose,
            locale: locale(&self.locale)?,
            steps: workflow.steps(&number, &sender, self.timing.next_event_wait),
            policy: workflow::policy(code_length(self.code_length)?, self.timing.pin_expiry),
            reference: None,
            callback: None,
            client: None,
            submitted_at: self.submitted_at,
            status: match self.status {
                Status1::InProgress => Status::InProgress,
                Status1::Success => Status::Success,
                Status1::Failed => Status::Failed,
                Status1::Expired => Status::Expired,
                Status1::Cancelled => Status::Cancelled,
            },
            finalized_at: self.finalized_at,
            pin: self.pin.pin(),
            events: self
                .events
                .into_iter()
                .map(|e| EventRecord {
                    id: EventId::from_stored(e.id),
                    channel: e.kind.into(),
                    at: e.at,
                })
                .collect(),
            checks: self
                .checks
                .into_iter()
                .map(CheckRecordBody::check)
                .collect(),
            next_event_at: self.next_event_at,
        }))
    }
}

/// A delivery of format 1.
#[derive(Deserialize)]
pub struct Delivery1 {
    event_id: String,
    request_id: String,
    kind: Kind1,
    to: PhoneRecord,
    purpose: Purpose1,
    locale: String,
    #[serde(with = "hex_vec")]
    sealed_pin: Vec<u8>,
    #[serde(with = "ms")]
    created_at: Instant,
    #[serde(default, with = "ms_opt")]
    pin_expires_at: Option<Instant>,
}

impl Delivery1 {
    pub(super) fn upgrade(self) -> StoreResult<DeliveryOrder> {
        let (purpose, sender) = self.purpose.split();
        Ok(DeliveryOrder {
            event_id: EventId::from_stored(self.event_id),
            request_id: request_id(&self.request_id)?,
            channel: self.kind.into(),
            to: Destination::Phone(self.to.number()),
            from: Some(sender),
            app_hash: None,
            purpose,
            locale: locale(&self.locale)?,
            sealed_pin: self.sealed_pin,
            created_at: self.created_at,
            pin_expires_at: self.pin_expires_at,
            text: None,
        })
    }
}
