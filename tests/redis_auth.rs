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

/// `queue.redis_password_file`: the password comes from a file (one trailing newline dropped)
/// and replaces the URL's; a wrong one leaves the broker degraded; a missing file stops it at
/// start naming the key.
#[test]
fn the_password_can_come_from_a_file() {
    let redis = RedisServer::start();
    acl_user(&redis);
    let dir = std::env::temp_dir().join(format!("openhqm-redis-pw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("password");
    std::fs::write(&file, format!("{SECRET}\n")).unwrap();
    let url = format!("redis://broker:wrong@127.0.0.1:{}", redis.port());
    let path = file.to_str().unwrap();
    let flags = |path: &str| {
        vec![
            "--queue".to_owned(),
            "redis".to_owned(),
            "--queue.redis_url".to_owned(),
            url.clone(),
            "--queue.redis_password_file".to_owned(),
            path.to_owned(),
            "--shards".to_owned(),
            "1".to_owned(),
        ]
    };
    let f = flags(path);
    let broker = Broker::start_with(&f.iter().map(String::as_str).collect::<Vec<_>>());
    wait_until(
        Instant::now() + Duration::from_secs(10),
        "health 200 with the password from the file",
        || get(broker.addr, "/health").status == 200,
    );
    assert!(broker.logs().iter().all(|l| !l.contains(SECRET)));
    drop(broker);

    std::fs::write(&file, "not-it\n").unwrap();
    let f = flags(path);
    let broker = Broker::start_with(&f.iter().map(String::as_str).collect::<Vec<_>>());
    let r = post_json(broker.addr, "/api/v1/submit", r#"{"payload":{}}"#);
    assert_eq!(r.status, 503, "{}", r.text());
    drop(broker);

    let missing = dir.join("missing");
    let f = flags(missing.to_str().unwrap());
    let (status, _, err) = common::run_to_exit(
        &f.iter().map(String::as_str).collect::<Vec<_>>(),
        Duration::from_secs(10),
    );
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("queue.redis_password_file"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
