//! A slot is free once its job's outcome is handed to the backend, while the backend records it
//! (a Redis commit away): run against a backend whose records wait until the test lets them go.
//! And a drain hands what a read in flight took back to the backend instead of dropping it.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::*;
use crate::backend::idempotency::{BodyHash, Idempotent};
use crate::backend::{
    Accepted, Cancel, DeadLetterEntry, DlqPosition, EmbeddedBackend, NewJob, QueueError, Watch,
};
use crate::config::Config;
use crate::id::CorrelationId;
use crate::store::{RequestState, Status};
use crate::testing::{embedded, metadata};
use crate::worker::Processors;

/// The embedded backend, with every `settle` held until `open`, and a read in flight at a drain
/// awaited (as Redis's is) and what it took given back here.
struct HeldRecords {
    inner: EmbeddedBackend,
    open: Cell<bool>,
    opened: Notify,
    /// Settles waiting now.
    waiting: Cell<usize>,
    stop_asked: Cell<bool>,
    given_back: RefCell<Vec<CorrelationId>>,
}

impl HeldRecords {
    fn new() -> Self {
        HeldRecords {
            inner: embedded(),
            open: Cell::new(false),
            opened: Notify::new(),
            waiting: Cell::new(0),
            stop_asked: Cell::new(false),
            given_back: RefCell::default(),
        }
    }
}

fn echo_job() -> NewJob {
    NewJob {
        payload: bytes::Bytes::from_static(br#"{"operation":"echo","data":"x"}"#),
        headers: None,
        metadata: metadata(None),
        owner: None,
    }
}

impl Backend for HeldRecords {
    async fn submit(
        &self,
        job: NewJob,
        now: Timestamp,
        watch: bool,
    ) -> Result<(Accepted, Option<Watch<'_>>), QueueError> {
        self.inner.submit(job, now, watch).await
    }
    async fn submit_idempotent(
        &self,
        job: NewJob,
        now: Timestamp,
        key: &[u8],
        body: BodyHash,
    ) -> Result<Idempotent, QueueError> {
        self.inner.submit_idempotent(job, now, key, body).await
    }
    async fn submit_many(
        &self,
        jobs: Vec<NewJob>,
        now: Timestamp,
    ) -> Result<Vec<Accepted>, QueueError> {
        self.inner.submit_many(jobs, now).await
    }
    async fn next_jobs(&self, free: usize, per_read: usize) -> Vec<Delivery> {
        self.inner.next_jobs(free, per_read).await
    }
    async fn stop_taking(&self) -> bool {
        self.stop_asked.set(true);
        true
    }
    async fn give_back(&self, taken: Vec<Delivery>) {
        let ids = taken.iter().map(|d| d.job.id);
        self.given_back.borrow_mut().extend(ids);
    }
    fn start(&self, delivery: &Delivery, now: Timestamp) -> Start {
        self.inner.start(delivery, now)
    }
    async fn report_processing(&self, delivery: &Delivery, now: Timestamp) {
        self.inner.report_processing(delivery, now).await
    }
    async fn settle(&self, delivery: Delivery, settlement: Settlement, ended: Instant) {
        self.waiting.set(self.waiting.get() + 1);
        while !self.open.get() {
            self.opened.notified().await;
        }
        self.waiting.set(self.waiting.get() - 1);
        self.inner.settle(delivery, settlement, ended).await
    }
    fn held(&self, id: &CorrelationId) -> Option<RequestState> {
        self.inner.held(id)
    }
    fn watch(&self, id: &CorrelationId) -> Option<Watch<'_>> {
        self.inner.watch(id)
    }
    async fn load(&self, id: &CorrelationId) -> Result<Option<RequestState>, QueueError> {
        self.inner.load(id).await
    }
    async fn cancel(&self, id: &CorrelationId, now: Timestamp) -> Result<Cancel, QueueError> {
        self.inner.cancel(id, now).await
    }
    async fn dead_letters(
        &self,
        after: Option<DlqPosition>,
        limit: usize,
    ) -> Result<Vec<DeadLetterEntry>, QueueError> {
        self.inner.dead_letters(after, limit).await
    }
    async fn redrive(&self, id: &CorrelationId, now: Timestamp) -> Result<bool, QueueError> {
        self.inner.redrive(id, now).await
    }
    async fn drop_dead_letter(&self, id: &CorrelationId) -> Result<bool, QueueError> {
        self.inner.drop_dead_letter(id).await
    }
    async fn check(&self) -> Result<(), QueueError> {
        self.inner.check().await
    }
    fn expire(&self, now: Instant) {
        self.inner.expire(now)
    }
    fn gauges(&self, metrics: &mut ShardMetrics) {
        self.inner.gauges(metrics)
    }
    fn drain_works_off(&self) -> bool {
        self.inner.drain_works_off()
    }
    fn lost_on_exit(&self) -> u64 {
        self.inner.lost_on_exit()
    }
    fn lost_ids(&self) -> Vec<CorrelationId> {
        self.inner.lost_ids()
    }
}

/// Yields to the shard's other tasks until `done`, for at most 10 s.
async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        monoio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn runtime() -> monoio::Runtime<monoio::time::TimeDriver<monoio::LegacyDriver>> {
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .expect("runtime")
}

/// A held-records backend and a worker of `slots` slots on it.
fn worker(slots: usize) -> (Rc<HeldRecords>, Rc<Worker<HeldRecords>>) {
    let backend = Rc::new(HeldRecords::new());
    let mut config = Config::default().worker;
    config.count = slots;
    let metrics = Rc::new(RefCell::new(ShardMetrics::default()));
    let processors = Processors::default().for_shard();
    let worker = Worker::new(backend.clone(), metrics, processors, &config, 7);
    (backend, Rc::new(worker))
}

#[test]
fn a_slot_takes_the_next_job_while_the_last_outcome_is_recorded() {
    runtime().block_on(async {
        let (backend, worker) = worker(2);
        // Every outcome the bound lets wait for its record, one for each slot, and three more.
        let bound = 2 * READ_AHEAD;
        let mut ids = Vec::new();
        for _ in 0..bound + 2 + 3 {
            let (accepted, _) = backend
                .submit(echo_job(), Timestamp::now(), false)
                .await
                .unwrap();
            ids.push(accepted.id);
        }
        let shutdown = Shutdown::default();
        monoio::spawn(worker.clone().run(shutdown.clone()));

        // Two slots: as many outcomes handed over as the bound allows (their slots took the
        // next jobs), then two slots waiting for their own record; three jobs still queued.
        until("the held records", || backend.waiting.get() == bound + 2).await;
        assert_eq!(worker.active(), 2);
        assert_eq!(worker.unsettled(), bound + 2);
        let queued = ids
            .iter()
            .filter(|id| backend.held(id).is_some_and(|s| s.status == Status::Pending))
            .count();
        assert_eq!(queued, 3, "no slot took more than the bound allows");

        backend.open.set(true);
        backend.opened.notify();
        until("every job recorded", || {
            ids.iter()
                .all(|id| backend.held(id).is_some_and(|s| s.status == Status::Completed))
        })
        .await;
        until("nothing left unsettled", || worker.unsettled() == 0).await;
        shutdown.trigger();
    });
}

#[test]
fn a_read_in_flight_at_a_drain_is_given_back_not_dropped() {
    runtime().block_on(async {
        let (backend, worker) = worker(Config::default().worker.count);
        let shutdown = Shutdown::default();
        monoio::spawn(worker.clone().run(shutdown.clone()));
        until("the worker waiting for jobs", || worker.taking()).await;
        shutdown.trigger();
        until("the worker asking the read to stop", || backend.stop_asked.get()).await;
        assert!(worker.taking(), "still waiting for the read in flight");

        // The read in flight takes a job after the drain began.
        let (accepted, _) = backend
            .submit(echo_job(), Timestamp::now(), false)
            .await
            .unwrap();
        until("the worker done", || !worker.taking()).await;
        assert_eq!(*backend.given_back.borrow(), [accepted.id]);
        let state = backend.held(&accepted.id).expect("a state");
        assert_eq!(state.status, Status::Pending, "given back, not run");
        assert_eq!(worker.unsettled(), 0);
    });
}
