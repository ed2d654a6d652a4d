//! The HTTP request sequencer on arbitrary bytes, fed in arbitrary pieces: it must never panic,
//! never loop, and never hand out more body than arrived.
//!
//! The check itself is `common/http_conn.rs`, which `tests/fuzz_regressions.rs` runs on stable over
//! `fuzz/seeds/http_conn/` (regression inputs included), so CI guards what fuzzing found.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common/http_conn.rs"]
mod check;

fuzz_target!(|data: &[u8]| check::check(data));
