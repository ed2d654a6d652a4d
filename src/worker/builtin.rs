//! The default processor: the Python OpenHQM's built-in operations on `payload.operation` and
//! `payload.data`. `echo` returns `data` unchanged (byte for byte), `uppercase` and `reverse`
//! (by Unicode scalar) work on a string `data` (other JSON values on their JSON text), `error`
//! fails retryably, anything else answers `"Unknown operation: <op>"`. A missing operation is
//! `echo`.

use std::borrow::Cow;
use std::ops::Range;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{Output, ProcessError, Processor};
use crate::clock::{Timestamp, RFC3339_LEN};
use crate::plain_json;
use crate::backend::Job;

/// The built-in operations.
#[derive(Debug, Clone, Copy, Default)]
pub struct Builtin;

#[derive(Deserialize)]
struct Payload<'a> {
    #[serde(borrow, default)]
    operation: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

impl Processor for Builtin {
    async fn process(&self, job: &Job) -> Result<Output, ProcessError> {
        run(&job.payload)
    }
}

/// Runs one operation on a payload (the submit path validated it as a JSON object).
pub fn run(payload: &[u8]) -> Result<Output, ProcessError> {
    let (op, data) = match plain_fields(payload) {
        Some(fields) => fields,
        None => {
            let p: Payload<'_> = serde_json::from_slice(payload).map_err(|e| ProcessError::permanent(format!("invalid payload: {e}")))?;
            (p.operation, p.data.map(RawValue::get))
        }
    };
    let op = op.as_deref().unwrap_or("echo");
    let output: Vec<u8> = match op {
        "echo" => data.unwrap_or("null").as_bytes().to_vec(),
        "uppercase" => json_string(&text_of(data)?.to_uppercase()),
        "reverse" => json_string(&text_of(data)?.chars().rev().collect::<String>()),
        "error" => {
            return Err(ProcessError::retryable("Simulated error"));
        }
        other => json_string(&format!("Unknown operation: {other}")),
    };
    const HEAD: &[u8] = b"{\"output\":";
    const MID: &[u8] = b",\"processed_at\":\"";
    let mut result = Vec::with_capacity(HEAD.len() + output.len() + MID.len() + RFC3339_LEN + 2);
    result.extend_from_slice(HEAD);
    result.extend_from_slice(&output);
    result.extend_from_slice(MID);
    result.extend_from_slice(&Timestamp::now().rfc3339());
    result.extend_from_slice(b"\"}");
    // Exact capacity: the Bytes takes the allocation over without a second one.
    Ok(Output {
        result: Bytes::from(result),
        status_code: 200,
        headers: None,
    })
}

/// `operation` and `data` of a plain payload (`plain_json.rs`) whose operation, if any, is a string
/// without escapes or `null`: one pass instead of serde's. Anything else is serde's to read.
fn plain_fields(payload: &[u8]) -> Option<(Option<Cow<'_, str>>, Option<&str>)> {
    let [op, data] = plain_json::members(payload, [b"operation", b"data"])?;
    // Plain JSON is ASCII: these are text.
    let text = |r: Range<usize>| std::str::from_utf8(&payload[r]).ok();
    let op = match op.map(|r| &payload[r]) {
        None | Some(b"null") => None,
        Some(value) => Some(Cow::Borrowed(
            std::str::from_utf8(plain_json::plain_string(value)?).ok()?,
        )),
    };
    // A `null` data reads as absent with serde; every operation treats the two alike.
    let data = match data {
        Some(r) => Some(text(r)?),
        None => None,
    };
    Some((op, data))
}

/// The string a text operation works on: a JSON string's value, `""` for no data, otherwise the
/// value's JSON text.
fn text_of(data: Option<&str>) -> Result<String, ProcessError> {
    match data {
        None | Some("null") => Ok(String::new()),
        Some(raw) if raw.starts_with('"') => serde_json::from_str(raw).map_err(|e| ProcessError::permanent(format!("invalid data: {e}"))),
        Some(raw) => Ok(raw.to_owned()),
    }
}

fn json_string(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + 2);
    // Serialising a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, s);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(payload: &str) -> String {
        let out = run(payload.as_bytes()).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.result).unwrap();
        assert_eq!(out.status_code, 200);
        assert!(v["processed_at"].as_str().unwrap().ends_with('Z'));
        v["output"].to_string()
    }

    #[test]
    fn operations() {
        let cases = [
            (r#"{"operation":"echo","data":"Hello!"}"#, r#""Hello!""#),
            (
                r#"{"operation":"echo","data":{"a":[1,2]}}"#,
                r#"{"a":[1,2]}"#,
            ),
            (r#"{"data":"x"}"#, r#""x""#),
            (r#"{"operation":"echo"}"#, "null"),
            (r#"{"operation":"uppercase","data":"hello"}"#, r#""HELLO""#),
            (
                r#"{"operation":"uppercase","data":"straße \u00e9"}"#,
                r#""STRASSE É""#,
            ),
            (r#"{"operation":"reverse","data":"abc"}"#, r#""cba""#),
            (r#"{"operation":"reverse","data":"añ😀"}"#, r#""😀ña""#),
            (r#"{"operation":"reverse","data":123}"#, r#""321""#),
            (r#"{"operation":"reverse"}"#, r#""""#),
            (
                r#"{"operation":"frobnicate"}"#,
                r#""Unknown operation: frobnicate""#,
            ),
        ];
        for (payload, want) in cases {
            assert_eq!(output(payload), want, "{payload}");
        }
    }

    /// The one-pass reading of plain payloads gives what serde's gives.
    #[test]
    fn plain_payloads_read_as_serde_reads_them() {
        for payload in [
            r#"{"operation":"uppercase","data":"hello"}"#,
            r#"{"data":{"a":[1,2.5]},"operation":"echo","other":[null]}"#,
            r#"{"operation":null,"data":null}"#,
            r#"{"operation":"reverse"}"#,
            r#"{}"#,
        ] {
            let (op, data) = plain_fields(payload.as_bytes()).expect("plain");
            let p: Payload<'_> = serde_json::from_str(payload).unwrap();
            assert_eq!(op, p.operation, "{payload}");
            let serde_data = p.data.map(RawValue::get);
            assert!(data == serde_data || (data == Some("null") && serde_data.is_none()));
        }
        // Not plain, or an operation serde must read (or refuse): serde's.
        for payload in [
            r#"{"operation":"upper\u0063ase"}"#,
            r#"{"operation":5}"#,
            r#"{"operation":"echo","operation":"echo"}"#,
            r#"{"data":1e3}"#,
        ] {
            assert_eq!(plain_fields(payload.as_bytes()), None, "{payload}");
        }
        assert_eq!(
            output(r#"{"operation":"upper\u0063ase","data":"a"}"#),
            r#""A""#
        );
    }

    #[test]
    fn echo_keeps_the_bytes() {
        let out = run(br#"{"operation":"echo","data":{"b":1.50,"a":"\u0041"}}"#).unwrap();
        assert!(out
            .result
            .starts_with(br#"{"output":{"b":1.50,"a":"\u0041"},"#));
    }

    #[test]
    fn error_fails_retryably_and_bad_payloads_do_not_retry() {
        let e = run(br#"{"operation":"error"}"#).unwrap_err();
        assert_eq!(
            e,
            ProcessError::retryable("Simulated error")
        );
        let e = run(br#"{"operation":5}"#).unwrap_err();
        assert!(!e.retryable);
    }
}
