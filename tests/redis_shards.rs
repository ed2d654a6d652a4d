//! The shard count is recorded in Redis by the first instance, and an instance with another
//! `server.shards` on the same Redis stops instead of stranding streams and missing requests.

mod common;

use std::time::Duration;

use common::redis::RedisServer;
use common::{assert_healthy, Broker};

#[test]
fn an_instance_with_another_shard_count_stops() {
    let redis = RedisServer::start();
    let a = Broker::start_on_redis(&redis, &["--shards", "2"]);
    assert_eq!(redis.cli(&["GET", "openhqm-requests:shards"]), "2");

    let mut flags = redis.broker_flags();
    flags.extend(["--shards".to_owned(), "1".to_owned()]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut b = Broker::start_with(&flags);
    let status = b
        .wait_exit(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("still running; logs: {:?}", b.logs()));
    assert!(!status.success(), "{status}");
    assert!(
        b.logs()
            .iter()
            .any(|l| l.contains("another server.shards") && l.contains("\"recorded\":\"2\"")),
        "{:?}",
        b.logs()
    );
    // The first instance was not disturbed, and the record stands.
    assert_healthy(a.addr);
    assert_eq!(redis.cli(&["GET", "openhqm-requests:shards"]), "2");
    // One with the same count joins.
    let c = Broker::start_on_redis(&redis, &["--shards", "2"]);
    assert_healthy(c.addr);
}
