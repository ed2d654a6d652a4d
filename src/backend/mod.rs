//! A request's whole life for one mode: a [`Backend`] owns the queue *and* the request state.
//!
//! `embedded` keeps both in process memory (the default; not durable); `redis` keeps them in
//! Redis Streams and state keys, with a local table of the final states this shard wrote. The
//! submit handler, the status lookups and the worker slots call the same operations on either
//! and never ask which one they have.

pub mod embedded;
pub mod idempotency;
mod job;
pub mod redis;
mod waiters;

use std::cell::RefCell;
use std::time::{Duration, Instant};

use tracing::debug;

use crate::clock::Timestamp;
use crate::id::CorrelationId;
use crate::metrics::{DlqReason, ShardMetrics};
use crate::store::{Outcome, RequestState, StateTable, Status, UpdateError};

pub use embedded::EmbeddedBackend;
pub use job::{Delivery, Job, Metadata, NewJob};
pub use redis::RedisBackend;
pub use waiters::{Waiters, Watch};

/// Why a backend refused or failed an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueError {
    /// The queue is at its configured depth or byte limit (backpressure); the seconds until
    /// it has likely drained enough to take more (its depth ÷ its recent drain rate, 1..=60).
    Full(u32),
    /// The backend is unreachable or past its deadline.
    Unavailable,
    /// Too many submits are already waiting for the backend (admission control).
    Overloaded,
    /// The shard is shutting down.
    Closed,
}

/// Depth figures for metrics and health.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Depth {
    /// Waiting to be fetched.
    pub ready: u64,
    /// Waiting for a retry's backoff to pass.
    pub delayed: u64,
    /// Delivered to a consumer and not yet acknowledged (Redis's pending entries list; the
    /// embedded queue has none).
    pub pending: u64,
}

impl Depth {
    /// Writes these figures and `states` (the states this shard holds) into a scrape's copy.
    fn fill(self, m: &mut ShardMetrics, states: usize) {
        m.queue_ready = self.ready;
        m.queue_delayed = self.delayed;
        m.queue_pending = self.pending;
        m.states = states as u64;
    }
}

/// Where a dead letter sits in its shard's dead-letter queue, oldest first: Redis orders by the
/// stream entry id (milliseconds, sequence), the embedded queue by when it was dead-lettered
/// (microseconds) and then by arrival. Positions of different shards compare by time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DlqPosition(pub u64, pub u64);

impl DlqPosition {
    /// The position just before this one: "after `p.before()`" includes `p`.
    pub fn before(self) -> Option<DlqPosition> {
        match self {
            DlqPosition(0, 0) => None,
            DlqPosition(a, 0) => Some(DlqPosition(a - 1, u64::MAX)),
            DlqPosition(a, b) => Some(DlqPosition(a, b - 1)),
        }
    }
}

/// One dead letter as the admin API lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetterEntry {
    /// Its place in its shard's queue.
    pub position: DlqPosition,
    /// The request.
    pub id: CorrelationId,
    /// Why it was dead-lettered (a `DlqReason` label).
    pub reason: String,
    /// The last error.
    pub error: String,
    /// Processing attempts made (1 + retries).
    pub attempts: u32,
    /// When it was dead-lettered.
    pub failed_at: Timestamp,
}

/// What a cancel found.
#[derive(Debug, Clone, PartialEq)]
pub enum Cancel {
    /// It was `PENDING`: now `CANCELLED`, and it will never be processed.
    Cancelled(RequestState),
    /// It was not `PENDING` any more (a worker took it, or it is final): the status it had.
    Refused(Status),
    /// No such request.
    Unknown,
}

/// The outcome of a cancelled request.
pub(crate) fn cancelled_outcome(now: Timestamp) -> Outcome {
    Outcome {
        result: None,
        headers: None,
        status_code: None,
        error: Some("Cancelled before processing".to_owned()),
        processing_time_ms: 0,
        completed_at: now,
    }
}

/// A request the backend accepted (the 202 may be sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// Its correlation id, owned by this shard.
    pub id: CorrelationId,
    /// When it was accepted.
    pub submitted_at: Timestamp,
}

/// Whether a worker slot should run a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Run it: the request is `PROCESSING` (or the backend learns its state only from the
    /// final write).
    Run,
    /// The request is already final here: a redelivery whose acknowledgement was lost. Settle
    /// it as [`Settlement::Duplicate`] without running it again.
    AlreadyFinal(Status),
}

/// How a delivery ends.
#[derive(Debug, Clone, PartialEq)]
pub enum Settlement {
    /// `COMPLETED` with the processor's output.
    Completed(Outcome),
    /// `FAILED` for good: the job goes to the dead-letter queue with `outcome.error`, for
    /// this reason.
    DeadLettered(Outcome, DlqReason),
    /// `TIMEOUT`: the processor ran past the deadline.
    TimedOut(Outcome),
    /// Deliver the job again (attempt + 1) after this delay; the request stays `PROCESSING`.
    RetryLater(Duration),
    /// A redelivery of a request already final here: acknowledge it with the state held.
    Duplicate,
}

/// What a shard needs for a request's life, from accepting it to its final state. Futures are
/// `!Send`: a backend lives on one shard's thread.
#[allow(async_fn_in_trait)]
pub trait Backend {
    /// Accepts a request: mints an id this shard owns, records it `PENDING` and queues it.
    /// Returns once the queue has it (durably, where the backend is durable). With `watch`, a
    /// waiter for the new id is registered before it is queued (so no final write, here or on
    /// another instance, can come before it), unless the shard's waiter bound is reached.
    async fn submit(
        &self,
        job: NewJob,
        now: Timestamp,
        watch: bool,
    ) -> Result<(Accepted, Option<Watch<'_>>), QueueError>;
    /// [`Backend::submit`] under idempotency key `key` (owned by this shard, see
    /// `idempotency::shard_of_key`): queued only if the key is new, recorded with the request in
    /// the same step; a known key answers with its request (same body) or a conflict.
    async fn submit_idempotent(
        &self,
        job: NewJob,
        now: Timestamp,
        key: &[u8],
        body: idempotency::BodyHash,
    ) -> Result<idempotency::Idempotent, QueueError>;
    /// Accepts several requests in one go, all or none: every one is queued, or none is (and
    /// none leaves a state behind). The answers are in `jobs`' order.
    async fn submit_many(
        &self,
        jobs: Vec<NewJob>,
        now: Timestamp,
    ) -> Result<Vec<Accepted>, QueueError>;
    /// Waits for at least one job and returns at most `free`, taken from the queue at most
    /// `per_read` at a time (`worker.batch_size`).
    async fn next_jobs(&self, free: usize, per_read: usize) -> Vec<Delivery>;
    /// Lets the reads of the next `next_jobs` calls take up to `ahead` jobs more than asked,
    /// kept here for the calls after (none once it is 0): where a read costs a round trip, the
    /// worker asks for it while its jobs finish at once, so a slot's next job is at hand. A
    /// backend whose reads cost nothing ignores it.
    fn read_ahead(&self, _ahead: usize) {}
    /// The worker is stopping (a drain) with a `next_jobs` call in flight. `true` asks that call
    /// to return soon with what it has taken, to be awaited and given back (where a read in
    /// flight may take jobs that nobody would run until their lease lapses); `false` when it
    /// can simply be dropped.
    async fn stop_taking(&self) -> bool {
        false
    }
    /// The worker stopped (a drain): jobs taken from the queue and not handed to a slot
    /// (`taken`, and those the backend keeps: read ahead, taken over) are given back, for
    /// another instance (or this one restarted) to take at once rather than once their lease
    /// lapses.
    async fn give_back(&self, _taken: Vec<Delivery>) {}
    /// A worker slot takes `delivery` at `now`.
    fn start(&self, delivery: &Delivery, now: Timestamp) -> Start;
    /// The job did not finish at once: make `PROCESSING` visible to every reader (started at
    /// `now`). Jobs that finish on their first poll skip this write.
    async fn report_processing(&self, delivery: &Delivery, now: Timestamp);
    /// Ends a delivery (records the final state, dead-letters, schedules the retry) and
    /// acknowledges it. A final write that comes too late (the request is already final) is
    /// ignored, and the delivery is acknowledged all the same. `ended` is when processing ended.
    async fn settle(&self, delivery: Delivery, settlement: Settlement, ended: Instant);
    /// The state this shard holds for `id`, if any (no I/O).
    fn held(&self, id: &CorrelationId) -> Option<RequestState>;
    /// Registers a waiter for `id`, which this shard owns: it is woken when a final state of
    /// `id` is recorded after this call. Register first, then read the state, so a final write
    /// in between is never missed. `None` when the shard's waiter bound is reached.
    fn watch(&self, id: &CorrelationId) -> Option<Watch<'_>>;
    /// The state of `id` in the store every instance shares; `Ok(None)` when unknown there or
    /// when this process is the only store (the embedded backend, whose states are all held).
    async fn load(&self, id: &CorrelationId) -> Result<Option<RequestState>, QueueError>;
    /// Cancels `id` (owned by this shard) unless a worker took it already: `CANCELLED` (final,
    /// waiters woken), and never processed, on any instance.
    async fn cancel(&self, id: &CorrelationId, now: Timestamp) -> Result<Cancel, QueueError>;
    /// At most `limit` of this shard's dead letters placed after `after`, oldest first.
    async fn dead_letters(
        &self,
        after: Option<DlqPosition>,
        limit: usize,
    ) -> Result<Vec<DeadLetterEntry>, QueueError>;
    /// Puts dead letter `id` (owned by this shard) back in the queue: `PENDING` again with its
    /// attempts reset and its deadline restarted, out of the dead-letter queue in the same step.
    /// `Ok(false)` when it is not a dead letter here.
    async fn redrive(&self, id: &CorrelationId, now: Timestamp) -> Result<bool, QueueError>;
    /// Deletes dead letter `id` from the dead-letter queue (its state stays `FAILED` until it
    /// expires). `Ok(false)` when it is not a dead letter here.
    async fn drop_dead_letter(&self, id: &CorrelationId) -> Result<bool, QueueError>;
    /// A real check that the backend can take work now.
    async fn check(&self) -> Result<(), QueueError>;
    /// Drops final states whose TTL ran out by `now`.
    fn expire(&self, now: Instant);
    /// Fills in the backend's gauges (depth, states held, connection figures) for a scrape.
    fn gauges(&self, metrics: &mut ShardMetrics);
    /// Whether a drain keeps taking this backend's jobs until none is left: true when they live
    /// only in this process, false when another instance can take them (they stay queued).
    fn drain_works_off(&self) -> bool;
    /// How many accepted jobs wait in a queue that lives only in this process (lost if it stops
    /// now).
    fn lost_on_exit(&self) -> u64;
    /// The ids of every accepted request that is lost if the process stops now: those waiting
    /// and those in a worker slot, where nothing outside the process keeps them.
    fn lost_ids(&self) -> Vec<CorrelationId>;
}

/// The state of `id` (owned by this shard) once it is final, or as it is at `until`: `Ok(None)`
/// when unknown. Registers a waiter before it reads the state, so a final write in between is
/// not missed; when the shard's waiter bound is reached it answers at once. In Redis mode the
/// state is read from Redis when this shard holds no final copy: once now and, unless a final
/// write here woke the waiter, once at `until`; never on an interval.
pub async fn wait_final<B: Backend>(
    backend: &B,
    id: &CorrelationId,
    until: Instant,
) -> Result<Option<RequestState>, QueueError> {
    let mut watch = backend.watch(id);
    let state = match backend.held(id) {
        Some(s) => Some(s),
        None => backend.load(id).await?,
    };
    let left = until.saturating_duration_since(Instant::now());
    let waits = state.as_ref().is_some_and(|s| !s.status.is_final()) && !left.is_zero();
    let Some(w) = watch.as_mut().filter(|_| waits) else {
        return Ok(state);
    };
    monoio::select! {
        _ = w.woken() => {},
        _ = monoio::time::sleep(left) => {},
    }
    drop(watch);
    match backend.held(id) {
        Some(s) => Ok(Some(s)),
        None => backend.load(id).await.map(|loaded| loaded.or(state)),
    }
}

/// For a request this shard has just accepted with `watch` registered (by
/// [`Backend::submit`]): its final state once it is recorded by `until`, else `None`. What was
/// just accepted is `PENDING`, so it reads Redis only if woken without holding the final state
/// itself.
pub async fn final_after_submit<B: Backend>(
    backend: &B,
    id: &CorrelationId,
    mut watch: Watch<'_>,
    until: Instant,
) -> Option<RequestState> {
    let is_final = |s: &RequestState| s.status.is_final();
    if let Some(s) = backend.held(id).filter(is_final) {
        return Some(s);
    }
    let left = until.saturating_duration_since(Instant::now());
    monoio::select! {
        _ = watch.woken() => {},
        _ = monoio::time::sleep(left) => return None,
    }
    drop(watch);
    match backend.held(id) {
        Some(s) => Some(s).filter(is_final),
        None => backend.load(id).await.ok().flatten().filter(is_final),
    }
}

/// [`Backend::start`] on a state table: `PENDING → PROCESSING`, or the final state it already
/// has. A state the table does not hold (submitted through another instance, or before a
/// restart) runs and is recorded when it is final.
fn start_in(table: &RefCell<StateTable>, delivery: &Delivery, now: Timestamp) -> Start {
    match table.borrow_mut().start(&delivery.job.id, now) {
        Ok(()) | Err(UpdateError::Unknown) => Start::Run,
        Err(UpdateError::Refused(r)) => Start::AlreadyFinal(r.from),
    }
}

/// Writes a final state to `table` (inserting it when the table holds none); false when the
/// state machine refused it (already final: a concurrent duplicate delivery).
fn record(
    table: &RefCell<StateTable>,
    delivery: &Delivery,
    to: Status,
    outcome: Outcome,
    ended: Instant,
) -> bool {
    let id = delivery.job.id;
    let settled =
        table
            .borrow_mut()
            .finish_or_insert(&id, to, outcome, delivery.job.submitted_at, ended);
    match settled {
        Ok(()) => true,
        Err(r) => {
            debug!(correlation_id = %id, from = r.from.as_str(), "late final write ignored");
            false
        }
    }
}
