//! One connection's request sequencing, sans-IO. The I/O loop appends received bytes to an input
//! buffer and calls [`Conn::poll`] until it says [`Event::NeedMore`]; each call yields at most one
//! event. Requests come out in arrival order, so answering them in order gives pipelined clients
//! their responses in order (RFC 9112 §9.3.2).
//!
//! A request head goes through `precheck` before its body is read, so a request that will be
//! refused anyway (too large, wrong media type) is answered at once, without `100 Continue` and
//! without reading a body the client should not send.

use bytes::{Bytes, BytesMut};

use super::body::{BodyDecoder, Decoded};
use super::parse::{parse_head, Framing, Limits, Method, RequestHead};
use super::HeadError;
use crate::error::Error;

/// A complete request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Its head.
    pub head: RequestHead,
    /// Its decoded body (empty when there is none).
    pub body: Bytes,
}

/// What the connection is waiting for, so the I/O loop can pick the right timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// Between requests, nothing of the next one received yet (idle timeout).
    Idle,
    /// Part of a request head received (header-read timeout).
    Head,
    /// Reading a body (body timeout).
    Body,
}

/// The outcome of one [`Conn::poll`].
#[derive(Debug)]
pub enum Event {
    /// Feed more bytes.
    NeedMore(Reading),
    /// Write `100 Continue` now, then poll again.
    Continue,
    /// A complete request.
    Request(Request),
    /// Answer with this error; if `close`, close the connection after the answer.
    Reject {
        /// What to answer.
        error: Error,
        /// Whether the connection must be closed afterwards.
        close: bool,
        /// The path, when the head was parsed (for metrics).
        path: Option<Bytes>,
        /// The method, when the head was parsed.
        method: Option<Method>,
    },
}

#[expect(
    clippy::large_enum_variant,
    reason = "the head moves into the body phase once per request; boxing it would allocate per request"
)]
enum Phase {
    Head,
    Body {
        head: RequestHead,
        decoder: BodyDecoder,
        continue_sent: bool,
    },
    Closed,
}

/// Decides, from the head alone, whether a request is refused before its body is read.
pub type Precheck = fn(&RequestHead) -> Result<(), Error>;

/// The request sequencer of one connection.
pub struct Conn {
    limits: Limits,
    precheck: Precheck,
    phase: Phase,
    body: BytesMut,
}

impl Conn {
    /// A fresh connection.
    pub fn new(limits: Limits, precheck: Precheck) -> Self {
        Conn {
            limits,
            precheck,
            phase: Phase::Head,
            body: BytesMut::new(),
        }
    }

    /// Advances with the bytes in `input`, consuming what it uses.
    pub fn poll(&mut self, input: &mut BytesMut) -> Event {
        loop {
            match &mut self.phase {
                Phase::Closed => return Event::NeedMore(Reading::Idle),
                Phase::Head => {
                    let head = match parse_head(input, &self.limits) {
                        Ok(Some(head)) => head,
                        Ok(None) if input.is_empty() => return Event::NeedMore(Reading::Idle),
                        Ok(None) => return Event::NeedMore(Reading::Head),
                        Err(e) => return self.fail(e),
                    };
                    let decoder = match head.framing {
                        Framing::Empty => {
                            if let Err(error) = (self.precheck)(&head) {
                                return rejected(&head, error, false);
                            }
                            return Event::Request(Request {
                                head,
                                body: Bytes::new(),
                            });
                        }
                        Framing::Length(n) if n > self.limits.max_body_bytes => {
                            return self.fail(HeadError::BodyTooLarge);
                        }
                        Framing::Length(n) => BodyDecoder::length(n),
                        Framing::Chunked => BodyDecoder::chunked(self.limits.max_body_bytes),
                    };
                    if let Err(error) = (self.precheck)(&head) {
                        // The body was not read, so nothing after it can be trusted.
                        self.phase = Phase::Closed;
                        return rejected(&head, error, true);
                    }
                    self.phase = Phase::Body {
                        head,
                        decoder,
                        continue_sent: false,
                    };
                }
                Phase::Body {
                    head,
                    decoder,
                    continue_sent,
                } => {
                    if head.expect_continue && !*continue_sent && input.is_empty() {
                        *continue_sent = true;
                        return Event::Continue;
                    }
                    match decoder.decode(input, &mut self.body) {
                        Ok(Decoded::NeedMore) => return Event::NeedMore(Reading::Body),
                        Ok(Decoded::Done) => {
                            let Phase::Body { head, .. } =
                                std::mem::replace(&mut self.phase, Phase::Head)
                            else {
                                unreachable!("phase checked above")
                            };
                            let body = self.body.split().freeze();
                            return Event::Request(Request { head, body });
                        }
                        Err(e) => return self.fail(e),
                    }
                }
            }
        }
    }

    fn fail(&mut self, e: HeadError) -> Event {
        self.phase = Phase::Closed;
        Event::Reject {
            error: e.into(),
            close: true,
            path: None,
            method: None,
        }
    }
}

fn rejected(head: &RequestHead, error: Error, close: bool) -> Event {
    Event::Reject {
        error,
        close,
        path: Some(head.path.clone()),
        method: Some(head.method),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn no_check(_: &RequestHead) -> Result<(), Error> {
        Ok(())
    }

    fn json_only(h: &RequestHead) -> Result<(), Error> {
        match &h.content_type {
            Some(ct) if &ct[..] == b"application/json" => Ok(()),
            _ => Err(Error::new(ErrorKind::UnsupportedMediaType, "json only")),
        }
    }

    /// Polls until NeedMore, collecting a compact description of each event.
    fn drive(conn: &mut Conn, input: &mut BytesMut) -> Vec<String> {
        let mut out = vec![];
        loop {
            match conn.poll(input) {
                Event::NeedMore(r) => {
                    out.push(format!("more:{r:?}"));
                    return out;
                }
                Event::Continue => out.push("100".into()),
                Event::Request(r) => out.push(format!(
                    "{} {} {:?}",
                    r.head.method.as_str(),
                    String::from_utf8_lossy(&r.head.path),
                    String::from_utf8_lossy(&r.body)
                )),
                Event::Reject { error, close, .. } => {
                    out.push(format!("reject:{}:{close}", error.kind().status()));
                    if close {
                        return out;
                    }
                }
            }
        }
    }

    fn run(check: Precheck, wire: &[u8]) -> Vec<String> {
        let mut c = Conn::new(Limits::default(), check);
        drive(&mut c, &mut BytesMut::from(wire))
    }

    #[test]
    fn pipelined_requests_come_out_in_order() {
        let mut wire = Vec::new();
        for i in 0..64 {
            wire.extend_from_slice(format!("GET /r{i} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        }
        let got = run(no_check, &wire);
        assert_eq!(got.len(), 65);
        for (i, line) in got.iter().take(64).enumerate() {
            assert_eq!(line, &format!("GET /r{i} \"\""));
        }
        assert_eq!(got[64], "more:Idle");
    }

    #[test]
    fn request_table() {
        let cases: &[(&[u8], &[&str])] = &[
            (b"POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", &["POST /s \"{}\"", "more:Idle"]),
            (
                b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
                &["POST /s \"{}\"", "more:Idle"],
            ),
            (b"GET /a HTTP/1.1\r\nHost: x\r\n", &["more:Head"]),
            // NUL in a field value: httparse refuses it (parse.rs relies on that).
            (b"GET /a HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n", &["reject:400:true"]),
            (b"GET /q?x=1#f HTTP/1.1\r\nHost: x\r\n\r\n", &["GET /q \"\"", "more:Idle"]),
            (
                b"POST /s HTTP/1.1\r\nhOsT: x\r\nCONTENT-length: 2\r\n\r\n{}",
                &["POST /s \"{}\"", "more:Idle"],
            ),
            (b"POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab", &["more:Body"]),
            (
                b"POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n",
                &["100", "more:Body"],
            ),
            (
                b"POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n{}",
                &["POST /s \"{}\"", "more:Idle"],
            ),
            (
                b"POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
                &["reject:400:true"],
            ),
            (b"POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n", &["reject:400:true"]),
            (b"POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 2, 2\r\n\r\n{}", &["POST /s \"{}\"", "more:Idle"]),
            (b"POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 2, 3\r\n\r\n", &["reject:400:true"]),
            (b"POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n", &["reject:413:true"]),
            (b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", &["reject:501:true"]),
            (b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", &["reject:400:true"]),
            (b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", &["reject:400:true"]),
            (b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n", &["reject:501:true"]),
            (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", &["reject:505:true"]),
            (b"GET /v HTTP/1.2\r\nHost: x\r\n\r\n", &["GET /v \"\"", "more:Idle"]),
            (b"get / HTTP/1.1\r\nHost: x\r\n\r\n", &["reject:501:true"]),
            // A stray token before the version (fuzz crash: unbounded recursion).
            (b"POST /x HTTPit HTTP/1.1\r\nHost: x\r\n\r\n", &["reject:400:true"]),
            (b"GET /x junk HTTP/1.2\r\nHost: x\r\n\r\n", &["reject:400:true"]),
            (b"FOO / HTTP/1.1\r\nHost: x\r\n\r\n", &["reject:501:true"]),
            (b"GET / HTTP/1.1\r\n\r\n", &["reject:400:true"]),
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", &["reject:400:true"]),
            (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", &["reject:400:true"]),
            (b"GET / HTTP/1.0\r\n\r\n", &["GET / \"\"", "more:Idle"]),
            (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length : 5\r\n\r\n", &["reject:400:true"]),
            (b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", &["reject:400:true"]),
            (b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", &["reject:400:true"]),
            (b"GET http://example.com/health?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n", &["GET /health \"\"", "more:Idle"]),
            (b"GET http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n", &["GET / \"\"", "more:Idle"]),
            (b"GET * HTTP/1.1\r\nHost: x\r\n\r\n", &["reject:400:true"]),
            (b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", &["OPTIONS * \"\"", "more:Idle"]),
            (b"GET / HTTP/1.1\r\nHost: x\r\nExpect: gzip\r\n\r\n", &["reject:417:true"]),
            (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n", &["reject:400:true"]),
            (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", &["reject:400:true"]),
            (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n", &["reject:400:true"]),
            (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x13\r\n\r\n", &["reject:400:true"]),
            (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: \r\n\r\n", &["reject:400:true"]),
            (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n", &["reject:400:true"]),
        ];
        for (wire, want) in cases {
            assert_eq!(
                &run(no_check, wire),
                want,
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
    }

    #[test]
    fn limits() {
        let long_uri = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(9000));
        assert_eq!(run(no_check, long_uri.as_bytes()), ["reject:414:true"]);
        let partial_long_uri = format!("GET /{}", "a".repeat(20_000));
        assert_eq!(
            run(no_check, partial_long_uri.as_bytes()),
            ["reject:414:true"]
        );
        let huge_header = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "b".repeat(65_536)
        );
        assert_eq!(run(no_check, huge_header.as_bytes()), ["reject:431:true"]);
        let mut many = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
        for i in 0..500 {
            many.push_str(&format!("X-{i}: v\r\n"));
        }
        many.push_str("\r\n");
        assert_eq!(run(no_check, many.as_bytes()), ["reject:431:true"]);
    }

    #[test]
    fn precheck_rejects_before_the_body_and_without_continue() {
        let wire = b"POST /s HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n";
        assert_eq!(run(json_only, wire), ["reject:415:true"]);
        // Without a body the connection stays usable.
        let wire = b"POST /s HTTP/1.1\r\nHost: x\r\n\r\nGET /n HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(
            run(json_only, wire),
            ["reject:415:false", "reject:415:false", "more:Idle"]
        );
    }

    #[test]
    fn bytes_arriving_one_at_a_time() {
        let wire = b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        let mut c = Conn::new(Limits::default(), no_check);
        let mut input = BytesMut::new();
        let mut got = vec![];
        for &b in wire.iter() {
            input.extend_from_slice(&[b]);
            got.extend(
                drive(&mut c, &mut input)
                    .into_iter()
                    .filter(|e| !e.starts_with("more")),
            );
        }
        assert_eq!(got, ["POST /s \"abc\""]);
    }
}
