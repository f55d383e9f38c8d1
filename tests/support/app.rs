//! A server in the test's own process, configured by a configuration file's text, for tests
//! that watch what its channels send and what it records of each try.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use verifyd::config::file::ConfigFile;
use verifyd::config::{KeySource, Settings};
use verifyd::crypto::ServerKey;
use verifyd::domain::RequestId;
use verifyd::startup::Application;
use verifyd::store::{Attempt, AttemptState};

pub const KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

pub struct Server {
    pub app: Application,
    pub base: String,
    pub key: (String, String),
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
}

/// A server whose configuration file is `config` (with `{public_url}` replaced by its own URL);
/// `${TOKEN}` in it is `s3cr3t-token`.
pub async fn serve(config: &str) -> Server {
    serve_with_clock(config, None).await
}

/// As [`serve`], with workflow time from `clock` (real time when `None`).
pub async fn serve_with_clock(
    config: &str,
    clock: Option<std::sync::Arc<dyn verifyd::clock::Clock>>,
) -> Server {
    // A port free a moment ago may be taken before the server binds it (another test's
    // connection): then another port, a few times.
    let mut tries = 0;
    let (app, base, dir) = loop {
        let dir = tempfile::tempdir().unwrap();
        let port = super::free_port();
        let base = format!("http://127.0.0.1:{port}");
        let text = config.replace("{public_url}", &base);
        let env = |name: &str| match name {
            "TOKEN" => Some("s3cr3t-token".to_owned()),
            _ => None,
        };
        let file = ConfigFile::parse(Path::new("test.toml"), &text, env).unwrap();
        let mut settings = Settings::sqlite(
            format!("127.0.0.1:{port}").parse().unwrap(),
            &dir.path().join("v.db"),
        );
        settings.key = KeySource::Hex(KEY_HEX.into());
        settings.delivery = file.delivery;
        settings.limits = file.limits;
        settings.destinations = file.destinations;
        settings.fraud = file.fraud;
        settings.keep_ended = file.keep_ended;
        let overrides = verifyd::startup::Overrides {
            clock: clock.clone(),
        };
        match Application::build_with(settings, overrides).await {
            Ok(app) => break (app, base, dir),
            Err(e) if tries < 5 && format!("{e:#}").contains("Address already in use") => {
                tries += 1;
            }
            Err(e) => panic!("the server starts: {e:?}"),
        }
    };
    let key = verifyd::auth::create_key(app.store().as_ref(), "t", true, chrono::Utc::now())
        .await
        .unwrap();
    Server {
        app,
        base,
        key: (key.api_key, key.api_secret),
        http: reqwest::Client::new(),
        dir,
    }
}

impl Server {
    /// Starts a verification (workflow 6, one SMS, unless `extra` names another) and returns its
    /// request_id.
    pub async fn start(&self, number: &str, extra: &[(&str, &str)]) -> String {
        let body = self.request(number, extra).await;
        assert_eq!(body["status"], "0", "{body}");
        body["request_id"].as_str().unwrap().to_owned()
    }

    /// `POST /verify/json`'s answer.
    pub async fn request(&self, number: &str, extra: &[(&str, &str)]) -> Value {
        let mut form = vec![
            ("api_key", self.key.0.as_str()),
            ("api_secret", self.key.1.as_str()),
            ("number", number),
            ("brand", "AcmeInc"),
        ];
        if !extra.iter().any(|(k, _)| *k == "workflow_id") {
            form.push(("workflow_id", "6"));
        }
        form.extend_from_slice(extra);
        self.http
            .post(format!("{}/verify/json", self.base))
            .form(&form)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// `POST` of `body` (JSON, when given) to the v2 `path` with this server's key; the status
    /// and the JSON answer (`null` when empty).
    #[allow(dead_code)]
    pub async fn v2_post(&self, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .basic_auth(&self.key.0, Some(&self.key.1));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// `GET path`: the status and the body's text.
    #[allow(dead_code)]
    pub async fn get_text(&self, path: &str) -> (u16, String) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }

    /// The `status` of a v1 `POST` to `path` with this server's key and `params`.
    async fn v1_status(&self, path: &str, params: &[(&str, &str)]) -> String {
        let mut form = vec![
            ("api_key", self.key.0.as_str()),
            ("api_secret", self.key.1.as_str()),
        ];
        form.extend_from_slice(params);
        let body: Value = self
            .http
            .post(format!("{}{path}", self.base))
            .form(&form)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["status"].as_str().unwrap_or_default().to_owned()
    }

    /// `POST /verify/check/json`'s status for `code`.
    pub async fn check(&self, request_id: &str, code: &str) -> String {
        let params = [("request_id", request_id), ("code", code)];
        self.v1_status("/verify/check/json", &params).await
    }

    /// `POST /verify/search/json`'s status for one request: how it stands, or `101` when it is
    /// unknown.
    #[allow(dead_code)]
    pub async fn search_status(&self, request_id: &str) -> String {
        let params = [("request_id", request_id)];
        self.v1_status("/verify/search/json", &params).await
    }

    pub async fn attempts(&self, request_id: &str) -> Vec<Attempt> {
        let id = RequestId::from_hex(request_id).unwrap();
        self.app.store().attempts(&id).await.unwrap()
    }

    /// Waits (at most 10 s) until the verification's last try is in `state`.
    pub async fn wait_for_state(&self, request_id: &str, state: AttemptState) -> Vec<Attempt> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let attempts = self.attempts(request_id).await;
            if attempts.last().is_some_and(|a| a.state == state)
                || tokio::time::Instant::now() > deadline
            {
                return attempts;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn receipt_url(&self, channel: &str) -> String {
        let token = ServerKey::from_hex(KEY_HEX).unwrap().receipt_token(channel);
        format!("{}/receipts/{channel}/{token}", self.base)
    }

    pub fn database(&self) -> PathBuf {
        self.dir.path().join("v.db")
    }
}
