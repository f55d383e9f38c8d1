//! The bind: connect (TLS when asked), bind_transceiver, keep it alive with enquire_link
//! (rusmppc sends them and answers the SMSC's), read deliver_sm, and bind again with a growing
//! pause after every drop or refusal; unbind when the channel closes.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rusmpp::pdus::{BindTransceiver, DeliverSmResp};
use rusmpp::tlvs::TlvValue;
use rusmpp::types::COctetString;
use rusmpp::values::{InterfaceVersion, Npi, Ton};
use rusmpp::{Command, CommandStatus, Pdu};
use rusmppc::{Client, ConnectionBuilder, Event};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio_stream::{Stream, StreamExt};

use super::receipt::{self, Delivered};
use super::status;
use crate::channel::{Failure, ReceiptSink};
use crate::config::smpp::Smpp;

const FIRST_RETRY: Duration = Duration::from_secs(1);
const LONGEST_RETRY: Duration = Duration::from_secs(30);
const ENQUIRE_LINK_EVERY: Duration = Duration::from_secs(30);
/// Connecting and the TLS handshake get at least this long, whatever the submit timeout.
const SHORTEST_CONNECT: Duration = Duration::from_secs(5);

/// The state of the bind, as submits see it.
#[derive(Clone)]
pub(super) enum Link {
    /// The first bind is under way.
    Connecting,
    Bound(Client),
    /// The last bind failed or dropped, for this reason; another is tried after a pause.
    Down(Failure),
    Closed,
}

pub(super) struct Session {
    pub name: String,
    pub config: Smpp,
    pub timeout: Duration,
    pub link: watch::Sender<Link>,
    pub sink: Arc<dyn ReceiptSink>,
    pub stop: watch::Receiver<bool>,
}

enum Ended {
    Stopped,
    Lost(Failure),
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

impl Session {
    pub async fn run(self) {
        let mut retry = FIRST_RETRY;
        let mut last_logged: Option<String> = None;
        loop {
            let connected = tokio::select! {
                connected = self.connect() => connected,
                _ = stopped(self.stop.clone()) => break,
            };
            match connected {
                Ok((client, events)) => {
                    tracing::info!(channel = %self.name, host = %self.config.host, port = self.config.port, "bound to the SMSC");
                    retry = FIRST_RETRY;
                    last_logged = None;
                    self.link.send_replace(Link::Bound(client.clone()));
                    match self.serve(&client, events).await {
                        Ended::Stopped => {
                            self.unbind(&client).await;
                            break;
                        }
                        Ended::Lost(failure) => {
                            tracing::warn!(channel = %self.name, error = %failure, "the SMPP bind was lost; binding again");
                            self.link.send_replace(Link::Down(failure));
                            let _ = client.close().await;
                        }
                    }
                }
                Err(failure) => {
                    // A refusal is repeated at every try; the log says it once until it changes.
                    if last_logged.as_deref() != Some(failure.code.as_str()) {
                        tracing::error!(channel = %self.name, host = %self.config.host, port = self.config.port, code = %failure.code, error = %failure.text, retry_in = ?retry, "could not bind to the SMSC");
                        last_logged = Some(failure.code.clone());
                    }
                    self.link.send_replace(Link::Down(failure));
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(retry) => {}
                _ = stopped(self.stop.clone()) => break,
            }
            retry = (retry * 2).min(LONGEST_RETRY);
        }
        self.link.send_replace(Link::Closed);
    }

    async fn connect(
        &self,
    ) -> Result<(Client, impl Stream<Item = Event> + Unpin + 'static), Failure> {
        let c = &self.config;
        let within = self.timeout.max(SHORTEST_CONNECT);
        let tcp = tokio::time::timeout(
            within,
            tokio::net::TcpStream::connect((c.host.as_str(), c.port)),
        )
        .await
        .map_err(|_| {
            Failure::new(
                "connect",
                format!("no connection to {}:{} within {within:?}", c.host, c.port),
            )
        })?
        .map_err(|e| {
            Failure::new(
                "connect",
                format!("could not connect to {}:{}: {e}", c.host, c.port),
            )
        })?;
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = if c.tls {
            let name = rustls_pki_types::ServerName::try_from(c.host.clone()).map_err(|e| {
                Failure::new("tls", format!("{:?} is not a TLS server name: {e}", c.host))
            })?;
            let tls = tokio::time::timeout(within, tls_connector().connect(name, tcp))
                .await
                .map_err(|_| Failure::new("tls", format!("no TLS handshake within {within:?}")))?
                .map_err(|e| Failure::new("tls", format!("the TLS handshake failed: {e}")))?;
            Box::new(tls)
        } else {
            Box::new(tcp)
        };
        let (client, events) = ConnectionBuilder::new()
            .enquire_link_interval(ENQUIRE_LINK_EVERY)
            .enquire_link_response_timeout(within)
            .enable_auto_enquire_link_response()
            .response_timeout(self.timeout)
            // The SMSC answers a 3.4 bind as 3.4; rusmppc expects 5.0 unless told.
            .disable_interface_version_check()
            .connected(io);
        let bind = BindTransceiver::builder()
            .system_id(text(&c.system_id)?)
            .password(text(c.password.expose())?)
            .system_type(text(&c.system_type)?)
            .interface_version(InterfaceVersion::Smpp3_4)
            .addr_ton(Ton::Unknown)
            .addr_npi(Npi::Unknown)
            .address_range(COctetString::empty())
            .build();
        let bound = match client.bind_transceiver(bind).await {
            Ok(_) => Ok(()),
            Err(rusmppc::error::Error::UnexpectedResponse { response }) => {
                Err(status::bind_refusal(u32::from(response.status())))
            }
            Err(rusmppc::error::Error::ResponseTimeout { .. }) => Err(Failure::new(
                "timeout",
                format!("no bind_transceiver_resp within {:?}", self.timeout),
            )),
            Err(e) => Err(Failure::new("bind", format!("the bind failed: {e}"))),
        };
        match bound {
            Ok(()) => Ok((client, events)),
            Err(failure) => {
                let _ = client.close().await;
                Err(failure)
            }
        }
    }

    /// Reads what the SMSC sends until the bind ends or the channel closes.
    async fn serve(&self, client: &Client, mut events: impl Stream<Item = Event> + Unpin) -> Ended {
        loop {
            let event = tokio::select! {
                event = events.next() => event,
                _ = stopped(self.stop.clone()) => return Ended::Stopped,
            };
            match event {
                None => {
                    return Ended::Lost(Failure::new(
                        "connection",
                        "the connection to the SMSC closed",
                    ))
                }
                Some(Event::Incoming(command)) => self.incoming(client, command).await,
                Some(Event::Error(e)) => {
                    tracing::warn!(channel = %self.name, error = %e, "SMPP session error");
                }
            }
        }
    }

    async fn incoming(&self, client: &Client, command: Command) {
        let sequence = command.sequence_number();
        match command.pdu() {
            Some(Pdu::DeliverSm(deliver)) => {
                let mut delivered = Delivered {
                    esm_class: u8::from(deliver.esm_class),
                    short_message: deliver.short_message().as_ref(),
                    ..Delivered::default()
                };
                for tlv in deliver.tlvs() {
                    match tlv.value() {
                        Some(TlvValue::ReceiptedMessageId(id)) => {
                            delivered.receipted_message_id = Some(id.to_string());
                        }
                        Some(TlvValue::MessageState(state)) => {
                            delivered.message_state = Some(u8::from(*state));
                        }
                        _ => {}
                    }
                }
                let receipt = receipt::read(&delivered);
                // Recording takes a database write: it must not hold up the next PDU.
                let (client, sink, name) = (client.clone(), self.sink.clone(), self.name.clone());
                tokio::spawn(async move {
                    let status = match receipt {
                        Some(receipt) => match sink.receipt(&name, receipt).await {
                            Ok(()) => CommandStatus::EsmeRok,
                            // The SMSC sends it again later.
                            Err(_) => CommandStatus::EsmeRxTAppn,
                        },
                        None => {
                            tracing::debug!(channel = %name, "a deliver_sm that is no receipt, acknowledged");
                            CommandStatus::EsmeRok
                        }
                    };
                    let _ = client
                        .status(status)
                        .deliver_sm_resp(sequence, DeliverSmResp::default())
                        .await;
                });
            }
            Some(Pdu::Unbind) => {
                tracing::info!(channel = %self.name, "the SMSC unbinds");
                let _ = client.unbind_resp(sequence).await;
                let _ = client.close().await;
            }
            // rusmppc answers enquire_link itself; responses are matched to their requests.
            Some(Pdu::EnquireLink) => {}
            _ if command.id().is_response() => {}
            // Any other request (data_sm, query_sm …) is one this client does not take: an
            // answer all the same, so that the SMSC does not wait for one and drop the bind.
            _ => {
                tracing::info!(channel = %self.name, command = ?command.id(), "an SMSC request this client does not take; answered generic_nack");
                let _ = client
                    .status(CommandStatus::EsmeRinvcmdid)
                    .generic_nack(sequence)
                    .await;
            }
        }
    }

    async fn unbind(&self, client: &Client) {
        let unbound = tokio::time::timeout(self.timeout, client.unbind()).await;
        let _ = client.close().await;
        let _ = tokio::time::timeout(self.timeout, client.closed()).await;
        use rusmppc::error::Error;
        match unbound {
            // An SMSC may close the connection as it answers.
            Ok(Ok(()) | Err(Error::ConnectionClosed | Error::ConnectionClosedByPeer)) => {
                tracing::info!(channel = %self.name, "unbound from the SMSC")
            }
            _ => {
                tracing::warn!(channel = %self.name, "the SMSC did not answer the unbind; closed the connection")
            }
        }
    }
}

/// Resolves once the channel is told to stop (or is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

fn text<const MIN: usize, const MAX: usize>(
    value: &str,
) -> Result<COctetString<MIN, MAX>, Failure> {
    value
        .parse()
        .map_err(|_| Failure::new("config", format!("{value:?} does not fit its SMPP field")))
}

/// TLS to SMSCs, trusting the system's roots (and `SSL_CERT_FILE` when set).
fn tls_connector() -> tokio_rustls::TlsConnector {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let mut roots = rustls::RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        for cert in found.certs {
            let _ = roots.add(cert);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    });
    tokio_rustls::TlsConnector::from(config.clone())
}
