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
            if let Some(n) = self.stale_expiries.get_mut(&id) {
                *n -= 1;
                if *n == 0 {
                    self.stale_expiries.remove(&id);
                }
                continue;
            }
            if self.slots.remove_if(&id, |s| s.status.is_final()).is_some() {
                removed += 1;
                continue;
            }
            let map = &mut self.segment_mut(&id).map;
            if map.get(&id).is_some_and(|s| s.status.is_final()) {
                map.remove(&id);
                removed += 1;
            }
        }
        self.len -= removed;
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::IdMinter;

    fn outcome() -> Outcome {
        Outcome {
            result: None,
            headers: None,
            status_code: None,
            error: Some("boom".into()),
            processing_time_ms: 0,
            completed_at: Timestamp(5),
        }
    }

    #[test]
    fn lifecycle_and_expiry() {
        let ttl = Duration::from_secs(10);
        let mut t = StateTable::new(ttl);
        let mut m = IdMinter::new(0, 1);
        let (a, b) = (m.mint(), m.mint());
        let t0 = Instant::now();
        let a = t.insert_pending(a, Timestamp(1));
        let b = t.insert_pending(b, Timestamp(1));
        assert_eq!(t.start(&a, Timestamp(2)), Ok(()));
        assert_eq!(t.finish_or_insert(&a, Status::Failed, outcome(), Timestamp(0), t0), Ok(()));
        assert_eq!(t.get(&a).unwrap().status, Status::Failed);
        // Not yet due; pending states never expire.
        assert_eq!(t.expire(t0 + ttl - Duration::from_millis(1)), 0);
        assert_eq!(t.expire(t0 + ttl * 100), 1);
        assert!(t.get(&a).is_none());
        assert_eq!(t.get(&b).unwrap().status, Status::Pending);
        assert_eq!(t.count(), 1);
        // The expired state's slot is the next one handed out; its old id stays unknown.
        let c = t.insert_pending(m.mint(), Timestamp(3));
        assert_eq!(t.slots.slot_of(&a), t.slots.slot_of(&c));
        assert_ne!(a.as_bytes()[12..], c.as_bytes()[12..]);
        assert!(t.get(&a).is_none());
        assert_eq!(t.get(&c).unwrap().status, Status::Pending);
        assert_eq!(t.count(), 2);
    }

    /// `finish_or_insert` finishes a state a slot holds in place (no second copy in the map, no
    /// change in the count); for any other id it adds a final state to the map. A final state is
    /// not removed.
    #[test]
    fn finish_or_insert_uses_the_slot_or_the_map() {
        let ttl = Duration::from_secs(10);
        let mut t = StateTable::new(ttl);
        let mut m = IdMinter::new(0, 1);
        let own = t.insert_pending(m.mint(), Timestamp(1));
        let now = Instant::now();
        let fin = |t: &mut StateTable, id| {
            t.finish_or_insert(&id, Status::Failed, outcome(), Timestamp(1), now)
        };
        fin(&mut t, own).unwrap();
        assert_eq!((t.count(), t.get(&own).unwrap().status), (1, Status::Failed));
        assert!(!t.segment(&own).map.contains_key(&own));
        let foreign = m.mint();
        fin(&mut t, foreign).unwrap();
        assert_eq!(t.count(), 2);
        assert!(t.segment(&foreign).map.contains_key(&foreign));
        assert!(fin(&mut t, foreign).is_err(), "a final state is never left");
        t.remove(&own);
        t.remove(&foreign);
        assert_eq!(t.count(), 2, "final states leave by expiry only");
        assert_eq!(t.expire(now + ttl), 2);
        assert_eq!(t.count(), 0);
    }

    #[test]
    fn updates_to_unknown_or_final_ids_are_refused() {
        let mut t = StateTable::new(Duration::from_secs(1));
        let mut m = IdMinter::new(0, 1);
        let a = m.mint();
        assert_eq!(t.start(&a, Timestamp(1)), Err(UpdateError::Unknown));
        let a = t.insert_pending(a, Timestamp(1));
        t.finish_or_insert(&a, Status::Completed, outcome(), Timestamp(0), Instant::now())
            .unwrap();
        assert!(matches!(
            t.start(&a, Timestamp(2)),
            Err(UpdateError::Refused(_))
        ));
        let again = t.finish_or_insert(&a, Status::Failed, outcome(), Timestamp(0), Instant::now());
        assert!(again.is_err());
        // The refused second finish scheduled no extra expiry.
        assert_eq!(t.expiry.len(), 1);
    }
}

#[cfg(test)]
mod hash_tests {
    use super::*;
    use crate::id::IdMinter;
    use std::hash::BuildHasher;

    #[test]
    fn id_hashes_are_spread() {
        let b = BuildHasherDefault::<IdHasher>::default();
        let mut m = IdMinter::new(0, 1);
        let hs: Vec<u64> = (0..1000).map(|_| b.hash_one(m.mint())).collect();
        let distinct: std::collections::HashSet<_> = hs.iter().collect();
        println!("first hashes: {:x?}", &hs[..4]);
        assert_eq!(distinct.len(), 1000);
    }
}

/// The table against a plain model (a map of id → (status, when it became final)) under long
/// random sequences of every operation, with ids of its own, ids from elsewhere and ids it has
/// dropped: the slots, the map, the free list and the expiry queues must agree with it at every
/// step.
#[cfg(test)]
mod model_tests {
    use super::*;
    use crate::id::IdMinter;
    use std::collections::HashMap;

    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    fn outcome() -> Outcome {
        Outcome {
            result: None,
            headers: None,
            status_code: Some(200),
            error: None,
            processing_time_ms: 0,
            completed_at: Timestamp(9),
        }
    }

    #[test]
    fn random_operations_agree_with_a_model() {
        let ttl = Duration::from_secs(5);
        let t0 = Instant::now();
        for seed in 1..=20u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut t = StateTable::new(ttl);
            let mut minter = IdMinter::new(0, 1);
            // id → (final?, at which second it became final)
            let mut model: HashMap<CorrelationId, (Status, u64)> = HashMap::new();
            let mut known: Vec<CorrelationId> = Vec::new();
            let mut now_s = 0u64;
            for _ in 0..3_000 {
                let pick = |rng: &mut Rng, known: &[CorrelationId]| known[rng.below(known.len())];
                match rng.below(8) {
                    0 | 1 => {
                        let id = t.insert_pending(minter.mint(), Timestamp(now_s));
                        assert!(model.insert(id, (Status::Pending, 0)).is_none());
                        known.push(id);
                    }
                    2 if !known.is_empty() => {
                        let id = pick(&mut rng, &known);
                        let r = t.start(&id, Timestamp(now_s));
                        match model.get_mut(&id) {
                            None => assert_eq!(r, Err(UpdateError::Unknown)),
                            Some((s, _)) if s.is_final() => {
                                assert!(matches!(r, Err(UpdateError::Refused(_))))
                            }
                            Some((s, _)) => {
                                assert_eq!(r, Ok(()));
                                *s = Status::Processing;
                            }
                        }
                    }
                    3 if !known.is_empty() => {
                        let id = pick(&mut rng, &known);
                        let at = t0 + Duration::from_secs(now_s);
                        let r =
                            t.finish_or_insert(&id, Status::Completed, outcome(), Timestamp(0), at);
                        match model.get(&id) {
                            Some((s, _)) if s.is_final() => assert!(r.is_err()),
                            _ => {
                                assert_eq!(r, Ok(()));
                                model.insert(id, (Status::Completed, now_s));
                            }
                        }
                    }
                    4 => {
                        // A state from elsewhere (restart, takeover), final at once.
                        let id = minter.mint();
                        let at = t0 + Duration::from_secs(now_s);
                        let r =
                            t.finish_or_insert(&id, Status::Failed, outcome(), Timestamp(0), at);
                        assert_eq!(r, Ok(()));
                        model.insert(id, (Status::Failed, now_s));
                        known.push(id);
                    }
                    5 if !known.is_empty() => {
                        let id = pick(&mut rng, &known);
                        t.remove(&id);
                        if model.get(&id).is_some_and(|(s, _)| !s.is_final()) {
                            model.remove(&id);
                        }
                    }
                    6 => {
                        now_s += 1;
                        let n = t.expire(t0 + Duration::from_secs(now_s));
                        let due: Vec<_> = model
                            .iter()
                            .filter(|(_, (s, at))| s.is_final() && at + ttl.as_secs() <= now_s)
                            .map(|(id, _)| *id)
                            .collect();
                        assert_eq!(n, due.len(), "seed {seed}");
                        for id in due {
                            model.remove(&id);
                        }
                    }
                    _ => {}
                }
                assert_eq!(t.count(), model.len(), "seed {seed}");
            }
            for id in &known {
                assert_eq!(
                    t.get(id).map(|s| s.status),
                    model.get(id).map(|(s, _)| *s),
                    "seed {seed}"
                );
            }
        }
    }

    #[test]
    fn a_redriven_or_forgotten_state_is_not_dropped_by_its_old_expiry() {
        let ttl = Duration::from_secs(10);
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(5);
        for forget in [false, true] {
            let mut t = StateTable::new(ttl);
            let id = t.insert_pending(IdMinter::new(0, 1).mint(), Timestamp(1));
            t.finish_or_insert(&id, Status::Failed, outcome(), Timestamp(1), t0)
                .unwrap();
            if forget {
                t.forget(&id);
                assert!(t.get(&id).is_none());
                assert_eq!(t.count(), 0);
            } else {
                t.redrive(&id, Timestamp(1), Timestamp(2));
                assert_eq!(t.get(&id).unwrap().status, Status::Pending);
                assert_eq!(t.count(), 1);
            }
            t.finish_or_insert(&id, Status::Completed, outcome(), Timestamp(1), later)
                .unwrap();
            assert_eq!(t.expire(t0 + ttl), 0, "the first final state's expiry is skipped");
            assert_eq!(t.get(&id).unwrap().status, Status::Completed);
            assert_eq!(t.expire(later + ttl), 1);
            assert!(t.get(&id).is_none());
            assert_eq!(t.count(), 0);
        }
    }

}
