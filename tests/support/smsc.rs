//! An SMSC for the tests: the `smpp34` crate's server (another implementation than verifyd's
//! client), on loopback, recording every submit_sm, and a proxy in front of it that can cut
//! every connection at once, as an SMSC that drops its binds.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use smpp34::server::ESME;
use smpp34::{
    bind_transceiver, bind_transceiver_resp, submit_sm, submit_sm_resp, unbind, unbind_resp,
    SmppConnectionInformation, SmppError, SmppServer, SmppServerListener, TlvTag,
};
use tokio::sync::watch;

/// A submit_sm as the SMSC got it.
#[derive(Clone, Debug)]
pub struct Submit {
    pub source_addr: String,
    pub source_ton: u8,
    pub source_npi: u8,
    pub destination_addr: String,
    pub dest_ton: u8,
    pub dest_npi: u8,
    pub esm_class: u8,
    pub data_coding: u8,
    pub registered_delivery: u8,
    pub validity_period: String,
    pub short_message: Vec<u8>,
    /// The id it was accepted with; `None` when it was answered ESME_RTHROTTLED.
    pub message_id: Option<String>,
    /// When it arrived.
    pub at: std::time::Instant,
}

struct Handler {
    password: String,
    submits: Mutex<Vec<Submit>>,
    binds: AtomicUsize,
    refused_binds: AtomicUsize,
    unbinds: AtomicUsize,
    throttle: AtomicUsize,
    /// Submits wait until this is true.
    open: watch::Receiver<bool>,
    waiting: AtomicUsize,
    esme: tokio::sync::Mutex<Option<Arc<ESME>>>,
    next_id: AtomicU64,
}

#[async_trait]
impl SmppServerListener for Handler {
    async fn on_bind_transceiver(
        &self,
        req: bind_transceiver,
        _: &SmppConnectionInformation,
        _: &String,
    ) -> bind_transceiver_resp {
        if req.system_id == "verifyd" && req.password == self.password {
            self.binds.fetch_add(1, Ordering::SeqCst);
            req.accept("TestSMSC".into(), Some(0x34))
        } else {
            self.refused_binds.fetch_add(1, Ordering::SeqCst);
            req.reject(SmppError::ESME_RINVPASWD)
        }
    }

    async fn on_esme_bound(&self, esme: ESME, _: &String) {
        *self.esme.lock().await = Some(Arc::new(esme));
    }

    async fn on_unbind(
        &self,
        req: unbind,
        _: &SmppConnectionInformation,
        _: &String,
    ) -> unbind_resp {
        self.unbinds.fetch_add(1, Ordering::SeqCst);
        req.accept()
    }

    async fn on_submit_sm(
        &self,
        req: submit_sm,
        _: &SmppConnectionInformation,
        _: &String,
    ) -> submit_sm_resp {
        let at = std::time::Instant::now();
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let mut open = self.open.clone();
        let _ = open.wait_for(|o| *o).await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        let throttled = self
            .throttle
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        let message_id =
            (!throttled).then(|| format!("smsc-{}", self.next_id.fetch_add(1, Ordering::SeqCst)));
        self.submits.lock().unwrap().push(Submit {
            source_addr: req.source_addr.clone(),
            source_ton: req.source_addr_ton,
            source_npi: req.source_addr_npi,
            destination_addr: req.destination_addr.clone(),
            dest_ton: req.dest_addr_ton,
            dest_npi: req.dest_addr_npi,
            esm_class: req.esm_class,
            data_coding: req.data_coding,
            registered_delivery: req.registered_delivery,
            validity_period: req.validity_period.clone(),
            short_message: req.short_message.clone(),
            message_id: message_id.clone(),
            at,
        });
        match message_id {
            Some(id) => req.accept(id),
            None => req.reject(SmppError::ESME_RTHROTTLED),
        }
    }
}

pub struct Smsc {
    server: SmppServer,
    handler: Arc<Handler>,
    open: watch::Sender<bool>,
    pub port: u16,
}

impl Smsc {
    /// An SMSC on a free port that binds system_id `verifyd` with `password`.
    pub async fn start(password: &str) -> Self {
        Self::start_on(super::free_port(), password).await
    }

    pub async fn start_on(port: u16, password: &str) -> Self {
        let (open, open_rx) = watch::channel(true);
        let handler = Arc::new(Handler {
            password: password.to_owned(),
            submits: Mutex::default(),
            binds: AtomicUsize::new(0),
            refused_binds: AtomicUsize::new(0),
            unbinds: AtomicUsize::new(0),
            throttle: AtomicUsize::new(0),
            open: open_rx,
            waiting: AtomicUsize::new(0),
            esme: tokio::sync::Mutex::new(None),
            next_id: AtomicU64::new(1),
        });
        let mut server = SmppServer::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port, handler.clone());
        server.start().await;
        assert!(server.is_alive(), "the SMSC listens on {port}");
        Self {
            server,
            handler,
            open,
            port,
        }
    }

    pub fn submits(&self) -> Vec<Submit> {
        self.handler.submits.lock().unwrap().clone()
    }

    /// The accepted submits, once there are `n` (or after `limit`).
    pub async fn wait_for(&self, n: usize, limit: Duration) -> Vec<Submit> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let accepted: Vec<Submit> = self
                .submits()
                .into_iter()
                .filter(|s| s.message_id.is_some())
                .collect();
            if accepted.len() >= n || tokio::time::Instant::now() > deadline {
                return accepted;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits (at most `limit`) until `n` submits wait for their answer; returns how many do.
    pub async fn wait_for_waiting(&self, n: usize, limit: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let waiting = self.handler.waiting.load(Ordering::SeqCst);
            if waiting >= n || tokio::time::Instant::now() > deadline {
                return waiting;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Answers the next `n` submits with ESME_RTHROTTLED.
    pub fn throttle(&self, n: usize) {
        self.handler.throttle.store(n, Ordering::SeqCst);
    }

    /// Submits get no answer until [`Self::release`].
    pub fn hold(&self) {
        self.open.send_replace(false);
    }

    pub fn release(&self) {
        self.open.send_replace(true);
    }

    pub fn binds(&self) -> usize {
        self.handler.binds.load(Ordering::SeqCst)
    }

    pub fn refused_binds(&self) -> usize {
        self.handler.refused_binds.load(Ordering::SeqCst)
    }

    pub fn unbinds(&self) -> usize {
        self.handler.unbinds.load(Ordering::SeqCst)
    }

    /// Sends a delivery receipt for `message_id` over the last bind, in the text form
    /// (`stat:`), with the TLVs too when `tlvs`; returns the command_status of the answer.
    pub async fn receipt(&self, message_id: &str, stat: &str, tlvs: bool) -> u32 {
        let esme = self
            .handler
            .esme
            .lock()
            .await
            .clone()
            .expect("a bound ESME");
        let text = format!(
            "id:{message_id} sub:001 dlvrd:{} submit date:2612062300 done date:2612062301 stat:{stat} err:{} text:",
            if stat == "DELIVRD" { "001" } else { "000" },
            if stat == "DELIVRD" { "000" } else { "001" },
        );
        let mut deliver = esme
            .deliver_sm()
            .source_addr("447700100123")
            .destination_addr("VERIFY")
            .esm_class(0x04)
            .short_message(text.into_bytes());
        if tlvs {
            let state = if stat == "DELIVRD" { 2 } else { 5 };
            deliver = deliver
                .tlv(
                    TlvTag::ReceiptedMessageId,
                    format!("{message_id}\0").into_bytes(),
                )
                .tlv(TlvTag::MessageStateTlv, [state]);
        }
        let resp = tokio::time::timeout(Duration::from_secs(5), deliver.send())
            .await
            .expect("a deliver_sm_resp within 5 s")
            .expect("a deliver_sm_resp");
        resp.command_status()
    }

    pub async fn stop(mut self) {
        self.server.stop().await;
    }
}

/// The texts of `submits`, with concatenated parts joined by their reference.
pub fn texts(submits: &[Submit]) -> Vec<String> {
    let mut joined: BTreeMap<u8, Vec<(u8, Vec<u8>, u8)>> = BTreeMap::new();
    let mut texts = Vec::new();
    for s in submits.iter().filter(|s| s.message_id.is_some()) {
        if s.esm_class & 0x40 != 0 {
            let udh = &s.short_message;
            assert_eq!(udh[..3], [0x05, 0x00, 0x03], "a concatenation header");
            let parts = joined.entry(udh[3]).or_default();
            parts.push((udh[5], udh[6..].to_vec(), s.data_coding));
            if parts.len() == usize::from(udh[4]) {
                let mut parts = joined.remove(&udh[3]).unwrap();
                parts.sort_by_key(|p| p.0);
                let coding = parts[0].2;
                let body: Vec<u8> = parts.into_iter().flat_map(|p| p.1).collect();
                texts.push(decode(coding, &body));
            }
        } else {
            texts.push(decode(s.data_coding, &s.short_message));
        }
    }
    assert!(joined.is_empty(), "parts without the rest of their message");
    texts
}

/// GSM 03.38, one septet per octet, the test's own table; or UCS-2.
fn decode(data_coding: u8, body: &[u8]) -> String {
    const BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\u{1b}ÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
                         ¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
    match data_coding {
        0 => {
            let table: Vec<char> = BASIC.chars().collect();
            assert_eq!(table.len(), 128);
            let mut out = String::new();
            let mut bytes = body.iter();
            while let Some(&b) = bytes.next() {
                if b == 0x1b {
                    out.push(match bytes.next().copied() {
                        Some(0x0a) => '\u{c}',
                        Some(0x14) => '^',
                        Some(0x28) => '{',
                        Some(0x29) => '}',
                        Some(0x2f) => '\\',
                        Some(0x3c) => '[',
                        Some(0x3d) => '~',
                        Some(0x3e) => ']',
                        Some(0x40) => '|',
                        Some(0x65) => '€',
                        other => panic!("escape then {other:?}"),
                    });
                } else {
                    out.push(table[usize::from(b)]);
                }
            }
            out
        }
        8 => {
            let units: Vec<u16> = body
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).expect("UTF-16")
        }
        other => panic!("data_coding {other}"),
    }
}

/// A TCP proxy to the SMSC; [`Proxy::cut`] drops every connection through it at once.
pub struct Proxy {
    pub port: u16,
    accept: tokio::task::JoinHandle<()>,
    connections: Arc<Mutex<tokio::task::JoinSet<()>>>,
    /// One switch per connection so far.
    frozen: Arc<Mutex<Vec<watch::Sender<bool>>>>,
}

/// Copies `from` to `to`, holding every byte back while `frozen`.
async fn pass(
    mut from: impl tokio::io::AsyncRead + Unpin,
    mut to: impl tokio::io::AsyncWrite + Unpin,
    mut frozen: watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if frozen.wait_for(|f| !*f).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Both directions of a connection through the proxy.
async fn relay(
    inbound: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
    outbound: tokio::net::TcpStream,
    frozen: watch::Receiver<bool>,
) {
    let (in_read, in_write) = tokio::io::split(inbound);
    let (out_read, out_write) = outbound.into_split();
    tokio::select! {
        _ = pass(in_read, out_write, frozen.clone()) => {}
        _ = pass(out_read, in_write, frozen) => {}
    }
}

impl Proxy {
    pub async fn start(target: u16) -> Self {
        Self::start_with(target, None).await
    }

    /// A proxy that takes TLS from the client and speaks plain SMPP to the SMSC.
    pub async fn start_tls(target: u16, tls: tokio_rustls::TlsAcceptor) -> Self {
        Self::start_with(target, Some(tls)).await
    }

    async fn start_with(target: u16, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(Mutex::new(tokio::task::JoinSet::new()));
        let set = connections.clone();
        let frozen: Arc<Mutex<Vec<watch::Sender<bool>>>> = Arc::default();
        let switches = frozen.clone();

        let accept = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let tls = tls.clone();
                let (switch, frozen) = watch::channel(false);
                switches.lock().unwrap().push(switch);
                set.lock().unwrap().spawn(async move {
                    let Ok(outbound) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    else {
                        return;
                    };
                    match tls {
                        None => relay(inbound, outbound, frozen).await,
                        Some(tls) => {
                            if let Ok(inbound) = tls.accept(inbound).await {
                                relay(inbound, outbound, frozen).await;
                            }
                        }
                    }
                });
            }
        });
        Self {
            port,
            accept,
            connections,
            frozen,
        }
    }

    /// Holds back every byte in both directions of the connections open now, leaving them
    /// open: links that hang. Later connections pass.
    pub fn freeze(&self) {
        for switch in self.frozen.lock().unwrap().iter() {
            switch.send_replace(true);
        }
    }

    /// Closes every connection through the proxy; new ones are still taken.
    pub fn cut(&self) {
        self.connections.lock().unwrap().abort_all();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}
