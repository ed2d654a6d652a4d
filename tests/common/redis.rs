//! A private `redis-server` for one test: a free loopback port, a fresh directory (removed on
//! drop), AOF with `appendfsync always` (so a `kill -9` loses nothing acknowledged) and the
//! `DEBUG` command enabled. Never a fixed port, never the system Redis. Also the fault helpers
//! the Redis tests share: `kill -9` of a broker, and a non-panicking submit.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use openhqm::backend::redis::state_value;
use openhqm::store::RequestState;

use super::{wait_for, wait_until, Broker, Client, ReadError, Resp};

/// How long a starting (or AOF-loading) Redis may take to answer `PING`.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one `redis-cli` run may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(10);
/// Port collisions (another process took the probed port) are retried this often.
const START_ATTEMPTS: usize = 8;

static NEXT_DIR: AtomicU64 = AtomicU64::new(0);

/// One `redis-server` process, SIGKILLed and reaped on drop; its directory is removed then.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts a server on a free port in a fresh temporary directory and waits (bounded) until
    /// it answers `PING`.
    pub fn start() -> RedisServer {
        let dir = fresh_dir();
        let mut last_log = String::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            let mut server = RedisServer {
                child: None,
                port,
                dir: dir.clone(),
            };
            match server.spawn_and_wait() {
                Ok(()) => return server,
                Err(log) => {
                    // Most likely the port was taken between the probe and the bind: try another.
                    last_log = log;
                    server.kill9();
                    // Keep the directory for the next attempt.
                    server.dir = PathBuf::new();
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        panic!("redis-server did not start in {START_ATTEMPTS} attempts; last log:\n{last_log}");
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The data directory (AOF files, `redis.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The broker flags that select this server as the queue backend.
    pub fn broker_flags(&self) -> Vec<String> {
        vec![
            "--queue".into(),
            "redis".into(),
            "--queue.redis_url".into(),
            self.url(),
        ]
    }

    /// Runs `redis-cli -p PORT args...` (bounded) and returns its standard output, trimmed.
    /// Panics if it fails to run or exits non-zero.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut child = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run redis-cli ({e}); install redis-tools (apt-get install redis-tools)"
                )
            });
        let deadline = Instant::now() + CLI_TIMEOUT;
        loop {
            if child.try_wait().expect("try_wait redis-cli").is_some() {
                break;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("redis-cli {args:?} did not finish within {CLI_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let out = child.wait_with_output().expect("redis-cli output");
        let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert!(
            out.status.success(),
            "redis-cli {args:?} failed ({}): {stdout} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// `redis-cli --json -2 args...` (RESP2 replies as JSON: arrays of strings and integers).
    pub fn cli_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json", "-2"];
        all.extend_from_slice(args);
        let out = self.cli(&all);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("redis-cli {args:?}: not JSON ({e}): {out:?}"))
    }

    /// How often Redis ran `command` since the last `CONFIG RESETSTAT` (`INFO commandstats`).
    pub fn calls(&self, command: &str) -> i64 {
        let stats = self.cli(&["INFO", "commandstats"]);
        let prefix = format!("cmdstat_{command}:calls=");
        stats
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |n| n.parse().expect("calls"))
    }

    /// `cli(args)` parsed as an integer reply; panics with the output otherwise.
    pub fn cli_int(&self, args: &[&str]) -> i64 {
        let out = self.cli(args);
        out.parse()
            .unwrap_or_else(|_| panic!("redis-cli {args:?}: expected an integer, got {out:?}"))
    }

    /// The request state stored under `key` (`GET`, decoded as the broker encodes it); `None`
    /// for a missing key. Panics on a value the broker's decoder refuses.
    pub fn state(&self, key: &str) -> Option<RequestState> {
        self.states(&[key.to_owned()]).pop().flatten()
    }

    /// [`RedisServer::state`] of every key, pipelined on one raw connection (bounded by socket
    /// timeouts). For checking thousands of states quickly.
    pub fn states(&self, keys: &[String]) -> Vec<Option<RequestState>> {
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect redis");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut w = s.try_clone().expect("clone");
        let mut r = BufReader::new(s);
        let mut out = Vec::with_capacity(keys.len());
        for batch in keys.chunks(256) {
            let mut req = Vec::new();
            for k in batch {
                req.extend_from_slice(
                    format!("*2\r\n$3\r\nGET\r\n${}\r\n{k}\r\n", k.len()).as_bytes(),
                );
            }
            w.write_all(&req).expect("write to redis");
            for k in batch {
                let value = read_bulk(&mut r).unwrap_or_else(|e| panic!("GET {k}: {e}"));
                out.push(value.map(|v| {
                    state_value::decode(&Bytes::from(v))
                        .unwrap_or_else(|| panic!("GET {k}: not a state the broker writes"))
                }));
            }
        }
        out
    }

    /// SIGKILLs the server (no shutdown, no final AOF rewrite) and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the server process is running.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Starts the server again on the same port and directory (so the AOF is loaded), killing
    /// it first if it still runs; waits until it answers `PING` (after loading).
    pub fn restart(&mut self) {
        self.kill9();
        let mut last = String::new();
        for _ in 0..5 {
            // The port is ours, but a just-killed listener can take a moment to be rebindable.
            wait_port_free(self.port);
            match self.spawn_and_wait() {
                Ok(()) => return,
                Err(log) => {
                    last = log;
                    self.kill9();
                }
            }
        }
        panic!(
            "redis-server did not restart on port {}; log:\n{last}",
            self.port
        );
    }

    /// Spawns on `self.port`/`self.dir` and waits for `PING`; on failure returns the log.
    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let log_path = self.dir.join("redis.log");
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("open redis.log");
        let spawned = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
                "--dir",
                self.dir.to_str().expect("utf-8 temp dir"),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--enable-debug-command",
                "yes",
                "--daemonize",
                "no",
                "--maxmemory-policy",
                "noeviction",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("clone log")))
            .stderr(Stdio::from(log))
            .spawn();
        let child = match spawned {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "redis-server is not installed (not on PATH): the Redis tests need it \
                 (apt-get install redis-server)"
            ),
            Err(e) => panic!("cannot spawn redis-server: {e}"),
        };
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if ping(self.port) {
                return Ok(());
            }
            let exited: Option<ExitStatus> = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                self.child = None;
                return Err(format!(
                    "redis-server exited ({status}):\n{}",
                    read_log(&log_path)
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no PONG within {READY_TIMEOUT:?}:\n{}",
                    read_log(&log_path)
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill9();
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A port that was free a moment ago (the caller retries on a collision).
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// Waits (bounded) until `port` on 127.0.0.1 can be bound again, e.g. after its listener was
/// killed.
fn wait_port_free(port: u16) {
    wait_until(
        Instant::now() + Duration::from_secs(5),
        &format!("port {port} to be free again"),
        || TcpListener::bind(("127.0.0.1", port)).is_ok(),
    );
}

/// A new, empty directory under the system temp dir.
fn fresh_dir() -> PathBuf {
    loop {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "openhqm-test-redis-{}-{}-{nanos}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(name);
        match std::fs::create_dir(&dir) {
            Ok(()) => return dir,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => panic!("cannot create {}: {e}", dir.display()),
        }
    }
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Reads one RESP2 array of bulk strings (`*N` then N × `$len`).
fn read_bulk(r: &mut impl BufRead) -> Result<Option<Vec<u8>>, String> {
    let mut head = String::new();
    r.read_line(&mut head).map_err(|e| e.to_string())?;
    let len = head
        .strip_suffix("\r\n")
        .and_then(|h| h.strip_prefix('$'))
        .and_then(|n| n.parse::<i64>().ok())
        .ok_or_else(|| format!("expected a bulk string, got {head:?}"))?;
    let Ok(len) = usize::try_from(len) else {
        return Ok(None);
    };
    let mut buf = vec![0u8; len + 2];
    r.read_exact(&mut buf).map_err(|e| e.to_string())?;
    buf.truncate(len);
    Ok(Some(buf))
}

/// Whether a Redis on `port` answers `PING` with `+PONG` (not `-LOADING`) within 500 ms.
fn ping(port: u16) -> bool {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let _ = s.set_write_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    let mut got = Vec::new();
    while !got.ends_with(b"\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    got.starts_with(b"+PONG")
}

// ---------------------------------------------------------------------------------------------
// Broker helpers for fault tests.
// ---------------------------------------------------------------------------------------------

impl Broker {
    /// SIGKILLs the broker (no drain, no shutdown) and reaps it.
    pub fn kill9(&mut self) {
        if self.exit.is_none() {
            let _ = self.child.kill();
        }
        assert!(
            self.wait_exit(Duration::from_secs(10)).is_some(),
            "broker did not die after SIGKILL"
        );
    }

    /// Starts a broker on `redis` with `extra` flags and waits (bounded) until `/health` is 200:
    /// the broker listens before its Redis connections are up, and submits in between get 503.
    pub fn start_on_redis(redis: &RedisServer, extra: &[&str]) -> Broker {
        let mut flags = redis.broker_flags();
        flags.extend(extra.iter().map(|s| (*s).to_owned()));
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let broker = Broker::start_with(&flags);
        wait_for(
            Instant::now() + Duration::from_secs(10),
            &format!("the broker on {} to be healthy", redis.url()),
            || {
                let r = Client::try_connect(broker.addr)
                    .ok()
                    .and_then(|mut c| try_get(&mut c, "/health"));
                match r {
                    Some(r) if r.status == 200 => Ok(()),
                    other => Err(other.map(|r| r.text())),
                }
            },
        );
        broker
    }

    /// Starts a broker on `redis` with `extra` flags on a given port (a restarted instance: its
    /// Redis consumer names are `<host>:<port>:<shard>`, so the same port finds the crashed
    /// instance's pending entries at once).
    pub fn start_on_redis_port(redis: &RedisServer, port: u16, extra: &[&str]) -> Broker {
        // The port bound a moment ago by the killed instance can need a moment to be free.
        wait_port_free(port);
        let port = port.to_string();
        let mut flags = vec!["--port", port.as_str()];
        flags.extend_from_slice(extra);
        Broker::start_on_redis(redis, &flags)
    }
}

/// What one submit attempt got.
#[derive(Debug)]
pub enum Submit {
    /// 202 with this correlation id.
    Accepted(String),
    /// Any other complete response.
    Refused(Resp),
    /// The connection failed before a complete response (the request may or may not be stored).
    Broken(String),
}

/// Submits `payload` (a JSON object text) on `c` without panicking.
pub fn try_submit(c: &mut Client, payload: &str) -> Submit {
    let body = format!("{{\"payload\":{payload}}}");
    let req = format!(
        "POST /api/v1/submit HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    if let Err(e) = c.send(req.as_bytes()) {
        return Submit::Broken(format!("send: {e}"));
    }
    match c.read_final(false) {
        Ok(r) if r.status == 202 => match r.json()["correlation_id"].as_str() {
            Some(id) => Submit::Accepted(id.to_owned()),
            None => Submit::Refused(r),
        },
        Ok(r) => Submit::Refused(r),
        Err(ReadError::Closed) => Submit::Broken("closed".into()),
        Err(e) => Submit::Broken(format!("{e:?}")),
    }
}

/// `GET path` on `c` without panicking; `None` if the connection failed.
pub fn try_get(c: &mut Client, path: &str) -> Option<Resp> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    c.send(req.as_bytes()).ok()?;
    c.read_final(false).ok()
}

/// The outcome of [`await_final_all`].
#[derive(Debug, Default)]
pub struct Finals {
    /// Final `/response` bodies by id.
    pub done: HashMap<String, serde_json::Value>,
    /// Ids not final by the deadline, with the last thing seen for each.
    pub unfinished: Vec<(String, String)>,
}

/// Polls `GET /api/v1/response/{id}` for every id (spread over `threads` connections) until each
/// is final (200) or `deadline` passes. 202, 404 and 503 answers and broken connections are
/// retried (a restarting broker or Redis); the last one seen is reported for unfinished ids.
pub fn await_final_all(
    addr: SocketAddr,
    ids: &[String],
    deadline: Instant,
    threads: usize,
) -> Finals {
    let threads = threads.clamp(1, ids.len().max(1));
    let chunks: Vec<Vec<String>> = (0..threads)
        .map(|t| ids.iter().skip(t).step_by(threads).cloned().collect())
        .collect();
    let handles: Vec<_> = chunks
        .into_iter()
        .map(|mut pending| {
            std::thread::spawn(move || {
                let mut out = Finals::default();
                let mut last: HashMap<String, String> = HashMap::new();
                let mut client: Option<Client> = None;
                while !pending.is_empty() && Instant::now() < deadline {
                    let mut still = Vec::with_capacity(pending.len());
                    for id in pending {
                        if Instant::now() >= deadline {
                            still.push(id);
                            continue;
                        }
                        if client.is_none() {
                            client = Client::try_connect(addr).ok();
                        }
                        let r = client
                            .as_mut()
                            .and_then(|c| try_get(c, &format!("/api/v1/response/{id}")));
                        match r {
                            Some(r) if r.status == 200 => {
                                out.done.insert(id, r.json());
                            }
                            Some(r) => {
                                if r.closes() {
                                    client = None;
                                }
                                last.insert(id.clone(), format!("{} {}", r.status, r.text()));
                                still.push(id);
                            }
                            None => {
                                client = None;
                                last.insert(id.clone(), "connection failed".into());
                                still.push(id);
                            }
                        }
                    }
                    pending = still;
                    if !pending.is_empty() {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
                out.unfinished = pending
                    .into_iter()
                    .map(|id| {
                        let seen = last.remove(&id).unwrap_or_else(|| "never polled".into());
                        (id, seen)
                    })
                    .collect();
                out
            })
        })
        .collect();
    let mut all = Finals::default();
    for h in handles {
        let part = h.join().expect("poller thread panicked");
        all.done.extend(part.done);
        all.unfinished.extend(part.unfinished);
    }
    all
}

/// A random (time- and counter-seeded) lowercase UUIDv4 text, for ids nobody submitted.
pub fn random_uuid() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut x = t ^ N
        .fetch_add(1, Ordering::Relaxed)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        | 1;
    let mut bytes = [0u8; 16];
    for b in &mut bytes {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}
