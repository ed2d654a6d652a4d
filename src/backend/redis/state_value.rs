//! A request state as one Redis string (`SET key value EX ttl`), both ways. Sans-IO and fuzzable.
//!
//! One string instead of a hash with its own `EXPIRE`: one command and one key-space lookup less
//! per state write, and `GET` instead of `HGETALL` to read it (PERFORMANCE.md, section 8).
//!
//! The value is text where it can be, binary-safe where it must be:
//!
//! ```text
//! PENDING 1795689000123456 1795689000123456
//! COMPLETED 1795689000123456 1795689000130456 7 1795689000130456 200 r15:{"result":"X"}
//! FAILED 1795689000123456 1795689000130456 7 1795689000130456 - e15:Simulated error
//! ```
//!
//! Status, `submitted_at` and `updated_at` (µs since the epoch); a final state goes on with
//! `processing_time_ms`, `completed_at` and the status code (`-` for none), then each present
//! blob as a tag (`r` result, `h` headers, `e` error), its length in bytes, `:` and the bytes, in
//! that order, separated by single spaces.

use bytes::{BufMut, Bytes, BytesMut};

use crate::clock::Timestamp;
use crate::store::{Outcome, RequestState, Status};

fn put_num(out: &mut BytesMut, v: u64) {
    out.put_slice(itoa::Buffer::new().format(v).as_bytes());
}

fn put_blob(out: &mut BytesMut, tag: u8, bytes: &[u8]) {
    out.put_u8(b' ');
    out.put_u8(tag);
    put_num(out, bytes.len() as u64);
    out.put_u8(b':');
    out.put_slice(bytes);
}

/// The string value of `s`.
pub fn encode(s: &RequestState) -> Bytes {
    let blobs = s.outcome.as_ref().map_or(0, |o| {
        o.result.as_ref().map_or(0, Bytes::len)
            + o.headers.as_ref().map_or(0, Bytes::len)
            + o.error.as_ref().map_or(0, String::len)
    });
    let mut out = BytesMut::with_capacity(96 + blobs);
    out.put_slice(s.status.as_str().as_bytes());
    out.put_u8(b' ');
    put_num(&mut out, s.submitted_at.0);
    out.put_u8(b' ');
    put_num(&mut out, s.updated_at.0);
    if let Some(o) = &s.outcome {
        out.put_u8(b' ');
        put_num(&mut out, o.processing_time_ms);
        out.put_u8(b' ');
        put_num(&mut out, o.completed_at.0);
        out.put_u8(b' ');
        match o.status_code {
            Some(c) => put_num(&mut out, u64::from(c)),
            None => out.put_u8(b'-'),
        }
        if let Some(r) = &o.result {
            put_blob(&mut out, b'r', r);
        }
        if let Some(h) = &o.headers {
            put_blob(&mut out, b'h', h);
        }
        if let Some(e) = &o.error {
            put_blob(&mut out, b'e', e.as_bytes());
        }
    }
    out.freeze()
}

/// A cursor over a value.
struct Reader<'a> {
    value: &'a Bytes,
    at: usize,
}

/// Decimal digits only (no sign, no spaces, no leading zero), within `u64`.
fn digits(t: &[u8]) -> Option<u64> {
    if t.is_empty() || t.len() > 20 || !t.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if t.len() > 1 && t[0] == b'0' {
        return None;
    }
    std::str::from_utf8(t).ok()?.parse().ok()
}

impl<'a> Reader<'a> {
    /// The next space-separated token, and the space after it (which must be followed by more).
    fn token(&mut self) -> Option<&'a [u8]> {
        let value: &'a Bytes = self.value;
        let rest = value.get(self.at..)?;
        let len = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
        if len == 0 || len + 1 == rest.len() {
            return None;
        }
        self.at += (len + 1).min(rest.len());
        Some(&rest[..len])
    }

    fn num(&mut self) -> Option<u64> {
        digits(self.token()?)
    }

    fn done(&self) -> bool {
        self.at >= self.value.len()
    }

    /// The blob tagged `tag`, if it comes next (a zero-copy slice of the value).
    fn blob(&mut self, tag: u8) -> Result<Option<Bytes>, ()> {
        if self.done() || self.value[self.at] != tag {
            return Ok(None);
        }
        let rest = &self.value[self.at + 1..];
        let colon = rest.iter().take(21).position(|&b| b == b':').ok_or(())?;
        let len = usize::try_from(digits(&rest[..colon]).ok_or(())?).map_err(drop)?;
        let start = self.at + 1 + colon + 1;
        let end = start.checked_add(len).ok_or(())?;
        if end > self.value.len() {
            return Err(());
        }
        let blob = self.value.slice(start..end);
        match self.value.get(end) {
            None => self.at = end,
            Some(b' ') if end + 1 < self.value.len() => self.at = end + 1,
            Some(_) => return Err(()),
        }
        Ok(Some(blob))
    }
}

fn status_of(b: &[u8]) -> Option<Status> {
    Some(match b {
        b"PENDING" => Status::Pending,
        b"PROCESSING" => Status::Processing,
        b"COMPLETED" => Status::Completed,
        b"FAILED" => Status::Failed,
        b"TIMEOUT" => Status::Timeout,
        b"CANCELLED" => Status::Cancelled,
        _ => return None,
    })
}

/// The state a value holds; `None` if it is not one [`encode`] writes. The format is canonical:
/// a value decodes only if encoding its state gives the same bytes back (the fuzz target
/// `state_value` checks that).
pub fn decode(value: &Bytes) -> Option<RequestState> {
    let mut r = Reader { value, at: 0 };
    let status = status_of(r.token()?)?;
    let submitted_at = Timestamp(r.num()?);
    let updated_at = Timestamp(r.num()?);
    if !status.is_final() {
        return r.done().then_some(RequestState {
            status,
            submitted_at,
            updated_at,
            outcome: None,
        });
    }
    let processing_time_ms = r.num()?;
    let completed_at = Timestamp(r.num()?);
    let status_code = match r.token()? {
        b"-" => None,
        code => Some(u16::try_from(digits(code)?).ok()?),
    };
    let result = r.blob(b'r').ok()?;
    let headers = r.blob(b'h').ok()?;
    let error = r.blob(b'e').ok()?;
    if !r.done() {
        return None;
    }
    let error = match error {
        Some(e) => Some(String::from_utf8(e.to_vec()).ok()?),
        None => None,
    };
    Some(RequestState {
        status,
        submitted_at,
        updated_at,
        outcome: Some(Box::new(Outcome {
            result,
            headers,
            status_code,
            error,
            processing_time_ms,
            completed_at,
        })),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn final_state(status: Status, outcome: Outcome) -> RequestState {
        let mut s = RequestState::pending(Timestamp(1_795_689_000_123_456));
        s.start(Timestamp(1_795_689_000_124_000)).unwrap();
        s.finish(status, outcome).unwrap();
        s
    }

    fn outcome() -> Outcome {
        Outcome {
            result: None,
            headers: None,
            status_code: None,
            error: None,
            processing_time_ms: 7,
            completed_at: Timestamp(1_795_689_000_130_456),
        }
    }

    #[test]
    fn the_documented_shapes() {
        let pending = RequestState::pending(Timestamp(1_795_689_000_123_456));
        assert_eq!(
            &encode(&pending)[..],
            b"PENDING 1795689000123456 1795689000123456"
        );
        let failed = final_state(
            Status::Failed,
            Outcome {
                error: Some("Simulated error".into()),
                ..outcome()
            },
        );
        assert_eq!(
            &encode(&failed)[..],
            &b"FAILED 1795689000123456 1795689000130456 7 1795689000130456 - e15:Simulated error"[..]
        );
    }

    #[test]
    fn states_round_trip() {
        let mut s = RequestState::pending(Timestamp(10));
        assert_eq!(decode(&encode(&s)), Some(s.clone()));
        s.start(Timestamp(20)).unwrap();
        assert_eq!(decode(&encode(&s)), Some(s.clone()));
        let all = final_state(
            Status::Completed,
            Outcome {
                // Blobs with the separators inside them.
                result: Some(Bytes::from_static(b"{\"a\": \"r1:x h2:y\"}")),
                headers: Some(Bytes::from_static(b"{\"X-T\": \" \"}")),
                status_code: Some(200),
                error: Some("two words ".into()),
                ..outcome()
            },
        );
        assert_eq!(decode(&encode(&all)), Some(all.clone()));
        for (status, o) in [
            (Status::Timeout, outcome()),
            (
                Status::Completed,
                Outcome {
                    result: Some(Bytes::new()),
                    status_code: Some(204),
                    ..outcome()
                },
            ),
            (
                Status::Completed,
                Outcome {
                    headers: Some(Bytes::from_static(b"{}")),
                    ..outcome()
                },
            ),
        ] {
            let s = final_state(status, o);
            assert_eq!(decode(&encode(&s)), Some(s.clone()));
        }
    }

    /// Every one-byte change of a valid value either is refused or is itself canonical (the
    /// fuzz target `state_value` checks the same on arbitrary bytes).
    #[test]
    fn the_format_is_canonical() {
        let valid = [
            &b"PENDING 1795689000123456 1795689000123456"[..],
            b"PROCESSING 10 20",
            b"COMPLETED 1 2 7 3 200 r8:{\"a\": 1} h2:{} e3:a b",
            b"TIMEOUT 1 2 30000 3 -",
        ];
        let mut accepted = 0;
        for v in valid {
            assert_eq!(&encode(&decode(&Bytes::from_static(v)).unwrap())[..], v);
            for i in 0..v.len() {
                for b in [b' ', b'0', b'1', b'9', b':', b'-', b'r', b'e', b'A', 0xff] {
                    let mut m = v.to_vec();
                    m[i] = b;
                    let m = Bytes::from(m);
                    if let Some(s) = decode(&m) {
                        accepted += 1;
                        assert_eq!(encode(&s), m, "{:?}", String::from_utf8_lossy(&m));
                    }
                }
            }
        }
        assert!(accepted > 100, "only {accepted} mutations decoded");
    }

    #[test]
    fn anything_else_is_refused() {
        let good = b"COMPLETED 1 2 7 3 200 r2:{}";
        assert!(decode(&Bytes::from_static(good)).is_some());
        for bad in [
            &b""[..],
            b"PENDING",
            b"PENDING 1",
            b"PENDING 1 2 3",
            b"PENDING 1 2 ",
            b"pending 1 2",
            b"PENDING -1 2",
            b"PENDING 1  2",
            b"PENDING 01 2",
            b"COMPLETED 1 2 7 3 200 r02:{}",
            b"PENDING 99999999999999999999999 2",
            b"COMPLETED 1 2",
            b"COMPLETED 1 2 7 3",
            b"COMPLETED 1 2 7 3 70000",
            b"COMPLETED 1 2 7 3 200 r3:{}",
            b"COMPLETED 1 2 7 3 200 r1:{}",
            b"COMPLETED 1 2 7 3 200 r:{}",
            b"COMPLETED 1 2 7 3 200 r2{}",
            b"COMPLETED 1 2 7 3 200 r2:{} ",
            b"COMPLETED 1 2 7 3 200 h2:{} r2:{}",
            b"COMPLETED 1 2 7 3 200 x2:{}",
            b"COMPLETED 1 2 7 3 200 r99999999999999999999:{}",
            b"FAILED 1 2 7 3 - e2:\xff\xfe",
        ] {
            assert_eq!(
                decode(&Bytes::copy_from_slice(bad)),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn cancelled_is_a_final_state() {
        let cancelled = Bytes::from_static(b"CANCELLED 10 12 0 12 - e4:gone");
        let s = decode(&cancelled).unwrap();
        assert_eq!(s.status, Status::Cancelled);
        assert_eq!(encode(&s), cancelled);
    }

}
