//! The broker as an HTTP client of upstream services (proxy mode's foundation): `request`
//! writes a request and `response` reads one, both sans-IO; `resolver` keeps a host's
//! addresses fresh off the shard's thread; `pool` keeps one shard's
//! keep-alive connections to one upstream and runs an exchange under a deadline. Everything
//! here lives on one shard's thread.

pub mod pool;
pub mod request;
pub mod resolver;
pub mod response;

pub use pool::{Exchange, Pool, Tls, UpstreamError};
pub use request::{encode, is_header_name, is_header_value, UpstreamRequest};
pub use resolver::{system_lookup, Addresses};
pub use response::UpstreamResponse;
