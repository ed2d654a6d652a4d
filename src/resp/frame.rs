//! RESP2 replies, sans-IO: [`Frame::decode`] takes bytes and returns a frame and how many bytes it
//! used, "need more" (`Ok(None)`), or an error. Bounded: bulk strings up to [`MAX_BULK`], arrays up
//! to [`MAX_ELEMENTS`] elements and [`MAX_DEPTH`] levels, so a broken or hostile peer cannot make
//! the broker allocate without limit or recurse off the stack. Never panics on any input.

use bytes::Bytes;

/// Largest bulk string accepted (Redis's own `proto-max-bulk-len` default).
pub const MAX_BULK: usize = 512 * 1024 * 1024;
/// Most elements in one array.
pub const MAX_ELEMENTS: usize = 1 << 20;
/// Deepest array nesting (stream replies nest 4 levels).
pub const MAX_DEPTH: usize = 16;

/// One RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// `+OK`
    Simple(Bytes),
    /// `-ERR message`: the error code and message, as Redis sent it.
    Error(Bytes),
    /// `:42`
    Integer(i64),
    /// `$5\r\nhello`; `None` for the null bulk `$-1`.
    Bulk(Option<Bytes>),
    /// `*2\r\n...`; `None` for the null array `*-1`.
    Array(Option<Vec<Frame>>),
}

/// A reply that is not RESP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolError {
    /// Unknown type byte.
    UnknownType(u8),
    /// A length or integer that does not parse.
    BadNumber,
    /// A length over the limits.
    TooLarge,
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// A bulk string not followed by CRLF.
    MissingCrlf,
}

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProtocolError::UnknownType(b) => write!(f, "unknown RESP type byte 0x{b:02x}"),
            ProtocolError::BadNumber => f.write_str("malformed RESP number"),
            ProtocolError::TooLarge => f.write_str("RESP length over the limit"),
            ProtocolError::TooDeep => f.write_str("RESP nesting over the limit"),
            ProtocolError::MissingCrlf => f.write_str("RESP bulk string without CRLF"),
        }
    }
}

impl Frame {
    /// Decodes one frame from the front of `buf`: `Ok(Some((frame, used)))`, `Ok(None)` when more
    /// bytes are needed, or an error (the connection cannot be trusted after one).
    pub fn decode(buf: &Bytes) -> Result<Option<(Frame, usize)>, ProtocolError> {
        let mut pos = 0;
        match decode_at(buf, &mut pos, 0)? {
            Some(frame) => Ok(Some((frame, pos))),
            None => Ok(None),
        }
    }

    /// The error text, if this is an error reply.
    pub fn error_text(&self) -> Option<&[u8]> {
        match self {
            Frame::Error(e) => Some(e),
            _ => None,
        }
    }

    /// The bytes of a simple or bulk string.
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match self {
            Frame::Simple(b) | Frame::Bulk(Some(b)) => Some(b),
            _ => None,
        }
    }

    /// The elements of a non-null array.
    pub fn as_array(&self) -> Option<&[Frame]> {
        match self {
            Frame::Array(Some(items)) => Some(items),
            _ => None,
        }
    }

    /// Takes the elements of a non-null array.
    pub fn into_array(self) -> Option<Vec<Frame>> {
        match self {
            Frame::Array(Some(items)) => Some(items),
            _ => None,
        }
    }
}

/// Reads the line starting at `*pos` (without CRLF) and moves past it.
fn line<'a>(buf: &'a [u8], pos: &mut usize) -> Option<&'a [u8]> {
    let rest = &buf[*pos..];
    let mut from = 0;
    loop {
        let cr = from + rest[from..].iter().position(|&b| b == b'\r')?;
        match rest.get(cr + 1) {
            Some(b'\n') => {
                *pos += cr + 2;
                return Some(&rest[..cr]);
            }
            Some(_) => from = cr + 1,
            None => return None,
        }
    }
}

/// A decimal integer as `i64::from_str` reads it (optional sign, digits, no overflow), without
/// the UTF-8 check and `str` machinery: every array and bulk header goes through here.
fn number(text: &[u8]) -> Result<i64, ProtocolError> {
    let (negative, digits) = match text {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, text),
    };
    if digits.is_empty() {
        return Err(ProtocolError::BadNumber);
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return Err(ProtocolError::BadNumber);
        }
        let d = i64::from(d - b'0');
        v = v.checked_mul(10).ok_or(ProtocolError::BadNumber)?;
        v = if negative {
            v.checked_sub(d)
        } else {
            v.checked_add(d)
        }
        .ok_or(ProtocolError::BadNumber)?;
    }
    Ok(v)
}

fn decode_at(buf: &Bytes, pos: &mut usize, depth: usize) -> Result<Option<Frame>, ProtocolError> {
    if depth > MAX_DEPTH {
        return Err(ProtocolError::TooDeep);
    }
    let Some(&kind) = buf.get(*pos) else {
        return Ok(None);
    };
    let start = *pos;
    *pos += 1;
    let Some(text) = line(buf, pos) else {
        *pos = start;
        return Ok(None);
    };
    let frame = match kind {
        b'+' => Frame::Simple(buf.slice_ref(text)),
        b'-' => Frame::Error(buf.slice_ref(text)),
        b':' => Frame::Integer(number(text)?),
        b'$' => {
            let len = number(text)?;
            if len == -1 {
                Frame::Bulk(None)
            } else if len < 0 || len as usize > MAX_BULK {
                return Err(ProtocolError::TooLarge);
            } else {
                let len = len as usize;
                if buf.len() < *pos + len + 2 {
                    *pos = start;
                    return Ok(None);
                }
                if &buf[*pos + len..*pos + len + 2] != b"\r\n" {
                    return Err(ProtocolError::MissingCrlf);
                }
                let data = buf.slice(*pos..*pos + len);
                *pos += len + 2;
                Frame::Bulk(Some(data))
            }
        }
        b'*' => {
            let n = number(text)?;
            if n == -1 {
                Frame::Array(None)
            } else if n < 0 || n as usize > MAX_ELEMENTS {
                return Err(ProtocolError::TooLarge);
            } else {
                // Capacity bounded by what the buffer could hold, not by the peer's claim.
                let mut items = Vec::with_capacity((n as usize).min((buf.len() - *pos) / 3 + 1));
                for _ in 0..n {
                    match decode_at(buf, pos, depth + 1)? {
                        Some(item) => items.push(item),
                        None => {
                            *pos = start;
                            return Ok(None);
                        }
                    }
                }
                Frame::Array(Some(items))
            }
        }
        other => return Err(ProtocolError::UnknownType(other)),
    };
    Ok(Some(frame))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn decode_table() {
        let cases: Vec<(&str, Frame)> = vec![
            ("+OK\r\n", Frame::Simple(b("OK"))),
            ("-ERR no\r\n", Frame::Error(b("ERR no"))),
            (":-12\r\n", Frame::Integer(-12)),
            ("$5\r\nhe\r\no\r\n", Frame::Bulk(Some(b("he\r\no")))),
            ("$0\r\n\r\n", Frame::Bulk(Some(b("")))),
            ("$-1\r\n", Frame::Bulk(None)),
            ("*-1\r\n", Frame::Array(None)),
            ("*0\r\n", Frame::Array(Some(vec![]))),
            (
                "*2\r\n$1\r\na\r\n*1\r\n:1\r\n",
                Frame::Array(Some(vec![
                    Frame::Bulk(Some(b("a"))),
                    Frame::Array(Some(vec![Frame::Integer(1)])),
                ])),
            ),
        ];
        for (wire, want) in cases {
            let buf = b(wire);
            assert_eq!(
                Frame::decode(&buf),
                Ok(Some((want, wire.len()))),
                "{wire:?}"
            );
        }
    }

    #[test]
    fn numbers_read_as_i64_from_str_reads_them() {
        for text in [
            "0",
            "-0",
            "+0",
            "7",
            "-7",
            "+7",
            "42",
            "9223372036854775807",
            "-9223372036854775808",
            "9223372036854775808",
            "-9223372036854775809",
            "",
            "-",
            "+",
            "1a",
            " 1",
            "1 ",
            "--1",
            "+-1",
            "00012",
            "99999999999999999999",
        ] {
            let want = text.parse::<i64>().map_err(|_| ProtocolError::BadNumber);
            assert_eq!(number(text.as_bytes()), want, "{text:?}");
        }
    }

    #[test]
    fn lines_end_at_the_first_crlf_only() {
        let buf = b"a\rb\r\nc\r\n";
        let mut pos = 0;
        assert_eq!(line(buf, &mut pos), Some(&b"a\rb"[..]));
        assert_eq!(line(buf, &mut pos), Some(&b"c"[..]));
        let mut pos = 0;
        assert_eq!(line(b"ab\r", &mut pos), None);
        assert_eq!(line(b"a\rb", &mut pos), None);
        assert_eq!(pos, 0);
    }

    #[test]
    fn every_prefix_needs_more_and_the_whole_decodes() {
        let wire = b("*3\r\n$3\r\nfoo\r\n*2\r\n:7\r\n$-1\r\n+PONG\r\n");
        for cut in 0..wire.len() {
            assert_eq!(Frame::decode(&wire.slice(..cut)), Ok(None), "cut at {cut}");
        }
        let (frame, used) = Frame::decode(&wire).unwrap().unwrap();
        assert_eq!(used, wire.len());
        assert_eq!(frame.as_array().unwrap().len(), 3);
    }

    #[test]
    fn errors_and_limits() {
        let cases: &[(&str, ProtocolError)] = &[
            ("?x\r\n", ProtocolError::UnknownType(b'?')),
            (":abc\r\n", ProtocolError::BadNumber),
            ("$-2\r\n", ProtocolError::TooLarge),
            ("$999999999999\r\n", ProtocolError::TooLarge),
            ("*99999999\r\n", ProtocolError::TooLarge),
            ("$2\r\nabcd\r\n", ProtocolError::MissingCrlf),
        ];
        for (wire, want) in cases {
            assert_eq!(Frame::decode(&b(wire)), Err(*want), "{wire:?}");
        }
        let deep = "*1\r\n".repeat(MAX_DEPTH + 2) + ":1\r\n";
        assert_eq!(Frame::decode(&b(&deep)), Err(ProtocolError::TooDeep));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A small deterministic fuzz: random bytes drawn from RESP's alphabet.
        let alphabet = b"+-:$*\r\n0123456789-abc";
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            let len = (x % 24) as usize;
            let mut v = Vec::with_capacity(len);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                v.push(alphabet[(x % alphabet.len() as u64) as usize]);
            }
            let buf = Bytes::from(v);
            if let Ok(Some((_, used))) = Frame::decode(&buf) {
                assert!(used <= buf.len());
            }
        }
    }
}
