//! `POST /api/v1/submit/batch`: `{"requests": [<submit body>, ...]}`, 1 to `server.max_batch`
//! items. Each item is validated on its own (as a submit is); the valid ones are queued in one
//! backend call, all or none. 200 with `{"results": [...]}` in request order: each an accepted
//! request's `{"correlation_id","status","submitted_at"}`, or `{"error": {"status", "detail"}}`.
//! A backend that cannot take them: 503 + `Retry-After` for the whole batch. An item may carry
//! an `idempotency_key`: those items are queued first, each on its key's shard (as a submit
//! with `Idempotency-Key` is), then the others in one call; a failure of either is a 503 for the
//! whole batch, and a retry of it replays the keyed items already queued instead of queueing
//! them again.

use std::cell::RefCell;

use serde::Deserialize;
use serde_json::value::RawValue;

use bytes::Bytes;

use super::idempotency::{self, check_key};
use super::submit::{accepted_body, prepare, refused, Rules};
use super::{error_body, json::put_key};
use crate::backend::idempotency::body_hash;
use crate::backend::{Accepted, Backend};
use crate::id::ShardId;
use crate::mesh::Mesh;
use crate::clock::Timestamp;
use crate::error::{Error, ErrorKind, FieldError};
use crate::http::Response;
use crate::metrics::ShardMetrics;

#[derive(Deserialize)]
struct Batch<'a> {
    #[serde(borrow)]
    requests: Vec<&'a RawValue>,
}

/// An item's idempotency key, if it has one.
#[derive(Deserialize)]
struct ItemKey {
    idempotency_key: Option<String>,
}

/// A valid item, and where its answer comes from.
enum Item {
    /// Queued with the others in one call.
    Plain,
    /// Queued under its key: its answer (and whether it replays an earlier one).
    Keyed(Result<(Accepted, bool), Error>),
}

/// Handles one batch submit.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn handle<B: Backend>(
    backend: &B,
    mesh: &Mesh,
    me: ShardId,
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
        .map(|item| {
            let text = item.get();
            let job = prepare(rules, text.as_bytes())?;
            // A second parse only for items that can name a key: any spelling of the member
            // holds the plain name or a `\u` escape.
            let may_have_key = text.contains("idempotency_key") || text.contains("\\u");
            let key = may_have_key
                .then(|| serde_json::from_str::<ItemKey>(text).ok())
                .flatten()
                .and_then(|k| k.idempotency_key);
            if let Some(k) = &key {
                check_key(k.as_bytes())?;
            }
            Ok((job, key.map(Bytes::from)))
        })
        .collect();
    // Keyed items first: should the call for the others fail, a retry replays these.
    let mut items: Vec<Option<Item>> = Vec::with_capacity(n);
    let mut jobs = Vec::new();
    for (p, raw) in prepared.iter().zip(&batch.requests) {
        let item = match p {
            Err(_) => None,
            Ok((job, None)) => {
                jobs.push(job.clone());
                Some(Item::Plain)
            }
            Ok((job, Some(key))) => {
                let hash = body_hash(raw.get().as_bytes());
                let done = idempotency::queue(backend, mesh, me, key, job.clone(), hash, now)
                    .await
                    .map_err(|e| refused(metrics, e))?;
                Some(Item::Keyed(idempotency::answer(metrics, done)))
            }
        };
        items.push(item);
    }
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
    let put_error = |e: &Error, out: &mut Vec<u8>| {
        out.extend_from_slice(b"{\"error\":{\"status\":");
        out.extend_from_slice(itoa::Buffer::new().format(e.kind().status()).as_bytes());
        out.push(b',');
        error_body(e, out);
        out.extend_from_slice(b"}}");
    };
    for (i, (p, item)) in prepared.iter().zip(&items).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match (p, item) {
            (Err(e), _) => put_error(e, &mut out),
            (Ok(_), Some(Item::Keyed(Err(e)))) => put_error(e, &mut out),
            (Ok(_), Some(Item::Keyed(Ok((a, replayed))))) => {
                accepted_body(a, &mut out);
                if *replayed {
                    out.pop();
                    out.extend_from_slice(b",\"idempotent_replayed\":true}");
                }
            }
            (Ok(_), _) => {
                // One accepted per plain item, in order.
                if let Some(a) = accepted.next() {
                    accepted_body(&a, &mut out);
                }
            }
        }
    }
    out.extend_from_slice(b"]}");
    Ok(Response::json(200, out))
}
