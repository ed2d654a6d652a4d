//! The parsers of configuration values: each names the key in its error, and none echoes a
//! value that may hold a secret.

use std::time::Duration;

use super::{ConfigError, IoDriver, LogFormat, QueueType};

pub(super) fn invalid(name: &str, v: &str, want: &str) -> ConfigError {
    ConfigError(format!("{name}: invalid value {v:?}: expected {want}"))
}

pub(super) fn nonempty(name: &str, v: &str) -> Result<String, ConfigError> {
    if v.is_empty() {
        return Err(invalid(name, v, "a non-empty string"));
    }
    Ok(v.to_owned())
}

pub(super) fn int(name: &str, v: &str, min: u64, max: u64) -> Result<u64, ConfigError> {
    match v.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(invalid(name, v, &format!("an integer from {min} to {max}"))),
    }
}

pub(super) fn secs(name: &str, v: &str) -> Result<Duration, ConfigError> {
    match v.parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s <= 31_536_000.0 => Ok(Duration::from_secs_f64(s)),
        _ => Err(invalid(name, v, "seconds, > 0 and at most one year")),
    }
}

pub(super) fn boolean(name: &str, v: &str) -> Result<bool, ConfigError> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(invalid(name, v, "true or false")),
    }
}

pub(super) fn queue_type(name: &str, v: &str) -> Result<QueueType, ConfigError> {
    match v.to_ascii_lowercase().as_str() {
        "memory" => Ok(QueueType::Memory),
        "redis" => Ok(QueueType::Redis),
        _ => Err(invalid(name, v, "memory or redis")),
    }
}

pub(super) fn io_driver(name: &str, v: &str) -> Result<IoDriver, ConfigError> {
    match v.to_ascii_lowercase().as_str() {
        "auto" => Ok(IoDriver::Auto),
        "uring" | "io_uring" => Ok(IoDriver::Uring),
        "epoll" => Ok(IoDriver::Epoll),
        _ => Err(invalid(name, v, "auto, uring or epoll")),
    }
}

pub(super) fn log_level(name: &str, v: &str) -> Result<tracing::Level, ConfigError> {
    v.to_ascii_lowercase()
        .parse()
        .map_err(|_| invalid(name, v, "error, warn, info, debug or trace"))
}

pub(super) fn log_format(name: &str, v: &str) -> Result<LogFormat, ConfigError> {
    match v.to_ascii_lowercase().as_str() {
        "json" => Ok(LogFormat::Json),
        "text" => Ok(LogFormat::Text),
        _ => Err(invalid(name, v, "json or text")),
    }
}

/// Stream names become Redis keys: keep them to a safe alphabet.
pub(super) fn stream_name(name: &str, v: &str) -> Result<String, ConfigError> {
    let ok = !v.is_empty()
        && v.len() <= 128
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    if !ok {
        return Err(invalid(name, v, "1-128 characters of [A-Za-z0-9-_.:]"));
    }
    Ok(v.to_owned())
}

/// `redis://[user:pass@]host:port[/db]`, checked by the connection's own parser. The value is
/// never echoed: it may hold a password.
pub(super) fn redis_url(name: &str, v: &str) -> Result<String, ConfigError> {
    crate::resp::RedisTarget::parse(v).map_err(|e| ConfigError(format!("{name}: {e}")))?;
    Ok(v.to_owned())
}
