//! Submit-body validation on arbitrary bytes: never panics, and an accepted body's payload is a
//! JSON object that serde_json reads back (what the worker and the echo output rely on).
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use openhqm::api::submit;

const TIMEOUT: Duration = Duration::from_secs(300);

fuzz_target!(|data: &[u8]| {
    if let Ok(sub) = submit::parse(data, TIMEOUT) {
        let payload = &data[sub.payload];
        assert_eq!(payload.first(), Some(&b'{'));
        let parsed: Result<serde_json::Value, _> = serde_json::from_slice(payload);
        assert!(
            parsed.is_ok(),
            "accepted payload does not parse: {parsed:?}"
        );
    }
});
