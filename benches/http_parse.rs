//! HTTP request parsing through the connection sequencer (`http::Conn`): head parse, framing
//! rules and body decoding, as the shard runs them, without sockets.
//!
//! `cargo bench --bench http_parse`

use bytes::BytesMut;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use openhqm::error::Error;
use openhqm::http::{Conn, Event, Limits, RequestHead};

fn accept_all(_: &RequestHead) -> Result<(), Error> {
    Ok(())
}

const SMALL_GET: &[u8] = b"GET /health HTTP/1.1\r\nHost: localhost:8000\r\n\r\n";
const SUBMIT: &[u8] =
    b"POST /api/v1/submit HTTP/1.1\r\nHost: localhost:8000\r\nUser-Agent: curl/8.5.0\r\n\
Accept: */*\r\nContent-Type: application/json\r\nContent-Length: 52\r\n\r\n\
{\"payload\":{\"operation\":\"uppercase\",\"data\":\"hello\"}}";
const CHUNKED_SUBMIT: &[u8] = b"POST /api/v1/submit HTTP/1.1\r\nHost: localhost:8000\r\n\
Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n\
1a\r\n{\"payload\":{\"operation\":\"u\r\n1a\r\nppercase\",\"data\":\"hello\"}}\r\n0\r\n\r\n";

/// Parses every request in `wire`; returns how many.
fn parse_all(wire: &[u8]) -> usize {
    let mut conn = Conn::new(Limits::default(), accept_all);
    let mut input = BytesMut::from(wire);
    let mut n = 0;
    loop {
        match conn.poll(&mut input) {
            Event::Request(r) => {
                black_box(&r);
                n += 1;
            }
            Event::NeedMore(_) => return n,
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("http_parse");
    let pipelined: Vec<u8> = SUBMIT.repeat(64);
    for (name, wire, requests) in [
        ("small_get", SMALL_GET.to_vec(), 1u64),
        ("typical_submit", SUBMIT.to_vec(), 1),
        ("chunked_submit", CHUNKED_SUBMIT.to_vec(), 1),
        ("pipelined_64_submits", pipelined, 64),
    ] {
        assert_eq!(parse_all(&wire) as u64, requests, "{name}");
        g.throughput(Throughput::Elements(requests));
        g.bench_function(name, |b| b.iter(|| parse_all(black_box(&wire))));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
