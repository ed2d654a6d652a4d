//! Unit tests of `slots.rs`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::*;
use crate::backend::{EmbeddedBackend, NewJob};
use crate::config::Config;
use crate::store::Status;
use crate::testing::{embedded, metadata, ready};
use crate::worker::{Job, Output, ProcessError, Processor, Processors};

/// Counts its runs; fails (retryably) while `fail` says so.
struct Counting {
    runs: Arc<AtomicUsize>,
    fail: bool,
}

impl Processor for Counting {
    async fn process(&self, _job: &Job) -> Result<Output, ProcessError> {
        self.runs.fetch_add(1, Ordering::Relaxed);
        if self.fail {
            return Err(ProcessError::retryable("upstream said no"));
        }
        Ok(Output::json("\"done\""))
    }
}

struct Setup {
    backend: Rc<EmbeddedBackend>,
    worker: Worker<EmbeddedBackend>,
    metrics: Rc<RefCell<ShardMetrics>>,
    runs: Arc<AtomicUsize>,
}

fn setup(fail: bool) -> Setup {
    let backend = Rc::new(embedded());
    let metrics = Rc::new(RefCell::new(ShardMetrics::default()));
    let runs = Arc::new(AtomicUsize::new(0));
    let mut processors = Processors::default();
    processors.register(
        "counting",
        Counting {
            runs: runs.clone(),
            fail,
        },
    );
    let mut config = Config::default().worker;
    config.max_retries = 2;
    let worker = Worker::new(
        backend.clone(),
        metrics.clone(),
        processors.for_shard(),
        &config,
        7,
    );
    Setup {
        backend,
        worker,
        metrics,
        runs,
    }
}

/// Submits a job naming `endpoint` and takes its delivery from the queue.
fn submit_and_take(s: &Setup, payload: &'static [u8], endpoint: Option<&str>) -> Delivery {
    let job = NewJob {
        payload: Bytes::from_static(payload),
        headers: None,
        metadata: metadata(endpoint),
        owner: None,
    };
    ready(s.backend.submit(job, Timestamp::now(), false)).expect("accepted");
    let mut taken = ready(s.backend.next_jobs(1, 1));
    assert_eq!(taken.len(), 1);
    taken.pop().unwrap()
}

use bytes::Bytes;

#[test]
fn a_job_runs_its_named_processor_and_completes() {
    let s = setup(false);
    let d = submit_and_take(&s, b"{}", Some("counting"));
    let id = d.job.id;
    ready(s.worker.run_job(d));
    assert_eq!(s.runs.load(Ordering::Relaxed), 1);
    let state = s.backend.held(&id).unwrap();
    assert_eq!(state.status, Status::Completed);
    let o = state.outcome.unwrap();
    assert_eq!(o.result.as_deref(), Some(&b"\"done\""[..]));
    assert_eq!(o.status_code, Some(200));
}

#[test]
fn jobs_naming_no_processor_run_the_builtin() {
    let s = setup(false);
    let d = submit_and_take(&s, br#"{"operation":"uppercase","data":"abc"}"#, None);
    let id = d.job.id;
    ready(s.worker.run_job(d));
    assert_eq!(s.runs.load(Ordering::Relaxed), 0);
    let o = s.backend.held(&id).unwrap().outcome.unwrap();
    assert!(o.result.unwrap().starts_with(b"{\"output\":\"ABC\""));
}

#[test]
fn a_duplicate_delivery_is_not_run_again() {
    let s = setup(false);
    let d = submit_and_take(&s, b"{}", Some("counting"));
    let id = d.job.id;
    ready(s.worker.run_job(d.clone()));
    let first = s.backend.held(&id).unwrap();
    // The same delivery again: its acknowledgement was lost.
    ready(s.worker.run_job(d));
    assert_eq!(s.runs.load(Ordering::Relaxed), 1);
    assert_eq!(s.backend.held(&id).unwrap(), first);
}

#[test]
fn failures_retry_then_dead_letter() {
    let s = setup(true);
    let d = submit_and_take(&s, b"{}", Some("counting"));
    let id = d.job.id;
    // Attempts 1 and 2 are retried (max_retries = 2): the request stays PROCESSING.
    for attempt in 1..=2 {
        let d = Delivery {
            attempt,
            ..d.clone()
        };
        ready(s.worker.run_job(d));
        assert_eq!(s.backend.held(&id).unwrap().status, Status::Processing);
    }
    assert_eq!(s.metrics.borrow().retries, 2);
    // The third attempt is the last.
    ready(s.worker.run_job(Delivery { attempt: 3, ..d }));
    let state = s.backend.held(&id).unwrap();
    assert_eq!(state.status, Status::Failed);
    assert_eq!(
        state.outcome.unwrap().error.as_deref(),
        Some("upstream said no")
    );
    let dead = s.backend.all_dead_letters();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].job.id, id);
    assert_eq!(dead[0].attempts, 3);
    assert_eq!(s.runs.load(Ordering::Relaxed), 3);
}

#[test]
fn a_job_whose_earlier_attempts_used_the_deadline_times_out_without_running() {
    let s = setup(true);
    let mut d = submit_and_take(&s, b"{}", Some("counting"));
    let id = d.job.id;
    // The first attempt started 31 s ago; the deadline is 30 s.
    d.job.first_started_at = Some(Timestamp(Timestamp::now().0 - 31_000_000));
    d.attempt = 2;
    ready(s.worker.run_job(d));
    assert_eq!(s.runs.load(Ordering::Relaxed), 0, "not run again");
    assert_eq!(s.backend.held(&id).unwrap().status, Status::Timeout);
}

#[test]
fn an_unknown_processor_is_retried_then_dead_lettered() {
    let s = setup(false);
    // Submit refuses unknown names; a job from a broker with other processors can still
    // arrive through a shared Redis.
    let d = submit_and_take(&s, b"{}", Some("not-here"));
    let id = d.job.id;
    ready(s.worker.run_job(d.clone()));
    assert_eq!(s.backend.held(&id).unwrap().status, Status::Processing);
    assert_eq!(s.metrics.borrow().retries, 1);
    ready(s.worker.run_job(Delivery { attempt: 3, ..d }));
    let state = s.backend.held(&id).unwrap();
    assert_eq!(state.status, Status::Failed);
    assert!(state
        .outcome
        .unwrap()
        .error
        .unwrap()
        .contains("\"not-here\""));
    assert_eq!(s.backend.all_dead_letters().len(), 1);
}
