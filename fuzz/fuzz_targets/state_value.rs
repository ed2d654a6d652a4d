//! The request-state decoder (`state_value.rs`) on arbitrary bytes: never panics, and the format
//! is canonical: whatever decodes encodes back to the same bytes.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use openhqm::backend::redis::state_value::{decode, encode};

fuzz_target!(|data: &[u8]| {
    let value = Bytes::copy_from_slice(data);
    if let Some(state) = decode(&value) {
        assert_eq!(encode(&state), value);
    }
});
