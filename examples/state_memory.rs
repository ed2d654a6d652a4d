//! Memory per stored request state: fills one shard's state table the way the broker does
//! (pending, processing, completed with a built-in result) and reports RSS growth per state.
//!
//! `cargo run --release --example state_memory -- 1000000`

use std::time::{Duration, Instant};

use bytes::Bytes;
use openhqm::clock::Timestamp;
use openhqm::id::IdMinter;
use openhqm::store::{Outcome, StateTable, Status};
use openhqm::worker::builtin;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let mut table = StateTable::new(Duration::from_secs(3600));
    let mut minter = IdMinter::new(0, 1);
    let payload = br#"{"operation":"uppercase","data":"hello"}"#;
    let before = rss_bytes();
    let started = Instant::now();
    for _ in 0..n {
        let id = table.insert_pending(minter.mint(), Timestamp::now());
        table.start(&id, Timestamp::now()).expect("pending");
        let out = builtin::run(payload).expect("uppercase");
        let outcome = Outcome {
            result: Some(out.result),
            headers: None,
            status_code: Some(out.status_code),
            error: None,
            processing_time_ms: 0,
            completed_at: Timestamp::now(),
        };
        table
            .finish_or_insert(
                &id,
                Status::Completed,
                outcome,
                Timestamp(0),
                Instant::now(),
            )
            .expect("processing");
        // What the submit path allocates and frees per request, interleaved as in the broker.
        drop(std::hint::black_box(Bytes::copy_from_slice(payload)));
    }
    let grown = rss_bytes().saturating_sub(before);
    println!(
        "{n} states: RSS +{:.1} MiB, {:.0} bytes per state, {:.0} ns per insert+finish",
        grown as f64 / (1 << 20) as f64,
        grown as f64 / n as f64,
        started.elapsed().as_nanos() as f64 / n as f64
    );
}
