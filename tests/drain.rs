//! Drain on SIGTERM, over real HTTP and real signals: while a broker drains, `/readyz` is 503
//! (`draining`), new submits get 503 + `Retry-After` + `Connection: close`, and lookups are still
//! answered. The embedded queue is worked off before the process exits; what the grace period
//! leaves is logged with its ids, so every 202 ends final or is named as dropped. In Redis mode
//! the unfinished entries stay in Redis and the restarted instance finishes every one. Both
//! also under load: every 202 ends final (Redis) or was processed or named (embedded).
//! The worker slots are held by jobs to a gated upstream, so "work is still in flight" is a
//! condition the test sets up, not a timing.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::redis::RedisServer;
use common::upstream::Upstream;
use common::{assert_error, metric, wait_final, wait_until, Broker, Client};

fn flags(up: &Upstream, grace: &str) -> Vec<String> {
    [
        "--shards",
        "1",
        "--worker.count",
        "2",
        "--server.shutdown_grace_seconds",
        grace,
        "--proxy.enabled",
        "true",
        "--proxy.default_endpoint",
        "gated",
        "--proxy.endpoints.gated.url",
        &format!("http://{}/", up.addr),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Submits six jobs: two take the slots (and wait at the gate), four stay queued.
fn six_jobs(b: &Broker, up: &Upstream) -> Vec<String> {
    let mut c = b.client();
    let ids: Vec<String> = (0..6)
        .map(|i| c.submit(&format!("{{\"n\":{i}}}")))
        .collect();
    wait_until(
        Instant::now() + Duration::from_secs(20),
        "both slots to call the upstream",
        || up.requests() == 2,
    );
    ids
}

/// What a draining broker answers: not ready, submits refused with a close, lookups served.
fn draining_answers(b: &Broker, queued: &str) {
    wait_until(
        Instant::now() + Duration::from_secs(10),
        "/readyz to say draining",
        || {
            let r = Client::connect(b.addr).get("/readyz");
            r.status == 503 && r.json()["reason"] == "draining"
        },
    );
    let r = Client::connect(b.addr).post_json(
        "/api/v1/submit",
        r#"{"payload":{"operation":"echo","data":"late"}}"#,
    );
    let v = assert_error(&r, 503);
    assert_eq!(v["detail"], "shutting down");
    assert!(r.header("retry-after").is_some(), "{r:?}");
    assert!(r.closes(), "a refused submit closes its connection: {r:?}");
    let r = Client::connect(b.addr).get(&format!("/api/v1/status/{queued}"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.closes(), "every answer while draining closes: {r:?}");
}

/// The ids the drain logged as dropped.
fn dropped_ids(b: &Broker) -> BTreeSet<String> {
    b.logs()
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.contains("these accepted requests are dropped"))
        })
        .flat_map(|v| {
            v["ids"]
                .as_str()
                .unwrap_or("")
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn the_embedded_queue_is_worked_off_before_exit() {
    let (up, gate) = Upstream::gated();
    let mut b = Broker::start_with(&refs(&flags(&up, "30")));
    let ids = six_jobs(&b, &up);
    b.sigterm();
    draining_answers(&b, &ids[5]);
    // Still draining: the slots wait at the gate, four jobs are queued.
    assert!(b.wait_exit(Duration::from_millis(200)).is_none());
    gate.open();
    let status = b
        .wait_exit(Duration::from_secs(20))
        .expect("exit after the drain");
    assert_eq!(status.code(), Some(0), "{:?}", b.logs());
    // Every accepted job reached the upstream; none was dropped.
    assert_eq!(up.requests(), 6);
    assert!(dropped_ids(&b).is_empty(), "{:?}", b.logs());
    assert!(
        b.logs().iter().any(|l| l.contains("draining")),
        "{:?}",
        b.logs()
    );
}

#[test]
fn what_the_grace_period_leaves_is_logged_with_its_ids() {
    let (up, _gate) = Upstream::gated();
    let mut b = Broker::start_with(&refs(&flags(&up, "1")));
    let ids = six_jobs(&b, &up);
    b.sigterm();
    draining_answers(&b, &ids[5]);
    let status = b
        .wait_exit(Duration::from_secs(15))
        .expect("exit at the grace period");
    assert_eq!(status.code(), Some(0), "{:?}", b.logs());
    // The gate never opened: none of the six is final, and every one is named (the two in the
    // slots and the four queued).
    let want: BTreeSet<String> = ids.into_iter().collect();
    assert_eq!(dropped_ids(&b), want, "{:?}", b.logs());
}

#[test]
fn redis_mode_leaves_unfinished_work_for_the_restarted_instance() {
    let redis = RedisServer::start();
    let (up, gate) = Upstream::gated();
    let flags = flags(&up, "1");
    let mut a = Broker::start_on_redis(&redis, &refs(&flags));
    let port = a.addr.port();
    let ids = six_jobs(&a, &up);
    a.sigterm();
    draining_answers(&a, &ids[5]);
    let status = a
        .wait_exit(Duration::from_secs(15))
        .expect("exit at the grace period");
    assert_eq!(status.code(), Some(0), "{:?}", a.logs());
    // Nothing is dropped in Redis mode: the two started entries are pending for this consumer,
    // the four others still in the stream.
    assert!(dropped_ids(&a).is_empty(), "{:?}", a.logs());
    assert_eq!(
        up.requests(),
        2,
        "a draining Redis instance takes no new job"
    );

    gate.open();
    let b = Broker::start_on_redis_port(&redis, port, &refs(&flags));
    let mut c = b.client();
    for id in &ids {
        let r = wait_final(&mut c, id, Instant::now() + Duration::from_secs(30));
        assert_eq!(r.json()["status"], "COMPLETED", "{id}: {}", r.text());
    }
}

/// Submits from `threads` clients until `stop`; the ids answered 202.
fn load(
    addr: std::net::SocketAddr,
    threads: usize,
    body: &'static str,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<std::thread::JoinHandle<Vec<String>>> {
    use std::sync::atomic::Ordering;
    (0..threads)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut ids = Vec::new();
                let mut conn: Option<Client> = None;
                while !stop.load(Ordering::Relaxed) {
                    let c = match conn.as_mut() {
                        Some(c) => c,
                        None => match Client::try_connect(addr) {
                            Ok(c) => conn.insert(c),
                            Err(_) => break,
                        },
                    };
                    let wire = format!(
                        "POST /api/v1/submit HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if c.send(wire.as_bytes()).is_err() {
                        conn = None;
                        continue;
                    }
                    match c.read_final(false) {
                        Ok(r) => {
                            if r.status == 202 {
                                ids.push(r.json()["correlation_id"].as_str().unwrap().to_owned());
                            }
                            if r.closes() {
                                conn = None;
                            }
                        }
                        Err(_) => conn = None,
                    }
                }
                ids
            })
        })
        .collect()
}

/// SIGTERM under load, embedded queue: every request answered 202 was processed (the upstream
/// saw it) or is named in the drain's log of dropped ids; none is silently lost.
#[test]
fn sigterm_under_load_embedded_every_202_processed_or_named() {
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let record = seen.clone();
    let up = Upstream::start(move |_, s| {
        if let Some(id) = s.header("x-correlation-id") {
            record.lock().unwrap().insert(id.to_owned());
        }
        common::upstream::Reply::After(
            Duration::from_millis(20),
            Box::new(common::upstream::Reply::json(200, "{}")),
        )
    });
    let mut b = Broker::start_with(&refs(&flags(&up, "1")));
    let stop = Arc::new(AtomicBool::new(false));
    let clients = load(b.addr, 4, r#"{"payload":{"n":1}}"#, stop.clone());
    wait_until(
        Instant::now() + Duration::from_secs(20),
        "a backlog to build",
        || {
            metric(
                b.addr,
                "openhqm_queue_depth{queue_name=\"openhqm-requests\",shard=\"0\"}",
            )
            .unwrap_or(0.0)
                >= 50.0
        },
    );
    b.sigterm();
    let status = b
        .wait_exit(Duration::from_secs(15))
        .expect("exit after the grace period");
    stop.store(true, Ordering::Relaxed);
    let accepted: Vec<String> = clients
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(status.code(), Some(0));
    let dropped = dropped_ids(&b);
    let seen = seen.lock().unwrap();
    let lost: Vec<&String> = accepted
        .iter()
        .filter(|id| !seen.contains(*id) && !dropped.contains(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} accepted neither processed nor named: {lost:?}",
        lost.len(),
        accepted.len()
    );
    assert!(
        !dropped.is_empty(),
        "a 1 s grace cannot work off the backlog: nothing dropped?"
    );
}

/// SIGTERM under load, Redis: the instance leaves what it did not finish in Redis, and the
/// restarted instance finishes every request answered 202.
#[test]
fn sigterm_under_load_redis_every_202_ends_final() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let redis = RedisServer::start();
    let up = Upstream::start(|_, _| {
        common::upstream::Reply::After(
            Duration::from_millis(20),
            Box::new(common::upstream::Reply::json(200, "{}")),
        )
    });
    let flags = flags(&up, "1");
    let mut a = Broker::start_on_redis(&redis, &refs(&flags));
    let port = a.addr.port();
    let stop = Arc::new(AtomicBool::new(false));
    let clients = load(a.addr, 4, r#"{"payload":{"n":1}}"#, stop.clone());
    wait_until(
        Instant::now() + Duration::from_secs(20),
        "some requests accepted",
        || {
            metric(
                a.addr,
                "openhqm_queue_publish_total{queue_name=\"openhqm-requests\",status=\"success\"}",
            )
            .unwrap_or(0.0)
                >= 200.0
        },
    );
    a.sigterm();
    let status = a.wait_exit(Duration::from_secs(15)).expect("exit");
    stop.store(true, Ordering::Relaxed);
    let accepted: Vec<String> = clients
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(status.code(), Some(0));
    assert!(dropped_ids(&a).is_empty(), "Redis mode drops nothing");
    let b = Broker::start_on_redis_port(&redis, port, &refs(&flags));
    let mut c = b.client();
    for id in &accepted {
        let r = wait_final(&mut c, id, Instant::now() + Duration::from_secs(60));
        assert_eq!(r.json()["status"], "COMPLETED", "{id}: {}", r.text());
    }
}
