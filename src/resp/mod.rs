//! RESP, the Redis protocol, spoken directly (no client crate). `frame` decodes replies and
//! `encode` writes commands (`cmd` is a command as a value), both sans-IO and bounded; `client` is one pipelined connection per
//! shard with reconnects and deadlines; `script` sends Lua scripts by digest; `subscriber` is a
//! connection in Pub/Sub mode; `url` parses
//! `redis://` URLs without ever printing the password. docs/redis.md says why RESP is done by
//! hand.

pub mod client;
pub mod cmd;
pub mod encode;
pub mod frame;
pub mod script;
pub mod stream;
pub mod subscriber;
pub mod url;

pub use client::{Client, RedisError};
pub use cmd::Cmd;
pub use frame::Frame;
pub use script::Script;
pub use url::RedisTarget;
