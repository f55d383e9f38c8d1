//! Builds a running server from [`Settings`]: store, key, clock, channels, scheduler and HTTP.
//! `main` stays thin; tests build the same [`Application`] on port 0.

use std::fs::File;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::task::JoinHandle;

use crate::api::inbox::{Inbox, InboxAccess};
use crate::api::request_id::RequestIdLayer;
use crate::api::{self, AppState};
use crate::auth::{self, KeyCache};
use crate::callbacks::CallbackSender;
use crate::clock::{Clock, ClockAnchor, ScaledClock};
use crate::config::{DatabaseUrl, KeySource, Settings};
use crate::crypto::ServerKey;
use crate::delivery::{spawn_dispatcher, Router, Routes};
use crate::http::{self, refusals::Refusals};
use crate::reload::{Reloaded, Reloader};
use crate::scheduler::{Scheduler, SchedulerWake};
use crate::service::{Rules, VerifyService};
use crate::store::postgres::PgStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{InboxLog, KeyStore, MetaStore, Store};

const META_KEY_FINGERPRINT: &str = "server_key_fingerprint";
const META_CLOCK_ANCHOR: &str = "clock_anchor";

/// A server that is listening; [`Application::run_until_stopped`] serves until shutdown.
pub struct Application {
    addr: SocketAddr,
    server: http::Server,
    background: Vec<JoinHandle<()>>,
    scheduler_task: Option<(JoinHandle<()>, tokio::sync::watch::Sender<bool>)>,
    dispatcher: Option<crate::delivery::dispatch::Worker>,
    store: Arc<dyn Store>,
    database: DatabaseUrl,
    scheduler: Arc<Scheduler>,
    delivery: Arc<Routes>,
    keys: Arc<KeyCache>,
    reloader: Reloader,
    clock: Arc<dyn Clock>,
    keep_ended: Option<chrono::Duration>,
    /// Held for the server's lifetime: one `serve` per SQLite file.
    _lock: Option<File>,
}

/// Everything a start needs that is not in [`Settings`]: tests replace the clock.
#[derive(Default)]
pub struct Overrides {
    pub clock: Option<Arc<dyn Clock>>,
}

/// Opens the engine the URL names. A SQLite file is held alone (a lock file), and the leases of
/// a previous run on it are ended: its unsent deliveries go out with the first sweep. PostgreSQL is
/// shared by nodes, whose leases run out by themselves.
async fn open_store(
    database: &DatabaseUrl,
    lease: Duration,
) -> anyhow::Result<(Arc<dyn Store>, Option<File>)> {
    match database {
        DatabaseUrl::Sqlite(path) => {
            let lock = lock_database(path)?;
            let store = SqliteStore::open(path)?.with_delivery_lease(lease);
            let released = store.release_leases().await?;
            if released > 0 {
                tracing::info!(
                    count = released,
                    "deliveries left unsent by the last run will be sent now"
                );
            }
            Ok((Arc::new(store), Some(lock)))
        }
        DatabaseUrl::Postgres(url) => {
            let store = PgStore::open(url).await?.with_delivery_lease(lease);
            Ok((Arc::new(store), None))
        }
    }
}

/// Two servers on one SQLite file would both deliver every event; a lock file next to it stops
/// the second. Command-line tools (`verifyd keys`) do not take it.
fn lock_database(path: &Path) -> anyhow::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.is_dir() {
            bail!(
                "cannot open the database {}: the directory {} does not exist",
                path.display(),
                dir.display()
            );
        }
    }
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let mut options = File::options();
    options.create(true).truncate(false).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(&lock_path).with_context(|| {
        format!(
            "cannot create the lock file {}",
            Path::new(&lock_path).display()
        )
    })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "another verifyd serve is already using {}; stop it first",
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => Err(e).context("cannot lock the database"),
    }
}

pub async fn load_server_key(
    source: &KeySource,
    meta: &dyn MetaStore,
) -> anyhow::Result<ServerKey> {
    let key = read_key(source, true)?;
    match meta.get_meta(META_KEY_FINGERPRINT).await? {
        None => {
            meta.set_meta(META_KEY_FINGERPRINT, key.fingerprint())
                .await?
        }
        Some(stored) => same_key(&key, &stored)?,
    }
    Ok(key)
}

/// The server key for a command that is not `serve`: read, never created, and checked against
/// the database's when the database has one.
pub async fn existing_server_key(
    source: &KeySource,
    meta: &dyn MetaStore,
) -> anyhow::Result<ServerKey> {
    let key = read_key(source, false)?;
    if let Some(stored) = meta.get_meta(META_KEY_FINGERPRINT).await? {
        same_key(&key, &stored)?;
    }
    Ok(key)
}

/// The key `source` names; a missing key file is made only when `create`.
fn read_key(source: &KeySource, create: bool) -> anyhow::Result<ServerKey> {
    match source {
        KeySource::File(path) if create => ServerKey::load_or_create(path),
        KeySource::File(path) => ServerKey::load(path),
        KeySource::Hex(hex) => ServerKey::from_hex(hex).context("VERIFYD_SECRET_KEY"),
    }
}

fn same_key(key: &ServerKey, stored: &str) -> anyhow::Result<()> {
    if stored == key.fingerprint() {
        return Ok(());
    }
    bail!(
        "the secret key (fingerprint {}) is not the one this database was created with \
         (fingerprint {stored}); every stored PIN would fail. Start with the original key \
         file or VERIFYD_SECRET_KEY.",
        key.fingerprint()
    )
}

async fn load_clock(speed: f64, meta: &dyn MetaStore) -> anyhow::Result<ScaledClock> {
    let stored = match meta.get_meta(META_CLOCK_ANCHOR).await? {
        Some(json) => Some(serde_json::from_str(&json).context("stored clock anchor")?),
        None => None,
    };
    let real_ms = chrono::Utc::now().timestamp_millis();
    let (anchor, changed) = ClockAnchor::resume(stored, speed, real_ms);
    if changed {
        meta.set_meta(META_CLOCK_ANCHOR, &serde_json::to_string(&anchor)?)
            .await?;
    }
    Ok(ScaledClock::new(anchor))
}

/// Creates the first key of an empty database and prints it once, on stdout (before the server
/// logs that it is listening).
async fn ensure_first_key(keys: &dyn KeyStore, now: crate::domain::Instant) -> anyhow::Result<()> {
    if !keys.list_keys().await?.is_empty() {
        return Ok(());
    }
    let key = auth::create_key(keys, "default", true, now).await?;
    eprintln!(
        "No API key existed, so one was created. Its secret is shown only this once (stdout):"
    );
    println!("{}", serde_json::to_string(&key)?);
    Ok(())
}

/// The whole HTTP surface for `state`; handler tests can drive it without a socket.
pub fn router(state: AppState) -> axum::Router {
    let mut app = axum::Router::new()
        .merge(api::v1::routes())
        .merge(api::v2::routes())
        .merge(api::receipts::routes())
        .merge(api::openapi::routes())
        .merge(api::health::routes())
        .merge(api::dashboard::routes());
    if state.inbox.is_some() {
        app = app.merge(api::inbox::routes(state.clone()));
    }
    crate::metrics::handle();
    app.route_layer(axum::middleware::from_fn(api::health::track))
        .with_state(state)
        .layer(RequestIdLayer)
}

/// How long requests in flight may take to finish once a shutdown begins.
const REQUESTS_FINISH: Duration = Duration::from_secs(10);

/// How long the scheduler's last tick, and then the tries in progress, may take at a shutdown.
const SENDS_FINISH: Duration = Duration::from_secs(10);

/// How often the limits' counters that no window can use any more are deleted.
const FORGET_COUNTERS_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// How long conversion monitoring keeps its hourly tallies: the longest period
/// `verifyd fraud report --since` shows.
pub const FRAUD_TALLIES_KEPT: chrono::Duration = chrono::Duration::days(31);

/// Ended verifications forgotten per run at most, so that a first run on a big database spreads
/// its deletes over hours instead of holding the writer.
const FORGET_ENDED_PER_RUN: usize = 20 * crate::store::retention::FORGET_BATCH;

/// How often ended verifications past their retention are looked for: the look reads the
/// verifications by start time, which no index serves (one would slow every start).
const FORGET_ENDED_EVERY: u32 = 60;

/// Every [`FORGET_COUNTERS_EVERY`], forever: deletes expired limit counters and conversion
/// tallies older than [`FRAUD_TALLIES_KEPT`] (those of buckets and subjects never counted again
/// would otherwise stay); every [`FORGET_ENDED_EVERY`] runs, from the first, ended verifications
/// started more than `keep_ended` ago.
async fn housekeeping(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    keep_ended: Option<chrono::Duration>,
) {
    let mut tick = tokio::time::interval(FORGET_COUNTERS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut run: u32 = 0;
    loop {
        tick.tick().await;
        let ended = keep_ended.filter(|_| run.is_multiple_of(FORGET_ENDED_EVERY));
        housekeep(store.as_ref(), clock.now(), ended).await;
        run = run.wrapping_add(1);
    }
}

/// One run of [`housekeeping`]; ended verifications are looked for when `keep_ended` is given.
async fn housekeep(
    store: &dyn Store,
    now: crate::domain::Instant,
    keep_ended: Option<chrono::Duration>,
) {
    use crate::store::retention::FORGET_BATCH;
    if let Err(e) = store.forget_expired(now).await {
        tracing::warn!(error = %e, "could not delete expired limit counters");
    }
    if let Err(e) = store.forget_tallies(now - FRAUD_TALLIES_KEPT).await {
        tracing::warn!(error = %e, "could not delete old conversion tallies");
    }
    if let Some(keep) = keep_ended {
        let mut forgotten = 0;
        while forgotten < FORGET_ENDED_PER_RUN {
            match store.forget_ended(now - keep, FORGET_BATCH).await {
                Ok(n) => {
                    forgotten += n;
                    if n < FORGET_BATCH {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not delete ended verifications past their retention");
                    break;
                }
            }
        }
        if forgotten > 0 {
            tracing::info!(
                count = forgotten,
                "ended verifications past their retention deleted"
            );
        }
    }
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with(settings, Overrides::default()).await
    }

    pub async fn build_with(settings: Settings, overrides: Overrides) -> anyhow::Result<Self> {
        settings.validate()?;
        // A sip channel reads codes aloud: without espeak-ng the server does not start at all.
        let speaks = settings.delivery.speaks();
        if speaks {
            let version = crate::speech::espeak::check()
                .await
                .context("a sip channel reads codes aloud with espeak-ng")?;
            tracing::info!(espeak = %version, "speech for calls");
        }
        // Bind first: a port in use is the most common start failure and needs no database.
        let listener = std::net::TcpListener::bind(settings.listen)
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;

        let (store, lock) = open_store(&settings.database, settings.delivery_lease).await?;
        let key = load_server_key(&settings.key, store.as_ref()).await?;
        let clock: Arc<dyn Clock> = match overrides.clock {
            Some(clock) => clock,
            None => {
                let clock = load_clock(settings.clock_speed, store.as_ref()).await?;
                if clock.speed() != 1.0 {
                    tracing::warn!(
                        speed = clock.speed(),
                        "workflow time runs faster than real time"
                    );
                }
                Arc::new(clock)
            }
        };
        ensure_first_key(store.as_ref(), clock.now()).await?;

        let delivery = &settings.delivery;
        let uses_inbox = delivery.uses_inbox();
        let inbox: Option<Arc<dyn InboxLog>> =
            uses_inbox.then(|| store.clone() as Arc<dyn InboxLog>);
        if inbox.is_some() && !addr.ip().is_loopback() {
            tracing::warn!(
                %addr,
                "the inbox (GET /inbox) shows every PIN in clear and is served on a non-loopback address"
            );
        }
        for kind in delivery.unrouted_kinds() {
            tracing::warn!(
                kind = kind.as_str(),
                "no route carries this kind of message: its steps fail and nothing is sent"
            );
        }
        // SMPP receipts come back on the bind and SIP calls report themselves; only HTTP
        // gateways need a URL to post receipts to.
        use crate::config::delivery::ChannelSpec;
        let posts_receipts = delivery
            .channels
            .values()
            .any(|c| !matches!(c.spec, ChannelSpec::Smpp(_) | ChannelSpec::Sip(_)));
        if delivery.public_url.is_none() && posts_receipts {
            tracing::warn!(
                "no public_url: HTTP gateways are given no receipt URL, and their deliveries stay `submitted`"
            );
        }
        let client = crate::channel::http::client().context("cannot set up the HTTP client")?;
        let receipts: Arc<dyn crate::channel::ReceiptSink> =
            Arc::new(crate::delivery::receipts::StoreReceipts(
                store.clone() as Arc<dyn crate::store::DeliveryLog>
            ));
        let speech: Arc<crate::speech::Speech> = Arc::default();
        if speaks {
            // Every locale's phrases, before the first calls need them (seconds of espeak-ng).
            let speech = speech.clone();
            tokio::spawn(async move {
                let started = std::time::Instant::now();
                match speech.warm().await {
                    Ok(()) => tracing::info!(
                        took_ms = started.elapsed().as_millis() as u64,
                        "speech ready for every locale"
                    ),
                    Err(e) => tracing::warn!(error = %e, "could not render speech ahead of calls"),
                }
            });
        }
        let callback_http = client.clone();
        let deps = crate::delivery::router::Deps {
            http: client,
            receipts,
            speech,
        };
        let delivery_router = Routes::new(Router::new(
            delivery.clone(),
            inbox.clone(),
            deps.clone(),
            &key,
        ));

        let store_dyn = store.clone();
        let (dispatcher, worker) = spawn_dispatcher(
            store_dyn.clone(),
            delivery_router.clone(),
            key.clone(),
            clock.clone(),
            settings.delivery_lease,
        );
        let wake = Arc::new(SchedulerWake::default());
        let scheduler = Arc::new(Scheduler::new(
            store_dyn.clone(),
            clock.clone(),
            key.clone(),
            dispatcher.clone(),
            wake.clone(),
        ));
        let keys = KeyCache::load(store_dyn.clone()).await?;
        let apps = crate::auth::apps::AppCache::new(store_dyn.clone());
        let callbacks =
            CallbackSender::new(store_dyn.clone(), apps.clone(), key.clone(), callback_http);
        let counters = housekeeping(store_dyn.clone(), clock.clone(), settings.keep_ended);
        let housekeeping_clock = clock.clone();
        let service = Arc::new(VerifyService::new(
            store_dyn.clone(),
            Rules {
                limits: settings.limits,
                destinations: settings.destinations.clone(),
                fraud: settings.fraud.clone(),
                test_numbers: settings.delivery.test_numbers.clone(),
            },
            clock,
            key.clone(),
            dispatcher,
            wake,
            settings.pricing.clone(),
        ));
        let dashboard_key = key.clone();
        let reloader = Reloader::new(
            settings.clone(),
            delivery_router.clone(),
            service.clone(),
            deps,
            key,
            store_dyn.clone(),
            inbox.is_some(),
        );
        let refusals = Refusals::new();
        let state = AppState::new(api::Shared {
            service,
            templates: store_dyn.clone(),
            tls: settings.tls.is_some(),
            keys: keys.clone(),
            apps,
            inbox: inbox.map(|log| Inbox {
                log,
                access: InboxAccess::new(addr.ip(), settings.inbox_hosts.clone()),
            }),
            refusals: refusals.clone(),
            delivery: delivery_router.clone(),
            deliveries: store_dyn.clone(),
            dashboard: api::dashboard::Dashboard::new(
                store_dyn.clone(),
                dashboard_key,
                settings.tls.is_some(),
            ),
        });
        let app = router(state);

        let tls = match &settings.tls {
            Some(tls) => Some(http::tls_acceptor(&tls.cert, &tls.key)?),
            None => None,
        };
        let max_connections = http::connection_cap(settings.http.max_connections);
        let server = http::spawn(
            listener,
            http::Config {
                router: app,
                limits: settings.http.clone(),
                max_connections,
                tls,
                refusals: refusals.clone(),
            },
        )?;
        tracing::info!(
            %addr,
            tls = settings.tls.is_some(),
            database = %settings.database.describe(),
            routes = settings.delivery.routes.len(),
            max_connections,
            "verifyd is listening"
        );
        let (stop_scheduler, scheduler_stop) = tokio::sync::watch::channel(false);
        let scheduler_task = tokio::spawn(scheduler.clone().run(scheduler_stop));
        let background = vec![
            tokio::spawn(callbacks.run()),
            tokio::spawn(keys.clone().refresh_forever()),
            tokio::spawn(refusals.log_forever()),
            tokio::spawn(counters),
        ];
        Ok(Self {
            addr,
            server,
            background,
            scheduler_task: Some((scheduler_task, stop_scheduler)),
            dispatcher: Some(worker),
            store,
            database: settings.database.clone(),
            scheduler,
            delivery: delivery_router,
            keys,
            reloader,
            clock: housekeeping_clock,
            keep_ended: settings.keep_ended,
            _lock: lock,
        })
    }

    /// Runs the scheduler's step once, now: tests use it to know that everything due has been
    /// handled, instead of waiting for the background loop.
    pub async fn run_due_steps(&self) -> Result<usize, crate::store::StoreError> {
        self.scheduler.tick().await
    }

    /// Runs the housekeeping (limit counters, conversion tallies, ended verifications past
    /// their retention) once, now: tests use it instead of waiting for the hourly run.
    pub async fn run_housekeeping(&self) {
        housekeep(self.store.as_ref(), self.clock.now(), self.keep_ended).await;
    }

    /// Reads the API keys again now, as the background refresh does every 2 s: tests use it
    /// to know that a change to a key is in force.
    pub async fn reload_keys(&self) -> Result<(), crate::store::StoreError> {
        self.keys.reload().await
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    pub fn database(&self) -> &DatabaseUrl {
        &self.database
    }

    /// Puts the channels, routes, limits, destinations and conversion monitoring of `settings`
    /// in force without a restart (SIGHUP does it with the configuration read again); settings
    /// that do not validate change nothing.
    pub async fn reload(&self, settings: Settings) -> anyhow::Result<Reloaded> {
        self.reloader.apply(settings).await
    }

    /// Serves until SIGINT or SIGTERM, then stops accepting and lets requests in flight finish
    /// (for 10 s at most). On SIGHUP, `reread` reads the configuration again and what it
    /// gives is put in force ([`Self::reload`]); a configuration that cannot be read or does
    /// not validate is refused, and the running one is kept.
    /// `hangups` come from [`hangup_signals`], taken before the server was built so that a
    /// SIGHUP while it starts does not end the process.
    pub async fn run_until_stopped(
        mut self,
        mut hangups: tokio::sync::mpsc::Receiver<()>,
        reread: impl Fn() -> anyhow::Result<Settings>,
    ) -> anyhow::Result<()> {
        let shutdown = shutdown_signal();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = self.server.stopped() => bail!("the HTTP server stopped by itself"),
                _ = &mut shutdown => break,
                Some(()) = hangups.recv() => {
                    let reloaded = match reread() {
                        Ok(settings) => self.reload(settings).await,
                        Err(e) => Err(e),
                    };
                    log_reload(reloaded);
                }
            }
        }
        tracing::info!(
            "shutting down: no new connections, requests in flight get {REQUESTS_FINISH:?}"
        );
        self.server.graceful_shutdown(REQUESTS_FINISH);
        self.server.stopped().await;
        self.finish_deliveries().await;
        self.stop_background();
        // SMPP binds are unbound, calls still in progress hung up.
        self.delivery.current().close().await;
        self.reloader.close_retired().await;
        tracing::info!("verifyd stopped");
        Ok(())
    }

    /// Lets the scheduler end its tick and the dispatcher its tries (for [`SENDS_FINISH`] at
    /// most), then gives back every delivery not sent.
    async fn finish_deliveries(&mut self) {
        if let Some((mut task, stop)) = self.scheduler_task.take() {
            let _ = stop.send(true);
            if tokio::time::timeout(SENDS_FINISH, &mut task).await.is_err() {
                task.abort();
            }
        }
        if let Some(worker) = self.dispatcher.take() {
            let given_back = worker.stop(SENDS_FINISH).await;
            if given_back > 0 {
                tracing::info!(
                    count = given_back,
                    "deliveries not sent are given back: the next sweep of any node sends them"
                );
            }
        }
    }

    /// Stops serving and every background task; for tests that start many servers.
    pub async fn stop(mut self) {
        self.server.shutdown();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.server.stopped()).await;
        self.stop_background();
        self.delivery.current().close().await;
    }

    fn stop_background(&mut self) {
        for task in self.background.drain(..) {
            task.abort();
        }
        if let Some((task, _)) = self.scheduler_task.take() {
            task.abort();
        }
        if let Some(worker) = self.dispatcher.take() {
            worker.abort();
        }
    }
}

impl Drop for Application {
    fn drop(&mut self) {
        self.server.shutdown();
        self.stop_background();
    }
}

fn log_reload(reloaded: anyhow::Result<Reloaded>) {
    match reloaded {
        Ok(r) => {
            tracing::info!(
                kept = ?r.kept,
                started = ?r.started,
                retired = ?r.retired,
                "configuration reloaded: channels, routes, limits, destinations and fraud rules in force"
            );
            if !r.need_restart.is_empty() {
                tracing::warn!(
                    settings = ?r.need_restart,
                    "these settings changed and take effect only after a restart; they keep their running values"
                );
            }
        }
        Err(e) => tracing::error!(
            error = %format!("{e:#}"),
            "configuration not reloaded; the running one is kept"
        ),
    }
}

/// SIGHUP, one message per signal (several during a reload make one more); never on platforms
/// without it. Taken, SIGHUP no longer ends the process.
pub fn hangup_signals() -> anyhow::Result<tokio::sync::mpsc::Receiver<()>> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                // Signals that come during a reload make one more reload, not one each.
                let _ = tx.try_send(());
            }
        });
    }
    #[cfg(not(unix))]
    std::mem::forget(tx);
    Ok(rx)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
