//! `[channels.NAME] type = "smtp"`: e-mail through an SMTP server (a relay, or a provider's
//! submission port).

use serde::Deserialize;

use super::delivery::Secret;
use super::file::Problem;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain TCP, then STARTTLS before anything is said (port 587); refused without it.
    Starttls,
    /// TLS from the first byte (port 465).
    Implicit,
    /// No TLS: only for a relay on the same host or network.
    None,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Smtp {
    pub host: String,
    pub port: Option<u16>,
    #[serde(default = "default_tls")]
    pub tls: SmtpTls,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    /// The sender address, `noreply@example.com` or `Acme <noreply@example.com>`.
    pub from: String,
}

fn default_tls() -> SmtpTls {
    SmtpTls::Starttls
}

impl Smtp {
    /// The port the TLS mode implies unless one is given.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            SmtpTls::Starttls => 587,
            SmtpTls::Implicit => 465,
            SmtpTls::None => 25,
        })
    }

    pub fn check(&self, key: &str) -> Result<(), Problem> {
        let host_ok = !self.host.is_empty()
            && self.host.len() <= 253
            && self
                .host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'_'));
        if !host_ok {
            return Err(Problem::new(
                format!("{key}.host"),
                format!("expected a host name or an IP address, not {:?}", self.host),
            ));
        }
        if self.port == Some(0) {
            return Err(Problem::new(format!("{key}.port"), "expected 1 to 65535"));
        }
        if self.from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(Problem::new(
                format!("{key}.from"),
                format!(
                    "expected an address such as \"noreply@example.com\" or \"Acme <noreply@example.com>\", not {:?}",
                    self.from
                ),
            ));
        }
        if self.tls != SmtpTls::None && crate::channel::smtp::tls_parameters(&self.host).is_err() {
            return Err(Problem::new(
                format!("{key}.host"),
                "TLS needs a host name (or IP address) its certificate names",
            ));
        }
        let loopback = matches!(
            self.host.as_str(),
            "localhost" | "127.0.0.1" | "::1" | "[::1]"
        );
        if self.tls == SmtpTls::None && self.password.is_some() && !loopback {
            return Err(Problem::new(
                format!("{key}.tls"),
                "a login would cross the network in clear: use starttls or implicit (`none` \
                 with a login only for a server on this host)",
            ));
        }
        if self.username.is_some() != self.password.is_some() {
            return Err(Problem::new(
                format!("{key}.password"),
                "`username` and `password` go together",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smtp(text: &str) -> Result<Smtp, Problem> {
        let value: toml::Value = toml::from_str(text).unwrap();
        let c: Smtp = crate::config::file::deserialize("channels.mail", value)?;
        c.check("channels.mail")?;
        Ok(c)
    }

    #[test]
    fn the_port_follows_the_tls_mode_unless_given() {
        let c = smtp("host = \"mx.example.com\"\nfrom = \"a@example.com\"").unwrap();
        assert_eq!((c.tls, c.port()), (SmtpTls::Starttls, 587));
        let c = smtp("host = \"h\"\ntls = \"implicit\"\nfrom = \"a@example.com\"").unwrap();
        assert_eq!(c.port(), 465);
        let c = smtp("host = \"h\"\ntls = \"none\"\nport = 2525\nfrom = \"A <a@example.com>\"")
            .unwrap();
        assert_eq!(c.port(), 2525);
    }

    #[test]
    fn a_bad_sender_tls_mode_or_half_a_login_is_named() {
        let e = smtp("host = \"h\"\nfrom = \"not an address\"").unwrap_err();
        assert_eq!(e.key, "channels.mail.from");
        let e = smtp("host = \"h\"\nfrom = \"a@example.com\"\ntls = \"ssl\"").unwrap_err();
        assert!(e.key.starts_with("channels.mail"), "{e:?}");
        let e = smtp("host = \"h\"\nfrom = \"a@example.com\"\nusername = \"u\"").unwrap_err();
        assert_eq!(e.key, "channels.mail.password");
        let clear = "from = \"a@example.com\"\ntls = \"none\"\nusername = \"u\"\npassword = \"p\"";
        let e = smtp(&format!("host = \"mx.example.com\"\n{clear}")).unwrap_err();
        assert_eq!(e.key, "channels.mail.tls");
        assert!(smtp(&format!("host = \"127.0.0.1\"\n{clear}")).is_ok());
    }
}
