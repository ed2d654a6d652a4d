//! Two real broker processes on one real redis-server: one is frozen (SIGSTOP) in the middle of
//! a job, past its lease; the other takes the entry over and finishes it; then the frozen one
//! resumes and finishes too, late. No late write wins: the request stays `COMPLETED` with the
//! result of the instance that took over. Waits out the 30 s lease, so it takes about 40 s.

mod common;

use std::process::Command;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use common::redis::RedisServer;
use common::upstream::{Reply, Upstream};
use common::{wait_final, wait_until, Broker};

fn signal(b: &Broker, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &b.pid().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

#[test]
fn a_frozen_instance_past_its_lease_cannot_overwrite_the_takeover() {
    let redis = RedisServer::start();
    // The first call (the instance to be frozen) answers only once released; later ones at once.
    let release = Arc::new((Mutex::new(false), Condvar::new()));
    let held = release.clone();
    let up = Upstream::start(move |n, _| {
        if n == 0 {
            let (open, cv) = &*held;
            let mut open = open.lock().unwrap();
            while !*open {
                open = cv.wait(open).unwrap();
            }
            Reply::json(200, r#"{"by":"frozen"}"#)
        } else {
            Reply::json(200, r#"{"by":"takeover"}"#)
        }
    });
    let url = format!("http://{}/", up.addr);
    let flags = [
        "--shards",
        "1",
        "--proxy.enabled",
        "true",
        "--proxy.default_endpoint",
        "up",
        "--proxy.endpoints.up.url",
        &url,
        "--proxy.endpoints.up.timeout_seconds",
        "120",
        "--worker.timeout_seconds",
        "300",
    ];
    // A takes the job first: B starts only once A's upstream call is running.
    let a = Broker::start_on_redis(&redis, &flags);
    let id = a.client().submit(r#"{"n":1}"#);
    wait_until(
        Instant::now() + Duration::from_secs(20),
        "A to call the upstream",
        || up.requests() == 1,
    );
    let b = Broker::start_on_redis(&redis, &flags);
    signal(&a, "-STOP");

    // Past the 30 s lease, B's takeover pass claims the entry and finishes it.
    let mut c = b.client();
    let done = wait_final(&mut c, &id, Instant::now() + Duration::from_secs(60));
    let v = done.json();
    assert_eq!(v["status"], "COMPLETED", "{v}");
    assert_eq!(v["result"]["by"], "takeover", "{v}");

    // A wakes up and its upstream call returns: its settle finds the entry no longer its own.
    signal(&a, "-CONT");
    {
        let (open, cv) = &*release;
        *open.lock().unwrap() = true;
        cv.notify_all();
    }
    wait_until(
        Instant::now() + Duration::from_secs(20),
        "A to log that the entry was taken over",
        || a.logs().iter().any(|l| l.contains("taken over")),
    );
    for broker in [&a, &b] {
        let v = broker
            .client()
            .get(&format!("/api/v1/response/{id}"))
            .json();
        assert_eq!(v["status"], "COMPLETED", "{v}");
        assert_eq!(v["result"]["by"], "takeover", "no late write wins: {v}");
    }
    assert_eq!(up.requests(), 2);
}
