//! The lapsed-lease path of the Redis backend, end to end on a real Redis: a delivery whose lease
//! may have lapsed is settled only if the entry is still this consumer's, so a worker whose entry
//! another instance took over cannot overwrite that instance's outcome. The backend runs in
//! process with a 300 ms lease bound (`RedisSettings::lease_held`; 20 s in the broker) so the test
//! does not wait for the real one.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::in_process::{backend, connected, submit};
use common::redis::RedisServer;
use openhqm::backend::{Backend, Delivery, RedisBackend, Settlement};
use openhqm::clock::Timestamp;
use openhqm::config::IoDriver;
use openhqm::metrics::DlqReason;
use openhqm::shard::runtime;
use openhqm::store::{Outcome, Status};

const STREAM: &str = "openhqm-requests:{0}";
const GROUP: &str = "openhqm-workers";
const LEASE_HELD: Duration = Duration::from_millis(300);

/// A final outcome with a result and an error.
fn outcome(result: Option<&'static [u8]>, error: Option<&str>) -> Outcome {
    Outcome {
        status_code: result.is_some().then_some(200),
        result: result.map(Bytes::from_static),
        headers: None,
        error: error.map(str::to_owned),
        processing_time_ms: 1,
        completed_at: Timestamp::now(),
    }
}

/// Settles `d` as completed with `result`.
async fn complete(q: &RedisBackend, d: Delivery, result: &'static [u8]) {
    q.start(&d, Timestamp::now());
    let o = outcome(Some(result), None);
    q.settle(d, Settlement::Completed(o), Instant::now()).await;
}

/// Settles `d` as dead-lettered with the error "boom".
async fn dead_letter(q: &RedisBackend, d: Delivery) {
    q.start(&d, Timestamp::now());
    let o = outcome(None, Some("boom"));
    q.settle(
        d,
        Settlement::DeadLettered(o, DlqReason::MaxRetries),
        Instant::now(),
    )
    .await;
}

/// Settles `d` as to be retried in a minute.
async fn retry(q: &RedisBackend, d: Delivery) {
    let later = Settlement::RetryLater(Duration::from_secs(60));
    q.settle(d, later, Instant::now()).await;
}

fn state_key(id: &str) -> String {
    format!("{STREAM}:state:{id}")
}

fn status(redis: &RedisServer, id: &str) -> Option<Status> {
    redis.state(&state_key(id)).map(|s| s.status)
}

/// Who holds `entry` in the group's pending list, if anyone.
fn owner(redis: &RedisServer, entry: &[u8]) -> Option<String> {
    let entry = std::str::from_utf8(entry).unwrap();
    let p = redis.cli_json(&["XPENDING", STREAM, GROUP, entry, entry, "1"]);
    p.as_array()?.first()?.get(1)?.as_str().map(str::to_owned)
}

/// Another consumer (`other:0`) takes `entry` over, as a live instance does with a dead one's.
fn take_over(redis: &RedisServer, entry: &[u8]) {
    let e = std::str::from_utf8(entry).unwrap();
    redis.cli_json(&["XCLAIM", STREAM, GROUP, "other:0", "0", e, "JUSTID"]);
}

/// Waits past the bound under which this consumer's lease counts as certainly held.
async fn let_the_lease_lapse() {
    monoio::time::sleep(LEASE_HELD + Duration::from_millis(100)).await;
}

/// Submits a job and takes its delivery: its id as text, and the delivery.
async fn submit_and_take(q: &RedisBackend) -> (String, Delivery) {
    let id = submit(q).await;
    let mut got = q.next_jobs(1, 1).await;
    assert_eq!(got.len(), 1);
    let d = got.pop().unwrap();
    assert_eq!(d.job.id.to_text(), id.as_bytes());
    (id, d)
}

#[test]
fn a_lapsed_lease_settles_only_what_this_consumer_still_owns() {
    let redis = RedisServer::start();
    let (mut rt, _) = runtime::build(IoDriver::Auto).expect("runtime");
    rt.block_on(async {
        let q = backend(&redis, LEASE_HELD);
        connected(&q).await;

        // 1. Lease held: the plain transaction stores the outcome and acknowledges.
        let (a, d) = submit_and_take(&q).await;
        let a = a.as_str();
        let entry = d.entry_id.clone().unwrap();
        complete(&q, d, b"\"mine\"").await;
        assert_eq!(status(&redis, a), Some(Status::Completed));
        assert_eq!(owner(&redis, &entry), None);

        // 2. Lease lapsed and the entry taken over by another consumer: nothing written, the
        //    entry stays with the new owner.
        let (b, d) = submit_and_take(&q).await;
        let b = b.as_str();
        let entry = d.entry_id.clone().unwrap();
        take_over(&redis, &entry);
        let_the_lease_lapse().await;
        complete(&q, d, b"\"late\"").await;
        assert_eq!(status(&redis, b), Some(Status::Pending));
        assert_eq!(owner(&redis, &entry).as_deref(), Some("other:0"));

        // 3. Lease lapsed but nobody took the entry: the owner-only path settles it.
        let (c, d) = submit_and_take(&q).await;
        let c = c.as_str();
        let entry = d.entry_id.clone().unwrap();
        let_the_lease_lapse().await;
        complete(&q, d, b"\"still mine\"").await;
        let state = redis.state(&state_key(c)).expect("a state");
        assert_eq!(state.status, Status::Completed);
        let result = state.outcome.and_then(|o| o.result);
        assert_eq!(result.as_deref(), Some(&b"\"still mine\""[..]));
        assert_eq!(owner(&redis, &entry), None);
    });
}

/// The owner-only retry and dead-letter scripts, driven with the arguments the backend builds.
#[test]
fn a_lapsed_lease_retries_and_dead_letters_only_what_is_still_owned() {
    let redis = RedisServer::start();
    let (mut rt, _) = runtime::build(IoDriver::Auto).expect("runtime");
    rt.block_on(async {
        let q = backend(&redis, LEASE_HELD);
        connected(&q).await;
        let retry_job = |id: &str| format!("{STREAM}:retry:{id}");
        let retries = format!("{STREAM}:retries");
        let dlq = "openhqm-dlq:{0}";

        // Retry, lease lapsed, entry still ours: parked for later with its next attempt number,
        // PROCESSING, acknowledged.
        let (a, d) = submit_and_take(&q).await;
        let a = a.as_str();
        let entry = d.entry_id.clone().unwrap();
        let_the_lease_lapse().await;
        retry(&q, d).await;
        assert_eq!(status(&redis, a), Some(Status::Processing));
        assert_eq!(redis.cli(&["HGET", &retry_job(a), "attempt"]), "2");
        assert!(redis.cli_int(&["ZSCORE", &retries, a]) > 0);
        assert_eq!(owner(&redis, &entry), None);

        // Retry, lease lapsed, entry taken over: nothing written.
        let (b, d) = submit_and_take(&q).await;
        let b = b.as_str();
        let entry = d.entry_id.clone().unwrap();
        take_over(&redis, &entry);
        let_the_lease_lapse().await;
        retry(&q, d).await;
        assert_eq!(status(&redis, b), Some(Status::Pending));
        assert_eq!(redis.cli_int(&["EXISTS", &retry_job(b)]), 0);
        assert_eq!(owner(&redis, &entry).as_deref(), Some("other:0"));

        // Dead letter, lease lapsed, entry still ours: in the dead-letter stream with its reason,
        // FAILED, acknowledged.
        let (c, d) = submit_and_take(&q).await;
        let c = c.as_str();
        let entry = d.entry_id.clone().unwrap();
        let_the_lease_lapse().await;
        dead_letter(&q, d).await;
        let got = redis.state(&state_key(c)).expect("a state");
        assert_eq!(got.status, Status::Failed);
        assert_eq!(got.outcome.and_then(|o| o.error).as_deref(), Some("boom"));
        assert_eq!(redis.cli_int(&["XLEN", dlq]), 1);
        let dead = redis.cli_json(&["XRANGE", dlq, "-", "+"]);
        let fields = dead[0][1].as_array().expect("fields").clone();
        let at = fields
            .iter()
            .position(|f| f == "error")
            .expect("error field");
        assert_eq!(fields[at + 1], "boom");
        assert_eq!(owner(&redis, &entry), None);

        // Dead letter, lease lapsed, entry taken over: nothing written.
        let (d2, d) = submit_and_take(&q).await;
        let d2 = d2.as_str();
        let entry = d.entry_id.clone().unwrap();
        take_over(&redis, &entry);
        let_the_lease_lapse().await;
        dead_letter(&q, d).await;
        assert_eq!(status(&redis, d2), Some(Status::Pending));
        assert_eq!(redis.cli_int(&["XLEN", dlq]), 1);
        assert_eq!(owner(&redis, &entry).as_deref(), Some("other:0"));
    });
}
