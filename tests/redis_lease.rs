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

fn completed(d: &Delivery, result: &'static [u8]) -> RequestState {
    let mut s = RequestState::pending(d.job.submitted_at);
    s.start(Timestamp::now()).expect("start");
    s.finish(
        Status::Completed,
        Outcome {
            result: Some(Bytes::from_static(result)),
            headers: None,
            status_code: Some(200),
            error: None,
            processing_time_ms: 1,
            completed_at: Timestamp::now(),
        },
    )
    .expect("finish");
    s
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
        let e = std::str::from_utf8(&entry).unwrap().to_owned();
        redis.cli_json(&["XCLAIM", STREAM, GROUP, "other:0", "0", &e, "JUSTID"]);
        monoio::time::sleep(LEASE_HELD + Duration::from_millis(100)).await;
        let state = completed(&d, b"\"late\"");
        q.finish(d, Some(state)).await;
        assert_eq!(status(&redis, b), Some(Status::Pending));
        assert_eq!(owner(&redis, &entry).as_deref(), Some("other:0"));

        // 3. Lease lapsed but nobody took the entry: the owner-only path settles it.
        let c = "33333333-3333-4333-8333-333333333333";
        let d = submit_and_take(&q, c).await;
        let entry = d.entry_id.clone().unwrap();
        monoio::time::sleep(LEASE_HELD + Duration::from_millis(100)).await;
        let state = completed(&d, b"\"still mine\"");
        q.finish(d, Some(state)).await;
        let state = redis.state(&state_key(c)).expect("a state");
        assert_eq!(state.status, Status::Completed);
        let result = state.outcome.and_then(|o| o.result);
        assert_eq!(result.as_deref(), Some(&b"\"still mine\""[..]));
        assert_eq!(owner(&redis, &entry), None);
    });
}
