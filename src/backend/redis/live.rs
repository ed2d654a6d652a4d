//! The live states (`PENDING`, `PROCESSING`) of requests this shard accepted, so a status poll of
//! one costs no Redis command. A state is kept only while Redis reports every change another
//! connection makes to it (`tracking.rs`): each one carries the tracking epoch it was recorded
//! in and is shown only in that epoch. Bounded in number and in age (`cache.ttl_seconds`: a
//! bound only; a `PENDING` state has no TTL in Redis, and past it polls read Redis).

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasherDefault;
use std::time::{Duration, Instant};

use crate::id::CorrelationId;
use crate::store::table::IdHasher;
use crate::store::RequestState;

/// One state kept here.
struct Live {
    state: RequestState,
    epoch: u64,
    /// When it was recorded: it is dropped `ttl` later.
    at: Instant,
}

/// The live states of one shard.
pub(super) struct LiveStates {
    states: HashMap<CorrelationId, Live, BuildHasherDefault<IdHasher>>,
    /// (recorded at, id) in the order recorded; records of states since dropped or recorded
    /// again are skipped, and swept out when they outnumber the states.
    order: VecDeque<(Instant, CorrelationId)>,
    ttl: Duration,
    max: usize,
}

impl LiveStates {
    /// At most `max` states, each kept at most `ttl`.
    pub(super) fn new(ttl: Duration, max: usize) -> Self {
        LiveStates {
            states: HashMap::default(),
            order: VecDeque::new(),
            ttl,
            max,
        }
    }

    /// Records `state` for `id` in `epoch`; false (nothing recorded) when full.
    pub(super) fn insert(&mut self, id: CorrelationId, state: RequestState, epoch: u64, now: Instant) -> bool {
        if self.states.len() >= self.max && !self.states.contains_key(&id) {
            return false;
        }
        self.states.insert(id, Live { state, epoch, at: now });
        self.order.push_back((now, id));
        if self.order.len() > 2 * self.states.len() + 1024 {
            let states = &self.states;
            self.order
                .retain(|(at, id)| states.get(id).is_some_and(|l| l.at == *at));
        }
        true
    }

    /// The state of `id` if it was recorded in `epoch`.
    pub(super) fn get(&self, id: &CorrelationId, epoch: u64) -> Option<&RequestState> {
        self.states
            .get(id)
            .filter(|l| l.epoch == epoch)
            .map(|l| &l.state)
    }

    /// Replaces the state of `id`, when one is kept (a change this shard made itself).
    pub(super) fn update(&mut self, id: &CorrelationId, state: RequestState) {
        if let Some(l) = self.states.get_mut(id) {
            l.state = state;
        }
    }

    /// Drops the state of `id` (changed, or about to be, elsewhere).
    pub(super) fn forget(&mut self, id: &CorrelationId) {
        self.states.remove(id);
    }

    /// Drops every state (tracking was interrupted, or the database flushed).
    pub(super) fn clear(&mut self) {
        self.states.clear();
        self.order.clear();
    }

    /// Drops the states recorded `ttl` or longer before `now`.
    pub(super) fn expire(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.order.front() {
            if now.saturating_duration_since(at) < self.ttl {
                break;
            }
            self.order.pop_front();
            if self.states.get(&id).is_some_and(|l| l.at == at) {
                self.states.remove(&id);
            }
        }
    }

    /// How many states are kept.
    pub(super) fn len(&self) -> usize {
        self.states.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;
    use crate::store::Status;

    fn id(n: u8) -> CorrelationId {
        CorrelationId::from_bytes([n; 16])
    }

    #[test]
    fn a_state_shows_only_in_its_epoch() {
        let mut live = LiveStates::new(Duration::from_secs(60), 10);
        let now = Instant::now();
        assert!(live.insert(id(1), RequestState::pending(Timestamp(5)), 3, now));
        assert_eq!(live.get(&id(1), 3).map(|s| s.status), Some(Status::Pending));
        assert!(live.get(&id(1), 4).is_none(), "another epoch: not shown");
        live.update(&id(1), RequestState::processing(Timestamp(5), Timestamp(6)));
        assert_eq!(live.get(&id(1), 3).map(|s| s.status), Some(Status::Processing));
        live.update(&id(2), RequestState::pending(Timestamp(5)));
        assert!(live.get(&id(2), 3).is_none(), "an update records nothing new");
        live.forget(&id(1));
        assert!(live.get(&id(1), 3).is_none());
        live.insert(id(1), RequestState::pending(Timestamp(5)), 3, now);
        live.clear();
        assert_eq!(live.len(), 0);
    }

    #[test]
    fn bounded_in_number() {
        let mut live = LiveStates::new(Duration::from_secs(60), 2);
        let now = Instant::now();
        assert!(live.insert(id(1), RequestState::pending(Timestamp(1)), 1, now));
        assert!(live.insert(id(2), RequestState::pending(Timestamp(1)), 1, now));
        assert!(!live.insert(id(3), RequestState::pending(Timestamp(1)), 1, now));
        assert!(live.get(&id(3), 1).is_none());
        assert!(live.insert(id(2), RequestState::pending(Timestamp(2)), 1, now), "recorded again");
        live.forget(&id(1));
        assert!(live.insert(id(3), RequestState::pending(Timestamp(1)), 1, now));
    }

    #[test]
    fn dropped_at_the_ttl_and_only_once_due() {
        let ttl = Duration::from_secs(10);
        let mut live = LiveStates::new(ttl, 10);
        let t0 = Instant::now();
        live.insert(id(1), RequestState::pending(Timestamp(1)), 1, t0);
        live.insert(id(2), RequestState::pending(Timestamp(1)), 1, t0 + Duration::from_secs(5));
        // Recorded again later: its first record's expiry does not drop it.
        live.insert(id(1), RequestState::pending(Timestamp(1)), 1, t0 + Duration::from_secs(8));
        live.expire(t0 + ttl);
        assert!(live.get(&id(1), 1).is_some());
        assert!(live.get(&id(2), 1).is_some());
        live.expire(t0 + Duration::from_secs(15));
        assert!(live.get(&id(2), 1).is_none());
        assert!(live.get(&id(1), 1).is_some());
        live.expire(t0 + Duration::from_secs(18));
        assert_eq!(live.len(), 0);
    }

    #[test]
    fn records_of_dropped_states_do_not_pile_up() {
        let mut live = LiveStates::new(Duration::from_secs(3600), 10);
        let now = Instant::now();
        for n in 0..100_000u32 {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&n.to_le_bytes());
            let id = CorrelationId::from_bytes(b);
            live.insert(id, RequestState::pending(Timestamp(1)), 1, now);
            live.forget(&id);
        }
        assert!(live.order.len() <= 1024 + 1, "{}", live.order.len());
    }
}
