//! The table of configuration keys: dotted name, default, help. `--help`, the environment names
//! and the defaults all come from it, and [`set`] is the one parser for every key. A new key is
//! also shown by `check-config` (`render.rs`, `shown`: a test fails for a key it does not know).

use super::values::{
    invalid, io_driver, log_format, log_level, nonempty, queue_type, redis_url, stream_name,
};
// The parsers other key groups (proxy, auth) share.
pub(super) use super::values::{boolean, int, secs};
use super::{Config, ConfigError, CpuList, Role};

/// One configuration key.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// Dotted name, `section.key`.
    pub name: &'static str,
    /// Default in text form; `None` when the default is computed (shards) or unset.
    pub default: Option<&'static str>,
    /// One line of help.
    pub help: &'static str,
}

const fn key(name: &'static str, default: Option<&'static str>, help: &'static str) -> Key {
    Key {
        name,
        default,
        help,
    }
}

/// Every key, in the order `--help` shows them.
pub const KEYS: &[Key] = &[
    key("server.host", Some("0.0.0.0"), "listen address"),
    key(
        "server.port",
        Some("8000"),
        "listen port (0 picks a free port)",
    ),
    key(
        "server.shards",
        None,
        "shards, one thread each [default: number of CPUs]",
    ),
    key(
        "server.cpus",
        None,
        "CPU list to pin shards to, e.g. 0-3,8 [default: no pinning]",
    ),
    key(
        "server.max_batch",
        Some("1000"),
        "most requests in one POST /api/v1/submit/batch",
    ),
    key(
        "server.max_wait_seconds",
        Some("30"),
        "longest wait=N of a submit-and-wait or long-poll",
    ),
    key(
        "server.max_waiters",
        Some("10000"),
        "most clients waiting per shard; beyond it a wait is answered at once",
    ),
    key(
        "server.max_connections",
        Some("10000"),
        "open connections per shard; beyond, 503 and close before reading a request",
    ),
    key(
        "server.max_body_bytes",
        Some("1048576"),
        "largest request body (413 above)",
    ),
    key(
        "server.max_header_bytes",
        Some("16384"),
        "largest request head (431 above)",
    ),
    key(
        "server.max_uri_bytes",
        Some("8192"),
        "longest request target (414 above)",
    ),
    key(
        "server.header_read_timeout_seconds",
        Some("10"),
        "time to receive a request head",
    ),
    key(
        "server.body_read_timeout_seconds",
        Some("30"),
        "time to receive a request body",
    ),
    key(
        "server.idle_timeout_seconds",
        Some("60"),
        "keep-alive idle time before closing",
    ),
    key(
        "server.shutdown_grace_seconds",
        Some("30"),
        "time for in-flight work on SIGTERM/SIGINT",
    ),
    key(
        "server.io_driver",
        Some("auto"),
        "event-loop driver: auto (io_uring, else epoll), uring or epoll",
    ),
    key(
        "server.role",
        Some("all"),
        "all, api (accept and answer, no worker slots) or worker (process only)",
    ),
    key(
        "queue.type",
        Some("memory"),
        "memory (embedded, not durable) or redis",
    ),
    key(
        "queue.redis_url",
        Some("redis://localhost:6379"),
        "redis://[user:pass@]host:port[/db], rediss://… (TLS) or unix:///path[?db=N]",
    ),
    key(
        "queue.redis_ca_file",
        None,
        "rediss://: CA certificates (PEM) trusted besides the system's",
    ),
    key(
        "queue.redis_password_file",
        None,
        "file holding the Redis password (read at start; replaces one in queue.redis_url)",
    ),
    key(
        "queue.request_queue_name",
        Some("openhqm-requests"),
        "work stream prefix",
    ),
    key(
        "queue.response_queue_name",
        Some("openhqm-responses"),
        "response stream prefix",
    ),
    key(
        "queue.dlq_retention_seconds",
        Some("604800"),
        "how long a dead letter is kept (7 days)",
    ),
    key(
        "queue.durability",
        Some("strict"),
        "Redis: strict warns at start unless Redis fsyncs every write (appendfsync always); relaxed accepts losing the last second on a Redis crash",
    ),
    key(
        "queue.dlq_name",
        Some("openhqm-dlq"),
        "dead-letter stream prefix",
    ),
    key(
        "queue.max_depth",
        Some("1000000"),
        "embedded queue: jobs waiting per shard before 503",
    ),
    key(
        "queue.max_bytes",
        Some("268435456"),
        "embedded queue: bytes the waiting jobs may hold (all shards, split evenly) before 503",
    ),
    key(
        "queue.redis_timeout_seconds",
        Some("2"),
        "redis: deadline of one command (503 past it)",
    ),
    key(
        "queue.redis_max_in_flight",
        Some("1024"),
        "redis: submits waiting for Redis per shard before more get 503 at once",
    ),
    key("worker.count", Some("64"), "worker slots per shard"),
    key(
        "worker.batch_size",
        Some("10"),
        "most jobs fetched per read",
    ),
    key(
        "worker.timeout_seconds",
        Some("300"),
        "default processing deadline",
    ),
    key(
        "worker.max_retries",
        Some("3"),
        "retries before the dead-letter queue",
    ),
    key(
        "worker.retry_delay_base",
        Some("1.0"),
        "first retry delay, seconds (with jitter)",
    ),
    key(
        "worker.retry_delay_max",
        Some("60.0"),
        "longest retry delay, seconds",
    ),
    key(
        "cache.type",
        None,
        "where request state lives [default: follows queue.type]",
    ),
    key(
        "cache.redis_url",
        None,
        "Redis URL for state [default: queue.redis_url]",
    ),
    key(
        "cache.ttl_seconds",
        Some("3600"),
        "how long a final state stays readable",
    ),
    key(
        "proxy.enabled",
        Some("false"),
        "proxy mode: forward jobs to upstream endpoints",
    ),
    key(
        "proxy.default_endpoint",
        None,
        "endpoint (name or http:// URL) of jobs that name none [default: the built-ins]",
    ),
    key(
        "proxy.forward_headers",
        Some("Content-Type,Accept,User-Agent"),
        "request headers forwarded upstream (* = all)",
    ),
    key(
        "proxy.strip_headers",
        Some(""),
        "request headers never forwarded",
    ),
    key(
        "proxy.max_response_bytes",
        Some("10485760"),
        "largest upstream response body (FAILED above)",
    ),
    key(
        "proxy.dns_refresh_seconds",
        Some("30"),
        "how often an endpoint's host name is looked up again (off the shard's thread)",
    ),
    key(
        "auth.api_keys",
        Some(""),
        "API keys as sha256:<hex> digests (`openhqm hash-key`), comma-separated; set, every /api/v1 call needs one",
    ),
    key(
        "auth.api_keys_file",
        None,
        "file of more API key digests, one per line (# comments)",
    ),
    key(
        "auth.admin_keys",
        Some(""),
        "digests of keys that may also use the dead-letter admin",
    ),
    key(
        "auth.admin_keys_file",
        None,
        "file of more admin key digests, one per line",
    ),
    key(
        "auth.protect_metrics",
        Some("false"),
        "with API keys, /metrics needs a key too",
    ),
    key(
        "auth.rate_limit_per_second",
        Some("0"),
        "requests per second per key, 429 beyond (0 = no limit; split evenly between shards)",
    ),
    key("monitoring.metrics_enabled", Some("true"), "serve /metrics"),
    key(
        "monitoring.log_level",
        Some("info"),
        "error, warn, info, debug or trace",
    ),
    key("monitoring.log_format", Some("json"), "json or text"),
];

/// The environment variable for a dotted key: `server.port` → `OPENHQM_SERVER__PORT`.
pub fn env_name(key: &str) -> String {
    format!("OPENHQM_{}", key.replace('.', "__").to_ascii_uppercase())
}

/// The dotted key for an `OPENHQM_*` variable name, if it has the `SECTION__KEY` shape (more
/// `__` for deeper keys: `PROXY__ENDPOINTS__BILLING__URL`).
pub fn key_of_env(var: &str) -> Option<String> {
    let rest = var.strip_prefix("OPENHQM_")?;
    let parts: Vec<&str> = rest.split("__").collect();
    if parts.len() < 2 || parts.iter().any(|p| p.is_empty()) {
        return None;
    }
    Some(parts.join(".").to_ascii_lowercase())
}

/// Whether `key` is one the broker knows: in the table, or an endpoint key of proxy mode.
pub fn is_known(key: &str) -> bool {
    KEYS.iter().any(|k| k.name == key)
        || key.starts_with("proxy.endpoints.")
        || key == "routing.routes"
}

/// Sets `name` on `c` from `value`.
pub fn set(c: &mut Config, name: &str, value: &str) -> Result<(), ConfigError> {
    let v = value.trim();
    match name {
        "server.host" => c.server.host = nonempty(name, v)?,
        "server.port" => c.server.port = int(name, v, 0, u64::from(u16::MAX))? as u16,
        "server.shards" => c.server.shards = Some(int(name, v, 1, 1024)? as usize),
        "server.cpus" => c.server.cpus = Some(CpuList::parse(v)?),
        "server.max_body_bytes" => c.server.max_body_bytes = int(name, v, 1, 1 << 40)?,
        "server.max_connections" => {
            c.server.max_connections = int(name, v, 1, 10_000_000)? as usize
        }
        "server.max_batch" => c.server.max_batch = int(name, v, 1, 100_000)? as usize,
        "server.max_wait_seconds" => c.server.max_wait = secs(name, v)?,
        "server.max_waiters" => c.server.max_waiters = int(name, v, 0, 10_000_000)? as usize,
        "server.max_header_bytes" => {
            c.server.max_header_bytes = int(name, v, 256, 1 << 20)? as usize
        }
        "server.max_uri_bytes" => c.server.max_uri_bytes = int(name, v, 64, 1 << 20)? as usize,
        "server.header_read_timeout_seconds" => c.server.header_read_timeout = secs(name, v)?,
        "server.body_read_timeout_seconds" => c.server.body_read_timeout = secs(name, v)?,
        "server.idle_timeout_seconds" => c.server.idle_timeout = secs(name, v)?,
        "server.shutdown_grace_seconds" => c.server.shutdown_grace = secs(name, v)?,
        "server.io_driver" => c.server.io_driver = io_driver(name, v)?,
        "server.role" => {
            c.server.role = match v.to_ascii_lowercase().as_str() {
                "all" => Role::All,
                "api" => Role::Api,
                "worker" => Role::Worker,
                _ => return Err(invalid(name, v, "all, api or worker")),
            }
        }
        "queue.type" => c.queue.kind = queue_type(name, v)?,
        "queue.redis_url" => c.queue.redis_url = redis_url(name, v)?,
        "queue.request_queue_name" => c.queue.request_queue_name = stream_name(name, v)?,
        "queue.response_queue_name" => c.queue.response_queue_name = stream_name(name, v)?,
        "queue.dlq_name" => c.queue.dlq_name = stream_name(name, v)?,
        "queue.max_depth" => c.queue.max_depth = int(name, v, 1, 1 << 40)? as usize,
        "queue.max_bytes" => c.queue.max_bytes = int(name, v, 4096, 1 << 50)? as usize,
        "queue.redis_password_file" => {
            c.queue.redis_password_file = (!v.is_empty()).then(|| v.to_owned())
        }
        "queue.redis_ca_file" => c.queue.redis_ca_file = (!v.is_empty()).then(|| v.to_owned()),
        "queue.redis_timeout_seconds" => c.queue.redis_timeout = secs(name, v)?,
        "queue.dlq_retention_seconds" => c.queue.dlq_retention = secs(name, v)?,
        "queue.durability" => {
            c.queue.durability_relaxed = match v.to_ascii_lowercase().as_str() {
                "strict" => false,
                "relaxed" => true,
                _ => return Err(invalid(name, v, "strict or relaxed")),
            }
        }
        "queue.redis_max_in_flight" => {
            c.queue.redis_max_in_flight = int(name, v, 1, 1 << 20)? as usize
        }
        "worker.count" => c.worker.count = int(name, v, 1, 1 << 20)? as usize,
        "worker.batch_size" => c.worker.batch_size = int(name, v, 1, 10_000)? as usize,
        "worker.timeout_seconds" => c.worker.timeout = secs(name, v)?,
        "worker.max_retries" => c.worker.max_retries = int(name, v, 0, 1000)? as u32,
        "worker.retry_delay_base" => c.worker.retry_delay_base = secs(name, v)?,
        "worker.retry_delay_max" => c.worker.retry_delay_max = secs(name, v)?,
        "cache.type" => c.cache.kind = Some(queue_type(name, v)?),
        "cache.redis_url" => c.cache.redis_url = Some(redis_url(name, v)?),
        "cache.ttl_seconds" => c.cache.ttl = secs(name, v)?,
        "monitoring.metrics_enabled" => c.monitoring.metrics_enabled = boolean(name, v)?,
        "monitoring.log_level" => c.monitoring.log_level = log_level(name, v)?,
        "monitoring.log_format" => c.monitoring.log_format = log_format(name, v)?,
        _ if name.starts_with("proxy.") => super::proxy::set(&mut c.proxy, name, v)?,
        _ if name.starts_with("routing.") => super::routing::set(&mut c.routes, name, v)?,
        _ if name.starts_with("auth.") => super::auth::set(&mut c.auth, name, v)?,
        _ => return Err(ConfigError(format!("unknown configuration key {name:?}"))),
    }
    Ok(())
}

#[cfg(test)]
#[path = "keys_tests.rs"]
mod tests;
