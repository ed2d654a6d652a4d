//! Process lifecycle: graceful SIGTERM under load (exit 0 within the grace period, no truncated
//! responses) and start-up configuration errors (exit 2, the key named on stderr).

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    assert_healthy, is_uuid, run_to_exit, run_to_exit_env, Broker, Client, ReadError, Resp,
};

/// What one submit attempt came to.
struct Attempt {
    sent_at: Instant,
    outcome: Result<Resp, String>,
}

/// Checks a submit answer is complete and well-formed.
fn check_submit_answer(r: &Resp) -> Result<(), String> {
    match r.status {
        202 => {
            let v: serde_json::Value = serde_json::from_slice(&r.body)
                .map_err(|e| format!("202 body is not JSON ({e}): {:?}", r.text()))?;
            let id = v["correlation_id"]
                .as_str()
                .ok_or("202 without correlation_id")?;
            if !is_uuid(id) || v["status"] != "PENDING" {
                return Err(format!("bad 202 body {v}"));
            }
            if r.header("location") != Some(format!("/api/v1/status/{id}").as_str()) {
                return Err(format!("bad location {:?}", r.header("location")));
            }
            Ok(())
        }
        503 => {
            let v: serde_json::Value = serde_json::from_slice(&r.body)
                .map_err(|e| format!("503 body is not JSON ({e}): {:?}", r.text()))?;
            if v["detail"].as_str().is_none() || r.header("retry-after").is_none() {
                return Err(format!("bad 503: {v} {:?}", r.headers));
            }
            Ok(())
        }
        s => Err(format!("unexpected status {s}: {:?}", r.text())),
    }
}

#[test]
fn sigterm_under_load_drains_and_exits_zero() {
    const CLIENTS: usize = 8;
    let mut b = Broker::start_with(&["--shards", "2", "--server.shutdown_grace_seconds", "5"]);
    let addr = b.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicUsize::new(0));
    let hard_deadline = Instant::now() + Duration::from_secs(20);

    let clients: Vec<_> = (0..CLIENTS)
        .map(|t| {
            let stop = stop.clone();
            let accepted = accepted.clone();
            std::thread::spawn(move || {
                let mut attempts = Vec::new();
                let mut conn = Some(Client::connect(addr));
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) && Instant::now() < hard_deadline {
                    let c = match conn.as_mut() {
                        Some(c) => c,
                        None => match Client::try_connect(addr) {
                            Ok(c) => conn.insert(c),
                            // The listener is gone: the broker is shutting down.
                            Err(_) => break,
                        },
                    };
                    let body = format!("{{\"payload\":{{\"operation\":\"echo\",\"data\":\"c{t}-{i}\"}}}}");
                    let wire = format!(
                        "POST /api/v1/submit HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
                         Content-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    i += 1;
                    let sent_at = Instant::now();
                    if c.send(wire.as_bytes()).is_err() {
                        // Not even written: no answer is owed.
                        attempts.push(Attempt { sent_at, outcome: Err("closed".into()) });
                        conn = None;
                        continue;
                    }
                    let outcome = match c.read_final(false) {
                        Ok(r) => {
                            if r.status == 202 {
                                accepted.fetch_add(1, Ordering::Relaxed);
                            }
                            if r.closes() {
                                conn = None;
                            }
                            Ok(r)
                        }
                        Err(ReadError::Closed) => {
                            conn = None;
                            Err("closed".into())
                        }
                        Err(e) => {
                            conn = None;
                            Err(format!("{e:?}"))
                        }
                    };
                    attempts.push(Attempt { sent_at, outcome });
                }
                attempts
            })
        })
        .collect();

    // Let load build up, then signal.
    let warmup = Instant::now() + Duration::from_secs(5);
    while accepted.load(Ordering::Relaxed) < 300 && Instant::now() < warmup {
        std::thread::sleep(Duration::from_millis(10));
    }
    let accepted_before = accepted.load(Ordering::Relaxed);
    let signalled_at = Instant::now();
    b.sigterm();
    let status = b.wait_exit(Duration::from_secs(7));
    let took = signalled_at.elapsed();
    stop.store(true, Ordering::Relaxed);
    let attempts: Vec<Attempt> = clients
        .into_iter()
        .flat_map(|h| h.join().expect("client thread"))
        .collect();

    let status = status.unwrap_or_else(|| {
        panic!(
            "broker still running {took:?} after SIGTERM; logs: {:?}",
            b.logs()
        )
    });
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM; logs: {:?}",
        b.logs()
    );
    assert!(took < Duration::from_secs(7), "exit took {took:?}");
    assert!(
        accepted_before >= 50,
        "too little load before the signal: {accepted_before} accepted"
    );

    let mut answered_before = 0;
    let mut answered_after = 0;
    for (n, a) in attempts.iter().enumerate() {
        let before = a.sent_at < signalled_at;
        match &a.outcome {
            Ok(r) => {
                if let Err(e) = check_submit_answer(r) {
                    panic!("attempt {n}: malformed answer: {e}");
                }
                if before {
                    answered_before += 1;
                } else {
                    answered_after += 1;
                }
            }
            // A request written after the signal may find its connection closed without an answer.
            Err(e) if e == "closed" && !before => {}
            Err(e) => panic!(
                "attempt {n} (sent {}): {e}",
                if before {
                    "before the signal"
                } else {
                    "after the signal"
                }
            ),
        }
    }
    assert!(
        answered_before >= accepted_before,
        "{answered_before} < {accepted_before}"
    );
    println!(
        "SIGTERM after {accepted_before} accepted; answered {answered_before} before, {answered_after} after; exit in {took:?}"
    );

    let logs = b.logs();
    assert!(
        logs.iter().any(|l| l.contains("\"shutting down\"")),
        "{logs:?}"
    );
    assert!(logs.iter().any(|l| l.contains("\"stopped\"")), "{logs:?}");
    // Nothing may still listen.
    assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err());
}

#[test]
fn sigterm_when_idle_exits_zero_quickly() {
    let mut b = Broker::start_with(&["--server.shutdown_grace_seconds", "5"]);
    // An idle keep-alive connection must not hold the shutdown for the grace period.
    let mut idle = b.client();
    assert_eq!(idle.get("/health").status, 200);
    let t = Instant::now();
    b.sigterm();
    let status = b
        .wait_exit(Duration::from_secs(7))
        .expect("exit after SIGTERM");
    assert_eq!(status.code(), Some(0));
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "idle shutdown took {:?}",
        t.elapsed()
    );
    assert!(
        idle.closed_within(Duration::from_secs(2)),
        "the idle connection is closed"
    );
}

#[test]
fn invalid_configuration_exits_2_naming_the_key() {
    let t = Duration::from_secs(10);
    let cases: &[(&[&str], &str)] = &[
        (&["--worker.count", "0"], "worker.count"),
        (&["--nope", "1"], "--nope"),
        (&["--nope"], "--nope"),
        (&["--server.port", "abc"], "server.port"),
        (
            &["--worker.retry_delay_base", "-1"],
            "worker.retry_delay_base",
        ),
        (&["--queue.type", "kafka"], "queue.type"),
    ];
    for (args, key) in cases {
        let (status, stdout, stderr) = run_to_exit(args, t);
        assert_eq!(
            status.code(),
            Some(2),
            "{args:?}: stdout {stdout:?} stderr {stderr:?}"
        );
        assert!(
            stderr.contains(key),
            "{args:?}: stderr should name {key:?}: {stderr:?}"
        );
        assert!(!stdout.contains("listening"), "{args:?} must not start");
    }
}

#[test]
fn invalid_configuration_from_env_and_file() {
    let t = Duration::from_secs(10);
    let (status, _, stderr) = run_to_exit_env(&[], &[("OPENHQM_WORKER__COUNT", "0")], t);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("OPENHQM_WORKER__COUNT") || stderr.contains("worker.count"),
        "{stderr}"
    );

    let path = std::env::temp_dir().join(format!(
        "openhqm-test-{}-{:?}.toml",
        std::process::id(),
        Instant::now()
    ));
    std::fs::write(&path, "[server]\nnope = 1\n").unwrap();
    let (status, _, stderr) = run_to_exit(&["--config", path.to_str().unwrap()], t);
    let _ = std::fs::remove_file(&path);
    assert_eq!(status.code(), Some(2));
    assert!(stderr.contains("server.nope"), "{stderr}");
}

#[test]
fn secrets_in_urls_never_reach_errors() {
    let (status, stdout, stderr) = run_to_exit(
        &[
            "--queue.redis_url",
            "redis://user:hunter2@localhost:notaport",
        ],
        Duration::from_secs(10),
    );
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("queue.redis_url"), "{stderr}");
    assert!(
        !stderr.contains("hunter2") && !stdout.contains("hunter2"),
        "password leaked: {stderr}"
    );
}

#[test]
fn a_second_broker_on_a_busy_port_refuses_to_start() {
    // SO_REUSEPORT would otherwise let it join the first broker's port and take part of its
    // traffic (answering 404 for the first broker's ids).
    let first = Broker::start();
    let port = first.addr.port().to_string();
    let (status, stdout, _stderr) = run_to_exit(&["--port", &port], Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "stdout: {stdout}");
    assert!(stdout.contains("cannot listen"), "stdout: {stdout}");
    assert_healthy(first.addr);
}

#[test]
fn an_environment_of_the_python_openhqm_starts_the_broker() {
    // Python-only keys: one warning naming them, and the broker serves.
    let redis = common::redis::RedisServer::start();
    let url = redis.url();
    let b = Broker::start_with_env(
        &[],
        &[
            ("OPENHQM_SERVER__WORKERS", "4"),
            ("OPENHQM_QUEUE__KAFKA_BOOTSTRAP_SERVERS", "kafka:9092"),
            // A Redis URL without a queue type selects Redis.
            ("OPENHQM_QUEUE__REDIS_URL", &url),
        ],
    );
    let warnings: Vec<serde_json::Value> = b
        .logs()
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["level"] == "WARN")
        .collect();
    let ignored: Vec<&serde_json::Value> = warnings
        .iter()
        .filter(|v| {
            v["message"]
                .as_str()
                .unwrap_or("")
                .contains("Python OpenHQM")
        })
        .collect();
    assert_eq!(ignored.len(), 1, "{warnings:?}");
    let text = ignored[0]["message"].as_str().unwrap();
    assert!(text.contains("OPENHQM_SERVER__WORKERS"), "{text}");
    assert!(
        text.contains("OPENHQM_QUEUE__KAFKA_BOOTSTRAP_SERVERS"),
        "{text}"
    );
    assert!(!text.contains("kafka:9092"), "names only: {text}");
    assert!(
        warnings.iter().any(|v| v["message"]
            .as_str()
            .unwrap_or("")
            .contains("queue.type = redis")),
        "{warnings:?}"
    );
    // And it runs on that Redis: a submitted request's state is there.
    common::wait_until(
        Instant::now() + Duration::from_secs(10),
        "the broker to reach Redis",
        || b.client().get("/health").status == 200,
    );
    let id = b.client().submit(r#"{"operation":"echo","data":"x"}"#);
    let keys = redis.cli(&["KEYS", &format!("*{id}*")]);
    assert!(keys.contains(&id), "no key for {id} in Redis: {keys:?}");
}

#[test]
fn sigterm_ends_requests_still_arriving() {
    // A client in the middle of a head, another in the middle of a body: neither holds the
    // shutdown until its read deadline (30 s here) or the grace period (20 s).
    let mut b = Broker::start_with(&[
        "--server.shutdown_grace_seconds",
        "20",
        "--server.header_read_timeout_seconds",
        "30",
        "--server.body_read_timeout_seconds",
        "30",
    ]);
    let mut head = b.client();
    head.send(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .unwrap();
    let mut body = b.client();
    body.send(
        b"POST /api/v1/submit HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"payload\"",
    )
    .unwrap();
    // Both partial requests have reached the broker once it counts their connections.
    common::wait_until(
        Instant::now() + Duration::from_secs(10),
        "both connections to be open",
        || common::metric(b.addr, "openhqm_http_connections_open") == Some(3.0),
    );
    let t = Instant::now();
    b.sigterm();
    let status = b
        .wait_exit(Duration::from_secs(15))
        .expect("exit after SIGTERM, before the read deadlines");
    assert_eq!(status.code(), Some(0));
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "shutdown waited {:?} for requests still arriving",
        t.elapsed()
    );
    assert!(head.closed_within(Duration::from_secs(2)));
    assert!(body.closed_within(Duration::from_secs(2)));
}

#[test]
fn a_redis_that_does_not_fsync_every_write_is_warned_about() {
    let redis = common::redis::RedisServer::start();
    redis.cli(&["CONFIG", "SET", "appendfsync", "everysec"]);
    let b = Broker::start_on_redis(&redis, &["--shards", "2"]);
    let warned = |b: &Broker| {
        b.logs()
            .iter()
            .filter(|l| l.contains("Redis does not fsync every write"))
            .count()
    };
    common::wait_until(
        Instant::now() + Duration::from_secs(10),
        "the durability warning",
        || warned(&b) == 1,
    );
    let line = b
        .logs()
        .into_iter()
        .find(|l| l.contains("Redis does not fsync every write"))
        .unwrap();
    assert!(line.contains("everysec"), "{line}");
    assert_eq!(warned(&b), 1, "once per instance, not per shard");
}
