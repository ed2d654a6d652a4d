//! Unit tests of `submit.rs`.

use super::*;

const T: Duration = Duration::from_secs(300);

fn status_of(body: &str) -> u16 {
    match parse(body.as_bytes(), T) {
        Ok(_) => 202,
        Err(e) => e.kind().status(),
    }
}

#[test]
fn body_table() {
    let deep = format!(
        "{{\"payload\":{{\"a\":{}{}}}}}",
        "[".repeat(200),
        "]".repeat(200)
    );
    let cases: Vec<(&str, u16)> = vec![
        (r#"{"payload":{"operation":"echo","data":"Hello!"}}"#, 202),
        (
            r#"{"payload":{},"headers":{"X-Tenant":"a"},"metadata":{"priority":5,"timeout":300,"endpoint":"billing","method":"POST","other":1}}"#,
            202,
        ),
        (r#"{"payload":{},"headers":null,"metadata":null}"#, 202),
        (r#"{"payload":{},"unknown":1}"#, 202),
        (r#"{"payload":{"#, 400),
        (r#"{"payload":{}} trailing"#, 400),
        ("", 400),
        ("\u{feff}{\"payload\":{}}", 400),
        (r#"{"payload":{"a":"\ud800"}}"#, 400),
        (&deep, 400),
        (r#"{"payload":{},"payload":{}}"#, 422),
        (r#"[]"#, 422),
        (r#"{}"#, 422),
        (r#"{"payload":[]}"#, 422),
        (r#"{"payload":"x"}"#, 422),
        (r#"{"payload":null}"#, 422),
        (r#"{"payload":{},"metadata":{"priority":10}}"#, 422),
        (r#"{"payload":{},"metadata":{"priority":-1}}"#, 422),
        (r#"{"payload":{},"metadata":{"priority":"high"}}"#, 422),
        (r#"{"payload":{},"metadata":{"timeout":0}}"#, 422),
        (r#"{"payload":{},"metadata":{"timeout":-5}}"#, 422),
        (r#"{"payload":{},"metadata":{"retry_count":-1}}"#, 422),
        (r#"{"payload":{},"metadata":[]}"#, 422),
        (r#"{"payload":{},"metadata":{"method":"GE T"}}"#, 422),
        (r#"{"payload":{},"metadata":{"method":""}}"#, 422),
        (r#"{"payload":{},"metadata":{"method":"head"}}"#, 202),
        (r#"{"payload":{},"headers":{"a":1}}"#, 422),
        (r#"{"payload":{},"headers":[]}"#, 422),
    ];
    for (body, want) in cases {
        assert_eq!(status_of(body), want, "{body}");
    }
    assert_eq!(
        parse(b"{\"payload\":{\"a\":\"\xff\"}}", T)
            .unwrap_err()
            .kind(),
        ErrorKind::MalformedJson
    );
}

#[test]
fn keeps_payload_bytes_and_reads_metadata() {
    let body = Bytes::from_static(br#"{ "metadata": {"priority": 3, "timeout": 1.5}, "payload" : {"b": 1.50,  "a":[ ]} }"#);
    let sub = parse(&body, T).unwrap();
    assert_eq!(&body[sub.payload.clone()], br#"{"b": 1.50,  "a":[ ]}"#);
    assert_eq!(sub.metadata.priority, 3);
    assert_eq!(sub.metadata.timeout, Duration::from_millis(1500));
    assert_eq!(sub.headers, None);
}

#[test]
fn validation_errors_carry_locations() {
    let e = parse(br#"{"metadata":{"priority":10}}"#, T).unwrap_err();
    let crate::error::Detail::Fields(fields) = e.detail() else {
        panic!("{e:?}")
    };
    let locs: Vec<String> = fields.iter().map(|f| f.loc.join(".")).collect();
    assert_eq!(locs, ["body.payload", "body.metadata.priority"]);
    assert_eq!(fields[0].kind, "value_error.missing");
}

#[test]
fn media_types() {
    for ok in [
        "application/json",
        "Application/JSON",
        "application/json; charset=utf-8",
        "application/json;charset=\"UTF-8\"",
    ] {
        assert!(is_json_media_type(ok.as_bytes()), "{ok}");
    }
    for bad in [
        "text/plain",
        "application/json; charset=iso-8859-1",
        "application/jsonx",
        "",
        "application/x-www-form-urlencoded",
    ] {
        assert!(!is_json_media_type(bad.as_bytes()), "{bad}");
    }
}
