//! `smtp`: the code by e-mail, through an SMTP server with `lettre` (pooled connections; TLS by
//! rustls on ring, trusting the system's roots and `SSL_CERT_FILE`). A message has a plain and
//! an HTML part; a recipient the server refuses for good (5xx) fails the try for good.

use std::time::Duration;

use async_trait::async_trait;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{Accepted, Channel, Failure, Outgoing, SendError};
use crate::config::smtp::{Smtp, SmtpTls};
use crate::domain::Destination;

pub struct SmtpChannel {
    name: String,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl SmtpChannel {
    /// A channel for a configuration `config check` has accepted (its host names a TLS server,
    /// its `from` is an address).
    pub fn new(name: &str, config: &Smtp, timeout: Duration) -> Self {
        let tls =
            || tls_parameters(&config.host).expect("the host was checked with the configuration");
        let tls = match config.tls {
            SmtpTls::Starttls => Tls::Required(tls()),
            SmtpTls::Implicit => Tls::Wrapper(tls()),
            SmtpTls::None => Tls::None,
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host)
            .port(config.port())
            .tls(tls)
            .timeout(Some(timeout));
        if let (Some(user), Some(password)) = (&config.username, &config.password) {
            builder =
                builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
        }
        Self {
            name: name.to_owned(),
            transport: builder.build(),
            from: config
                .from
                .parse()
                .expect("the sender was checked with the configuration"),
        }
    }
}

/// TLS to `host`, trusting the system's roots (and `SSL_CERT_FILE`).
pub fn tls_parameters(host: &str) -> Result<TlsParameters, lettre::transport::smtp::Error> {
    TlsParameters::new_rustls(host.to_owned())
}

/// A plain text as the HTML part of a message that has no HTML of its own (`send-test`).
fn paragraph(text: &str) -> String {
    let mut out = String::from("<!DOCTYPE html>\n<html><body><p>");
    crate::xml::push_text(&mut out, text);
    out.push_str("</p></body></html>\n");
    out
}

fn refused(code: &str, text: impl Into<String>) -> SendError {
    SendError::Rejected(Failure::new(code, text))
}

/// An SMTP failure as the router sees it: the server's permanent answers (5xx) are final for
/// this message, anything else may pass.
fn failure(e: lettre::transport::smtp::Error) -> SendError {
    let code = e.status().map(|c| c.to_string()).unwrap_or_else(|| {
        if e.is_tls() {
            "tls"
        } else if e.is_timeout() {
            "timeout"
        } else {
            "connect"
        }
        .to_owned()
    });
    if e.is_permanent() {
        refused(&code, e.to_string())
    } else {
        SendError::Temporary(Failure::new(code, e.to_string()))
    }
}

#[async_trait]
impl Channel for SmtpChannel {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, m: &Outgoing) -> Result<Accepted, SendError> {
        let Destination::Email(address) = &m.to else {
            return Err(refused("destination", "this channel delivers e-mail only"));
        };
        let to: Mailbox = address
            .as_str()
            .parse()
            .map_err(|_| refused("destination", "not an address SMTP can carry"))?;
        // A sender the request names wins over the channel's own only in the channel's own
        // domain: an API key must not send as anyone through the operator's relay.
        let from = m
            .from
            .parse::<Mailbox>()
            .ok()
            .filter(|mailbox| {
                mailbox
                    .email
                    .domain()
                    .eq_ignore_ascii_case(self.from.email.domain())
            })
            .unwrap_or_else(|| self.from.clone());
        let message_id = format!("<{}@{}>", m.id.as_str(), self.from.email.domain());
        let (subject, html) = match &m.email {
            Some(parts) => (parts.subject.clone(), parts.html.clone()),
            None => (m.text.clone(), paragraph(&m.text)),
        };
        let message = Message::builder()
            .from(from)
            .to(to)
            .subject(subject)
            .message_id(Some(message_id.clone()))
            .multipart(MultiPart::alternative_plain_html(m.text.clone(), html))
            .map_err(|e| refused("message", e.to_string()))?;
        self.transport.send(message).await.map_err(failure)?;
        Ok(Accepted {
            message_id,
            delivered: false,
        })
    }
}
