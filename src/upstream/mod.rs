//! The broker as an HTTP client of upstream services (proxy mode's foundation): `request`
//! writes a request and `response` reads one, both sans-IO; `pool` keeps one shard's
//! keep-alive connections to one upstream and runs an exchange under a deadline. Everything
//! here lives on one shard's thread.

pub mod pool;
pub mod request;
pub mod response;

pub use pool::{Exchange, Pool, Tls, UpstreamError};
pub use request::{encode, UpstreamRequest};
pub use response::UpstreamResponse;
