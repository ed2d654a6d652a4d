//! Reading one HTTP/1.1 response from an upstream, sans-IO: the head with httparse, then the body
//! framed as RFC 9112 §6.3 says: none (a `HEAD` request, 1xx, 204, 304), chunked,
//! `Content-Length`, or until the connection closes. Interim 1xx responses are skipped. The body
//! limit is enforced while reading, so an upstream can never make the broker buffer more than
//! it allows; incomplete input is not an error.

use bytes::{Buf, Bytes, BytesMut};

use crate::http::body::{BodyDecoder, Decoded};
use crate::http::HeadError;

/// Most header lines read from an upstream response.
const MAX_HEADERS: usize = 64;
/// Longest response head accepted.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// A complete upstream response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamResponse {
    /// The status code.
    pub status: u16,
    /// Header names (lower-cased) and values, in the order received.
    pub headers: Vec<(String, Bytes)>,
    /// The decoded body.
    pub body: Bytes,
    /// Whether the connection can carry another request.
    pub reusable: bool,
}

impl UpstreamResponse {
    /// The first value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| &v[..])
    }
}

/// Why a response could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseError {
    /// Not HTTP/1.x, or framing that cannot be trusted.
    Malformed(&'static str),
    /// The body (or the head) is larger than allowed.
    TooLarge,
}

/// What one call to [`ResponseReader::read`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// More bytes are needed.
    NeedMore,
    /// The response is complete.
    Done(UpstreamResponse),
}

enum Phase {
    Head,
    Body {
        status: u16,
        headers: Vec<(String, Bytes)>,
        reusable: bool,
        framing: Framing,
    },
}

enum Framing {
    Decoder(BodyDecoder),
    /// Until the connection closes.
    UntilClose,
}

/// Reads one response, fed the bytes the connection receives.
pub struct ResponseReader {
    phase: Phase,
    body: BytesMut,
    limit: usize,
    head_request: bool,
}

impl ResponseReader {
    /// A reader for the response to a request (`head_request`: a `HEAD`, whose response has no
    /// body) whose body may be at most `limit` bytes.
    pub fn new(limit: usize, head_request: bool) -> Self {
        ResponseReader {
            phase: Phase::Head,
            body: BytesMut::new(),
            limit,
            head_request,
        }
    }

    /// Consumes what it can of `input`.
    pub fn read(&mut self, input: &mut BytesMut) -> Result<Read, ResponseError> {
        loop {
            match &mut self.phase {
                Phase::Head => {
                    let Some(head) = parse_head(input)? else {
                        if input.len() > MAX_HEAD_BYTES {
                            return Err(ResponseError::TooLarge);
                        }
                        return Ok(Read::NeedMore);
                    };
                    if head.status == 101 {
                        // The broker never asks for an upgrade: what follows is not HTTP.
                        return Err(ResponseError::Malformed("unexpected 101 Switching Protocols"));
                    }
                    if (100..200).contains(&head.status) {
                        // Interim (100 Continue, 103 Early Hints): the real one follows.
                        continue;
                    }
                    let framing = self.framing(&head)?;
                    // Both framings at once, or chunked on HTTP/1.0: answered, but the connection
                    // is not trusted with another request (RFC 9112 §6.3).
                    let ambiguous = head.transfer_encoding.is_some()
                        && (head.content_length.is_some() || !head.http11);
                    let reusable =
                        head.keep_alive && !ambiguous && !matches!(framing, Framing::UntilClose);
                    self.phase = Phase::Body {
                        status: head.status,
                        headers: head.headers,
                        reusable,
                        framing,
                    };
                }
                Phase::Body { framing, .. } => {
                    let done = match framing {
                        Framing::Decoder(d) => match d.decode(input, &mut self.body) {
                            Ok(Decoded::Done) => true,
                            Ok(Decoded::NeedMore) => false,
                            Err(HeadError::BodyTooLarge) => return Err(ResponseError::TooLarge),
                            Err(_) => return Err(ResponseError::Malformed("bad chunked body")),
                        },
                        Framing::UntilClose => {
                            if self.body.len() + input.len() > self.limit {
                                return Err(ResponseError::TooLarge);
                            }
                            self.body.extend_from_slice(input);
                            input.clear();
                            false
                        }
                    };
                    return Ok(if done {
                        Read::Done(self.finish())
                    } else {
                        Read::NeedMore
                    });
                }
            }
        }
    }

    /// The connection closed: the response if it is complete with that (a body delimited by the
    /// close), else why not.
    pub fn closed(&mut self) -> Result<UpstreamResponse, ResponseError> {
        match &self.phase {
            Phase::Body {
                framing: Framing::UntilClose,
                ..
            } => Ok(self.finish()),
            Phase::Head => Err(ResponseError::Malformed(
                "connection closed before a response",
            )),
            Phase::Body { .. } => Err(ResponseError::Malformed(
                "connection closed inside the body",
            )),
        }
    }

    fn framing(&self, head: &Head) -> Result<Framing, ResponseError> {
        let limit = self.limit as u64;
        if self.head_request || head.status == 204 || head.status == 304 {
            return Ok(Framing::Decoder(BodyDecoder::length(0)));
        }
        if let Some(te) = &head.transfer_encoding {
            // Chunked must be the final coding; any other coding is framed by the close.
            let last = te.rsplit(|&b| b == b',').next().unwrap_or(b"");
            return Ok(if last.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                Framing::Decoder(BodyDecoder::chunked(limit))
            } else {
                Framing::UntilClose
            });
        }
        match head.content_length {
            Some(len) if len > limit => Err(ResponseError::TooLarge),
            Some(len) => Ok(Framing::Decoder(BodyDecoder::length(len))),
            None => Ok(Framing::UntilClose),
        }
    }

    fn finish(&mut self) -> UpstreamResponse {
        let phase = std::mem::replace(&mut self.phase, Phase::Head);
        let Phase::Body {
            status,
            headers,
            reusable,
            ..
        } = phase
        else {
            unreachable!("finish is only called in the body phase")
        };
        UpstreamResponse {
            status,
            headers,
            body: std::mem::take(&mut self.body).freeze(),
            reusable,
        }
    }
}

struct Head {
    status: u16,
    headers: Vec<(String, Bytes)>,
    content_length: Option<u64>,
    transfer_encoding: Option<Vec<u8>>,
    keep_alive: bool,
    http11: bool,
}

/// The head at the start of `input` (consumed), or `None` while incomplete.
fn parse_head(input: &mut BytesMut) -> Result<Option<Head>, ResponseError> {
    let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut raw);
    let len = match resp.parse(input) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(ResponseError::TooLarge),
        Err(_) => return Err(ResponseError::Malformed("unreadable response head")),
    };
    let status = resp.code.unwrap_or(0);
    let http11 = resp.version == Some(1);
    let mut head = Head {
        status,
        headers: Vec::with_capacity(resp.headers.len()),
        content_length: None,
        transfer_encoding: None,
        keep_alive: http11,
        http11,
    };
    for h in resp.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        match name.as_str() {
            "content-length" => {
                let v = std::str::from_utf8(h.value)
                    .ok()
                    .map(str::trim)
                    .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or(ResponseError::Malformed("bad Content-Length"))?;
                if head.content_length.is_some_and(|l| l != v) {
                    return Err(ResponseError::Malformed("conflicting Content-Length"));
                }
                head.content_length = Some(v);
            }
            "transfer-encoding" => {
                let te = head.transfer_encoding.get_or_insert_with(Vec::new);
                if !te.is_empty() {
                    te.push(b',');
                }
                te.extend_from_slice(h.value);
            }
            "connection" => {
                for token in h.value.split(|&b| b == b',') {
                    let token = token.trim_ascii();
                    if token.eq_ignore_ascii_case(b"close") {
                        head.keep_alive = false;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        head.keep_alive = true;
                    }
                }
            }
            _ => {}
        }
        head.headers.push((name, Bytes::copy_from_slice(h.value)));
    }
    input.advance(len);
    Ok(Some(head))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `wire` in pieces of `step` bytes, then the close if it is still reading.
    fn read_all(wire: &[u8], step: usize, limit: usize) -> Result<UpstreamResponse, ResponseError> {
        let mut r = ResponseReader::new(limit, false);
        let mut input = BytesMut::new();
        for piece in wire.chunks(step.max(1)) {
            input.extend_from_slice(piece);
            if let Read::Done(resp) = r.read(&mut input)? {
                return Ok(resp);
            }
        }
        r.closed()
    }

    #[test]
    fn framings_in_any_split() {
        let cases: &[(&[u8], u16, &[u8], bool)] = &[
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello",
                200,
                b"hello",
                true,
            ),
            (
                b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nT: 1\r\n\r\n",
                201,
                b"abcde",
                true,
            ),
            // Close-delimited: no length, no chunking; not reusable.
            (b"HTTP/1.1 200 OK\r\n\r\nuntil close", 200, b"until close", false),
            (b"HTTP/1.1 204 No Content\r\n\r\n", 204, b"", true),
            (
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                200,
                b"ok",
                true,
            ),
            (
                b"HTTP/1.1 503 Busy\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                503,
                b"",
                false,
            ),
            (
                b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx",
                200,
                b"x",
                false,
            ),
            (
                b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx",
                200,
                b"x",
                true,
            ),
            // Both framings: chunked wins, and the connection is not reused.
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n1\r\nz\r\n0\r\n\r\n",
                200,
                b"z",
                false,
            ),
        ];
        for &(wire, status, body, reusable) in cases {
            for step in [1, 2, 7, wire.len()] {
                let resp = read_all(wire, step, 1 << 20)
                    .unwrap_or_else(|e| panic!("{e:?} at step {step}: {wire:?}"));
                assert_eq!(resp.status, status);
                assert_eq!(&resp.body[..], body, "step {step}");
                assert_eq!(resp.reusable, reusable, "{wire:?}");
            }
        }
    }

    #[test]
    fn headers_are_kept_lower_cased() {
        let wire = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-A: 1\r\nContent-Length: 2\r\n\r\n{}";
        let resp = read_all(wire, wire.len(), 100).unwrap();
        assert_eq!(resp.header("content-type"), Some(&b"application/json"[..]));
        assert_eq!(resp.header("x-a"), Some(&b"1"[..]));
    }

    #[test]
    fn the_limit_holds_while_reading() {
        let long = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world";
        assert_eq!(read_all(long, 3, 10), Err(ResponseError::TooLarge));
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n";
        assert_eq!(read_all(chunked, 4, 10), Err(ResponseError::TooLarge));
        let close = b"HTTP/1.1 200 OK\r\n\r\nhello world";
        assert_eq!(read_all(close, 4, 10), Err(ResponseError::TooLarge));
        assert!(read_all(long, 3, 11).is_ok());
    }

    #[test]
    fn broken_responses_are_errors() {
        for wire in [
            &b"SSH-2.0-OpenSSH\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello",
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
        ] {
            assert!(
                matches!(read_all(wire, wire.len(), 100), Err(ResponseError::Malformed(_))),
                "{wire:?}"
            );
        }
        // Closed early: inside the head, or inside a framed body.
        assert!(read_all(b"HTTP/1.1 200 OK\r\nContent-", 5, 100).is_err());
        assert!(read_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", 5, 100).is_err());
    }

    #[test]
    fn a_head_request_has_no_body() {
        let mut r = ResponseReader::new(100, true);
        let mut input = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n"[..]);
        let Read::Done(resp) = r.read(&mut input).unwrap() else {
            panic!("not done")
        };
        assert!(resp.body.is_empty());
        assert!(resp.reusable);
    }
}
