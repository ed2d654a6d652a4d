//! A fixed-bucket histogram in plain integers: one per shard per series, summed at scrape.

/// Upper bounds (seconds) shared by every latency histogram: 100 µs to 300 s, so sub-millisecond
/// broker latencies and processors running up to the default 300 s timeout all land in a real
/// bucket.
pub const BUCKETS: [f64; 20] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// Counts per bucket (not cumulative), plus `+Inf`, sum and count.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Observations per bucket; the last slot is above every bound.
    pub counts: [u64; BUCKETS.len() + 1],
    /// Sum of observed values, seconds.
    pub sum: f64,
}

impl Histogram {
    /// Records one observation in seconds.
    pub fn observe(&mut self, secs: f64) {
        let i = BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(BUCKETS.len());
        self.counts[i] += 1;
        self.sum += secs;
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.sum += other.sum;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observes_into_the_right_bucket() {
        let mut h = Histogram::default();
        h.observe(0.00005);
        h.observe(0.0001);
        h.observe(0.0002);
        h.observe(299.0);
        h.observe(301.0);
        assert_eq!(h.counts[0], 2);
        assert_eq!(h.counts[1], 1);
        assert_eq!(h.counts[BUCKETS.len() - 1], 1);
        assert_eq!(h.counts[BUCKETS.len()], 1);
        assert_eq!(h.count(), 5);
        let mut g = Histogram::default();
        g.merge(&h);
        g.merge(&h);
        assert_eq!(g.count(), 10);
        assert!((g.sum - 2.0 * h.sum).abs() < 1e-9);
    }
}
