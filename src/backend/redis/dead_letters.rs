//! The dead-letter admin operations on one shard's dead-letter stream: list (oldest first, from a
//! position), redrive (back to the work stream, `PENDING`, attempts reset, out of the dead-letter
//! stream in the same script) and drop. Dead letters are found by correlation id through the
//! shard's index hash (`openhqm-dlq:{S}:index`, id → entry id), which the dead-letter scripts
//! write with the entry.

use bytes::Bytes;

use super::fields::{field, job_fields, job_from_fields};
use super::queue::RedisQueue;
use super::state_value;
use crate::backend::{DeadLetterEntry, DlqPosition, QueueError};
use crate::clock::Timestamp;
use crate::id::CorrelationId;
use crate::resp::{Cmd, Frame};
use crate::store::RequestState;

impl RedisQueue {
    /// At most `limit` dead letters after `after`, oldest first.
    pub(crate) async fn dead_letters(
        &self,
        after: Option<DlqPosition>,
        limit: usize,
    ) -> Result<Vec<DeadLetterEntry>, QueueError> {
        // `(` makes the start exclusive.
        let start = match after {
            Some(DlqPosition(ms, seq)) => format!("({ms}-{seq}"),
            None => "-".to_owned(),
        };
        let cmd = Cmd::new(b"XRANGE")
            .arg(&self.keys.dlq)
            .arg(start.as_bytes())
            .arg(b"+")
            .arg(b"COUNT")
            .int(limit as u64);
        let reply = self
            .cmd
            .call(&cmd)
            .await
            .map_err(|_| QueueError::Unavailable)?;
        Ok(reply
            .as_array()
            .unwrap_or_default()
            .iter()
            .filter_map(entry)
            .collect())
    }

    /// Puts dead letter `id` back on the work stream. `Ok(false)` when it is not one.
    pub(crate) async fn redrive(&self, id: &CorrelationId, now: Timestamp) -> Result<bool, QueueError> {
        self.tracking.forget(id);
        let unavailable = |_| QueueError::Unavailable;
        let text = id.to_text();
        let hget = Cmd::new(b"HGET").arg(&self.keys.dlq_index).arg(&text);
        let reply = self.cmd.call(&hget).await.map_err(unavailable)?;
        let Some(entry) = reply.as_bytes().cloned() else {
            return Ok(false);
        };
        let xrange = Cmd::new(b"XRANGE")
            .arg(&self.keys.dlq)
            .arg(&entry)
            .arg(&entry);
        let reply = self.cmd.call(&xrange).await.map_err(unavailable)?;
        let found = reply
            .as_array()
            .and_then(|entries| entries.first())
            .and_then(Frame::as_array)
            .and_then(|parts| parts.get(1))
            .and_then(Frame::as_array)
            .and_then(job_from_fields);
        let Some((job, _)) = found else {
            return Ok(false);
        };
        let job = crate::backend::Job {
            first_started_at: None,
            ..job
        };
        let fields = job_fields(&job, 1);
        let mut pending = RequestState::pending(job.submitted_at);
        pending.updated_at = now;
        let state = state_value::encode(&pending);
        let state_key = self.keys.state(id);
        let keys: [&[u8]; 4] = [
            &self.keys.dlq,
            &self.keys.dlq_index,
            &self.keys.stream,
            &state_key,
        ];
        let mut args: Vec<&[u8]> = vec![&text, &entry, &state, &self.ttl_text];
        args.extend(fields.iter().map(|b| &b[..]));
        let done = self
            .cmd
            .eval(&self.scripts.redrive, &keys, &args)
            .await
            .map_err(unavailable)?;
        Ok(done == Frame::Integer(1))
    }

    /// Deletes dead letter `id`. `Ok(false)` when it is not one.
    pub(crate) async fn drop_dead_letter(&self, id: &CorrelationId) -> Result<bool, QueueError> {
        let text = id.to_text();
        let keys: [&[u8]; 2] = [&self.keys.dlq, &self.keys.dlq_index];
        let done = self
            .cmd
            .eval(&self.scripts.drop_dead_letter, &keys, &[&text])
            .await
            .map_err(|_| QueueError::Unavailable)?;
        Ok(done == Frame::Integer(1))
    }
}

/// One entry of an `XRANGE` reply of the dead-letter stream; `None` if it is not readable.
fn entry(e: &Frame) -> Option<DeadLetterEntry> {
    let parts = e.as_array()?;
    let position = position(parts.first()?.as_bytes()?)?;
    let pairs = parts.get(1)?.as_array()?;
    let text = |name: &[u8]| field(pairs, name).map(|b| String::from_utf8_lossy(b).into_owned());
    let num = |name: &[u8]| text(name).and_then(|t| t.parse::<u64>().ok());
    Some(DeadLetterEntry {
        position,
        id: CorrelationId::parse(field(pairs, b"id")?)?,
        reason: text(b"reason").unwrap_or_else(|| "unknown".to_owned()),
        error: text(b"error").unwrap_or_default(),
        attempts: num(b"attempt").unwrap_or(1) as u32,
        failed_at: Timestamp(num(b"failed_at").unwrap_or(position.0 * 1000)),
    })
}

/// A stream entry id (`<ms>-<seq>`) as a position.
fn position(id: &Bytes) -> Option<DlqPosition> {
    let text = std::str::from_utf8(id).ok()?;
    let (ms, seq) = text.split_once('-')?;
    Some(DlqPosition(ms.parse().ok()?, seq.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_parse() {
        assert_eq!(
            position(&Bytes::from_static(b"1700000000000-3")),
            Some(DlqPosition(1_700_000_000_000, 3))
        );
        assert_eq!(position(&Bytes::from_static(b"17")), None);
        assert_eq!(position(&Bytes::from_static(b"a-1")), None);
    }
}
