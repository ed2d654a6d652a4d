//! A connection in Pub/Sub mode: subscribed to one channel, it hands every message's payload to
//! a callback, on the shard that started it. It reconnects (and subscribes again) with backoff
//! when the connection is lost; messages published meanwhile are not seen, so what depends on
//! them must also stand without them.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use tracing::{info, warn};

use super::client::connect_to;
use super::stream::Connector;
use super::encode::command;
use super::frame::{Frame, ProtocolError};
use super::url::RedisTarget;

/// Longest wait between reconnect attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Starts a subscriber of `channel` on the current shard: `on_message` gets each payload.
pub fn subscribe(
    target: RedisTarget,
    deadline: Duration,
    channel: Vec<u8>,
    on_message: impl Fn(&[u8]) + 'static,
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
                    let why = listen(stream, &channel, &on_message).await;
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

/// Subscribes and hands on messages until the connection fails; returns why.
async fn listen(
    mut stream: super::stream::RedisStream,
    channel: &[u8],
    on_message: &impl Fn(&[u8]),
) -> String {
    let mut out = BytesMut::new();
    command(&mut out, &[b"SUBSCRIBE", channel]);
    let (r, _) = stream.write_all(out).await;
    if let Err(e) = r {
        return e.to_string();
    }
    let mut buf = BytesMut::with_capacity(16 * 1024);
    loop {
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 * 1024);
        }
        let (len, cap) = (buf.len(), buf.capacity());
        let (res, b) = stream.read(buf.slice_mut(len..cap)).await;
        buf = b.into_inner();
        match res {
            Ok(0) => return "closed by redis".to_owned(),
            Ok(_) => {}
            Err(e) => return e.to_string(),
        }
        match messages(&mut buf) {
            Ok(payloads) => {
                for (kind, payload) in payloads {
                    match kind {
                        Push::Subscribed => {
                            info!(connection = "subscriber", "redis subscribed");
                        }
                        Push::Message => on_message(&payload),
                    }
                }
            }
            Err(e) => return e.to_string(),
        }
    }
}

/// What a push is.
#[derive(Debug, PartialEq, Eq)]
enum Push {
    /// The confirmation of the `SUBSCRIBE`.
    Subscribed,
    /// A published message.
    Message,
}

/// Decodes the complete pushes at the front of `buf` (consuming them): `message` pushes with
/// their payloads, and the `subscribe` confirmation. Anything else is a protocol error.
fn messages(buf: &mut BytesMut) -> Result<Vec<(Push, Bytes)>, ProtocolError> {
    let frozen = buf.split().freeze();
    let mut pos = 0;
    let mut out = Vec::new();
    while let Some((frame, used)) = Frame::decode(&frozen.slice(pos..))? {
        pos += used;
        let items = frame.as_array().unwrap_or_default();
        let kind = items.first().and_then(Frame::as_bytes).map(|b| &b[..]);
        match (kind, items.get(2)) {
            (Some(b"message"), Some(Frame::Bulk(Some(payload)))) => {
                out.push((Push::Message, payload.clone()));
            }
            (Some(b"subscribe"), _) => out.push((Push::Subscribed, Bytes::new())),
            _ => return Err(ProtocolError::UnknownType(b'?')),
        }
    }
    buf.extend_from_slice(&frozen[pos..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_messages_and_keeps_a_partial_push() {
        let mut buf = BytesMut::from(
            &b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$3\r\nabc\r\n*3\r\n$7\r\nmess"[..],
        );
        let got = messages(&mut buf).unwrap();
        assert_eq!(
            got,
            vec![
                (Push::Subscribed, Bytes::new()),
                (Push::Message, Bytes::from_static(b"abc"))
            ]
        );
        assert_eq!(&buf[..], b"*3\r\n$7\r\nmess", "the partial push waits for its end");
        buf.extend_from_slice(b"age\r\n$2\r\nch\r\n$0\r\n\r\n");
        assert_eq!(
            messages(&mut buf).unwrap(),
            vec![(Push::Message, Bytes::new())]
        );
        assert!(buf.is_empty());
        let mut odd = BytesMut::from(&b"+OK\r\n"[..]);
        assert!(messages(&mut odd).is_err());
    }
}
