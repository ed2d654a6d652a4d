//! `GET /api/v1/status/{id}`: `{"correlation_id", "status", "submitted_at", "updated_at"}`.

use crate::http::Response;
use crate::id::CorrelationId;
use crate::store::RequestState;

/// The answer to a status lookup that found `s`.
pub fn respond(id: &CorrelationId, s: &RequestState) -> Response {
    Response::json(200, render(id, s))
}

/// The status body.
pub fn render(id: &CorrelationId, s: &RequestState) -> Vec<u8> {
    let mut b = Vec::with_capacity(160);
    b.extend_from_slice(b"{\"correlation_id\":\"");
    b.extend_from_slice(&id.to_text());
    b.extend_from_slice(b"\",\"status\":\"");
    b.extend_from_slice(s.status.as_str().as_bytes());
    b.extend_from_slice(b"\",\"submitted_at\":\"");
    b.extend_from_slice(&s.submitted_at.rfc3339());
    b.extend_from_slice(b"\",\"updated_at\":\"");
    b.extend_from_slice(&s.updated_at.rfc3339());
    b.extend_from_slice(b"\"}");
    b
}
