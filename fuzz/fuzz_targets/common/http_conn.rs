//! The `http_conn` check: the HTTP request sequencer on arbitrary bytes, fed in arbitrary pieces,
//! must never panic, never loop, and never hand out more body than arrived. Shared by the fuzz
//! target and `tests/fuzz_regressions.rs`, so the two cannot drift.

use bytes::BytesMut;
use openhqm::http::{Conn, Event, Limits};

/// Runs one input; panics where the fuzz target would report a crash.
pub fn check(data: &[u8]) {
    // The first byte picks the piece size, so splits are explored too.
    let Some((&step, wire)) = data.split_first() else {
        return;
    };
    let step = usize::from(step % 64) + 1;
    let limits = Limits {
        max_head_bytes: 4096,
        max_uri_bytes: 1024,
        max_body_bytes: 8192,
    };
    let mut conn = Conn::new(limits, openhqm::api::precheck);
    let mut input = BytesMut::new();
    let mut fed = 0;
    for piece in wire.chunks(step) {
        input.extend_from_slice(piece);
        fed += piece.len();
        // More polls than bytes fed without asking for more would be a loop.
        for _ in 0..=fed {
            match conn.poll(&mut input) {
                Event::NeedMore(_) => break,
                Event::Continue => {}
                Event::Request(r) => {
                    assert!(r.body.len() <= fed && r.body.len() as u64 <= limits.max_body_bytes)
                }
                Event::Reject { close: true, .. } => return,
                Event::Reject { .. } => {}
            }
        }
    }
}
