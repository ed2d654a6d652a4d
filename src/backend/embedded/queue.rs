//! The embedded queue (`queue.type = memory`): one per shard, in process memory, no locks.
//! Ready jobs in a FIFO, retries in a min-heap by due time, dead letters in a bounded ring. Not
//! durable: a crash loses what is queued, which the broker says at start-up.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

use crate::backend::{Delivery, Depth, DlqPosition, Job, QueueError};
use crate::id::CorrelationId;
use crate::metrics::DlqReason;
use crate::clock::Timestamp;
use crate::sync::notify::Notify;

/// Dead letters kept for inspection; older ones are dropped first.
const DEAD_LETTERS_KEPT: usize = 10_000;

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

#[derive(Default)]
struct Inner {
    ready: VecDeque<Delivery>,
    delayed: BinaryHeap<Delayed>,
    dead: VecDeque<DeadLetter>,
    seq: u64,
}

/// One shard's embedded queue.
pub(super) struct MemoryQueue {
    inner: RefCell<Inner>,
    ready_notify: Notify,
    max_depth: usize,
}

impl MemoryQueue {
    /// A queue that refuses new jobs (503) once `max_depth` jobs wait.
    pub(super) fn new(max_depth: usize) -> Self {
        MemoryQueue {
            inner: RefCell::default(),
            ready_notify: Notify::new(),
            max_depth,
        }
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
        inner.dead.remove(at)
    }

    /// Drops dead letters older than `retention` at `now`.
    pub(crate) fn expire_dead_letters(&self, now: Timestamp, retention: Duration) {
        let bound = now.0.saturating_sub(retention.as_micros() as u64);
        self.inner.borrow_mut().dead.retain(|d| d.at.0 >= bound);
    }

    /// Puts a dead letter taken out by [`MemoryQueue::take_dead_letter`] back where it was.
    pub(crate) fn restore_dead_letter(&self, dead: DeadLetter) {
        let mut inner = self.inner.borrow_mut();
        let at = inner.dead.partition_point(|d| d.position < dead.position);
        inner.dead.insert(at, dead);
    }

    /// Queues every job of `jobs`, or none when they do not all fit under the depth limit.
    pub(crate) fn enqueue(&self, jobs: impl ExactSizeIterator<Item = Job>) -> Result<(), QueueError> {
        let mut inner = self.inner.borrow_mut();
        if inner.ready.len() + inner.delayed.len() + jobs.len() > self.max_depth {
            return Err(QueueError::Full);
        }
        inner.ready.extend(jobs.into_iter().map(|job| Delivery {
            job,
            attempt: 1,
            entry_id: None,
            redelivered: false,
        }));
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
                    return inner.ready.drain(..n).collect();
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
        if inner.dead.len() == DEAD_LETTERS_KEPT {
            inner.dead.pop_front();
        }
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
        let d = self.depth();
        if (d.ready + d.delayed) as usize >= self.max_depth {
            return Err(QueueError::Full);
        }
        Ok(())
    }
}
