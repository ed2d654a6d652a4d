//! Finding a request's state: parse the id (malformed → 404 as an unknown one, before it touches
//! anything), then ask
//! the owning shard: this one directly, another one with a mesh message.

use bytes::Bytes;

use crate::backend::Backend;
use crate::error::{Error, ErrorKind};
use crate::id::{shard_for, CorrelationId, ShardId};
use crate::mesh::Mesh;
use crate::store::RequestState;

/// Parses a path segment as a correlation id.
pub fn parse_id(raw: &Bytes) -> Result<CorrelationId, Error> {
    CorrelationId::parse(raw).ok_or(Error::new(
        ErrorKind::MalformedId,
        "Request not found",
    ))
}

/// The state of `raw`'s id, or 404: from the shard that owns it (this one, or another over the
/// mesh), else from the store every instance shares (Redis: submitted through another instance,
/// or before a restart).
pub(crate) async fn find<B: Backend>(
    backend: &B,
    mesh: &Mesh,
    me: ShardId,
    raw: &Bytes,
) -> Result<(CorrelationId, RequestState), Error> {
    let id = parse_id(raw)?;
    let owner = shard_for(&id, mesh.nr_shards());
    let held = if owner == me {
        backend.held(&id)
    } else {
        mesh.lookup(owner, id).await.map_err(|_| {
            Error::new(
                ErrorKind::QueueUnavailable,
                "the shard owning this id is overloaded; retry later",
            )
        })?
    };
    if let Some(state) = held {
        return Ok((id, state));
    }
    match backend.load(&id).await {
        Ok(Some(state)) => Ok((id, state)),
        Ok(None) => Err(Error::new(ErrorKind::NotFound, "Request not found")),
        Err(_) => Err(Error::new(
            ErrorKind::QueueUnavailable,
            "state store unavailable; retry later",
        )),
    }
}
