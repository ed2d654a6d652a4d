//! A connection in Pub/Sub mode: subscribed to a set of channels, it reports to a callback, on
//! the shard that started it, when it is subscribed (with the id Redis gave the connection, for
//! `CLIENT TRACKING ... REDIRECT`), every message, and when it is lost. It reconnects (and
//! subscribes again) with backoff; messages published while it is down are not seen, so what
//! depends on them must know it was down ([`Event::Down`]) and stand without them.
//!
//! A connection that stops answering is found by a `PING` every second: no reply (a `pong`, or
//! any push) for a few seconds and it is dropped and reconnected.

use std::cell::Cell;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use monoio::io::{AsyncWriteRentExt, Splitable};
use tracing::{info, warn};

use super::client::connect_to;
use super::encode::command;
use super::frame::{Frame, ProtocolError};
use super::stream::{read_more, Connector, RedisStream};
use super::url::RedisTarget;

/// Longest wait between reconnect attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How often the connection is checked with a `PING`.
const PING_EVERY: Duration = Duration::from_secs(1);

/// What the subscriber reports.
#[derive(Debug)]
pub enum Event<'a> {
    /// Subscribed to every required channel, and to the optional ones but `missing` (refused:
    /// an ACL). Redis knows this connection as `client_id` (`None` when Redis refused to say:
    /// an ACL without `CLIENT`).
    Up {
        client_id: Option<u64>,
        /// The server's `run_id` (`INFO server`), which tells whether another connection
        /// reached the same server; `None` when refused.
        run_id: Option<Bytes>,
        missing: Vec<Vec<u8>>,
    },
    /// The connection is lost: what is published from now until the next `Up` is not seen.
    Down,
    /// A message on `channel`. Its payload is a bulk string, or, on `__redis__:invalidate`,
    /// an array of keys (or a null when the database was flushed).
    Message { channel: &'a [u8], payload: &'a Frame },
}

/// Starts a subscriber of `channels` on the current shard: `on_event` gets what happens. A
/// refused `optional` channel is reported missing; a refused required one drops the connection
/// (retried with backoff). Each channel is subscribed by a command of its own, so one refusal
/// refuses no other.
pub fn subscribe(
    target: RedisTarget,
    deadline: Duration,
    channels: Vec<Vec<u8>>,
    optional: Vec<Vec<u8>>,
    on_event: impl Fn(Event<'_>) + 'static,
) {
    monoio::spawn(async move {
        let connector = Connector::new(&target);
        let mut backoff = Duration::from_millis(25);
        let mut logged_down = false;
        loop {
            match connect_to(&target, &connector, deadline).await {
                Ok(stream) => {
                    backoff = Duration::from_millis(25);
                    logged_down = false;
                    let why = listen(stream, &channels, &optional, deadline, &on_event).await;
                    on_event(Event::Down);
                    warn!(redis = %target, connection = "subscriber", error = %why, "redis connection lost");
                }
                Err(e) => {
                    if !logged_down {
                        warn!(redis = %target, connection = "subscriber", error = %e, "redis unreachable; retrying");
                        logged_down = true;
                    }
                }
            }
            monoio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    });
}

/// Subscribes and reports until the connection fails; returns why.
async fn listen(
    stream: RedisStream,
    channels: &[Vec<u8>],
    optional: &[Vec<u8>],
    deadline: Duration,
    on_event: &impl Fn(Event<'_>),
) -> String {
    let (mut read_half, mut write_half) = stream.into_split();
    let mut out = BytesMut::new();
    command(&mut out, &[b"CLIENT", b"ID"]);
    command(&mut out, &[b"INFO", b"server"]);
    // Replies come in this order: the id, the server's description, then one per channel.
    let all: Vec<&Vec<u8>> = channels.iter().chain(optional).collect();
    for channel in &all {
        command(&mut out, &[b"SUBSCRIBE", channel]);
    }
    let (r, _) = write_half.write_all(out).await;
    if let Err(e) = r {
        return e.to_string();
    }
    let heard = Cell::new(Instant::now());
    let read = async {
        let mut buf = BytesMut::with_capacity(16 * 1024);
        let mut client_id = None;
        let mut run_id = None;
        // Replies read so far (the id's, the server's, then the channels'), and the refused
        // optional channels.
        let mut replies: usize = 0;
        let mut missing = Vec::new();
        let mut up = false;
        loop {
            if let Err(why) = read_more(&mut read_half, &mut buf).await {
                return why;
            }
            heard.set(Instant::now());
            let pushes = match pushes(&mut buf) {
                Ok(p) => p,
                Err(e) => return e.to_string(),
            };
            for push in pushes {
                match push {
                    Push::Reply(frame) => {
                        let refused = frame.error_text().map(|e| String::from_utf8_lossy(e).into_owned());
                        match (replies, refused) {
                            (0, None) => {
                                if let Frame::Integer(n) = frame {
                                    client_id = Some(n as u64);
                                }
                            }
                            (1, None) => run_id = frame.as_bytes().and_then(|b| server_run_id(b)),
                            (0 | 1, Some(why)) => {
                                warn!(connection = "subscriber", error = %why, "redis refuses CLIENT ID or INFO");
                            }
                            (n, Some(why)) if n >= 2 + channels.len() && n < 2 + all.len() => {
                                let channel = all[n - 2];
                                warn!(connection = "subscriber", channel = %String::from_utf8_lossy(channel), error = %why, "redis refuses a subscription");
                                missing.push(channel.to_vec());
                            }
                            (_, Some(why)) => return why,
                            (_, None) => return "unexpected reply".to_owned(),
                        }
                        replies += 1;
                    }
                    Push::Subscribed => replies += 1,
                    Push::Pong => {}
                    Push::Message { channel, payload } => on_event(Event::Message {
                        channel: &channel,
                        payload: &payload,
                    }),
                }
                if replies == all.len() + 2 && !up {
                    up = true;
                    info!(connection = "subscriber", "redis subscribed");
                    on_event(Event::Up {
                        client_id,
                        run_id: run_id.take(),
                        missing: std::mem::take(&mut missing),
                    });
                }
            }
        }
    };
    let ping = async {
        let silent_for = PING_EVERY * 3 + deadline;
        let mut out = BytesMut::new();
        loop {
            monoio::time::sleep(PING_EVERY).await;
            if heard.get().elapsed() > silent_for {
                return "no reply from redis".to_owned();
            }
            out.clear();
            command(&mut out, &[b"PING"]);
            let (r, b) = write_half.write_all(out).await;
            out = b;
            if let Err(e) = r {
                return e.to_string();
            }
        }
    };
    monoio::select! {
        why = read => why,
        why = ping => why,
    }
}

/// The `run_id` in an `INFO server` reply.
pub fn server_run_id(info: &[u8]) -> Option<Bytes> {
    info.split(|&b| b == b'\n').find_map(|line| {
        let id = line.strip_prefix(b"run_id:")?.trim_ascii();
        Some(Bytes::copy_from_slice(id))
    })
}

/// One push (or reply) read by the subscriber.
#[derive(Debug, PartialEq, Eq)]
enum Push {
    /// A reply that is no push: to `CLIENT ID` or `INFO`, or an error (to those under an ACL
    /// that denies them, or to a `SUBSCRIBE`).
    Reply(Frame),
    /// The confirmation of one channel's subscription.
    Subscribed,
    /// The reply to a `PING`.
    Pong,
    /// A published message.
    Message { channel: Bytes, payload: Frame },
}

/// Decodes the complete pushes at the front of `buf` (consuming them). Anything but the pushes
/// above is a protocol error (an error reply included).
fn pushes(buf: &mut BytesMut) -> Result<Vec<Push>, ProtocolError> {
    let frozen = buf.split().freeze();
    let mut pos = 0;
    let mut out = Vec::new();
    while let Some((frame, used)) = Frame::decode(&frozen.slice(pos..))? {
        pos += used;
        let mut items = match frame {
            Frame::Array(Some(items)) => items,
            other => {
                out.push(Push::Reply(other));
                continue;
            }
        };
        let kind = items.first().and_then(Frame::as_bytes).map(|b| &b[..]);
        match kind {
            Some(b"message") if items.len() == 3 => {
                let payload = items.pop().expect("three items");
                let Some(Frame::Bulk(Some(channel))) = items.pop() else {
                    return Err(ProtocolError::UnknownType(b'?'));
                };
                out.push(Push::Message { channel, payload });
            }
            Some(b"subscribe") => out.push(Push::Subscribed),
            Some(b"pong") => out.push(Push::Pong),
            _ => return Err(ProtocolError::UnknownType(b'?')),
        }
    }
    buf.extend_from_slice(&frozen[pos..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Frame {
        Frame::Bulk(Some(Bytes::copy_from_slice(s.as_bytes())))
    }

    #[test]
    fn reads_pushes_and_keeps_a_partial_one() {
        let mut buf = BytesMut::from(
            &b":7\r\n*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$3\r\nabc\r\n*3\r\n$7\r\nmess"[..],
        );
        let got = pushes(&mut buf).unwrap();
        assert_eq!(
            got,
            vec![
                Push::Reply(Frame::Integer(7)),
                Push::Subscribed,
                Push::Message {
                    channel: Bytes::from_static(b"ch"),
                    payload: bulk("abc")
                }
            ]
        );
        assert_eq!(&buf[..], b"*3\r\n$7\r\nmess", "the partial push waits for its end");
        buf.extend_from_slice(b"age\r\n$2\r\nch\r\n$0\r\n\r\n*2\r\n$4\r\npong\r\n$0\r\n\r\n");
        assert_eq!(
            pushes(&mut buf).unwrap(),
            vec![
                Push::Message {
                    channel: Bytes::from_static(b"ch"),
                    payload: bulk("")
                },
                Push::Pong
            ]
        );
        assert!(buf.is_empty());
        let mut refused = BytesMut::from(&b"-NOPERM no\r\n"[..]);
        assert_eq!(
            pushes(&mut refused).unwrap(),
            vec![Push::Reply(Frame::Error(Bytes::from_static(b"NOPERM no")))]
        );
        let mut odd = BytesMut::from(&b"*1\r\n$3\r\nodd\r\n"[..]);
        assert!(pushes(&mut odd).is_err());
        let info = b"# Server\r\nredis_version:7.0.15\r\nrun_id:ab12\r\ntcp_port:6379\r\n";
        assert_eq!(server_run_id(info).as_deref(), Some(&b"ab12"[..]));
        assert_eq!(server_run_id(b"# Server\r\n"), None);
    }

    #[test]
    fn reads_invalidations_of_keys_and_of_everything() {
        let mut buf = BytesMut::from(
            &b"*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n$-1\r\n"[..],
        );
        let channel = Bytes::from_static(b"__redis__:invalidate");
        assert_eq!(
            pushes(&mut buf).unwrap(),
            vec![
                Push::Message {
                    channel: channel.clone(),
                    payload: Frame::Array(Some(vec![bulk("a"), bulk("b")]))
                },
                Push::Message {
                    channel,
                    payload: Frame::Bulk(None)
                },
            ]
        );
    }
}
