//! SMPP 3.4 straight to an SMSC: one bind_transceiver per channel, kept up by [`session`], and
//! every message sent as one submit_sm per part. Submits share a window (at most `window`
//! awaiting their response) and an optional rate; an SMSC that asks to slow down
//! (ESME_RTHROTTLED, ESME_RMSGQFUL) pauses the whole channel and the same submit goes again.
//! Receipts come back on the bind as deliver_sm and go to the [`ReceiptSink`].

pub mod receipt;
mod session;
pub mod status;
pub mod text;

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusmpp::pdus::{SubmitSm, SubmitSmResp};
use rusmpp::types::{COctetString, EmptyOrFullCOctetString, OctetString};
use rusmpp::values::{DataCoding, EsmClass, Npi, RegisteredDelivery, Ton};
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;

use super::{Accepted, Channel, Failure, Outgoing, ReceiptSink, SendError};
use crate::config::smpp::Smpp;
use session::{Link, Session};

/// The first pause after a throttling answer; it doubles while the SMSC keeps asking.
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const LONGEST_PAUSE: Duration = Duration::from_secs(2);
/// A try (waiting for the bind, every part, throttling pauses) takes at most this many
/// `timeout`s; the router allows it a little more, so that the channel's own error is the one
/// recorded.
pub const TRY_TIMEOUTS: u32 = 4;

pub struct SmppChannel {
    name: String,
    timeout: Duration,
    link: watch::Receiver<Link>,
    stop: watch::Sender<bool>,
    session: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    window: Semaphore,
    pace: Option<Pace>,
    paused_until: Mutex<Option<Instant>>,
    reference: AtomicU8,
    /// A check of the link (after a submit got no answer) is under way.
    checking: Arc<AtomicBool>,
}

impl SmppChannel {
    /// Starts binding at once (and again after every drop) until [`Channel::close`].
    pub fn start(name: &str, config: Smpp, timeout: Duration, sink: Arc<dyn ReceiptSink>) -> Self {
        let (link_tx, link) = watch::channel(Link::Connecting);
        let (stop, stop_rx) = watch::channel(false);
        let session = Session {
            name: name.to_owned(),
            config: config.clone(),
            timeout,
            link: link_tx,
            sink,
            stop: stop_rx,
        };
        let handle = tokio::spawn(session.run());
        let mut first = [0u8; 1];
        crate::crypto::os_random(&mut first);
        Self {
            name: name.to_owned(),
            window: Semaphore::new(config.window as usize),
            pace: (config.max_rate > 0.0).then(|| Pace::new(config.max_rate)),
            timeout,
            link,
            stop,
            session: tokio::sync::Mutex::new(Some(handle)),
            paused_until: Mutex::new(None),
            reference: AtomicU8::new(first[0]),
            checking: Arc::default(),
        }
    }

    /// The bound session, waiting up to `timeout` while a bind is under way; at once an error
    /// when the last bind failed (so that the route's next channel gets the message).
    async fn bound(&self) -> Result<rusmppc::Client, SendError> {
        let mut link = self.link.clone();
        let wait = async {
            loop {
                match &*link.borrow_and_update() {
                    Link::Bound(client) => return Ok(client.clone()),
                    Link::Down(failure) => return Err(SendError::Temporary(failure.clone())),
                    Link::Closed => {
                        return Err(SendError::Temporary(Failure::new(
                            "closed",
                            "the channel is shutting down",
                        )))
                    }
                    Link::Connecting => {}
                }
                if link.changed().await.is_err() {
                    return Err(SendError::Temporary(Failure::new(
                        "closed",
                        "the channel is shutting down",
                    )));
                }
            }
        };
        tokio::time::timeout(self.timeout, wait)
            .await
            .unwrap_or_else(|_| {
                Err(SendError::Temporary(Failure::new(
                    "not-bound",
                    format!("no bind to the SMSC within {:?}", self.timeout),
                )))
            })
    }

    /// One submit_sm, again after each throttling answer until `deadline`.
    async fn submit(
        &self,
        client: &rusmppc::Client,
        pdu: &SubmitSm,
        deadline: Instant,
    ) -> Result<SubmitSmResp, SendError> {
        let mut pause = FIRST_PAUSE;
        let late = || {
            SendError::Temporary(Failure::new(
                "timeout",
                format!("the SMSC took more than {:?}", self.timeout * TRY_TIMEOUTS),
            ))
        };
        loop {
            if let Some(pace) = &self.pace {
                pace.wait(deadline).await.map_err(|()| late())?;
            }
            let permit = tokio::time::timeout_at(deadline, self.window.acquire())
                .await
                .map_err(|_| late())?
                .expect("the window is never closed");
            // A pause set while this submit waited for its place holds it too.
            let resume = *self.paused_until.lock().expect("not poisoned");
            if let Some(resume) = resume.filter(|r| *r > Instant::now()) {
                if resume >= deadline {
                    return Err(late());
                }
                drop(permit);
                tokio::time::sleep_until(resume).await;
                continue;
            }
            // rusmppc starts its response timer once the PDU is written; a connection that takes
            // no more bytes would hold the submit (and its place in the window) for ever.
            let wait = (Instant::now() + self.timeout).min(deadline);
            let answer = tokio::time::timeout_at(wait, client.submit_sm(pdu.clone())).await;
            let error = match answer {
                Ok(Ok(response)) => return Ok(response),
                Ok(Err(e)) => self.failure(e, pause),
                Err(_) => SendError::Temporary(Failure::new(
                    "timeout",
                    format!("no submit_sm_resp within {:?}", self.timeout),
                )),
            };
            if let SendError::Throttled { .. } = &error {
                // Paused before the submit's place is given back, so that no waiting submit
                // goes in between.
                let resume = Instant::now() + pause;
                {
                    let mut paused = self.paused_until.lock().expect("not poisoned");
                    *paused = Some(paused.map_or(resume, |p| p.max(resume)));
                }
                drop(permit);
                if resume >= deadline {
                    return Err(error);
                }
                tracing::info!(channel = %self.name, pause = ?pause, "the SMSC asks to slow down");
                pause = (pause * 2).min(LONGEST_PAUSE);
                continue;
            }
            drop(permit);
            if error.failure().code == "timeout" {
                self.check_link(client);
            }
            return Err(error);
        }
    }

    /// A submit got no answer: an enquire_link tells a slow SMSC from a dead or garbled
    /// connection, which is closed so that the session binds again.
    fn check_link(&self, client: &rusmppc::Client) {
        if self.checking.swap(true, Ordering::SeqCst) {
            return;
        }
        let (client, timeout, name) = (client.clone(), self.timeout, self.name.clone());
        let checking = self.checking.clone();
        tokio::spawn(async move {
            let answered = matches!(
                tokio::time::timeout(timeout, client.enquire_link()).await,
                Ok(Ok(()))
            );
            if !answered {
                tracing::warn!(channel = %name, "a submit and an enquire_link got no answer; closing the connection to bind again");
                let _ = client.close().await;
            }
            checking.store(false, Ordering::SeqCst);
        });
    }

    fn failure(&self, e: rusmppc::error::Error, pause: Duration) -> SendError {
        use rusmppc::error::Error;
        match e {
            Error::UnexpectedResponse { response } => {
                let status = u32::from(response.status());
                if status == 0 {
                    SendError::Temporary(Failure::new(
                        "answer",
                        format!("the SMSC answered a submit_sm with {:?}", response.id()),
                    ))
                } else {
                    status::submit_error(status, pause)
                }
            }
            Error::ResponseTimeout { .. } => SendError::Temporary(Failure::new(
                "timeout",
                format!("no submit_sm_resp within {:?}", self.timeout),
            )),
            other => SendError::Temporary(Failure::new(
                "connection",
                format!("the SMPP connection failed: {other}"),
            )),
        }
    }
}

/// submit_sm's relative validity_period (§7.1.1), `YYMMDDhhmmss000R`, for `left`.
pub fn validity_period(left: Duration) -> String {
    let secs = left.as_secs().clamp(1, 99 * 86_400);
    let (days, rest) = (secs / 86_400, secs % 86_400);
    format!(
        "0000{days:02}{:02}{:02}{:02}000R",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The source address for `from`: an international number (TON 1, NPI 1: `+` or 9 digits and
/// more), a short code (TON 3 network-specific, NPI 0: up to 8 digits), or an alphanumeric
/// sender of up to 11 characters (TON 5, NPI 0) that are both ASCII and in the GSM alphabet:
/// `source_addr` is a C-octet string, and an SMSC reads it as ASCII.
pub fn source_address(from: &str) -> Result<(Ton, Npi, String), Failure> {
    let (plus, digits) = match from.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, from),
    };
    if !digits.is_empty() && digits.len() <= 20 && digits.bytes().all(|b| b.is_ascii_digit()) {
        if !plus && digits.len() <= 8 {
            return Ok((Ton::NetworkSpecific, Npi::Unknown, digits.to_owned()));
        }
        return Ok((Ton::International, Npi::Isdn, digits.to_owned()));
    }
    if !from.is_empty() && from.len() <= 11 && from.is_ascii() && super::gsm::is_gsm7(from) {
        return Ok((Ton::Alphanumeric, Npi::Unknown, from.to_owned()));
    }
    Err(Failure::new(
        "sender",
        format!("SMPP takes a sender of up to 11 ASCII letters, digits and GSM symbols, or an international number, not {from:?}"),
    ))
}

fn field<T: FromStr>(value: &str, what: &str) -> Result<T, SendError> {
    T::from_str(value).map_err(|_| {
        SendError::Rejected(Failure::new(
            "encoding",
            format!("the {what} does not fit its SMPP field"),
        ))
    })
}

#[async_trait]
impl Channel for SmppChannel {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, m: &Outgoing) -> Result<Accepted, SendError> {
        let deadline = Instant::now() + self.timeout * TRY_TIMEOUTS;
        // Another channel of the route may take a sender this one cannot.
        let (ton, npi, source) = source_address(&m.from).map_err(SendError::Temporary)?;
        let reference = self.reference.fetch_add(1, Ordering::Relaxed);
        let encoded = text::encode(&m.text, reference)
            .map_err(|e| SendError::Rejected(Failure::new("too-long", e.to_string())))?;
        let esm_class = if encoded.concatenated() {
            EsmClass::from(0x40u8)
        } else {
            EsmClass::from(0u8)
        };
        let template = SubmitSm::builder()
            .service_type(Default::default())
            .source_addr_ton(ton)
            .source_addr_npi(npi)
            .source_addr(field::<COctetString<1, 21>>(&source, "sender")?)
            .dest_addr_ton(Ton::International)
            .dest_addr_npi(Npi::Isdn)
            .destination_addr(field::<COctetString<1, 21>>(
                m.number()?.digits(),
                "number",
            )?)
            .esm_class(esm_class)
            .validity_period(field::<EmptyOrFullCOctetString<17>>(
                &validity_period(m.valid_for),
                "validity period",
            )?)
            .registered_delivery(RegisteredDelivery::from(1u8))
            .data_coding(DataCoding::from(encoded.data_coding))
            .build();
        let client = self.bound().await?;
        let mut first_id = None;
        for part in encoded.parts {
            let short_message = OctetString::from_vec(part).map_err(|_| {
                SendError::Rejected(Failure::new("encoding", "a part does not fit a submit_sm"))
            })?;
            let pdu = template.clone().with_short_message(short_message);
            let response = self.submit(&client, &pdu, deadline).await?;
            // The first part's id names the message: its receipt is the one recorded.
            first_id.get_or_insert_with(|| response.message_id().to_string());
        }
        Ok(Accepted {
            message_id: first_id.unwrap_or_default(),
            delivered: false,
        })
    }

    async fn close(&self) {
        let _ = self.stop.send(true);
        if let Some(handle) = self.session.lock().await.take() {
            if tokio::time::timeout(Duration::from_secs(5), handle)
                .await
                .is_err()
            {
                tracing::warn!(channel = %self.name, "the SMPP session did not end within 5 s");
            }
        }
    }

    fn readiness(&self) -> Result<(), String> {
        match &*self.link.borrow() {
            Link::Bound(_) => Ok(()),
            Link::Connecting => Err("binding to the SMSC".into()),
            Link::Down(failure) => Err(format!("not bound: {}", failure.text)),
            Link::Closed => Err("closed".into()),
        }
    }
}

impl Drop for SmppChannel {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// At most `rate` submits a second, spaced evenly.
struct Pace {
    interval: Duration,
    next: Mutex<Instant>,
}

impl Pace {
    fn new(rate: f64) -> Self {
        Self {
            interval: Duration::from_secs_f64(1.0 / rate),
            next: Mutex::new(Instant::now()),
        }
    }

    /// Waits for this submit's slot; `Err` at once, taking no slot, when it comes after
    /// `deadline` (a slot taken and then not used would hold back every later submit).
    async fn wait(&self, deadline: Instant) -> Result<(), ()> {
        let slot = {
            let mut next = self.next.lock().expect("not poisoned");
            let slot = (*next).max(Instant::now());
            if slot > deadline {
                return Err(());
            }
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_validity_period_is_the_pins_remaining_life_in_relative_form() {
        assert_eq!(
            validity_period(Duration::from_secs(300)),
            "000000000500000R"
        );
        assert_eq!(
            validity_period(Duration::from_secs(3_661)),
            "000000010101000R"
        );
        assert_eq!(
            validity_period(Duration::from_secs(90_061)),
            "000001010101000R"
        );
        assert_eq!(validity_period(Duration::ZERO), "000000000001000R");
    }

    #[test]
    fn a_sender_is_an_international_number_or_up_to_11_characters() {
        let (ton, npi, addr) = source_address("+447700900123").unwrap();
        assert_eq!(
            (ton, npi, addr.as_str()),
            (Ton::International, Npi::Isdn, "447700900123")
        );
        let (ton, npi, addr) = source_address("AcmeInc").unwrap();
        assert_eq!(
            (ton, npi, addr.as_str()),
            (Ton::Alphanumeric, Npi::Unknown, "AcmeInc")
        );
        let (ton, npi, addr) = source_address("12345").unwrap();
        assert_eq!(
            (ton, npi, addr.as_str()),
            (Ton::NetworkSpecific, Npi::Unknown, "12345")
        );
        assert_eq!(source_address("15005550006").unwrap().0, Ton::International);
        assert!(source_address("AcmeIncorporated").is_err());
        assert!(source_address("").is_err());
        assert!(source_address("Ваш").is_err());
        // In the GSM alphabet but not ASCII: the field could not carry it.
        assert!(source_address("Café").is_err());
        assert!(source_address("£Bank").is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_spaces_submits_evenly() {
        let pace = Pace::new(4.0);
        let start = Instant::now();
        let far = start + Duration::from_secs(60);
        for _ in 0..5 {
            pace.wait(far).await.unwrap();
        }
        assert_eq!(Instant::now() - start, Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_submit_that_cannot_get_a_slot_in_time_takes_none() {
        let pace = Pace::new(1.0);
        let start = Instant::now();
        pace.wait(start).await.unwrap();
        // The next slot is at +1 s: a submit due to give up at +0.5 s leaves it free.
        for _ in 0..10 {
            assert!(pace.wait(start + Duration::from_millis(500)).await.is_err());
        }
        pace.wait(start + Duration::from_secs(2)).await.unwrap();
        assert_eq!(Instant::now() - start, Duration::from_secs(1));
    }
}
