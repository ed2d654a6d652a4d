//! Response encoding: a [`Response`] value written as an HTTP/1.1 message into the connection's
//! output buffer. Heads are assembled from fixed pieces with no formatting machinery; the `Date`
//! value is cached per second (`clock::http_date_now`).

use bytes::{BufMut, BytesMut};

use crate::clock;

/// The body's media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentType {
    /// `application/json`
    Json,
    /// Prometheus text format 0.0.4.
    Prometheus,
}

impl ContentType {
    const fn header_value(self) -> &'static [u8] {
        match self {
            ContentType::Json => b"application/json",
            ContentType::Prometheus => b"text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// A short header value kept inline (no allocation per response).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HeaderText {
    len: u8,
    bytes: [u8; HeaderText::MAX],
}

impl HeaderText {
    /// The longest value it holds.
    pub const MAX: usize = 64;

    /// `parts` one after the other. Panics past [`HeaderText::MAX`] bytes: callers build values
    /// of known length.
    pub fn concat(parts: &[&[u8]]) -> Self {
        let mut t = HeaderText {
            len: 0,
            bytes: [0; Self::MAX],
        };
        for p in parts {
            let at = t.len as usize;
            t.bytes[at..at + p.len()].copy_from_slice(p);
            t.len += p.len() as u8;
        }
        t
    }

    /// The value.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

impl std::fmt::Debug for HeaderText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

/// One response, before encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Media type of `body`; `None` for an empty body.
    pub content_type: Option<ContentType>,
    /// The body.
    pub body: Vec<u8>,
    /// `Location`, for an accepted submit.
    pub location: Option<HeaderText>,
    /// `Allow` for 405 and OPTIONS.
    pub allow: Option<&'static str>,
    /// `Retry-After` seconds for 503.
    pub retry_after: Option<u32>,
    /// `Preference-Applied: wait=N` (RFC 7240) when a `Prefer: wait` was honoured.
    pub preference_applied_wait: Option<u32>,
    /// `Idempotent-Replayed: true`: the answer of an earlier use of the same idempotency key.
    pub replayed: bool,
    /// Close the connection after this response.
    pub close: bool,
    /// `WWW-Authenticate: Bearer`, for a 401.
    pub www_authenticate: bool,
}

impl Response {
    /// A JSON response.
    pub fn json(status: u16, body: Vec<u8>) -> Self {
        Response {
            status,
            content_type: Some(ContentType::Json),
            body,
            location: None,
            allow: None,
            retry_after: None,
            preference_applied_wait: None,
            replayed: false,
            close: false,
            www_authenticate: false,
        }
    }

    /// Writes the response to `out`. For a HEAD request the body is left out but its length kept
    /// (RFC 9110 §9.3.2).
    pub fn encode(&self, head_only: bool, out: &mut BytesMut) {
        out.reserve(160 + self.body.len());
        out.put_slice(b"HTTP/1.1 ");
        put_u64(out, u64::from(self.status));
        out.put_u8(b' ');
        out.put_slice(reason(self.status).as_bytes());
        out.put_slice(b"\r\ndate: ");
        out.put_slice(&clock::http_date_now());
        if let Some(ct) = self.content_type {
            out.put_slice(b"\r\ncontent-type: ");
            out.put_slice(ct.header_value());
            out.put_slice(b"\r\ncache-control: no-store");
        }
        if self.status != 204 && self.status >= 200 {
            out.put_slice(b"\r\ncontent-length: ");
            put_u64(out, self.body.len() as u64);
        }
        if let Some(location) = &self.location {
            out.put_slice(b"\r\nlocation: ");
            out.put_slice(location.as_bytes());
        }
        if let Some(allow) = self.allow {
            out.put_slice(b"\r\nallow: ");
            out.put_slice(allow.as_bytes());
        }
        if let Some(secs) = self.retry_after {
            out.put_slice(b"\r\nretry-after: ");
            put_u64(out, u64::from(secs));
        }
        if let Some(secs) = self.preference_applied_wait {
            out.put_slice(b"\r\npreference-applied: wait=");
            put_u64(out, u64::from(secs));
        }
        if self.replayed {
            out.put_slice(b"\r\nidempotent-replayed: true");
        }
        if self.www_authenticate {
            out.put_slice(b"\r\nwww-authenticate: Bearer realm=\"openhqm\"");
        }
        if self.close {
            out.put_slice(b"\r\nconnection: close");
        }
        out.put_slice(b"\r\n\r\n");
        if !head_only {
            out.put_slice(&self.body);
        }
    }
}

/// The interim response for `Expect: 100-continue`.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Decimal digits of `v`.
pub fn put_u64(out: &mut BytesMut, v: u64) {
    out.put_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// Reason phrases for the statuses the broker sends.
pub const fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(r: &Response, head_only: bool) -> String {
        let mut out = BytesMut::new();
        r.encode(head_only, &mut out);
        let s = String::from_utf8(out.to_vec()).unwrap();
        // Replace the date so the text is stable.
        let at = s.find("date: ").unwrap() + 6;
        format!("{}<date>{}", &s[..at], &s[at + clock::HTTP_DATE_LEN..])
    }

    #[test]
    fn encodes_a_json_response() {
        let mut r = Response::json(503, b"{\"detail\":\"x\"}".to_vec());
        r.retry_after = Some(1);
        r.close = true;
        assert_eq!(
            text(&r, false),
            "HTTP/1.1 503 Service Unavailable\r\ndate: <date>\r\ncontent-type: application/json\r\n\
             cache-control: no-store\r\ncontent-length: 14\r\nretry-after: 1\r\nconnection: close\r\n\r\n\
             {\"detail\":\"x\"}"
        );
    }

    #[test]
    fn head_keeps_the_length_and_drops_the_body() {
        let r = Response::json(200, b"{}".to_vec());
        assert!(text(&r, true).ends_with("content-length: 2\r\n\r\n"));
    }

    #[test]
    fn location_and_allow() {
        let mut r = Response::json(202, b"{}".to_vec());
        r.location = Some(HeaderText::concat(&[
            b"/api/v1/status/",
            b"550e8400-e29b-41d4-a716-446655440000",
        ]));
        r.allow = Some("POST, OPTIONS");
        let t = text(&r, false);
        assert!(t.contains("\r\nlocation: /api/v1/status/550e8400-e29b-41d4-a716-446655440000\r\n"));
        assert!(t.contains("\r\nallow: POST, OPTIONS\r\n"));
    }

    #[test]
    fn digits() {
        for v in [0u64, 7, 10, 99, 12345, u64::MAX] {
            let mut out = BytesMut::new();
            put_u64(&mut out, v);
            assert_eq!(out, v.to_string().as_bytes());
        }
    }
}
