//! Proxy mode end to end: the real broker, configured by a TOML file, forwarding to a real HTTP
//! upstream on a free port (tests/common/upstream.rs). Each rule of API.md's proxy section has a
//! test here that can fail: the request the upstream sees (method, path, body, forwarded and
//! stripped headers, auth, X-Correlation-ID), retries on `retry_on` statuses, the result's shape
//! for JSON, text and binary bodies, the size limit, other statuses, routing, unknown endpoints,
//! `Retry-After` as the least delay, secrets kept out of the logs on every path, configuration
//! errors, the proxy metrics, and a kill -9 on Redis.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::upstream::{Reply, Seen, Upstream};
use common::{run_to_exit, wait_final, Broker, Client};

const TOKEN: &str = "s3cr3t-upstream-token";

struct Setup {
    broker: Broker,
    upstream: Upstream,
    seen: Arc<Mutex<Vec<Seen>>>,
    flaky: Arc<AtomicUsize>,
    /// When each request to `/limited` arrived.
    limited: Arc<Mutex<Vec<Instant>>>,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir() -> TempDir {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "openhqm-proxy-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

fn start() -> Setup {
    start_with(&[])
}

fn start_with(extra: &[&str]) -> Setup {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let flaky = Arc::new(AtomicUsize::new(0));
    let limited = Arc::new(Mutex::new(Vec::new()));
    let (s, f, l) = (seen.clone(), flaky.clone(), limited.clone());
    let upstream = Upstream::start(move |_, req| {
        s.lock().unwrap().push(req.clone());
        let path = req.line.split(' ').nth(1).unwrap_or("");
        match path {
            "/echo" => Reply::json(200, std::str::from_utf8(&req.body).unwrap()),
            "/flaky" if f.fetch_add(1, Ordering::SeqCst) < 2 => Reply::json(503, "{}"),
            "/flaky" => Reply::json(200, r#"{"ok":true}"#),
            "/text" => Reply::Raw(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\n\r\nhello"
                    .to_vec(),
            ),
            "/binary" => {
                Reply::Raw(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n\xff\xfe".to_vec())
            }
            "/huge" => Reply::json(200, &format!("\"{}\"", "x".repeat(5000))),
            "/busy" => Reply::json(503, "{}"),
            "/limited" => {
                let mut arrivals = l.lock().unwrap();
                arrivals.push(Instant::now());
                if arrivals.len() == 1 {
                    Reply::Raw(
                        b"HTTP/1.1 429 Too Many\r\nretry-after: 1\r\ncontent-length: 0\r\n\r\n"
                            .to_vec(),
                    )
                } else {
                    Reply::json(200, r#"{"late":true}"#)
                }
            }
            _ => Reply::json(404, r#"{"detail":"no"}"#),
        }
    });
    let dir = temp_dir();
    let token_file = dir.0.join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let url = |path: &str| format!("http://{}{path}", upstream.addr);
    let down = format!("http://{}/", closed_port());
    let toml = format!(
        r#"
[worker]
retry_delay_base = 0.05
retry_delay_max = 0.2
max_retries = 3

[proxy]
enabled = true
forward_headers = ["X-Tenant", "Authorization", "X-Secret"]
strip_headers = ["X-Secret"]
max_response_bytes = 1000

[proxy.endpoints.echo]
url = "{echo}"
headers = {{ "X-Source" = "openhqm" }}
auth_type = "bearer"
auth_token_file = "{token}"

[proxy.endpoints.flaky]
url = "{flaky}"
auth_type = "api_key"
auth_token_file = "{token}"

[proxy.endpoints.down]
url = "{down}"
auth_type = "basic"
auth_username = "broker"
auth_password_file = "{token}"
timeout_seconds = 1

[proxy.endpoints.text]
url = "{text}"

[proxy.endpoints.binary]
url = "{binary}"

[proxy.endpoints.limited]
url = "{limited}"

[proxy.endpoints.busy]
url = "{busy}"

[proxy.endpoints.huge]
url = "{huge}"
auth_type = "bearer"
auth_token_file = "{token}"

[proxy.endpoints.missing]
url = "{missing}"
method = "GET"

[[routing.routes]]
name = "by-header"
match_field = "headers.x-route"
match_pattern = "^bin"
endpoint = "binary"

[[routing.routes]]
name = "texty-tenant"
match_field = "metadata.tenant"
match_value = "texty"
priority = 10
endpoint = "text"
"#,
        echo = url("/echo"),
        flaky = url("/flaky"),
        text = url("/text"),
        binary = url("/binary"),
        huge = url("/huge"),
        missing = url("/missing"),
        down = down,
        busy = url("/busy"),
        limited = url("/limited"),
        token = token_file.display(),
    );
    let config = dir.0.join("openhqm.toml");
    std::fs::write(&config, toml).unwrap();
    let mut flags = vec!["--config", config.to_str().unwrap(), "--shards", "2"];
    flags.extend_from_slice(extra);
    let broker = Broker::start_with(&flags);
    Setup {
        broker,
        upstream,
        seen,
        flaky,
        limited,
        _dir: dir,
    }
}

#[test]
fn forwards_the_payload_with_the_headers_the_rules_allow() {
    let s = start();
    let mut c = Client::connect(s.broker.addr);
    let (id, v) = c.submit_until_final(r#"{"payload":{"a":[1,2],"b":"é"},"headers":{"X-Tenant":"t1","X-Secret":"no","Authorization":"Bearer client","X-Other":"x"},"metadata":{"endpoint":"echo"}}"#,
    );
    assert_eq!(v["status"], "COMPLETED", "{v}");
    assert_eq!(v["result"], serde_json::json!({"a": [1, 2], "b": "é"}));
    assert_eq!(v["status_code"], 200);
    assert_eq!(v["headers"]["content-type"], "application/json");
    let seen = s.seen.lock().unwrap();
    let req = seen.last().unwrap();
    assert_eq!(req.line, "POST /echo HTTP/1.1");
    assert_eq!(&req.body[..], r#"{"a":[1,2],"b":"é"}"#.as_bytes());
    assert_eq!(req.header("x-correlation-id"), Some(id.as_str()));
    assert_eq!(req.header("x-tenant"), Some("t1"));
    assert_eq!(req.header("x-source"), Some("openhqm"));
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(req.header("x-secret"), None, "stripped");
    assert_eq!(req.header("x-other"), None, "not in forward_headers");
    let auth: Vec<&String> = req
        .headers
        .iter()
        .filter(|h| h.to_ascii_lowercase().starts_with("authorization:"))
        .collect();
    assert_eq!(
        auth,
        [&format!("authorization: Bearer {TOKEN}")],
        "auth wins"
    );
}

#[test]
fn retry_on_statuses_are_retried_then_complete() {
    let s = start();
    let mut c = Client::connect(s.broker.addr);
    let (_, v) = c.submit_until_final(r#"{"payload":{},"metadata":{"endpoint":"flaky"}}"#);
    assert_eq!(v["status"], "COMPLETED", "{v}");
    assert_eq!(v["result"], serde_json::json!({"ok": true}));
    assert_eq!(
        s.flaky.load(Ordering::SeqCst),
        3,
        "two 503s, then the answer"
    );
}

#[test]
fn other_bodies_and_statuses_map_as_the_contract_says() {
    let s = start();
    let mut c = Client::connect(s.broker.addr);
    let (_, v) = c.submit_until_final(r#"{"payload":{},"metadata":{"endpoint":"text"}}"#);
    assert_eq!(
        v["result"],
        serde_json::json!({"response": "hello", "content_type": "text/plain"})
    );
    let (_, v) = c.submit_until_final(r#"{"payload":{},"metadata":{"endpoint":"binary"}}"#);
    assert_eq!(
        v["result"],
        serde_json::json!({"response": "//4=", "encoding": "base64", "content_type": null})
    );
    // Not in retry_on: completed, with the upstream's status; the method comes from the endpoint.
    let (_, v) = c.submit_until_final(r#"{"payload":{},"metadata":{"endpoint":"missing"}}"#);
    assert_eq!(
        (v["status"].as_str(), v["status_code"].as_u64()),
        (Some("COMPLETED"), Some(404))
    );
    assert!(s
        .seen
        .lock()
        .unwrap()
        .iter()
        .any(|r| r.line == "GET /missing HTTP/1.1"));
    // Over max_response_bytes: failed at once, no retry.
    let before = s.upstream.requests();
    let (_, v) = c.submit_until_final(r#"{"payload":{},"metadata":{"endpoint":"huge"}}"#);
    assert_eq!(v["status"], "FAILED", "{v}");
    assert!(v["error"].as_str().unwrap().contains("too large"), "{v}");
    assert_eq!(s.upstream.requests(), before + 1);
}

#[test]
fn unknown_endpoints_are_refused_and_names_are_case_insensitive() {
    let s = start();
    let mut c = Client::connect(s.broker.addr);
    let r = c.post_json(
        "/api/v1/submit",
        r#"{"payload":{},"metadata":{"endpoint":"nowhere"}}"#,
    );
    assert_eq!(r.status, 422, "{}", r.text());
    let (_, v) = c.submit_until_final(r#"{"payload":{"x":1},"metadata":{"endpoint":"Echo"}}"#);
    assert_eq!(v["result"], serde_json::json!({"x": 1}), "{v}");
}

/// Every path a request with a secret can take, logged at trace level: success, retried
/// statuses, a response over the limit (dead-lettered), an unreachable upstream (retried, then
/// dead-lettered). The secret is in none of the log lines, nor in `/metrics`.
#[test]
fn secrets_stay_out_of_the_logs_on_every_path() {
    let s = start_with(&["--log-level", "trace", "--worker.max_retries", "1"]);
    let mut c = Client::connect(s.broker.addr);
    for endpoint in ["echo", "flaky", "huge", "down"] {
        let body = format!(r#"{{"payload":{{}},"metadata":{{"endpoint":"{endpoint}"}}}}"#);
        let (_, v) = c.submit_until_final(&body);
        assert!(v["status"] == "COMPLETED" || v["status"] == "FAILED", "{v}");
        assert!(!v.to_string().contains(TOKEN), "{v}");
    }
    let logs = s.broker.logs();
    assert!(
        logs.len() > 10,
        "trace logging produced {} lines",
        logs.len()
    );
    let all = logs.join("\n") + &s.broker.stderr_lines().join("\n");
    assert!(!all.contains(TOKEN), "the token is in the logs");
    let metrics = c.get("/metrics").text();
    assert!(
        metrics.contains("openhqm_proxy_requests_total{endpoint=\"down\",code=\"connect_error\"}"),
        "the calls above are in /metrics"
    );
    assert!(!metrics.contains(TOKEN), "the token is in /metrics");
    let basic = base64_of(&format!("broker:{TOKEN}"));
    assert!(
        !all.contains(&basic),
        "the basic credentials are in the logs"
    );
}

/// A port nothing listens on.
fn closed_port() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn base64_of(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A 429 with `Retry-After: 1` is retried no sooner than a second later, although the worker's
/// backoff (0.05 s here) would retry at once.
#[test]
fn retry_after_is_the_least_delay() {
    let s = start();
    let mut c = Client::connect(s.broker.addr);
    let (_, v) = c.submit_until_final(r#"{"payload":{},"metadata":{"endpoint":"limited"}}"#);
    assert_eq!(v["result"], serde_json::json!({"late": true}), "{v}");
    let arrivals = s.limited.lock().unwrap();
    assert_eq!(arrivals.len(), 2);
    let gap = arrivals[1] - arrivals[0];
    assert!(gap >= Duration::from_millis(950), "retried after {gap:?}");
}

/// `metadata.timeout` bounds all attempts together: an upstream that keeps answering 503 ends
/// the request `TIMEOUT` once the next retry would start past the deadline, not `FAILED` after
/// its retries.
#[test]
fn the_deadline_bounds_all_attempts_together() {
    let s = start();
    let mut c = Client::connect(s.broker.addr);
    let (_, v) =
        c.submit_until_final(r#"{"payload":{},"metadata":{"endpoint":"busy","timeout":0.03}}"#);
    assert_eq!(v["status"], "TIMEOUT", "{v}");
    assert!(v["error"].as_str().unwrap().contains("deadline"), "{v}");
}

#[test]
fn routes_pick_the_endpoint_before_metadata_endpoint() {
    let s = start();
    let mut c = Client::connect(s.broker.addr);
    // The tenant route (priority 10) wins over the header route and over metadata.endpoint.
    let (_, v) = c.submit_until_final(r#"{"payload":{},"headers":{"X-Route":"binary"},"metadata":{"tenant":"texty","endpoint":"echo"}}"#,
    );
    assert_eq!(v["result"]["response"], "hello", "{v}");
    // The header route, its field matched case-insensitively, by pattern.
    let (_, v) = c.submit_until_final(
        r#"{"payload":{},"headers":{"X-ROUTE":"binary-please"},"metadata":{"endpoint":"echo"}}"#,
    );
    assert_eq!(v["result"]["encoding"], "base64", "{v}");
    // No route matches: metadata.endpoint.
    let (_, v) = c.submit_until_final(
        r#"{"payload":{"plain":1},"metadata":{"tenant":"other","endpoint":"echo"}}"#,
    );
    assert_eq!(v["result"], serde_json::json!({"plain": 1}), "{v}");
}

#[test]
fn bad_endpoint_configuration_stops_the_start_naming_the_key() {
    let dir = temp_dir();
    let config = dir.0.join("bad.toml");
    for (toml, key) in [
        (
            "[proxy]\nenabled = true\n[proxy.endpoints.billing]\nurl = \"ftp://x\"\n",
            "proxy.endpoints.billing.url",
        ),
        (
            "[proxy]\nenabled = true\n[proxy.endpoints.billing]\nurl = \"http://127.0.0.1:1/\"\nauth_type = \"bearer\"\n",
            "proxy.endpoints.billing.auth_token",
        ),
        (
            "[proxy]\nenabled = true\ndefault_endpoint = \"nope\"\n",
            "proxy.default_endpoint",
        ),
        (
            "[[routing.routes]]\nname = \"r\"\nmatch_field = \"metadata.t\"\nmatch_value = \"x\"\nendpoint = \"nowhere\"\n",
            "routing.routes[0].endpoint",
        ),
        (
            "[[routing.routes]]\nname = \"r\"\nmatch_field = \"metadata.t\"\nmatch_pattern = \"(\"\nendpoint = \"builtin\"\n",
            "routing.routes[0].match_pattern",
        ),
    ] {
        std::fs::write(&config, toml).unwrap();
        let (status, _out, err) =
            run_to_exit(&["--config", config.to_str().unwrap()], Duration::from_secs(10));
        assert_eq!(status.code(), Some(2), "{err}");
        assert!(err.contains(key), "{key} not named: {err}");
    }
}

/// Redis mode: a broker killed with SIGKILL while a job's upstream call is in flight loses
/// nothing. The restarted instance (same port, so the same consumer) reads its pending entries
/// again and delivers the job a second time, with the same `X-Correlation-ID`; the upstream's
/// second answer completes it.
#[test]
fn a_broker_killed_during_the_upstream_call_delivers_the_job_again() {
    use common::redis::RedisServer;
    use common::wait_until;

    let redis = RedisServer::start();
    let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));
    let s = seen.clone();
    let upstream = Upstream::start(move |n, req| {
        s.lock().unwrap().push(req.clone());
        if n == 0 {
            // The first delivery never gets its answer: the broker is killed meanwhile.
            Reply::After(Duration::from_secs(60), Box::new(Reply::json(200, "{}")))
        } else {
            Reply::json(200, r#"{"second":true}"#)
        }
    });
    let url = format!("http://{}/work", upstream.addr);
    let flags = [
        "--proxy.enabled",
        "true",
        "--proxy.default_endpoint",
        url.as_str(),
        "--shards",
        "1",
    ];
    let mut broker = Broker::start_on_redis(&redis, &flags);
    let port = broker.addr.port();
    let id = broker.client().submit_body(r#"{"payload":{"n":1}}"#);
    wait_until(
        Instant::now() + Duration::from_secs(10),
        "the upstream to receive the first delivery",
        || upstream.requests() >= 1,
    );
    broker.kill9();

    let broker = Broker::start_on_redis_port(&redis, port, &flags);
    let mut c = broker.client();
    let v = wait_final(&mut c, &id, Instant::now() + Duration::from_secs(20)).json();
    assert_eq!(v["status"], "COMPLETED", "{v}");
    assert_eq!(v["result"], serde_json::json!({"second": true}));
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2, "delivered exactly twice");
    for req in seen.iter() {
        assert_eq!(req.header("x-correlation-id"), Some(id.as_str()));
        assert_eq!(&req.body[..], br#"{"n":1}"#);
    }
}
