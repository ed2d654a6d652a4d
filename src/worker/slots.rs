//! The worker slots of one shard. A dispatcher asks the backend for at most as many jobs as
//! there are free slots, at most `worker.batch_size` per read, and runs each job in a slot:
//! polled once in place, and a task of its own only if it has to wait (a slow processor, a
//! Redis round trip). A run takes the job (`start`), runs its processor under the deadline,
//! and hands the verdict (`verdict.rs`) to the backend to settle; the slot is free from then on,
//! while the backend records it.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use super::registry::ShardProcessors;
use super::verdict::{judge, Ran, RetryPolicy, Timing};
use super::ProcessError;
use crate::backend::{Backend, Delivery, Settlement, Start};
use crate::backoff::Jitter;
use crate::clock::Timestamp;
use crate::config::WorkerConfig;
use crate::metrics::{ShardMetrics, WorkerError};
use crate::sync::deadline::TimedOut;
use crate::sync::notify::Notify;
use crate::sync::shutdown::Shutdown;

/// While jobs finish on their first poll, reads take this many times the free slots (the rest
/// wait, read, for the next free slots), and this many times the slots may have their outcomes
/// being recorded.
const READ_AHEAD: usize = 8;

/// One shard's worker slots: the backend they take jobs from, the processors they run, and how
/// many are busy.
pub struct Worker<B> {
    backend: Rc<B>,
    metrics: Rc<RefCell<ShardMetrics>>,
    processors: ShardProcessors,
    slots: usize,
    batch_size: usize,
    policy: RetryPolicy,
    active: Cell<usize>,
    /// Outcomes handed to the backend by slots since freed, not yet recorded.
    settling: Cell<usize>,
    /// Whether every job of the last batch freed its slot on its first poll.
    in_place: Cell<bool>,
    slot_freed: Notify,
    /// From the start of `run` until it has given back what it took and did not start.
    taking: Cell<bool>,
    jitter: RefCell<Jitter>,
}

impl<B: Backend + 'static> Worker<B> {
    /// The slots of a shard; `seed` seeds the retry jitter.
    pub fn new(
        backend: Rc<B>,
        metrics: Rc<RefCell<ShardMetrics>>,
        processors: ShardProcessors,
        config: &WorkerConfig,
        seed: u64,
    ) -> Self {
        Worker {
            backend,
            metrics,
            processors,
            slots: config.count,
            batch_size: config.batch_size,
            policy: RetryPolicy {
                max_retries: config.max_retries,
                delay_base: config.retry_delay_base,
                delay_max: config.retry_delay_max,
            },
            active: Cell::new(0),
            settling: Cell::new(0),
            in_place: Cell::new(false),
            slot_freed: Notify::new(),
            taking: Cell::new(false),
            jitter: RefCell::new(Jitter::new(seed)),
        }
    }

    /// Slots busy now.
    pub(crate) fn active(&self) -> usize {
        self.active.get()
    }

    /// Jobs not yet settled: those in slots, and outcomes still being recorded.
    pub(crate) fn unsettled(&self) -> usize {
        self.active.get() + self.settling.get()
    }

    /// Whether the dispatcher still runs, or has jobs to give back (notified on `slot_freed`
    /// when that ends).
    pub(crate) fn taking(&self) -> bool {
        self.taking.get()
    }

    /// Notified whenever a slot frees up, and whenever an outcome is recorded.
    pub(crate) fn slot_freed(&self) -> &Notify {
        &self.slot_freed
    }

    /// Runs the dispatcher until shutdown, then gives back what the backend took for it and it
    /// did not start (`Backend::give_back`). Slots already running finish on their own.
    pub(crate) async fn run(self: Rc<Self>, shutdown: Shutdown) {
        self.taking.set(true);
        let taken = self.dispatch(&shutdown).await;
        self.backend.give_back(taken).await;
        self.taking.set(false);
        self.slot_freed.notify();
    }

    /// Hands jobs to free slots until shutdown; then, what a read in flight took.
    async fn dispatch(self: &Rc<Self>, shutdown: &Shutdown) -> Vec<Delivery> {
        let mut spare = None;
        loop {
            if shutdown.is_set() {
                return Vec::new();
            }
            let free = self.slots.saturating_sub(self.active.get());
            if free == 0 {
                let freed = self.slot_freed.notified();
                monoio::select! {
                    _ = freed => {},
                    _ = shutdown.wait() => return Vec::new(),
                }
                continue;
            }
            // While jobs free their slots on their first poll, a slot's next job should be at
            // hand rather than a read away.
            let ahead = if self.in_place.get() {
                free * (READ_AHEAD - 1)
            } else {
                0
            };
            self.backend.read_ahead(ahead);
            let mut taking = std::pin::pin!(self.backend.next_jobs(free, self.batch_size));
            let deliveries = monoio::select! {
                d = taking.as_mut() => d,
                _ = shutdown.wait() => {
                    // A read in flight may take jobs: its answer is given back, not dropped.
                    return if self.backend.stop_taking().await {
                        taking.await
                    } else {
                        Vec::new()
                    };
                }
            };
            let mut in_place = true;
            for delivery in deliveries {
                let busy = self.active.get();
                self.active.set(busy + 1);
                self.metrics.borrow_mut().consumed += 1;
                let slot = Box::pin(run_slot(self.clone(), delivery));
                super::in_place::run(slot, &mut spare);
                // Still busy: the job waits for its processor, or its slot for the record.
                in_place &= self.active.get() <= busy;
            }
            self.in_place.set(in_place);
        }
    }

    /// Runs one delivery to its settlement, in place (for tests and benches; a slot frees
    /// itself earlier: `run_slot`).
    #[cfg(any(test, feature = "internals"))]
    pub async fn run_job(&self, delivery: Delivery) {
        let (delivery, settlement, ended) = self.process(delivery).await;
        self.backend.settle(delivery, settlement, ended).await;
    }

    /// Runs one delivery's job: how it is to be settled, and when processing ended.
    async fn process(&self, mut delivery: Delivery) -> (Delivery, Settlement, Instant) {
        let id = delivery.job.id;
        let now = Timestamp::now();
        if let Start::AlreadyFinal(status) = self.backend.start(&delivery, now) {
            debug!(correlation_id = %id, status = status.as_str(), "duplicate delivery skipped");
            return (delivery, Settlement::Duplicate, Instant::now());
        }
        let started = Instant::now();
        let deadline = delivery.job.metadata.timeout;
        // `metadata.timeout` bounds all attempts together, from the first one's start.
        let first = delivery.job.first_started_at.unwrap_or(now);
        let left = deadline.saturating_sub(Duration::from_micros(now.0.saturating_sub(first.0)));
        let ran = match self
            .processors
            .resolve(delivery.job.metadata.endpoint.as_deref())
        {
            // The earlier attempts used the whole time: not run again.
            _ if left.is_zero() => Ran::TimedOut,
            Ok(processor) => {
                let work = processor.process(&delivery.job);
                let report = || self.backend.report_processing(&delivery, now);
                match run_with_deadline(work, left, started, report).await {
                    Ok(Ok(output)) => Ran::Done(output),
                    Ok(Err(e)) => Ran::Failed(e),
                    Err(TimedOut) => Ran::TimedOut,
                }
            }
            // Submit refuses names it does not know; this is a job queued by a broker
            // configured with other processors (a rolling deploy on a shared Redis): retried,
            // so a broker that has the processor may take it meanwhile, then dead-lettered.
            Err(unknown) => Ran::Failed(ProcessError::retryable(unknown.to_string())),
        };
        // One clock read for the end: the wall-clock end is the start plus the monotonic elapsed
        // time.
        let ended = Instant::now();
        let elapsed = ended.duration_since(started);
        let timing = Timing {
            elapsed,
            ended_at: Timestamp(now.0 + elapsed.as_micros() as u64),
        };
        {
            let mut m = self.metrics.borrow_mut();
            if delivery.job.first_started_at.is_none() && delivery.attempt <= 1 {
                let waited = now.0.saturating_sub(delivery.job.submitted_at.0);
                m.waited(waited as f64 / 1e6);
            }
            match &ran {
                Ran::Failed(e) => {
                    m.worker_error(WorkerError::Processing);
                    debug!(correlation_id = %id, attempt = delivery.attempt, error = %e.message, "processing failed");
                }
                Ran::TimedOut => {
                    m.worker_error(WorkerError::Timeout);
                    warn!(correlation_id = %id, "request timed out");
                }
                Ran::Done(_) => {}
            }
        }
        let jitter = self.jitter.borrow_mut().next_unit();
        let verdict = judge(
            ran,
            delivery.attempt,
            deadline,
            left.saturating_sub(elapsed),
            &self.policy,
            jitter,
            timing,
        );
        if let Settlement::RetryLater(_) = verdict.settlement {
            delivery.job.first_started_at = Some(first);
        }
        {
            let mut m = self.metrics.borrow_mut();
            let secs = elapsed.as_secs_f64();
            let total = timing.ended_at.0.saturating_sub(delivery.job.submitted_at.0) as f64 / 1e6;
            let status = match &verdict.settlement {
                Settlement::Completed(_) => Some(crate::store::Status::Completed),
                Settlement::TimedOut(_) => Some(crate::store::Status::Timeout),
                Settlement::DeadLettered(..) => Some(crate::store::Status::Failed),
                Settlement::RetryLater(_) | Settlement::Duplicate => None,
            };
            if let Some(status) = status {
                m.finished(status, total);
            }
            match &verdict.settlement {
                Settlement::Completed(_) => m.processed(crate::store::Status::Completed, secs),
                Settlement::TimedOut(_) => m.processed(crate::store::Status::Timeout, secs),
                Settlement::DeadLettered(o, reason) => {
                    m.processed(crate::store::Status::Failed, secs);
                    m.dead_letter(*reason);
                    warn!(correlation_id = %id, attempts = delivery.attempt, error = o.error.as_deref().unwrap_or(""), "request failed; dead-lettered");
                }
                Settlement::RetryLater(delay) => {
                    m.retries += 1;
                    debug!(correlation_id = %id, attempt = delivery.attempt, delay_ms = delay.as_millis() as u64, "retrying");
                }
                Settlement::Duplicate => {}
            }
        }
        (delivery, verdict.settlement, ended)
    }
}

/// Runs one delivery in a slot. The slot is free again once the job's outcome is handed to the
/// backend, before the backend has recorded it (in Redis mode, a commit away): at-least-once
/// rests on the entry staying unacknowledged until then, not on the slot. At most
/// `READ_AHEAD` times `slots` outcomes wait for their record this way; past that a slot waits
/// for its own.
async fn run_slot<B: Backend + 'static>(worker: Rc<Worker<B>>, delivery: Delivery) {
    let (delivery, settlement, ended) = worker.process(delivery).await;
    let handed_over = worker.settling.get() < worker.slots * READ_AHEAD;
    if handed_over {
        worker.settling.set(worker.settling.get() + 1);
        worker.active.set(worker.active.get() - 1);
        worker.slot_freed.notify();
    }
    worker.backend.settle(delivery, settlement, ended).await;
    if handed_over {
        worker.settling.set(worker.settling.get() - 1);
    } else {
        worker.active.set(worker.active.get() - 1);
    }
    worker.slot_freed.notify();
}

/// Runs `work` under `deadline`. Work that finishes on its first poll (the built-in operations
/// always do) never arms a timer: the deadline costs nothing when it cannot fire. `on_pending`
/// runs once, only if the work did not finish on its first poll. The deadline counts from
/// `started`.
async fn run_with_deadline<F, P, PF>(
    work: F,
    deadline: Duration,
    started: Instant,
    on_pending: P,
) -> Result<F::Output, TimedOut>
where
    F: Future,
    P: FnOnce() -> PF,
    PF: Future<Output = ()>,
{
    let mut work = pin!(work);
    let first = std::future::poll_fn(|cx| Poll::Ready(work.as_mut().poll(cx))).await;
    match first {
        Poll::Ready(out) => Ok(out),
        Poll::Pending => {
            on_pending().await;
            let left = deadline.saturating_sub(started.elapsed());
            // A timer of its own, polled first in place (where `in_place` forwards its wakes);
            // boxed, so a job that never waits does not carry its 128-byte alignment.
            let mut timer = Box::pin(monoio::time::sleep(left));
            std::future::poll_fn(|cx| {
                if let Poll::Ready(out) = work.as_mut().poll(cx) {
                    return Poll::Ready(Ok(out));
                }
                timer.as_mut().poll(cx).map(|()| Err(TimedOut))
            })
            .await
        }
    }
}

#[cfg(test)]
#[path = "handover_tests.rs"]
mod handover_tests;

#[cfg(test)]
#[path = "slots_tests.rs"]
mod tests;
