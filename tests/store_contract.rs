//! One suite for every storage engine: each test takes a fresh store from each engine in
//! [`engines`] and checks the contract of the store traits against it. PostgreSQL joins when
//! `VERIFYD_TEST_POSTGRES_URL` is set (a schema of its own per test).

#[path = "support/mod.rs"]
mod support;

use support::engines::{engines, engines_with_lease};

use std::sync::Arc;

use chrono::{DateTime, Duration};
use verifyd::api::v1::workflow::Workflow;
use verifyd::clock::ManualClock;
use verifyd::domain::limits::{Bucket, KeyLimits, Limit, Rate};
use verifyd::domain::locale::Locale;
use verifyd::domain::template::{TemplateName, TemplateText};
use verifyd::domain::testing::SequenceMinter;
use verifyd::domain::Channel;
use verifyd::domain::{
    CheckOutcome, Command, CommandOutcome, ControlError, DeliveryOrder, EventId, Instant,
    RequestId, Status, Verification,
};
use verifyd::store::postgres::PgStore;
use verifyd::store::sqlite::SqliteStore;
use verifyd::store::templates::{
    FragmentRecord, TemplateChange, TemplateRecord, TemplateRefusal, Window,
};
use verifyd::store::{
    ApiKeyRecord, AppRecord, AttemptError, AttemptState, CreateOutcome, InboxLog, InboxMessage,
    KeyState, LimitsSet, ReceiptApplied, SharedClock, Store, VerificationStore,
};

fn t(secs: i64) -> Instant {
    DateTime::from_timestamp(1_750_000_000, 0).unwrap() + Duration::seconds(secs)
}

/// A clock standing at `t(secs)`, for operations that read the time once they hold the row.
fn at(secs: i64) -> SharedClock {
    Arc::new(ManualClock::new(t(secs)))
}

/// Event ids are random in production; here every minter counts from its own range.
fn minter() -> Box<SequenceMinter> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT_RANGE: AtomicU64 = AtomicU64::new(1);
    Box::new(SequenceMinter {
        pins: 0,
        events: NEXT_RANGE.fetch_add(1, Ordering::Relaxed) << 32,
    })
}

/// A check with the PIN every verification here starts with.
fn right_code() -> Command {
    Command::Check {
        code_hash: SequenceMinter::hash("0001"),
        code_len: 4,
    }
}

fn new_verification(
    account: &str,
    number: &str,
    id_byte: u8,
    workflow: i64,
) -> (Verification, DeliveryOrder) {
    let new = Workflow::parse(workflow).unwrap().request(
        RequestId::from_bytes([id_byte; 16]),
        account,
        number,
    );
    Verification::start(new, t(0), minter().as_mut())
}

#[tokio::test]
async fn a_created_verification_reads_back_identically_and_only_for_its_account() {
    for (engine, store, _dir) in engines().await {
        let (v, first) = new_verification("k1", "447700100001", 1, 1);
        assert_eq!(
            store.create(v.clone(), first.clone(), t(0)).await.unwrap(),
            CreateOutcome::Created,
            "{engine}"
        );
        assert_eq!(
            store.find("k1", std::slice::from_ref(&v.id)).await.unwrap(),
            vec![v.clone()],
            "{engine}"
        );
        assert!(
            store
                .find("k2", std::slice::from_ref(&v.id))
                .await
                .unwrap()
                .is_empty(),
            "{engine}"
        );
        assert_eq!(
            store.undelivered(10).await.unwrap(),
            vec![first],
            "{engine}: the first delivery is stored with it"
        );
    }
}

#[tokio::test]
async fn one_verification_in_progress_per_account_and_number() {
    for (engine, store, _dir) in engines().await {
        let (a, fa) = new_verification("k1", "447700100002", 2, 1);
        let (b, fb) = new_verification("k1", "447700100002", 3, 1);
        let (c, fc) = new_verification("k2", "447700100002", 4, 1);
        store.create(a.clone(), fa, t(0)).await.unwrap();
        assert_eq!(
            store.create(b, fb, t(1)).await.unwrap(),
            CreateOutcome::Concurrent(a.id.clone()),
            "{engine}"
        );
        assert_eq!(
            store.create(c, fc, t(1)).await.unwrap(),
            CreateOutcome::Created,
            "{engine}: other account"
        );
    }
}

#[tokio::test]
async fn a_number_is_free_again_once_its_verification_has_expired_even_if_not_yet_recorded() {
    for (engine, store, _dir) in engines().await {
        let (a, fa) = new_verification("k1", "447700100003", 5, 6);
        store.create(a.clone(), fa, t(0)).await.unwrap();
        let (b, fb) = new_verification("k1", "447700100003", 6, 6);
        assert_eq!(
            store.create(b, fb, t(301)).await.unwrap(),
            CreateOutcome::Created,
            "{engine}"
        );
        let old = store.find("k1", std::slice::from_ref(&a.id)).await.unwrap();
        assert_eq!(
            old[0].status,
            Status::Expired,
            "{engine}: the old one is stored as expired"
        );
    }
}

#[tokio::test]
async fn many_concurrent_creates_for_one_number_let_exactly_one_through() {
    for (engine, store, _dir) in engines().await {
        let mut tasks = Vec::new();
        for i in 0..20u8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let (v, f) = new_verification("k1", "447700100004", 100 + i, 1);
                store.create(v, f, t(0)).await.unwrap()
            }));
        }
        let mut created = 0;
        for task in tasks {
            if task.await.unwrap() == CreateOutcome::Created {
                created += 1;
            }
        }
        assert_eq!(created, 1, "{engine}");
    }
}

#[tokio::test]
async fn a_burst_of_creates_gives_each_number_one_verification_and_its_repeats_the_holder() {
    for (engine, store, _dir) in engines().await {
        let mut tasks = Vec::new();
        // Three creates for each of twenty numbers, all submitted before any is answered, so an
        // engine that groups writes sees repeats of one number inside one group.
        for i in 0..60u8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let number = format!("4477001002{:02}", i % 20);
                let (v, f) = new_verification("k1", &number, 160 + i, 1);
                let outcome = store.create(v.clone(), f.clone(), t(0)).await.unwrap();
                (number, v.id.clone(), f, outcome)
            }));
        }
        let mut holders = std::collections::HashMap::new();
        let mut repeats = Vec::new();
        let mut firsts = Vec::new();
        for task in tasks {
            let (number, id, first, outcome) = task.await.unwrap();
            match outcome {
                CreateOutcome::Created => {
                    assert!(
                        holders.insert(number.clone(), id).is_none(),
                        "{engine}: two verifications created for {number}"
                    );
                    firsts.push(first);
                }
                CreateOutcome::Concurrent(holder) => repeats.push((number, holder)),
            }
        }
        assert_eq!(holders.len(), 20, "{engine}");
        for (number, holder) in repeats {
            assert_eq!(Some(&holder), holders.get(&number), "{engine}: {number}");
        }
        let mut stored = store.undelivered(100).await.unwrap();
        stored.sort_by(|a, b| a.event_id.as_str().cmp(b.event_id.as_str()));
        firsts.sort_by(|a, b| a.event_id.as_str().cmp(b.event_id.as_str()));
        assert_eq!(
            stored, firsts,
            "{engine}: exactly the created ones have their first delivery"
        );
    }
}

#[tokio::test]
async fn checks_are_persisted_and_the_third_wrong_code_fails_the_request() {
    for (engine, store, _dir) in engines().await {
        let (v, f) = new_verification("k1", "447700100005", 7, 1);
        store.create(v.clone(), f, t(0)).await.unwrap();
        let wrong = Command::Check {
            code_hash: SequenceMinter::hash("9999"),
            code_len: 4,
        };
        for i in 0..2 {
            let (outcome, _) = store
                .apply("k1", &v.id, wrong.clone(), at(i), minter())
                .await
                .unwrap()
                .unwrap();
            assert!(
                matches!(
                    outcome,
                    CommandOutcome::Checked(CheckOutcome::Mismatch { .. })
                ),
                "{engine}"
            );
        }
        let (outcome, after) = store
            .apply("k1", &v.id, wrong.clone(), at(3), minter())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            outcome,
            CommandOutcome::Checked(CheckOutcome::TooManyAttempts),
            "{engine}"
        );
        assert_eq!(after.status, Status::Failed);
        let stored = store.find("k1", std::slice::from_ref(&v.id)).await.unwrap();
        assert_eq!(stored[0].status, Status::Failed, "{engine}");
        assert_eq!(stored[0].checks.len(), 3, "{engine}");
        assert!(
            store
                .apply("k2", &v.id, wrong, at(4), minter())
                .await
                .unwrap()
                .is_none(),
            "{engine}: other account"
        );
    }
}

#[tokio::test]
async fn another_accounts_check_on_a_verification_in_progress_finds_nothing_and_does_not_count() {
    for (engine, store, _dir) in engines().await {
        let (v, f) = new_verification("k1", "447700100021", 21, 1);
        store.create(v.clone(), f, t(0)).await.unwrap();
        let wrong = Command::Check {
            code_hash: SequenceMinter::hash("9999"),
            code_len: 4,
        };
        assert!(
            store
                .apply("k2", &v.id, wrong.clone(), at(1), minter())
                .await
                .unwrap()
                .is_none(),
            "{engine}"
        );
        let (outcome, _) = store
            .apply("k1", &v.id, wrong, at(2), minter())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            outcome,
            CommandOutcome::Checked(CheckOutcome::Mismatch { checks_left: 2 }),
            "{engine}: the other account's try left no trace"
        );
    }
}

#[tokio::test]
async fn a_sqlite_verification_is_checked_after_reopening_the_file_with_its_earlier_checks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reopen-check.db");
    let (v, f) = new_verification("k1", "447700100022", 22, 1);
    let wrong = Command::Check {
        code_hash: SequenceMinter::hash("9999"),
        code_len: 4,
    };
    {
        let store = SqliteStore::open(&path).unwrap();
        store.create(v.clone(), f, t(0)).await.unwrap();
        store
            .apply("k1", &v.id, wrong.clone(), at(1), minter())
            .await
            .unwrap()
            .unwrap();
    }
    // A new process starts with nothing remembered: the row is all there is.
    let store = SqliteStore::open(&path).unwrap();
    let (outcome, after) = store
        .apply("k1", &v.id, wrong, at(2), minter())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        outcome,
        CommandOutcome::Checked(CheckOutcome::Mismatch { checks_left: 1 })
    );
    assert_eq!(after.checks.len(), 2);
}

#[tokio::test]
async fn the_right_code_verifies_and_frees_the_number() {
    for (engine, store, _dir) in engines().await {
        let (v, f) = new_verification("k1", "447700100006", 8, 1);
        store.create(v.clone(), f, t(0)).await.unwrap();
        let right = right_code();
        let (outcome, _) = store
            .apply("k1", &v.id, right, at(5), minter())
            .await
            .unwrap()
            .unwrap();
        assert!(
            matches!(
                outcome,
                CommandOutcome::Checked(CheckOutcome::Verified { .. })
            ),
            "{engine}"
        );
        let (again, fa) = new_verification("k1", "447700100006", 9, 1);
        assert_eq!(
            store.create(again, fa, t(6)).await.unwrap(),
            CreateOutcome::Created,
            "{engine}"
        );
    }
}

#[tokio::test]
async fn due_events_are_claimed_once_and_their_deliveries_stored_until_marked() {
    for (engine, store, _dir) in engines().await {
        let (v, f) = new_verification("k1", "447700100007", 10, 1);
        store.create(v.clone(), f.clone(), t(0)).await.unwrap();
        store
            .mark_delivered(vec![(f.request_id.clone(), f.event_id.clone())])
            .await
            .unwrap();
        assert!(store.undelivered(10).await.unwrap().is_empty(), "{engine}");
        assert_eq!(store.next_due().await.unwrap(), Some(t(125)), "{engine}");

        assert!(
            store
                .claim_due(at(124), 100, minter())
                .await
                .unwrap()
                .is_empty(),
            "{engine}: not due yet"
        );
        let orders = store.claim_due(at(125), 100, minter()).await.unwrap();
        assert_eq!(orders.len(), 1, "{engine}");
        assert!(
            store
                .claim_due(at(125), 100, minter())
                .await
                .unwrap()
                .is_empty(),
            "{engine}: claimed once"
        );
        assert_eq!(store.undelivered(10).await.unwrap(), orders, "{engine}");
        assert_eq!(store.next_due().await.unwrap(), Some(t(305)), "{engine}");

        store
            .mark_delivered(vec![(
                orders[0].request_id.clone(),
                orders[0].event_id.clone(),
            )])
            .await
            .unwrap();
        assert!(store.undelivered(10).await.unwrap().is_empty(), "{engine}");
    }
}

#[tokio::test]
async fn claiming_records_expiry_when_no_event_is_left() {
    for (engine, store, _dir) in engines().await {
        let (v, f) = new_verification("k1", "447700100008", 11, 6);
        store.create(v.clone(), f, t(0)).await.unwrap();
        assert_eq!(store.next_due().await.unwrap(), Some(t(300)), "{engine}");
        assert!(
            store
                .claim_due(at(300), 100, minter())
                .await
                .unwrap()
                .is_empty(),
            "{engine}"
        );
        assert_eq!(
            store.find("k1", std::slice::from_ref(&v.id)).await.unwrap()[0].status,
            Status::Expired,
            "{engine}"
        );
        assert_eq!(store.next_due().await.unwrap(), None, "{engine}");
    }
}

#[tokio::test]
async fn control_commands_are_persisted_with_their_deliveries() {
    for (engine, store, _dir) in engines().await {
        let (v, f) = new_verification("k1", "447700100009", 12, 5);
        store.create(v.clone(), f.clone(), t(0)).await.unwrap();
        store
            .mark_delivered(vec![(f.request_id, f.event_id)])
            .await
            .unwrap();
        let (outcome, _) = store
            .apply("k1", &v.id, Command::Next, at(10), minter())
            .await
            .unwrap()
            .unwrap();
        let CommandOutcome::Advanced(Ok(order)) = outcome else {
            panic!("{engine}: {outcome:?}")
        };
        assert_eq!(
            store.undelivered(10).await.unwrap(),
            vec![*order],
            "{engine}"
        );
        let (outcome, _) = store
            .apply("k1", &v.id, Command::Next, at(11), minter())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            outcome,
            CommandOutcome::Advanced(Err(ControlError::NoMoreEvents)),
            "{engine}"
        );
        let (outcome, _) = store
            .apply("k1", &v.id, Command::Cancel, at(40), minter())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            outcome,
            CommandOutcome::Cancelled(Err(ControlError::CancelTooLate)),
            "{engine}"
        );
    }
}

#[tokio::test]
async fn a_delivery_is_swept_up_only_once_its_lease_has_run_out() {
    for (engine, store, _dir) in engines().await {
        let (v, f) = new_verification("k1", "447700100011", 14, 1);
        store.create(v, f, t(0)).await.unwrap();
        assert!(
            store.claim_stale_deliveries(10).await.unwrap().is_empty(),
            "{engine}: still leased"
        );
    }
    for (engine, store, _dir) in engines_with_lease(std::time::Duration::ZERO).await {
        let (v, f) = new_verification("k1", "447700100012", 15, 1);
        store.create(v, f.clone(), t(0)).await.unwrap();
        assert_eq!(
            store.claim_stale_deliveries(10).await.unwrap(),
            vec![f.clone()],
            "{engine}"
        );
        store
            .mark_delivered(vec![(f.request_id, f.event_id)])
            .await
            .unwrap();
        assert!(
            store.claim_stale_deliveries(10).await.unwrap().is_empty(),
            "{engine}"
        );
    }
}

#[tokio::test]
async fn the_deliveries_of_an_ended_request_are_dropped() {
    for (engine, store, _dir) in engines_with_lease(std::time::Duration::ZERO).await {
        let (v, f) = new_verification("k1", "447700100013", 16, 1);
        store.create(v.clone(), f, t(0)).await.unwrap();
        let right = right_code();
        store
            .apply("k1", &v.id, right, at(1), minter())
            .await
            .unwrap()
            .unwrap();
        assert!(
            store.undelivered(10).await.unwrap().is_empty(),
            "{engine}: gone with the request"
        );
        assert!(
            store.claim_stale_deliveries(10).await.unwrap().is_empty(),
            "{engine}"
        );
    }
}

#[tokio::test]
async fn keys_are_stored_with_their_state() {
    for (engine, store, _dir) in engines().await {
        let key = ApiKeyRecord {
            api_key: "abcd1234".into(),
            name: "shop".into(),
            secret_hash: [7; 32],
            state: KeyState::Active,
            allow_custom_pin: false,
            created_at: t(0),
            limits: Default::default(),
        };
        store.insert_key(key.clone()).await.unwrap();
        assert!(
            store.insert_key(key.clone()).await.is_err(),
            "{engine}: keys are unique"
        );
        assert_eq!(
            store.list_keys().await.unwrap(),
            vec![key.clone()],
            "{engine}"
        );
        assert!(store
            .set_key_state("abcd1234", KeyState::Disabled)
            .await
            .unwrap());
        assert!(!store
            .set_key_state("nope", KeyState::Disabled)
            .await
            .unwrap());
        assert_eq!(
            store.list_keys().await.unwrap()[0].state,
            KeyState::Disabled,
            "{engine}"
        );
        let own =
            KeyLimits::parse("per_destination=3/10m per_prefix=none sms_countries=GB,IE").unwrap();
        let none = KeyLimits::default();
        assert_eq!(
            store
                .set_key_limits("abcd1234", &none, own.clone())
                .await
                .unwrap(),
            LimitsSet::Set
        );
        assert_eq!(
            store
                .set_key_limits("nope", &none, own.clone())
                .await
                .unwrap(),
            LimitsSet::NoKey
        );
        let read = store.get_key("abcd1234").await.unwrap().unwrap();
        assert_eq!(read.limits, own, "{engine}");
        assert_eq!(store.list_keys().await.unwrap()[0].limits, own, "{engine}");
        // A change made from limits read before this one is not written over it.
        let stale = KeyLimits::parse("per_prefix=1/h").unwrap();
        assert_eq!(
            store
                .set_key_limits("abcd1234", &none, stale)
                .await
                .unwrap(),
            LimitsSet::Changed(own.clone()),
            "{engine}"
        );
        assert_eq!(
            store.get_key("abcd1234").await.unwrap().unwrap().limits,
            own
        );
    }
}

#[tokio::test]
async fn applications_are_stored_under_an_existing_key_and_found_by_id() {
    for (engine, store, _dir) in engines().await {
        let app = AppRecord {
            application_id: "5b1c4f0e-7a9d-4f39-8f3c-2d4b6a1e9c07".into(),
            api_key: "abcd1234".into(),
            public_key: "-----BEGIN PUBLIC KEY-----\n…\n-----END PUBLIC KEY-----\n".into(),
            status_url: Some("https://example.com/verify-status".into()),
            signature_secret_sealed: vec![1, 2, 3],
            created_at: t(0),
        };
        assert!(
            store.insert_app(app.clone()).await.is_err(),
            "{engine}: an application needs an existing key"
        );
        store
            .insert_key(ApiKeyRecord {
                api_key: "abcd1234".into(),
                name: "shop".into(),
                secret_hash: [7; 32],
                state: KeyState::Active,
                allow_custom_pin: false,
                created_at: t(0),
                limits: Default::default(),
            })
            .await
            .unwrap();
        store.insert_app(app.clone()).await.unwrap();
        assert!(
            store.insert_app(app.clone()).await.is_err(),
            "{engine}: ids are unique"
        );
        let second = AppRecord {
            application_id: "0d9e1b2c-3a4f-4e5d-9c8b-7a6f5e4d3c2b".into(),
            status_url: None,
            created_at: t(1),
            ..app.clone()
        };
        store.insert_app(second.clone()).await.unwrap();
        assert_eq!(
            store.get_app(&app.application_id).await.unwrap(),
            Some(app.clone()),
            "{engine}"
        );
        assert_eq!(store.get_app("nope").await.unwrap(), None, "{engine}");
        assert_eq!(
            store.list_apps().await.unwrap(),
            vec![app, second],
            "{engine}"
        );
    }
}

async fn with_key(store: &dyn Store, api_key: &str) {
    store
        .insert_key(ApiKeyRecord {
            api_key: api_key.into(),
            name: "shop".into(),
            secret_hash: [7; 32],
            state: KeyState::Active,
            allow_custom_pin: false,
            created_at: t(0),
            limits: Default::default(),
        })
        .await
        .unwrap();
}

fn template(account: &str, n: usize) -> TemplateRecord {
    TemplateRecord {
        id: format!("00000000-0000-4000-8000-{n:012}"),
        account: account.into(),
        name: TemplateName::parse(&format!("t-{n}")).unwrap(),
        is_default: false,
        created_at: t(n as i64),
    }
}

fn fragment(template_id: &str, n: usize, channel: Channel, locale: &str) -> FragmentRecord {
    FragmentRecord {
        id: format!("00000000-0000-4000-9000-{n:012}"),
        template_id: template_id.into(),
        channel,
        locale: Locale::from_tag(locale).unwrap(),
        text: TemplateText::parse(&format!("{n}: ${{code}}")).unwrap(),
        created_at: t(n as i64),
        updated_at: t(n as i64),
    }
}

const ALL: Window = Window {
    offset: 0,
    limit: 100,
};

#[tokio::test]
async fn an_account_keeps_ten_templates_of_distinct_names_and_its_first_is_the_default() {
    for (engine, store, _dir) in engines().await {
        with_key(&*store, "k1").await;
        with_key(&*store, "k2").await;
        let first = store
            .create_template(template("k1", 1))
            .await
            .unwrap()
            .unwrap();
        assert!(first.is_default, "{engine}");
        let same_name = TemplateRecord {
            id: "00000000-0000-4000-8000-999999999999".into(),
            ..template("k1", 1)
        };
        assert_eq!(
            store.create_template(same_name).await.unwrap(),
            Err(TemplateRefusal::NameTaken),
            "{engine}"
        );
        for n in 2..=10 {
            let made = store
                .create_template(template("k1", n))
                .await
                .unwrap()
                .unwrap();
            assert!(!made.is_default, "{engine}: one default");
        }
        assert_eq!(
            store.create_template(template("k1", 11)).await.unwrap(),
            Err(TemplateRefusal::TooMany),
            "{engine}"
        );
        // Another account has its own ten, names and default.
        let other = TemplateRecord {
            name: TemplateName::parse("t-1").unwrap(),
            ..template("k2", 11)
        };
        assert!(
            store
                .create_template(other)
                .await
                .unwrap()
                .unwrap()
                .is_default,
            "{engine}"
        );

        let page = store
            .templates(
                "k1",
                Window {
                    offset: 3,
                    limit: 4,
                },
            )
            .await
            .unwrap();
        assert_eq!(page.total, 10, "{engine}");
        let names: Vec<&str> = page.items.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["t-4", "t-5", "t-6", "t-7"], "{engine}");
        assert_eq!(
            store.templates("k3", ALL).await.unwrap().total,
            0,
            "{engine}"
        );
        assert_eq!(
            store.template("k1", &first.id).await.unwrap(),
            Some(first.clone()),
            "{engine}"
        );
        assert_eq!(
            store.template("k2", &first.id).await.unwrap(),
            None,
            "{engine}: not another's"
        );
    }
}

#[tokio::test]
async fn concurrent_creates_never_give_an_account_more_than_ten_templates_or_two_defaults() {
    for (engine, store, _dir) in engines().await {
        with_key(&*store, "k1").await;
        let tries = (1..=24).map(|n| {
            let store = store.clone();
            tokio::spawn(async move { store.create_template(template("k1", n)).await.unwrap() })
        });
        let mut made = Vec::new();
        for t in tries.collect::<Vec<_>>() {
            if let Ok(template) = t.await.unwrap() {
                made.push(template);
            }
        }
        assert_eq!(made.len(), 10, "{engine}");
        assert_eq!(made.iter().filter(|t| t.is_default).count(), 1, "{engine}");
        assert_eq!(
            store.templates("k1", ALL).await.unwrap().total,
            10,
            "{engine}"
        );
    }
}

#[tokio::test]
async fn a_template_is_renamed_made_the_default_and_deleted_only_when_empty() {
    for (engine, store, _dir) in engines().await {
        with_key(&*store, "k1").await;
        let first = store
            .create_template(template("k1", 1))
            .await
            .unwrap()
            .unwrap();
        let second = store
            .create_template(template("k1", 2))
            .await
            .unwrap()
            .unwrap();
        let rename = |name: &str| TemplateChange {
            name: Some(TemplateName::parse(name).unwrap()),
            is_default: None,
        };
        assert_eq!(
            store
                .update_template("k1", &second.id, rename("t-1"))
                .await
                .unwrap(),
            Err(TemplateRefusal::NameTaken),
            "{engine}"
        );
        let renamed = store
            .update_template("k1", &second.id, rename("second"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(renamed.name.as_str(), "second", "{engine}");
        // Keeping its own name is no clash.
        assert!(store
            .update_template("k1", &second.id, rename("second"))
            .await
            .unwrap()
            .is_ok());
        let make_default = TemplateChange {
            name: None,
            is_default: Some(true),
        };
        let now_default = store
            .update_template("k1", &second.id, make_default.clone())
            .await
            .unwrap()
            .unwrap();
        assert!(now_default.is_default, "{engine}");
        let old = store.template("k1", &first.id).await.unwrap().unwrap();
        assert!(!old.is_default, "{engine}: one default at a time");
        assert_eq!(
            store
                .update_template("k2", &second.id, make_default)
                .await
                .unwrap(),
            Err(TemplateRefusal::TemplateNotFound),
            "{engine}"
        );

        let f = fragment(&second.id, 1, Channel::Sms, "en-gb");
        store
            .create_fragment("k1", f.clone())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            store.delete_template("k1", &second.id).await.unwrap(),
            Err(TemplateRefusal::NotEmpty),
            "{engine}"
        );
        store
            .delete_fragment("k1", &second.id, &f.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            store.delete_template("k2", &second.id).await.unwrap(),
            Err(TemplateRefusal::TemplateNotFound),
            "{engine}"
        );
        store
            .delete_template("k1", &second.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            store.template("k1", &second.id).await.unwrap(),
            None,
            "{engine}"
        );
        assert_eq!(
            store.delete_template("k1", &second.id).await.unwrap(),
            Err(TemplateRefusal::TemplateNotFound),
            "{engine}"
        );
    }
}

#[tokio::test]
async fn a_template_has_one_fragment_per_channel_and_locale_and_gives_its_words_by_locale() {
    for (engine, store, _dir) in engines().await {
        with_key(&*store, "k1").await;
        with_key(&*store, "k2").await;
        let default = store
            .create_template(template("k1", 1))
            .await
            .unwrap()
            .unwrap();
        let named = store
            .create_template(template("k1", 2))
            .await
            .unwrap()
            .unwrap();
        let sms = fragment(&default.id, 1, Channel::Sms, "de-de");
        store
            .create_fragment("k1", sms.clone())
            .await
            .unwrap()
            .unwrap();
        let again = FragmentRecord {
            id: "00000000-0000-4000-9000-999999999999".into(),
            ..sms.clone()
        };
        assert_eq!(
            store.create_fragment("k1", again).await.unwrap(),
            Err(TemplateRefusal::FragmentExists),
            "{engine}"
        );
        assert_eq!(
            store
                .create_fragment("k2", fragment(&default.id, 9, Channel::Sms, "en-us"))
                .await
                .unwrap(),
            Err(TemplateRefusal::TemplateNotFound),
            "{engine}: not into another's template"
        );
        for f in [
            fragment(&default.id, 2, Channel::Voice, "de-de"),
            fragment(&default.id, 3, Channel::Sms, "en-gb"),
            fragment(&default.id, 4, Channel::Email, "de-de"),
            fragment(&named.id, 5, Channel::Sms, "de-de"),
        ] {
            store.create_fragment("k1", f).await.unwrap().unwrap();
        }
        let page = store
            .fragments(
                "k1",
                &default.id,
                Window {
                    offset: 1,
                    limit: 2,
                },
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(page.total, 4, "{engine}");
        let ids: Vec<String> = page.items.iter().map(|f| f.id[30..].to_owned()).collect();
        assert_eq!(ids, ["000002", "000003"], "{engine}");
        assert_eq!(
            store.fragments("k2", &default.id, ALL).await.unwrap(),
            Err(TemplateRefusal::TemplateNotFound),
            "{engine}"
        );

        let changed = TemplateText::parse("Neu: ${code}").unwrap();
        let updated = store
            .update_fragment("k1", &default.id, &sms.id, changed.clone(), t(60))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (updated.text.clone(), updated.updated_at, updated.created_at),
            (changed.clone(), t(60), t(1))
        );
        assert_eq!(
            store.fragment("k1", &default.id, &sms.id).await.unwrap(),
            Ok(updated),
            "{engine}"
        );
        assert_eq!(
            store.fragment("k1", &named.id, &sms.id).await.unwrap(),
            Err(TemplateRefusal::FragmentNotFound),
            "{engine}: a fragment belongs to its own template"
        );

        let de = Locale::from_tag("de-de").unwrap();
        let by_default = store.template_words("k1", None, de).await.unwrap().unwrap();
        let channels: Vec<Channel> = by_default.iter().map(|(c, _)| *c).collect();
        assert_eq!(by_default.len(), 3, "{engine}: {channels:?}");
        assert!(by_default.contains(&(Channel::Sms, changed)), "{engine}");
        let by_name = store
            .template_words("k1", Some(&named.id), de)
            .await
            .unwrap();
        assert_eq!(by_name.map(|w| w.len()), Ok(1), "{engine}");
        assert_eq!(
            store
                .template_words("k2", Some(&named.id), de)
                .await
                .unwrap(),
            Err(TemplateRefusal::TemplateNotFound),
            "{engine}"
        );
        assert_eq!(
            store.template_words("k2", None, de).await.unwrap(),
            Ok(vec![]),
            "{engine}: no default, no words"
        );
        let en_us = Locale::from_tag("en-us").unwrap();
        assert_eq!(
            store.template_words("k1", None, en_us).await.unwrap(),
            Ok(vec![])
        );
    }
}

fn bucket(key: &str, rate: &str) -> Bucket {
    Bucket {
        key: key.into(),
        limit: match key.split(':').next() {
            Some("destination") => Limit::PerDestination,
            Some("prefix") => Limit::PerPrefix,
            Some("country") => Limit::PerCountry,
            Some("requests") => Limit::Requests,
            other => panic!("no limit for {other:?}"),
        },
        rate: Rate::parse(rate).unwrap(),
    }
}

#[tokio::test]
async fn a_limit_lets_its_count_through_per_sliding_window_and_counts_nothing_it_refuses() {
    for (engine, store, _dir) in engines().await {
        // Windows are whole minutes from the epoch; m(20) is on a minute's boundary.
        let m = |secs: i64| t(20 + secs);
        let number = bucket("destination:k1:447700100123", "3/m");
        let country = bucket("country:k1:GB", "4/m");
        for n in 0..3 {
            let taken = store
                .take(vec![number.clone(), country.clone()], m(n))
                .await;
            assert_eq!(taken.unwrap(), Ok(()), "{engine}: hit {n}");
        }
        let refused = store
            .take(vec![country.clone(), number.clone()], m(10))
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(refused.limit, "per destination", "{engine}");
        assert_eq!(refused.retry_after_ms, 50_000 + 1, "{engine}");
        // The refused call counted nowhere: the country has room for one more.
        let other = bucket("destination:k1:447700100124", "3/m");
        assert_eq!(
            store
                .take(vec![other.clone(), country.clone()], m(11))
                .await
                .unwrap(),
            Ok(())
        );
        let full = store
            .take(vec![other, country.clone()], m(12))
            .await
            .unwrap();
        assert_eq!(full.unwrap_err().limit, "per country", "{engine}");
        // A minute on, the earlier hits still weigh as much of the last minute as they cover.
        assert!(
            store
                .take(vec![number.clone()], m(60))
                .await
                .unwrap()
                .is_err(),
            "{engine}"
        );
        assert_eq!(
            store.take(vec![number.clone()], m(81)).await.unwrap(),
            Ok(()),
            "{engine}"
        );
        assert_eq!(
            store.take(vec![number.clone()], m(130)).await.unwrap(),
            Ok(()),
            "{engine}"
        );
        assert_eq!(
            store.take(vec![], m(130)).await.unwrap(),
            Ok(()),
            "{engine}"
        );
        // With two limits full, the refusal names the one that frees up last.
        let hour = bucket("prefix:k1:44770010", "1/h");
        assert_eq!(
            store.take(vec![hour.clone()], m(130)).await.unwrap(),
            Ok(())
        );
        let minute = bucket("destination:k1:447700100125", "1/m");
        assert_eq!(
            store.take(vec![minute.clone()], m(130)).await.unwrap(),
            Ok(())
        );
        let both = store
            .take(vec![minute, hour], m(131))
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(both.limit, "per prefix", "{engine}");
    }
}

#[tokio::test]
async fn counters_no_window_can_use_are_forgotten_and_the_others_kept() {
    for (engine, store, _dir) in engines().await {
        let m = |secs: i64| t(20 + secs);
        let minute = bucket("destination:k1:447700100123", "1/m");
        assert_eq!(
            store.take(vec![minute.clone()], m(0)).await.unwrap(),
            Ok(())
        );
        // Until the next minute has passed too, the count is kept: it still weighs. (PostgreSQL
        // also made an empty row for the minute before, which may go.)
        store.forget_expired(m(119)).await.unwrap();
        assert!(store
            .take(vec![minute.clone()], m(30))
            .await
            .unwrap()
            .is_err());
        assert!(store.forget_expired(m(240)).await.unwrap() >= 1, "{engine}");
        assert_eq!(store.forget_expired(m(240)).await.unwrap(), 0, "{engine}");
    }
}

#[tokio::test]
async fn concurrent_calls_never_let_more_than_a_limit_through() {
    for (engine, store, _dir) in engines().await {
        let requests = bucket("requests:k1", "25/s");
        let calls = (0..60).map(|_| {
            let store = store.clone();
            let requests = requests.clone();
            tokio::spawn(async move { store.take(vec![requests], t(0)).await.unwrap() })
        });
        let mut through = 0;
        for call in calls.collect::<Vec<_>>() {
            through += usize::from(call.await.unwrap().is_ok());
        }
        assert_eq!(through, 25, "{engine}");
    }
}

#[tokio::test]
async fn calls_whose_times_lag_behind_each_other_by_windows_never_deadlock() {
    for (engine, store, _dir) in engines().await {
        let requests = bucket("requests:k1", "1000000/s");
        // Each call read its time a different number of seconds ago, as a call that waited for
        // a connection did: older ones hold rows that newer ones would delete.
        let calls = (0..400).map(|i| {
            let store = store.clone();
            let requests = requests.clone();
            tokio::spawn(async move { store.take(vec![requests], t((i * 7) % 6)).await })
        });
        for call in calls.collect::<Vec<_>>() {
            let taken = call.await.unwrap();
            assert!(matches!(taken, Ok(Ok(()))), "{engine}: {taken:?}");
        }
    }
}

#[tokio::test]
async fn meta_values_are_replaced() {
    for (engine, store, _dir) in engines().await {
        assert_eq!(store.get_meta("x").await.unwrap(), None, "{engine}");
        store.set_meta("x", "1").await.unwrap();
        store.set_meta("x", "2").await.unwrap();
        assert_eq!(
            store.get_meta("x").await.unwrap().as_deref(),
            Some("2"),
            "{engine}"
        );
    }
}

/// An inbox message of the verification `v`.
fn message(id: &str, to: &str, v: &Verification) -> InboxMessage {
    InboxMessage {
        id: id.into(),
        channel: "sms".into(),
        to: to.into(),
        from: "VERIFY".into(),
        text: format!("text {id}"),
        locale: "en-gb".into(),
        request_id: v.id.as_str().into(),
        created_at: "2026-01-01T00:00:00.000Z".into(),
    }
}

#[tokio::test]
async fn the_inbox_keeps_one_copy_per_id_newest_first() {
    for (engine, store, _dir) in engines().await {
        let (v, f) = new_verification("k1", "447700100030", 30, 1);
        store.create(v.clone(), f, t(0)).await.unwrap();
        store.append(message("a", "1", &v)).await.unwrap();
        store.append(message("b", "2", &v)).await.unwrap();
        store.append(message("c", "1", &v)).await.unwrap();
        store.append(message("a", "1", &v)).await.unwrap();
        let all = store.list(None, 10).await.unwrap();
        let ids: Vec<&str> = all.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["c", "b", "a"], "{engine}");
        let to_1 = store.list(Some("1"), 10).await.unwrap();
        assert_eq!(to_1.len(), 2, "{engine}");
        assert_eq!(store.list(None, 1).await.unwrap().len(), 1, "{engine}");
        assert_eq!(all[2], message("a", "1", &v), "{engine}");
    }
}

/// The ids of the inbox messages to `to`.
async fn inbox_of(store: &dyn Store, to: &str) -> Vec<String> {
    let listed = store.list(Some(to), 10).await.unwrap();
    listed.into_iter().map(|m| m.id).collect()
}

#[tokio::test]
async fn inbox_messages_go_with_the_end_of_their_verification_and_only_theirs() {
    for (engine, store, _dir) in engines().await {
        let (checked, f) = new_verification("k1", "447700100031", 31, 1);
        store.create(checked.clone(), f, t(0)).await.unwrap();
        let (cancelled, f) = new_verification("k1", "447700100032", 32, 1);
        store.create(cancelled.clone(), f, t(0)).await.unwrap();
        let (expiring, f) = new_verification("k1", "447700100033", 33, 6);
        store.create(expiring.clone(), f, t(0)).await.unwrap();
        let (going_on, f) = new_verification("k1", "447700100034", 34, 1);
        store.create(going_on.clone(), f, t(0)).await.unwrap();
        for (v, to) in [
            (&checked, "447700100031"),
            (&cancelled, "447700100032"),
            (&expiring, "447700100033"),
            (&going_on, "447700100034"),
        ] {
            store
                .append(message(&format!("M{to}"), to, v))
                .await
                .unwrap();
        }
        let right = right_code();
        store
            .apply("k1", &checked.id, right, at(1), minter())
            .await
            .unwrap()
            .unwrap();
        let (outcome, _) = store
            .apply("k1", &cancelled.id, Command::Cancel, at(31), minter())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(outcome, CommandOutcome::Cancelled(Ok(())), "{engine}");
        // Workflow 6 sends one SMS and expires after 300 s; workflow 1 is still waiting then.
        store.claim_due(at(300), 100, minter()).await.unwrap();
        assert_eq!(
            store
                .find("k1", std::slice::from_ref(&expiring.id))
                .await
                .unwrap()[0]
                .status,
            Status::Expired,
            "{engine}"
        );
        for to in ["447700100031", "447700100032", "447700100033"] {
            assert!(
                inbox_of(store.as_ref(), to).await.is_empty(),
                "{engine}: {to}"
            );
        }
        assert_eq!(
            inbox_of(store.as_ref(), "447700100034").await,
            ["M447700100034"],
            "{engine}: a verification in progress keeps its message"
        );
    }
}

#[tokio::test]
async fn a_message_whose_verification_ended_on_its_way_to_the_inbox_is_not_kept() {
    for (engine, store, _dir) in engines().await {
        let (v, f) = new_verification("k1", "447700100035", 35, 1);
        store.create(v.clone(), f, t(0)).await.unwrap();
        let right = right_code();
        store
            .apply("k1", &v.id, right, at(1), minter())
            .await
            .unwrap()
            .unwrap();
        store
            .append(message("late", "447700100035", &v))
            .await
            .unwrap();
        assert!(
            inbox_of(store.as_ref(), "447700100035").await.is_empty(),
            "{engine}"
        );
    }
}

#[tokio::test]
async fn sqlite_data_survives_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reopen.db");
    let (v, f) = new_verification("k1", "447700100010", 13, 1);
    {
        let store = SqliteStore::open(&path).unwrap();
        store.create(v.clone(), f, t(0)).await.unwrap();
    }
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
    assert_eq!(
        store.find("k1", std::slice::from_ref(&v.id)).await.unwrap(),
        vec![v]
    );
}

#[tokio::test]
async fn sqlite_limit_counts_counted_in_memory_survive_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("counters.db");
    let hour = bucket("destination:k1:447700100123", "2/h");
    let other = bucket("prefix:k1:44770010", "5/h");
    {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
        for secs in [0, 1] {
            let taken = store.take(vec![hour.clone(), other.clone()], t(secs)).await;
            assert_eq!(taken.unwrap(), Ok(()));
        }
    }
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
    let refused = store.take(vec![hour.clone()], t(2)).await.unwrap();
    assert_eq!(refused.map_err(|r| r.limit), Err("per destination"));
    // The other bucket kept its two: three more fit, not four.
    for secs in 3..6 {
        assert_eq!(
            store.take(vec![other.clone()], t(secs)).await.unwrap(),
            Ok(())
        );
    }
    assert!(store
        .take(vec![other.clone()], t(6))
        .await
        .unwrap()
        .is_err());
}

/// Copies every row of `table` from one SQLite file into another with the same columns.
fn copy_rows(from: &rusqlite::Connection, to: &rusqlite::Connection, table: &str) {
    let mut read = from.prepare(&format!("select * from {table}")).unwrap();
    let columns = read.column_count();
    let marks: Vec<String> = (1..=columns).map(|i| format!("?{i}")).collect();
    let insert = format!("insert into {table} values ({})", marks.join(", "));
    let mut rows = read.query([]).unwrap();
    while let Some(row) = rows.next().unwrap() {
        let values: Vec<rusqlite::types::Value> =
            (0..columns).map(|i| row.get(i).unwrap()).collect();
        to.execute(&insert, rusqlite::params_from_iter(values))
            .unwrap();
    }
}

#[tokio::test]
async fn a_sqlite_file_of_the_first_schema_keeps_its_deliveries_and_inbox_when_migrated() {
    let dir = tempfile::tempdir().unwrap();
    // Rows as this verifyd writes them, moved into a file that has only the first schema.
    let current = dir.path().join("current.db");
    let (v, f) = new_verification("k1", "447700100041", 41, 1);
    {
        let store = SqliteStore::open(&current).unwrap();
        store.create(v.clone(), f.clone(), t(0)).await.unwrap();
        store
            .append(message("M41", "447700100041", &v))
            .await
            .unwrap();
    }
    let old = dir.path().join("old.db");
    {
        let from = rusqlite::Connection::open(&current).unwrap();
        let to = rusqlite::Connection::open(&old).unwrap();
        to.execute_batch(include_str!("../migrations/sqlite/0001_init.sql"))
            .unwrap();
        to.execute_batch("pragma user_version = 1").unwrap();
        for table in ["verification", "api_key", "meta"] {
            copy_rows(&from, &to, table);
        }
        // The first schema's column order differs for these two tables.
        let mut d = from
            .prepare("select event_id, request_id, body, created_at, lease_until from delivery")
            .unwrap();
        let rows: Vec<(String, String, rusqlite::types::Value, i64, i64)> = d
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(rows.len(), 1);
        for row in rows {
            to.execute(
                "insert into delivery values (?1, ?2, ?3, ?4, ?5)",
                rusqlite::params![row.0, row.1, row.2, row.3, row.4],
            )
            .unwrap();
        }
        copy_rows(&from, &to, "inbox_message");
    }

    let store = SqliteStore::open(&old).unwrap();
    assert_eq!(store.undelivered(10).await.unwrap(), vec![f.clone()]);
    let listed = store.list(Some("447700100041"), 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, "M41");
    // The same message again is still recognised as already stored.
    store
        .append(message("M41", "447700100041", &v))
        .await
        .unwrap();
    assert_eq!(store.list(None, 10).await.unwrap().len(), 1);
    store
        .mark_delivered(vec![(f.request_id.clone(), f.event_id.clone())])
        .await
        .unwrap();
    assert!(store.undelivered(10).await.unwrap().is_empty());
    let found = store.find("k1", std::slice::from_ref(&v.id)).await.unwrap();
    assert_eq!(found.len(), 1);
}

#[tokio::test]
async fn upgrading_a_sqlite_file_removes_the_inbox_messages_of_ended_verifications() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("upgrade.db");
    let (ended, f) = new_verification("k1", "447700100042", 42, 1);
    let (going_on, g) = new_verification("k1", "447700100043", 43, 1);
    {
        let store = SqliteStore::open(&path).unwrap();
        store.create(ended.clone(), f, t(0)).await.unwrap();
        store.create(going_on.clone(), g, t(0)).await.unwrap();
        store
            .append(message("M43", "447700100043", &going_on))
            .await
            .unwrap();
        let cancel = store.apply("k1", &ended.id, Command::Cancel, at(31), minter());
        cancel.await.unwrap().unwrap();
    }
    {
        // As a version before the inbox went with its verification left it.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute(
            "insert into inbox_message (message_id, channel, to_number, from_id, text, locale, \
             request_id, created_at) values ('M42', 'sms', '447700100042', 'VERIFY', 'x', \
             'en-gb', ?1, 0)",
            [ended.id.as_str()],
        )
        .unwrap();
        // Back to the second schema; later migrations run again on the next open.
        conn.execute_batch(
            "drop table admin_user; drop table audit_log; drop index verification_number; \
             drop table fraud_tally; drop table fraud_block; drop table fraud_decision; \
             alter table api_key drop column limits; drop table limit_counter; drop table template_fragment; drop table template; drop table callback; drop table application; drop table delivery_attempt; drop table delivery_receipt; \
             pragma user_version = 2",
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    assert!(inbox_of(&store, "447700100042").await.is_empty());
    assert_eq!(inbox_of(&store, "447700100043").await, ["M43"]);
}

#[tokio::test]
async fn upgrading_a_postgres_schema_removes_the_inbox_messages_of_ended_verifications() {
    let Some(schema) = support::PgSchema::create() else {
        return;
    };
    let (ended, f) = new_verification("k1", "447700100044", 44, 1);
    let (going_on, g) = new_verification("k1", "447700100045", 45, 1);
    {
        let store = PgStore::open(&schema.url).await.unwrap();
        store.create(ended.clone(), f, t(0)).await.unwrap();
        store.create(going_on.clone(), g, t(0)).await.unwrap();
        store
            .append(message("M45", "447700100045", &going_on))
            .await
            .unwrap();
        let cancel = store.apply("k1", &ended.id, Command::Cancel, at(31), minter());
        cancel.await.unwrap().unwrap();
    }
    // As the first schema version left it.
    schema.execute(&format!(
        "insert into inbox_message (message_id, channel, to_number, from_id, text, locale, \
         request_id, created_at) values ('M44', 'sms', '447700100044', 'VERIFY', 'x', 'en-gb', \
         '{}', 0); drop index inbox_message_request; drop table admin_user; \
         drop table audit_log; drop index verification_number; drop table fraud_tally; drop table fraud_block; \
         drop table fraud_decision; alter table api_key drop column limits; drop table limit_counter; drop table template_fragment; drop table template; drop table callback; drop table application; \
         drop table delivery_attempt; drop table delivery_receipt; \
         delete from verifyd_schema where version >= 2",
        ended.id.as_str()
    ));
    let store = PgStore::open(&schema.url).await.unwrap();
    assert!(inbox_of(&store, "447700100044").await.is_empty());
    assert_eq!(inbox_of(&store, "447700100045").await, ["M45"]);
}

#[tokio::test]
async fn an_accepted_try_is_recorded_and_its_delivery_leaves_the_store_at_once() {
    for (engine, store, _dir) in engines().await {
        let (v, f) = new_verification("k1", "447700100050", 50, 1);
        store.create(v.clone(), f.clone(), t(0)).await.unwrap();
        let first = store
            .attempt_started(&v.id, &f.event_id, "sms", "twilio", None, t(1))
            .await
            .unwrap()
            .expect("the delivery is stored");
        let error = AttemptError {
            code: "connect".into(),
            text: "refused".into(),
        };
        store.attempt_failed(first, error, t(2)).await.unwrap();
        assert_eq!(store.undelivered(10).await.unwrap().len(), 1, "{engine}");
        let second = store
            .attempt_started(&v.id, &f.event_id, "sms", "vonage", None, t(3))
            .await
            .unwrap()
            .expect("the delivery is stored");
        store
            .attempt_accepted(second, &v.id, &f.event_id, "V-1", false, t(4))
            .await
            .unwrap();
        assert!(store.undelivered(10).await.unwrap().is_empty(), "{engine}");
        let attempts = store.attempts(&v.id).await.unwrap();
        let seen: Vec<(&str, AttemptState, Option<&str>, Option<&str>)> = attempts
            .iter()
            .map(|a| {
                (
                    a.channel.as_str(),
                    a.state,
                    a.message_id.as_deref(),
                    a.error_code.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("twilio", AttemptState::Failed, None, Some("connect")),
                ("vonage", AttemptState::Submitted, Some("V-1"), None)
            ],
            "{engine}"
        );
        assert_eq!(
            (attempts[1].created_at, attempts[1].updated_at),
            (t(3), t(4))
        );
        // Its receipt settles it and says when the try began; the gateway's retry of that
        // receipt is told apart.
        let settled = store
            .apply_receipt("vonage", "V-1", AttemptState::Delivered, None, t(9))
            .await
            .unwrap();
        assert_eq!(settled, ReceiptApplied::ToTry(t(3)), "{engine}");
        let again = store
            .apply_receipt("vonage", "V-1", AttemptState::Delivered, None, t(10))
            .await
            .unwrap();
        assert_eq!(again, ReceiptApplied::Again, "{engine}");
        assert_eq!(attempts[0].event_id, f.event_id.as_str());
    }
}

#[tokio::test]
async fn a_receipt_that_comes_before_the_acceptance_is_recorded_is_applied_with_it() {
    for (engine, store, _dir) in engines().await {
        let (v, f) = new_verification("k1", "447700100051", 51, 1);
        store.create(v.clone(), f.clone(), t(0)).await.unwrap();
        let id = store
            .attempt_started(&v.id, &f.event_id, "sms", "twilio", None, t(1))
            .await
            .unwrap()
            .expect("the delivery is stored");
        let early = store
            .apply_receipt("twilio", "SM9", AttemptState::Delivered, None, t(2))
            .await
            .unwrap();
        assert_eq!(early, ReceiptApplied::Kept, "{engine}: kept for later");
        store
            .attempt_accepted(id, &v.id, &f.event_id, "SM9", false, t(3))
            .await
            .unwrap();
        let attempts = store.attempts(&v.id).await.unwrap();
        assert_eq!(attempts[0].state, AttemptState::Delivered, "{engine}");
        // A receipt after the acceptance applies at once; one that says "still on its way"
        // changes nothing.
        let late = store
            .apply_receipt(
                "twilio",
                "SM9",
                AttemptState::Undeliverable,
                Some(AttemptError {
                    code: "30003".into(),
                    text: "unreachable".into(),
                }),
                t(4),
            )
            .await
            .unwrap();
        assert_eq!(
            late,
            ReceiptApplied::Again,
            "{engine}: the try was settled by the first receipt"
        );
        store
            .apply_receipt("twilio", "SM9", AttemptState::Submitted, None, t(5))
            .await
            .unwrap();
        let attempts = store.attempts(&v.id).await.unwrap();
        assert_eq!(attempts[0].state, AttemptState::Undeliverable, "{engine}");
        assert_eq!(attempts[0].error_code.as_deref(), Some("30003"), "{engine}");
        assert_eq!(attempts[0].updated_at, t(4), "{engine}");
    }
}

#[tokio::test]
async fn a_try_a_stopped_process_left_queued_is_closed_when_the_next_starts() {
    for (engine, store, _dir) in engines().await {
        let (v, f) = new_verification("k1", "447700100052", 52, 1);
        store.create(v.clone(), f.clone(), t(0)).await.unwrap();
        store
            .attempt_started(&v.id, &f.event_id, "sms", "twilio", None, t(1))
            .await
            .unwrap()
            .expect("the delivery is stored");
        store
            .attempt_started(&v.id, &f.event_id, "sms", "twilio", None, t(60))
            .await
            .unwrap()
            .expect("the delivery is stored");
        let attempts = store.attempts(&v.id).await.unwrap();
        let states: Vec<(AttemptState, Option<&str>)> = attempts
            .iter()
            .map(|a| (a.state, a.error_code.as_deref()))
            .collect();
        assert_eq!(
            states,
            [
                (AttemptState::Failed, Some("interrupted")),
                (AttemptState::Queued, None)
            ],
            "{engine}"
        );
    }
}

#[tokio::test]
async fn a_delivery_being_worked_on_is_not_swept_while_its_lease_is_renewed() {
    for (engine, store, _dir) in engines_with_lease(std::time::Duration::from_secs(2)).await {
        let (v, f) = new_verification("k1", "447700100053", 53, 1);
        store.create(v.clone(), f.clone(), t(0)).await.unwrap();
        for _ in 0..6 {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            store
                .renew_leases(vec![(v.id.clone(), f.event_id.clone())])
                .await
                .unwrap();
            assert!(
                store.claim_stale_deliveries(10).await.unwrap().is_empty(),
                "{engine}"
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
        assert_eq!(
            store.claim_stale_deliveries(10).await.unwrap().len(),
            1,
            "{engine}"
        );
    }
}

#[tokio::test]
async fn a_delivery_given_back_is_swept_at_once_and_others_keep_their_lease() {
    for (engine, store, _dir) in engines_with_lease(std::time::Duration::from_secs(60)).await {
        let (v, f) = new_verification("k1", "447700100056", 56, 1);
        let (w, g) = new_verification("k1", "447700100057", 57, 1);
        store.create(v.clone(), f.clone(), t(0)).await.unwrap();
        store.create(w.clone(), g.clone(), t(0)).await.unwrap();
        assert!(
            store.claim_stale_deliveries(10).await.unwrap().is_empty(),
            "{engine}: both are leased to their maker"
        );
        store
            .give_back(vec![(v.id.clone(), f.event_id.clone())])
            .await
            .unwrap();
        let swept = store.claim_stale_deliveries(10).await.unwrap();
        let events: Vec<&EventId> = swept.iter().map(|o| &o.event_id).collect();
        assert_eq!(events, [&f.event_id], "{engine}");
    }
}

#[tokio::test]
async fn no_try_is_recorded_for_a_delivery_that_is_no_longer_stored() {
    for (engine, store, _dir) in engines().await {
        let (v, f) = new_verification("k1", "447700100054", 54, 1);
        store.create(v.clone(), f.clone(), t(0)).await.unwrap();
        let first = store
            .attempt_started(&v.id, &f.event_id, "sms", "a", None, t(1))
            .await
            .unwrap()
            .expect("the delivery is stored");
        store
            .attempt_accepted(first, &v.id, &f.event_id, "A-1", false, t(2))
            .await
            .unwrap();
        let again = store
            .attempt_started(&v.id, &f.event_id, "sms", "b", None, t(3))
            .await
            .unwrap();
        assert_eq!(again, None, "{engine}: a second copy is not sent");
        let (ended, g) = new_verification("k1", "447700100055", 55, 1);
        store.create(ended.clone(), g.clone(), t(0)).await.unwrap();
        store
            .apply("k1", &ended.id, right_code(), at(1), minter())
            .await
            .unwrap();
        let after_end = store
            .attempt_started(&ended.id, &g.event_id, "sms", "a", None, t(2))
            .await
            .unwrap();
        assert_eq!(
            after_end, None,
            "{engine}: an ended verification's message is not sent"
        );
        assert_eq!(store.attempts(&v.id).await.unwrap().len(), 1, "{engine}");
        assert!(
            store.attempts(&ended.id).await.unwrap().is_empty(),
            "{engine}"
        );
    }
}

#[tokio::test]
async fn a_receipt_racing_its_acceptance_is_never_lost() {
    for (engine, store, _dir) in engines().await {
        for i in 0..60u8 {
            let number = format!("4477001{:05}", 1000 + u32::from(i));
            let (v, f) = new_verification("race", &number, 100 + i, 1);
            store.create(v.clone(), f.clone(), t(0)).await.unwrap();
            let id = store
                .attempt_started(&v.id, &f.event_id, "sms", "twilio", None, t(1))
                .await
                .unwrap()
                .expect("the delivery is stored");
            let message_id = format!("SM-race-{i}");
            let receipt =
                store.apply_receipt("twilio", &message_id, AttemptState::Delivered, None, t(2));
            let acceptance =
                store.attempt_accepted(id, &v.id, &f.event_id, &message_id, false, t(2));
            let (r, a) = tokio::join!(receipt, acceptance);
            r.unwrap();
            a.unwrap();
            let attempts = store.attempts(&v.id).await.unwrap();
            assert_eq!(
                attempts[0].state,
                AttemptState::Delivered,
                "{engine}: round {i}"
            );
        }
    }
}

/// A verification whose end its application `target` is told of.
fn observed(
    account: &str,
    number: &str,
    id_byte: u8,
    target: &str,
) -> (Verification, DeliveryOrder) {
    let mut new =
        Workflow::parse(6)
            .unwrap()
            .request(RequestId::from_bytes([id_byte; 16]), account, number);
    new.callback = Some(target.to_owned());
    Verification::start(new, t(0), minter().as_mut())
}

#[tokio::test]
async fn an_end_writes_its_callbacks_which_are_leased_retried_and_forgotten_once_sent() {
    use std::time::Duration as Std;
    use verifyd::domain::Notice;
    for (engine, store, _dir) in engines().await {
        let (v, first) = observed("k1", "447700100700", 70, "app-1");
        store.create(v.clone(), first, t(0)).await.unwrap();
        let (quiet, q) = new_verification("k1", "447700100701", 71, 6);
        store.create(quiet.clone(), q, t(0)).await.unwrap();
        assert!(
            store
                .claim_callbacks(10, Std::from_secs(60))
                .await
                .unwrap()
                .is_empty(),
            "{engine}: nothing has ended"
        );
        for id in [&v.id, &quiet.id] {
            store
                .apply("k1", id, right_code(), at(5), minter())
                .await
                .unwrap();
        }
        let mut claimed = store.claim_callbacks(10, Std::from_secs(60)).await.unwrap();
        claimed.sort_by_key(|c| c.notice.as_str());
        let notices: Vec<Notice> = claimed.iter().map(|c| c.notice).collect();
        assert_eq!(notices, [Notice::Ended, Notice::StepEnded], "{engine}");
        assert!(claimed.iter().all(|c| c.request_id == v.id
            && c.target == "app-1"
            && c.account == "k1"
            && c.attempts == 0));
        assert_ne!(claimed[0].id, claimed[1].id);
        assert!(
            store
                .claim_callbacks(10, Std::from_secs(60))
                .await
                .unwrap()
                .is_empty(),
            "{engine}: leased"
        );
        store.callback_failed(&claimed[0], Std::ZERO).await.unwrap();
        store
            .callback_failed(&claimed[1], Std::from_secs(3600))
            .await
            .unwrap();
        let again = store.claim_callbacks(10, Std::from_secs(60)).await.unwrap();
        assert_eq!(again.len(), 1, "{engine}: the other waits an hour");
        assert_eq!(
            (again[0].id.as_str(), again[0].attempts),
            (claimed[0].id.as_str(), 1)
        );
        store.callback_sent(&again[0]).await.unwrap();
        store.callback_failed(&claimed[1], Std::ZERO).await.unwrap();
        let last = store.claim_callbacks(10, Std::from_secs(60)).await.unwrap();
        assert_eq!(last.len(), 1, "{engine}");
        assert_eq!(
            (last[0].id.as_str(), last[0].attempts),
            (claimed[1].id.as_str(), 2)
        );
        store.callback_sent(&last[0]).await.unwrap();
        let gone = verifyd::store::Callback {
            id: "no-such-id".into(),
            ..last[0].clone()
        };
        store.callback_failed(&gone, Std::ZERO).await.unwrap();
        assert!(
            store
                .claim_callbacks(10, Std::ZERO)
                .await
                .unwrap()
                .is_empty(),
            "{engine}"
        );
    }
}

#[tokio::test]
async fn an_expiry_found_by_the_scheduler_writes_one_callback() {
    use std::time::Duration as Std;
    use verifyd::domain::Notice;
    for (engine, store, _dir) in engines().await {
        let (v, first) = observed("k1", "447700100702", 72, "app-1");
        store.create(v.clone(), first, t(0)).await.unwrap();
        store.claim_due(at(301), 10, minter()).await.unwrap();
        let claimed = store.claim_callbacks(10, Std::from_secs(60)).await.unwrap();
        let notices: Vec<Notice> = claimed.iter().map(|c| c.notice).collect();
        assert_eq!(notices, [Notice::Ended], "{engine}");
        store.claim_due(at(400), 10, minter()).await.unwrap();
        store.callback_failed(&claimed[0], Std::ZERO).await.unwrap();
        assert_eq!(
            store
                .claim_callbacks(10, Std::from_secs(60))
                .await
                .unwrap()
                .len(),
            1,
            "{engine}: told once"
        );
    }
}

#[tokio::test]
async fn the_server_moves_a_verification_on_whoever_it_belongs_to() {
    use verifyd::domain::CommandOutcome as Outcome;
    for (engine, store, _dir) in engines().await {
        let mut new = Workflow::parse(5).unwrap().request(
            RequestId::from_bytes([80; 16]),
            "k9",
            "447700100780",
        );
        new.policy.next_on_failure = true;
        let (v, first) = Verification::start(new, t(0), minter().as_mut());
        store.create(v.clone(), first.clone(), t(0)).await.unwrap();
        let failed = Command::StepFailed {
            event_id: first.event_id.clone(),
        };
        let moved = store
            .apply_internal(&v.id, failed.clone(), at(5), minter())
            .await
            .unwrap();
        let Some((Outcome::Advanced(Ok(next)), after)) = moved else {
            panic!("{engine}: {moved:?}");
        };
        assert_eq!(after.events.len(), 2, "{engine}");
        let stored = store.undelivered(10).await.unwrap();
        assert!(
            stored.contains(&next),
            "{engine}: the next step's delivery is stored"
        );
        let again = store
            .apply_internal(&v.id, failed, at(6), minter())
            .await
            .unwrap();
        assert!(
            matches!(
                again,
                Some((Outcome::Advanced(Err(ControlError::Ignored)), _))
            ),
            "{engine}: {again:?}"
        );
        let unknown = store
            .apply_internal(
                &RequestId::from_bytes([81; 16]),
                Command::Next,
                at(7),
                minter(),
            )
            .await
            .unwrap();
        assert!(unknown.is_none(), "{engine}");
    }
}

#[tokio::test]
async fn a_sender_whose_claim_ran_out_cannot_undo_the_next_senders_claim() {
    use std::time::Duration as Std;
    for (engine, store, _dir) in engines().await {
        let (v, first) = observed("k1", "447700100703", 73, "app-1");
        store.create(v.clone(), first, t(0)).await.unwrap();
        store
            .apply("k1", &v.id, right_code(), at(5), minter())
            .await
            .unwrap();
        // A node claims with a lease that runs out at once; another claims them again.
        let stale = store.claim_callbacks(10, Std::ZERO).await.unwrap();
        let held = store.claim_callbacks(10, Std::from_secs(60)).await.unwrap();
        assert_eq!((stale.len(), held.len()), (2, 2), "{engine}");
        for cb in &stale {
            store.callback_failed(cb, Std::ZERO).await.unwrap();
            store.callback_sent(cb).await.unwrap();
        }
        assert!(
            store
                .claim_callbacks(10, Std::from_secs(60))
                .await
                .unwrap()
                .is_empty(),
            "{engine}: still held by the second claim"
        );
        for cb in &held {
            store.callback_failed(cb, Std::ZERO).await.unwrap();
        }
        let again = store.claim_callbacks(10, Std::from_secs(60)).await.unwrap();
        assert_eq!(again.len(), 2, "{engine}");
        assert!(again.iter().all(|c| c.attempts == 1), "{engine}: {again:?}");
    }
}

/// A verification of workflow 6 (one SMS) started at `t(secs)`.
fn started_at(
    account: &str,
    number: &str,
    id_byte: u8,
    secs: i64,
) -> (Verification, DeliveryOrder) {
    let new =
        Workflow::parse(6)
            .unwrap()
            .request(RequestId::from_bytes([id_byte; 16]), account, number);
    Verification::start(new, t(secs), minter().as_mut())
}

#[tokio::test]
async fn ended_verifications_started_before_the_period_are_forgotten_with_what_they_recorded() {
    for (engine, store, _dir) in engines().await {
        let (old, f) = started_at("k1", "447700100060", 60, 0);
        store.create(old.clone(), f.clone(), t(0)).await.unwrap();
        let id = store
            .attempt_started(&old.id, &f.event_id, "sms", "gw", None, t(1))
            .await
            .unwrap()
            .unwrap();
        store
            .attempt_accepted(id, &old.id, &f.event_id, "M-60", false, t(2))
            .await
            .unwrap();
        store
            .apply("k1", &old.id, right_code(), at(4), minter())
            .await
            .unwrap();
        let (running, g) = started_at("k1", "447700100061", 61, 0);
        store.create(running.clone(), g, t(0)).await.unwrap();
        let (recent, h) = started_at("k1", "447700100062", 62, 7_200);
        store.create(recent.clone(), h, t(7_200)).await.unwrap();
        store
            .apply("k1", &recent.id, right_code(), at(7_201), minter())
            .await
            .unwrap();

        assert_eq!(
            store.forget_ended(t(3_600), 500).await.unwrap(),
            1,
            "{engine}"
        );
        assert_eq!(
            store.forget_ended(t(3_600), 500).await.unwrap(),
            0,
            "{engine}"
        );
        let ids = [old.id.clone(), running.id.clone(), recent.id.clone()];
        let kept: Vec<RequestId> = store
            .find("k1", &ids)
            .await
            .unwrap()
            .into_iter()
            .map(|v| v.id.clone())
            .collect();
        assert!(
            !kept.contains(&old.id) && kept.contains(&running.id) && kept.contains(&recent.id),
            "{engine}: {kept:?}"
        );
        assert!(
            store.attempts(&old.id).await.unwrap().is_empty(),
            "{engine}"
        );
    }
}

#[tokio::test]
async fn erasing_a_number_deletes_its_verifications_of_every_key_its_inbox_and_its_counters() {
    for (engine, store, _dir) in engines().await {
        let number = "447700100063";
        let (running, f) = started_at("k1", number, 63, 0);
        store
            .create(running.clone(), f.clone(), t(0))
            .await
            .unwrap();
        store
            .attempt_started(&running.id, &f.event_id, "sms", "gw", None, t(1))
            .await
            .unwrap();
        store
            .append(message("m63", number, &running))
            .await
            .unwrap();
        let (ended, g) = started_at("k2", number, 64, 0);
        store.create(ended.clone(), g, t(0)).await.unwrap();
        store
            .apply("k2", &ended.id, right_code(), at(1), minter())
            .await
            .unwrap();
        let (other, h) = started_at("k1", "447700100065", 65, 0);
        store.create(other.clone(), h, t(0)).await.unwrap();
        // A workflow whose first step goes elsewhere and a later one to the number.
        let mut new = Workflow::parse(5).unwrap().request(
            RequestId::from_bytes([68; 16]),
            "k3",
            "447700100068",
        );
        new.steps[1].to = verifyd::domain::Destination::Phone(
            verifyd::domain::PhoneNumber::parse(number, None).unwrap(),
        );
        let (later, l) = Verification::start(new, t(0), minter().as_mut());
        store.create(later.clone(), l, t(0)).await.unwrap();
        let counter = bucket(&format!("destination:k1:{number}"), "1/h");
        assert!(store
            .take(vec![counter.clone()], t(2))
            .await
            .unwrap()
            .is_ok());
        assert!(store
            .take(vec![counter.clone()], t(3))
            .await
            .unwrap()
            .is_err());

        let erased = store.erase_number(number).await.unwrap();
        assert_eq!(
            (erased.verifications, erased.inbox_messages),
            (3, 1),
            "{engine}"
        );
        assert!(store
            .find("k1", std::slice::from_ref(&running.id))
            .await
            .unwrap()
            .is_empty());
        assert!(store
            .find("k2", std::slice::from_ref(&ended.id))
            .await
            .unwrap()
            .is_empty());
        assert!(store
            .find("k3", std::slice::from_ref(&later.id))
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            store
                .find("k1", std::slice::from_ref(&other.id))
                .await
                .unwrap()
                .len(),
            1
        );
        assert!(
            store.attempts(&running.id).await.unwrap().is_empty(),
            "{engine}"
        );
        assert!(
            store.list(Some(number), 10).await.unwrap().is_empty(),
            "{engine}"
        );
        assert!(
            store.take(vec![counter], t(4)).await.unwrap().is_ok(),
            "{engine}: the number's counter is gone"
        );
        // Its hold on the number went with it: a new verification to it starts.
        let (fresh, a) = started_at("k1", number, 66, 10);
        assert_eq!(
            store.create(fresh, a, t(10)).await.unwrap(),
            CreateOutcome::Created,
            "{engine}"
        );
    }
}

/// Every test above runs on SQLite and, with `VERIFYD_TEST_POSTGRES_URL`, on PostgreSQL as well;
/// without it this one is ignored, so that the runner's count shows the half that did not run.
#[test]
#[cfg_attr(
    not(pg_tests),
    ignore = "the PostgreSQL half of this suite needs VERIFYD_TEST_POSTGRES_URL"
)]
fn the_postgresql_half_of_this_suite_runs() {
    assert!(support::postgres_url().is_some());
}
