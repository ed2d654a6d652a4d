//! Writing one HTTP/1.1 request to an upstream, sans-IO. Header names and values that come from
//! clients (forwarded headers) are checked here, so none can end a line early and smuggle a
//! header or a second request in.

use bytes::{BufMut, BytesMut};

/// One request to send. Its `Debug` names the headers but leaves their values out: one of
/// them carries the auth secret.
#[derive(Clone, Copy)]
pub struct UpstreamRequest<'a> {
    /// `GET`, `POST`, …: a token.
    pub method: &'a str,
    /// The request target: path and query (`/invoice?x=1`).
    pub target: &'a str,
    /// The `Host` header value.
    pub host: &'a str,
    /// Further headers, in order. `Host`, `Content-Length`, `Transfer-Encoding` and
    /// `Connection` are the encoder's and may not be among them.
    pub headers: &'a [(&'a str, &'a [u8])],
    /// The body, always sent with `Content-Length` (0 when empty).
    pub body: &'a [u8],
}

impl std::fmt::Debug for UpstreamRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| *n).collect();
        f.debug_struct("UpstreamRequest")
            .field("method", &self.method)
            .field("target", &self.target)
            .field("host", &self.host)
            .field("headers", &names)
            .field("body_bytes", &self.body.len())
            .finish()
    }
}

/// Why a request cannot be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// The method is not a token.
    Method,
    /// The target is empty, does not start with `/`, or holds a control character or space.
    Target,
    /// This header's name is not a token, its value holds CR, LF or NUL, or the encoder owns it.
    Header(String),
}

/// Appends `req` to `out`.
pub fn encode(req: &UpstreamRequest<'_>, out: &mut BytesMut) -> Result<(), RequestError> {
    if req.method.is_empty() || !req.method.bytes().all(is_token) {
        return Err(RequestError::Method);
    }
    if !req.target.starts_with('/') || req.target.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(RequestError::Target);
    }
    if req.host.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(RequestError::Header("host".to_owned()));
    }
    for (name, value) in req.headers {
        let owned = ["host", "content-length", "transfer-encoding", "connection"];
        if !is_header_name(name)
            || owned.iter().any(|o| name.eq_ignore_ascii_case(o))
            || !is_header_value(value)
        {
            return Err(RequestError::Header((*name).to_owned()));
        }
    }
    out.reserve(128 + req.body.len());
    out.put_slice(req.method.as_bytes());
    out.put_u8(b' ');
    out.put_slice(req.target.as_bytes());
    out.put_slice(b" HTTP/1.1\r\nhost: ");
    out.put_slice(req.host.as_bytes());
    for (name, value) in req.headers {
        out.put_slice(b"\r\n");
        out.put_slice(name.as_bytes());
        out.put_slice(b": ");
        out.put_slice(value);
    }
    out.put_slice(b"\r\ncontent-length: ");
    out.put_slice(itoa::Buffer::new().format(req.body.len()).as_bytes());
    out.put_slice(b"\r\n\r\n");
    out.put_slice(req.body);
    Ok(())
}

/// A header name this encoder writes: a non-empty RFC 9110 token.
pub fn is_header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(is_token)
}

/// A header value that cannot end its line early: no CR, LF or NUL.
pub fn is_header_value(value: &[u8]) -> bool {
    !value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0)
}

/// RFC 9110 `tchar`.
fn is_token(b: u8) -> bool {
    matches!(
        b,
        b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z' | b'!' | b'#' | b'$' | b'%' | b'&' | b'\''
            | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(headers: &'a [(&'a str, &'a [u8])]) -> UpstreamRequest<'a> {
        UpstreamRequest {
            method: "POST",
            target: "/invoice?x=1",
            host: "127.0.0.1:9000",
            headers,
            body: br#"{"a":1}"#,
        }
    }

    #[test]
    fn writes_a_request_with_its_length() {
        let mut out = BytesMut::new();
        let headers: &[(&str, &[u8])] = &[("X-Correlation-ID", b"abc"), ("Accept", b"*/*")];
        encode(&req(headers), &mut out).unwrap();
        assert_eq!(
            &out[..],
            &b"POST /invoice?x=1 HTTP/1.1\r\nhost: 127.0.0.1:9000\r\nX-Correlation-ID: abc\r\nAccept: */*\r\ncontent-length: 7\r\n\r\n{\"a\":1}"[..]
        );
    }

    #[test]
    fn tokens_are_the_rfc_9110_tchars() {
        for b in 0..=255u8 {
            let tchar = b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
            assert_eq!(is_token(b), tchar, "byte {b:#04x}");
        }
    }

    #[test]
    fn nothing_can_be_smuggled_in() {
        let bad: &[(&str, &[u8])] = &[
            ("X-A", b"1\r\nX-Injected: 2"),
            ("X-A", b"1\nX"),
            ("X-A", b"a\0b"),
            ("X A", b"1"),
            ("X:A", b"1"),
            ("", b"1"),
            ("Content-Length", b"0"),
            ("transfer-encoding", b"chunked"),
            ("Host", b"evil"),
            ("Connection", b"close"),
        ];
        for h in bad {
            let mut out = BytesMut::new();
            let one = [*h];
            assert_eq!(
                encode(&req(&one), &mut out),
                Err(RequestError::Header(h.0.to_owned())),
                "{h:?}"
            );
            assert!(out.is_empty(), "nothing written for {h:?}");
        }
        let mut out = BytesMut::new();
        let mut r = req(&[]);
        r.method = "PO ST";
        assert_eq!(encode(&r, &mut out), Err(RequestError::Method));
        r.method = "POST";
        r.target = "/a b";
        assert_eq!(encode(&r, &mut out), Err(RequestError::Target));
        r.target = "a";
        assert_eq!(encode(&r, &mut out), Err(RequestError::Target));
    }
}
