//! What reading and writing one stored verification costs: the body that a check decodes (when
//! the writer's cache misses) and encodes on the SQLite writer thread, and every search decodes.
//! In process, one thread; a body as `POST /verify/json` stores it: as JSON of format 1 (what
//! earlier versions wrote), as JSON of format 2 (PostgreSQL) and as SQLite's MessagePack.
//!
//! `cargo bench --bench stored_body`

use std::time::Instant;

use verifyd::domain::Verification;
use verifyd::store::body::{from_json, to_json};
use verifyd::store::sqlite::body;

const ROUNDS: usize = 5;
const CALLS: u32 = 200_000;

/// A body of format 1 as an earlier version stored it.
const NEW: &str = r#"{"id":"01a20238b7d33406b7d22e4a96f663ba","account":"e1c3a508","number":{"digits":"12015550123","region":"US"},"purpose":{"kind":"brand","brand":"Acme","sender_id":"VERIFY"},"locale":"en-us","code_length":4,"workflow":1,"timing":{"next_event_wait":null,"pin_expiry":300},"submitted_at":1795333601235,"status":"InProgress","finalized_at":null,"pin":{"hash":"200c671fdfdba4065bec7fbe2dac18aae274264447f5d57e32e5418a9151c84b","sealed":"df9cee7ea6ae8453875a6b4c83886620c3df6be4a478c30642ec7e9acfbc66905801b74502cdf09ad0c0f64e","issued_at":1795333601235,"expires_at":1795333901235,"checks":0,"custom":false},"events":[{"id":"37AF742A6A6728CB","kind":"sms","at":1795333601235}],"checks":[],"next_event_at":1795333726235}"#;

fn per_call(f: impl Fn() -> usize) -> f64 {
    let mut best = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let mut n = 0;
        for _ in 0..CALLS {
            n += std::hint::black_box(f());
        }
        assert!(n > 0);
        best.push(start.elapsed().as_nanos() as f64 / f64::from(CALLS));
    }
    best.sort_by(f64::total_cmp);
    best[ROUNDS / 2]
}

fn main() {
    let v: Verification = body::decode(NEW.as_bytes()).expect("the sample body decodes");
    let json = to_json(&v).unwrap();
    let decode_legacy = per_call(|| {
        let v: Verification = body::decode(std::hint::black_box(NEW.as_bytes())).unwrap();
        v.events.len()
    });
    let decode = per_call(|| {
        let v: Verification = from_json(std::hint::black_box(json.as_bytes())).unwrap();
        v.events.len()
    });
    let encode = per_call(|| to_json(std::hint::black_box(&v)).unwrap().len());
    let packed = body::encode(&v).unwrap();
    let unpack = per_call(|| {
        let v: Verification = body::decode(std::hint::black_box(&packed)).unwrap();
        v.events.len()
    });
    let pack = per_call(|| body::encode(std::hint::black_box(&v)).unwrap().len());
    println!("| operation | ns per call (median of {ROUNDS} rounds of {CALLS}) |");
    println!("|---|---|");
    println!(
        "| decode a new verification from JSON of format 1 ({} bytes) | {decode_legacy:.0} |",
        NEW.len()
    );
    println!(
        "| decode it from JSON of format 2 ({} bytes) | {decode:.0} |",
        json.len()
    );
    println!("| encode it as JSON | {encode:.0} |");
    println!(
        "| decode it from MessagePack ({} bytes) | {unpack:.0} |",
        packed.len()
    );
    println!("| encode it as MessagePack | {pack:.0} |");
}
