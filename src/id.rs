//! Correlation ids and the id → shard mapping.
//!
//! Ids are random UUIDv4s (122 random bits, drawn from the kernel CSPRNG) in the canonical 36-char
//! form. `shard_for` maps the id's first 32 bits onto `0..nr_shards` by multiply-shift, so a shard
//! can mint an id it owns in O(1): it draws those 32 bits uniformly from its own sub-range. The
//! other 90 random bits are untouched, so ids stay unguessable. With the embedded queue the state
//! table writes the slot of a new state into the last 32 of them, masked by a keyed function of
//! other bytes of the id (`store/slots.rs`), which leaves at least 80 random bits (1,024 shards).

use std::fmt;

use uuid::Uuid;

/// Index of a shard, `0..nr_shards`.
pub type ShardId = usize;

/// A request's correlation id: a UUIDv4 held as its 16 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CorrelationId([u8; 16]);

/// Length of the canonical text form, `8-4-4-4-12` hex digits.
pub const TEXT_LEN: usize = 36;

impl CorrelationId {
    /// Wraps raw bytes (tests and decoders; minted ids come from [`IdMinter`]).
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        CorrelationId(bytes)
    }

    /// The 16 raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Parses the exact canonical form (`8-4-4-4-12` hex digits, either case). Anything else is
    /// rejected, so a malformed id can never reach a key or a log line.
    pub fn parse(text: &[u8]) -> Option<Self> {
        if text.len() != TEXT_LEN {
            return None;
        }
        Uuid::try_parse_ascii(text)
            .ok()
            .map(|u| CorrelationId(u.into_bytes()))
    }

    /// The canonical lowercase text form.
    pub fn to_text(&self) -> [u8; TEXT_LEN] {
        let mut out = [0u8; TEXT_LEN];
        Uuid::from_bytes(self.0).hyphenated().encode_lower(&mut out);
        out
    }

    /// The 32 bits that decide the owning shard.
    fn shard_word(&self) -> u32 {
        u32::from_be_bytes([self.0[0], self.0[1], self.0[2], self.0[3]])
    }

    /// A well-mixed 64-bit hash for the state table (the id is random already; this only folds it).
    pub fn hash64(&self) -> u64 {
        let hi = u64::from_le_bytes(self.0[0..8].try_into().unwrap_or_default());
        let lo = u64::from_le_bytes(self.0[8..16].try_into().unwrap_or_default());
        (hi ^ lo.rotate_left(29)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
}

impl fmt::Display for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The text form is ASCII by construction.
        f.write_str(std::str::from_utf8(&self.to_text()).unwrap_or("?"))
    }
}

impl fmt::Debug for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The shard that owns `id` when the process runs `nr_shards` shards. Pure, total and O(1).
pub fn shard_for(id: &CorrelationId, nr_shards: usize) -> ShardId {
    debug_assert!(nr_shards > 0);
    ((u64::from(id.shard_word()) * nr_shards as u64) >> 32) as ShardId
}

/// Mints ids owned by one shard, from kernel randomness fetched 4 KiB at a time (one `getrandom`
/// call per 256 ids).
pub struct IdMinter {
    shard: ShardId,
    nr_shards: usize,
    pool: Box<[u8; POOL_BYTES]>,
    pos: usize,
}

const POOL_BYTES: usize = 4096;

impl IdMinter {
    /// A minter for ids owned by `shard` of `nr_shards`.
    pub fn new(shard: ShardId, nr_shards: usize) -> Self {
        assert!(shard < nr_shards, "shard {shard} out of 0..{nr_shards}");
        IdMinter {
            shard,
            nr_shards,
            pool: Box::new([0; POOL_BYTES]),
            pos: POOL_BYTES,
        }
    }

    /// A fresh id with `shard_for(id, nr_shards) == shard`.
    pub fn mint(&mut self) -> CorrelationId {
        if self.pos + 16 > POOL_BYTES {
            // The kernel CSPRNG does not fail once seeded; a failure here means the process
            // cannot produce safe ids at all.
            getrandom::getrandom(&mut self.pool[..]).expect("kernel randomness unavailable");
            self.pos = 0;
        }
        let mut b = [0u8; 16];
        b.copy_from_slice(&self.pool[self.pos..self.pos + 16]);
        self.pos += 16;
        let (lo, hi) = shard_range(self.shard, self.nr_shards);
        let r = u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        let word = (lo + ((r * (hi - lo)) >> 32)) as u32;
        b[0..4].copy_from_slice(&word.to_be_bytes());
        b[6] = (b[6] & 0x0f) | 0x40; // version 4
        b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
        CorrelationId(b)
    }
}

/// The half-open range of 32-bit shard words owned by `shard`: `[ceil(s·2³²/n), ceil((s+1)·2³²/n))`.
fn shard_range(shard: ShardId, nr_shards: usize) -> (u64, u64) {
    let n = nr_shards as u64;
    let lo = ((shard as u64) << 32).div_ceil(n);
    let hi = ((shard as u64 + 1) << 32).div_ceil(n);
    (lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip() {
        let text = b"550e8400-e29b-41d4-a716-446655440000";
        let id = CorrelationId::parse(text).unwrap();
        assert_eq!(&id.to_text(), text);
        let upper = CorrelationId::parse(b"550E8400-E29B-41D4-A716-446655440000").unwrap();
        assert_eq!(upper, id);
        assert_eq!(id.to_string(), "550e8400-e29b-41d4-a716-446655440000");
    }

    /// Every byte value at every position of a valid id: accepted exactly where it is a hex digit
    /// (or the dash at a dash position), with the value a reference parse gives.
    #[test]
    fn every_byte_at_every_position() {
        let good = *b"550e8400-e29b-41d4-a716-446655440000";
        let reference = |t: &[u8]| -> Option<[u8; 16]> {
            let hex: String = std::str::from_utf8(t).ok()?.split('-').collect();
            let dashes = [8, 13, 18, 23].iter().all(|&i| t[i] == b'-');
            if !dashes || hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            let mut out = [0u8; 16];
            for (i, o) in out.iter_mut().enumerate() {
                *o = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
            }
            Some(out)
        };
        for at in 0..TEXT_LEN {
            for b in 0..=255u8 {
                let mut t = good;
                t[at] = b;
                let want = reference(&t);
                let got = CorrelationId::parse(&t).map(|id| *id.as_bytes());
                assert_eq!(got, want, "byte {b:#x} at {at}");
                if let Some(bytes) = got {
                    let text = CorrelationId::from_bytes(bytes).to_text();
                    assert_eq!(text.to_vec(), t.to_ascii_lowercase());
                }
            }
        }
    }

    #[test]
    fn rejects_everything_but_the_canonical_form() {
        let bad: &[&[u8]] = &[
            b"",
            b"550e8400e29b41d4a716446655440000",
            b"550e8400-e29b-41d4-a716-44665544000",
            b"550e8400-e29b-41d4-a716-4466554400000",
            b"550e8400-e29b-41d4-a716_446655440000",
            b"550e8400-e29b-41d4-a716-44665544000g",
            b"../../etc/passwd-xxxxxxxxxxxxxxxxxxx",
            b"550e8400-e29b-41d4-a716-44665544\r\n00",
            b"{550e8400-e29b-41d4-a716-4466554400}",
        ];
        for b in bad {
            assert!(
                CorrelationId::parse(b).is_none(),
                "{:?}",
                String::from_utf8_lossy(b)
            );
        }
    }

    #[test]
    fn shard_for_covers_the_range_evenly() {
        for n in [1usize, 2, 3, 7, 64, 1000] {
            assert_eq!(shard_for(&CorrelationId([0; 16]), n), 0);
            assert_eq!(shard_for(&CorrelationId([0xff; 16]), n), n - 1);
        }
        // Contiguous ranges: every shard's range starts where the previous one ends.
        for n in [1usize, 2, 3, 5, 7, 13, 64, 255] {
            let mut expect_lo = 0;
            for s in 0..n {
                let (lo, hi) = shard_range(s, n);
                assert_eq!(lo, expect_lo);
                assert!(hi > lo);
                expect_lo = hi;
            }
            assert_eq!(expect_lo, 1 << 32);
        }
    }

    #[test]
    fn minted_ids_belong_to_their_shard_and_are_v4() {
        for n in [1usize, 2, 3, 7, 16, 100] {
            for s in 0..n {
                let mut m = IdMinter::new(s, n);
                for _ in 0..300 {
                    let id = m.mint();
                    assert_eq!(shard_for(&id, n), s);
                    assert_eq!(id.0[6] >> 4, 4);
                    assert_eq!(id.0[8] >> 6, 0b10);
                    assert_eq!(CorrelationId::parse(&id.to_text()), Some(id));
                }
            }
        }
    }

    #[test]
    fn minted_ids_are_distinct() {
        let mut m = IdMinter::new(1, 2);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..100_000 {
            assert!(seen.insert(m.mint()));
        }
    }
}
