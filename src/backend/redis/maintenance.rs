//! Upkeep every shard runs: acknowledged entries trimmed and due retries moved back to the
//! stream every `RETRY_TICK` (Lua scripts, `scripts.rs`), and the depth gauges refreshed.

use std::rc::Rc;

use tracing::warn;

use super::commands;
use super::keys::GROUP;
use super::queue::{now_ms, RedisQueue, RETRY_TICK};
use crate::backend::Depth;
use crate::resp::{Frame, RedisError};

/// Every `RETRY_TICK`: moves due retries back onto the stream and deletes acknowledged entries.
pub(super) async fn move_retries(q: Rc<RedisQueue>) {
    loop {
        monoio::time::sleep(RETRY_TICK).await;
        let r = q
            .cmd
            .eval(&q.scripts.trim_acknowledged, &[&q.keys.stream], &[])
            .await;
        if let Err(e) = r {
            if e != RedisError::Unavailable {
                warn!(error = %e, "trimming acknowledged entries failed");
            }
        }
        let mut now = itoa::Buffer::new();
        let now = now.format(now_ms()).as_bytes();
        let r = q
            .cmd
            .eval(
                &q.scripts.move_due_retries,
                &[&q.keys.retries, &q.keys.stream],
                &[now, &q.keys.retry_job_prefix],
            )
            .await;
        if let Err(e) = r {
            if e != RedisError::Unavailable {
                warn!(error = %e, "moving due retries failed");
            }
        }
    }
}

/// Deletes dead letters older than `queue.dlq_retention_seconds` (by their entry ids' time),
/// a thousand per call.
pub(super) async fn expire_dead_letters(q: &RedisQueue) {
    let bound = now_ms().saturating_sub(q.dlq_retention.as_millis() as u64);
    let bound = format!("{bound}-0");
    let keys: [&[u8]; 2] = [&q.keys.dlq, &q.keys.dlq_index];
    let r = q
        .cmd
        .eval(&q.scripts.expire_dead_letters, &keys, &[bound.as_bytes(), b"1000"])
        .await;
    if let Err(e) = r {
        if e != RedisError::Unavailable {
            warn!(error = %e, "expiring dead letters failed");
        }
    }
}

/// Reads the depth gauges: ready (the group's lag), delayed (retries waiting), pending.
pub(super) async fn refresh_depth(q: &RedisQueue) {
    let r = q
        .cmd
        .pipeline(4, |out| {
            commands::xlen(&q.keys.stream).encode(out);
            commands::zcard(&q.keys.retries).encode(out);
            commands::xpending_summary(&q.keys.stream).encode(out);
            commands::xinfo_groups(&q.keys.stream).encode(out);
        })
        .await;
    if let Ok(frames) = r {
        let n = |f: Option<&Frame>| match f {
            Some(Frame::Integer(v)) => (*v).max(0) as u64,
            _ => 0,
        };
        // XPENDING's summary starts with the number of pending entries.
        let pending = n(frames
            .get(2)
            .and_then(Frame::as_array)
            .and_then(|a| a.first()));
        // Not yet delivered: the group's `lag`. The stream also holds acknowledged entries until
        // the next trim, so `XLEN - pending` only bounds it from above (the fallback when Redis
        // cannot tell the lag).
        let group = group_info(frames.get(3));
        let ready = group
            .as_ref()
            .map(|g| g.lag)
            .unwrap_or_else(|| n(frames.first()).saturating_sub(pending));
        q.depth.set(Depth {
            ready,
            delayed: n(frames.get(1)),
            pending,
        });
        let oldest = match group {
            Some(g) if ready > 0 => oldest_undelivered(q, &g.last_delivered).await,
            _ => None,
        };
        q.oldest_ms.set(oldest);
    }
}

/// The time (ms, from its id) of the first entry after `last_delivered`.
async fn oldest_undelivered(q: &RedisQueue, last_delivered: &[u8]) -> Option<u64> {
    let mut start = b"(".to_vec();
    start.extend_from_slice(last_delivered);
    let cmd = crate::resp::Cmd::new(b"XRANGE")
        .arg(&q.keys.stream)
        .arg(&start)
        .arg(b"+")
        .arg(b"COUNT")
        .int(1);
    let reply = q.cmd.call(&cmd).await.ok()?;
    let id = reply.as_array()?.first()?.as_array()?.first()?.as_bytes()?.clone();
    let ms = std::str::from_utf8(&id).ok()?.split('-').next()?;
    ms.parse().ok()
}

/// What `XINFO GROUPS` says of this backend's group.
struct GroupInfo {
    /// Entries not yet delivered.
    lag: u64,
    /// The last entry delivered.
    last_delivered: Vec<u8>,
}

/// This backend's group in an `XINFO GROUPS` reply.
fn group_info(reply: Option<&Frame>) -> Option<GroupInfo> {
    reply?.as_array()?.iter().find_map(|g| {
        let fields = g.as_array()?;
        let get = |name: &[u8]| {
            fields
                .chunks(2)
                .find(|kv| kv[0].as_bytes().is_some_and(|k| &k[..] == name))
                .and_then(|kv| kv.get(1))
        };
        if get(b"name")?.as_bytes()?[..] != *GROUP {
            return None;
        }
        let lag = match get(b"lag")? {
            Frame::Integer(v) => (*v).max(0) as u64,
            _ => return None,
        };
        let last_delivered = get(b"last-delivered-id")?.as_bytes()?.to_vec();
        Some(GroupInfo {
            lag,
            last_delivered,
        })
    })
}
