//! The effective configuration as TOML, for `openhqm check-config`: every key of the key table,
//! the proxy endpoints and the routes, each value followed by the layer that set it. Secrets
//! (Redis and upstream URL passwords, upstream tokens, passwords and header values) show as
//! `***`; apart from them, the text read back with `--config` gives the same [`Config`].
//! Keys without a value (unset, or computed at start) are commented out, saying what the broker
//! does instead, so the round trip keeps them unset.

use std::fmt::Write as _;
use std::time::Duration;

use super::keys::KEYS;
use super::proxy::{AuthType, EndpointConfig, Secret};
use super::sources::{Source, Sources};
use super::{redact_url, Config, IoDriver, LogFormat, QueueType, Role};

/// What a secret shows as.
const REDACTED: &str = "***";

/// The keys of one `[proxy.endpoints.<name>]`, in the order shown (those `proxy::set_endpoint`
/// accepts; a new one belongs here too).
const ENDPOINT_KEYS: &[&str] = &[
    "url",
    "method",
    "timeout_seconds",
    "headers",
    "auth_type",
    "auth_token",
    "auth_token_file",
    "auth_username",
    "auth_password",
    "auth_password_file",
    "auth_header_name",
    "max_connections",
    "retry_on",
    "ca_file",
];

const HEADER: &str = "\
# openhqm check-config: the effective configuration. Each value is followed by the layer that
# set it (default < file < env < flag). Secrets show as ***. A commented-out key has no value:
# the broker computes it at start (the value shown) or does without, as its comment says.
";

/// What one key holds.
enum Shown {
    /// A value, as TOML.
    Value(String),
    /// No value: the broker computes this one at start (as TOML), the comment says from what.
    Computed(String, &'static str),
    /// No value: what the broker does without one.
    Unset(&'static str),
}

/// The effective configuration `c`, as TOML with each key's source from `sources`.
pub fn effective_toml(c: &Config, sources: &Sources) -> String {
    let mut out = String::from(HEADER);
    for notice in &c.notices {
        let _ = writeln!(out, "# notice: {notice}");
    }
    // Sections in the order of their first key, each written once (TOML forbids a table twice).
    let mut sections: Vec<&str> = Vec::new();
    for k in KEYS {
        let section = section_of(k.name);
        if !sections.contains(&section) {
            sections.push(section);
        }
    }
    for section in sections {
        let _ = writeln!(out, "\n[{section}]");
        for k in KEYS.iter().filter(|k| section_of(k.name) == section) {
            let leaf = &k.name[section.len() + 1..];
            line(&mut out, leaf, shown(c, k.name), sources.of(k.name));
        }
        if section == "proxy" {
            endpoints(&mut out, c, sources);
        }
    }
    routes(&mut out, c, sources.of("routing.routes"));
    out
}

fn section_of(key: &str) -> &str {
    key.split_once('.').map_or(key, |(s, _)| s)
}

fn line(out: &mut String, leaf: &str, shown: Option<Shown>, source: &Source) {
    let _ = match shown {
        Some(Shown::Value(v)) => writeln!(out, "{leaf} = {v}  # {source}"),
        Some(Shown::Computed(v, from)) => writeln!(out, "# {leaf} = {v}  # {source} ({from})"),
        Some(Shown::Unset(means)) => writeln!(out, "# {leaf} = (unset: {means})  # {source}"),
        None => writeln!(out, "# {leaf}: not shown by check-config  # {source}"),
    };
}

/// The value of key `name` of `c`; `None` for a key this file does not know yet (a test
/// checks there is none).
fn shown(c: &Config, name: &str) -> Option<Shown> {
    use Shown::Value;
    let (s, q, w) = (&c.server, &c.queue, &c.worker);
    let (p, a) = (&c.proxy, &c.auth);
    Some(match name {
        "server.host" => Value(string(&s.host)),
        "server.port" => Value(s.port.to_string()),
        "server.shards" => match s.shards {
            Some(n) => Value(n.to_string()),
            None => Shown::Computed(c.nr_shards().to_string(), "number of CPUs"),
        },
        "server.cpus" => optional(s.cpus.as_ref().map(ToString::to_string), "no pinning"),
        "server.max_batch" => Value(s.max_batch.to_string()),
        "server.max_wait_seconds" => Value(seconds(s.max_wait)),
        "server.max_waiters" => Value(s.max_waiters.to_string()),
        "server.max_connections" => Value(s.max_connections.to_string()),
        "server.max_body_bytes" => Value(s.max_body_bytes.to_string()),
        "server.max_header_bytes" => Value(s.max_header_bytes.to_string()),
        "server.max_uri_bytes" => Value(s.max_uri_bytes.to_string()),
        "server.header_read_timeout_seconds" => Value(seconds(s.header_read_timeout)),
        "server.body_read_timeout_seconds" => Value(seconds(s.body_read_timeout)),
        "server.idle_timeout_seconds" => Value(seconds(s.idle_timeout)),
        "server.shutdown_grace_seconds" => Value(seconds(s.shutdown_grace)),
        "server.io_driver" => Value(string(match s.io_driver {
            IoDriver::Auto => "auto",
            IoDriver::Uring => "uring",
            IoDriver::Epoll => "epoll",
        })),
        "server.role" => Value(string(match s.role {
            Role::All => "all",
            Role::Api => "api",
            Role::Worker => "worker",
        })),
        "queue.type" => Value(queue_type(q.kind)),
        "queue.redis_url" => Value(string(&redact_url(&q.redis_url))),
        "queue.request_queue_name" => Value(string(&q.request_queue_name)),
        "queue.response_queue_name" => Value(string(&q.response_queue_name)),
        "queue.dlq_retention_seconds" => Value(seconds(q.dlq_retention)),
        "queue.durability" => Value(string(if q.durability_relaxed {
            "relaxed"
        } else {
            "strict"
        })),
        "queue.dlq_name" => Value(string(&q.dlq_name)),
        "queue.max_depth" => Value(q.max_depth.to_string()),
        "queue.max_bytes" => Value(q.max_bytes.to_string()),
        "queue.redis_password_file" => optional(q.redis_password_file.clone(), "none"),
        "queue.redis_ca_file" => optional(q.redis_ca_file.clone(), "none"),
        "queue.redis_timeout_seconds" => Value(seconds(q.redis_timeout)),
        "queue.redis_max_in_flight" => Value(q.redis_max_in_flight.to_string()),
        "worker.count" => Value(w.count.to_string()),
        "worker.batch_size" => Value(w.batch_size.to_string()),
        "worker.timeout_seconds" => Value(seconds(w.timeout)),
        "worker.max_retries" => Value(w.max_retries.to_string()),
        "worker.retry_delay_base" => Value(seconds(w.retry_delay_base)),
        "worker.retry_delay_max" => Value(seconds(w.retry_delay_max)),
        "cache.type" => match c.cache.kind {
            Some(k) => Value(queue_type(k)),
            None => Shown::Computed(queue_type(q.kind), "follows queue.type"),
        },
        "cache.redis_url" => match &c.cache.redis_url {
            Some(u) => Value(string(&redact_url(u))),
            None => Shown::Computed(string(&redact_url(&q.redis_url)), "queue.redis_url"),
        },
        "cache.ttl_seconds" => Value(seconds(c.cache.ttl)),
        "proxy.enabled" => Value(p.enabled.to_string()),
        "proxy.default_endpoint" => optional(
            p.default_endpoint.as_deref().map(redact_url),
            "the built-ins",
        ),
        "proxy.forward_headers" => Value(array(p.forward_headers.iter().map(|h| string(h)))),
        "proxy.strip_headers" => Value(array(p.strip_headers.iter().map(|h| string(h)))),
        "proxy.max_response_bytes" => Value(p.max_response_bytes.to_string()),
        "proxy.dns_refresh_seconds" => Value(seconds(p.dns_refresh)),
        // Digests, not keys (a key's own text is never configured): shown, so the output
        // loads back with the same keys.
        "auth.api_keys" => Value(array(a.api_keys.iter().map(|d| string(&d.to_string())))),
        "auth.api_keys_file" => optional(a.api_keys_file.clone(), "none"),
        "auth.admin_keys" => Value(array(a.admin_keys.iter().map(|d| string(&d.to_string())))),
        "auth.admin_keys_file" => optional(a.admin_keys_file.clone(), "none"),
        "auth.protect_metrics" => Value(a.protect_metrics.to_string()),
        // `{:?}` of an f64 is a TOML float (`2.5`, `3.0`, `1e20`) that parses back exactly.
        "auth.rate_limit_per_second" => Value(
            a.rate_limit_per_second
                .map_or_else(|| "0".to_owned(), |r| format!("{r:?}")),
        ),
        "monitoring.metrics_enabled" => Value(c.monitoring.metrics_enabled.to_string()),
        "monitoring.log_level" => Value(string(
            &c.monitoring.log_level.as_str().to_ascii_lowercase(),
        )),
        "monitoring.log_format" => Value(string(match c.monitoring.log_format {
            LogFormat::Json => "json",
            LogFormat::Text => "text",
        })),
        _ => return None,
    })
}

fn endpoints(out: &mut String, c: &Config, sources: &Sources) {
    for (name, e) in &c.proxy.endpoints {
        let _ = writeln!(out, "\n[proxy.endpoints.{name}]");
        for field in ENDPOINT_KEYS {
            let source = sources.of(&format!("proxy.endpoints.{name}.{field}"));
            line(out, field, endpoint_shown(e, field), source);
        }
    }
}

fn endpoint_shown(e: &EndpointConfig, field: &str) -> Option<Shown> {
    use Shown::Value;
    let secret = |s: &Option<Secret>| optional(s.as_ref().map(|_| REDACTED.to_owned()), "none");
    Some(match field {
        "url" => optional(e.url.as_deref().map(redact_url), "required in proxy mode"),
        "method" => Value(string(&e.method)),
        "timeout_seconds" => Value(seconds(e.timeout)),
        // Header values may carry credentials: all of them are redacted.
        "headers" => Value(inline_table(
            e.headers.iter().map(|(h, _)| (h.as_str(), REDACTED)),
        )),
        "auth_type" => optional(
            e.auth_type.map(|t| {
                match t {
                    AuthType::Bearer => "bearer",
                    AuthType::Basic => "basic",
                    AuthType::ApiKey => "api_key",
                    AuthType::Custom => "custom",
                }
                .to_owned()
            }),
            "no authentication",
        ),
        "auth_token" => secret(&e.auth_token),
        "auth_token_file" => optional(e.auth_token_file.clone(), "none"),
        "auth_username" => optional(e.auth_username.clone(), "none"),
        "auth_password" => secret(&e.auth_password),
        "auth_password_file" => optional(e.auth_password_file.clone(), "none"),
        "auth_header_name" => optional(e.auth_header_name.clone(), "X-API-Key for api_key"),
        "max_connections" => Value(e.max_connections.to_string()),
        "retry_on" => Value(array(e.retry_on.iter().map(u16::to_string))),
        "ca_file" => optional(e.ca_file.clone(), "the system's roots only"),
        _ => return None,
    })
}

fn routes(out: &mut String, c: &Config, source: &Source) {
    if c.routes.is_empty() {
        let _ = writeln!(out, "\n# [[routing.routes]]: none  # {source}");
    }
    for r in &c.routes {
        let _ = writeln!(out, "\n[[routing.routes]]  # {source}");
        let _ = writeln!(out, "name = {}", string(&r.name));
        let _ = writeln!(out, "match_field = {}", string(&r.match_field));
        if let Some(v) = &r.match_value {
            let _ = writeln!(out, "match_value = {}", string(v));
        }
        if let Some(p) = &r.match_pattern {
            let _ = writeln!(out, "match_pattern = {}", string(p));
        }
        let _ = writeln!(out, "priority = {}", r.priority);
        let _ = writeln!(out, "endpoint = {}", string(&r.endpoint));
        if let Some(m) = &r.method {
            let _ = writeln!(out, "method = {}", string(m));
        }
    }
}

fn optional(value: Option<String>, unset: &'static str) -> Shown {
    match value {
        Some(v) => Shown::Value(string(&v)),
        None => Shown::Unset(unset),
    }
}

fn queue_type(kind: QueueType) -> String {
    string(match kind {
        QueueType::Memory => "memory",
        QueueType::Redis => "redis",
    })
}

/// Whole seconds as an integer, else the exact decimal of the duration (to the nanosecond),
/// which parses back to the same duration.
fn seconds(d: Duration) -> String {
    match d.subsec_nanos() {
        0 => d.as_secs().to_string(),
        nanos => {
            let fraction = format!("{nanos:09}");
            format!("{}.{}", d.as_secs(), fraction.trim_end_matches('0'))
        }
    }
}

/// A TOML basic string: quotes, backslashes and control characters escaped.
fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn array(items: impl Iterator<Item = String>) -> String {
    format!("[{}]", items.collect::<Vec<_>>().join(", "))
}

fn inline_table<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let pairs: Vec<String> = pairs
        .map(|(k, v)| format!("{} = {}", string(k), string(v)))
        .collect();
    if pairs.is_empty() {
        return "{}".to_owned();
    }
    format!("{{ {} }}", pairs.join(", "))
}

#[cfg(test)]
#[path = "render_tests.rs"]
mod tests;
