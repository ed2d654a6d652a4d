//! JSON helpers for the API: a one-pass structural check that serde's raw-value capture does not
//! make (nesting depth, lone UTF-16 surrogate escapes), and small writers for response bodies
//! assembled by hand.

/// Deepest nesting accepted in a submit body (serde_json's own recursion limit).
pub const MAX_DEPTH: usize = 128;

/// Why a body failed the structural check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanError {
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// A `\uD800`-`\uDFFF` escape not forming a valid pair.
    LoneSurrogate,
    /// A number beyond the range of an `f64` (`1e400`): valid JSON grammar, but no mainstream
    /// parser can read it back, and the payload is echoed to clients verbatim.
    NumberOutOfRange,
}

/// Checks nesting depth, surrogate escapes and number range of (already UTF-8-valid) JSON text.
/// Syntax is left to the parser; this only looks at brackets and numbers outside strings and at
/// `\u` escapes inside them.
pub fn scan(text: &[u8]) -> Result<(), ScanError> {
    let mut depth = 0usize;
    let mut i = 0;
    let n = text.len();
    while i < n {
        match text[i] {
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(ScanError::TooDeep);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'-' | b'0'..=b'9' => {
                let end = text[i..]
                    .iter()
                    .position(|b| !matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                    .map_or(n, |len| i + len);
                check_number(&text[i..end])?;
                i = end;
                continue;
            }
            b'"' => {
                i += 1;
                while i < n && text[i] != b'"' {
                    if text[i] == b'\\' {
                        if text.get(i + 1) == Some(&b'u') {
                            i = check_unicode_escape(text, i)?;
                            continue;
                        }
                        i += 1;
                    }
                    i += 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// A number token whose magnitude an `f64` cannot hold. Only numbers with an exponent or many
/// digits can be out of range, so the common case costs a length check.
fn check_number(token: &[u8]) -> Result<(), ScanError> {
    let has_exponent = token.iter().any(|&b| b == b'e' || b == b'E');
    if !has_exponent && token.len() < 300 {
        return Ok(());
    }
    match std::str::from_utf8(token)
        .ok()
        .and_then(|t| t.parse::<f64>().ok())
    {
        Some(v) if !v.is_finite() => Err(ScanError::NumberOutOfRange),
        // Malformed tokens are the parser's to report.
        _ => Ok(()),
    }
}

/// At a `\u` escape at `i`: validates surrogates and returns the index after the escape(s).
fn check_unicode_escape(text: &[u8], i: usize) -> Result<usize, ScanError> {
    let unit = |at: usize| -> Option<u16> {
        let hex = text.get(at + 2..at + 6)?;
        u16::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
    };
    let Some(u) = unit(i) else {
        // Malformed escape: the parser reports it.
        return Ok(i + 2);
    };
    match u {
        0xD800..=0xDBFF => {
            let pair = text.get(i + 6..i + 8) == Some(b"\\u");
            match pair.then(|| unit(i + 6)).flatten() {
                Some(0xDC00..=0xDFFF) => Ok(i + 12),
                _ => Err(ScanError::LoneSurrogate),
            }
        }
        0xDC00..=0xDFFF => Err(ScanError::LoneSurrogate),
        _ => Ok(i + 6),
    }
}

/// Appends `s` as a JSON string literal.
pub fn put_str(out: &mut Vec<u8>, s: &str) {
    // Serialising a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Appends an unsigned integer.
pub fn put_num(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// Appends `"key":`.
pub fn put_key(out: &mut Vec<u8>, key: &str) {
    out.push(b'"');
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_limit() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert_eq!(scan(ok.as_bytes()), Ok(()));
        let deep = "[".repeat(5000);
        assert_eq!(scan(deep.as_bytes()), Err(ScanError::TooDeep));
        // Brackets inside strings do not count.
        let in_str = format!("{{\"a\":\"{}\"}}", "[".repeat(5000));
        assert_eq!(scan(in_str.as_bytes()), Ok(()));
    }

    #[test]
    fn surrogates() {
        let cases: &[(&str, Result<(), ScanError>)] = &[
            (r#"{"a":"\ud83d\ude00"}"#, Ok(())),
            (r#"{"a":"\u00e9\u0041"}"#, Ok(())),
            (r#"{"a":"\ud800"}"#, Err(ScanError::LoneSurrogate)),
            (r#"{"a":"\udc00\ud800"}"#, Err(ScanError::LoneSurrogate)),
            (r#"{"a":"\ud800\u0041"}"#, Err(ScanError::LoneSurrogate)),
            (r#"{"a":"\ud800x"}"#, Err(ScanError::LoneSurrogate)),
            (r#"{"a":"\\ud800"}"#, Ok(())),
            (r#"{"a":"\"[[["}"#, Ok(())),
            (r#"{"a":"\u12"}"#, Ok(())),
            (r#"{"a":1e400}"#, Err(ScanError::NumberOutOfRange)),
            (r#"[-1E+309]"#, Err(ScanError::NumberOutOfRange)),
            (
                r#"{"a":1e308,"b":-2.5e-400,"c":123456789012345678901234567890}"#,
                Ok(()),
            ),
            (r#"{"a":"1e400"}"#, Ok(())),
        ];
        for (text, want) in cases {
            assert_eq!(scan(text.as_bytes()), *want, "{text}");
        }
    }

    #[test]
    fn writers_escape() {
        let mut out = Vec::new();
        put_key(&mut out, "error");
        put_str(&mut out, "a\"b\n");
        assert_eq!(out, br#""error":"a\"b\n""#);
    }
}
