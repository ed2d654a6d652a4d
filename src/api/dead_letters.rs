//! The dead-letter admin endpoints: `GET /api/v1/dlq?limit=N&cursor=C` lists dead letters oldest
//! first across all shards (each shard lists its own over the mesh; the lists are merged by
//! position), `POST /api/v1/dlq/{id}/redrive` puts one back in the queue and `DELETE
//! /api/v1/dlq/{id}` deletes it, both on the shard that owns the id.

use bytes::Bytes;

use super::lookup::parse_id;
use super::route::status_location;
use crate::backend::{DeadLetterEntry, DlqPosition};
use crate::error::{Error, ErrorKind, FieldError};
use crate::http::Response;
use crate::id::{shard_for, ShardId};
use crate::mesh::Mesh;

/// Entries per page unless `limit` says otherwise.
const DEFAULT_LIMIT: usize = 100;
/// Most entries per page.
const MAX_LIMIT: usize = 1000;

/// Where a page ends: the last entry's position and shard (`<a>-<b>-<shard>` as text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Cursor(DlqPosition, ShardId);

impl Cursor {
    fn parse(text: &[u8]) -> Option<Cursor> {
        let text = std::str::from_utf8(text).ok()?;
        let mut parts = text.split('-').map(|p| p.parse::<u64>().ok());
        let (a, b, s) = (parts.next()??, parts.next()??, parts.next()??);
        parts
            .next()
            .is_none()
            .then_some(Cursor(DlqPosition(a, b), s as ShardId))
    }

    fn text(self) -> String {
        format!("{}-{}-{}", (self.0).0, (self.0).1, self.1)
    }

    /// What shard `s` lists after: entries of `s` come after this cursor when their position
    /// is greater, or equal on a later shard.
    fn after_on(self, s: ShardId) -> Option<DlqPosition> {
        if s <= self.1 {
            Some(self.0)
        } else {
            self.0.before()
        }
    }
}

fn invalid(name: &str, msg: &str) -> Error {
    Error::fields(vec![FieldError {
        loc: vec!["query".into(), name.into()],
        msg: msg.into(),
        kind: "value_error",
    }])
}

/// `limit` and `cursor` from the query.
fn page(query: Option<&Bytes>) -> Result<(usize, Option<Cursor>), Error> {
    let mut limit = DEFAULT_LIMIT;
    let mut cursor = None;
    for pair in query.map(|q| &q[..]).unwrap_or_default().split(|&b| b == b'&') {
        if let Some(v) = pair.strip_prefix(b"limit=") {
            limit = std::str::from_utf8(v)
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| invalid("limit", "limit must be 1 to 1000"))?;
        } else if let Some(v) = pair.strip_prefix(b"cursor=") {
            if !v.is_empty() {
                let c = Cursor::parse(v)
                    .ok_or_else(|| invalid("cursor", "not a cursor this API returned"))?;
                cursor = Some(c);
            }
        }
    }
    Ok((limit, cursor))
}

fn unavailable() -> Error {
    Error::new(
        ErrorKind::QueueUnavailable,
        "dead-letter queue unavailable; retry later",
    )
}

/// `GET /api/v1/dlq`.
pub(crate) async fn list(mesh: &Mesh, query: Option<&Bytes>) -> Result<Response, Error> {
    let (limit, cursor) = page(query)?;
    let mut all: Vec<(DeadLetterEntry, ShardId)> = Vec::new();
    for s in 0..mesh.nr_shards() {
        let after = cursor.and_then(|c| c.after_on(s));
        // One more than a page: whether another page follows.
        let found = mesh
            .dead_letters(s, after, limit + 1)
            .await
            .map_err(|_| unavailable())?;
        all.extend(found.into_iter().map(|e| (e, s)));
    }
    all.sort_by_key(|(e, s)| (e.position, *s));
    let more = all.len() > limit;
    all.truncate(limit);
    let next = more
        .then(|| all.last().map(|(e, s)| Cursor(e.position, *s).text()))
        .flatten();
    let items: Vec<serde_json::Value> = all
        .iter()
        .map(|(e, _)| {
            serde_json::json!({
                "correlation_id": String::from_utf8_lossy(&e.id.to_text()),
                "reason": e.reason,
                "error": e.error,
                "attempts": e.attempts,
                "failed_at": String::from_utf8_lossy(&e.failed_at.rfc3339()),
            })
        })
        .collect();
    let body = serde_json::json!({ "items": items, "next_cursor": next });
    Ok(Response::json(
        200,
        serde_json::to_vec(&body).expect("a JSON value serializes"),
    ))
}

/// `POST /api/v1/dlq/{id}/redrive` (`drop` false) or `DELETE /api/v1/dlq/{id}` (`drop` true).
pub(crate) async fn act(mesh: &Mesh, raw: &Bytes, drop: bool) -> Result<Response, Error> {
    let id = parse_id(raw)?;
    let owner = shard_for(&id, mesh.nr_shards());
    match mesh.dead_letter(owner, id, drop).await {
        Ok(true) if drop => {
            let mut r = Response::json(204, Vec::new());
            r.content_type = None;
            Ok(r)
        }
        Ok(true) => {
            let body = serde_json::json!({
                "correlation_id": String::from_utf8_lossy(&id.to_text()),
                "status": "PENDING",
            });
            let mut r = Response::json(202, serde_json::to_vec(&body).expect("serializes"));
            r.location = Some(status_location(&id));
            Ok(r)
        }
        Ok(false) => Err(Error::new(ErrorKind::NotFound, "Dead letter not found")),
        Err(_) => Err(unavailable()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_resume_after_their_entry() {
        let c = Cursor(DlqPosition(1700, 3), 1);
        assert_eq!(Cursor::parse(c.text().as_bytes()), Some(c));
        assert_eq!(c.after_on(0), Some(DlqPosition(1700, 3)));
        assert_eq!(c.after_on(1), Some(DlqPosition(1700, 3)));
        assert_eq!(c.after_on(2), Some(DlqPosition(1700, 2)), "a tie on a later shard is next");
        for bad in ["", "1-2", "1-2-3-4", "a-1-1", "-1-1"] {
            assert_eq!(Cursor::parse(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn pages_are_read_from_the_query() {
        let q = |s: &'static str| page(Some(&Bytes::from_static(s.as_bytes())));
        assert_eq!(page(None).unwrap(), (100, None));
        assert_eq!(q("limit=5").unwrap(), (5, None));
        assert_eq!(
            q("cursor=9-0-0&limit=1000").unwrap(),
            (1000, Some(Cursor(DlqPosition(9, 0), 0)))
        );
        for bad in ["limit=0", "limit=1001", "limit=x", "cursor=zz"] {
            assert_eq!(q(bad).unwrap_err().kind().status(), 422, "{bad}");
        }
    }
}
