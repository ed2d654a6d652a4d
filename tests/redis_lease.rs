//! The lapsed-lease path of the Redis backend, end to end on a real Redis: a delivery whose lease
//! may have lapsed is settled only if the entry is still this consumer's, so a worker whose entry
//! another instance took over cannot overwrite that instance's outcome. The backend runs in
//! process with a 300 ms lease bound (`RedisSettings::lease_held`; 20 s in the broker) so the test
//! does not wait for the real one.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::in_process::{backend, connected, job};
use common::redis::RedisServer;
use openhqm::clock::Timestamp;
use openhqm::config::IoDriver;
use openhqm::queue::{Backend, Delivery, QueueBackend};
use openhqm::shard::runtime;
use openhqm::store::{Outcome, RequestState, Status};

const STREAM: &str = "openhqm-requests:{0}";
const GROUP: &str = "openhqm-workers";
const LEASE_HELD: Duration = Duration::from_millis(300);

/// `d`'s state once final with `status`, a result and an error.
fn finished(
    d: &Delivery,
    status: Status,
    result: Option<Bytes>,
    error: Option<&str>,
) -> RequestState {
    let mut s = RequestState::pending(d.job.submitted_at);
    s.start(Timestamp::now()).expect("start");
    s.finish(
        status,
        Outcome {
            status_code: result.is_some().then_some(200),
            result,
            headers: None,
            error: error.map(str::to_owned),
            processing_time_ms: 1,
            completed_at: Timestamp::now(),
        },
    )
    .expect("finish");
    s
}

fn completed(d: &Delivery, result: &'static [u8]) -> RequestState {
    finished(d, Status::Completed, Some(Bytes::from_static(result)), None)
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

async fn submit_and_take(q: &Backend, id: &str) -> Delivery {
    q.enqueue(job(id)).await.expect("enqueue");
    let mut got = q.fetch(1, 1).await;
    assert_eq!(got.len(), 1);
    let d = got.pop().unwrap();
    assert_eq!(d.job.id.to_text(), id.as_bytes());
    d
}

#[test]
fn a_lapsed_lease_settles_only_what_this_consumer_still_owns() {
    let redis = RedisServer::start();
    let (mut rt, _) = runtime::build(IoDriver::Auto).expect("runtime");
    rt.block_on(async {
        let q = backend(&redis, LEASE_HELD);
        connected(&q).await;

        // 1. Lease held: the plain transaction stores the outcome and acknowledges.
        let a = "11111111-1111-4111-8111-111111111111";
        let d = submit_and_take(&q, a).await;
        let entry = d.entry_id.clone().unwrap();
        let state = completed(&d, b"\"mine\"");
        q.finish(d, Some(state)).await;
        assert_eq!(status(&redis, a), Some(Status::Completed));
        assert_eq!(owner(&redis, &entry), None);

        // 2. Lease lapsed and the entry taken over by another consumer: nothing written, the
        //    entry stays with the new owner.
        let b = "22222222-2222-4222-8222-222222222222";
        let d = submit_and_take(&q, b).await;
        let entry = d.entry_id.clone().unwrap();
        take_over(&redis, &entry);
        let_the_lease_lapse().await;
        let state = completed(&d, b"\"late\"");
        q.finish(d, Some(state)).await;
        assert_eq!(status(&redis, b), Some(Status::Pending));
        assert_eq!(owner(&redis, &entry).as_deref(), Some("other:0"));

        // 3. Lease lapsed but nobody took the entry: the owner-only path settles it.
        let c = "33333333-3333-4333-8333-333333333333";
        let d = submit_and_take(&q, c).await;
        let entry = d.entry_id.clone().unwrap();
        let_the_lease_lapse().await;
        let state = completed(&d, b"\"still mine\"");
        q.finish(d, Some(state)).await;
        let state = redis.state(&state_key(c)).expect("a state");
        assert_eq!(state.status, Status::Completed);
        let result = state.outcome.and_then(|o| o.result);
        assert_eq!(result.as_deref(), Some(&b"\"still mine\""[..]));
        assert_eq!(owner(&redis, &entry), None);
    });
}

fn failed(d: &Delivery) -> RequestState {
    finished(d, Status::Failed, None, Some("boom"))
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
        let a = "44444444-4444-4444-8444-444444444444";
        let d = submit_and_take(&q, a).await;
        let entry = d.entry_id.clone().unwrap();
        let_the_lease_lapse().await;
        q.retry(d, Duration::from_secs(60)).await;
        assert_eq!(status(&redis, a), Some(Status::Processing));
        assert_eq!(redis.cli(&["HGET", &retry_job(a), "attempt"]), "2");
        assert!(redis.cli_int(&["ZSCORE", &retries, a]) > 0);
        assert_eq!(owner(&redis, &entry), None);

        // Retry, lease lapsed, entry taken over: nothing written.
        let b = "55555555-5555-4555-8555-555555555555";
        let d = submit_and_take(&q, b).await;
        let entry = d.entry_id.clone().unwrap();
        take_over(&redis, &entry);
        let_the_lease_lapse().await;
        q.retry(d, Duration::from_secs(60)).await;
        assert_eq!(status(&redis, b), Some(Status::Pending));
        assert_eq!(redis.cli_int(&["EXISTS", &retry_job(b)]), 0);
        assert_eq!(owner(&redis, &entry).as_deref(), Some("other:0"));

        // Dead letter, lease lapsed, entry still ours: in the dead-letter stream with its reason,
        // FAILED, acknowledged.
        let c = "66666666-6666-4666-8666-666666666666";
        let d = submit_and_take(&q, c).await;
        let entry = d.entry_id.clone().unwrap();
        let_the_lease_lapse().await;
        let state = failed(&d);
        q.dead_letter(d, Some(state), "boom").await;
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
        let d2 = "77777777-7777-4777-8777-777777777777";
        let d = submit_and_take(&q, d2).await;
        let entry = d.entry_id.clone().unwrap();
        take_over(&redis, &entry);
        let_the_lease_lapse().await;
        let state = failed(&d);
        q.dead_letter(d, Some(state), "boom").await;
        assert_eq!(status(&redis, d2), Some(Status::Pending));
        assert_eq!(redis.cli_int(&["XLEN", dlq]), 1);
        assert_eq!(owner(&redis, &entry).as_deref(), Some("other:0"));
    });
}
