//! Dead-letter admin on both backends, over real HTTP: list (oldest first across shards, paged
//! by cursor), redrive (the request runs again and can complete; it leaves the dead-letter
//! queue) and drop. Jobs fail through proxy mode against an upstream the test breaks and mends.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::redis::RedisServer;
use common::upstream::{Reply, Upstream};
use common::{assert_error, wait_final, Broker, Client};

/// An upstream that answers 503 while broken, else echoes the body.
fn flaky() -> (Upstream, Arc<AtomicBool>) {
    let broken = Arc::new(AtomicBool::new(true));
    let b = broken.clone();
    let up = Upstream::start(move |_, seen| {
        if b.load(Ordering::SeqCst) {
            Reply::json(503, r#"{"detail":"down"}"#)
        } else {
            Reply::json(200, std::str::from_utf8(&seen.body).unwrap())
        }
    });
    (up, broken)
}

fn flags(up: &Upstream) -> Vec<String> {
    [
        "--shards",
        "2",
        "--worker.max_retries",
        "0",
        "--proxy.enabled",
        "true",
        "--proxy.default_endpoint",
        "flaky",
        "--proxy.endpoints.flaky.url",
        &format!("http://{}/", up.addr),
        "--proxy.endpoints.flaky.retry_on",
        "503",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

fn dlq(c: &mut Client, query: &str) -> serde_json::Value {
    let r = c.get(&format!("/api/v1/dlq{query}"));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn ids_of(page: &serde_json::Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["correlation_id"].as_str().unwrap().to_owned())
        .collect()
}

fn dead_letter_admin(broker: &Broker, broken: &AtomicBool) {
    let mut c = broker.client();
    let deadline = || Instant::now() + Duration::from_secs(20);
    assert_eq!(dlq(&mut c, "")["items"], serde_json::json!([]));
    assert_eq!(dlq(&mut c, "")["next_cursor"], serde_json::Value::Null);

    let ids: Vec<String> = (0..5)
        .map(|i| c.submit(&format!("{{\"n\":{i}}}")))
        .collect();
    for id in &ids {
        let r = wait_final(&mut c, id, deadline());
        assert_eq!(r.json()["status"], "FAILED", "{}", r.text());
    }

    // The whole list: every id once, oldest first, with its reason, error and attempts.
    let all = dlq(&mut c, "");
    let listed = ids_of(&all);
    assert_eq!(
        listed.iter().collect::<HashSet<_>>(),
        ids.iter().collect::<HashSet<_>>()
    );
    assert_eq!(all["next_cursor"], serde_json::Value::Null);
    let times: Vec<&str> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["failed_at"].as_str().unwrap())
        .collect();
    // Oldest first. Redis orders by its entry ids (its clock, milliseconds) while `failed_at` is
    // the broker's clock taken just before the write, so neighbours on different shards may
    // differ by the write's latency.
    let micros = |t: &str| {
        let (secs, frac) = t.trim_end_matches('Z').rsplit_once('.').unwrap();
        let hms: Vec<u64> = secs
            .rsplit('T')
            .next()
            .unwrap()
            .split(':')
            .map(|p| p.parse().unwrap())
            .collect();
        ((hms[0] * 60 + hms[1]) * 60 + hms[2]) * 1_000_000 + frac.parse::<u64>().unwrap()
    };
    for pair in times.windows(2) {
        assert!(
            micros(pair[0]) <= micros(pair[1]) + 50_000,
            "oldest first: {times:?}"
        );
    }
    let first = &all["items"][0];
    assert_eq!(first["reason"], "max_retries_exceeded");
    assert_eq!(first["attempts"], 1);
    assert!(first["error"].as_str().unwrap().contains("503"), "{first}");

    // Paged two at a time: the same list, in the same order.
    let mut paged = Vec::new();
    let mut query = "?limit=2".to_owned();
    loop {
        let page = dlq(&mut c, &query);
        let got = ids_of(&page);
        assert!(got.len() <= 2);
        paged.extend(got);
        match page["next_cursor"].as_str() {
            Some(cursor) => query = format!("?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(paged, listed);

    // Redrive after the upstream is mended: PENDING again, then completed, and out of the list.
    broken.store(false, Ordering::SeqCst);
    let again = &listed[0];
    let r = c.request("POST", &format!("/api/v1/dlq/{again}/redrive"), &[], b"");
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.json()["status"], "PENDING");
    assert_eq!(
        r.header("location"),
        Some(format!("/api/v1/status/{again}").as_str())
    );
    let done = wait_final(&mut c, again, deadline()).json();
    assert_eq!(done["status"], "COMPLETED", "{done}");
    assert_eq!(done["status_code"], 200);
    assert!(!ids_of(&dlq(&mut c, "")).contains(again));
    let r = c.request("POST", &format!("/api/v1/dlq/{again}/redrive"), &[], b"");
    assert_error(&r, 404);

    // Drop: out of the list, its state stays FAILED.
    let gone = &listed[1];
    let r = c.request("DELETE", &format!("/api/v1/dlq/{gone}"), &[], b"");
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(r.body.is_empty());
    assert!(!ids_of(&dlq(&mut c, "")).contains(gone));
    assert_eq!(
        c.get(&format!("/api/v1/status/{gone}")).json()["status"],
        "FAILED"
    );
    let r = c.request("DELETE", &format!("/api/v1/dlq/{gone}"), &[], b"");
    assert_error(&r, 404);
    assert_eq!(ids_of(&dlq(&mut c, "")).len(), 3);

    // Unknown ids and bad queries.
    let unknown = "550e8400-e29b-41d4-a716-446655440000";
    assert_error(
        &c.request("POST", &format!("/api/v1/dlq/{unknown}/redrive"), &[], b""),
        404,
    );
    assert_error(
        &c.request("DELETE", &format!("/api/v1/dlq/{unknown}"), &[], b""),
        404,
    );
    for bad in ["?limit=0", "?limit=1001", "?cursor=nope"] {
        assert_error(&c.get(&format!("/api/v1/dlq{bad}")), 422);
    }
}

#[test]
fn dead_letter_admin_on_the_embedded_queue() {
    let (up, broken) = flaky();
    let f = flags(&up);
    let f: Vec<&str> = f.iter().map(String::as_str).collect();
    let broker = Broker::start_with(&f);
    dead_letter_admin(&broker, &broken);
}

#[test]
fn dead_letter_admin_on_redis() {
    let redis = RedisServer::start();
    let (up, broken) = flaky();
    let f = flags(&up);
    let f: Vec<&str> = f.iter().map(String::as_str).collect();
    let broker = Broker::start_on_redis(&redis, &f);
    dead_letter_admin(&broker, &broken);
}

/// With `queue.dlq_retention_seconds = 1`, a dead letter is listed, then gone.
fn dead_letters_expire(b: &Broker) {
    let mut c = b.client();
    let id = c.submit(r#"{"n":1}"#);
    let r = wait_final(&mut c, &id, Instant::now() + Duration::from_secs(20));
    assert_eq!(r.json()["status"], "FAILED");
    assert_eq!(ids_of(&dlq(&mut c, "")), vec![id.clone()]);
    common::wait_until(
        Instant::now() + Duration::from_secs(20),
        "the dead letter to expire",
        || ids_of(&dlq(&mut c, "")).is_empty(),
    );
    let r = c.request("POST", &format!("/api/v1/dlq/{id}/redrive"), &[], b"");
    assert_error(&r, 404);
}

fn retention_flags(up: &Upstream) -> Vec<String> {
    let mut f = flags(up);
    f.extend(["--queue.dlq_retention_seconds".to_owned(), "1".to_owned()]);
    f
}

#[test]
fn dead_letters_expire_on_the_embedded_queue() {
    let (up, _broken) = flaky();
    let f = retention_flags(&up);
    let f: Vec<&str> = f.iter().map(String::as_str).collect();
    dead_letters_expire(&Broker::start_with(&f));
}

#[test]
fn dead_letters_expire_on_redis() {
    let redis = RedisServer::start();
    let (up, _broken) = flaky();
    let f = retention_flags(&up);
    let f: Vec<&str> = f.iter().map(String::as_str).collect();
    dead_letters_expire(&Broker::start_on_redis(&redis, &f));
    // Their index entries went with them.
    for shard in 0..2 {
        assert_eq!(
            redis.cli_int(&["HLEN", &format!("openhqm-dlq:{{{shard}}}:index")]),
            0
        );
    }
}
