//! Per-key rate limits (`auth.rate_limit_per_second`), one token bucket per key on each shard.
//!
//! Shards share nothing, so the limit is split between them: each shard refills a key's bucket at
//! `rate / shards` per second and holds at most one second of that. A client therefore never gets
//! more than the limit in all, and gets all of it when its connections reach every shard (the
//! kernel spreads connections over the shards' listeners).

use std::time::Instant;

/// The buckets of one shard.
pub struct RateLimits {
    per_second: f64,
    burst: f64,
    buckets: Vec<Option<Bucket>>,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimits {
    /// Buckets for `nr_keys` keys, each refilled at `total_per_second / nr_shards`.
    pub fn new(total_per_second: f64, nr_shards: usize, nr_keys: usize) -> Self {
        let per_second = total_per_second / nr_shards.max(1) as f64;
        RateLimits {
            per_second,
            burst: per_second.max(1.0),
            buckets: vec![None; nr_keys],
        }
    }

    /// Takes one request's token for key `key`, or says in how many whole seconds (1..=60) one
    /// will be there.
    pub fn take(&mut self, key: usize, now: Instant) -> Result<(), u32> {
        let Some(cell) = self.buckets.get_mut(key) else {
            return Ok(());
        };
        let b = cell.get_or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.per_second).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Ok(());
        }
        let wait = (1.0 - b.tokens) / self.per_second;
        Err(wait.ceil().clamp(1.0, 60.0) as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_refill_at_the_rate() {
        let t0 = Instant::now();
        let mut r = RateLimits::new(10.0, 1, 2);
        for _ in 0..10 {
            assert_eq!(r.take(0, t0), Ok(()));
        }
        assert_eq!(r.take(0, t0), Err(1));
        // Key 1 has its own bucket.
        assert_eq!(r.take(1, t0), Ok(()));
        // 10 per second: one token every 100 ms.
        assert_eq!(r.take(0, t0 + Duration::from_millis(50)), Err(1));
        assert_eq!(r.take(0, t0 + Duration::from_millis(110)), Ok(()));
        assert_eq!(r.take(0, t0 + Duration::from_millis(120)), Err(1));
    }

    #[test]
    fn the_limit_is_split_between_shards_and_retry_after_is_honest() {
        let t0 = Instant::now();
        // 1 per second over 4 shards: a token every 4 s on each, a burst of one.
        let mut r = RateLimits::new(1.0, 4, 1);
        assert_eq!(r.take(0, t0), Ok(()));
        assert_eq!(r.take(0, t0), Err(4));
        assert_eq!(r.take(0, t0 + Duration::from_secs(3)), Err(1));
        assert_eq!(r.take(0, t0 + Duration::from_secs(4)), Ok(()));
    }

    #[test]
    fn retry_after_is_capped_at_a_minute() {
        let t0 = Instant::now();
        let mut r = RateLimits::new(0.001, 1, 1);
        assert_eq!(r.take(0, t0), Ok(()));
        assert_eq!(r.take(0, t0), Err(60));
    }
}
