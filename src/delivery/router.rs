//! Which channels carry a message: the configured routes, resolved into the channels that run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::channel::inbox::{InboxChannel, InboxLog};
use crate::channel::sip::SipChannel;
use crate::channel::smpp::{SmppChannel, TRY_TIMEOUTS};
use crate::channel::twilio_sms::TwilioSmsChannel;
use crate::channel::twilio_voice::TwilioVoiceChannel;
use crate::channel::vonage_sms::VonageSmsChannel;
use crate::channel::vonage_voice::VonageVoiceChannel;
use crate::channel::webhook::WebhookChannel;
use crate::channel::{Channel, ReceiptSink};
use crate::config::delivery::{ChannelConfig, ChannelSpec, DeliveryConfig, Kind, INBOX};
use crate::crypto::ServerKey;
use crate::domain::Destination;
use crate::speech::Speech;

/// One channel of a route, as the dispatcher tries it.
#[derive(Clone)]
pub struct Step {
    pub channel: Arc<dyn Channel>,
    pub timeout: Duration,
    /// The sender: the route's, else the channel's; `None` means the request's `sender_id`.
    pub from: Option<String>,
    /// Whether the channel keeps its own record of what it sent (the inbox, when there is no
    /// configuration file), so that the try is not written to the delivery log.
    pub records_itself: bool,
    /// Where its gateway posts receipts.
    pub receipt_url: Option<String>,
    /// The position of its route in the configuration's `routes` (from 0), for metrics.
    pub route: Arc<str>,
}

pub struct Router {
    config: DeliveryConfig,
    channels: BTreeMap<String, Running>,
    receipt_urls: BTreeMap<String, String>,
    /// Each route's steps, in the order of the configuration's routes: made once, not per
    /// message.
    plans: Vec<Vec<Step>>,
    /// The one step of every message to a test number: a channel that sends nothing.
    test_plan: Vec<Step>,
}

/// A channel that runs, with what its configuration says about every try.
#[derive(Clone)]
struct Running {
    channel: Arc<dyn Channel>,
    timeout: Duration,
    from: Option<String>,
}

fn inbox_running(log: Arc<dyn InboxLog>) -> Running {
    Running {
        channel: Arc::new(InboxChannel::new(log)),
        timeout: Duration::from_secs(10),
        from: None,
    }
}

/// A channel a reload left out (or replaced), still running until the tries on it end.
pub struct Retired {
    pub channel: Arc<dyn Channel>,
    /// How long a delivery that started before the reload may still use it, at most: a round
    /// over every channel of the router it started with.
    pub in_use_for: Duration,
}

/// The routes in force. A configuration reload swaps them whole; a delivery keeps the router
/// (and the channels) it started with until its try ends.
pub struct Routes(arc_swap::ArcSwap<Router>);

impl Routes {
    pub fn new(router: Router) -> Arc<Self> {
        Arc::new(Self(arc_swap::ArcSwap::from_pointee(router)))
    }

    pub fn current(&self) -> Arc<Router> {
        self.0.load_full()
    }

    /// Puts `router` in force and returns the one it replaces.
    pub fn replace(&self, router: Router) -> Arc<Router> {
        self.0.swap(Arc::new(router))
    }
}

/// What channels share: the HTTP client, where receipts heard on a channel's own connection go,
/// and the speech renderer of calls.
#[derive(Clone)]
pub struct Deps {
    pub http: reqwest::Client,
    pub receipts: Arc<dyn ReceiptSink>,
    pub speech: Arc<Speech>,
}

/// The channel a configuration describes, with its own sender (`from`) if it has one. A
/// channel with its own connection (SMPP) starts connecting at once, and hands the receipts it
/// hears there (and a SIP channel its calls' outcomes) to `deps.receipts`.
pub fn build_channel(
    name: &str,
    config: &ChannelConfig,
    deps: &Deps,
) -> (Arc<dyn Channel>, Option<String>) {
    let (client, sink) = (&deps.http, &deps.receipts);
    match &config.spec {
        ChannelSpec::VonageVoice(v) => (
            Arc::new(VonageVoiceChannel::new(name, v.clone(), client.clone())),
            None,
        ),
        ChannelSpec::TwilioVoice(t) => (
            Arc::new(TwilioVoiceChannel::new(name, t.clone(), client.clone())),
            None,
        ),
        ChannelSpec::Sip(s) => (
            Arc::new(SipChannel::new(
                name,
                s.clone(),
                config.timeout,
                deps.speech.clone(),
                sink.clone(),
            )),
            None,
        ),
        ChannelSpec::Smpp(s) => (
            Arc::new(SmppChannel::start(
                name,
                s.clone(),
                config.timeout,
                sink.clone(),
            )),
            s.from.clone(),
        ),
        ChannelSpec::TwilioSms(t) => (
            Arc::new(TwilioSmsChannel::new(name, t.clone(), client.clone())),
            t.from.clone(),
        ),
        ChannelSpec::VonageSms(v) => (
            Arc::new(VonageSmsChannel::new(name, v.clone(), client.clone())),
            v.from.clone(),
        ),
        ChannelSpec::Webhook(w) => (
            Arc::new(WebhookChannel::new(name, w.clone(), client.clone())),
            w.from.clone(),
        ),
        // Its sender is an address, not a sender id: it keeps it (`channel::smtp`).
        ChannelSpec::WhatsApp(w) => (
            Arc::new(crate::channel::whatsapp::WhatsAppChannel::new(
                name,
                w.clone(),
                client.clone(),
            )),
            None,
        ),
        ChannelSpec::Smtp(s) => (
            Arc::new(crate::channel::smtp::SmtpChannel::new(
                name,
                s,
                config.timeout,
            )),
            None,
        ),
    }
}

/// How long one try of the channel may take. An SMPP channel's `timeout` bounds each wait for
/// an answer, and a try may wait several times (the bind, each part, throttling pauses).
pub fn try_limit(config: &ChannelConfig) -> Duration {
    match config.spec {
        ChannelSpec::Smpp(_) => config.timeout * (TRY_TIMEOUTS + 1),
        // Rendering the speech comes first; a cold locale takes seconds.
        ChannelSpec::Sip(_) => config.timeout + SPEECH_TIME,
        _ => config.timeout,
    }
}

/// What rendering a call's speech may take, cold, beyond the trunk's `timeout`.
const SPEECH_TIME: Duration = Duration::from_secs(30);

/// Receipts for channel NAME are posted to `{public_url}/receipts/NAME/TOKEN`.
pub const RECEIPTS_PATH: &str = "/receipts";

impl Router {
    /// Builds every configured channel (the inbox when `inbox` is given).
    pub fn new(
        config: DeliveryConfig,
        inbox: Option<Arc<dyn InboxLog>>,
        deps: Deps,
        key: &ServerKey,
    ) -> Self {
        Self::build(config, inbox, &deps, key, |_, _| None)
    }

    /// The router `config` describes, for a configuration reload: a channel whose settings did
    /// not change is kept as it runs (an SMPP channel stays bound, a call in progress goes on),
    /// the others are built. Also returns this router's channels the new one no longer has,
    /// each with how long it may still be used, to be closed once no try uses them.
    pub fn reconfigured(
        &self,
        config: DeliveryConfig,
        inbox: Option<Arc<dyn InboxLog>>,
        deps: &Deps,
        key: &ServerKey,
    ) -> (Self, Vec<Retired>) {
        let keep = |name: &str, c: &ChannelConfig| {
            (self.config.channels.get(name) == Some(c))
                .then(|| self.channels.get(name).cloned())
                .flatten()
        };
        let inbox = inbox.map(|log| {
            self.channels
                .get(INBOX)
                .cloned()
                .unwrap_or_else(|| inbox_running(log))
        });
        let mut router = Self::build(config, None, deps, key, keep);
        if let Some(running) = inbox {
            router.channels.insert(INBOX.to_owned(), running);
            router.plans = plans(&router.config, &router.channels, &router.receipt_urls);
        }
        // A delivery that started on this router may try each of its channels in turn before
        // it lets go of them.
        let round: Duration = self.channels.values().map(|r| r.timeout).sum();
        let retired = self
            .channels
            .iter()
            .filter(|(name, old)| {
                router
                    .channels
                    .get(name.as_str())
                    .is_none_or(|new| !Arc::ptr_eq(&new.channel, &old.channel))
            })
            .map(|(_, old)| Retired {
                channel: old.channel.clone(),
                in_use_for: round,
            })
            .collect();
        (router, retired)
    }

    fn build(
        config: DeliveryConfig,
        inbox: Option<Arc<dyn InboxLog>>,
        deps: &Deps,
        key: &ServerKey,
        keep: impl Fn(&str, &ChannelConfig) -> Option<Running>,
    ) -> Self {
        let mut channels = BTreeMap::new();
        if let Some(log) = inbox {
            channels.insert(INBOX.to_owned(), inbox_running(log));
        }
        let mut receipt_urls = BTreeMap::new();
        for (name, c) in &config.channels {
            let running = keep(name, c).unwrap_or_else(|| {
                let (channel, from) = build_channel(name, c, deps);
                Running {
                    channel,
                    timeout: try_limit(c),
                    from,
                }
            });
            channels.insert(name.clone(), running);
            if let Some(base) = &config.public_url {
                let token = key.receipt_token(name);
                let url = format!("{base}{RECEIPTS_PATH}/{name}/{token}");
                // Meta is told the webhook once, by the operator, not with each message.
                if matches!(c.spec, crate::config::delivery::ChannelSpec::WhatsApp(_)) {
                    tracing::info!(channel = %name, webhook = %url, "give Meta this URL as the WhatsApp webhook's callback URL");
                }
                receipt_urls.insert(name.clone(), url);
            }
        }
        let plans = plans(&config, &channels, &receipt_urls);
        Self {
            config,
            channels,
            receipt_urls,
            plans,
            test_plan: test_plan(),
        }
    }

    /// Closes every channel's connections (SMPP binds), for the server's shutdown.
    pub async fn close(&self) {
        for running in self.channels.values() {
            running.channel.close().await;
        }
    }

    pub fn config(&self) -> &DeliveryConfig {
        &self.config
    }

    /// The configured channel `name` (the inbox too, when it runs).
    pub fn channel(&self, name: &str) -> Option<&Arc<dyn Channel>> {
        self.channels.get(name).map(|r| &r.channel)
    }

    /// The running channel `name` with how long one try of it may take and its own sender,
    /// for a test message.
    pub fn running(&self, name: &str) -> Option<(&Arc<dyn Channel>, Duration, Option<&str>)> {
        self.channels
            .get(name)
            .map(|r| (&r.channel, r.timeout, r.from.as_deref()))
    }

    /// The URL a channel's gateway is given for its receipts.
    pub fn receipt_url(&self, name: &str) -> Option<&str> {
        self.receipt_urls.get(name).map(String::as_str)
    }

    /// The channel a receipt callback to `/receipts/{name}/{token}` is for, with the URL its
    /// gateway was given; `None` unless the token is the one in that URL.
    pub fn receipt_target(&self, name: &str, token: &str) -> Option<(&Arc<dyn Channel>, &str)> {
        use subtle::ConstantTimeEq;
        let url = self.receipt_urls.get(name)?;
        let expected = url.rsplit('/').next()?;
        let matches = expected.len() == token.len()
            && bool::from(expected.as_bytes().ct_eq(token.as_bytes()));
        matches.then(|| (&self.channels[name].channel, url.as_str()))
    }

    /// Every channel that runs, with whether it can take a message now.
    pub fn readiness(&self) -> Vec<(&str, Result<(), String>)> {
        self.channels
            .iter()
            .map(|(name, running)| (name.as_str(), running.channel.readiness()))
            .collect()
    }

    /// The channels to try, in order, for a message of `kind` to `to`; `None` when no route
    /// carries it. A test number's messages go to a channel that sends nothing, whatever the
    /// routes say.
    pub fn plan(&self, kind: Kind, to: &Destination) -> Option<&[Step]> {
        if self.config.test_numbers.contains(to) {
            return Some(&self.test_plan);
        }
        let index = self.config.route_index_for(kind, to.key())?;
        let steps = &self.plans[index];
        (!steps.is_empty()).then_some(steps.as_slice())
    }
}

fn test_plan() -> Vec<Step> {
    vec![Step {
        channel: Arc::new(crate::channel::test_number::TestNumberChannel),
        timeout: Duration::from_secs(10),
        from: None,
        records_itself: false,
        receipt_url: None,
        route: "test-number".into(),
    }]
}

/// The steps of every route of `config`, over the channels that run.
fn plans(
    config: &DeliveryConfig,
    channels: &BTreeMap<String, Running>,
    receipt_urls: &BTreeMap<String, String>,
) -> Vec<Vec<Step>> {
    config
        .routes
        .iter()
        .enumerate()
        .map(|(index, route)| {
            let label: Arc<str> = index.to_string().into();
            route
                .channels
                .iter()
                .filter_map(|name| {
                    let running = channels.get(name)?;
                    Some(Step {
                        channel: running.channel.clone(),
                        timeout: running.timeout,
                        from: route.from.clone().or_else(|| running.from.clone()),
                        // Without a configuration file the inbox is the whole of delivery, and
                        // its stored message is its record (the benchmarked path); routed like
                        // any channel, its tries are recorded like theirs.
                        records_itself: name == INBOX && !config.from_file,
                        receipt_url: receipt_urls.get(name).cloned(),
                        route: label.clone(),
                    })
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
impl Router {
    /// Every kind to one channel that stands in for the inbox (it keeps its own record).
    pub(crate) fn with_inbox_channel(channel: Arc<dyn Channel>) -> Self {
        Self::with_channels(DeliveryConfig::default(), vec![(INBOX, channel)])
    }

    /// `config`'s routes over the given channels, each with a one-second timeout.
    pub(crate) fn with_channels(
        config: DeliveryConfig,
        channels: Vec<(&str, Arc<dyn Channel>)>,
    ) -> Self {
        let channels: BTreeMap<String, Running> = channels
            .into_iter()
            .map(|(name, channel)| {
                let running = Running {
                    channel,
                    timeout: Duration::from_secs(1),
                    from: None,
                };
                (name.to_owned(), running)
            })
            .collect();
        let receipt_urls = BTreeMap::new();
        let plans = plans(&config, &channels, &receipt_urls);
        Self {
            config,
            channels,
            receipt_urls,
            plans,
            test_plan: test_plan(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::{NotRecorded, Receipt};

    struct NoReceipts;

    #[async_trait::async_trait]
    impl ReceiptSink for NoReceipts {
        async fn receipt(&self, _: &str, _: Receipt) -> Result<(), NotRecorded> {
            Ok(())
        }
    }

    fn config(gateways: &[(&str, &str)]) -> DeliveryConfig {
        let mut text = String::new();
        for (name, url) in gateways {
            text.push_str(&format!(
                "[channels.{name}]\ntype = \"webhook\"\nurl = \"{url}\"\n"
            ));
        }
        let names: Vec<String> = gateways.iter().map(|(n, _)| format!("{n:?}")).collect();
        text.push_str(&format!(
            "[[routes]]\nkind = \"sms\"\nchannels = [{}]\n",
            names.join(", ")
        ));
        let file =
            crate::config::file::ConfigFile::parse(std::path::Path::new("t.toml"), &text, |_| None)
                .unwrap();
        file.delivery
    }

    #[test]
    fn a_reload_keeps_unchanged_channels_and_retires_changed_and_removed_ones() {
        let deps = Deps {
            http: reqwest::Client::new(),
            receipts: Arc::new(NoReceipts),
            speech: Arc::default(),
        };
        let key = ServerKey::from_hex(&"ab".repeat(32)).unwrap();
        let before = Router::new(
            config(&[
                ("same", "http://127.0.0.1:1/a"),
                ("moved", "http://127.0.0.1:1/b"),
                ("gone", "http://127.0.0.1:1/c"),
            ]),
            None,
            deps.clone(),
            &key,
        );
        let (after, retired) = before.reconfigured(
            config(&[
                ("same", "http://127.0.0.1:1/a"),
                ("moved", "http://127.0.0.1:1/elsewhere"),
                ("new", "http://127.0.0.1:1/d"),
            ]),
            None,
            &deps,
            &key,
        );
        assert!(Arc::ptr_eq(
            before.channel("same").unwrap(),
            after.channel("same").unwrap()
        ));
        assert!(!Arc::ptr_eq(
            before.channel("moved").unwrap(),
            after.channel("moved").unwrap()
        ));
        assert!(after.channel("gone").is_none() && after.channel("new").is_some());
        let mut names: Vec<&str> = retired.iter().map(|r| r.channel.name()).collect();
        names.sort();
        assert_eq!(names, ["gone", "moved"]);
        let to =
            Destination::Phone(crate::domain::PhoneNumber::parse("447700123456", None).unwrap());
        let plan = after.plan(Kind::Sms, &to).unwrap();
        let planned: Vec<&str> = plan.iter().map(|s| s.channel.name()).collect();
        assert_eq!(planned, ["same", "moved", "new"]);
    }
}
