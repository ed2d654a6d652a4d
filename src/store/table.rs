//! One shard's table of request states, keyed by correlation id, with expiry.
//!
//! A state expires `ttl` after it became final (Redis `EXPIRE` on the final write). States that are
//! not final never expire: a request still queued must stay visible. Expiry uses a FIFO of
//! (deadline, id): the TTL is one constant, so deadlines are pushed in order and a sweep only looks
//! at the front.
//!
//! The requests this shard accepts live in [`Slots`], found by the slot their id carries. States
//! of ids minted elsewhere (Redis mode, another instance, an earlier run) go to a hash map split
//! into [`SEGMENTS`] maps by one random byte of the id: a hash map that grows rehashes everything
//! at once, which at millions of states stalls the shard for tens of milliseconds; segments make
//! each rehash 1/64th as large (the same total work, in small steps). Expiry is one chunked
//! queue in the order states became final (`expiry.rs`).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::{Duration, Instant};

use super::expiry::Expiry;
use super::slots::Slots;
use super::state::{Outcome, Refused, RequestState, Status};
use crate::clock::Timestamp;
use crate::id::CorrelationId;

/// Hashes a [`CorrelationId`] by folding its (already random) bytes.
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only ever fed a CorrelationId's 16 bytes (via its derived Hash: the array's bytes).
        let mut buf = [0u8; 16];
        let n = bytes.len().min(16);
        buf[..n].copy_from_slice(&bytes[..n]);
        self.0 ^= CorrelationId::from_bytes(buf).hash64();
    }
    fn write_usize(&mut self, _len: usize) {
        // The array length prefix carries no information.
    }
}

type IdMap<V> = HashMap<CorrelationId, V, BuildHasherDefault<IdHasher>>;

/// Why an update could not be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateError {
    /// No state for that id (never existed, or expired).
    Unknown,
    /// The state machine refused the transition.
    Refused(Refused),
}

/// Number of segments (a power of two).
pub const SEGMENTS: usize = 64;

#[derive(Default)]
struct Segment {
    map: IdMap<RequestState>,
}

/// The request states one shard owns.
pub struct StateTable {
    slots: Slots,
    segments: Box<[Segment]>,
    expiry: Expiry,
    /// Expiry entries to skip, by id: those of final states a redrive made `PENDING` again.
    stale_expiries: IdMap<u32>,
    len: usize,
    ttl: Duration,
}

impl StateTable {
    /// An empty table whose final states live for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        let segments = (0..SEGMENTS).map(|_| Segment::default()).collect();
        StateTable {
            slots: Slots::new(),
            segments,
            expiry: Expiry::default(),
            stale_expiries: IdMap::default(),
            len: 0,
            ttl,
        }
    }

    fn segment(&self, id: &CorrelationId) -> &Segment {
        &self.segments[id.as_bytes()[15] as usize % SEGMENTS]
    }

    fn segment_mut(&mut self, id: &CorrelationId) -> &mut Segment {
        &mut self.segments[id.as_bytes()[15] as usize % SEGMENTS]
    }

    /// Number of states held.
    pub fn count(&self) -> usize {
        self.len
    }

    /// Records a newly accepted request: `minted` (a fresh id this shard owns) with the slot its
    /// state takes written into it. Returns the id to hand out.
    pub fn insert_pending(&mut self, minted: CorrelationId, now: Timestamp) -> CorrelationId {
        self.len += 1;
        match self.slots.insert(minted, RequestState::pending(now)) {
            Ok(id) => id,
            Err(state) => {
                // Every slot number taken (2^32 states): keep the id as minted.
                self.segment_mut(&minted).map.insert(minted, state);
                minted
            }
        }
    }

    /// Forgets a request that was never accepted (its enqueue failed). Only a state that is not
    /// final goes: a final one leaves by expiry alone, so it has exactly one expiry entry for as
    /// long as it is held, and no entry can drop a later state of the same id early.
    pub fn remove(&mut self, id: &CorrelationId) {
        let not_final = |s: &RequestState| !s.status.is_final();
        if self.slots.remove_if(id, not_final).is_some() {
            self.len -= 1;
            return;
        }
        let map = &mut self.segment_mut(id).map;
        if map.get(id).is_some_and(not_final) {
            map.remove(id);
            self.len -= 1;
        }
    }

    /// The ids of every request held that is not final yet (accepted and not finished).
    pub fn unfinished(&self) -> Vec<CorrelationId> {
        self.slots
            .iter()
            .chain(self.segments.iter().flat_map(|s| s.map.iter()))
            .filter(|(_, s)| !s.status.is_final())
            .map(|(id, _)| *id)
            .collect()
    }

    /// The state of `id`, if held.
    pub fn get(&self, id: &CorrelationId) -> Option<&RequestState> {
        self.slots.get(id).or_else(|| self.segment(id).map.get(id))
    }

    fn get_mut(&mut self, id: &CorrelationId) -> Option<&mut RequestState> {
        if let Some(at) = self.slots.find(id) {
            return self.slots.state_mut(at);
        }
        self.segment_mut(id).map.get_mut(id)
    }

    /// A worker slot took the request.
    pub fn start(&mut self, id: &CorrelationId, now: Timestamp) -> Result<(), UpdateError> {
        let state = self.get_mut(id).ok_or(UpdateError::Unknown)?;
        state.start(now).map_err(UpdateError::Refused)
    }

    /// The request is final with `outcome`: in the state the table holds, or, when it holds none
    /// (submitted before a restart, taken over from another consumer), in a new one submitted at
    /// `submitted_at`. Its expiry clock starts at `at`. One lookup: this runs once per request.
    pub fn finish_or_insert(
        &mut self,
        id: &CorrelationId,
        to: Status,
        outcome: Outcome,
        submitted_at: Timestamp,
        at: Instant,
    ) -> Result<(), Refused> {
        let deadline = at + self.ttl;
        if let Some(state) = self.get_mut(id) {
            state.finish(to, outcome)?;
        } else {
            let mut state = RequestState::pending(submitted_at);
            state.finish(to, outcome)?;
            self.segment_mut(id).map.insert(*id, state);
            self.len += 1;
        }
        self.expiry.push(deadline, *id);
        Ok(())
    }

    /// An operator redrove `id` from the dead-letter queue: it is `PENDING` again (submitted at
    /// `submitted_at`, changed at `now`), whether the table still held its final state or not.
    /// The expiry entry of the final state it had is skipped when it comes due, so it cannot
    /// drop the state the request reaches next.
    pub fn redrive(&mut self, id: &CorrelationId, submitted_at: Timestamp, now: Timestamp) {
        let mut pending = RequestState::pending(submitted_at);
        pending.updated_at = now;
        let was_final = match self.get_mut(id) {
            Some(state) => {
                let was_final = state.status.is_final();
                *state = pending;
                was_final
            }
            None => {
                self.segment_mut(id).map.insert(*id, pending);
                self.len += 1;
                false
            }
        };
        if was_final {
            *self.stale_expiries.entry(*id).or_default() += 1;
        }
    }

    /// Forgets the state of `id` if one is held (its expiry entry, if final, is then skipped).
    pub fn forget(&mut self, id: &CorrelationId) {
        let removed = match self.slots.remove_if(id, |_| true) {
            Some(state) => Some(state),
            None => self.segment_mut(id).map.remove(id),
        };
        if let Some(state) = removed {
            self.len -= 1;
            if state.status.is_final() {
                *self.stale_expiries.entry(*id).or_default() += 1;
            }
        }
    }

    /// Drops final states whose TTL ran out by `now`; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let mut removed = 0;
        while let Some(id) = self.expiry.pop_due(now) {
            removed += usize::from(self.drop_final(&id));
        }
        removed
    }

    /// Drops the oldest final states, due or not, until at most `max` states are held (states
    /// not final yet are never dropped); returns how many. For a table that is only a cache.
    pub fn evict_to(&mut self, max: usize) -> usize {
        let mut removed = 0;
        while self.len > max {
            let Some(id) = self.expiry.pop_front() else {
                break;
            };
            removed += usize::from(self.drop_final(&id));
        }
        removed
    }

    /// Drops the state of `id` whose expiry entry came up, if it is still the final state that
    /// entry was for.
    fn drop_final(&mut self, id: &CorrelationId) -> bool {
        if let Some(n) = self.stale_expiries.get_mut(id) {
            *n -= 1;
            if *n == 0 {
                self.stale_expiries.remove(id);
            }
            return false;
        }
        let dropped = self.slots.remove_if(id, |s| s.status.is_final()).is_some() || {
            let map = &mut self.segment_mut(id).map;
            map.get(id).is_some_and(|s| s.status.is_final()) && map.remove(id).is_some()
        };
        self.len -= usize::from(dropped);
        dropped
    }
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
