//! Configuration reload (SIGHUP): a new configuration's channels, routes, limits, destinations
//! and conversion monitoring replace the running ones without a restart. Requests in flight
//! finish under the rules they started with, and a try on a channel that changed or went away
//! finishes on it before it is closed. Settings a running server cannot change (its address,
//! database, key, TLS files, HTTP timeouts…) are reported and keep their running values.

use std::sync::{Arc, Weak};
use std::time::Duration;

use anyhow::{bail, Context};

use crate::channel::inbox::InboxLog;
use crate::channel::Channel;
use crate::config::Settings;
use crate::crypto::ServerKey;
use crate::delivery::router::{Deps, Retired};
use crate::delivery::Routes;
use crate::service::{Rules, VerifyService};

/// What a reload needs to put a new configuration in force.
pub struct Reloader {
    /// The settings in force: those read at the start, with every reload's reloadable part.
    running: tokio::sync::Mutex<Settings>,
    routes: Arc<Routes>,
    service: Arc<VerifyService>,
    deps: Deps,
    key: ServerKey,
    inbox: Arc<dyn InboxLog>,
    /// Whether the inbox pages are served (they are mounted at the start only).
    inbox_served: bool,
    /// Channels a reload left out that are not closed yet, for the shutdown to close.
    retiring: Arc<std::sync::Mutex<Vec<Weak<dyn Channel>>>>,
}

/// What a reload changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reloaded {
    /// Channels kept as they ran (their settings did not change).
    pub kept: Vec<String>,
    /// Channels built from the new configuration.
    pub started: Vec<String>,
    /// Channels closed once the tries on them end (left out, or replaced).
    pub retired: Vec<String>,
    /// Settings that changed in the file but take effect only after a restart.
    pub need_restart: Vec<&'static str>,
}

impl Reloader {
    pub fn new(
        settings: Settings,
        routes: Arc<Routes>,
        service: Arc<VerifyService>,
        deps: Deps,
        key: ServerKey,
        inbox: Arc<dyn InboxLog>,
        inbox_served: bool,
    ) -> Self {
        Self {
            running: tokio::sync::Mutex::new(settings),
            routes,
            service,
            deps,
            key,
            inbox,
            inbox_served,
            retiring: Arc::default(),
        }
    }

    /// Closes the channels a reload left out that still wait for their tries to end: the
    /// server is stopping.
    pub async fn close_retired(&self) {
        let retiring: Vec<Weak<dyn Channel>> = std::mem::take(&mut *lock(&self.retiring));
        for channel in retiring.iter().filter_map(Weak::upgrade) {
            channel.close().await;
        }
    }

    /// Puts `new`'s channels, routes and rules in force, or changes nothing and says why.
    pub async fn apply(&self, new: Settings) -> anyhow::Result<Reloaded> {
        let mut running = self.running.lock().await;
        // What would be in force: the new reloadable settings beside the running rest (a clock
        // that runs fast allows only the inbox, say).
        let mut effective = running.clone();
        effective.delivery = new.delivery.clone();
        effective.limits = new.limits;
        effective.destinations = new.destinations.clone();
        effective.fraud = new.fraud.clone();
        effective.validate()?;
        if new.delivery.uses_inbox() && !self.inbox_served {
            bail!(
                "a route names the inbox, whose pages this server does not serve (no route named \
                 it at the start): restart it to use the inbox"
            );
        }
        if new.delivery.speaks() && !running.delivery.speaks() {
            crate::speech::espeak::check()
                .await
                .context("a sip channel reads codes aloud with espeak-ng")?;
            let speech = self.deps.speech.clone();
            tokio::spawn(async move {
                if let Err(e) = speech.warm().await {
                    tracing::warn!(error = %e, "could not render speech ahead of calls");
                }
            });
        }
        let need_restart = need_restart(&running, &new);
        let uses_inbox = new.delivery.uses_inbox();
        let old = self.routes.current();
        let (router, retired) = old.reconfigured(
            new.delivery.clone(),
            uses_inbox.then(|| self.inbox.clone()),
            &self.deps,
            &self.key,
        );
        let retired_names: Vec<String> = retired
            .iter()
            .map(|r| r.channel.name().to_owned())
            .collect();
        let (mut kept, mut started) = (Vec::new(), Vec::new());
        for name in new.delivery.channels.keys() {
            let same = match (old.channel(name), router.channel(name)) {
                (Some(before), Some(now)) => Arc::ptr_eq(before, now),
                _ => false,
            };
            if same { &mut kept } else { &mut started }.push(name.clone());
        }
        drop(old);
        drop(self.routes.replace(router));
        self.service.set_rules(Rules {
            limits: new.limits,
            destinations: new.destinations.clone(),
            fraud: new.fraud.clone(),
            test_numbers: new.delivery.test_numbers.clone(),
        });
        for channel in retired {
            lock(&self.retiring).push(Arc::downgrade(&channel.channel));
            tokio::spawn(close_when_unused(channel, self.retiring.clone()));
        }
        running.delivery = new.delivery;
        running.limits = new.limits;
        running.destinations = new.destinations;
        running.fraud = new.fraud;
        Ok(Reloaded {
            kept,
            started,
            retired: retired_names,
            need_restart,
        })
    }
}

/// The settings that differ between `running` and `new` and that only a restart changes.
fn need_restart(running: &Settings, new: &Settings) -> Vec<&'static str> {
    let mut changed = Vec::new();
    let mut differs = |name, differs: bool| {
        if differs {
            changed.push(name);
        }
    };
    differs("listen", running.listen != new.listen);
    differs("database", running.database != new.database);
    differs("secret key", running.key != new.key);
    differs("tls_cert/tls_key", running.tls != new.tls);
    differs("clock_speed", running.clock_speed != new.clock_speed);
    differs("currency and prices", running.pricing != new.pricing);
    differs(
        "delivery_lease",
        running.delivery_lease != new.delivery_lease,
    );
    differs(
        "HTTP timeouts and max_connections",
        running.http != new.http,
    );
    differs("inbox_hosts", running.inbox_hosts != new.inbox_hosts);
    differs("retention", running.keep_ended != new.keep_ended);
    changed
}

/// How often a retired channel is looked at until no try uses it.
const UNUSED_POLL: Duration = Duration::from_millis(50);

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Retires a channel (an SMPP bind is unbound, calls in progress end first) once no delivery
/// holds it, or once every delivery that started before the reload must have let go of it,
/// whichever comes first.
async fn close_when_unused(
    retired: Retired,
    retiring: Arc<std::sync::Mutex<Vec<Weak<dyn Channel>>>>,
) {
    let deadline = tokio::time::Instant::now() + retired.in_use_for + Duration::from_secs(1);
    while Arc::strong_count(&retired.channel) > 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(UNUSED_POLL).await;
    }
    retired.channel.retire().await;
    lock(&retiring).retain(|w| !std::ptr::addr_eq(w.as_ptr(), Arc::as_ptr(&retired.channel)));
    tracing::info!(
        channel = retired.channel.name(),
        "a channel the reload left out is closed"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn settings() -> Settings {
        let listen: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        Settings::sqlite(listen, std::path::Path::new("v.db"))
    }

    #[test]
    fn settings_only_a_restart_changes_are_named() {
        let running = settings();
        let mut new = settings();
        assert!(need_restart(&running, &new).is_empty());
        new.listen = "127.0.0.1:9090".parse().unwrap();
        new.clock_speed = 2.0;
        new.delivery.public_url = Some("https://verify.example.com".into());
        assert_eq!(need_restart(&running, &new), ["listen", "clock_speed"]);
    }
}
