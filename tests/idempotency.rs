//! `Idempotency-Key` on both backends, over real HTTP: a repeat with the same body answers as
//! the first did (same id, `Idempotent-Replayed: true`, nothing queued again), another body is
//! 422, and the same key sent on many connections at once (across shards) queues one request.

mod common;

use std::sync::{Arc, Barrier};

use common::redis::RedisServer;
use common::{assert_error, metric, Broker, Client};

const BODY: &str = r#"{"payload":{"operation":"echo","data":"once"}}"#;

fn submit(c: &mut Client, key: &str, body: &str, extra: &[(&str, &str)]) -> common::Resp {
    let mut headers = vec![
        ("Content-Type", "application/json"),
        ("Idempotency-Key", key),
    ];
    headers.extend_from_slice(extra);
    c.request("POST", "/api/v1/submit", &headers, body.as_bytes())
}

fn published(b: &Broker) -> f64 {
    metric(
        b.addr,
        "openhqm_queue_publish_total{queue_name=\"openhqm-requests\",status=\"success\"}",
    )
    .unwrap_or(0.0)
}

fn idempotency(b: &Broker) {
    let mut c = b.client();
    let first = submit(&mut c, "order-1", BODY, &[]);
    assert_eq!(first.status, 202, "{}", first.text());
    assert_eq!(first.header("idempotent-replayed"), None);
    let again = submit(&mut c, "order-1", BODY, &[]);
    assert_eq!(again.status, 202);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(
        again.json(),
        first.json(),
        "the same answer: id and submitted_at"
    );
    assert_eq!(again.header("location"), first.header("location"));
    assert_eq!(published(b), 1.0, "queued once");

    // Same key, another body: refused, nothing queued.
    let other = submit(&mut c, "order-1", r#"{"payload":{"data":"else"}}"#, &[]);
    let e = assert_error(&other, 422);
    assert_eq!(
        e["detail"],
        "Idempotency-Key reused with a different request"
    );
    // Another key: another request.
    let second = submit(&mut c, "order-2", BODY, &[]);
    assert_ne!(
        second.json()["correlation_id"],
        first.json()["correlation_id"]
    );
    assert_eq!(published(b), 2.0);

    // With Prefer: wait, the first use waits for the result and so does a replay.
    let waited = submit(&mut c, "order-3", BODY, &[("Prefer", "wait=10")]);
    assert_eq!(waited.status, 200, "{}", waited.text());
    assert_eq!(waited.json()["status"], "COMPLETED");
    let replay = submit(&mut c, "order-3", BODY, &[("Prefer", "wait=10")]);
    assert_eq!(replay.status, 200);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(
        replay.json()["correlation_id"],
        waited.json()["correlation_id"]
    );

    // Batch items may carry keys: a keyed item is queued once and replayed after, a plain one
    // is queued each time, a key reused with another item is refused in place.
    let batch = r#"{"requests":[
        {"payload":{"data":"a"},"idempotency_key":"batch-a"},
        {"payload":{"data":"plain"}},
        {"payload":{"data":"b"},"idempotency_key":"batch-b"}]}"#;
    let before = published(b);
    let first = c.post_json("/api/v1/submit/batch", batch);
    assert_eq!(first.status, 200, "{}", first.text());
    let again = c.post_json("/api/v1/submit/batch", batch);
    assert_eq!(again.status, 200);
    let (r1, r2) = (
        first.json()["results"].clone(),
        again.json()["results"].clone(),
    );
    for i in [0, 2] {
        assert_eq!(r1[i]["correlation_id"], r2[i]["correlation_id"], "item {i}");
        assert_eq!(r1[i].get("idempotent_replayed"), None);
        assert_eq!(r2[i]["idempotent_replayed"], true);
    }
    assert_ne!(
        r1[1]["correlation_id"], r2[1]["correlation_id"],
        "no key, queued again"
    );
    assert_eq!(
        published(b),
        before + 4.0,
        "two keyed once, the plain one twice"
    );
    let reused = c.post_json(
        "/api/v1/submit/batch",
        r#"{"requests":[{"payload":{"data":"other"},"idempotency_key":"batch-a"},{"payload":{}}]}"#,
    );
    let results = reused.json()["results"].clone();
    assert_eq!(results[0]["error"]["status"], 422, "{results}");
    assert_eq!(results[1]["status"], "PENDING");
    let bad_key = c.post_json(
        "/api/v1/submit/batch",
        &format!(
            r#"{{"requests":[{{"payload":{{}},"idempotency_key":"{}"}}]}}"#,
            "k".repeat(256)
        ),
    );
    assert_eq!(bad_key.json()["results"][0]["error"]["status"], 422);
    // The member's name may be spelled with escapes, as any JSON key may.
    let escaped = r#"{"requests":[{"payload":{},"idempotency\u005fkey":"escaped"}]}"#;
    let once = c.post_json("/api/v1/submit/batch", escaped).json();
    let twice = c.post_json("/api/v1/submit/batch", escaped).json();
    assert_eq!(twice["results"][0]["idempotent_replayed"], true, "{twice}");
    assert_eq!(
        once["results"][0]["correlation_id"],
        twice["results"][0]["correlation_id"]
    );

    // Keys are 1 to 255 printable ASCII characters.
    assert_error(&submit(&mut c, &"k".repeat(256), BODY, &[]), 422);
    assert_eq!(submit(&mut c, &"k".repeat(255), BODY, &[]).status, 202);

    // The same new key on many connections at once: one request queued, every answer names it.
    let before = published(b);
    let n = 12;
    let barrier = Arc::new(Barrier::new(n));
    let addr = b.addr;
    let answers: Vec<_> = (0..n)
        .map(|_| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                barrier.wait();
                submit(&mut c, "race", BODY, &[])
            })
        })
        .collect();
    let answers: Vec<common::Resp> = answers.into_iter().map(|t| t.join().unwrap()).collect();
    let ids: std::collections::HashSet<String> = answers
        .iter()
        .map(|r| {
            assert_eq!(r.status, 202, "{}", r.text());
            r.json()["correlation_id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let fresh = answers
        .iter()
        .filter(|r| r.header("idempotent-replayed").is_none())
        .count();
    assert_eq!(fresh, 1, "exactly one use queued it");
    assert_eq!(published(b), before + 1.0);
}

#[test]
fn idempotency_keys_on_the_embedded_queue() {
    let b = Broker::start_with(&["--shards", "2"]);
    idempotency(&b);
}

#[test]
fn idempotency_keys_on_redis() {
    let redis = RedisServer::start();
    let b = Broker::start_on_redis(&redis, &["--shards", "2", "--cache.ttl_seconds", "600"]);
    idempotency(&b);
    // The key is in Redis, beside the shard's other keys, for the state TTL.
    let keys = redis.cli(&["KEYS", "*:idem:order-1"]);
    let key = keys
        .lines()
        .next()
        .expect("the key is stored")
        .trim()
        .to_owned();
    let ttl = redis.cli_int(&["TTL", &key]);
    assert!((1..=600).contains(&ttl), "ttl {ttl}");
}
