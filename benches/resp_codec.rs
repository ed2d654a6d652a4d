//! RESP: encoding a batch of submit transactions (what a shard writes in one event-loop turn) and
//! decoding an `XREADGROUP` reply of 10 entries.
//!
//! `cargo bench --bench resp_codec`

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use openhqm::backend::redis::fields::job_fields;
use openhqm::backend::redis::reads;
use openhqm::backend::redis::state_value;
use openhqm::backend::{Job, Metadata};
use openhqm::clock::Timestamp;
use openhqm::id::IdMinter;
use openhqm::resp::{encode::command, Frame};
use openhqm::store::RequestState;

fn job(minter: &mut IdMinter) -> Job {
    Job {
        id: minter.mint(),
        payload: Bytes::from_static(br#"{"operation":"uppercase","data":"hello"}"#),
        headers: None,
        metadata: Metadata {
            priority: 0,
            timeout: Duration::from_secs(300),
            retry_count: 0,
            endpoint: None,
            method: None,
        },
        submitted_at: Timestamp(1_795_689_000_123_456),
        first_started_at: None,
    }
}

/// MULTI, XADD, SET ... EX, EXEC for one job, as the submit path encodes it.
fn encode_submit(out: &mut BytesMut, job: &Job) {
    let entry = job_fields(job, 1);
    let state = state_value::encode(&RequestState::pending(job.submitted_at));
    let key = format!("openhqm-requests:{{0}}:state:{}", job.id);
    command(out, &[b"MULTI"]);
    let mut xadd: Vec<&[u8]> = vec![b"XADD", b"openhqm-requests:{0}", b"*"];
    xadd.extend(entry.iter().map(|b| &b[..]));
    command(out, &xadd);
    command(out, &[b"SET", key.as_bytes(), &state, b"EX", b"3600"]);
    command(out, &[b"EXEC"]);
}

/// An XREADGROUP reply with `n` entries, as Redis sends it.
fn xreadgroup_reply(n: usize) -> Bytes {
    let mut minter = IdMinter::new(0, 1);
    let mut out = BytesMut::new();
    out.extend_from_slice(b"*1\r\n*2\r\n$20\r\nopenhqm-requests:{0}\r\n");
    out.extend_from_slice(format!("*{n}\r\n").as_bytes());
    for i in 0..n {
        let fields = job_fields(&job(&mut minter), 1);
        let id = format!("1795689000123-{i}");
        out.extend_from_slice(
            format!("*2\r\n${}\r\n{id}\r\n*{}\r\n", id.len(), fields.len()).as_bytes(),
        );
        for f in &fields {
            out.extend_from_slice(format!("${}\r\n", f.len()).as_bytes());
            out.extend_from_slice(f);
            out.extend_from_slice(b"\r\n");
        }
    }
    out.freeze()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("resp_codec");
    let mut minter = IdMinter::new(0, 1);
    let jobs: Vec<Job> = (0..64).map(|_| job(&mut minter)).collect();
    g.throughput(Throughput::Elements(64));
    g.bench_function("encode_64_submit_transactions", |b| {
        let mut out = BytesMut::with_capacity(64 * 1024);
        b.iter(|| {
            out.clear();
            for j in &jobs {
                encode_submit(&mut out, j);
            }
            black_box(out.len())
        })
    });
    let reply = xreadgroup_reply(10);
    g.throughput(Throughput::Elements(10));
    g.bench_function("decode_xreadgroup_10_entries", |b| {
        b.iter(|| {
            let (frame, _) = Frame::decode(black_box(&reply)).unwrap().unwrap();
            reads::xreadgroup(&frame).unwrap().len()
        })
    });
    // The reply decoder alone, ours against redis-protocol's (both zero-copy over `Bytes`): the
    // measurement behind decoding RESP by hand (docs/ARCHITECTURE.md, Dependencies).
    for n in [1usize, 10] {
        let reply = xreadgroup_reply(n);
        g.throughput(Throughput::Bytes(reply.len() as u64));
        g.bench_function(format!("frame_xreadgroup_{n}/ours"), |b| {
            b.iter(|| Frame::decode(black_box(&reply)).unwrap().unwrap().1)
        });
        g.bench_function(format!("frame_xreadgroup_{n}/redis_protocol"), |b| {
            b.iter(|| {
                redis_protocol::resp2::decode::decode_bytes(black_box(&reply))
                    .unwrap()
                    .unwrap()
                    .1
            })
        });
    }
    let ok = Bytes::from_static(b"+OK\r\n");
    g.throughput(Throughput::Elements(1));
    g.bench_function("frame_ok/ours", |b| {
        b.iter(|| Frame::decode(black_box(&ok)).unwrap().unwrap().1)
    });
    g.bench_function("frame_ok/redis_protocol", |b| {
        b.iter(|| {
            redis_protocol::resp2::decode::decode_bytes(black_box(&ok))
                .unwrap()
                .unwrap()
                .1
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
