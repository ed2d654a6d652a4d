//! Submit-body validation: the broker's path (`api::submit::parse`: UTF-8, structural scan, serde
//! with the payload captured raw) against simd-json parsing the same body to a tape (which needs
//! a mutable copy of the body, counted here), for payloads of 100 B, 1 KiB and 64 KiB.
//! This is the measurement behind using serde_json rather than simd-json (PERFORMANCE.md).
//! Group `submit_parse`: the one-pass fast path for plain bodies against the full parse (a typical
//! body, one with metadata after the payload, a 1 KiB plain text payload).
//!
//! `cargo bench --bench json_validate`

use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use openhqm::api::submit;

/// A submit body whose payload is about `size` bytes of realistic JSON.
fn body(size: usize) -> Vec<u8> {
    let mut items = Vec::new();
    let mut len = 0;
    let mut i = 0;
    while len < size {
        let item = format!(
            r#"{{"id":{i},"name":"item-{i}","price":{}.{:02},"tags":["a","b\u00e9"],"ok":true}}"#,
            i * 7,
            i % 100
        );
        len += item.len() + 1;
        items.push(item);
        i += 1;
    }
    format!(
        r#"{{"payload":{{"operation":"echo","data":[{}]}},"headers":{{"X-Tenant":"a"}},"metadata":{{"priority":5,"timeout":30}}}}"#,
        items.join(",")
    )
    .into_bytes()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("json_validate");
    for (name, size) in [("100B", 100usize), ("1KiB", 1024), ("64KiB", 64 * 1024)] {
        let body = body(size);
        assert!(submit::parse(&body, Duration::from_secs(300)).is_ok());
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_with_input(
            BenchmarkId::new("serde_raw_value", name),
            &body,
            |b, body| b.iter(|| submit::parse(black_box(body), Duration::from_secs(300)).is_ok()),
        );
        g.bench_with_input(
            BenchmarkId::new("simd_json_tape", name),
            &body,
            |b, body| {
                b.iter(|| {
                    let mut copy = body.clone();
                    simd_json::to_tape(black_box(&mut copy)).is_ok()
                })
            },
        );
    }
    g.finish();

    // The body nearly every client sends: the one-pass fast path (`submit_plain.rs`) against the
    // full parse it stands in for, also with `metadata` after the payload (the fast path reads
    // the body once, then serde only the metadata object).
    let mut g = c.benchmark_group("submit_parse");
    // A plain text payload of 1 KiB (a log line, a message): long strings, no escapes.
    let text_1k = format!(
        r#"{{"payload":{{"operation":"echo","data":"{}"}}}}"#,
        "lorem ipsum dolor sit amet, ".repeat(37)
    );
    for (name, body) in [
        (
            "typical",
            &br#"{"payload":{"operation":"uppercase","data":"hello"}}"#[..],
        ),
        (
            "metadata_last",
            &br#"{"payload":{"operation":"uppercase","data":"hello"},"metadata":{"priority":5}}"#[..],
        ),
        ("text_1k", text_1k.as_bytes()),
    ] {
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_with_input(BenchmarkId::new("parse", name), body, |b, body| {
            b.iter(|| submit::parse(black_box(body), Duration::from_secs(300)).is_ok())
        });
        g.bench_with_input(BenchmarkId::new("parse_full", name), body, |b, body| {
            b.iter(|| submit::parse_full(black_box(body), Duration::from_secs(300)).is_ok())
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
