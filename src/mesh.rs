//! The shard mesh: explicit messages between shards, never shared state. Each shard has one inbox
//! (a channel every other shard and the control thread can send to); the only things that cross
//! are owned values. Inboxes are bounded and a shard never blocks on another's: a full inbox is
//! an overloaded shard (503), and a lookup that gets no answer within its deadline is too.

use bytes::Bytes;

use crate::backend::idempotency::{BodyHash, Idempotent};
use crate::backend::{Cancel, DeadLetterEntry, DlqPosition, NewJob, QueueError};
use crate::clock::Timestamp;
use crate::id::{CorrelationId, ShardId};
use crate::metrics::ShardMetrics;
use crate::store::RequestState;

/// A message to a shard.
#[derive(Debug)]
pub enum ShardMsg {
    /// "What is the state of this id you own?"
    Lookup {
        /// The id, owned by the receiving shard.
        id: CorrelationId,
        /// Where the answer goes.
        reply: flume::Sender<Option<RequestState>>,
    },
    /// "Answer with the state of this id you own once it is final, or as it is at `until`."
    WaitFinal {
        /// The id, owned by the receiving shard.
        id: CorrelationId,
        /// When to answer at the latest.
        until: std::time::Instant,
        /// Where the answer goes.
        reply: flume::Sender<Result<Option<RequestState>, QueueError>>,
    },
    /// "List your dead letters placed after `after`, at most `limit`."
    DeadLetters {
        /// Exclusive start.
        after: Option<DlqPosition>,
        /// Most entries.
        limit: usize,
        /// Where the answer goes.
        reply: flume::Sender<Result<Vec<DeadLetterEntry>, QueueError>>,
    },
    /// "Redrive (or, with `drop`, delete) the dead letter of this id you own."
    DeadLetter {
        /// The id, owned by the receiving shard.
        id: CorrelationId,
        /// Delete it instead of redriving it.
        drop: bool,
        /// Where the answer goes: whether it was a dead letter.
        reply: flume::Sender<Result<bool, QueueError>>,
    },
    /// "Queue this job under this idempotency key you own."
    SubmitIdempotent {
        /// The job (boxed: the message stays small).
        job: Box<NewJob>,
        /// When it was accepted.
        now: Timestamp,
        /// The key.
        key: Bytes,
        /// The body's fingerprint.
        body: BodyHash,
        /// Where the answer goes.
        reply: flume::Sender<Result<Idempotent, QueueError>>,
    },
    /// "Cancel this id you own."
    Cancel {
        /// The id, owned by the receiving shard.
        id: CorrelationId,
        /// Where the answer goes.
        reply: flume::Sender<Result<Cancel, QueueError>>,
    },
    /// "Send me a copy of your metrics."
    Scrape {
        /// Where the copy goes.
        reply: flume::Sender<(ShardId, ShardMetrics)>,
    },
    /// "Check your queue backend."
    Check {
        /// Where the answer goes.
        reply: flume::Sender<Result<(), QueueError>>,
    },
    /// "Are you there?" (liveness: answered at once, never after I/O).
    Ping {
        /// Where the answer goes.
        reply: flume::Sender<ShardId>,
    },
    /// Stop accepting, drain, exit.
    Shutdown,
}

/// One shard's handle on every inbox (its own included, index = shard id).
#[derive(Clone)]
pub struct Mesh {
    me: ShardId,
    inboxes: Vec<flume::Sender<ShardMsg>>,
}

/// The inboxes for `nr_shards` shards: the senders (cloned into every [`Mesh`] and the control
/// thread) and one receiver per shard.
pub fn inboxes(nr_shards: usize) -> (Vec<flume::Sender<ShardMsg>>, Vec<flume::Receiver<ShardMsg>>) {
    (0..nr_shards).map(|_| flume::bounded(INBOX_CAPACITY)).unzip()
}

/// Messages one shard's inbox holds before senders are told it is overloaded. A shard answers
/// or hands off every message at once, so a full inbox means it is stuck or flooded.
pub const INBOX_CAPACITY: usize = 1024;

/// How long a lookup waits for the owner's answer before the request gets a 503.
pub const LOOKUP_DEADLINE: std::time::Duration = std::time::Duration::from_secs(2);

impl Mesh {
    /// The mesh as seen from shard `me`.
    pub fn new(me: ShardId, inboxes: Vec<flume::Sender<ShardMsg>>) -> Self {
        Mesh { me, inboxes }
    }

    /// Number of shards.
    pub fn nr_shards(&self) -> usize {
        self.inboxes.len()
    }

    /// Sends `msg` to shard `to` without waiting: `Overloaded` when its inbox is full,
    /// `Closed` when the shard is gone.
    pub fn send(&self, to: ShardId, msg: ShardMsg) -> Result<(), QueueError> {
        self.inboxes[to].try_send(msg).map_err(|e| match e {
            flume::TrySendError::Full(_) => QueueError::Overloaded,
            flume::TrySendError::Disconnected(_) => QueueError::Closed,
        })
    }

    /// Sends shard `to` the message `msg` builds around a reply channel, and waits for the
    /// answer. A gone shard answers `Closed`.
    async fn ask<T>(
        &self,
        to: ShardId,
        msg: impl FnOnce(flume::Sender<Result<T, QueueError>>) -> ShardMsg,
    ) -> Result<T, QueueError> {
        let (reply, answer) = flume::bounded(1);
        self.send(to, msg(reply))?;
        answer.recv_async().await.unwrap_or(Err(QueueError::Closed))
    }

    /// Asks the owner of `id` for its state: `Ok(None)` when it holds none, an error when its
    /// inbox is full, it is gone, or it does not answer within [`LOOKUP_DEADLINE`].
    pub async fn lookup(
        &self,
        owner: ShardId,
        id: CorrelationId,
    ) -> Result<Option<RequestState>, QueueError> {
        let (reply, answer) = flume::bounded(1);
        self.send(owner, ShardMsg::Lookup { id, reply })?;
        match monoio::time::timeout(LOOKUP_DEADLINE, answer.recv_async()).await {
            Ok(Ok(state)) => Ok(state),
            Ok(Err(_)) => Err(QueueError::Closed),
            Err(_) => Err(QueueError::Overloaded),
        }
    }

    /// Asks the owner of `id` for its state once final, or at `until`. A gone owner answers
    /// `Closed`.
    pub async fn wait_final(
        &self,
        owner: ShardId,
        id: CorrelationId,
        until: std::time::Instant,
    ) -> Result<Option<RequestState>, QueueError> {
        self.ask(owner, |reply| ShardMsg::WaitFinal { id, until, reply })
            .await
    }

    /// Asks shard `to` for its dead letters after `after`. A gone shard answers `Closed`.
    pub async fn dead_letters(
        &self,
        to: ShardId,
        after: Option<DlqPosition>,
        limit: usize,
    ) -> Result<Vec<DeadLetterEntry>, QueueError> {
        self.ask(to, |reply| ShardMsg::DeadLetters {
            after,
            limit,
            reply,
        })
        .await
    }

    /// Asks the owner of `id` to redrive (or `drop`) its dead letter.
    pub async fn dead_letter(
        &self,
        owner: ShardId,
        id: CorrelationId,
        drop: bool,
    ) -> Result<bool, QueueError> {
        self.ask(owner, |reply| ShardMsg::DeadLetter { id, drop, reply })
            .await
    }

    /// Asks shard `owner` to queue `job` under idempotency key `key`.
    pub async fn submit_idempotent(
        &self,
        owner: ShardId,
        job: NewJob,
        now: Timestamp,
        key: Bytes,
        body: BodyHash,
    ) -> Result<Idempotent, QueueError> {
        self.ask(owner, |reply| ShardMsg::SubmitIdempotent {
            job: Box::new(job),
            now,
            key,
            body,
            reply,
        })
        .await
    }

    /// Asks the owner of `id` to cancel it.
    pub async fn cancel(&self, owner: ShardId, id: CorrelationId) -> Result<Cancel, QueueError> {
        self.ask(owner, |reply| ShardMsg::Cancel { id, reply }).await
    }

    /// Collects every shard's metrics, this one's too (those that answer).
    pub async fn scrape_all(&self) -> Vec<(ShardId, ShardMetrics)> {
        let (reply, answers) = flume::unbounded();
        let mut asked = 0;
        for to in 0..self.nr_shards() {
            if self
                .send(
                    to,
                    ShardMsg::Scrape {
                        reply: reply.clone(),
                    },
                )
                .is_ok()
            {
                asked += 1;
            }
        }
        drop(reply);
        let mut out = Vec::with_capacity(asked);
        while let Ok(m) = answers.recv_async().await {
            out.push(m);
        }
        out
    }

    /// Pings every shard (this one too); resolves once all answered, with how many did (a
    /// closed inbox does not answer). The caller bounds the wait.
    pub async fn ping_all(&self) -> usize {
        let (reply, answers) = flume::unbounded();
        for to in 0..self.nr_shards() {
            let _ = self.send(
                to,
                ShardMsg::Ping {
                    reply: reply.clone(),
                },
            );
        }
        drop(reply);
        let mut n = 0;
        while answers.recv_async().await.is_ok() {
            n += 1;
        }
        n
    }

    /// Asks every other shard to check its backend; the first failure, if any.
    pub async fn check_others(&self) -> Result<(), QueueError> {
        let (reply, answers) = flume::unbounded();
        for to in (0..self.nr_shards()).filter(|&s| s != self.me) {
            if self
                .send(
                    to,
                    ShardMsg::Check {
                        reply: reply.clone(),
                    },
                )
                .is_err()
            {
                return Err(QueueError::Closed);
            }
        }
        drop(reply);
        while let Ok(r) = answers.recv_async().await {
            r?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_inbox_is_overloaded_and_a_gone_shard_closed() {
        let (senders, mut receivers) = inboxes(2);
        let mesh = Mesh::new(0, senders);
        let ping = || {
            let (reply, _) = flume::unbounded();
            ShardMsg::Ping { reply }
        };
        for _ in 0..INBOX_CAPACITY {
            assert_eq!(mesh.send(1, ping()), Ok(()));
        }
        // Never blocks: the sender is told at once.
        assert_eq!(mesh.send(1, ping()), Err(QueueError::Overloaded));
        receivers.truncate(1);
        assert_eq!(mesh.send(1, ping()), Err(QueueError::Closed));
    }
}
