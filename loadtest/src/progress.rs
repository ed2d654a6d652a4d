//! Live counters a worker thread bumps once per batch of answers, and the progress line the main
//! thread prints on stderr about once a second from them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::report::group;

/// One worker thread's running totals (measured phase only). Aligned so two threads' counters
/// never share a cache line.
#[derive(Default)]
#[repr(align(128))]
pub struct Live {
    /// Answers received.
    pub responses: AtomicU64,
    /// Non-2xx answers plus transport errors.
    pub errors: AtomicU64,
    /// Requests seen reaching a final state (e2e).
    pub finals: AtomicU64,
}

impl Live {
    /// Adds a batch.
    pub fn add(&self, responses: u64, errors: u64, finals: u64) {
        if responses > 0 {
            self.responses.fetch_add(responses, Ordering::Relaxed);
        }
        if errors > 0 {
            self.errors.fetch_add(errors, Ordering::Relaxed);
        }
        if finals > 0 {
            self.finals.fetch_add(finals, Ordering::Relaxed);
        }
    }
}

/// Sums over threads: (responses, errors, finals).
pub fn totals(lives: &[std::sync::Arc<Live>]) -> (u64, u64, u64) {
    lives.iter().fold((0, 0, 0), |(r, e, f), l| {
        (
            r + l.responses.load(Ordering::Relaxed),
            e + l.errors.load(Ordering::Relaxed),
            f + l.finals.load(Ordering::Relaxed),
        )
    })
}

/// The progress line: totals so far and the rate over the last interval.
pub fn line(
    elapsed: Duration,
    now: (u64, u64, u64),
    before: (u64, u64, u64),
    dt: Duration,
) -> String {
    let per_s =
        |a: u64, b: u64| group(((a - b) as f64 / dt.as_secs_f64().max(1e-9)).round() as u64);
    let mut s = format!(
        "[{:>4.0}s] {} answers, {}/s, {} errors",
        elapsed.as_secs_f64(),
        group(now.0),
        per_s(now.0, before.0),
        group(now.1)
    );
    if now.2 > 0 {
        s.push_str(&format!(
            ", {} final ({}/s)",
            group(now.2),
            per_s(now.2, before.2)
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn sums_threads_and_rates_the_last_interval() {
        let a = Arc::new(Live::default());
        let b = Arc::new(Live::default());
        a.add(1000, 1, 0);
        b.add(500, 0, 7);
        assert_eq!(totals(&[a, b]), (1500, 1, 7));
        let l = line(
            Duration::from_secs(3),
            (301_000, 2, 0),
            (200_000, 2, 0),
            Duration::from_secs(1),
        );
        assert_eq!(l, "[   3s] 301,000 answers, 101,000/s, 2 errors");
        let l = line(
            Duration::from_secs(1),
            (10, 0, 10),
            (0, 0, 0),
            Duration::from_millis(500),
        );
        assert!(l.ends_with("10 final (20/s)"), "{l}");
    }
}
