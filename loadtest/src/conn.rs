//! One connection through one phase of a run. A writer and a reader run as two futures in one
//! monoio task over the two halves of the socket, sharing the connection's state in a `RefCell`
//! (the task is the only one touching it):
//!
//! - the **writer** starts flows when the [`Pace`] allows (a free slot in closed loop, an
//!   intended time in open loop), sends due polls first, encodes everything ready into one
//!   buffer and writes it at once (pipelining), then sleeps until the reader frees a slot or the
//!   next request falls due;
//! - the **reader** reads whenever something is in flight, frames answers with
//!   [`http::parse_response`], matches them in order with the requests sent, records latencies and
//!   counters, and queues follow-ups (an e2e flow's next poll).
//!
//! A connection that breaks (reset, EOF, `Connection: close`, an unparseable answer) counts its
//! unanswered requests as transport errors, keeps its flows that were only polling, and
//! reconnects; a phase past its hard stop, or a connection whose server answers nothing for
//! `--deadline`, gives up what is left (unanswered requests are transport errors, flows still
//! polling are lost, requests not sent yet are never sent).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf, Splitable};
use monoio::net::TcpStream;

use crate::http;
use crate::notify::Notify;
use crate::pacer::SendTimes;
use crate::progress::Live;
use crate::report::Stats;
use crate::rng::Rng;
use crate::scenario::{classify, Kind, Outcome, Request, Requests, Scenario};
use crate::schedule::{micros, Pace};

/// Consecutive failed connection attempts after which a connection gives up its phase.
const MAX_CONNECT_FAILURES: u32 = 50;
/// Pause between two connection attempts.
const RECONNECT_PAUSE: Duration = Duration::from_millis(100);

/// What one worker thread's connections share.
pub struct Worker {
    /// Server address.
    pub addr: SocketAddr,
    /// Request bytes.
    pub requests: Requests,
    /// `--pipeline`.
    pub depth: usize,
    /// Open loop: record service times and send lag too.
    pub open: bool,
    /// Open loop: the sub-millisecond wake-ups for send times (`pacer.rs`).
    pub send_times: Option<Rc<SendTimes>>,
    /// `--submit-percent`.
    pub submit_percent: u32,
    /// `--poll-interval`.
    pub poll_interval: Duration,
    /// `--deadline`.
    pub deadline: Duration,
    /// Ids the status and mixed scenarios read.
    pub pool: RefCell<Rc<[u128]>>,
    /// This thread's random generator.
    pub rng: RefCell<Rng>,
    /// What this thread measured in the current phase.
    pub stats: RefCell<Stats>,
    /// Live counters for the progress line.
    pub live: std::sync::Arc<Live>,
}

/// One phase's settings.
#[derive(Debug, Clone, Copy)]
pub struct Phase {
    /// What new flows send.
    pub scenario: Scenario,
    /// Count into the live progress counters.
    pub live: bool,
    /// Give up whatever is unfinished at this time.
    pub hard_stop: Option<Instant>,
}

/// An accepted id being polled until final.
#[derive(Debug, Clone, Copy)]
pub struct Flow {
    /// Correlation id.
    pub id: u128,
    /// Its submit's intended (open loop) or actual (closed loop) send time.
    pub start: Instant,
    /// Not final by then: lost.
    pub deadline: Instant,
}

/// A poll waiting for its time.
#[derive(Debug, Clone, Copy)]
pub struct Due {
    /// Not before.
    pub at: Instant,
    /// The flow it belongs to.
    pub flow: Flow,
}

/// A request on the wire.
#[derive(Debug)]
struct Sent {
    req: Request,
    intended: Instant,
    sent: Instant,
    /// The flow a poll belongs to.
    flow: Option<Flow>,
}

/// A connection, kept across phases.
#[derive(Default)]
pub struct Conn {
    halves: Option<(OwnedReadHalf<TcpStream>, OwnedWriteHalf<TcpStream>)>,
    rbuf: BytesMut,
    wbuf: Vec<u8>,
}

struct State {
    pace: Pace,
    polls: VecDeque<Due>,
    inflight: VecDeque<Sent>,
    /// Flows started and not finished (in flight or waiting for a poll).
    active: usize,
    /// Why the socket is unusable, once it is.
    broken: Option<String>,
    /// The writer saw nothing left to do.
    finished: bool,
    /// An accepted submit goes on polling its id (the e2e scenario).
    polls_after_submit: bool,
    /// The server left requests unanswered for `--deadline`: give the phase up.
    stalled: bool,
}

impl Conn {
    /// Opens the connection (the first time, before the clock starts); errors are kept for the
    /// phase to retry.
    pub async fn connect(&mut self, w: &Worker) {
        match open(w.addr).await {
            Ok(s) => self.halves = Some(s.into_split()),
            Err(e) => {
                let mut st = w.stats.borrow_mut();
                st.connect_errors += 1;
                st.first_error
                    .get_or_insert_with(|| format!("connect: {e}"));
            }
        }
    }

    /// Runs one phase: new flows as `pace` allows, plus the polls handed in, until everything
    /// is answered or final, or the hard stop.
    pub async fn drive(&mut self, w: &Worker, phase: Phase, pace: Pace, polls: VecDeque<Due>) {
        let state = RefCell::new(State {
            pace,
            active: polls.len(),
            polls,
            inflight: VecDeque::new(),
            broken: None,
            finished: false,
            polls_after_submit: phase.scenario.follows_to_final(),
            stalled: false,
        });
        let (wake_writer, wake_reader) = (Notify::default(), Notify::default());
        let mut failures = 0u32;
        loop {
            let halves = match &mut self.halves {
                Some(h) => h,
                None => {
                    let now = Instant::now();
                    let idle = {
                        let s = state.borrow();
                        s.polls.is_empty() && s.pace.exhausted(now)
                    };
                    if idle {
                        return; // nothing left to send: no reason to reconnect
                    }
                    if phase.hard_stop.is_some_and(|t| now >= t) || failures >= MAX_CONNECT_FAILURES
                    {
                        break;
                    }
                    if failures > 0 {
                        monoio::time::sleep(RECONNECT_PAUSE).await;
                    }
                    self.connect(w).await;
                    failures = if self.halves.is_some() {
                        0
                    } else {
                        failures + 1
                    };
                    continue;
                }
            };
            let (r, wr) = (&mut halves.0, &mut halves.1);
            let io = race(
                read_loop(
                    w,
                    phase,
                    &state,
                    r,
                    &mut self.rbuf,
                    &wake_writer,
                    &wake_reader,
                ),
                write_loop(
                    w,
                    phase,
                    &state,
                    wr,
                    &mut self.wbuf,
                    &wake_writer,
                    &wake_reader,
                ),
            );
            let stopped = match phase.hard_stop {
                Some(t) => monoio::time::timeout_at(t.into(), io).await.is_err(),
                None => {
                    io.await;
                    false
                }
            };
            let mut s = state.borrow_mut();
            if stopped {
                s.broken = Some("no answer before the phase's hard stop".into());
            }
            if let Some(why) = s.broken.take() {
                self.halves = None;
                self.rbuf.clear();
                self.wbuf.clear();
                s.fail_inflight(w, phase, &why);
                if stopped || s.stalled {
                    break;
                }
                continue;
            }
            if s.finished {
                return;
            }
        }
        // Gave up (hard stop, or the server refuses connections): whatever was still polling is
        // lost, the rest of the quota is never sent.
        let mut s = state.borrow_mut();
        let lost = s.polls.len() as u64;
        s.polls.clear();
        w.stats.borrow_mut().lost += lost;
    }
}

impl State {
    /// The socket broke: requests without an answer are transport errors; a flow that was only
    /// polling goes on from its next poll, any other flow ends.
    fn fail_inflight(&mut self, w: &Worker, phase: Phase, why: &str) {
        let n = self.inflight.len() as u64;
        if n > 0 {
            w.stats.borrow_mut().transport_error(n, || why.to_string());
            if phase.live {
                w.live.add(0, n, 0);
            }
        }
        let now = Instant::now();
        while let Some(sent) = self.inflight.pop_front() {
            match sent.flow {
                Some(flow) => self.polls.push_back(Due { at: now, flow }),
                None => self.active -= 1,
            }
        }
        self.polls.make_contiguous().sort_by_key(|d| d.at);
    }
}

async fn open(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect_addr(addr).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Runs `a` and `b` until either finishes (polling `a` first); the other is dropped.
async fn race(a: impl Future<Output = ()>, b: impl Future<Output = ()>) {
    let (mut a, mut b) = (pin!(a), pin!(b));
    std::future::poll_fn(|cx| {
        if a.as_mut().poll(cx).is_ready() || b.as_mut().poll(cx).is_ready() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await
}

async fn read_loop(
    w: &Worker,
    phase: Phase,
    state: &RefCell<State>,
    r: &mut OwnedReadHalf<TcpStream>,
    rbuf: &mut BytesMut,
    wake_writer: &Notify,
    wake_reader: &Notify,
) {
    loop {
        // Read only while something is in flight: an idle connection has nothing to wait for.
        loop {
            let (stop, busy) = {
                let s = state.borrow();
                let idle = s.inflight.is_empty();
                (s.broken.is_some() || (s.finished && idle), !idle)
            };
            if stop {
                return;
            }
            if busy {
                break;
            }
            wake_reader.notified().await;
        }
        if rbuf.capacity() - rbuf.len() < 4096 {
            rbuf.reserve(16 * 1024);
        }
        // monoio reads from the buffer's start: give it only the free tail.
        let buf = std::mem::take(rbuf);
        let (len, cap) = (buf.len(), buf.capacity());
        // A server that holds requests for `--deadline` without a byte ends this connection's
        // phase, so even a run bounded only by `--requests` cannot hang on it.
        let Ok((res, slice)) =
            monoio::time::timeout(w.deadline, r.read(buf.slice_mut(len..cap))).await
        else {
            let mut s = state.borrow_mut();
            s.broken = Some(format!("no answer within {:?} (--deadline)", w.deadline));
            s.stalled = true;
            wake_writer.notify();
            return;
        };
        *rbuf = slice.into_inner();
        let why = match res {
            Ok(0) => Some("connection closed by the server".to_string()),
            Ok(_) => None,
            Err(e) => Some(format!("read: {e}")),
        };
        if let Some(why) = why {
            state.borrow_mut().broken = Some(why);
            wake_writer.notify();
            return;
        }
        let now = Instant::now();
        let mut batch = Batch::default();
        let mut consumed = 0;
        {
            let mut s = state.borrow_mut();
            while s.broken.is_none() {
                match http::parse_response(&rbuf[consumed..]) {
                    Ok(Some(resp)) => {
                        let body = resp.body(&rbuf[consumed..]);
                        s.answer(w, resp.status, body, now, &mut batch);
                        consumed += resp.len();
                        if resp.close && s.broken.is_none() {
                            s.broken = Some("the server closed the connection".into());
                        }
                    }
                    Ok(None) => break,
                    Err(e) => s.broken = Some(e.to_string()),
                }
            }
        }
        rbuf.advance(consumed);
        if phase.live {
            w.live.add(batch.answers, batch.errors, batch.finals);
        }
        wake_writer.notify();
        if state.borrow().broken.is_some() {
            return;
        }
    }
}

/// Counts of one read's answers, for the live counters.
#[derive(Default)]
struct Batch {
    answers: u64,
    errors: u64,
    finals: u64,
}

impl State {
    /// Handles the answer to the oldest request in flight.
    fn answer(&mut self, w: &Worker, status: u16, body: &[u8], now: Instant, batch: &mut Batch) {
        let Some(sent) = self.inflight.pop_front() else {
            self.broken = Some("an answer to no request".into());
            return;
        };
        batch.answers += 1;
        if !(200..300).contains(&status) {
            batch.errors += 1;
        }
        let mut st = w.stats.borrow_mut();
        let kind = sent.req.kind();
        st.status(status);
        st.record(kind, micros(sent.intended, now));
        if w.open {
            st.service[kind as usize].saturating_record(micros(sent.sent, now));
        }
        let outcome = classify(sent.req, status, body);
        if outcome == Outcome::Bad {
            st.bad_responses += 1;
        }
        let Some(flow) = sent.flow else {
            // The first request of a flow: only an e2e or wait submit goes on.
            if let Outcome::AcceptedFinal(id, f) = outcome {
                st.ids.push(id);
                st.final_state(f);
                st.record(Kind::E2e, micros(sent.intended, now));
                batch.finals += 1;
                self.active -= 1;
                return;
            }
            if let Outcome::Accepted(id) = outcome {
                st.ids.push(id);
                if self.polls_after_submit {
                    self.polls.push_back(Due {
                        at: now,
                        flow: Flow {
                            id,
                            start: sent.intended,
                            deadline: sent.intended + w.deadline,
                        },
                    });
                    return;
                }
            }
            self.active -= 1;
            return;
        };
        match outcome {
            Outcome::Final(f) => {
                st.final_state(f);
                st.record(Kind::E2e, micros(flow.start, now));
                batch.finals += 1;
                self.active -= 1;
            }
            Outcome::Unknown => {
                st.lost += 1;
                self.active -= 1;
            }
            _ if now >= flow.deadline => {
                st.lost += 1;
                self.active -= 1;
            }
            _ => self.polls.push_back(Due {
                at: now + w.poll_interval,
                flow,
            }),
        }
    }
}

async fn write_loop(
    w: &Worker,
    phase: Phase,
    state: &RefCell<State>,
    wr: &mut OwnedWriteHalf<TcpStream>,
    wbuf: &mut Vec<u8>,
    wake_writer: &Notify,
    wake_reader: &Notify,
) {
    loop {
        let now = Instant::now();
        let mut wake_at = None;
        {
            let mut s = state.borrow_mut();
            let s = &mut *s;
            if s.broken.is_some() {
                return;
            }
            while s.inflight.len() < w.depth {
                if let Some(due) = s.polls.front().copied().filter(|d| d.at <= now) {
                    s.polls.pop_front();
                    if now >= due.flow.deadline {
                        w.stats.borrow_mut().lost += 1;
                        s.active -= 1;
                        continue;
                    }
                    let req = Request::Poll(due.flow.id);
                    w.requests.encode(req, wbuf);
                    s.inflight.push_back(Sent {
                        req,
                        intended: if w.open { due.at } else { now },
                        sent: now,
                        flow: Some(due.flow),
                    });
                    continue;
                }
                let Some(intended) = s.pace.take(now, s.active, w.depth) else {
                    break;
                };
                let req = {
                    let pool = w.pool.borrow();
                    let mut rng = w.rng.borrow_mut();
                    phase
                        .scenario
                        .first_request(&mut rng, &pool, w.submit_percent)
                };
                w.requests.encode(req, wbuf);
                if w.open {
                    w.stats
                        .borrow_mut()
                        .send_lag
                        .saturating_record(micros(intended, now));
                }
                s.active += 1;
                s.inflight.push_back(Sent {
                    req,
                    intended,
                    sent: now,
                    flow: None,
                });
            }
            if wbuf.is_empty() {
                if s.inflight.is_empty() && s.polls.is_empty() && s.pace.exhausted(now) {
                    s.finished = true;
                    wake_reader.notify();
                    return;
                }
                if s.inflight.len() < w.depth {
                    wake_at = match (s.polls.front().map(|d| d.at), s.pace.next_due()) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
            }
        }
        if !wbuf.is_empty() {
            wake_reader.notify();
            let (res, buf) = wr.write_all(std::mem::take(wbuf)).await;
            *wbuf = buf;
            wbuf.clear();
            if let Err(e) = res {
                state.borrow_mut().broken = Some(format!("write: {e}"));
                return;
            }
            continue;
        }
        match wake_at {
            None => wake_writer.notified().await,
            Some(t) => match &w.send_times {
                Some(times) => race(wake_writer.notified(), times.sleep_until(t)).await,
                None => race(wake_writer.notified(), monoio::time::sleep_until(t.into())).await,
            },
        }
    }
}
