//! Verify v1 parameters: a query string, an `Authorization` header and a body (form or JSON)
//! merged as `Params::from_parts` merges them, then read as the v1 handlers read them before
//! they authenticate and call the service (`verifyd::api::v1::fuzz::fuzz_parse`).
//!
//! Input: `QUERY \n AUTHORIZATION \n BODY`; a missing or empty part is absent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use verifyd::api::v1::params::Params;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |&b| b == b'\n');
    let query = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let authorization = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let body = parts.next().unwrap_or_default();
    let present = |s: &str| !s.is_empty();
    let p = Params::from_parts(
        Some(query.as_ref()).filter(|s| present(s)),
        body,
        Some(authorization.as_ref()).filter(|s| present(s)),
    );
    verifyd::api::v1::fuzz::fuzz_parse(&p);
});
