//! The `state_value` check: the request-state decoder on arbitrary bytes never panics, and the
//! format is canonical: whatever decodes encodes back to the same bytes. Shared by the fuzz
//! target and `tests/fuzz_regressions.rs`, so the two cannot drift.

use bytes::Bytes;
use openhqm::backend::redis::state_value::{decode, encode};

/// Runs one input; panics where the fuzz target would report a crash.
pub fn check(data: &[u8]) {
    let value = Bytes::copy_from_slice(data);
    if let Some(state) = decode(&value) {
        assert_eq!(encode(&state), value);
    }
}
