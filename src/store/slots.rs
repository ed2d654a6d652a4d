//! The states of requests this shard accepted, each in a slot its correlation id names.
//!
//! A hash table keyed by random ids puts every new state at a random place in memory: at
//! hundreds of thousands of states, the insert of each accepted request cost two cache misses
//! (its control group and its bucket; `perf annotate`, PERFORMANCE.md section 8), and every
//! growth rehashed a segment. Here the shard picks the slot first and writes it into the id it
//! mints: new states fill memory in order, a slot freed by expiry is reused first, and a lookup is
//! an index and one comparison of the whole id.
//!
//! The slot number goes into the id's last four bytes masked by a keyed pseudo-random function
//! (SipHash-1-3, the function behind std's `HashMap`, under a 128-bit key from the kernel) of
//! eight other random bytes of the same id, so each id's mask is different and ids show neither
//! slot numbers, nor how many requests a shard holds, nor when a slot is reused. The rest of the id stays random: 58 bits
//! besides the shard word (whose 32 bits carry 32 - log2(shards) more), at least 80 in all at the
//! 1,024-shard maximum, and a lookup compares the whole id. Ids not minted with a slot (Redis
//! mode, other instances, earlier runs) decode to a slot that does not hold them and are looked
//! for elsewhere.

use std::hash::Hasher;

use siphasher::sip::SipHasher13;

use super::state::RequestState;
use crate::id::CorrelationId;

/// Slots per chunk. Chunks are never moved or copied: growth adds one.
const CHUNK: usize = 4096;

struct Entry {
    id: CorrelationId,
    state: RequestState,
}

/// A slot found to hold an id ([`Slots::find`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot(usize);

/// Slot storage with a free list.
pub struct Slots {
    chunks: Vec<Box<[Option<Entry>]>>,
    free: Vec<u32>,
    /// Slots handed out so far (the next never-used one).
    used: usize,
    /// The SipHash-1-3 key whose hash of other id bytes masks the slot number.
    key: (u64, u64),
}

impl Default for Slots {
    fn default() -> Self {
        Slots::new()
    }
}

impl Slots {
    /// Empty storage, with a fresh random key.
    pub fn new() -> Self {
        let mut key = [0u8; 16];
        // As for the ids themselves (`IdMinter`): without kernel randomness there are no safe ids.
        getrandom::getrandom(&mut key).expect("kernel randomness unavailable");
        Slots {
            chunks: Vec::new(),
            free: Vec::new(),
            used: 0,
            key: (
                u64::from_le_bytes(key[..8].try_into().unwrap_or_default()),
                u64::from_le_bytes(key[8..].try_into().unwrap_or_default()),
            ),
        }
    }

    /// Stores `state` for a new id: `id` with its slot written in. Gives `state` back when every
    /// slot number is taken (2³² states; memory runs out long before).
    pub fn insert(
        &mut self,
        id: CorrelationId,
        state: RequestState,
    ) -> Result<CorrelationId, RequestState> {
        let slot = match self.free.pop() {
            Some(s) => s as usize,
            None => {
                let s = self.used;
                if s > u32::MAX as usize {
                    return Err(state);
                }
                if s == self.chunks.len() * CHUNK {
                    self.chunks.push((0..CHUNK).map(|_| None).collect());
                }
                self.used += 1;
                s
            }
        };
        let mut bytes = *id.as_bytes();
        let field = slot as u32 ^ self.mask(&bytes);
        bytes[12..16].copy_from_slice(&field.to_be_bytes());
        let id = CorrelationId::from_bytes(bytes);
        self.chunks[slot / CHUNK][slot % CHUNK] = Some(Entry { id, state });
        Ok(id)
    }

    /// The slot that holds `id`, if one does.
    pub fn find(&self, id: &CorrelationId) -> Option<Slot> {
        let slot = self.slot_of(id)?;
        match &self.chunks[slot / CHUNK][slot % CHUNK] {
            Some(e) if e.id == *id => Some(Slot(slot)),
            _ => None,
        }
    }

    /// The state in a slot [`Slots::find`] returned (and nothing removed since).
    pub fn state_mut(&mut self, at: Slot) -> Option<&mut RequestState> {
        self.chunks[at.0 / CHUNK][at.0 % CHUNK]
            .as_mut()
            .map(|e| &mut e.state)
    }

    /// Every id held with its state.
    pub fn iter(&self) -> impl Iterator<Item = (&CorrelationId, &RequestState)> {
        self.chunks
            .iter()
            .flat_map(|c| c.iter().flatten())
            .map(|e| (&e.id, &e.state))
    }

    /// The state of `id` if a slot holds it.
    pub fn get(&self, id: &CorrelationId) -> Option<&RequestState> {
        let at = self.find(id)?;
        self.chunks[at.0 / CHUNK][at.0 % CHUNK]
            .as_ref()
            .map(|e| &e.state)
    }

    /// Frees the slot of `id` if a slot holds it and `pred` holds for its state; returns the state.
    pub fn remove_if(
        &mut self,
        id: &CorrelationId,
        pred: impl FnOnce(&RequestState) -> bool,
    ) -> Option<RequestState> {
        let slot = self.slot_of(id)?;
        let cell = &mut self.chunks[slot / CHUNK][slot % CHUNK];
        if cell.as_ref().is_none_or(|e| e.id != *id || !pred(&e.state)) {
            return None;
        }
        let entry = cell.take()?;
        self.free.push(slot as u32);
        Some(entry.state)
    }

    /// The slot `id` names, if it is one this storage has handed out.
    pub(super) fn slot_of(&self, id: &CorrelationId) -> Option<usize> {
        if self.used == 0 {
            return None;
        }
        let b = id.as_bytes();
        let slot = (u32::from_be_bytes([b[12], b[13], b[14], b[15]]) ^ self.mask(b)) as usize;
        (slot < self.used).then_some(slot)
    }

    /// The mask of an id's slot field: a keyed function of its bytes 4..12 (random but for the
    /// version and variant bits).
    fn mask(&self, id: &[u8; 16]) -> u32 {
        let mut h = SipHasher13::new_with_keys(self.key.0, self.key.1);
        h.write(&id[4..12]);
        h.finish() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;
    use crate::id::{shard_for, IdMinter};

    /// The slot fields of consecutive slots look random: over 10,000 ids each of the 32 bits is set
    /// about half the time (±20 standard deviations; a plain or xor-ed counter would leave the
    /// high bits constant).
    #[test]
    fn slot_fields_show_no_counter() {
        let mut s = Slots::new();
        let mut m = IdMinter::new(0, 1);
        let fields: Vec<u32> = (0..10_000)
            .map(|i| {
                let id = s
                    .insert(m.mint(), RequestState::pending(Timestamp(i)))
                    .unwrap();
                let b = id.as_bytes();
                u32::from_be_bytes([b[12], b[13], b[14], b[15]])
            })
            .collect();
        // (Not "all distinct": random 32-bit fields collide now and then, ~1 % of runs at 10,000.)
        for bit in 0..32 {
            let ones = fields.iter().filter(|f| *f >> bit & 1 == 1).count();
            assert!((4_000..6_000).contains(&ones), "bit {bit}: {ones} of 10000");
        }
        // A freed slot comes back under another field.
        let a = s
            .insert(m.mint(), RequestState::pending(Timestamp(1)))
            .unwrap();
        s.remove_if(&a, |_| true).unwrap();
        let b = s
            .insert(m.mint(), RequestState::pending(Timestamp(2)))
            .unwrap();
        assert_ne!(a.as_bytes()[12..], b.as_bytes()[12..]);
        assert_eq!(s.used, 10_001);
    }

    #[test]
    fn ids_keep_shard_version_and_variant() {
        let mut s = Slots::new();
        let mut m = IdMinter::new(2, 3);
        for i in 0..10_000 {
            let id = s
                .insert(m.mint(), RequestState::pending(Timestamp(i)))
                .unwrap();
            let b = id.as_bytes();
            assert_eq!(shard_for(&id, 3), 2);
            assert_eq!(b[6] >> 4, 4, "version");
            assert_eq!(b[8] >> 6, 0b10, "variant");
            assert_eq!(s.get(&id).unwrap().submitted_at, Timestamp(i));
        }
    }

    #[test]
    fn freed_slots_are_reused_and_stale_ids_miss() {
        let mut s = Slots::new();
        let mut m = IdMinter::new(0, 1);
        let a = s
            .insert(m.mint(), RequestState::pending(Timestamp(1)))
            .unwrap();
        assert!(s.remove_if(&a, |_| true).is_some());
        assert!(s.remove_if(&a, |_| true).is_none());
        let b = s
            .insert(m.mint(), RequestState::pending(Timestamp(2)))
            .unwrap();
        // Same slot (the only one ever used), other id: the old id finds nothing.
        assert_eq!((s.slot_of(&a), s.slot_of(&b)), (Some(0), Some(0)));
        assert!(s.get(&a).is_none());
        assert!(s.find(&a).is_none());
        assert_eq!(s.get(&b).unwrap().submitted_at, Timestamp(2));
        assert_eq!(s.used, 1);
    }

    #[test]
    fn ids_from_elsewhere_are_not_found() {
        let mut s = Slots::new();
        let mut m = IdMinter::new(0, 1);
        for _ in 0..5000 {
            s.insert(m.mint(), RequestState::pending(Timestamp(1)))
                .unwrap();
        }
        for _ in 0..5000 {
            let foreign = m.mint();
            assert!(s.get(&foreign).is_none());
            assert!(s.remove_if(&foreign, |_| true).is_none());
        }
        // An id whose slot field names a used slot but whose other bytes differ.
        let own = s
            .insert(m.mint(), RequestState::pending(Timestamp(1)))
            .unwrap();
        let mut forged = *own.as_bytes();
        forged[10] ^= 1;
        assert!(s.get(&CorrelationId::from_bytes(forged)).is_none());
    }

    #[test]
    fn grows_past_a_chunk() {
        let mut s = Slots::new();
        let mut m = IdMinter::new(0, 1);
        let ids: Vec<_> = (0..CHUNK as u64 * 2 + 5)
            .map(|i| {
                s.insert(m.mint(), RequestState::pending(Timestamp(i)))
                    .unwrap()
            })
            .collect();
        assert_eq!(s.chunks.len(), 3);
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(s.get(id).unwrap().submitted_at, Timestamp(i as u64));
        }
    }
}
