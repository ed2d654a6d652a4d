//! The worker slots of one shard. A dispatcher fetches at most as many jobs as there are free
//! slots, at most `worker.batch_size` per read (with Redis, several reads in one write when
//! there is room for more than one batch), and runs each job; a slot moves
//! the state `PROCESSING → COMPLETED | FAILED | TIMEOUT`, retries retryable failures with
//! backoff and dead-letters the rest.

use std::future::Future;
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use super::backoff::retry_delay;
use super::{ProcessError, Processor};
use crate::clock::Timestamp;
use crate::metrics::{DlqReason, WorkerError};
use crate::queue::{Delivery, QueueBackend};
use crate::shard::context::ShardCtx;
use crate::shard::deadline::{Deadline, TimedOut};
use crate::shard::id::CorrelationId;
use crate::store::{Outcome, RequestState, Status, UpdateError};

/// Runs the dispatcher until shutdown. Slots already running finish on their own.
pub async fn run<P: Processor + 'static>(ctx: Rc<ShardCtx>, processor: Rc<P>) {
    let slots = ctx.config.worker.count;
    let batch = ctx.config.worker.batch_size;
    let inline = processor.never_waits() && ctx.backend.never_waits();
    loop {
        if ctx.shutdown.is_set() {
            return;
        }
        let free = slots.saturating_sub(ctx.workers_active.get());
        if free == 0 {
            let freed = ctx.slot_freed.notified();
            monoio::select! {
                _ = freed => {},
                _ = ctx.shutdown.wait() => return,
            }
            continue;
        }
        let deliveries = monoio::select! {
            d = ctx.backend.fetch(free, batch) => d,
            _ = ctx.shutdown.wait() => return,
        };
        for delivery in deliveries {
            ctx.workers_active.set(ctx.workers_active.get() + 1);
            ctx.metrics.borrow_mut().consumed += 1;
            if inline {
                // Neither the processor nor the queue ever waits (the built-in operations on the
                // embedded queue): the job runs to its end right here, in place, without a
                // future of its own to allocate and copy (PERFORMANCE.md section 8).
                process(&ctx, &*processor, delivery).await;
                release(&ctx);
                continue;
            }
            // Run the slot here first: a job whose processor and queue answer at once finishes
            // without a task of its own. Only one still waiting becomes a task; spawning every
            // job cost a copy of its future three times over (PERFORMANCE.md section 8).
            let mut slot = Box::pin(run_slot(ctx.clone(), processor.clone(), delivery));
            let first = std::future::poll_fn(|cx| Poll::Ready(slot.as_mut().poll(cx))).await;
            if first.is_pending() {
                monoio::spawn(slot);
            }
        }
    }
}

async fn run_slot<P: Processor>(ctx: Rc<ShardCtx>, processor: Rc<P>, delivery: Delivery) {
    process(&ctx, &*processor, delivery).await;
    release(&ctx);
}

/// A slot is free again.
fn release(ctx: &ShardCtx) {
    ctx.workers_active.set(ctx.workers_active.get() - 1);
    ctx.slot_freed.notify();
}

async fn process<P: Processor>(ctx: &ShardCtx, processor: &P, delivery: Delivery) {
    let id = delivery.job.id;
    let now = Timestamp::now();
    let taken = ctx.table.borrow_mut().start(&id, now);
    match taken {
        Ok(()) | Err(UpdateError::Unknown) => {}
        Err(UpdateError::Refused(r)) => {
            // Already final here: a redelivery (its acknowledgement was lost). Record the final
            // state again and acknowledge, without running it again.
            debug!(correlation_id = %id, from = r.from.as_str(), "duplicate delivery skipped");
            let state = stored_state(ctx, &id);
            ctx.backend.finish(delivery, state).await;
            return;
        }
    }
    let started = Instant::now();
    let deadline = delivery.job.metadata.timeout;
    let result = run_with_deadline(
        processor.process(&delivery.job),
        deadline,
        started,
        || async {
            // Only a job that takes time is ever seen PROCESSING by another instance: one that
            // finishes on its first poll goes straight to its final write (a third less Redis work
            // per request).
            if ctx.backend.stores_state() {
                ctx.backend.processing(&delivery.job, now).await;
            }
        },
    )
    .await;
    // One clock read for the end: the wall-clock end is the start plus the monotonic elapsed
    // time (a request read the clock 13 times, 5 of them here; callgrind).
    let ended = Instant::now();
    let elapsed = ended.duration_since(started);
    let processing_time_ms = elapsed.as_millis() as u64;
    let completed_at = Timestamp(now.0 + elapsed.as_micros() as u64);
    let outcome = |error: Option<String>| Outcome {
        result: None,
        headers: None,
        status_code: None,
        error,
        processing_time_ms,
        completed_at,
    };
    match result {
        Ok(Ok(output)) => {
            let o = Outcome {
                result: Some(output.result),
                headers: output.headers,
                status_code: Some(output.status_code),
                ..outcome(None)
            };
            finish(ctx, delivery, Status::Completed, o, elapsed, ended).await;
        }
        Ok(Err(ProcessError { message, retryable })) => {
            ctx.metrics
                .borrow_mut()
                .worker_error(WorkerError::Processing);
            let w = &ctx.config.worker;
            if retryable && delivery.attempt <= w.max_retries {
                let jitter = ctx.jitter.borrow_mut().next_unit();
                let delay = retry_delay(
                    delivery.attempt,
                    w.retry_delay_base,
                    w.retry_delay_max,
                    jitter,
                );
                debug!(correlation_id = %id, attempt = delivery.attempt, delay_ms = delay.as_millis() as u64, error = %message, "retrying");
                ctx.metrics.borrow_mut().retries += 1;
                ctx.backend.retry(delivery, delay).await;
                return;
            }
            let reason = if retryable {
                DlqReason::MaxRetries
            } else {
                DlqReason::NonRetryable
            };
            warn!(correlation_id = %id, attempts = delivery.attempt, error = %message, "request failed; dead-lettered");
            ctx.metrics.borrow_mut().dead_letter(reason);
            let o = outcome(Some(message.clone()));
            let recorded = record(ctx, &delivery, Status::Failed, o, elapsed, ended);
            let state = stored_state(ctx, &id);
            if recorded {
                ctx.backend.dead_letter(delivery, state, &message).await;
            } else {
                // Already final here (a concurrent duplicate delivery): acknowledge it anyway, or
                // it would stay pending for ever.
                ctx.backend.finish(delivery, state).await;
            }
        }
        Err(_) => {
            ctx.metrics.borrow_mut().worker_error(WorkerError::Timeout);
            let msg = format!(
                "Processing exceeded the deadline of {} s",
                deadline.as_secs_f64()
            );
            warn!(correlation_id = %id, "request timed out");
            finish(
                ctx,
                delivery,
                Status::Timeout,
                outcome(Some(msg)),
                elapsed,
                ended,
            )
            .await;
        }
    }
}

/// Runs `work` under `deadline`. A processor that finishes on its first poll (the built-in
/// operations always do) never arms a timer: the deadline costs nothing when it cannot fire.
/// `on_pending` runs once, only if the work did not finish on its first poll. The deadline
/// counts from `started`.
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
            // A boxed timer only here: the future of every job stays small (spawned per job).
            Deadline::default().run(left, work).await
        }
    }
}

/// Records the final state, then tells the queue the delivery is done.
/// A refused write (already final: a concurrent duplicate delivery) still acknowledges, with the
/// final state this process holds, so no entry stays pending for ever.
async fn finish(
    ctx: &ShardCtx,
    delivery: Delivery,
    to: Status,
    o: Outcome,
    elapsed: Duration,
    ended: Instant,
) {
    record(ctx, &delivery, to, o, elapsed, ended);
    let state = stored_state(ctx, &delivery.job.id);
    ctx.backend.finish(delivery, state).await;
}

/// A copy of the final state for a backend that stores state itself; `None` when the table holds
/// the only copy (no copy made on the embedded path).
fn stored_state(ctx: &ShardCtx, id: &CorrelationId) -> Option<RequestState> {
    ctx.backend
        .stores_state()
        .then(|| ctx.table.borrow().get(id).cloned())
        .flatten()
}

/// Writes the final state to the table; false if the state machine refused (already final).
/// `ended` is when processing ended (the table's expiry clock).
fn record(
    ctx: &ShardCtx,
    delivery: &Delivery,
    to: Status,
    o: Outcome,
    elapsed: Duration,
    ended: Instant,
) -> bool {
    ctx.metrics
        .borrow_mut()
        .processed(to, elapsed.as_secs_f64());
    let id = delivery.job.id;
    // A state this process's table does not hold (submitted before a restart, or taken over
    // from a dead consumer) starts here, final.
    let settled =
        ctx.table
            .borrow_mut()
            .finish_or_insert(&id, to, o, delivery.job.submitted_at, ended);
    match settled {
        Ok(()) => true,
        Err(r) => {
            debug!(correlation_id = %id, from = r.from.as_str(), "late final write ignored");
            false
        }
    }
}
