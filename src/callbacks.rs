//! Sends the callbacks of the outbox (`store::CallbackOutbox`): claims the due ones, renders each
//! from its verification (which has ended, so the body is the same on every try), signs it with
//! its application's secret and POSTs it to the application's status URL. A 2xx answer ends it;
//! anything else tries again later, doubling the wait up to five minutes, for three days.

use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;

use crate::api::v2::callbacks;
use crate::auth::apps::AppCache;
use crate::crypto::ServerKey;
use crate::store::{Callback, Store, StoreResult};

/// Callbacks claimed at once, and sent at once: one round of sends, each bounded by
/// [`SEND_TIMEOUT`], takes far less than [`LEASE`].
const BATCH: usize = 16;
const IN_FLIGHT: usize = 16;
/// How long a claimed callback is this node's: longer than a send can take.
const LEASE: Duration = Duration::from_secs(60);
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_RETRY_WAIT: Duration = Duration::from_secs(300);
/// A callback its receiver has refused for this long is given up, with an error in the log.
const GIVE_UP_AFTER: chrono::TimeDelta = chrono::TimeDelta::days(3);
/// How often the outbox is looked at when it was empty.
const IDLE_POLL: Duration = Duration::from_millis(500);

pub struct CallbackSender {
    store: Arc<dyn Store>,
    apps: Arc<AppCache>,
    key: ServerKey,
    http: reqwest::Client,
}

/// What became of one try.
enum Sent {
    Taken,
    Refused(String),
    /// Nothing to send (its application or request is gone, or there is nothing to tell).
    Dropped(&'static str),
}

impl CallbackSender {
    pub fn new(
        store: Arc<dyn Store>,
        apps: Arc<AppCache>,
        key: ServerKey,
        http: reqwest::Client,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            apps,
            key,
            http,
        })
    }

    /// Sends until the task is dropped.
    pub async fn run(self: Arc<Self>) {
        loop {
            match self.tick().await {
                Ok(n) if n >= BATCH => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot read the callback outbox"),
            }
            tokio::time::sleep(IDLE_POLL).await;
        }
    }

    /// Claims the due callbacks and tries each once; how many there were.
    pub async fn tick(self: &Arc<Self>) -> StoreResult<usize> {
        let due = self.store.claim_callbacks(BATCH, LEASE).await?;
        let n = due.len();
        let permits = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
        let mut sends = tokio::task::JoinSet::new();
        for cb in due {
            let permit = permits.clone().acquire_owned().await;
            let this = self.clone();
            sends.spawn(async move {
                this.settle(cb).await;
                drop(permit);
            });
        }
        while sends.join_next().await.is_some() {}
        Ok(n)
    }

    async fn settle(&self, cb: Callback) {
        let span = tracing::info_span!("callback", id = %cb.id, request_id = %cb.request_id, notice = cb.notice.as_str());
        self.settle_in(cb).instrument(span).await
    }

    async fn settle_in(&self, cb: Callback) {
        let outcome = self.send(&cb).await;
        let result = match outcome {
            Sent::Taken => self.store.callback_sent(&cb).await,
            Sent::Dropped(why) => {
                tracing::warn!(why, "a callback is dropped unsent");
                self.store.callback_sent(&cb).await
            }
            Sent::Refused(why) if chrono::Utc::now() - cb.created_at > GIVE_UP_AFTER => {
                tracing::error!(
                    why,
                    attempts = cb.attempts + 1,
                    "a callback is given up after three days of refusals"
                );
                self.store.callback_sent(&cb).await
            }
            Sent::Refused(why) => {
                let wait = retry_wait(cb.attempts);
                tracing::info!(why, attempts = cb.attempts + 1, retry_in = ?wait, "a callback was not taken");
                self.store.callback_failed(&cb, wait).await
            }
        };
        if let Err(e) = result {
            // The lease runs out and another sweep takes it again: at least once.
            tracing::warn!(error = %e, "cannot record how a callback went");
        }
    }

    async fn send(&self, cb: &Callback) -> Sent {
        let app = match self.apps.get(&cb.target).await {
            Ok(Some(app)) => app,
            Ok(None) => return Sent::Dropped("its application is gone"),
            Err(e) => return Sent::Refused(format!("store: {e}")),
        };
        let Some(url) = app.status_url.as_deref() else {
            return Sent::Dropped("its application has no status URL");
        };
        let found = match self
            .store
            .find(&cb.account, std::slice::from_ref(&cb.request_id))
            .await
        {
            Ok(found) => found,
            Err(e) => return Sent::Refused(format!("store: {e}")),
        };
        let Some(v) = found.first() else {
            return Sent::Dropped("its verification is gone");
        };
        let Some(body) = callbacks::body(cb.notice, v) else {
            return Sent::Dropped("nothing to tell");
        };
        let secret = match self
            .key
            .unseal_secret(&app.application_id, &app.signature_secret_sealed)
        {
            Ok(secret) => secret,
            Err(_) => {
                tracing::error!(application = %app.application_id, "the application's signature secret does not open with this server key");
                return Sent::Refused("its signature secret does not open".into());
            }
        };
        let authorization = callbacks::signature(
            &body,
            &cb.id,
            &app.application_id,
            &app.api_key,
            &secret,
            chrono::Utc::now().timestamp(),
        );
        let answer = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::AUTHORIZATION, authorization)
            .timeout(SEND_TIMEOUT)
            .body(body)
            .send()
            .await;
        match answer {
            Ok(r) if r.status().is_success() => Sent::Taken,
            Ok(r) => Sent::Refused(format!("HTTP {}", r.status().as_u16())),
            Err(e) => Sent::Refused(format!("{}", e.without_url())),
        }
    }
}

/// 1 s after the first refusal, doubling to five minutes.
fn retry_wait(attempts: i64) -> Duration {
    let doubling = Duration::from_secs(1u64 << attempts.clamp(0, 16));
    doubling.min(MAX_RETRY_WAIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_wait_twice_as_long_each_time_up_to_five_minutes() {
        let waits: Vec<u64> = (0..11).map(|n| retry_wait(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(retry_wait(1_000), MAX_RETRY_WAIT);
    }
}
