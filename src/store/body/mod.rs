//! How a verification or a delivery is kept in a `body` column, for both engines.
//!
//! Bodies of format 2 (this one) are the records below: JSON in PostgreSQL, starting with
//! `{"format":2,`, and MessagePack in SQLite (`sqlite/body.rs` frames them). Format 1, written
//! by versions before steps and policies, was the v1 domain objects themselves; `legacy.rs` still
//! reads it and turns it into the same domain objects, and a body is written back as format 2
//! when it changes. docs/cluster.md says what this means for an upgrade.
//!
//! MessagePack fields are positional: a field added at the end of a record with
//! `#[serde(default)]` reads older bodies of the same format; reordering or removing fields does
//! not, and the golden bodies in the tests fail when that happens.

mod codec;
pub(crate) mod legacy;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use self::codec::{hex_bytes32, hex_opt_vec, hex_vec, ms, ms_opt};
use crate::domain::locale::Locale;
use crate::domain::template::TemplateText;
use crate::domain::{
    CancelWindow, Channel, CheckRecord, CodeLength, CodeLife, DeliveryOrder, Destination,
    EmailAddress, EventId, EventRecord, Instant, PhoneNumber, PinState, Policy, Purpose, RequestId,
    State, Status, Step, Verification,
};
use crate::store::{StoreError, StoreResult};

/// The format number this version writes.
pub(crate) const FORMAT: u8 = 2;
const JSON_PREFIX: &str = "{\"format\":2,";

/// A domain object with a stored record of format 2 and one of format 1.
pub trait Stored: Sized {
    type Record: Serialize + DeserializeOwned;
    type Legacy: DeserializeOwned;
    fn record(&self) -> Self::Record;
    fn from_record(record: Self::Record) -> StoreResult<Self>;
    fn from_legacy(legacy: Self::Legacy) -> StoreResult<Self>;
}

/// A body as PostgreSQL keeps it.
pub fn to_json<T: Stored>(value: &T) -> StoreResult<String> {
    serde_json::to_string(&value.record()).map_err(corrupt_json)
}

/// Reads a JSON body of either format.
pub fn from_json<T: Stored>(text: &[u8]) -> StoreResult<T> {
    if text.starts_with(JSON_PREFIX.as_bytes()) {
        T::from_record(serde_json::from_slice(text).map_err(corrupt_json)?)
    } else {
        T::from_legacy(serde_json::from_slice(text).map_err(corrupt_json)?)
    }
}

/// A stored body that does not decode. serde's message can quote the stored value (a number, a
/// hash), so only the kind and position of the error are kept.
pub(crate) fn corrupt_json(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(format!(
        "JSON {:?} error at line {} column {}",
        e.classify(),
        e.line(),
        e.column()
    ))
}

/// A status as a small stable number: the store's `state` column and format 2 bodies.
pub(crate) fn status_code(status: Status) -> i64 {
    match status {
        Status::InProgress => 0,
        Status::Success => 1,
        Status::Failed => 2,
        Status::Expired => 3,
        Status::Cancelled => 4,
    }
}

fn status_from_code(code: i64) -> StoreResult<Status> {
    [
        Status::InProgress,
        Status::Success,
        Status::Failed,
        Status::Expired,
        Status::Cancelled,
    ]
    .into_iter()
    .find(|s| status_code(*s) == code)
    .ok_or_else(|| corrupt("an unknown status"))
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("a body holds {what}"))
}

/// A verification the state machine can run: its events are the first of its steps, and a next
/// step is due only while one is left. A body that says otherwise is damaged.
fn consistent(v: Verification) -> StoreResult<Verification> {
    let started = v.events.len();
    let ok = !v.steps.is_empty()
        && (1..=v.steps.len()).contains(&started)
        && v.events
            .iter()
            .zip(&v.steps)
            .all(|(e, s)| e.channel == s.channel)
        && (v.next_event_at.is_none() || started < v.steps.len())
        && v.policy.tries_per_code >= 1;
    if ok {
        Ok(v)
    } else {
        Err(corrupt("steps and events that do not fit together"))
    }
}

fn request_id(raw: &str) -> StoreResult<RequestId> {
    RequestId::from_hex(raw).ok_or_else(|| corrupt("a malformed request id"))
}

fn locale(tag: &str) -> StoreResult<Locale> {
    Locale::from_tag(tag).ok_or_else(|| corrupt("an unknown locale"))
}

fn text(raw: Option<String>) -> StoreResult<Option<TemplateText>> {
    raw.map(|t| TemplateText::parse(&t).map_err(|_| corrupt("template text")))
        .transpose()
}

fn code_length(n: u8) -> StoreResult<CodeLength> {
    CodeLength::new(i64::from(n)).ok_or_else(|| corrupt("a code length out of range"))
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ChannelRecord {
    Sms,
    Voice,
    Email,
    WhatsApp,
}

impl From<Channel> for ChannelRecord {
    fn from(c: Channel) -> Self {
        match c {
            Channel::Sms => ChannelRecord::Sms,
            Channel::Voice => ChannelRecord::Voice,
            Channel::Email => ChannelRecord::Email,
            Channel::WhatsApp => ChannelRecord::WhatsApp,
        }
    }
}

impl From<ChannelRecord> for Channel {
    fn from(c: ChannelRecord) -> Self {
        match c {
            ChannelRecord::Sms => Channel::Sms,
            ChannelRecord::Voice => Channel::Voice,
            ChannelRecord::Email => Channel::Email,
            ChannelRecord::WhatsApp => Channel::WhatsApp,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct PhoneRecord {
    digits: String,
    region: Option<String>,
}

impl PhoneRecord {
    fn of(n: &PhoneNumber) -> Self {
        Self {
            digits: n.digits().to_owned(),
            region: n.region().map(str::to_owned),
        }
    }

    fn number(self) -> PhoneNumber {
        PhoneNumber::from_stored(self.digits, self.region)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum DestinationRecord {
    Phone(PhoneRecord),
    Email(String),
}

impl DestinationRecord {
    fn of(d: &Destination) -> Self {
        match d {
            Destination::Phone(n) => DestinationRecord::Phone(PhoneRecord::of(n)),
            Destination::Email(a) => DestinationRecord::Email(a.as_str().to_owned()),
        }
    }

    fn destination(self) -> StoreResult<Destination> {
        match self {
            DestinationRecord::Phone(p) => Ok(Destination::Phone(p.number())),
            DestinationRecord::Email(a) => EmailAddress::parse(&a)
                .map(Destination::Email)
                .ok_or_else(|| corrupt("a malformed e-mail address")),
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum PurposeRecord {
    Brand { brand: String },
    Payment { payee: String, amount: String },
}

impl PurposeRecord {
    fn of(p: &Purpose) -> Self {
        match p {
            Purpose::Brand { brand } => PurposeRecord::Brand {
                brand: brand.clone(),
            },
            Purpose::Payment { payee, amount } => PurposeRecord::Payment {
                payee: payee.clone(),
                amount: amount.clone(),
            },
        }
    }

    fn purpose(self) -> Purpose {
        match self {
            PurposeRecord::Brand { brand } => Purpose::Brand { brand },
            PurposeRecord::Payment { payee, amount } => Purpose::Payment { payee, amount },
        }
    }
}

#[derive(Serialize, Deserialize)]
struct StepRecord {
    channel: ChannelRecord,
    to: DestinationRecord,
    from: Option<String>,
    app_hash: Option<String>,
    new_code: bool,
    wait: u32,
    /// Left out when `None`, so that a body without one is the same as before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum CodeLifeRecord {
    Fixed(u32),
    UntilWorkflowEnds,
}

#[derive(Serialize, Deserialize)]
struct PolicyRecord {
    code_length: u8,
    tries_per_code: u8,
    code_life: CodeLifeRecord,
    cancel_not_before: u32,
    cancel_until_steps: u32,
    #[serde(default)]
    next_on_failure: bool,
}

/// The current code; format 1 kept it the same way.
#[derive(Serialize, Deserialize)]
struct PinRecord {
    #[serde(with = "hex_bytes32")]
    hash: [u8; 32],
    #[serde(with = "hex_opt_vec", default)]
    sealed: Option<Vec<u8>>,
    #[serde(with = "ms")]
    issued_at: Instant,
    #[serde(with = "ms")]
    expires_at: Instant,
    checks: u8,
    custom: bool,
}

#[derive(Serialize, Deserialize)]
struct EventRecordBody {
    id: String,
    channel: ChannelRecord,
    #[serde(with = "ms")]
    at: Instant,
}

/// One check; format 1 kept it the same way.
#[derive(Serialize, Deserialize)]
struct CheckRecordBody {
    #[serde(with = "ms")]
    at: Instant,
    valid: bool,
    code_len: u8,
}

impl PinRecord {
    fn pin(self) -> PinState {
        PinState {
            hash: self.hash,
            sealed: self.sealed,
            issued_at: self.issued_at,
            expires_at: self.expires_at,
            checks: self.checks,
            custom: self.custom,
        }
    }
}

impl CheckRecordBody {
    fn check(self) -> CheckRecord {
        CheckRecord {
            at: self.at,
            valid: self.valid,
            code_len: self.code_len,
        }
    }
}

/// A verification, format 2.
#[derive(Serialize, Deserialize)]
pub struct VerificationRecord {
    format: u8,
    id: String,
    account: String,
    purpose: PurposeRecord,
    locale: String,
    steps: Vec<StepRecord>,
    policy: PolicyRecord,
    reference: Option<String>,
    #[serde(with = "ms")]
    submitted_at: Instant,
    status: i64,
    #[serde(with = "ms_opt")]
    finalized_at: Option<Instant>,
    pin: PinRecord,
    events: Vec<EventRecordBody>,
    checks: Vec<CheckRecordBody>,
    #[serde(with = "ms_opt")]
    next_event_at: Option<Instant>,
    #[serde(default)]
    callback: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client: Option<String>,
}

impl Stored for Verification {
    type Record = VerificationRecord;
    type Legacy = legacy::Verification1;

    fn record(&self) -> VerificationRecord {
        let p = &self.policy;
        VerificationRecord {
            format: FORMAT,
            id: self.id.as_str().to_owned(),
            account: self.account.clone(),
            purpose: PurposeRecord::of(&self.purpose),
            locale: self.locale.as_str().to_owned(),
            steps: self
                .steps
                .iter()
                .map(|s| StepRecord {
                    channel: s.channel.into(),
                    to: DestinationRecord::of(&s.to),
                    from: s.from.clone(),
                    app_hash: s.app_hash.clone(),
                    new_code: s.new_code,
                    wait: s.wait,
                    text: s.text.as_ref().map(|t| t.as_str().to_owned()),
                })
                .collect(),
            policy: PolicyRecord {
                code_length: p.code_length.get(),
                tries_per_code: p.tries_per_code,
                code_life: match p.code_life {
                    CodeLife::Fixed(s) => CodeLifeRecord::Fixed(s),
                    CodeLife::UntilWorkflowEnds => CodeLifeRecord::UntilWorkflowEnds,
                },
                cancel_not_before: p.cancel.not_before,
                cancel_until_steps: p.cancel.until_steps as u32,
                next_on_failure: p.next_on_failure,
            },
            reference: self.reference.clone(),
            submitted_at: self.submitted_at,
            status: status_code(self.status),
            finalized_at: self.finalized_at,
            pin: PinRecord {
                hash: self.pin.hash,
                sealed: self.pin.sealed.clone(),
                issued_at: self.pin.issued_at,
                expires_at: self.pin.expires_at,
                checks: self.pin.checks,
                custom: self.pin.custom,
            },
            events: self
                .events
                .iter()
                .map(|e| EventRecordBody {
                    id: e.id.as_str().to_owned(),
                    channel: e.channel.into(),
                    at: e.at,
                })
                .collect(),
            checks: self
                .checks
                .iter()
                .map(|c| CheckRecordBody {
                    at: c.at,
                    valid: c.valid,
                    code_len: c.code_len,
                })
                .collect(),
            next_event_at: self.next_event_at,
            callback: self.callback.clone(),
            client: self.client.clone(),
        }
    }

    fn from_record(r: VerificationRecord) -> StoreResult<Self> {
        if r.steps.is_empty() {
            return Err(corrupt("a verification without steps"));
        }
        let policy = Policy {
            code_length: code_length(r.policy.code_length)?,
            tries_per_code: r.policy.tries_per_code,
            code_life: match r.policy.code_life {
                CodeLifeRecord::Fixed(s) => CodeLife::Fixed(s),
                CodeLifeRecord::UntilWorkflowEnds => CodeLife::UntilWorkflowEnds,
            },
            cancel: CancelWindow {
                not_before: r.policy.cancel_not_before,
                until_steps: r.policy.cancel_until_steps as usize,
            },
            next_on_failure: r.policy.next_on_failure,
        };
        consistent(Verification::restore(State {
            id: request_id(&r.id)?,
            account: r.account,
            purpose: r.purpose.purpose(),
            locale: locale(&r.locale)?,
            steps: r
                .steps
                .into_iter()
                .map(|s| {
                    Ok(Step {
                        channel: s.channel.into(),
                        to: s.to.destination()?,
                        from: s.from,
                        app_hash: s.app_hash,
                        new_code: s.new_code,
                        wait: s.wait,
                        text: text(s.text)?,
                    })
                })
                .collect::<StoreResult<_>>()?,
            policy,
            reference: r.reference,
            callback: r.callback,
            client: r.client,
            submitted_at: r.submitted_at,
            status: status_from_code(r.status)?,
            finalized_at: r.finalized_at,
            pin: r.pin.pin(),
            events: r
                .events
                .into_iter()
                .map(|e| EventRecord {
                    id: EventId::from_stored(e.id),
                    channel: e.channel.into(),
                    at: e.at,
                })
                .collect(),
            checks: r.checks.into_iter().map(CheckRecordBody::check).collect(),
            next_event_at: r.next_event_at,
        }))
    }

    fn from_legacy(legacy: legacy::Verification1) -> StoreResult<Self> {
        consistent(legacy.upgrade()?)
    }
}

/// A delivery, format 2.
#[derive(Serialize, Deserialize)]
pub struct DeliveryRecord {
    format: u8,
    event_id: String,
    request_id: String,
    channel: ChannelRecord,
    to: DestinationRecord,
    from: Option<String>,
    app_hash: Option<String>,
    purpose: PurposeRecord,
    locale: String,
    #[serde(with = "hex_vec")]
    sealed_pin: Vec<u8>,
    #[serde(with = "ms")]
    created_at: Instant,
    #[serde(with = "ms_opt")]
    pin_expires_at: Option<Instant>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<String>,
}

impl Stored for DeliveryOrder {
    type Record = DeliveryRecord;
    type Legacy = legacy::Delivery1;

    fn record(&self) -> DeliveryRecord {
        DeliveryRecord {
            format: FORMAT,
            event_id: self.event_id.as_str().to_owned(),
            request_id: self.request_id.as_str().to_owned(),
            channel: self.channel.into(),
            to: DestinationRecord::of(&self.to),
            from: self.from.clone(),
            app_hash: self.app_hash.clone(),
            purpose: PurposeRecord::of(&self.purpose),
            locale: self.locale.as_str().to_owned(),
            sealed_pin: self.sealed_pin.clone(),
            created_at: self.created_at,
            pin_expires_at: self.pin_expires_at,
            text: self.text.as_ref().map(|t| t.as_str().to_owned()),
        }
    }

    fn from_record(r: DeliveryRecord) -> StoreResult<Self> {
        Ok(DeliveryOrder {
            event_id: EventId::from_stored(r.event_id),
            request_id: request_id(&r.request_id)?,
            channel: r.channel.into(),
            to: r.to.destination()?,
            from: r.from,
            app_hash: r.app_hash,
            purpose: r.purpose.purpose(),
            locale: locale(&r.locale)?,
            sealed_pin: r.sealed_pin,
            created_at: r.created_at,
            pin_expires_at: r.pin_expires_at,
            text: text(r.text)?,
        })
    }

    fn from_legacy(legacy: legacy::Delivery1) -> StoreResult<Self> {
        legacy.upgrade()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::api::v1::workflow::{self, Workflow};
    use crate::domain::testing::SequenceMinter;
    use crate::domain::Command;

    /// A verification as versions before format 2 stored it (`POST /verify/json`, workflow 1).
    pub(crate) const FORMAT_1: &str = r#"{"id":"01a20238b7d33406b7d22e4a96f663ba","account":"e1c3a508","number":{"digits":"12015550123","region":"US"},"purpose":{"kind":"brand","brand":"Acme","sender_id":"VERIFY"},"locale":"en-us","code_length":4,"workflow":1,"timing":{"next_event_wait":null,"pin_expiry":300},"submitted_at":1795333601235,"status":"InProgress","finalized_at":null,"pin":{"hash":"200c671fdfdba4065bec7fbe2dac18aae274264447f5d57e32e5418a9151c84b","sealed":"df9cee7ea6ae8453875a6b4c83886620c3df6be4a478c30642ec7e9acfbc66905801b74502cdf09ad0c0f64e","issued_at":1795333601235,"expires_at":1795333901235,"checks":0,"custom":false},"events":[{"id":"37AF742A6A6728CB","kind":"sms","at":1795333601235}],"checks":[],"next_event_at":1795333726235}"#;

    /// Its first delivery as those versions stored it.
    pub(crate) const DELIVERY_1: &str = r#"{"event_id":"37AF742A6A6728CB","request_id":"01a20238b7d33406b7d22e4a96f663ba","kind":"sms","to":{"digits":"12015550123","region":"US"},"purpose":{"kind":"brand","brand":"Acme","sender_id":"VERIFY"},"locale":"en-us","sealed_pin":"df9cee7ea6ae8453875a6b4c83886620c3df6be4a478c30642ec7e9acfbc66905801b74502cdf09ad0c0f64e","created_at":1795333601235,"pin_expires_at":1795333901235}"#;

    /// The same verification as this version writes it for PostgreSQL. If this changes, the
    /// stored format changed: bodies already written would read differently.
    const FORMAT_2: &str = r#"{"format":2,"id":"01a20238b7d33406b7d22e4a96f663ba","account":"e1c3a508","purpose":{"kind":"brand","brand":"Acme"},"locale":"en-us","steps":[{"channel":"sms","to":{"phone":{"digits":"12015550123","region":"US"}},"from":"VERIFY","app_hash":null,"new_code":false,"wait":125},{"channel":"voice","to":{"phone":{"digits":"12015550123","region":"US"}},"from":"VERIFY","app_hash":null,"new_code":false,"wait":180},{"channel":"voice","to":{"phone":{"digits":"12015550123","region":"US"}},"from":"VERIFY","app_hash":null,"new_code":false,"wait":0}],"policy":{"code_length":4,"tries_per_code":3,"code_life":{"fixed":300},"cancel_not_before":30,"cancel_until_steps":2,"next_on_failure":false},"reference":null,"submitted_at":1795333601235,"status":0,"finalized_at":null,"pin":{"hash":"200c671fdfdba4065bec7fbe2dac18aae274264447f5d57e32e5418a9151c84b","sealed":"df9cee7ea6ae8453875a6b4c83886620c3df6be4a478c30642ec7e9acfbc66905801b74502cdf09ad0c0f64e","issued_at":1795333601235,"expires_at":1795333901235,"checks":0,"custom":false},"events":[{"id":"37AF742A6A6728CB","channel":"sms","at":1795333601235}],"checks":[],"next_event_at":1795333726235,"callback":null}"#;

    fn ms(v: i64) -> Instant {
        chrono::DateTime::from_timestamp_millis(v).unwrap()
    }

    #[test]
    fn a_format_1_verification_reads_as_the_steps_and_policy_v1_builds_from_its_workflow() {
        let v: Verification = from_json(FORMAT_1.as_bytes()).unwrap();
        let number = PhoneNumber::parse("12015550123", None).unwrap();
        assert_eq!(v.steps, Workflow::DEFAULT.steps(&number, "VERIFY", None));
        assert_eq!(
            v.policy,
            workflow::policy(CodeLength::DEFAULT, workflow::DEFAULT_PIN_EXPIRY_SECS)
        );
        assert_eq!(v.id.as_str(), "01a20238b7d33406b7d22e4a96f663ba");
        assert_eq!(
            (v.account.as_str(), v.locale.as_str()),
            ("e1c3a508", "en-us")
        );
        assert_eq!(
            v.purpose,
            Purpose::Brand {
                brand: "Acme".into()
            }
        );
        assert_eq!(v.status, Status::InProgress);
        assert_eq!(v.pin.expires_at, ms(1795333901235));
        assert_eq!(v.pin.sealed.as_ref().unwrap().len(), 44);
        assert_eq!(v.events[0].channel, Channel::Sms);
        assert_eq!(v.events[0].id.as_str(), "37AF742A6A6728CB");
        assert_eq!(v.next_event_at, Some(ms(1795333726235)));
        assert_eq!(v.destination_key(), "12015550123");
        assert_eq!(to_json(&v).unwrap(), FORMAT_2, "written back as format 2");
    }

    #[test]
    fn a_format_1_verification_keeps_its_workflow_timings_and_sender() {
        let body = FORMAT_1
            .replace(r#""workflow":1"#, r#""workflow":3"#)
            .replace(r#""next_event_wait":null"#, r#""next_event_wait":90"#)
            .replace(r#""pin_expiry":300"#, r#""pin_expiry":270"#)
            .replace(r#""sender_id":"VERIFY""#, r#""sender_id":"ACME""#)
            .replace(r#""code_length":4"#, r#""code_length":6"#)
            .replace(r#""kind":"sms""#, r#""kind":"tts""#);
        let v: Verification = from_json(body.as_bytes()).unwrap();
        let channels: Vec<Channel> = v.steps.iter().map(|s| s.channel).collect();
        assert_eq!(channels, [Channel::Voice, Channel::Voice]);
        assert_eq!(v.steps[0].wait, 90);
        assert!(v.steps.iter().all(|s| s.from.as_deref() == Some("ACME")));
        assert_eq!(v.policy.code_life, CodeLife::Fixed(270));
        assert_eq!(v.policy.code_length.get(), 6);
    }

    #[test]
    fn an_ended_format_1_verification_reads_with_its_checks_and_without_its_sealed_pin() {
        let body = FORMAT_1
            .replace(r#""status":"InProgress","finalized_at":null"#, r#""status":"Failed","finalized_at":1795333611235"#)
            .replace(
                r#""sealed":"df9cee7ea6ae8453875a6b4c83886620c3df6be4a478c30642ec7e9acfbc66905801b74502cdf09ad0c0f64e""#,
                r#""sealed":null"#,
            )
            .replace(r#""checks":0"#, r#""checks":3"#)
            .replace(
                r#""checks":[]"#,
                r#""checks":[{"at":1795333602235,"valid":false,"code_len":4},{"at":1795333603235,"valid":false,"code_len":4},{"at":1795333611235,"valid":false,"code_len":5}]"#,
            )
            .replace(r#""next_event_at":1795333726235"#, r#""next_event_at":null"#);
        let v: Verification = from_json(body.as_bytes()).unwrap();
        assert_eq!(v.status, Status::Failed);
        assert_eq!(v.finalized_at, Some(ms(1795333611235)));
        assert_eq!(v.pin.sealed, None);
        assert_eq!(v.pin.checks, 3);
        let lengths: Vec<u8> = v.checks.iter().map(|c| c.code_len).collect();
        assert_eq!(lengths, [4, 4, 5]);
        assert_eq!(v.next_due(), None);
        let back: Verification = from_json(to_json(&v).unwrap().as_bytes()).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn a_format_1_payment_shows_the_default_sender() {
        let body = FORMAT_1.replace(
            r#"{"kind":"brand","brand":"Acme","sender_id":"VERIFY"}"#,
            r#"{"kind":"payment","payee":"Shop","amount":"1.00"}"#,
        );
        let v: Verification = from_json(body.as_bytes()).unwrap();
        assert!(matches!(v.purpose, Purpose::Payment { .. }));
        assert_eq!(v.steps[0].from.as_deref(), Some("VERIFY"));
    }

    #[test]
    fn a_format_1_delivery_reads_with_its_sender_and_channel() {
        let d: DeliveryOrder = from_json(DELIVERY_1.as_bytes()).unwrap();
        assert_eq!(d.channel, Channel::Sms);
        assert_eq!(d.from.as_deref(), Some("VERIFY"));
        assert_eq!(d.to.key(), "12015550123");
        assert_eq!(d.pin_expires_at, Some(ms(1795333901235)));
        let older = DELIVERY_1
            .replace(r#","pin_expires_at":1795333901235"#, "")
            .replace(r#""kind":"sms""#, r#""kind":"tts""#);
        let d: DeliveryOrder = from_json(older.as_bytes()).unwrap();
        assert_eq!((d.channel, d.pin_expires_at), (Channel::Voice, None));
        let back: DeliveryOrder = from_json(to_json(&d).unwrap().as_bytes()).unwrap();
        assert_eq!(back, d);
    }

    #[test]
    fn a_verification_reads_back_unchanged_after_commands() {
        let mut m = SequenceMinter::new();
        let new = Workflow::parse(2).unwrap().request(
            RequestId::from_bytes([7; 16]),
            "k",
            "447700123456",
        );
        let (mut v, _) = Verification::start(new, ms(0), &mut m);
        let wrong = Command::Check {
            code_hash: [9; 32],
            code_len: 4,
        };
        v.apply(&wrong, ms(3_000), &mut m);
        v.apply(&Command::Next, ms(4_000), &mut m);
        let back: Verification = from_json(to_json(&v).unwrap().as_bytes()).unwrap();
        assert_eq!(back, v);
        v.apply(&Command::Cancel, ms(40_000), &mut m);
        let back: Verification = from_json(to_json(&v).unwrap().as_bytes()).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn a_finished_verification_is_stored_without_its_sealed_pin() {
        let mut m = SequenceMinter::new();
        let new = Workflow::DEFAULT.request(RequestId::from_bytes([7; 16]), "k", "447700123456");
        let (mut v, _) = Verification::start(new, ms(0), &mut m);
        let right = Command::Check {
            code_hash: SequenceMinter::hash("0001"),
            code_len: 4,
        };
        v.apply(&right, ms(3_000), &mut m);
        let json: serde_json::Value = serde_json::from_str(&to_json(&v).unwrap()).unwrap();
        assert!(json["pin"]["sealed"].is_null(), "{json}");
    }

    #[test]
    fn a_pin_hash_or_sealed_copy_that_is_not_hex_of_the_right_length_is_refused() {
        for body in [FORMAT_1, FORMAT_2] {
            for hash in [
                "200c",
                "zz0c671fdfdba4065bec7fbe2dac18aae274264447f5d57e32e5418a9151c84b",
            ] {
                let damaged = body.replace(
                    "200c671fdfdba4065bec7fbe2dac18aae274264447f5d57e32e5418a9151c84b",
                    hash,
                );
                let read = from_json::<Verification>(damaged.as_bytes());
                assert!(matches!(read, Err(StoreError::Corrupt(_))), "{hash}");
            }
            for sealed in ["abc", "zz"] {
                let damaged = body.replace(
                    "df9cee7ea6ae8453875a6b4c83886620c3df6be4a478c30642ec7e9acfbc66905801b74502cdf09ad0c0f64e",
                    sealed,
                );
                let read = from_json::<Verification>(damaged.as_bytes());
                assert!(matches!(read, Err(StoreError::Corrupt(_))), "{sealed}");
            }
        }
    }

    #[test]
    fn steps_and_events_that_do_not_fit_together_are_refused_as_corrupt() {
        let no_events = FORMAT_2.replace(
            r#"[{"id":"37AF742A6A6728CB","channel":"sms","at":1795333601235}]"#,
            "[]",
        );
        let event = r#"{"id":"37AF742A6A6728CB","channel":"sms","at":1795333601235}"#;
        let four = FORMAT_2.replace(event, &[event; 4].join(","));
        let wrong_channel =
            FORMAT_2.replace(r#""channel":"sms","at""#, r#""channel":"voice","at""#);
        let no_tries = FORMAT_2.replace(r#""tries_per_code":3"#, r#""tries_per_code":0"#);
        let workflow_6 = FORMAT_1.replace(r#""workflow":1"#, r#""workflow":6"#);
        for damaged in [no_events, four, wrong_channel, no_tries, workflow_6] {
            let read = from_json::<Verification>(damaged.as_bytes());
            assert!(matches!(read, Err(StoreError::Corrupt(_))), "{damaged}");
        }
    }

    #[test]
    fn values_the_domain_does_not_know_are_refused_as_corrupt() {
        for (from, to) in [
            (r#""locale":"en-us""#, r#""locale":"xx-yy""#),
            (r#""status":0"#, r#""status":9"#),
            (r#""code_length":4"#, r#""code_length":11"#),
            (
                r#""id":"01a20238b7d33406b7d22e4a96f663ba""#,
                r#""id":"not-an-id""#,
            ),
        ] {
            let damaged = FORMAT_2.replace(from, to);
            assert_ne!(damaged, FORMAT_2);
            let read = from_json::<Verification>(damaged.as_bytes());
            assert!(matches!(read, Err(StoreError::Corrupt(_))), "{to}");
        }
    }

    #[test]
    fn a_sealed_copy_longer_than_the_stack_buffer_round_trips() {
        let mut m = SequenceMinter::new();
        let new = Workflow::DEFAULT.request(RequestId::from_bytes([7; 16]), "k", "447700123456");
        let (_, mut first) = Verification::start(new, ms(0), &mut m);
        first.sealed_pin = (0..=255).collect();
        let json = to_json(&first).unwrap();
        let hex: String = first
            .sealed_pin
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(json.contains(&hex), "{json}");
        let back: DeliveryOrder = from_json(json.as_bytes()).unwrap();
        assert_eq!(back, first);
    }
}
