//! Request-body decoding, sans-IO: `Content-Length` and `chunked` (RFC 9112 §6.3, §7.1).
//! The decoder consumes bytes from the connection's input buffer and appends body bytes to an
//! output buffer; incomplete input is not an error. The size limit is enforced on the decoded body,
//! so an endless chunked body is a 413, never unbounded memory.

use bytes::{Buf, BytesMut};

use super::HeadError;

/// Longest chunk-size line accepted (hex digits plus extensions).
const MAX_CHUNK_LINE: usize = 1024;
/// Most trailer bytes accepted after the last chunk.
const MAX_TRAILERS: usize = 8 * 1024;

/// Body-decoding progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded {
    /// The body is complete.
    Done,
    /// More input is needed.
    NeedMore,
}

/// Decodes one request body.
#[derive(Debug)]
pub enum BodyDecoder {
    /// `remaining` bytes still to come.
    Length {
        /// Bytes still to come.
        remaining: u64,
    },
    /// A chunked body.
    Chunked(Chunked),
}

/// Where a chunked decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkPhase {
    Size,
    Data { remaining: u64 },
    DataEnd,
    Trailers { seen: usize },
    Done,
}

/// State of a chunked body.
#[derive(Debug)]
pub struct Chunked {
    phase: ChunkPhase,
    limit: u64,
    total: u64,
}

impl BodyDecoder {
    /// A decoder for a body of exactly `len` bytes.
    pub fn length(len: u64) -> Self {
        BodyDecoder::Length { remaining: len }
    }

    /// A decoder for a chunked body of at most `limit` decoded bytes.
    pub fn chunked(limit: u64) -> Self {
        BodyDecoder::Chunked(Chunked {
            phase: ChunkPhase::Size,
            limit,
            total: 0,
        })
    }

    /// Moves body bytes from `input` to `out`.
    pub fn decode(
        &mut self,
        input: &mut BytesMut,
        out: &mut BytesMut,
    ) -> Result<Decoded, HeadError> {
        match self {
            BodyDecoder::Length { remaining } => {
                let take = (*remaining).min(input.len() as u64) as usize;
                if out.is_empty() && take as u64 == *remaining {
                    // The whole body is here: hand over the bytes without copying.
                    *out = input.split_to(take);
                } else {
                    // The body arrives in pieces: collect them, sized once for the whole body.
                    if out.is_empty() {
                        out.reserve(*remaining as usize);
                    }
                    out.extend_from_slice(&input[..take]);
                    input.advance(take);
                }
                *remaining -= take as u64;
                Ok(if *remaining == 0 {
                    Decoded::Done
                } else {
                    Decoded::NeedMore
                })
            }
            BodyDecoder::Chunked(c) => c.decode(input, out),
        }
    }
}

impl Chunked {
    fn decode(&mut self, input: &mut BytesMut, out: &mut BytesMut) -> Result<Decoded, HeadError> {
        loop {
            match self.phase {
                ChunkPhase::Size => {
                    let Some(line) = take_line(input, MAX_CHUNK_LINE)? else {
                        return Ok(Decoded::NeedMore);
                    };
                    let size = chunk_size(&line)?;
                    self.total = self.total.saturating_add(size);
                    if self.total > self.limit {
                        return Err(HeadError::BodyTooLarge);
                    }
                    self.phase = if size == 0 {
                        ChunkPhase::Trailers { seen: 0 }
                    } else {
                        ChunkPhase::Data { remaining: size }
                    };
                }
                ChunkPhase::Data { remaining } => {
                    if input.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let take = remaining.min(input.len() as u64) as usize;
                    out.extend_from_slice(&input[..take]);
                    input.advance(take);
                    let remaining = remaining - take as u64;
                    self.phase = if remaining == 0 {
                        ChunkPhase::DataEnd
                    } else {
                        ChunkPhase::Data { remaining }
                    };
                }
                ChunkPhase::DataEnd => {
                    if input.len() < 2 {
                        return Ok(Decoded::NeedMore);
                    }
                    if &input[..2] != b"\r\n" {
                        return Err(HeadError::BadRequest("chunk data not followed by CRLF"));
                    }
                    input.advance(2);
                    self.phase = ChunkPhase::Size;
                }
                ChunkPhase::Trailers { seen } => {
                    let Some(line) = take_line(input, MAX_TRAILERS.saturating_sub(seen))? else {
                        if seen + input.len() > MAX_TRAILERS {
                            return Err(HeadError::BadRequest("trailer section too large"));
                        }
                        return Ok(Decoded::NeedMore);
                    };
                    // Trailer fields are read and dropped (RFC 9112 §7.1.2 allows discarding).
                    self.phase = if line.is_empty() {
                        ChunkPhase::Done
                    } else {
                        ChunkPhase::Trailers {
                            seen: seen + line.len() + 2,
                        }
                    };
                }
                ChunkPhase::Done => return Ok(Decoded::Done),
            }
        }
    }
}

/// Takes one CRLF-terminated line (without the CRLF) off the front of `input`. A bare LF or a CR
/// followed by anything but LF is an error, as is a line longer than `max`.
fn take_line(input: &mut BytesMut, max: usize) -> Result<Option<BytesMut>, HeadError> {
    let window = &input[..input.len().min(max + 2)];
    for (i, &b) in window.iter().enumerate() {
        match b {
            b'\n' => return Err(HeadError::BadRequest("bare LF in chunked framing")),
            b'\r' => {
                let Some(&next) = input.get(i + 1) else {
                    return Ok(None);
                };
                if next != b'\n' {
                    return Err(HeadError::BadRequest("bare CR in chunked framing"));
                }
                let line = input.split_to(i);
                input.advance(2);
                return Ok(Some(line));
            }
            _ => {}
        }
    }
    if input.len() > max {
        return Err(HeadError::BadRequest("chunk line too long"));
    }
    Ok(None)
}

/// `chunk-size [ chunk-ext ]`: hex digits, then nothing or `;` extensions (ignored).
fn chunk_size(line: &[u8]) -> Result<u64, HeadError> {
    const BAD: HeadError = HeadError::BadRequest("invalid chunk size");
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 15 {
        return Err(BAD);
    }
    let rest = &line[digits..];
    let rest_ok = rest.is_empty()
        || rest
            .iter()
            .position(|&b| b != b' ' && b != b'\t')
            .is_some_and(|i| rest[i] == b';');
    if !rest_ok {
        return Err(BAD);
    }
    let text = std::str::from_utf8(&line[..digits]).map_err(|_| BAD)?;
    u64::from_str_radix(text, 16).map_err(|_| BAD)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(dec: &mut BodyDecoder, input: &[u8]) -> (Result<Decoded, HeadError>, Vec<u8>, usize) {
        let mut inp = BytesMut::from(input);
        let mut out = BytesMut::new();
        let r = dec.decode(&mut inp, &mut out);
        (r, out.to_vec(), inp.len())
    }

    #[test]
    fn content_length_bodies() {
        let mut d = BodyDecoder::length(5);
        assert_eq!(
            run(&mut d, b"hello"),
            (Ok(Decoded::Done), b"hello".to_vec(), 0)
        );
        let mut d = BodyDecoder::length(5);
        assert_eq!(
            run(&mut d, b"helloGET /"),
            (Ok(Decoded::Done), b"hello".to_vec(), 5)
        );
        let mut d = BodyDecoder::length(5);
        assert_eq!(
            run(&mut d, b"hel"),
            (Ok(Decoded::NeedMore), b"hel".to_vec(), 0)
        );
    }

    #[test]
    fn chunked_table() {
        let bad = Err(HeadError::BadRequest(""));
        type Case<'a> = (&'a [u8], Result<Decoded, HeadError>, &'a [u8], usize);
        let cases: &[Case<'_>] = &[
            (b"5\r\nhello\r\n0\r\n\r\n", Ok(Decoded::Done), b"hello", 0),
            (
                b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nNEXT",
                Ok(Decoded::Done),
                b"hello world",
                4,
            ),
            (
                b"5;ext=1\r\nhello\r\n0\r\n\r\n",
                Ok(Decoded::Done),
                b"hello",
                0,
            ),
            (
                b"A\r\n0123456789\r\n0\r\n\r\n",
                Ok(Decoded::Done),
                b"0123456789",
                0,
            ),
            (
                b"5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
                Ok(Decoded::Done),
                b"hello",
                0,
            ),
            (b"5\r\nhel", Ok(Decoded::NeedMore), b"hel", 0),
            (b"5\r\nhello\r\n0\r\n", Ok(Decoded::NeedMore), b"hello", 0),
            (b"5", Ok(Decoded::NeedMore), b"", 1),
            (b"zz\r\nhello\r\n", bad, b"", 0),
            (b"\r\nhello\r\n", bad, b"", 0),
            (b"0_2e\r\n", bad, b"", 0),
            (b"fffffffffffffffffff\r\n", bad, b"", 0),
            (b"5\nhello\r\n", bad, b"", 0),
            (b"5\rxhello\r\n", bad, b"", 0),
            (b"5\r\nhelloXX0\r\n\r\n", bad, b"hello", 0),
            (b"-5\r\n", bad, b"", 0),
            (b" 5\r\n", bad, b"", 0),
        ];
        for (input, want, body, _) in cases {
            let mut d = BodyDecoder::chunked(1 << 20);
            let (got, out, _) = run(&mut d, input);
            let same = match (&got, want) {
                (Err(HeadError::BadRequest(_)), Err(HeadError::BadRequest(_))) => true,
                (a, b) => a == b,
            };
            assert!(
                same,
                "{:?}: got {got:?}, want {want:?}",
                String::from_utf8_lossy(input)
            );
            if got.is_ok() {
                assert_eq!(&out[..], *body, "{:?}", String::from_utf8_lossy(input));
            }
        }
    }

    #[test]
    fn chunked_in_every_split() {
        let wire = b"3\r\nabc\r\n10;x=y\r\n0123456789abcdef\r\n0\r\nT: v\r\n\r\n";
        for split in 0..wire.len() {
            let mut d = BodyDecoder::chunked(1 << 20);
            let mut inp = BytesMut::from(&wire[..split]);
            let mut out = BytesMut::new();
            assert_eq!(
                d.decode(&mut inp, &mut out),
                Ok(Decoded::NeedMore),
                "split {split}"
            );
            inp.extend_from_slice(&wire[split..]);
            assert_eq!(
                d.decode(&mut inp, &mut out),
                Ok(Decoded::Done),
                "split {split}"
            );
            assert_eq!(&out[..], b"abc0123456789abcdef");
            assert!(inp.is_empty());
        }
    }

    #[test]
    fn chunked_limit_is_enforced_before_reading_data() {
        let mut d = BodyDecoder::chunked(8);
        let (r, _, _) = run(&mut d, b"5\r\nhello\r\n5\r\n");
        assert_eq!(r, Err(HeadError::BodyTooLarge));
        let mut d = BodyDecoder::chunked(8);
        let (r, _, _) = run(&mut d, b"ffffffffffff\r\n");
        assert_eq!(r, Err(HeadError::BodyTooLarge));
    }

    #[test]
    fn overlong_lines_are_rejected() {
        let mut line = vec![b'1'];
        line.extend(std::iter::repeat_n(b';', 2000));
        let mut d = BodyDecoder::chunked(1 << 20);
        assert!(matches!(
            run(&mut d, &line).0,
            Err(HeadError::BadRequest(_))
        ));
        let mut trailers = b"0\r\n".to_vec();
        trailers.extend(std::iter::repeat_n(b'a', 9000));
        let mut d = BodyDecoder::chunked(1 << 20);
        assert!(matches!(
            run(&mut d, &trailers).0,
            Err(HeadError::BadRequest(_))
        ));
    }
}
