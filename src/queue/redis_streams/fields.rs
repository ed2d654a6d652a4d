//! The Redis shape of a job (stream-entry fields), both ways. Numbers are decimal text;
//! timestamps are microseconds since the epoch; the payload and headers are the bytes the client
//! sent. (A request state is one string: `state_value.rs`.)

use std::time::Duration;

use bytes::Bytes;

use crate::clock::Timestamp;
use crate::queue::{Job, Metadata};
use crate::resp::Frame;
use crate::shard::id::CorrelationId;

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
}
