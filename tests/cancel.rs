//! Cancel (`DELETE /api/v1/requests/{id}`) on both backends, over real HTTP: a `PENDING` request
//! becomes `CANCELLED` and is never processed, also when its entry sits in a Redis stream and the
//! worker is another instance; a started or final one is 409; waiters on it are woken. The one
//! worker slot is held by a job to a gated upstream, so "still queued" is a condition the test
//! sets up, not a timing. Then cancels race the worker slots for 120 requests, on both backends:
//! a cancel that answered 200 must name a request the upstream never saw.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::redis::RedisServer;
use common::upstream::{Gate, Reply, Upstream};
use common::{assert_error, wait_final, wait_until, Broker, Client};

fn flags(up: &Upstream) -> Vec<String> {
    [
        "--shards",
        "1",
        "--worker.count",
        "1",
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

fn cancel(c: &mut Client, id: &str) -> common::Resp {
    c.request("DELETE", &format!("/api/v1/requests/{id}"), &[], b"")
}

/// `api` takes the requests; the worker slot (on `api` or another instance) runs them.
fn a_pending_request_is_cancelled_and_never_processed(api: &Broker, up: &Upstream, gate: &Gate) {
    let deadline = || Instant::now() + Duration::from_secs(20);
    let mut c = api.client();
    let running = c.submit(r#"{"n":"running"}"#);
    wait_until(deadline(), "the first job to reach the upstream", || {
        up.requests() == 1
    });
    // The cancelled entry sits between two others in the backlog.
    let before = c.submit(r#"{"n":"before"}"#);
    let queued = c.submit(r#"{"n":"queued"}"#);
    let after = c.submit(r#"{"n":"after"}"#);
    assert_eq!(
        c.get(&format!("/api/v1/status/{queued}")).json()["status"],
        "PENDING"
    );

    // A waiter on the queued request is woken by the cancel.
    let addr = api.addr;
    let q = queued.clone();
    let waiter = std::thread::spawn(move || {
        Client::connect(addr).get(&format!("/api/v1/response/{q}?wait=25"))
    });
    wait_until(deadline(), "the long-poll to be registered", || {
        common::metric(addr, "openhqm_waiters") == Some(1.0)
    });

    let r = cancel(&mut c, &queued);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["status"], "CANCELLED");
    assert_eq!(v["correlation_id"], queued.as_str());
    let woken = waiter.join().unwrap();
    assert_eq!(woken.status, 200, "woken by the cancel: {}", woken.text());
    assert_eq!(woken.json()["status"], "CANCELLED");

    // Final: 409 from now on; so is the request a worker holds.
    let r = cancel(&mut c, &queued);
    let e = assert_error(&r, 409);
    assert!(e["detail"].as_str().unwrap().contains("CANCELLED"), "{e}");
    let r = cancel(&mut c, &running);
    let e = assert_error(&r, 409);
    assert!(e["detail"].as_str().unwrap().contains("PROCESSING"), "{e}");

    // Once the slot is free, the others run (one of them queued after the cancelled one, and
    // one submitted later still), and the cancelled one never reached the upstream.
    gate.open();
    assert_eq!(
        wait_final(&mut c, &running, deadline()).json()["status"],
        "COMPLETED"
    );
    let later = c.submit(r#"{"n":"later"}"#);
    for id in [&before, &after, &later] {
        let done = wait_final(&mut c, id, deadline()).json();
        assert_eq!(done["status"], "COMPLETED", "{done}");
    }
    assert_eq!(
        up.requests(),
        4,
        "only the cancelled request was never forwarded"
    );
    let r = c.get(&format!("/api/v1/response/{queued}"));
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "CANCELLED");

    let unknown = "550e8400-e29b-41d4-a716-446655440000";
    assert_error(&cancel(&mut c, unknown), 404);
}

#[test]
fn cancel_on_the_embedded_queue() {
    let (up, gate) = Upstream::gated();
    let f = flags(&up);
    let f: Vec<&str> = f.iter().map(String::as_str).collect();
    let broker = Broker::start_with(&f);
    a_pending_request_is_cancelled_and_never_processed(&broker, &up, &gate);
}

#[test]
fn cancel_on_redis_across_instances() {
    // The API node has no worker slots; the entry waits in the stream for the worker node,
    // whose one slot is busy, and the cancel deletes it there.
    let redis = RedisServer::start();
    let (up, gate) = Upstream::gated();
    let with_role = |role: &str| {
        let mut f = flags(&up);
        f.extend(["--server.role".to_owned(), role.to_owned()]);
        f
    };
    let (api, worker) = (with_role("api"), with_role("worker"));
    let api: Vec<&str> = api.iter().map(String::as_str).collect();
    let worker: Vec<&str> = worker.iter().map(String::as_str).collect();
    let a = Broker::start_on_redis(&redis, &api);
    let _w = Broker::start_on_redis(&redis, &worker);
    a_pending_request_is_cancelled_and_never_processed(&a, &up, &gate);
}

/// Cancels race the workers taking the same requests: every cancel that answered 200 names a
/// request the upstream never saw, and every request is final either way.
fn cancels_race_worker_reads(b: &Broker, up: &Upstream, seen: &std::sync::Mutex<Vec<String>>) {
    let mut c = b.client();
    let ids: Vec<String> = (0..120)
        .map(|i| c.submit(&format!("{{\"n\":\"race-{i}\"}}")))
        .collect();
    let addr = b.addr;
    let answers: Vec<(String, u16)> = std::thread::scope(|s| {
        let chunks: Vec<Vec<String>> = ids.chunks(30).map(<[String]>::to_vec).collect();
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                s.spawn(move || {
                    let mut c = Client::connect(addr);
                    chunk
                        .into_iter()
                        .map(|id| {
                            let status = cancel(&mut c, &id).status;
                            (id, status)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut cancelled = 0;
    for (id, status) in &answers {
        let fin = wait_final(&mut c, id, deadline).json();
        match status {
            200 => {
                cancelled += 1;
                assert_eq!(fin["status"], "CANCELLED", "{fin}");
            }
            409 => assert_eq!(fin["status"], "COMPLETED", "{fin}"),
            other => panic!("cancel of {id}: {other}"),
        }
    }
    let seen = seen.lock().unwrap();
    for (i, (id, status)) in answers.iter().enumerate() {
        let marker = format!("race-{}", ids.iter().position(|x| x == id).unwrap());
        let forwarded = seen.iter().any(|b| b.contains(&format!("\"{marker}\"")));
        assert_eq!(
            forwarded,
            *status == 409,
            "request {i} ({id}): cancel said {status}, forwarded {forwarded}"
        );
    }
    assert!(up.requests() >= answers.len() - cancelled);
    eprintln!(
        "{cancelled} of {} cancelled before a worker took them",
        answers.len()
    );
}

fn recording_upstream() -> (Upstream, Arc<std::sync::Mutex<Vec<String>>>) {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    let up = Upstream::start(move |_, req| {
        let body = String::from_utf8_lossy(&req.body).into_owned();
        s.lock().unwrap().push(body.clone());
        Reply::After(Duration::from_millis(2), Box::new(Reply::json(200, &body)))
    });
    (up, seen)
}

fn race_flags(up: &Upstream) -> Vec<String> {
    [
        "--shards",
        "2",
        "--worker.count",
        "4",
        "--proxy.enabled",
        "true",
        "--proxy.default_endpoint",
        "rec",
        "--proxy.endpoints.rec.url",
        &format!("http://{}/", up.addr),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

#[test]
fn cancels_racing_workers_on_the_embedded_queue() {
    let (up, seen) = recording_upstream();
    let f = race_flags(&up);
    let f: Vec<&str> = f.iter().map(String::as_str).collect();
    let b = Broker::start_with(&f);
    cancels_race_worker_reads(&b, &up, &seen);
}

#[test]
fn cancels_racing_workers_on_redis() {
    let redis = RedisServer::start();
    let (up, seen) = recording_upstream();
    let f = race_flags(&up);
    let f: Vec<&str> = f.iter().map(String::as_str).collect();
    let b = Broker::start_on_redis(&redis, &f);
    cancels_race_worker_reads(&b, &up, &seen);
}
