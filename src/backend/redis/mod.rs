//! The Redis Streams backend (`queue.type = redis`): durable, at-least-once.
//!
//! Per shard: a work stream (`openhqm-requests:{s}`) read by the consumer group
//! `openhqm-workers`, request states (strings, `state_value.rs`), a sorted set of delayed retries and a dead-letter
//! stream, all under the shard's hash tag. Every state change that goes with a queue change is one
//! `MULTI/EXEC`: submit = `XADD` + state; completion = state + `XACK` (the completions of one turn
//! together, `completions.rs`); retry = job
//! hash + `ZADD` + `XACK`; dead letter = `XADD dlq` + state + `XACK`. When this consumer's lease on
//! an entry may have lapsed, the last three run as owner-only Lua scripts instead (`scripts.rs`).
//! Acknowledged entries are trimmed every 100 ms up to the oldest pending one (`XTRIM MINID`);
//! never by `MAXLEN` (before Redis 8.2 that deletes pending entries).
//!
//! Two connections per shard: `cmd` for everything pipelined, `block` for `XREADGROUP BLOCK`.
//! Background tasks move due retries back to the stream, renew the lease of entries being
//! processed (`XCLAIM ... JUSTID`), take over entries of dead consumers (`XPENDING` + `XCLAIM`)
//! and refresh the depth gauges. See docs/redis.md.
//!
//! [`RedisBackend`] puts the queue (`queue.rs` and the files it names) together with a local table of the final
//! states this shard wrote: a request this shard finished is answered without a round trip, and
//! a redelivery of it is recognised without running it again. The live states of the requests
//! this shard accepted are answered locally too, while Redis reports every change made to them
//! elsewhere (`tracking.rs`, `live.rs`).

mod cancel;
mod commands;
mod completions;
mod dead_letters;
mod fetch;
pub mod fields;
pub mod keys;
mod live;
mod maintenance;
mod queue;
pub mod reads;
pub mod scripts;
mod settle;
pub mod state_value;
mod submit;
mod submits;
mod takeover;
mod tracking;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Instant;

use tracing::debug;

use super::{
    Accepted, Backend, Cancel, DeadLetterEntry, Delivery, DlqPosition, Job, NewJob, QueueError,
    Settlement, Start, Waiters, Watch,
};
use crate::clock::Timestamp;
use crate::id::{CorrelationId, IdMinter};
use super::idempotency::{BodyHash, Idempotent, KeyUse};
use crate::metrics::ShardMetrics;
use crate::resp::subscriber::{subscribe, Event};
use crate::store::{Outcome, RequestState, StateTable, Status};
pub use keys::Keys;
use queue::RedisQueue;
use settle::Written;
pub use queue::{lease_held_for, RedisSettings, LEASE_HELD, MAX_REDIS_TIMEOUT};

/// One shard's Redis Streams queue and its table of the final states it wrote.
pub struct RedisBackend {
    queue: Rc<RedisQueue>,
    /// The states of the deliveries running here and a bounded cache of the final states this
    /// shard wrote to Redis, each kept only once Redis has it. (Live states are kept apart, by
    /// the queue's tracking, which knows when another instance changes one.)
    finals: RefCell<StateTable>,
    /// Ids whose final state is being written now (a duplicate delivery of one is not settled
    /// again meanwhile), and whether a final of theirs was announced on the finals channel
    /// meanwhile (this shard's own write, usually): the write's reply wakes their waiters then,
    /// when the final state is here to show, rather than the announcement, when a waiter would
    /// find nothing here and read Redis.
    settling: Rc<RefCell<HashMap<CorrelationId, bool>>>,
    /// Final states whose write failed (Redis unreachable, no reply): not shown to lookups,
    /// but the redelivery of the entry writes this state again instead of running the job again.
    /// Dropped after a lease (another consumer has the entry by then).
    unconfirmed: RefCell<HashMap<CorrelationId, (RequestState, Instant)>>,
    minter: RefCell<IdMinter>,
    waiters: Rc<Waiters>,
}

/// Most final states one shard keeps a local copy of; older ones are read from Redis.
const LOCAL_FINALS_MAX: usize = 10_000;

/// The channel Redis reports tracked keys' changes on (`tracking.rs`).
const INVALIDATIONS: &[u8] = b"__redis__:invalidate";

impl RedisBackend {
    /// Connects (in the background) and starts the shard's maintenance tasks. Must run on the
    /// shard's own thread.
    pub fn start(settings: RedisSettings, keys: Keys, minter: IdMinter) -> Self {
        let (ttl, max_waiters) = (settings.ttl, settings.max_waiters);
        let (target, deadline) = (settings.target.clone(), settings.deadline);
        let waiters = Rc::new(Waiters::new(max_waiters));
        let finals_channel = keys.finals_channel.clone();
        let queue = RedisQueue::start(settings, keys);
        let (q, woken) = (queue.clone(), waiters.clone());
        let settling: Rc<RefCell<HashMap<CorrelationId, bool>>> = Rc::default();
        let in_write = settling.clone();
        let (channels, optional) = (vec![finals_channel.clone()], vec![INVALIDATIONS.to_vec()]);
        subscribe(target, deadline, channels, optional, move |event| match event {
            // Without the reports, nothing can be tracked.
            Event::Up {
                client_id,
                run_id,
                missing,
            } => {
                let id = client_id.filter(|_| missing.is_empty());
                q.tracking.subscriber_up(id.zip(run_id));
            }
            Event::Down => q.tracking.subscriber_down(),
            Event::Message { channel, payload } if channel == &finals_channel[..] => {
                let ids = payload.as_bytes().map(|b| &b[..]).unwrap_or_default();
                for id in ids.chunks_exact(16) {
                    let id: [u8; 16] = id.try_into().expect("16 bytes");
                    let id = CorrelationId::from_bytes(id);
                    if let Some(announced) = in_write.borrow_mut().get_mut(&id) {
                        *announced = true;
                        continue;
                    }
                    // Before the waiter looks: it must not find the live state it waited on.
                    q.tracking.forget(&id);
                    woken.wake(&id);
                }
            }
            Event::Message { payload, .. } => {
                q.tracking.invalidated(payload, &q.keys.state_prefix);
            }
        });
        RedisBackend {
            queue,
            finals: RefCell::new(StateTable::new(ttl)),
            settling,
            unconfirmed: RefCell::default(),
            minter: RefCell::new(minter),
            waiters,
        }
    }

    /// The state held for `id`, for a write to Redis with the delivery's settlement.
    fn final_state(&self, id: &CorrelationId) -> Option<RequestState> {
        self.finals.borrow().get(id).cloned()
    }

    /// The final state `d` ends in (`to`, with `outcome`), from the state held here or else
    /// `PENDING` at its submit time; marked as being settled. `None` when it is final here
    /// already, or being settled by another delivery: a duplicate.
    fn final_of(&self, d: &Delivery, to: Status, outcome: Outcome) -> Option<RequestState> {
        let id = d.job.id;
        if self.settling.borrow().contains_key(&id) {
            return None;
        }
        let mut state = self
            .final_state(&id)
            .unwrap_or_else(|| RequestState::pending(d.job.submitted_at));
        if let Err(r) = state.finish(to, outcome) {
            debug!(correlation_id = %id, from = r.from.as_str(), "late final write ignored");
            return None;
        }
        self.settling.borrow_mut().insert(id, false);
        Some(state)
    }

    /// After the write of `state` for `id`: kept here (and its waiters woken) when Redis has it;
    /// otherwise nothing is shown, so lookups read what Redis has (another consumer's outcome,
    /// or the state the redelivery ends), and when the write failed (rather than finding the
    /// entry taken over) the state waits for the redelivery in `unconfirmed`.
    fn settled(&self, id: &CorrelationId, state: RequestState, written: Written, ended: Instant) {
        let announced = self.settling.borrow_mut().remove(id).unwrap_or(false);
        let mut finals = self.finals.borrow_mut();
        match written {
            Written::Yes => {}
            Written::TakenOver | Written::Failed => {
                finals.forget(id);
                if matches!(written, Written::Failed) {
                    self.unconfirmed.borrow_mut().insert(*id, (state, ended));
                }
                drop(finals);
                // A final announced meanwhile (another consumer's, or this write's with its
                // reply lost) is in Redis: its waiters read it there, as woken by the message.
                if announced {
                    self.waiters.wake(id);
                }
                return;
            }
        }
        let (status, submitted_at) = (state.status, state.submitted_at);
        if let Some(outcome) = state.outcome {
            let _ = finals.finish_or_insert(id, status, *outcome, submitted_at, ended);
        }
        finals.evict_to(LOCAL_FINALS_MAX);
        drop(finals);
        self.waiters.wake(id);
    }
}

impl Backend for RedisBackend {
    async fn submit(
        &self,
        job: NewJob,
        now: Timestamp,
        watch: bool,
    ) -> Result<(Accepted, Option<Watch<'_>>), QueueError> {
        let id = job.new_id(&mut self.minter.borrow_mut());
        let watch = if watch { self.waiters.watch(&id) } else { None };
        self.queue
            .enqueue(std::slice::from_ref(&job.into_job(id, now)))
            .await?;
        Ok((
            Accepted {
                id,
                submitted_at: now,
            },
            watch,
        ))
    }

    async fn submit_idempotent(
        &self,
        job: NewJob,
        now: Timestamp,
        key: &[u8],
        body: BodyHash,
    ) -> Result<Idempotent, QueueError> {
        let id = job.new_id(&mut self.minter.borrow_mut());
        let job = job.into_job(id, now);
        let accepted = Accepted {
            id,
            submitted_at: now,
        };
        let used = KeyUse { accepted, body };
        Ok(match self.queue.enqueue_idempotent(&job, key, &used).await? {
            None => Idempotent::Queued(accepted),
            Some(earlier) => earlier.again(body),
        })
    }

    async fn submit_many(
        &self,
        jobs: Vec<NewJob>,
        now: Timestamp,
    ) -> Result<Vec<Accepted>, QueueError> {
        let queued: Vec<Job> = {
            let mut minter = self.minter.borrow_mut();
            jobs.into_iter()
                .map(|job| {
                    let id = job.new_id(&mut minter);
                    job.into_job(id, now)
                })
                .collect()
        };
        self.queue.enqueue(&queued).await?;
        Ok(queued
            .iter()
            .map(|j| Accepted {
                id: j.id,
                submitted_at: now,
            })
            .collect())
    }

    async fn next_jobs(&self, free: usize, per_read: usize) -> Vec<Delivery> {
        self.queue.fetch(free, per_read).await
    }

    fn read_ahead(&self, ahead: usize) {
        self.queue.ahead.set(ahead);
    }

    async fn stop_taking(&self) -> bool {
        self.queue.stopping.set(true);
        self.queue.unblock().await;
        true
    }

    async fn give_back(&self, taken: Vec<Delivery>) {
        self.queue.give_back(taken).await;
    }

    fn start(&self, delivery: &Delivery, now: Timestamp) -> Start {
        let id = &delivery.job.id;
        if !delivery.redelivered {
            // A first delivery of its entry cannot repeat a settled one: a final state held
            // here is from before an operator redrove the request. It runs again.
            self.finals.borrow_mut().forget(id);
            self.unconfirmed.borrow_mut().remove(id);
        } else if let Some((state, _)) = self.unconfirmed.borrow().get(id) {
            // Its outcome is known; only the write is owed.
            return Start::AlreadyFinal(state.status);
        }
        super::start_in(&self.finals, delivery, now)
    }

    async fn report_processing(&self, delivery: &Delivery, now: Timestamp) {
        self.queue.processing(delivery, now).await;
    }

    async fn settle(&self, delivery: Delivery, settlement: Settlement, ended: Instant) {
        let id = delivery.job.id;
        let (to, outcome, dead) = match settlement {
            Settlement::Completed(o) => (Status::Completed, o, None),
            Settlement::TimedOut(o) => (Status::Timeout, o, None),
            Settlement::DeadLettered(o, reason) => (Status::Failed, o, Some(reason)),
            Settlement::RetryLater(delay) => {
                self.queue.retry(delivery, delay).await;
                return;
            }
            Settlement::Duplicate => {
                let owed = self.unconfirmed.borrow_mut().remove(&id);
                match owed {
                    Some((state, ended)) => {
                        self.settling.borrow_mut().insert(id, false);
                        let written = self.queue.finish(delivery, Some(&state)).await;
                        self.settled(&id, state, written, ended);
                    }
                    None => {
                        self.queue
                            .finish(delivery, self.final_state(&id).as_ref())
                            .await;
                    }
                }
                return;
            }
        };
        let error = dead.and(outcome.error.clone()).unwrap_or_default();
        let Some(state) = self.final_of(&delivery, to, outcome) else {
            // Final here already, or being settled by another delivery: acknowledge this one
            // anyway, or it would stay pending for ever.
            self.queue.finish(delivery, self.final_state(&id).as_ref()).await;
            return;
        };
        // Waiters are woken only once Redis has it: a woken waiter may read it anywhere.
        let written = match dead {
            None => self.queue.finish(delivery, Some(&state)).await,
            Some(reason) => {
                self.queue
                    .dead_letter(delivery, Some(&state), reason, &error)
                    .await
            }
        };
        self.settled(&id, state, written, ended);
    }

    fn held(&self, id: &CorrelationId) -> Option<RequestState> {
        self.final_state(id)
            .or_else(|| self.queue.tracking.get(id, &self.queue.cmd))
    }

    fn watch(&self, id: &CorrelationId) -> Option<Watch<'_>> {
        self.waiters.watch(id)
    }

    async fn load(&self, id: &CorrelationId) -> Result<Option<RequestState>, QueueError> {
        self.queue.load_state(id).await
    }

    async fn cancel(&self, id: &CorrelationId, now: Timestamp) -> Result<Cancel, QueueError> {
        let cancelled = self.queue.cancel(id, now).await?;
        if let Cancel::Cancelled(state) = &cancelled {
            let outcome = state.outcome.as_deref().cloned();
            if let Some(o) = outcome {
                let at = Instant::now();
                let mut finals = self.finals.borrow_mut();
                let _ = finals.finish_or_insert(id, Status::Cancelled, o, state.submitted_at, at);
                finals.evict_to(LOCAL_FINALS_MAX);
            }
            self.waiters.wake(id);
        }
        Ok(cancelled)
    }

    async fn dead_letters(
        &self,
        after: Option<DlqPosition>,
        limit: usize,
    ) -> Result<Vec<DeadLetterEntry>, QueueError> {
        self.queue.dead_letters(after, limit).await
    }

    async fn redrive(&self, id: &CorrelationId, now: Timestamp) -> Result<bool, QueueError> {
        self.queue.redrive(id, now).await
    }

    async fn drop_dead_letter(&self, id: &CorrelationId) -> Result<bool, QueueError> {
        self.queue.drop_dead_letter(id).await
    }

    async fn check(&self) -> Result<(), QueueError> {
        self.queue.check().await
    }

    fn expire(&self, now: Instant) {
        self.finals.borrow_mut().expire(now);
        self.queue.tracking.expire(now);
        self.unconfirmed
            .borrow_mut()
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < queue::LEASE);
    }

    fn gauges(&self, m: &mut ShardMetrics) {
        m.waiters = self.waiters.live() as u64;
        m.oldest_age_seconds = Some(self.queue.oldest_age_seconds());
        let held = self.finals.borrow().count() + self.queue.tracking.kept();
        self.queue.depth().fill(m, held);
        m.redis_round_trips = self.queue.round_trips();
        m.redis_reconnects = self.queue.reconnects();
        m.backend_up = u64::from(self.queue.up());
    }

    fn drain_works_off(&self) -> bool {
        // Redis keeps what is queued, and what a slot had not finished stays pending for
        // another consumer to take over.
        false
    }

    fn lost_on_exit(&self) -> u64 {
        0
    }

    fn lost_ids(&self) -> Vec<CorrelationId> {
        Vec::new()
    }
}
