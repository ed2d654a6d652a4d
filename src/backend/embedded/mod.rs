//! The embedded backend (`queue.type = memory`, the default): one shard's queue and request
//! states in process memory, and the ids they are filed under. The id of an accepted request
//! names the slot its state takes (`store/slots.rs`), so every lookup is one index. Not durable:
//! a crash loses what is queued, which the broker says at start-up.

mod drain_rate;
mod queue;

use std::cell::RefCell;
use std::time::Instant;

use super::{
    Accepted, Backend, Cancel, DeadLetterEntry, Delivery, DlqPosition, Job, NewJob, QueueError,
    Settlement, Start, Waiters, Watch,
};
use super::idempotency::{BodyHash, Idempotent, KeyTable, KeyUse};
use crate::metrics::DlqReason;
use crate::clock::Timestamp;
use crate::id::{CorrelationId, IdMinter};
use crate::metrics::ShardMetrics;
use crate::store::{RequestState, StateTable, Status};
#[cfg(any(test, feature = "internals"))]
pub use queue::DeadLetter;
use queue::MemoryQueue;

/// One shard's embedded queue and state table.
pub struct EmbeddedBackend {
    queue: MemoryQueue,
    table: RefCell<StateTable>,
    minter: RefCell<IdMinter>,
    waiters: Waiters,
    keys: RefCell<KeyTable>,
    dlq_retention: std::time::Duration,
}

impl EmbeddedBackend {
    /// An empty backend for a shard whose ids `minter` mints; at most `max_depth` jobs wait
    /// (then submits get 503); final states live for `ttl`; at most `max_waiters` clients wait
    /// for a final state at once.
    pub fn new(
        minter: IdMinter,
        max_depth: usize,
        ttl: std::time::Duration,
        max_waiters: usize,
    ) -> Self {
        EmbeddedBackend {
            queue: MemoryQueue::new(max_depth, usize::MAX),
            table: RefCell::new(StateTable::new(ttl)),
            minter: RefCell::new(minter),
            waiters: Waiters::new(max_waiters),
            keys: RefCell::new(KeyTable::new(ttl)),
            dlq_retention: std::time::Duration::from_secs(7 * 86_400),
        }
    }

    /// Refuses new jobs once the waiting ones hold `max_bytes` (no byte limit unless set).
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.queue.set_max_bytes(max_bytes);
        self
    }

    /// Bytes held by the jobs waiting.
    #[cfg(any(test, feature = "internals"))]
    pub fn queued_bytes(&self) -> usize {
        self.queue.bytes()
    }

    /// Keeps dead letters for `retention` (7 days unless set).
    pub fn with_dlq_retention(mut self, retention: std::time::Duration) -> Self {
        self.dlq_retention = retention;
        self
    }

    /// Every dead letter kept, oldest first.
    #[cfg(any(test, feature = "internals"))]
    pub fn all_dead_letters(&self) -> Vec<DeadLetter> {
        self.queue.dead_letters(None, usize::MAX)
    }
}

impl Backend for EmbeddedBackend {
    async fn submit(
        &self,
        job: NewJob,
        now: Timestamp,
        watch: bool,
    ) -> Result<(Accepted, Option<Watch<'_>>), QueueError> {
        let minted = job.new_id(&mut self.minter.borrow_mut());
        let id = self.table.borrow_mut().insert_pending(minted, now);
        let watch = if watch { self.waiters.watch(&id) } else { None };
        match self.queue.enqueue(std::iter::once(job.into_job(id, now))) {
            Ok(()) => Ok((
                Accepted {
                    id,
                    submitted_at: now,
                },
                watch,
            )),
            Err(e) => {
                self.table.borrow_mut().remove(&id);
                Err(e)
            }
        }
    }

    async fn submit_idempotent(
        &self,
        job: NewJob,
        now: Timestamp,
        key: &[u8],
        body: BodyHash,
    ) -> Result<Idempotent, QueueError> {
        if let Some(used) = self.keys.borrow().get(key) {
            return Ok(used.again(body));
        }
        // Nothing awaits between the look-up and the record: no other submit of this shard
        // runs in between.
        let (accepted, _) = self.submit(job, now, false).await?;
        let used = KeyUse { accepted, body };
        self.keys.borrow_mut().insert(key, used, Instant::now());
        Ok(Idempotent::Queued(accepted))
    }

    async fn submit_many(
        &self,
        jobs: Vec<NewJob>,
        now: Timestamp,
    ) -> Result<Vec<Accepted>, QueueError> {
        let queued: Vec<Job> = {
            let (mut table, mut minter) = (self.table.borrow_mut(), self.minter.borrow_mut());
            jobs.into_iter()
                .map(|job| {
                    let id = table.insert_pending(job.new_id(&mut minter), now);
                    job.into_job(id, now)
                })
                .collect()
        };
        let accepted: Vec<Accepted> = queued
            .iter()
            .map(|j| Accepted {
                id: j.id,
                submitted_at: now,
            })
            .collect();
        if let Err(e) = self.queue.enqueue(queued.into_iter()) {
            let mut table = self.table.borrow_mut();
            for a in &accepted {
                table.remove(&a.id);
            }
            return Err(e);
        }
        Ok(accepted)
    }

    async fn next_jobs(&self, free: usize, per_read: usize) -> Vec<Delivery> {
        // In process there is no round trip to amortise: one batch at a time.
        self.queue.fetch(free.min(per_read)).await
    }

    fn start(&self, delivery: &Delivery, now: Timestamp) -> Start {
        super::start_in(&self.table, delivery, now)
    }

    async fn report_processing(&self, _delivery: &Delivery, _now: Timestamp) {
        // `start` made it visible already: the table is every reader's copy.
    }

    async fn settle(&self, delivery: Delivery, settlement: Settlement, ended: Instant) {
        let id = delivery.job.id;
        let recorded = match settlement {
            Settlement::Completed(o) => {
                super::record(&self.table, &delivery, Status::Completed, o, ended)
            }
            Settlement::TimedOut(o) => {
                super::record(&self.table, &delivery, Status::Timeout, o, ended)
            }
            Settlement::DeadLettered(o, reason) => {
                let error = o.error.clone().unwrap_or_default();
                let recorded = super::record(&self.table, &delivery, Status::Failed, o, ended);
                if recorded {
                    self.queue.dead_letter(delivery, reason, &error);
                }
                recorded
            }
            Settlement::RetryLater(delay) => {
                self.queue.retry(delivery, delay);
                false
            }
            Settlement::Duplicate => false,
        };
        if recorded {
            self.waiters.wake(&id);
        }
    }

    fn held(&self, id: &CorrelationId) -> Option<RequestState> {
        self.table.borrow().get(id).cloned()
    }

    fn watch(&self, id: &CorrelationId) -> Option<Watch<'_>> {
        self.waiters.watch(id)
    }

    async fn load(&self, _id: &CorrelationId) -> Result<Option<RequestState>, QueueError> {
        Ok(None)
    }

    async fn cancel(&self, id: &CorrelationId, now: Timestamp) -> Result<Cancel, QueueError> {
        let mut table = self.table.borrow_mut();
        let Some(state) = table.get(id) else {
            return Ok(Cancel::Unknown);
        };
        if state.status != Status::Pending {
            return Ok(Cancel::Refused(state.status));
        }
        let submitted_at = state.submitted_at;
        let outcome = super::cancelled_outcome(now);
        // The job stays queued: when a worker takes it, `start` finds it final and it is
        // skipped without running.
        let done = table.finish_or_insert(id, Status::Cancelled, outcome, submitted_at, Instant::now());
        let state = table.get(id).cloned();
        drop(table);
        match (done, state) {
            (Ok(()), Some(state)) => {
                self.waiters.wake(id);
                Ok(Cancel::Cancelled(state))
            }
            (Err(refused), _) => Ok(Cancel::Refused(refused.from)),
            (Ok(()), None) => Ok(Cancel::Unknown),
        }
    }

    async fn dead_letters(
        &self,
        after: Option<DlqPosition>,
        limit: usize,
    ) -> Result<Vec<DeadLetterEntry>, QueueError> {
        Ok(self
            .queue
            .dead_letters(after, limit)
            .into_iter()
            .map(|d| DeadLetterEntry {
                position: d.position,
                id: d.job.id,
                reason: DlqReason::LABELS[d.reason as usize].to_owned(),
                error: d.error,
                attempts: d.attempts,
                failed_at: d.at,
            })
            .collect())
    }

    async fn redrive(&self, id: &CorrelationId, now: Timestamp) -> Result<bool, QueueError> {
        let Some(dead) = self.queue.take_dead_letter(id) else {
            return Ok(false);
        };
        let job = Job {
            first_started_at: None,
            ..dead.job.clone()
        };
        match self.queue.enqueue(std::iter::once(job)) {
            Ok(()) => {
                let mut table = self.table.borrow_mut();
                table.redrive(id, dead.job.submitted_at, now);
                Ok(true)
            }
            Err(e) => {
                self.queue.restore_dead_letter(dead);
                Err(e)
            }
        }
    }

    async fn drop_dead_letter(&self, id: &CorrelationId) -> Result<bool, QueueError> {
        Ok(self.queue.take_dead_letter(id).is_some())
    }

    async fn check(&self) -> Result<(), QueueError> {
        self.queue.check()
    }

    fn expire(&self, now: Instant) {
        self.table.borrow_mut().expire(now);
        self.keys.borrow_mut().expire(now);
        self.queue
            .expire_dead_letters(Timestamp::now(), self.dlq_retention);
    }

    fn gauges(&self, m: &mut ShardMetrics) {
        let now = Timestamp::now();
        m.oldest_age_seconds = Some(
            self.queue
                .oldest_ready()
                .map_or(0.0, |t| now.0.saturating_sub(t.0) as f64 / 1e6),
        );
        m.waiters = self.waiters.live() as u64;
        m.backend_up = 1;
        self.queue.depth().fill(m, self.table.borrow().count());
    }

    fn drain_works_off(&self) -> bool {
        true
    }

    fn lost_on_exit(&self) -> u64 {
        let depth = self.queue.depth();
        depth.ready + depth.delayed
    }

    fn lost_ids(&self) -> Vec<CorrelationId> {
        // Queued, waiting for a retry, or in a slot: every accepted request not final yet.
        self.table.borrow().unfinished()
    }
}
