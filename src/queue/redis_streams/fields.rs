//! The Redis shapes of a job (stream-entry fields) and of a request state (hash fields), both
//! ways. Numbers are decimal text; timestamps are microseconds since the epoch; the payload and
//! headers are the bytes the client sent.

use std::time::Duration;

use bytes::Bytes;

use crate::clock::Timestamp;
use crate::queue::{Job, Metadata};
use crate::resp::Frame;
use crate::shard::id::CorrelationId;
use crate::store::{Outcome, RequestState, Status};

/// Argument bytes for one command.
pub type Args = Vec<Bytes>;

fn num(v: u64) -> Bytes {
    Bytes::from(v.to_string())
}

/// The stream-entry fields of `job` at delivery number `attempt`: `field value` pairs.
pub fn job_fields(job: &Job, attempt: u32) -> Args {
    let mut a: Args = Vec::with_capacity(20);
    let mut pair = |k: &'static [u8], v: Bytes| {
        a.push(Bytes::from_static(k));
        a.push(v);
    };
    pair(b"id", Bytes::copy_from_slice(&job.id.to_text()));
    pair(b"payload", job.payload.clone());
    if let Some(h) = &job.headers {
        pair(b"headers", h.clone());
    }
    pair(b"priority", num(u64::from(job.metadata.priority)));
    pair(b"timeout_ms", num(job.metadata.timeout.as_millis() as u64));
    pair(b"retry_count", num(u64::from(job.metadata.retry_count)));
    if let Some(e) = &job.metadata.endpoint {
        pair(b"endpoint", Bytes::copy_from_slice(e.as_bytes()));
    }
    if let Some(m) = &job.metadata.method {
        pair(b"method", Bytes::copy_from_slice(m.as_bytes()));
    }
    pair(b"submitted_at", num(job.submitted_at.0));
    pair(b"attempt", num(u64::from(attempt)));
    a
}

fn field<'a>(pairs: &'a [Frame], name: &[u8]) -> Option<&'a Bytes> {
    pairs
        .chunks(2)
        .find(|kv| kv[0].as_bytes().is_some_and(|k| &k[..] == name))?
        .get(1)?
        .as_bytes()
}

fn parse_num(b: Option<&Bytes>) -> Option<u64> {
    std::str::from_utf8(b?).ok()?.parse().ok()
}

/// A job from a stream entry's field list; `None` if required fields are missing or malformed.
pub fn job_from_fields(pairs: &[Frame]) -> Option<(Job, u32)> {
    let id = CorrelationId::parse(field(pairs, b"id")?)?;
    let text = |k: &[u8]| field(pairs, k).map(|b| String::from_utf8_lossy(b).into_owned());
    let job = Job {
        id,
        payload: field(pairs, b"payload")?.clone(),
        headers: field(pairs, b"headers").cloned(),
        metadata: Metadata {
            priority: parse_num(field(pairs, b"priority")).unwrap_or(0).min(9) as u8,
            timeout: Duration::from_millis(parse_num(field(pairs, b"timeout_ms"))?),
            retry_count: parse_num(field(pairs, b"retry_count")).unwrap_or(0) as u32,
            endpoint: text(b"endpoint"),
            method: text(b"method"),
        },
        submitted_at: Timestamp(parse_num(field(pairs, b"submitted_at"))?),
    };
    let attempt = parse_num(field(pairs, b"attempt")).unwrap_or(1) as u32;
    Some((job, attempt))
}

/// `HSET` field/value pairs for a state.
pub fn state_fields(s: &RequestState) -> Args {
    let mut a: Args = Vec::with_capacity(18);
    let mut pair = |k: &'static [u8], v: Bytes| {
        a.push(Bytes::from_static(k));
        a.push(v);
    };
    pair(b"status", Bytes::from_static(s.status.as_str().as_bytes()));
    pair(b"submitted_at", num(s.submitted_at.0));
    pair(b"updated_at", num(s.updated_at.0));
    if let Some(o) = &s.outcome {
        if let Some(r) = &o.result {
            pair(b"result", r.clone());
        }
        if let Some(h) = &o.headers {
            pair(b"headers", h.clone());
        }
        if let Some(c) = o.status_code {
            pair(b"status_code", num(u64::from(c)));
        }
        if let Some(e) = &o.error {
            pair(b"error", Bytes::copy_from_slice(e.as_bytes()));
        }
        pair(b"processing_time_ms", num(o.processing_time_ms));
        pair(b"completed_at", num(o.completed_at.0));
    }
    a
}

fn status_of(b: &[u8]) -> Option<Status> {
    Some(match b {
        b"PENDING" => Status::Pending,
        b"PROCESSING" => Status::Processing,
        b"COMPLETED" => Status::Completed,
        b"FAILED" => Status::Failed,
        b"TIMEOUT" => Status::Timeout,
        _ => return None,
    })
}

/// A state from an `HGETALL` reply; `None` for an empty (missing or expired) hash.
pub fn state_from_hash(pairs: &[Frame]) -> Option<RequestState> {
    let status = status_of(field(pairs, b"status")?)?;
    let submitted_at = Timestamp(parse_num(field(pairs, b"submitted_at"))?);
    let updated_at = Timestamp(parse_num(field(pairs, b"updated_at")).unwrap_or(submitted_at.0));
    let outcome = status.is_final().then(|| {
        Box::new(Outcome {
            result: field(pairs, b"result").cloned(),
            headers: field(pairs, b"headers").cloned(),
            status_code: parse_num(field(pairs, b"status_code")).map(|c| c as u16),
            error: field(pairs, b"error").map(|e| String::from_utf8_lossy(e).into_owned()),
            processing_time_ms: parse_num(field(pairs, b"processing_time_ms")).unwrap_or(0),
            completed_at: Timestamp(
                parse_num(field(pairs, b"completed_at")).unwrap_or(updated_at.0),
            ),
        })
    });
    Some(RequestState {
        status,
        submitted_at,
        updated_at,
        outcome,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn as_frames(args: &Args) -> Vec<Frame> {
        args.iter().map(|b| Frame::Bulk(Some(b.clone()))).collect()
    }

    #[test]
    fn jobs_round_trip() {
        let job = Job {
            id: CorrelationId::parse(b"550e8400-e29b-41d4-a716-446655440000").unwrap(),
            payload: Bytes::from_static(br#"{"operation":"echo","data":"x"}"#),
            headers: Some(Bytes::from_static(br#"{"X-T":"a"}"#)),
            metadata: Metadata {
                priority: 5,
                timeout: Duration::from_millis(1500),
                retry_count: 2,
                endpoint: Some("billing".into()),
                method: None,
            },
            submitted_at: Timestamp(1_795_689_000_123_456),
        };
        let (back, attempt) = job_from_fields(&as_frames(&job_fields(&job, 3))).unwrap();
        assert_eq!((back, attempt), (job, 3));
    }

    #[test]
    fn states_round_trip() {
        let mut s = RequestState::pending(Timestamp(10));
        let back = state_from_hash(&as_frames(&state_fields(&s))).unwrap();
        assert_eq!(back, s);
        s.start(Timestamp(20)).unwrap();
        s.finish(
            Status::Failed,
            Outcome {
                result: None,
                headers: None,
                status_code: None,
                error: Some("Simulated error".into()),
                processing_time_ms: 7,
                completed_at: Timestamp(30),
            },
        )
        .unwrap();
        assert_eq!(state_from_hash(&as_frames(&state_fields(&s))).unwrap(), s);
        assert_eq!(state_from_hash(&[]), None);
    }
}
