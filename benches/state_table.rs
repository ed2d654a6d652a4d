//! One shard's state table: a request's whole life (insert pending, start, finish), a lookup by
//! id in a table of 1 M states, and an expiry sweep.
//!
//! `cargo bench --bench state_table`

use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use openhqm::clock::Timestamp;
use openhqm::id::{CorrelationId, IdMinter};
use openhqm::store::{Outcome, StateTable, Status};

fn outcome() -> Outcome {
    Outcome {
        result: Some(Bytes::from_static(
            br#"{"output":"HELLO","processed_at":"2026-11-26T10:30:00.123456Z"}"#,
        )),
        headers: None,
        status_code: Some(200),
        error: None,
        processing_time_ms: 0,
        completed_at: Timestamp(2),
    }
}

fn filled(n: usize, ttl: Duration) -> (StateTable, Vec<CorrelationId>) {
    let mut t = StateTable::new(ttl);
    let mut m = IdMinter::new(0, 1);
    let now = Instant::now();
    let ids: Vec<_> = (0..n)
        .map(|_| t.insert_pending(m.mint(), Timestamp(1)))
        .collect();
    for id in &ids {
        t.start(id, Timestamp(1)).unwrap();
        t.finish_or_insert(id, Status::Completed, outcome(), Timestamp(0), now)
            .unwrap();
    }
    (t, ids)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("state_table");
    g.throughput(Throughput::Elements(1));
    let (mut table, ids) = filled(1_000_000, Duration::from_secs(3600));
    let mut m = IdMinter::new(0, 1);
    let now = Instant::now();
    g.bench_function("lifecycle_in_1M_table", |b| {
        b.iter(|| {
            let id = table.insert_pending(m.mint(), Timestamp(1));
            table.start(&id, Timestamp(1)).unwrap();
            table
                .finish_or_insert(&id, Status::Completed, outcome(), Timestamp(0), now)
                .unwrap();
        })
    });
    let mut i = 0;
    g.bench_function("lookup_in_1M_table", |b| {
        b.iter(|| {
            i = (i + 7919) % ids.len();
            black_box(table.get(&ids[i]).is_some())
        })
    });
    g.throughput(Throughput::Elements(100_000));
    g.bench_function("expire_100k_due", |b| {
        b.iter_batched(
            || filled(100_000, Duration::ZERO).0,
            |mut t| assert_eq!(t.expire(Instant::now() + Duration::from_secs(1)), 100_000),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
