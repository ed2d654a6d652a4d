//! The default processor: the Python OpenHQM's built-in operations on `payload.operation` and
//! `payload.data`. `echo` returns `data` unchanged (byte for byte), `uppercase` and `reverse`
//! (by Unicode scalar) work on a string `data` (other JSON values on their JSON text), `error`
//! fails retryably, anything else answers `"Unknown operation: <op>"`. A missing operation is
//! `echo`.

use std::borrow::Cow;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{Output, ProcessError, Processor};
use crate::backend::Job;
use crate::clock::{Timestamp, RFC3339_LEN};

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
    let p: Payload<'_> = serde_json::from_slice(payload).map_err(|e| ProcessError {
        message: format!("invalid payload: {e}"),
        retryable: false,
    })?;
    let (op, data) = (p.operation, p.data.map(RawValue::get));
    let op = op.as_deref().unwrap_or("echo");
    let output: Vec<u8> = match op {
        "echo" => data.unwrap_or("null").as_bytes().to_vec(),
        "uppercase" => json_string(&text_of(data)?.to_uppercase()),
        "reverse" => json_string(&text_of(data)?.chars().rev().collect::<String>()),
        "error" => {
            return Err(ProcessError {
                message: "Simulated error".into(),
                retryable: true,
            });
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

/// The string a text operation works on: a JSON string's value, `""` for no data, otherwise the
/// value's JSON text.
fn text_of(data: Option<&str>) -> Result<String, ProcessError> {
    match data {
        None | Some("null") => Ok(String::new()),
        Some(raw) if raw.starts_with('"') => serde_json::from_str(raw).map_err(|e| ProcessError {
            message: format!("invalid data: {e}"),
            retryable: false,
        }),
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

    #[test]
    fn escaped_operations_are_read() {
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
            ProcessError {
                message: "Simulated error".into(),
                retryable: true
            }
        );
        let e = run(br#"{"operation":5}"#).unwrap_err();
        assert!(!e.retryable);
    }
}
