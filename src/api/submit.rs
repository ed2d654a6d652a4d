//! `POST /api/v1/submit`: validate the body, mint an id this shard owns, queue the job, and answer
//! 202 only once the queue accepted it (503 + `Retry-After` otherwise). The payload is kept as the
//! bytes the client sent: it is validated, never re-serialised.

use crate::auth::Owner;
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::Range;
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use tracing::debug;

use super::json::{scan, ScanError};
use super::submit_plain::plain_members;
use crate::backend::{Accepted, Backend, Metadata, NewJob, QueueError, Watch};
use crate::clock::Timestamp;
use crate::error::{Error, ErrorKind, FieldError};
use crate::http::{RequestHead, Response};
use crate::metrics::{RejectReason, ShardMetrics};
use super::routing::Routes;
use crate::worker::Processors;

/// A validated submit body: where its parts are in the body, and the parsed options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    /// The `payload` object's bytes.
    pub payload: Range<usize>,
    /// The `headers` object's bytes, if given.
    pub headers: Option<Range<usize>>,
    /// The options.
    pub metadata: Metadata,
}

#[derive(Deserialize)]
struct Body<'a> {
    #[serde(borrow, default)]
    payload: Option<&'a RawValue>,
    #[serde(borrow, default)]
    headers: Option<&'a RawValue>,
    #[serde(borrow, default)]
    metadata: Option<&'a RawValue>,
}

#[derive(Deserialize, Default)]
struct MetadataIn<'a> {
    #[serde(default)]
    priority: Option<i64>,
    #[serde(default)]
    timeout: Option<f64>,
    #[serde(default)]
    retry_count: Option<i64>,
    #[serde(borrow, default)]
    endpoint: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    method: Option<Cow<'a, str>>,
}

/// Whether a `Content-Type` value is JSON in UTF-8 (`application/json`, optionally with
/// `charset=utf-8`).
pub fn is_json_media_type(value: &[u8]) -> bool {
    // What nearly every client sends, without the general parse.
    if value.eq_ignore_ascii_case(b"application/json") {
        return true;
    }
    let Ok(value) = std::str::from_utf8(value) else {
        return false;
    };
    let mut parts = value.split(';');
    let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    // `application/json`, or a structured-syntax `+json` type (RFC 6839), e.g.
    // `application/vnd.api+json`.
    let json = media == "application/json"
        || media
            .strip_prefix("application/")
            .and_then(|sub| sub.strip_suffix("+json"))
            .is_some_and(|name| !name.is_empty() && !name.contains('/'));
    if !json {
        return false;
    }
    parts.all(|p| match p.split_once('=') {
        Some((k, v)) if k.trim().eq_ignore_ascii_case("charset") => {
            v.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
        }
        Some(_) => true,
        None => p.trim().is_empty(),
    })
}

/// The head-only check for submit: JSON (or no Content-Type), not content-encoded.
pub fn precheck(head: &RequestHead) -> Result<(), Error> {
    if head.content_encoded {
        return Err(Error::new(
            ErrorKind::UnsupportedMediaType,
            "Content-Encoding is not supported",
        ));
    }
    match &head.content_type {
        // No Content-Type is read as JSON, as the Python OpenHQM does.
        None => Ok(()),
        Some(ct) if is_json_media_type(ct) => Ok(()),
        Some(_) => Err(Error::new(
            ErrorKind::UnsupportedMediaType,
            "Content-Type must be application/json (UTF-8)",
        )),
    }
}

/// Validates a submit body (400 for bad JSON, 422 for a wrong shape): the plain shape nearly
/// every client sends in one pass (`submit_plain.rs`), anything else with [`parse_full`].
pub fn parse(body: &[u8], default_timeout: Duration) -> Result<Submission, Error> {
    let Some(m) = plain_members(body) else {
        return parse_full(body, default_timeout);
    };
    // The fast path accepts ASCII only: these are text.
    let text = |r: &Range<usize>| std::str::from_utf8(&body[r.clone()]).unwrap_or("");
    let headers = m.headers.map(|r| (text(&r), r));
    let metadata = m.metadata.as_ref().map(text);
    check_members(
        Vec::new(),
        Some(m.payload),
        headers,
        metadata,
        default_timeout,
    )
}

/// The full validation of a submit body, with the precise error for each way it can be wrong.
pub fn parse_full(body: &[u8], default_timeout: Duration) -> Result<Submission, Error> {
    let text = std::str::from_utf8(body)
        .map_err(|_| Error::new(ErrorKind::MalformedJson, "request body is not valid UTF-8"))?;
    scan(body).map_err(|e| match e {
        ScanError::TooDeep => Error::new(ErrorKind::MalformedJson, "JSON nested too deeply"),
        ScanError::LoneSurrogate => {
            Error::new(ErrorKind::MalformedJson, "JSON has a lone surrogate escape")
        }
        ScanError::NumberOutOfRange => {
            Error::new(ErrorKind::MalformedJson, "JSON number out of range")
        }
    })?;
    let parsed: Body<'_> = serde_json::from_str(text).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => {
            Error::fields(vec![field(&[], &e.to_string(), "type_error")])
        }
        _ => Error::owned(ErrorKind::MalformedJson, format!("malformed JSON: {e}")),
    })?;

    let mut errors = Vec::new();
    let payload = match parsed.payload {
        None => {
            errors.push(field(&["payload"], "field required", "value_error.missing"));
            None
        }
        Some(p) if !p.get().starts_with('{') => {
            errors.push(field(
                &["payload"],
                "value is not a valid dict",
                "type_error.dict",
            ));
            None
        }
        Some(p) => Some(range_in(text, p.get())),
    };
    let headers = parsed.headers.map(|h| (h.get(), range_in(text, h.get())));
    let metadata = parsed.metadata.map(RawValue::get);
    check_members(errors, payload, headers, metadata, default_timeout)
}

/// The rest of a submit body's validation, from its members' JSON text (already valid JSON):
/// `payload` (its range, if it is an object), `headers` (text and range) and `metadata`.
fn check_members(
    mut errors: Vec<FieldError>,
    payload: Option<Range<usize>>,
    headers: Option<(&str, Range<usize>)>,
    metadata: Option<&str>,
    default_timeout: Duration,
) -> Result<Submission, Error> {
    let headers = match headers {
        Some((h, range)) if h != "null" => {
            match serde_json::from_str::<HashMap<Cow<'_, str>, Cow<'_, str>>>(h) {
                Ok(_) => Some(range),
                Err(_) => {
                    errors.push(field(
                        &["headers"],
                        "value is not a valid dict of strings",
                        "type_error.dict",
                    ));
                    None
                }
            }
        }
        _ => None,
    };
    let meta: MetadataIn<'_> = match metadata {
        Some(m) if !m.starts_with('{') && m != "null" => {
            errors.push(field(
                &["metadata"],
                "value is not a valid dict",
                "type_error.dict",
            ));
            MetadataIn::default()
        }
        Some(m) if m != "null" => serde_json::from_str(m).unwrap_or_else(|e| {
            errors.push(field(
                &["metadata"],
                &format!("invalid metadata: {e}"),
                "type_error",
            ));
            MetadataIn::default()
        }),
        _ => MetadataIn::default(),
    };
    let priority = meta.priority.unwrap_or(0);
    if !(0..=9).contains(&priority) {
        errors.push(field(
            &["metadata", "priority"],
            "ensure this value is between 0 and 9",
            "value_error.number",
        ));
    }
    let timeout = match meta.timeout {
        None => default_timeout,
        Some(t) if t > 0.0 && t <= 31_536_000.0 => Duration::from_secs_f64(t),
        Some(_) => {
            errors.push(field(
                &["metadata", "timeout"],
                "ensure this value is greater than 0 (and at most one year)",
                "value_error.number",
            ));
            default_timeout
        }
    };
    let retry_count = meta.retry_count.unwrap_or(0);
    if retry_count < 0 {
        errors.push(field(
            &["metadata", "retry_count"],
            "ensure this value is >= 0",
            "value_error.number",
        ));
    }
    // The upstream method of proxy mode: letters only (it goes on the request line), in upper
    // case as methods are compared.
    let method = meta.method.map(|m| m.to_ascii_uppercase());
    if method
        .as_deref()
        .is_some_and(|m| m.is_empty() || m.len() > 16 || !m.bytes().all(|b| b.is_ascii_uppercase()))
    {
        errors.push(field(
            &["metadata", "method"],
            "not an HTTP method",
            "value_error",
        ));
    }
    match payload {
        Some(payload) if errors.is_empty() => Ok(Submission {
            payload,
            headers,
            metadata: Metadata {
                priority: priority as u8,
                timeout,
                retry_count: retry_count.min(i64::from(u32::MAX)) as u32,
                endpoint: meta.endpoint.map(Cow::into_owned),
                method,
            },
        }),
        _ => Err(Error::fields(errors)),
    }
}

fn field(loc: &[&str], msg: &str, kind: &'static str) -> FieldError {
    let mut path = vec!["body".to_owned()];
    path.extend(loc.iter().map(|s| (*s).to_owned()));
    FieldError {
        loc: path,
        msg: msg.to_owned(),
        kind,
    }
}

/// The range of `inner` (a raw value borrowed from `outer`) within `outer`.
fn range_in(outer: &str, inner: &str) -> Range<usize> {
    let start = inner.as_ptr() as usize - outer.as_ptr() as usize;
    start..start + inner.len()
}

/// What a submit is checked against, and whose it is.
pub struct Rules<'a> {
    /// `worker.timeout`: the deadline of a request that gives none.
    pub default_timeout: Duration,
    /// The processors `metadata.endpoint` may name.
    pub processors: &'a Processors,
    /// The routing rules, tried before `metadata.endpoint`.
    pub routes: &'a Routes,
    /// The API key submitting (stamped into the ids), `None` with API keys off.
    pub owner: Option<Owner>,
}

/// Validates one submit body against `rules` (the routes pick the processor first) and makes
/// the job to queue.
pub(crate) fn prepare(rules: &Rules<'_>, body: &[u8]) -> Result<NewJob, Error> {
    let mut sub = parse(body, rules.default_timeout)?;
    let routed = rules.routes.pick(body).map_err(|_| {
        Error::new(
            ErrorKind::MalformedJson,
            "JSON nested too deeply to be routed",
        )
    })?;
    if let Some(routed) = routed {
        sub.metadata.endpoint = Some(routed.endpoint.to_owned());
        if sub.metadata.method.is_none() {
            sub.metadata.method = routed.method.map(str::to_owned);
        }
    }
    if let Some(name) = &mut sub.metadata.endpoint {
        if !rules.processors.contains(name) {
            // Configured endpoint names are lower case; a client may write `Billing`.
            let lower = name.to_ascii_lowercase();
            if !rules.processors.contains(&lower) {
                return Err(Error::fields(vec![field(
                    &["metadata", "endpoint"],
                    &format!("unknown endpoint \"{name}\""),
                    "value_error",
                )]));
            }
            *name = lower;
        }
    }
    // Copies: a slice would pin the connection's whole read buffer while the job waits.
    Ok(NewJob {
        payload: Bytes::copy_from_slice(&body[sub.payload]),
        headers: sub.headers.map(|r| Bytes::copy_from_slice(&body[r])),
        metadata: sub.metadata,
        owner: rules.owner,
    })
}

/// The 503 for a backend that refused, counted.
pub(crate) fn refused(metrics: &RefCell<ShardMetrics>, e: QueueError) -> Error {
    {
        let mut m = metrics.borrow_mut();
        m.publish_failed += 1;
        m.rejected(match e {
            QueueError::Full(_) | QueueError::Overloaded => RejectReason::Backpressure,
            QueueError::Unavailable => RejectReason::QueueUnavailable,
            QueueError::Closed => RejectReason::ShuttingDown,
        });
    }
    match e {
        QueueError::Full(secs) => {
            Error::new(ErrorKind::QueueUnavailable, "queue is full; retry later")
                .with_retry_after(secs)
        }
        QueueError::Unavailable => Error::new(
            ErrorKind::QueueUnavailable,
            "queue backend unavailable; retry later",
        ),
        QueueError::Overloaded => Error::new(
            ErrorKind::QueueUnavailable,
            "queue backend overloaded; retry later",
        ),
        QueueError::Closed => Error::new(ErrorKind::QueueUnavailable, "shutting down; retry later"),
    }
}

/// `{"correlation_id", "status": "PENDING", "submitted_at"}` of an accepted request.
pub(crate) fn accepted_body(accepted: &Accepted, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"correlation_id\":\"");
    out.extend_from_slice(&accepted.id.to_text());
    out.extend_from_slice(b"\",\"status\":\"PENDING\",\"submitted_at\":\"");
    out.extend_from_slice(&accepted.submitted_at.rfc3339());
    out.extend_from_slice(b"\"}");
}

/// Validates `body` and hands the job to `backend`: the request is queued when this returns
/// `Ok` (the 202 may be sent; 503 + `Retry-After` when it cannot be queued). With `watch`, a
/// waiter for it was registered before it was queued (`None` beyond the waiter bound).
pub async fn accept<'b, B: Backend>(
    backend: &'b B,
    metrics: &RefCell<ShardMetrics>,
    rules: &Rules<'_>,
    body: &[u8],
    now: Timestamp,
    watch: bool,
) -> Result<(Accepted, Option<Watch<'b>>), Error> {
    let job = prepare(rules, body)?;
    let (accepted, watch) = backend
        .submit(job, now, watch)
        .await
        .map_err(|e| refused(metrics, e))?;
    metrics.borrow_mut().published += 1;
    debug!(correlation_id = %accepted.id, "accepted");
    Ok((accepted, watch))
}

/// The 202 of an accepted request, with its `Location`.
pub fn accepted_response(accepted: &Accepted) -> Response {
    let mut body = Vec::with_capacity(112);
    accepted_body(accepted, &mut body);
    let mut resp = Response::json(202, body);
    resp.location = Some(super::route::status_location(&accepted.id));
    resp
}

#[cfg(test)]
#[path = "submit_tests.rs"]
mod tests;
