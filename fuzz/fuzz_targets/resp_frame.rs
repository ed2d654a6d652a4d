//! The RESP reply decoder on arbitrary bytes: never panics, never claims more bytes than given,
//! and decoding the prefix it used gives the same frame.
//!
//! The check itself is `common/resp_frame.rs`, which `tests/fuzz_regressions.rs` runs on stable over
//! `fuzz/seeds/resp_frame/` (regression inputs included), so CI guards what fuzzing found.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common/resp_frame.rs"]
mod check;

fuzz_target!(|data: &[u8]| check::check(data));
