//! Probes for orchestrators. `GET /livez`: the process works (every shard answers a mesh ping
//! within a second), whatever the backend does, so a Redis outage never gets the broker
//! restarted. `GET /readyz`: it can take work now (every shard's backend check passes); a Redis
//! outage, a queue at its depth limit, or a drain (SIGTERM) makes it unready with the reason.

use std::time::Duration;

use crate::backend::{Backend, QueueError};
use crate::http::Response;
use crate::mesh::Mesh;

/// How long every shard has to answer a liveness ping.
const PING_DEADLINE: Duration = Duration::from_secs(1);

fn body(status: u16, fields: serde_json::Value) -> Response {
    let mut r = Response::json(
        status,
        serde_json::to_vec(&fields).expect("a JSON value serializes"),
    );
    if status == 503 {
        r.retry_after = Some(1);
    }
    r
}

/// `GET /livez`.
pub(crate) async fn livez(mesh: &Mesh) -> Response {
    let shards = mesh.nr_shards();
    let answered = monoio::time::timeout(PING_DEADLINE, mesh.ping_all())
        .await
        .unwrap_or(0);
    if answered == shards {
        body(200, serde_json::json!({"status": "ok"}))
    } else {
        body(
            503,
            serde_json::json!({
                "status": "unresponsive",
                "detail": format!("{answered} of {shards} shards answered within 1 s"),
            }),
        )
    }
}

/// `GET /readyz`. A draining shard is not ready, whatever its backend says.
pub(crate) async fn readyz<B: Backend>(backend: &B, mesh: &Mesh, draining: bool) -> Response {
    if draining {
        return body(
            503,
            serde_json::json!({"status": "not_ready", "reason": "draining"}),
        );
    }
    let checked = match backend.check().await {
        Ok(()) => mesh.check_others().await,
        Err(e) => Err(e),
    };
    match checked {
        Ok(()) => body(200, serde_json::json!({"status": "ready"})),
        Err(e) => {
            let reason = match e {
                QueueError::Unavailable => "queue backend unreachable",
                QueueError::Full(_) => "queue full",
                QueueError::Overloaded => "queue backend overloaded",
                QueueError::Closed => "shutting down",
            };
            body(
                503,
                serde_json::json!({"status": "not_ready", "reason": reason}),
            )
        }
    }
}
