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
//! - [`config`]: the configuration tree, its layers (defaults, file, env, flags) and `--help`.
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
//!
//! `docs/ARCHITECTURE.md` has the longer tour and the glossary.

#![warn(missing_docs, unreachable_pub)]

pub use backend::Job;
pub use broker::{Broker, StartError};
pub use config::Config;
pub use server::Running;
pub use worker::{Output, ProcessError, Processor};

pub mod api;
pub mod backend;
pub mod backoff;
mod broker;
pub mod clock;
pub mod config;
pub mod error;
pub mod http;
pub mod id;
pub mod log;
pub mod mesh;
pub mod metrics;
pub mod resp;
pub mod server;
pub mod shard;
pub mod store;
pub mod sync;
#[cfg(test)]
mod testing;
pub mod worker;
