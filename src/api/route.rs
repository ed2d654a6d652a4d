//! Routing: a method and path to one of the API's endpoints, or to the 404/405 it deserves, and
//! the `Location` of an accepted request. The endpoints are [`Endpoint`], the bounded label set
//! of the request metrics (route templates, never raw paths).

use bytes::Bytes;

use crate::http::encode::HeaderText;
use crate::http::Method;
use crate::id::CorrelationId;
pub use crate::metrics::Endpoint;

/// The endpoint a path belongs to, whatever the method.
pub fn endpoint_of(path: &[u8]) -> Endpoint {
    match path {
        b"/api/v1/submit" => Endpoint::Submit,
        b"/api/v1/submit/batch" => Endpoint::SubmitBatch,
        b"/health" => Endpoint::Health,
        b"/metrics" => Endpoint::Metrics,
        b"/livez" => Endpoint::Livez,
        b"/readyz" => Endpoint::Readyz,
        b"/openapi.json" => Endpoint::OpenApi,
        p if p.starts_with(STATUS_PREFIX) => Endpoint::Status,
        p if p.starts_with(RESPONSE_PREFIX) => Endpoint::Response,
        b"/api/v1/dlq" => Endpoint::Dlq,
        p if p.starts_with(REQUESTS_PREFIX) => Endpoint::Cancel,
        p if p.starts_with(DLQ_PREFIX) => match dlq_item(p) {
            (_, true) => Endpoint::DlqRedrive,
            (_, false) => Endpoint::DlqItem,
        },
        _ => Endpoint::Other,
    }
}

/// The id segment of a `/api/v1/dlq/...` path, and whether it ends in `/redrive`.
fn dlq_item(path: &[u8]) -> (&[u8], bool) {
    let rest = &path[DLQ_PREFIX.len()..];
    match rest.strip_suffix(b"/redrive") {
        Some(id) => (id, true),
        None => (rest, false),
    }
}

/// The methods an endpoint answers, for `Allow`.
pub const fn allow(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Submit | Endpoint::SubmitBatch | Endpoint::DlqRedrive => "POST, OPTIONS",
        Endpoint::DlqItem | Endpoint::Cancel => "DELETE, OPTIONS",
        Endpoint::Other => "",
        _ => "GET, HEAD, OPTIONS",
    }
}

/// `Location` of an accepted request: its status path.
pub fn status_location(id: &CorrelationId) -> HeaderText {
    HeaderText::concat(&[STATUS_PREFIX, &id.to_text()])
}

const STATUS_PREFIX: &[u8] = b"/api/v1/status/";
const RESPONSE_PREFIX: &[u8] = b"/api/v1/response/";
const DLQ_PREFIX: &[u8] = b"/api/v1/dlq/";
const REQUESTS_PREFIX: &[u8] = b"/api/v1/requests/";

/// A routed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Queue a request.
    Submit,
    /// Queue several requests.
    SubmitBatch,
    /// Status of the id (the raw path segment, not yet validated).
    Status(Bytes),
    /// Response of the id (raw segment).
    Response(Bytes),
    /// Health check.
    Health,
    /// Prometheus metrics.
    Metrics,
    /// Liveness probe.
    Livez,
    /// Readiness probe.
    Readyz,
    /// The OpenAPI document.
    OpenApi,
    /// List dead letters.
    DlqList,
    /// Redrive the dead letter of the id (raw segment).
    DlqRedrive(Bytes),
    /// Drop the dead letter of the id (raw segment).
    DlqDrop(Bytes),
    /// Cancel the request of the id (raw segment).
    Cancel(Bytes),
    /// `OPTIONS` on a known endpoint: 204 with `Allow`.
    Options(Endpoint),
}

/// Why a request has no route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoRoute {
    /// Unknown path: 404.
    NotFound,
    /// Known path, wrong method: 405 with this `Allow`.
    MethodNotAllowed(&'static str),
}

/// Routes a request.
pub fn route(method: Method, path: &Bytes) -> Result<Route, NoRoute> {
    let endpoint = endpoint_of(path);
    if endpoint == Endpoint::Other {
        return Err(NoRoute::NotFound);
    }
    let read = matches!(method, Method::Get | Method::Head);
    match (endpoint, method) {
        (_, Method::Options) => Ok(Route::Options(endpoint)),
        (Endpoint::Submit, Method::Post) => Ok(Route::Submit),
        (Endpoint::SubmitBatch, Method::Post) => Ok(Route::SubmitBatch),
        (Endpoint::Status, _) if read => Ok(Route::Status(path.slice(STATUS_PREFIX.len()..))),
        (Endpoint::Response, _) if read => Ok(Route::Response(path.slice(RESPONSE_PREFIX.len()..))),
        (Endpoint::Health, _) if read => Ok(Route::Health),
        (Endpoint::Metrics, _) if read => Ok(Route::Metrics),
        (Endpoint::Livez, _) if read => Ok(Route::Livez),
        (Endpoint::Readyz, _) if read => Ok(Route::Readyz),
        (Endpoint::OpenApi, _) if read => Ok(Route::OpenApi),
        (Endpoint::Dlq, _) if read => Ok(Route::DlqList),
        (Endpoint::DlqRedrive, Method::Post) => {
            let id_len = dlq_item(path).0.len();
            Ok(Route::DlqRedrive(
                path.slice(DLQ_PREFIX.len()..DLQ_PREFIX.len() + id_len),
            ))
        }
        (Endpoint::DlqItem, Method::Delete) => Ok(Route::DlqDrop(path.slice(DLQ_PREFIX.len()..))),
        (Endpoint::Cancel, Method::Delete) => {
            Ok(Route::Cancel(path.slice(REQUESTS_PREFIX.len()..)))
        }
        _ => Err(NoRoute::MethodNotAllowed(allow(endpoint))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Method::*;

    #[test]
    fn routing_table() {
        let id = "550e8400-e29b-41d4-a716-446655440000";
        let b = |s: &str| Bytes::copy_from_slice(s.as_bytes());
        let cases: Vec<(Method, String, Result<Route, NoRoute>)> = vec![
            (Post, "/api/v1/submit".into(), Ok(Route::Submit)),
            (
                Get,
                format!("/api/v1/status/{id}"),
                Ok(Route::Status(b(id))),
            ),
            (
                Head,
                format!("/api/v1/status/{id}"),
                Ok(Route::Status(b(id))),
            ),
            (
                Get,
                format!("/api/v1/response/{id}"),
                Ok(Route::Response(b(id))),
            ),
            (
                Get,
                "/api/v1/status/..%2F..".into(),
                Ok(Route::Status(b("..%2F.."))),
            ),
            (Get, "/health".into(), Ok(Route::Health)),
            (Get, "/livez".into(), Ok(Route::Livez)),
            (Head, "/readyz".into(), Ok(Route::Readyz)),
            (Head, "/metrics".into(), Ok(Route::Metrics)),
            (
                Options,
                "/api/v1/submit".into(),
                Ok(Route::Options(Endpoint::Submit)),
            ),
            (
                Get,
                "/api/v1/submit".into(),
                Err(NoRoute::MethodNotAllowed("POST, OPTIONS")),
            ),
            (
                Put,
                "/health".into(),
                Err(NoRoute::MethodNotAllowed("GET, HEAD, OPTIONS")),
            ),
            (
                Trace,
                "/health".into(),
                Err(NoRoute::MethodNotAllowed("GET, HEAD, OPTIONS")),
            ),
            (
                Post,
                format!("/api/v1/status/{id}"),
                Err(NoRoute::MethodNotAllowed("GET, HEAD, OPTIONS")),
            ),
            (Get, "/".into(), Err(NoRoute::NotFound)),
            (Get, "/health/".into(), Err(NoRoute::NotFound)),
            (Get, "/api/v1/statusx".into(), Err(NoRoute::NotFound)),
            (Get, "/api/v1/dlq".into(), Ok(Route::DlqList)),
            (
                Delete,
                format!("/api/v1/requests/{id}"),
                Ok(Route::Cancel(b(id))),
            ),
            (
                Get,
                format!("/api/v1/requests/{id}"),
                Err(NoRoute::MethodNotAllowed("DELETE, OPTIONS")),
            ),
            (
                Post,
                format!("/api/v1/dlq/{id}/redrive"),
                Ok(Route::DlqRedrive(b(id))),
            ),
            (Delete, format!("/api/v1/dlq/{id}"), Ok(Route::DlqDrop(b(id)))),
            (
                Get,
                format!("/api/v1/dlq/{id}"),
                Err(NoRoute::MethodNotAllowed("DELETE, OPTIONS")),
            ),
            (
                Delete,
                format!("/api/v1/dlq/{id}/redrive"),
                Err(NoRoute::MethodNotAllowed("POST, OPTIONS")),
            ),
            (
                Post,
                "/api/v1/dlq".into(),
                Err(NoRoute::MethodNotAllowed("GET, HEAD, OPTIONS")),
            ),
            (Post, "/api/v1/submit/".into(), Err(NoRoute::NotFound)),
        ];
        for (m, path, want) in cases {
            assert_eq!(route(m, &b(&path)), want, "{m:?} {path}");
        }
    }

    #[test]
    fn endpoint_indices_match_all() {
        for (i, e) in Endpoint::ALL.iter().enumerate() {
            assert_eq!(e.index(), i);
        }
    }
}
