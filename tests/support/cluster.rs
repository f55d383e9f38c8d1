//! Several `verifyd serve` processes on one PostgreSQL database, for the cluster tests.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{client, PgSchema, Server};

pub struct Cluster {
    pub nodes: Vec<Server>,
    pub key: String,
    pub secret: String,
    pub schema: PgSchema,
    _dir: tempfile::TempDir,
}

/// Starts `n` nodes on a fresh schema, one after the other (the first creates the key).
pub fn cluster(n: usize, extra: &[&str]) -> Option<Cluster> {
    let Some(schema) = PgSchema::create() else {
        eprintln!("skipped: VERIFYD_TEST_POSTGRES_URL is not set");
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("cluster.key");
    let mut args: Vec<&str> = vec!["--secret-key-file", key_file.to_str().unwrap()];
    args.extend_from_slice(extra);
    let mut nodes = Vec::new();
    let mut first_key = None;
    for _ in 0..n {
        let node = super::start_url(dir.path(), &schema.url, &args);
        if first_key.is_none() {
            first_key = node.first_key.clone();
        } else {
            assert!(
                node.first_key.is_none(),
                "only the first node creates a key"
            );
        }
        nodes.push(node);
    }
    let (key, secret) = first_key.expect("the first node printed the key");
    Some(Cluster {
        nodes,
        key,
        secret,
        schema,
        _dir: dir,
    })
}

impl Cluster {
    pub fn base(&self, node: usize) -> String {
        self.nodes[node].base("http")
    }

    pub fn post(&self, node: usize, path: &str, form: &[(&str, &str)]) -> reqwest::Result<Value> {
        client()
            .post(format!("{}{path}", self.base(node)))
            .basic_auth(&self.key, Some(&self.secret))
            .form(form)
            .send()?
            .json()
    }

    pub fn inbox(&self, node: usize) -> Vec<Value> {
        client()
            .get(format!("{}/inbox/messages", self.base(node)))
            .query(&[("limit", "5000")])
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    /// Messages per request id, as the shared inbox shows them.
    pub fn messages_by_request(&self, node: usize) -> HashMap<String, Vec<Value>> {
        let mut by: HashMap<String, Vec<Value>> = HashMap::new();
        for m in self.inbox(node) {
            by.entry(m["request_id"].as_str().unwrap().to_owned())
                .or_default()
                .push(m);
        }
        by
    }
}

/// Waits (bounded) until `done` holds for the inbox as `node` shows it.
pub fn wait_until(
    c: &Cluster,
    node: usize,
    within: Duration,
    done: impl Fn(&HashMap<String, Vec<Value>>) -> bool,
) -> HashMap<String, Vec<Value>> {
    let deadline = Instant::now() + within;
    loop {
        let by = c.messages_by_request(node);
        if done(&by) || Instant::now() > deadline {
            return by;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
