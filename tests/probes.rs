//! `/livez` and `/readyz` on the real broker: a Redis outage makes an instance unready (503 with
//! the reason) and never unlive; it is ready again once Redis is back. Worker nodes serve both.

mod common;

use std::time::{Duration, Instant};

use common::redis::RedisServer;
use common::{wait_for, Broker};

fn probe(b: &Broker, path: &str) -> (u16, serde_json::Value) {
    let r = b.client().get(path);
    (r.status, r.json())
}

#[test]
fn probes_on_the_embedded_queue() {
    let b = Broker::start_with(&["--shards", "2"]);
    assert_eq!(
        probe(&b, "/livez"),
        (200, serde_json::json!({"status": "ok"}))
    );
    assert_eq!(
        probe(&b, "/readyz"),
        (200, serde_json::json!({"status": "ready"}))
    );
    let r = b.client().request("HEAD", "/readyz", &[], b"");
    assert_eq!(r.status, 200);
}

#[test]
fn a_redis_outage_makes_the_broker_unready_but_never_unlive() {
    let mut redis = RedisServer::start();
    let b = Broker::start_on_redis(&redis, &["--shards", "2"]);
    let w = Broker::start_on_redis(&redis, &["--shards", "2", "--server.role", "worker"]);
    for node in [&b, &w] {
        assert_eq!(probe(node, "/readyz").0, 200);
        assert_eq!(probe(node, "/livez").0, 200);
    }
    redis.kill9();
    let deadline = || Instant::now() + Duration::from_secs(15);
    for node in [&b, &w] {
        let (status, v) = wait_for(deadline(), "/readyz to turn 503", || {
            match probe(node, "/readyz") {
                (503, v) => Ok((503, v)),
                other => Err(other),
            }
        });
        assert_eq!(status, 503);
        assert_eq!(v["status"], "not_ready");
        assert_eq!(v["reason"], "queue backend unreachable");
        // Still alive: an orchestrator must not restart it for Redis being away.
        assert_eq!(
            probe(node, "/livez"),
            (200, serde_json::json!({"status": "ok"}))
        );
    }
    redis.restart();
    for node in [&b, &w] {
        wait_for(deadline(), "/readyz to be 200 again", || {
            match probe(node, "/readyz") {
                (200, _) => Ok(()),
                other => Err(other),
            }
        });
    }
}
