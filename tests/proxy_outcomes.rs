//! Proxy mode end to end, the rules tests/proxy.rs leaves to this file: every auth type as the
//! upstream sees it, forwarded headers replacing endpoint headers, the method's three sources,
//! connect errors, attempt timeouts, resets and retried statuses retried and then dead-lettered
//! with their counts in `/metrics`, the last status kept, `metadata.timeout` ending a call in
//! progress, chunked and close-delimited answers over a real socket, a slow upstream that does
//! not hold up the rest of its shard, and (on a real redis-server) the lease renewed while an
//! upstream call runs.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::upstream::{Gate, Reply, Seen, Upstream};
use common::{metric, wait_final, wait_until, Broker};

const KEY: &str = "k3y-for-the-upstream";

struct Setup {
    broker: Broker,
    seen: Arc<Mutex<Vec<Seen>>>,
    gate: Gate,
    gated: Upstream,
    upstream: Upstream,
}

fn start() -> Setup {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let flips = AtomicUsize::new(0);
    let upstream = Upstream::start(move |_, req| {
        s.lock().unwrap().push(req.clone());
        match req.line.split(' ').nth(1).unwrap_or("") {
            "/echo" => Reply::json(200, std::str::from_utf8(&req.body).unwrap()),
            // Answers the first call, then hangs.
            "/flip" if flips.fetch_add(1, Ordering::SeqCst) == 0 => Reply::json(200, "{}"),
            "/flip" => Reply::After(Duration::from_secs(30), Box::new(Reply::json(200, "{}"))),
            "/slow" => Reply::After(Duration::from_secs(30), Box::new(Reply::json(200, "{}"))),
            "/busy" => Reply::json(503, r#"{"busy":true}"#),
            "/reset" => Reply::Reset,
            "/chunked" => Reply::Raw(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n\
                  4\r\n{\"a\"\r\n6\r\n:[1,2]\r\n1\r\n}\r\n0\r\n\r\n"
                    .to_vec(),
            ),
            "/close" => Reply::RawThenClose(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n{\"closed\":true}"
                    .to_vec(),
            ),
            "/huge-chunked" => {
                let chunk = format!("{:x}\r\n{}\r\n", 1000, "x".repeat(1000));
                let body = format!("{}0\r\n\r\n", chunk.repeat(5));
                Reply::Raw(
                    format!("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n{body}")
                        .into_bytes(),
                )
            }
            "/huge-close" => Reply::RawThenClose(
                format!("HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n{}", "x".repeat(5000))
                    .into_bytes(),
            ),
            _ => Reply::json(404, "{}"),
        }
    });
    let (gated, gate) = Upstream::gated();
    let url = |path: &str| format!("http://{}{path}", upstream.addr);
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let endpoints = [
        (
            "apikey",
            url("/echo"),
            "auth_type = \"api_key\"\nauth_token = \"K\"",
        ),
        (
            "custom",
            url("/echo"),
            "auth_type = \"custom\"\nauth_header_name = \"X-Custom-Auth\"\nauth_token = \"K\"",
        ),
        (
            "basic",
            url("/echo"),
            "auth_type = \"basic\"\nauth_username = \"broker\"\nauth_password = \"K\"",
        ),
        (
            "layered",
            url("/echo"),
            "headers = { \"X-Tenant\" = \"from-the-endpoint\", \"X-Source\" = \"openhqm\" }",
        ),
        ("put", url("/echo"), "method = \"PUT\""),
        ("down", format!("http://{down}/"), ""),
        ("slow", url("/slow"), "timeout_seconds = 0.2"),
        ("flip", url("/flip"), "timeout_seconds = 1"),
        ("slowlong", url("/slow"), ""),
        ("busy", url("/busy"), ""),
        ("reset", url("/reset"), ""),
        ("chunked", url("/chunked"), ""),
        ("close", url("/close"), ""),
        ("gated", format!("http://{}/", gated.addr), ""),
        ("hugechunked", url("/huge-chunked"), ""),
        ("hugeclose", url("/huge-close"), ""),
    ];
    let mut toml = String::from(
        "[worker]\nretry_delay_base = 0.01\nretry_delay_max = 0.02\nmax_retries = 2\n\n\
         [proxy]\nenabled = true\nforward_headers = [\"X-Tenant\"]\nmax_response_bytes = 2000\n\n",
    );
    for (name, url, extra) in endpoints {
        let extra = extra.replace('K', KEY);
        toml += &format!("[proxy.endpoints.{name}]\nurl = \"{url}\"\n{extra}\n\n");
    }
    toml += "[[routing.routes]]\nname = \"patchy\"\nmatch_field = \"metadata.kind\"\n\
             match_value = \"patchy\"\nendpoint = \"PUT\"\nmethod = \"PATCH\"\n";
    let dir = std::env::temp_dir().join(format!(
        "openhqm-proxy-outcomes-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("openhqm.toml");
    std::fs::write(&config, toml).unwrap();
    let broker = Broker::start_with(&["--config", config.to_str().unwrap(), "--shards", "1"]);
    let _ = std::fs::remove_dir_all(&dir);
    Setup {
        broker,
        seen,
        gate,
        gated,
        upstream,
    }
}

fn on(endpoint: &str) -> String {
    format!(r#"{{"payload":{{"n":1}},"metadata":{{"endpoint":"{endpoint}"}}}}"#)
}

impl Setup {
    /// What the upstream received for request `id`, in order.
    fn seen_for(&self, id: &str) -> Vec<Seen> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|r| r.header("x-correlation-id") == Some(id))
            .cloned()
            .collect()
    }

    fn calls(&self, endpoint: &str, code: &str) -> Option<f64> {
        metric(
            self.broker.addr,
            &format!("openhqm_proxy_requests_total{{endpoint=\"{endpoint}\",code=\"{code}\"}}"),
        )
    }

    /// The dead letter of `id`, if listed.
    fn dead_letter(&self, id: &str) -> Option<serde_json::Value> {
        let r = self.broker.client().get("/api/v1/dlq");
        assert_eq!(r.status, 200, "{}", r.text());
        let items = r.json()["items"].as_array().unwrap().clone();
        items.into_iter().find(|i| i["correlation_id"] == id)
    }
}

#[test]
fn every_auth_type_reaches_the_upstream_as_configured() {
    let s = start();
    let mut c = s.broker.client();
    let basic = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("broker:{KEY}"))
    };
    for (endpoint, header, value) in [
        ("apikey", "x-api-key", KEY.to_owned()),
        ("custom", "x-custom-auth", KEY.to_owned()),
        ("basic", "authorization", format!("Basic {basic}")),
    ] {
        let (id, v) = c.submit_until_final(&on(endpoint));
        assert_eq!(v["status"], "COMPLETED", "{v}");
        let seen = s.seen_for(&id);
        assert_eq!(seen.len(), 1, "{endpoint}");
        let named: Vec<&String> = seen[0]
            .headers
            .iter()
            .filter(|h| h.to_ascii_lowercase().starts_with(&format!("{header}:")))
            .collect();
        assert_eq!(named.len(), 1, "{endpoint}: {:?}", seen[0].headers);
        assert_eq!(seen[0].header(header), Some(value.as_str()), "{endpoint}");
    }
}

#[test]
fn a_forwarded_header_replaces_the_endpoint_header_of_that_name() {
    let s = start();
    let mut c = s.broker.client();
    let (id, _) = c.submit_until_final(r#"{"payload":{},"headers":{"x-tenant":"from-the-client"},"metadata":{"endpoint":"layered"}}"#,
    );
    let seen = &s.seen_for(&id)[0];
    let tenants: Vec<&String> = seen
        .headers
        .iter()
        .filter(|h| h.to_ascii_lowercase().starts_with("x-tenant:"))
        .collect();
    assert_eq!(tenants, ["x-tenant: from-the-client"], "{:?}", seen.headers);
    assert_eq!(seen.header("x-source"), Some("openhqm"));
    // Without the client's header the endpoint's is sent.
    let (id, _) = c.submit_until_final(&on("layered"));
    assert_eq!(
        s.seen_for(&id)[0].header("x-tenant"),
        Some("from-the-endpoint")
    );
}

#[test]
fn the_method_is_metadata_method_then_the_routes_then_the_endpoints() {
    let s = start();
    let mut c = s.broker.client();
    let line = |id: &str| s.seen_for(id)[0].line.clone();
    let (id, _) = c.submit_until_final(&on("put"));
    assert_eq!(line(&id), "PUT /echo HTTP/1.1");
    let (id, _) =
        c.submit_until_final(r#"{"payload":{},"metadata":{"endpoint":"put","method":"DELETE"}}"#);
    assert_eq!(line(&id), "DELETE /echo HTTP/1.1");
    // The route names its endpoint in another case and sets the method.
    let (id, _) = c.submit_until_final(r#"{"payload":{},"metadata":{"kind":"patchy"}}"#);
    assert_eq!(line(&id), "PATCH /echo HTTP/1.1");
    let (id, _) =
        c.submit_until_final(r#"{"payload":{},"metadata":{"kind":"patchy","method":"POST"}}"#);
    assert_eq!(line(&id), "POST /echo HTTP/1.1");
}

/// Connect errors, attempt timeouts, resets and `retry_on` statuses: each attempt is counted
/// in `/metrics` under its code, the request is retried `worker.max_retries` times (3 attempts),
/// then `FAILED` and dead-lettered; a retried status stays the request's `status_code`.
#[test]
fn retried_failures_are_counted_then_dead_lettered_with_the_last_status() {
    let s = start();
    let mut c = s.broker.client();
    for (endpoint, code, error, status_code) in [
        ("down", "connect_error", "cannot connect", None),
        ("slow", "timeout", "did not answer in time", None),
        ("reset", "io_error", "connection failed", None),
        ("busy", "503", "answered 503", Some(503u64)),
    ] {
        let (id, v) = c.submit_until_final(&on(endpoint));
        assert_eq!(v["status"], "FAILED", "{endpoint}: {v}");
        let message = v["error"].as_str().unwrap();
        assert!(message.contains(error), "{endpoint}: {message}");
        assert_eq!(v["status_code"].as_u64(), status_code, "{v}");
        if endpoint != "down" {
            // The upstream records a request on its own thread, maybe after the attempt ended.
            wait_until(
                Instant::now() + Duration::from_secs(10),
                &format!("{endpoint}: three attempts at the upstream"),
                || s.seen_for(&id).len() == 3,
            );
        }
        assert_eq!(s.calls(endpoint, code), Some(3.0), "{endpoint}");
        let dead = s
            .dead_letter(&id)
            .unwrap_or_else(|| panic!("{endpoint}: not dead-lettered"));
        assert_eq!(dead["reason"], "max_retries_exceeded", "{dead}");
        assert_eq!(dead["attempts"], 3, "{dead}");
        assert_eq!(dead["error"], message);
    }
}

/// The attempt timeout holds on a reused keep-alive connection too: its timer, first armed for
/// an earlier job's call and not yet fired (1 s), wakes the job that uses the connection now.
#[test]
fn the_attempt_timeout_holds_on_a_reused_connection() {
    let s = start();
    let mut c = s.broker.client();
    let (_, v) = c.submit_until_final(&on("flip"));
    assert_eq!(v["status"], "COMPLETED", "{v}");
    let (_, v) = c.submit_until_final(&on("flip"));
    assert_eq!(v["status"], "FAILED", "{v}");
    assert_eq!(s.calls("flip", "timeout"), Some(3.0));
    // The first attempt reused the first job's connection; each retry opened one.
    assert_eq!(s.upstream.connections(), 3);
}

/// `metadata.timeout` ends the request while its upstream call is still running (the upstream
/// would answer after 30 s, the endpoint's attempt timeout is 30 s): `TIMEOUT`, and no retry.
#[test]
fn metadata_timeout_ends_a_call_in_progress() {
    let s = start();
    let mut c = s.broker.client();
    let (id, v) =
        c.submit_until_final(r#"{"payload":{},"metadata":{"endpoint":"slowlong","timeout":0.3}}"#);
    assert_eq!(v["status"], "TIMEOUT", "{v}");
    assert!(v["error"].as_str().unwrap().contains("deadline"), "{v}");
    wait_until(
        Instant::now() + Duration::from_secs(10),
        "the call at the upstream",
        || !s.seen_for(&id).is_empty(),
    );
    assert_eq!(s.seen_for(&id).len(), 1, "not retried");
}

#[test]
fn chunked_and_close_delimited_answers_over_a_real_socket() {
    let s = start();
    let mut c = s.broker.client();
    let (_, v) = c.submit_until_final(&on("chunked"));
    assert_eq!(v["result"], serde_json::json!({"a": [1, 2]}), "{v}");
    // Twice: the second call cannot reuse the closed connection and opens another.
    for _ in 0..2 {
        let (_, v) = c.submit_until_final(&on("close"));
        assert_eq!(v["status"], "COMPLETED", "{v}");
        assert_eq!(v["result"], serde_json::json!({"closed": true}), "{v}");
    }
}

/// `max_response_bytes` (2,000 here) holds for chunked and close-delimited bodies too (5,000
/// bytes each): `FAILED` at once, not retried.
#[test]
fn the_size_limit_holds_for_every_framing() {
    let s = start();
    let mut c = s.broker.client();
    for endpoint in ["hugechunked", "hugeclose"] {
        let (id, v) = c.submit_until_final(&on(endpoint));
        assert_eq!(v["status"], "FAILED", "{endpoint}: {v}");
        assert!(v["error"].as_str().unwrap().contains("too large"), "{v}");
        assert_eq!(s.seen_for(&id).len(), 1, "{endpoint}: not retried");
        assert_eq!(s.calls(endpoint, "too_large"), Some(1.0));
    }
}

/// One shard, its upstream calls to `gated` held open by the test: the shard still answers,
/// and other jobs (proxied and built-in) complete meanwhile.
#[test]
fn a_slow_upstream_does_not_hold_up_its_shard() {
    let s = start();
    let mut c = s.broker.client();
    let held: Vec<String> = (0..4).map(|_| c.submit_body(&on("gated"))).collect();
    wait_until(
        Instant::now() + Duration::from_secs(10),
        "the four calls to reach the gated upstream",
        || s.gated.requests() == 4,
    );
    let (_, v) = c.submit_until_final(&on("chunked"));
    assert_eq!(v["status"], "COMPLETED", "{v}");
    let (_, v) = c.submit_until_final(r#"{"payload":{"operation":"echo","data":"x"}}"#);
    assert_eq!(v["status"], "COMPLETED", "{v}");
    for id in &held {
        let r = c.get(&format!("/api/v1/status/{id}"));
        assert_eq!(r.json()["status"], "PROCESSING", "{}", r.text());
    }
    s.gate.open();
    for id in &held {
        let v = wait_final(&mut c, id, Instant::now() + Duration::from_secs(10)).json();
        assert_eq!(v["result"], serde_json::json!({"n": 1}), "{v}");
    }
}

/// Redis mode: while an upstream call runs (held open by the test), the worker keeps renewing
/// its entry's lease: the entry's idle time in the owner's pending list falls back twice, and
/// no other instance on the same Redis takes it over. Once the call ends the job completes,
/// delivered once.
#[test]
fn in_redis_mode_the_lease_is_renewed_while_the_upstream_call_runs() {
    use common::redis::RedisServer;

    let redis = RedisServer::start();
    let (upstream, gate) = Upstream::gated();
    let url = format!("http://{}/", upstream.addr);
    let flags = [
        "--proxy.enabled",
        "true",
        "--proxy.default_endpoint",
        url.as_str(),
        "--shards",
        "1",
    ];
    let first = Broker::start_on_redis(&redis, &flags);
    let _second = Broker::start_on_redis(&redis, &flags);
    let mut c = first.client();
    let id = c.submit_body(r#"{"payload":{"n":1}}"#);
    wait_until(
        Instant::now() + Duration::from_secs(10),
        "the call to reach the upstream",
        || upstream.requests() == 1,
    );
    // (consumer, idle ms) of the one pending entry.
    let pending = || {
        let p = redis.cli_json(&[
            "XPENDING",
            "openhqm-requests:{0}",
            "openhqm-workers",
            "-",
            "+",
            "10",
        ]);
        let entries = p.as_array().expect("an XPENDING list").clone();
        assert_eq!(entries.len(), 1, "{p}");
        let e = &entries[0];
        (e[1].as_str().unwrap().to_owned(), e[2].as_i64().unwrap())
    };
    let (owner, mut last) = pending();
    let mut renewals = 0;
    wait_until(
        Instant::now() + Duration::from_secs(30),
        "two lease renewals during the upstream call",
        || {
            let (consumer, idle) = pending();
            assert_eq!(consumer, owner, "the entry changed hands");
            if idle < last {
                renewals += 1;
            }
            last = idle;
            renewals >= 2
        },
    );
    assert_eq!(upstream.requests(), 1);
    gate.open();
    let v = wait_final(&mut c, &id, Instant::now() + Duration::from_secs(10)).json();
    assert_eq!(v["result"], serde_json::json!({"n": 1}), "{v}");
    assert_eq!(upstream.requests(), 1, "delivered once");
}
