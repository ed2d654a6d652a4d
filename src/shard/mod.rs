//! What one core owns. A shard is a thread (pinned when `server.cpus` is set) running its own
//! event loop with its own listener (`SO_REUSEPORT`), connections, queue, worker slots, state
//! table and metrics. `id` maps correlation ids to shards, `mesh` carries messages between them,
//! `connection` serves HTTP, `runtime` builds the event loop.

pub mod connection;
pub mod context;
pub mod deadline;
pub mod id;
pub mod mesh;
pub mod notify;
pub mod oneshot;
pub mod runtime;
pub mod shutdown;

use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::net::TcpListener;
use tracing::{info, warn};

use crate::queue::QueueBackend;
use crate::worker::{self, Builtin};
use context::ShardCtx;
use mesh::ShardMsg;

/// How often a shard drops expired states.
const EXPIRY_INTERVAL: Duration = Duration::from_secs(1);

/// Runs a shard until it is told to shut down and has drained.
pub async fn run(
    ctx: Rc<ShardCtx>,
    listener: std::net::TcpListener,
    inbox: flume::Receiver<ShardMsg>,
) {
    monoio::spawn(serve_inbox(ctx.clone(), inbox));
    monoio::spawn(worker::slots::run(ctx.clone(), Rc::new(Builtin)));
    monoio::spawn(expire_states(ctx.clone()));
    match TcpListener::from_std(listener) {
        Ok(listener) => accept(&ctx, listener).await,
        Err(e) => {
            warn!(shard = ctx.shard, error = %e, "cannot use listener");
            ctx.shutdown.trigger();
        }
    }
    drain(&ctx).await;
}

async fn accept(ctx: &Rc<ShardCtx>, listener: TcpListener) {
    loop {
        let accepted = monoio::select! {
            r = listener.accept() => r,
            _ = ctx.shutdown.wait() => return,
        };
        match accepted {
            Ok((stream, _peer)) => {
                let _ = stream.set_nodelay(true);
                monoio::spawn(connection::serve(ctx.clone(), stream));
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                warn!(shard = ctx.shard, error = %e, "accept failed");
                monoio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// After the listener closed: wait for connections and running worker slots, up to the grace
/// period.
async fn drain(ctx: &ShardCtx) {
    let deadline = Instant::now() + ctx.config.server.shutdown_grace;
    while ctx.connections.get() > 0 || ctx.workers_active.get() > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            warn!(
                shard = ctx.shard,
                connections = ctx.connections.get(),
                workers = ctx.workers_active.get(),
                "grace period over; closing with work in flight"
            );
            break;
        }
        let conn = ctx.connection_closed.notified();
        let slot = ctx.slot_freed.notified();
        monoio::select! {
            _ = conn => {},
            _ = slot => {},
            _ = monoio::time::sleep(left) => {},
        }
    }
    let depth = ctx.backend.depth();
    // Only the embedded queue loses what it holds; Redis keeps it for the next consumer.
    if !ctx.backend.stores_state() && depth.ready + depth.delayed > 0 {
        warn!(
            shard = ctx.shard,
            queued = depth.ready,
            delayed = depth.delayed,
            "embedded queue not empty at exit; these requests are dropped"
        );
    }
    info!(shard = ctx.shard, "shard stopped");
}

async fn serve_inbox(ctx: Rc<ShardCtx>, inbox: flume::Receiver<ShardMsg>) {
    while let Ok(msg) = inbox.recv_async().await {
        match msg {
            ShardMsg::Lookup { id, reply } => {
                let state = ctx.table.borrow().get(&id).cloned();
                let _ = reply.send(state);
            }
            ShardMsg::Scrape { reply } => {
                let _ = reply.send((ctx.shard, ctx.metrics_snapshot()));
            }
            ShardMsg::Check { reply } => {
                let _ = reply.send(ctx.backend.check().await);
            }
            ShardMsg::Shutdown => ctx.shutdown.trigger(),
        }
    }
}

async fn expire_states(ctx: Rc<ShardCtx>) {
    loop {
        monoio::time::sleep(EXPIRY_INTERVAL).await;
        ctx.table.borrow_mut().expire(Instant::now());
    }
}
