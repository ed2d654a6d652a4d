//! One shard's keep-alive connections to one upstream, on the shard's own runtime: at
//! most `max` open at once (a request beyond waits for one to free up, within its own deadline),
//! idle ones reused, and each exchange bounded by a deadline. A reused connection that the
//! upstream had already closed (nothing received) is replaced by a fresh one once. `https://`
//! upstreams get rustls over the same connections (the handshake inside the connect deadline).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use monoio::buf::{IoBufMut, SliceMut};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use monoio_rustls::{ClientTlsStream, TlsConnector};
use rustls::pki_types::ServerName;

use super::resolver::Addresses;
use super::response::{Read, ResponseError, ResponseReader, UpstreamResponse};
use crate::sync::deadline::Deadline;
use crate::sync::notify::Notify;

/// First read buffer of an exchange, and the step it grows by.
const READ_CHUNK: usize = 16 * 1024;

/// Why an exchange with the upstream failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamError {
    /// The connection could not be opened (refused, unreachable) or not in time.
    Connect(io::ErrorKind),
    /// No complete response within the attempt's deadline.
    Timeout,
    /// The connection failed while the request or the response was on it.
    Io(io::ErrorKind),
    /// The response was not HTTP/1.x, or its framing could not be trusted.
    Malformed(&'static str),
    /// The response was larger than allowed.
    TooLarge,
    /// The TLS handshake failed (an untrusted or mismatched certificate, a protocol error).
    Tls,
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpstreamError::Connect(k) => write!(f, "cannot connect to the upstream: {k}"),
            UpstreamError::Timeout => write!(f, "the upstream did not answer in time"),
            UpstreamError::Io(k) => write!(f, "the upstream connection failed: {k}"),
            UpstreamError::Malformed(why) => write!(f, "unreadable upstream response: {why}"),
            UpstreamError::TooLarge => write!(f, "the upstream response is too large"),
            UpstreamError::Tls => write!(f, "the TLS handshake with the upstream failed"),
        }
    }
}

impl UpstreamError {
    /// The metric label of this kind of failure.
    pub fn kind_label(&self) -> &'static str {
        match self {
            UpstreamError::Connect(_) => "connect_error",
            UpstreamError::Timeout => "timeout",
            UpstreamError::Io(_) => "io_error",
            UpstreamError::Malformed(_) => "malformed",
            UpstreamError::TooLarge => "too_large",
            UpstreamError::Tls => "tls_error",
        }
    }
}

impl From<ResponseError> for UpstreamError {
    fn from(e: ResponseError) -> Self {
        match e {
            ResponseError::Malformed(why) => UpstreamError::Malformed(why),
            ResponseError::TooLarge => UpstreamError::TooLarge,
        }
    }
}

/// TLS to an upstream: the client configuration and the name its certificate must show.
#[derive(Clone)]
pub struct Tls {
    /// rustls over monoio.
    pub connector: TlsConnector,
    /// The server name checked against the certificate (and sent as SNI).
    pub name: ServerName<'static>,
}

/// One connection: plain, or TLS over it.
enum Io {
    Plain(TcpStream),
    Tls(Box<ClientTlsStream<TcpStream>>),
}

/// A connection with the timer that bounds its exchanges (allocated once, re-armed per
/// exchange: `monoio::time::timeout` per request showed up as an aligned allocation and its
/// page faults in profiles).
struct Conn {
    io: Io,
    deadline: Deadline,
}

impl Io {
    async fn write_all(&mut self, buf: Bytes) -> io::Result<()> {
        match self {
            Io::Plain(s) => s.write_all(buf).await.0.map(drop),
            Io::Tls(s) => s.write_all(buf).await.0.map(drop),
        }
    }

    async fn read(&mut self, buf: SliceMut<BytesMut>) -> (io::Result<usize>, SliceMut<BytesMut>) {
        match self {
            Io::Plain(s) => s.read(buf).await,
            Io::Tls(s) => s.read(buf).await,
        }
    }
}

/// One request's exchange, as the pool needs it. Its `Debug` leaves the request's bytes out:
/// they carry the auth header.
#[derive(Clone)]
pub struct Exchange {
    /// The encoded request (`request::encode`).
    pub request: Bytes,
    /// Whether it is a `HEAD` (its response has no body).
    pub head_request: bool,
    /// Largest response body accepted.
    pub max_body: usize,
    /// Deadline of the whole attempt: waiting for a connection, connecting, sending, reading.
    pub timeout: Duration,
}

impl fmt::Debug for Exchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exchange")
            .field("request_bytes", &self.request.len())
            .field("head_request", &self.head_request)
            .field("max_body", &self.max_body)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Keep-alive connections to one upstream.
pub struct Pool {
    addrs: Addresses,
    max: usize,
    connect_timeout: Duration,
    tls: Option<Tls>,
    idle: RefCell<Vec<Conn>>,
    open: Cell<usize>,
    opened: Cell<u64>,
    freed: Notify,
}

impl Pool {
    /// A pool of at most `max` connections to the first of `addrs` that accepts (the addresses
    /// a host name resolves to), over TLS when `tls` is given; a connect (with its handshake)
    /// may take `connect_timeout`.
    pub fn new(
        addrs: Addresses,
        max: usize,
        connect_timeout: Duration,
        tls: Option<Tls>,
    ) -> Self {
        Pool {
            addrs,
            max: max.max(1),
            connect_timeout,
            tls,
            idle: RefCell::default(),
            open: Cell::new(0),
            opened: Cell::new(0),
            freed: Notify::new(),
        }
    }

    /// Connections opened since the pool was made.
    #[cfg(any(test, feature = "internals"))]
    pub fn opened(&self) -> u64 {
        self.opened.get()
    }

    /// Connections open now (in use or idle).
    #[cfg(any(test, feature = "internals"))]
    pub fn open(&self) -> usize {
        self.open.get()
    }

    /// Sends one request and reads its response, within `ex.timeout` (waiting for a
    /// connection, connecting, sending and reading together).
    pub async fn send(&self, ex: &Exchange) -> Result<UpstreamResponse, UpstreamError> {
        let until = Instant::now() + ex.timeout;
        let left = || until.saturating_duration_since(Instant::now());
        let mut fresh_only = false;
        loop {
            // The everyday case, an idle connection, takes no timer; waiting or connecting does.
            let mut lease = match self.take_idle(fresh_only) {
                Some(lease) => lease,
                None => match monoio::time::timeout(left(), self.acquire(fresh_only)).await {
                    Ok(lease) => lease?,
                    Err(_) => return Err(UpstreamError::Timeout),
                },
            };
            let reused = lease.reused;
            let conn = lease.stream();
            let done = conn.deadline.run(left(), exchange(&mut conn.io, ex)).await;
            let Ok(done) = done else {
                // Past the deadline: the connection goes, its response unread.
                return Err(UpstreamError::Timeout);
            };
            match done {
                Ok(resp) => {
                    if resp.reusable {
                        lease.keep();
                    }
                    return Ok(resp);
                }
                Err((e, received)) => {
                    drop(lease);
                    // An idle connection the upstream closed meanwhile: nothing was received,
                    // so the request was not answered; once more on a fresh connection.
                    if reused && !received && !fresh_only {
                        fresh_only = true;
                        continue;
                    }
                    return Err(e);
                }
            }
        }
    }

    /// An idle connection, unless `fresh_only`.
    fn take_idle(&self, fresh_only: bool) -> Option<Lease<'_>> {
        if fresh_only {
            return None;
        }
        let stream = self.idle.borrow_mut().pop()?;
        Some(Lease {
            pool: self,
            stream: Some(stream),
            reused: true,
            keep: false,
        })
    }

    /// A connection: an idle one (unless `fresh_only`), a new one while fewer than `max` are
    /// open, else the next one freed.
    async fn acquire(&self, fresh_only: bool) -> Result<Lease<'_>, UpstreamError> {
        loop {
            if !fresh_only {
                if let Some(stream) = self.idle.borrow_mut().pop() {
                    return Ok(Lease {
                        pool: self,
                        stream: Some(stream),
                        reused: true,
                        keep: false,
                    });
                }
            } else if self.open.get() >= self.max && !self.idle.borrow().is_empty() {
                // Make room for the fresh one by closing an idle one.
                drop(self.idle.borrow_mut().pop());
                self.open.set(self.open.get() - 1);
            }
            if self.open.get() < self.max {
                self.open.set(self.open.get() + 1);
                self.opened.set(self.opened.get() + 1);
                // Counted from here: a failed or abandoned connect gives the place back.
                let mut lease = Lease {
                    pool: self,
                    stream: None,
                    reused: false,
                    keep: false,
                };
                let conn = match monoio::time::timeout(self.connect_timeout, self.connect()).await {
                    Ok(Ok(c)) => c,
                    Ok(Err(e)) => return Err(e),
                    Err(_) => {
                        self.addrs.unreachable();
                        return Err(UpstreamError::Connect(io::ErrorKind::TimedOut));
                    }
                };
                lease.stream = Some(conn);
                return Ok(lease);
            }
            self.freed.notified().await;
        }
    }
}

impl Pool {
    /// A new connection, with its TLS handshake where the upstream is `https://`.
    async fn connect(&self) -> Result<Conn, UpstreamError> {
        let mut failed = io::ErrorKind::AddrNotAvailable;
        let mut connected = None;
        // Each address gets its share of the connect time, so one that drops packets cannot
        // keep the next from being tried.
        let addrs = self.addrs.current();
        let share = self.connect_timeout / addrs.len().max(1) as u32;
        for addr in addrs.iter() {
            match monoio::time::timeout(share, TcpStream::connect(*addr)).await {
                Ok(Ok(s)) => {
                    connected = Some(s);
                    break;
                }
                Ok(Err(e)) => failed = e.kind(),
                Err(_) => failed = io::ErrorKind::TimedOut,
            }
        }
        let Some(stream) = connected else {
            self.addrs.unreachable();
            return Err(UpstreamError::Connect(failed));
        };
        let _ = stream.set_nodelay(true);
        let io = match &self.tls {
            None => Io::Plain(stream),
            Some(tls) => tls
                .connector
                .connect(tls.name.clone(), stream)
                .await
                .map(|s| Io::Tls(Box::new(s)))
                .map_err(|_| UpstreamError::Tls)?,
        };
        Ok(Conn {
            io,
            deadline: Deadline::default(),
        })
    }
}

/// A connection taken from the pool; back to the idle list when kept, else closed.
struct Lease<'p> {
    pool: &'p Pool,
    stream: Option<Conn>,
    reused: bool,
    keep: bool,
}

impl Lease<'_> {
    fn stream(&mut self) -> &mut Conn {
        self.stream.as_mut().expect("a lease holds its connection")
    }

    fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        match self.stream.take() {
            Some(stream) if self.keep => self.pool.idle.borrow_mut().push(stream),
            _ => self.pool.open.set(self.pool.open.get() - 1),
        }
        self.pool.freed.notify();
    }
}

/// Writes the request and reads the response. On failure, also whether any response byte came.
async fn exchange(
    stream: &mut Io,
    ex: &Exchange,
) -> Result<UpstreamResponse, (UpstreamError, bool)> {
    if let Err(e) = stream.write_all(ex.request.clone()).await {
        return Err((UpstreamError::Io(e.kind()), false));
    }
    let mut reader = ResponseReader::new(ex.max_body, ex.head_request);
    let mut input = BytesMut::with_capacity(READ_CHUNK);
    let mut received = false;
    loop {
        if input.capacity() - input.len() < READ_CHUNK / 4 {
            input.reserve(READ_CHUNK);
        }
        let (len, cap) = (input.len(), input.capacity());
        let (r, buf) = stream.read(input.slice_mut(len..cap)).await;
        input = buf.into_inner();
        match r {
            Ok(0) => {
                return reader.closed().map_err(|e| (e.into(), received));
            }
            Ok(_) => {
                received = true;
                match reader.read(&mut input) {
                    Ok(Read::Done(mut resp)) => {
                        // Bytes after the response: the connection cannot be trusted again.
                        resp.reusable &= input.is_empty();
                        return Ok(resp);
                    }
                    Ok(Read::NeedMore) => {}
                    Err(e) => return Err((e.into(), true)),
                }
            }
            Err(e) => return Err((UpstreamError::Io(e.kind()), received)),
        }
    }
}
