//! The owner-only settle scripts (`src/backend/redis/scripts.rs`) on a real Redis: a
//! consumer whose entry was taken over by another consumer (its lease lapsed) writes nothing and
//! leaves the entry pending for the new owner; the owner settles it. This is the path a worker
//! takes when it finishes after its lease may have lapsed; a frozen shard cannot overwrite the
//! outcome another instance stored.

mod common;

use common::redis::RedisServer;
use openhqm::backend::redis::scripts::Scripts;

const STREAM: &str = "s:{0}";
const GROUP: &str = "openhqm-workers";

fn body(script: &openhqm::resp::Script) -> &str {
    std::str::from_utf8(script.body()).unwrap()
}

/// A stream with one entry delivered to consumer `a`, then claimed by `b`; returns its id.
fn taken_over(redis: &RedisServer) -> String {
    redis.cli(&["XGROUP", "CREATE", STREAM, GROUP, "0", "MKSTREAM"]);
    let entry = redis.cli(&["XADD", STREAM, "*", "id", "x"]);
    let read = redis.cli_json(&["XREADGROUP", "GROUP", GROUP, "a", "STREAMS", STREAM, ">"]);
    assert!(read.to_string().contains(&entry), "{read}");
    redis.cli_json(&["XCLAIM", STREAM, GROUP, "b", "0", &entry, "JUSTID"]);
    entry
}

fn owner_of(redis: &RedisServer, entry: &str) -> Option<String> {
    let p = redis.cli_json(&["XPENDING", STREAM, GROUP, entry, entry, "1"]);
    p.as_array()?.first()?.get(1)?.as_str().map(str::to_owned)
}

#[test]
fn finish_writes_only_for_the_consumer_that_owns_the_entry() {
    let redis = RedisServer::start();
    let scripts = Scripts::default();
    let entry = taken_over(&redis);
    let finish = |consumer: &str, result: &str| {
        redis.cli_int(&[
            "EVAL",
            body(&scripts.finish),
            "2",
            STREAM,
            "st:{0}:x",
            GROUP,
            consumer,
            &entry,
            "60",
            result,
        ])
    };

    // The old owner, late: nothing written, the entry still pending for the new one.
    assert_eq!(finish("a", "late"), 0);
    assert_eq!(redis.cli_int(&["EXISTS", "st:{0}:x"]), 0);
    assert_eq!(owner_of(&redis, &entry).as_deref(), Some("b"));
    assert_eq!(redis.cli_int(&["XLEN", STREAM]), 1);

    // The owner settles: acknowledged (trimmed later), state stored with its TTL.
    assert_eq!(finish("b", "owner"), 1);
    assert_eq!(redis.cli(&["GET", "st:{0}:x"]), "owner");
    let ttl = redis.cli_int(&["TTL", "st:{0}:x"]);
    assert!((1..=60).contains(&ttl), "ttl {ttl}");
    assert_eq!(owner_of(&redis, &entry), None);

    // Settling again (a lost reply, then a retry) writes nothing.
    assert_eq!(finish("b", "again"), 0);
    assert_eq!(redis.cli(&["GET", "st:{0}:x"]), "owner");
}

#[test]
fn processing_is_written_only_by_the_owner_and_never_acknowledges() {
    let redis = RedisServer::start();
    let scripts = Scripts::default();
    let entry = taken_over(&redis);
    // Another instance took the entry over and finished it.
    redis.cli(&["SET", "st:{0}:x", "COMPLETED"]);
    let processing = |consumer: &str| {
        redis.cli_int(&[
            "EVAL",
            body(&scripts.processing),
            "2",
            STREAM,
            "st:{0}:x",
            GROUP,
            consumer,
            &entry,
            "60",
            "PROCESSING",
        ])
    };
    // The old owner's late PROCESSING does not turn the final state back.
    assert_eq!(processing("a"), 0);
    assert_eq!(redis.cli(&["GET", "st:{0}:x"]), "COMPLETED");
    // The owner's is written, and the entry stays pending (not acknowledged).
    assert_eq!(processing("b"), 1);
    assert_eq!(redis.cli(&["GET", "st:{0}:x"]), "PROCESSING");
    assert_eq!(owner_of(&redis, &entry).as_deref(), Some("b"));
}

#[test]
fn reading_own_pending_entries_again_counts_no_delivery() {
    let redis = RedisServer::start();
    let scripts = Scripts::default();
    redis.cli(&["XGROUP", "CREATE", STREAM, GROUP, "0", "MKSTREAM"]);
    let first = redis.cli(&["XADD", STREAM, "*", "id", "one"]);
    let second = redis.cli(&["XADD", STREAM, "*", "id", "two"]);
    redis.cli_json(&["XREADGROUP", "GROUP", GROUP, "a", "STREAMS", STREAM, ">"]);
    let deliveries = || redis.cli_json(&["XPENDING", STREAM, GROUP, "-", "+", "10", "a"]);
    let read = |after: &str| {
        redis.cli_json(&[
            "EVAL",
            body(&scripts.read_own_pending),
            "1",
            STREAM,
            GROUP,
            "a",
            after,
            "10",
        ])
    };
    // From the start: both, in XREADGROUP's shape, bodies included.
    let all = read("0");
    assert_eq!(all[0][0], STREAM, "{all}");
    assert_eq!(all[0][1][0][0], first.as_str(), "{all}");
    assert_eq!(all[0][1][0][1][1], "one", "{all}");
    assert_eq!(all[0][1][1][0], second.as_str(), "{all}");
    // After the first: the second only.
    let rest = read(&first);
    assert_eq!(rest[0][1].as_array().unwrap().len(), 1, "{rest}");
    assert_eq!(rest[0][1][0][0], second.as_str(), "{rest}");
    // Still one delivery each (XREADGROUP with an id would have made them two).
    for row in deliveries().as_array().unwrap() {
        assert_eq!(row[3], 1, "{row}");
    }
    // Another consumer's entries are not read.
    assert_eq!(
        redis.cli_json(&[
            "EVAL",
            body(&scripts.read_own_pending),
            "1",
            STREAM,
            GROUP,
            "b",
            "0",
            "10"
        ])[0][1]
            .as_array()
            .unwrap()
            .len(),
        0
    );
}

#[test]
fn retry_and_dead_letter_are_owner_only_too() {
    let redis = RedisServer::start();
    let scripts = Scripts::default();
    let entry = taken_over(&redis);
    let retry = |consumer: &str| {
        redis.cli_int(&[
            "EVAL",
            body(&scripts.retry),
            "4",
            STREAM,
            "retries:{0}",
            "job:{0}:x",
            "st:{0}:x",
            GROUP,
            consumer,
            &entry,
            "60",
            "12345",
            "x",
            "PROCESSING 1 999",
            "id",
            "x",
            "attempt",
            "2",
        ])
    };
    assert_eq!(retry("a"), 0);
    assert_eq!(redis.cli_int(&["ZCARD", "retries:{0}"]), 0);
    assert_eq!(redis.cli_int(&["EXISTS", "job:{0}:x", "st:{0}:x"]), 0);
    assert_eq!(retry("b"), 1);
    assert_eq!(redis.cli(&["ZSCORE", "retries:{0}", "x"]), "12345");
    assert_eq!(redis.cli(&["HGET", "job:{0}:x", "attempt"]), "2");
    assert_eq!(redis.cli(&["GET", "st:{0}:x"]), "PROCESSING 1 999");
    let ttl = redis.cli_int(&["TTL", "st:{0}:x"]);
    assert!((1..=60).contains(&ttl), "ttl {ttl}");
    assert_eq!(owner_of(&redis, &entry), None);

    // Dead-lettering a second entry.
    let entry = redis.cli(&["XADD", STREAM, "*", "id", "y"]);
    redis.cli_json(&["XREADGROUP", "GROUP", GROUP, "a", "STREAMS", STREAM, ">"]);
    redis.cli_json(&["XCLAIM", STREAM, GROUP, "b", "0", &entry, "JUSTID"]);
    let dead_letter = |consumer: &str| {
        redis.cli_int(&[
            "EVAL",
            body(&scripts.dead_letter),
            "4",
            STREAM,
            "dlq:{0}",
            "st:{0}:y",
            "dlq:{0}:index",
            GROUP,
            consumer,
            &entry,
            "60",
            "y",
            "0123456789abcdef",
            "finals:{0}",
            "4",
            "id",
            "y",
            "error",
            "boom",
            "FAILED 1 2 0 2 - e4:boom",
        ])
    };
    assert_eq!(dead_letter("a"), 0);
    assert_eq!(redis.cli_int(&["EXISTS", "dlq:{0}", "st:{0}:y"]), 0);
    assert_eq!(dead_letter("b"), 1);
    assert_eq!(redis.cli_int(&["XLEN", "dlq:{0}"]), 1);
    let dead = redis.cli(&["HGET", "dlq:{0}:index", "y"]);
    assert_eq!(
        redis.cli_json(&["XRANGE", "dlq:{0}", &dead, &dead])[0][1],
        serde_json::json!(["id", "y", "error", "boom"]),
        "the index names the dead letter's entry"
    );
    assert_eq!(redis.cli(&["GET", "st:{0}:y"]), "FAILED 1 2 0 2 - e4:boom");
    let ttl = redis.cli_int(&["TTL", "st:{0}:y"]);
    assert!((1..=60).contains(&ttl), "ttl {ttl}");
    assert_eq!(owner_of(&redis, &entry), None);
}

fn trim(redis: &RedisServer, scripts: &Scripts) -> i64 {
    redis.cli_int(&["EVAL", body(&scripts.trim_acknowledged), "1", STREAM])
}

#[test]
fn trimming_deletes_only_acknowledged_entries() {
    let redis = RedisServer::start();
    let scripts = Scripts::default();
    // No stream, no group: nothing to do, no error.
    assert_eq!(trim(&redis, &scripts), 0);
    redis.cli(&["XGROUP", "CREATE", STREAM, GROUP, "0", "MKSTREAM"]);
    let ids: Vec<String> = (0..6)
        .map(|i| redis.cli(&["XADD", STREAM, "*", "n", &i.to_string()]))
        .collect();
    // Nothing delivered yet: nothing is trimmed.
    assert_eq!(trim(&redis, &scripts), 0);
    // Deliver four; acknowledge the 1st, 2nd and 4th. The 3rd stays pending: only the two before
    // it go; the acknowledged 4th waits until the 3rd is settled; 5th and 6th are undelivered.
    redis.cli_json(&[
        "XREADGROUP",
        "GROUP",
        GROUP,
        "a",
        "COUNT",
        "4",
        "STREAMS",
        STREAM,
        ">",
    ]);
    redis.cli(&["XACK", STREAM, GROUP, &ids[0], &ids[1], &ids[3]]);
    assert_eq!(trim(&redis, &scripts), 2);
    assert_eq!(redis.cli_int(&["XLEN", STREAM]), 4);
    assert_eq!(owner_of(&redis, &ids[2]).as_deref(), Some("a"));
    redis.cli(&["XACK", STREAM, GROUP, &ids[2]]);
    assert_eq!(trim(&redis, &scripts), 2);
    let left = redis.cli_json(&["XRANGE", STREAM, "-", "+"]).to_string();
    assert!(left.contains(&ids[4]) && left.contains(&ids[5]), "{left}");
    assert_eq!(redis.cli_int(&["XLEN", STREAM]), 2);
    // A second group that has read nothing holds everything back.
    redis.cli(&["XGROUP", "CREATE", STREAM, "other", "0"]);
    redis.cli_json(&["XREADGROUP", "GROUP", GROUP, "a", "STREAMS", STREAM, ">"]);
    redis.cli(&["XACK", STREAM, GROUP, &ids[4], &ids[5]]);
    assert_eq!(trim(&redis, &scripts), 0);
    redis.cli(&["XGROUP", "DESTROY", STREAM, "other"]);
    assert_eq!(trim(&redis, &scripts), 2);
    assert_eq!(redis.cli_int(&["XLEN", STREAM]), 0);
}

#[test]
fn the_digests_are_the_ones_redis_computes() {
    // EVALSHA finds a script only under Redis's own SHA-1 of the body.
    let redis = RedisServer::start();
    let s = Scripts::default();
    for script in [
        &s.read_own_pending,
        &s.processing,
        &s.finish,
        &s.retry,
        &s.dead_letter,
        &s.move_due_retries,
        &s.trim_acknowledged,
    ] {
        let sha = redis.cli(&["SCRIPT", "LOAD", body(script)]);
        assert_eq!(sha.as_bytes(), script.sha());
    }
}
