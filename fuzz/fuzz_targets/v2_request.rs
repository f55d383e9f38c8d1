//! Verify v2 bodies: the same bytes as a start (`POST /v2/verify`, `request::parse`) and as a
//! check (`POST /v2/verify/{id}`, `check_code`); a refusal is written out as the problem+json
//! answer that names the fields.
#![no_main]

use libfuzzer_sys::fuzz_target;
use verifyd::api::v2;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = v2::request::parse(data) {
        let _ = e.response("fuzz");
    }
    if let Err(e) = v2::check_code(data) {
        let _ = e.response("fuzz");
    }
});
