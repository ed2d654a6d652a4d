//! The `submit_body` check: submit-body validation on arbitrary bytes never panics; an accepted
//! body's payload is a JSON object that serde_json reads back (what the worker and the echo
//! output rely on); and the one-pass fast path gives the full parse's answer wherever it
//! answers, with the same payload. Shared by the fuzz target and `tests/fuzz_regressions.rs`,
//! so the two cannot drift.

use std::time::Duration;

use openhqm::api::submit;
use openhqm::api::submit_plain::plain_members;

const TIMEOUT: Duration = Duration::from_secs(300);

/// Runs one input; panics where the fuzz target would report a crash.
pub fn check(data: &[u8]) {
    if let Some(members) = plain_members(data) {
        // Same answer either way (a 422 for a wrong member included), and the same payload.
        let full = submit::parse_full(data, TIMEOUT);
        assert_eq!(submit::parse(data, TIMEOUT), full);
        if let Ok(full) = full {
            assert_eq!(full.payload, members.payload);
        }
    }
    if let Ok(sub) = submit::parse(data, TIMEOUT) {
        let payload = &data[sub.payload];
        assert_eq!(payload.first(), Some(&b'{'));
        let parsed: Result<serde_json::Value, _> = serde_json::from_slice(payload);
        assert!(
            parsed.is_ok(),
            "accepted payload does not parse: {parsed:?}"
        );
    }
}
