//! The API contract of API.md over real sockets, where it does not depend on the backend:
//! validation errors and their shapes, media types, a full queue, state expiry, /metrics, and a
//! 2,000-request concurrency run across two shards. Submit → status → response, the built-in
//! operations, retries ending FAILED and ids are in `conformance.rs`, run on both backends.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use common::{assert_error, assert_healthy, is_uuid, wait_final, wait_until, Broker, Client};
use serde_json::{json, Value};

const SUBMIT: &str = "/api/v1/submit";

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    k.sort_unstable();
    k
}

#[test]
fn full_queue_is_503_with_retry_after() {
    // One shard, room for two jobs; `error` jobs wait 30 s for their retry, so they stay queued.
    let b = Broker::start_with(&[
        "--shards",
        "1",
        "--queue.max_depth",
        "2",
        "--worker.max_retries",
        "5",
        "--worker.retry_delay_base",
        "30",
        "--worker.retry_delay_max",
        "30",
    ]);
    let mut c = b.client();
    for _ in 0..2 {
        c.submit(r#"{"operation":"error"}"#);
    }
    // Full once both wait for their retry: a job being run does not count towards the depth.
    wait_until(
        Instant::now() + Duration::from_secs(5),
        "both jobs to wait for their retry",
        || {
            let m = metrics(&mut c);
            m.get(r#"openhqm_queue_retries_total{queue_name="openhqm-requests"}"#) == Some(&2.0)
                && m.get(r#"openhqm_queue_depth{queue_name="openhqm-requests",shard="0"}"#)
                    == Some(&2.0)
        },
    );
    let r = c.post_json(SUBMIT, r#"{"payload":{"operation":"echo"}}"#);
    assert_error(&r, 503);
    // Depth ÷ recent drain rate, 1..60 s.
    let secs: u32 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&secs), "Retry-After {secs}");
    let m = metrics(&mut c);
    assert_eq!(
        m.get(r#"openhqm_queue_publish_total{queue_name="openhqm-requests",status="failure"}"#),
        Some(&1.0)
    );
    assert_eq!(
        m.get(r#"openhqm_queue_publish_total{queue_name="openhqm-requests",status="success"}"#),
        Some(&2.0)
    );
}

#[test]
fn final_states_expire_after_the_ttl() {
    let b = Broker::start_with(&["--cache.ttl_seconds", "1", "--worker.timeout_seconds", "1"]);
    let mut c = b.client();
    let id = c.submit(r#"{"operation":"echo","data":"short-lived"}"#);
    let done = wait_final(&mut c, &id, Instant::now() + Duration::from_secs(10));
    assert_eq!(done.json()["status"], "COMPLETED");
    wait_until(
        Instant::now() + Duration::from_secs(5),
        "the state to expire (1 s TTL)",
        || {
            let r = c.get(&format!("/api/v1/status/{id}"));
            assert!(r.status == 200 || r.status == 404, "{}", r.text());
            r.status == 404
        },
    );
    assert_error(&c.get(&format!("/api/v1/status/{id}")), 404);
    assert_error(&c.get(&format!("/api/v1/response/{id}")), 404);
}

#[test]
fn malformed_json_is_400() {
    let b = Broker::start();
    let mut c = b.client();
    let deep = format!(
        "{{\"payload\":{{\"a\":{}{}}}}}",
        "[".repeat(5000),
        "]".repeat(5000)
    );
    let unclosed_deep = "[".repeat(5000);
    let bodies: Vec<Vec<u8>> = vec![
        br#"{"payload":{"#.to_vec(),
        br#"{"payload":{}} trailing"#.to_vec(),
        b"not json".to_vec(),
        b"{\"payload\":{\"a\":\"\xff\xfe\"}}".to_vec(),
        b"\xc3\x28".to_vec(),
        br#"{"payload":{"a":"\ud800"}}"#.to_vec(),
        "\u{feff}{\"payload\":{}}".as_bytes().to_vec(),
        deep.into_bytes(),
        unclosed_deep.into_bytes(),
    ];
    for body in bodies {
        let r = c.request(
            "POST",
            SUBMIT,
            &[("Content-Type", "application/json")],
            &body,
        );
        let v = assert_error(&r, 400);
        assert!(v["detail"].is_string(), "{v}");
        assert!(
            !r.closes(),
            "a 400 for a fully read body keeps the connection"
        );
    }
    // An empty body is an error too (400 or 422).
    let r = c.request("POST", SUBMIT, &[("Content-Type", "application/json")], b"");
    assert!(
        r.status == 400 || r.status == 422,
        "empty body: {}",
        r.status
    );
    assert_error(&r, r.status);
    assert_healthy(b.addr);
}

/// Asserts a 422 whose detail is a list of {loc, msg, type} and returns the locs as "a.b.c".
fn validation_locs(c: &mut Client, body: &str) -> Vec<String> {
    let r = c.post_json(SUBMIT, body);
    let v = assert_error(&r, 422);
    let list = v["detail"]
        .as_array()
        .unwrap_or_else(|| panic!("422 detail must be a list: {v}"));
    assert!(!list.is_empty());
    list.iter()
        .map(|e| {
            assert_eq!(keys(e), ["loc", "msg", "type"], "{e}");
            assert!(e["msg"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
            assert!(e["type"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
            let loc = e["loc"]
                .as_array()
                .unwrap_or_else(|| panic!("loc must be a list: {e}"));
            loc.iter()
                .map(|p| p.as_str().expect("loc parts are strings"))
                .collect::<Vec<_>>()
                .join(".")
        })
        .collect()
}

#[test]
fn wrong_shapes_are_422_with_field_locations() {
    let b = Broker::start();
    let mut c = b.client();
    assert_eq!(
        validation_locs(&mut c, r#"{"headers":{}}"#),
        ["body.payload"]
    );
    assert_eq!(
        validation_locs(&mut c, r#"{"payload":"text"}"#),
        ["body.payload"]
    );
    assert_eq!(
        validation_locs(&mut c, r#"{"payload":[1,2]}"#),
        ["body.payload"]
    );
    assert_eq!(
        validation_locs(&mut c, r#"{"payload":null}"#),
        ["body.payload"]
    );
    assert_eq!(
        validation_locs(&mut c, r#"{"payload":{},"metadata":{"priority":10}}"#),
        ["body.metadata.priority"]
    );
    assert_eq!(
        validation_locs(&mut c, r#"{"payload":{},"metadata":{"priority":-1}}"#),
        ["body.metadata.priority"]
    );
    assert_eq!(
        validation_locs(&mut c, r#"{"payload":{},"metadata":{"timeout":-3}}"#),
        ["body.metadata.timeout"]
    );
    assert_eq!(
        validation_locs(&mut c, r#"{"metadata":{"priority":10,"timeout":0}}"#),
        [
            "body.payload",
            "body.metadata.priority",
            "body.metadata.timeout"
        ]
    );
    assert_eq!(
        validation_locs(&mut c, r#"{"payload":{},"headers":{"a":1}}"#),
        ["body.headers"]
    );
    let r = c.post_json(SUBMIT, "[]");
    assert_error(&r, 422);
    // Duplicate keys (I-JSON forbids them) and out-of-range metadata numbers.
    for body in [
        r#"{"payload":{},"payload":{}}"#,
        r#"{"payload":{},"metadata":{"timeout":1e400}}"#,
        r#"{"payload":{},"metadata":{"priority":1e400}}"#,
        r#"{"payload":{},"metadata":{"priority":"high"}}"#,
    ] {
        let r = c.post_json(SUBMIT, body);
        assert!(
            r.status == 400 || r.status == 422,
            "{body}: {} {}",
            r.status,
            r.text()
        );
        assert_error(&r, r.status);
    }
    // The valid neighbours of those cases are accepted.
    for ok in [
        r#"{"payload":{},"metadata":{"priority":9,"timeout":0.5}}"#,
        r#"{"payload":{},"metadata":{"priority":0,"unknown":true},"headers":{"X-Tenant":"a"}}"#,
        r#"{"payload":{"nested":{"deep":[1,{"x":null}]}},"extra":1}"#,
    ] {
        let r = c.post_json(SUBMIT, ok);
        assert_eq!(r.status, 202, "{ok}: {}", r.text());
    }
}

#[test]

fn out_of_range_number_in_payload_is_rejected() {
    let b = Broker::start();
    let mut c = b.client();
    let r = c.post_json(SUBMIT, r#"{"payload":{"operation":"echo","data":1e400}}"#);
    assert!(
        r.status == 400 || r.status == 422,
        "1e400 accepted: {} {}",
        r.status,
        r.text()
    );
    assert_error(&r, r.status);
}

#[test]
fn media_type_and_encoding_are_415_and_json_is_read_as_python_did() {
    let b = Broker::start();
    let body = br#"{"payload":{}}"#;
    for headers in [
        vec![("Content-Type", "text/plain")],
        vec![("Content-Type", "application/json; charset=iso-8859-1")],
        vec![("Content-Type", "application/x-www-form-urlencoded")],
        vec![("Content-Type", "application/json+xml")],
        vec![("Content-Type", "text/+json")],
        vec![
            ("Content-Type", "application/json"),
            ("Content-Encoding", "gzip"),
        ],
    ] {
        let mut c = b.client();
        let r = c.request("POST", SUBMIT, &headers, body);
        assert_error(&r, 415);
        // Refused before the body was read: the connection must not parse the body as a request.
        assert!(
            c.closed_within(Duration::from_secs(5)),
            "{headers:?}: connection should close"
        );
    }
    // charset=utf-8 is JSON; so are `+json` types and no Content-Type at all (as the Python
    // OpenHQM reads them).
    for headers in [
        vec![("Content-Type", "application/json; charset=UTF-8")],
        vec![("Content-Type", "application/vnd.api+json")],
        vec![(
            "Content-Type",
            "Application/Merge-Patch+JSON; charset=utf-8",
        )],
        vec![],
    ] {
        let mut c = b.client();
        let r = c.request("POST", SUBMIT, &headers, body);
        assert_eq!(r.status, 202, "{headers:?}: {}", r.text());
    }
    assert_healthy(b.addr);
}

/// Parses Prometheus text into `name{labels}` → value (skipping comments).
fn parse_samples(text: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad sample line {line:?}"));
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        assert!(
            out.insert(series.to_owned(), value).is_none(),
            "duplicate series {series}"
        );
    }
    out
}

fn metrics(c: &mut Client) -> HashMap<String, f64> {
    let r = c.get("/metrics");
    assert_eq!(r.status, 200);
    parse_samples(&r.text())
}

/// The family a sample belongs to: its name, or for histogram/summary parts the base name.
fn family_of<'a>(name: &'a str, types: &HashMap<String, String>) -> Option<&'a str> {
    if types.contains_key(name) {
        return Some(name);
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if types
                .get(base)
                .is_some_and(|t| t == "histogram" || t == "summary")
            {
                return Some(base);
            }
        }
    }
    None
}

/// Structural check of Prometheus text format 0.0.4: every sample's family has `# HELP` and
/// `# TYPE` before its first sample, each family is declared once and its samples are contiguous.
fn check_exposition_structure(text: &str) {
    let mut helps = HashSet::new();
    let mut types: HashMap<String, String> = HashMap::new();
    let mut finished = HashSet::new();
    let mut current: Option<String> = None;
    assert!(text.ends_with('\n'), "exposition must end with a newline");
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(helps.insert(name.to_owned()), "second HELP for {name}");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().unwrap();
            let kind = parts.next().unwrap_or_default();
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "bad TYPE line {line:?}"
            );
            assert!(
                types.insert(name.to_owned(), kind.to_owned()).is_none(),
                "second TYPE for {name}"
            );
        } else if line.starts_with('#') || line.is_empty() {
            continue;
        } else {
            let name_end = line
                .find(['{', ' '])
                .unwrap_or_else(|| panic!("bad sample {line:?}"));
            let name = &line[..name_end];
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "bad metric name {name:?}"
            );
            let family = family_of(name, &types)
                .unwrap_or_else(|| panic!("sample {line:?} has no # TYPE before it"));
            assert!(
                helps.contains(family),
                "sample {line:?}: family {family} has no # HELP"
            );
            if current.as_deref() != Some(family) {
                assert!(
                    !finished.contains(family),
                    "samples of {family} are not contiguous"
                );
                if let Some(prev) = current.take() {
                    finished.insert(prev);
                }
                current = Some(family.to_owned());
            }
        }
    }
}

#[test]
fn metrics_text_is_valid_prometheus() {
    let b = Broker::start_with(&["--shards", "2"]);
    let mut c = b.client();
    let id = c.submit(r#"{"operation":"echo","data":"m"}"#);
    wait_final(&mut c, &id, Instant::now() + Duration::from_secs(10));
    assert_eq!(c.get("/nope").status, 404);
    let r = c.get("/metrics");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = r.text();

    check_exposition_structure(&text);
    let samples = parse_samples(&text);
    let submits =
        r#"openhqm_api_requests_total{method="POST",endpoint="/api/v1/submit",status="202"}"#;
    assert_eq!(samples.get(submits), Some(&1.0), "{text}");
    let polls = samples
        .iter()
        .filter(|(k, _)| {
            k.starts_with("openhqm_api_requests_total{")
                && k.contains(r#"endpoint="/api/v1/response/{correlation_id}""#)
        })
        .map(|(_, v)| *v)
        .sum::<f64>();
    assert!(
        polls >= 1.0,
        "response polls are counted under the route template: {text}"
    );
    assert!(!text.contains(&id), "a raw id leaked into a label");
    assert!(!text.contains("/nope"), "a raw path leaked into a label");
    for family in [
        "openhqm_api_requests_total",
        "openhqm_api_request_duration_seconds",
        "openhqm_api_requests_in_flight",
        "openhqm_queue_publish_total",
        "openhqm_queue_consume_total",
        "openhqm_queue_depth",
        "openhqm_queue_dlq_total",
        "openhqm_worker_active",
        "openhqm_worker_processing_duration_seconds",
        "openhqm_worker_errors_total",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "family {family} missing"
        );
    }
    assert_eq!(
        samples.get(r#"openhqm_queue_consume_total{queue_name="openhqm-requests"}"#),
        Some(&1.0)
    );
    assert_eq!(
        samples.get(r#"openhqm_worker_processing_duration_seconds_count{status="COMPLETED"}"#),
        Some(&1.0)
    );

    common::promtool_check(&text);
}

#[test]
fn two_thousand_concurrent_submits_across_two_shards() {
    const THREADS: usize = 16;
    const PER_THREAD: usize = 125;
    let b = Broker::start_with(&["--shards", "2"]);
    let addr = b.addr;
    let started = Instant::now();
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                (0..PER_THREAD)
                    .map(|i| {
                        let data = format!("t{t:02}-r{i:03}-ünïcode");
                        let id =
                            c.submit(&json!({"operation": "reverse", "data": data}).to_string());
                        (id, data)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all: Vec<(String, String)> = Vec::new();
    for h in handles {
        all.extend(h.join().expect("submitter thread"));
    }
    assert_eq!(all.len(), THREADS * PER_THREAD);
    let distinct: HashSet<&str> = all.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        distinct.len(),
        THREADS * PER_THREAD,
        "correlation ids must be unique"
    );
    assert!(all.iter().all(|(id, _)| is_uuid(id)));
    println!("2000 submits took {:?}", started.elapsed());

    // Poll every id from 4 threads, each with its own connection (so lookups land on both shards).
    let deadline = Instant::now() + Duration::from_secs(30);
    let parts: Vec<Vec<(String, String)>> = (0..4)
        .map(|k| all.iter().skip(k).step_by(4).cloned().collect())
        .collect();
    let pollers: Vec<_> = parts
        .into_iter()
        .map(|part| {
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                for (id, data) in part {
                    let v = wait_final(&mut c, &id, deadline).json();
                    assert_eq!(v["status"], "COMPLETED", "{id}: {v}");
                    let want: String = data.chars().rev().collect();
                    assert_eq!(v["result"]["output"], want.as_str(), "{id}");
                }
            })
        })
        .collect();
    for p in pollers {
        p.join().expect("poller thread");
    }
    let mut c = Client::connect(addr);
    let m = metrics(&mut c);
    let published =
        m[r#"openhqm_queue_publish_total{queue_name="openhqm-requests",status="success"}"#];
    assert_eq!(published, 2000.0);
    let states: f64 = m
        .iter()
        .filter(|(k, _)| k.starts_with("openhqm_request_states{"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(
        states, 2000.0,
        "every request has exactly one state across the shards"
    );
    let per_shard: Vec<f64> = (0..2)
        .map(|s| m[&format!("openhqm_request_states{{shard=\"{s}\"}}")])
        .collect();
    assert!(
        per_shard.iter().all(|&n| n > 0.0),
        "both shards own requests: {per_shard:?}"
    );
    println!("concurrency test took {:?}", started.elapsed());
}

#[test]
fn request_life_metrics_build_info_slots_and_rejects() {
    let b = Broker::start_with(&["--shards", "2", "--workers", "3"]);
    let mut c = b.client();
    let id = c.submit(r#"{"operation":"echo","data":"x"}"#);
    wait_final(&mut c, &id, Instant::now() + Duration::from_secs(10));
    let m = metrics(&mut c);
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        m[&format!("openhqm_build_info{{version=\"{version}\"}}")],
        1.0
    );
    for shard in 0..2 {
        assert_eq!(
            m[&format!("openhqm_worker_slots{{shard=\"{shard}\"}}")],
            3.0
        );
        assert_eq!(
            m[&format!("openhqm_queue_oldest_age_seconds{{shard=\"{shard}\"}}")],
            0.0,
            "nothing waits"
        );
    }
    assert_eq!(m["openhqm_queue_wait_seconds_count"], 1.0);
    assert_eq!(
        m["openhqm_request_duration_seconds_count{status=\"COMPLETED\"}"],
        1.0
    );
    assert_eq!(
        m["openhqm_request_duration_seconds_bucket{status=\"COMPLETED\",le=\"300\"}"],
        1.0
    );
    assert_eq!(m["openhqm_rejected_total{reason=\"backpressure\"}"], 0.0);

    // A Redis that is not there: submits are refused, and counted by reason.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{closed}");
    let r = Broker::start_with(&[
        "--shards",
        "1",
        "--queue",
        "redis",
        "--queue.redis_url",
        &url,
    ]);
    let mut c = r.client();
    let refused = c.post_json("/api/v1/submit", r#"{"payload":{}}"#);
    assert_error(&refused, 503);
    let m = metrics(&mut c);
    assert_eq!(
        m["openhqm_rejected_total{reason=\"queue_unavailable\"}"],
        1.0
    );
}
