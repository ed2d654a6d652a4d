//! The `resp_frame` check: the RESP reply decoder on arbitrary bytes never panics, never claims
//! more bytes than given, and decoding the prefix it used gives the same frame. Shared by the
//! fuzz target and `tests/fuzz_regressions.rs`, so the two cannot drift.

use bytes::Bytes;
use openhqm::resp::Frame;

/// Runs one input; panics where the fuzz target would report a crash.
pub fn check(data: &[u8]) {
    let buf = Bytes::copy_from_slice(data);
    if let Ok(Some((frame, used))) = Frame::decode(&buf) {
        assert!(used <= buf.len());
        let again = Frame::decode(&buf.slice(..used));
        assert_eq!(again, Ok(Some((frame, used))));
    }
}
