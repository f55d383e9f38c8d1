//! The verification state machine, driven by passing times: no clock, no sleeping. The requests
//! are Verify v1's workflows, built as `api/v1` builds them.

use chrono::{DateTime, Duration};
use verifyd::api::v1::workflow::{self, Workflow};
use verifyd::domain::testing::SequenceMinter;
use verifyd::domain::{
    Channel, CheckOutcome, CodeLife, Command, CommandOutcome, ControlError, DeliveryOrder, Instant,
    IssuedPin, NewVerification, RequestId, Status, Verification,
};

type CountingMinter = SequenceMinter;

fn hash_of(code: &str) -> [u8; 32] {
    SequenceMinter::hash(code)
}

fn t(secs: i64) -> Instant {
    DateTime::from_timestamp(1_700_000_000, 0).unwrap() + Duration::seconds(secs)
}

/// v1's `pin_expiry` and `next_event_wait`, settled by v1's rule.
#[derive(Clone, Copy)]
struct Timing {
    next_event_wait: Option<u32>,
    pin_expiry: u32,
}

impl Timing {
    fn new(pin_expiry: Option<u32>, next_event_wait: Option<u32>) -> Self {
        Self {
            next_event_wait,
            pin_expiry: workflow::pin_expiry(pin_expiry, next_event_wait),
        }
    }

    fn default() -> Self {
        Self::new(None, None)
    }
}

fn new_request(workflow: u8, timing: Timing) -> NewVerification {
    let wf = Workflow::parse(i64::from(workflow)).unwrap();
    let mut new = wf.request(RequestId::from_bytes([7; 16]), "key1", "447700123456");
    let number = new.steps[0].to.phone().unwrap().clone();
    new.steps = wf.steps(&number, "VERIFY", timing.next_event_wait);
    new.policy = workflow::policy(new.policy.code_length, timing.pin_expiry);
    new
}

/// The commands, each through the one function that applies them.
trait Commands {
    fn check(&mut self, hash: &[u8; 32], len: u8, at: Instant) -> CheckOutcome;
    fn cancel(&mut self, at: Instant) -> Result<(), ControlError>;
    fn trigger_next(
        &mut self,
        at: Instant,
        m: &mut CountingMinter,
    ) -> Result<DeliveryOrder, ControlError>;
}

impl Commands for Verification {
    fn check(&mut self, hash: &[u8; 32], len: u8, at: Instant) -> CheckOutcome {
        let command = Command::Check {
            code_hash: *hash,
            code_len: len,
        };
        match self.apply(&command, at, &mut CountingMinter::new()) {
            CommandOutcome::Checked(outcome) => outcome,
            other => panic!("{other:?}"),
        }
    }

    fn cancel(&mut self, at: Instant) -> Result<(), ControlError> {
        match self.apply(&Command::Cancel, at, &mut CountingMinter::new()) {
            CommandOutcome::Cancelled(outcome) => outcome,
            other => panic!("{other:?}"),
        }
    }

    fn trigger_next(
        &mut self,
        at: Instant,
        m: &mut CountingMinter,
    ) -> Result<DeliveryOrder, ControlError> {
        match self.apply(&Command::Next, at, m) {
            CommandOutcome::Advanced(outcome) => outcome.map(|order| *order),
            other => panic!("{other:?}"),
        }
    }
}

/// Runs the scheduler's view of a request: advance at every due time until it ends. Returns
/// (time, kind, pin) per delivered event and the time it ended.
fn run_to_end(v: &mut Verification, m: &mut CountingMinter) -> (Vec<(i64, Channel, String)>, i64) {
    let mut out = Vec::new();
    while let Some(due) = v.next_due() {
        if let Some(order) = v.advance(due, m) {
            let at = (order.created_at - t(0)).num_seconds();
            out.push((
                at,
                order.channel,
                String::from_utf8(order.sealed_pin).unwrap(),
            ));
        }
    }
    let end = (v.finalized_at(t(100_000)).unwrap() - t(0)).num_seconds();
    (out, end)
}

fn start(
    workflow: u8,
    timing: Timing,
    m: &mut CountingMinter,
) -> (Verification, Vec<(i64, Channel, String)>) {
    let (v, first) = Verification::start(new_request(workflow, timing), t(0), m);
    let first = vec![(
        0,
        first.channel,
        String::from_utf8(first.sealed_pin).unwrap(),
    )];
    (v, first)
}

use Channel::{Sms, Voice as Tts};

fn timeline(workflow: u8, timing: Timing) -> (Vec<(i64, Channel, String)>, i64, Status) {
    let mut m = CountingMinter::new();
    let (mut v, mut events) = start(workflow, timing, &mut m);
    let (rest, end) = run_to_end(&mut v, &mut m);
    events.extend(rest);
    (events, end, v.status)
}

fn ev(at: i64, kind: Channel, pin: &str) -> (i64, Channel, String) {
    (at, kind, pin.to_owned())
}

#[test]
fn workflow_1_sends_sms_then_two_calls_with_a_new_pin_for_the_last_and_expires_300_s_later() {
    let (events, end, status) = timeline(1, Timing::default());
    assert_eq!(
        events,
        vec![
            ev(0, Sms, "0001"),
            ev(125, Tts, "0001"),
            ev(305, Tts, "0002")
        ]
    );
    assert_eq!(end, 605);
    assert_eq!(status, Status::Expired);
}

#[test]
fn workflow_2_sends_two_sms_then_a_call() {
    let (events, end, _) = timeline(2, Timing::default());
    assert_eq!(
        events,
        vec![
            ev(0, Sms, "0001"),
            ev(125, Sms, "0001"),
            ev(305, Tts, "0002")
        ]
    );
    assert_eq!(end, 605);
}

#[test]
fn workflow_3_calls_twice_150_s_apart_and_ends_when_the_pin_expires() {
    let (events, end, _) = timeline(3, Timing::default());
    assert_eq!(events, vec![ev(0, Tts, "0001"), ev(150, Tts, "0001")]);
    assert_eq!(end, 300);
}

#[test]
fn workflow_4_sends_two_sms_120_s_apart() {
    let (events, end, _) = timeline(4, Timing::default());
    assert_eq!(events, vec![ev(0, Sms, "0001"), ev(120, Sms, "0001")]);
    assert_eq!(end, 300);
}

#[test]
fn workflow_5_sends_an_sms_then_a_call_after_120_s() {
    let (events, end, _) = timeline(5, Timing::default());
    assert_eq!(events, vec![ev(0, Sms, "0001"), ev(120, Tts, "0001")]);
    assert_eq!(end, 300);
}

#[test]
fn workflow_6_sends_one_sms_and_expires_with_its_pin() {
    let (events, end, _) = timeline(6, Timing::default());
    assert_eq!(events, vec![ev(0, Sms, "0001")]);
    assert_eq!(end, 300);
}

#[test]
fn workflow_7_places_one_call_and_expires_with_its_pin() {
    let (events, end, _) = timeline(7, Timing::new(Some(120), None));
    assert_eq!(events, vec![ev(0, Tts, "0001")]);
    assert_eq!(end, 120);
}

#[test]
fn next_event_wait_replaces_every_default_wait() {
    let (events, end, _) = timeline(1, Timing::new(Some(360), Some(120)));
    assert_eq!(
        events,
        vec![
            ev(0, Sms, "0001"),
            ev(120, Tts, "0001"),
            ev(240, Tts, "0001")
        ],
        "pin_expiry 360 / next_event_wait 120: all three events use one code"
    );
    assert_eq!(end, 360);
}

#[test]
fn a_pin_expiry_of_two_waits_renews_the_pin_for_the_third_event() {
    let (events, end, _) = timeline(1, Timing::new(Some(240), Some(120)));
    assert_eq!(
        events,
        vec![
            ev(0, Sms, "0001"),
            ev(120, Tts, "0001"),
            ev(240, Tts, "0002")
        ]
    );
    assert_eq!(end, 480);
}

#[test]
fn a_pin_expiry_that_is_not_a_multiple_of_the_wait_becomes_the_wait() {
    assert_eq!(Timing::new(Some(200), Some(120)).pin_expiry, 120);
    assert_eq!(Timing::new(Some(90), Some(120)).pin_expiry, 120);
    assert_eq!(Timing::new(Some(240), Some(120)).pin_expiry, 240);
    assert_eq!(Timing::new(Some(200), None).pin_expiry, 200);
    assert_eq!(
        Timing::new(None, Some(120)).pin_expiry,
        120,
        "the default 300 too"
    );
    assert_eq!(
        Timing::new(None, Some(100)).pin_expiry,
        300,
        "300 is a multiple of 100"
    );
    assert_eq!(
        Timing::new(None, Some(900)).pin_expiry,
        900,
        "no stretch without a valid PIN"
    );
    let (events, _, _) = timeline(1, Timing::new(Some(200), Some(120)));
    let pins: Vec<&str> = events.iter().map(|e| e.2.as_str()).collect();
    assert_eq!(
        pins,
        ["0001", "0002", "0003"],
        "every event gets a new code"
    );
}

#[test]
fn the_right_code_verifies_and_stops_the_workflow() {
    let mut m = CountingMinter::new();
    let (mut v, _) = start(1, Timing::default(), &mut m);
    let outcome = v.check(&hash_of("0001"), 4, t(10));
    assert!(matches!(outcome, CheckOutcome::Verified { .. }));
    assert_eq!(v.status, Status::Success);
    assert_eq!(v.next_due(), None);
    assert_eq!(v.finalized_at(t(11)), Some(t(10)));
    assert_eq!(v.advance(t(125), &mut m), None, "no call after success");
}

#[test]
fn two_wrong_codes_leave_a_third_try_and_the_third_wrong_code_fails_the_request() {
    let mut m = CountingMinter::new();
    let (mut v, _) = start(1, Timing::default(), &mut m);
    assert_eq!(
        v.check(&hash_of("9999"), 4, t(1)),
        CheckOutcome::Mismatch { checks_left: 2 }
    );
    assert_eq!(
        v.check(&hash_of("9998"), 4, t(2)),
        CheckOutcome::Mismatch { checks_left: 1 }
    );
    assert_eq!(
        v.check(&hash_of("9997"), 4, t(3)),
        CheckOutcome::TooManyAttempts
    );
    assert_eq!(v.status, Status::Failed);
    assert_eq!(
        v.check(&hash_of("0001"), 4, t(4)),
        CheckOutcome::NotActive,
        "even the right code"
    );
    assert_eq!(v.checks.len(), 3);
}

#[test]
fn the_right_code_on_the_third_try_still_verifies() {
    let mut m = CountingMinter::new();
    let (mut v, _) = start(1, Timing::default(), &mut m);
    v.check(&hash_of("9999"), 4, t(1));
    v.check(&hash_of("9998"), 4, t(2));
    assert!(matches!(
        v.check(&hash_of("0001"), 4, t(3)),
        CheckOutcome::Verified { .. }
    ));
}

#[test]
fn a_new_pin_gives_three_new_tries_and_the_old_pin_stops_working() {
    let mut m = CountingMinter::new();
    let (mut v, _) = start(1, Timing::new(Some(120), Some(120)), &mut m);
    v.check(&hash_of("9999"), 4, t(1));
    v.check(&hash_of("9998"), 4, t(2));
    let order = v.advance(t(120), &mut m).expect("second event is due");
    assert_eq!(order.sealed_pin, b"0002");
    assert_eq!(
        v.check(&hash_of("0001"), 4, t(121)),
        CheckOutcome::Mismatch { checks_left: 2 }
    );
    assert_eq!(
        v.check(&hash_of("9998"), 4, t(122)),
        CheckOutcome::Mismatch { checks_left: 1 }
    );
    assert!(matches!(
        v.check(&hash_of("0002"), 4, t(123)),
        CheckOutcome::Verified { .. }
    ));
}

#[test]
fn an_expired_pin_never_matches_even_before_the_next_event() {
    let mut m = CountingMinter::new();
    // Workflow 1 defaults: the first PIN expires at 300, the last call is at 305.
    let (mut v, _) = start(1, Timing::default(), &mut m);
    v.advance(t(125), &mut m);
    assert_eq!(
        v.check(&hash_of("0001"), 4, t(301)),
        CheckOutcome::Mismatch { checks_left: 2 }
    );
    assert_eq!(v.status_at(t(301)), Status::InProgress);
}

#[test]
fn a_check_after_the_last_pin_expired_finds_the_request_expired() {
    let mut m = CountingMinter::new();
    let (mut v, _) = start(6, Timing::default(), &mut m);
    assert_eq!(v.status_at(t(299)), Status::InProgress);
    assert_eq!(v.status_at(t(300)), Status::Expired);
    assert_eq!(v.finalized_at(t(400)), Some(t(300)));
    assert_eq!(
        v.check(&hash_of("0001"), 4, t(301)),
        CheckOutcome::NotActive
    );
    assert_eq!(v.status, Status::Expired);
}

#[test]
fn cancel_is_refused_in_the_first_30_seconds() {
    let mut m = CountingMinter::new();
    let (mut v, _) = start(1, Timing::default(), &mut m);
    assert_eq!(v.cancel(t(29)), Err(ControlError::CancelTooEarly));
    assert_eq!(v.cancel(t(30)), Ok(()));
    assert_eq!(v.status, Status::Cancelled);
    assert_eq!(v.next_due(), None);
    assert_eq!(v.cancel(t(31)), Err(ControlError::NotActive));
}

#[test]
fn cancel_is_refused_once_the_second_event_has_started() {
    let mut m = CountingMinter::new();
    let (mut v, _) = start(1, Timing::default(), &mut m);
    assert!(v.advance(t(125), &mut m).is_some());
    assert_eq!(v.cancel(t(126)), Err(ControlError::CancelTooLate));
    assert_eq!(v.status, Status::InProgress);
}

#[test]
fn trigger_runs_the_next_event_now_and_the_workflow_continues_from_there() {
    let mut m = CountingMinter::new();
    let (mut v, _) = start(1, Timing::default(), &mut m);
    let order = v.trigger_next(t(10), &mut m).unwrap();
    assert_eq!((order.channel, order.created_at), (Tts, t(10)));
    assert_eq!(order.sealed_pin, b"0001", "the PIN is still valid");
    assert_eq!(
        v.next_event_at,
        Some(t(190)),
        "180 s after the triggered call"
    );
    let order = v.trigger_next(t(20), &mut m).unwrap();
    assert_eq!(order.channel, Tts);
    assert_eq!(
        v.trigger_next(t(30), &mut m),
        Err(ControlError::NoMoreEvents)
    );
    assert_eq!(
        v.next_due(),
        Some(t(300)),
        "the first PIN still bounds the request"
    );
}

#[test]
fn control_on_a_finished_request_reports_it_inactive() {
    let mut m = CountingMinter::new();
    let (mut v, _) = start(6, Timing::default(), &mut m);
    assert_eq!(v.trigger_next(t(400), &mut m), Err(ControlError::NotActive));
    assert_eq!(v.cancel(t(400)), Err(ControlError::NotActive));
}

#[test]
fn an_event_that_came_due_while_nothing_ran_fires_late_with_a_new_pin() {
    let mut m = CountingMinter::new();
    let (mut v, _) = start(1, Timing::default(), &mut m);
    // The server was down from t=10 to t=1000: the call due at 125 fires now.
    let order = v.advance(t(1000), &mut m).expect("overdue event fires");
    assert_eq!((order.channel, order.created_at), (Tts, t(1000)));
    assert_eq!(order.sealed_pin, b"0002", "the first PIN expired at 300");
    assert_eq!(v.next_event_at, Some(t(1180)));
    assert_eq!(v.advance(t(1000), &mut m), None, "nothing fires twice");
}

#[test]
fn a_custom_pin_is_reused_when_a_new_pin_is_due() {
    let mut m = CountingMinter::new();
    let mut req = new_request(1, Timing::new(Some(120), Some(120)));
    req.custom_pin = Some(IssuedPin {
        hash: hash_of("AKFG3424"),
        sealed: b"AKFG3424".to_vec(),
    });
    let (mut v, first) = Verification::start(req, t(0), &mut m);
    assert_eq!(first.sealed_pin, b"AKFG3424");
    v.check(&hash_of("0000"), 4, t(1));
    let second = v.advance(t(120), &mut m).unwrap();
    assert_eq!(second.sealed_pin, b"AKFG3424");
    assert_eq!(m.pins, 0, "no PIN was generated");
    assert_eq!(
        v.check(&hash_of("1111"), 4, t(121)),
        CheckOutcome::Mismatch { checks_left: 2 }
    );
}

/// A Verify v2 request: an SMS, then a call with a new code unless `reuse`, each lasting 60 s,
/// codes living until the workflow ends.
fn v2_request(reuse: bool) -> NewVerification {
    let mut new = new_request(5, Timing::default());
    for step in &mut new.steps {
        step.wait = 60;
    }
    new.steps[1].new_code = !reuse;
    new.policy.code_life = CodeLife::UntilWorkflowEnds;
    new
}

#[test]
fn a_new_code_for_the_next_step_ends_the_old_one_and_its_delivery_deadline() {
    let mut m = CountingMinter::new();
    let (mut v, first) = Verification::start(v2_request(false), t(0), &mut m);
    assert_eq!(
        first.pin_expires_at,
        Some(t(60)),
        "replaced at the next step"
    );
    assert_eq!(v.pin.expires_at, t(120));
    let second = v.advance(t(60), &mut m).unwrap();
    assert_eq!(second.sealed_pin, b"0002");
    assert_eq!(second.pin_expires_at, Some(t(120)));
    assert_eq!(
        v.check(&hash_of("0001"), 4, t(61)),
        CheckOutcome::Mismatch { checks_left: 2 }
    );
    assert_eq!(v.finalized_at(t(1_000)), Some(t(120)));
    assert_eq!(v.status_at(t(119)), Status::InProgress);
    assert_eq!(v.status_at(t(120)), Status::Expired);
}

#[test]
fn moving_to_the_next_step_early_brings_the_end_of_the_workflow_forward() {
    let mut m = CountingMinter::new();
    let (mut v, _) = Verification::start(v2_request(false), t(0), &mut m);
    let second = v.trigger_next(t(10), &mut m).unwrap();
    assert_eq!(second.pin_expires_at, Some(t(70)));
    assert_eq!(v.next_due(), Some(t(70)));
    assert_eq!(v.status_at(t(70)), Status::Expired);
    assert_eq!(
        v.trigger_next(t(20), &mut m),
        Err(ControlError::NoMoreEvents)
    );
}

#[test]
fn a_reused_code_carries_on_into_the_next_step_and_lives_to_its_end() {
    let mut m = CountingMinter::new();
    let (mut v, first) = Verification::start(v2_request(true), t(0), &mut m);
    assert_eq!(first.pin_expires_at, Some(t(120)), "not replaced");
    v.check(&hash_of("9999"), 4, t(1));
    let second = v.advance(t(60), &mut m).unwrap();
    assert_eq!(second.sealed_pin, b"0001");
    assert_eq!(m.pins, 1);
    assert_eq!(
        v.check(&hash_of("9998"), 4, t(61)),
        CheckOutcome::Mismatch { checks_left: 1 },
        "the tries of a reused code go on"
    );
    assert!(matches!(
        v.check(&hash_of("0001"), 4, t(119)),
        CheckOutcome::Verified { .. }
    ));
}

#[test]
fn each_new_code_gets_its_own_tries() {
    let mut m = CountingMinter::new();
    let (mut v, _) = Verification::start(v2_request(false), t(0), &mut m);
    v.check(&hash_of("9999"), 4, t(1));
    v.check(&hash_of("9998"), 4, t(2));
    v.advance(t(60), &mut m).unwrap();
    assert_eq!(
        v.check(&hash_of("9997"), 4, t(61)),
        CheckOutcome::Mismatch { checks_left: 2 }
    );
}

#[test]
fn a_custom_code_is_the_new_code_of_every_step() {
    let mut m = CountingMinter::new();
    let mut req = v2_request(false);
    req.custom_pin = Some(IssuedPin {
        hash: hash_of("AKFG3424"),
        sealed: b"AKFG3424".to_vec(),
    });
    let (mut v, _) = Verification::start(req, t(0), &mut m);
    v.check(&hash_of("0000"), 4, t(1));
    let second = v.advance(t(60), &mut m).unwrap();
    assert_eq!(second.sealed_pin, b"AKFG3424");
    assert_eq!(m.pins, 0);
    assert_eq!(
        v.check(&hash_of("0000"), 4, t(61)),
        CheckOutcome::Mismatch { checks_left: 2 },
        "a new step starts its tries again"
    );
    assert!(matches!(
        v.check(&hash_of("AKFG3424"), 8, t(62)),
        CheckOutcome::Verified { .. }
    ));
}

fn failed(
    v: &mut Verification,
    event: &verifyd::domain::EventId,
    at: Instant,
    m: &mut CountingMinter,
) -> Result<DeliveryOrder, ControlError> {
    match v.apply(
        &Command::StepFailed {
            event_id: event.clone(),
        },
        at,
        m,
    ) {
        CommandOutcome::Advanced(outcome) => outcome.map(|order| *order),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_step_that_cannot_be_delivered_gives_way_to_the_next_when_the_policy_says_so() {
    let mut m = CountingMinter::new();
    let mut req = v2_request(false);
    req.policy.next_on_failure = true;
    let (mut v, first) = Verification::start(req, t(0), &mut m);
    let second = failed(&mut v, &first.event_id, t(5), &mut m).unwrap();
    assert_eq!(second.created_at, t(5));
    assert_eq!(second.channel, Channel::Voice);
    assert_eq!(
        failed(&mut v, &first.event_id, t(6), &mut m),
        Err(ControlError::Ignored),
        "an old step's failure changes nothing"
    );
    assert_eq!(
        failed(&mut v, &second.event_id, t(7), &mut m),
        Err(ControlError::NoMoreEvents),
        "the last step waits for its end"
    );
}

#[test]
fn v1_events_keep_their_times_when_one_cannot_be_delivered() {
    let mut m = CountingMinter::new();
    let (mut v, first) = Verification::start(new_request(1, Timing::default()), t(0), &mut m);
    assert_eq!(
        failed(&mut v, &first.event_id, t(5), &mut m),
        Err(ControlError::Ignored)
    );
    assert_eq!(v.next_event_at, Some(t(125)));
}
