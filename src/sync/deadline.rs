//! A reusable deadline timer. `monoio::time::timeout` builds a 640-byte, 128-byte-aligned `Sleep`
//! inside every future that uses it and registers and deregisters a timer per call; a connection
//! that read and wrote with it paid that (and the copies of the larger futures) on every request.
//! A [`Deadline`] allocates its timer once, on first use, and re-arms it per operation: monoio
//! extends a registered timer in place when the new deadline is later, so a connection's
//! steady state touches the timer wheel rarely. PERFORMANCE.md has the before/after.

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::task::Poll;
use std::time::Duration;

use monoio::time::{sleep_until, Instant, Sleep};

/// The operation did not finish within its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedOut;

/// One timer, re-armed for each operation it bounds. Not for concurrent operations: each needs
/// its own.
#[derive(Default)]
pub struct Deadline {
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Deadline {
    /// Runs `work`; `Err(TimedOut)` (and `work` dropped, i.e. cancelled) if it takes longer than
    /// `limit`.
    pub async fn run<F: Future>(
        &mut self,
        limit: Duration,
        work: F,
    ) -> Result<F::Output, TimedOut> {
        let at = Instant::now() + limit;
        let sleep = match &mut self.sleep {
            Some(s) => {
                s.as_mut().reset(at);
                s
            }
            None => self.sleep.insert(Box::pin(sleep_until(at))),
        };
        let mut work = pin!(work);
        poll_fn(|cx| {
            if let Poll::Ready(out) = work.as_mut().poll(cx) {
                return Poll::Ready(Ok(out));
            }
            match sleep.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(TimedOut)),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: Future>(f: F) -> F::Output {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn finishes_in_time_and_times_out_and_is_reusable() {
        block_on(async {
            let mut d = Deadline::default();
            assert_eq!(d.run(Duration::from_secs(5), async { 7 }).await, Ok(7));
            let slow = monoio::time::sleep(Duration::from_secs(5));
            let t = std::time::Instant::now();
            assert_eq!(d.run(Duration::from_millis(20), slow).await, Err(TimedOut));
            assert!(t.elapsed() < Duration::from_secs(2));
            // Re-armed after firing, with a later and then an earlier deadline.
            let quick = monoio::time::sleep(Duration::from_millis(5));
            assert_eq!(d.run(Duration::from_secs(10), quick).await, Ok(()));
            let slow = monoio::time::sleep(Duration::from_secs(5));
            assert_eq!(d.run(Duration::from_millis(20), slow).await, Err(TimedOut));
        });
    }
}
