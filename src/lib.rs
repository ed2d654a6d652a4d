//! # OpenHQM
//!
//! A broker for asynchronous HTTP request processing: clients `POST /api/v1/submit` and get `202`
//! with a correlation id at once; worker slots process the request; clients read its status and
//! result by id.
//!
//! ## Architecture: thread-per-core, shared-nothing
//! The process runs one **shard** per core ([`shard`]): a pinned thread with its own event loop,
//! its own `SO_REUSEPORT` listener, HTTP connections ([`http`], sans-IO), backend ([`backend`]:
//! queue and request state),
//! worker slots ([`worker`]), request-state table ([`store`]) and metrics ([`metrics`]). A shard
//! mints correlation ids that hash to itself ([`id::shard_for`]), so processing and
//! lookups of a request stay on one core; a lookup that lands on another shard is one explicit
//! message over the mesh ([`mesh`]). No locks or shared maps on the request path.
//!
//! ## Module map
//! - [`auth`]: API keys: digests, the owner tag in ids, per-key rate limits.
//! - [`config`]: the configuration tree, its layers (defaults, file, env, flags), `--help` and
//!   `check-config`'s rendering (each value with the layer that set it).
//! - [`error`]: the one error type; the only place an HTTP status is chosen.
//! - [`http`]: HTTP/1.1 parsing, body decoding, connection sequencing, routing, encoding.
//! - [`api`]: the endpoints of API.md.
//! - [`shard`]: ids, mesh, event loop, connection I/O, the shard's owned state.
//! - [`backend`]: a request's life per mode: the `Backend` trait, embedded and Redis Streams.
//! - [`resp`]: the Redis protocol, sans-IO, and one pipelined connection per shard.
//! - [`store`]: request states and their lifecycle.
//! - [`worker`]: worker slots, the `Processor` trait, the built-in operations.
//! - [`metrics`]: per-shard counters and Prometheus text.
//! - [`server`]: starting and stopping the shards.
//! - [`clock`], [`log`]: timestamps; logging set-up.
//! - [`notify`]: sd_notify, for systemd's `Type=notify` (`READY=1`, `STOPPING=1`).
//!
//! `docs/ARCHITECTURE.md` has the longer tour and the glossary.

#![warn(missing_docs)]
// With `internals` the inner modules are public for the project's own tests, benches, fuzz
// targets and load generator; without it they are crate-private, so the dead-code lint sees them.
#![cfg_attr(feature = "internals", warn(unreachable_pub))]

pub use backend::{Job, Metadata};
pub use broker::{Broker, StartError};
pub use clock::Timestamp;
pub use config::Config;
pub use id::CorrelationId;
pub use server::Running;
pub use worker::{Output, ProcessError, Processor, UnknownProcessor, BUILTIN};

/// Declares inner modules: `pub` (hidden from the docs) with the `internals` feature, else
/// `pub(crate)`.
macro_rules! internal {
    ($($name:ident),* $(,)?) => {
        $(
            #[cfg(feature = "internals")]
            #[doc(hidden)]
            pub mod $name;
            #[cfg(not(feature = "internals"))]
            pub(crate) mod $name;
        )*
    };
}

internal!(
    api,
    backend,
    backoff,
    clock,
    descriptors,
    error,
    http,
    id,
    mesh,
    metrics,
    plain_json,
    proxy,
    resp,
    server,
    shard,
    store,
    sync,
    tls,
    upstream,
    worker,
);
pub mod auth;
mod broker;
pub mod config;
pub mod log;
pub mod notify;
#[cfg(test)]
mod testing;
