//! One HTTP connection's I/O loop: read into the input buffer, let [`Conn`] cut requests out,
//! answer them in order into the output buffer, and write once per batch, so 64 pipelined
//! requests get their 64 responses in one write. Timeouts depend on what is awaited (idle,
//! a head, a body). While the shard drains every response says `Connection: close`; once it
//! stops, idle connections and requests still arriving are ended.

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt, CancelableAsyncReadRent, Canceller};
use monoio::net::TcpStream;
use tracing::debug;

use super::Shard;
use crate::api;
use crate::api::route::{endpoint_of, Endpoint};
use crate::backend::Backend;
use crate::error::{Error, ErrorKind};
use crate::http::encode::CONTINUE;
use crate::http::{Conn, Event, Method, Reading};
use crate::sync::deadline::Deadline;

/// Read buffer growth step, once a connection sends more than fits the first buffer.
const READ_CHUNK: usize = 16 * 1024;
/// First read buffer: a typical request fits; an idle keep-alive connection holds only this.
const FIRST_READ: usize = 4 * 1024;
/// Flush the output buffer early once it holds this much.
const FLUSH_AT: usize = 256 * 1024;
/// Time a connection over the limit gets to take its 503: it holds a descriptor meanwhile.
const REFUSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Time allowed for a client to take a response.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Answers a connection over the shard's limit with 503 and closes it, without reading it.
pub(crate) async fn refuse(mut stream: TcpStream) {
    let mut r = api::error_response(&Error::new(
        ErrorKind::QueueUnavailable,
        "too many connections",
    ));
    r.close = true;
    let mut out = BytesMut::new();
    r.encode(false, &mut out);
    let _ = monoio::time::timeout(REFUSE_TIMEOUT, stream.write_all(out)).await;
}

/// Serves one connection until it closes.
pub(crate) async fn serve<B: Backend + 'static>(ctx: Rc<Shard<B>>, stream: TcpStream) {
    ctx.connections.set(ctx.connections.get() + 1);
    if let Err(e) = drive(&ctx, stream).await {
        debug!(shard = ctx.id, error = %e, "connection ended");
    }
    ctx.connections.set(ctx.connections.get() - 1);
    ctx.connection_closed.notify();
}

async fn drive<B: Backend + 'static>(ctx: &Shard<B>, mut stream: TcpStream) -> std::io::Result<()> {
    let mut conn = Conn::new(ctx.limits, api::precheck);
    // Small to start: an idle connection costs its buffers (PERFORMANCE.md, memory per idle
    // connection); the output buffer is allocated by the first response.
    let mut input = BytesMut::with_capacity(FIRST_READ);
    let mut output = BytesMut::new();
    let mut read_deadline = Deadline::default();
    // What the connection is reading, and since when.
    let mut phase: Option<(Reading, Instant)> = None;
    let mut io = Io {
        stream: &mut stream,
        write_deadline: Deadline::default(),
    };
    loop {
        let (reading, close, answered) =
            answer_ready(ctx, &mut conn, &mut input, &mut output, &mut io).await?;
        if answered {
            // The next request's head begins now (its first bytes may already be here).
            phase = None;
        }
        if !output.is_empty() {
            output = io.write(output).await?;
        }
        if close || (reading == Reading::Idle && ctx.shutdown.is_set()) {
            return Ok(());
        }
        // A head or a body has one deadline in total, from its first byte (the head) or the
        // end of the head (the body): a client trickling bytes cannot extend it.
        let now = Instant::now();
        let phase_began = match phase {
            Some((r, began)) if r == reading => began,
            _ => now,
        };
        phase = Some((reading, phase_began));
        let limit = match reading {
            Reading::Idle => ctx.config.server.idle_timeout,
            Reading::Head => ctx.config.server.header_read_timeout,
            Reading::Body => ctx.config.server.body_read_timeout,
        };
        let limit = if reading == Reading::Idle {
            limit
        } else {
            limit.saturating_sub(now.duration_since(phase_began))
        };
        if input.capacity() - input.len() < FIRST_READ / 4 {
            input.reserve(READ_CHUNK);
        }
        // monoio reads into a buffer from its start: hand it only the free tail, so bytes of a
        // request received by an earlier read stay where they are.
        let len = input.len();
        let cap = input.capacity();
        let read = read_deadline.run(limit, io.stream.read(input.slice_mut(len..cap)));
        // Shutdown ends every read: an idle connection, and a request still arriving (not
        // accepted, so nothing is lost; its client retries against another instance).
        let result = monoio::select! {
            r = read => r,
            _ = ctx.shutdown.wait() => return Ok(()),
        };
        match result {
            Ok((Ok(0), _)) => return Ok(()),
            Ok((Ok(_), buf)) => input = buf.into_inner(),
            Ok((Err(e), _)) => return Err(e),
            Err(_elapsed) => {
                if reading != Reading::Idle {
                    let mut r = api::error_response(&Error::new(
                        ErrorKind::RequestTimeout,
                        "request not received in time",
                    ));
                    r.close = true;
                    let mut out = BytesMut::new();
                    r.encode(false, &mut out);
                    count(ctx, Endpoint::Other, None, r.status, Instant::now());
                    let _ = io.write(out).await;
                }
                return Ok(());
            }
        }
    }
}

/// Answers every complete request in `input`. Returns what the connection waits for next,
/// whether it must close, and whether it answered anything (a request ended).
async fn answer_ready<B: Backend + 'static>(
    ctx: &Shard<B>,
    conn: &mut Conn,
    input: &mut BytesMut,
    output: &mut BytesMut,
    io: &mut Io<'_>,
) -> std::io::Result<(Reading, bool, bool)> {
    let mut answered = false;
    loop {
        match conn.poll(input) {
            Event::NeedMore(reading) => return Ok((reading, false, answered)),
            Event::Continue => {
                output.extend_from_slice(CONTINUE);
                let out = std::mem::take(output);
                *output = io.write(out).await?;
            }
            Event::Request(req) => {
                let started = Instant::now();
                ctx.metrics.borrow_mut().in_flight += 1;
                let answer = if api::wait::may_wait(&req.head) {
                    answer_unless_gone(ctx, &req, io, input).await
                } else {
                    Some(api::handle(&ctx.api, &req).await)
                };
                let Some((endpoint, mut resp)) = answer else {
                    // The client went away while its request waited: dropping the handler
                    // released its waiter.
                    ctx.metrics.borrow_mut().in_flight -= 1;
                    return Ok((Reading::Idle, true, answered));
                };
                ctx.metrics.borrow_mut().in_flight -= 1;
                resp.close |= !req.head.keep_alive || ctx.draining.is_set();
                resp.encode(req.head.method == Method::Head, output);
                count(ctx, endpoint, Some(req.head.method), resp.status, started);
                answered = true;
                if resp.close {
                    return Ok((Reading::Idle, true, answered));
                }
                if output.len() >= FLUSH_AT {
                    let out = std::mem::take(output);
                    *output = io.write(out).await?;
                }
            }
            Event::Reject {
                error,
                close,
                path,
                method,
            } => {
                let endpoint = path.as_deref().map_or(Endpoint::Other, endpoint_of);
                let mut resp = api::error_response(&error);
                resp.close = close || ctx.draining.is_set();
                resp.encode(false, output);
                count(ctx, endpoint, method, resp.status, Instant::now());
                answered = true;
                if resp.close {
                    return Ok((Reading::Idle, true, answered));
                }
            }
        }
    }
}

/// Answers a request that may wait (long-poll, submit-and-wait) while reading from the client,
/// so a client that closes its connection ends the wait (and releases its waiter) at once
/// instead of at the end of its `wait=N`. `None` when the client went away. Bytes of a next
/// request that arrive meanwhile stay in `input`.
async fn answer_unless_gone<B: Backend + 'static>(
    ctx: &Shard<B>,
    req: &crate::http::Request,
    io: &mut Io<'_>,
    input: &mut BytesMut,
) -> Option<(Endpoint, crate::http::Response)> {
    let mut handle = std::pin::pin!(api::handle(&ctx.api, req));
    if input.capacity() - input.len() < FIRST_READ / 4 {
        input.reserve(READ_CHUNK);
    }
    let buf = std::mem::take(input);
    let (len, cap) = (buf.len(), buf.capacity());
    let canceller = Canceller::new();
    let mut read = std::pin::pin!(io
        .stream
        .cancelable_read(buf.slice_mut(len..cap), canceller.handle()));
    monoio::select! {
        answer = &mut handle => {
            canceller.cancel();
            // Cancelled, or completed with bytes that must not be lost.
            let (_, buf) = read.await;
            *input = buf.into_inner();
            Some(answer)
        }
        (result, buf) = &mut read => {
            *input = buf.into_inner();
            match result {
                Ok(0) | Err(_) => None,
                // A pipelined next request: it waits for this answer.
                Ok(_) => Some(handle.await),
            }
        }
    }
}

fn count<B>(
    ctx: &Shard<B>,
    endpoint: Endpoint,
    method: Option<Method>,
    status: u16,
    started: Instant,
) {
    let secs = started.elapsed().as_secs_f64();
    ctx.metrics
        .borrow_mut()
        .request(endpoint, method, status, secs);
}

/// The connection's socket and the timer that bounds its writes.
struct Io<'a> {
    stream: &'a mut TcpStream,
    write_deadline: Deadline,
}

impl Io<'_> {
    /// Writes all of `out`; returns the emptied buffer for reuse.
    async fn write(&mut self, out: BytesMut) -> std::io::Result<BytesMut> {
        match self
            .write_deadline
            .run(WRITE_TIMEOUT, self.stream.write_all(out))
            .await
        {
            Ok((Ok(_), mut buf)) => {
                buf.clear();
                Ok(buf)
            }
            Ok((Err(e), _)) => Err(e),
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "write timed out",
            )),
        }
    }
}
