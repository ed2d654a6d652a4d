//! The request-state decoder (`state_value.rs`) on arbitrary bytes: never panics, and the format
//! is canonical: whatever decodes encodes back to the same bytes.
//!
//! The check itself is `common/state_value.rs`, which `tests/fuzz_regressions.rs` runs on stable over
//! `fuzz/seeds/state_value/` (regression inputs included), so CI guards what fuzzing found.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common/state_value.rs"]
mod check;

fuzz_target!(|data: &[u8]| check::check(data));
