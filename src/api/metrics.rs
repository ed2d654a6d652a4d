//! `GET /metrics`: every shard's metrics, fetched over the mesh and summed, as Prometheus text.

use crate::error::{Error, ErrorKind};
use crate::http::{ContentType, Response};
use crate::metrics::prometheus;
use crate::shard::context::ShardCtx;

/// Handles one scrape.
pub async fn handle(ctx: &ShardCtx) -> Result<Response, Error> {
    if !ctx.config.monitoring.metrics_enabled {
        return Err(Error::new(ErrorKind::NotFound, "Not Found"));
    }
    let mut shards = vec![Default::default(); ctx.mesh.nr_shards()];
    shards[ctx.shard] = ctx.metrics_snapshot();
    for (shard, m) in ctx.mesh.scrape_others().await {
        shards[shard] = m;
    }
    let text = prometheus::encode(&shards, &ctx.config.queue.request_queue_name);
    let mut resp = Response::json(200, text.into_bytes());
    resp.content_type = Some(ContentType::Prometheus);
    Ok(resp)
}
