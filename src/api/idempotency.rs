//! `Idempotency-Key` on a submit: the first use queues the request, a repeat with the same body
//! answers as the first did (`Idempotent-Replayed: true`, nothing queued), a repeat with another
//! body is 422. The key's owner shard (by the key's hash) does the submit, so every use of a key
//! meets the same record: the embedded backend's table, or in Redis mode the one script that
//! checks the key and queues the request.

use std::cell::RefCell;

use bytes::Bytes;

use super::submit::{prepare, refused, Rules};
use crate::backend::idempotency::{body_hash, shard_of_key, BodyHash, Idempotent};
use crate::backend::{Accepted, Backend, NewJob, QueueError};
use crate::clock::Timestamp;
use crate::error::{Error, ErrorKind, FieldError};
use crate::id::ShardId;
use crate::mesh::Mesh;
use crate::metrics::ShardMetrics;

/// Most bytes in a key.
const MAX_KEY: usize = 255;

/// Checks a key: 1..=255 printable ASCII characters.
pub fn check_key(key: &[u8]) -> Result<(), Error> {
    if key.is_empty() || key.len() > MAX_KEY || !key.iter().all(|b| (0x20..0x7f).contains(b)) {
        return Err(Error::fields(vec![FieldError {
            loc: vec!["header".into(), "Idempotency-Key".into()],
            msg: "Idempotency-Key must be 1 to 255 printable ASCII characters".into(),
            kind: "value_error",
        }]));
    }
    Ok(())
}

/// A submit of `body` under `key`: the accepted request, and whether it is a replay.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn submit<B: Backend>(
    backend: &B,
    mesh: &Mesh,
    me: ShardId,
    metrics: &RefCell<ShardMetrics>,
    rules: &Rules<'_>,
    key: &Bytes,
    body: &[u8],
    now: Timestamp,
) -> Result<(Accepted, bool), Error> {
    check_key(key)?;
    let job = prepare(rules, body)?;
    let done = queue(backend, mesh, me, key, job, body_hash(body), now)
        .await
        .map_err(|e| refused(metrics, e))?;
    answer(metrics, done)
}

/// What an idempotent submit's outcome means for its client: the request and whether it is a
/// replay (a new one is counted as published), or the 422 of a key reused with another body.
pub(crate) fn answer(
    metrics: &RefCell<ShardMetrics>,
    done: Idempotent,
) -> Result<(Accepted, bool), Error> {
    match done {
        Idempotent::Queued(a) => {
            metrics.borrow_mut().published += 1;
            Ok((a, false))
        }
        Idempotent::Replayed(a) => Ok((a, true)),
        Idempotent::Conflict => Err(Error::new(
            ErrorKind::InvalidShape,
            "Idempotency-Key reused with a different request",
        )),
    }
}

/// Queues a prepared `job` under `key` on the key's shard.
pub(crate) async fn queue<B: Backend>(
    backend: &B,
    mesh: &Mesh,
    me: ShardId,
    key: &Bytes,
    job: NewJob,
    body: BodyHash,
    now: Timestamp,
) -> Result<Idempotent, QueueError> {
    // Keys are scoped to the API key that uses them: two clients may pick the same one.
    let key = match job.owner {
        Some(o) => Bytes::from(o.scope(key)),
        None => key.clone(),
    };
    let owner = shard_of_key(&key, mesh.nr_shards());
    if owner == me {
        backend.submit_idempotent(job, now, &key, body).await
    } else {
        mesh.submit_idempotent(owner, job, now, key, body).await
    }
}
