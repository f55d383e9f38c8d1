//! The v1 handlers' reading of their parameters, without a server: what each endpoint does with
//! [`Params`] before it authenticates and calls the service, for the `v1_params` fuzz target
//! (`fuzz/`, docs/security.md "Fuzzing"). It calls the handlers' own functions in the handlers'
//! order (the steps written inline in a handler are repeated here, and change with it), does no
//! I/O and keeps nothing.
#![doc(hidden)]

use super::error::{Endpoint, UnblockError, V1Error};
use super::params::{parse_int, Params};
use super::response::{Fields, Format, Reply};
use super::{
    client_ip, is_echoable_id, parse_amount, request_id_param, required, text_param, Common,
    DEFAULT_SENDER_ID, DEFAULT_UNBLOCK, MAX_BRAND, MAX_PAYEE, MAX_SENDER_ID, MAX_UNBLOCK,
};
use crate::domain::locale::LocaleSet;
use crate::domain::{Candidate, CustomPin, Purpose};

/// Reads `p` as every v1 endpoint would, and writes each refusal as the endpoint answers it.
pub fn fuzz_parse(p: &Params) {
    let _ = credentials(p);
    refused(p, Endpoint::Request, request(p).err());
    refused(p, Endpoint::Psd2, psd2(p).err());
    refused(p, Endpoint::Check, check(p).err());
    refused(p, Endpoint::Search, search(p).err());
    refused(p, Endpoint::Control, control(p).err());
    if let Err(e) = network_unblock(p) {
        let _ = e.problem();
    }
}

/// `authenticate` up to the key store: `Authorization: Basic`, else `api_key` and `api_secret`.
fn credentials(p: &Params) -> Result<(&str, &str), V1Error> {
    match p.basic() {
        Some(credentials) => Ok(credentials),
        None => Ok((
            p.get("api_key").ok_or(V1Error::Missing("api_key"))?,
            p.get("api_secret").ok_or(V1Error::Missing("api_secret"))?,
        )),
    }
}

/// `/verify/{format}` up to `service.start`.
fn request(p: &Params) -> Result<(), V1Error> {
    let common = Common::parse(p, LocaleSet::Standard)?;
    let brand = text_param(p, "brand", MAX_BRAND)?.ok_or(V1Error::Missing("brand"))?;
    let sender_id = text_param(p, "sender_id", MAX_SENDER_ID)?.unwrap_or(DEFAULT_SENDER_ID);
    let custom_pin = match p.get("pin_code") {
        Some(raw) => Some(CustomPin::parse(raw).ok_or(V1Error::Invalid("pin_code"))?),
        None => None,
    };
    let purpose = Purpose::Brand {
        brand: brand.to_owned(),
    };
    let _ = common.start(purpose, sender_id, custom_pin, client_ip(p)?);
    Ok(())
}

/// `/verify/psd2/json` up to `service.start`.
fn psd2(p: &Params) -> Result<(), V1Error> {
    let common = Common::parse(p, LocaleSet::Psd2)?;
    let payee = text_param(p, "payee", MAX_PAYEE)?.ok_or(V1Error::Missing("payee"))?;
    let amount = parse_amount(required(p, "amount")?).ok_or(V1Error::Invalid("amount"))?;
    let purpose = Purpose::Payment {
        payee: payee.to_owned(),
        amount,
    };
    let _ = common.start(purpose, DEFAULT_SENDER_ID, None, client_ip(p)?);
    Ok(())
}

/// `/verify/check/{format}` up to `service.check`.
fn check(p: &Params) -> Result<(), V1Error> {
    let (raw, id) = request_id_param(p)?;
    let _code = Candidate::parse(required(p, "code")?).ok_or(V1Error::Invalid("code"))?;
    match id {
        Some(_) => Ok(()),
        None => Err(V1Error::CheckNotFound(raw)),
    }
}

/// `/verify/search/{format}` up to `service.search`.
fn search(p: &Params) -> Result<(), V1Error> {
    super::search_ids(p).map(|_| ())
}

/// `/verify/control/{format}` up to `service.control`.
fn control(p: &Params) -> Result<(), V1Error> {
    let (raw, id) = request_id_param(p)?;
    match required(p, "cmd")? {
        "cancel" | "trigger_next_event" => {}
        _ => return Err(V1Error::Invalid("cmd")),
    }
    match id {
        Some(_) => Ok(()),
        None => Err(V1Error::ControlNotFound(raw)),
    }
}

/// `/verify/network-unblock` up to `service.unblock`.
fn network_unblock(p: &Params) -> Result<(), UnblockError> {
    let network = p.get("network").map(str::trim).unwrap_or("");
    if network.is_empty() || network.len() > 16 || !network.bytes().all(|b| b.is_ascii_digit()) {
        return Err(UnblockError::NoNetwork);
    }
    let _seconds = match p.get("unblock_duration").or_else(|| p.get("duration")) {
        None => DEFAULT_UNBLOCK,
        Some(raw) => parse_int(raw)
            .filter(|n| (0..=MAX_UNBLOCK).contains(n))
            .ok_or(UnblockError::BadDuration)?,
    };
    Ok(())
}

/// A refusal written in both formats, with the texts and the echoed id `finish` puts in it.
fn refused(p: &Params, endpoint: Endpoint, e: Option<V1Error>) {
    let Some(e) = e else {
        return;
    };
    let echo = match endpoint {
        Endpoint::Check => p
            .get("request_id")
            .filter(|raw| is_echoable_id(raw))
            .unwrap_or(""),
        _ => "",
    };
    let reply = Reply {
        root: Some("verify_response"),
        fields: Fields::new()
            .text("request_id", echo)
            .text("status", e.status())
            .text("error_text", e.text(endpoint)),
    };
    let _ = reply.render(Format::Json);
    let _ = reply.render(Format::Xml);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seeds and the corpus of `fuzz/`, split as `fuzz/fuzz_targets/v1_params.rs` splits
    /// them, so that `cargo test` replays them without cargo-fuzz.
    #[test]
    fn the_fuzz_inputs_are_read_without_a_panic() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        let mut read = 0;
        for dir in ["seeds/v1_params", "corpus/v1_params"] {
            for entry in std::fs::read_dir(root.join(dir)).unwrap() {
                let data = std::fs::read(entry.unwrap().path()).unwrap();
                let mut parts = data.splitn(3, |&b| b == b'\n');
                let query = String::from_utf8_lossy(parts.next().unwrap_or_default());
                let authorization = String::from_utf8_lossy(parts.next().unwrap_or_default());
                let body = parts.next().unwrap_or_default();
                let p = Params::from_parts(
                    Some(query.as_ref()).filter(|s| !s.is_empty()),
                    body,
                    Some(authorization.as_ref()).filter(|s| !s.is_empty()),
                );
                fuzz_parse(&p);
                read += 1;
            }
        }
        assert!(read > 0);
    }
}
