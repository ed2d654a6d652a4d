//! What one core owns. A shard is a thread (pinned when `server.cpus` is set) running its own
//! event loop with its own listener (`SO_REUSEPORT`), connections, backend (queue and request
//! state), worker slots and metrics. This is the top layer: it wires the others together, and
//! none of them imports it. `connection` serves HTTP, `runtime` builds the event loop.

mod connection;
pub mod runtime;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use monoio::net::TcpListener;
use tracing::{info, warn};

use crate::api::Api;
use crate::auth::rate::RateLimits;
use crate::auth::ApiKeys;
use crate::backend::redis::{lease_held_for, Keys, RedisSettings, LEASE_HELD};
use crate::backend::{Backend, EmbeddedBackend, RedisBackend};
use crate::config::{Config, QueueType, Role};
use crate::http::Limits;
use crate::id::{IdMinter, ShardId};
use crate::mesh::{Mesh, ShardMsg};
use crate::metrics::{RejectReason, ShardMetrics};
use crate::resp::RedisTarget;
use crate::sync::notify::Notify;
use crate::sync::shutdown::Shutdown;
use crate::worker::Processors;
use crate::worker::Worker;

/// How often a shard drops expired states.
const EXPIRY_INTERVAL: Duration = Duration::from_secs(1);
/// How often a waiter held for another shard checks that shard still wants the answer.
const ASKER_CHECK: Duration = Duration::from_millis(500);
/// How often a drain looks at the queue when no slot frees up.
const DRAIN_POLL: Duration = Duration::from_millis(50);
/// Ids per log line of the requests a drain leaves behind.
const DROPPED_IDS_PER_LINE: usize = 500;

/// One shard: its backend, worker slots, endpoints and connections.
pub(crate) struct Shard<B> {
    id: ShardId,
    config: Config,
    limits: Limits,
    backend: Rc<B>,
    metrics: Rc<RefCell<ShardMetrics>>,
    worker: Rc<Worker<B>>,
    api: Api<B>,
    /// Set by the `Shutdown` message: refuse new work, finish what must be finished.
    draining: Shutdown,
    /// Set when the drain is over: stop accepting and close the connections.
    shutdown: Shutdown,
    /// When the grace period of the drain ends.
    grace_ends: Cell<Option<Instant>>,
    connections: Cell<usize>,
    connection_closed: Notify,
}

/// What a shard is started with.
pub(crate) struct Wiring {
    /// This shard.
    pub(crate) id: ShardId,
    /// The configuration (this shard's own copy).
    pub(crate) config: Config,
    /// The way to the other shards.
    pub(crate) mesh: Mesh,
    /// The processors its worker slots run.
    pub(crate) processors: Processors,
    /// This process's name among the brokers sharing one Redis (consumers are `instance:shard`).
    pub(crate) instance: String,
    /// The API keys, `None` when they are off.
    pub(crate) keys: Option<Arc<ApiKeys>>,
    /// The shard's drain flag (set by the `Shutdown` message, or by the backend when it must
    /// not go on).
    pub(crate) draining: Shutdown,
}

/// Builds the configured backend on this thread (the Redis backend starts its tasks here),
/// then runs the shard until it is told to shut down and has drained. `ready` is called once
/// the shard is built.
pub(crate) async fn run(
    wiring: Wiring,
    listener: std::net::TcpListener,
    inbox: flume::Receiver<ShardMsg>,
    ready: impl FnOnce(),
) {
    let minter = IdMinter::new(wiring.id, wiring.mesh.nr_shards());
    let c = &wiring.config;
    match c.queue.kind {
        QueueType::Memory => {
            let backend = EmbeddedBackend::new(
                minter,
                c.queue.max_depth,
                c.cache.ttl,
                c.server.max_waiters,
            )
            .with_dlq_retention(c.queue.dlq_retention)
            .with_max_bytes(c.queue.max_bytes / wiring.mesh.nr_shards());
            ready();
            Shard::new(wiring, backend).serve(listener, inbox).await;
        }
        QueueType::Redis => {
            let q = &c.queue;
            let settings = RedisSettings {
                // Validated when the configuration was loaded.
                target: {
                    let mut t = RedisTarget::parse(&q.redis_url).expect("validated redis url");
                    if let Some(p) = &q.redis_password {
                        t.password = Some(p.0.clone());
                    }
                    t.ca_file = q.redis_ca_file.clone();
                    t
                },
                deadline: q.redis_timeout,
                max_submits_in_flight: q.redis_max_in_flight,
                // Validated at start: a window is left for the configured deadline.
                lease_held: lease_held_for(q.redis_timeout).unwrap_or(LEASE_HELD),
                ttl: c.cache.ttl,
                max_deliveries: c.worker.max_retries + 2,
                consumer: format!("{}:{}", wiring.instance, wiring.id),
                nr_shards: wiring.mesh.nr_shards(),
                requests_prefix: q.request_queue_name.clone(),
                processes: c.server.role != Role::Api,
                max_waiters: c.server.max_waiters,
                check_durability: wiring.id == 0 && !q.durability_relaxed,
                dlq_retention: q.dlq_retention,
                halt_on_shard_mismatch: Some(wiring.draining.clone()),
            };
            let keys = Keys::new(&q.request_queue_name, &q.dlq_name, wiring.id);
            let backend = RedisBackend::start(settings, keys, minter);
            ready();
            Shard::new(wiring, backend).serve(listener, inbox).await;
        }
    }
}

impl<B: Backend + 'static> Shard<B> {
    fn new(wiring: Wiring, backend: B) -> Rc<Self> {
        let Wiring {
            id,
            config,
            mesh,
            processors,
            keys,
            draining,
            ..
        } = wiring;
        let backend = Rc::new(backend);
        let nr_shards = mesh.nr_shards();
        let metrics = Rc::new(RefCell::new(ShardMetrics::default()));
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_nanos() as u64
            ^ (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let worker = Rc::new(Worker::new(
            backend.clone(),
            metrics.clone(),
            processors.for_shard(),
            &config.worker,
            seed,
        ));
        let api = Api {
            draining: draining.clone(),
            backend: backend.clone(),
            metrics: metrics.clone(),
            mesh,
            shard: id,
            processors,
            default_timeout: config.worker.timeout,
            metrics_enabled: config.monitoring.metrics_enabled,
            queue_name: config.queue.request_queue_name.clone(),
            serves_requests: config.server.role != Role::Worker,
            routes: crate::api::routing::Routes::new(&config.routes),
            max_batch: config.server.max_batch,
            max_wait: config.server.max_wait,
            rate_limits: keys.as_ref().and_then(|k| {
                let rate = k.rate_limit_per_second?;
                Some(RefCell::new(RateLimits::new(rate, nr_shards, k.len())))
            }),
            keys,
        };
        Rc::new(Shard {
            id,
            limits: Limits {
                max_head_bytes: config.server.max_header_bytes,
                max_uri_bytes: config.server.max_uri_bytes,
                max_body_bytes: config.server.max_body_bytes,
            },
            config,
            backend,
            metrics,
            worker,
            api,
            draining,
            shutdown: Shutdown::default(),
            grace_ends: Cell::new(None),
            connections: Cell::new(0),
            connection_closed: Notify::new(),
        })
    }

    async fn serve(
        self: Rc<Self>,
        listener: std::net::TcpListener,
        inbox: flume::Receiver<ShardMsg>,
    ) {
        monoio::spawn(self.clone().serve_inbox(inbox));
        if self.config.server.role != Role::Api {
            // A drain stops taking jobs at once where another instance can take them, and
            // works the queue off where they would be lost.
            let until = if self.backend.drain_works_off() {
                self.shutdown.clone()
            } else {
                self.draining.clone()
            };
            monoio::spawn(self.worker.clone().run(until));
        }
        monoio::spawn(self.clone().expire_states());
        monoio::spawn(self.clone().drain());
        match TcpListener::from_std(listener) {
            Ok(listener) => self.accept(listener).await,
            Err(e) => {
                warn!(shard = self.id, error = %e, "cannot use listener");
                self.draining.trigger();
                self.shutdown.wait().await;
            }
        }
        self.close_connections().await;
    }

    async fn accept(self: &Rc<Self>, listener: TcpListener) {
        loop {
            let accepted = monoio::select! {
                r = listener.accept() => r,
                _ = self.shutdown.wait() => return,
            };
            match accepted {
                Ok((stream, _peer)) if self.connections.get() >= self.config.server.max_connections => {
                    self.metrics
                        .borrow_mut()
                        .rejected(RejectReason::TooManyConnections);
                    monoio::spawn(connection::refuse(stream));
                }
                Ok((stream, _peer)) => {
                    let _ = stream.set_nodelay(true);
                    monoio::spawn(connection::serve(self.clone(), stream));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    warn!(shard = self.id, error = %e, "accept failed");
                    monoio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    /// The drain, once the `Shutdown` message has come: new submits are refused (503) and
    /// `/readyz` says so while the running worker slots finish and, where queued jobs would be
    /// lost with the process, the queue is worked off; all within the grace period. Then what
    /// is left is counted and logged with its ids, and the shard stops.
    async fn drain(self: Rc<Self>) {
        self.draining.wait().await;
        let deadline = Instant::now() + self.config.server.shutdown_grace;
        self.grace_ends.set(Some(deadline));
        info!(
            shard = self.id,
            queued = self.backend.lost_on_exit(),
            workers = self.worker.active(),
            "draining: new submits are refused"
        );
        // The worker stops here where it stops with the drain: what it took is given back first.
        let giving_back = |s: &Self| !s.backend.drain_works_off() && s.worker.taking();
        while self.worker.unsettled() > 0 || self.backend.lost_on_exit() > 0 || giving_back(&self)
        {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                warn!(
                    shard = self.id,
                    workers = self.worker.unsettled(),
                    giving_back = giving_back(&self),
                    queued = self.backend.lost_on_exit(),
                    "grace period over with work left"
                );
                break;
            }
            let slot = self.worker.slot_freed().notified();
            // A retry due later wakes no one: look again now and then.
            monoio::select! {
                _ = slot => {},
                _ = monoio::time::sleep(left.min(DRAIN_POLL)) => {},
            }
        }
        let lost = self.backend.lost_ids();
        if !lost.is_empty() {
            self.metrics.borrow_mut().dropped_on_exit += lost.len() as u64;
            for (i, ids) in lost.chunks(DROPPED_IDS_PER_LINE).enumerate() {
                let ids: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
                warn!(
                    shard = self.id,
                    dropped = lost.len(),
                    part = i + 1,
                    ids = %ids.join(","),
                    "embedded queue not empty at the end of the drain; these accepted requests are dropped"
                );
            }
        }
        self.shutdown.trigger();
    }

    /// After the drain: the listener is closed and idle connections end; wait for those still
    /// answering a request, until the grace period ends.
    async fn close_connections(&self) {
        let deadline = self
            .grace_ends
            .get()
            .unwrap_or_else(|| Instant::now() + self.config.server.shutdown_grace);
        while self.connections.get() > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                warn!(
                    shard = self.id,
                    connections = self.connections.get(),
                    "grace period over; closing connections still answering"
                );
                break;
            }
            let conn = self.connection_closed.notified();
            monoio::select! {
                _ = conn => {},
                _ = monoio::time::sleep(left) => {},
            }
        }
        info!(shard = self.id, "shard stopped");
    }

    async fn serve_inbox(self: Rc<Self>, inbox: flume::Receiver<ShardMsg>) {
        while let Ok(msg) = inbox.recv_async().await {
            match msg {
                ShardMsg::Lookup { id, reply } => {
                    let _ = reply.send(self.backend.held(&id));
                }
                ShardMsg::WaitFinal { id, until, reply } => {
                    let backend = self.backend.clone();
                    monoio::spawn(async move {
                        let wait = crate::backend::wait_final(&*backend, &id, until);
                        // The asking shard drops its end when its client goes away: release
                        // the waiter then, not at `until`.
                        let asker_gone = async {
                            while !reply.is_disconnected() {
                                monoio::time::sleep(ASKER_CHECK).await;
                            }
                        };
                        monoio::select! {
                            found = wait => { let _ = reply.send(found); }
                            _ = asker_gone => {}
                        }
                    });
                }
                ShardMsg::DeadLetters {
                    after,
                    limit,
                    reply,
                } => {
                    let backend = self.backend.clone();
                    monoio::spawn(async move {
                        let _ = reply.send(backend.dead_letters(after, limit).await);
                    });
                }
                ShardMsg::DeadLetter { id, drop, reply } => {
                    let backend = self.backend.clone();
                    monoio::spawn(async move {
                        let done = if drop {
                            backend.drop_dead_letter(&id).await
                        } else {
                            backend.redrive(&id, crate::clock::Timestamp::now()).await
                        };
                        let _ = reply.send(done);
                    });
                }
                ShardMsg::SubmitIdempotent {
                    job,
                    now,
                    key,
                    body,
                    reply,
                } => {
                    let backend = self.backend.clone();
                    monoio::spawn(async move {
                        let done = backend.submit_idempotent(*job, now, &key, body).await;
                        let _ = reply.send(done);
                    });
                }
                ShardMsg::Cancel { id, reply } => {
                    let backend = self.backend.clone();
                    monoio::spawn(async move {
                        let now = crate::clock::Timestamp::now();
                        let _ = reply.send(backend.cancel(&id, now).await);
                    });
                }
                ShardMsg::Scrape { reply } => {
                    let _ = reply.send((self.id, self.metrics_snapshot()));
                }
                ShardMsg::Check { reply } => {
                    // In a task of its own: a slow backend must not hold up the inbox (pings,
                    // lookups) behind it.
                    let backend = self.backend.clone();
                    monoio::spawn(async move {
                        let _ = reply.send(backend.check().await);
                    });
                }
                ShardMsg::Ping { reply } => {
                    let _ = reply.send(self.id);
                }
                ShardMsg::Shutdown => self.draining.trigger(),
            }
        }
    }

    async fn expire_states(self: Rc<Self>) {
        loop {
            monoio::time::sleep(EXPIRY_INTERVAL).await;
            self.backend.expire(Instant::now());
        }
    }

    /// A copy of this shard's metrics with its gauges filled in, for a scrape.
    fn metrics_snapshot(&self) -> ShardMetrics {
        let mut m = self.metrics.borrow().clone();
        self.backend.gauges(&mut m);
        m.workers_active = self.worker.active() as u64;
        m.worker_slots = if self.config.server.role == Role::Api {
            0
        } else {
            self.config.worker.count as u64
        };
        m.proxy = crate::proxy::metrics();
        m.connections = self.connections.get() as u64;
        m
    }
}
