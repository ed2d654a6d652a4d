//! Logging set-up: `tracing` to stdout through a non-blocking writer (a shard never waits on the
//! terminal), JSON by default. Events about a request carry its `correlation_id` field.

use tracing_appender::non_blocking::WorkerGuard;

use crate::config::{LogFormat, MonitoringConfig};

/// Installs the global subscriber. Keep the guard alive until exit: dropping it flushes.
pub fn init(m: &MonitoringConfig) -> WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking(std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_max_level(m.log_level)
        .with_target(false)
        .with_thread_names(true);
    match m.log_format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.with_ansi(false).init(),
    }
    guard
}
