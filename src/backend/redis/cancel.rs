//! Cancelling a `PENDING` request: one script checks that the state is still the `PENDING` one
//! read a moment before, finds the job's entry among those the consumer group has not delivered
//! yet, and deletes it together with the `CANCELLED` write. An entry deleted before delivery is
//! never read by any instance; one already delivered means a worker has it, and the cancel is
//! refused. Nothing on the submit path records the entry (that cost Redis 19 % more CPU per
//! submit, PERFORMANCE.md): the script scans the undelivered backlog instead, up to a bound.

use super::queue::RedisQueue;
use super::state_value;
use crate::backend::{Cancel, QueueError};
use crate::clock::Timestamp;
use crate::id::CorrelationId;
use crate::resp::{Cmd, Frame};
use crate::store::{RequestState, Status};

/// Attempts when the state changes between the read and the script.
const ATTEMPTS: usize = 3;

/// Most undelivered entries one cancel scans.
const MAX_SCAN: &[u8] = b"100000";

impl RedisQueue {
    /// Cancels `id` (owned by this shard) if it is `PENDING` and its entry undelivered.
    pub(crate) async fn cancel(
        &self,
        id: &CorrelationId,
        now: Timestamp,
    ) -> Result<Cancel, QueueError> {
        self.tracking.forget(id);
        let unavailable = |_| QueueError::Unavailable;
        let key = self.keys.state(id);
        let text = id.to_text();
        for _ in 0..ATTEMPTS {
            let reply = self
                .cmd
                .call(&Cmd::new(b"GET").arg(&key))
                .await
                .map_err(unavailable)?;
            let Some(value) = reply.as_bytes().cloned() else {
                return Ok(Cancel::Unknown);
            };
            let Some(state) = state_value::decode(&value) else {
                return Err(QueueError::Unavailable);
            };
            if state.status != Status::Pending {
                return Ok(Cancel::Refused(state.status));
            }
            let cancelled = RequestState {
                status: Status::Cancelled,
                submitted_at: state.submitted_at,
                updated_at: now,
                outcome: Some(Box::new(crate::backend::cancelled_outcome(now))),
            };
            let new = state_value::encode(&cancelled);
            let keys: [&[u8]; 2] = [&key, &self.keys.stream];
            let args: [&[u8]; 8] = [
                &value,
                &new,
                super::keys::GROUP,
                &text,
                &self.ttl_text,
                &self.keys.finals_channel,
                id.as_bytes(),
                MAX_SCAN,
            ];
            let done = self
                .cmd
                .eval(&self.scripts.cancel, &keys, &args)
                .await
                .map_err(unavailable)?;
            match done {
                Frame::Integer(1) => return Ok(Cancel::Cancelled(cancelled)),
                // Delivered: a worker has it (its state says PENDING until it settles).
                Frame::Integer(0) => return Ok(Cancel::Refused(Status::Processing)),
                // More undelivered entries than one scan reads: try again later.
                Frame::Integer(-2) => return Err(QueueError::Overloaded),
                _ => continue,
            }
        }
        Ok(Cancel::Refused(Status::Processing))
    }
}
