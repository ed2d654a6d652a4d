//! Taking work: `XREADGROUP` for new entries (several reads in one write when there is room for
//! more than one batch, only the first blocking), paging through this consumer's own pending list
//! after a start or a lost reply, and the entries taken over from dead consumers.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::{error, info, warn};

use super::commands;
use super::queue::{RedisQueue, BLOCK_MS, MAX_READS_PER_WRITE};
use super::reads::{self, Entry};
use crate::backend::Delivery;
use crate::resp::{Frame, RedisError};

impl RedisQueue {
    /// Waits for jobs and returns at most `free`, read at most `per_read` per `XREADGROUP`. With
    /// room for several reads they go out together in one write, only the first blocking: one
    /// read in flight at a time capped processing at `per_read` jobs per round trip, which with
    /// `appendfsync always` (every read is a write, answered after an fsync) was the end-to-end
    /// limit. Once `stopping`, it returns what the read in flight took (perhaps nothing).
    pub(crate) async fn fetch(&self, free: usize, per_read: usize) -> Vec<Delivery> {
        let per_read = per_read.max(1);
        loop {
            if self.stopping.get() {
                return Vec::new();
            }
            if !self.cmd.is_up() {
                // No work is taken that could not be settled: with the command connection down
                // every settle fails, and re-reading what failed would spin.
                monoio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            // Already in `in_flight`: since they were claimed, or read ahead.
            for waiting in [&self.reclaimed, &self.read_ahead] {
                let taken: Vec<Delivery> = {
                    let mut r = waiting.borrow_mut();
                    let n = r.len().min(free.max(1));
                    r.drain(..n).collect()
                };
                let taken = self.still_held(taken);
                if !taken.is_empty() {
                    return taken;
                }
            }
            if self.reread.take() {
                *self.pel_cursor.borrow_mut() = Some(Bytes::from_static(b"0"));
            }
            let cursor = self.pel_cursor.borrow().clone();
            if let (Some(after), false) = (&cursor, self.restart_pass.get()) {
                // A re-read after a lost reply: the lost read counted these deliveries already.
                let read_at = Instant::now();
                let mut count = itoa::Buffer::new();
                let count = count.format(free.max(1)).as_bytes();
                let keys: [&[u8]; 1] = [&self.keys.stream];
                let args: [&[u8]; 4] = [super::keys::GROUP, &self.consumer, after, count];
                let reply = self
                    .cmd
                    .eval(&self.scripts.read_own_pending, &keys, &args)
                    .await;
                let Ok(frame) = reply else {
                    self.reread.set(true);
                    monoio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let mut out = Vec::new();
                self.take_read(&frame, true, &mut out).await;
                let out = self.hand_out(out, read_at);
                if !out.is_empty() {
                    return out;
                }
                continue;
            }
            // Our own pending list is paged through one read at a time (each starts after the
            // last entry of the one before), for the free slots only. New entries are read ahead
            // as the worker allows (`read_ahead`), but only while the stream holds more than the
            // last reads took (each came back full): otherwise the reads past the first find
            // nothing and cost Redis a command each.
            let want = match cursor {
                Some(_) => free.max(1),
                None if self.backlog.get() => free.max(1) + self.ahead.get(),
                None => free.max(1),
            };
            let reads = match cursor {
                Some(_) => 1,
                None => want.div_ceil(per_read).clamp(1, MAX_READS_PER_WRITE),
            };
            let start: &[u8] = cursor.as_deref().unwrap_or(b">");
            self.learn_block_id().await;
            if self.stopping.get() {
                // Asked to stop while learning the id: no read to end, none to send.
                return Vec::new();
            }
            let read_at = Instant::now();
            self.reading.set(true);
            let reply = self
                .block
                .pipeline_within(
                    Duration::from_millis(BLOCK_MS) + Duration::from_secs(2),
                    reads,
                    |out| {
                        for i in 0..reads {
                            // Together never more than `want`: the last read takes the rest.
                            let n = per_read.min(want - i * per_read) as u64;
                            // Only the first read blocks: the others return at once.
                            let block = (i == 0).then_some(BLOCK_MS);
                            commands::xreadgroup(
                                &self.consumer,
                                n,
                                block,
                                &self.keys.stream,
                                start,
                            )
                            .encode(out);
                        }
                    },
                )
                .await;
            self.reading.set(false);
            let frames = match reply {
                Ok(frames) => frames,
                Err(_) => {
                    // Down, or a reply lost with the connection: entries it delivered are in our
                    // pending list, so read that again once Redis is back.
                    self.reread.set(true);
                    monoio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if cursor.is_none() {
                let full = |i: usize, f: &Frame| {
                    reads::entry_count(f) == per_read.min(want - i * per_read)
                };
                let all_full = frames.iter().enumerate().all(|(i, f)| full(i, f));
                self.backlog.set(all_full);
            }
            let mut out = Vec::new();
            // The reads of one write usually fail together (`LOADING`, `NOGROUP`): the first
            // error is handled once, after what the others delivered is handed out.
            let mut failed: Option<&[u8]> = None;
            for frame in &frames {
                match frame.error_text() {
                    Some(e) => {
                        failed.get_or_insert(e);
                    }
                    None => self.take_read(frame, cursor.is_some(), &mut out).await,
                }
            }
            let mut out = self.hand_out(out, read_at);
            if cursor.is_some() && !out.is_empty() {
                // The restart pass: every one of these is a delivery again.
                out = self.drop_poison(out).await;
            }
            if let Some(e) = failed {
                if e.starts_with(b"NOGROUP") {
                    self.create_group().await;
                } else {
                    warn!(error = %String::from_utf8_lossy(e), "XREADGROUP failed");
                    if out.is_empty() {
                        monoio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            if out.len() > free.max(1) {
                let rest = out.split_off(free.max(1));
                self.read_ahead.borrow_mut().extend(rest);
            }
            if !out.is_empty() {
                return out;
            }
        }
    }

    /// The deliveries of one (non-error) `XREADGROUP` reply, appended to `out`; entries without a
    /// readable job are acknowledged.
    pub(super) async fn take_read(&self, frame: &Frame, paging: bool, out: &mut Vec<Delivery>) {
        let entries = match reads::xreadgroup(frame) {
            Ok(e) => e,
            Err(why) => {
                // Whatever it delivered is in our pending list: read that again.
                error!(why, "unexpected XREADGROUP reply");
                self.reread.set(true);
                return;
            }
        };
        if paging {
            // Re-reading our own pending list: page on, or switch to new entries when done.
            let last = entries.last().map(|e| match e {
                Entry::Job(d) => d.entry_id.clone().unwrap_or_default(),
                Entry::Unreadable(id) => id.clone(),
            });
            if last.is_none() {
                self.restart_pass.set(false);
            }
            *self.pel_cursor.borrow_mut() = last;
        }
        for e in entries {
            match e {
                Entry::Job(mut d) => {
                    d.redelivered = paging;
                    out.push(d);
                }
                Entry::Unreadable(id) => {
                    error!(entry = %String::from_utf8_lossy(&id), "stream entry without a readable job (deleted while pending?); acknowledging it");
                    let ack = commands::xack(&self.keys.stream, [&id[..]]);
                    let _ = self.cmd.call(&ack).await;
                }
            }
        }
    }

    /// Of deliveries re-read from this consumer's own pending list (after a restart, or a lost
    /// reply), those delivered more than `max_deliveries` times are dead-lettered instead of
    /// handed out: a job that crashes its instance every time it runs would otherwise be re-read
    /// by the restarted instance for ever. The counts come from `XPENDING` (the re-read counted
    /// as a delivery); when it cannot be read, everything is handed out.
    async fn drop_poison(&self, deliveries: Vec<Delivery>) -> Vec<Delivery> {
        let ids: Vec<&Bytes> = deliveries
            .iter()
            .filter_map(|d| d.entry_id.as_ref())
            .collect();
        let (Some(first), Some(last)) = (ids.iter().min(), ids.iter().max()) else {
            return deliveries;
        };
        let pending = commands::xpending_of(
            &self.keys.stream,
            first,
            last,
            ids.len() as u64 * 2,
            &self.consumer,
        );
        let counts: std::collections::HashMap<Bytes, u32> = match self.cmd.call(&pending).await {
            Ok(Frame::Array(Some(rows))) => rows
                .iter()
                .filter_map(|row| {
                    let cols = row.as_array()?;
                    let id = cols.first()?.as_bytes()?.clone();
                    match cols.get(3)? {
                        Frame::Integer(n) => Some((id, *n as u32)),
                        _ => None,
                    }
                })
                .collect(),
            _ => return deliveries,
        };
        let mut out = Vec::with_capacity(deliveries.len());
        for d in deliveries {
            let count = d.entry_id.as_ref().and_then(|id| counts.get(id)).copied();
            match count {
                Some(n) if n > self.max_deliveries => {
                    super::takeover::dead_letter_poison(self, d, n).await
                }
                _ => out.push(d),
            }
        }
        out
    }

    /// Marks deliveries in flight with their lease reset by the read sent at `read_at`, dropping
    /// those already in flight (a pending-list re-read, which resets their lease too).
    pub(super) fn hand_out(&self, deliveries: Vec<Delivery>, read_at: Instant) -> Vec<Delivery> {
        let mut in_flight = self.in_flight.borrow_mut();
        deliveries
            .into_iter()
            .filter(|d| {
                d.entry_id
                    .as_ref()
                    .is_none_or(|id| in_flight.insert(id.clone(), read_at).is_none())
            })
            .collect()
    }

    /// The blocking connection's client id, asked once per connection (for `unblock`).
    async fn learn_block_id(&self) {
        let conn = self.block.reconnects();
        if self.block_id.get().is_some_and(|(c, _)| c == conn) {
            return;
        }
        match self.block.call(&commands::client_id()).await {
            Ok(Frame::Integer(id)) if self.block.reconnects() == conn => {
                self.block_id.set(Some((conn, u64::try_from(id).ok())));
            }
            // Refused (an ACL without `CLIENT ID`): a drain waits for the read's block instead.
            Err(RedisError::Server(_)) => self.block_id.set(Some((conn, None))),
            // Lost with the connection: asked again on the next one.
            _ => {}
        }
    }

    /// Ends the blocking read in flight at once (`CLIENT UNBLOCK`: it returns what it has, as if
    /// its block ran out), where the blocking connection's id is known and the ACL allows it
    /// (`CLIENT UNBLOCK` is `@admin`); else it ends within its block. Sent on the command
    /// connection: were that on another server than the blocking one (a failover between the
    /// two connects), the id could name another client there, whose blocking command would
    /// return early as if timed out.
    pub(crate) async fn unblock(&self) {
        let conn = self.block.reconnects();
        if let (true, Some((c, Some(id)))) = (self.reading.get(), self.block_id.get()) {
            if c == conn {
                let _ = self.cmd.call(&commands::client_unblock(id)).await;
            }
        }
    }

    /// Gives back the entries taken and not handed out (`taken`, read ahead, taken over): no longer
    /// renewed, and marked idle for a lease (`XCLAIM … IDLE`), so other consumers take them over
    /// at their next look instead of a lease from now, and this consumer restarted re-reads
    /// them from its pending list.
    pub(crate) async fn give_back(&self, taken: Vec<Delivery>) {
        // Nothing more is taken: no fetch, no take-over (the worker may stop without a fetch
        // in flight, so this is said here too).
        self.stopping.set(true);
        self.ahead.set(0);
        let waiting: Vec<Delivery> = {
            let (mut r, mut a) = (self.reclaimed.borrow_mut(), self.read_ahead.borrow_mut());
            r.drain(..).chain(a.drain(..)).chain(taken).collect()
        };
        let held = self.still_held(waiting);
        for d in &held {
            self.done(d);
        }
        let ids: Vec<&[u8]> = held.iter().filter_map(|d| d.entry_id.as_deref()).collect();
        if ids.is_empty() {
            return;
        }
        let idle = super::queue::LEASE.as_millis() as u64;
        let give = commands::xclaim(&self.keys.stream, &self.consumer, 0, ids.iter().copied())
            .arg(b"IDLE")
            .int(idle)
            .arg(b"JUSTID");
        match self.cmd.call(&give).await {
            Ok(_) => info!(entries = ids.len(), "gave back entries taken and not run"),
            Err(e) => {
                warn!(entries = ids.len(), error = %e, "cannot give back entries taken and not run; they are taken over once their lease lapses");
            }
        }
    }

    /// Of deliveries that waited here (taken over, or read ahead), those whose lease is still
    /// certainly held. The others (renewals failed while Redis was away) may have been taken
    /// over and run elsewhere meanwhile: they are let go, and the re-read of this consumer's
    /// pending list finds those still its own.
    fn still_held(&self, deliveries: Vec<Delivery>) -> Vec<Delivery> {
        let (held, lapsed): (Vec<Delivery>, Vec<Delivery>) =
            deliveries.into_iter().partition(|d| self.lease_held(d));
        if !lapsed.is_empty() {
            for d in &lapsed {
                self.done(d);
            }
            self.reread.set(true);
        }
        held
    }

    pub(super) fn done(&self, d: &Delivery) {
        if let Some(id) = &d.entry_id {
            self.in_flight.borrow_mut().remove(id);
        }
    }
}
