//! `server.role`: an API node and a worker node on one real Redis. The API node accepts and
//! answers but processes nothing; the worker node processes what the API node accepted and
//! refuses the request API; both serve `/health` and `/metrics`. A role other than `all` needs
//! Redis and an explicit `server.shards`.

mod common;

use std::time::{Duration, Instant};

use common::redis::RedisServer;
use common::{assert_error, run_to_exit, wait_final, Broker, Client};

fn consumed(addr: std::net::SocketAddr) -> f64 {
    let text = Client::connect(addr).get("/metrics").text();
    text.lines()
        .filter(|l| l.starts_with("openhqm_queue_consume_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn api_and_worker_nodes_split_the_work() {
    let redis = RedisServer::start();
    let api = Broker::start_on_redis(&redis, &["--server.role", "api", "--shards", "2"]);
    let worker = Broker::start_on_redis(&redis, &["--server.role", "worker", "--shards", "2"]);

    let mut c = Client::connect(api.addr);
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut ids = Vec::new();
    for i in 0..20 {
        let body = format!(r#"{{"payload":{{"operation":"uppercase","data":"n{i}"}}}}"#);
        let r = c.post_json("/api/v1/submit", &body);
        assert_eq!(r.status, 202, "{}", r.text());
        ids.push((r.json()["correlation_id"].as_str().unwrap().to_owned(), i));
    }
    for (id, i) in &ids {
        let v = wait_final(&mut c, id, deadline).json();
        assert_eq!(v["status"], "COMPLETED", "{v}");
        assert_eq!(v["result"]["output"], format!("N{i}"));
    }
    assert_eq!(consumed(api.addr), 0.0, "the API node processed nothing");
    assert!(
        consumed(worker.addr) >= 20.0,
        "the worker node processed them"
    );

    // The worker node serves probes and metrics, not the request API.
    let mut w = Client::connect(worker.addr);
    assert_eq!(w.get("/health").status, 200);
    let r = w.post_json("/api/v1/submit", r#"{"payload":{}}"#);
    let v = assert_error(&r, 404);
    assert!(v["detail"].as_str().unwrap().contains("worker node"), "{v}");
    assert_error(&w.get(&format!("/api/v1/status/{}", ids[0].0)), 404);
}

#[test]
fn split_roles_need_redis() {
    for role in ["api", "worker"] {
        let (status, _out, err) = run_to_exit(&["--server.role", role], Duration::from_secs(10));
        assert_eq!(status.code(), Some(2), "{err}");
        assert!(err.contains("server.role"), "{err}");
    }
    let (status, _out, err) = run_to_exit(&["--server.role", "both"], Duration::from_secs(10));
    assert_eq!(status.code(), Some(2), "{err}");
    // On Redis, but without server.shards: every instance must run the same number.
    let (status, _out, err) = run_to_exit(
        &[
            "--server.role",
            "worker",
            "--queue",
            "redis",
            "--queue.redis_url",
            "redis://127.0.0.1:1",
        ],
        Duration::from_secs(10),
    );
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("server.shards"), "{err}");
}

#[test]
fn the_oldest_waiting_job_is_measured_until_a_worker_takes_it() {
    let redis = RedisServer::start();
    let api = Broker::start_on_redis(&redis, &["--shards", "1", "--server.role", "api"]);
    let gauge =
        |b: &Broker| common::metric(b.addr, "openhqm_queue_oldest_age_seconds{shard=\"0\"}");
    assert_eq!(gauge(&api), Some(0.0), "nothing waits");
    let mut c = api.client();
    let id = c.submit(r#"{"operation":"echo","data":"x"}"#);
    // No worker anywhere: the entry waits, and its age shows.
    common::wait_until(
        Instant::now() + Duration::from_secs(10),
        "the oldest-age gauge to show the waiting job",
        || gauge(&api).is_some_and(|age| age > 0.0),
    );
    let _worker = Broker::start_on_redis(&redis, &["--shards", "1", "--server.role", "worker"]);
    wait_final(&mut c, &id, Instant::now() + Duration::from_secs(10));
    common::wait_until(
        Instant::now() + Duration::from_secs(10),
        "the gauge to return to 0",
        || gauge(&api) == Some(0.0),
    );
}
