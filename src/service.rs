//! The application service: what each API operation does, independent of any wire format. It
//! joins the domain, the store, the clock and the dispatcher; the API surfaces only parse, call
//! one of these methods and map its outcome to their own codes.

use std::net::IpAddr;
use std::sync::Arc;

use crate::auth::Account;
use crate::clock::Clock;
use crate::crypto::{OsMinter, ServerKey};
use crate::delivery::Dispatcher;
use crate::domain::destinations::{Destinations, Refusal};
use crate::domain::fraud::{client_value, subjects, Block, Dimension, FraudRules, Mode, Subject};
use crate::domain::limits::{buckets, CallKind, Limits, Refused};
use crate::domain::locale::Locale;
use crate::domain::{
    Candidate, Channel, CheckOutcome, Command, CommandOutcome, ControlError, CustomPin,
    Destination, EventId, Instant, NewVerification, Policy, Price, Purpose, RequestId, Status,
    Step, Verification,
};
use crate::scheduler::SchedulerWake;
use crate::store::fraud::{Decision, RECORDED};
use crate::store::{
    CreateOutcome, FraudStore, LimitStore, Store, StoreError, TemplateStore, VerificationStore,
};

/// Prices reported by check and search; the Verify API reports them, a self-hosted service can
/// set them to its own costs (default 0 EUR).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pricing {
    pub currency: String,
    /// Charged for a successful verification.
    pub verification: Price,
    pub per_sms: Price,
    pub per_call: Price,
}

impl Default for Pricing {
    fn default() -> Self {
        Self {
            currency: "EUR".into(),
            verification: Price::ZERO,
            per_sms: Price::ZERO,
            per_call: Price::ZERO,
        }
    }
}

/// A validated start request, in the terms of the domain: each surface builds the steps and the
/// policy from its own parameters.
#[derive(Clone, Debug)]
pub struct StartRequest {
    pub purpose: Purpose,
    pub locale: Locale,
    pub steps: Vec<Step>,
    pub policy: Policy,
    pub reference: Option<String>,
    pub custom_pin: Option<CustomPin>,
    /// Whose words the messages say.
    pub words: Words,
    /// The address of the person asking, where the app passes it on: starts count against a
    /// limit per client.
    pub client: Option<IpAddr>,
}

/// Where a verification's messages take their words from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Words {
    /// The locale's built-in texts (Verify v1).
    BuiltIn,
    /// The account's default template where it has one, the built-in texts otherwise.
    AccountDefault,
    /// This template of the account's (a UUID); a channel or locale it has no fragment for
    /// says the built-in text.
    Template(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartOutcome {
    Started(RequestId),
    /// The account already has this verification in progress for the number.
    Concurrent(RequestId),
    /// `pin_code` was given but this key may not choose its PIN.
    CustomPinNotAllowed,
    /// The template named is not one of the account's.
    UnknownTemplate,
    /// It may not go where it would go (`[destinations]`, the key's countries).
    Refused(Refusal),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckResult {
    Verified {
        event_id: EventId,
        price: Price,
        estimated_messages: Price,
    },
    WrongCode,
    TooManyWrongCodes,
    /// The current step takes no code.
    NoCode,
    /// Unknown to this account (`None`), or no longer in progress: how it ended.
    NotActive(Option<Status>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlCommand {
    Cancel,
    /// Start the next step now.
    Next,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlResult {
    Done,
    /// Unknown to this account, or no longer in progress.
    NotActive,
    CancelTooEarly,
    CancelTooLate,
    NoMoreEvents,
}

/// A verification as search reports it, at one moment.
#[derive(Clone, Debug)]
pub struct Report {
    pub verification: Verification,
    pub status: Status,
    pub finalized_at: Option<Instant>,
    pub price: Price,
    pub estimated_messages: Price,
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("an operation failed unexpectedly: {0}")]
    Task(String),
    /// A limit of the key's is reached; nothing was done.
    #[error("limit reached: {}", .0.limit)]
    Limited(Refused),
}

/// Runs `work` to completion even if the caller stops waiting (a client that hangs up cancels its
/// handler): a verification that is committed must also be dispatched.
async fn detached<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T, ServiceError>> + Send + 'static,
) -> Result<T, ServiceError> {
    tokio::spawn(work)
        .await
        .map_err(|e| ServiceError::Task(e.to_string()))?
}

/// What a key may make verifyd do, for every key that sets nothing of its own.
#[derive(Clone, Debug, Default)]
pub struct Rules {
    /// `[limits]`.
    pub limits: Limits,
    /// `[destinations]`.
    pub destinations: Destinations,
    /// `[fraud]`.
    pub fraud: FraudRules,
    /// `[test_numbers]`: verifications to them take a fixed code and count nowhere.
    pub test_numbers: crate::domain::test_numbers::TestNumbers,
}

pub struct VerifyService {
    store: Arc<dyn VerificationStore>,
    templates: Arc<dyn TemplateStore>,
    counters: Arc<dyn LimitStore>,
    monitor: Arc<dyn FraudStore>,
    /// Swapped whole by a configuration reload; a call reads them once.
    rules: arc_swap::ArcSwap<Rules>,
    clock: Arc<dyn Clock>,
    key: ServerKey,
    dispatcher: Dispatcher,
    scheduler_wake: Arc<SchedulerWake>,
    pricing: Pricing,
}

impl VerifyService {
    /// The test numbers in force now (`[test_numbers]`, as the last reload left them).
    pub fn test_numbers(&self) -> crate::domain::test_numbers::TestNumbers {
        self.rules.load().test_numbers.clone()
    }

    pub fn new(
        store: Arc<dyn Store>,
        rules: Rules,
        clock: Arc<dyn Clock>,
        key: ServerKey,
        dispatcher: Dispatcher,
        scheduler_wake: Arc<SchedulerWake>,
        pricing: Pricing,
    ) -> Self {
        Self {
            templates: store.clone(),
            counters: store.clone(),
            monitor: store.clone(),
            store,
            rules: arc_swap::ArcSwap::from_pointee(rules),
            clock,
            key,
            dispatcher,
            scheduler_wake,
            pricing,
        }
    }

    /// Whether the store answers a cheap query now.
    pub async fn database_reachable(&self) -> Result<(), ServiceError> {
        self.store.next_due().await?;
        Ok(())
    }

    /// The rules in force now.
    fn rules(&self) -> Arc<Rules> {
        self.rules.load_full()
    }

    /// Puts `rules` in force for every call that starts from now on (a configuration reload).
    pub fn set_rules(&self, rules: Rules) {
        self.rules.store(Arc::new(rules));
    }

    pub fn pricing(&self) -> &Pricing {
        &self.pricing
    }

    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// Counts a call of `account` against its limits: a start also for its client and each
    /// of its destinations.
    async fn within_limits(
        &self,
        rules: &Rules,
        account: &Account,
        kind: CallKind,
        start: Option<(Option<IpAddr>, &[&Destination])>,
    ) -> Result<(), ServiceError> {
        let limits = rules.limits.for_key(&account.limits);
        if limits.is_empty() {
            return Ok(());
        }
        let buckets = buckets(&limits, &account.api_key, kind, start);
        self.counters
            .take(buckets, self.clock.now())
            .await?
            .map_err(ServiceError::Limited)
    }

    /// The block in force of one of the subjects a send to `to` counts under.
    async fn blocked(
        &self,
        rules: &Rules,
        account: &Account,
        to: &[&Destination],
        client: Option<&str>,
    ) -> Result<Option<Block>, ServiceError> {
        let found = sent_under(to, client);
        if rules.fraud.mode != Mode::Block || found.is_empty() {
            return Ok(None);
        }
        let now = self.clock.now();
        Ok(self.monitor.blocked(&account.api_key, found, now).await?)
    }

    /// Counts a send under its subjects for conversion monitoring, and acts on a subject it
    /// takes over its threshold: refused when a subject is blocked, or has just been.
    async fn monitor_send(
        &self,
        all: &Rules,
        account: &Account,
        to: &[&Destination],
        client: Option<&str>,
    ) -> Result<Result<(), Block>, ServiceError> {
        let rules = &all.fraud;
        let found = sent_under(to, client);
        if rules.mode == Mode::Off || found.is_empty() {
            return Ok(Ok(()));
        }
        let now = self.clock.now();
        let tallies = match self
            .monitor
            .record_send(&account.api_key, found, now)
            .await?
        {
            Ok(tallies) => tallies,
            Err(block) if rules.mode == Mode::Block => return Ok(Err(block)),
            // A block left from an earlier `block` mode refuses nothing now.
            Err(_) => return Ok(Ok(())),
        };
        let Some(finding) = rules.assess(&tallies, now) else {
            return Ok(Ok(()));
        };
        let reason = finding.to_string();
        if rules.mode == Mode::Block {
            let network = match finding.subject.dimension {
                Dimension::Prefix => all
                    .destinations
                    .network_of(&finding.subject.value)
                    .map(|n| n.id.clone()),
                _ => None,
            };
            let block = self
                .monitor
                .block(
                    &account.api_key,
                    finding.subject.clone(),
                    network,
                    reason.clone(),
                    now,
                    rules.blocks,
                )
                .await?;
            if let Some(block) = block {
                tracing::warn!(subject = %block.subject, until = %block.until, reason = %block.reason, "fraud: blocked");
                return Ok(Err(block));
            }
            // The operator's unblock exempts it: written down, let through.
        }
        let written = self
            .monitor
            .record_decision(Decision {
                account: account.api_key.clone(),
                subject: finding.subject,
                action: RECORDED.into(),
                reason,
                at: now,
                until: None,
            })
            .await?;
        if written {
            tracing::warn!("fraud: a subject is over its threshold (recorded only)");
        }
        Ok(Ok(()))
    }

    /// Counts a verification's conversion under the subjects its send was counted under. The
    /// check has succeeded whatever happens here: a failure is logged, not answered.
    async fn monitor_conversion(&self, account: &Account, verification: &Verification) {
        let rules = self.rules();
        let mut to: Vec<&Destination> = Vec::new();
        for step in &verification.steps {
            if !to.contains(&&step.to) {
                to.push(&step.to);
            }
        }
        let sent_nothing = rules.test_numbers.code_for(to.iter().copied()).is_some();
        if rules.fraud.mode == Mode::Off || sent_nothing {
            return;
        }
        let found = sent_under(&to, verification.client.as_deref());
        if found.is_empty() {
            return;
        }
        if let Err(e) = self
            .monitor
            .record_conversion(&account.api_key, found, verification.submitted_at)
            .await
        {
            tracing::error!(error = %e, "fraud: a conversion was not counted");
        }
    }

    /// Lifts the account's blocks of `network` (an MCC-MNC of the operator's map, or a blocked
    /// prefix) and keeps them off for `seconds`; until when, or `None` when none is in force.
    pub async fn unblock(
        &self,
        account: &Account,
        network: &str,
        seconds: i64,
    ) -> Result<Option<Instant>, ServiceError> {
        self.within_limits(&self.rules(), account, CallKind::Request, None)
            .await?;
        let now = self.clock.now();
        let until = now + chrono::Duration::seconds(seconds);
        let lifted = self
            .monitor
            .unblock(&account.api_key, network, until, now)
            .await?;
        if lifted.is_some() {
            tracing::warn!(network, until = %until, "fraud: network unblocked");
        }
        Ok(lifted)
    }

    /// What conversion monitoring saw of `account` over the last `period`
    /// ([`crate::fraud_report`]).
    pub async fn fraud_report(
        &self,
        account: &Account,
        period: chrono::Duration,
    ) -> Result<serde_json::Value, ServiceError> {
        self.within_limits(&self.rules(), account, CallKind::Request, None)
            .await?;
        let now = self.clock.now();
        Ok(crate::fraud_report::build(&*self.monitor, Some(&account.api_key), period, now).await?)
    }

    fn minter(&self) -> Box<OsMinter> {
        Box::new(OsMinter::new(self.key.clone()))
    }

    /// Starts a verification. When this returns `Started`, the verification and its first
    /// delivery are durable.
    pub async fn start(
        &self,
        account: &Account,
        req: StartRequest,
    ) -> Result<StartOutcome, ServiceError> {
        let outcome = self.start_counted(account, req).await;
        let label = match &outcome {
            Ok(StartOutcome::Started(_)) => "started",
            Ok(StartOutcome::Concurrent(_)) => "concurrent",
            Ok(StartOutcome::Refused(_)) => "refused",
            Ok(StartOutcome::CustomPinNotAllowed | StartOutcome::UnknownTemplate) => "invalid",
            Err(ServiceError::Limited(_)) => "limited",
            Err(_) => "error",
        };
        metrics::counter!(crate::metrics::VERIFICATIONS, "outcome" => label).increment(1);
        outcome
    }

    async fn start_counted(
        &self,
        account: &Account,
        req: StartRequest,
    ) -> Result<StartOutcome, ServiceError> {
        if req.custom_pin.is_some() && !account.allow_custom_pin {
            return Ok(StartOutcome::CustomPinNotAllowed);
        }
        let named = match &req.words {
            Words::BuiltIn => None,
            Words::AccountDefault => Some(None),
            Words::Template(id) => Some(Some(id.as_str())),
        };
        let words = match named {
            None => Vec::new(),
            Some(named) => {
                let found = self
                    .templates
                    .template_words(&account.api_key, named, req.locale)
                    .await?;
                let Ok(words) = found else {
                    return Ok(StartOutcome::UnknownTemplate);
                };
                words
            }
        };
        let rules = self.rules();
        let test_code = rules
            .test_numbers
            .code_for(req.steps.iter().map(|s| &s.to))
            .cloned();
        let steps = match test_code {
            // The operator's own test numbers go where the destination rules would refuse.
            Some(_) => req.steps,
            None => match rules
                .destinations
                .admit(&account.limits.countries, req.steps)
            {
                Ok(steps) => steps,
                Err(refusal) => return Ok(StartOutcome::Refused(refusal)),
            },
        };
        let mut to: Vec<&Destination> = Vec::new();
        for step in &steps {
            if !to.contains(&&step.to) {
                to.push(&step.to);
            }
        }
        // A start refused for its own fields, or for a block, counts nowhere (a blocked bot
        // does not spend the key's budget); one refused because a verification to its
        // destination is in progress counts as a try.
        // A start to test numbers sends nothing: only the key's request rate counts it, as any
        // call; no send limit, budget or conversion monitoring does.
        let client = req.client.map(client_value);
        if test_code.is_some() {
            self.within_limits(&rules, account, CallKind::Request, None)
                .await?;
        } else {
            if let Some(block) = self
                .blocked(&rules, account, &to, client.as_deref())
                .await?
            {
                return Ok(StartOutcome::Refused(Refusal::Fraud(block)));
            }
            self.within_limits(&rules, account, CallKind::Request, Some((req.client, &to)))
                .await?;
            if let Err(block) = self
                .monitor_send(&rules, account, &to, client.as_deref())
                .await?
            {
                return Ok(StartOutcome::Refused(Refusal::Fraud(block)));
            }
        }
        let mut steps = steps;
        for step in &mut steps {
            step.text = words
                .iter()
                .find(|(channel, _)| *channel == step.channel)
                .map(|(_, text)| text.clone());
        }
        // One minter for the id, the PIN and the first event: their random bytes come from one
        // system call.
        let mut minter = self.minter();
        let id = minter.request_id();
        let custom_pin = test_code
            .or(req.custom_pin)
            .map(|pin| minter.issue(&id, pin.as_str()));
        let new = NewVerification {
            id: id.clone(),
            account: account.api_key.clone(),
            purpose: req.purpose,
            locale: req.locale,
            steps,
            policy: req.policy,
            reference: req.reference,
            callback: account.application.clone(),
            client,
            custom_pin,
        };
        let now = self.clock.now();
        let (verification, first) = Verification::start(new, now, minter.as_mut());
        let next_due = verification.next_due();
        let store = self.store.clone();
        let dispatcher = self.dispatcher.clone();
        let wake = self.scheduler_wake.clone();
        let clock = self.clock.clone();
        detached(async move {
            match crate::metrics::timed_store(
                "create",
                store.create(verification, first.clone(), now),
            )
            .await?
            {
                CreateOutcome::Created => {
                    dispatcher.dispatch([first]);
                    if let Some(t) = next_due {
                        wake.step_due_in(clock.real_until(t));
                    }
                    Ok(StartOutcome::Started(id))
                }
                CreateOutcome::Concurrent(existing) => Ok(StartOutcome::Concurrent(existing)),
            }
        })
        .await
    }

    pub async fn check(
        &self,
        account: &Account,
        id: &RequestId,
        code: &Candidate,
    ) -> Result<CheckResult, ServiceError> {
        let result = self.check_counted(account, id, code).await;
        let label = match &result {
            Ok(CheckResult::Verified { .. }) => "verified",
            Ok(CheckResult::WrongCode) => "wrong",
            Ok(CheckResult::TooManyWrongCodes) => "failed",
            Ok(CheckResult::NoCode) => "no_code",
            Ok(CheckResult::NotActive(_)) => "not_active",
            Err(ServiceError::Limited(_)) => "limited",
            Err(_) => "error",
        };
        metrics::counter!(crate::metrics::CHECKS, "outcome" => label).increment(1);
        result
    }

    async fn check_counted(
        &self,
        account: &Account,
        id: &RequestId,
        code: &Candidate,
    ) -> Result<CheckResult, ServiceError> {
        self.within_limits(&self.rules(), account, CallKind::Request, None)
            .await?;
        let command = Command::Check {
            code_hash: self.key.hash_pin(id, code.as_str()),
            code_len: code.as_str().len() as u8,
        };
        let outcome = crate::metrics::timed_store(
            "check",
            self.store.apply(
                &account.api_key,
                id,
                command,
                self.clock.clone(),
                self.minter(),
            ),
        )
        .await?;
        let Some((outcome, verification)) = outcome else {
            return Ok(CheckResult::NotActive(None));
        };
        Ok(match outcome {
            CommandOutcome::Checked(CheckOutcome::Verified { event_id }) => {
                self.monitor_conversion(account, &verification).await;
                let report = self.report(verification, self.clock.now());
                CheckResult::Verified {
                    event_id,
                    price: report.price,
                    estimated_messages: report.estimated_messages,
                }
            }
            CommandOutcome::Checked(CheckOutcome::Mismatch { .. }) => CheckResult::WrongCode,
            CommandOutcome::Checked(CheckOutcome::TooManyAttempts) => {
                CheckResult::TooManyWrongCodes
            }
            CommandOutcome::Checked(CheckOutcome::NoCode) => CheckResult::NoCode,
            CommandOutcome::Checked(CheckOutcome::NotActive) => {
                CheckResult::NotActive(Some(verification.status))
            }
            other => unreachable!("a check answered {other:?}"),
        })
    }

    pub async fn control(
        &self,
        account: &Account,
        id: &RequestId,
        command: ControlCommand,
    ) -> Result<ControlResult, ServiceError> {
        self.within_limits(&self.rules(), account, CallKind::Request, None)
            .await?;
        let store_command = match command {
            ControlCommand::Cancel => Command::Cancel,
            ControlCommand::Next => Command::Next,
        };
        let store = self.store.clone();
        let clock = self.clock.clone();
        let minter = self.minter();
        let dispatcher = self.dispatcher.clone();
        let wake = self.scheduler_wake.clone();
        let (account, id) = (account.api_key.clone(), id.clone());
        let result = detached(async move {
            let outcome = store
                .apply(&account, &id, store_command, clock.clone(), minter)
                .await?;
            let result = match outcome {
                None => Err(ControlError::NotActive),
                Some((CommandOutcome::Cancelled(r), _)) => r.map(|()| None),
                Some((CommandOutcome::Advanced(r), v)) => r.map(|order| Some((*order, v))),
                Some((other, _)) => unreachable!("a control command answered {other:?}"),
            };
            if let Ok(Some((order, v))) = &result {
                dispatcher.dispatch([order.clone()]);
                if let Some(t) = v.next_due() {
                    wake.step_due_in(clock.real_until(t));
                }
            }
            Ok(result)
        })
        .await?;
        Ok(match result {
            Ok(_) => ControlResult::Done,
            Err(ControlError::NotActive | ControlError::Ignored) => ControlResult::NotActive,
            Err(ControlError::CancelTooEarly) => ControlResult::CancelTooEarly,
            Err(ControlError::CancelTooLate) => ControlResult::CancelTooLate,
            Err(ControlError::NoMoreEvents) => ControlResult::NoMoreEvents,
        })
    }

    /// Whether `account` has a verification `id`, for a surface that must tell an unknown
    /// request from a malformed call: it is not a search and counts against no limit.
    pub async fn knows(&self, account: &Account, id: &RequestId) -> Result<bool, ServiceError> {
        let found = self
            .store
            .find(&account.api_key, std::slice::from_ref(id))
            .await?;
        Ok(!found.is_empty())
    }

    /// The account's verifications among `ids`, as of now; unknown ids are left out.
    pub async fn search(
        &self,
        account: &Account,
        ids: &[RequestId],
    ) -> Result<Vec<Report>, ServiceError> {
        self.within_limits(&self.rules(), account, CallKind::Search, None)
            .await?;
        let now = self.clock.now();
        let found =
            crate::metrics::timed_store("find", self.store.find(&account.api_key, ids)).await?;
        Ok(found.into_iter().map(|v| self.report(v, now)).collect())
    }

    fn report(&self, verification: Verification, now: Instant) -> Report {
        let status = verification.status_at(now);
        let finalized_at = verification.finalized_at(now);
        let (sms, calls) =
            verification
                .events
                .iter()
                .fold((0u64, 0u64), |(s, c), e| match e.channel {
                    Channel::Sms => (s + 1, c),
                    Channel::Voice => (s, c + 1),
                    // E-mail and WhatsApp have no price of their own.
                    Channel::Email | Channel::WhatsApp => (s, c),
                });
        let estimated_messages = self
            .pricing
            .per_sms
            .times(sms)
            .plus(self.pricing.per_call.times(calls));
        let price = if status == Status::Success {
            self.pricing.verification
        } else {
            Price::ZERO
        };
        Report {
            verification,
            status,
            finalized_at,
            price,
            estimated_messages,
        }
    }
}

/// The subjects a send to `to` counts under, each once.
fn sent_under(to: &[&Destination], client: Option<&str>) -> Vec<Subject> {
    let mut found: Vec<Subject> = Vec::new();
    for destination in to {
        for subject in subjects(destination, client) {
            if !found.contains(&subject) {
                found.push(subject);
            }
        }
    }
    found
}
