//! One shard's Redis Streams queue: the work stream and its consumer group, the state keys
//! written with it, retries, the dead-letter stream, leases and takeover. `mod.rs` has the layout.

mod completions;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use tracing::{error, warn};

use super::fields::{job_fields, Args};
use super::keys::{Keys, GROUP};
use super::reads::{self, Entry};
use super::scripts::Scripts;
use super::{keys, state_value};
use crate::backend::{Delivery, Depth, Job, QueueError};
use crate::clock::Timestamp;
use crate::id::CorrelationId;
use crate::resp::{command, Client, Frame, RedisError, RedisTarget, Script};
use crate::store::RequestState;
use crate::sync::notify::Notify;

/// How long one `XREADGROUP` blocks before it is re-issued.
const BLOCK_MS: u64 = 1000;
/// Most `XREADGROUP`s sent together (each of at most `worker.batch_size` entries).
const MAX_READS_PER_WRITE: usize = 16;
/// How often due retries are moved back to the stream.
const RETRY_TICK: Duration = Duration::from_millis(100);
/// How often leases are renewed and dead consumers' entries looked for.
const LEASE_TICK: Duration = Duration::from_secs(5);
/// An entry idle this long in another consumer's pending list is taken over. Live workers renew
/// their entries every `LEASE_TICK`, so only a dead consumer's entries get this old.
const LEASE: Duration = Duration::from_secs(30);
/// A lease last reset less than this long ago (by this shard's clock, from when the resetting
/// command was sent) is certainly still held: the 10 s below `LEASE` absorb scheduling delays and
/// clock-rate differences. Past it, deliveries are settled by the owner-only scripts and no longer
/// renewed (a renewal is a claim: it would take the entry back from a new owner).
pub const LEASE_HELD: Duration = Duration::from_secs(20);

/// Settings the backend needs.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// Where Redis is.
    pub target: RedisTarget,
    /// Deadline of one command.
    pub deadline: Duration,
    /// Submits waiting for Redis before more are refused at once.
    pub max_submits_in_flight: usize,
    /// [`LEASE_HELD`]; shorter only in tests, which cannot wait 20 s for a lease to lapse.
    pub lease_held: Duration,
    /// TTL of request states.
    pub ttl: Duration,
    /// Deliveries after which a crashing (never finishing) job is dead-lettered.
    pub max_deliveries: u32,
    /// This consumer's name: stable per instance and shard.
    pub consumer: String,
    /// Shards per instance (every instance on one Redis runs the same number).
    pub nr_shards: usize,
    /// `queue.request_queue_name`.
    pub requests_prefix: String,
}

/// Hashes stream entry ids (`<ms>-<seq>`). Redis writes them, not clients, so a fast fold (8
/// bytes a step, a SplitMix64 finish) is safe here; SipHash cost ~300 instructions a request
/// over the six lookups of an entry's life (callgrind).
#[derive(Default)]
struct EntryIdHasher(u64);

impl Hasher for EntryIdHasher {
    fn finish(&self) -> u64 {
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(23) ^ u64::from_le_bytes(word))
                .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
}

/// One shard's Redis Streams queue.
pub(crate) struct RedisQueue {
    cmd: Client,
    block: Client,
    keys: Keys,
    scripts: Scripts,
    consumer: Bytes,
    ttl_text: Bytes,
    max_deliveries: u32,
    /// While `Some`, `fetch` re-reads this consumer's own pending entries from that id on.
    pel_cursor: RefCell<Option<Bytes>>,
    /// Set when something may have left entries in our pending list (a failed acknowledgement, a
    /// lost read); `fetch` then starts the pending-list read over from `0`, even mid-read.
    reread: Cell<bool>,
    /// Shards per instance, to find an id's owner (and its keys) from the id alone.
    nr_shards: usize,
    /// The request-stream prefix, for other shards' state keys.
    requests_prefix: String,
    /// Entry ids handed to worker slots and not yet finished, with when their lease was last
    /// reset (the sending of the read, claim or renewal that did).
    in_flight: RefCell<HashMap<Bytes, Instant, BuildHasherDefault<EntryIdHasher>>>,
    /// Entries taken over from dead consumers, waiting to be fetched.
    reclaimed: RefCell<VecDeque<Delivery>>,
    depth: Cell<Depth>,
    /// Submits waiting for their transaction, and the most allowed.
    submits_in_flight: Cell<usize>,
    max_submits_in_flight: usize,
    lease_held: Duration,
    /// Completions gathering for the next group commit (`completions.rs`), and the flusher's
    /// wake-up.
    completions: RefCell<completions::Completions>,
    completions_ready: Notify,
}

/// Counts one submit in flight for as long as it lives (also when the request is cancelled).
struct InFlight<'a>(&'a Cell<usize>);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

impl RedisQueue {
    /// Connects (in the background) and starts the shard's maintenance tasks.
    pub(crate) fn start(settings: RedisSettings, keys: Keys) -> Rc<RedisQueue> {
        let q = Rc::new(RedisQueue {
            cmd: Client::start(settings.target.clone(), settings.deadline, "commands", true),
            block: Client::start(settings.target, settings.deadline, "blocking reads", false),
            keys,
            scripts: Scripts::default(),
            consumer: Bytes::from(settings.consumer),
            ttl_text: Bytes::from(settings.ttl.as_secs().max(1).to_string()),
            max_deliveries: settings.max_deliveries,
            pel_cursor: RefCell::new(None),
            reread: Cell::new(true),
            nr_shards: settings.nr_shards,
            requests_prefix: settings.requests_prefix,
            in_flight: RefCell::default(),
            reclaimed: RefCell::default(),
            depth: Cell::new(Depth::default()),
            submits_in_flight: Cell::new(0),
            max_submits_in_flight: settings.max_submits_in_flight.max(1),
            lease_held: settings.lease_held.min(LEASE_HELD),
            completions: RefCell::default(),
            completions_ready: Notify::new(),
        });
        monoio::spawn(completions::flush_completions(q.clone()));
        monoio::spawn(move_retries(q.clone()));
        monoio::spawn(leases_and_reclaim(q.clone()));
        q
    }

    /// Times either connection was lost.
    pub(crate) fn reconnects(&self) -> u64 {
        self.cmd.reconnects() + self.block.reconnects()
    }

    /// Round-trip times of the command connection.
    pub(crate) fn round_trips(&self) -> crate::metrics::Histogram {
        self.cmd.round_trips()
    }

    async fn create_group(&self) {
        let r = self
            .cmd
            .call(&[
                b"XGROUP",
                b"CREATE",
                &self.keys.stream,
                GROUP,
                b"0",
                b"MKSTREAM",
            ])
            .await;
        match r {
            Ok(_) => {}
            Err(e) if e.code() == Some(b"BUSYGROUP") => {}
            Err(e) => warn!(error = %e, "cannot create the consumer group"),
        }
    }

    pub(crate) async fn enqueue(&self, job: Job) -> Result<(), QueueError> {
        // Admission control: past the bound, Redis is already far behind; answering 503 now beats
        // queueing more work in this process until the deadline.
        let waiting = self.submits_in_flight.get();
        if waiting >= self.max_submits_in_flight {
            return Err(QueueError::Overloaded);
        }
        self.submits_in_flight.set(waiting + 1);
        let _counted = InFlight(&self.submits_in_flight);
        let state_key = self.keys.state(&job.id);
        let state = state_value::encode(&RequestState::pending(job.submitted_at));
        let entry = job_fields(&job, 1);
        let r = self
            .cmd
            .transaction(2, |out| {
                cmd_with(out, &[b"XADD", &self.keys.stream, b"*"], &entry);
                self.put_state(out, &state_key, &state);
            })
            .await;
        r.map(drop).map_err(|e| {
            warn!(correlation_id = %job.id, error = %e, "enqueue failed");
            QueueError::Unavailable
        })
    }

    /// Waits for jobs and returns at most `free`, read at most `per_read` per `XREADGROUP`. With
    /// room for several reads they go out together in one write, only the first blocking: one
    /// read in flight at a time capped processing at `per_read` jobs per round trip, which with
    /// `appendfsync always` (every read is a write, answered after an fsync) was the end-to-end
    /// limit (PERFORMANCE.md, section 8).
    pub(crate) async fn fetch(&self, free: usize, per_read: usize) -> Vec<Delivery> {
        let per_read = per_read.max(1);
        loop {
            let reclaimed: Vec<Delivery> = {
                let mut r = self.reclaimed.borrow_mut();
                let n = r.len().min(free.max(1));
                r.drain(..n).collect()
            };
            if !reclaimed.is_empty() {
                // Already in `in_flight` since they were claimed.
                return reclaimed;
            }
            if self.reread.take() {
                *self.pel_cursor.borrow_mut() = Some(Bytes::from_static(b"0"));
            }
            let cursor = self.pel_cursor.borrow().clone();
            // Our own pending list is paged through one read at a time (each starts after the
            // last entry of the one before).
            let reads = match cursor {
                Some(_) => 1,
                None => free.div_ceil(per_read).clamp(1, MAX_READS_PER_WRITE),
            };
            let start: &[u8] = cursor.as_deref().unwrap_or(b">");
            let want = free.max(1);
            let (block_ms, blen) = crate::resp::encode::decimal(BLOCK_MS);
            let read_at = Instant::now();
            let reply = self
                .block
                .pipeline_within(
                    Duration::from_millis(BLOCK_MS) + Duration::from_secs(2),
                    reads,
                    |out| {
                        for i in 0..reads {
                            // Together never more than `want`: the last read takes the rest.
                            let n = per_read.min(want - i * per_read);
                            let (count, len) = crate::resp::encode::decimal(n as u64);
                            let mut args: [&[u8]; 11] = [
                                b"XREADGROUP",
                                b"GROUP",
                                GROUP,
                                &self.consumer,
                                b"COUNT",
                                &count[..len],
                                b"BLOCK",
                                &block_ms[..blen],
                                b"STREAMS",
                                &self.keys.stream,
                                start,
                            ];
                            if i == 0 {
                                command(out, &args);
                            } else {
                                // Only the first read blocks: the others return at once.
                                args.copy_within(8.., 6);
                                command(out, &args[..9]);
                            }
                        }
                    },
                )
                .await;
            let frames = match reply {
                Ok(frames) => frames,
                Err(_) => {
                    // Down, or a reply lost with the connection: entries it delivered are in our
                    // pending list, so read that again once Redis is back.
                    self.reread.set(true);
                    monoio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let mut out = Vec::new();
            // The reads of one write usually fail together (`LOADING`, `NOGROUP`): the first
            // error is handled once, after what the others delivered is handed out.
            let mut failed: Option<&[u8]> = None;
            for frame in &frames {
                match frame.error_text() {
                    Some(e) => {
                        failed.get_or_insert(e);
                    }
                    None => self.take_read(frame, cursor.is_some(), &mut out).await,
                }
            }
            let out = self.hand_out(out, read_at);
            if let Some(e) = failed {
                if e.starts_with(b"NOGROUP") {
                    self.create_group().await;
                } else {
                    warn!(error = %String::from_utf8_lossy(e), "XREADGROUP failed");
                    if out.is_empty() {
                        monoio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            if !out.is_empty() {
                return out;
            }
        }
    }

    /// The deliveries of one (non-error) `XREADGROUP` reply, appended to `out`; entries without a
    /// readable job are acknowledged.
    async fn take_read(&self, frame: &Frame, paging: bool, out: &mut Vec<Delivery>) {
        let entries = match reads::xreadgroup(frame) {
            Ok(e) => e,
            Err(why) => {
                // Whatever it delivered is in our pending list: read that again.
                error!(why, "unexpected XREADGROUP reply");
                self.reread.set(true);
                return;
            }
        };
        if paging {
            // Re-reading our own pending list: page on, or switch to new entries when done.
            let last = entries.last().map(|e| match e {
                Entry::Job(d) => d.entry_id.clone().unwrap_or_default(),
                Entry::Unreadable(id) => id.clone(),
            });
            *self.pel_cursor.borrow_mut() = last;
        }
        for e in entries {
            match e {
                Entry::Job(d) => out.push(d),
                Entry::Unreadable(id) => {
                    error!(entry = %String::from_utf8_lossy(&id), "stream entry without a readable job (deleted while pending?); acknowledging it");
                    let _ = self
                        .cmd
                        .call(&[b"XACK", &self.keys.stream, GROUP, &id])
                        .await;
                }
            }
        }
    }

    /// Marks deliveries in flight with their lease reset by the read sent at `read_at`, dropping
    /// those already in flight (a pending-list re-read, which resets their lease too).
    fn hand_out(&self, deliveries: Vec<Delivery>, read_at: Instant) -> Vec<Delivery> {
        let mut in_flight = self.in_flight.borrow_mut();
        deliveries
            .into_iter()
            .filter(|d| {
                d.entry_id
                    .as_ref()
                    .is_none_or(|id| in_flight.insert(id.clone(), read_at).is_none())
            })
            .collect()
    }

    fn done(&self, d: &Delivery) {
        if let Some(id) = &d.entry_id {
            self.in_flight.borrow_mut().remove(id);
        }
    }

    pub(crate) async fn processing(&self, job: &Job, now: Timestamp) {
        let key = self.keys.state(&job.id);
        let state = state_value::encode(&RequestState::processing(job.submitted_at, now));
        let set: &[&[u8]] = &[b"SET", &key, &state, b"EX", &self.ttl_text];
        if let Err(e) = self.cmd.call(set).await {
            warn!(correlation_id = %job.id, error = %e, "cannot record PROCESSING");
        }
    }

    pub(crate) async fn finish(&self, d: Delivery, state: Option<RequestState>) {
        let entry = d.entry_id.clone().unwrap_or_default();
        let key = self.keys.state(&d.job.id);
        let value = state.as_ref().map(state_value::encode);
        // The everyday path: together with the other completions of this turn.
        let held = self.commit_completion(entry.clone(), value.as_deref().map(|v| (&key[..], v)));
        let args = || {
            let mut args: Vec<&[u8]> = Vec::with_capacity(5);
            args.extend([GROUP, &self.consumer[..], &entry[..], &self.ttl_text[..]]);
            args.extend(value.as_deref());
            args
        };
        let keys: [&[u8]; 2] = [&self.keys.stream, &key];
        let owner_only = (&self.scripts.finish, &keys[..]);
        self.settle(&d, held, owner_only, args, "cannot record completion")
            .await;
    }

    /// Appends `SET key value EX ttl` (one command; `state_value.rs` encodes the value).
    fn put_state(&self, out: &mut BytesMut, key: &[u8], value: &[u8]) {
        command(out, &[b"SET", key, value, b"EX", &self.ttl_text]);
    }

    /// Appends `XACK` of `entry` (one command); `trim_acknowledged` deletes it later.
    fn put_ack(&self, out: &mut BytesMut, entry: &[u8]) {
        command(out, &[b"XACK", &self.keys.stream, GROUP, entry]);
    }

    /// Whether this consumer certainly still holds the lease on `d`'s entry: the last command
    /// that reset its idle time (the read that delivered it, a claim, a renewal) was sent less
    /// than `lease_held` ago, so no other consumer can have taken it over (they take entries idle
    /// for `LEASE`).
    fn lease_held(&self, d: &Delivery) -> bool {
        d.entry_id.as_ref().is_some_and(|id| {
            self.in_flight
                .borrow()
                .get(id)
                .is_some_and(|since| since.elapsed() < self.lease_held)
        })
    }

    /// Ends a delivery: `held` (its transaction, not yet started: a future runs only when awaited)
    /// while the lease is certainly held, else `owner_only` (a script of `scripts.rs` and its keys,
    /// with the arguments built only then), which writes nothing unless the entry is still in this
    /// consumer's pending list.
    /// If the call fails the entry is still pending in Redis, so the pending list is read again
    /// and the delivery finished then.
    async fn settle<'a>(
        &self,
        d: &Delivery,
        held: impl Future<Output = Result<(), RedisError>>,
        owner_only: (&Script, &[&[u8]]),
        owner_only_args: impl FnOnce() -> Vec<&'a [u8]>,
        what: &str,
    ) {
        let r = if self.lease_held(d) {
            held.await.map(|()| true)
        } else {
            let (script, keys) = owner_only;
            let r = self.cmd.eval(script, keys, &owner_only_args()).await;
            r.map(|f| f == Frame::Integer(1))
        };
        self.done(d);
        match r {
            Ok(true) => {}
            Ok(false) => {
                warn!(correlation_id = %d.job.id, "lease lapsed and the entry was taken over by another consumer; leaving it to that one");
            }
            Err(e) => {
                warn!(correlation_id = %d.job.id, error = %e, "{what}; will redeliver");
                self.reread.set(true);
            }
        }
    }

    pub(crate) async fn retry(&self, d: Delivery, delay: Duration) {
        let entry = d.entry_id.clone().unwrap_or_default();
        let job_key = self.keys.retry_job(&d.job.id);
        let fields = job_fields(&d.job, d.attempt + 1);
        let due = now_ms() + delay.as_millis() as u64;
        let (due, dlen) = crate::resp::encode::decimal(due);
        let id = d.job.id.to_text();
        let state_key = self.keys.state(&d.job.id);
        // Waiting for a retry is PROCESSING (the state never moves back to PENDING).
        let waiting = RequestState::processing(d.job.submitted_at, Timestamp::now());
        let state = state_value::encode(&waiting);
        let plain = |out: &mut BytesMut| {
            cmd_with(out, &[b"HSET", &job_key], &fields);
            command(out, &[b"ZADD", &self.keys.retries, &due[..dlen], &id]);
            self.put_state(out, &state_key, &state);
            self.put_ack(out, &entry);
        };
        let args = || {
            let mut args: Vec<&[u8]> = Vec::with_capacity(7 + fields.len());
            args.extend([
                GROUP,
                &self.consumer[..],
                &entry[..],
                &self.ttl_text[..],
                &due[..dlen],
                &id[..],
                &state[..],
            ]);
            args.extend(fields.iter().map(|b| &b[..]));
            args
        };
        let keys: [&[u8]; 4] = [&self.keys.stream, &self.keys.retries, &job_key, &state_key];
        let owner_only = (&self.scripts.retry, &keys[..]);
        let held = async { self.cmd.transaction(4, plain).await.map(drop) };
        self.settle(&d, held, owner_only, args, "cannot schedule the retry")
            .await;
    }

    pub(crate) async fn dead_letter(&self, d: Delivery, state: Option<RequestState>, reason: &str) {
        let entry = d.entry_id.clone().unwrap_or_default();
        let key = self.keys.state(&d.job.id);
        let mut dlq = job_fields(&d.job, d.attempt);
        dlq.push(Bytes::from_static(b"error"));
        dlq.push(Bytes::copy_from_slice(reason.as_bytes()));
        dlq.push(Bytes::from_static(b"failed_at"));
        dlq.push(Bytes::from(Timestamp::now().0.to_string()));
        let value = state.as_ref().map(state_value::encode);
        let n = if value.is_none() { 2 } else { 3 };
        let plain = |out: &mut BytesMut| {
            cmd_with(out, &[b"XADD", &self.keys.dlq, b"*"], &dlq);
            if let Some(v) = &value {
                self.put_state(out, &key, v);
            }
            self.put_ack(out, &entry);
        };
        let (count, clen) = crate::resp::encode::decimal(dlq.len() as u64);
        let args = || {
            let mut args: Vec<&[u8]> = Vec::with_capacity(6 + dlq.len());
            args.extend([
                GROUP,
                &self.consumer[..],
                &entry[..],
                &self.ttl_text[..],
                &count[..clen],
            ]);
            args.extend(dlq.iter().map(|b| &b[..]));
            args.extend(value.as_deref());
            args
        };
        let keys: [&[u8]; 3] = [&self.keys.stream, &self.keys.dlq, &key];
        let owner_only = (&self.scripts.dead_letter, &keys[..]);
        let held = async { self.cmd.transaction(n, plain).await.map(drop) };
        self.settle(&d, held, owner_only, args, "cannot dead-letter")
            .await;
    }

    pub(crate) fn depth(&self) -> Depth {
        self.depth.get()
    }

    pub(crate) async fn check(&self) -> Result<(), QueueError> {
        // A real round trip, within a short deadline: health must answer fast.
        let deadline = Duration::from_millis(500);
        match self
            .cmd
            .pipeline_within(deadline, 1, |out| command(out, &[b"PING"]))
            .await
        {
            Ok(replies)
                if replies
                    .first()
                    .and_then(Frame::as_bytes)
                    .is_some_and(|b| &b[..] == b"PONG") =>
            {
                Ok(())
            }
            _ => Err(QueueError::Unavailable),
        }
    }

    pub(crate) async fn load_state(
        &self,
        id: &CorrelationId,
    ) -> Result<Option<RequestState>, QueueError> {
        // The owner's key: this shard may be reading for another one.
        let owner = crate::id::shard_for(id, self.nr_shards);
        let key = keys::state_key(&self.requests_prefix, owner, id);
        let reply = self
            .cmd
            .call(&[b"GET", &key])
            .await
            .map_err(|_| QueueError::Unavailable)?;
        let Some(value) = reply.as_bytes() else {
            return Ok(None);
        };
        match state_value::decode(value) {
            Some(state) => Ok(Some(state)),
            None => {
                error!(correlation_id = %id, "unreadable request state in Redis");
                Err(QueueError::Unavailable)
            }
        }
    }
}

/// Appends `head` followed by `rest` as one command.
fn cmd_with(out: &mut BytesMut, head: &[&[u8]], rest: &Args) {
    let mut args: Vec<&[u8]> = Vec::with_capacity(head.len() + rest.len());
    args.extend_from_slice(head);
    args.extend(rest.iter().map(|b| &b[..]));
    command(out, &args);
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Every `RETRY_TICK`: moves due retries back onto the stream and deletes acknowledged entries.
async fn move_retries(q: Rc<RedisQueue>) {
    loop {
        monoio::time::sleep(RETRY_TICK).await;
        let r = q
            .cmd
            .eval(&q.scripts.trim_acknowledged, &[&q.keys.stream], &[])
            .await;
        if let Err(e) = r {
            if e != RedisError::Unavailable {
                warn!(error = %e, "trimming acknowledged entries failed");
            }
        }
        let (now, len) = crate::resp::encode::decimal(now_ms());
        let r = q
            .cmd
            .eval(
                &q.scripts.move_due_retries,
                &[&q.keys.retries, &q.keys.stream],
                &[&now[..len], &q.keys.retry_job_prefix],
            )
            .await;
        if let Err(e) = r {
            if e != RedisError::Unavailable {
                warn!(error = %e, "moving due retries failed");
            }
        }
    }
}

/// Renews the lease of entries being processed here, takes over entries idle past the lease in
/// dead consumers' pending lists (dead-lettering those delivered too often), and refreshes the
/// depth gauges.
async fn leases_and_reclaim(q: Rc<RedisQueue>) {
    while !q.cmd.is_up() {
        monoio::time::sleep(Duration::from_millis(20)).await;
    }
    q.create_group().await;
    loop {
        monoio::time::sleep(LEASE_TICK).await;
        if !q.cmd.is_up() {
            continue;
        }
        renew_leases(&q).await;
        reclaim(&q).await;
        refresh_depth(&q).await;
    }
}

async fn renew_leases(q: &RedisQueue) {
    let ids: Vec<Bytes> = q
        .in_flight
        .borrow()
        .iter()
        .filter(|(_, since)| since.elapsed() < q.lease_held)
        .map(|(id, _)| id.clone())
        .collect();
    if ids.is_empty() {
        return;
    }
    let mut args: Vec<&[u8]> = vec![b"XCLAIM", &q.keys.stream, GROUP, &q.consumer, b"0"];
    args.extend(ids.iter().map(|b| &b[..]));
    args.push(b"JUSTID");
    let sent = Instant::now();
    match q.cmd.call(&args).await {
        // The ids it names had their idle time reset; the others are no longer pending.
        Ok(Frame::Array(Some(renewed))) => {
            let mut in_flight = q.in_flight.borrow_mut();
            for id in renewed.iter().filter_map(Frame::as_bytes) {
                if let Some(since) = in_flight.get_mut(id) {
                    *since = sent;
                }
            }
        }
        Ok(_) => warn!("unexpected lease renewal reply"),
        Err(e) => warn!(error = %e, "lease renewal failed"),
    }
}

async fn reclaim(q: &RedisQueue) {
    let (idle, ilen) = crate::resp::encode::decimal(LEASE.as_millis() as u64);
    let pending = q
        .cmd
        .call(&[
            b"XPENDING",
            &q.keys.stream,
            GROUP,
            b"IDLE",
            &idle[..ilen],
            b"-",
            b"+",
            b"50",
        ])
        .await;
    let Ok(Frame::Array(Some(rows))) = pending else {
        return;
    };
    for row in rows {
        let Some(cols) = row.as_array() else { continue };
        let (Some(id), Some(Frame::Integer(deliveries))) =
            (cols.first().and_then(Frame::as_bytes), cols.get(3))
        else {
            continue;
        };
        if q.in_flight.borrow().contains_key(id) {
            continue;
        }
        let claimed_at = Instant::now();
        let claimed = q
            .cmd
            .call(&[
                b"XCLAIM",
                &q.keys.stream,
                GROUP,
                &q.consumer,
                &idle[..ilen],
                id,
            ])
            .await;
        let Ok(frame) = claimed else { continue };
        for e in reads::xclaim(&frame).unwrap_or_default() {
            match e {
                Entry::Job(mut d) => {
                    if *deliveries as u64 >= u64::from(q.max_deliveries) {
                        // A job that keeps killing its consumer: stop delivering it.
                        d.attempt = d.attempt.max(*deliveries as u32);
                        warn!(correlation_id = %d.job.id, deliveries, "delivered too often without finishing; dead-lettering");
                        q.in_flight
                            .borrow_mut()
                            .insert(d.entry_id.clone().unwrap_or_default(), claimed_at);
                        let reason = "delivered too many times without finishing";
                        let now = Timestamp::now();
                        let state = RequestState {
                            status: crate::store::Status::Failed,
                            submitted_at: d.job.submitted_at,
                            updated_at: now,
                            outcome: Some(Box::new(crate::store::Outcome {
                                result: None,
                                headers: None,
                                status_code: None,
                                error: Some(reason.to_owned()),
                                processing_time_ms: 0,
                                completed_at: now,
                            })),
                        };
                        q.dead_letter(d, Some(state), reason).await;
                    } else {
                        // In flight from now on: its lease is renewed while it waits for a slot,
                        // and the next reclaim pass does not take it again.
                        if let Some(id) = &d.entry_id {
                            q.in_flight.borrow_mut().insert(id.clone(), claimed_at);
                        }
                        q.reclaimed.borrow_mut().push_back(d);
                    }
                }
                Entry::Unreadable(id) => {
                    let _ = q.cmd.call(&[b"XACK", &q.keys.stream, GROUP, &id]).await;
                }
            }
        }
    }
}

async fn refresh_depth(q: &RedisQueue) {
    let r = q
        .cmd
        .pipeline(4, |out| {
            command(out, &[b"XLEN", &q.keys.stream]);
            command(out, &[b"ZCARD", &q.keys.retries]);
            command(out, &[b"XPENDING", &q.keys.stream, GROUP]);
            command(out, &[b"XINFO", b"GROUPS", &q.keys.stream]);
        })
        .await;
    if let Ok(frames) = r {
        let n = |f: Option<&Frame>| match f {
            Some(Frame::Integer(v)) => (*v).max(0) as u64,
            _ => 0,
        };
        // XPENDING's summary starts with the number of pending entries.
        let pending = n(frames
            .get(2)
            .and_then(Frame::as_array)
            .and_then(|a| a.first()));
        // Not yet delivered: the group's `lag`. The stream also holds acknowledged entries until
        // the next trim, so `XLEN - pending` only bounds it from above (the fallback when Redis
        // cannot tell the lag).
        let ready =
            group_lag(frames.get(3)).unwrap_or_else(|| n(frames.first()).saturating_sub(pending));
        q.depth.set(Depth {
            ready,
            delayed: n(frames.get(1)),
            pending,
        });
    }
}

/// The `lag` of this backend's group in an `XINFO GROUPS` reply.
fn group_lag(reply: Option<&Frame>) -> Option<u64> {
    reply?.as_array()?.iter().find_map(|g| {
        let fields = g.as_array()?;
        let get = |name: &[u8]| {
            fields
                .chunks(2)
                .find(|kv| kv[0].as_bytes().is_some_and(|k| &k[..] == name))
                .and_then(|kv| kv.get(1))
        };
        if get(b"name")?.as_bytes()?[..] != *GROUP {
            return None;
        }
        match get(b"lag")? {
            Frame::Integer(v) => Some((*v).max(0) as u64),
            _ => None,
        }
    })
}
