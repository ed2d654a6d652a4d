//! One backend conformance suite, run against both queue backends: the same test bodies are called
//! from `memory_*` (embedded queue) and `redis_*` (Redis Streams on a private `redis-server`)
//! wrappers. Covers the built-in operations, the status and response shapes (final and not
//! final) with the README's quick start, unknown and malformed ids, retries ending FAILED, 500
//! concurrent submits and `metadata.timeout`. What `api.rs` checked of the same requests lives
//! here now, so both backends answer to it.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::redis::{await_final_all, random_uuid, RedisServer};
use common::{
    assert_error, assert_outcome_null, is_rfc3339_utc, is_uuid, metric, wait_final, wait_until,
    Broker, Client,
};
use openhqm::store::Status;
use serde_json::{json, Value};

const SUBMIT: &str = "/api/v1/submit";
const RETRIES: &str = r#"openhqm_queue_retries_total{queue_name="openhqm-requests"}"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Memory,
    Redis,
}

/// A broker on one backend. Fields drop in order: the broker dies before its Redis.
struct Env {
    broker: Broker,
    redis: Option<RedisServer>,
}

impl Env {
    fn start(kind: Kind, extra: &[&str]) -> Env {
        match kind {
            Kind::Memory => {
                let mut flags = vec!["--queue", "memory"];
                flags.extend_from_slice(extra);
                Env {
                    broker: Broker::start_with(&flags),
                    redis: None,
                }
            }
            Kind::Redis => {
                let redis = RedisServer::start();
                let broker = Broker::start_on_redis(&redis, extra);
                Env {
                    broker,
                    redis: Some(redis),
                }
            }
        }
    }

    fn client(&self) -> Client {
        self.broker.client()
    }

    /// On Redis: checks the request's state exists and no work-stream entry is left over
    /// (completed entries are acknowledged, then trimmed).
    fn check_redis_after_completion(&self, ids: &[String]) {
        let Some(redis) = &self.redis else { return };
        for id in ids {
            let keys = redis.cli(&["KEYS", &format!("openhqm-requests:*:state:{id}")]);
            assert_eq!(keys.lines().count(), 1, "state of {id}: {keys:?}");
            let state = redis.state(keys.trim());
            assert_eq!(state.map(|s| s.status), Some(Status::Completed), "{id}");
        }
        // Acknowledged entries are trimmed every 100 ms.
        let streams = redis.cli(&["KEYS", "openhqm-requests:{*}"]);
        for stream in streams.lines().filter(|s| s.ends_with('}')) {
            wait_until(
                Instant::now() + Duration::from_secs(3),
                &format!("{stream} to be trimmed empty after completion"),
                || redis.cli_int(&["XLEN", stream]) == 0,
            );
        }
    }

    /// Waits until the first attempt of `id` (an `error` job) has failed and its retry is
    /// scheduled: the retry is counted, and on Redis the id waits in its shard's retry set.
    fn wait_retry_scheduled(&self, id: &str, deadline: Instant) {
        wait_until(deadline, "the first attempt's retry to be counted", || {
            metric(self.broker.addr, RETRIES).is_some_and(|n| n >= 1.0)
        });
        let Some(redis) = &self.redis else { return };
        wait_until(deadline, &format!("{id} in a retry set"), || {
            redis
                .cli(&["KEYS", "openhqm-requests:*:retries"])
                .lines()
                .any(|set| !redis.cli(&["ZSCORE", set, id]).is_empty())
        });
    }
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect();
    k.sort_unstable();
    k
}

const RESPONSE_KEYS: [&str; 8] = [
    "completed_at",
    "correlation_id",
    "error",
    "headers",
    "processing_time_ms",
    "result",
    "status",
    "status_code",
];

/// Checks a final COMPLETED `/response` body of `id` with `output`.
fn check_completed(id: &str, v: &Value, output: &Value) {
    assert_eq!(keys(v), RESPONSE_KEYS, "{v}");
    assert_eq!(v["correlation_id"], id, "{v}");
    assert_eq!(v["status"], "COMPLETED", "{v}");
    assert_eq!(&v["result"]["output"], output, "{v}");
    assert!(
        v["result"]["processed_at"]
            .as_str()
            .is_some_and(is_rfc3339_utc),
        "{v}"
    );
    assert_eq!(v["status_code"], 200, "{v}");
    assert_eq!(v["error"], Value::Null, "{v}");
    assert_eq!(v["headers"], json!({}), "{v}");
    assert!(v["processing_time_ms"].is_u64(), "{v}");
    assert!(
        v["completed_at"].as_str().is_some_and(is_rfc3339_utc),
        "{v}"
    );
}

// ---------------------------------------------------------------------------------------------
// The test bodies.
// ---------------------------------------------------------------------------------------------

fn builtin_operations(kind: Kind) {
    let env = Env::start(kind, &[]);
    let mut c = env.client();
    let cases = [
        (
            json!({"operation": "echo", "data": "Hello!"}),
            json!("Hello!"),
        ),
        (
            json!({"operation": "echo", "data": {"a": [1, 2.5, null], "b": "x"}}),
            json!({"a": [1, 2.5, null], "b": "x"}),
        ),
        (
            json!({"data": "no operation means echo"}),
            json!("no operation means echo"),
        ),
        (
            json!({"operation": "uppercase", "data": "mixed Case ß"}),
            json!("MIXED CASE SS"),
        ),
        (json!({"operation": "reverse", "data": "abc"}), json!("cba")),
        (
            json!({"operation": "reverse", "data": "héllo wörld 😀!"}),
            json!("!😀 dlröw olléh"),
        ),
        (
            json!({"operation": "frobnicate", "data": "x"}),
            json!("Unknown operation: frobnicate"),
        ),
    ];
    let ids: Vec<String> = cases
        .iter()
        .map(|(p, _)| c.submit(&p.to_string()))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    for (id, (payload, want)) in ids.iter().zip(&cases) {
        let v = wait_final(&mut c, id, deadline).json();
        assert_eq!(v["status"], "COMPLETED", "{payload}: {v}");
        check_completed(id, &v, want);
    }
    env.check_redis_after_completion(&ids);
}

fn status_and_response_shapes(kind: Kind) {
    // `error` jobs wait 30 s for their retry, so one stays not-final for the whole test.
    let env = Env::start(
        kind,
        &[
            "--worker.retry_delay_base",
            "30",
            "--worker.retry_delay_max",
            "30",
        ],
    );
    let mut c = env.client();

    // The 202, to the README's quick start.
    let r = c.post_json(
        SUBMIT,
        r#"{"payload":{"operation":"uppercase","data":"hello"}}"#,
    );
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert_eq!(keys(&v), ["correlation_id", "status", "submitted_at"]);
    let id = v["correlation_id"].as_str().unwrap().to_owned();
    assert!(is_uuid(&id), "{id:?}");
    assert_eq!(v["status"], "PENDING");
    let submitted_at = v["submitted_at"].as_str().unwrap().to_owned();
    assert!(is_rfc3339_utc(&submitted_at), "{submitted_at:?}");
    let location = format!("/api/v1/status/{id}");
    assert_eq!(r.header("location"), Some(location.as_str()));

    // Status right away: some non-regressing state with the full shape.
    let r = c.get(&location);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(
        keys(&v),
        ["correlation_id", "status", "submitted_at", "updated_at"]
    );
    assert!(
        ["PENDING", "PROCESSING", "COMPLETED"].contains(&v["status"].as_str().unwrap()),
        "{v}"
    );
    assert_eq!(v["submitted_at"], submitted_at.as_str());

    // Final.
    let fin = wait_final(&mut c, &id, Instant::now() + Duration::from_secs(10));
    assert_eq!(fin.status, 200);
    assert_eq!(fin.header("cache-control"), Some("no-store"));
    check_completed(&id, &fin.json(), &json!("HELLO"));
    let completed_at = fin.json()["completed_at"].as_str().unwrap().to_owned();
    assert!(
        completed_at >= submitted_at,
        "{completed_at} < {submitted_at}"
    );
    let r = c.get(&location);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let v = r.json();
    assert_eq!(
        keys(&v),
        ["correlation_id", "status", "submitted_at", "updated_at"]
    );
    assert_eq!(v["correlation_id"], id.as_str());
    assert_eq!(v["status"], "COMPLETED");
    assert_eq!(v["submitted_at"], submitted_at.as_str());
    let updated_at = v["updated_at"].as_str().unwrap();
    assert!(is_rfc3339_utc(updated_at), "{updated_at:?}");
    assert!(updated_at >= submitted_at.as_str());

    // Not final: an `error` job waiting for its retry stays PROCESSING, and /response is a 202
    // with the full shape and every outcome field null.
    let id = c.submit(r#"{"operation":"error","data":"later"}"#);
    let deadline = Instant::now() + Duration::from_secs(5);
    wait_until(deadline, "the error job to be PROCESSING", || {
        let v = c.get(&format!("/api/v1/status/{id}")).json();
        if v["status"] != "PROCESSING" {
            assert_eq!(v["status"], "PENDING", "{v}");
        }
        v["status"] == "PROCESSING"
    });
    // Its first attempt has failed and the retry waits 30 s: it must stay PROCESSING, not final.
    env.wait_retry_scheduled(&id, deadline);
    let r = c.get(&format!("/api/v1/response/{id}"));
    assert_eq!(r.status, 202, "{}", r.text());
    let v = r.json();
    assert_eq!(keys(&v), RESPONSE_KEYS, "{v}");
    assert_eq!(v["correlation_id"], id.as_str());
    assert_eq!(v["status"], "PROCESSING");
    assert_outcome_null(&v);
}

fn unknown_and_malformed_ids(kind: Kind) {
    // Two shards, so a lookup must find the shard that owns the id.
    let env = Env::start(kind, &["--shards", "2"]);
    let mut c = env.client();
    // Something exists, so the lookup is not trivially empty.
    let known = c.submit(r#"{"operation":"echo","data":"x"}"#);
    wait_final(&mut c, &known, Instant::now() + Duration::from_secs(10));

    // Unknown: random ids and both ends of the UUIDv4 space, also in upper case.
    let mut unknown: Vec<String> = (0..5).map(|_| random_uuid()).collect();
    unknown.push("00000000-0000-4000-8000-000000000000".into());
    unknown.push("ffffffff-ffff-4fff-bfff-ffffffffffff".into());
    for id in &unknown {
        assert!(is_uuid(id), "{id}");
        for kind in ["status", "response"] {
            assert_error(&c.get(&format!("/api/v1/{kind}/{id}")), 404);
        }
        assert_error(
            &c.get(&format!("/api/v1/status/{}", id.to_ascii_uppercase())),
            404,
        );
    }
    // The canonical form in upper case names the same request.
    let r = c.get(&format!("/api/v1/status/{}", known.to_ascii_uppercase()));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["correlation_id"], known.as_str());

    // Malformed: 404 as an unknown id (what Python clients expect), and the error never echoes
    // what it was given.
    for bad in [
        "../etc",
        "..%2F..",
        "not-a-uuid",
        "123",
        "*",
        "%00",
        "%0d%0a",
        "550e8400-e29b-41d4-a716-44665544000",
        "550e8400-e29b-41d4-a716-4466554400000",
        "550e8400xe29b-41d4-a716-446655440000",
        "550e8400-e29b-41d4-a716-44665544000g",
        "00000000-0000-0000-0000-00000000000g",
        &"a".repeat(200),
        &format!("{known}/x"),
    ] {
        for kind in ["status", "response"] {
            let v = assert_error(&c.get(&format!("/api/v1/{kind}/{bad}")), 404);
            assert!(
                !v["detail"].as_str().unwrap().contains(bad),
                "the error must not echo the id: {v}"
            );
        }
    }
}

fn error_operation_retried_then_failed(kind: Kind) {
    let env = Env::start(
        kind,
        &[
            "--worker.max_retries",
            "2",
            "--worker.retry_delay_base",
            "0.05",
            "--worker.retry_delay_max",
            "0.2",
        ],
    );
    let mut c = env.client();
    let id = c.submit(r#"{"operation":"error","data":"boom"}"#);
    let r = wait_final(&mut c, &id, Instant::now() + Duration::from_secs(10));
    assert_eq!(r.status, 200, "a final FAILED is a 200 on /response");
    let v = r.json();
    assert_eq!(keys(&v), RESPONSE_KEYS, "{v}");
    assert_eq!(v["status"], "FAILED", "{v}");
    assert_eq!(v["error"], "Simulated error", "{v}");
    assert_eq!(v["result"], Value::Null, "{v}");
    assert!(
        v["completed_at"].as_str().is_some_and(is_rfc3339_utc),
        "{v}"
    );
    assert!(v["processing_time_ms"].is_u64(), "{v}");
    let s = c.get(&format!("/api/v1/status/{id}")).json();
    assert_eq!(s["status"], "FAILED", "{s}");

    // Three attempts: two retries, then the dead-letter queue.
    let m = c.get("/metrics").text();
    let sample = |name: &str| -> Option<f64> {
        m.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
    };
    assert_eq!(sample(RETRIES), Some(2.0), "{m}");
    assert_eq!(
        sample(r#"openhqm_queue_dlq_total{reason="max_retries_exceeded"}"#),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(r#"openhqm_worker_errors_total{error_type="processing_error"}"#),
        Some(3.0),
        "{m}"
    );
}

fn five_hundred_concurrent_submits(kind: Kind) {
    const CONNS: usize = 8;
    const TOTAL: usize = 500;
    let env = Env::start(kind, &["--shards", "2"]);
    let addr = env.broker.addr;
    let started = Instant::now();
    let handles: Vec<_> = (0..CONNS)
        .map(|t| {
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                let n = TOTAL / CONNS + usize::from(t < TOTAL % CONNS);
                (0..n)
                    .map(|i| {
                        let data = format!("conn{t}-req{i}");
                        let id = c.submit(&json!({"operation": "echo", "data": data}).to_string());
                        (id, data)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let submitted: Vec<(String, String)> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("submitter panicked"))
        .collect();
    assert_eq!(submitted.len(), TOTAL);
    let distinct: HashSet<&str> = submitted.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(distinct.len(), TOTAL, "duplicate correlation ids");
    assert!(distinct.iter().all(|id| is_uuid(id)));

    let ids: Vec<String> = submitted.iter().map(|(id, _)| id.clone()).collect();
    let finals = await_final_all(addr, &ids, Instant::now() + Duration::from_secs(15), 4);
    assert!(
        finals.unfinished.is_empty(),
        "{} of {TOTAL} not final: {:?}",
        finals.unfinished.len(),
        &finals.unfinished[..finals.unfinished.len().min(5)]
    );
    for (id, data) in &submitted {
        check_completed(id, &finals.done[id], &json!(data));
    }
    eprintln!(
        "{kind:?}: {TOTAL} submitted and completed in {:?}",
        started.elapsed()
    );
}

fn metadata_timeout_is_accepted(kind: Kind) {
    let env = Env::start(kind, &[]);
    let mut c = env.client();
    let cases = [
        json!({"timeout": 5}),
        json!({"timeout": 0.5}),
        json!({"timeout": 31_536_000}),
        json!({"timeout": 2, "priority": 9, "retry_count": 1}),
    ];
    let mut ids = Vec::new();
    for (i, metadata) in cases.iter().enumerate() {
        let body = json!({
            "payload": {"operation": "uppercase", "data": format!("t{i}")},
            "metadata": metadata,
        });
        let r = c.post_json(SUBMIT, &body.to_string());
        assert_eq!(r.status, 202, "{metadata}: {}", r.text());
        ids.push(r.json()["correlation_id"].as_str().unwrap().to_owned());
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for (i, id) in ids.iter().enumerate() {
        let v = wait_final(&mut c, id, deadline).json();
        check_completed(id, &v, &json!(format!("T{i}")));
    }
    // Out of range is still a validation error on every backend, naming the field.
    for bad in [json!({"timeout": 0}), json!({"timeout": -1})] {
        let body = json!({"payload": {"data": "x"}, "metadata": bad});
        let v = assert_error(&c.post_json(SUBMIT, &body.to_string()), 422);
        assert_eq!(
            v["detail"][0]["loc"],
            json!(["body", "metadata", "timeout"]),
            "{bad}: {v}"
        );
        assert_eq!(v["detail"].as_array().map(Vec::len), Some(1), "{bad}: {v}");
    }
}

/// `POST /api/v1/submit/batch`: valid items are queued together and processed, invalid ones get
/// their own error in place, in request order; bad batches are 422.
fn batch_submit(kind: Kind) {
    let env = Env::start(kind, &[]);
    let mut c = env.client();
    let body = json!({"requests": [
        {"payload": {"operation": "uppercase", "data": "one"}},
        {"metadata": {"priority": 3}},
        {"payload": {"operation": "reverse", "data": "abc"}},
    ]});
    let r = c.post_json("/api/v1/submit/batch", &body.to_string());
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let results = v["results"].as_array().expect("results");
    assert_eq!(results.len(), 3, "{v}");
    assert_eq!(results[1]["error"]["status"], 422, "{v}");
    assert_eq!(
        results[1]["error"]["detail"][0]["loc"],
        json!(["body", "payload"]),
        "{v}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    for (i, want) in [(0, json!("ONE")), (2, json!("cba"))] {
        assert_eq!(results[i]["status"], "PENDING", "{v}");
        let id = results[i]["correlation_id"].as_str().unwrap().to_owned();
        let done = wait_final(&mut c, &id, deadline).json();
        check_completed(&id, &done, &want);
    }
    for bad in [
        json!({"requests": []}),
        json!({"requests": "x"}),
        json!([]),
        json!([[{"payload": {}}]]),
    ] {
        assert_error(&c.post_json("/api/v1/submit/batch", &bad.to_string()), 422);
    }
}

// ---------------------------------------------------------------------------------------------
// The wrappers: every body once per backend.
// ---------------------------------------------------------------------------------------------

#[test]
fn memory_batch_submit() {
    batch_submit(Kind::Memory);
}

#[test]
fn redis_batch_submit() {
    batch_submit(Kind::Redis);
}

#[test]
fn memory_builtin_operations() {
    builtin_operations(Kind::Memory);
}

#[test]
fn redis_builtin_operations() {
    builtin_operations(Kind::Redis);
}

#[test]
fn memory_status_and_response_shapes() {
    status_and_response_shapes(Kind::Memory);
}

#[test]
fn redis_status_and_response_shapes() {
    status_and_response_shapes(Kind::Redis);
}

#[test]
fn memory_unknown_and_malformed_ids() {
    unknown_and_malformed_ids(Kind::Memory);
}

#[test]
fn redis_unknown_and_malformed_ids() {
    unknown_and_malformed_ids(Kind::Redis);
}

#[test]
fn memory_error_operation_retried_then_failed() {
    error_operation_retried_then_failed(Kind::Memory);
}

#[test]
fn redis_error_operation_retried_then_failed() {
    error_operation_retried_then_failed(Kind::Redis);
}

#[test]
fn memory_five_hundred_concurrent_submits() {
    five_hundred_concurrent_submits(Kind::Memory);
}

#[test]
fn redis_five_hundred_concurrent_submits() {
    five_hundred_concurrent_submits(Kind::Redis);
}

#[test]
fn memory_metadata_timeout_is_accepted() {
    metadata_timeout_is_accepted(Kind::Memory);
}

#[test]
fn redis_metadata_timeout_is_accepted() {
    metadata_timeout_is_accepted(Kind::Redis);
}
