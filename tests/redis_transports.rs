//! Redis over its other transports, with a real redis-server: `rediss://` (TLS, with a
//! certificate the test generates and passes as `queue.redis_ca_file`; without it the broker
//! trusts nothing and stays degraded) and `unix://` (a Unix socket). A request goes through each.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{get, post_json, wait_final, wait_until, Broker};

/// A redis-server the test starts with `args` in `dir`, killed on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn redis(dir: &Path, args: &[&str]) -> Server {
    let child = Command::new("redis-server")
        .args(["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"])
        .args(["--dir", dir.to_str().unwrap()])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server (apt-get install redis-server)");
    Server(child)
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("openhqm-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A request goes through a broker on `url` (with `extra` flags): healthy, accepted, completed.
fn one_request_through(url: &str, extra: &[&str]) {
    let mut flags = vec![
        "--queue",
        "redis",
        "--queue.redis_url",
        url,
        "--shards",
        "1",
    ];
    flags.extend_from_slice(extra);
    let b = Broker::start_with(&flags);
    wait_until(
        Instant::now() + Duration::from_secs(15),
        "health 200 over the transport",
        || get(b.addr, "/health").status == 200,
    );
    let r = post_json(
        b.addr,
        "/api/v1/submit",
        r#"{"payload":{"operation":"echo","data":"across"}}"#,
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["correlation_id"].as_str().unwrap().to_owned();
    let done = wait_final(
        &mut b.client(),
        &id,
        Instant::now() + Duration::from_secs(15),
    );
    assert_eq!(done.json()["result"]["output"], "across");
}

#[test]
fn redis_over_tls() {
    let dir = temp_dir("redis-tls");
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let (cert, key) = (dir.join("redis.crt"), dir.join("redis.key"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    let port = free_port();
    let port_text = port.to_string();
    let _server = redis(
        &dir,
        &[
            "--port",
            "0",
            "--tls-port",
            &port_text,
            "--tls-cert-file",
            cert.to_str().unwrap(),
            "--tls-key-file",
            key.to_str().unwrap(),
            "--tls-ca-cert-file",
            cert.to_str().unwrap(),
            "--tls-auth-clients",
            "no",
        ],
    );
    let url = format!("rediss://127.0.0.1:{port}");
    one_request_through(&url, &["--queue.redis_ca_file", cert.to_str().unwrap()]);

    // Without the CA the server's certificate is trusted by nothing: degraded, never a 202.
    let b = Broker::start_with(&[
        "--queue",
        "redis",
        "--queue.redis_url",
        &url,
        "--shards",
        "1",
    ]);
    wait_until(
        Instant::now() + Duration::from_secs(15),
        "the TLS failure to be logged",
        || b.logs().iter().any(|l| l.contains("TLS")),
    );
    assert_eq!(get(b.addr, "/health").status, 503);
    assert_eq!(
        post_json(b.addr, "/api/v1/submit", r#"{"payload":{}}"#).status,
        503
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn redis_over_a_unix_socket() {
    let dir = temp_dir("redis-unix");
    let sock = dir.join("redis.sock");
    let _server = redis(
        &dir,
        &["--port", "0", "--unixsocket", sock.to_str().unwrap()],
    );
    wait_until(
        Instant::now() + Duration::from_secs(10),
        "the socket to exist",
        || sock.exists(),
    );
    one_request_through(&format!("unix://{}", sock.display()), &[]);
    let _ = std::fs::remove_dir_all(&dir);
}
