//! Admission control in Redis mode (`queue.redis_max_in_flight`): while Redis is stalled
//! (`DEBUG SLEEP`), submits past the bound answer 503 at once instead of waiting for the deadline,
//! the ones within it are accepted when Redis answers, and the bound frees up afterwards.

mod common;

use std::time::{Duration, Instant};

use common::redis::RedisServer;
use common::{assert_error, Broker};

const BODY: &str = r#"{"payload":{"operation":"echo","data":"x"}}"#;

fn submit_request() -> Vec<u8> {
    format!(
        "POST /api/v1/submit HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{BODY}",
        BODY.len()
    )
    .into_bytes()
}

#[test]
fn submits_past_the_bound_get_503_at_once_while_redis_stalls() {
    let redis = RedisServer::start();
    let mut flags = redis.broker_flags();
    flags.extend(
        ["--shards", "1", "--queue.redis_max_in_flight", "1"]
            .iter()
            .map(|s| s.to_string()),
    );
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let broker = Broker::start_with(&flags);
    // Redis up and the group created: one submit goes through.
    let mut warm = broker.client();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = warm.post_json("/api/v1/submit", BODY);
        if r.status == 202 {
            break;
        }
        assert!(Instant::now() < deadline, "broker never accepted a submit");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Stall Redis for 1.5 s (the broker's deadline is 2 s).
    let port = redis.port();
    let sleeper = std::thread::spawn(move || {
        std::process::Command::new("redis-cli")
            .args(["-p", &port.to_string(), "DEBUG", "SLEEP", "1.5"])
            .output()
            .expect("redis-cli DEBUG SLEEP")
    });
    std::thread::sleep(Duration::from_millis(200));

    // The first submit waits for Redis and takes the only slot...
    let mut first = broker.client();
    first
        .send(&submit_request())
        .expect("send the first submit");
    std::thread::sleep(Duration::from_millis(100));
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

    // Redis wakes: the first is accepted, and the slot is free again.
    let r = first.response();
    assert_eq!(r.status, 202, "first submit: {}", r.text());
    assert!(sleeper.join().expect("sleeper").status.success());
    let r = second.post_json("/api/v1/submit", BODY);
    assert_eq!(r.status, 202, "after the stall: {}", r.text());
}
