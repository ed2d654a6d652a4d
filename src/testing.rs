//! Helpers for in-process unit tests: run a future that must finish on its first poll (the
//! embedded backend and the built-in processor never wait), and make jobs and backends without
//! a runtime or sockets.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;

use crate::backend::{EmbeddedBackend, Job, Metadata};
use crate::clock::Timestamp;
use crate::id::{CorrelationId, IdMinter};

/// The output of `f`, which must be ready at its first poll (it panics otherwise: a test that
/// would have to wait is not an in-process test).
pub(crate) fn ready<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("the future waited; in-process tests only run ones that do not"),
    }
}

/// Whether `f` is still waiting after one poll.
pub(crate) fn pending<F: Future>(f: F) -> bool {
    let mut f = pin!(f);
    f.as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
        .is_pending()
}

/// Metadata with a 30 s deadline, naming processor `endpoint`.
pub(crate) fn metadata(endpoint: Option<&str>) -> Metadata {
    Metadata {
        priority: 0,
        timeout: Duration::from_secs(30),
        retry_count: 0,
        endpoint: endpoint.map(str::to_owned),
        method: None,
    }
}

/// A job with a fresh id and `payload`, naming processor `endpoint`.
pub(crate) fn job(payload: &'static [u8], endpoint: Option<&str>) -> Job {
    Job {
        id: IdMinter::new(0, 1).mint(),
        payload: Bytes::from_static(payload),
        headers: None,
        metadata: metadata(endpoint),
        submitted_at: Timestamp::now(),
        first_started_at: None,
    }
}

/// An embedded backend for shard 0 of 1.
pub(crate) fn embedded() -> EmbeddedBackend {
    EmbeddedBackend::new(IdMinter::new(0, 1), 1000, Duration::from_secs(3600), 100)
}

/// Parses an id the tests got back as text.
pub(crate) fn id(text: &[u8]) -> CorrelationId {
    CorrelationId::parse(text).expect("a correlation id")
}
