//! The fixed label sets of the metric families: methods, statuses, outcomes, and the reasons
//! of worker errors, dead letters and refusals. Fixed, so every series is known in advance.

use crate::store::Status;

/// Label values for `method`: the known methods, then `OTHER` for anything unparsed.
pub const METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT", "OTHER",
];

/// Statuses the broker sends; anything else is counted under the last slot (`0`).
pub const STATUSES: [u16; 23] = [
    200, 202, 204, 400, 401, 403, 404, 405, 408, 409, 413, 414, 415, 417, 422, 429, 431, 500, 501, 503, 505,
    100, 0,
];

/// Final outcomes of processing, the `status` label of the worker histogram.
pub const OUTCOMES: [Status; 3] = [Status::Completed, Status::Failed, Status::Timeout];

/// `error_type` label values of `openhqm_worker_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerError {
    /// The processor returned an error.
    Processing,
    /// The processor ran past the deadline.
    Timeout,
}

impl WorkerError {
    /// Label values, by index.
    pub const LABELS: [&'static str; 2] = ["processing_error", "timeout"];
}

/// `reason` label values of `openhqm_queue_dlq_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DlqReason {
    /// Retries exhausted.
    MaxRetries,
    /// The processor said retrying cannot help.
    NonRetryable,
}

impl DlqReason {
    /// Label values, by index.
    pub const LABELS: [&'static str; 2] = ["max_retries_exceeded", "non_retryable"];
}

/// `reason` label values of `openhqm_rejected_total`: why a submit was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// The queue is at its depth limit, or too many submits wait for Redis.
    Backpressure,
    /// The queue backend cannot be reached.
    QueueUnavailable,
    /// The shard is shutting down.
    ShuttingDown,
    /// No API key, or a wrong one (401).
    Unauthenticated,
    /// A key without the admin right on an admin endpoint (403).
    Forbidden,
    /// The key is over its rate limit (429).
    RateLimited,
    /// A connection over `server.max_connections` (503 and close).
    TooManyConnections,
}

impl RejectReason {
    /// Label values, by index.
    pub const LABELS: [&'static str; 7] = [
        "backpressure",
        "queue_unavailable",
        "shutting_down",
        "unauthenticated",
        "forbidden",
        "rate_limited",
        "too_many_connections",
    ];
}
