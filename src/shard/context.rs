//! Everything one shard owns, in one place: its slice of request state, its queue, its metrics,
//! its id minter and its view of the mesh. Shared between the shard's tasks as `Rc<ShardCtx>`;
//! never leaves the shard's thread.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use super::id::{IdMinter, ShardId};
use super::mesh::Mesh;
use super::notify::Notify;
use super::shutdown::Shutdown;
use crate::config::{Config, QueueType};
use crate::http::Limits;
use crate::metrics::ShardMetrics;
use crate::queue::redis_streams::{Keys, RedisSettings};
use crate::queue::{Backend, MemoryQueue, QueueBackend, RedisQueue};
use crate::resp::RedisTarget;
use crate::store::StateTable;
use crate::worker::backoff::Jitter;

/// One shard's state.
pub struct ShardCtx {
    /// This shard.
    pub shard: ShardId,
    /// The configuration (this shard's own copy).
    pub config: Config,
    /// HTTP limits derived from the configuration.
    pub limits: Limits,
    /// Request states this shard owns.
    pub table: RefCell<StateTable>,
    /// This shard's queue.
    pub backend: Backend,
    /// This shard's metrics.
    pub metrics: RefCell<ShardMetrics>,
    /// Mints ids this shard owns.
    pub minter: RefCell<IdMinter>,
    /// Messages to other shards.
    pub mesh: Mesh,
    /// Set when the shard should stop.
    pub shutdown: Shutdown,
    /// Worker slots busy now.
    pub workers_active: Cell<usize>,
    /// Notified whenever a worker slot frees up.
    pub slot_freed: Notify,
    /// Open HTTP connections.
    pub connections: Cell<usize>,
    /// Notified whenever a connection closes.
    pub connection_closed: Notify,
    /// Jitter for retry delays.
    pub jitter: RefCell<Jitter>,
}

impl ShardCtx {
    /// A shard with an empty table and its queue backend. `instance` names this process among
    /// the brokers sharing one Redis (the consumer name is `instance:shard`). Must run on the
    /// shard's own thread (the Redis backend starts its tasks there).
    pub fn new(shard: ShardId, config: Config, mesh: Mesh, instance: &str) -> Self {
        let nr_shards = mesh.nr_shards();
        let limits = Limits {
            max_head_bytes: config.server.max_header_bytes,
            max_uri_bytes: config.server.max_uri_bytes,
            max_body_bytes: config.server.max_body_bytes,
        };
        let backend = match config.queue.kind {
            QueueType::Memory => Backend::Memory(MemoryQueue::new(config.queue.max_depth)),
            QueueType::Redis => {
                let q = &config.queue;
                let settings = RedisSettings {
                    // Validated when the configuration was loaded.
                    target: RedisTarget::parse(&q.redis_url).expect("validated redis url"),
                    deadline: q.redis_timeout,
                    max_submits_in_flight: q.redis_max_in_flight,
                    lease_held: crate::queue::redis_streams::LEASE_HELD,
                    ttl: config.cache.ttl,
                    max_deliveries: config.worker.max_retries + 2,
                    consumer: format!("{instance}:{shard}"),
                    nr_shards,
                    requests_prefix: q.request_queue_name.clone(),
                };
                let keys = Keys::new(
                    &q.request_queue_name,
                    &q.response_queue_name,
                    &q.dlq_name,
                    shard,
                );
                Backend::Redis(RedisQueue::start(settings, keys))
            }
        };
        ShardCtx {
            shard,
            limits,
            table: RefCell::new(StateTable::new(config.cache.ttl)),
            backend,
            metrics: RefCell::default(),
            minter: RefCell::new(IdMinter::new(shard, nr_shards)),
            mesh,
            shutdown: Shutdown::default(),
            workers_active: Cell::new(0),
            slot_freed: Notify::new(),
            connections: Cell::new(0),
            connection_closed: Notify::new(),
            jitter: RefCell::new(Jitter::new(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or(Duration::ZERO)
                    .as_nanos() as u64
                    ^ (shard as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            )),
            config,
        }
    }

    /// A copy of this shard's metrics with its gauges filled in, for a scrape.
    pub fn metrics_snapshot(&self) -> ShardMetrics {
        let mut m = self.metrics.borrow().clone();
        let depth = self.backend.depth();
        m.queue_ready = depth.ready;
        m.queue_delayed = depth.delayed;
        m.queue_pending = depth.pending;
        m.workers_active = self.workers_active.get() as u64;
        m.connections = self.connections.get() as u64;
        m.states = self.table.borrow().len() as u64;
        if let Backend::Redis(q) = &self.backend {
            m.redis_round_trips = q.round_trips();
            m.redis_reconnects = q.reconnects();
        }
        m
    }
}
