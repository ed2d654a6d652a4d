//! One pipelined Redis connection, owned by one shard. Callers append encoded commands to a shared
//! output buffer and wait for their replies; a writer task sends whatever accumulated in one write
//! (so every command a shard produces in one event-loop turn goes out together), and a reader task
//! hands replies back in order. A driver task (re)connects with exponential backoff and jitter,
//! authenticates (`AUTH`), selects the database, and fails every waiter with `Unavailable` when
//! the connection drops. Every call has a deadline.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt, Splitable};
use tracing::{info, warn};

use super::encode::command;
use super::frame::{Frame, ProtocolError};
use super::script::Script;
use super::stream::{read_more, Connector, RedisStream};
use super::url::RedisTarget;
use super::Cmd;
use crate::metrics::Histogram;
use crate::sync::notify::Notify;
use crate::sync::oneshot;

/// Why a Redis call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisError {
    /// Not connected (refused, reset, reconnecting).
    Unavailable,
    /// No reply within the deadline.
    Timeout,
    /// Redis answered with an error (`-OOM ...`, `-NOGROUP ...`, `-LOADING ...`).
    Server(Bytes),
    /// The reply was not valid RESP, or not the expected shape.
    Protocol(&'static str),
}

impl RedisError {
    /// The error code of a server error (`OOM`, `BUSYGROUP`, ...).
    pub fn code(&self) -> Option<&[u8]> {
        match self {
            RedisError::Server(msg) => msg.split(|&b| b == b' ').next(),
            _ => None,
        }
    }
}

impl std::fmt::Display for RedisError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RedisError::Unavailable => f.write_str("redis unavailable"),
            RedisError::Timeout => f.write_str("redis deadline exceeded"),
            RedisError::Server(m) => write!(f, "redis error: {}", String::from_utf8_lossy(m)),
            RedisError::Protocol(m) => write!(f, "redis protocol error: {m}"),
        }
    }
}

type Reply = Result<Vec<Frame>, RedisError>;

struct Waiter {
    want: usize,
    got: Vec<Frame>,
    /// Taken when the caller is answered early (its deadline passed): the waiter stays in line
    /// to absorb its reply when that comes.
    tx: Option<oneshot::Sender<Reply>>,
    sent: Instant,
    deadline: Instant,
}

#[derive(Default)]
struct State {
    up: bool,
    out: BytesMut,
    waiters: VecDeque<Waiter>,
}

struct Inner {
    target: RedisTarget,
    /// How connections are made (TLS configured once).
    connector: Connector,
    deadline: Duration,
    label: &'static str,
    state: RefCell<State>,
    wake_writer: Notify,
    reconnects: Cell<u64>,
    /// Round-trip times of answered calls, when this connection records them.
    round_trips: Option<RefCell<Histogram>>,
}

/// A handle on one pipelined connection (cheap to clone; all clones share it).
#[derive(Clone)]
pub struct Client {
    inner: Rc<Inner>,
}

/// Longest wait between reconnect attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How often calls past their deadline are answered with `Timeout`: a deadline fires up to this
/// late.
const DEADLINE_TICK: Duration = Duration::from_millis(100);

impl Client {
    /// Starts the connection's driver on the current shard. `label` names it in logs; with
    /// `record_round_trips` it keeps a histogram of call round-trip times (not for a connection
    /// whose calls block on purpose).
    pub fn start(
        target: RedisTarget,
        deadline: Duration,
        label: &'static str,
        record_round_trips: bool,
    ) -> Client {
        let connector = Connector::new(&target);
        let inner = Rc::new(Inner {
            connector,
            target,
            deadline,
            label,
            state: RefCell::default(),
            wake_writer: Notify::new(),
            reconnects: Cell::new(0),
            round_trips: record_round_trips.then(RefCell::default),
        });
        monoio::spawn(drive(inner.clone()));
        Client { inner }
    }

    /// Whether the connection is up now.
    pub fn is_up(&self) -> bool {
        self.inner.state.borrow().up
    }

    /// Times the connection was lost.
    pub fn reconnects(&self) -> u64 {
        self.inner.reconnects.get()
    }

    /// A copy of the round-trip histogram (empty when not recorded).
    pub fn round_trips(&self) -> Histogram {
        self.inner
            .round_trips
            .as_ref()
            .map(|h| h.borrow().clone())
            .unwrap_or_default()
    }

    /// Sends the commands `encode` appends (expecting `replies` replies) and returns the replies
    /// in order. Fails fast with `Unavailable` while disconnected. Server errors are returned as
    /// `Frame::Error` items, not as `Err`, so a caller can inspect a batch.
    pub async fn pipeline(&self, replies: usize, encode: impl FnOnce(&mut BytesMut)) -> Reply {
        self.pipeline_within(self.inner.deadline, replies, encode)
            .await
    }

    /// [`Client::pipeline`] with its own deadline (blocking reads need a longer one).
    pub async fn pipeline_within(
        &self,
        deadline: Duration,
        replies: usize,
        encode: impl FnOnce(&mut BytesMut),
    ) -> Reply {
        let (rx, sent) = {
            let mut st = self.inner.state.borrow_mut();
            if !st.up {
                return Err(RedisError::Unavailable);
            }
            encode(&mut st.out);
            let (tx, rx) = oneshot::channel();
            let sent = Instant::now();
            st.waiters.push_back(Waiter {
                want: replies,
                got: Vec::with_capacity(replies),
                tx: Some(tx),
                sent,
                deadline: sent + deadline,
            });
            (rx, sent)
        };
        self.inner.wake_writer.notify();
        // No timer per call: `watch_for_stall` answers callers whose deadline passed with
        // `Timeout`, so a call costs no timer registration (PERFORMANCE.md section 8).
        match rx.await {
            Some(Ok(frames)) => {
                if let Some(h) = &self.inner.round_trips {
                    h.borrow_mut().observe(sent.elapsed().as_secs_f64());
                }
                Ok(frames)
            }
            Some(Err(e)) => Err(e),
            None => Err(RedisError::Unavailable),
        }
    }

    /// Runs `script` by digest (`EVALSHA`), or by body (`EVAL`) when Redis has not cached it;
    /// an error reply becomes `Err(Server)`.
    pub async fn eval(
        &self,
        script: &Script,
        keys: &[&[u8]],
        args: &[&[u8]],
    ) -> Result<Frame, RedisError> {
        let mut replies = self
            .pipeline(1, |out| script.encode_evalsha(out, keys, args))
            .await?;
        if let Some(Frame::Error(e)) = replies.last() {
            if e.starts_with(b"NOSCRIPT") {
                replies = self
                    .pipeline(1, |out| script.encode_eval(out, keys, args))
                    .await?;
            }
        }
        match replies.pop() {
            Some(Frame::Error(e)) => Err(RedisError::Server(e)),
            Some(f) => Ok(f),
            None => Err(RedisError::Protocol("missing reply")),
        }
    }

    /// One command; an error reply becomes `Err(Server)`.
    pub async fn call(&self, cmd: &Cmd<'_>) -> Result<Frame, RedisError> {
        let mut replies = self.pipeline(1, |out| cmd.encode(out)).await?;
        match replies.pop() {
            Some(Frame::Error(e)) => Err(RedisError::Server(e)),
            Some(f) => Ok(f),
            None => Err(RedisError::Protocol("missing reply")),
        }
    }

    /// `MULTI`, the commands `encode` appends (`n` of them), `EXEC`, in one write. Returns the
    /// `EXEC` reply's items; any error (queueing, or inside the transaction) is an `Err`.
    pub async fn transaction(
        &self,
        n: usize,
        encode: impl FnOnce(&mut BytesMut),
    ) -> Result<Vec<Frame>, RedisError> {
        let replies = self
            .pipeline(n + 2, |out| {
                command(out, &[b"MULTI"]);
                encode(out);
                command(out, &[b"EXEC"]);
            })
            .await?;
        if let Some(e) = replies.iter().find_map(Frame::error_text) {
            return Err(RedisError::Server(Bytes::copy_from_slice(e)));
        }
        let exec = replies.into_iter().last().and_then(Frame::into_array);
        let items = exec.ok_or(RedisError::Protocol("transaction aborted"))?;
        if let Some(e) = items.iter().find_map(Frame::error_text) {
            return Err(RedisError::Server(Bytes::copy_from_slice(e)));
        }
        Ok(items)
    }
}

async fn drive(inner: Rc<Inner>) {
    let mut backoff = Duration::from_millis(25);
    let mut jitter = crate::backoff::Jitter::new(Rc::as_ptr(&inner) as u64);
    let mut logged_down = false;
    loop {
        match connect(&inner).await {
            Ok(stream) => {
                info!(redis = %inner.target, connection = inner.label, "redis connected");
                backoff = Duration::from_millis(25);
                logged_down = false;
                inner.state.borrow_mut().up = true;
                let why = serve(&inner, stream).await;
                let waiters = {
                    let mut st = inner.state.borrow_mut();
                    st.up = false;
                    st.out.clear();
                    std::mem::take(&mut st.waiters)
                };
                for tx in waiters.into_iter().filter_map(|w| w.tx) {
                    let _ = tx.send(Err(RedisError::Unavailable));
                }
                inner.reconnects.set(inner.reconnects.get() + 1);
                warn!(redis = %inner.target, connection = inner.label, error = %why, "redis connection lost");
            }
            Err(e) => {
                if !logged_down {
                    warn!(redis = %inner.target, connection = inner.label, error = %e, "redis unreachable; retrying");
                    logged_down = true;
                }
            }
        }
        let wait = backoff.mul_f64(0.5 + jitter.next_unit() * 0.5);
        monoio::time::sleep(wait).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Connects and runs the handshake (`AUTH`, `SELECT`, `PING`), within the deadline.
async fn connect(inner: &Inner) -> Result<RedisStream, String> {
    connect_to(&inner.target, &inner.connector, inner.deadline).await
}

/// Connects to `t` and runs the handshake (`AUTH`, `SELECT`, `PING`), within `deadline`
/// (at least 500 ms).
pub(super) async fn connect_to(
    t: &RedisTarget,
    connector: &Connector,
    deadline: Duration,
) -> Result<RedisStream, String> {
    let deadline = deadline.max(Duration::from_millis(500));
    let stream = monoio::time::timeout(deadline, connector.open(t))
        .await
        .map_err(|_| "connect timed out".to_owned())??;
    let mut hello = BytesMut::new();
    let mut expect = 1;
    match (&t.user, &t.password) {
        (Some(u), Some(p)) => command(&mut hello, &[b"AUTH", u.as_bytes(), p.as_bytes()]),
        (None, Some(p)) => command(&mut hello, &[b"AUTH", p.as_bytes()]),
        _ => expect = 0,
    }
    if t.db != 0 {
        let mut digits = itoa::Buffer::new();
        let db = digits.format(t.db).as_bytes();
        command(&mut hello, &[b"SELECT", db]);
        expect += 1;
    }
    command(&mut hello, &[b"PING"]);
    expect += 1;
    monoio::time::timeout(deadline, handshake(stream, hello, expect))
        .await
        .map_err(|_| "handshake timed out".to_owned())?
}

async fn handshake(
    mut stream: RedisStream,
    hello: BytesMut,
    expect: usize,
) -> Result<RedisStream, String> {
    let (r, _) = stream.write_all(hello).await;
    r.map_err(|e| e.to_string())?;
    let mut buf = BytesMut::with_capacity(256);
    let mut seen = 0;
    while seen < expect {
        let (len, cap) = (buf.len(), buf.capacity());
        let (r, b) = stream.read(buf.slice_mut(len..cap)).await;
        buf = b.into_inner();
        if r.map_err(|e| e.to_string())? == 0 {
            return Err("closed during handshake".to_owned());
        }
        loop {
            let frozen = buf.clone().freeze();
            match Frame::decode(&frozen) {
                Ok(Some((frame, used))) => {
                    let _ = buf.split_to(used);
                    if let Frame::Error(e) = frame {
                        // AUTH errors (WRONGPASS, NOAUTH) name no secret; pass the code on.
                        return Err(String::from_utf8_lossy(&e).into_owned());
                    }
                    seen += 1;
                }
                Ok(None) => break,
                Err(e) => return Err(e.to_string()),
            }
        }
        if buf.capacity() - buf.len() < 64 {
            buf.reserve(256);
        }
    }
    Ok(stream)
}

/// Runs the reader and writer until the connection fails; returns why.
async fn serve(inner: &Rc<Inner>, stream: RedisStream) -> String {
    let (read_half, write_half) = stream.into_split();
    monoio::select! {
        e = read_replies(inner, read_half) => e,
        e = write_commands(inner, write_half) => e,
        e = watch_for_stall(inner) => e,
    }
}

/// Every `DEADLINE_TICK`, answers callers whose deadline passed with `Timeout` (their waiters
/// stay in line for the replies), and returns once the oldest unanswered call has waited far past
/// the deadline: a peer that stopped answering (frozen, or a black-holed network) is dropped and
/// reconnected, instead of callers timing out one by one while their commands pile up behind it.
async fn watch_for_stall(inner: &Inner) -> String {
    let limit = inner.deadline * 4 + Duration::from_secs(1);
    loop {
        monoio::time::sleep(DEADLINE_TICK).await;
        let now = Instant::now();
        let (late, oldest) = {
            let mut st = inner.state.borrow_mut();
            let late: Vec<_> = st
                .waiters
                .iter_mut()
                .filter(|w| w.deadline <= now)
                .filter_map(|w| w.tx.take())
                .collect();
            (late, st.waiters.front().map(|w| now.duration_since(w.sent)))
        };
        for tx in late {
            let _ = tx.send(Err(RedisError::Timeout));
        }
        if oldest.is_some_and(|age| age > limit) {
            return "no reply from redis".to_owned();
        }
    }
}

async fn write_commands<W: AsyncWriteRentExt>(inner: &Inner, mut w: W) -> String {
    let mut spare = BytesMut::with_capacity(16 * 1024);
    loop {
        let out = {
            let mut st = inner.state.borrow_mut();
            if st.out.is_empty() {
                None
            } else {
                Some(std::mem::replace(&mut st.out, std::mem::take(&mut spare)))
            }
        };
        let Some(out) = out else {
            inner.wake_writer.notified().await;
            continue;
        };
        let (r, mut buf) = w.write_all(out).await;
        if let Err(e) = r {
            return e.to_string();
        }
        buf.clear();
        spare = buf;
    }
}

async fn read_replies<R: AsyncReadRent>(inner: &Inner, mut r: R) -> String {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    loop {
        // A silent peer is caught by `watch_for_stall`, not by a timeout here.
        if let Err(why) = read_more(&mut r, &mut buf).await {
            return why;
        }
        if let Err(e) = dispatch(inner, &mut buf) {
            return e.to_string();
        }
    }
}

/// Decodes every complete reply in `buf` and hands it to the oldest waiter.
fn dispatch(inner: &Inner, buf: &mut BytesMut) -> Result<(), ProtocolError> {
    let frozen = buf.split().freeze();
    let mut pos = 0;
    while let Some((frame, used)) = Frame::decode(&frozen.slice(pos..))? {
        pos += used;
        let mut st = inner.state.borrow_mut();
        let Some(front) = st.waiters.front_mut() else {
            // A reply nobody asked for: the stream is out of step.
            return Err(ProtocolError::UnknownType(b'?'));
        };
        front.got.push(frame);
        if front.got.len() == front.want {
            if let Some(Waiter {
                tx: Some(tx), got, ..
            }) = st.waiters.pop_front()
            {
                drop(st);
                let _ = tx.send(Ok(got));
            }
        }
    }
    buf.extend_from_slice(&frozen[pos..]);
    Ok(())
}
