//! Finding a request's state: parse the id (malformed → 400, before it touches anything), then ask
//! the owning shard: this one directly, another one with a mesh message.

use bytes::Bytes;

use crate::error::{Error, ErrorKind};
use crate::queue::QueueBackend;
use crate::shard::context::ShardCtx;
use crate::shard::id::{shard_for, CorrelationId};
use crate::store::RequestState;

/// Parses a path segment as a correlation id.
pub fn parse_id(raw: &Bytes) -> Result<CorrelationId, Error> {
    CorrelationId::parse(raw).ok_or(Error::new(
        ErrorKind::MalformedId,
        "correlation_id must be a UUID",
    ))
}

/// Renders the state of `raw`'s id with `render`, or 404.
pub async fn with_state<T>(
    ctx: &ShardCtx,
    raw: &Bytes,
    render: impl Fn(&CorrelationId, &RequestState) -> T,
) -> Result<T, Error> {
    let id = parse_id(raw)?;
    let owner = shard_for(&id, ctx.mesh.nr_shards());
    let not_found = || Error::new(ErrorKind::NotFound, "Request not found");
    if owner == ctx.shard {
        if let Some(s) = ctx.table.borrow().get(&id) {
            return Ok(render(&id, s));
        }
    } else if let Some(state) = ctx.mesh.lookup(owner, id).await {
        return Ok(render(&id, &state));
    }
    // Not in memory: submitted through another instance, or before a restart.
    match ctx.backend.load_state(&id).await {
        Ok(Some(state)) => Ok(render(&id, &state)),
        Ok(None) => Err(not_found()),
        Err(_) => Err(Error::new(
            ErrorKind::QueueUnavailable,
            "state store unavailable; retry later",
        )),
    }
}
