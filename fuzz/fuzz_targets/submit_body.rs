//! Submit-body validation on arbitrary bytes: never panics; an accepted body's payload is a JSON
//! object that serde_json reads back; and the one-pass fast path gives the full parse's answer
//! wherever it answers, with the same payload.
//!
//! The check itself is `common/submit_body.rs`, which `tests/fuzz_regressions.rs` runs on stable over
//! `fuzz/seeds/submit_body/` (regression inputs included), so CI guards what fuzzing found.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common/submit_body.rs"]
mod check;

fuzz_target!(|data: &[u8]| check::check(data));
