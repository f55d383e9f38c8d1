//! What parsing a number costs: the fast path for plain international digits
//! (`domain::numbering::plain_international`) and `PhoneNumber::parse`, which every new
//! verification calls. In process, one thread, the US numbers `verifyd-bench` sends and some of
//! other codes; the median of five rounds.
//!
//! `cargo bench --bench number`

use std::time::Instant;

use verifyd::domain::numbering::plain_international;
use verifyd::domain::PhoneNumber;

const ROUNDS: usize = 5;
const PASSES: usize = 200;

/// The benchmark's numbers: US numbers in real area codes (as `verifyd-bench` makes them).
fn us_numbers() -> Vec<String> {
    const AREAS: [u32; 10] = [201, 202, 212, 213, 305, 312, 415, 617, 718, 917];
    (0..1_000u32)
        .map(|i| format!("1{}{}{:04}", AREAS[(i % 10) as usize], 200 + i % 800, i))
        .collect()
}

fn other_numbers() -> Vec<String> {
    [
        "447911123456",
        "4915123456789",
        "33612345678",
        "61412345678",
        "819012345678",
    ]
    .iter()
    .cycle()
    .take(1_000)
    .map(|s| s.to_string())
    .collect()
}

fn per_number(numbers: &[String], f: impl Fn(&str) -> bool) -> f64 {
    let mut rounds = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let start = Instant::now();
        for _ in 0..PASSES {
            for n in numbers {
                std::hint::black_box(f(std::hint::black_box(n)));
            }
        }
        rounds.push(start.elapsed().as_nanos() as f64 / (PASSES * numbers.len()) as f64);
    }
    rounds.sort_by(f64::total_cmp);
    rounds[ROUNDS / 2]
}

fn main() {
    let us = us_numbers();
    let other = other_numbers();
    println!("| numbers | fast path answers | fast path ns | PhoneNumber::parse ns |");
    println!("|---|---|---|---|");
    for (name, numbers) in [("US (+1)", &us), ("GB, DE, FR, AU, JP", &other)] {
        assert!(
            numbers.iter().all(|n| PhoneNumber::parse(n, None).is_ok()),
            "every sample number is valid"
        );
        let answered = numbers
            .iter()
            .filter(|n| plain_international(n).is_some())
            .count();
        let fast = per_number(numbers, |n| plain_international(n).is_some());
        let parse = per_number(numbers, |n| PhoneNumber::parse(n, None).is_ok());
        println!(
            "| {name} | {answered} of {} | {fast:.0} | {parse:.0} |",
            numbers.len()
        );
    }
}
