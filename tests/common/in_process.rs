//! The Redis backend driven in process (no broker, no HTTP), for tests of its own behaviour on a
//! real Redis.

use std::time::Duration;

use bytes::Bytes;
use openhqm::backend::redis::{Keys, RedisSettings};
use openhqm::backend::{Backend, Metadata, NewJob, RedisBackend};
use openhqm::clock::Timestamp;
use openhqm::id::IdMinter;
use openhqm::resp::RedisTarget;

use super::redis::RedisServer;

/// The Redis backend of shard 0 (consumer `test:0`) on `redis`, with `lease_held` as the bound
/// under which a lease counts as certainly held (20 s in the broker).
pub fn backend(redis: &RedisServer, lease_held: Duration) -> RedisBackend {
    let settings = RedisSettings {
        target: RedisTarget::parse(&redis.url()).expect("redis url"),
        deadline: Duration::from_secs(2),
        max_submits_in_flight: 16,
        lease_held,
        ttl: Duration::from_secs(3600),
        max_deliveries: 5,
        consumer: "test:0".into(),
        nr_shards: 1,
        requests_prefix: "openhqm-requests".into(),
        processes: true,
        max_waiters: 100,
        check_durability: false,
        dlq_retention: Duration::from_secs(3600),
        halt_on_shard_mismatch: None,
    };
    let keys = Keys::new("openhqm-requests", "openhqm-dlq", 0);
    RedisBackend::start(settings, keys, IdMinter::new(0, 1))
}

/// An echo job.
pub fn job() -> NewJob {
    NewJob {
        payload: Bytes::from_static(br#"{"operation":"echo","data":"x"}"#),
        headers: None,
        metadata: Metadata {
            priority: 0,
            timeout: Duration::from_secs(30),
            retry_count: 0,
            endpoint: None,
            method: None,
        },
        owner: None,
    }
}

/// Submits an echo job; its correlation id as text.
pub async fn submit(q: &RedisBackend) -> String {
    let (accepted, _) = q
        .submit(job(), Timestamp::now(), false)
        .await
        .expect("submit");
    String::from_utf8(accepted.id.to_text().to_vec()).expect("ascii")
}

/// Waits (bounded) until the backend's connection answers.
pub async fn connected(q: &RedisBackend) {
    for _ in 0..250 {
        if q.check().await.is_ok() {
            return;
        }
        monoio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the backend did not connect to Redis within 5 s");
}
