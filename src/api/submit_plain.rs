//! The submit body's fast path: the plain body nearly every client sends (`plain_json.rs`: ASCII,
//! no `\u` escapes, no exponents) read in one pass, which validates it and finds its members,
//! instead of three (UTF-8, the structural scan of `json.rs`, serde_json). `submit.rs` then checks
//! `headers` and `metadata` (when present) exactly as the full parse does. Anything else, every
//! syntax error included, returns `None` and the full parse (`submit::parse_full`) decides and
//! explains, so the fast path changes no answer: what it accepts the full parse accepts with the
//! same result. The fuzz target `submit_body` holds the two to that.

use std::ops::Range;

use crate::plain_json;

/// Where the members of a plain submit body are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Members {
    /// The `payload` object.
    pub payload: Range<usize>,
    /// The `headers` value, if present (any JSON value; `null` included).
    pub headers: Option<Range<usize>>,
    /// The `metadata` value, if present (any JSON value; `null` included).
    pub metadata: Option<Range<usize>>,
}

/// The members of `body` when it is a plain submit body whose `payload` is an object.
pub fn plain_members(body: &[u8]) -> Option<Members> {
    let [payload, headers, metadata] =
        plain_json::members(body, [b"payload", b"headers", b"metadata"])?;
    let payload = payload.filter(|r| body[r.start] == b'{')?;
    Some(Members {
        payload,
        headers,
        metadata,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::api::submit::{parse, parse_full};

    const MAX_DEPTH: usize = 32;

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
        for m in plain_json::one_byte_changes(body) {
            if plain_members(&m).is_some() {
                fast += 1;
                let text = String::from_utf8(m).expect("the fast path takes ASCII only");
                agrees(&text);
            }
        }
        assert!(fast > 50, "only {fast} mutations took the fast path");
    }
}
