//! Ending deliveries: a completion (state + `XACK`, group-committed), a retry (the job parked
//! in a hash and a sorted set, `PROCESSING`, `XACK`), a dead letter (`XADD` to the dead-letter
//! stream, `FAILED`, `XACK`). While this consumer certainly holds the entry's lease each is a
//! plain transaction; past that, an owner-only script that writes nothing unless the entry is
//! still this consumer's (`scripts.rs`).

use std::future::Future;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tracing::warn;

use super::commands;
use super::fields::job_fields;
use super::keys::GROUP;
use super::queue::{now_ms, RedisQueue};
use super::state_value;
use crate::backend::Delivery;
use crate::clock::Timestamp;
use crate::resp::{Frame, RedisError, Script};
use crate::metrics::DlqReason;
use crate::store::RequestState;

/// Whether a lease last reset at `since` is certainly still this consumer's at `now`: less than
/// `held` (shorter than the idle time after which other consumers take entries over) has passed.
/// Past that the lease may be lost, and a delivery is settled owner-only.
fn lease_certainly_held(since: Instant, now: Instant, held: Duration) -> bool {
    now.saturating_duration_since(since) < held
}

/// What became of a settle's write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Written {
    /// Redis has it.
    Yes,
    /// The entry is another consumer's now: nothing was written.
    TakenOver,
    /// Not known to have landed (Redis unreachable, no reply): the entry will be delivered again.
    Failed,
}

impl RedisQueue {
    /// Records `PROCESSING` (a job that did not finish at once), only while `d`'s entry is this
    /// consumer's: with the lease certainly held a plain `SET`, else a script that writes only if
    /// the entry is still in this consumer's pending list. A worker whose entry was taken over
    /// (and maybe finished) meanwhile must not turn a final state back into `PROCESSING`.
    pub(crate) async fn processing(&self, d: &Delivery, now: Timestamp) {
        let job = &d.job;
        let key = self.keys.state(&job.id);
        let processing = RequestState::processing(job.submitted_at, now);
        let state = state_value::encode(&processing);
        let r = if self.lease_held(d) {
            let set = commands::set_state(&key, &state, &self.ttl_text);
            self.cmd.call(&set).await.map(drop)
        } else {
            // Whatever the script finds, the state is read from Redis from now on.
            self.tracking.forget(&job.id);
            let entry = d.entry_id.clone().unwrap_or_default();
            let keys: [&[u8]; 2] = [&self.keys.stream, &key];
            let args: [&[u8]; 5] = [GROUP, &self.consumer, &entry, &self.ttl_text, &state];
            match self.cmd.eval(&self.scripts.processing, &keys, &args).await {
                Ok(Frame::Integer(1)) => Ok(()),
                Ok(_) => {
                    warn!(correlation_id = %job.id, "lease lapsed and the entry was taken over; not recording PROCESSING");
                    Ok(())
                }
                Err(e) => Err(e),
            }
        };
        match r {
            Ok(()) => self.tracking.update(&job.id, processing),
            Err(e) => {
                self.tracking.forget(&job.id);
                warn!(correlation_id = %job.id, error = %e, "cannot record PROCESSING");
            }
        }
    }

    /// Ends `d` with its final `state` (the state this shard holds, absent only when it has
    /// none): group-committed with the turn's other completions, or owner-only. Whether it was
    /// written (false: taken over by another consumer, or not known to have landed).
    pub(crate) async fn finish(&self, d: Delivery, state: Option<&RequestState>) -> Written {
        let entry = d.entry_id.clone().unwrap_or_default();
        let key = self.keys.state(&d.job.id);
        let value = state.map(state_value::encode);
        // The everyday path: together with the other completions of this turn.
        let held = self.commit_completion(
            entry.clone(),
            &d.job.id,
            value.as_deref().map(|v| (&key[..], v)),
        );
        let args = || {
            let mut args: Vec<&[u8]> = Vec::with_capacity(5);
            args.extend([GROUP, &self.consumer[..], &entry[..], &self.ttl_text[..]]);
            args.extend(value.as_deref());
            args
        };
        let keys: [&[u8]; 2] = [&self.keys.stream, &key];
        let owner_only = (&self.scripts.finish, &keys[..]);
        self.settle(&d, held, owner_only, args, "cannot record completion")
            .await
    }

    /// Appends `SET key value EX ttl` (one command; `state_value.rs` encodes the value).
    pub(super) fn put_state(&self, out: &mut BytesMut, key: &[u8], value: &[u8]) {
        commands::set_state(key, value, &self.ttl_text).encode(out);
    }

    /// Appends `XACK` of `entry` (one command); `trim_acknowledged` deletes it later.
    fn put_ack(&self, out: &mut BytesMut, entry: &[u8]) {
        commands::xack(&self.keys.stream, [entry]).encode(out);
    }

    /// Whether this consumer certainly still holds the lease on `d`'s entry: the last command
    /// that reset its idle time (the read that delivered it, a claim, a renewal) was sent less
    /// than `lease_held` ago, so no other consumer can have taken it over (they take entries idle
    /// for `LEASE`).
    pub(super) fn lease_held(&self, d: &Delivery) -> bool {
        let now = Instant::now();
        d.entry_id.as_ref().is_some_and(|id| {
            self.in_flight
                .borrow()
                .get(id)
                .is_some_and(|&since| lease_certainly_held(since, now, self.lease_held))
        })
    }

    /// Ends a delivery: `held` (its transaction, not yet started: a future runs only when awaited)
    /// while the lease is certainly held, else `owner_only` (a script of `scripts.rs` and its keys,
    /// with the arguments built only then), which writes nothing unless the entry is still in this
    /// consumer's pending list.
    /// If the call fails the entry is still pending in Redis, so the pending list is read again
    /// and the delivery finished then.
    async fn settle<'a>(
        &self,
        d: &Delivery,
        held: impl Future<Output = Result<(), RedisError>>,
        owner_only: (&Script, &[&[u8]]),
        owner_only_args: impl FnOnce() -> Vec<&'a [u8]>,
        what: &str,
    ) -> Written {
        let r = if self.lease_held(d) {
            held.await.map(|()| true)
        } else {
            let (script, keys) = owner_only;
            let r = self.cmd.eval(script, keys, &owner_only_args()).await;
            r.map(|f| f == Frame::Integer(1))
        };
        self.done(d);
        // Until now a poll was answered with the live state, as Redis had it; from now on the
        // final state this shard keeps answers it, or Redis does.
        self.tracking.forget(&d.job.id);
        match r {
            Ok(true) => Written::Yes,
            Ok(false) => {
                warn!(correlation_id = %d.job.id, "lease lapsed and the entry was taken over by another consumer; leaving it to that one");
                Written::TakenOver
            }
            Err(e) => {
                warn!(correlation_id = %d.job.id, error = %e, "{what}; will redeliver");
                self.reread.set(true);
                Written::Failed
            }
        }
    }

    /// Parks `d`'s job for another delivery (attempt + 1) after `delay`.
    pub(crate) async fn retry(&self, d: Delivery, delay: Duration) {
        let entry = d.entry_id.clone().unwrap_or_default();
        let job_key = self.keys.retry_job(&d.job.id);
        let fields = job_fields(&d.job, d.attempt + 1);
        let due_ms = now_ms() + delay.as_millis() as u64;
        let mut due = itoa::Buffer::new();
        let due = due.format(due_ms).as_bytes();
        let id = d.job.id.to_text();
        let state_key = self.keys.state(&d.job.id);
        // Waiting for a retry is PROCESSING (the state never moves back to PENDING).
        let waiting = RequestState::processing(d.job.submitted_at, Timestamp::now());
        let state = state_value::encode(&waiting);
        let plain = |out: &mut BytesMut| {
            commands::hset(&job_key, fields.iter().map(|b| &b[..])).encode(out);
            commands::zadd(&self.keys.retries, due_ms, &id).encode(out);
            self.put_state(out, &state_key, &state);
            self.put_ack(out, &entry);
        };
        let args = || {
            let mut args: Vec<&[u8]> = Vec::with_capacity(7 + fields.len());
            args.extend([
                GROUP,
                &self.consumer[..],
                &entry[..],
                &self.ttl_text[..],
                due,
                &id[..],
                &state[..],
            ]);
            args.extend(fields.iter().map(|b| &b[..]));
            args
        };
        let keys: [&[u8]; 4] = [&self.keys.stream, &self.keys.retries, &job_key, &state_key];
        let owner_only = (&self.scripts.retry, &keys[..]);
        let held = async { self.cmd.transaction(4, plain).await.map(drop) };
        self.settle(&d, held, owner_only, args, "cannot schedule the retry")
            .await;
    }

    /// Moves `d`'s job to the dead-letter stream (for `reason`, with the last `error`), indexed
    /// by its id, ending it with `state` (published on the finals channel). Whether it was
    /// written.
    pub(crate) async fn dead_letter(
        &self,
        d: Delivery,
        state: Option<&RequestState>,
        reason: DlqReason,
        error: &str,
    ) -> Written {
        let entry = d.entry_id.clone().unwrap_or_default();
        let key = self.keys.state(&d.job.id);
        let mut dlq = job_fields(&d.job, d.attempt);
        dlq.push(Bytes::from_static(b"error"));
        dlq.push(Bytes::copy_from_slice(error.as_bytes()));
        dlq.push(Bytes::from_static(b"reason"));
        dlq.push(Bytes::from_static(
            DlqReason::LABELS[reason as usize].as_bytes(),
        ));
        dlq.push(Bytes::from_static(b"failed_at"));
        dlq.push(Bytes::from(Timestamp::now().0.to_string()));
        let value = state.map(state_value::encode);
        let mut count = itoa::Buffer::new();
        let count = count.format(dlq.len()).as_bytes();
        let id_text = d.job.id.to_text();
        let args = || {
            let mut args: Vec<&[u8]> = Vec::with_capacity(9 + dlq.len());
            args.extend([
                GROUP,
                &self.consumer[..],
                &entry[..],
                &self.ttl_text[..],
                &id_text[..],
                &d.job.id.as_bytes()[..],
                &self.keys.finals_channel[..],
                count,
            ]);
            args.extend(dlq.iter().map(|b| &b[..]));
            args.extend(value.as_deref());
            args
        };
        let keys: [&[u8]; 4] = [&self.keys.stream, &self.keys.dlq, &key, &self.keys.dlq_index];
        let owner_only = (&self.scripts.dead_letter, &keys[..]);
        let held = async {
            let held_script = &self.scripts.dead_letter_held;
            self.cmd.eval(held_script, &keys, &args()).await.map(drop)
        };
        self.settle(&d, held, owner_only, args, "cannot dead-letter")
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_certainly_held_only_until_the_margin_runs_out() {
        // A fake clock: instants built from one base, no waiting.
        let held = Duration::from_secs(20);
        let since = Instant::now();
        let at = |ms: u64| since + Duration::from_millis(ms);
        assert!(lease_certainly_held(since, since, held));
        assert!(lease_certainly_held(since, at(19_999), held));
        assert!(!lease_certainly_held(since, at(20_000), held), "lost: owner-only");
        assert!(!lease_certainly_held(since, at(3_600_000), held));
        // A renewal (a later `since`) holds it again.
        assert!(lease_certainly_held(at(15_000), at(30_000), held));
    }
}
