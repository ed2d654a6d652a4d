//! The client side of HTTP/1.1, sans-IO: request encoding into a caller's buffer and response
//! framing over whatever bytes have arrived (split anywhere, several pipelined responses in a
//! row). Bodies are framed by `Content-Length` only: OpenHQM and the null server always send it,
//! and chunked or read-until-close responses are reported as unsupported rather than guessed at.
//! Also the two body fields the scenarios read (`correlation_id`, `status`), found by a scan of
//! the compact JSON the broker writes, without building a document per response.

/// One complete response at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Bytes of the head, including the blank line (and of any 1xx heads before it).
    pub head_len: usize,
    /// Bytes of the body after the head.
    pub body_len: usize,
    /// The server said `Connection: close` (or it is HTTP/1.0 without keep-alive): nothing more
    /// will be answered on this connection.
    pub close: bool,
}

impl Response {
    /// Bytes this response takes in the buffer.
    pub fn len(&self) -> usize {
        self.head_len + self.body_len
    }

    /// The body, given the buffer the response was parsed from.
    pub fn body<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.head_len..self.len()]
    }
}

/// Why a response could not be framed; the connection cannot be used after any of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Not HTTP: httparse refused the head.
    Malformed(String),
    /// Framing this client does not do (chunked, no length, a bad length).
    Unsupported(&'static str),
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::Malformed(why) => write!(f, "malformed response: {why}"),
            ParseError::Unsupported(why) => write!(f, "unsupported response: {why}"),
        }
    }
}

const MAX_HEADERS: usize = 64;

/// Frames the first response in `buf`: `Ok(None)` until all of its head and body are there.
/// Interim `1xx` responses before it are skipped (counted into `head_len`).
pub fn parse_response(buf: &[u8]) -> Result<Option<Response>, ParseError> {
    let mut offset = 0;
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        let head = match resp.parse(&buf[offset..]) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(ParseError::Malformed(e.to_string())),
        };
        let status = resp.code.unwrap_or(0);
        if (100..200).contains(&status) && status != 101 {
            offset += head;
            continue;
        }
        let mut length: Option<usize> = None;
        let mut close = resp.version == Some(0);
        for h in resp.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                let n = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse().ok())
                    .ok_or(ParseError::Unsupported("bad content-length"))?;
                if length.is_some_and(|l| l != n) {
                    return Err(ParseError::Unsupported("conflicting content-length"));
                }
                length = Some(n);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                return Err(ParseError::Unsupported("transfer-encoding"));
            } else if h.name.eq_ignore_ascii_case("connection") {
                let v = h.value;
                if contains_token(v, b"close") {
                    close = true;
                } else if contains_token(v, b"keep-alive") {
                    close = false;
                }
            }
        }
        let body_len = match (status, length) {
            (204 | 304, _) => 0,
            (_, Some(n)) => n,
            (_, None) => return Err(ParseError::Unsupported("no content-length")),
        };
        let head_len = offset + head;
        if buf.len() < head_len + body_len {
            return Ok(None);
        }
        return Ok(Some(Response {
            status,
            head_len,
            body_len,
            close,
        }));
    }
}

fn contains_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// Appends `GET {path} HTTP/1.1` with a `Host` header.
pub fn encode_get(out: &mut Vec<u8>, path: &[u8], host: &str) {
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(path);
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
}

/// Appends `POST {path}` with a JSON body.
pub fn encode_post_json(
    out: &mut Vec<u8>,
    path: &[u8],
    host: &str,
    body: &[u8],
    header: Option<(&str, &str)>,
) {
    out.extend_from_slice(b"POST ");
    out.extend_from_slice(path);
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(host.as_bytes());
    if let Some((name, value)) = header {
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
    }
    out.extend_from_slice(b"\r\ncontent-type: application/json\r\ncontent-length: ");
    out.extend_from_slice(body.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
}

/// The string value of a top-level-looking `"name": "value"` pair in a JSON body (no escapes in
/// the value: ids and status names have none). The first occurrence wins.
pub fn json_str_field<'a>(body: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let mut key = Vec::with_capacity(name.len() + 2);
    key.push(b'"');
    key.extend_from_slice(name.as_bytes());
    key.push(b'"');
    let at = find(body, &key)? + key.len();
    let rest = body[at..].trim_ascii_start().strip_prefix(b":")?;
    let rest = rest.trim_ascii_start().strip_prefix(b"\"")?;
    let end = rest.iter().position(|&b| b == b'"' || b == b'\\')?;
    (rest[end] == b'"').then_some(&rest[..end])
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &[u8] = b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: 5\r\n\r\nhello";
    const B: &[u8] = b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}";

    #[test]
    fn frames_a_whole_response() {
        let r = parse_response(A).unwrap().unwrap();
        assert_eq!(r.status, 202);
        assert_eq!(r.len(), A.len());
        assert_eq!(r.body(A), b"hello");
        assert!(!r.close);
    }

    #[test]
    fn waits_for_every_split_point() {
        // Every prefix is incomplete (head or body), the whole is complete.
        for cut in 0..A.len() {
            assert_eq!(parse_response(&A[..cut]), Ok(None), "cut at {cut}");
        }
        assert!(parse_response(A).unwrap().is_some());
    }

    #[test]
    fn frames_pipelined_responses_one_after_another() {
        let mut buf = Vec::new();
        buf.extend_from_slice(A);
        buf.extend_from_slice(B);
        buf.extend_from_slice(A);
        buf.extend_from_slice(&B[..10]); // the start of a fourth
        let mut at = 0;
        let mut seen = Vec::new();
        while let Some(r) = parse_response(&buf[at..]).unwrap() {
            seen.push((r.status, r.body(&buf[at..]).to_vec()));
            at += r.len();
        }
        assert_eq!(
            seen,
            vec![
                (202, b"hello".to_vec()),
                (404, b"{}".to_vec()),
                (202, b"hello".to_vec())
            ]
        );
        assert_eq!(at, 2 * A.len() + B.len());
    }

    #[test]
    fn skips_interim_responses_and_sees_close() {
        let mut buf = b"HTTP/1.1 100 Continue\r\n\r\n".to_vec();
        buf.extend_from_slice(b"HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 0\r\n\r\n");
        let r = parse_response(&buf).unwrap().unwrap();
        assert_eq!((r.status, r.len(), r.close), (200, buf.len(), true));
        let r = parse_response(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").unwrap();
        assert!(r.unwrap().close, "HTTP/1.0 closes by default");
    }

    #[test]
    fn refuses_framing_it_cannot_follow() {
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        assert!(matches!(
            parse_response(chunked),
            Err(ParseError::Unsupported(_))
        ));
        let no_len = b"HTTP/1.1 200 OK\r\n\r\n";
        assert!(matches!(
            parse_response(no_len),
            Err(ParseError::Unsupported(_))
        ));
        let two = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab";
        assert!(matches!(
            parse_response(two),
            Err(ParseError::Unsupported(_))
        ));
        assert!(matches!(
            parse_response(b"SSH-2.0-x\r\n\r\n"),
            Err(ParseError::Malformed(_))
        ));
        // 204 has no body even without a length.
        let r = parse_response(b"HTTP/1.1 204 No Content\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(r.body_len, 0);
    }

    #[test]
    fn encodes_requests() {
        let mut out = Vec::new();
        encode_get(&mut out, b"/x", "h:1");
        assert_eq!(out, b"GET /x HTTP/1.1\r\nhost: h:1\r\n\r\n");
        out.clear();
        encode_post_json(&mut out, b"/s", "h", b"{}", Some(("prefer", "wait=5")));
        assert_eq!(
            out,
            b"POST /s HTTP/1.1\r\nhost: h\r\nprefer: wait=5\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
                .to_vec()
        );
        // What we encode, a server-side parser reads back whole.
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut req = httparse::Request::new(&mut headers);
        assert_eq!(
            req.parse(&out).unwrap(),
            httparse::Status::Complete(out.len() - 2)
        );
    }

    #[test]
    fn reads_string_fields() {
        let body =
            br#"{"correlation_id":"550e8400-e29b-41d4-a716-446655440000","status" : "PENDING"}"#;
        assert_eq!(
            json_str_field(body, "correlation_id"),
            Some(&b"550e8400-e29b-41d4-a716-446655440000"[..])
        );
        assert_eq!(json_str_field(body, "status"), Some(&b"PENDING"[..]));
        assert_eq!(json_str_field(body, "result"), None);
        assert_eq!(json_str_field(br#"{"status":null}"#, "status"), None);
        assert_eq!(json_str_field(br#"{"status":"a\"b"}"#, "status"), None);
    }
}
