//! What the dashboard keeps and reads (`store::admin`, `store::report`) on every engine: its
//! users and audit log, a search of verifications by number, request id, status and date, one
//! verification of any key, and the rows its charts count, with the route of each try.

#[path = "support/mod.rs"]
mod support;

use chrono::{DateTime, Duration};
use std::sync::Arc;
use support::engines::engines;
use verifyd::api::v1::workflow::Workflow;
use verifyd::domain::testing::SequenceMinter;

use verifyd::clock::ManualClock;
use verifyd::domain::{Command, Instant, RequestId, Verification};
use verifyd::store::admin::{AdminUser, AuditEntry};
use verifyd::store::report::SearchFilter;
use verifyd::store::{AttemptState, KeyState, SharedClock};

fn t(secs: i64) -> Instant {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap() + Duration::seconds(secs)
}

fn user(name: &str, hash: &str) -> AdminUser {
    AdminUser {
        name: name.into(),
        password_hash: hash.into(),
        created_at: t(0),
    }
}

fn started(
    account: &str,
    number: &str,
    id: u8,
    at: i64,
) -> (Verification, verifyd::domain::DeliveryOrder) {
    let new = Workflow::parse(1)
        .unwrap()
        .request(RequestId::from_bytes([id; 16]), account, number);
    let mut minter = SequenceMinter {
        pins: 0,
        events: u64::from(id) << 32,
    };
    Verification::start(new, t(at), &mut minter)
}

#[tokio::test]
async fn admin_users_are_added_once_replaced_on_request_and_removed() {
    for (engine, store, _dir) in engines().await {
        assert!(
            store.put_admin(user("ops", "$a"), false).await.unwrap(),
            "{engine}"
        );
        assert!(
            !store.put_admin(user("ops", "$b"), false).await.unwrap(),
            "{engine}"
        );
        assert_eq!(
            store.get_admin("ops").await.unwrap().unwrap().password_hash,
            "$a"
        );
        assert!(
            store.put_admin(user("ops", "$c"), true).await.unwrap(),
            "{engine}"
        );
        let found = store.get_admin("ops").await.unwrap().unwrap();
        assert_eq!(found, user("ops", "$c"), "{engine}");
        store.put_admin(user("ann", "$d"), false).await.unwrap();
        let names: Vec<String> = store
            .list_admins()
            .await
            .unwrap()
            .into_iter()
            .map(|u| u.name)
            .collect();
        assert_eq!(names, ["ann", "ops"], "{engine}");
        assert!(store.remove_admin("ops").await.unwrap(), "{engine}");
        assert!(!store.remove_admin("ops").await.unwrap(), "{engine}");
        assert_eq!(store.get_admin("ops").await.unwrap(), None, "{engine}");
    }
}

#[tokio::test]
async fn the_audit_log_gives_its_newest_entries_first() {
    for (engine, store, _dir) in engines().await {
        for (n, action) in ["login", "key.create", "key.rotate"].iter().enumerate() {
            store
                .record_audit(AuditEntry {
                    at: t(n as i64),
                    admin: "ops".into(),
                    action: (*action).into(),
                    target: "k1".into(),
                    detail: format!("n={n}"),
                })
                .await
                .unwrap();
        }
        let log = store.audit_log(2).await.unwrap();
        let actions: Vec<&str> = log.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, ["key.rotate", "key.create"], "{engine}");
        assert_eq!(log[0].at, t(2), "{engine}");
        assert_eq!(log[0].detail, "n=2", "{engine}");
    }
}

#[tokio::test]
async fn a_search_matches_every_part_given_newest_first_of_every_key() {
    for (engine, store, _dir) in engines().await {
        let rows = [
            ("k1", "447700100001", 1, 0),
            ("k2", "447700100001", 2, 100),
            ("k1", "447700100002", 3, 200),
        ];
        for (account, number, id, at) in rows {
            let (v, first) = started(account, number, id, at);
            store.create(v, first, t(at)).await.unwrap();
        }
        let search = |filter: SearchFilter| {
            let store = store.clone();
            async move {
                store
                    .search(&filter, 10)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|f| f.request_id[..2].to_owned())
                    .collect::<Vec<_>>()
            }
        };
        let by_number = SearchFilter {
            number: Some("447700100001".into()),
            ..SearchFilter::default()
        };
        assert_eq!(search(by_number.clone()).await, ["02", "01"], "{engine}");
        let from = SearchFilter {
            from: Some(t(100)),
            ..by_number.clone()
        };
        assert_eq!(search(from).await, ["02"], "{engine}");
        let until = SearchFilter {
            until: Some(t(100)),
            ..by_number
        };
        assert_eq!(search(until).await, ["01"], "{engine}");
        let by_id = SearchFilter {
            request_id: Some(RequestId::from_bytes([3; 16])),
            ..SearchFilter::default()
        };
        let found = store.search(&by_id, 10).await.unwrap();
        assert_eq!(found.len(), 1, "{engine}");
        assert_eq!(
            (
                found[0].account.as_str(),
                found[0].number.as_str(),
                found[0].state
            ),
            ("k1", "447700100002", 0),
            "{engine}"
        );
        assert_eq!(found[0].submitted_at, t(200), "{engine}");
        let verified = SearchFilter {
            state: Some(1),
            ..SearchFilter::default()
        };
        assert!(search(verified.clone()).await.is_empty(), "{engine}");
        let right = Command::Check {
            code_hash: SequenceMinter::hash("0001"),
            code_len: 4,
        };
        let clock: SharedClock = Arc::new(ManualClock::new(t(300)));
        let minter = Box::new(SequenceMinter {
            pins: 0,
            events: 99 << 32,
        });
        store
            .apply("k2", &RequestId::from_bytes([2; 16]), right, clock, minter)
            .await
            .unwrap()
            .expect("k2's verification");
        assert_eq!(search(verified).await, ["02"], "{engine}");
        assert_eq!(search(SearchFilter::default()).await, ["03", "02", "01"]);
        assert_eq!(
            store
                .search(&SearchFilter::default(), 1)
                .await
                .unwrap()
                .len(),
            1
        );

        let any = store
            .verification_any(&RequestId::from_bytes([2; 16]))
            .await
            .unwrap()
            .expect("found whatever its key");
        assert_eq!(any.account, "k2", "{engine}");
        assert!(store
            .verification_any(&RequestId::from_bytes([9; 16]))
            .await
            .unwrap()
            .is_none());
    }
}

#[tokio::test]
async fn the_charts_rows_are_the_newest_since_a_time_with_each_trys_route() {
    for (engine, store, _dir) in engines().await {
        let (a, first_a) = started("k1", "447700100001", 1, 0);
        let (b, first_b) = started("k1", "447700100002", 2, 100);
        store
            .create(a.clone(), first_a.clone(), t(0))
            .await
            .unwrap();
        store
            .create(b.clone(), first_b.clone(), t(100))
            .await
            .unwrap();
        let rows = store.started_since(t(50), 10).await.unwrap();
        assert_eq!(rows.len(), 1, "{engine}");
        assert_eq!(
            (rows[0].at, rows[0].number.as_str(), rows[0].state),
            (t(100), "447700100002", 0)
        );

        let one = store
            .attempt_started(&a.id, &first_a.event_id, "sms", "smpp", Some("0"), t(10))
            .await
            .unwrap()
            .unwrap();
        store
            .attempt_accepted(one, &a.id, &first_a.event_id, "m1", true, t(12))
            .await
            .unwrap();
        store
            .attempt_started(&b.id, &first_b.event_id, "sms", "http", None, t(110))
            .await
            .unwrap()
            .unwrap();
        let tries = store.tried_since(t(0), 10).await.unwrap();
        assert_eq!(tries.len(), 2, "{engine}");
        assert_eq!(tries[0].channel, "http", "newest first ({engine})");
        assert_eq!(tries[0].route, None);
        assert_eq!(tries[0].state, AttemptState::Queued);
        assert_eq!(tries[1].route.as_deref(), Some("0"), "{engine}");
        assert_eq!(tries[1].state, AttemptState::Delivered);
        assert_eq!(
            tries[1].updated_at - tries[1].created_at,
            Duration::seconds(2)
        );
        assert_eq!(store.tried_since(t(50), 10).await.unwrap().len(), 1);
        assert_eq!(store.tried_since(t(0), 1).await.unwrap().len(), 1);
        let attempts = store.attempts(&a.id).await.unwrap();
        assert_eq!(attempts[0].route.as_deref(), Some("0"), "{engine}");
    }
}

#[tokio::test]
async fn a_rotated_secret_replaces_the_old_one_and_a_revoked_key_stays_revoked() {
    for (engine, store, _dir) in engines().await {
        let key = verifyd::auth::create_key(store.as_ref(), "shop", true, t(0))
            .await
            .unwrap();
        let new = verifyd::auth::rotate_key(store.as_ref(), &key.api_key)
            .await
            .unwrap()
            .unwrap();
        let stored = store.get_key(&key.api_key).await.unwrap().unwrap();
        assert!(
            verifyd::crypto::secret_matches(&new.api_secret, &stored.secret_hash),
            "{engine}"
        );
        assert!(!verifyd::crypto::secret_matches(
            &key.api_secret,
            &stored.secret_hash
        ));
        assert_eq!(stored.state, KeyState::Active);
        assert!(verifyd::auth::rotate_key(store.as_ref(), "nokey")
            .await
            .unwrap()
            .is_none());
        // A revoked key stays revoked: it is neither enabled nor given a new secret.
        assert!(store
            .set_key_state(&key.api_key, KeyState::Revoked)
            .await
            .unwrap());
        assert!(store
            .set_key_state(&key.api_key, KeyState::Revoked)
            .await
            .unwrap());
        assert!(
            !store
                .set_key_state(&key.api_key, KeyState::Active)
                .await
                .unwrap(),
            "{engine}"
        );
        assert!(verifyd::auth::rotate_key(store.as_ref(), &key.api_key)
            .await
            .unwrap()
            .is_none());
        let stored = store.get_key(&key.api_key).await.unwrap().unwrap();
        assert_eq!(stored.state, KeyState::Revoked, "{engine}");
        assert!(verifyd::crypto::secret_matches(
            &new.api_secret,
            &stored.secret_hash
        ));
    }
}
