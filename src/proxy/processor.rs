//! The proxy processor: one per endpoint and shard, with that shard's keep-alive pool. It sends
//! the job's payload to the upstream and turns the answer into the job's outcome (API.md, proxy
//! mode): a status in `retry_on`, a connect error or an attempt timeout is retried with the
//! worker backoff (a `Retry-After` as the least delay); a response over the size limit fails
//! without retry; any other status completes with that status code.

use std::rc::Rc;
use std::time::Duration;

use base64::Engine;
use bytes::{Bytes, BytesMut};
use serde_json::value::RawValue;

use super::endpoint::{Endpoint, HOP_BY_HOP};
use crate::api::json::put_str;
use crate::backend::Job;
use crate::clock::Timestamp;
use monoio_rustls::TlsConnector;
use rustls::pki_types::ServerName;

use crate::upstream::{
    encode, system_lookup, Addresses, Exchange, Pool, Tls, UpstreamError, UpstreamRequest,
    UpstreamResponse,
};
use crate::worker::{Output, ProcessError, Processor};

/// Forwards jobs to one endpoint.
pub(crate) struct HttpProcessor {
    endpoint: Rc<Endpoint>,
    pool: Pool,
}

impl HttpProcessor {
    /// The processor of `endpoint` on the calling shard.
    pub(crate) fn new(endpoint: Endpoint) -> Self {
        let tls = endpoint.tls.as_ref().map(|(config, name)| Tls {
            connector: TlsConnector::from(config.clone()),
            // Checked when the endpoint was built.
            name: ServerName::try_from(name.clone()).expect("a valid server name"),
        });
        let (host, port) = &endpoint.lookup;
        let addrs = Addresses::new(
            host,
            *port,
            endpoint.addrs.clone(),
            endpoint.dns_refresh,
            system_lookup,
        );
        let pool = Pool::new(
            addrs,
            endpoint.max_connections,
            endpoint.timeout.min(Duration::from_secs(10)),
            tls,
        );
        HttpProcessor {
            endpoint: Rc::new(endpoint),
            pool,
        }
    }

    /// The request for `job`, encoded.
    fn request(&self, job: &Job) -> Result<Bytes, ProcessError> {
        let ep = &*self.endpoint;
        let id = job.id.to_text();
        let forwarded = forwarded_headers(job.headers.as_deref())?;
        let mut headers: Vec<(&str, &[u8])> = Vec::with_capacity(8);
        for (k, v) in &ep.headers {
            headers.push((k, v));
        }
        // A forwarded header replaces an endpoint header of the same name (auth and the
        // correlation id are never forwarded).
        for (k, v) in &forwarded {
            if ep.forwards(&k.to_ascii_lowercase()) {
                headers.retain(|(n, _)| !n.eq_ignore_ascii_case(k));
                headers.push((k, v.as_bytes()));
            }
        }
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            headers.push(("content-type", b"application/json"));
        }
        if let Some((name, value)) = &ep.auth {
            headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
            headers.push((name, value.0.as_bytes()));
        }
        headers.push(("x-correlation-id", &id));
        let method = job.metadata.method.as_deref().unwrap_or(&ep.method);
        let mut out = BytesMut::new();
        encode(
            &UpstreamRequest {
                method,
                target: &ep.target,
                host: &ep.host,
                headers: &headers,
                body: &job.payload,
            },
            &mut out,
        )
        .map_err(|e| ProcessError::permanent(format!("cannot build the upstream request: {e:?}")))?;
        Ok(out.freeze())
    }
}

impl Processor for HttpProcessor {
    async fn process(&self, job: &Job) -> Result<Output, ProcessError> {
        let ep = &*self.endpoint;
        let exchange = Exchange {
            head_request: job.metadata.method.as_deref().unwrap_or(&ep.method) == "HEAD",
            request: self.request(job)?,
            max_body: ep.max_response_bytes,
            timeout: ep.timeout,
        };
        let started = std::time::Instant::now();
        let sent = self.pool.send(&exchange).await;
        let mut digits = itoa::Buffer::new();
        let code = match &sent {
            Ok(resp) => digits.format(resp.status),
            Err(e) => e.kind_label(),
        };
        super::record(&ep.name, code, started.elapsed().as_secs_f64());
        match sent {
            Ok(resp) if ep.retry_on.contains(&resp.status) => {
                let e = ProcessError::retryable(format!(
                    "upstream {} answered {}",
                    ep.name, resp.status
                ))
                .with_status_code(resp.status);
                Err(match retry_after(&resp, Timestamp::now()) {
                    Some(d) => e.after(d),
                    None => e,
                })
            }
            Ok(resp) => Ok(output(&resp)),
            Err(UpstreamError::TooLarge) => Err(ProcessError::permanent(format!(
                "upstream {}: {}",
                ep.name,
                UpstreamError::TooLarge
            ))),
            Err(e) => Err(ProcessError::retryable(format!("upstream {}: {e}", ep.name))),
        }
    }
}

/// The job's `headers` object (validated at submit as a map of strings).
fn forwarded_headers(raw: Option<&[u8]>) -> Result<Vec<(String, String)>, ProcessError> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(raw)
        .map_err(|e| ProcessError::permanent(format!("invalid headers: {e}")))?;
    Ok(map
        .into_iter()
        .filter_map(|(k, v)| match v {
            serde_json::Value::String(s) => Some((k, s)),
            _ => None,
        })
        .collect())
}

/// `Retry-After` as seconds or as an HTTP-date (the time left until it by the wall clock at
/// `now`), at most an hour.
fn retry_after(resp: &UpstreamResponse, now: Timestamp) -> Option<Duration> {
    let v = std::str::from_utf8(resp.header("retry-after")?).ok()?.trim();
    let hour = Duration::from_secs(3600);
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        // delay-seconds = 1*DIGIT: too many digits for a u64 is still "later than an hour".
        return Some(v.parse().map_or(hour, Duration::from_secs).min(hour));
    }
    let at = Timestamp::parse_http_date(v, now)?;
    Some(Duration::from_micros(at.0.saturating_sub(now.0)).min(hour))
}

/// The job's output from an upstream answer: a JSON body as the result, any other body as
/// `{"response": <text>, "content_type": <ct>}` (base64 with `"encoding": "base64"` when not
/// UTF-8), the status code, and the response headers but the hop-by-hop ones.
fn output(resp: &UpstreamResponse) -> Output {
    let is_json = serde_json::from_slice::<&RawValue>(&resp.body).is_ok();
    let result = if is_json {
        // A copy of its own: the body shares the exchange's read buffer, which a stored result
        // would otherwise keep whole for as long as the result lives.
        Bytes::copy_from_slice(&resp.body)
    } else {
        let content_type = resp
            .header("content-type")
            .map(|v| String::from_utf8_lossy(v).into_owned());
        let mut o = serde_json::Map::new();
        match std::str::from_utf8(&resp.body) {
            Ok(text) => {
                o.insert("response".into(), text.into());
            }
            Err(_) => {
                let b64 = base64::engine::general_purpose::STANDARD.encode(&resp.body);
                o.insert("response".into(), b64.into());
                o.insert("encoding".into(), "base64".into());
            }
        }
        o.insert(
            "content_type".into(),
            content_type.map_or(serde_json::Value::Null, Into::into),
        );
        Bytes::from(serde_json::Value::Object(o).to_string())
    };
    Output {
        result,
        status_code: resp.status,
        headers: Some(headers_json(&resp.headers)),
    }
}

/// The response headers but the hop-by-hop ones as one JSON object, names in byte order, the
/// values of a repeated name joined by `", "` in the order they came.
fn headers_json(headers: &[(String, Bytes)]) -> Bytes {
    let mut kept: Vec<&(String, Bytes)> = headers
        .iter()
        .filter(|(name, _)| !HOP_BY_HOP.contains(&name.as_str()))
        .collect();
    // Stable: the values of a repeated name stay in their order.
    kept.sort_by(|a, b| a.0.cmp(&b.0));
    let size: usize = kept.iter().map(|(n, v)| n.len() + v.len() + 8).sum();
    let mut out = Vec::with_capacity(size + 2);
    out.push(b'{');
    let mut rest = &kept[..];
    while let Some(((name, value), tail)) = rest.split_first() {
        let same = tail.iter().take_while(|(n, _)| n == name).count();
        if out.len() > 1 {
            out.push(b',');
        }
        put_text(&mut out, name.as_bytes());
        out.push(b':');
        if same == 0 {
            put_text(&mut out, value);
        } else {
            let mut joined = String::from_utf8_lossy(value).into_owned();
            for (_, more) in &tail[..same] {
                joined.push_str(", ");
                joined.push_str(&String::from_utf8_lossy(more));
            }
            put_str(&mut out, &joined);
        }
        rest = &tail[same..];
    }
    out.push(b'}');
    Bytes::from(out)
}

/// Appends header text as a JSON string: printable ASCII but `"` and `\` as it is (the common
/// case, and what serde would write), anything else through serde's escaping, invalid UTF-8
/// replaced.
fn put_text(out: &mut Vec<u8>, text: &[u8]) {
    // A fold rather than `all`: without the early exit the loop is vectorised.
    let plain = text.iter().fold(true, |plain, &b| {
        plain & (b' '..=b'~').contains(&b) & (b != b'"') & (b != b'\\')
    });
    if plain {
        out.reserve(text.len() + 2);
        out.push(b'"');
        out.extend_from_slice(text);
        out.push(b'"');
    } else {
        put_str(out, &String::from_utf8_lossy(text));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, headers: &[(&str, &str)], body: &[u8]) -> UpstreamResponse {
        UpstreamResponse {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Bytes::copy_from_slice(v.as_bytes())))
                .collect(),
            body: Bytes::copy_from_slice(body),
            reusable: true,
        }
    }

    fn json(b: &[u8]) -> serde_json::Value {
        serde_json::from_slice(b).unwrap()
    }

    #[test]
    fn bodies_map_as_the_contract_says() {
        let o = output(&resp(201, &[("content-type", "application/json")], br#"{"a":[1]}"#));
        assert_eq!(&o.result[..], br#"{"a":[1]}"#);
        assert_eq!(o.status_code, 201);
        let o = output(&resp(200, &[("content-type", "text/plain")], b"hello"));
        assert_eq!(
            json(&o.result),
            serde_json::json!({"response": "hello", "content_type": "text/plain"})
        );
        let o = output(&resp(200, &[], b"\xff\xfe"));
        assert_eq!(
            json(&o.result),
            serde_json::json!({"response": "//4=", "encoding": "base64", "content_type": null})
        );
    }

    #[test]
    fn a_json_result_does_not_pin_the_read_buffer() {
        // The body as the reader hands it: a slice of a larger receive buffer.
        let buffer = Bytes::from([&b"{}"[..], &[b' '; 16 * 1024]].concat());
        let mut r = resp(200, &[], b"");
        r.body = buffer.slice(0..2);
        let o = output(&r);
        assert_eq!(&o.result[..], b"{}");
        assert_ne!(o.result.as_ptr(), r.body.as_ptr(), "a copy, not a view of the buffer");
    }

    #[test]
    fn response_headers_lose_the_hop_by_hop_ones() {
        let o = output(&resp(
            200,
            &[
                ("content-length", "2"),
                ("connection", "keep-alive"),
                ("x-a", "1"),
                ("x-a", "2"),
                ("etag", "\"e\""),
            ],
            b"{}",
        ));
        assert_eq!(
            json(o.headers.as_deref().unwrap()),
            serde_json::json!({"x-a": "1, 2", "etag": "\"e\""})
        );
    }

    #[test]
    fn response_headers_are_one_json_object_in_name_order() {
        let o = output(&resp(
            200,
            &[
                ("x-b", "tab\there"),
                ("x-a", "1"),
                ("te", "trailers"),
                ("x-c", "\u{e9}"),
                ("x-a", "2"),
                ("x-a", "3"),
            ],
            b"{}",
        ));
        assert_eq!(
            o.headers.as_deref().unwrap(),
            "{\"x-a\":\"1, 2, 3\",\"x-b\":\"tab\\there\",\"x-c\":\"\u{e9}\"}".as_bytes()
        );
        let mut r = resp(200, &[("x-bin", "")], b"{}");
        r.headers[0].1 = Bytes::from_static(b"\xffok");
        assert_eq!(
            output(&r).headers.as_deref().unwrap(),
            "{\"x-bin\":\"\u{fffd}ok\"}".as_bytes()
        );
        let only_hop_by_hop = output(&resp(200, &[("host", "h")], b"{}"));
        assert_eq!(only_hop_by_hop.headers.as_deref(), Some(&b"{}"[..]));
    }

    #[test]
    fn header_text_is_written_as_serde_writes_it() {
        let serde = |t: &[u8]| {
            let mut o = Vec::new();
            put_str(&mut o, &String::from_utf8_lossy(t));
            o
        };
        let mut cases: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b'a', b, b'z']).collect();
        cases.extend(
            [&b""[..], b"text/html; charset=utf-8", b"\"q\"", b"a\\b", "\u{e9}t\u{e9}".as_bytes()]
                .map(<[u8]>::to_vec),
        );
        for t in cases {
            let mut o = Vec::new();
            put_text(&mut o, &t);
            assert_eq!(o, serde(&t), "{t:?}");
        }
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now = Timestamp(784_111_777_250_000); // Sun, 06 Nov 1994 08:49:37.25 GMT
        let after = |v: &str| retry_after(&resp(429, &[("retry-after", v)], b""), now);
        assert_eq!(after("3"), Some(Duration::from_secs(3)));
        assert_eq!(after("86400"), Some(Duration::from_secs(3600)), "at most an hour");
        assert_eq!(
            after("Sun, 06 Nov 1994 08:49:47 GMT"),
            Some(Duration::from_millis(9750))
        );
        assert_eq!(after("Sun, 06 Nov 1994 08:00:00 GMT"), Some(Duration::ZERO), "past");
        assert_eq!(after("99999999999999999999999"), Some(Duration::from_secs(3600)));
        assert_eq!(after("+5"), None, "digits only");
        assert_eq!(after("soon"), None);
        assert_eq!(retry_after(&resp(503, &[], b""), now), None);
    }
}
