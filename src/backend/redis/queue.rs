//! One shard's Redis Streams queue: its two connections, its keys and the state its tasks
//! share. What it does is split by concern: `submit.rs` (admission and `XADD`), `fetch.rs`
//! (`XREADGROUP` and paging the pending list), `settle.rs` (completions, retries, dead
//! letters, owner-only settling), `completions.rs` (the group commit), `takeover.rs` (leases and
//! dead consumers' entries), `maintenance.rs` (trimming, due retries, depth).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tracing::{error, warn};

use super::commands;
use super::completions::{self, Completions};
use super::submits::{self, Submits};
use super::keys::{self, Keys};
use super::scripts::Scripts;
use super::tracking::{self, Tracking};
use super::{maintenance, state_value, takeover};
use crate::sync::shutdown::Shutdown;
use crate::backend::{Delivery, Depth, QueueError};
use crate::id::CorrelationId;
use crate::resp::{Client, Frame, RedisError, RedisTarget};
use crate::store::RequestState;
use crate::sync::notify::Notify;

/// How long one `XREADGROUP` blocks before it is re-issued.
pub(super) const BLOCK_MS: u64 = 1000;
/// Most `XREADGROUP`s sent together (each of at most `worker.batch_size` entries).
pub(super) const MAX_READS_PER_WRITE: usize = 16;
/// How often due retries are moved back to the stream.
pub(super) const RETRY_TICK: Duration = Duration::from_millis(100);
/// How often leases are renewed and dead consumers' entries looked for.
pub(super) const LEASE_TICK: Duration = Duration::from_secs(5);
/// An entry idle this long in another consumer's pending list is taken over. Live workers renew
/// their entries every `LEASE_TICK`, so only a dead consumer's entries get this old.
pub(super) const LEASE: Duration = Duration::from_secs(30);
/// A lease last reset less than this long ago (by this shard's clock, from when the resetting
/// command was sent) is certainly still held: the 10 s below `LEASE` absorb scheduling delays and
/// clock-rate differences. Past it, deliveries are settled by the owner-only scripts and no longer
/// renewed (a renewal is a claim: it would take the entry back from a new owner).
pub const LEASE_HELD: Duration = Duration::from_secs(20);

/// The held window for a command deadline of `redis_timeout`: a settle sent at the end of the
/// window may reach Redis up to a deadline later (a command past its deadline is not withdrawn),
/// and must still land inside `LEASE` with one renewal tick and one more deadline to spare; at
/// most [`LEASE_HELD`]. `None` when no window longer than a renewal tick is left: leases could
/// not be kept (see [`MAX_REDIS_TIMEOUT`]).
pub fn lease_held_for(redis_timeout: Duration) -> Option<Duration> {
    let held = LEASE
        .checked_sub(LEASE_TICK)?
        .checked_sub(redis_timeout.checked_mul(2)?)?
        .min(LEASE_HELD);
    (held > LEASE_TICK).then_some(held)
}

/// How long a backend check (`/health`, `/readyz`) is answered from the last one.
const CHECK_CACHED_FOR: Duration = Duration::from_millis(250);

/// The longest `queue.redis_timeout_seconds` leases can be kept with (exclusive): 10 s.
pub const MAX_REDIS_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings the backend needs.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// Where Redis is.
    pub target: RedisTarget,
    /// Deadline of one command.
    pub deadline: Duration,
    /// Submits waiting for Redis before more are refused at once.
    pub max_submits_in_flight: usize,
    /// [`LEASE_HELD`]; shorter only in tests, which cannot wait 20 s for a lease to lapse.
    pub lease_held: Duration,
    /// TTL of request states.
    pub ttl: Duration,
    /// Deliveries after which a crashing (never finishing) job is dead-lettered.
    pub max_deliveries: u32,
    /// This consumer's name: stable per instance and shard.
    pub consumer: String,
    /// Shards per instance (every instance on one Redis runs the same number).
    pub nr_shards: usize,
    /// `queue.request_queue_name`.
    pub requests_prefix: String,
    /// Whether this instance processes jobs (`server.role` is not `api`). One that does not
    /// never takes entries over from dead consumers: it would hold them without running them.
    pub processes: bool,
    /// Most clients waiting for a final state on this shard at once.
    pub max_waiters: usize,
    /// Whether this shard checks, once connected, that Redis fsyncs every write, and warns when
    /// it does not (shard 0 of an instance, unless `queue.durability = relaxed`).
    pub check_durability: bool,
    /// How long a dead letter is kept.
    pub dlq_retention: Duration,
    /// The shard's stop, triggered when Redis records another shard count than this instance
    /// runs (`nr_shards`). The first instance on a Redis records it.
    pub halt_on_shard_mismatch: Option<Shutdown>,
}

/// One shard's Redis Streams queue.
pub(crate) struct RedisQueue {
    pub(super) cmd: Client,
    pub(super) block: Client,
    pub(super) keys: Keys,
    pub(super) scripts: Scripts,
    pub(super) consumer: Bytes,
    pub(super) ttl_text: Bytes,
    pub(super) max_deliveries: u32,
    /// While `Some`, `fetch` re-reads this consumer's own pending entries from that id on.
    pub(super) pel_cursor: RefCell<Option<Bytes>>,
    /// Set when something may have left entries in our pending list (a failed acknowledgement, a
    /// lost read); `fetch` then starts the pending-list read over from `0`, even mid-read.
    pub(super) reread: Cell<bool>,
    /// Until the first full pass over this consumer's own pending list since the start: its
    /// entries were delivered to an earlier run of this instance, so reading them again is a
    /// delivery (counted, and checked against `max_deliveries`). Later re-reads (after a lost
    /// reply) are not.
    pub(super) restart_pass: Cell<bool>,
    /// Shards per instance, to find an id's owner (and its keys) from the id alone.
    pub(super) nr_shards: usize,
    /// The request-stream prefix, for other shards' state keys.
    pub(super) requests_prefix: String,
    /// Entry ids handed to worker slots and not yet finished, with when their lease was last
    /// reset (the sending of the read, claim or renewal that did).
    pub(super) in_flight: RefCell<HashMap<Bytes, Instant>>,
    /// Entries taken over from dead consumers, waiting to be fetched.
    pub(super) reclaimed: RefCell<VecDeque<Delivery>>,
    /// How many entries a read may take beyond what the worker asked for
    /// ([`crate::backend::Backend::read_ahead`]), and the entries so read, in flight, waiting
    /// for the next fetch.
    pub(super) ahead: Cell<usize>,
    pub(super) read_ahead: RefCell<VecDeque<Delivery>>,
    /// Whether every read of the last write came back full (the stream may hold more).
    pub(super) backlog: Cell<bool>,
    /// Set when the worker stops: `fetch` returns after the read in flight, with what it took,
    /// and nothing more is taken over from other consumers.
    pub(super) stopping: Cell<bool>,
    /// The blocking connection's client id, with the connection it was read on (its
    /// `reconnects` count then); `None` inside when Redis refused `CLIENT ID` (an ACL).
    pub(super) block_id: Cell<Option<(u64, Option<u64>)>>,
    /// Whether reads are in flight on the blocking connection.
    pub(super) reading: Cell<bool>,
    pub(super) depth: Cell<Depth>,
    /// When (ms since the epoch, from its entry id) the oldest entry not yet delivered was
    /// added; `None` when none waits.
    pub(super) oldest_ms: Cell<Option<u64>>,
    /// Submits waiting for their transaction, and the most allowed.
    pub(super) submits_in_flight: Cell<usize>,
    pub(super) max_submits_in_flight: usize,
    pub(super) lease_held: Duration,
    pub(super) processes: bool,
    /// See [`RedisSettings::check_durability`].
    pub(super) check_durability: bool,
    /// See [`RedisSettings::dlq_retention`].
    pub(super) dlq_retention: Duration,
    /// See [`RedisSettings::halt_on_shard_mismatch`].
    pub(super) halt_on_shard_mismatch: Option<Shutdown>,
    /// Whether the start-up checks passed: the consumer group exists and the shard count is
    /// this instance's. Until then nothing is queued (a mismatched instance would strand it).
    pub(super) started: Cell<bool>,
    /// The last backend check and when it was made.
    pub(super) last_check: Cell<Option<(Instant, Result<(), QueueError>)>>,
    /// Completions gathering for the next group commit (`completions.rs`), and the flusher's
    /// wake-up.
    pub(super) completions: RefCell<Completions>,
    pub(super) completions_ready: Notify,
    /// Submits gathering for the next submit transaction (`submits.rs`), and the flusher's
    /// wake-up.
    pub(super) submits: RefCell<Submits>,
    pub(super) submits_ready: Notify,
    /// The live states of the requests this shard accepted, and the Redis tracking that keeps
    /// them valid (`tracking.rs`).
    pub(super) tracking: Tracking,
}

impl RedisQueue {
    /// Connects (in the background) and starts the shard's maintenance tasks.
    pub(crate) fn start(settings: RedisSettings, keys: Keys) -> Rc<RedisQueue> {
        let q = Rc::new(RedisQueue {
            cmd: Client::start(settings.target.clone(), settings.deadline, "commands", true),
            block: Client::start(settings.target, settings.deadline, "blocking reads", false),
            keys,
            scripts: Scripts::default(),
            consumer: Bytes::from(settings.consumer),
            ttl_text: Bytes::from(settings.ttl.as_secs().max(1).to_string()),
            max_deliveries: settings.max_deliveries,
            pel_cursor: RefCell::new(None),
            reread: Cell::new(true),
            restart_pass: Cell::new(true),
            nr_shards: settings.nr_shards,
            requests_prefix: settings.requests_prefix,
            in_flight: RefCell::default(),
            reclaimed: RefCell::default(),
            ahead: Cell::new(0),
            read_ahead: RefCell::default(),
            backlog: Cell::new(false),
            stopping: Cell::new(false),
            block_id: Cell::new(None),
            reading: Cell::new(false),
            depth: Cell::new(Depth::default()),
            oldest_ms: Cell::new(None),
            submits_in_flight: Cell::new(0),
            max_submits_in_flight: settings.max_submits_in_flight.max(1),
            lease_held: settings.lease_held.min(LEASE_HELD),
            processes: settings.processes,
            check_durability: settings.check_durability,
            dlq_retention: settings.dlq_retention,
            halt_on_shard_mismatch: settings.halt_on_shard_mismatch,
            last_check: Cell::new(None),
            started: Cell::new(false),
            completions: RefCell::default(),
            completions_ready: Notify::new(),
            submits: RefCell::default(),
            submits_ready: Notify::new(),
            tracking: Tracking::new(settings.ttl),
        });
        monoio::spawn(completions::flush_completions(q.clone()));
        monoio::spawn(submits::flush_submits(q.clone()));
        monoio::spawn(maintenance::move_retries(q.clone()));
        monoio::spawn(takeover::renew_leases_every_tick(q.clone()));
        monoio::spawn(takeover::leases_and_reclaim(q.clone()));
        monoio::spawn(tracking::keep_tracking(q.clone()));
        q
    }

    /// Whether the backend can take work: both connections up and the start-up checks passed.
    pub(crate) fn up(&self) -> bool {
        self.started.get() && self.cmd.is_up() && self.block.is_up()
    }

    /// Times either connection was lost.
    pub(crate) fn reconnects(&self) -> u64 {
        self.cmd.reconnects() + self.block.reconnects()
    }

    /// Round-trip times of the command connection.
    pub(crate) fn round_trips(&self) -> crate::metrics::Histogram {
        self.cmd.round_trips()
    }

    /// Warns when Redis would lose acknowledged writes on a crash: AOF off, or not fsynced on
    /// every write. A Redis that refuses `CONFIG GET` (managed services rename it) is not judged.
    pub(super) async fn check_durability(&self) {
        let get = crate::resp::Cmd::new(b"CONFIG")
            .arg(b"GET")
            .arg(b"append*");
        let Ok(reply) = self.cmd.call(&get).await else {
            return;
        };
        let items = reply.as_array().unwrap_or_default();
        let value = |name: &[u8]| {
            items
                .chunks(2)
                .find(|kv| kv[0].as_bytes().is_some_and(|k| &k[..] == name))
                .and_then(|kv| kv.get(1)?.as_bytes().cloned())
        };
        let aof = value(b"appendonly");
        let fsync = value(b"appendfsync");
        if aof.as_deref() != Some(b"yes") || fsync.as_deref() != Some(b"always") {
            warn!(
                appendonly = %String::from_utf8_lossy(aof.as_deref().unwrap_or(b"?")),
                appendfsync = %String::from_utf8_lossy(fsync.as_deref().unwrap_or(b"?")),
                "Redis does not fsync every write: a Redis crash can lose requests already \
                 answered 202. Set appendonly yes and appendfsync always, or \
                 queue.durability = relaxed to accept that"
            );
        }
    }

    /// Records this instance's shard count in Redis (`<requests prefix>:shards`) if none is
    /// recorded yet, and stops the shard when another count is: shard `s` reads and writes only
    /// stream `s` and ids map to shards by the count, so instances with different counts would
    /// strand each other's streams and miss each other's requests. To change the count, drain
    /// every instance and delete the key.
    pub(super) async fn check_shard_count(&self, halt: &Shutdown) -> bool {
        let key = format!("{}:shards", self.requests_prefix);
        let mine = self.nr_shards.to_string();
        let set = crate::resp::Cmd::new(b"SET")
            .arg(key.as_bytes())
            .arg(mine.as_bytes())
            .arg(b"NX")
            .arg(b"GET");
        let recorded = loop {
            match self.cmd.call(&set).await {
                Ok(Frame::Bulk(Some(v))) => break v,
                // Recorded now, by this instance.
                Ok(Frame::Bulk(None)) => return true,
                Ok(other) => {
                    warn!(reply = ?other, "unexpected reply recording the shard count");
                    return true;
                }
                Err(RedisError::Server(e)) => {
                    warn!(error = %String::from_utf8_lossy(&e), "cannot record the shard count in Redis");
                    return true;
                }
                // Down or slow: nothing is queued until it is known.
                Err(_) => monoio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        if recorded[..] != *mine.as_bytes() {
            error!(
                key,
                recorded = %String::from_utf8_lossy(&recorded),
                configured = self.nr_shards,
                "Redis is used by instances with another server.shards: every instance on one \
                 Redis must run the same number of shards (drain them all and delete the key to \
                 change it); stopping"
            );
            halt.trigger();
            return false;
        }
        true
    }

    /// Creates the consumer group (and the stream); one that exists already is fine.
    pub(super) async fn create_group(&self) {
        let r = self
            .cmd
            .call(&commands::create_group(&self.keys.stream))
            .await;
        match r {
            Ok(_) => {}
            Err(e) if e.code() == Some(b"BUSYGROUP") => {}
            Err(e) => warn!(error = %e, "cannot create the consumer group"),
        }
    }
}

impl RedisQueue {
    /// The depth gauges as last refreshed (`maintenance.rs`).
    pub(crate) fn depth(&self) -> Depth {
        self.depth.get()
    }

    /// Age of the oldest entry not yet delivered (0 when none waits), by its entry id's time.
    pub(crate) fn oldest_age_seconds(&self) -> f64 {
        self.oldest_ms
            .get()
            .map_or(0.0, |ms| now_ms().saturating_sub(ms) as f64 / 1e3)
    }

    /// A `PING` round trip within 500 ms.
    pub(crate) async fn check(&self) -> Result<(), QueueError> {
        if !self.started.get() {
            // The start-up checks (group, shard count) have not passed yet.
            return Err(QueueError::Unavailable);
        }
        // Health and readiness probes in a flood cost one round trip per shard per interval.
        if let Some((at, r)) = self.last_check.get() {
            if at.elapsed() < CHECK_CACHED_FOR {
                return r;
            }
        }
        let r = self.check_now().await;
        self.last_check.set(Some((Instant::now(), r)));
        r
    }

    async fn check_now(&self) -> Result<(), QueueError> {
        // A real round trip, within a short deadline: health must answer fast.
        let deadline = Duration::from_millis(500);
        match self
            .cmd
            .pipeline_within(deadline, 1, |out| commands::ping().encode(out))
            .await
        {
            Ok(replies)
                if replies
                    .first()
                    .and_then(Frame::as_bytes)
                    .is_some_and(|b| &b[..] == b"PONG") =>
            {
                Ok(())
            }
            _ => Err(QueueError::Unavailable),
        }
    }

    /// The state of `id` from its owner's key, readable by every instance.
    pub(crate) async fn load_state(
        &self,
        id: &CorrelationId,
    ) -> Result<Option<RequestState>, QueueError> {
        // The owner's key: this shard may be reading for another one.
        let owner = crate::id::shard_for(id, self.nr_shards);
        let key = keys::state_key(&self.requests_prefix, owner, id);
        let reply = self
            .cmd
            .call(&commands::get(&key))
            .await
            .map_err(|_| QueueError::Unavailable)?;
        let Some(value) = reply.as_bytes() else {
            return Ok(None);
        };
        match state_value::decode(value) {
            Some(state) => Ok(Some(state)),
            None => {
                error!(correlation_id = %id, "unreadable request state in Redis");
                Err(QueueError::Unavailable)
            }
        }
    }
}

/// Wall-clock milliseconds since the epoch (retry due times are shared between instances).
pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_held_window_leaves_room_for_late_commands() {
        // The default 2 s deadline: the full 20 s.
        assert_eq!(lease_held_for(Duration::from_secs(2)), Some(LEASE_HELD));
        // 5 s: 30 - 5 - 10.
        assert_eq!(
            lease_held_for(Duration::from_secs(5)),
            Some(Duration::from_secs(15))
        );
        // From 10 s on, no window longer than a renewal tick is left.
        assert_eq!(lease_held_for(Duration::from_millis(9_900)), Some(Duration::from_millis(5_200)));
        assert_eq!(lease_held_for(MAX_REDIS_TIMEOUT), None);
        assert_eq!(lease_held_for(Duration::from_secs(60)), None);
    }
}
