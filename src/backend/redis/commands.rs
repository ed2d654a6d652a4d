//! The Redis commands the backend sends, as typed values (`resp::Cmd`): one constructor per
//! command shape, named after the command, taking the keys and numbers it needs. The Lua
//! scripts are in `scripts.rs`; replies are decoded in `reads.rs` and where they are used.

use super::keys::GROUP;
use crate::resp::Cmd;

/// `XADD stream * field value …`: appends an entry.
pub(super) fn xadd<'a>(stream: &'a [u8], fields: impl IntoIterator<Item = &'a [u8]>) -> Cmd<'a> {
    Cmd::new(b"XADD").arg(stream).arg(b"*").args(fields)
}

/// `SET key value EX ttl`: a request state with its TTL (`state_value.rs` encodes the value).
pub(super) fn set_state<'a>(key: &'a [u8], value: &'a [u8], ttl_seconds: &'a [u8]) -> Cmd<'a> {
    Cmd::new(b"SET")
        .arg(key)
        .arg(value)
        .arg(b"EX")
        .arg(ttl_seconds)
}

/// `MSET key value …`: states without a TTL (the `PENDING` states of submits).
pub(super) fn mset<'a>(pairs: impl IntoIterator<Item = &'a [u8]>) -> Cmd<'a> {
    Cmd::new(b"MSET").args(pairs)
}

/// `PUBLISH channel message`.
pub(super) fn publish<'a>(channel: &'a [u8], message: &'a [u8]) -> Cmd<'a> {
    Cmd::new(b"PUBLISH").arg(channel).arg(message)
}

/// `GET key`.
pub(super) fn get(key: &[u8]) -> Cmd<'_> {
    Cmd::new(b"GET").arg(key)
}

/// `XACK stream group entry …`: the entries are done.
pub(super) fn xack<'a>(stream: &'a [u8], entries: impl IntoIterator<Item = &'a [u8]>) -> Cmd<'a> {
    Cmd::new(b"XACK").arg(stream).arg(GROUP).args(entries)
}

/// `XGROUP CREATE stream group 0 MKSTREAM`.
pub(super) fn create_group(stream: &[u8]) -> Cmd<'_> {
    Cmd::new(b"XGROUP")
        .arg(b"CREATE")
        .arg(stream)
        .arg(GROUP)
        .arg(b"0")
        .arg(b"MKSTREAM")
}

/// `XREADGROUP GROUP group consumer COUNT n [BLOCK ms] STREAMS stream start`: up to `count`
/// entries after `start` (`>` for new ones, an entry id to page through the consumer's own
/// pending list).
pub(super) fn xreadgroup<'a>(
    consumer: &'a [u8],
    count: u64,
    block_ms: Option<u64>,
    stream: &'a [u8],
    start: &'a [u8],
) -> Cmd<'a> {
    let cmd = Cmd::new(b"XREADGROUP")
        .arg(b"GROUP")
        .arg(GROUP)
        .arg(consumer)
        .arg(b"COUNT")
        .int(count);
    let cmd = match block_ms {
        Some(ms) => cmd.arg(b"BLOCK").int(ms),
        None => cmd,
    };
    cmd.arg(b"STREAMS").arg(stream).arg(start)
}

/// `XCLAIM stream group consumer min_idle_ms id …`: takes entries idle at least that long.
pub(super) fn xclaim<'a>(
    stream: &'a [u8],
    consumer: &'a [u8],
    min_idle_ms: u64,
    ids: impl IntoIterator<Item = &'a [u8]>,
) -> Cmd<'a> {
    Cmd::new(b"XCLAIM")
        .arg(stream)
        .arg(GROUP)
        .arg(consumer)
        .int(min_idle_ms)
        .args(ids)
}

/// `XCLAIM … 0 id … JUSTID`: resets the idle time of entries this consumer holds (a lease
/// renewal); the reply names those still pending.
pub(super) fn renew<'a>(
    stream: &'a [u8],
    consumer: &'a [u8],
    ids: impl IntoIterator<Item = &'a [u8]>,
) -> Cmd<'a> {
    xclaim(stream, consumer, 0, ids).arg(b"JUSTID")
}

/// `XPENDING stream group IDLE ms - + count`: pending entries idle at least `idle_ms`.
pub(super) fn xpending_idle(stream: &[u8], idle_ms: u64, count: u64) -> Cmd<'_> {
    Cmd::new(b"XPENDING")
        .arg(stream)
        .arg(GROUP)
        .arg(b"IDLE")
        .int(idle_ms)
        .arg(b"-")
        .arg(b"+")
        .int(count)
}

/// `XPENDING stream group first last count consumer`: `consumer`'s pending entries from
/// `first` to `last` with their delivery counts.
pub(super) fn xpending_of<'a>(
    stream: &'a [u8],
    first: &'a [u8],
    last: &'a [u8],
    count: u64,
    consumer: &'a [u8],
) -> Cmd<'a> {
    Cmd::new(b"XPENDING")
        .arg(stream)
        .arg(GROUP)
        .arg(first)
        .arg(last)
        .int(count)
        .arg(consumer)
}

/// `XPENDING stream group`: the summary (count first).
pub(super) fn xpending_summary(stream: &[u8]) -> Cmd<'_> {
    Cmd::new(b"XPENDING").arg(stream).arg(GROUP)
}

/// `XLEN stream`.
pub(super) fn xlen(stream: &[u8]) -> Cmd<'_> {
    Cmd::new(b"XLEN").arg(stream)
}

/// `ZCARD key`.
pub(super) fn zcard(key: &[u8]) -> Cmd<'_> {
    Cmd::new(b"ZCARD").arg(key)
}

/// `ZADD key score member`.
pub(super) fn zadd<'a>(key: &'a [u8], score: u64, member: &'a [u8]) -> Cmd<'a> {
    Cmd::new(b"ZADD").arg(key).int(score).arg(member)
}

/// `HSET key field value …`.
pub(super) fn hset<'a>(key: &'a [u8], fields: impl IntoIterator<Item = &'a [u8]>) -> Cmd<'a> {
    Cmd::new(b"HSET").arg(key).args(fields)
}

/// `XINFO GROUPS stream`.
pub(super) fn xinfo_groups(stream: &[u8]) -> Cmd<'_> {
    Cmd::new(b"XINFO").arg(b"GROUPS").arg(stream)
}

/// `PING`.
pub(super) fn ping() -> Cmd<'static> {
    Cmd::new(b"PING")
}

/// `CLIENT ID`: the connection's id on its server.
pub(super) fn client_id() -> Cmd<'static> {
    Cmd::new(b"CLIENT").arg(b"ID")
}

/// `CLIENT UNBLOCK id`: a blocking command of that connection returns as if it timed out.
pub(super) fn client_unblock(id: u64) -> Cmd<'static> {
    Cmd::new(b"CLIENT").arg(b"UNBLOCK").int(id)
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::*;
    use crate::resp::encode::command;

    fn encoded(cmd: &Cmd<'_>) -> BytesMut {
        let mut out = BytesMut::new();
        cmd.encode(&mut out);
        out
    }

    fn plain(args: &[&[u8]]) -> BytesMut {
        let mut out = BytesMut::new();
        command(&mut out, args);
        out
    }

    #[test]
    fn commands_have_the_shapes_redis_expects() {
        let cases: Vec<(Cmd<'_>, Vec<&[u8]>)> = vec![
            (
                xreadgroup(b"h:0", 10, Some(1000), b"s", b">"),
                vec![
                    b"XREADGROUP",
                    b"GROUP",
                    GROUP,
                    b"h:0",
                    b"COUNT",
                    b"10",
                    b"BLOCK",
                    b"1000",
                    b"STREAMS",
                    b"s",
                    b">",
                ],
            ),
            (
                xreadgroup(b"h:0", 3, None, b"s", b"0"),
                vec![
                    b"XREADGROUP",
                    b"GROUP",
                    GROUP,
                    b"h:0",
                    b"COUNT",
                    b"3",
                    b"STREAMS",
                    b"s",
                    b"0",
                ],
            ),
            (
                renew(b"s", b"h:0", [&b"1-1"[..], b"2-0"]),
                vec![
                    b"XCLAIM", b"s", GROUP, b"h:0", b"0", b"1-1", b"2-0", b"JUSTID",
                ],
            ),
            (
                xpending_idle(b"s", 30000, 50),
                vec![
                    b"XPENDING",
                    b"s",
                    GROUP,
                    b"IDLE",
                    b"30000",
                    b"-",
                    b"+",
                    b"50",
                ],
            ),
            (
                set_state(b"k", b"v", b"60"),
                vec![b"SET", b"k", b"v", b"EX", b"60"],
            ),
            (
                xack(b"s", [&b"1-1"[..]]),
                vec![b"XACK", b"s", GROUP, b"1-1"],
            ),
            (zadd(b"z", 17, b"m"), vec![b"ZADD", b"z", b"17", b"m"]),
        ];
        for (cmd, want) in cases {
            assert_eq!(encoded(&cmd), plain(&want), "{:?}", cmd);
        }
    }
}
