//! Waiting for a final state over HTTP: `wait=N` in the query of `GET /response/{id}` or in a
//! `Prefer` header (RFC 7240; also on a submit), capped by `server.max_wait_seconds`. The
//! waiting itself is the owning shard's ([`crate::backend::wait_final`]); this module reads what
//! the client asked for and finds the owner.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::backend::{wait_final, Backend};
use crate::error::{Error, ErrorKind, FieldError};
use crate::http::RequestHead;
use crate::id::{shard_for, CorrelationId, ShardId};
use crate::mesh::Mesh;
use crate::store::RequestState;

/// Whether `head` may ask to wait (a `Prefer` field, or `wait=` in the query): such requests
/// are answered while the connection watches for its client going away.
pub fn may_wait(head: &RequestHead) -> bool {
    head.prefer.is_some()
        || head
            .query
            .as_ref()
            .is_some_and(|q| q.windows(5).any(|w| w == b"wait="))
}

/// How long the client asked to wait, capped at `max`: from `wait=N` in the query (when
/// `query` is allowed) or else in `Prefer`. `None` when it asked for no wait. A malformed
/// `wait` in the query is a 422; a malformed preference is ignored (RFC 7240 §2).
pub fn requested(head: &RequestHead, query: bool, max: Duration) -> Result<Option<Duration>, Error> {
    let from_query = match head.query.as_ref().filter(|_| query) {
        Some(q) => query_wait(q)?,
        None => None,
    };
    let secs = from_query.or_else(|| head.prefer.as_ref().and_then(prefer_wait));
    Ok(secs
        .map(|s| Duration::from_secs_f64(s).min(max))
        .filter(|d| !d.is_zero()))
}

/// `wait=N` among the `&`-separated parameters of a query.
fn query_wait(query: &Bytes) -> Result<Option<f64>, Error> {
    for pair in query.split(|&b| b == b'&') {
        let Some(value) = pair.strip_prefix(b"wait=") else {
            continue;
        };
        let secs = std::str::from_utf8(value)
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0);
        return match secs {
            Some(s) => Ok(Some(s)),
            None => Err(Error::fields(vec![FieldError {
                loc: vec!["query".into(), "wait".into()],
                msg: "wait must be a number of seconds, 0 or more".into(),
                kind: "value_error.number",
            }])),
        };
    }
    Ok(None)
}

/// `wait=N` (delta-seconds) among the preferences of a `Prefer` value, e.g.
/// `respond-async, wait=10`.
fn prefer_wait(prefer: &Bytes) -> Option<f64> {
    prefer.split(|&b| b == b',').find_map(|pref| {
        let pref = pref.split(|&b| b == b';').next().unwrap_or_default();
        let text = std::str::from_utf8(pref).ok()?.trim();
        let (name, value) = text.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("wait") {
            return None;
        }
        let value = value.trim().trim_matches('"');
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        value.parse::<u32>().ok().map(f64::from)
    })
}

/// The state of `id` once final or when `wait` has passed, from the shard that owns it (this
/// one, or another over the mesh); 404 when unknown.
pub(crate) async fn find_final<B: Backend>(
    backend: &B,
    mesh: &Mesh,
    me: ShardId,
    id: CorrelationId,
    wait: Duration,
) -> Result<RequestState, Error> {
    let until = Instant::now() + wait;
    let owner = shard_for(&id, mesh.nr_shards());
    let found = if owner == me {
        wait_final(backend, &id, until).await
    } else {
        mesh.wait_final(owner, id, until).await
    };
    match found {
        Ok(Some(state)) => Ok(state),
        Ok(None) => Err(Error::new(ErrorKind::NotFound, "Request not found")),
        Err(_) => Err(Error::new(
            ErrorKind::QueueUnavailable,
            "state store unavailable; retry later",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait(query: Option<&str>, prefer: Option<&str>) -> Result<Option<Duration>, u16> {
        let mut buf = bytes::BytesMut::from(
            format!(
                "GET /x{} HTTP/1.1\r\nhost: h\r\n{}\r\n",
                query.map(|q| format!("?{q}")).unwrap_or_default(),
                prefer.map(|p| format!("prefer: {p}\r\n")).unwrap_or_default()
            )
            .as_str(),
        );
        let head = crate::http::parse::parse_head(&mut buf, &crate::http::Limits::default())
            .unwrap()
            .unwrap();
        requested(&head, true, Duration::from_secs(30)).map_err(|e| e.kind().status())
    }

    #[test]
    fn reads_wait_from_the_query_or_prefer_and_caps_it() {
        let s = |n: u64| Ok(Some(Duration::from_secs(n)));
        assert_eq!(wait(None, None), Ok(None));
        assert_eq!(wait(Some("wait=5"), None), s(5));
        assert_eq!(wait(Some("a=1&wait=2.5&b"), None), Ok(Some(Duration::from_millis(2500))));
        assert_eq!(wait(Some("wait=0"), None), Ok(None));
        assert_eq!(wait(Some("wait=999"), None), s(30));
        assert_eq!(wait(Some("wait=x"), None), Err(422));
        assert_eq!(wait(Some("wait=-1"), None), Err(422));
        assert_eq!(wait(Some("wait="), None), Err(422));
        assert_eq!(wait(None, Some("wait=7")), s(7));
        assert_eq!(wait(None, Some("respond-async, wait=10")), s(10));
        assert_eq!(wait(None, Some("Wait = \"3\"; x=y")), s(3));
        assert_eq!(wait(None, Some("respond-async")), Ok(None));
        assert_eq!(wait(None, Some("wait=abc")), Ok(None), "ignored, not an error");
        assert_eq!(wait(None, Some("wait=1.5")), Ok(None), "delta-seconds only");
        assert_eq!(wait(Some("wait=4"), Some("wait=9")), s(4), "the query wins");
        assert_eq!(wait(Some("other=1"), Some("wait=9")), s(9));
    }
}
