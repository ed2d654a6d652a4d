//! Worker slots: each shard runs `worker.count` slots that take jobs from its queue and run a
//! [`Processor`] under the job's deadline. `slots` is the fetch-and-dispatch loop and one slot's
//! life, `builtin` the default processor, `backoff` the retry delays.

pub mod backoff;
pub mod builtin;
pub mod slots;

use bytes::Bytes;

use crate::queue::Job;

pub use builtin::Builtin;

/// What a processor produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The result object as JSON text.
    pub result: Bytes,
    /// A status code to report (200 for the built-in operations).
    pub status_code: u16,
    /// Response headers as a JSON object text, if any.
    pub headers: Option<Bytes>,
}

/// Why processing failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessError {
    /// Shown to the client as the request's `error`.
    pub message: String,
    /// Whether another attempt can succeed (retried with backoff, then dead-lettered).
    pub retryable: bool,
}

/// User logic plugs in here. Runs on a shard's thread; the future need not be `Send`.
#[allow(async_fn_in_trait)]
pub trait Processor {
    /// Processes one job.
    async fn process(&self, job: &Job) -> Result<Output, ProcessError>;

    /// True when `process` always finishes on its first poll (it never waits for I/O or time):
    /// then a job, with a queue that never waits either, runs in the dispatcher without a future
    /// of its own. False unless a processor knows it: one that says true and then waits still
    /// works, but the dispatcher waits with it, one job at a time.
    fn never_waits(&self) -> bool {
        false
    }
}
