use std::sync::Arc;
use std::time::Duration;

use reqwest::header::CONTENT_TYPE;
use serde_json::Value;
use verifyd::auth::create_key;
use verifyd::clock::{Clock, ManualClock};
use verifyd::config::{DatabaseUrl, KeySource, Settings};
use verifyd::startup::{Application, Overrides};

/// The storage engine a test binary runs the suite on (`crate::ENGINE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

pub struct TestApp {
    pub app: Application,
    pub base: String,
    pub client: reqwest::Client,
    pub clock: Arc<ManualClock>,
    pub key: String,
    pub secret: String,
    /// Kept so the database outlives the test (dropped after the server).
    pub _dir: tempfile::TempDir,
    pub schema: Option<crate::support::PgSchema>,
}

/// A server on this binary's engine, or `None` (the test then passes without running) when the
/// engine is PostgreSQL and `VERIFYD_TEST_POSTGRES_URL` is not set.
pub async fn spawn_app() -> Option<TestApp> {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> Option<TestApp> {
    let dir = tempfile::tempdir().unwrap();
    let listen = "127.0.0.1:0".parse().unwrap();
    let (mut settings, schema) = match crate::ENGINE {
        Engine::Sqlite => (
            Settings::sqlite(listen, &dir.path().join("verifyd.db")),
            None,
        ),
        Engine::Postgres => {
            let Some(schema) = crate::support::PgSchema::create() else {
                eprintln!("skipped: VERIFYD_TEST_POSTGRES_URL is not set");
                return None;
            };
            let mut settings = Settings::new(listen, DatabaseUrl::Postgres(schema.url.clone()));
            settings.key = KeySource::File(dir.path().join("verifyd.key"));
            (settings, Some(schema))
        }
    };
    configure(&mut settings);
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
    Some(TestApp {
        base: format!("http://127.0.0.1:{}", app.port()),
        app,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap(),
        clock,
        key: key.api_key,
        secret: key.api_secret,
        _dir: dir,
        schema,
    })
}

/// A valid GB mobile number, distinct per `n` (447700900000 from the Vonage docs is not valid for
/// libphonenumber).
pub fn number(n: u32) -> String {
    format!("4477001{n:05}")
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    fn creds(&self) -> [(&'static str, String); 2] {
        [
            ("api_key", self.key.clone()),
            ("api_secret", self.secret.clone()),
        ]
    }

    /// POSTs a form with this app's credentials and returns the JSON answer, after checking what
    /// every v1 answer must be: HTTP 200, `application/json`, `status` a string.
    pub async fn call(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let mut form: Vec<(String, String)> = self
            .creds()
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        form.extend(params.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let response = self
            .client
            .post(self.url(path))
            .form(&form)
            .send()
            .await
            .unwrap();
        v1_json(response).await
    }

    pub async fn call_get(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let mut query: Vec<(String, String)> = self
            .creds()
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        query.extend(params.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let response = self
            .client
            .get(self.url(path))
            .query(&query)
            .send()
            .await
            .unwrap();
        v1_json(response).await
    }

    pub async fn start(&self, number: &str) -> String {
        self.start_with(number, &[]).await
    }

    pub async fn start_with(&self, number: &str, extra: &[(&str, &str)]) -> String {
        let mut params = vec![("number", number), ("brand", "AcmeInc")];
        params.extend_from_slice(extra);
        let body = self.call("/verify/json", &params).await;
        assert_eq!(body["status"], "0", "start failed: {body}");
        body["request_id"].as_str().unwrap().to_owned()
    }

    pub async fn inbox(&self, to: &str) -> Vec<Value> {
        let response = self
            .client
            .get(self.url("/inbox/messages"))
            .query(&[("to", to)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// Waits (bounded) until `request_id` has at least `n` messages; returns them newest first.
    pub async fn messages_for(&self, to: &str, request_id: &str, n: usize) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let list: Vec<Value> = self
                .inbox(to)
                .await
                .into_iter()
                .filter(|m| m["request_id"] == request_id)
                .collect();
            if list.len() >= n {
                return list;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "expected {n} messages for {request_id}, have {list:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The PIN of the newest message for `request_id`.
    pub async fn pin(&self, to: &str, request_id: &str) -> String {
        let list = self.messages_for(to, request_id, 1).await;
        pin_in(list[0]["text"].as_str().unwrap())
    }

    /// Moves workflow time on and runs the scheduler's step once, so everything due by then has
    /// been handled (deliveries may still be on their way to the inbox).
    pub async fn advance(&self, secs: i64) {
        self.clock.advance(chrono::Duration::seconds(secs));
        self.app.run_due_steps().await.unwrap();
    }

    /// Replaces the stored body of a verification with text that is not JSON, as a damaged or
    /// foreign row would be.
    pub fn corrupt_body(&self, request_id: &str) {
        let sql =
            format!("update verification set body = 'not json' where request_id = '{request_id}'");
        match (&self.schema, self.app.database().sqlite_path()) {
            (Some(schema), _) => schema.execute(&sql),
            (None, Some(path)) => {
                let conn = rusqlite::Connection::open(path).unwrap();
                conn.busy_timeout(Duration::from_secs(5)).unwrap();
                conn.execute(&sql, []).unwrap();
            }
            (None, None) => unreachable!("a PostgreSQL app has a schema"),
        }
    }

    pub async fn new_key(&self, allow_custom_pin: bool) -> (String, String) {
        let key = create_key(
            self.app.store().as_ref(),
            "other",
            allow_custom_pin,
            self.clock.now(),
        )
        .await
        .unwrap();
        (key.api_key, key.api_secret)
    }
}

pub use crate::support::pin_in;

/// A code that differs from `pin` in its last digit.
pub fn wrong_code(pin: &str) -> String {
    let last = pin.chars().last().unwrap();
    let other = if last == '9' {
        '0'
    } else {
        char::from(last as u8 + 1)
    };
    format!("{}{}", &pin[..pin.len() - 1], other)
}

pub async fn v1_json(response: reqwest::Response) -> Value {
    assert_eq!(
        response.status(),
        200,
        "v1 answers every outcome with HTTP 200"
    );
    assert_eq!(
        response.headers().get(CONTENT_TYPE).unwrap(),
        "application/json",
        "content type must be exactly application/json"
    );
    let body: Value = response.json().await.unwrap();
    let status_is_text = body.get("status").is_some_and(Value::is_string);
    assert!(
        status_is_text || body.get("verification_requests").is_some(),
        "status must be a string: {body}"
    );
    body
}
