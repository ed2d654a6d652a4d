//! Worker slots: each shard runs `worker.count` slots that take jobs from its backend and run
//! the [`Processor`] the job names under the job's deadline. `slots` is the fetch-and-dispatch
//! loop and one job's run, `verdict` what a run's result means for the request (retry,
//! dead-letter, timeout), `registry` the processors by name, `builtin` the default processor.

pub mod builtin;
mod in_place;
mod registry;
mod slots;
mod verdict;

use bytes::Bytes;

pub use crate::backend::Job;
pub use builtin::Builtin;
pub use registry::{Processors, UnknownProcessor, BUILTIN};
pub use slots::Worker;

/// What a processor produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The result as JSON text (any JSON value).
    pub result: Bytes,
    /// A status code to report (200 for the built-in operations).
    pub status_code: u16,
    /// Response headers as a JSON object text, if any.
    pub headers: Option<Bytes>,
}

impl Output {
    /// A `200` result from JSON text. The text must be valid JSON: it is served as it is.
    pub fn json(result: impl Into<Bytes>) -> Self {
        Output {
            result: result.into(),
            status_code: 200,
            headers: None,
        }
    }
}

/// Why processing failed. Built with [`ProcessError::retryable`] or [`ProcessError::permanent`],
/// then [`ProcessError::after`] and [`ProcessError::with_status_code`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessError {
    /// Shown to the client as the request's `error`.
    pub message: String,
    /// Whether another attempt can succeed (retried with backoff, then dead-lettered).
    pub retryable: bool,
    /// The least delay before the retry (an upstream's `Retry-After`), if any.
    pub retry_after: Option<std::time::Duration>,
    /// The status code the failure answered with (an upstream's), kept as the request's
    /// `status_code` when this failure is its last.
    pub status_code: Option<u16>,
}

impl ProcessError {
    /// A failure another attempt may not have (retried with backoff, then dead-lettered).
    pub fn retryable(message: impl Into<String>) -> Self {
        ProcessError {
            message: message.into(),
            retryable: true,
            retry_after: None,
            status_code: None,
        }
    }

    /// The retry waits at least `delay` (the backoff's delay when that is longer).
    pub fn after(self, delay: std::time::Duration) -> Self {
        ProcessError {
            retry_after: Some(delay),
            ..self
        }
    }

    /// The failure answered with `status` (an upstream's status code).
    pub fn with_status_code(self, status: u16) -> Self {
        ProcessError {
            status_code: Some(status),
            ..self
        }
    }

    /// A failure no retry can mend: the request is dead-lettered at once.
    pub fn permanent(message: impl Into<String>) -> Self {
        ProcessError {
            message: message.into(),
            retryable: false,
            retry_after: None,
            status_code: None,
        }
    }
}

/// User logic plugs in here: register an implementation by name on [`crate::Broker`], and jobs
/// whose `metadata.endpoint` names it (or every job, when it is the default) run it.
///
/// `process` runs on a shard's own thread and its future need not be `Send`: it may hold `Rc`s
/// and use the shard's runtime (monoio) for I/O and timers. A processor that waits holds its
/// worker slot, never the shard. One value can serve every shard (`Broker::processor`, which
/// then needs `Send + Sync`), or each shard can build its own (`Broker::processor_per_shard`).
#[allow(async_fn_in_trait)]
pub trait Processor: 'static {
    /// Processes one job.
    async fn process(&self, job: &Job) -> Result<Output, ProcessError>;
}
