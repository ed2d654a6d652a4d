//! How fast a queue has been emptying lately: what `Retry-After` of a full queue is computed from
//! (its depth ÷ this rate).

use std::time::{Duration, Instant};

/// Jobs taken per second, smoothed over one-second windows.
#[derive(Debug, Clone, Copy)]
pub(super) struct DrainRate {
    window_start: Instant,
    taken: u64,
    per_second: f64,
}

/// The length of one window.
const WINDOW: Duration = Duration::from_secs(1);
/// Weight of the newest window.
const ALPHA: f64 = 0.5;

impl DrainRate {
    /// No jobs taken yet.
    pub(super) fn new(now: Instant) -> Self {
        DrainRate {
            window_start: now,
            taken: 0,
            per_second: 0.0,
        }
    }

    /// `n` jobs were taken at `now`.
    pub(super) fn took(&mut self, n: usize, now: Instant) {
        self.roll(now);
        self.taken += n as u64;
    }

    /// The recent rate at `now`: windows without any job count as zero, so a queue that stopped
    /// draining is not credited with its old rate.
    pub(super) fn per_second(&mut self, now: Instant) -> f64 {
        self.roll(now);
        self.per_second
    }

    /// Seconds until `depth` jobs are likely taken, 1..=60 (60 when nothing drains).
    pub(super) fn retry_after(&mut self, depth: u64, now: Instant) -> u32 {
        let rate = self.per_second(now);
        if rate <= f64::EPSILON {
            return 60;
        }
        (depth as f64 / rate).ceil().clamp(1.0, 60.0) as u32
    }

    fn roll(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed < WINDOW {
            return;
        }
        let windows = (elapsed.as_secs_f64() / WINDOW.as_secs_f64()).floor();
        // The closed window, then the empty ones after it.
        let last = self.taken as f64 / WINDOW.as_secs_f64();
        self.per_second = (ALPHA * last + (1.0 - ALPHA) * self.per_second)
            * (1.0 - ALPHA).powf(windows - 1.0);
        self.taken = 0;
        self.window_start += WINDOW.mul_f64(windows);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_from_jobs_taken_and_retry_after_from_depth() {
        let t0 = Instant::now();
        let mut r = DrainRate::new(t0);
        assert_eq!(r.retry_after(10, t0), 60, "nothing drained yet");
        for i in 0..10 {
            r.took(100, t0 + Duration::from_millis(i * 100));
        }
        // One closed window of 1,000 jobs: half weight on an empty history.
        let t1 = t0 + Duration::from_millis(1_050);
        assert_eq!(r.per_second(t1), 500.0);
        assert_eq!(r.retry_after(1_000, t1), 2);
        assert_eq!(r.retry_after(1, t1), 1);
        assert_eq!(r.retry_after(1_000_000, t1), 60);
    }

    #[test]
    fn a_queue_that_stopped_draining_loses_its_rate() {
        let t0 = Instant::now();
        let mut r = DrainRate::new(t0);
        r.took(1_000, t0);
        let rate = r.per_second(t0 + Duration::from_millis(1_001));
        let later = r.per_second(t0 + Duration::from_millis(10_001));
        assert!(later < rate / 100.0, "{rate} then {later}");
    }
}
