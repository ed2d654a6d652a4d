//! Proxy mode: each configured upstream endpoint becomes a processor (`proxy.endpoints.<name>`,
//! registered per shard, so every shard keeps its own keep-alive pool) that forwards a job's
//! payload and turns the upstream's answer into the job's outcome. `endpoint` builds an endpoint
//! from its configuration at start, `processor` does the forwarding.

mod endpoint;
mod processor;

use std::cell::RefCell;

use crate::config::proxy::{EndpointConfig, ProxyConfig};
use crate::config::ConfigError;
use crate::metrics::ProxyMetrics;
use crate::worker::Processors;
use endpoint::Endpoint;
use processor::HttpProcessor;

thread_local! {
    /// This shard's proxy metrics: the processors of one shard record here, on its thread,
    /// and the shard copies them out at scrape. Nothing crosses threads.
    static METRICS: RefCell<ProxyMetrics> = RefCell::default();
}

/// A copy of the calling shard's proxy metrics.
pub(crate) fn metrics() -> ProxyMetrics {
    METRICS.with(|m| m.borrow().clone())
}

fn record(endpoint: &str, code: &str, secs: f64) {
    METRICS.with(|m| m.borrow_mut().record(endpoint, code, secs));
}

/// The name a URL given as `proxy.default_endpoint` is registered under.
pub const DEFAULT_URL_ENDPOINT: &str = "default";

/// Registers a processor per configured endpoint, and makes `default_endpoint` the default.
/// Resolves host names and reads secret files now, before any shard runs; errors name the key.
pub(crate) fn register(proxy: &ProxyConfig, processors: &mut Processors) -> Result<(), ConfigError> {
    let mut endpoints = Vec::new();
    for (name, e) in &proxy.endpoints {
        endpoints.push(Endpoint::build(name, e, proxy)?);
    }
    let default = match &proxy.default_endpoint {
        Some(d) if proxy.endpoints.contains_key(d) => Some(d.clone()),
        Some(url) => {
            if proxy.endpoints.contains_key(DEFAULT_URL_ENDPOINT) {
                return Err(ConfigError(format!(
                    "proxy.default_endpoint: a URL is registered as {DEFAULT_URL_ENDPOINT:?}, \
                     which an endpoint already uses"
                )));
            }
            let e = EndpointConfig {
                url: Some(url.clone()),
                ..EndpointConfig::default()
            };
            let ep = Endpoint::build(DEFAULT_URL_ENDPOINT, &e, proxy)
                .map_err(|e| ConfigError(e.0.replace("proxy.endpoints.default.url", "proxy.default_endpoint")))?;
            endpoints.push(ep);
            Some(DEFAULT_URL_ENDPOINT.to_owned())
        }
        None => None,
    };
    for ep in endpoints {
        let name = ep.name.clone();
        processors.register_per_shard(&name, move || HttpProcessor::new(ep.clone()));
    }
    if let Some(d) = default {
        processors
            .set_default(&d)
            .map_err(|e| ConfigError(format!("proxy.default_endpoint: {e}")))?;
    }
    Ok(())
}
