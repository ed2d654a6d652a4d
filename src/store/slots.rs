//! The states of requests this shard accepted, each in a slot its correlation id names.
//!
//! A hash table keyed by random ids puts every new state at a random place in memory: at
//! hundreds of thousands of states, the insert of each accepted request cost two cache misses
//! (its control group and its bucket; `perf annotate`, PERFORMANCE.md section 8), and every
//! growth rehashed a segment. Here the shard picks the slot first and writes it into the id it
//! mints: new states fill memory in order, a slot freed by expiry is reused first, and a lookup is
//! an index and one comparison of the whole id.
//!
//! The slot number is written into the id's last four bytes through a keyed, invertible mix, so
//! ids do not show how many requests a shard holds; the id keeps its shard word and 58 more
//! random bits (at least 84 random bits in all), and a lookup compares the whole id, so an id
//! cannot be guessed from a slot. Ids not minted with a slot (Redis mode, other instances, earlier
//! runs) decode to a slot that does not hold them and are looked for elsewhere.

use super::state::RequestState;
use crate::shard::id::CorrelationId;

/// Slots per chunk. Chunks are never moved or copied: growth adds one.
const CHUNK: usize = 4096;

/// Multiplier of the slot mix (odd, so invertible modulo 2³²) and its inverse.
const MIX: u32 = 0x9E37_79B1;
const UNMIX: u32 = inverse(MIX);

/// The inverse of odd `a` modulo 2³² (Newton's iteration: each step doubles the correct bits).
const fn inverse(a: u32) -> u32 {
    let mut x = a; // correct to 3 bits for odd a
    let mut i = 0;
    while i < 5 {
        x = x.wrapping_mul(2u32.wrapping_sub(a.wrapping_mul(x)));
        i += 1;
    }
    x
}

struct Entry {
    id: CorrelationId,
    state: RequestState,
}

/// Slot storage with a free list.
pub struct Slots {
    chunks: Vec<Box<[Option<Entry>]>>,
    free: Vec<u32>,
    /// Slots handed out so far (the next never-used one).
    used: usize,
    key: u32,
}

impl Slots {
    /// Empty storage whose ids hide their slot under `key`.
    pub fn new(key: u32) -> Self {
        Slots {
            chunks: Vec::new(),
            free: Vec::new(),
            used: 0,
            key,
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
        bytes[12..16].copy_from_slice(&self.encode(slot as u32).to_be_bytes());
        let id = CorrelationId::from_bytes(bytes);
        self.chunks[slot / CHUNK][slot % CHUNK] = Some(Entry { id, state });
        Ok(id)
    }

    /// The state of `id` if a slot holds it.
    pub fn get(&self, id: &CorrelationId) -> Option<&RequestState> {
        let slot = self.slot_of(id)?;
        match &self.chunks[slot / CHUNK][slot % CHUNK] {
            Some(e) if e.id == *id => Some(&e.state),
            _ => None,
        }
    }

    /// The state of `id` if a slot holds it.
    pub fn get_mut(&mut self, id: &CorrelationId) -> Option<&mut RequestState> {
        let slot = self.slot_of(id)?;
        match &mut self.chunks[slot / CHUNK][slot % CHUNK] {
            Some(e) if e.id == *id => Some(&mut e.state),
            _ => None,
        }
    }

    /// Frees the slot of `id`; returns its state if a slot held it.
    pub fn remove(&mut self, id: &CorrelationId) -> Option<RequestState> {
        let slot = self.slot_of(id)?;
        let cell = &mut self.chunks[slot / CHUNK][slot % CHUNK];
        if cell.as_ref().is_none_or(|e| e.id != *id) {
            return None;
        }
        let entry = cell.take()?;
        self.free.push(slot as u32);
        Some(entry.state)
    }

    /// The slot `id` names, if it is one this storage has handed out.
    fn slot_of(&self, id: &CorrelationId) -> Option<usize> {
        let b = id.as_bytes();
        let slot = self.decode(u32::from_be_bytes([b[12], b[13], b[14], b[15]])) as usize;
        (slot < self.used).then_some(slot)
    }

    fn encode(&self, slot: u32) -> u32 {
        slot.wrapping_mul(MIX) ^ self.key
    }

    fn decode(&self, field: u32) -> u32 {
        (field ^ self.key).wrapping_mul(UNMIX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;
    use crate::shard::id::{shard_for, IdMinter};

    #[test]
    fn mix_is_invertible() {
        let s = Slots::new(0xdead_beef);
        for slot in [0, 1, 2, 4095, 4096, 1 << 20, u32::MAX] {
            assert_eq!(s.decode(s.encode(slot)), slot);
        }
        assert_eq!(MIX.wrapping_mul(UNMIX), 1);
    }

    #[test]
    fn ids_keep_shard_version_and_variant() {
        let mut s = Slots::new(7);
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
        let mut s = Slots::new(1);
        let mut m = IdMinter::new(0, 1);
        let a = s
            .insert(m.mint(), RequestState::pending(Timestamp(1)))
            .unwrap();
        assert!(s.remove(&a).is_some());
        assert!(s.remove(&a).is_none());
        let b = s
            .insert(m.mint(), RequestState::pending(Timestamp(2)))
            .unwrap();
        // Same slot, other id: the old id finds nothing.
        assert_eq!(a.as_bytes()[12..], b.as_bytes()[12..]);
        assert!(s.get(&a).is_none());
        assert!(s.get_mut(&a).is_none());
        assert_eq!(s.get(&b).unwrap().submitted_at, Timestamp(2));
        assert_eq!(s.used, 1);
    }

    #[test]
    fn ids_from_elsewhere_are_not_found() {
        let mut s = Slots::new(99);
        let mut m = IdMinter::new(0, 1);
        for _ in 0..5000 {
            s.insert(m.mint(), RequestState::pending(Timestamp(1)))
                .unwrap();
        }
        for _ in 0..5000 {
            let foreign = m.mint();
            assert!(s.get(&foreign).is_none());
            assert!(s.remove(&foreign).is_none());
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
        let mut s = Slots::new(3);
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
