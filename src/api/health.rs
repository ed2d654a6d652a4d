//! `GET /health`: a real check of every shard's queue backend (a Redis round trip in Redis mode);
//! 200 `healthy` or 503 `degraded`.

use super::json::put_str;
use crate::backend::Backend;
use crate::clock::Timestamp;
use crate::http::Response;
use crate::mesh::Mesh;

/// Checks this shard's backend, then every other shard's.
pub(crate) async fn handle<B: Backend>(backend: &B, mesh: &Mesh) -> Response {
    let local = backend.check().await;
    let queue_ok = local.is_ok() && mesh.check_others().await.is_ok();
    let (status, word) = if queue_ok {
        (200, "healthy")
    } else {
        (503, "degraded")
    };
    let queue = if queue_ok { "healthy" } else { "unhealthy" };
    let mut b = Vec::with_capacity(192);
    b.extend_from_slice(b"{\"status\":\"");
    b.extend_from_slice(word.as_bytes());
    b.extend_from_slice(b"\",\"version\":");
    put_str(&mut b, env!("CARGO_PKG_VERSION"));
    b.extend_from_slice(b",\"timestamp\":\"");
    b.extend_from_slice(&Timestamp::now().rfc3339());
    b.extend_from_slice(b"\",\"components\":{\"api\":\"healthy\",\"queue\":\"");
    b.extend_from_slice(queue.as_bytes());
    b.extend_from_slice(b"\",\"cache\":\"healthy\"}}");
    let mut resp = Response::json(status, b);
    if !queue_ok {
        resp.retry_after = Some(1);
    }
    resp
}
