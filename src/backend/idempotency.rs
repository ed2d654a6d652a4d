//! Idempotency keys (`Idempotency-Key` on a submit): what a key names, and the embedded
//! backend's table of them. A key lives on the shard its hash picks (`shard_of_key`), so every
//! use of one key meets the same table (embedded) or the same hash slot (Redis, where the key is
//! written by the script that queues the request).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use siphasher::sip128::{Hasher128, SipHasher13};

use super::Accepted;
use crate::id::{CorrelationId, ShardId};
use crate::clock::Timestamp;

/// A request's fingerprint: same key and a different body is refused, the same body replayed.
pub type BodyHash = u128;

/// The fingerprint of a submit body.
pub fn body_hash(body: &[u8]) -> BodyHash {
    let mut h = SipHasher13::new_with_keys(0x6f70_656e_6871_6d00, 0x6964_656d_706f_7400);
    std::hash::Hasher::write(&mut h, body);
    h.finish128().as_u128()
}

/// The shard that owns idempotency key `key` among `nr_shards`.
pub fn shard_of_key(key: &[u8], nr_shards: usize) -> ShardId {
    let mut h = SipHasher13::new_with_keys(1, 2);
    std::hash::Hasher::write(&mut h, key);
    (std::hash::Hasher::finish(&h) % nr_shards.max(1) as u64) as ShardId
}

/// What an idempotent submit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idempotent {
    /// The key was new: the request was queued.
    Queued(Accepted),
    /// The key was used before with the same body: that request, nothing queued.
    Replayed(Accepted),
    /// The key was used before with another body.
    Conflict,
}

/// What a key names: the request, and the body it was used with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyUse {
    /// The request.
    pub accepted: Accepted,
    /// Its body's fingerprint.
    pub body: BodyHash,
}

impl KeyUse {
    /// What a new use with `body` means.
    pub fn again(&self, body: BodyHash) -> Idempotent {
        if self.body == body {
            Idempotent::Replayed(self.accepted)
        } else {
            Idempotent::Conflict
        }
    }

    /// `<id> <submitted_at µs> <body hash hex>`, as Redis stores it.
    pub fn encode(&self) -> String {
        format!(
            "{} {} {:032x}",
            String::from_utf8_lossy(&self.accepted.id.to_text()),
            self.accepted.submitted_at.0,
            self.body
        )
    }

    /// Reads [`KeyUse::encode`]'s text.
    pub fn decode(text: &[u8]) -> Option<KeyUse> {
        let text = std::str::from_utf8(text).ok()?;
        let mut parts = text.split(' ');
        let id = CorrelationId::parse(parts.next()?.as_bytes())?;
        let at = parts.next()?.parse().ok()?;
        let body = u128::from_str_radix(parts.next()?, 16).ok()?;
        parts.next().is_none().then_some(KeyUse {
            accepted: Accepted {
                id,
                submitted_at: Timestamp(at),
            },
            body,
        })
    }
}

/// The embedded backend's keys, each kept for `ttl`.
pub struct KeyTable {
    keys: HashMap<Vec<u8>, KeyUse>,
    expiry: VecDeque<(Instant, Vec<u8>)>,
    ttl: Duration,
}

impl KeyTable {
    /// An empty table whose keys live for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        KeyTable {
            keys: HashMap::new(),
            expiry: VecDeque::new(),
            ttl,
        }
    }

    /// The use of `key`, if it is known.
    pub fn get(&self, key: &[u8]) -> Option<KeyUse> {
        self.keys.get(key).copied()
    }

    /// Records the first use of `key`.
    pub fn insert(&mut self, key: &[u8], used: KeyUse, now: Instant) {
        self.keys.insert(key.to_vec(), used);
        self.expiry.push_back((now + self.ttl, key.to_vec()));
    }

    /// Forgets keys older than their TTL.
    pub fn expire(&mut self, now: Instant) {
        while self.expiry.front().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, key)) = self.expiry.pop_front() {
                self.keys.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::IdMinter;

    #[test]
    fn uses_round_trip_and_compare_bodies() {
        let used = KeyUse {
            accepted: Accepted {
                id: IdMinter::new(0, 1).mint(),
                submitted_at: Timestamp(1_795_689_000_123_456),
            },
            body: body_hash(b"{\"payload\":{}}"),
        };
        assert_eq!(KeyUse::decode(used.encode().as_bytes()), Some(used));
        assert_eq!(used.again(body_hash(b"{\"payload\":{}}")), Idempotent::Replayed(used.accepted));
        assert_eq!(used.again(body_hash(b"{\"payload\":{\"a\":1}}")), Idempotent::Conflict);
        assert_eq!(KeyUse::decode(b"nope"), None);
    }

    #[test]
    fn keys_expire_after_their_ttl() {
        let mut t = KeyTable::new(Duration::from_secs(10));
        let used = KeyUse {
            accepted: Accepted {
                id: IdMinter::new(0, 1).mint(),
                submitted_at: Timestamp(1),
            },
            body: 7,
        };
        let t0 = Instant::now();
        t.insert(b"k", used, t0);
        t.expire(t0 + Duration::from_secs(9));
        assert_eq!(t.get(b"k"), Some(used));
        t.expire(t0 + Duration::from_secs(10));
        assert_eq!(t.get(b"k"), None);
    }

    #[test]
    fn keys_spread_over_shards() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..64 {
            seen.insert(shard_of_key(format!("key-{i}").as_bytes(), 4));
        }
        assert_eq!(seen.len(), 4);
        assert_eq!(shard_of_key(b"x", 1), 0);
    }
}
