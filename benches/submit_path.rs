//! The in-process submit → complete path of one request, without sockets: parse the HTTP request,
//! validate the body, mint the id, store PENDING, enqueue on the embedded queue, answer 202;
//! fetch, run the built-in operation, store COMPLETED, answer the response lookup.
//!
//! `cargo bench --bench submit_path`

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use openhqm::api::{response, submit};
use openhqm::clock::Timestamp;
use openhqm::http::{Conn, Event, Limits, Response};
use openhqm::queue::{Backend, Job, MemoryQueue, QueueBackend};
use openhqm::shard::id::IdMinter;
use openhqm::store::{Outcome, StateTable, Status};
use openhqm::worker::builtin;

const WIRE: &[u8] =
    b"POST /api/v1/submit HTTP/1.1\r\nHost: localhost:8000\r\nContent-Type: application/json\r\n\
Content-Length: 52\r\n\r\n{\"payload\":{\"operation\":\"uppercase\",\"data\":\"hello\"}}";

/// Runs a future that completes without waiting (the embedded queue's operations do).
fn now<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("expected an immediate result"),
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("submit_path");
    g.throughput(Throughput::Elements(1));
    let mut table = StateTable::new(Duration::from_secs(3600));
    let queue = Backend::Memory(MemoryQueue::new(usize::MAX));
    let mut minter = IdMinter::new(0, 1);
    let mut conn = Conn::new(Limits::default(), openhqm::api::precheck);
    let mut out = BytesMut::with_capacity(4096);
    g.bench_function("submit_then_complete", |b| {
        b.iter(|| {
            // Submit.
            let mut input = BytesMut::from(WIRE);
            let Event::Request(req) = conn.poll(&mut input) else {
                panic!("no request")
            };
            let sub = submit::parse(&req.body, Duration::from_secs(300)).unwrap();
            let at = Timestamp::now();
            let id = table.insert_pending(minter.mint(), at);
            let job = Job {
                id,
                payload: Bytes::copy_from_slice(&req.body[sub.payload]),
                headers: None,
                metadata: sub.metadata,
                submitted_at: at,
            };
            now(queue.enqueue(job)).unwrap();
            out.clear();
            Response::json(202, b"{\"correlation_id\":\"...\"}".to_vec()).encode(false, &mut out);
            // Process.
            let d = now(queue.fetch(1, 1)).pop().unwrap();
            table.start(&d.job.id, Timestamp::now()).unwrap();
            let o = builtin::run(&d.job.payload).unwrap();
            let outcome = Outcome {
                result: Some(o.result),
                headers: None,
                status_code: Some(200),
                error: None,
                processing_time_ms: 0,
                completed_at: Timestamp::now(),
            };
            table
                .finish(&d.job.id, Status::Completed, outcome, Instant::now())
                .unwrap();
            now(queue.finish(d, None));
            // Look up.
            black_box(response::render(&id, table.get(&id).unwrap()))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
