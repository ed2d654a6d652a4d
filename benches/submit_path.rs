//! The in-process submit → complete path of one request, without sockets, through the same
//! code the server runs: parse the HTTP request, the submit handler (validate, mint, PENDING,
//! enqueue on the embedded backend, 202), a worker slot's run of the job (built-in operation,
//! COMPLETED), and the response lookup.
//!
//! `cargo bench --bench submit_path`

use std::cell::RefCell;
use std::future::Future;
use std::pin::pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::BytesMut;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use openhqm::api::{response, submit};
use openhqm::backend::{Backend, EmbeddedBackend};
use openhqm::clock::Timestamp;
use openhqm::config::Config;
use openhqm::http::{Conn, Event, Limits};
use openhqm::id::IdMinter;
use openhqm::metrics::ShardMetrics;
use openhqm::worker::{Processors, Worker};

const WIRE: &[u8] =
    b"POST /api/v1/submit HTTP/1.1\r\nHost: localhost:8000\r\nContent-Type: application/json\r\n\
Content-Length: 52\r\n\r\n{\"payload\":{\"operation\":\"uppercase\",\"data\":\"hello\"}}";

/// Runs a future that completes without waiting (the embedded backend's operations do).
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
    let config = Config::default();
    let backend = Rc::new(EmbeddedBackend::new(
        IdMinter::new(0, 1),
        usize::MAX,
        Duration::from_secs(3600),
        config.server.max_waiters,
    ));
    let metrics = Rc::new(RefCell::new(ShardMetrics::default()));
    let processors = Processors::default();
    let worker = Worker::new(
        backend.clone(),
        metrics.clone(),
        processors.for_shard(),
        &config.worker,
        1,
    );
    let routes = openhqm::api::routing::Routes::default();
    let rules = submit::Rules {
        owner: None,
        default_timeout: config.worker.timeout,
        processors: &processors,
        routes: &routes,
    };
    let mut conn = Conn::new(Limits::default(), openhqm::api::precheck);
    let mut out = BytesMut::with_capacity(4096);
    g.bench_function("submit_then_complete", |b| {
        b.iter(|| {
            // Submit.
            let mut input = BytesMut::from(WIRE);
            let Event::Request(req) = conn.poll(&mut input) else {
                panic!("no request")
            };
            let accepted = submit::accepted_response(
                &now(submit::accept(
                    &*backend,
                    &metrics,
                    &rules,
                    &req.body,
                    Timestamp::now(),
                    false,
                ))
                .unwrap()
                .0,
            );
            out.clear();
            accepted.encode(false, &mut out);
            // Process.
            let d = now(backend.next_jobs(1, 1)).pop().unwrap();
            let id = d.job.id;
            now(worker.run_job(d));
            // Look up.
            let state = backend.held(&id).unwrap();
            black_box(response::render(&id, &state))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
