//! Redis authentication: an ACL user with a password (`redis://user:pass@host:port`) is used for
//! real, a wrong password leaves the broker degraded (503s, never a 202), and the password never
//! appears in its logs.

mod common;

use std::time::{Duration, Instant};

use common::redis::RedisServer;
use common::{get, post_json, wait_final, wait_until, Broker};

const SECRET: &str = "s3cret-hunter2";

fn acl_user(redis: &RedisServer) {
    let out = redis.cli(&[
        "ACL",
        "SETUSER",
        "broker",
        "on",
        &format!(">{SECRET}"),
        "~*",
        "&*",
        "+@all",
    ]);
    assert_eq!(out, "OK");
}

fn start(redis: &RedisServer, password: &str) -> Broker {
    let url = format!("redis://broker:{password}@127.0.0.1:{}", redis.port());
    Broker::start_with(&[
        "--queue",
        "redis",
        "--queue.redis_url",
        &url,
        "--shards",
        "1",
    ])
}

#[test]
fn acl_user_and_password_are_used() {
    let redis = RedisServer::start();
    acl_user(&redis);
    let broker = start(&redis, SECRET);
    wait_until(
        Instant::now() + Duration::from_secs(10),
        "health 200 with the right password",
        || get(broker.addr, "/health").status == 200,
    );
    let r = post_json(
        broker.addr,
        "/api/v1/submit",
        r#"{"payload":{"operation":"echo","data":"x"}}"#,
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["correlation_id"].as_str().unwrap().to_owned();
    let mut client = broker.client();
    let fin = wait_final(&mut client, &id, Instant::now() + Duration::from_secs(10));
    assert_eq!(fin.json()["status"], "COMPLETED");
    // The broker's connections are authenticated as the ACL user.
    let clients = redis.cli(&["CLIENT", "LIST"]);
    assert!(clients.contains("user=broker"), "{clients}");
}

#[test]
fn a_wrong_password_degrades_and_is_never_logged() {
    let redis = RedisServer::start();
    acl_user(&redis);
    let broker = start(&redis, "wrong-password-777");
    // Redis has refused the password: from here on the broker must answer degraded.
    wait_until(
        Instant::now() + Duration::from_secs(10),
        "the broker to log Redis's WRONGPASS",
        || broker.logs().iter().any(|l| l.contains("WRONGPASS")),
    );
    let h = get(broker.addr, "/health");
    assert_eq!(h.status, 503, "{}", h.text());
    assert_eq!(h.json()["status"], "degraded");
    let r = post_json(broker.addr, "/api/v1/submit", r#"{"payload":{}}"#);
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.header("retry-after").is_some());
    let logs = broker.logs().join("\n");
    assert!(
        logs.contains("WRONGPASS"),
        "the auth failure should be logged by its code: {logs}"
    );
    assert!(
        !logs.contains("wrong-password-777"),
        "password in the logs: {logs}"
    );
    assert!(!logs.contains(SECRET));
}
