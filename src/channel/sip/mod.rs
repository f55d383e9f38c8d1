//! Calls through a SIP trunk or PBX: the script rendered to speech on this machine
//! ([`crate::speech`]), an INVITE offering PCMU and PCMA (rsipstack: transactions, dialogs,
//! digest authentication), the prompt played as RTP once answered, then BYE.
//!
//! A call is accepted once the INVITE is sent and the trunk answers it (any response): the
//! delivery then leaves the store, so no sweep and no other node calls again. What happens next
//! comes back as a receipt: answered and played → delivered; busy, declined, no answer (CANCEL
//! after `answer_timeout`), unreachable → undeliverable with the SIP status. No answer at all
//! from the trunk, a refused authentication or a server error are temporary failures: the
//! route's next channel takes the call.

pub mod rtp;
pub mod sdp;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rsipstack::dialog::authenticate::Credential;
use rsipstack::dialog::dialog::{DialogState, DialogStateReceiver, TerminatedReason};
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invitation::InviteOption;
use rsipstack::platform::CancellationToken;
use rsipstack::sip::{StatusCode, StatusCodeKind};
use rsipstack::transport::udp::UdpConnection;
use rsipstack::transport::{SipAddr, TransportLayer};
use rsipstack::EndpointBuilder;
use tokio::net::UdpSocket;
use tokio::sync::OnceCell;

use super::{Accepted, Channel, Failure, Outgoing, Receipt, ReceiptSink, ReceiptState, SendError};
use crate::config::sip::{Sip, Transport};
use crate::speech::Speech;

/// How long calls in progress get to end themselves when the channel closes.
const CLOSING_TIME: Duration = Duration::from_secs(3);
/// How long an answered call may play its prompt, at most, when its channel is retired.
const LONGEST_PROMPT: Duration = Duration::from_secs(120);

/// The SIP side of a channel, started with its first call.
struct Stack {
    dialogs: Arc<DialogLayer>,
    /// The address the SIP and RTP sockets are bound to.
    bind_ip: IpAddr,
    /// The address Contact, Via and SDP name (`local_ip`, else `bind_ip`).
    local_ip: IpAddr,
    /// The SIP address requests name as theirs.
    local: SocketAddr,
    proxy: SipAddr,
}

pub struct SipChannel {
    name: String,
    config: Sip,
    /// How long the trunk may take to answer an INVITE at all.
    timeout: Duration,
    speech: Arc<Speech>,
    sink: Arc<dyn ReceiptSink>,
    stack: OnceCell<Stack>,
    cancel: CancellationToken,
    calls: tokio::sync::Mutex<tokio::task::JoinSet<()>>,
    /// Cancelled when the channel closes: calls in progress end themselves.
    closing: CancellationToken,
    /// The next RTP port of `rtp_ports` to try.
    next_port: AtomicU32,
}

impl SipChannel {
    pub fn new(
        name: &str,
        config: Sip,
        timeout: Duration,
        speech: Arc<Speech>,
        sink: Arc<dyn ReceiptSink>,
    ) -> Self {
        Self {
            name: name.to_owned(),
            config,
            timeout,
            speech,
            sink,
            stack: OnceCell::new(),
            cancel: CancellationToken::new(),
            calls: tokio::sync::Mutex::new(tokio::task::JoinSet::new()),
            closing: CancellationToken::new(),
            next_port: AtomicU32::new(0),
        }
    }

    async fn stack(&self) -> Result<&Stack, Failure> {
        self.stack.get_or_try_init(|| self.start_stack()).await
    }

    async fn start_stack(&self) -> Result<Stack, Failure> {
        let (host, port) = self
            .config
            .proxy_parts()
            .expect("checked with the configuration");
        let proxy_addr = tokio::net::lookup_host((host, port))
            .await
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| Failure::new("connect", format!("cannot resolve the proxy {host}")))?;
        // Sockets are bound on `local_ip` when it is this machine's, else on the address that
        // reaches the proxy: `local_ip` may be a NAT's public address, only named in Contact,
        // Via and SDP.
        let routed = || {
            route_to(proxy_addr).map_err(|e| {
                Failure::new(
                    "connect",
                    format!("no route to the proxy {proxy_addr}: {e}"),
                )
            })
        };
        let (bind_ip, local_ip) = match self.config.local_ip {
            Some(ip) if std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok() => (ip, ip),
            Some(ip) => (routed()?, ip),
            None => {
                let ip = routed()?;
                (ip, ip)
            }
        };
        let token = self.cancel.child_token();
        let transports = TransportLayer::new(token.child_token());
        let socket = sip_socket(SocketAddr::new(bind_ip, 0))
            .map_err(|e| Failure::new("connect", format!("cannot open a SIP socket: {e}")))?;
        let port = socket
            .local_addr()
            .map_err(|e| Failure::new("connect", e.to_string()))?
            .port();
        let advertised = (local_ip != bind_ip).then(|| SocketAddr::new(local_ip, port));
        let udp =
            UdpConnection::from_socket(Arc::new(socket), advertised, Some(token.child_token()))
                .await
                .map_err(|e| Failure::new("connect", format!("cannot open a SIP socket: {e}")))?;
        let local = udp
            .get_addr()
            .get_socketaddr()
            .map_err(|e| Failure::new("connect", e.to_string()))?;
        transports.add_transport(udp.into());
        let endpoint = EndpointBuilder::new()
            .with_user_agent("verifyd")
            .with_transport_layer(transports)
            .with_cancel_token(token.child_token())
            .build();
        let inner = endpoint.inner.clone();
        tokio::spawn(async move { inner.serve().await });
        let dialogs = Arc::new(DialogLayer::new(endpoint.inner.clone()));
        // Requests inside a call (the callee's BYE) go to their dialog.
        let mut incoming = endpoint
            .incoming_transactions()
            .map_err(|e| Failure::new("connect", e.to_string()))?;
        let layer = dialogs.clone();
        tokio::spawn(async move {
            let _endpoint = endpoint;
            while let Some(mut tx) = incoming.recv().await {
                // One task each: a transaction that waits (a re-INVITE for its ACK) holds up
                // no other call's BYE.
                let layer = layer.clone();
                tokio::spawn(async move {
                    match layer.match_dialog(&tx) {
                        Some(mut d) => {
                            let _ = d.handle(&mut tx).await;
                        }
                        None => {
                            let _ = tx.reply(StatusCode::CallTransactionDoesNotExist).await;
                        }
                    }
                });
            }
        });
        let transport = match self.config.transport {
            Transport::Udp => rsipstack::sip::Transport::Udp,
            Transport::Tcp => rsipstack::sip::Transport::Tcp,
        };
        Ok(Stack {
            dialogs,
            bind_ip,
            local_ip,
            local,
            proxy: SipAddr::new(transport, proxy_addr.into()),
        })
    }

    /// A UDP socket for the call's audio, from `rtp_ports` when set.
    async fn rtp_socket(&self, ip: IpAddr) -> Result<UdpSocket, Failure> {
        let (first, last) = self
            .config
            .rtp_range()
            .expect("checked with the configuration");
        if first == 0 {
            return UdpSocket::bind(SocketAddr::new(ip, 0))
                .await
                .map_err(|e| Failure::new("rtp", format!("cannot open an RTP socket: {e}")));
        }
        let span = u32::from(last - first) + 1;
        for _ in 0..span {
            let port = first + (self.next_port.fetch_add(1, Ordering::Relaxed) % span) as u16;
            if let Ok(socket) = UdpSocket::bind(SocketAddr::new(ip, port)).await {
                return Ok(socket);
            }
        }
        Err(Failure::new(
            "rtp",
            format!("every RTP port of {first}-{last} is in use"),
        ))
    }
}

/// What the SIP socket's receive buffer is asked to hold: hundreds of calls placed at once get
/// their provisional and final answers in one burst, which overflows the usual 208 KiB (the
/// kernel caps the request at `net.core.rmem_max`).
const SIP_RECEIVE_BUFFER: usize = 4 << 20;

fn sip_socket(at: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(at), Type::DGRAM, Some(Protocol::UDP))?;
    let _ = socket.set_recv_buffer_size(SIP_RECEIVE_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&at.into())?;
    UdpSocket::from_std(socket.into())
}

/// The local address this machine sends from to reach `to`.
fn route_to(to: SocketAddr) -> std::io::Result<IpAddr> {
    let any: SocketAddr = if to.is_ipv4() {
        "0.0.0.0:0".parse().expect("an address")
    } else {
        "[::]:0".parse().expect("an address")
    };
    let probe = std::net::UdpSocket::bind(any)?;
    probe.connect(to)?;
    Ok(probe.local_addr()?.ip())
}

fn status_failure(status: &StatusCode) -> Failure {
    let code = u16::from(status.clone());
    Failure::new(format!("sip-{code}"), status.to_string())
}

/// What a final response other than 2xx means for the try: `None` when the call could not be
/// placed here and another channel should try (authentication refused, a server error), else
/// the callee's side (busy, declined, unreachable).
fn temporary(code: u16) -> bool {
    matches!(code, 401 | 403 | 407 | 408 | 500..=599)
}

#[async_trait]
impl Channel for SipChannel {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, m: &Outgoing) -> Result<Accepted, SendError> {
        let script = m.script.as_ref().ok_or_else(|| {
            SendError::Rejected(Failure::new("script", "a SIP channel carries calls only"))
        })?;
        let audio = self
            .speech
            .render(&m.locale, script)
            .await
            .map_err(|e| SendError::Temporary(Failure::new("speech", e.to_string())))?;
        let stack = self.stack().await.map_err(SendError::Temporary)?;
        let rtp = self
            .rtp_socket(stack.bind_ip)
            .await
            .map_err(SendError::Temporary)?;
        let rtp_port = rtp.local_addr().map(|a| a.port()).unwrap_or_default();
        let mut session = [0u8; 4];
        crate::crypto::os_random(&mut session);
        let offer = sdp::offer(
            stack.local_ip,
            rtp_port,
            u64::from(u32::from_be_bytes(session)),
        );
        let mut callee = self.config.request_uri(m.number()?.digits());
        if self.config.transport == Transport::Tcp {
            callee.push_str(";transport=tcp");
        }
        let user = self
            .config
            .from
            .strip_prefix("sip:")
            .and_then(|f| f.split('@').next())
            .unwrap_or("verifyd");
        let contact = match stack.local {
            SocketAddr::V4(a) => format!("sip:{user}@{a}"),
            SocketAddr::V6(a) => format!("sip:{user}@[{}]:{}", a.ip(), a.port()),
        };
        let bad = |what: &str| {
            SendError::Rejected(Failure::new(
                "config",
                format!("{what} is not a valid SIP URI"),
            ))
        };
        let call_id = rsipstack::transaction::make_uuid_v4();
        let option = InviteOption {
            caller: self
                .config
                .from
                .as_str()
                .try_into()
                .map_err(|_| bad("from"))?,
            callee: callee.as_str().try_into().map_err(|_| bad("to"))?,
            destination: Some(stack.proxy.clone()),
            contact: contact.as_str().try_into().map_err(|_| bad("contact"))?,
            content_type: Some("application/sdp".into()),
            offer: Some(offer.into_bytes()),
            call_id: Some(call_id.clone()),
            credential: self.config.username.as_ref().map(|username| Credential {
                username: username.clone(),
                password: self
                    .config
                    .password
                    .as_ref()
                    .map(|p| p.expose().to_owned())
                    .unwrap_or_default(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (state_tx, states) = stack.dialogs.new_dialog_state_channel();
        let (dialog, handle) = stack
            .dialogs
            .do_invite_async(option, state_tx)
            .map_err(|e| SendError::Temporary(Failure::new("sip", e.to_string())))?;
        // From here the call task owns the call: if this try is given up while it waits, the
        // task still cancels or hangs up and reports.
        let (verdict_tx, verdict) = tokio::sync::oneshot::channel();
        let call = Call {
            channel: self.name.clone(),
            call_id: call_id.clone(),
            timeout: self.timeout,
            answer_timeout: Duration::from_secs(self.config.answer_timeout),
            invited: tokio::time::Instant::now(),
            sink: self.sink.clone(),
            dialogs: stack.dialogs.clone(),
            closing: self.closing.clone(),
            audio,
            rtp,
        };
        {
            let mut calls = self.calls.lock().await;
            // Finished calls are let go of here, so that the set holds only calls in progress.
            while calls.try_join_next().is_some() {}
            calls.spawn(call.run(dialog, handle, states, verdict_tx));
        }
        match verdict.await {
            Ok(Ok(())) => Ok(Accepted {
                message_id: call_id,
                delivered: false,
            }),
            Ok(Err(failure)) => Err(SendError::Temporary(failure)),
            Err(_) => Err(SendError::Temporary(Failure::new(
                "closed",
                "the channel is shutting down",
            ))),
        }
    }

    async fn retire(&self) {
        // No call starts any more; those in progress end by themselves (the code is read to
        // the end), then the endpoint closes.
        let longest = Duration::from_secs(self.config.answer_timeout) + LONGEST_PROMPT;
        let ended = tokio::time::timeout(longest, async {
            let mut calls = self.calls.lock().await;
            while calls.join_next().await.is_some() {}
        })
        .await;
        if ended.is_err() {
            tracing::warn!(channel = %self.name, "calls still in progress on a channel the reload left out are hung up");
        }
        self.close().await;
    }

    async fn close(&self) {
        // Calls in progress are told to end (CANCEL while ringing, BYE while playing) and get a
        // moment to do it; whatever is left then is cut.
        self.closing.cancel();
        let mut calls = self.calls.lock().await;
        let all_ended = tokio::time::timeout(CLOSING_TIME, async {
            while calls.join_next().await.is_some() {}
        })
        .await;
        if all_ended.is_err() {
            calls.abort_all();
        }
        self.cancel.cancel();
    }
}

impl Drop for SipChannel {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// A call from its INVITE on: the trunk's first answer (the verdict `send` waits for), ringing,
/// the prompt, BYE; its outcome a receipt.
struct Call {
    channel: String,
    call_id: String,
    /// How long the trunk may take to answer the INVITE.
    timeout: Duration,
    answer_timeout: Duration,
    invited: tokio::time::Instant,
    sink: Arc<dyn ReceiptSink>,
    dialogs: Arc<DialogLayer>,
    closing: CancellationToken,
    audio: Vec<i16>,
    rtp: UdpSocket,
}

type Handle = rsipstack::platform::JoinHandle<rsipstack::dialog::invitation::InviteAsyncResult>;
type Dialog = rsipstack::dialog::invite_dialog::InviteDialog;
type Verdict = tokio::sync::oneshot::Sender<Result<(), Failure>>;

/// What the trunk's answers so far say about the try.
enum First {
    /// Ringing (a provisional response other than 100), or answered at once.
    Accepted(Option<Option<rsipstack::sip::Response>>),
    /// The call cannot be placed here; another channel should try.
    Elsewhere(Failure),
}

impl Call {
    async fn run(
        self,
        dialog: Dialog,
        mut handle: Handle,
        mut states: DialogStateReceiver,
        verdict: Verdict,
    ) {
        let first = self.first(&dialog, &mut handle, &mut states).await;
        let early_final = match first {
            First::Elsewhere(failure) => {
                self.dialogs.remove_dialog(&dialog.id());
                let _ = verdict.send(Err(failure));
                return;
            }
            First::Accepted(early_final) => {
                let _ = verdict.send(Ok(()));
                early_final
            }
        };
        let final_response = match early_final {
            Some(response) => Ok(response),
            None => self.ringing(&dialog, &mut handle).await,
        };
        let outcome = match final_response {
            Ok(Some(response)) if response.status_code.kind() == StatusCodeKind::Successful => {
                self.answered(&dialog, &response.body, &mut states).await
            }
            Ok(Some(response)) => Err(status_failure(&response.status_code)),
            Ok(None) => Err(Failure::new(
                "sip",
                "the INVITE ended without a final response",
            )),
            Err(failure) => Err(failure),
        };
        self.dialogs.remove_dialog(&dialog.id());
        let receipt = match outcome {
            Ok(()) => Receipt {
                message_id: self.call_id.clone(),
                state: ReceiptState::Delivered,
                error: None,
            },
            Err(failure) => Receipt {
                message_id: self.call_id.clone(),
                state: ReceiptState::Undeliverable,
                error: Some(failure),
            },
        };
        tracing::info!(channel = %self.channel, call_id = %self.call_id, state = ?receipt.state, error = ?receipt.error.as_ref().map(|f| f.code.as_str()), "call ended");
        let _ = self.sink.receipt(&self.channel, receipt).await;
    }

    /// Waits for the trunk to start ringing (180/183), or for a final answer. A trunk that only
    /// says "trying", or nothing, within `timeout`, refuses the credentials, or fails itself
    /// (408, 5xx) sends the call elsewhere; the INVITE is then cancelled.
    async fn first(
        &self,
        dialog: &Dialog,
        handle: &mut Handle,
        states: &mut DialogStateReceiver,
    ) -> First {
        let waited = tokio::time::timeout_at(self.invited + self.timeout, async {
            loop {
                tokio::select! {
                    state = states.recv() => match state {
                        Some(DialogState::Early(..)) => return Ok(None),
                        Some(_) => {}
                        None => return Err(Failure::new("sip", "the call ended unanswered")),
                    },
                    done = &mut *handle => return match done {
                        Ok(Ok((_, response))) => Ok(Some(response)),
                        Ok(Err(e)) => Err(Failure::new("sip", e.to_string())),
                        Err(e) => Err(Failure::new("sip", e.to_string())),
                    },
                }
            }
        })
        .await;
        match waited {
            Err(_) => {
                // A CANCEL waits for a provisional answer to follow; the INVITE is let go of
                // either way.
                let _ = tokio::time::timeout(Duration::from_secs(2), dialog.cancel()).await;
                handle.abort();
                First::Elsewhere(Failure::new(
                    "timeout",
                    format!("the trunk did not start ringing within {:?}", self.timeout),
                ))
            }
            Ok(Err(failure)) => First::Elsewhere(failure),
            Ok(Ok(Some(Some(response)))) if temporary(u16::from(response.status_code.clone())) => {
                First::Elsewhere(status_failure(&response.status_code))
            }
            Ok(Ok(early_final)) => First::Accepted(early_final),
        }
    }

    /// Waits for the callee to answer; cancels after `answer_timeout`, or when the channel
    /// closes.
    async fn ringing(
        &self,
        dialog: &Dialog,
        handle: &mut Handle,
    ) -> Result<Option<rsipstack::sip::Response>, Failure> {
        let until = self.invited + self.answer_timeout;
        let why = tokio::select! {
            done = tokio::time::timeout_at(until, &mut *handle) => match done {
                Ok(Ok(Ok((_, response)))) => return Ok(response),
                Ok(Ok(Err(e))) => return Err(Failure::new("sip", e.to_string())),
                Ok(Err(e)) => return Err(Failure::new("sip", e.to_string())),
                Err(_) => format!("no answer within {:?}; cancelled", self.answer_timeout),
            },
            _ = self.closing.cancelled() => "the server stopped while it rang; cancelled".to_owned(),
        };
        let _ = dialog.cancel().await;
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut *handle).await;
        Err(Failure::new("sip-487", why))
    }

    /// Plays the prompt to an answered call and hangs up.
    async fn answered(
        &self,
        dialog: &Dialog,
        body: &[u8],
        states: &mut DialogStateReceiver,
    ) -> Result<(), Failure> {
        let answer = match sdp::answer(&String::from_utf8_lossy(body)) {
            Ok(answer) => answer,
            Err(e) => {
                let _ = dialog.bye().await;
                return Err(Failure::new("sdp", e.to_string()));
            }
        };
        let mut ids = [0u8; 10];
        crate::crypto::os_random(&mut ids);
        let ssrc = u32::from_be_bytes(ids[0..4].try_into().expect("4 bytes"));
        let seq = u16::from_be_bytes([ids[4], ids[5]]);
        let ts = u32::from_be_bytes(ids[6..10].try_into().expect("4 bytes"));
        let packets = rtp::packets(&self.audio, answer.payload, ssrc, seq, ts);
        let hung_up = async {
            while let Some(state) = states.recv().await {
                if let DialogState::Terminated(_, reason) = state {
                    return reason;
                }
            }
            std::future::pending().await
        };
        tokio::select! {
            played = rtp::play(&self.rtp, answer.to, &packets) => {
                if let Err(e) = played {
                    let _ = dialog.bye().await;
                    return Err(Failure::new("rtp", e.to_string()));
                }
            }
            _ = self.closing.cancelled() => {
                let _ = tokio::time::timeout(Duration::from_secs(2), dialog.bye()).await;
                return Err(Failure::new("shutdown", "the server stopped during the prompt"));
            }
            reason = hung_up => {
                let why = match reason {
                    TerminatedReason::UasBye => "the callee hung up before the end of the prompt".to_owned(),
                    other => format!("the call ended before the end of the prompt: {other:?}"),
                };
                return Err(Failure::new("hangup", why));
            }
        }
        dialog
            .bye()
            .await
            .map_err(|e| Failure::new("bye", e.to_string()))?;
        Ok(())
    }
}
