//! A one-pass reader for *plain* JSON: ASCII text, strings without `\u` escapes, numbers without
//! an exponent and of at most 15 digits, nesting at most 32 deep, RFC 8259's grammar everywhere.
//! Nearly every body clients send is plain, and for those one pass over the bytes both validates
//! them and finds the members a caller wants, where serde_json (and the checks around it) took
//! several. Anything not plain, every syntax error included, is `None`: the caller then takes its
//! full path, which decides and explains, so a plain fast path changes no answer. Sans-IO; the
//! `submit_body` fuzz target holds the submit path built on it to the full parse.

use std::ops::Range;

/// Deepest nesting followed (serde_json allows 128).
const MAX_DEPTH: usize = 32;
/// Longest number (in digits) accepted: far inside an `f64`'s exact range.
const MAX_DIGITS: usize = 15;

/// Reads `text` as a plain JSON object and returns, for each of `names`, the range of that
/// member's value (`None` where absent). `None` overall when `text` is not a plain object, when a
/// member name has an escape, or when one of `names` appears twice (serde's duplicate field).
pub fn members<const N: usize>(
    text: &[u8],
    names: [&[u8]; N],
) -> Option<[Option<Range<usize>>; N]> {
    let mut found = [const { None }; N];
    let mut p = Cursor { b: text, i: 0 };
    p.ws();
    if p.peek()? != b'{' {
        return None;
    }
    p.object(1, |name, value| {
        let name = &text[name];
        if name.contains(&b'\\') {
            return None;
        }
        if let Some(at) = names.iter().position(|n| *n == name) {
            if found[at].is_some() {
                return None;
            }
            found[at] = Some(value);
        }
        Some(())
    })?;
    p.ws();
    (p.i == text.len()).then_some(found)
}

/// The contents of a plain JSON string value (`"..."` with no escapes at all), if it is one.
pub fn plain_string(value: &[u8]) -> Option<&[u8]> {
    let inner = value.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    (!inner.contains(&b'\\') && !inner.contains(&b'"')).then_some(inner)
}

/// The first of the eight bytes of `w` (little-endian) that is `"`, `\\`, a control character
/// (below 0x20) or not ASCII: where a string's scan must stop. Word-at-a-time tests: a byte is
/// zero where `v - 0x01..` borrows into a high bit `v` did not have; a borrow can only mark bytes
/// above a byte that is already marked, so the lowest mark is exact. A string costs one such test
/// per 8 bytes and one step for its closing quote, not ~4 instructions per byte.
fn first_to_look_at(w: u64) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let marks = (w & HIGH)
        | (w.wrapping_sub(ONES * 0x20) & !w & HIGH)
        | zero(w ^ (ONES * u64::from(b'"')))
        | zero(w ^ (ONES * u64::from(b'\\')));
    (marks != 0).then(|| marks.trailing_zeros() as usize / 8)
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn eat(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    /// A value starting at the cursor (no leading whitespace), `depth` containers deep.
    fn value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'{' => self.object(depth + 1, |_, _| Some(())),
            b'[' => self.array(depth + 1),
            b'"' => self.string().map(drop),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    /// An object `depth` containers deep (the cursor at its `{`); `member` sees each member's
    /// name (the string's contents) and value ranges.
    fn object(
        &mut self,
        depth: usize,
        mut member: impl FnMut(Range<usize>, Range<usize>) -> Option<()>,
    ) -> Option<()> {
        self.items(depth, b'}', |p| {
            let name = p.string()?;
            p.ws();
            p.eat(b':')?;
            p.ws();
            let start = p.i;
            p.value(depth)?;
            member(name, start..p.i)
        })
    }

    fn array(&mut self, depth: usize) -> Option<()> {
        self.items(depth, b']', |p| p.value(depth))
    }

    /// The comma-separated `item`s of a container `depth` deep, from its opening byte (at the
    /// cursor) to `close`.
    fn items(
        &mut self,
        depth: usize,
        close: u8,
        mut item: impl FnMut(&mut Self) -> Option<()>,
    ) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.i += 1;
        self.ws();
        if self.peek()? == close {
            self.i += 1;
            return Some(());
        }
        loop {
            self.ws();
            item(self)?;
            self.ws();
            match self.next()? {
                b',' => continue,
                c if c == close => return Some(()),
                _ => return None,
            }
        }
    }

    /// A string; returns the range of its contents (between the quotes, escapes as written).
    fn string(&mut self) -> Option<Range<usize>> {
        self.eat(b'"')?;
        let start = self.i;
        let b = self.b;
        let mut i = start;
        loop {
            // Eight bytes at a time, straight to the first one that needs a look of its own.
            if let Some(chunk) = b.get(i..i + 8) {
                match first_to_look_at(u64::from_le_bytes(chunk.try_into().ok()?)) {
                    None => {
                        i += 8;
                        continue;
                    }
                    Some(at) => i += at,
                }
            }
            match *b.get(i)? {
                b'"' => {
                    self.i = i + 1;
                    return Some(start..i);
                }
                b'\\' => match b.get(i + 1)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
                    // `\u` (surrogate rules) and anything invalid: not plain.
                    _ => return None,
                },
                // Control characters must be escaped; non-ASCII needs UTF-8 validation.
                0x20..=0x7f => i += 1,
                _ => return None,
            }
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.i.checked_add(word.len())?;
        (self.b.get(self.i..end)? == word).then(|| self.i = end)
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)?`, no exponent, at most `MAX_DIGITS` digits.
    fn number(&mut self) -> Option<()> {
        if self.peek()? == b'-' {
            self.i += 1;
        }
        let mut digits = match self.next()? {
            b'0' => 1,
            b'1'..=b'9' => 1 + self.digits(),
            _ => return None,
        };
        if self.peek() == Some(b'.') {
            self.i += 1;
            let fraction = self.digits();
            if fraction == 0 {
                return None;
            }
            digits += fraction;
        }
        if matches!(self.peek(), Some(b'e' | b'E' | b'0'..=b'9')) || digits > MAX_DIGITS {
            return None;
        }
        Some(())
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        self.i - start
    }
}

/// `text` with each byte in turn replaced by each of the bytes that matter to JSON (and a few
/// that must be refused): the mutation tests of this reader and of the paths built on it.
#[cfg(test)]
pub(crate) fn one_byte_changes(text: &[u8]) -> impl Iterator<Item = Vec<u8>> + '_ {
    const BYTES: [u8; 20] = [
        b' ', b'{', b'}', b'[', b']', b'"', b'\\', b',', b':', b'0', b'1', b'-', b'.', b'e', b'a',
        b'n', b'u', b'\n', 0, 0xc3,
    ];
    (0..text.len()).flat_map(move |i| {
        BYTES.iter().map(move |&b| {
            let mut m = text.to_vec();
            m[i] = b;
            m
        })
    })
}

#[cfg(test)]
mod tests {
    /// The word test stops exactly where a byte-by-byte scan would: every byte value at every
    /// position of an otherwise plain word, with a second such byte beside it (a borrow from
    /// the first must not hide or move the answer).
    #[test]
    fn first_to_look_at_matches_the_byte_rule() {
        let stop = |c: u8| c == b'"' || c == b'\\' || !(0x20..=0x7f).contains(&c);
        let plain = *b"abcdefgh";
        for at in 0..8usize {
            for v in 0..=255u8 {
                for (other, u) in [(7, 0u8), (7, 0xff), (at.saturating_sub(1), b'"'), (7, b'a')] {
                    let mut w = plain;
                    w[other] = u;
                    w[at] = v;
                    let want = w.iter().position(|&c| stop(c));
                    assert_eq!(first_to_look_at(u64::from_le_bytes(w)), want, "{w:x?}");
                }
            }
        }
    }

    use super::*;

    #[test]
    fn finds_members_of_plain_objects() {
        let text = br#" {"a" : [1, -2.5, 0, true, null, "x\n"], "b":{"c":{}}, "d":"e"} "#;
        let [a, d, z] = members(text, [b"a", b"d", b"z"]).expect("plain");
        assert_eq!(&text[a.unwrap()], br#"[1, -2.5, 0, true, null, "x\n"]"#);
        assert_eq!(&text[d.clone().unwrap()], br#""e""#);
        assert_eq!(z, None);
        assert_eq!(plain_string(&text[d.unwrap()]), Some(&b"e"[..]));
        assert_eq!(members(b"{}", [b"a"]), Some([None]));
    }

    #[test]
    fn refuses_what_is_not_plain() {
        for text in [
            &br#""#[..],
            br#"[]"#,
            br#"{"a":1,"a":2}"#,
            br#"{"\u0061":1}"#,
            br#"{"a\n":1}"#,
            br#"{"a":"\u0041"}"#,
            b"{\"a\":\"caf\xc3\xa9\"}",
            br#"{"a":1e3}"#,
            br#"{"a":1234567890123456}"#,
            br#"{"a":01}"#,
            br#"{"a":1.}"#,
            br#"{"a":.5}"#,
            br#"{"a":-}"#,
            br#"{"a":tru}"#,
            br#"{"a":1,}"#,
            br#"{"a":[1,]}"#,
            br#"{"a":[1 2]}"#,
            br#"{"a" 1}"#,
            br#"{1:2}"#,
            br#"{"a":1} x"#,
            br#"{"a":"x
y"}"#,
            br#"{"a":"\x"}"#,
        ] {
            assert_eq!(
                members(text, [b"a"]),
                None,
                "{}",
                String::from_utf8_lossy(text)
            );
        }
        let deep = format!(
            r#"{{"a":{}{}}}"#,
            "[".repeat(MAX_DEPTH),
            "]".repeat(MAX_DEPTH)
        );
        assert_eq!(members(deep.as_bytes(), [b"a"]), None);
        let ok = format!(
            r#"{{"a":{}{}}}"#,
            "[".repeat(MAX_DEPTH - 1),
            "]".repeat(MAX_DEPTH - 1)
        );
        assert!(members(ok.as_bytes(), [b"a"]).is_some());
        assert_eq!(plain_string(br#""a\"b""#), None);
        assert_eq!(plain_string(b"12"), None);
    }

    /// Whatever plain reading accepts, serde_json accepts too (the fuzz target `submit_body`
    /// checks the submit path built on this on arbitrary bytes).
    #[test]
    fn plain_is_a_subset_of_json() {
        let text = br#"{"a":[1,-2.5,true,null,"x\n"],"b":{},"c":0}"#;
        let mut accepted = 0;
        for m in one_byte_changes(text) {
            if members(&m, [b"a"]).is_some() {
                accepted += 1;
                let v: Result<serde_json::Value, _> = serde_json::from_slice(&m);
                assert!(v.is_ok(), "{:?}", String::from_utf8_lossy(&m));
            }
        }
        assert!(accepted > 50, "only {accepted} mutations accepted");
    }
}
