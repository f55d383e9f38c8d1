//! `[channels.NAME] type = "sip"`: calls through a SIP trunk or PBX, the code read aloud by
//! speech rendered on this machine.

use std::net::IpAddr;

use serde::Deserialize;

use super::delivery::Secret;
use super::file::Problem;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sip {
    /// Where requests go: `host:port` of the trunk or outbound proxy.
    pub proxy: String,
    #[serde(default = "udp")]
    pub transport: Transport,
    /// The caller: a SIP URI.
    pub from: String,
    /// The request URI, with `{e164}` (`+4477…`) or `{number}` (`4477…`).
    pub to: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    /// The address in Contact and SDP; default: the one this machine reaches the proxy from.
    #[serde(default)]
    pub local_ip: Option<IpAddr>,
    /// `FIRST-LAST`: the UDP ports calls' audio is sent from.
    #[serde(default)]
    pub rtp_ports: Option<String>,
    /// Seconds of ringing before the call is cancelled.
    #[serde(default = "answer_timeout")]
    pub answer_timeout: u64,
}

fn udp() -> Transport {
    Transport::Udp
}

fn answer_timeout() -> u64 {
    30
}

impl Sip {
    pub fn check(&self, key: &str) -> Result<(), Problem> {
        let (host, port) = self.proxy_parts().ok_or_else(|| {
            Problem::new(
                format!("{key}.proxy"),
                format!("expected HOST:PORT, not {:?}", self.proxy),
            )
        })?;
        if host.is_empty() || port == 0 {
            return Err(Problem::new(format!("{key}.proxy"), "expected HOST:PORT"));
        }
        for (field, value) in [("from", &self.from), ("to", &self.to)] {
            let ok = value.starts_with("sip:")
                && value.len() > 4
                && !value.chars().any(|c| c.is_whitespace() || c.is_control());
            if !ok {
                return Err(Problem::new(
                    format!("{key}.{field}"),
                    format!("expected a SIP URI such as sip:user@host, not {value:?}"),
                ));
            }
        }
        if !self.to.contains("{e164}") && !self.to.contains("{number}") {
            return Err(Problem::new(
                format!("{key}.to"),
                "expected {e164} or {number} where the destination goes",
            ));
        }
        if self.username.is_some() != self.password.is_some() {
            return Err(Problem::new(
                key,
                "expected both `username` and `password`, or neither",
            ));
        }
        if let Some(range) = &self.rtp_ports {
            if self.rtp_range().is_none() {
                return Err(Problem::new(
                    format!("{key}.rtp_ports"),
                    format!("expected FIRST-LAST, ports from 1024 to 65535, not {range:?}"),
                ));
            }
        }
        if !(1..=300).contains(&self.answer_timeout) {
            return Err(Problem::new(
                format!("{key}.answer_timeout"),
                "expected 1 to 300 seconds",
            ));
        }
        Ok(())
    }

    /// The proxy's host and port.
    pub fn proxy_parts(&self) -> Option<(&str, u16)> {
        let (host, port) = self.proxy.rsplit_once(':')?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Some((host, port.parse().ok()?))
    }

    /// The RTP port range, first and last included.
    pub fn rtp_range(&self) -> Option<(u16, u16)> {
        let Some(range) = &self.rtp_ports else {
            return Some((0, 0));
        };
        let (first, last) = range.split_once('-')?;
        let (first, last): (u16, u16) = (first.trim().parse().ok()?, last.trim().parse().ok()?);
        (first >= 1024 && first <= last).then_some((first, last))
    }

    /// The request URI for `digits` (E.164 without `+`).
    pub fn request_uri(&self, digits: &str) -> String {
        self.to
            .replace("{e164}", &format!("+{digits}"))
            .replace("{number}", digits)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::delivery::ChannelSpec;
    use crate::config::file::ConfigFile;
    use std::path::Path;

    fn parse(channel: &str) -> Result<ConfigFile, String> {
        let text = format!(
            "[channels.pbx]\ntype = \"sip\"\n{channel}\n[[routes]]\nkind = \"voice\"\nchannels = [\"pbx\"]\n"
        );
        ConfigFile::parse(Path::new("v.toml"), &text, |name| {
            (name == "SIP_PASSWORD").then(|| "pw".to_owned())
        })
        .map_err(|e| e.to_string())
    }

    const EXAMPLE: &str = r#"proxy = "sip.example.net:5060"
transport = "udp"
from = "sip:+15550100@example.net"
to = "sip:{e164}@sip.example.net"
username = "acme"
password = "${SIP_PASSWORD}"
local_ip = "203.0.113.5"
rtp_ports = "20000-20999"
answer_timeout = 30"#;

    #[test]
    fn the_issue_example_parses() {
        let file = parse(EXAMPLE).unwrap();
        let ChannelSpec::Sip(s) = &file.delivery.channels["pbx"].spec else {
            panic!("a sip channel")
        };
        assert_eq!(s.proxy_parts(), Some(("sip.example.net", 5060)));
        assert_eq!(s.rtp_range(), Some((20_000, 20_999)));
        assert_eq!(
            s.request_uri("447700100123"),
            "sip:+447700100123@sip.example.net"
        );
        assert_eq!(s.password.as_ref().unwrap().expose(), "pw");
    }

    #[test]
    fn a_sip_channel_carries_calls_not_sms() {
        let text = format!(
            "[channels.pbx]\ntype = \"sip\"\n{EXAMPLE}\n[[routes]]\nkind = \"sms\"\nchannels = [\"pbx\"]\n"
        );
        let e = ConfigFile::parse(Path::new("v.toml"), &text, |_| Some("pw".into()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not carry sms"), "{e}");
    }

    #[test]
    fn bad_values_are_refused_with_their_key() {
        let base = "from = \"sip:a@b\"\nto = \"sip:{number}@b\"\n";
        for (extra, expected) in [
            ("proxy = \"nohost\"", "channels.pbx.proxy"),
            (
                "proxy = \"h:5060\"\ntransport = \"sctp\"",
                "channels.pbx.transport",
            ),
            (
                "proxy = \"h:5060\"\nusername = \"u\"",
                "both `username` and `password`",
            ),
            (
                "proxy = \"h:5060\"\nrtp_ports = \"30000\"",
                "channels.pbx.rtp_ports",
            ),
            (
                "proxy = \"h:5060\"\nanswer_timeout = 0",
                "channels.pbx.answer_timeout",
            ),
        ] {
            let e = parse(&format!("{base}{extra}")).unwrap_err();
            assert!(e.contains(expected), "{extra}: {e}");
        }
        let e = parse("proxy = \"h:1\"\nfrom = \"a@b\"\nto = \"sip:{e164}@b\"").unwrap_err();
        assert!(e.contains("channels.pbx.from"), "{e}");
        let e = parse("proxy = \"h:1\"\nfrom = \"sip:a@b\"\nto = \"sip:x@b\"").unwrap_err();
        assert!(e.contains("{e164} or {number}"), "{e}");
    }
}
