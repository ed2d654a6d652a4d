//! Status polls of a live request (`PENDING`, `PROCESSING`) this instance accepted cost no Redis
//! command while Redis tracks the shard's state keys for it (`CLIENT TRACKING ... BCAST
//! NOLOOP`), and a change made anywhere else is still seen: by an operator or another instance
//! (reported by Redis), and one made while the report channel was down (the subscriber killed).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::redis::RedisServer;
use common::{wait_for, wait_until, Broker, Client};
use openhqm::backend::redis::state_value;
use openhqm::clock::Timestamp;
use openhqm::store::RequestState;

/// Connections with broadcast tracking on (`CLIENT LIST` flags `t` and `B`) whose reports go to
/// a live subscriber connection (`redir` names a client subscribed to channels).
fn tracking_clients(redis: &RedisServer) -> usize {
    let list = redis.cli(&["CLIENT", "LIST"]);
    let clients: Vec<std::collections::HashMap<&str, &str>> = list
        .lines()
        .map(|l| l.split(' ').filter_map(|f| f.split_once('=')).collect())
        .collect();
    let subscribers: Vec<&str> = clients
        .iter()
        .filter(|c| c.get("sub").is_some_and(|n| *n != "0"))
        .filter_map(|c| c.get("id").copied())
        .collect();
    clients
        .iter()
        .filter(|c| {
            c.get("flags")
                .is_some_and(|f| f.contains('t') && f.contains('B'))
        })
        .filter(|c| c.get("redir").is_some_and(|r| subscribers.contains(r)))
        .count()
}

/// An API node (it processes nothing, so what it accepts stays `PENDING`), once Redis tracks
/// its shard's state keys.
fn api_node(redis: &RedisServer) -> Broker {
    let api = Broker::start_on_redis(redis, &["--server.role", "api", "--shards", "1"]);
    wait_until(
        Instant::now() + Duration::from_secs(10),
        "tracking to be on",
        || tracking_clients(redis) == 1,
    );
    api
}

fn status(c: &mut Client, id: &str) -> String {
    let r = c.get(&format!("/api/v1/status/{id}"));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["status"].as_str().unwrap().to_owned()
}

/// Polls `id`'s status until it is `want` (15 s at most).
fn wait_status(c: &mut Client, id: &str, want: &str, what: &str) {
    wait_for(
        Instant::now() + Duration::from_secs(15),
        what,
        || match status(c, id).as_str() {
            s if s == want => Ok(()),
            other => Err(other.to_owned()),
        },
    );
}

fn state_key(id: &str) -> String {
    format!("openhqm-requests:{{0}}:state:{id}")
}

/// The stored form of a `PROCESSING` state.
fn processing_value() -> Vec<u8> {
    let now = Timestamp::now();
    state_value::encode(&RequestState::processing(now, now)).to_vec()
}

/// Sends `commands` to Redis in one write on a connection of its own and reads a reply each.
fn pipeline(redis: &RedisServer, commands: &[Vec<&[u8]>]) {
    let mut s = TcpStream::connect(("127.0.0.1", redis.port())).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut out = Vec::new();
    for args in commands {
        out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
    }
    s.write_all(&out).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    // Every reply here is one line (`:n`, `+OK`).
    while got.iter().filter(|&&b| b == b'\n').count() < commands.len() {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "redis closed the connection");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(!got.contains(&b'-'), "{}", String::from_utf8_lossy(&got));
}

#[test]
fn polls_of_a_live_request_read_no_redis_and_see_changes_made_elsewhere() {
    let redis = RedisServer::start();
    let api = api_node(&redis);
    let mut c = Client::connect(api.addr);
    let id = c.submit(r#"{"operation":"echo","data":"x"}"#);

    let gets = redis.calls("get");
    for _ in 0..20 {
        assert_eq!(status(&mut c, &id), "PENDING");
    }
    let r = c.get(&format!("/api/v1/response/{id}"));
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(
        redis.calls("get"),
        gets,
        "polls of a live request read Redis"
    );

    // Another connection changes it (as another instance's worker would): seen.
    let (key, value) = (state_key(&id), processing_value());
    pipeline(
        &redis,
        &[vec![b"SET", key.as_bytes(), &value, b"EX", b"60"]],
    );
    wait_status(&mut c, &id, "PROCESSING", "the poll to show the change");

    // Deleted by an operator: gone.
    let other = c.submit(r#"{"operation":"echo","data":"y"}"#);
    assert_eq!(status(&mut c, &other), "PENDING");
    redis.cli(&["DEL", &state_key(&other)]);
    wait_until(
        Instant::now() + Duration::from_secs(10),
        "the deleted state to be gone",
        || c.get(&format!("/api/v1/status/{other}")).status == 404,
    );
}

#[test]
fn a_change_made_while_the_reports_were_down_is_seen() {
    let redis = RedisServer::start();
    let api = api_node(&redis);
    let mut c = Client::connect(api.addr);
    let id = c.submit(r#"{"operation":"echo","data":"x"}"#);
    assert_eq!(status(&mut c, &id), "PENDING");

    // The subscriber that receives the reports is killed, and the state changed right behind
    // the kill, before it can subscribe again: no report of the change reaches the broker.
    let key = state_key(&id);
    let value = processing_value();
    pipeline(
        &redis,
        &[
            vec![b"CLIENT", b"KILL", b"TYPE", b"pubsub"],
            vec![b"SET", key.as_bytes(), &value, b"EX", b"60"],
        ],
    );
    wait_status(&mut c, &id, "PROCESSING", "the poll to show the change");

    // Tracking comes back on, and polls are answered locally again.
    wait_until(
        Instant::now() + Duration::from_secs(10),
        "tracking to be on again",
        || tracking_clients(&redis) == 1,
    );
    let fresh = c.submit(r#"{"operation":"echo","data":"z"}"#);
    let gets = redis.calls("get");
    for _ in 0..5 {
        assert_eq!(status(&mut c, &fresh), "PENDING");
    }
    assert_eq!(redis.calls("get"), gets);
}

#[test]
fn a_request_finished_by_a_worker_node_is_seen_by_the_api_node() {
    let redis = RedisServer::start();
    let api = api_node(&redis);
    let mut c = Client::connect(api.addr);
    let ids: Vec<String> = (0..20)
        .map(|i| c.submit(&format!(r#"{{"operation":"uppercase","data":"n{i}"}}"#)))
        .collect();
    for id in &ids {
        assert_eq!(status(&mut c, id), "PENDING");
    }
    let _worker = Broker::start_on_redis(&redis, &["--server.role", "worker", "--shards", "1"]);
    for id in &ids {
        wait_status(&mut c, id, "COMPLETED", "the worker node's result");
    }
}

/// An ACL user without `CLIENT` (some managed services deny it): no tracking, so every poll
/// reads Redis, and the rest still works, the finals channel's subscriber included.
#[test]
fn without_the_client_command_polls_read_redis_and_the_rest_works() {
    limited_user(&["~*", "&*", "+@all", "-client"]);
}

/// An ACL user allowed the broker's channels only (not `__redis__:invalidate`): the same.
#[test]
fn without_the_reports_channel_polls_read_redis_and_the_rest_works() {
    limited_user(&["~*", "resetchannels", "&openhqm-requests:*", "+@all"]);
}

/// A broker on Redis as ACL user `limited` with `rules`, which deny tracking.
fn limited_user(rules: &[&str]) {
    let redis = RedisServer::start();
    let mut args = vec!["ACL", "SETUSER", "limited", "on", ">pw"];
    args.extend_from_slice(rules);
    assert_eq!(redis.cli(&args), "OK");
    let url = format!("redis://limited:pw@127.0.0.1:{}", redis.port());
    let api = Broker::start_with(&[
        "--queue",
        "redis",
        "--queue.redis_url",
        &url,
        "--server.role",
        "api",
        "--shards",
        "1",
    ]);
    wait_until(
        Instant::now() + Duration::from_secs(10),
        "the finals channel to be subscribed",
        || {
            redis
                .cli(&["PUBSUB", "NUMSUB", "openhqm-requests:{0}:finals"])
                .ends_with('1')
        },
    );
    let mut c = Client::connect(api.addr);
    wait_until(
        Instant::now() + Duration::from_secs(10),
        "the broker to be healthy",
        || c.get("/health").status == 200,
    );
    let subscriber = subscriber_ids(&redis);
    assert_eq!(subscriber.len(), 1, "{subscriber:?}");
    let id = c.submit(r#"{"operation":"echo","data":"x"}"#);
    let gets = redis.calls("get");
    for _ in 0..3 {
        assert_eq!(status(&mut c, &id), "PENDING");
    }
    assert_eq!(
        redis.calls("get"),
        gets + 3,
        "no tracking: each poll reads Redis"
    );
    assert_eq!(tracking_clients(&redis), 0);

    // A worker node (full rights) finishes it; the API node sees it.
    let _worker = Broker::start_on_redis(&redis, &["--server.role", "worker", "--shards", "1"]);
    wait_status(&mut c, &id, "COMPLETED", "the worker node's result");
    // The API node's subscriber stayed connected all along (the refusal is not a reason to
    // reconnect).
    let now: Vec<String> = subscriber_ids(&redis)
        .into_iter()
        .filter(|id| subscriber.contains(id))
        .collect();
    assert_eq!(now, subscriber);
}

/// The ids of the connections subscribed to channels.
fn subscriber_ids(redis: &RedisServer) -> Vec<String> {
    redis
        .cli(&["CLIENT", "LIST", "TYPE", "pubsub"])
        .lines()
        .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("id=")))
        .map(str::to_owned)
        .collect()
}
