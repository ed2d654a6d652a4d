//! `GET /api/v1/response/{id}`: the full response shape, absent values as `null`; 200 once the
//! request is final, 202 while it is not.

use bytes::Bytes;

use super::json::{put_key, put_num, put_str};
use crate::http::Response;
use crate::id::CorrelationId;
use crate::store::RequestState;

/// The answer to a response lookup that found `s`: 200 once final, 202 before.
pub fn respond(id: &CorrelationId, s: &RequestState) -> Response {
    let status = if s.status.is_final() { 200 } else { 202 };
    Response::json(status, render(id, s))
}

/// The response body.
pub fn render(id: &CorrelationId, s: &RequestState) -> Vec<u8> {
    let o = s.outcome.as_ref();
    let mut b = Vec::with_capacity(256 + o.and_then(|o| o.result.as_ref()).map_or(0, Bytes::len));
    b.extend_from_slice(b"{\"correlation_id\":\"");
    b.extend_from_slice(&id.to_text());
    b.extend_from_slice(b"\",\"status\":\"");
    b.extend_from_slice(s.status.as_str().as_bytes());
    b.extend_from_slice(b"\",");
    put_key(&mut b, "result");
    put_raw(&mut b, o.and_then(|o| o.result.as_deref()), b"null");
    b.push(b',');
    put_key(&mut b, "headers");
    put_raw(
        &mut b,
        o.and_then(|o| o.headers.as_deref()),
        if o.is_some() { b"{}" } else { b"null" },
    );
    b.push(b',');
    put_key(&mut b, "status_code");
    match o.and_then(|o| o.status_code) {
        Some(code) => put_num(&mut b, u64::from(code)),
        None => b.extend_from_slice(b"null"),
    }
    b.push(b',');
    put_key(&mut b, "error");
    match o.and_then(|o| o.error.as_deref()) {
        Some(e) => put_str(&mut b, e),
        None => b.extend_from_slice(b"null"),
    }
    b.push(b',');
    put_key(&mut b, "processing_time_ms");
    match o {
        Some(o) => put_num(&mut b, o.processing_time_ms),
        None => b.extend_from_slice(b"null"),
    }
    b.push(b',');
    put_key(&mut b, "completed_at");
    match o {
        Some(o) => {
            b.push(b'"');
            b.extend_from_slice(&o.completed_at.rfc3339());
            b.push(b'"');
        }
        None => b.extend_from_slice(b"null"),
    }
    b.push(b'}');
    b
}

fn put_raw(b: &mut Vec<u8>, raw: Option<&[u8]>, absent: &[u8]) {
    b.extend_from_slice(raw.unwrap_or(absent));
}
