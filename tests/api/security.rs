//! The security suite (issue 22 §4), on both engines from this one module: every test runs once
//! on SQLite and once on PostgreSQL (`security::<test>::sqlite`, `security::<test>::postgres`;
//! the PostgreSQL one passes without running when `VERIFYD_TEST_POSTGRES_URL` is not set).
//!
//! - Brute force: many checks of one request at once never compare more codes than the surface
//!   allows per code, never verify after the limit, and verify at most once.
//! - Cross-account: a key never searches, checks, cancels, moves on or receives callbacks of a
//!   request of another key; what it tries changes nothing and counts against nothing.
//!
//! (Network unblock is not covered here yet.)

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use reqwest::Method;
use serde_json::{json, Value};
use verifyd::api::v1::workflow::TRIES_PER_CODE as V1_TRIES;
use verifyd::api::v2::request::TRIES_PER_CODE as V2_TRIES;
use verifyd::auth::apps::create_app;
use verifyd::auth::create_key;
use verifyd::clock::{Clock, ManualClock};
use verifyd::config::{DatabaseUrl, KeySource, Settings};
use verifyd::crypto::ServerKey;
use verifyd::startup::{Application, Overrides};

use crate::helpers::{number, v1_json, Engine, TestApp};
use crate::support::gateway::{Answer as GatewayAnswer, Gateway, Seen};
use crate::v2::{problem, Answer, Auth};

const PRIVATE_KEY: &str = include_str!("../fixtures/vonage-test-key.pem");
const PUBLIC_KEY: &str = include_str!("../fixtures/vonage-test-key.pub.pem");
/// The server key of every server here, so that a test can register applications whose
/// signature secrets the server opens again to sign callbacks.
const SERVER_KEY: &str = "1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100";

/// How many checks are fired at one request at once.
const BURST: usize = 50;

/// Each listed scenario `async fn name(engine: Engine)` becomes two tests, `name::sqlite` and
/// `name::postgres`, on a multi-threaded runtime so that concurrent calls really overlap.
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$name(crate::helpers::Engine::Sqlite).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                super::$name(crate::helpers::Engine::Postgres).await
            }
        }
    )*};
}

on_both_engines!(
    v1_concurrent_wrong_codes_compare_at_most_the_allowed_tries,
    v2_concurrent_wrong_codes_compare_at_most_the_allowed_tries,
    v1_and_v2_checks_of_one_request_share_its_tries,
    concurrent_right_and_wrong_codes_verify_at_most_once_and_never_after_the_limit,
    another_key_cannot_search_check_cancel_or_move_on_a_v1_request,
    another_key_cannot_see_check_cancel_or_move_on_a_v2_request,
    callbacks_go_only_to_the_application_of_the_request,
);

/// A server on `engine` as `helpers::spawn_app` makes one (its manual clock, its first key,
/// the inbox), with [`SERVER_KEY`]; `None` on PostgreSQL without `VERIFYD_TEST_POSTGRES_URL`.
async fn spawn(engine: Engine) -> Option<Arc<TestApp>> {
    let dir = tempfile::tempdir().unwrap();
    let listen = "127.0.0.1:0".parse().unwrap();
    let (mut settings, schema) = match engine {
        Engine::Sqlite => (
            Settings::sqlite(listen, &dir.path().join("verifyd.db")),
            None,
        ),
        Engine::Postgres => {
            let Some(schema) = crate::support::PgSchema::create() else {
                eprintln!("skipped: VERIFYD_TEST_POSTGRES_URL is not set");
                return None;
            };
            let settings = Settings::new(listen, DatabaseUrl::Postgres(schema.url.clone()));
            (settings, Some(schema))
        }
    };
    settings.key = KeySource::Hex(SERVER_KEY.into());
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let app = Application::build_with(
        settings,
        Overrides {
            clock: Some(clock.clone()),
        },
    )
    .await
    .expect("the server starts");
    let key = create_key(app.store().as_ref(), "test", true, clock.now())
        .await
        .unwrap();
    Some(Arc::new(TestApp {
        base: format!("http://127.0.0.1:{}", app.port()),
        app,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        clock,
        key: key.api_key,
        secret: key.api_secret,
        _dir: dir,
        schema,
    }))
}

/// Runs `n` calls at once: each is spawned, and all wait for each other at a barrier before
/// their first request. Their answers, in call order.
async fn at_once<T, F, Fut>(n: usize, call: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let barrier = barrier.clone();
            let call = call(i);
            tokio::spawn(async move {
                barrier.wait().await;
                call.await
            })
        })
        .collect();
    let mut answers = Vec::with_capacity(n);
    for task in tasks {
        answers.push(task.await.expect("a call panicked"));
    }
    answers
}

/// `n` different wrong codes of the PIN's length, as a brute force would try them.
fn guesses(pin: &str, n: usize) -> Vec<String> {
    let width = pin.len();
    (0u64..)
        .map(|i| format!("{:0width$}", i * 7919 % 10u64.pow(width as u32)))
        .filter(|g| g != pin)
        .take(n)
        .collect()
}

fn count<T: PartialEq>(list: &[T], what: T) -> usize {
    list.iter().filter(|x| **x == what).count()
}

/// A v1 check's `status`.
async fn v1_check(app: Arc<TestApp>, id: String, code: String) -> String {
    let body = app
        .call(
            "/verify/check/json",
            &[("request_id", &id), ("code", &code)],
        )
        .await;
    body["status"].as_str().unwrap().to_owned()
}

/// A v2 check's HTTP status and problem slug (`ok` for a 200, which must say completed).
async fn v2_check(app: Arc<TestApp>, id: String, code: String) -> (u16, String) {
    let a = app.v2_check(&id, &code).await;
    let slug = if a.status == 200 {
        assert_eq!(a.body["status"], "completed", "{}", a.body);
        "ok".to_owned()
    } else {
        let kind = a.body["type"]
            .as_str()
            .unwrap_or_else(|| panic!("{}", a.body));
        kind.rsplit('#').next().unwrap().to_owned()
    };
    (a.status.as_u16(), slug)
}

/// The v1 search of `id` with this app's own key.
async fn search(app: &TestApp, id: &str) -> Value {
    app.call_get("/verify/search/json", &[("request_id", id)])
        .await
}

/// The `status` of each of a v1 search's checks.
fn check_statuses(search: &Value) -> Vec<String> {
    search["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("no checks in {search}"))
        .iter()
        .map(|c| c["status"].as_str().unwrap().to_owned())
        .collect()
}

/// The v2 `GET` of `id` with this app's own key.
async fn v2_show(app: &TestApp, id: &str) -> Value {
    let shown = app
        .v2(Method::GET, &format!("/v2/verify/{id}"), None, Auth::Basic)
        .await;
    assert_eq!(shown.status, 200, "{}", shown.body);
    shown.body
}

fn basic(key: &str, secret: &str) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{key}:{secret}"));
    format!("Basic {token}")
}

async fn v1_brute_force(app: &Arc<TestApp>, to: &str) -> (String, String, Vec<String>) {
    let id = app.start(to).await;
    let pin = app.pin(to, &id).await;
    let answers = {
        let guesses = guesses(&pin, BURST);
        at_once(BURST, |i| {
            v1_check(app.clone(), id.clone(), guesses[i].clone())
        })
        .await
    };
    (id, pin, answers)
}

async fn v1_concurrent_wrong_codes_compare_at_most_the_allowed_tries(engine: Engine) {
    let Some(app) = spawn(engine).await else {
        return;
    };
    let tries = usize::from(V1_TRIES);
    let to = number(800);
    let (id, pin, answers) = v1_brute_force(&app, &to).await;
    // Each wrong code compared is a 16 until the last allowed one, which is the 17 that ends
    // the request; every other check found nothing left to compare against.
    assert_eq!(count(&answers, "16".into()), tries - 1, "{answers:?}");
    assert_eq!(count(&answers, "17".into()), 1, "{answers:?}");
    assert_eq!(count(&answers, "6".into()), BURST - tries, "{answers:?}");

    // Even the right code, many times at once, is refused now.
    let right = at_once(10, |_| v1_check(app.clone(), id.clone(), pin.clone())).await;
    assert!(right.iter().all(|s| s == "6"), "{right:?}");

    let found = search(&app, &id).await;
    assert_eq!(found["status"], "FAILED", "{found}");
    assert_eq!(
        check_statuses(&found),
        vec!["INVALID"; tries],
        "exactly the allowed checks were recorded: {found}"
    );
}

async fn v2_concurrent_wrong_codes_compare_at_most_the_allowed_tries(engine: Engine) {
    let Some(app) = spawn(engine).await else {
        return;
    };
    let tries = usize::from(V2_TRIES);
    let to = number(801);
    let id = app
        .v2_start(json!({ "brand": "Acme", "workflow": [{ "channel": "sms", "to": to }] }))
        .await;
    let code = app.v2_code(&to, &id, "sms", 1).await;
    let guesses = guesses(&code, BURST);
    let answers = at_once(BURST, |i| {
        v2_check(app.clone(), id.clone(), guesses[i].clone())
    })
    .await;
    // 400 for each wrong code but the last allowed; 410 for that one and everything after.
    let invalid = (400, "invalid-code".to_owned());
    let expired = (410, "expired".to_owned());
    assert_eq!(count(&answers, invalid), tries - 1, "{answers:?}");
    assert_eq!(count(&answers, expired), BURST - (tries - 1), "{answers:?}");

    let right = at_once(10, |_| v2_check(app.clone(), id.clone(), code.clone())).await;
    assert!(
        right.iter().all(|a| a == &(410, "expired".to_owned())),
        "{right:?}"
    );
    let shown = v2_show(&app, &id).await;
    assert_eq!(shown["status"], "failed", "{shown}");
    let checks: Vec<&str> = shown["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_str().unwrap())
        .collect();
    assert_eq!(checks, vec!["invalid"; tries], "{shown}");
}

/// One kind of check, either surface.
#[derive(Clone, Debug, PartialEq)]
enum Either {
    V1(String),
    V2(u16, String),
}

async fn v1_and_v2_checks_of_one_request_share_its_tries(engine: Engine) {
    let Some(app) = spawn(engine).await else {
        return;
    };
    assert_eq!(V1_TRIES, V2_TRIES, "one count for both surfaces");
    let tries = usize::from(V2_TRIES);
    let to = number(802);
    let id = app
        .v2_start(json!({ "brand": "Acme", "workflow": [{ "channel": "sms", "to": to }] }))
        .await;
    let hex = id.replace('-', "");
    let code = app.v2_code(&to, &id, "sms", 1).await;
    let guesses = guesses(&code, BURST);
    // Half through v2 by its UUID, half through v1 by its hex form, all at once.
    let answers = at_once(BURST, |i| {
        let (app, guess) = (app.clone(), guesses[i].clone());
        let (id, hex) = (id.clone(), hex.clone());
        async move {
            if i % 2 == 0 {
                let (status, slug) = v2_check(app, id, guess).await;
                Either::V2(status, slug)
            } else {
                Either::V1(v1_check(app, hex, guess).await)
            }
        }
    })
    .await;
    let wrong = count(&answers, Either::V1("16".into()))
        + count(&answers, Either::V2(400, "invalid-code".into()));
    assert_eq!(wrong, tries - 1, "{answers:?}");
    assert!(count(&answers, Either::V1("17".into())) <= 1, "{answers:?}");
    let ended = count(&answers, Either::V1("6".into()))
        + count(&answers, Either::V1("17".into()))
        + count(&answers, Either::V2(410, "expired".into()));
    assert_eq!(ended, BURST - (tries - 1), "{answers:?}");
    let found = search(&app, &hex).await;
    assert_eq!(found["status"], "FAILED", "{found}");
    assert_eq!(check_statuses(&found), vec!["INVALID"; tries], "{found}");
}

async fn concurrent_right_and_wrong_codes_verify_at_most_once_and_never_after_the_limit(
    engine: Engine,
) {
    let Some(app) = spawn(engine).await else {
        return;
    };
    const WRONG: usize = 12;
    const RIGHT: usize = 4;
    let mut outcomes = Vec::new();
    for round in 0..6u32 {
        // v1: one right code in every fourth call.
        let to = number(810 + round);
        let id = app.start(&to).await;
        let pin = app.pin(&to, &id).await;
        let codes: Vec<String> = {
            let mut wrong = guesses(&pin, WRONG).into_iter();
            (0..WRONG + RIGHT)
                .map(|i| {
                    if i % 4 == 3 {
                        pin.clone()
                    } else {
                        wrong.next().unwrap()
                    }
                })
                .collect()
        };
        let answers = at_once(codes.len(), |i| {
            v1_check(app.clone(), id.clone(), codes[i].clone())
        })
        .await;
        let verified = count(&answers, "0".into());
        let wrong = count(&answers, "16".into());
        let too_many = count(&answers, "17".into());
        let gone = count(&answers, "6".into());
        assert_eq!(
            verified + wrong + too_many + gone,
            answers.len(),
            "{answers:?}"
        );
        assert!(verified <= 1, "verified more than once: {answers:?}");
        assert_eq!(
            verified + too_many,
            1,
            "the request ended exactly once, one way: {answers:?}"
        );
        assert!(wrong < usize::from(V1_TRIES), "{answers:?}");
        let found = search(&app, &id).await;
        let checks = check_statuses(&found);
        assert_eq!(
            checks.len(),
            verified + wrong + too_many,
            "one check recorded per code compared: {answers:?} {found}"
        );
        if verified == 1 {
            assert_eq!(found["status"], "SUCCESS", "{found}");
            assert_eq!(checks.last().unwrap(), "VALID", "{found}");
        } else {
            assert_eq!(found["status"], "FAILED", "{found}");
            assert_eq!(checks, vec!["INVALID"; usize::from(V1_TRIES)], "{found}");
        }
        assert_eq!(
            v1_check(app.clone(), id.clone(), pin.clone()).await,
            "6",
            "nothing is verified after the end"
        );
        outcomes.push(format!(
            "v1 round {round}: {verified} verified, {wrong} wrong"
        ));

        // v2: the same mix.
        let to = number(830 + round);
        let id = app
            .v2_start(json!({ "brand": "Acme", "workflow": [{ "channel": "sms", "to": to }] }))
            .await;
        let code = app.v2_code(&to, &id, "sms", 1).await;
        let codes: Vec<String> = {
            let mut wrong = guesses(&code, WRONG).into_iter();
            (0..WRONG + RIGHT)
                .map(|i| {
                    if i % 4 == 1 {
                        code.clone()
                    } else {
                        wrong.next().unwrap()
                    }
                })
                .collect()
        };
        let answers = at_once(codes.len(), |i| {
            v2_check(app.clone(), id.clone(), codes[i].clone())
        })
        .await;
        let verified = count(&answers, (200, "ok".into()));
        let wrong = count(&answers, (400, "invalid-code".into()));
        let expired = count(&answers, (410, "expired".into()));
        let gone = count(&answers, (404, "request-not-found".into()));
        assert_eq!(
            verified + wrong + expired + gone,
            answers.len(),
            "{answers:?}"
        );
        assert!(verified <= 1, "verified more than once: {answers:?}");
        let shown = v2_show(&app, &id).await;
        if verified == 1 {
            // Ended by success: later checks find nothing, none is told of a failure.
            assert_eq!(expired, 0, "{answers:?}");
            assert_eq!(shown["status"], "completed", "{shown}");
        } else {
            assert_eq!(wrong, usize::from(V2_TRIES) - 1, "{answers:?}");
            assert_eq!(gone, 0, "{answers:?}");
            assert_eq!(shown["status"], "failed", "{shown}");
        }
        assert!(wrong < usize::from(V2_TRIES), "{answers:?}");
        let checks = shown["checks"].as_array().unwrap();
        assert_eq!(checks.len(), verified + wrong + usize::from(verified == 0));
        assert_eq!(
            v2_check(app.clone(), id.clone(), code.clone()).await.0 / 100,
            4,
            "nothing is verified after the end"
        );
        outcomes.push(format!(
            "v2 round {round}: {verified} verified, {wrong} wrong"
        ));
    }
    println!("{}", outcomes.join("\n"));
}

/// A v1 call with another key's credentials (in the form, as most clients send them).
async fn v1_as(
    app: &TestApp,
    key: &(String, String),
    path: &str,
    params: &[(&str, &str)],
) -> Value {
    let mut form = vec![("api_key", key.0.as_str()), ("api_secret", key.1.as_str())];
    form.extend_from_slice(params);
    let response = app
        .client
        .post(app.url(path))
        .form(&form)
        .send()
        .await
        .unwrap();
    v1_json(response).await
}

async fn another_key_cannot_search_check_cancel_or_move_on_a_v1_request(engine: Engine) {
    let Some(app) = spawn(engine).await else {
        return;
    };
    let to = number(850);
    let id = app.start(&to).await;
    let pin = app.pin(&to, &id).await;
    let b = app.new_key(true).await;
    let b_to = number(851);
    let b_id = {
        let body = v1_as(
            &app,
            &b,
            "/verify/json",
            &[("number", &b_to), ("brand", "B")],
        )
        .await;
        assert_eq!(body["status"], "0", "{body}");
        body["request_id"].as_str().unwrap().to_owned()
    };

    // Search, one id and a list with B's own: A's request is not there, nor its number.
    let one = v1_as(&app, &b, "/verify/search/json", &[("request_id", &id)]).await;
    assert_eq!(one["status"], "101", "{one}");
    assert!(!one.to_string().contains(&to), "{one}");
    let listed = v1_as(
        &app,
        &b,
        "/verify/search/json",
        &[("request_ids", &id), ("request_ids", &b_id)],
    )
    .await;
    let text = listed.to_string();
    assert!(!text.contains(&id) && !text.contains(&to), "{listed}");
    assert!(text.contains(&b_id), "B sees its own: {listed}");

    // Checks, the right code last: not found, and counted nowhere.
    for code in guesses(&pin, 5).into_iter().chain([pin.clone()]) {
        let body = v1_as(
            &app,
            &b,
            "/verify/check/json",
            &[("request_id", &id), ("code", &code)],
        )
        .await;
        assert_eq!(body["status"], "6", "{body}");
        assert!(body.get("event_id").is_none(), "{body}");
    }
    // Concurrently too.
    let answers = at_once(20, |i| {
        let (app, b, id) = (app.clone(), b.clone(), id.clone());
        let code = if i % 2 == 0 {
            pin.clone()
        } else {
            "0000".into()
        };
        async move {
            v1_as(
                &app,
                &b,
                "/verify/check/json",
                &[("request_id", &id), ("code", &code)],
            )
            .await["status"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    })
    .await;
    assert!(answers.iter().all(|s| s == "6"), "{answers:?}");

    // Control, once A could cancel: not found either way.
    app.advance(31).await;
    for cmd in ["cancel", "trigger_next_event"] {
        let body = v1_as(
            &app,
            &b,
            "/verify/control/json",
            &[("request_id", &id), ("cmd", cmd)],
        )
        .await;
        assert_eq!(body["status"], "6", "{cmd}: {body}");
    }
    // Starting to A's number is B's own request, never an answer naming A's.
    let mine = v1_as(&app, &b, "/verify/json", &[("number", &to), ("brand", "B")]).await;
    assert_ne!(mine["request_id"], id.as_str(), "{mine}");

    // A's request is untouched: in progress, no check and no second event recorded, all its
    // tries left, and it verifies.
    let found = search(&app, &id).await;
    assert_eq!(found["status"], "IN PROGRESS", "{found}");
    assert_eq!(found["checks"], json!([]), "{found}");
    assert_eq!(found["events"].as_array().unwrap().len(), 1, "{found}");
    for _ in 1..V1_TRIES {
        let body = app
            .call(
                "/verify/check/json",
                &[("request_id", &id), ("code", &guesses(&pin, 1)[0])],
            )
            .await;
        assert_eq!(body["status"], "16", "{body}");
    }
    let body = app
        .call("/verify/check/json", &[("request_id", &id), ("code", &pin)])
        .await;
    assert_eq!(body["status"], "0", "{body}");
}

async fn another_key_cannot_see_check_cancel_or_move_on_a_v2_request(engine: Engine) {
    let Some(app) = spawn(engine).await else {
        return;
    };
    let to = number(860);
    let id = app
        .v2_start(json!({ "brand": "Acme", "workflow": [
            { "channel": "sms", "to": to }, { "channel": "voice", "to": to }] }))
        .await;
    let code = app.v2_code(&to, &id, "sms", 1).await;
    let b = app.new_key(true).await;
    let b_basic = basic(&b.0, &b.1);
    let b_app = application(&app, &b.0, None).await;
    let b_jwt = jwt(&b_app);
    app.advance(31).await;

    let path = format!("/v2/verify/{id}");
    let next = format!("{path}/next_workflow");
    for use_jwt in [false, true] {
        let auth = || {
            if use_jwt {
                Auth::Jwt(&b_jwt)
            } else {
                Auth::Header(&b_basic)
            }
        };
        let not_found = |a: &Answer| {
            problem(a, 404, "request-not-found");
            assert!(!a.body.to_string().contains(&to), "{}", a.body);
        };
        not_found(&app.v2(Method::GET, &path, None, auth()).await);
        for c in [guesses(&code, 1)[0].clone(), code.clone()] {
            let body = Some(json!({ "code": c }));
            not_found(&app.v2(Method::POST, &path, body, auth()).await);
        }
        // A malformed check body of someone else's request is not found either.
        let odd = Some(json!({ "code": "?" }));
        not_found(&app.v2(Method::POST, &path, odd, auth()).await);
        not_found(&app.v2(Method::POST, &next, None, auth()).await);
        not_found(&app.v2(Method::DELETE, &path, None, auth()).await);
    }
    // Concurrent right codes from B.
    let answers = at_once(20, |_| {
        let (app, path, code, b_basic) = (app.clone(), path.clone(), code.clone(), b_basic.clone());
        async move {
            app.v2(
                Method::POST,
                &path,
                Some(json!({ "code": code })),
                Auth::Header(&b_basic),
            )
            .await
            .status
            .as_u16()
        }
    })
    .await;
    assert!(answers.iter().all(|s| *s == 404), "{answers:?}");
    // Through v1, by the hex form of the id: nothing either.
    let hex = id.replace('-', "");
    let found = v1_as(&app, &b, "/verify/search/json", &[("request_id", &hex)]).await;
    assert_eq!(found["status"], "101", "{found}");
    let checked = v1_as(
        &app,
        &b,
        "/verify/check/json",
        &[("request_id", &hex), ("code", &code)],
    )
    .await;
    assert_eq!(checked["status"], "6", "{checked}");
    for cmd in ["cancel", "trigger_next_event"] {
        let body = v1_as(
            &app,
            &b,
            "/verify/control/json",
            &[("request_id", &hex), ("cmd", cmd)],
        )
        .await;
        assert_eq!(body["status"], "6", "{cmd}: {body}");
    }

    // A's request is as it was: in progress on its first channel, no check, and verifies.
    let shown = v2_show(&app, &id).await;
    assert_eq!(shown["status"], "in_progress", "{shown}");
    assert_eq!(shown["checks"], json!([]), "{shown}");
    assert_eq!(shown["workflow"][1]["status"], "unused", "{shown}");
    assert_eq!(
        app.messages_for(&to, &hex, 1).await.len(),
        1,
        "no second channel was started"
    );
    for _ in 1..V2_TRIES {
        let wrong = app.v2_check(&id, &guesses(&code, 1)[0]).await;
        problem(&wrong, 400, "invalid-code");
    }
    assert_eq!(app.v2_check(&id, &code).await.status, 200);
}

/// Registers an application of `api_key` (the fixture's public key) with `status_url`.
async fn application(app: &TestApp, api_key: &str, status_url: Option<&str>) -> (String, String) {
    let store = app.app.store();
    let created = create_app(
        store.as_ref(),
        store.as_ref(),
        &ServerKey::from_hex(SERVER_KEY).unwrap(),
        api_key,
        PUBLIC_KEY,
        status_url,
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    (created.application_id, created.signature_secret)
}

fn jwt(application: &(String, String)) -> String {
    let now = chrono::Utc::now().timestamp();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &json!({ "application_id": application.0, "iat": now, "exp": now + 900 }),
        &jsonwebtoken::EncodingKey::from_rsa_pem(PRIVATE_KEY.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// Whether a callback's `Authorization` JWT is signed (HS256) with `secret`.
fn signed_with(seen: &Seen, secret: &str) -> bool {
    let Some(token) = seen
        .headers
        .get("authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
    else {
        return false;
    };
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )
    .is_ok()
}

async fn callbacks_go_only_to_the_application_of_the_request(engine: Engine) {
    let Some(app) = spawn(engine).await else {
        return;
    };
    let a_receiver = Gateway::start(GatewayAnswer::new(200, "")).await;
    let b_receiver = Gateway::start(GatewayAnswer::new(200, "")).await;
    let a_app = application(&app, &app.key, Some(&a_receiver.url())).await;
    let b = app.new_key(true).await;
    let b_app = application(&app, &b.0, Some(&b_receiver.url())).await;
    let (a_jwt, b_jwt) = (jwt(&a_app), jwt(&b_app));
    let start = |token: String, to: String| {
        let app = app.clone();
        async move {
            let a = app
                .v2(
                    Method::POST,
                    "/v2/verify",
                    Some(json!({ "brand": "Acme", "workflow": [{ "channel": "sms", "to": to }] })),
                    Auth::Jwt(&token),
                )
                .await;
            assert_eq!(a.status, 202, "{}", a.body);
            a.body["request_id"].as_str().unwrap().to_owned()
        }
    };
    let (a_to, b_to) = (number(870), number(871));
    let a_id = start(a_jwt.clone(), a_to.clone()).await;
    let b_id = start(b_jwt.clone(), b_to.clone()).await;
    let a_code = app.v2_code(&a_to, &a_id, "sms", 1).await;
    let b_code = app.v2_code(&b_to, &b_id, "sms", 1).await;

    // B tries to end A's request every way it can: nothing happens.
    let a_path = format!("/v2/verify/{a_id}");
    for c in [a_code.clone(), guesses(&a_code, 1)[0].clone()] {
        let tried = app
            .v2(
                Method::POST,
                &a_path,
                Some(json!({ "code": c })),
                Auth::Jwt(&b_jwt),
            )
            .await;
        problem(&tried, 404, "request-not-found");
    }
    app.advance(31).await;
    problem(
        &app.v2(Method::DELETE, &a_path, None, Auth::Jwt(&b_jwt))
            .await,
        404,
        "request-not-found",
    );

    // Each request ends its own way: A's succeeds, B's fails after three wrong codes.
    let ok = app
        .v2(
            Method::POST,
            &a_path,
            Some(json!({ "code": a_code })),
            Auth::Jwt(&a_jwt),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    for wrong in guesses(&b_code, usize::from(V2_TRIES)) {
        let a = app
            .v2(
                Method::POST,
                &format!("/v2/verify/{b_id}"),
                Some(json!({ "code": wrong })),
                Auth::Jwt(&b_jwt),
            )
            .await;
        assert!(matches!(a.status.as_u16(), 400 | 410), "{}", a.body);
    }

    // An event and a summary each, to its own application only, signed with its own secret.
    a_receiver.wait_for(2, Duration::from_secs(15)).await;
    b_receiver.wait_for(2, Duration::from_secs(15)).await;
    // Anything sent to the wrong receiver would have come by now too.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (a_seen, b_seen) = (a_receiver.seen(), b_receiver.seen());
    assert_eq!(a_seen.len(), 2, "{a_seen:?}");
    assert_eq!(b_seen.len(), 2, "{b_seen:?}");
    for (seen, own, other_id, own_secret, other_secret, status) in [
        (&a_seen, &a_id, &b_id, &a_app.1, &b_app.1, "completed"),
        (&b_seen, &b_id, &a_id, &b_app.1, &a_app.1, "failed"),
    ] {
        for s in seen.iter() {
            let body = s.json();
            assert_eq!(body["request_id"], own.as_str(), "{}", s.body);
            assert_eq!(body["status"], status, "{}", s.body);
            assert!(!s.body.contains(other_id.as_str()), "{}", s.body);
            assert!(signed_with(s, own_secret), "signed with its own secret");
            assert!(!signed_with(s, other_secret), "never with the other's");
        }
    }
}
