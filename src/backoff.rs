//! Retry delays: capped exponential backoff with "equal jitter" (half fixed, half random), so
//! retries of many jobs that failed together spread out instead of returning together.

use std::time::Duration;

/// The delay before retry number `attempt` (1 for the first retry): `min(max, base·2^(attempt-1))`,
/// of which the upper half is scaled by `jitter` in `[0, 1)`.
pub fn retry_delay(attempt: u32, base: Duration, max: Duration, jitter: f64) -> Duration {
    let exp = base.as_secs_f64() * 2f64.powi(attempt.saturating_sub(1).min(62) as i32);
    let capped = exp.min(max.as_secs_f64());
    Duration::from_secs_f64(capped / 2.0 + capped / 2.0 * jitter.clamp(0.0, 1.0))
}

/// A small xorshift generator for jitter (not for anything secret).
#[derive(Debug, Clone)]
pub struct Jitter(u64);

impl Jitter {
    /// Seeded from `seed` (any value; zero is remapped).
    pub fn new(seed: u64) -> Self {
        Jitter(seed | 1)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_unit(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_doubles_and_caps() {
        let (b, m) = (Duration::from_secs(1), Duration::from_secs(60));
        let no_jitter: Vec<f64> = (1..=8)
            .map(|a| retry_delay(a, b, m, 0.0).as_secs_f64())
            .collect();
        assert_eq!(no_jitter, [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]);
        let full: Vec<f64> = (1..=8)
            .map(|a| retry_delay(a, b, m, 0.999_999).as_secs_f64())
            .collect();
        for (lo, hi) in no_jitter.iter().zip(&full) {
            assert!(hi > lo && *hi <= lo * 2.0 + 1e-9);
        }
        assert_eq!(retry_delay(u32::MAX, b, m, 1.0), m);
    }

    #[test]
    fn jitter_is_in_range_and_varies() {
        let mut j = Jitter::new(42);
        let xs: Vec<f64> = (0..1000).map(|_| j.next_unit()).collect();
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((0.4..0.6).contains(&mean), "{mean}");
    }
}
