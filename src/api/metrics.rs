//! `GET /metrics`: every shard's metrics, fetched over the mesh and summed, as Prometheus text.

use crate::error::{Error, ErrorKind};
use crate::http::{ContentType, Response};
use crate::mesh::Mesh;
use crate::metrics::prometheus;

/// Handles one scrape: every shard (this one too) sends a copy of its metrics over the mesh.
pub(crate) async fn handle(
    mesh: &Mesh,
    enabled: bool,
    queue_name: &str,
) -> Result<Response, Error> {
    if !enabled {
        return Err(Error::new(ErrorKind::NotFound, "Not Found"));
    }
    let mut shards = vec![Default::default(); mesh.nr_shards()];
    for (shard, m) in mesh.scrape_all().await {
        shards[shard] = m;
    }
    let text = prometheus::encode(&shards, queue_name);
    let mut resp = Response::json(200, text.into_bytes());
    resp.content_type = Some(ContentType::Prometheus);
    Ok(resp)
}
