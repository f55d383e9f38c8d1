//! `[channels.NAME] type = "smpp"`: a bind to an SMSC. The limits on `system_id`, `password`
//! and `system_type` are SMPP 3.4's field sizes (§4.1.1), checked here so that a bind is never
//! refused for a value the protocol cannot carry.

use serde::Deserialize;

use super::delivery::Secret;
use super::file::Problem;

/// How long a submit waits for its submit_sm_resp unless `timeout` says otherwise.
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
pub const DEFAULT_WINDOW: u32 = 10;

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Smpp {
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    pub system_id: String,
    pub password: Secret,
    #[serde(default)]
    pub system_type: String,
    #[serde(default)]
    pub tls: bool,
    /// Submits awaiting their response, at most.
    #[serde(default = "default_window")]
    pub window: u32,
    /// submit_sm per second, 0 for no limit.
    #[serde(default)]
    pub max_rate: f64,
    #[serde(default)]
    pub from: Option<String>,
}

fn default_port() -> u16 {
    2775
}

fn default_window() -> u32 {
    DEFAULT_WINDOW
}

impl Smpp {
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
        if self.port == 0 {
            return Err(Problem::new(format!("{key}.port"), "expected 1 to 65535"));
        }
        for (field, value, max) in [
            ("system_id", self.system_id.as_str(), 15),
            ("password", self.password.expose(), 8),
            ("system_type", self.system_type.as_str(), 12),
        ] {
            let printable = value.bytes().all(|b| (0x20..0x7f).contains(&b));
            if value.len() > max || !printable {
                return Err(Problem::new(
                    format!("{key}.{field}"),
                    format!("SMPP 3.4 takes up to {max} printable ASCII characters here"),
                ));
            }
        }
        if self.system_id.is_empty() {
            return Err(Problem::new(
                format!("{key}.system_id"),
                "must not be empty",
            ));
        }
        if !(1..=1000).contains(&self.window) {
            return Err(Problem::new(format!("{key}.window"), "expected 1 to 1000"));
        }
        if !(self.max_rate >= 0.0 && self.max_rate <= 100_000.0) {
            return Err(Problem::new(
                format!("{key}.max_rate"),
                "expected submits per second from 0 (no limit) to 100000",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::delivery::ChannelSpec;
    use crate::config::file::ConfigFile;
    use std::path::Path;
    use std::time::Duration;

    fn parse(channel: &str) -> Result<ConfigFile, String> {
        let text = format!(
            "[channels.smsc]\ntype = \"smpp\"\n{channel}\n[[routes]]\nkind = \"sms\"\nchannels = [\"smsc\"]\n"
        );
        ConfigFile::parse(Path::new("v.toml"), &text, |name| {
            (name == "SMPP_PASSWORD").then(|| "pw".to_owned())
        })
        .map_err(|e| e.to_string())
    }

    #[test]
    fn the_issue_example_parses_with_its_defaults() {
        let file = parse(
            "host = \"smsc.example.net\"\nsystem_id = \"acme\"\npassword = \"${SMPP_PASSWORD}\"",
        )
        .unwrap();
        let channel = &file.delivery.channels["smsc"];
        assert_eq!(channel.timeout, Duration::from_secs(2));
        let ChannelSpec::Smpp(s) = &channel.spec else {
            panic!("an smpp channel")
        };
        assert_eq!(
            (s.port, s.window, s.max_rate, s.tls),
            (2775, 10, 0.0, false)
        );
        assert_eq!((s.password.expose(), s.system_type.as_str()), ("pw", ""));
    }

    #[test]
    fn values_smpp_cannot_carry_are_refused_with_their_key() {
        let base = "host = \"smsc\"\nsystem_id = \"acme\"\n";
        for (extra, expected) in [
            (
                "password = \"too-long-pw\"",
                "channels.smsc.password: SMPP 3.4 takes up to 8",
            ),
            (
                "password = \"pw\"\nsystem_id2 = 1",
                "unknown field `system_id2`",
            ),
            (
                "password = \"pw\"\nwindow = 0",
                "channels.smsc.window: expected 1 to 1000",
            ),
            ("password = \"pw\"\nmax_rate = -1", "channels.smsc.max_rate"),
            (
                "password = \"pw\"\nsystem_type = \"much-too-long\"",
                "channels.smsc.system_type",
            ),
            ("password = \"pw\"\nport = 70000", "channels.smsc.port"),
        ] {
            let e = parse(&format!("{base}{extra}")).unwrap_err();
            assert!(e.contains(expected), "{extra}: {e}");
        }
        let e = parse("host = \"smsc/x\"\nsystem_id = \"a\"\npassword = \"p\"").unwrap_err();
        assert!(e.contains("channels.smsc.host"), "{e}");
    }
}
