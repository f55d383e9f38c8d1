//! The conversion monitor's store (`store::fraud`) on every engine: tallies per subject and
//! hour, blocks that refuse sends and grow on repeat, the operator's unblock, and the decisions
//! written down.

#[path = "support/mod.rs"]
mod support;

use chrono::{DateTime, Duration};
use support::engines::engines;
use verifyd::domain::fraud::{BlockLengths, Dimension, HourTally, Subject, HOUR_MS};
use verifyd::domain::Instant;
use verifyd::store::fraud::{AttemptsOf, Decision, BLOCKED, RECORDED, UNBLOCKED};

/// `secs` after the start of an hour (1 800 000 000 s is a whole hour).
fn t(secs: i64) -> Instant {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap() + Duration::seconds(secs)
}

fn s(key: &str) -> Subject {
    Subject::parse(key).unwrap()
}

const LENGTHS: BlockLengths = BlockLengths {
    first_secs: 3_600,
    longest_secs: 3 * 3_600,
};

fn hours(found: &[(Subject, Vec<HourTally>)], key: &str) -> Vec<(i64, u64, u64)> {
    let mut rows: Vec<(i64, u64, u64)> = found
        .iter()
        .find(|(subject, _)| subject.key() == key)
        .unwrap()
        .1
        .iter()
        .map(|h| {
            (
                (h.hour - t(0).timestamp_millis()) / HOUR_MS,
                h.sent,
                h.converted,
            )
        })
        .collect();
    rows.sort();
    rows
}

#[tokio::test]
async fn sends_are_counted_per_subject_and_hour_and_conversions_in_their_sends_hour() {
    for (engine, store, _guard) in engines().await {
        let both = || vec![s("prefix:44770010"), s("country:GB")];
        for (secs, sent) in [(10, 1), (20, 2)] {
            let found = store
                .record_send("k1", both(), t(secs))
                .await
                .unwrap()
                .unwrap();
            // This send is counted, once.
            assert_eq!(hours(&found, "prefix:44770010"), [(0, sent, 0)], "{engine}");
        }
        // Another account's sends are its own.
        store
            .record_send("k2", both(), t(30))
            .await
            .unwrap()
            .unwrap();
        // A conversion an hour later counts in the hour of its send.
        store.record_conversion("k1", both(), t(10)).await.unwrap();
        let found = store
            .record_send("k1", vec![s("prefix:44770010")], t(3_700))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            hours(&found, "prefix:44770010"),
            [(0, 2, 1), (1, 1, 0)],
            "{engine}"
        );
        // A day later, the first hour is no longer read.
        let found = store
            .record_send("k1", both(), t(25 * 3_600 + 5))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            hours(&found, "prefix:44770010"),
            [(1, 1, 0), (25, 1, 0)],
            "{engine}"
        );
        assert_eq!(hours(&found, "country:GB"), [(25, 1, 0)], "{engine}");

        let of = |account, dimension, since, limit| {
            store.fraud_attempts(account, dimension, since, limit)
        };
        let prefixes = of(Some("k1"), Dimension::Prefix, t(0), 10).await.unwrap();
        assert_eq!((prefixes.sent, prefixes.converted), (4, 1), "{engine}");
        let top: Vec<(String, u64, u64)> = prefixes
            .top
            .iter()
            .map(|a| (a.subject.key(), a.sent, a.converted))
            .collect();
        assert_eq!(top, [("prefix:44770010".to_owned(), 4, 1)], "{engine}");
        let countries = of(Some("k1"), Dimension::Country, t(0), 10).await.unwrap();
        assert_eq!(
            (countries.sent, countries.converted, countries.top.len()),
            (3, 1, 1)
        );
        // Every account's together; from the hour of `since`.
        let all = of(None, Dimension::Country, t(0), 10).await.unwrap();
        assert_eq!((all.sent, all.top.len()), (4, 1), "{engine}");
        let later = of(Some("k1"), Dimension::Prefix, t(3_601), 10)
            .await
            .unwrap();
        assert_eq!(later.sent, 2, "{engine}");
        assert_eq!(
            of(None, Dimension::Ip, t(0), 10).await.unwrap(),
            AttemptsOf::default()
        );

        // Tallies of hours before the cut are deleted, the others kept.
        assert_eq!(store.forget_tallies(t(3_600)).await.unwrap(), 4, "{engine}");
        let kept = of(None, Dimension::Prefix, t(0), 10).await.unwrap();
        assert_eq!(kept.sent, 2, "{engine}");
    }
}

#[tokio::test]
async fn a_blocked_subject_refuses_sends_without_counting_them_and_each_repeat_lasts_longer() {
    for (engine, store, _guard) in engines().await {
        let prefix = s("prefix:88212345");
        let send = |at| store.record_send("k1", vec![s("country:XX"), prefix.clone()], at);
        send(t(0)).await.unwrap().unwrap();
        let block = store
            .block(
                "k1",
                prefix.clone(),
                Some("90112".into()),
                "pumping".into(),
                t(1),
                LENGTHS,
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!((block.until, block.times), (t(3_601), 1), "{engine}");
        // Blocking it again while in force gives the block in force.
        let again = store
            .block("k1", prefix.clone(), None, "again".into(), t(2), LENGTHS)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again, block, "{engine}");

        let both = vec![s("country:XX"), prefix.clone()];
        let found = store.blocked("k1", both.clone(), t(60)).await.unwrap();
        assert_eq!(found.map(|b| b.times), Some(1), "{engine}");
        assert_eq!(
            store.blocked("k2", both.clone(), t(60)).await.unwrap(),
            None
        );
        assert_eq!(store.blocked("k1", both, t(3_601)).await.unwrap(), None);
        let refused = send(t(60)).await.unwrap().unwrap_err();
        assert_eq!(
            (refused.subject, refused.network),
            (prefix.clone(), Some("90112".into()))
        );
        // Another account and another prefix are not blocked.
        store
            .record_send("k2", vec![prefix.clone()], t(60))
            .await
            .unwrap()
            .unwrap();
        // The refused send was not counted: one send of k1 before the block, one after it.
        let found = send(t(3_601)).await.unwrap().unwrap();
        assert_eq!(
            hours(&found, "country:XX"),
            [(0, 1, 0), (1, 1, 0)],
            "{engine}"
        );

        // The second block lasts twice as long, the third is held at the longest.
        let second = store
            .block(
                "k1",
                prefix.clone(),
                None,
                "pumping".into(),
                t(4_000),
                LENGTHS,
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (second.until, second.times),
            (t(4_000 + 7_200), 2),
            "{engine}"
        );
        let third = store
            .block(
                "k1",
                prefix.clone(),
                None,
                "pumping".into(),
                t(20_000),
                LENGTHS,
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (third.until, third.times),
            (t(20_000 + 10_800), 3),
            "{engine}"
        );

        let blocks = store.blocks(Some("k1"), t(20_001)).await.unwrap();
        assert_eq!(blocks, [third], "{engine}");
        assert!(
            store.blocks(None, t(40_000)).await.unwrap().is_empty(),
            "{engine}"
        );
        let actions: Vec<(String, String)> = store
            .decisions(Some("k1"), t(0))
            .await
            .unwrap()
            .into_iter()
            .map(|d| (d.action, d.reason))
            .collect();
        // Newest first; the block found in force was not written again.
        assert_eq!(actions.len(), 3, "{engine}");
        assert!(actions.iter().all(|(a, r)| a == BLOCKED && r == "pumping"));
    }
}

#[tokio::test]
async fn an_unblock_by_network_or_prefix_lifts_the_block_and_keeps_new_ones_off_until_it_ends() {
    for (engine, store, _guard) in engines().await {
        let named = s("prefix:88212345");
        let bare = s("prefix:88299999");
        for (subject, network) in [(&named, Some("90112".to_owned())), (&bare, None)] {
            store
                .block(
                    "k1",
                    subject.clone(),
                    network,
                    "pumping".into(),
                    t(0),
                    LENGTHS,
                )
                .await
                .unwrap()
                .unwrap();
        }
        // Nothing of another account's, and nothing not in force, is lifted.
        assert_eq!(
            store.unblock("k2", "90112", t(600), t(10)).await.unwrap(),
            None
        );
        assert_eq!(
            store.unblock("k1", "90199", t(600), t(10)).await.unwrap(),
            None
        );

        assert_eq!(
            store.unblock("k1", "90112", t(600), t(10)).await.unwrap(),
            Some(t(600)),
            "{engine}"
        );
        assert_eq!(
            store
                .unblock("k1", "88299999", t(900), t(10))
                .await
                .unwrap(),
            Some(t(900)),
            "{engine}"
        );
        assert!(
            store.blocks(Some("k1"), t(11)).await.unwrap().is_empty(),
            "{engine}"
        );
        store
            .record_send("k1", vec![named.clone(), bare.clone()], t(20))
            .await
            .unwrap()
            .unwrap();
        // While exempt, the monitor cannot block it again; once the exemption ends, it can.
        assert_eq!(
            store
                .block("k1", named.clone(), None, "pumping".into(), t(599), LENGTHS)
                .await
                .unwrap(),
            None,
            "{engine}"
        );
        let later = store
            .block("k1", named.clone(), None, "pumping".into(), t(600), LENGTHS)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(later.times, 2, "{engine}");
        // An unblock of a subject that is no longer blocked finds nothing.
        assert_eq!(
            store
                .unblock("k1", "88299999", t(2_000), t(1_000))
                .await
                .unwrap(),
            None
        );

        let unblocks: Vec<(String, Option<Instant>)> = store
            .decisions(Some("k1"), t(0))
            .await
            .unwrap()
            .into_iter()
            .filter(|d| d.action == UNBLOCKED)
            .map(|d| (d.subject.key(), d.until))
            .collect();
        let mut unblocks = unblocks;
        unblocks.sort();
        assert_eq!(
            unblocks,
            [
                ("prefix:88212345".to_owned(), Some(t(600))),
                ("prefix:88299999".to_owned(), Some(t(900)))
            ],
            "{engine}"
        );
    }
}

#[tokio::test]
async fn a_recorded_decision_is_written_once_an_hour_per_subject() {
    for (engine, store, _guard) in engines().await {
        let decision = |account: &str, key: &str, at| Decision {
            account: account.into(),
            subject: s(key),
            action: RECORDED.into(),
            reason: "11 unconverted".into(),
            at,
            until: None,
        };
        let write = |d| store.record_decision(d);
        assert!(write(decision("k1", "ip:203.0.113.9", t(0))).await.unwrap());
        assert!(!write(decision("k1", "ip:203.0.113.9", t(3_599)))
            .await
            .unwrap());
        assert!(write(decision("k1", "ip:203.0.113.8", t(10)))
            .await
            .unwrap());
        assert!(write(decision("k2", "ip:203.0.113.9", t(10)))
            .await
            .unwrap());
        assert!(write(decision("k1", "ip:203.0.113.9", t(3_601)))
            .await
            .unwrap());
        let mine = store.decisions(Some("k1"), t(0)).await.unwrap();
        let times: Vec<Instant> = mine.iter().map(|d| d.at).collect();
        assert_eq!(times, [t(3_601), t(10), t(0)], "{engine}");
        assert_eq!(
            store.decisions(None, t(5)).await.unwrap().len(),
            3,
            "{engine}"
        );
    }
}

#[tokio::test]
async fn concurrent_blocks_of_one_subject_make_one_block() {
    for (engine, store, _guard) in engines().await {
        let calls = (0..20).map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .block(
                        "k1",
                        s("prefix:88212345"),
                        None,
                        "pumping".into(),
                        t(0),
                        LENGTHS,
                    )
                    .await
                    .unwrap()
                    .unwrap()
            })
        });
        let mut seen = Vec::new();
        for call in calls.collect::<Vec<_>>() {
            seen.push(call.await.unwrap().times);
        }
        assert!(seen.iter().all(|&times| times == 1), "{engine}: {seen:?}");
        let written = store.decisions(Some("k1"), t(0)).await.unwrap();
        assert_eq!(written.len(), 1, "{engine}");
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
