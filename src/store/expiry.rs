//! The expiry queue of one shard's table: `(deadline, id)` in the order states became final. The
//! TTL is one constant, so deadlines come in order and a sweep only looks at the front.
//!
//! Chunked: growth adds a chunk and copies nothing (one `VecDeque` of millions of entries doubles
//! by copying them all, a stall of milliseconds). One queue, not one per id segment: a sweep then
//! drops states in the order they were written, which is near the order of their slots and of
//! their results' allocations, so it walks memory forwards. With the queue split by a random
//! byte of the id, every expired state cost two cache misses (`perf annotate` of the
//! `expire_100k_due` bench: ~300-450 ns per state against ~90 ns).

use std::collections::VecDeque;
use std::time::Instant;

use crate::id::CorrelationId;

/// Entries per chunk.
const CHUNK: usize = 4096;

/// A FIFO of deadlines.
#[derive(Default)]
pub struct Expiry {
    chunks: VecDeque<Vec<(Instant, CorrelationId)>>,
    /// Entries of the front chunk already taken.
    head: usize,
}

impl Expiry {
    /// Adds `id`, due at `deadline` (not earlier than any deadline already queued).
    pub fn push(&mut self, deadline: Instant, id: CorrelationId) {
        match self.chunks.back_mut() {
            Some(last) if last.len() < CHUNK => last.push((deadline, id)),
            _ => {
                let mut chunk = Vec::with_capacity(CHUNK);
                chunk.push((deadline, id));
                self.chunks.push_back(chunk);
            }
        }
    }

    /// The next id due by `now`, taken off the queue.
    pub fn pop_due(&mut self, now: Instant) -> Option<CorrelationId> {
        let front = self.chunks.front()?;
        let &(deadline, _) = front.get(self.head)?;
        if deadline > now {
            return None;
        }
        self.pop_front()
    }

    /// The next id, due or not, taken off the queue.
    pub fn pop_front(&mut self) -> Option<CorrelationId> {
        let front = self.chunks.front()?;
        let &(_, id) = front.get(self.head)?;
        self.head += 1;
        // A used-up chunk goes, unless it is the last one and still has room for pushes.
        if self.head == front.len() && (front.len() == CHUNK || self.chunks.len() > 1) {
            self.chunks.pop_front();
            self.head = 0;
        }
        Some(id)
    }

    /// Entries queued.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.chunks.iter().map(Vec::len).sum::<usize>() - self.head
    }

    /// Whether nothing is queued.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::IdMinter;
    use std::time::Duration;

    /// In order, across chunk boundaries, with pushes between pops, and only what is due.
    #[test]
    fn first_in_first_out_by_deadline() {
        let mut q = Expiry::default();
        let mut m = IdMinter::new(0, 1);
        let t0 = Instant::now();
        let at = |i: usize| t0 + Duration::from_micros(i as u64);
        let ids: Vec<_> = (0..3 * CHUNK + 7).map(|_| m.mint()).collect();
        for (i, id) in ids.iter().enumerate().take(CHUNK + 3) {
            q.push(at(i), *id);
        }
        assert_eq!(q.pop_due(at(0) - Duration::from_micros(1)), None);
        let mut got = Vec::new();
        while let Some(id) = q.pop_due(at(CHUNK)) {
            got.push(id);
        }
        assert_eq!(got, ids[..=CHUNK]);
        for (i, id) in ids.iter().enumerate().skip(CHUNK + 3) {
            q.push(at(i), *id);
        }
        assert_eq!(q.len(), ids.len() - (CHUNK + 1));
        while let Some(id) = q.pop_due(at(usize::MAX >> 40)) {
            got.push(id);
        }
        assert_eq!(got, ids);
        assert!(q.is_empty());
        // Empty after draining a partly filled last chunk; usable again.
        q.push(at(1), ids[0]);
        assert_eq!(q.pop_due(at(1)), Some(ids[0]));
        assert!(q.is_empty());
    }
}
