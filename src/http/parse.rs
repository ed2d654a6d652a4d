//! Request-head parsing, sans-IO: bytes in, a [`RequestHead`], "need more bytes" or a
//! [`HeadError`] out. httparse does the tokenising; this file applies RFC 9112's framing rules
//! (the request-smuggling cases), the size limits and the few headers the broker acts on.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};

use super::fields::Fields;
use super::HeadError;

/// Most header fields accepted in one request; one more is a 431.
pub const MAX_HEADERS: usize = 100;

/// Size limits for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Request line plus header fields, bytes.
    pub max_head_bytes: usize,
    /// Request target, bytes.
    pub max_uri_bytes: usize,
    /// Decoded body, bytes.
    pub max_body_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: 16 * 1024,
            max_uri_bytes: 8 * 1024,
            max_body_bytes: 1 << 20,
        }
    }
}

/// Request methods the broker knows. Anything else (including lowercase spellings) is a 501.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET
    Get,
    /// HEAD
    Head,
    /// POST
    Post,
    /// PUT
    Put,
    /// DELETE
    Delete,
    /// OPTIONS
    Options,
    /// PATCH
    Patch,
    /// TRACE
    Trace,
    /// CONNECT
    Connect,
}

impl Method {
    fn from_token(t: &str) -> Option<Method> {
        Some(match t {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            "PATCH" => Method::Patch,
            "TRACE" => Method::Trace,
            "CONNECT" => Method::Connect,
            _ => return None,
        })
    }

    /// The method's token.
    pub const fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Patch => "PATCH",
            Method::Trace => "TRACE",
            Method::Connect => "CONNECT",
        }
    }
}

/// How the request body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed request head: only what the broker acts on, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// The method.
    pub method: Method,
    /// The path of the target without its query (`*` for the asterisk form).
    pub path: Bytes,
    /// The query of the target (after `?`, before any `#`), if it has one.
    pub query: Option<Bytes>,
    /// HTTP/1.`minor_version`.
    pub minor_version: u8,
    /// Whether the connection stays open after this request.
    pub keep_alive: bool,
    /// How the body is delimited.
    pub framing: Framing,
    /// `Expect: 100-continue` was sent.
    pub expect_continue: bool,
    /// The `Content-Type` value, if any.
    pub content_type: Option<Bytes>,
    /// The `Prefer` values (RFC 7240), comma-joined as sent, if any (the last field when
    /// several are sent).
    pub prefer: Option<Bytes>,
    /// The `Idempotency-Key` value, if any (the last field when several are sent).
    pub idempotency_key: Option<Bytes>,
    /// A `Content-Encoding` other than `identity` was sent.
    pub content_encoded: bool,
    /// The API key sent as `Authorization: Bearer <key>` or, without that, `X-API-Key: <key>`.
    pub credential: Option<Bytes>,
}

/// Parses one request head from the front of `buf`. On success the head's bytes are consumed;
/// on `Ok(None)` nothing is consumed and more bytes are needed.
pub fn parse_head(buf: &mut BytesMut, limits: &Limits) -> Result<Option<RequestHead>, HeadError> {
    // Uninitialised slots: initialising 100 headers per request cost more than parsing them.
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let parsed = req.parse_with_uninit_headers(buf, &mut headers);
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return partial(buf, limits),
        Err(httparse::Error::Version) => return version_error(buf, limits),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::HeadersTooLarge),
        Err(_) => return Err(HeadError::BadRequest("malformed request head")),
    };
    if len > limits.max_head_bytes {
        return Err(HeadError::HeadersTooLarge);
    }
    if has_bare_lf(buf, len, req.path.unwrap_or_default(), req.headers) {
        // httparse accepts them; the chunked decoder and many proxies do not. One reading of
        // the line endings for every part of a request (RFC 9112 §2.2 allows refusing them).
        return Err(HeadError::BadRequest("bare LF line ending"));
    }
    let method = req.method.unwrap_or_default();
    let method = Method::from_token(method).ok_or(HeadError::MethodNotImplemented)?;
    let target = req.path.unwrap_or_default();
    if target.len() > limits.max_uri_bytes {
        return Err(HeadError::UriTooLong);
    }
    let minor_version = req.version.unwrap_or(1);
    let path = target_path(target, method)?;
    let path_range = subslice_range(buf, path.as_bytes());
    let query_range = target_query(target).map(|q| subslice_range(buf, q.as_bytes()));
    let fields = Fields::scan(req.headers, buf)?;
    if minor_version == 1 && fields.hosts != 1 {
        return Err(HeadError::BadRequest("exactly one Host header is required"));
    }
    if minor_version == 0 && fields.te_fields > 0 {
        // An HTTP/1.0 peer cannot mean chunked; treat it as the smuggling attempt it looks like.
        return Err(HeadError::BadRequest(
            "Transfer-Encoding in an HTTP/1.0 request",
        ));
    }
    let framing = fields.framing()?;
    let keep_alive = match minor_version {
        0 => fields.conn_keep_alive && !fields.conn_close,
        _ => !fields.conn_close,
    };
    let head_bytes = buf.split_to(len).freeze();
    Ok(Some(RequestHead {
        method,
        path: head_bytes.slice(path_range),
        query: query_range.map(|r| head_bytes.slice(r)),
        minor_version,
        keep_alive,
        framing,
        expect_continue: fields.expect_continue,
        content_type: fields.content_type.map(|r| head_bytes.slice(r)),
        prefer: fields.prefer.map(|r| head_bytes.slice(r)),
        idempotency_key: fields.idempotency_key.map(|r| head_bytes.slice(r)),
        content_encoded: fields.content_encoded,
        credential: fields.bearer.or(fields.api_key).map(|r| head_bytes.slice(r)),
    }))
}

/// Whether a line of the head `buf[..len]` ends in LF without CR. Every LF of a head httparse
/// parsed ends a line (the request line, a field line, the empty line), so it is enough to look
/// at where each line ends: after the target and version, after each field value (and any
/// trailing blanks), and the last two bytes.
fn has_bare_lf(buf: &[u8], len: usize, target: &str, headers: &[httparse::Header<'_>]) -> bool {
    let head = &buf[..len];
    let crlf_at = |from: usize| {
        let rest = head.get(from..).unwrap_or_default();
        let blanks = rest.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
        rest.get(blanks..blanks + 2) == Some(&b"\r\n"[..])
    };
    let end_of = |part: &[u8]| {
        let start = (part.as_ptr() as usize).wrapping_sub(head.as_ptr() as usize);
        (start <= len && part.len() <= len - start).then_some(start + part.len())
    };
    // The target is followed by " HTTP/1.x" (9 bytes).
    let ends = std::iter::once(end_of(target.as_bytes()).map(|e| e + 9))
        .chain(headers.iter().map(|h| end_of(h.value)));
    for end in ends {
        match end {
            Some(e) if crlf_at(e) => {}
            Some(_) => return true,
            // A part not inside the head (an empty slice httparse did not place): look at
            // every byte instead.
            None => return head.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r') || head.first() == Some(&b'\n'),
        }
    }
    !head.ends_with(b"\r\n\r\n")
}

/// An incomplete head: fine unless it is already over a limit.
fn partial(buf: &[u8], limits: &Limits) -> Result<Option<RequestHead>, HeadError> {
    if buf.len() <= limits.max_head_bytes {
        return Ok(None);
    }
    // Over the head limit: blame the URI if the request line itself never ended.
    let line_window = &buf[..buf.len().min(limits.max_uri_bytes + 32)];
    if !line_window.contains(&b'\n') {
        Err(HeadError::UriTooLong)
    } else {
        Err(HeadError::HeadersTooLarge)
    }
}

/// httparse only knows HTTP/1.0 and 1.1. HTTP/2+ on this connection is a 505; a later 1.x minor
/// is served as 1.1 (RFC 9112 §2.3), by patching the digit and parsing again.
fn version_error(buf: &mut BytesMut, limits: &Limits) -> Result<Option<RequestHead>, HeadError> {
    let line_end = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
    let line = &buf[..line_end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Some(v) = line.len().checked_sub(8).map(|at| &line[at..]) else {
        return Err(HeadError::BadRequest("malformed request line"));
    };
    match v {
        // Only 1.2-1.9: after the patch the line ends in "HTTP/1.1", so a second version error
        // on it cannot come back here (it did, for ever, when the error was elsewhere in the
        // line: found by the http_conn fuzz target).
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', d] if (b'2'..=b'9').contains(d) => {
            let at = line.len() - 1;
            buf[at] = b'1';
            parse_head(buf, limits)
        }
        [b'H', b'T', b'T', b'P', b'/', d, b'.', m]
            if (b'2'..=b'9').contains(d) && m.is_ascii_digit() =>
        {
            Err(HeadError::VersionNotSupported)
        }
        _ => Err(HeadError::BadRequest("malformed request line")),
    }
}

/// The path part of the request target (RFC 9112 §3.2).
fn target_path(target: &str, method: Method) -> Result<&str, HeadError> {
    let path = if target.starts_with('/') {
        target
    } else if target == "*" {
        if method != Method::Options {
            return Err(HeadError::BadRequest("asterisk-form is only for OPTIONS"));
        }
        target
    } else if let Some(rest) = strip_scheme(target) {
        // absolute-form: drop the authority.
        match rest.find('/') {
            Some(at) => &rest[at..],
            None => return Ok("/"),
        }
    } else {
        return Err(HeadError::BadRequest("malformed request target"));
    };
    let end = path.bytes().position(|b| b == b'?' || b == b'#');
    Ok(end.map_or(path, |at| &path[..at]))
}

/// The query part of the request target, if any.
fn target_query(target: &str) -> Option<&str> {
    let rest = &target[target.find('?')? + 1..];
    Some(rest.find('#').map_or(rest, |at| &rest[..at]))
}

fn strip_scheme(target: &str) -> Option<&str> {
    let lower = |p: &str| target.len() >= p.len() && target[..p.len()].eq_ignore_ascii_case(p);
    if lower("http://") {
        Some(&target[7..])
    } else if lower("https://") {
        Some(&target[8..])
    } else {
        None
    }
}

/// The range of `inner` within `outer`; "/" (a static) maps to an empty range, handled by caller.
pub(super) fn subslice_range(outer: &[u8], inner: &[u8]) -> std::ops::Range<usize> {
    let start = (inner.as_ptr() as usize).wrapping_sub(outer.as_ptr() as usize);
    if start <= outer.len() && start + inner.len() <= outer.len() {
        start..start + inner.len()
    } else {
        // Not inside `outer` (the static "/" of an authority-only target): find it in the buffer.
        let at = outer.iter().position(|&b| b == b'/').unwrap_or(0);
        at..at + inner.len().min(1)
    }
}
