//! The public entry point for a Rust program that embeds the broker with its own logic:
//! a [`Broker`] is a configuration plus processors by name; [`Broker::start`] runs its shards.
//!
//! ```no_run
//! use openhqm::{Broker, Config, Job, Output, ProcessError, Processor};
//!
//! struct Length;
//!
//! impl Processor for Length {
//!     async fn process(&self, job: &Job) -> Result<Output, ProcessError> {
//!         Ok(Output::json(job.payload.len().to_string()))
//!     }
//! }
//!
//! let mut config = Config::default();
//! config.set("server.port", "8000").unwrap();
//! let running = Broker::new(config)
//!     .processor("length", Length)
//!     .start()
//!     .unwrap();
//! // Jobs submitted with `"metadata": {"endpoint": "length"}` run `Length`.
//! running.shutdown();
//! running.wait().unwrap();
//! ```

use std::fmt;
use std::io;
use std::sync::Arc;

use crate::auth::ApiKeys;
use crate::config::{Config, ConfigError};
use crate::server::{self, Running};
use crate::worker::{Processor, Processors, UnknownProcessor};

/// A broker to start: its configuration and the processors its worker slots run. The built-in
/// operations are registered as [`crate::worker::BUILTIN`] and are the default processor.
pub struct Broker {
    config: Config,
    processors: Processors,
    default: Option<String>,
}

/// Why a broker did not start.
#[derive(Debug)]
pub enum StartError {
    /// The configuration breaks a rule (the message names the key).
    Config(ConfigError),
    /// The default processor named is not registered.
    UnknownProcessor(UnknownProcessor),
    /// Binding the listener or starting a shard failed.
    Io(io::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Config(e) => write!(f, "configuration error: {e}"),
            StartError::UnknownProcessor(e) => write!(f, "default processor: {e}"),
            StartError::Io(e) => write!(f, "cannot start: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

impl Broker {
    /// A broker with `config` and the built-in processor.
    pub fn new(config: Config) -> Self {
        Broker {
            config,
            processors: Processors::default(),
            default: None,
        }
    }

    /// Registers `processor` as `name`, one value for every shard: jobs whose
    /// `metadata.endpoint` is `name` run it, and a submit naming an unregistered processor is
    /// refused (422).
    pub fn processor(mut self, name: &str, processor: impl Processor + Send + Sync) -> Self {
        self.processors.register(name, processor);
        self
    }

    /// Registers the processors `make` builds as `name`: each shard calls it once, on its own
    /// thread, so the processor may keep per-shard state (a connection pool, a cache) that is
    /// not `Send`.
    pub fn processor_per_shard<P, F>(mut self, name: &str, make: F) -> Self
    where
        P: Processor,
        F: Fn() -> P + Send + Sync + 'static,
    {
        self.processors.register_per_shard(name, make);
        self
    }

    /// Runs jobs that name no processor with the one registered as `name` (checked at start).
    pub fn default_processor(mut self, name: &str) -> Self {
        self.default = Some(name.to_owned());
        self
    }

    /// Validates the configuration, binds the listener and starts every shard; returns once
    /// all are serving.
    pub fn start(mut self) -> Result<Running, StartError> {
        let keys = self.prepare()?;
        server::start(self.config, self.processors, keys).map_err(StartError::Io)
    }

    /// Makes every check [`Broker::start`] makes before it binds the listener, and starts
    /// nothing: the configuration's rules, proxy endpoints (host names resolved, secret and CA
    /// files read), routes naming a registered processor, the default processor, API key files.
    /// `openhqm check-config` runs it.
    pub fn check(mut self) -> Result<(), StartError> {
        self.prepare().map(drop)
    }

    /// What [`Broker::start`] does before the listener: the checks, the proxy endpoints
    /// registered as processors, the API keys loaded.
    fn prepare(&mut self) -> Result<Option<Arc<ApiKeys>>, StartError> {
        self.config.validate().map_err(StartError::Config)?;
        if self.config.proxy.enabled {
            crate::proxy::register(&self.config.proxy, &mut self.processors)
                .map_err(StartError::Config)?;
        }
        for (i, r) in self.config.routes.iter().enumerate() {
            // As at submit: configured endpoint names are lower case, a route may write `Billing`.
            let lower = r.endpoint.to_ascii_lowercase();
            if !self.processors.contains(&r.endpoint) && !self.processors.contains(&lower) {
                return Err(StartError::Config(ConfigError(format!(
                    "routing.routes[{i}].endpoint: no endpoint or processor is named {:?}",
                    r.endpoint
                ))));
            }
        }
        if let Some(name) = &self.default {
            self.processors
                .set_default(name)
                .map_err(StartError::UnknownProcessor)?;
        }
        let keys = ApiKeys::load(&self.config.auth, |p| std::fs::read_to_string(p))
            .map_err(StartError::Config)?
            .map(Arc::new);
        if let Some(path) = &self.config.queue.redis_password_file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                StartError::Config(ConfigError(format!(
                    "queue.redis_password_file: cannot read {path}: {e}"
                )))
            })?;
            // One trailing newline (an editor's, or `echo`'s) is not part of the password.
            let password = text
                .strip_suffix('\n')
                .map(|t| t.strip_suffix('\r').unwrap_or(t))
                .unwrap_or(&text);
            if password.is_empty() {
                return Err(StartError::Config(ConfigError(format!(
                    "queue.redis_password_file: {path} is empty"
                ))));
            }
            self.config.queue.redis_password =
                Some(crate::config::proxy::Secret(password.to_owned()));
        }
        if self.config.queue.kind == crate::config::QueueType::Redis
            && self.config.queue.redis_url.starts_with("rediss://")
        {
            // The CA file is read by every shard's connections; a bad one stops the start.
            crate::tls::client_config(self.config.queue.redis_ca_file.as_deref()).map_err(|e| {
                StartError::Config(ConfigError(format!("queue.redis_ca_file: {e}")))
            })?;
        }
        Ok(keys)
    }
}
