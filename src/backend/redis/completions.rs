//! Group commit of completions: the deliveries finished while a shard's lease is certainly held
//! go to Redis together, as one `MULTI`, each one's `SET` of its final state, one `XACK` of all
//! their entries, one `PUBLISH` of their ids (waiters on other instances wake), `EXEC`, instead
//! of a transaction each. The batch holds whatever finished
//! before the flusher task ran (the worker slots of one read finish in the same event-loop turn),
//! and a batch is sent without waiting for the one before. All-or-nothing, as each transaction
//! was: if it fails, every delivery in it is read again from the pending list.
//!
//! Per completion this saves Redis a `MULTI`, an `EXEC` and an `XACK` call (PERFORMANCE.md,
//! section 8). Deliveries whose lease may have lapsed still settle one by one through the
//! owner-only script (`scripts.rs`).

use std::rc::Rc;

use bytes::{Bytes, BytesMut};

use super::commands;
use super::queue::RedisQueue;
use crate::id::CorrelationId;
use crate::resp::RedisError;
use crate::sync::oneshot;

/// Completions waiting for the flusher.
#[derive(Default)]
pub(super) struct Completions {
    /// The encoded `SET`s.
    sets: BytesMut,
    /// How many `SET`s.
    n: usize,
    /// The entries to acknowledge.
    entries: Vec<Bytes>,
    /// The ids of the requests made final, 16 bytes each.
    finals: Vec<u8>,
    /// One per completion, answered with the transaction's outcome.
    waiters: Vec<oneshot::Sender<Result<(), RedisError>>>,
}

impl RedisQueue {
    /// Queues the completion of `entry` (with its state's `SET`, if any, for request `id`) for
    /// the next group commit and waits for it.
    pub(super) async fn commit_completion(
        &self,
        entry: Bytes,
        id: &CorrelationId,
        state: Option<(&[u8], &[u8])>,
    ) -> Result<(), RedisError> {
        let rx = {
            let mut c = self.completions.borrow_mut();
            if let Some((key, value)) = state {
                self.put_state(&mut c.sets, key, value);
                c.n += 1;
                c.finals.extend_from_slice(id.as_bytes());
            }
            c.entries.push(entry);
            let (tx, rx) = oneshot::channel();
            c.waiters.push(tx);
            rx
        };
        self.completions_ready.notify();
        rx.await.unwrap_or(Err(RedisError::Unavailable))
    }
}

/// The shard's flusher: on each wake-up, sends what has gathered (in a task of its own, so the
/// next batch gathers meanwhile).
pub(super) async fn flush_completions(q: Rc<RedisQueue>) {
    loop {
        // Looking before waiting: nothing added before this task first ran is left behind (a
        // wake-up only reaches a task already waiting).
        let batch = std::mem::take(&mut *q.completions.borrow_mut());
        if !batch.waiters.is_empty() {
            monoio::spawn(send(q.clone(), batch));
        }
        q.completions_ready.notified().await;
    }
}

async fn send(q: Rc<RedisQueue>, batch: Completions) {
    let publish = !batch.finals.is_empty();
    let r = q
        .cmd
        .transaction(batch.n + 1 + usize::from(publish), |out| {
            out.extend_from_slice(&batch.sets);
            commands::xack(&q.keys.stream, batch.entries.iter().map(|e| &e[..])).encode(out);
            if publish {
                commands::publish(&q.keys.finals_channel, &batch.finals).encode(out);
            }
        })
        .await
        .map(drop);
    for tx in batch.waiters {
        let _ = tx.send(r.clone());
    }
}
