//! Group commit of submits: the submits a shard takes in one event-loop turn go to Redis as one
//! `MULTI`, each one's `XADD`, one `MSET` of all their `PENDING` states, `EXEC`, instead of a
//! transaction each. A `PENDING` state has no TTL (`MSET` sets none, and a request still queued
//! must not vanish from its status): the worker's first write of it (`PROCESSING` or final)
//! gives it the TTL. The batch holds whatever was submitted before the flusher task ran, and a batch is sent
//! without waiting for the one before. All-or-nothing for the clients, as each transaction was:
//! if it fails, every submit in it is answered 503.

use std::rc::Rc;

use bytes::{Bytes, BytesMut};

use super::commands;
use super::queue::RedisQueue;
use crate::resp::RedisError;
use crate::sync::oneshot;

/// Submits waiting for the flusher.
#[derive(Default)]
pub(super) struct Submits {
    /// The encoded commands.
    commands: BytesMut,
    /// How many commands.
    n: usize,
    /// The `MSET` arguments: each submit's state key and `PENDING` state.
    states: Vec<Bytes>,
    /// One per submit call, answered with the transaction's outcome.
    waiters: Vec<oneshot::Sender<Result<(), RedisError>>>,
}

impl RedisQueue {
    /// Queues the `n` commands `encode` appends, and the `states` (key, value, …) to set, for the
    /// next submit transaction and waits for its outcome.
    pub(super) async fn commit_submit(
        &self,
        n: usize,
        encode: impl FnOnce(&mut BytesMut),
        states: impl IntoIterator<Item = Bytes>,
    ) -> Result<(), RedisError> {
        let rx = {
            let mut s = self.submits.borrow_mut();
            encode(&mut s.commands);
            s.n += n;
            s.states.extend(states);
            let (tx, rx) = oneshot::channel();
            s.waiters.push(tx);
            rx
        };
        self.submits_ready.notify();
        rx.await.unwrap_or(Err(RedisError::Unavailable))
    }
}

/// The shard's submit flusher: on each wake-up, sends what has gathered (in a task of its own,
/// so the next batch gathers meanwhile).
pub(super) async fn flush_submits(q: Rc<RedisQueue>) {
    loop {
        // Looking before waiting: nothing added before this task first ran is left behind.
        let batch = std::mem::take(&mut *q.submits.borrow_mut());
        if !batch.waiters.is_empty() {
            monoio::spawn(send(q.clone(), batch));
        }
        q.submits_ready.notified().await;
    }
}

async fn send(q: Rc<RedisQueue>, batch: Submits) {
    let mset = !batch.states.is_empty();
    let r = q
        .cmd
        .transaction(batch.n + usize::from(mset), |out| {
            out.extend_from_slice(&batch.commands);
            if mset {
                commands::mset(batch.states.iter().map(|b| &b[..])).encode(out);
            }
        })
        .await
        .map(drop);
    for tx in batch.waiters {
        let _ = tx.send(r.clone());
    }
}
