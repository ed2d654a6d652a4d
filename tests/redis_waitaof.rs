//! `WAITAOF` where the server has it (Redis 7.2+; here Valkey 8, from Debian's backports): with
//! the AOF fsynced only every second, each submit waits for its fsync before the 202, so the
//! 202 survives a crash of the server as with `appendfsync always`. With `always` no `WAITAOF`
//! is sent; with `queue.durability = relaxed` none is either.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{get, post_json, wait_until, Broker, Client};

struct Server(Child, u16);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn valkey(dir: &std::path::Path, fsync: &str) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("valkey-server")
        .args([
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--save",
            "",
        ])
        .args(["--appendonly", "yes", "--appendfsync", fsync])
        .args(["--dir", dir.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("valkey-server (apt-get install -t bookworm-backports valkey-server)");
    Server(child, port)
}

fn waitaof_calls(port: u16) -> u64 {
    let out = Command::new("valkey-cli")
        .args(["-p", &port.to_string(), "INFO", "commandstats"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("cmdstat_waitaof:calls="))
        .and_then(|rest| rest.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

/// A broker on the server: healthy, then one plain and one idempotent submit accepted.
fn broker_submits(port: u16, extra: &[&str]) -> Broker {
    let url = format!("redis://127.0.0.1:{port}");
    let mut flags = vec![
        "--queue",
        "redis",
        "--queue.redis_url",
        &url,
        "--shards",
        "1",
    ];
    flags.extend_from_slice(extra);
    let b = Broker::start_with(&flags);
    wait_until(Instant::now() + Duration::from_secs(15), "healthy", || {
        get(b.addr, "/health").status == 200
    });
    let r = post_json(
        b.addr,
        "/api/v1/submit",
        r#"{"payload":{"operation":"echo"}}"#,
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let r = Client::connect(b.addr).request(
        "POST",
        "/api/v1/submit",
        &[
            ("Content-Type", "application/json"),
            ("Idempotency-Key", "k1"),
        ],
        br#"{"payload":{"operation":"echo"}}"#,
    );
    assert_eq!(r.status, 202, "{}", r.text());
    b
}

#[test]
fn everysec_submits_wait_for_their_fsync() {
    let dir = std::env::temp_dir().join(format!("openhqm-waitaof-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    std::fs::create_dir_all(dir.join("everysec")).unwrap();
    let server = valkey(&dir.join("everysec"), "everysec");
    let b = broker_submits(server.1, &[]);
    assert!(
        b.logs().iter().any(|l| l.contains("WAITAOF")),
        "{:?}",
        b.logs()
    );
    assert!(
        b.logs().iter().all(|l| !l.contains("can lose requests")),
        "no durability warning: {:?}",
        b.logs()
    );
    // The plain submit (in its transaction's write) and the idempotent one.
    assert!(waitaof_calls(server.1) >= 2, "{}", waitaof_calls(server.1));
    drop(b);
    drop(server);

    // Relaxed: the operator accepts losing the last second; nothing waits.
    std::fs::create_dir_all(dir.join("relaxed")).unwrap();
    let server = valkey(&dir.join("relaxed"), "everysec");
    let _b = broker_submits(server.1, &["--queue.durability", "relaxed"]);
    assert_eq!(waitaof_calls(server.1), 0);
    drop(server);

    // Every write fsynced already: no WAITAOF.
    std::fs::create_dir_all(dir.join("always")).unwrap();
    let server = valkey(&dir.join("always"), "always");
    let _b = broker_submits(server.1, &[]);
    assert_eq!(waitaof_calls(server.1), 0);
    let _ = std::fs::remove_dir_all(&dir);
}
