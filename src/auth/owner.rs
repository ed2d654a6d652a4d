//! Which API key a request belongs to, written into its correlation id.
//!
//! When API keys are configured, the id minted for a submit carries a 24-bit tag in bytes 9..12:
//! SipHash-1-3 of bytes 0..9 (the shard word and random bits) under a 128-bit key taken from the
//! submitting key's digest. Any instance with the same keys can then tell, from the id alone,
//! whether a key may see a request: no owner is stored, sent to Redis or looked up. Another key
//! passes for a given id with probability 2⁻²⁴, and only with an id it already knows (ids are
//! unguessable). The tag is written before the embedded state table writes its slot into bytes
//! 12..16 (`store/slots.rs`), and the slot's mask reads bytes 4..12, tag included, so both hold.

use std::hash::Hasher;

use siphasher::sip::SipHasher13;

use super::KeyDigest;
use crate::id::CorrelationId;

/// The key a request belongs to, as far as ids and idempotency keys need to know it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    tag_key: (u64, u64),
    scope: u64,
}

impl Owner {
    /// The owner for a key with digest `d`.
    pub fn of(d: &KeyDigest) -> Self {
        let b = d.as_bytes();
        let word = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or_default());
        Owner {
            tag_key: (word(16), word(24)),
            scope: word(0),
        }
    }

    /// `id` with this owner's tag written in.
    pub fn stamp(&self, id: CorrelationId) -> CorrelationId {
        let mut b = *id.as_bytes();
        let tag = self.tag(&b);
        b[9..12].copy_from_slice(&tag);
        CorrelationId::from_bytes(b)
    }

    /// Whether `id` was minted for this owner.
    pub fn owns(&self, id: &CorrelationId) -> bool {
        let b = id.as_bytes();
        b[9..12] == self.tag(b)
    }

    /// A prefix that keeps one key's idempotency keys apart from another's.
    pub fn scope(&self, idempotency_key: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(17 + idempotency_key.len());
        out.extend_from_slice(format!("{:016x}:", self.scope).as_bytes());
        out.extend_from_slice(idempotency_key);
        out
    }

    fn tag(&self, b: &[u8; 16]) -> [u8; 3] {
        let mut h = SipHasher13::new_with_keys(self.tag_key.0, self.tag_key.1);
        h.write(&b[0..9]);
        let t = h.finish().to_le_bytes();
        [t[0], t[1], t[2]]
    }
}

impl std::fmt::Debug for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Owner(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{shard_for, IdMinter};

    #[test]
    fn a_stamped_id_belongs_to_its_owner_only() {
        let (a, b) = (
            Owner::of(&KeyDigest::of(b"key-a")),
            Owner::of(&KeyDigest::of(b"key-b")),
        );
        let mut minter = IdMinter::new(3, 8);
        let mut b_owns = 0;
        for _ in 0..10_000 {
            let id = a.stamp(minter.mint());
            assert!(a.owns(&id));
            assert_eq!(shard_for(&id, 8), 3, "the tag leaves the shard word alone");
            assert_eq!(id.as_bytes()[6] >> 4, 4, "still a version 4 UUID");
            assert_eq!(id.as_bytes()[8] >> 6, 0b10, "still the RFC 4122 variant");
            b_owns += usize::from(b.owns(&id));
        }
        // 2⁻²⁴ per id: 10,000 ids give a false owner with probability below 0.1 %.
        assert_eq!(b_owns, 0);
    }

    #[test]
    fn scopes_differ_per_key() {
        let (a, b) = (
            Owner::of(&KeyDigest::of(b"key-a")),
            Owner::of(&KeyDigest::of(b"key-b")),
        );
        assert_ne!(a.scope(b"k"), b.scope(b"k"));
        assert_eq!(a.scope(b"k"), a.scope(b"k"));
        assert!(a.scope(b"k").ends_with(b":k"));
    }
}
