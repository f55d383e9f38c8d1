//! `verifyd send-test --channel NAME --to NUMBER`: one message through one configured channel,
//! and the transport's errors turned into advice.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;

use crate::channel::{Outgoing, SendError};
use crate::config::delivery::{ChannelSpec, Kind, INBOX};
use crate::config::file::ConfigFile;
use crate::domain::message::Script;
use crate::domain::{EventId, PhoneNumber, RequestId};

#[derive(Debug, Args)]
pub struct SendTestArgs {
    /// A channel of the configuration file.
    #[arg(long)]
    pub channel: String,
    /// The phone number to send to, international (+447700900123); an e-mail address for an
    /// `smtp` channel.
    #[arg(long)]
    pub to: String,
    /// The sender [default: the channel's `from`, else VERIFY].
    #[arg(long)]
    pub from: Option<String>,
    /// The text [default: a line that names the channel].
    #[arg(long)]
    pub text: Option<String>,
}

pub async fn run(file: Option<&ConfigFile>, args: &SendTestArgs) -> anyhow::Result<ExitCode> {
    let Some(file) = file else {
        bail!("send-test needs the configuration file that defines the channel: --config FILE");
    };
    if args.channel == INBOX {
        bail!("the inbox is not a gateway; start the server and open /inbox instead");
    }
    let Some(config) = file.delivery.channels.get(&args.channel) else {
        let known: Vec<&str> = file.delivery.channels.keys().map(String::as_str).collect();
        bail!(
            "{} has no channel {:?}; it has: {}",
            file.path.display(),
            args.channel,
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        );
    };
    let kind = config.spec.kinds()[0];
    let voice = kind == Kind::Voice;
    let to = destination(kind, &args.to)?;
    let client = crate::channel::http::client()?;
    let (outcomes, mut outcome) = tokio::sync::mpsc::unbounded_channel();
    let sink: std::sync::Arc<dyn crate::channel::ReceiptSink> = std::sync::Arc::new(TestSink {
        outcomes: voice.then_some(outcomes),
    });
    let deps = crate::delivery::router::Deps {
        http: client,
        receipts: sink,
        speech: std::sync::Arc::default(),
    };
    let (channel, channel_from) =
        crate::delivery::router::build_channel(&args.channel, config, &deps);
    let from = args
        .from
        .clone()
        .or(channel_from)
        .unwrap_or_else(|| crate::channel::DEFAULT_SENDER.to_owned());
    let message = test_message(&args.channel, kind, to, from, args.text.clone());
    let limit = crate::delivery::router::try_limit(config);
    let sent = send_within(channel.as_ref(), &message, limit).await;
    // A call's outcome comes after it was accepted: rung, played, hung up.
    let ended = match (&sent, &config.spec) {
        (Ok(_), ChannelSpec::Sip(sip)) => {
            let limit = Duration::from_secs(sip.answer_timeout + 180);
            Some(
                tokio::time::timeout(limit, outcome.recv())
                    .await
                    .ok()
                    .flatten(),
            )
        }
        _ => None,
    };
    channel.close().await;
    match sent {
        Ok(accepted) => {
            let mut line = serde_json::json!({
                "channel": args.channel,
                "message_id": accepted.message_id,
                "to": message.to.masked(),
            });
            let Some(ended) = ended else {
                println!("{line}");
                return Ok(ExitCode::SUCCESS);
            };
            let Some(receipt) = ended else {
                eprintln!("{}: the call did not end in time", args.channel);
                return Ok(ExitCode::FAILURE);
            };
            let delivered = receipt.state == crate::channel::ReceiptState::Delivered;
            line["state"] = if delivered {
                "delivered"
            } else {
                "undeliverable"
            }
            .into();
            if let Some(error) = &receipt.error {
                line["error"] = format!("{}: {}", error.code, error.text).into();
            }
            println!("{line}");
            if !delivered {
                eprintln!("advice: the call was placed but not heard to the end (busy, declined, no answer or hung up); try a number that answers");
            }
            Ok(if delivered {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Err(e) => {
            eprintln!("{}: {}", args.channel, e.failure());
            eprintln!("{}", advice(&config.spec, &e, config.timeout));
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Where a test message of `kind` goes: an e-mail address for e-mail, else an international
/// number.
pub fn destination(kind: Kind, raw: &str) -> anyhow::Result<crate::domain::Destination> {
    if kind == Kind::Email {
        crate::domain::EmailAddress::parse(raw)
            .map(crate::domain::Destination::Email)
            .with_context(|| format!("{raw:?} is not a valid e-mail address"))
    } else {
        PhoneNumber::parse(raw, None)
            .map(crate::domain::Destination::Phone)
            .ok()
            .with_context(|| format!("{raw:?} is not a valid international phone number"))
    }
}

/// A test message through `channel`: its own ids, a code of 1234 where the channel needs one,
/// and a line naming the channel unless `text` is given.
pub fn test_message(
    channel: &str,
    kind: Kind,
    to: crate::domain::Destination,
    from: String,
    text: Option<String>,
) -> Outgoing {
    let mut id = [0u8; 8];
    crate::crypto::os_random(&mut id);
    let mut request = [0u8; 16];
    crate::crypto::os_random(&mut request);
    let script =
        (kind == Kind::Voice).then(|| Script::built_in(TEST_CALL, channel, "", "", "1234"));
    Outgoing {
        id: EventId::from_bytes(id),
        request_id: RequestId::from_bytes(request),
        kind,
        to,
        from,
        email: None,
        // A WhatsApp template takes the code itself: the test sends 1234.
        code: (kind == Kind::WhatsApp).then(|| "1234".to_owned()),
        text: text.unwrap_or_else(|| format!("verifyd test message: channel {channel} works.")),
        locale: "en-gb".into(),
        created_at: chrono::Utc::now(),
        valid_for: Duration::from_secs(300),
        receipt_url: None,
        script,
    }
}

/// Sends `message` through `channel`, a try that takes longer than `limit` counting as a
/// temporary failure.
pub async fn send_within(
    channel: &dyn crate::channel::Channel,
    message: &Outgoing,
    limit: Duration,
) -> Result<crate::channel::Accepted, SendError> {
    tokio::time::timeout(limit, channel.send(message))
        .await
        .unwrap_or_else(|_| {
            Err(SendError::Temporary(crate::channel::Failure::new(
                "timeout",
                format!("no answer within {limit:?}"),
            )))
        })
}

/// What a test call says.
const TEST_CALL: &str =
    "This is a test call from verify d, on channel {brand}. The code is {code}.";

/// A call's outcome is what send-test waits for. A receipt on an SMPP bind may be for the running
/// server's message (the SMSC picks any bind of the account): it is refused, so that the SMSC
/// sends it again.
struct TestSink {
    outcomes: Option<tokio::sync::mpsc::UnboundedSender<crate::channel::Receipt>>,
}

#[async_trait::async_trait]
impl crate::channel::ReceiptSink for TestSink {
    async fn receipt(
        &self,
        _: &str,
        receipt: crate::channel::Receipt,
    ) -> Result<(), crate::channel::NotRecorded> {
        match &self.outcomes {
            Some(outcomes) => {
                let _ = outcomes.send(receipt);
                Ok(())
            }
            None => Err(crate::channel::NotRecorded),
        }
    }
}

/// What to look at, for an error of `spec`'s gateway.
pub fn advice(spec: &ChannelSpec, e: &SendError, timeout: Duration) -> String {
    let f = e.failure();
    let credentials = match spec {
        ChannelSpec::TwilioSms(_) => "account_sid and auth_token",
        ChannelSpec::VonageSms(_) => "api_key and api_secret",
        ChannelSpec::Webhook(_) => "the headers (Authorization)",
        ChannelSpec::Smpp(_) => "system_id and password",
        ChannelSpec::Sip(_) => "username and password",
        ChannelSpec::VonageVoice(_) => "application_id and private_key",
        ChannelSpec::TwilioVoice(_) => "account_sid and auth_token",
        ChannelSpec::Smtp(_) => "username and password",
        ChannelSpec::WhatsApp(_) => "access_token",
    };
    let url = match spec {
        ChannelSpec::Webhook(_) => "url",
        ChannelSpec::Smpp(_) => "host and port",
        ChannelSpec::Sip(_) => "proxy",
        ChannelSpec::Smtp(_) => "host, port and tls",
        _ => "base_url",
    };
    match (e, f.code.as_str()) {
        (_, "ESME_RINVPASWD") => {
            "advice: the SMSC refused the password: check the channel's password (SMPP 3.4 takes up to 8 characters)"
                .into()
        }
        (_, "ESME_RINVSYSID") => {
            "advice: the SMSC does not know this system_id: check it with the SMSC's operator"
                .into()
        }
        (_, "ESME_RINVSYSTYP") => {
            "advice: the SMSC refused the system_type: ask its operator which one the account uses (often empty)"
                .into()
        }
        (_, "ESME_RBINDFAIL" | "ESME_RALYBND") => {
            "advice: the SMSC refused the bind: the account's bind limit may be reached (other nodes or programs bound with the same system_id), or this address is not allowed"
                .into()
        }
        (_, "tls") => {
            "advice: the TLS handshake failed: check that the server speaks TLS on this port (an \
             SMTP channel: `tls`) and that its certificate is trusted here (SSL_CERT_FILE)"
                .into()
        }
        (_, "ESME_RINVSRCADR" | "sender") => {
            "advice: the SMSC refused the sender: set `from` to a sender the account may use"
                .into()
        }
        (_, "530" | "534" | "535") => {
            format!("advice: the SMTP server refused the login: check {credentials}")
        }
        (_, "550" | "551" | "553") => {
            "advice: the SMTP server refused the recipient or the sender: check the address, \
             and that the server relays for the channel's `from`"
                .into()
        }
        (_, "ESME_RINVDSTADR") => {
            "advice: the SMSC refused the destination number".into()
        }
        (SendError::Temporary(_), "connect") => format!(
            "advice: the gateway could not be reached (host unreachable, name not found or \
             connection refused): check {url} and this machine's network"
        ),
        (SendError::Temporary(_), "timeout") => format!(
            "advice: no answer within {timeout:?}: check {url}, or raise the channel's timeout"
        ),
        (SendError::Throttled { .. }, _) => {
            "advice: the gateway asks to slow down; try again in a moment".into()
        }
        (_, "http-401" | "http-403" | "20003" | "vonage-4") => {
            format!("advice: the gateway refused the credentials: check {credentials}")
        }
        (_, "21212" | "21606" | "21659" | "21603" | "vonage-15") => {
            "advice: the gateway refused the sender: set `from` to a number the account owns, \
             or a sender the destination country allows"
                .into()
        }
        (_, "21211" | "21614" | "21408" | "vonage-29" | "vonage-7") => {
            "advice: the gateway refused the destination number (invalid, not allowed on this \
             account, or barred)"
                .into()
        }
        (SendError::Temporary(_), _) => {
            "advice: the gateway had a temporary problem; try again, and look at its status page"
                .into()
        }
        (SendError::Rejected(_), _) => {
            "advice: the gateway refused the message; its code and text are above".into()
        }
    }
}
