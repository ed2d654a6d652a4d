//! Knowing when another connection changes a request this shard accepted, so its live state can
//! be answered here (`live.rs`): Redis's client-side caching in broadcast mode. The shard's
//! command connection runs `CLIENT TRACKING ON REDIRECT <subscriber> BCAST PREFIX <state keys>
//! NOLOOP`; from then on every change of one of this shard's state keys made by any other
//! connection (another instance's worker, another shard, a script run by another, an operator,
//! an expiry) is reported on the subscriber connection's `__redis__:invalidate` channel. The
//! changes this connection makes are not reported (`NOLOOP`): the shard records them itself.
//!
//! The reports are complete only while the subscriber stays subscribed and tracking is on for
//! the command connection as it is now: each such period is an epoch, and a live state is shown
//! only in the epoch it was recorded in. When the subscriber is lost (seen when its socket
//! closes, or within its ping check), or the command connection reconnects, the epoch ends and
//! polls read Redis until tracking is on again. A Redis that refuses `CLIENT TRACKING` (an ACL,
//! a managed service) leaves every poll reading Redis, as before.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::{info, warn};

use super::live::LiveStates;
use super::queue::RedisQueue;
use crate::id::CorrelationId;
use crate::resp::encode::command;
use crate::resp::subscriber::server_run_id;
use crate::resp::{Client, Frame};
use crate::store::RequestState;
use crate::sync::notify::Notify;

/// Most live states one shard keeps; the submits past it are polled from Redis.
const LIVE_MAX: usize = 200_000;
/// How often tracking is checked (and turned on again after a reconnect).
const TICK: Duration = Duration::from_millis(100);
/// How long after a refused `CLIENT TRACKING` it is tried again.
const REFUSED_RETRY: Duration = Duration::from_secs(30);

/// One shard's tracking and the live states it keeps valid.
pub(super) struct Tracking {
    /// The subscriber's client id and its connection's number, while it is subscribed, and the
    /// `run_id` of the server it is connected to.
    subscriber: Cell<Option<(u64, u64)>>,
    server: RefCell<Option<Bytes>>,
    connections: Cell<u64>,
    /// Tracking is on for (subscriber connection number, command connection reconnects).
    on_for: Cell<Option<(u64, u64)>>,
    epoch: Cell<u64>,
    live: RefCell<LiveStates>,
    /// Wakes the task that turns tracking on.
    changed: Notify,
}

impl Tracking {
    /// Live states kept at most `ttl` (`cache.ttl_seconds`).
    pub(super) fn new(ttl: Duration) -> Self {
        Tracking {
            subscriber: Cell::new(None),
            server: RefCell::new(None),
            connections: Cell::new(0),
            on_for: Cell::new(None),
            epoch: Cell::new(0),
            live: RefCell::new(LiveStates::new(ttl, LIVE_MAX)),
            changed: Notify::new(),
        }
    }

    /// The subscriber is subscribed, as client `client_id` of the server with `run_id` (`None`:
    /// Redis would not say, or refused the reports' channel, so nothing can be redirected to it
    /// and every poll reads Redis).
    pub(super) fn subscriber_up(&self, client: Option<(u64, Bytes)>) {
        let n = self.connections.get() + 1;
        self.connections.set(n);
        self.subscriber.set(client.as_ref().map(|(id, _)| (*id, n)));
        *self.server.borrow_mut() = client.map(|(_, run_id)| run_id);
        self.changed.notify();
    }

    /// The subscriber is lost: reports may be missed from now on.
    pub(super) fn subscriber_down(&self) {
        self.subscriber.set(None);
        self.live.borrow_mut().clear();
    }

    /// The current epoch, when every change made elsewhere is reported now.
    fn epoch(&self, cmd: &Client) -> Option<u64> {
        let (_, sub) = self.subscriber.get()?;
        let on = self.on_for.get()?;
        (on == (sub, cmd.reconnects()) && cmd.is_up()).then(|| self.epoch.get())
    }

    /// How many live states are kept.
    pub(super) fn kept(&self) -> usize {
        self.live.borrow().len()
    }

    /// The live state of `id`, when one is kept and valid.
    pub(super) fn get(&self, id: &CorrelationId, cmd: &Client) -> Option<RequestState> {
        let epoch = self.epoch(cmd)?;
        self.live.borrow().get(id, epoch).cloned()
    }

    /// Records `state` for `id`, about to be written to Redis by this shard (before it is sent,
    /// so a report of a change made right after it cannot come first).
    pub(super) fn record(&self, id: CorrelationId, state: RequestState, cmd: &Client) {
        if let Some(epoch) = self.epoch(cmd) {
            self.live
                .borrow_mut()
                .insert(id, state, epoch, Instant::now());
        }
    }

    /// A change this shard made to `id`, now in Redis.
    pub(super) fn update(&self, id: &CorrelationId, state: RequestState) {
        self.live.borrow_mut().update(id, state);
    }

    /// `id` changed (or is about to) in a way this shard does not keep: polls read Redis.
    pub(super) fn forget(&self, id: &CorrelationId) {
        self.live.borrow_mut().forget(id);
    }

    /// Drops the states older than their TTL.
    pub(super) fn expire(&self, now: Instant) {
        self.live.borrow_mut().expire(now);
    }

    /// A report from Redis: the keys of `payload` (state keys under `prefix`) changed, or, for a
    /// null payload, everything did (a flush).
    pub(super) fn invalidated(&self, payload: &Frame, prefix: &[u8]) {
        let Some(keys) = payload.as_array() else {
            self.live.borrow_mut().clear();
            return;
        };
        let mut live = self.live.borrow_mut();
        // A key that is not a state key names nothing kept here.
        for key in keys.iter().filter_map(Frame::as_bytes) {
            if let Some(id) = key.strip_prefix(prefix).and_then(CorrelationId::parse) {
                live.forget(&id);
            }
        }
    }
}

/// Keeps tracking on for the command connection and subscriber as they are now: after either
/// (re)connects, turns it off and on again with the subscriber's client id.
pub(super) async fn keep_tracking(q: Rc<RedisQueue>) {
    let t = &q.tracking;
    let mut logged = Logged::default();
    loop {
        // Before any wait: a subscriber coming up meanwhile is not missed.
        let changed = t.changed.notified();
        let reconnects = q.cmd.reconnects();
        let mut wait = TICK;
        if let Some((client_id, sub)) = t.subscriber.get() {
            if q.cmd.is_up() && t.on_for.get() != Some((sub, reconnects)) {
                wait = turn_on(&q, client_id, sub, reconnects, &mut logged).await;
            }
        }
        monoio::select! {
            _ = changed => {},
            _ = monoio::time::sleep(wait) => {},
        }
    }
}

/// What was logged about tracking being off (each said once until it is on again).
#[derive(Default)]
struct Logged {
    refused: bool,
    other_server: bool,
}

/// Turns tracking on with the subscriber `client_id` (connection `sub`) for the command
/// connection as it is after `reconnects`, once `INFO server` shows both on one server: client
/// ids are numbered per server, so the subscriber's id names it only there (a failover can
/// move one connection and not the other). Returns how long to wait before looking again.
async fn turn_on(
    q: &RedisQueue,
    client_id: u64,
    sub: u64,
    reconnects: u64,
    logged: &mut Logged,
) -> Duration {
    let t = &q.tracking;
    let unchanged =
        || q.cmd.reconnects() == reconnects && t.subscriber.get() == Some((client_id, sub));
    let info = match q.cmd.pipeline(1, |out| command(out, &[b"INFO", b"server"])).await {
        Ok(r) => r,
        Err(_) => return TICK,
    };
    if !same_server(&info, &t.server.borrow()) {
        if !unchanged() {
            return TICK;
        }
        if !logged.other_server {
            warn!("redis: the command and subscriber connections reach different servers (or INFO is refused); every status poll reads redis");
            logged.other_server = true;
        }
        return REFUSED_RETRY;
    }
    let mut digits = itoa::Buffer::new();
    let client = digits.format(client_id).as_bytes();
    let prefix = &q.keys.state_prefix;
    let replies = q
        .cmd
        .pipeline(2, |out| {
            command(out, &[b"CLIENT", b"TRACKING", b"OFF"]);
            command(
                out,
                &[
                    b"CLIENT", b"TRACKING", b"ON", b"REDIRECT", client, b"BCAST", b"PREFIX",
                    prefix, b"NOLOOP",
                ],
            );
        })
        .await;
    let Ok(replies) = replies else {
        // Not connected or no reply: tried again on the next tick.
        return TICK;
    };
    if !unchanged() {
        // Either connection changed meanwhile (the subscriber's old id may be gone): again.
        return TICK;
    }
    if let Some(why) = replies.iter().find_map(Frame::error_text) {
        if !logged.refused {
            let why = String::from_utf8_lossy(why);
            warn!(error = %why, "redis refuses CLIENT TRACKING: every status poll reads redis");
            logged.refused = true;
        }
        return REFUSED_RETRY;
    }
    t.live.borrow_mut().clear();
    t.epoch.set(t.epoch.get() + 1);
    t.on_for.set(Some((sub, reconnects)));
    if logged.refused || logged.other_server {
        info!("redis tracks state keys again: status polls of live requests are answered locally");
        *logged = Logged::default();
    }
    TICK
}

/// Whether the `INFO server` reply first in `replies` names the server `subscriber` is on.
fn same_server(replies: &[Frame], subscriber: &Option<Bytes>) -> bool {
    let cmd = replies
        .first()
        .and_then(Frame::as_bytes)
        .and_then(|info| server_run_id(info));
    cmd.is_some() && cmd == *subscriber
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;

    #[test]
    fn reports_drop_the_states_they_name() {
        let t = Tracking::new(Duration::from_secs(60));
        let (a, b) = (
            CorrelationId::from_bytes([1; 16]),
            CorrelationId::from_bytes([2; 16]),
        );
        let now = Instant::now();
        for id in [a, b] {
            t.live
                .borrow_mut()
                .insert(id, RequestState::pending(Timestamp(1)), 0, now);
        }
        let prefix = b"p:{0}:state:";
        let key = |id: &CorrelationId| {
            let mut k = prefix.to_vec();
            k.extend_from_slice(&id.to_text());
            Frame::Bulk(Some(Bytes::from(k)))
        };
        let other = Frame::Bulk(Some(Bytes::from_static(b"p:{0}:state:not-an-id")));
        t.invalidated(&Frame::Array(Some(vec![other, key(&a)])), prefix);
        assert!(t.live.borrow().get(&a, 0).is_none());
        assert!(t.live.borrow().get(&b, 0).is_some());
        t.invalidated(&Frame::Bulk(None), prefix);
        assert_eq!(t.live.borrow().len(), 0, "a flush drops everything");
    }

    #[test]
    fn tracking_needs_both_connections_on_one_server() {
        let info = |id: &'static str| Frame::Bulk(Some(Bytes::from(format!("# Server\r\nrun_id:{id}\r\n"))));
        let ok = Frame::Simple(Bytes::from_static(b"OK"));
        let on = Some(Bytes::from_static(b"abc"));
        assert!(same_server(&[info("abc"), ok.clone(), ok.clone()], &on));
        assert!(!same_server(&[info("xyz"), ok.clone(), ok.clone()], &on));
        assert!(!same_server(&[info("abc")], &None));
        let refused = Frame::Error(Bytes::from_static(b"NOPERM"));
        assert!(!same_server(&[refused, ok], &on));
    }

    #[test]
    fn the_subscribers_loss_drops_everything() {
        let t = Tracking::new(Duration::from_secs(60));
        t.subscriber_up(Some((9, Bytes::from_static(b"r1"))));
        assert_eq!(t.subscriber.get(), Some((9, 1)));
        t.live.borrow_mut().insert(
            CorrelationId::from_bytes([1; 16]),
            RequestState::pending(Timestamp(1)),
            0,
            Instant::now(),
        );
        t.subscriber_down();
        assert_eq!(t.subscriber.get(), None);
        assert_eq!(t.live.borrow().len(), 0);
        t.subscriber_up(Some((10, Bytes::from_static(b"r1"))));
        assert_eq!(t.subscriber.get(), Some((10, 2)), "a new connection number");
        t.subscriber_up(None);
        assert_eq!(t.subscriber.get(), None, "no id: no tracking");
    }
}
