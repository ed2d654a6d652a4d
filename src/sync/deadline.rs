//! A reusable deadline timer. `monoio::time::timeout` builds a 640-byte, 128-byte-aligned `Sleep`
//! inside every future that uses it and registers and deregisters a timer per call; a connection
//! that read and wrote with it paid that (and the copies of the larger futures) on every request.
//! A [`Deadline`] allocates its timer once, on first use, and re-arms it per operation: monoio
//! extends a registered timer in place when the new deadline is later, so a connection's
//! steady state touches the timer wheel rarely. PERFORMANCE.md has the before/after. The timer
//! wakes through a `Forward`, so it wakes the task running the current operation.

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use monoio::time::{sleep_until, Instant, Sleep};

use super::forward::Forward;

/// The operation did not finish within its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedOut;

/// One timer, re-armed for each operation it bounds; the operations may run in different tasks
/// (a pooled upstream connection serves one job after another). Not for concurrent operations:
/// each needs its own.
#[derive(Default)]
pub struct Deadline {
    timer: Option<Timer>,
}

/// The timer, polled under a forwarder's waker: monoio keeps the waker of a timer's first poll
/// until it fires, so the forwarder is what points it at the task running the operation now.
struct Timer {
    sleep: Pin<Box<Sleep>>,
    forward: Arc<Forward>,
    waker: Waker,
}

/// Stops forwarding when an operation ends, however it ends.
struct Release<'a>(&'a Forward);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.0.release();
    }
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
        let timer = match &mut self.timer {
            Some(t) => {
                t.sleep.as_mut().reset(at);
                t
            }
            None => {
                let (forward, waker) = Forward::new();
                self.timer.insert(Timer {
                    sleep: Box::pin(sleep_until(at)),
                    forward,
                    waker,
                })
            }
        };
        let Timer {
            sleep,
            forward,
            waker,
        } = timer;
        let _release = Release(forward);
        let mut work = pin!(work);
        poll_fn(|cx| {
            if let Poll::Ready(out) = work.as_mut().poll(cx) {
                return Poll::Ready(Ok(out));
            }
            forward.follow(cx.waker());
            match sleep.as_mut().poll(&mut Context::from_waker(waker)) {
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

    /// One task uses the deadline, then another: the second's timeout wakes the second task,
    /// although the timer was first polled by the first.
    #[test]
    fn a_deadline_used_by_one_task_then_another_wakes_the_second() {
        block_on(async {
            let d = monoio::spawn(async move {
                let mut d = Deadline::default();
                let quick = monoio::time::sleep(Duration::from_millis(50));
                assert_eq!(d.run(Duration::from_secs(10), quick).await, Ok(()));
                d
            })
            .await;
            let t = std::time::Instant::now();
            let out = monoio::spawn(async move {
                let mut d = d;
                let slow = monoio::time::sleep(Duration::from_secs(5));
                d.run(Duration::from_millis(20), slow).await
            })
            .await;
            assert_eq!(out, Err(TimedOut));
            assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
        });
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
