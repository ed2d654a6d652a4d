//! Shared harness for the integration tests: a [`Broker`] (the real `openhqm` binary on a free
//! loopback port) and a tiny raw HTTP/1.1 client ([`Client`]) that works on bytes, so tests can
//! send anything, including what no well-behaved client would. Every socket read has a timeout,
//! so no test can hang on a silent server. Tests wait with [`wait_until`] / [`wait_for`]: for a
//! condition under a deadline, never for a fixed time.

// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

pub mod in_process;
pub mod redis;
pub mod upstream;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Default read/write timeout of test sockets.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a broker may take to print its "listening" line.
const START_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// The broker process.
// ---------------------------------------------------------------------------------------------

/// A running `openhqm` process, killed (SIGKILL) and reaped on drop if still alive.
pub struct Broker {
    child: Child,
    /// The address it listens on.
    pub addr: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
    exit: Option<ExitStatus>,
}

impl Broker {
    /// Starts a broker with the default harness flags.
    pub fn start() -> Broker {
        Broker::start_with(&[])
    }

    /// Starts a broker with `--host 127.0.0.1 --port 0 --log-format json` plus `extra` flags and
    /// waits (bounded) for its "listening" line.
    pub fn start_with(extra: &[&str]) -> Broker {
        Broker::start_with_env(extra, &[])
    }

    /// [`Broker::start_with`], with these environment variables set.
    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Broker {
        Broker::start_command(broker_command(), extra, env)
    }

    /// [`Broker::start_with`] in a process whose descriptor limit (`RLIMIT_NOFILE`, soft and
    /// hard) is `nofile`.
    pub fn start_with_nofile(nofile: u64, extra: &[&str]) -> Broker {
        use std::os::unix::process::CommandExt;
        let mut cmd = broker_command();
        // SAFETY: setrlimit is async-signal-safe and touches only the struct passed.
        unsafe {
            cmd.pre_exec(move || {
                let lim = libc::rlimit {
                    rlim_cur: nofile,
                    rlim_max: nofile,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Broker::start_command(cmd, extra, &[])
    }

    fn start_command(mut cmd: Command, extra: &[&str], env: &[(&str, &str)]) -> Broker {
        let mut child = cmd
            .args(["--host", "127.0.0.1", "--port", "0", "--log-format", "json"])
            .args(extra)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn openhqm");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            pump(child.stdout.take().expect("stdout"), lines.clone()),
            pump(child.stderr.take().expect("stderr"), stderr.clone()),
        ];
        let mut broker = Broker {
            child,
            addr: ([0, 0, 0, 0], 0).into(),
            lines,
            stderr,
            readers,
            exit: None,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(addr) = broker.find_listening() {
                broker.addr = addr;
                return broker;
            }
            if let Some(status) = broker.child.try_wait().expect("try_wait") {
                broker.exit = Some(status);
                for r in broker.readers.drain(..) {
                    let _ = r.join();
                }
                panic!(
                    "openhqm exited during start-up ({status}); stdout: {:?}; stderr: {:?}",
                    broker.logs(),
                    broker.stderr_lines()
                );
            }
            assert!(
                Instant::now() < deadline,
                "openhqm printed no \"listening\" line within {START_TIMEOUT:?}; stdout: {:?}",
                broker.logs()
            );
            std::thread::sleep(POLL_EVERY);
        }
    }

    fn find_listening(&self) -> Option<SocketAddr> {
        let lines = self.lines.lock().unwrap();
        lines.iter().find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            if v["message"] != "listening" {
                return None;
            }
            v["addr"].as_str()?.parse().ok()
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed: {status}");
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.exit.is_some() {
            return self.exit;
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.exit = Some(status);
                // The pipes are closed now; let the readers finish so `logs()` is complete.
                for r in self.readers.drain(..) {
                    let _ = r.join();
                }
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(POLL_EVERY);
        }
    }

    /// Every stdout line so far.
    pub fn logs(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Every stderr line so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// A fresh keep-alive connection to the broker.
    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if self.exit.is_none() {
            if let Ok(None) = self.child.try_wait() {
                let _ = self.child.kill();
            }
            let _ = self.child.wait();
        }
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }
}

/// The broker binary with every `OPENHQM_*` variable removed from its environment: the broker
/// treats those as configuration (and refuses unknown ones), so settings of the test run itself,
/// such as `REQUIRE_PROMTOOL`, must not leak into it.
fn broker_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_openhqm"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("OPENHQM_") {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// Reads lines from a pipe into `into` until EOF, so the child never blocks on a full pipe.
fn pump<R: Read + Send + 'static>(pipe: R, into: Arc<Mutex<Vec<String>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line).trim_end().to_owned();
                    into.lock().unwrap().push(text);
                }
            }
        }
    })
}

/// Runs the broker binary with `args` to completion (bounded; killed and a panic on timeout);
/// returns (status, stdout, stderr). `--host 127.0.0.1 --port 0` come first, so a broker that
/// wrongly starts never binds a fixed or public port.
pub fn run_to_exit(args: &[&str], timeout: Duration) -> (ExitStatus, String, String) {
    run_to_exit_env(args, &[], timeout)
}

/// [`run_to_exit`] with extra environment variables.
pub fn run_to_exit_env(
    args: &[&str],
    env: &[(&str, &str)],
    timeout: Duration,
) -> (ExitStatus, String, String) {
    let mut child = broker_command()
        .args(["--host", "127.0.0.1", "--port", "0"])
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn openhqm");
    let out = Arc::new(Mutex::new(Vec::new()));
    let err = Arc::new(Mutex::new(Vec::new()));
    let readers = [
        pump(child.stdout.take().expect("stdout"), out.clone()),
        pump(child.stderr.take().expect("stderr"), err.clone()),
    ];
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("openhqm {args:?} did not exit within {timeout:?}");
        }
        std::thread::sleep(POLL_EVERY);
    };
    for r in readers {
        let _ = r.join();
    }
    let join = |v: &Arc<Mutex<Vec<String>>>| v.lock().unwrap().join("\n");
    (status, join(&out), join(&err))
}

// ---------------------------------------------------------------------------------------------
// Responses.
// ---------------------------------------------------------------------------------------------

/// One parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Resp {
    /// Status code.
    pub status: u16,
    /// Header fields, names lowercased, in order.
    pub headers: Vec<(String, String)>,
    /// The body (empty for HEAD, 1xx, 204).
    pub body: Vec<u8>,
    /// Interim (1xx) statuses received before this final response.
    pub interim: Vec<u16>,
}

impl Resp {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name`.
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body as JSON (panics with the body text if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {} body is not JSON ({e}): {:?}",
                self.status,
                self.text()
            )
        })
    }

    /// The body as (lossy) text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Whether the server announced it will close the connection.
    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// Why reading a response failed.
#[derive(Debug)]
pub enum ReadError {
    /// The connection ended (EOF or reset) before any byte of the response.
    Closed,
    /// The connection ended or timed out part-way through a response (`n` bytes received).
    Truncated(usize, String),
    /// No byte arrived within the read timeout.
    Timeout,
    /// The bytes are not an HTTP response.
    Malformed(String),
}

// ---------------------------------------------------------------------------------------------
// The raw client.
// ---------------------------------------------------------------------------------------------

/// One connection: raw writes, response parsing with leftover bytes kept for pipelining.
pub struct Client {
    /// The socket.
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    /// Connects with [`IO_TIMEOUT`] read and write timeouts.
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    /// Connects, returning the error instead of panicking.
    pub fn try_connect(addr: SocketAddr) -> io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Client {
            stream,
            buf: Vec::new(),
        })
    }

    /// Changes the read timeout.
    pub fn set_read_timeout(&self, t: Duration) {
        self.stream.set_read_timeout(Some(t)).unwrap();
    }

    /// Writes all of `bytes`.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Reads more bytes into the buffer; Ok(0) at EOF.
    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    fn fill_or(&mut self, started_with: usize) -> Result<(), ReadError> {
        match self.fill() {
            Ok(0) if self.buf.is_empty() && started_with == 0 => Err(ReadError::Closed),
            Ok(0) => Err(ReadError::Truncated(self.buf.len(), "EOF".into())),
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if self.buf.is_empty() {
                    Err(ReadError::Timeout)
                } else {
                    Err(ReadError::Truncated(
                        self.buf.len(),
                        format!("timeout: {e}"),
                    ))
                }
            }
            Err(_) if self.buf.is_empty() => Err(ReadError::Closed),
            Err(e) => Err(ReadError::Truncated(self.buf.len(), e.to_string())),
        }
    }

    /// Reads one response, interim (1xx) ones included. `head` says the request was HEAD (no
    /// body follows whatever `content-length` says).
    pub fn read_one(&mut self, head: bool) -> Result<Resp, ReadError> {
        let end = loop {
            if let Some(at) = find(&self.buf, b"\r\n\r\n") {
                break at;
            }
            if self.buf.len() > 1 << 20 {
                return Err(ReadError::Malformed("response head over 1 MiB".into()));
            }
            self.fill_or(0)?;
        };
        let head_text = String::from_utf8(self.buf[..end].to_vec())
            .map_err(|_| ReadError::Malformed("response head is not UTF-8".into()))?;
        let mut lines = head_text.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        if version != "HTTP/1.1" {
            return Err(ReadError::Malformed(format!(
                "bad status line {status_line:?}"
            )));
        }
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| ReadError::Malformed(format!("bad status line {status_line:?}")))?;
        let mut headers = Vec::new();
        for line in lines {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| ReadError::Malformed(format!("bad header line {line:?}")))?;
            headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
        }
        self.buf.drain(..end + 4);
        let mut resp = Resp {
            status,
            headers,
            body: Vec::new(),
            interim: Vec::new(),
        };
        if (100..200).contains(&status) || status == 204 || status == 304 || head {
            return Ok(resp);
        }
        let len: usize = match resp.header("content-length") {
            Some(v) => v
                .parse()
                .map_err(|_| ReadError::Malformed(format!("bad content-length {v:?}")))?,
            None => {
                // Read to EOF.
                loop {
                    match self.fill() {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(e) => return Err(ReadError::Truncated(self.buf.len(), e.to_string())),
                    }
                }
                resp.body = std::mem::take(&mut self.buf);
                return Ok(resp);
            }
        };
        while self.buf.len() < len {
            self.fill_or(end + 4)?;
        }
        resp.body = self.buf.drain(..len).collect();
        Ok(resp)
    }

    /// Reads the next final response, collecting interim statuses into `interim`.
    pub fn read_final(&mut self, head: bool) -> Result<Resp, ReadError> {
        let mut interim = Vec::new();
        loop {
            let mut r = self.read_one(head)?;
            if (100..200).contains(&r.status) {
                interim.push(r.status);
                continue;
            }
            r.interim = interim;
            return Ok(r);
        }
    }

    /// Reads the next final response; panics on failure.
    pub fn response(&mut self) -> Resp {
        self.read_final(false)
            .unwrap_or_else(|e| panic!("reading a response: {e:?}"))
    }

    /// Sends one request and reads its final response.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Resp {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
        for (n, v) in headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        if !body.is_empty() || method == "POST" {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        self.send(&bytes)
            .unwrap_or_else(|e| panic!("sending {method} {path}: {e}"));
        self.read_final(method == "HEAD")
            .unwrap_or_else(|e| panic!("reading the response to {method} {path}: {e:?}"))
    }

    /// `GET path`.
    pub fn get(&mut self, path: &str) -> Resp {
        self.request("GET", path, &[], b"")
    }

    /// `POST path` with a JSON body.
    pub fn post_json(&mut self, path: &str, body: &str) -> Resp {
        self.request(
            "POST",
            path,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
    }

    /// Submits `payload` (a JSON object text) and returns the 202's correlation id.
    pub fn submit(&mut self, payload: &str) -> String {
        let r = self.post_json("/api/v1/submit", &format!("{{\"payload\":{payload}}}"));
        assert_eq!(r.status, 202, "submit {payload}: {}", r.text());
        r.json()["correlation_id"]
            .as_str()
            .expect("correlation_id")
            .to_owned()
    }

    /// Submits `body`, a whole submit body; the correlation id of its 202.
    pub fn submit_body(&mut self, body: &str) -> String {
        let r = self.post_json("/api/v1/submit", body);
        assert_eq!(r.status, 202, "submit {body}: {}", r.text());
        r.json()["correlation_id"]
            .as_str()
            .expect("correlation_id")
            .to_owned()
    }

    /// Submits `body` and polls until it is final (20 s at most): its id and final response.
    pub fn submit_until_final(&mut self, body: &str) -> (String, serde_json::Value) {
        let id = self.submit_body(body);
        let v = wait_final(self, &id, Instant::now() + Duration::from_secs(20)).json();
        (id, v)
    }

    /// Whether the server closes the connection within `within`: EOF or reset, with no further
    /// response bytes. Panics if the server sends more bytes instead.
    pub fn closed_within(&mut self, within: Duration) -> bool {
        self.set_read_timeout(within);
        let deadline = Instant::now() + within;
        loop {
            match self.fill() {
                Ok(0) => break true,
                Ok(_) => panic!(
                    "expected the connection to close, got more bytes: {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    if Instant::now() >= deadline {
                        break false;
                    }
                }
                Err(_) => break true,
            }
        }
    }

    /// Half-closes the writing side.
    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Writes `bytes` on a fresh connection and reads `n` final responses (`head[i]` false for all).
/// Panics if fewer than `n` arrive.
pub fn send_raw(addr: SocketAddr, bytes: &[u8], n: usize) -> Vec<Resp> {
    send_raw_keep(addr, bytes, n).1
}

/// Like [`send_raw`], but also hands back the connection for further checks.
pub fn send_raw_keep(addr: SocketAddr, bytes: &[u8], n: usize) -> (Client, Vec<Resp>) {
    let mut c = Client::connect(addr);
    c.send(bytes)
        .unwrap_or_else(|e| panic!("writing {} bytes: {e}", bytes.len()));
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        match c.read_final(false) {
            Ok(r) => out.push(r),
            Err(e) => panic!("response {i} of {n}: {e:?} (got so far: {out:?})"),
        }
    }
    (c, out)
}

/// Sends one raw request on a fresh connection; asserts exactly one response then a close.
pub fn send_raw_expect_close(addr: SocketAddr, bytes: &[u8]) -> Resp {
    let (mut c, mut out) = send_raw_keep(addr, bytes, 1);
    assert!(
        c.closed_within(Duration::from_secs(5)),
        "connection should close after the error response {:?}",
        out[0]
    );
    out.remove(0)
}

/// `GET path` on a fresh connection.
pub fn get(addr: SocketAddr, path: &str) -> Resp {
    Client::connect(addr).get(path)
}

/// `POST path` with a JSON body on a fresh connection.
pub fn post_json(addr: SocketAddr, path: &str, body: &str) -> Resp {
    Client::connect(addr).post_json(path, body)
}

/// Asserts `GET /health` on a new connection answers 200 healthy.
pub fn assert_healthy(addr: SocketAddr) {
    let r = get(addr, "/health");
    assert_eq!(r.status, 200, "health: {}", r.text());
    assert_eq!(r.json()["status"], "healthy");
}

/// Asserts `r` is an error with `status` and a JSON body that has `detail`.
pub fn assert_error(r: &Resp, status: u16) -> serde_json::Value {
    assert_eq!(r.status, status, "unexpected status; body {:?}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("application/json"),
        "error content-type"
    );
    let v = r.json();
    assert!(v.get("detail").is_some(), "error body has no detail: {v}");
    let d = &v["detail"];
    assert!(
        d.as_str().is_some_and(|s| !s.is_empty()) || d.as_array().is_some_and(|a| !a.is_empty()),
        "detail should be a non-empty string or list: {v}"
    );
    v
}

/// A response body of a request that is not final: every outcome field null (its presence is
/// checked with the body's keys).
pub fn assert_outcome_null(v: &serde_json::Value) {
    for k in [
        "result",
        "headers",
        "status_code",
        "error",
        "processing_time_ms",
        "completed_at",
    ] {
        assert_eq!(
            v[k],
            serde_json::Value::Null,
            "{k} should be null while not final: {v}"
        );
    }
}

/// Whether `s` is an RFC 3339 UTC timestamp ending in `Z`: `YYYY-MM-DDTHH:MM:SS[.frac]Z`.
pub fn is_rfc3339_utc(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 20 || *b.last().unwrap() != b'Z' {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let fixed = digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    if !fixed {
        return false;
    }
    let month: u32 = s[5..7].parse().unwrap();
    let day: u32 = s[8..10].parse().unwrap();
    let hour: u32 = s[11..13].parse().unwrap();
    let min: u32 = s[14..16].parse().unwrap();
    let sec: u32 = s[17..19].parse().unwrap();
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return false;
    }
    let rest = &b[19..b.len() - 1];
    rest.is_empty()
        || (rest[0] == b'.' && rest.len() > 1 && rest[1..].iter().all(u8::is_ascii_digit))
}

/// Whether `s` is a canonical lowercase UUIDv4 text.
pub fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(&c),
        })
}

/// Polls `GET /api/v1/response/{id}` on `client` until it is 200 (final) or `deadline` passes.
#[track_caller]
pub fn wait_final(client: &mut Client, id: &str, deadline: Instant) -> Resp {
    wait_for(deadline, &format!("response/{id} to be final"), || {
        let r = client.get(&format!("/api/v1/response/{id}"));
        match r.status {
            200 => Ok(r),
            202 => Err(r.text()),
            other => panic!("response/{id}: unexpected {other}: {}", r.text()),
        }
    })
}

/// The value of one exact series (`name{labels}`, as the exposition writes it) in a fresh
/// `GET /metrics` from `addr`; `None` if the series is absent.
pub fn metric(addr: SocketAddr, series: &str) -> Option<f64> {
    let r = get(addr, "/metrics");
    assert_eq!(r.status, 200, "/metrics: {}", r.text());
    r.text().lines().find_map(|l| {
        let value = l.strip_prefix(series)?.strip_prefix(' ')?;
        Some(
            value
                .parse()
                .unwrap_or_else(|_| panic!("bad sample line {l:?}")),
        )
    })
}

// ---------------------------------------------------------------------------------------------
// Waiting for conditions.
// ---------------------------------------------------------------------------------------------

/// The pause between two checks of a condition in [`wait_until`] and [`wait_for`].
pub const POLL_EVERY: Duration = Duration::from_millis(10);

/// Checks `ready` every [`POLL_EVERY`] until it holds; panics naming `what` once `deadline` has
/// passed. Tests wait for the condition they need, never for a fixed time: a fixed sleep is too
/// long on an idle machine and too short on a loaded one, and then the test checks nothing.
#[track_caller]
pub fn wait_until(deadline: Instant, what: &str, mut ready: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "gave up waiting for {what} after {:?}",
            started.elapsed()
        );
        std::thread::sleep(POLL_EVERY);
    }
}

/// [`wait_until`] for a condition that yields a value: `poll` returns `Ok(value)` once it holds
/// and `Err(seen)` before; the last `seen` goes into the panic message.
#[track_caller]
pub fn wait_for<T, S: std::fmt::Debug>(
    deadline: Instant,
    what: &str,
    mut poll: impl FnMut() -> Result<T, S>,
) -> T {
    let started = Instant::now();
    loop {
        match poll() {
            Ok(value) => return value,
            Err(seen) => assert!(
                Instant::now() < deadline,
                "gave up waiting for {what} after {:?}; last seen: {seen:?}",
                started.elapsed()
            ),
        }
        std::thread::sleep(POLL_EVERY);
    }
}

/// Runs `promtool check metrics` on `text` if promtool is installed.
pub fn promtool_check(text: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            assert!(
                std::env::var("REQUIRE_PROMTOOL").as_deref() != Ok("1"),
                "promtool is not on PATH and REQUIRE_PROMTOOL=1"
            );
            println!("SKIP: promtool not on PATH; only the structural /metrics check ran");
            return;
        }
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
