//! Submitting: admission control, then the job's stream entry and its `PENDING` state (no TTL
//! until a worker first writes it) in one transaction, shared with the other submits of the same
//! event-loop turn (`submits.rs`). The 202 is sent only once Redis answered.

use std::cell::Cell;

use bytes::{Bytes, BytesMut};

use tracing::warn;

use super::commands;
use super::fields::job_fields;
use super::queue::RedisQueue;
use super::state_value;
use crate::backend::idempotency::KeyUse;
use crate::backend::{Job, QueueError};
use crate::store::RequestState;

/// Counts one submit in flight for as long as it lives (also when the request is cancelled).
struct InFlight<'a>(&'a Cell<usize>);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

impl RedisQueue {
    /// Queues every job of `jobs` with its `PENDING` state in one transaction (all or none);
    /// returns once Redis has them. Past `max_submits_in_flight` calls waiting for Redis,
    /// refuses at once (`Overloaded`): a batch counts as one.
    pub(crate) async fn enqueue(&self, jobs: &[Job]) -> Result<(), QueueError> {
        // Admission control: past the bound, Redis is already far behind; answering 503 now beats
        // queueing more work in this process until the deadline.
        if !self.started.get() {
            return Err(QueueError::Unavailable);
        }
        let waiting = self.submits_in_flight.get();
        if waiting >= self.max_submits_in_flight {
            return Err(QueueError::Overloaded);
        }
        self.submits_in_flight.set(waiting + 1);
        let _counted = InFlight(&self.submits_in_flight);
        let mut states = Vec::with_capacity(2 * jobs.len());
        for job in jobs {
            let state = RequestState::pending(job.submitted_at);
            states.push(Bytes::from(self.keys.state(&job.id)));
            states.push(state_value::encode(&state));
            // Recorded before it is sent: a change reported right after the write finds it.
            self.tracking.record(job.id, state, &self.cmd);
        }
        // With the other submits of this event-loop turn, in one transaction (`submits.rs`).
        let encode = |out: &mut BytesMut| {
            for job in jobs {
                let entry = job_fields(job, 1);
                commands::xadd(&self.keys.stream, entry.iter().map(|b| &b[..])).encode(out);
            }
        };
        let r = self.commit_submit(jobs.len(), encode, states).await;
        r.map_err(|e| {
            for job in jobs {
                self.tracking.forget(&job.id);
            }
            if let Some(first) = jobs.first() {
                warn!(correlation_id = %first.id, jobs = jobs.len(), error = %e, "enqueue failed");
            }
            QueueError::Unavailable
        })
    }

    /// Queues `job` under idempotency key `key` in one script, unless the key is known: then
    /// the key's earlier use, and nothing is written.
    pub(crate) async fn enqueue_idempotent(
        &self,
        job: &Job,
        key: &[u8],
        used: &KeyUse,
    ) -> Result<Option<KeyUse>, QueueError> {
        if !self.started.get() {
            return Err(QueueError::Unavailable);
        }
        let waiting = self.submits_in_flight.get();
        if waiting >= self.max_submits_in_flight {
            return Err(QueueError::Overloaded);
        }
        self.submits_in_flight.set(waiting + 1);
        let _counted = InFlight(&self.submits_in_flight);
        let idem_key = self.keys.idempotency(key);
        let state_key = self.keys.state(&job.id);
        let state = state_value::encode(&RequestState::pending(job.submitted_at));
        let value = used.encode();
        let fields = job_fields(job, 1);
        let keys: [&[u8]; 3] = [&idem_key, &self.keys.stream, &state_key];
        let mut args: Vec<&[u8]> = vec![value.as_bytes(), &self.ttl_text, &state];
        args.extend(fields.iter().map(|b| &b[..]));
        let reply = self
            .cmd
            .eval(&self.scripts.submit_idempotent, &keys, &args)
            .await
            .map_err(|e| {
                warn!(correlation_id = %job.id, error = %e, "idempotent enqueue failed");
                QueueError::Unavailable
            })?;
        match reply.as_bytes() {
            None => Ok(None),
            Some(prev) => KeyUse::decode(prev).map(Some).ok_or(QueueError::Unavailable),
        }
    }
}
