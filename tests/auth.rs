//! API keys over real HTTP (API.md, "Authentication"): 401 without a key or with a wrong one,
//! both ways of sending one, 403 for admin endpoints without an admin key, another key's ids
//! answered as unknown, idempotency keys scoped per API key, `/metrics` protection, the per-key
//! rate limit, key files, and `openhqm hash-key` against an independent SHA-256.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::redis::RedisServer;
use common::{assert_error, metric, run_to_exit_env, Broker, Client, Resp};
use sha2::{Digest, Sha256};

const ALICE: &str = "alice-key-0123456789";
const BOB: &str = "bob-key-9876543210";
const ROOT: &str = "root-key-admin";

fn digest(key: &str) -> String {
    let d = Sha256::digest(key.as_bytes());
    let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn keys_env() -> (String, String) {
    (format!("{},{}", digest(ALICE), digest(BOB)), digest(ROOT))
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

fn submit_as(c: &mut Client, key: &str, extra: &[(&str, &str)]) -> Resp {
    let auth = bearer(key);
    let mut h = vec![
        ("Content-Type", "application/json"),
        ("Authorization", auth.as_str()),
    ];
    h.extend_from_slice(extra);
    c.request(
        "POST",
        "/api/v1/submit",
        &h,
        br#"{"payload":{"operation":"echo","data":"mine"}}"#,
    )
}

fn get_as(c: &mut Client, key: &str, path: &str) -> Resp {
    c.request("GET", path, &[("Authorization", &bearer(key))], b"")
}

fn unauthorized(r: &Resp) {
    let v = assert_error(r, 401);
    assert_eq!(v["detail"], "Not authenticated");
    assert!(
        r.header("www-authenticate")
            .is_some_and(|h| h.starts_with("Bearer")),
        "401 without WWW-Authenticate: {r:?}"
    );
}

fn start(extra_env: &[(&str, &str)], queue: Option<&RedisServer>) -> Broker {
    let (api, admin) = keys_env();
    let mut env = vec![
        ("OPENHQM_AUTH__API_KEYS", api.as_str()),
        ("OPENHQM_AUTH__ADMIN_KEYS", admin.as_str()),
    ];
    env.extend_from_slice(extra_env);
    match queue {
        None => Broker::start_with_env(&["--shards", "2"], &env),
        Some(redis) => {
            let url = redis.url();
            let mut env = env.clone();
            env.push(("OPENHQM_QUEUE__REDIS_URL", url.as_str()));
            let b = Broker::start_with_env(&["--shards", "2"], &env);
            // The broker listens before its Redis connections are up.
            common::wait_until(
                Instant::now() + Duration::from_secs(10),
                "healthy on Redis",
                || common::get(b.addr, "/health").status == 200,
            );
            b
        }
    }
}

/// Every rule of the section on one broker.
fn keys_and_ownership(b: &Broker) {
    let mut c = b.client();

    // No key, a wrong key, a key in another scheme: 401.
    unauthorized(&c.post_json("/api/v1/submit", r#"{"payload":{}}"#));
    unauthorized(&get_as(&mut c, "not-a-key", "/api/v1/dlq"));
    unauthorized(&c.request(
        "GET",
        "/api/v1/status/00000000-0000-4000-8000-000000000000",
        &[("Authorization", &format!("Basic {ALICE}"))],
        b"",
    ));
    // Probes, health, discovery and (unprotected) metrics need none.
    for path in ["/health", "/livez", "/readyz", "/openapi.json", "/metrics"] {
        assert_eq!(c.get(path).status, 200, "{path} without a key");
    }

    // Bearer and X-API-Key both identify a key.
    let r = submit_as(&mut c, ALICE, &[]);
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["correlation_id"].as_str().unwrap().to_owned();
    let r = c.request(
        "GET",
        &format!("/api/v1/status/{id}"),
        &[("X-API-Key", ALICE)],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());

    // The owner sees it final; another key, even an admin, is told it does not exist.
    let deadline = Instant::now() + Duration::from_secs(10);
    let done = common::wait_for(deadline, "alice's request final", || {
        let r = get_as(&mut c, ALICE, &format!("/api/v1/response/{id}"));
        if r.status == 200 {
            Ok(r)
        } else {
            Err(r.status)
        }
    });
    assert_eq!(done.json()["result"]["output"], "mine");
    for other in [BOB, ROOT] {
        for path in [
            format!("/api/v1/status/{id}"),
            format!("/api/v1/response/{id}"),
            format!("/api/v1/response/{id}?wait=1"),
        ] {
            let r = get_as(&mut c, other, &path);
            assert_error(&r, 404);
        }
        let r = c.request(
            "DELETE",
            &format!("/api/v1/requests/{id}"),
            &[("Authorization", &bearer(other))],
            b"",
        );
        assert_error(&r, 404);
    }

    // Batch items belong to their submitter too.
    let auth = bearer(BOB);
    let r = c.request(
        "POST",
        "/api/v1/submit/batch",
        &[("Content-Type", "application/json"), ("Authorization", &auth)],
        br#"{"requests":[{"payload":{"operation":"echo","data":"b1"}},{"payload":{"operation":"echo","data":"b2"}}]}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    for item in r.json()["results"].as_array().unwrap() {
        let bid = item["correlation_id"].as_str().unwrap();
        assert_eq!(
            get_as(&mut c, BOB, &format!("/api/v1/status/{bid}")).status,
            200
        );
        assert_error(
            &get_as(&mut c, ALICE, &format!("/api/v1/status/{bid}")),
            404,
        );
    }

    // The same Idempotency-Key from two API keys is two requests; each replays its own.
    let a1 = submit_as(&mut c, ALICE, &[("Idempotency-Key", "order-7")]);
    let b1 = submit_as(&mut c, BOB, &[("Idempotency-Key", "order-7")]);
    assert_eq!((a1.status, b1.status), (202, 202));
    assert_eq!(b1.header("idempotent-replayed"), None);
    assert_ne!(a1.json()["correlation_id"], b1.json()["correlation_id"]);
    let a2 = submit_as(&mut c, ALICE, &[("Idempotency-Key", "order-7")]);
    assert_eq!(a2.header("idempotent-replayed"), Some("true"));
    assert_eq!(a2.json()["correlation_id"], a1.json()["correlation_id"]);

    // The dead-letter admin needs an admin key.
    let r = get_as(&mut c, ALICE, "/api/v1/dlq");
    assert_error(&r, 403);
    let r = get_as(&mut c, ROOT, "/api/v1/dlq");
    assert_eq!(r.status, 200, "{}", r.text());
    // An admin key is also an API key.
    assert_eq!(submit_as(&mut c, ROOT, &[]).status, 202);

    for (reason, at_least) in [("unauthenticated", 3.0), ("forbidden", 1.0)] {
        let n = metric(
            b.addr,
            &format!("openhqm_rejected_total{{reason=\"{reason}\"}}"),
        );
        assert!(n.unwrap_or(0.0) >= at_least, "{reason}: {n:?}");
    }
}

#[test]
fn api_keys_on_the_embedded_queue() {
    let b = start(&[], None);
    keys_and_ownership(&b);
}

#[test]
fn api_keys_on_redis() {
    let redis = RedisServer::start();
    let b = start(&[], Some(&redis));
    keys_and_ownership(&b);
}

#[test]
fn protected_metrics_need_a_key() {
    let b = start(&[("OPENHQM_AUTH__PROTECT_METRICS", "true")], None);
    let mut c = b.client();
    unauthorized(&c.get("/metrics"));
    let r = get_as(&mut c, BOB, "/metrics");
    assert_eq!(r.status, 200);
    assert!(r.text().contains("openhqm_rejected_total"));
    assert_eq!(c.get("/health").status, 200);
}

#[test]
fn the_rate_limit_answers_429_with_retry_after() {
    // One shard: the whole limit is on it. Two per second, a burst of two.
    let (api, admin) = keys_env();
    let b = Broker::start_with_env(
        &["--shards", "1"],
        &[
            ("OPENHQM_AUTH__API_KEYS", api.as_str()),
            ("OPENHQM_AUTH__ADMIN_KEYS", admin.as_str()),
            ("OPENHQM_AUTH__RATE_LIMIT_PER_SECOND", "2"),
        ],
    );
    let mut c = b.client();
    let statuses: Vec<u16> = (0..4)
        .map(|_| get_as(&mut c, ALICE, "/api/v1/dlq").status)
        .collect();
    // The first two are let through (403: not an admin), then the bucket is empty.
    assert_eq!(&statuses[..2], &[403, 403], "{statuses:?}");
    let r = submit_as(&mut c, ALICE, &[]);
    let v = assert_error(&r, 429);
    assert_eq!(v["detail"], "Rate limit exceeded");
    let secs: u32 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=60).contains(&secs), "Retry-After {secs}");
    // Another key has its own bucket.
    assert_eq!(submit_as(&mut c, BOB, &[]).status, 202);
    assert!(
        metric(b.addr, "openhqm_rejected_total{reason=\"rate_limited\"}").unwrap_or(0.0) >= 1.0
    );
    // A token comes back at 2 per second.
    let deadline = Instant::now() + Duration::from_secs(5);
    common::wait_until(deadline, "a token for alice", || {
        submit_as(&mut c, ALICE, &[]).status == 202
    });
}

#[test]
fn keys_from_a_file_and_bad_keys_refused_at_start() {
    let dir = std::env::temp_dir().join(format!("openhqm-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("keys");
    std::fs::write(&path, format!("# team a\n{}\n", digest(ALICE))).unwrap();
    let file = path.to_str().unwrap();
    let b = Broker::start_with_env(&[], &[("OPENHQM_AUTH__API_KEYS_FILE", file)]);
    let mut c = b.client();
    assert_eq!(submit_as(&mut c, ALICE, &[]).status, 202);
    unauthorized(&submit_as(&mut c, BOB, &[]));
    drop(b);

    // A key instead of its digest: exit 2, naming the setting, never echoing the key.
    let (status, _, err) = run_to_exit_env(
        &[],
        &[("OPENHQM_AUTH__API_KEYS", "plain-secret-key")],
        Duration::from_secs(10),
    );
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("OPENHQM_AUTH__API_KEYS"), "{err}");
    assert!(!err.contains("plain-secret"), "{err}");
    // A key file that cannot be read: exit 2, naming the key.
    let (status, _, err) = run_to_exit_env(
        &[],
        &[("OPENHQM_AUTH__API_KEYS_FILE", "/nonexistent/openhqm-keys")],
        Duration::from_secs(10),
    );
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("auth.api_keys_file"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn hash_key_prints_the_sha256_digest() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_openhqm"))
        .arg("hash-key")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{ALICE}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}", out);
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), digest(ALICE));
}
