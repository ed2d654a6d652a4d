//! The embedded queue (`queue.type = memory`): one per shard, in process memory, no locks.
//! Ready jobs in a FIFO, retries in a min-heap by due time, dead letters in a bounded ring. Not
//! durable: a crash loses what is queued, which the broker says at start-up. Bounded in jobs
//! (`queue.max_depth`) and in bytes (`queue.max_bytes`, split between the shards): a full
//! queue refuses with the time it likely needs to drain.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

use super::drain_rate::DrainRate;
use crate::backend::{Delivery, Depth, DlqPosition, Job, QueueError};
use crate::id::CorrelationId;
use crate::metrics::DlqReason;
use crate::clock::Timestamp;
use crate::sync::notify::Notify;

/// Dead letters kept for inspection; older ones are dropped first.
const DEAD_LETTERS_KEPT: usize = 10_000;
/// What a queued job costs besides its payload and headers: the job and delivery structs, the
/// queue slot, the buffers' headers.
const JOB_OVERHEAD: usize = 256;

/// The bytes a queued `job` holds.
fn job_bytes(job: &Job) -> usize {
    JOB_OVERHEAD
        + job.payload.len()
        + job.headers.as_ref().map_or(0, |h| h.len())
        + job.metadata.endpoint.as_ref().map_or(0, String::len)
        + job.metadata.method.as_ref().map_or(0, String::len)
}

/// A job that failed for good.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The job as it was queued.
    pub job: Job,
    /// Why it was dead-lettered.
    pub reason: DlqReason,
    /// The last error.
    pub error: String,
    /// Deliveries made.
    pub attempts: u32,
    /// When it was dead-lettered.
    pub at: Timestamp,
    /// Its place in the queue (`at`, then the order of arrival).
    pub position: DlqPosition,
}

struct Delayed {
    due: Instant,
    seq: u64,
    delivery: Delivery,
}

impl PartialEq for Delayed {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Delayed {}
impl PartialOrd for Delayed {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Delayed {
    /// Reversed, so `BinaryHeap` (a max-heap) pops the earliest due first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.due, other.seq).cmp(&(self.due, self.seq))
    }
}

struct Inner {
    ready: VecDeque<Delivery>,
    delayed: BinaryHeap<Delayed>,
    dead: VecDeque<DeadLetter>,
    seq: u64,
    /// Bytes held by `ready` and `delayed`.
    bytes: usize,
    /// Bytes held by `dead`.
    dead_bytes: usize,
    drain: DrainRate,
}

/// One shard's embedded queue.
pub(super) struct MemoryQueue {
    inner: RefCell<Inner>,
    ready_notify: Notify,
    max_depth: usize,
    max_bytes: usize,
}

impl MemoryQueue {
    /// A queue that refuses new jobs (503) once `max_depth` jobs or `max_bytes` bytes wait.
    /// Dead letters hold at most a quarter of `max_bytes` besides.
    pub(super) fn new(max_depth: usize, max_bytes: usize) -> Self {
        MemoryQueue {
            inner: RefCell::new(Inner {
                ready: VecDeque::new(),
                delayed: BinaryHeap::new(),
                dead: VecDeque::new(),
                seq: 0,
                bytes: 0,
                dead_bytes: 0,
                drain: DrainRate::new(Instant::now()),
            }),
            ready_notify: Notify::new(),
            max_depth,
            max_bytes,
        }
    }

    /// Refuses new jobs once the waiting ones hold `max_bytes`.
    pub(super) fn set_max_bytes(&mut self, max_bytes: usize) {
        self.max_bytes = max_bytes;
    }

    /// The refusal of a full queue: with the seconds its depth needs at the recent drain rate.
    fn full(inner: &mut Inner) -> QueueError {
        let depth = (inner.ready.len() + inner.delayed.len()) as u64;
        QueueError::Full(inner.drain.retry_after(depth, Instant::now()))
    }

    /// At most `limit` dead letters placed after `after`, oldest first.
    pub(crate) fn dead_letters(&self, after: Option<DlqPosition>, limit: usize) -> Vec<DeadLetter> {
        let inner = self.inner.borrow();
        let mut found: Vec<DeadLetter> = inner
            .dead
            .iter()
            .filter(|d| after.is_none_or(|a| d.position > a))
            .cloned()
            .collect();
        found.sort_by_key(|d| d.position);
        found.truncate(limit);
        found
    }

    /// Takes the dead letter of `id` out of the queue.
    pub(crate) fn take_dead_letter(&self, id: &CorrelationId) -> Option<DeadLetter> {
        let mut inner = self.inner.borrow_mut();
        let at = inner.dead.iter().position(|d| d.job.id == *id)?;
        let dead = inner.dead.remove(at)?;
        inner.dead_bytes -= job_bytes(&dead.job);
        Some(dead)
    }

    /// Drops dead letters older than `retention` at `now`.
    pub(crate) fn expire_dead_letters(&self, now: Timestamp, retention: Duration) {
        let bound = now.0.saturating_sub(retention.as_micros() as u64);
        let mut inner = self.inner.borrow_mut();
        inner.dead.retain(|d| d.at.0 >= bound);
        inner.dead_bytes = inner.dead.iter().map(|d| job_bytes(&d.job)).sum();
    }

    /// Puts a dead letter taken out by [`MemoryQueue::take_dead_letter`] back where it was.
    pub(crate) fn restore_dead_letter(&self, dead: DeadLetter) {
        let mut inner = self.inner.borrow_mut();
        let at = inner.dead.partition_point(|d| d.position < dead.position);
        inner.dead_bytes += job_bytes(&dead.job);
        inner.dead.insert(at, dead);
    }

    /// Queues every job of `jobs`, or none when they do not all fit under the depth limit.
    pub(crate) fn enqueue(&self, jobs: impl ExactSizeIterator<Item = Job>) -> Result<(), QueueError> {
        let mut inner = self.inner.borrow_mut();
        if inner.ready.len() + inner.delayed.len() + jobs.len() > self.max_depth {
            return Err(Self::full(&mut inner));
        }
        let first = inner.ready.len();
        inner.ready.extend(jobs.into_iter().map(|job| Delivery {
            job,
            attempt: 1,
            entry_id: None,
            redelivered: false,
        }));
        let added: usize = inner.ready.range(first..).map(|d| job_bytes(&d.job)).sum();
        if inner.bytes + added > self.max_bytes {
            inner.ready.truncate(first);
            return Err(Self::full(&mut inner));
        }
        inner.bytes += added;
        drop(inner);
        self.ready_notify.notify();
        Ok(())
    }

    pub(crate) async fn fetch(&self, max: usize) -> Vec<Delivery> {
        loop {
            let next_due = {
                let mut inner = self.inner.borrow_mut();
                let now = Instant::now();
                while inner.delayed.peek().is_some_and(|d| d.due <= now) {
                    if let Some(d) = inner.delayed.pop() {
                        inner.ready.push_back(d.delivery);
                    }
                }
                if !inner.ready.is_empty() {
                    let n = max.max(1).min(inner.ready.len());
                    let taken: Vec<Delivery> = inner.ready.drain(..n).collect();
                    inner.bytes -= taken.iter().map(|d| job_bytes(&d.job)).sum::<usize>();
                    inner.drain.took(n, now);
                    return taken;
                }
                inner.delayed.peek().map(|d| d.due)
            };
            let woken = self.ready_notify.notified();
            match next_due {
                Some(due) => {
                    let wait = due.saturating_duration_since(Instant::now());
                    let _ = monoio::time::timeout(wait, woken).await;
                }
                None => woken.await,
            }
        }
    }

    pub(crate) fn retry(&self, delivery: Delivery, delay: Duration) {
        let mut inner = self.inner.borrow_mut();
        inner.seq += 1;
        let seq = inner.seq;
        let delivery = Delivery {
            attempt: delivery.attempt + 1,
            ..delivery
        };
        // A retry is owed its place: it may take the queue past its byte budget.
        inner.bytes += job_bytes(&delivery.job);
        inner.delayed.push(Delayed {
            due: Instant::now()
                .checked_add(delay)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365)),
            seq,
            delivery,
        });
        drop(inner);
        // The fetcher may be sleeping until a later due time.
        self.ready_notify.notify();
    }

    pub(crate) fn dead_letter(&self, delivery: Delivery, reason: DlqReason, error: &str) {
        let mut inner = self.inner.borrow_mut();
        let bytes = job_bytes(&delivery.job);
        while !inner.dead.is_empty()
            && (inner.dead.len() >= DEAD_LETTERS_KEPT
                || inner.dead_bytes + bytes > self.max_bytes / 4)
        {
            if let Some(old) = inner.dead.pop_front() {
                inner.dead_bytes -= job_bytes(&old.job);
            }
        }
        inner.dead_bytes += bytes;
        inner.seq += 1;
        let at = Timestamp::now();
        let position = DlqPosition(at.0, inner.seq);
        inner.dead.push_back(DeadLetter {
            job: delivery.job,
            reason,
            error: error.to_owned(),
            attempts: delivery.attempt,
            at,
            position,
        });
    }

    /// When the oldest job waiting to be taken was accepted, if one waits.
    pub(crate) fn oldest_ready(&self) -> Option<Timestamp> {
        self.inner.borrow().ready.front().map(|d| d.job.submitted_at)
    }

    pub(crate) fn depth(&self) -> Depth {
        let inner = self.inner.borrow();
        Depth {
            ready: inner.ready.len() as u64,
            delayed: inner.delayed.len() as u64,
            pending: 0,
        }
    }

    pub(crate) fn check(&self) -> Result<(), QueueError> {
        let mut inner = self.inner.borrow_mut();
        if inner.ready.len() + inner.delayed.len() >= self.max_depth
            || inner.bytes + JOB_OVERHEAD > self.max_bytes
        {
            return Err(Self::full(&mut inner));
        }
        Ok(())
    }

    /// Bytes held by the jobs waiting.
    #[cfg(any(test, feature = "internals"))]
    pub(crate) fn bytes(&self) -> usize {
        self.inner.borrow().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{job, ready};

    const PAYLOAD: &[u8] = &[b'x'; 1000];

    fn one() -> Job {
        job(PAYLOAD, None)
    }

    #[test]
    fn the_byte_budget_refuses_what_does_not_fit_and_frees_what_is_taken() {
        let per_job = job_bytes(&one());
        let q = MemoryQueue::new(1_000, 3 * per_job);
        q.enqueue([one(), one()].into_iter()).unwrap();
        assert_eq!(q.bytes(), 2 * per_job);
        // Two more do not fit: neither is queued.
        assert!(matches!(
            q.enqueue([one(), one()].into_iter()),
            Err(QueueError::Full(_))
        ));
        assert_eq!(q.depth().ready, 2);
        assert_eq!(q.bytes(), 2 * per_job);
        q.enqueue(std::iter::once(one())).unwrap();
        assert!(q.check().is_err());
        // Taking jobs frees their bytes.
        let taken = ready(q.fetch(2));
        assert_eq!(taken.len(), 2);
        assert_eq!(q.bytes(), per_job);
        assert!(q.check().is_ok());
        // A retry holds its bytes again until taken.
        q.retry(taken.into_iter().next().unwrap(), Duration::ZERO);
        assert_eq!(q.bytes(), 2 * per_job);
    }

    #[test]
    fn a_full_queue_says_how_long_its_depth_takes_at_the_recent_rate() {
        let q = MemoryQueue::new(2, usize::MAX);
        q.enqueue([one(), one()].into_iter()).unwrap();
        // Nothing has drained yet: the longest hint.
        assert_eq!(
            q.enqueue(std::iter::once(one())),
            Err(QueueError::Full(60))
        );
    }

    #[test]
    fn dead_letters_hold_at_most_a_quarter_of_the_budget() {
        let per_job = job_bytes(&one());
        let q = MemoryQueue::new(1_000, 8 * per_job);
        for _ in 0..5 {
            q.enqueue(std::iter::once(one())).unwrap();
            let d = ready(q.fetch(1)).pop().unwrap();
            q.dead_letter(d, DlqReason::NonRetryable, "boom");
        }
        // 8 jobs' budget: 2 dead letters at most, the newest kept.
        let kept = q.dead_letters(None, 100);
        assert_eq!(kept.len(), 2);
        assert_eq!(q.inner.borrow().dead_bytes, 2 * per_job);
    }
}
