//! Group commit of completions: deliveries finished in the same event-loop turn (while the lease
//! is held) reach Redis as one transaction (`MULTI`, their `SET`s, one `XACK`, `EXEC`), and each
//! one's state is stored and its entry acknowledged.

mod common;

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::in_process::{backend, connected, submit};
use common::redis::RedisServer;
use openhqm::backend::{Backend, Settlement};
use openhqm::clock::Timestamp;
use openhqm::config::IoDriver;
use openhqm::shard::runtime;
use openhqm::store::{Outcome, Status};

#[test]
fn completions_of_one_turn_go_out_as_one_transaction() {
    let redis = RedisServer::start();
    let (mut rt, _) = runtime::build(IoDriver::Auto).expect("runtime");
    rt.block_on(async {
        let q = Rc::new(backend(&redis, Duration::from_secs(20)));
        connected(&q).await;
        let mut ids = Vec::new();
        for _ in 0..5 {
            ids.push(submit(&q).await);
        }
        let deliveries = q.next_jobs(5, 10).await;
        assert_eq!(deliveries.len(), 5);
        redis.cli(&["CONFIG", "RESETSTAT"]);

        // Five slots finishing in the same turn.
        let handles: Vec<_> = deliveries
            .into_iter()
            .map(|d| {
                let q = q.clone();
                monoio::spawn(async move {
                    q.start(&d, Timestamp::now());
                    let outcome = Outcome {
                        result: Some(Bytes::from_static(b"\"done\"")),
                        headers: None,
                        status_code: Some(200),
                        error: None,
                        processing_time_ms: 0,
                        completed_at: Timestamp::now(),
                    };
                    q.settle(d, Settlement::Completed(outcome), Instant::now())
                        .await;
                })
            })
            .collect();
        for h in handles {
            h.await;
        }

        assert_eq!(redis.calls("exec"), 1, "one transaction for the five");
        assert_eq!(redis.calls("xack"), 1, "one XACK for the five");
        assert_eq!(redis.calls("set"), 5);
        for id in &ids {
            let key = format!("openhqm-requests:{{0}}:state:{id}");
            let state = redis.state(&key).expect("a state");
            assert_eq!(state.status, Status::Completed, "{id}");
            assert!(
                redis.cli_int(&["TTL", &key]) > 0,
                "a final state expires: {id}"
            );
        }
        let pending = redis.cli_json(&["XPENDING", "openhqm-requests:{0}", "openhqm-workers"]);
        assert_eq!(pending[0], 0, "{pending}");
    });
}

/// Submits of one event-loop turn reach Redis as one transaction (`MULTI`, each one's `XADD`, one
/// `MSET` of their states, `EXEC`), and each one is queued with its `PENDING` state, without a
/// TTL; the worker's write gives the state its TTL.
#[test]
fn submits_of_one_turn_go_out_as_one_transaction() {
    let redis = RedisServer::start();
    let (mut rt, _) = runtime::build(IoDriver::Auto).expect("runtime");
    rt.block_on(async {
        let q = Rc::new(backend(&redis, Duration::from_secs(20)));
        connected(&q).await;
        redis.cli(&["CONFIG", "RESETSTAT"]);
        let handles: Vec<_> = (0..5)
            .map(|_| {
                let q = q.clone();
                monoio::spawn(async move { submit(&q).await })
            })
            .collect();
        let mut ids = Vec::new();
        for h in handles {
            ids.push(h.await);
        }
        assert_eq!(redis.calls("exec"), 1, "one transaction for the five");
        assert_eq!(redis.calls("xadd"), 5);
        assert_eq!(redis.calls("mset"), 1, "one MSET of the five states");
        assert_eq!(redis.calls("set"), 0);
        for id in &ids {
            let key = format!("openhqm-requests:{{0}}:state:{id}");
            let state = redis.state(&key).expect("a state");
            assert_eq!(state.status, Status::Pending, "{id}");
            // Queued: no TTL, so it cannot expire while it waits.
            assert_eq!(redis.cli_int(&["TTL", &key]), -1, "{id}");
        }
        assert_eq!(redis.cli_int(&["XLEN", "openhqm-requests:{0}"]), 5);
    });
}
