//! Admission control in Redis mode (`queue.redis_max_in_flight`): while Redis is stalled
//! (`CLIENT PAUSE`), submits past the bound answer 503 at once instead of waiting for the deadline,
//! the ones within it are accepted when Redis answers, and the bound frees up afterwards.
//!
//! The stall is `CLIENT PAUSE <ms> ALL`, not `DEBUG SLEEP`: both leave every broker command
//! unanswered, but a pause is in force as soon as its `OK` is back, so the test can wait for that
//! instead of guessing when a sleep has begun.

mod common;

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use common::redis::RedisServer;
use common::{assert_error, metric, wait_until, Broker, Client};

const BODY: &str = r#"{"payload":{"operation":"echo","data":"x"}}"#;

/// How long Redis stays paused: far more than the test needs to take the slot and be refused,
/// far less than the broker's command deadline (`--queue.redis_timeout_seconds 9`, the longest
/// one a 30 s lease allows).
const PAUSE: Duration = Duration::from_secs(3);

/// HTTP requests being handled, the scrape that reads it included.
const IN_FLIGHT: &str = "openhqm_api_requests_in_flight";

fn submit_request() -> Vec<u8> {
    format!(
        "POST /api/v1/submit HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{BODY}",
        BODY.len()
    )
    .into_bytes()
}

/// Whether no byte of a response has arrived on `c` yet (checked without waiting).
fn unanswered(c: &Client) -> bool {
    c.stream.set_nonblocking(true).expect("nonblocking");
    let peeked = c.stream.peek(&mut [0u8; 1]);
    c.stream.set_nonblocking(false).expect("blocking");
    matches!(peeked, Err(e) if e.kind() == ErrorKind::WouldBlock)
}

#[test]
fn submits_past_the_bound_get_503_at_once_while_redis_stalls() {
    let redis = RedisServer::start();
    let mut flags = redis.broker_flags();
    flags.extend(
        [
            "--shards",
            "1",
            "--queue.redis_max_in_flight",
            "1",
            "--queue.redis_timeout_seconds",
            "9",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let broker = Broker::start_with(&flags);
    // Redis up and the group created: one submit goes through.
    let mut warm = broker.client();
    wait_until(
        Instant::now() + Duration::from_secs(10),
        "the broker to accept a submit",
        || warm.post_json("/api/v1/submit", BODY).status == 202,
    );

    // Stall Redis: from its `OK` on, no broker command is answered until the pause ends.
    let paused_at = Instant::now();
    let pause_ms = PAUSE.as_millis().to_string();
    assert_eq!(redis.cli(&["CLIENT", "PAUSE", &pause_ms, "ALL"]), "OK");

    // The first submit waits for Redis and takes the only slot: once the scrape sees two requests
    // in flight (itself and the submit), the submit is parked on its Redis call, and on one shard
    // nothing awaits between admission and that call.
    let mut first = broker.client();
    first
        .send(&submit_request())
        .expect("send the first submit");
    wait_until(
        paused_at + PAUSE,
        "the first submit to wait for Redis (before the pause ends)",
        || metric(broker.addr, IN_FLIGHT).is_some_and(|n| n >= 2.0),
    );
    // ... so the second is refused at once, with a JSON error and Retry-After.
    let mut second = broker.client();
    let asked = Instant::now();
    let r = second.post_json("/api/v1/submit", BODY);
    let took = asked.elapsed();
    assert_error(&r, 503);
    assert!(
        r.json()["detail"]
            .as_str()
            .is_some_and(|d| d.contains("overloaded")),
        "{}",
        r.text()
    );
    assert!(r.header("retry-after").is_some(), "no Retry-After");
    assert!(
        took < Duration::from_millis(700),
        "the refusal waited for Redis ({took:?})"
    );
    assert!(
        unanswered(&first),
        "the first submit was answered before the second was refused: Redis was not stalled"
    );

    // Redis wakes: the first is accepted, and the slot is free again.
    let r = first.response();
    assert_eq!(r.status, 202, "first submit: {}", r.text());
    let r = second.post_json("/api/v1/submit", BODY);
    assert_eq!(r.status, 202, "after the stall: {}", r.text());
}
