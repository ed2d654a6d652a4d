//! `server.max_connections` and the descriptor budget, over real sockets: a connection over the
//! limit gets 503 and is closed before a request is read while the others are served; with a
//! descriptor limit far below what the flood asks for, a broker in Redis mode keeps serving and
//! reconnects to a restarted Redis (descriptors are kept back for it).

mod common;

use std::time::{Duration, Instant};

use common::redis::RedisServer;
use common::{assert_error, wait_until, Broker, Client};

#[test]
fn a_connection_over_the_limit_gets_503_and_is_closed() {
    let b = Broker::start_with(&["--shards", "1", "--server.max_connections", "3"]);
    let mut held: Vec<Client> = (0..3).map(|_| b.client()).collect();
    // The three are open (each served once, so the shard has counted them).
    for c in &mut held {
        assert_eq!(c.get("/livez").status, 200);
    }
    let mut over = Client::connect(b.addr);
    let r = over
        .read_final(false)
        .expect("a 503 without sending anything");
    let v = assert_error(&r, 503);
    assert_eq!(v["detail"], "too many connections");
    assert!(r.closes());
    assert!(over.closed_within(Duration::from_secs(5)));
    // The held ones are still served.
    assert_eq!(held[0].get("/livez").status, 200);
    // One goes: a new one is served.
    held.pop();
    let deadline = Instant::now() + Duration::from_secs(10);
    wait_until(deadline, "a new connection to be served", || {
        Client::try_connect(b.addr)
            .ok()
            .and_then(|mut c| {
                c.send(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
                c.read_final(false).ok()
            })
            .is_some_and(|r| r.status == 200)
    });
    // Over a held connection: a new one could find the limit still reached while the shard
    // has not yet seen the probe above close.
    let text = held[0].get("/metrics").text();
    let rejected = text
        .lines()
        .find_map(|l| l.strip_prefix("openhqm_rejected_total{reason=\"too_many_connections\"} "))
        .and_then(|v| v.parse::<f64>().ok());
    assert!(rejected >= Some(1.0), "{rejected:?}");
}

#[test]
fn a_flood_past_the_descriptor_limit_leaves_redis_mode_serving() {
    let mut redis = RedisServer::start();
    // 160 descriptors: the reserve keeps about a hundred back, the rest is for clients.
    let mut flags = redis.broker_flags();
    flags.extend(["--shards".to_owned(), "1".to_owned()]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let b = Broker::start_with_nofile(160, &flags);
    assert!(
        b.logs().iter().any(|l| l.contains("RLIMIT_NOFILE")),
        "the lowered limit is logged: {:?}",
        b.logs()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut first = None;
    wait_until(deadline, "healthy on Redis", || {
        let mut c = Client::connect(b.addr);
        let ok = c.get("/health").status == 200;
        if ok {
            first = Some(c);
        }
        ok
    });
    let mut first = first.unwrap();
    // Flood: far more connections than the limit, all held open.
    let flood: Vec<_> = (0..300)
        .filter_map(|_| std::net::TcpStream::connect(b.addr).ok())
        .collect();
    assert!(flood.len() > 100, "{} connections opened", flood.len());
    // Redis goes away and comes back: the broker must get a descriptor to reconnect.
    redis.restart();
    wait_until(
        deadline,
        "a submit on the held connection after Redis came back",
        || {
            first
                .post_json(
                    "/api/v1/submit",
                    r#"{"payload":{"operation":"echo","data":"still here"}}"#,
                )
                .status
                == 202
        },
    );
    drop(flood);
}
