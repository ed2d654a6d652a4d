//! The submit body's fast path: one pass over the plain shape nearly every client sends, which
//! validates it and finds the payload, instead of three (UTF-8, the structural scan of `json.rs`,
//! serde_json). Sans-IO; the fuzz target `submit_body` holds it to the full parse.
//!
//! Accepted here, and only here: a top-level object whose member names have no escapes, with a
//! `payload` member that is an object and each of `payload`, `headers`, `metadata` at most once;
//! ASCII text, strings without `\u` escapes, numbers without an exponent and of at most 15
//! digits, nesting at most 32 deep, JSON's grammar (RFC 8259) everywhere. It returns where the
//! three members are; `submit.rs` checks `headers` and `metadata` as the full parse does. Anything
//! else, every syntax error included, returns `None` and the full parse (`submit::parse_full`)
//! decides and explains, so the fast path changes no answer: what it accepts the full parse
//! accepts with the same result.

use std::ops::Range;

/// Deepest nesting the fast path follows (the full parse allows `json::MAX_DEPTH`).
const MAX_DEPTH: usize = 32;
/// Longest number (in digits) the fast path accepts: far inside an `f64`'s exact range.
const MAX_DIGITS: usize = 15;

/// Where the members of a plain submit body are (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Members {
    /// The `payload` object.
    pub payload: Range<usize>,
    /// The `headers` value, if present (any JSON value; `null` included).
    pub headers: Option<Range<usize>>,
    /// The `metadata` value, if present (any JSON value; `null` included).
    pub metadata: Option<Range<usize>>,
}

/// The members of `body` when it is a plain submit body (see the module doc).
pub fn plain_members(body: &[u8]) -> Option<Members> {
    let mut p = Cursor { b: body, i: 0 };
    p.ws();
    p.eat(b'{')?;
    let mut payload = None;
    let mut headers = None;
    let mut metadata = None;
    p.ws();
    if p.peek()? != b'}' {
        loop {
            p.ws();
            let name = p.string()?;
            if body[name.clone()].contains(&b'\\') {
                return None;
            }
            p.ws();
            p.eat(b':')?;
            p.ws();
            match &body[name] {
                b"payload" => {
                    if payload.is_some() || p.peek()? != b'{' {
                        return None;
                    }
                    let start = p.i;
                    p.value(1)?;
                    payload = Some(start..p.i);
                }
                b"headers" => p.member(&mut headers)?,
                b"metadata" => p.member(&mut metadata)?,
                _ => p.value(1)?,
            }
            p.ws();
            match p.next()? {
                b',' => continue,
                b'}' => break,
                _ => return None,
            }
        }
    } else {
        p.i += 1;
    }
    p.ws();
    (p.i == body.len()).then_some(Members {
        payload: payload?,
        headers,
        metadata,
    })
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

    /// A top-level member's value, recorded in `slot`; `None` for a second one (a duplicate
    /// field to the full parse).
    fn member(&mut self, slot: &mut Option<Range<usize>>) -> Option<()> {
        if slot.is_some() {
            return None;
        }
        let start = self.i;
        self.value(1)?;
        *slot = Some(start..self.i);
        Some(())
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    /// A value starting at the cursor (no leading whitespace), `depth` containers deep.
    fn value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'{' => self.object(depth + 1),
            b'[' => self.array(depth + 1),
            b'"' => self.string().map(drop),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn object(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.i += 1;
        self.ws();
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        loop {
            self.ws();
            self.string()?;
            self.ws();
            self.eat(b':')?;
            self.ws();
            self.value(depth)?;
            self.ws();
            match self.next()? {
                b',' => continue,
                b'}' => return Some(()),
                _ => return None,
            }
        }
    }

    fn array(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.i += 1;
        self.ws();
        if self.peek()? == b']' {
            self.i += 1;
            return Some(());
        }
        loop {
            self.ws();
            self.value(depth)?;
            self.ws();
            match self.next()? {
                b',' => continue,
                b']' => return Some(()),
                _ => return None,
            }
        }
    }

    /// A string; returns the range of its contents (between the quotes, escapes as written).
    fn string(&mut self) -> Option<Range<usize>> {
        self.eat(b'"')?;
        let start = self.i;
        loop {
            match self.next()? {
                b'"' => return Some(start..self.i - 1),
                b'\\' => match self.next()? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                    // `\u` (surrogate rules) and anything invalid: the full parse.
                    _ => return None,
                },
                // Control characters must be escaped; non-ASCII needs UTF-8 validation.
                0..=0x1f | 0x80..=0xff => return None,
                _ => {}
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::api::submit::{parse, parse_full};

    const TIMEOUT: Duration = Duration::from_secs(300);

    /// Where the fast path accepts, the full parse gives the same answer as `parse` (which
    /// takes the fast path) and finds the same payload.
    fn agrees(body: &str) -> Option<Range<usize>> {
        let fast = plain_members(body.as_bytes());
        if let Some(m) = &fast {
            let full = parse_full(body.as_bytes(), TIMEOUT);
            let quick = parse(body.as_bytes(), TIMEOUT);
            assert_eq!(full, quick, "{body}");
            if let Ok(full) = full {
                assert_eq!(full.payload, m.payload, "{body}");
            }
        }
        fast.map(|m| m.payload)
    }

    #[test]
    fn plain_bodies_take_the_fast_path() {
        for body in [
            r#"{"payload":{"operation":"uppercase","data":"hello"}}"#,
            " {\n\t\"payload\" : { \"a\" : [1, -2.5, 0, -0, true, false, null, \"x\\n\\\"\"] } } \r\n",
            r#"{"other":[{},[],{"x":{"y":[]}}],"payload":{},"more":"\/\\\b\f\r\t"}"#,
            r#"{"payload":{"n":123456789012345,"f":1.25,"z":0.5}}"#,
            r#"{"payload":{},"headers":{"X":"y"}}"#,
            r#"{"metadata":{"priority":1,"timeout":2.5,"endpoint":"e"},"payload":{}}"#,
            r#"{"payload":{},"headers":null,"metadata":null}"#,
            // Valid JSON, wrong shapes: the same 422 from both paths.
            r#"{"payload":{},"headers":{"X":1}}"#,
            r#"{"payload":{},"metadata":[]}"#,
            r#"{"payload":{},"metadata":{"priority":10,"retry_count":-1}}"#,
            r#"{"payload":{},"metadata":{"timeout":"x"}}"#,
        ] {
            let r = agrees(body).unwrap_or_else(|| panic!("not fast: {body}"));
            assert_eq!(body.as_bytes()[r.start], b'{', "{body}");
            assert_eq!(body.as_bytes()[r.end - 1], b'}', "{body}");
        }
    }

    #[test]
    fn everything_else_goes_to_the_full_parse() {
        let deep = format!(
            r#"{{"payload":{{"a":{}{}}}}}"#,
            "[".repeat(MAX_DEPTH),
            "]".repeat(MAX_DEPTH)
        );
        let mut bodies: Vec<String> = [
            // Not what the fast path takes, though valid.
            r#"{"payload":{"data":"caf\u00e9"}}"#,
            r#"{"payload":{"data":"café"}}"#,
            r#"{"payload":{"n":1e3}}"#,
            r#"{"payload":{"n":1234567890123456}}"#,
            r#"{"p\u0061yload":{}}"#,
            r#"{"pay\/load":{}}"#,
            // Invalid or refused by the full parse.
            "",
            "{}",
            "[]",
            r#"{"payload":[]}"#,
            r#"{"payload":null}"#,
            r#"{"payload":"x"}"#,
            r#"{"payload":{},"payload":{}}"#,
            r#"{"payload":{},"headers":{},"headers":{}}"#,
            r#"{"metadata":null,"payload":{},"metadata":null}"#,
            r#"{"payload":{}} x"#,
            r#"{"payload":{},}"#,
            r#"{"payload":{"a":1,}}"#,
            r#"{"payload":{"a":01}}"#,
            r#"{"payload":{"a":1.}}"#,
            r#"{"payload":{"a":-}}"#,
            r#"{"payload":{"a":.5}}"#,
            r#"{"payload":{"a":tru}}"#,
            r#"{"payload":{"a":"x
y"}}"#,
            r#"{"payload":{"a":"\x"}}"#,
            r#"{"payload":{"a" 1}}"#,
            r#"{"payload":{"a":[1 2]}}"#,
            r#"{"payload":{"a":1}"#,
            r#"{"payload":{1:2}}"#,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        bodies.push(deep);
        for body in &bodies {
            assert_eq!(agrees(body), None, "{body}");
        }
        // Just inside the depth bound.
        let ok = format!(
            r#"{{"payload":{}{}}}"#,
            "[".repeat(MAX_DEPTH - 2),
            "]".repeat(MAX_DEPTH - 2)
        );
        assert_eq!(agrees(&ok), None, "payload must be an object");
        let ok = format!(
            r#"{{"payload":{{"a":{}{}}}}}"#,
            "[".repeat(MAX_DEPTH - 2),
            "]".repeat(MAX_DEPTH - 2)
        );
        assert!(agrees(&ok).is_some());
    }

    /// Every one-byte change of a plain body: whatever the fast path still accepts, the full
    /// parse accepts with the same payload (the fuzz target checks the same on arbitrary bytes).
    #[test]
    fn mutations_never_split_the_two() {
        let body =
            br#"{"payload":{"a":[1,-2.5,true,null,"x\n"],"b":{}},"metadata":{"priority":1}}"#;
        let mut fast = 0;
        for i in 0..body.len() {
            for b in [
                b' ', b'{', b'}', b'[', b']', b'"', b'\\', b',', b':', b'0', b'1', b'-', b'.',
                b'e', b'a', b'n', b'u', b'\n', 0, 0xc3,
            ] {
                let mut m = body.to_vec();
                m[i] = b;
                if plain_members(&m).is_some() {
                    fast += 1;
                    let text = String::from_utf8(m).expect("the fast path takes ASCII only");
                    agrees(&text);
                }
            }
        }
        assert!(fast > 50, "only {fast} mutations took the fast path");
    }
}
