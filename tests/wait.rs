//! Submit-and-wait (`Prefer: wait=N`) and long-poll (`GET /api/v1/response/{id}?wait=N`), on the
//! real broker over real HTTP. Jobs whose end the test decides run through proxy mode against
//! a gated upstream: it answers only once the test opens the gate, so "final before the wait
//! ends" and "still running when it ends" are both set up by conditions, not by timing.

mod common;

use std::time::{Duration, Instant};

use common::redis::RedisServer;
use common::upstream::{Gate, Upstream};
use common::{metric, wait_until, Broker, Client};

/// An upstream that answers each request (with its body) only once the gate is open.
struct Gated {
    upstream: Upstream,
    gate: Gate,
}

impl Gated {
    fn start() -> Gated {
        let (upstream, gate) = Upstream::gated();
        Gated { upstream, gate }
    }

    fn open(&self) {
        self.gate.open();
    }

    /// Broker flags registering this upstream as processor `gated`.
    fn flags(&self) -> Vec<String> {
        [
            "--proxy.enabled",
            "true",
            "--proxy.endpoints.gated.url",
            &format!("http://{}/", self.upstream.addr),
            "--proxy.endpoints.gated.timeout_seconds",
            "60",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
    }
}

fn start(gated: &Gated, extra: &[&str]) -> Broker {
    let mut flags = gated.flags();
    flags.extend(extra.iter().map(|s| (*s).to_owned()));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Broker::start_with(&flags)
}

const GATED: &str = r#"{"payload":{"n":1},"metadata":{"endpoint":"gated"}}"#;
const ECHO: &str = r#"{"payload":{"operation":"echo","data":"hi"}}"#;

fn submit_waiting(c: &mut Client, body: &str, prefer: &str) -> common::Resp {
    c.request(
        "POST",
        "/api/v1/submit",
        &[("Content-Type", "application/json"), ("Prefer", prefer)],
        body.as_bytes(),
    )
}

#[test]
fn submit_and_wait_answers_200_with_the_result() {
    let gated = Gated::start();
    let broker = start(&gated, &[]);
    let mut c = broker.client();
    let r = submit_waiting(&mut c, ECHO, "respond-async, wait=10");
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["status"], "COMPLETED");
    assert_eq!(v["result"]["output"], "hi");
    let id = v["correlation_id"].as_str().unwrap();
    assert_eq!(r.header("preference-applied"), Some("wait=10"));
    assert_eq!(
        r.header("location"),
        Some(format!("/api/v1/status/{id}").as_str())
    );
    // The same answer a later poll gets.
    let later = c.get(&format!("/api/v1/response/{id}")).json();
    assert_eq!(later, v);
}

#[test]
fn a_wait_that_ends_first_is_the_usual_202_and_the_request_goes_on() {
    let gated = Gated::start();
    let broker = start(&gated, &[]);
    let mut c = broker.client();
    let asked = Instant::now();
    let r = submit_waiting(&mut c, GATED, "wait=1");
    assert_eq!(r.status, 202, "{}", r.text());
    assert!(
        asked.elapsed() >= Duration::from_millis(900),
        "answered before the wait was over: {:?}",
        asked.elapsed()
    );
    assert_eq!(r.header("preference-applied"), None);
    let v = r.json();
    assert_eq!(v["status"], "PENDING");
    let id = v["correlation_id"].as_str().unwrap().to_owned();
    // Still not final: a long-poll that ends first answers 202 with the current state.
    let r = c.get(&format!("/api/v1/response/{id}?wait=1"));
    assert_eq!(r.status, 202);
    assert_eq!(r.json()["status"], "PROCESSING");
    gated.open();
    let r = c.get(&format!("/api/v1/response/{id}?wait=20"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["status"], "COMPLETED");
}

/// Long-polls `id` from a fresh connection in a thread; the answer and how long it took.
fn long_poll(
    addr: std::net::SocketAddr,
    id: String,
    how: &'static str,
) -> std::thread::JoinHandle<(common::Resp, Duration)> {
    std::thread::spawn(move || {
        let mut c = Client::connect(addr);
        let t = Instant::now();
        let r = match how {
            "query" => c.get(&format!("/api/v1/response/{id}?wait=25")),
            _ => c.request(
                "GET",
                &format!("/api/v1/response/{id}"),
                &[("Prefer", "wait=25")],
                b"",
            ),
        };
        (r, t.elapsed())
    })
}

fn long_polls_are_woken_by_the_final_write(broker: &Broker, gated: &Gated) {
    let mut c = broker.client();
    let ids: Vec<String> = (0..8).map(|_| c.submit(r#"{"n":1}"#)).collect();
    // Each id is owned by one shard; fresh connections land on any shard, so some polls wait
    // across the mesh.
    let polls: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            long_poll(
                broker.addr,
                id.clone(),
                if i % 2 == 0 { "query" } else { "prefer" },
            )
        })
        .collect();
    wait_until(
        Instant::now() + Duration::from_secs(10),
        "the upstream to receive every request",
        || gated.upstream.requests() == ids.len(),
    );
    wait_until(
        Instant::now() + Duration::from_secs(10),
        "every long-poll to be a registered waiter",
        || metric(broker.addr, "openhqm_waiters") == Some(ids.len() as f64),
    );
    gated.open();
    for (p, id) in polls.into_iter().zip(&ids) {
        let (r, took) = p.join().unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        assert_eq!(v["correlation_id"], id.as_str());
        assert_eq!(v["status"], "COMPLETED");
        assert!(
            took < Duration::from_secs(20),
            "woken by the final write, not by the end of the wait ({took:?})"
        );
    }
    // Every waiter was released.
    assert_eq!(metric(broker.addr, "openhqm_waiters"), Some(0.0));
}

#[test]
fn long_polls_on_every_shard_are_woken_by_the_final_write() {
    let gated = Gated::start();
    let broker = start(
        &gated,
        &["--shards", "2", "--proxy.default_endpoint", "gated"],
    );
    long_polls_are_woken_by_the_final_write(&broker, &gated);
}

#[test]
fn long_polls_are_woken_in_redis_mode() {
    let redis = RedisServer::start();
    let gated = Gated::start();
    let mut flags = gated.flags();
    flags.extend(["--proxy.default_endpoint".to_owned(), "gated".to_owned()]);
    flags.extend(["--shards".to_owned(), "2".to_owned()]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let broker = Broker::start_on_redis(&redis, &flags);
    long_polls_are_woken_by_the_final_write(&broker, &gated);
    // And a submit-and-wait answers with the result.
    let mut c = broker.client();
    let r = submit_waiting(&mut c, r#"{"payload":{"n":2}}"#, "wait=10");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["status"], "COMPLETED");
}

/// A submit-and-wait answered by the shard that ran the job: its final state is the one the
/// shard wrote, so the answer reads no Redis, even though the write's announcement on the finals
/// channel (which wakes waiters of other instances) may reach the shard before the write's reply.
#[test]
fn a_wait_answered_by_the_shard_that_ran_the_job_reads_no_redis() {
    let redis = RedisServer::start();
    let broker = Broker::start_on_redis(&redis, &["--shards", "1"]);
    let mut c = broker.client();
    let r = submit_waiting(&mut c, ECHO, "wait=10");
    assert_eq!(r.status, 200, "{}", r.text());
    redis.cli(&["CONFIG", "RESETSTAT"]);
    for _ in 0..50 {
        let r = submit_waiting(&mut c, ECHO, "wait=10");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["result"]["output"], "hi");
    }
    assert_eq!(
        redis.calls("get"),
        0,
        "{}",
        redis.cli(&["INFO", "commandstats"])
    );
}

#[test]
fn bad_waits_and_unknown_ids() {
    let gated = Gated::start();
    let broker = start(&gated, &["--server.max_wait_seconds", "1"]);
    let mut c = broker.client();
    let unknown = "550e8400-e29b-41d4-a716-446655440000";
    let t = Instant::now();
    let r = c.get(&format!("/api/v1/response/{unknown}?wait=5"));
    assert_eq!(r.status, 404, "unknown: answered at once, not held");
    assert!(t.elapsed() < Duration::from_secs(1));
    for bad in ["x", "-1", ""] {
        let r = c.get(&format!("/api/v1/response/{unknown}?wait={bad}"));
        common::assert_error(&r, 422);
    }
    // A malformed preference is ignored (RFC 7240): the usual 202.
    let r = submit_waiting(&mut c, GATED, "wait=soon");
    assert_eq!(r.status, 202);
    // wait=N above server.max_wait_seconds is capped: one second, not 30.
    let id = r.json()["correlation_id"].as_str().unwrap().to_owned();
    let t = Instant::now();
    let r = c.get(&format!("/api/v1/response/{id}?wait=30"));
    assert_eq!(r.status, 202);
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    let r = submit_waiting(&mut c, ECHO, "wait=30");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("preference-applied"),
        Some("wait=1"),
        "the wait applied"
    );
}

#[test]
fn beyond_the_waiter_bound_a_wait_is_answered_at_once() {
    let gated = Gated::start();
    let broker = start(&gated, &["--server.max_waiters", "0"]);
    let mut c = broker.client();
    let t = Instant::now();
    let r = submit_waiting(&mut c, GATED, "wait=20");
    assert_eq!(r.status, 202);
    let id = r.json()["correlation_id"].as_str().unwrap().to_owned();
    let r = c.get(&format!("/api/v1/response/{id}?wait=20"));
    assert_eq!(r.status, 202);
    assert_eq!(metric(broker.addr, "openhqm_waiters"), Some(0.0));
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "no waiter could be registered, so nothing waited: {:?}",
        t.elapsed()
    );
}

#[test]
fn a_waiter_is_woken_by_a_final_write_on_another_instance() {
    // API node A has no worker slots: every request is processed by worker node B, and A's
    // waiters can only be woken by what B publishes. A timed-out wait would answer 202, so a
    // 200 shows the wake-up crossed instances.
    let redis = RedisServer::start();
    let gated = Gated::start();
    let mut common_flags = gated.flags();
    common_flags.extend(
        ["--proxy.default_endpoint", "gated", "--shards", "2"]
            .iter()
            .map(|s| (*s).to_owned()),
    );
    let with_role = |role: &str| {
        let mut f = common_flags.clone();
        f.extend(["--server.role".to_owned(), role.to_owned()]);
        f
    };
    let (api, worker) = (with_role("api"), with_role("worker"));
    let api: Vec<&str> = api.iter().map(String::as_str).collect();
    let worker: Vec<&str> = worker.iter().map(String::as_str).collect();
    let a = Broker::start_on_redis(&redis, &api);
    let _b = Broker::start_on_redis(&redis, &worker);
    long_polls_are_woken_by_the_final_write(&a, &gated);
    let mut c = a.client();
    let t = Instant::now();
    let r = submit_waiting(&mut c, r#"{"payload":{"n":3}}"#, "wait=20");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["status"], "COMPLETED");
    assert!(t.elapsed() < Duration::from_secs(20));
}

/// A client that closes its connection while it waits releases its waiter at once (on the
/// connection's shard and, for an id of another shard, on the owner), long before its
/// `wait=N` ends. Several connections, so both shards see local and remote waits.
#[test]
fn a_client_that_goes_away_releases_its_waiter() {
    let gated = Gated::start();
    let broker = start(&gated, &["--shards", "2"]);
    let mut c = broker.client();
    let ids: Vec<String> = (0..4)
        .map(|_| {
            let r = c.post_json("/api/v1/submit", GATED);
            assert_eq!(r.status, 202, "{}", r.text());
            r.json()["correlation_id"].as_str().unwrap().to_owned()
        })
        .collect();
    let mut waiting = Vec::new();
    for id in &ids {
        // A long-poll and a submit-and-wait per request.
        let mut poll = Client::connect(broker.addr);
        poll.send(
            format!("GET /api/v1/response/{id}?wait=30 HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        )
        .unwrap();
        waiting.push(poll);
        let mut submit = Client::connect(broker.addr);
        let body = GATED.as_bytes();
        submit
            .send(
                format!(
                    "POST /api/v1/submit HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                     Prefer: wait=30\r\nContent-Length: {}\r\n\r\n{GATED}",
                    body.len()
                )
                .as_bytes(),
            )
            .unwrap();
        waiting.push(submit);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    wait_until(deadline, "eight waiters", || {
        metric(broker.addr, "openhqm_waiters") == Some(8.0)
    });
    let went_away = Instant::now();
    drop(waiting);
    wait_until(deadline, "every waiter released", || {
        metric(broker.addr, "openhqm_waiters") == Some(0.0)
    });
    assert!(
        went_away.elapsed() < Duration::from_secs(10),
        "released by the clients going away, not by their wait=30"
    );
    // The requests themselves are untouched: they finish when the upstream answers.
    gated.open();
    for id in &ids {
        let r = common::wait_final(&mut c, id, Instant::now() + Duration::from_secs(20));
        assert_eq!(r.json()["status"], "COMPLETED");
    }
}

/// A request pipelined behind a long-poll, arriving while it waits, is kept and answered after
/// it, in order.
#[test]
fn a_request_pipelined_behind_a_long_poll_is_answered_after_it() {
    let gated = Gated::start();
    let broker = start(&gated, &["--shards", "1"]);
    let mut c = broker.client();
    let r = c.post_json("/api/v1/submit", GATED);
    let id = r.json()["correlation_id"].as_str().unwrap().to_owned();
    let mut poll = Client::connect(broker.addr);
    poll.send(format!("GET /api/v1/response/{id}?wait=2 HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    wait_until(deadline, "the long-poll to wait", || {
        metric(broker.addr, "openhqm_waiters") == Some(1.0)
    });
    poll.send(format!("GET /api/v1/status/{id} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    let first = poll.read_final(false).expect("the long-poll's answer");
    assert_eq!(
        first.status,
        202,
        "not final within its wait: {}",
        first.text()
    );
    let second = poll
        .read_final(false)
        .expect("the pipelined request's answer");
    assert_eq!(second.status, 200);
    assert_eq!(second.json()["correlation_id"], id.as_str());
}
