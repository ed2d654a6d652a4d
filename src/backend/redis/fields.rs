//! The Redis shape of a job (stream-entry fields), both ways: `id`, `payload` (the bytes the client
//! sent), `attempt`, `meta` = `<priority> <timeout_ms> <retry_count> <submitted_at>` (decimal;
//! `submitted_at` in µs since the epoch), and `headers`, `endpoint`, `method` when present.
//! The four numbers share one field because every field costs Redis on each `XADD` and on each
//! entry an `XREADGROUP` delivers (docs/redis.md). Entries written before `meta` (the four as
//! fields of their own) are still read. (A request state is one string: `state_value.rs`.)

use std::time::Duration;

use bytes::Bytes;

use crate::backend::{Job, Metadata};
use crate::clock::Timestamp;
use crate::id::CorrelationId;
use crate::resp::Frame;

/// Argument bytes for one command.
pub type Args = Vec<Bytes>;

fn put_num(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

fn num(v: u64) -> Bytes {
    Bytes::copy_from_slice(itoa::Buffer::new().format(v).as_bytes())
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
    pair(b"attempt", num(u64::from(attempt)));
    let mut meta = Vec::with_capacity(48);
    put_num(&mut meta, u64::from(job.metadata.priority));
    meta.push(b' ');
    let timeout_ms = u64::try_from(job.metadata.timeout.as_millis()).unwrap_or(u64::MAX);
    put_num(&mut meta, timeout_ms);
    meta.push(b' ');
    put_num(&mut meta, u64::from(job.metadata.retry_count));
    meta.push(b' ');
    put_num(&mut meta, job.submitted_at.0);
    pair(b"meta", Bytes::from(meta));
    if let Some(h) = &job.headers {
        pair(b"headers", h.clone());
    }
    if let Some(e) = &job.metadata.endpoint {
        pair(b"endpoint", Bytes::copy_from_slice(e.as_bytes()));
    }
    if let Some(m) = &job.metadata.method {
        pair(b"method", Bytes::copy_from_slice(m.as_bytes()));
    }
    if let Some(t) = job.first_started_at {
        pair(b"started", num(t.0));
    }
    a
}

/// `priority`, `timeout_ms`, `retry_count`, `submitted_at` of an entry: from `meta`, or from the
/// separate fields of entries written before `meta` (still in a stream, or parked for a retry,
/// when a broker is upgraded: they are accepted requests and must be read).
fn numbers(pairs: &[Frame]) -> Option<[u64; 4]> {
    if let Some(meta) = field(pairs, b"meta") {
        let text = std::str::from_utf8(meta).ok()?;
        let mut parts = text.split(' ').map(|p| p.parse::<u64>().ok());
        let n = [
            parts.next()??,
            parts.next()??,
            parts.next()??,
            parts.next()??,
        ];
        return parts.next().is_none().then_some(n);
    }
    Some([
        parse_num(field(pairs, b"priority")).unwrap_or(0),
        parse_num(field(pairs, b"timeout_ms"))?,
        parse_num(field(pairs, b"retry_count")).unwrap_or(0),
        parse_num(field(pairs, b"submitted_at"))?,
    ])
}

/// The value of field `name` among `pairs` (`[field, value, ...]`).
pub fn field<'a>(pairs: &'a [Frame], name: &[u8]) -> Option<&'a Bytes> {
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
    let [priority, timeout_ms, retry_count, submitted_at] = numbers(pairs)?;
    let job = Job {
        id,
        payload: field(pairs, b"payload")?.clone(),
        headers: field(pairs, b"headers").cloned(),
        metadata: Metadata {
            priority: priority.min(9) as u8,
            timeout: Duration::from_millis(timeout_ms),
            retry_count: retry_count.min(u64::from(u32::MAX)) as u32,
            endpoint: text(b"endpoint"),
            method: text(b"method"),
        },
        submitted_at: Timestamp(submitted_at),
        first_started_at: parse_num(field(pairs, b"started")).map(Timestamp),
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
            first_started_at: None,
        };
        let fields = job_fields(&job, 3);
        // A retried job carries its first start.
        let retried = Job {
            first_started_at: Some(Timestamp(1_795_689_000_200_000)),
            ..job.clone()
        };
        let back = job_from_fields(&as_frames(&job_fields(&retried, 2))).unwrap();
        assert_eq!(back, (retried, 2));
        let (back, attempt) = job_from_fields(&as_frames(&fields)).unwrap();
        assert_eq!((back, attempt), (job.clone(), 3));
        let meta = fields.iter().position(|f| &f[..] == b"meta").unwrap();
        assert_eq!(&fields[meta + 1][..], b"5 1500 2 1795689000123456");

        // An entry of a build before `meta`: read the same.
        let old: Vec<Frame> = [
            "id",
            "550e8400-e29b-41d4-a716-446655440000",
            "payload",
            r#"{"operation":"echo","data":"x"}"#,
            "headers",
            r#"{"X-T":"a"}"#,
            "priority",
            "5",
            "timeout_ms",
            "1500",
            "retry_count",
            "2",
            "endpoint",
            "billing",
            "submitted_at",
            "1795689000123456",
            "attempt",
            "3",
        ]
        .iter()
        .map(|s| Frame::Bulk(Some(Bytes::copy_from_slice(s.as_bytes()))))
        .collect();
        assert_eq!(job_from_fields(&old), Some((job, 3)));
    }

    #[test]
    fn malformed_meta_is_refused() {
        // No `meta` at all (the separate fields of an older entry shape), or a malformed one.
        let no_meta: Vec<Frame> = [
            "id",
            "550e8400-e29b-41d4-a716-446655440000",
            "payload",
            "{}",
        ]
        .iter()
        .map(|s| Frame::Bulk(Some(Bytes::copy_from_slice(s.as_bytes()))))
        .collect();
        assert_eq!(job_from_fields(&no_meta), None);
        for meta in ["", "1 2 3", "1 2 3 4 5", "1 x 3 4", "1  2 3 4", "-1 2 3 4"] {
            let pairs: Vec<Frame> = [
                "id",
                "550e8400-e29b-41d4-a716-446655440000",
                "payload",
                "{}",
                "meta",
                meta,
            ]
            .iter()
            .map(|s| Frame::Bulk(Some(Bytes::copy_from_slice(s.as_bytes()))))
            .collect();
            assert_eq!(job_from_fields(&pairs), None, "{meta:?}");
        }
    }
}
