//! `POST /api/v1/submit/batch`: `{"requests": [<submit body>, ...]}`, 1 to `server.max_batch`
//! items. Each item is validated on its own (as a submit is); the valid ones are queued in one
//! backend call, all or none. 200 with `{"results": [...]}` in request order: each an accepted
//! request's `{"correlation_id","status","submitted_at"}`, or `{"error": {"status", "detail"}}`.
//! A backend that cannot take them: 503 + `Retry-After` for the whole batch.

use std::cell::RefCell;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::submit::{accepted_body, prepare, refused, Rules};
use super::{error_body, json::put_key};
use crate::backend::Backend;
use crate::clock::Timestamp;
use crate::error::{Error, ErrorKind, FieldError};
use crate::http::Response;
use crate::metrics::ShardMetrics;

#[derive(Deserialize)]
struct Batch<'a> {
    #[serde(borrow)]
    requests: Vec<&'a RawValue>,
}

/// Handles one batch submit.
pub(crate) async fn handle<B: Backend>(
    backend: &B,
    metrics: &RefCell<ShardMetrics>,
    rules: &Rules<'_>,
    max_batch: usize,
    body: &[u8],
    now: Timestamp,
) -> Result<Response, Error> {
    let text = std::str::from_utf8(body)
        .map_err(|_| Error::new(ErrorKind::MalformedJson, "request body is not valid UTF-8"))?;
    let not_a_batch = || {
        Error::fields(vec![FieldError {
            loc: vec!["body".into(), "requests".into()],
            msg: "a list of submit bodies is required".into(),
            kind: "type_error.list",
        }])
    };
    if !text.trim_start().starts_with('{') {
        // serde would also read `[[...]]` as the struct: only an object is a batch.
        return Err(
            if serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() {
                not_a_batch()
            } else {
                Error::new(ErrorKind::MalformedJson, "malformed JSON")
            },
        );
    }
    let batch: Batch<'_> = serde_json::from_str(text).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => not_a_batch(),
        _ => Error::owned(ErrorKind::MalformedJson, format!("malformed JSON: {e}")),
    })?;
    let n = batch.requests.len();
    if n == 0 || n > max_batch {
        return Err(Error::fields(vec![FieldError {
            loc: vec!["body".into(), "requests".into()],
            msg: format!("ensure the list has 1 to {max_batch} items"),
            kind: "value_error.list",
        }]));
    }
    let prepared: Vec<Result<_, Error>> = batch
        .requests
        .iter()
        .map(|item| prepare(rules, item.get().as_bytes()))
        .collect();
    let jobs: Vec<_> = prepared
        .iter()
        .filter_map(|p| p.as_ref().ok().cloned())
        .collect();
    let queued = jobs.len();
    let mut accepted = if jobs.is_empty() {
        Vec::new()
    } else {
        backend
            .submit_many(jobs, now)
            .await
            .map_err(|e| refused(metrics, e))?
    }
    .into_iter();
    metrics.borrow_mut().published += queued as u64;
    let mut out = Vec::with_capacity(32 + 112 * n);
    out.push(b'{');
    put_key(&mut out, "results");
    out.push(b'[');
    for (i, p) in prepared.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match p {
            Ok(_) => {
                // One accepted per valid item, in order.
                if let Some(a) = accepted.next() {
                    accepted_body(&a, &mut out);
                }
            }
            Err(e) => {
                out.extend_from_slice(b"{\"error\":{\"status\":");
                out.extend_from_slice(itoa::Buffer::new().format(e.kind().status()).as_bytes());
                out.push(b',');
                error_body(e, &mut out);
                out.extend_from_slice(b"}}");
            }
        }
    }
    out.extend_from_slice(b"]}");
    Ok(Response::json(200, out))
}
