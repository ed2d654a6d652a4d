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
//! (SipHash-1-3, the function behind std's `HashMap`, under a 128-bit key from the kernel; here
//! specialised to one 8-byte message, ~70 instructions) of eight other random bytes of the same id, so each id's mask is different and ids show neither slot numbers, nor how many
//! requests a shard holds, nor when a slot is reused. The rest of the id stays random: 58 bits
//! besides the shard word (whose 32 bits carry 32 - log2(shards) more), at least 80 in all at the
//! 1,024-shard maximum, and a lookup compares the whole id. Ids not minted with a slot (Redis
//! mode, other instances, earlier runs) decode to a slot that does not hold them and are looked
//! for elsewhere.

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

/// SipHash-1-3 (Aumasson and Bernstein; one compression and three finalization rounds, as std's
/// `HashMap` uses) of one 8-byte message, with the keyed initial state computed once.
struct SipHash13 {
    v: [u64; 4],
}

impl SipHash13 {
    fn new(key: [u8; 16]) -> Self {
        let k0 = u64::from_le_bytes(key[..8].try_into().unwrap_or_default());
        let k1 = u64::from_le_bytes(key[8..].try_into().unwrap_or_default());
        SipHash13 {
            v: [
                k0 ^ 0x736f_6d65_7073_6575,
                k1 ^ 0x646f_7261_6e64_6f6d,
                k0 ^ 0x6c79_6765_6e65_7261,
                k1 ^ 0x7465_6462_7974_6573,
            ],
        }
    }

    /// The hash of the 8 bytes of `m` (little-endian), as SipHash-1-3 of that byte string.
    fn hash(&self, m: u64) -> u64 {
        self.hash_rounds::<1, 3>(m)
    }

    fn hash_rounds<const C: usize, const D: usize>(&self, m: u64) -> u64 {
        let [mut v0, mut v1, mut v2, mut v3] = self.v;
        let round = |v0: &mut u64, v1: &mut u64, v2: &mut u64, v3: &mut u64| {
            *v0 = v0.wrapping_add(*v1);
            *v1 = v1.rotate_left(13) ^ *v0;
            *v0 = v0.rotate_left(32);
            *v2 = v2.wrapping_add(*v3);
            *v3 = v3.rotate_left(16) ^ *v2;
            *v0 = v0.wrapping_add(*v3);
            *v3 = v3.rotate_left(21) ^ *v0;
            *v2 = v2.wrapping_add(*v1);
            *v1 = v1.rotate_left(17) ^ *v2;
            *v2 = v2.rotate_left(32);
        };
        // The message block, then the final block: no tail bytes, the length (8) in the top byte.
        for block in [m, 8u64 << 56] {
            v3 ^= block;
            for _ in 0..C {
                round(&mut v0, &mut v1, &mut v2, &mut v3);
            }
            v0 ^= block;
        }
        v2 ^= 0xff;
        for _ in 0..D {
            round(&mut v0, &mut v1, &mut v2, &mut v3);
        }
        v0 ^ v1 ^ v2 ^ v3
    }
}

/// Slot storage with a free list.
pub struct Slots {
    chunks: Vec<Box<[Option<Entry>]>>,
    free: Vec<u32>,
    /// Slots handed out so far (the next never-used one).
    used: usize,
    /// The keyed function whose output masks the slot number.
    mask: SipHash13,
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
            mask: SipHash13::new(key),
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
        let mut word = [0u8; 8];
        word.copy_from_slice(&id[4..12]);
        self.mask.hash(u64::from_le_bytes(word)) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;
    use crate::id::{shard_for, IdMinter};

    /// The specialised SipHash is SipHash: with 2 and 4 rounds it gives std's `SipHasher` (SipHash-2-4)
    /// answers for the same key and 8-byte message.
    #[test]
    #[allow(deprecated)]
    fn siphash_matches_the_reference() {
        use std::hash::Hasher;
        let key: [u8; 16] = core::array::from_fn(|i| i as u8 * 7 + 1);
        let sip = SipHash13::new(key);
        let (k0, k1) = (
            u64::from_le_bytes(key[..8].try_into().unwrap()),
            u64::from_le_bytes(key[8..].try_into().unwrap()),
        );
        for m in [
            0u64,
            1,
            0x0706_0504_0302_0100,
            u64::MAX,
            0xdead_beef_cafe_f00d,
        ] {
            let mut reference = std::hash::SipHasher::new_with_keys(k0, k1);
            reference.write(&m.to_le_bytes());
            assert_eq!(sip.hash_rounds::<2, 4>(m), reference.finish(), "{m:#x}");
        }
        // The reference implementation's vector for key 00..0f and the 8-byte message 00..07
        // (bytes 62 24 93 9a 79 f5 f5 93).
        let sip = SipHash13::new(core::array::from_fn(|i| i as u8));
        assert_eq!(
            sip.hash_rounds::<2, 4>(0x0706_0504_0302_0100),
            0x93f5_f579_9a93_2462
        );
    }

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
