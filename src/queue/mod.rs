//! The queue between accepting a request and processing it. [`QueueBackend`] is what a shard's
//! submit path and worker slots need from a queue; `memory` is the embedded backend (the default),
//! and the Redis Streams backend implements the same trait. [`Backend`] dispatches to the
//! configured one without boxing futures.

pub mod memory;
pub mod redis_streams;

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;

use crate::clock::Timestamp;
use crate::shard::id::CorrelationId;
use crate::store::RequestState;

pub use memory::MemoryQueue;
pub use redis_streams::RedisQueue;

/// Per-request options from the submit body's `metadata`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// 0..=9.
    pub priority: u8,
    /// Processing deadline.
    pub timeout: Duration,
    /// Client-declared retry count (informational).
    pub retry_count: u32,
    /// Proxy-mode target endpoint name.
    pub endpoint: Option<String>,
    /// Proxy-mode HTTP method.
    pub method: Option<String>,
}

/// A queued request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Its id.
    pub id: CorrelationId,
    /// The `payload` object, byte for byte as the client sent it.
    pub payload: Bytes,
    /// The `headers` object as JSON text, if given.
    pub headers: Option<Bytes>,
    /// Options.
    pub metadata: Metadata,
    /// When it was accepted.
    pub submitted_at: Timestamp,
}

/// A job handed to a worker slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The job.
    pub job: Job,
    /// 1 on the first delivery, +1 per retry.
    pub attempt: u32,
    /// The stream entry id (Redis), acknowledged when the delivery is finished.
    pub entry_id: Option<Bytes>,
}

/// Why the queue refused or failed an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueError {
    /// The queue is at its configured depth limit (backpressure).
    Full,
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

/// What a shard needs from a queue. Futures are `!Send`: a backend lives on one shard.
#[allow(async_fn_in_trait)]
pub trait QueueBackend {
    /// Queues `job`; returns once the queue has accepted it (the 202 may then be sent).
    async fn enqueue(&self, job: Job) -> Result<(), QueueError>;
    /// Waits for at least one job and returns at most `free`, taken from the queue at most
    /// `per_read` at a time (`worker.batch_size`).
    async fn fetch(&self, free: usize, per_read: usize) -> Vec<Delivery>;
    /// Whether `finish` and `dead_letter` store the state themselves (Redis) or the shard's table
    /// is the only copy (embedded); callers skip copying the state when it is not needed.
    fn stores_state(&self) -> bool;
    /// Whether every call finishes on its first poll (the embedded queue: memory only).
    fn never_waits(&self) -> bool;
    /// The delivery is finished for good with `state` (completed, failed, timed out). `state` is
    /// `Some` exactly when [`QueueBackend::stores_state`].
    async fn finish(&self, delivery: Delivery, state: Option<RequestState>);
    /// Delivers the job again after `delay`.
    async fn retry(&self, delivery: Delivery, delay: Duration);
    /// Moves the job to the dead-letter queue with `reason`, finished with `state` (as for
    /// [`QueueBackend::finish`]).
    async fn dead_letter(&self, delivery: Delivery, state: Option<RequestState>, reason: &str);
    /// A worker slot took the job (the backend records `PROCESSING` where it stores state).
    async fn processing(&self, job: &Job, now: Timestamp);
    /// The state of a request this shard's table does not hold (submitted through another
    /// instance, or before a restart); `Ok(None)` when unknown or when the backend keeps none.
    async fn load_state(&self, id: &CorrelationId) -> Result<Option<RequestState>, QueueError>;
    /// Current depth.
    fn depth(&self) -> Depth;
    /// A real check that the backend can take work now.
    async fn check(&self) -> Result<(), QueueError>;
}

/// The configured backend of one shard. Redis futures are boxed: they hold the Redis client's
/// per-call timers and would otherwise make every future that awaits a backend call (the worker
/// slot spawned per job, the request handler) several KB larger, for the embedded queue too;
/// spawning and finishing such a task copied it three times (callgrind: 15 % of the embedded
/// submit path's instructions).
pub enum Backend {
    /// In-process queue.
    Memory(MemoryQueue),
    /// Redis Streams.
    Redis(Rc<RedisQueue>),
}

impl QueueBackend for Backend {
    fn stores_state(&self) -> bool {
        match self {
            Backend::Memory(_) => false,
            Backend::Redis(_) => true,
        }
    }
    fn never_waits(&self) -> bool {
        matches!(self, Backend::Memory(_))
    }
    async fn enqueue(&self, job: Job) -> Result<(), QueueError> {
        match self {
            Backend::Memory(q) => q.enqueue(job).await,
            Backend::Redis(q) => Box::pin(q.enqueue(job)).await,
        }
    }
    async fn fetch(&self, free: usize, per_read: usize) -> Vec<Delivery> {
        match self {
            // In process there is no round trip to amortise: one batch at a time.
            Backend::Memory(q) => q.fetch(free.min(per_read)).await,
            Backend::Redis(q) => Box::pin(q.fetch(free, per_read)).await,
        }
    }
    async fn finish(&self, delivery: Delivery, state: Option<RequestState>) {
        match self {
            Backend::Memory(q) => q.finish(delivery, state).await,
            Backend::Redis(q) => Box::pin(q.finish(delivery, state)).await,
        }
    }
    async fn retry(&self, delivery: Delivery, delay: Duration) {
        match self {
            Backend::Memory(q) => q.retry(delivery, delay).await,
            Backend::Redis(q) => Box::pin(q.retry(delivery, delay)).await,
        }
    }
    async fn dead_letter(&self, delivery: Delivery, state: Option<RequestState>, reason: &str) {
        match self {
            Backend::Memory(q) => q.dead_letter(delivery, state, reason).await,
            Backend::Redis(q) => Box::pin(q.dead_letter(delivery, state, reason)).await,
        }
    }
    async fn processing(&self, job: &Job, now: Timestamp) {
        match self {
            Backend::Memory(_) => {}
            Backend::Redis(q) => Box::pin(q.processing(job, now)).await,
        }
    }
    async fn load_state(&self, id: &CorrelationId) -> Result<Option<RequestState>, QueueError> {
        match self {
            Backend::Memory(_) => Ok(None),
            Backend::Redis(q) => Box::pin(q.load_state(id)).await,
        }
    }
    fn depth(&self) -> Depth {
        match self {
            Backend::Memory(q) => q.depth(),
            Backend::Redis(q) => q.depth(),
        }
    }
    async fn check(&self) -> Result<(), QueueError> {
        match self {
            Backend::Memory(q) => q.check().await,
            Backend::Redis(q) => Box::pin(q.check()).await,
        }
    }
}
