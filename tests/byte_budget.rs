//! The embedded queue's byte budget (`queue.max_bytes`), over real HTTP: large payloads fill it
//! long before its job limit, the next submit gets 503 with a `Retry-After` of 1..60 s, and once
//! the worker drains the queue submits are accepted again. The one worker slot is held at a
//! gated upstream, so "the queue is not draining" is a condition the test sets up.

mod common;

use std::time::{Duration, Instant};

use common::upstream::Upstream;
use common::{assert_error, metric, wait_until, Broker};

#[test]
fn large_payloads_fill_the_byte_budget_then_503_with_retry_after() {
    let (up, gate) = Upstream::gated();
    let url = format!("http://{}/", up.addr);
    let b = Broker::start_with(&[
        "--shards",
        "1",
        "--worker.count",
        "1",
        "--queue.max_bytes",
        "1048576",
        "--proxy.enabled",
        "true",
        "--proxy.default_endpoint",
        "gated",
        "--proxy.endpoints.gated.url",
        &url,
    ]);
    let mut c = b.client();
    let big = format!(
        "{{\"payload\":{{\"blob\":\"{}\"}}}}",
        "x".repeat(100 * 1024)
    );
    // 100 KiB each against 1 MiB: about ten fit (one more sits in the slot).
    let mut accepted = 0;
    let refused = loop {
        let r = c.post_json("/api/v1/submit", &big);
        match r.status {
            202 => accepted += 1,
            503 => break r,
            s => panic!("unexpected {s}: {}", r.text()),
        }
        assert!(accepted < 50, "the byte budget never refused");
    };
    assert!((9..=12).contains(&accepted), "{accepted} accepted");
    let v = assert_error(&refused, 503);
    assert_eq!(v["detail"], "queue is full; retry later");
    let secs: u32 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&secs), "Retry-After {secs}");
    // Counted as backpressure.
    assert!(
        metric(b.addr, "openhqm_rejected_total{reason=\"backpressure\"}").unwrap_or(0.0) >= 1.0
    );
    // The worker drains the queue: submits are accepted again.
    gate.open();
    let deadline = Instant::now() + Duration::from_secs(20);
    wait_until(deadline, "a large submit accepted again", || {
        c.post_json("/api/v1/submit", &big).status == 202
    });
}
