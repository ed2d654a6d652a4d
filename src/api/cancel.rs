//! `DELETE /api/v1/requests/{id}`: cancels a request no worker has taken, on the shard that owns
//! the id. 200 with the status body (`CANCELLED`), 409 naming the status it had when it was too
//! late, 404 when unknown.

use bytes::Bytes;

use super::lookup::parse_id;
use crate::backend::Cancel;
use crate::error::{Error, ErrorKind};
use crate::http::Response;
use crate::id::shard_for;
use crate::mesh::Mesh;

/// Cancels the request `raw` names.
pub(crate) async fn handle(mesh: &Mesh, raw: &Bytes) -> Result<Response, Error> {
    let id = parse_id(raw)?;
    let owner = shard_for(&id, mesh.nr_shards());
    match mesh.cancel(owner, id).await {
        Ok(Cancel::Cancelled(state)) => Ok(super::status::respond(&id, &state)),
        Ok(Cancel::Refused(status)) => Err(Error::owned(
            ErrorKind::Conflict,
            format!(
                "Request is {}: only a PENDING request can be cancelled",
                status.as_str()
            ),
        )),
        Ok(Cancel::Unknown) => Err(Error::new(ErrorKind::NotFound, "Request not found")),
        Err(_) => Err(Error::new(
            ErrorKind::QueueUnavailable,
            "state store unavailable; retry later",
        )),
    }
}
