//! A small HTTP/1.1 upstream for tests, on a free loopback port: each connection in a thread of
//! its own, each request answered by the test's handler with what to do (answer, answer and
//! close, wait first, close or reset the connection). It counts connections and requests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// A request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Method, target and version line.
    pub line: String,
    /// Header lines as received (`Name: value`).
    pub headers: Vec<String>,
    /// The body.
    pub body: Vec<u8>,
}

impl Seen {
    /// The value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find_map(|h| {
            let (n, v) = h.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// What the upstream does with one request.
pub enum Reply {
    /// Writes these bytes and keeps the connection.
    Raw(Vec<u8>),
    /// Writes these bytes and closes the connection.
    RawThenClose(Vec<u8>),
    /// Waits, then does the inner reply (a slow upstream; the wait is the behaviour under test).
    After(Duration, Box<Reply>),
    /// Closes the connection without answering.
    Drop,
    /// Resets the connection (`SO_LINGER` 0, then close: the peer gets a TCP RST).
    Reset,
}

impl Reply {
    /// `status` with a JSON body and its length.
    pub fn json(status: u16, body: &str) -> Reply {
        Reply::Raw(
            format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes(),
        )
    }
}

type Handler = dyn Fn(usize, &Seen) -> Reply + Send + Sync;

/// A running test upstream; stops accepting on drop.
pub struct Upstream {
    /// Where it listens.
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl Upstream {
    /// Starts an upstream that answers request number `n` (from 0, over all connections) with
    /// `handler(n, request)`.
    pub fn start(handler: impl Fn(usize, &Seen) -> Reply + Send + Sync + 'static) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        listener.set_nonblocking(true).expect("nonblocking");
        let handler: Arc<Handler> = Arc::new(handler);
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, r, s) = (connections.clone(), requests.clone(), stop.clone());
        let acceptor = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        c.fetch_add(1, Ordering::SeqCst);
                        let (h, r) = (handler.clone(), r.clone());
                        std::thread::spawn(move || serve(stream, &*h, &r));
                    }
                    // Polls for new connections and for the stop flag.
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Upstream {
            addr,
            connections,
            requests,
            stop,
            acceptor: Some(acceptor),
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Requests received so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

fn serve(stream: TcpStream, handler: &Handler, requests: &AtomicUsize) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end().to_owned();
            if h.is_empty() {
                break;
            }
            headers.push(h);
        }
        let mut seen = Seen {
            line: line.trim_end().to_owned(),
            headers,
            body: Vec::new(),
        };
        let len: usize = seen
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        seen.body = vec![0; len];
        if reader.read_exact(&mut seen.body).is_err() {
            return;
        }
        let n = requests.fetch_add(1, Ordering::SeqCst);
        let mut reply = handler(n, &seen);
        loop {
            match reply {
                Reply::After(wait, inner) => {
                    std::thread::sleep(wait);
                    reply = *inner;
                }
                Reply::Raw(bytes) => {
                    if writer.write_all(&bytes).is_err() {
                        return;
                    }
                    break;
                }
                Reply::RawThenClose(bytes) => {
                    let _ = writer.write_all(&bytes);
                    return;
                }
                Reply::Drop => return,
                Reply::Reset => {
                    reset(&writer);
                    return;
                }
            }
        }
    }
}

/// Makes the close of `stream` (and of its clones) a reset.
fn reset(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a `linger` of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER: {}", std::io::Error::last_os_error());
}

/// A gate a test opens: an upstream that answers only once it is open (`Upstream::gated`), so
/// "the upstream call is still running" is a condition the test sets up, not a timing. Opened
/// on drop, so the upstream's threads end.
pub struct Gate(Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>);

impl Gate {
    /// Lets every waiting and later request through.
    pub fn open(&self) {
        *self.0 .0.lock().unwrap() = true;
        self.0 .1.notify_all();
    }

    fn wait(&self) {
        let (open, cv) = &*self.0;
        let mut open = open.lock().unwrap();
        while !*open {
            open = cv.wait(open).unwrap();
        }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.open();
    }
}

impl Upstream {
    /// An upstream that echoes each request's body as JSON once the returned gate is open.
    pub fn gated() -> (Upstream, Gate) {
        let inner = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let waiting = Gate(inner.clone());
        let up = Upstream::start(move |_, seen| {
            waiting.wait();
            Reply::json(200, std::str::from_utf8(&seen.body).unwrap())
        });
        (up, Gate(inner))
    }
}
