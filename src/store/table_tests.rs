//! Unit tests of `table.rs`.

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

#[test]
fn unfinished_lists_pending_and_processing_states_only() {
    let mut t = StateTable::new(Duration::from_secs(10));
    let mut m = IdMinter::new(0, 1);
    let t0 = Instant::now();
    let pending = t.insert_pending(m.mint(), Timestamp(1));
    let started = t.insert_pending(m.mint(), Timestamp(1));
    let done = t.insert_pending(m.mint(), Timestamp(1));
    assert_eq!(t.start(&started, Timestamp(2)), Ok(()));
    assert_eq!(t.finish_or_insert(&done, Status::Failed, outcome(), Timestamp(0), t0), Ok(()));
    // A state held outside the slots (minted elsewhere) counts the same way.
    let elsewhere = IdMinter::new(0, 1).mint();
    assert_eq!(t.finish_or_insert(&elsewhere, Status::Failed, outcome(), Timestamp(0), t0), Ok(()));
    let mut got = t.unfinished();
    got.sort();
    let mut want = vec![pending, started];
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn evict_to_drops_the_oldest_final_states_only() {
    let mut t = StateTable::new(Duration::from_secs(3600));
    let mut m = IdMinter::new(0, 1);
    let t0 = Instant::now();
    let running = t.insert_pending(m.mint(), Timestamp(1));
    let finals: Vec<CorrelationId> = (0..5)
        .map(|i| {
            let id = m.mint();
            let at = t0 + Duration::from_millis(i);
            assert_eq!(t.finish_or_insert(&id, Status::Failed, outcome(), Timestamp(0), at), Ok(()));
            id
        })
        .collect();
    assert_eq!(t.count(), 6);
    assert_eq!(t.evict_to(3), 3);
    assert_eq!(t.count(), 3);
    // The oldest finals went; the newest and the state not final stayed.
    assert!(t.get(&finals[0]).is_none() && t.get(&finals[2]).is_none());
    assert!(t.get(&finals[3]).is_some() && t.get(&finals[4]).is_some());
    assert!(t.get(&running).is_some());
    // Only finals are evicted: asking for less than what is not final stops there.
    assert_eq!(t.evict_to(0), 2);
    assert_eq!(t.count(), 1);
    // Their expiry entries are gone with them: a later sweep finds nothing.
    assert_eq!(t.expire(t0 + Duration::from_secs(7200)), 0);
}
