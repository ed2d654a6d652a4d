//! A job that takes its instance down every time it runs, on a real redis-server with the same
//! instance restarted each time (SIGKILL, same port, so it re-reads its own pending list): after
//! the configured deliveries it is dead-lettered, not delivered for ever. "Takes its instance
//! down" is a kill while the job's upstream call is held open by a gated upstream.

mod common;

use std::time::{Duration, Instant};

use common::redis::RedisServer;
use common::upstream::Upstream;
use common::{wait_final, wait_until, Broker};

#[test]
fn a_job_that_kills_its_instance_every_time_is_dead_lettered() {
    let redis = RedisServer::start();
    let (up, gate) = Upstream::gated();
    let url = format!("http://{}/", up.addr);
    // No retries: a job may be delivered 0 + 2 times before it counts as poison.
    let flags = [
        "--shards",
        "1",
        "--worker.max_retries",
        "0",
        "--proxy.enabled",
        "true",
        "--proxy.default_endpoint",
        "gated",
        "--proxy.endpoints.gated.url",
        &url,
        "--proxy.endpoints.gated.timeout_seconds",
        "60",
    ];
    let mut broker = Broker::start_on_redis(&redis, &flags);
    let port = broker.addr.port();
    let id = broker.client().submit(r#"{"poison":true}"#);
    let deadline = || Instant::now() + Duration::from_secs(20);
    for delivery in 1..=2 {
        wait_until(deadline(), "the job to reach the upstream", || {
            up.requests() == delivery
        });
        broker.kill9();
        broker = Broker::start_on_redis_port(&redis, port, &flags);
    }
    // The third start finds it delivered twice already: dead-lettered, never run again.
    let mut c = broker.client();
    let r = wait_final(&mut c, &id, deadline());
    let v = r.json();
    assert_eq!(v["status"], "FAILED", "{v}");
    assert_eq!(v["error"], "delivered too many times without finishing");
    let dlq = c.get("/api/v1/dlq").json();
    assert_eq!(dlq["items"][0]["correlation_id"], id.as_str(), "{dlq}");
    assert_eq!(dlq["items"][0]["attempts"], 3, "{dlq}");
    gate.open();
    assert_eq!(
        up.requests(),
        2,
        "delivered again after it was dead-lettered"
    );
}
