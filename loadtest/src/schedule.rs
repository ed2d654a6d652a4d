//! When a connection may start its next request ("flow"): closed loop (as soon as one of its
//! `--pipeline` slots is free) or open loop at a constant total rate.
//!
//! Open loop follows wrk2: request `j` of the whole run has the *intended* send time
//! `start + j / rate`, and connection `c` of `C` owns `j = c, c + C, c + 2C, ...`, so the
//! connections interleave into one even stream. A request that cannot go out at its intended time
//! (the connection's slots are all waiting on a slow server) goes out as soon as a slot frees,
//! and its latency is still counted from the intended time: a stalled server shows up as latency
//! that grows for as long as it is behind, not as a pause nobody measured (coordinated omission).
//!
//! The wait until an intended time uses monoio's timer, whose resolution is one millisecond
//! (deadlines round up to the next tick), so a request may leave up to ~1 ms after its intended
//! time even on an idle server; with `--pacer`, a helper thread's 100 µs ticks (`pacer.rs`). That slack is charged to latency (it is the honest direction) and
//! reported separately as the send lag (`sent − intended`), next to the service time
//! (`received − sent`), so a reader can tell the generator's share from the server's.

use std::time::{Duration, Instant};

/// The open-loop schedule of one connection.
#[derive(Debug, Clone)]
pub struct OpenSchedule {
    start: Instant,
    /// Nanoseconds between two requests of the whole run (`1e9 / rate`).
    interval_ns: f64,
    /// Global index of this connection's next request.
    next: u64,
    /// Number of connections: the step between this connection's indices.
    stride: u64,
    /// Requests of the whole run (`--requests`), if bounded by count.
    total: Option<u64>,
    /// Length of the sending window (`--duration`), if bounded by time.
    window: Option<Duration>,
}

impl OpenSchedule {
    /// Connection `conn` of `conns`, sharing `rate` requests/s of a run that started at `start`.
    pub fn new(
        start: Instant,
        rate: f64,
        conn: usize,
        conns: usize,
        total: Option<u64>,
        window: Option<Duration>,
    ) -> OpenSchedule {
        assert!(rate > 0.0 && conn < conns);
        OpenSchedule {
            start,
            interval_ns: 1e9 / rate,
            next: conn as u64,
            stride: conns as u64,
            total,
            window,
        }
    }

    /// Intended send time of request `j` of the run, as an offset from the start.
    pub fn offset(&self, j: u64) -> Duration {
        Duration::from_nanos((j as f64 * self.interval_ns).round() as u64)
    }

    /// Intended send time of this connection's next request; `None` once the run has no more.
    pub fn peek(&self) -> Option<Instant> {
        if self.total.is_some_and(|t| self.next >= t) {
            return None;
        }
        let offset = self.offset(self.next);
        if self.window.is_some_and(|w| offset >= w) {
            return None;
        }
        Some(self.start + offset)
    }

    /// The intended time of the next request if it is due at `now` (and moves past it).
    pub fn take_due(&mut self, now: Instant) -> Option<Instant> {
        let at = self.peek().filter(|&at| at <= now)?;
        self.next += self.stride;
        Some(at)
    }
}

/// How new flows start on one connection.
#[derive(Debug, Clone)]
pub enum Pace {
    /// Closed loop: a new flow whenever fewer than `--pipeline` are active, until `remaining`
    /// runs out or `end` passes.
    Closed {
        /// Flows left to start (`--requests` share), unbounded when `None`.
        remaining: Option<u64>,
        /// No new flow at or after this time, when bounded by time.
        end: Option<Instant>,
    },
    /// Open loop: at the schedule's intended times.
    Open(OpenSchedule),
    /// No new flows (a phase that only finishes what it was handed).
    Idle,
}

impl Pace {
    /// Starts a flow if one may start now, given `active` flows of at most `depth`: returns its
    /// intended start (`now` in closed loop).
    pub fn take(&mut self, now: Instant, active: usize, depth: usize) -> Option<Instant> {
        match self {
            Pace::Closed { remaining, end } => {
                if active >= depth || remaining == &Some(0) || end.is_some_and(|e| now >= e) {
                    return None;
                }
                if let Some(r) = remaining {
                    *r -= 1;
                }
                Some(now)
            }
            Pace::Open(s) => s.take_due(now),
            Pace::Idle => None,
        }
    }

    /// When the next flow becomes due by the clock (open loop only; closed loop waits for slots).
    pub fn next_due(&self) -> Option<Instant> {
        match self {
            Pace::Open(s) => s.peek(),
            _ => None,
        }
    }

    /// No flow will ever start again.
    pub fn exhausted(&self, now: Instant) -> bool {
        match self {
            Pace::Closed { remaining, end } => {
                remaining == &Some(0) || end.is_some_and(|e| now >= e)
            }
            Pace::Open(s) => s.peek().is_none(),
            Pace::Idle => true,
        }
    }
}

/// Splits `total` into `parts` shares differing by at most one (the first ones get the extra).
pub fn share(total: u64, parts: usize, index: usize) -> u64 {
    let parts = parts as u64;
    total / parts + u64::from((index as u64) < total % parts)
}

/// Whole microseconds from `from` to `to` (0 if `to` is earlier).
pub fn micros(from: Instant, to: Instant) -> u64 {
    to.saturating_duration_since(from).as_micros() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn connections_interleave_into_one_even_stream() {
        let t0 = Instant::now();
        // 1,000/s over 4 connections: connection 1 owns requests 1, 5, 9, ... at 1 ms, 5 ms, 9 ms.
        let mut s = OpenSchedule::new(t0, 1000.0, 1, 4, None, None);
        assert_eq!(s.peek(), Some(t0 + MS));
        assert_eq!(s.take_due(t0), None, "not due yet");
        assert_eq!(s.take_due(t0 + MS), Some(t0 + MS));
        assert_eq!(s.peek(), Some(t0 + 5 * MS));
        // All four together cover every millisecond exactly once.
        let mut all: Vec<Duration> = (0..4)
            .flat_map(|c| {
                let mut s = OpenSchedule::new(t0, 1000.0, c, 4, Some(12), None);
                std::iter::from_fn(move || s.take_due(t0 + Duration::from_secs(1)))
            })
            .map(|at| at - t0)
            .collect();
        all.sort();
        assert_eq!(all, (0..12).map(|i| i * MS).collect::<Vec<_>>());
    }

    #[test]
    fn fractional_rates_do_not_drift() {
        let t0 = Instant::now();
        let s = OpenSchedule::new(t0, 3.0, 0, 1, None, None);
        // 1/3 s steps: request 3,000,000 is at exactly 1,000,000 s, not off by rounding per step.
        assert_eq!(s.offset(3_000_000), Duration::from_secs(1_000_000));
        assert_eq!(s.offset(1), Duration::from_nanos(333_333_333));
    }

    #[test]
    fn stops_at_the_count_or_the_window() {
        let t0 = Instant::now();
        let late = t0 + Duration::from_secs(100);
        let mut by_count = OpenSchedule::new(t0, 1000.0, 0, 2, Some(5), None);
        let n = std::iter::from_fn(|| by_count.take_due(late)).count();
        assert_eq!(n, 3, "requests 0, 2, 4 of 5");
        let mut by_time = OpenSchedule::new(t0, 1000.0, 0, 1, None, Some(10 * MS));
        let n = std::iter::from_fn(|| by_time.take_due(late)).count();
        assert_eq!(n, 10, "0 ms .. 9 ms; 10 ms is outside the window");
        assert!(Pace::Open(by_time).exhausted(t0));
    }

    /// One connection, one slot, 1,000 requests/s, and a server that needs 2 ms per request: it
    /// falls further behind each request. Latency from the intended time must grow with the
    /// backlog (2, 3, 4, ... ms) while the service time stays at 2 ms; measuring from the actual
    /// send time instead would report a flat 2 ms and hide the stall.
    #[test]
    fn latency_from_intended_time_grows_when_the_server_falls_behind() {
        let t0 = Instant::now();
        let mut pace = Pace::Open(OpenSchedule::new(t0, 1000.0, 0, 1, Some(20), None));
        let mut now = t0;
        let mut latencies = Vec::new();
        let mut services = Vec::new();
        while !pace.exhausted(now) {
            let intended = match pace.take(now, 0, 1) {
                Some(at) => at,
                None => {
                    now = pace.next_due().unwrap(); // idle: sleep until the next is due
                    continue;
                }
            };
            let sent = now;
            now += 2 * MS; // the answer
            latencies.push(micros(intended, now));
            services.push(micros(sent, now));
        }
        assert_eq!(latencies.len(), 20);
        assert!(services.iter().all(|&s| s == 2000));
        for (i, &l) in latencies.iter().enumerate() {
            assert_eq!(l, 2000 + 1000 * i as u64, "request {i}");
        }
    }

    #[test]
    fn on_time_requests_measure_just_the_service_time() {
        let t0 = Instant::now();
        // A fast server (0.3 ms) at 1,000/s never falls behind: latency = service time.
        let mut pace = Pace::Open(OpenSchedule::new(t0, 1000.0, 0, 1, Some(5), None));
        let mut now = t0;
        while let Some(next) = pace.next_due() {
            now = now.max(next);
            let intended = pace.take(now, 0, 1).unwrap();
            now += Duration::from_micros(300);
            assert_eq!(micros(intended, now), 300);
        }
    }

    #[test]
    fn closed_loop_fills_free_slots_only() {
        let t0 = Instant::now();
        let mut pace = Pace::Closed {
            remaining: Some(3),
            end: None,
        };
        assert_eq!(pace.take(t0, 2, 2), None, "both slots busy");
        assert_eq!(pace.take(t0, 1, 2), Some(t0));
        assert_eq!(pace.take(t0, 0, 2), Some(t0));
        assert!(!pace.exhausted(t0));
        assert_eq!(pace.take(t0, 0, 2), Some(t0));
        assert_eq!(pace.take(t0, 0, 2), None, "quota spent");
        assert!(pace.exhausted(t0));
        let mut timed = Pace::Closed {
            remaining: None,
            end: Some(t0 + MS),
        };
        assert_eq!(timed.take(t0, 0, 1), Some(t0));
        assert_eq!(timed.take(t0 + MS, 0, 1), None);
        assert!(timed.exhausted(t0 + MS));
        assert!(Pace::Idle.exhausted(t0));
    }

    #[test]
    fn shares_add_up() {
        for (total, parts) in [(10, 3), (2, 4), (0, 1), (1000, 64)] {
            let shares: Vec<u64> = (0..parts).map(|i| share(total, parts, i)).collect();
            assert_eq!(shares.iter().sum::<u64>(), total);
            assert!(shares.iter().max().unwrap() - shares.iter().min().unwrap() <= 1);
        }
    }
}
