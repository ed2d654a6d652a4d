//! Correlation ids: minting an id a shard owns, `shard_for`, and parsing the text form.
//!
//! `cargo bench --bench shard_id`

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use openhqm::id::{shard_for, CorrelationId, IdMinter};

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("shard_id");
    g.throughput(Throughput::Elements(1));
    let mut minter = IdMinter::new(3, 8);
    g.bench_function("mint_owned_by_shard_3_of_8", |b| {
        b.iter(|| black_box(minter.mint()))
    });
    let id = minter.mint();
    g.bench_function("shard_for_of_8", |b| {
        b.iter(|| shard_for(black_box(&id), black_box(8)))
    });
    let text = id.to_text();
    g.bench_function("parse_text", |b| {
        b.iter(|| CorrelationId::parse(black_box(&text)))
    });
    g.bench_function("to_text", |b| b.iter(|| black_box(&id).to_text()));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
