//! The one configuration tree. Defaults < TOML file (`--config`) < `OPENHQM_*` environment <
//! command line; every layer goes through [`Config::set`] with the key's dotted name, so each key
//! is parsed and reported the same way whichever layer sets it. `keys` is the table of keys
//! (names, defaults, help) with `values` parsing them, `layers` reads the file, the environment
//! and the command line.

pub mod auth;
pub mod cpus;
pub mod keys;
pub mod layers;
pub mod proxy;
pub mod render;
pub mod routing;
pub mod sources;
mod values;

use std::fmt;
use std::time::Duration;

pub use cpus::CpuList;
pub use layers::{load, load_with_sources, Loaded};
pub use sources::{Source, Sources};

/// A configuration problem, naming the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Which queue backend to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueType {
    /// Embedded, in process memory, not durable.
    Memory,
    /// Redis Streams.
    Redis,
}

/// Which I/O driver the shards' event loops use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoDriver {
    /// io_uring where the kernel allows it, epoll otherwise.
    Auto,
    /// io_uring only (start-up fails where it is unavailable).
    Uring,
    /// epoll only.
    Epoll,
}

/// What a broker instance does (API and worker nodes scale separately on one Redis).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Accepts and answers requests, and processes them.
    All,
    /// Accepts and answers requests; runs no worker slots.
    Api,
    /// Processes requests; serves only the probes and metrics over HTTP.
    Worker,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable text.
    Text,
}

/// `server.*`: the HTTP listener and the shards.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Listen address.
    pub host: String,
    /// Listen port (0 picks a free one).
    pub port: u16,
    /// Number of shards; `None` means one per available CPU.
    pub shards: Option<usize>,
    /// CPUs to pin shards to (shard i on the i-th listed CPU, wrapping).
    pub cpus: Option<CpuList>,
    /// Largest accepted request body.
    pub max_body_bytes: u64,
    /// Most requests in one batch submit.
    pub max_batch: usize,
    /// Longest `wait=N` a client may ask for (submit-and-wait, long-poll).
    pub max_wait: Duration,
    /// Most waiting clients per shard; beyond it a wait is answered at once.
    pub max_waiters: usize,
    /// Largest accepted request head (request line + header fields).
    pub max_header_bytes: usize,
    /// Longest accepted request target.
    pub max_uri_bytes: usize,
    /// Time allowed to receive a request head once it has started.
    pub header_read_timeout: Duration,
    /// Time allowed to receive a request body.
    pub body_read_timeout: Duration,
    /// Time a keep-alive connection may sit idle.
    pub idle_timeout: Duration,
    /// Time allowed on shutdown for in-flight work to finish.
    pub shutdown_grace: Duration,
    /// Event-loop I/O driver.
    pub io_driver: IoDriver,
    /// `server.role`
    pub role: Role,
    /// Most open connections per shard; beyond, 503 and close.
    pub max_connections: usize,
}

/// `queue.*`: the queue backend.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueConfig {
    /// Backend.
    pub kind: QueueType,
    /// `redis://[user:pass@]host:port[/db]`; contains a secret, never log it whole.
    pub redis_url: String,
    /// Prefix of the work streams.
    pub request_queue_name: String,
    /// Prefix of the response streams.
    pub response_queue_name: String,
    /// Prefix of the dead-letter streams.
    pub dlq_name: String,
    /// Embedded backend: most jobs waiting per shard before submits get 503.
    pub max_depth: usize,
    /// Embedded backend: bytes the waiting jobs may hold, all shards together.
    pub max_bytes: usize,
    /// `queue.redis_password_file`: a file holding the Redis password (read at start).
    pub redis_password_file: Option<String>,
    /// `queue.redis_ca_file`: CA certificates (PEM) trusted for `rediss://` besides the system's.
    pub redis_ca_file: Option<String>,
    /// The password read from `redis_password_file` at start; it replaces the URL's. Not a key.
    pub redis_password: Option<proxy::Secret>,
    /// Redis backend: deadline of one command (a submit past it answers 503).
    pub redis_timeout: Duration,
    /// Redis backend: submits waiting for Redis per shard before more answer 503 at once.
    pub redis_max_in_flight: usize,
    /// How long a dead letter is kept.
    pub dlq_retention: Duration,
    /// Redis backend: `strict` warns at start when Redis does not fsync every write
    /// (`appendfsync always`); `relaxed` accepts that a Redis crash can lose the last second.
    pub durability_relaxed: bool,
}

/// `worker.*`: worker slots and retries.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerConfig {
    /// Worker slots per shard.
    pub count: usize,
    /// Most jobs fetched per read.
    pub batch_size: usize,
    /// Default processing deadline.
    pub timeout: Duration,
    /// Retries before the dead-letter queue.
    pub max_retries: u32,
    /// First retry delay.
    pub retry_delay_base: Duration,
    /// Longest retry delay.
    pub retry_delay_max: Duration,
}

/// `cache.*`: where request state lives and for how long.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    /// Store for request state; `None` follows the queue.
    pub kind: Option<QueueType>,
    /// Redis URL for state; `None` uses the queue's.
    pub redis_url: Option<String>,
    /// How long a final state stays readable.
    pub ttl: Duration,
}

/// `monitoring.*`.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitoringConfig {
    /// Serve `/metrics`.
    pub metrics_enabled: bool,
    /// `error`, `warn`, `info`, `debug` or `trace`.
    pub log_level: tracing::Level,
    /// Log format.
    pub log_format: LogFormat,
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `server.*`
    pub server: ServerConfig,
    /// `queue.*`
    pub queue: QueueConfig,
    /// `worker.*`
    pub worker: WorkerConfig,
    /// `cache.*`
    pub cache: CacheConfig,
    /// `monitoring.*`
    pub monitoring: MonitoringConfig,
    /// `proxy.*`
    pub proxy: proxy::ProxyConfig,
    /// `routing.routes`
    pub routes: Vec<routing::RouteConfig>,
    /// `auth.*`
    pub auth: auth::AuthConfig,
    /// What loading decided or ignored that the operator should hear about at start (logged as
    /// warnings once logging is up): Python-only keys ignored, `queue.type` inferred.
    pub notices: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        let mut c = Config {
            server: ServerConfig {
                host: String::new(),
                port: 0,
                shards: None,
                cpus: None,
                max_body_bytes: 0,
                max_batch: 0,
                max_wait: Duration::ZERO,
                max_waiters: 0,
                max_header_bytes: 0,
                max_uri_bytes: 0,
                header_read_timeout: Duration::ZERO,
                body_read_timeout: Duration::ZERO,
                idle_timeout: Duration::ZERO,
                shutdown_grace: Duration::ZERO,
                io_driver: IoDriver::Auto,
                role: Role::All,
                max_connections: 0,
            },
            queue: QueueConfig {
                kind: QueueType::Memory,
                redis_url: String::new(),
                request_queue_name: String::new(),
                response_queue_name: String::new(),
                dlq_name: String::new(),
                max_depth: 0,
                max_bytes: 0,
                redis_password_file: None,
                redis_ca_file: None,
                redis_password: None,
                redis_timeout: Duration::ZERO,
                redis_max_in_flight: 0,
                durability_relaxed: false,
                dlq_retention: Duration::ZERO,
            },
            worker: WorkerConfig {
                count: 0,
                batch_size: 0,
                timeout: Duration::ZERO,
                max_retries: 0,
                retry_delay_base: Duration::ZERO,
                retry_delay_max: Duration::ZERO,
            },
            cache: CacheConfig {
                kind: None,
                redis_url: None,
                ttl: Duration::ZERO,
            },
            proxy: proxy::ProxyConfig::default(),
            routes: Vec::new(),
            auth: auth::AuthConfig::default(),
            notices: Vec::new(),
            monitoring: MonitoringConfig {
                metrics_enabled: true,
                log_level: tracing::Level::INFO,
                log_format: LogFormat::Json,
            },
        };
        // The defaults live in one place, the key table, and go through the same parser.
        for key in keys::KEYS {
            if let Some(default) = key.default {
                c.set(key.name, default).expect("key table defaults parse");
            }
        }
        c
    }
}

impl Config {
    /// Sets one key from its text form (file, environment and command line all come here).
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        keys::set(self, key, value)
    }

    /// Number of shards to run.
    pub fn nr_shards(&self) -> usize {
        self.server.shards.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
    }

    /// Checks the rules that span keys. Called after all layers are applied.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |m: &str| Err(ConfigError(m.to_owned()));
        if self.worker.retry_delay_max < self.worker.retry_delay_base {
            return err("worker.retry_delay_max must be >= worker.retry_delay_base");
        }
        if self.cache.kind.is_some_and(|k| k != self.queue.kind) {
            return err("cache.type must be the same as queue.type (state lives with the queue)");
        }
        if self
            .cache
            .redis_url
            .as_ref()
            .is_some_and(|u| *u != self.queue.redis_url)
        {
            return err(
                "cache.redis_url must be the same as queue.redis_url (one Redis holds both)",
            );
        }
        if let Some(cpus) = &self.server.cpus {
            if cpus.is_empty() {
                return err("server.cpus: empty CPU list");
            }
        }
        proxy::validate(&self.proxy)?;
        if self.server.role != Role::All && self.queue.kind != QueueType::Redis {
            return err(
                "server.role: api and worker nodes share one Redis; they need queue.type = redis",
            );
        }
        if self.server.role != Role::All && self.server.shards.is_none() {
            // Shard s writes and reads only stream s: an api node with more shards than the
            // worker nodes would queue work no worker ever reads.
            return err(
                "server.shards: set it on api and worker nodes, the same on every instance of one \
                 Redis (the default, the number of CPUs, differs between machines)",
            );
        }
        if self.queue.kind == QueueType::Redis
            && crate::backend::redis::lease_held_for(self.queue.redis_timeout).is_none()
        {
            return Err(ConfigError(format!(
                "queue.redis_timeout_seconds must be below {} s with Redis: a worker's 30 s lease \
                 on its entry must be renewable (every 5 s) within it",
                crate::backend::redis::MAX_REDIS_TIMEOUT.as_secs()
            )));
        }
        if self.cache.ttl < self.worker.timeout {
            return err("cache.ttl_seconds must be >= worker.timeout_seconds");
        }
        Ok(())
    }
}

/// `redis://user:secret@host` with the password replaced, for logs and errors. A userinfo
/// without `:` is replaced whole: Redis reads `redis://secret@host` as a password alone.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => format!("{scheme}://***@{host}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_api_table() {
        let c = Config::default();
        assert_eq!(c.server.host, "0.0.0.0");
        assert_eq!(c.server.port, 8000);
        assert_eq!(c.server.shards, None);
        assert_eq!(c.queue.kind, QueueType::Memory);
        assert_eq!(c.queue.redis_url, "redis://localhost:6379");
        assert_eq!(c.queue.request_queue_name, "openhqm-requests");
        assert_eq!(c.queue.response_queue_name, "openhqm-responses");
        assert_eq!(c.queue.dlq_name, "openhqm-dlq");
        assert_eq!(c.worker.count, 64);
        assert_eq!(c.worker.batch_size, 10);
        assert_eq!(c.worker.timeout, Duration::from_secs(300));
        assert_eq!(c.worker.max_retries, 3);
        assert_eq!(c.worker.retry_delay_base, Duration::from_secs(1));
        assert_eq!(c.worker.retry_delay_max, Duration::from_secs(60));
        assert_eq!(c.cache.ttl, Duration::from_secs(3600));
        assert_eq!(c.server.max_body_bytes, 1 << 20);
        assert_eq!(c.queue.redis_timeout, Duration::from_secs(2));
        assert!(c.monitoring.metrics_enabled);
        assert_eq!(c.monitoring.log_format, LogFormat::Json);
        c.validate().unwrap();
    }

    #[test]
    fn cross_key_rules() {
        let mut c = Config::default();
        c.set("worker.retry_delay_max", "0.5").unwrap();
        assert!(c
            .validate()
            .unwrap_err()
            .0
            .contains("worker.retry_delay_max"));
        let mut c = Config::default();
        c.set("queue.type", "redis").unwrap();
        c.validate().unwrap();
        c.set("cache.type", "memory").unwrap();
        assert!(c.validate().unwrap_err().0.contains("cache.type"));
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("redis://u:pw@h:6379/1"),
            "redis://u:***@h:6379/1"
        );
        assert_eq!(redact_url("redis://:pw@h:6379"), "redis://:***@h:6379");
        assert_eq!(redact_url("redis://pw@h:6379"), "redis://***@h:6379");
        assert_eq!(redact_url("redis://h:6379"), "redis://h:6379");
    }
}
