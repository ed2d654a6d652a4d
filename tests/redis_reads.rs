//! How the Redis backend takes work: with room for more than one batch, several `XREADGROUP`s of
//! at most `worker.batch_size` entries go out in one write (only the first may block), together
//! never more entries than there are free slots. One read per round trip capped processing at a
//! batch per fsync with `appendfsync always` (PERFORMANCE.md, section 8).

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::in_process::{backend, connected, submit};
use common::redis::RedisServer;
use openhqm::backend::Backend;
use openhqm::config::IoDriver;
use openhqm::shard::runtime;

#[test]
fn reads_fill_the_free_slots_one_batch_per_read() {
    let redis = RedisServer::start();
    let (mut rt, _) = runtime::build(IoDriver::Auto).expect("runtime");
    rt.block_on(async {
        let q = backend(&redis, Duration::from_secs(20));
        connected(&q).await;
        for _ in 0..25 {
            submit(&q).await;
        }
        redis.cli(&["CONFIG", "RESETSTAT"]);

        // Room for 15 with batches of 10: after a start, first the consumer's own pending list
        // (empty here, one read), then two reads together (10, then 5), never more than 15.
        let first = q.next_jobs(15, 10).await;
        assert_eq!(first.len(), 15);
        assert_eq!(redis.calls("xreadgroup"), 1 + 2);

        // Room for 64: seven reads; the 10 left come back, and the six reads that find nothing
        // do not block (a blocking one would hold the reply for its full second).
        let started = Instant::now();
        let second = q.next_jobs(64, 10).await;
        let took = started.elapsed();
        assert_eq!(second.len(), 10);
        assert_eq!(redis.calls("xreadgroup"), 3 + 7);
        assert!(took < Duration::from_millis(800), "took {took:?}");

        // Every entry once, all of them this consumer's to process.
        let ids: HashSet<Vec<u8>> = first
            .iter()
            .chain(&second)
            .map(|d| d.job.id.to_text().to_vec())
            .collect();
        assert_eq!(ids.len(), 25);
        let pending = redis.cli_json(&["XPENDING", "openhqm-requests:{0}", "openhqm-workers"]);
        assert_eq!(pending[0], 25, "{pending}");

        // With one free slot, one read of one entry.
        submit(&q).await;
        submit(&q).await;
        assert_eq!(q.next_jobs(1, 10).await.len(), 1);
        assert_eq!(redis.calls("xreadgroup"), 3 + 7 + 1);
    });
}

/// Read ahead (`Backend::read_ahead`, asked for while jobs finish at once): a read takes more
/// than the free slots, and the entries beyond them are handed out by the next calls without
/// another read; each entry still once.
#[test]
fn entries_read_ahead_come_from_the_next_calls_without_a_read() {
    let redis = RedisServer::start();
    let (mut rt, _) = runtime::build(IoDriver::Auto).expect("runtime");
    rt.block_on(async {
        let q = backend(&redis, Duration::from_secs(20));
        connected(&q).await;
        for _ in 0..40 {
            submit(&q).await;
        }
        // After a start the consumer's own pending list is read first (empty here); then a
        // read of one, which comes back full: the stream may hold more.
        assert!(q.next_jobs(1, 10).await.len() == 1);
        redis.cli(&["CONFIG", "RESETSTAT"]);

        q.read_ahead(20);
        let mut got = q.next_jobs(5, 10).await;
        assert_eq!(got.len(), 5, "never more than the free slots");
        let reads = redis.calls("xreadgroup");
        assert_eq!(reads, 3, "5 + 20 in reads of 10");
        for _ in 0..4 {
            let more = q.next_jobs(5, 10).await;
            assert_eq!(more.len(), 5);
            got.extend(more);
        }
        assert_eq!(
            redis.calls("xreadgroup"),
            reads,
            "handed out without a read"
        );

        // Ahead off: a read takes only the free slots.
        q.read_ahead(0);
        got.extend(q.next_jobs(2, 10).await);
        assert_eq!(got.len(), 27);
        assert_eq!(redis.calls("xreadgroup"), reads + 1);
        let ids: HashSet<Vec<u8>> = got.iter().map(|d| d.job.id.to_text().to_vec()).collect();
        assert_eq!(ids.len(), 27, "each entry once");
        let pending = redis.cli_json(&["XPENDING", "openhqm-requests:{0}", "openhqm-workers"]);
        assert_eq!(pending[0], 28, "{pending}");

        // Ahead again: the 12 left, in four reads (room for 20 + 20); they do not fill them, so
        // the next reads take only the free slots.
        q.read_ahead(20);
        assert_eq!(q.next_jobs(20, 10).await.len(), 12);
        assert_eq!(redis.calls("xreadgroup"), reads + 1 + 4);
        submit(&q).await;
        submit(&q).await;
        assert_eq!(q.next_jobs(5, 10).await.len(), 2);
        assert_eq!(
            redis.calls("xreadgroup"),
            reads + 1 + 4 + 1,
            "one read, of five"
        );
    });
}

/// When the worker stops (a drain), entries read ahead are given back: marked idle for a lease,
/// so another consumer takes them over at its next look; those handed to slots are not.
#[test]
fn entries_read_ahead_are_given_back_when_the_worker_stops() {
    let redis = RedisServer::start();
    let (mut rt, _) = runtime::build(IoDriver::Auto).expect("runtime");
    rt.block_on(async {
        let q = backend(&redis, Duration::from_secs(20));
        connected(&q).await;
        for _ in 0..30 {
            submit(&q).await;
        }
        assert_eq!(q.next_jobs(1, 10).await.len(), 1);
        q.read_ahead(20);
        assert_eq!(q.next_jobs(5, 10).await.len(), 5, "20 more read ahead");
        let idle = |ms: &str| {
            let v = redis.cli_json(&[
                "XPENDING",
                "openhqm-requests:{0}",
                "openhqm-workers",
                "IDLE",
                ms,
                "-",
                "+",
                "100",
            ]);
            v.as_array().map_or(0, Vec::len)
        };
        assert_eq!(idle("29000"), 0);
        q.give_back(Vec::new()).await;
        assert_eq!(
            idle("29000"),
            20,
            "the entries read ahead look idle for a lease"
        );
        // The shard's next maintenance pass (it reads the stream's length) takes nothing over:
        // a stopped worker would not run what it took back.
        let ticks = redis.calls("xlen");
        let deadline = Instant::now() + Duration::from_secs(15);
        while redis.calls("xlen") == ticks {
            assert!(Instant::now() < deadline, "no maintenance pass");
            monoio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(idle("29000"), 20, "not taken back by this consumer");
        let all = redis.cli_json(&["XPENDING", "openhqm-requests:{0}", "openhqm-workers"]);
        assert_eq!(all[0], 26, "still pending: nothing acknowledged or lost");
    });
}

/// Blocks `fetch` (a `next_jobs` call) until its read blocks in Redis.
async fn until_blocked<F: std::future::Future<Output = Vec<openhqm::backend::Delivery>>>(
    redis: &RedisServer,
    mut fetch: std::pin::Pin<&mut F>,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        monoio::select! {
            got = fetch.as_mut() => panic!("nothing to read, yet got {}", got.len()),
            _ = monoio::time::sleep(Duration::from_millis(10)) => {}
        }
        if redis
            .cli(&["INFO", "clients"])
            .contains("blocked_clients:1")
        {
            return;
        }
        assert!(Instant::now() < deadline, "no read blocked in Redis");
    }
}

/// A drain while a read is in flight: asked to stop, the fetch returns what that read took (an
/// entry that came while it blocked), instead of leaving it in this consumer's pending list,
/// and the worker gives it back; the fetch after that returns at once, empty.
#[test]
fn a_read_in_flight_when_asked_to_stop_returns_what_it_took() {
    let redis = RedisServer::start();
    let (mut rt, _) = runtime::build(IoDriver::Auto).expect("runtime");
    rt.block_on(async {
        // The entry must come while the read blocks (1 s at a time): should the block end
        // first, the read takes nothing, and the next attempt starts afresh.
        for _attempt in 0..3 {
            redis.cli(&["FLUSHALL"]);
            let q = backend(&redis, Duration::from_secs(20));
            connected(&q).await;
            let mut fetch = std::pin::pin!(q.next_jobs(4, 10));
            until_blocked(&redis, fetch.as_mut()).await;
            let id = submit(&q).await;
            assert!(q.stop_taking().await, "a read in flight is to be awaited");
            let taken = fetch.await;
            if taken.is_empty() {
                continue;
            }
            assert_eq!(taken.len(), 1, "the blocked read took the new entry");
            assert_eq!(taken[0].job.id.to_text(), id.as_bytes());
            q.give_back(taken).await;
            let idle = redis.cli_json(&[
                "XPENDING",
                "openhqm-requests:{0}",
                "openhqm-workers",
                "IDLE",
                "29000",
                "-",
                "+",
                "10",
            ]);
            assert_eq!(idle.as_array().map_or(0, Vec::len), 1, "given back: {idle}");
            monoio::select! {
                got = q.next_jobs(4, 10) => assert!(got.is_empty()),
                _ = monoio::time::sleep(Duration::from_millis(500)) => panic!("a stopped fetch still waits for jobs"),
            }
            return;
        }
        panic!("in three attempts the entry never came while the read blocked");
    });
}

/// Asked to stop while its read blocks with nothing to take, the fetch has Redis end the block
/// (`CLIENT UNBLOCK`, by the id the blocking connection read once) rather than wait it out.
#[test]
fn a_blocked_read_is_ended_when_asked_to_stop() {
    let redis = RedisServer::start();
    let (mut rt, _) = runtime::build(IoDriver::Auto).expect("runtime");
    rt.block_on(async {
        let q = backend(&redis, Duration::from_secs(20));
        connected(&q).await;
        let mut fetch = std::pin::pin!(q.next_jobs(4, 10));
        until_blocked(&redis, fetch.as_mut()).await;
        let blocked = Instant::now();
        assert!(q.stop_taking().await);
        assert!(fetch.await.is_empty());
        // Not the read's own 1 s block running out (it began before `blocked`).
        let took = blocked.elapsed();
        assert!(took < Duration::from_millis(800), "took {took:?}");
        assert_eq!(redis.calls("client|unblock"), 1);
        assert!(redis
            .cli(&["INFO", "clients"])
            .contains("blocked_clients:0"));
    });
}
