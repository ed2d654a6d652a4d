//! `--pacer`: send times finer than monoio's timer. The runtime's timer wheel has 1 ms ticks, so an
//! open-loop run sends each millisecond's requests together, up to ~1 ms after their intended
//! times: at part load the generator's own lag is most of the latency it reports, and its bursts
//! queue at the server. With the pacer a helper thread (pinned to the worker's CPU when `--cpus`
//! is given) sleeps [`PERIOD`] at a time with a 1 ns timer slack and wakes the worker's runtime; a relay task there wakes the
//! connections whose send time has come ([`SendTimes::sleep_until`]). Between ticks the worker's
//! CPU is free to halt. The ticks cost the generator CPU (10,000 cross-thread wake-ups a second),
//! so near the generator's own limit the 1 ms timer keeps up better (PERFORMANCE.md, table 2).

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Time between two ticks: the most a request leaves after its intended time, plus the time to
/// wake the worker.
pub const PERIOD: Duration = Duration::from_micros(100);

/// What the tick thread and the worker's relay task share.
#[derive(Default)]
struct Shared {
    fired: AtomicBool,
    waker: Mutex<Option<Waker>>,
    stop: AtomicBool,
}

/// The tick thread of one worker; stopped and joined when the ticker is dropped.
pub struct Ticker {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    /// Starts ticking, on `cpu` when given.
    pub fn start(cpu: Option<usize>) -> std::io::Result<Ticker> {
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("loadtest-pacer".into())
            .spawn(move || {
                if let Some(cpu) = cpu {
                    let _ = monoio::utils::bind_to_cpu_set([cpu]);
                }
                // SAFETY: PR_SET_TIMERSLACK takes an integer and only affects this thread.
                unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
                while !s.stop.load(Ordering::Relaxed) {
                    std::thread::sleep(PERIOD);
                    s.fired.store(true, Ordering::Release);
                    let waker = s.waker.lock().unwrap_or_else(|e| e.into_inner()).take();
                    if let Some(w) = waker {
                        w.wake();
                    }
                }
            })?;
        Ok(Ticker {
            shared,
            thread: Some(thread),
        })
    }

    /// What the relay task needs: it holds this, not the ticker, so the one owner of the ticker
    /// (the worker's phases) stops it, also when unwinding.
    pub fn ticks(&self) -> Ticks {
        Ticks(self.shared.clone())
    }
}

/// The relay's side of a [`Ticker`].
pub struct Ticks(Arc<Shared>);

impl Ticks {
    /// Resolves at the next tick.
    fn next(&self) -> impl Future<Output = ()> + '_ {
        let shared = &self.0;
        std::future::poll_fn(move |cx| {
            if shared.fired.swap(false, Ordering::Acquire) {
                return Poll::Ready(());
            }
            *shared.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
            // A tick between the check and the store would otherwise be missed.
            if shared.fired.swap(false, Ordering::Acquire) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }
}

/// Stops the thread and waits for it, then drops the relay's waker (which would otherwise keep
/// the relay task alive): the ticker must go before the runtime it wakes.
impl Drop for Ticker {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.shared
            .waker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }
}

/// The send times the worker's connections wait for, earliest first.
#[derive(Default)]
pub struct SendTimes {
    due: RefCell<BinaryHeap<Reverse<Entry>>>,
}

struct Entry(Instant, Waker);

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

impl SendTimes {
    /// Resolves at the first tick at or after `at` (at once if `at` has passed).
    pub fn sleep_until(&self, at: Instant) -> SleepUntil<'_> {
        SleepUntil {
            pace: self,
            at,
            queued: false,
        }
    }

    /// Wakes every connection whose time has come, at each tick, for ever (the caller drops it
    /// when the worker is done).
    pub async fn relay(self: Rc<Self>, ticks: Ticks) {
        loop {
            ticks.next().await;
            let now = Instant::now();
            let mut due = self.due.borrow_mut();
            while due.peek().is_some_and(|Reverse(e)| e.0 <= now) {
                if let Some(Reverse(e)) = due.pop() {
                    e.1.wake();
                }
            }
        }
    }
}

/// Future of [`SendTimes::sleep_until`].
pub struct SleepUntil<'a> {
    pace: &'a SendTimes,
    at: Instant,
    queued: bool,
}

impl Future for SleepUntil<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.at {
            return Poll::Ready(());
        }
        if !self.queued {
            self.queued = true;
            self.pace
                .due
                .borrow_mut()
                .push(Reverse(Entry(self.at, cx.waker().clone())));
        }
        Poll::Pending
    }
}
