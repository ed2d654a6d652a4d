//! The header fields a request head is read for, gathered in one pass over httparse's output:
//! host, framing (`Content-Length`, `Transfer-Encoding`, with the smuggling cases refused),
//! `Connection`, `Expect`, and the values the endpoints read (`Content-Type`, `Prefer`,
//! `Idempotency-Key`, the API key).

use super::parse::{subslice_range, Framing};
use super::HeadError;

/// What the header fields say, gathered in one pass.
#[derive(Default)]
pub(super) struct Fields {
    pub(super) hosts: u32,
    content_length: Option<u64>,
    length_fields: u32,
    te_chunked: u32,
    te_chunked_last: bool,
    te_unknown: bool,
    pub(super) te_fields: u32,
    pub(super) conn_close: bool,
    pub(super) conn_keep_alive: bool,
    pub(super) expect_continue: bool,
    pub(super) content_type: Option<std::ops::Range<usize>>,
    pub(super) prefer: Option<std::ops::Range<usize>>,
    pub(super) idempotency_key: Option<std::ops::Range<usize>>,
    pub(super) content_encoded: bool,
    pub(super) bearer: Option<std::ops::Range<usize>>,
    pub(super) api_key: Option<std::ops::Range<usize>>,
}

impl Fields {
    pub(super) fn scan(headers: &[httparse::Header<'_>], buf: &[u8]) -> Result<Fields, HeadError> {
        let mut f = Fields::default();
        for h in headers {
            let name = h.name.as_bytes();
            // httparse refuses NUL (and other controls but HTAB) in values: see the tests.
            let value = trim(h.value);
            let is = |want: &[u8]| name.eq_ignore_ascii_case(want);
            if is(b"host") {
                f.hosts += 1;
                if !value.iter().all(|&b| is_host_byte(b)) {
                    return Err(HeadError::BadRequest("invalid Host header"));
                }
            } else if is(b"content-length") {
                f.length_fields += 1;
                for item in value.split(|&b| b == b',') {
                    let n = parse_length(trim(item))?;
                    if f.content_length.is_some_and(|prev| prev != n) {
                        return Err(HeadError::BadRequest("conflicting Content-Length"));
                    }
                    f.content_length = Some(n);
                }
            } else if is(b"transfer-encoding") {
                f.te_fields += 1;
                for coding in value.split(|&b| b == b',').map(trim) {
                    if coding.is_empty() {
                        continue;
                    }
                    let chunked = coding.eq_ignore_ascii_case(b"chunked");
                    f.te_chunked += u32::from(chunked);
                    f.te_unknown |= !chunked;
                    f.te_chunked_last = chunked;
                }
            } else if is(b"connection") {
                for token in value.split(|&b| b == b',').map(trim) {
                    f.conn_close |= token.eq_ignore_ascii_case(b"close");
                    f.conn_keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            } else if is(b"expect") {
                if !value.eq_ignore_ascii_case(b"100-continue") {
                    return Err(HeadError::ExpectationFailed);
                }
                f.expect_continue = true;
            } else if is(b"content-type") {
                f.content_type = Some(subslice_range(buf, value));
            } else if is(b"prefer") {
                f.prefer = Some(subslice_range(buf, value));
            } else if is(b"idempotency-key") {
                f.idempotency_key = Some(subslice_range(buf, value));
            } else if is(b"authorization") {
                // RFC 9110 §11.1: the scheme is case-insensitive; one or more spaces follow it.
                if value.len() > 7 && value[..7].eq_ignore_ascii_case(b"bearer ") {
                    f.bearer = Some(subslice_range(buf, trim(&value[7..])));
                }
            } else if is(b"x-api-key") {
                f.api_key = Some(subslice_range(buf, value));
            } else if is(b"content-encoding") {
                f.content_encoded |= !value.is_empty() && !value.eq_ignore_ascii_case(b"identity");
            }
        }
        Ok(f)
    }

    /// RFC 9112 §6.1 and §6.3: the framing, or the smuggling case it would open.
    pub(super) fn framing(&self) -> Result<Framing, HeadError> {
        if self.te_fields > 0 {
            if self.length_fields > 0 {
                return Err(HeadError::BadRequest(
                    "both Content-Length and Transfer-Encoding",
                ));
            }
            if self.te_chunked > 1 {
                return Err(HeadError::BadRequest("chunked applied more than once"));
            }
            if self.te_chunked == 1 && !self.te_chunked_last {
                return Err(HeadError::BadRequest(
                    "chunked is not the final transfer coding",
                ));
            }
            if self.te_unknown {
                return Err(HeadError::UnknownTransferCoding);
            }
            if self.te_chunked == 0 {
                return Err(HeadError::BadRequest("empty Transfer-Encoding"));
            }
            return Ok(Framing::Chunked);
        }
        Ok(match self.content_length {
            Some(0) | None => Framing::Empty,
            Some(n) => Framing::Length(n),
        })
    }
}

/// `1*DIGIT`, no sign, no spaces, no overflow (RFC 9112 §6.3 rule 5).
fn parse_length(v: &[u8]) -> Result<u64, HeadError> {
    const BAD: HeadError = HeadError::BadRequest("invalid Content-Length");
    if v.is_empty() || v.len() > 19 {
        return Err(BAD);
    }
    v.iter().try_fold(0u64, |acc, &b| match b {
        b'0'..=b'9' => Ok(acc * 10 + u64::from(b - b'0')),
        _ => Err(BAD),
    })
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &v[start..end]
}

/// reg-name / IP-literal / port characters (RFC 3986 §3.2.2), nothing that could start a path.
fn is_host_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:[]%".contains(&b)
}
