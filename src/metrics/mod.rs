//! Per-shard metrics in plain integers (no atomics: a shard only touches its own), copied to the
//! scraping shard over the mesh and summed there. Label sets are fixed enums, so series are
//! bounded. `prometheus` writes the text format.

pub mod histogram;
pub mod labels;
pub mod prometheus;

use crate::http::Method;
use crate::store::Status;
pub use histogram::Histogram;
pub use labels::{DlqReason, RejectReason, WorkerError, METHODS, OUTCOMES, STATUSES};

use std::collections::BTreeMap;

/// The API's endpoints, as values of the `endpoint` label (`api::route` maps paths to them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /api/v1/submit`
    Submit,
    /// `POST /api/v1/submit/batch`
    SubmitBatch,
    /// `GET /api/v1/status/{correlation_id}`
    Status,
    /// `GET /api/v1/response/{correlation_id}`
    Response,
    /// `GET /health`
    Health,
    /// `GET /metrics`
    Metrics,
    /// `GET /api/v1/dlq`
    Dlq,
    /// `DELETE /api/v1/dlq/{correlation_id}`
    DlqItem,
    /// `POST /api/v1/dlq/{correlation_id}/redrive`
    DlqRedrive,
    /// `DELETE /api/v1/requests/{correlation_id}`
    Cancel,
    /// `GET /livez`
    Livez,
    /// `GET /readyz`
    Readyz,
    /// `GET /openapi.json`
    OpenApi,
    /// Anything else (404s, malformed requests).
    Other,
}

impl Endpoint {
    /// All endpoints, in label order.
    pub const ALL: [Endpoint; 14] = [
        Endpoint::Submit,
        Endpoint::SubmitBatch,
        Endpoint::Status,
        Endpoint::Response,
        Endpoint::Health,
        Endpoint::Metrics,
        Endpoint::Dlq,
        Endpoint::DlqItem,
        Endpoint::DlqRedrive,
        Endpoint::Cancel,
        Endpoint::Livez,
        Endpoint::Readyz,
        Endpoint::OpenApi,
        Endpoint::Other,
    ];

    /// The route template (the metric label value).
    pub const fn template(self) -> &'static str {
        match self {
            Endpoint::Submit => "/api/v1/submit",
            Endpoint::SubmitBatch => "/api/v1/submit/batch",
            Endpoint::Status => "/api/v1/status/{correlation_id}",
            Endpoint::Response => "/api/v1/response/{correlation_id}",
            Endpoint::Health => "/health",
            Endpoint::Metrics => "/metrics",
            Endpoint::Dlq => "/api/v1/dlq",
            Endpoint::DlqItem => "/api/v1/dlq/{correlation_id}",
            Endpoint::DlqRedrive => "/api/v1/dlq/{correlation_id}/redrive",
            Endpoint::Cancel => "/api/v1/requests/{correlation_id}",
            Endpoint::Livez => "/livez",
            Endpoint::Readyz => "/readyz",
            Endpoint::OpenApi => "/openapi.json",
            Endpoint::Other => "other",
        }
    }

    /// Index into [`Endpoint::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }
}


const N_REQ: usize = Endpoint::ALL.len() * METHODS.len() * STATUSES.len();

/// One shard's metrics. Gauges that the shard can read at scrape time (queue depth, active
/// slots, states held) are filled in then, not tracked on the hot path.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardMetrics {
    /// `openhqm_api_requests_total`, by endpoint × method × status.
    pub requests: Box<[u64; N_REQ]>,
    /// `openhqm_api_request_duration_seconds`, by endpoint.
    pub request_duration: [Histogram; Endpoint::ALL.len()],
    /// `openhqm_api_requests_in_flight`.
    pub in_flight: u64,
    /// Open HTTP connections.
    pub connections: u64,
    /// Clients waiting for a final state (filled at scrape).
    pub waiters: u64,
    /// `openhqm_queue_publish_total{status="success"}`.
    pub published: u64,
    /// `openhqm_shutdown_dropped_total`: accepted requests still queued in process memory when
    /// a drain ended.
    pub dropped_on_exit: u64,
    /// `openhqm_queue_publish_total{status="failure"}`.
    pub publish_failed: u64,
    /// `openhqm_rejected_total`, by reason.
    pub rejected: [u64; RejectReason::LABELS.len()],
    /// `openhqm_queue_wait_seconds`: accepted → first started.
    pub queue_wait: Histogram,
    /// `openhqm_request_duration_seconds`: accepted → final, by final status.
    pub request_total: [Histogram; OUTCOMES.len()],
    /// `openhqm_worker_slots` (filled at scrape).
    pub worker_slots: u64,
    /// `openhqm_backend_up`: 1 while the backend can take work (Redis: connected and its
    /// start-up checks passed), 0 otherwise (filled at scrape).
    pub backend_up: u64,
    /// `openhqm_queue_oldest_age_seconds`, when the backend knows it (filled at scrape).
    pub oldest_age_seconds: Option<f64>,
    /// `openhqm_queue_consume_total`.
    pub consumed: u64,
    /// `openhqm_queue_dlq_total`, by reason.
    pub dead_lettered: [u64; 2],
    /// `openhqm_worker_processing_duration_seconds`, by outcome.
    pub processing_duration: [Histogram; OUTCOMES.len()],
    /// `openhqm_worker_errors_total`, by error type.
    pub worker_errors: [u64; 2],
    /// Retries scheduled.
    pub retries: u64,
    /// `openhqm_worker_active` (filled at scrape).
    pub workers_active: u64,
    /// `openhqm_queue_depth` ready part (filled at scrape).
    pub queue_ready: u64,
    /// `openhqm_queue_depth` delayed part (filled at scrape).
    pub queue_delayed: u64,
    /// `openhqm_queue_pending` (filled at scrape).
    pub queue_pending: u64,
    /// States held in the table (filled at scrape).
    pub states: u64,
    /// Redis command round trips (filled at scrape; empty in embedded mode).
    pub redis_round_trips: Histogram,
    /// Redis connections lost (filled at scrape).
    pub redis_reconnects: u64,
    /// Proxy mode's upstream calls (filled at scrape).
    pub proxy: ProxyMetrics,
}

/// `openhqm_proxy_*`: upstream calls by endpoint (configured names, so the series are bounded)
/// and outcome code (the status, or an error kind).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProxyMetrics {
    /// Per endpoint: calls by code, and call durations.
    pub endpoints: BTreeMap<String, EndpointCalls>,
}

/// One endpoint's upstream calls.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EndpointCalls {
    /// Calls by code.
    pub codes: BTreeMap<String, u64>,
    /// Call durations.
    pub durations: Histogram,
}

impl ProxyMetrics {
    /// Counts one call to `endpoint` that ended with `code` after `secs` (allocating only the
    /// first time a name or code is seen).
    pub fn record(&mut self, endpoint: &str, code: &str, secs: f64) {
        let calls = match self.endpoints.get_mut(endpoint) {
            Some(c) => c,
            None => self.endpoints.entry(endpoint.to_owned()).or_default(),
        };
        match calls.codes.get_mut(code) {
            Some(n) => *n += 1,
            None => {
                calls.codes.insert(code.to_owned(), 1);
            }
        }
        calls.durations.observe(secs);
    }

    fn merge(&mut self, o: &ProxyMetrics) {
        for (endpoint, theirs) in &o.endpoints {
            let mine = self.endpoints.entry(endpoint.clone()).or_default();
            for (code, n) in &theirs.codes {
                *mine.codes.entry(code.clone()).or_default() += n;
            }
            mine.durations.merge(&theirs.durations);
        }
    }
}

impl Default for ShardMetrics {
    fn default() -> Self {
        ShardMetrics {
            requests: Box::new([0; N_REQ]),
            request_duration: Default::default(),
            in_flight: 0,
            connections: 0,
            waiters: 0,
            published: 0,
            dropped_on_exit: 0,
            publish_failed: 0,
            rejected: [0; RejectReason::LABELS.len()],
            queue_wait: Histogram::default(),
            request_total: Default::default(),
            worker_slots: 0,
            backend_up: 0,
            oldest_age_seconds: None,
            consumed: 0,
            dead_lettered: [0; 2],
            processing_duration: Default::default(),
            worker_errors: [0; 2],
            retries: 0,
            workers_active: 0,
            queue_ready: 0,
            queue_delayed: 0,
            queue_pending: 0,
            states: 0,
            redis_round_trips: Histogram::default(),
            redis_reconnects: 0,
            proxy: ProxyMetrics::default(),
        }
    }
}

/// Index of a method label; `None` (unparsed) is `OTHER`.
pub fn method_index(m: Option<Method>) -> usize {
    match m {
        Some(m) => METHODS
            .iter()
            .position(|&s| s == m.as_str())
            .unwrap_or(METHODS.len() - 1),
        None => METHODS.len() - 1,
    }
}

fn status_index(status: u16) -> usize {
    STATUSES
        .iter()
        .position(|&s| s == status)
        .unwrap_or(STATUSES.len() - 1)
}

fn outcome_index(s: Status) -> usize {
    OUTCOMES.iter().position(|&o| o == s).unwrap_or(0)
}

impl ShardMetrics {
    /// Counts one answered request.
    pub fn request(&mut self, endpoint: Endpoint, method: Option<Method>, status: u16, secs: f64) {
        let i = (endpoint.index() * METHODS.len() + method_index(method)) * STATUSES.len()
            + status_index(status);
        self.requests[i] += 1;
        self.request_duration[endpoint.index()].observe(secs);
    }

    /// The count for one (endpoint, method index, status index) cell.
    pub fn requests_at(&self, endpoint: usize, method: usize, status: usize) -> u64 {
        self.requests[(endpoint * METHODS.len() + method) * STATUSES.len() + status]
    }

    /// Counts one finished processing attempt.
    pub fn processed(&mut self, outcome: Status, secs: f64) {
        self.processing_duration[outcome_index(outcome)].observe(secs);
    }

    /// Counts one worker error.
    pub fn worker_error(&mut self, e: WorkerError) {
        self.worker_errors[e as usize] += 1;
    }

    /// A job waited `secs` from its acceptance to its first start.
    pub fn waited(&mut self, secs: f64) {
        self.queue_wait.observe(secs);
    }

    /// A request became final (`outcome`) `secs` after it was accepted.
    pub fn finished(&mut self, outcome: Status, secs: f64) {
        self.request_total[outcome_index(outcome)].observe(secs);
    }

    /// Counts one refused submit.
    pub fn rejected(&mut self, reason: RejectReason) {
        self.rejected[reason as usize] += 1;
    }

    /// Counts one dead-lettered job.
    pub fn dead_letter(&mut self, reason: DlqReason) {
        self.dead_lettered[reason as usize] += 1;
    }

    /// Adds another shard's metrics into these.
    pub fn merge(&mut self, o: &ShardMetrics) {
        for (a, b) in self.requests.iter_mut().zip(o.requests.iter()) {
            *a += b;
        }
        for (a, b) in self.request_duration.iter_mut().zip(&o.request_duration) {
            a.merge(b);
        }
        for (a, b) in self
            .processing_duration
            .iter_mut()
            .zip(&o.processing_duration)
        {
            a.merge(b);
        }
        for i in 0..2 {
            self.dead_lettered[i] += o.dead_lettered[i];
            self.worker_errors[i] += o.worker_errors[i];
        }
        self.in_flight += o.in_flight;
        self.connections += o.connections;
        self.waiters += o.waiters;
        self.published += o.published;
        self.dropped_on_exit += o.dropped_on_exit;
        self.publish_failed += o.publish_failed;
        for (a, b) in self.rejected.iter_mut().zip(o.rejected) {
            *a += b;
        }
        self.queue_wait.merge(&o.queue_wait);
        for (a, b) in self.request_total.iter_mut().zip(&o.request_total) {
            a.merge(b);
        }
        self.worker_slots += o.worker_slots;
        self.backend_up += o.backend_up;
        self.consumed += o.consumed;
        self.retries += o.retries;
        self.workers_active += o.workers_active;
        self.queue_ready += o.queue_ready;
        self.queue_delayed += o.queue_delayed;
        self.queue_pending += o.queue_pending;
        self.states += o.states;
        self.redis_round_trips.merge(&o.redis_round_trips);
        self.redis_reconnects += o.redis_reconnects;
        self.proxy.merge(&o.proxy);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_land_in_their_cell_and_merge() {
        let mut m = ShardMetrics::default();
        m.request(Endpoint::Submit, Some(Method::Post), 202, 0.0002);
        m.request(Endpoint::Submit, Some(Method::Post), 202, 0.0002);
        m.request(Endpoint::Other, None, 999, 0.0);
        let post = method_index(Some(Method::Post));
        assert_eq!(
            m.requests_at(Endpoint::Submit.index(), post, status_index(202)),
            2
        );
        assert_eq!(
            m.requests_at(
                Endpoint::Other.index(),
                METHODS.len() - 1,
                STATUSES.len() - 1
            ),
            1
        );
        let mut total = ShardMetrics::default();
        total.merge(&m);
        total.merge(&m);
        assert_eq!(
            total.requests_at(Endpoint::Submit.index(), post, status_index(202)),
            4
        );
        assert_eq!(total.request_duration[Endpoint::Submit.index()].count(), 4);
    }
}
