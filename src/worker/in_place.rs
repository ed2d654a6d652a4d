//! A job runs in the dispatcher's task first and gets a task of its own only when it has to wait
//! (most built-in jobs never do). monoio's timers keep the waker of their first poll, so a
//! deadline a job armed during its first poll would wake the dispatcher, not the job's task, and
//! the job would never see it fire. So the first poll runs under a forwarding waker
//! (`sync::forward`), which wakes whatever task runs the job afterwards.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Waker};

use crate::sync::forward::Forward;

/// Polls `job` once here; if it has to wait, spawns a task that runs it to its end and returns
/// `true`. `spare` is a forwarder no job holds any more, kept between calls so a job that ends
/// on its first poll allocates none.
pub(super) fn run<F>(mut job: Pin<Box<F>>, spare: &mut Option<Arc<Forward>>) -> bool
where
    F: Future<Output = ()> + 'static,
{
    let forward = spare.take().unwrap_or_default();
    let waker = Waker::from(forward.clone());
    let pending = job.as_mut().poll(&mut Context::from_waker(&waker)).is_pending();
    drop(waker);
    if !pending {
        // Anything the job registered went with it; a clone still held elsewhere keeps the
        // forwarder from being reused.
        if Arc::strong_count(&forward) == 1 {
            *spare = Some(forward);
        }
        return false;
    }
    monoio::spawn(async move {
        poll_fn(|cx| {
            forward.follow(cx.waker());
            let polled = job.as_mut().poll(cx);
            if polled.is_ready() {
                // A timer the job left registered must not keep this task alive.
                forward.release();
            }
            polled
        })
        .await;
    });
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;
    use std::time::Duration;

    fn runtime() -> monoio::Runtime<monoio::time::TimeDriver<monoio::LegacyDriver>> {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime")
    }

    /// A timer armed on the first poll, in place, wakes the task the job moved to.
    #[test]
    fn a_timer_armed_in_place_wakes_the_task_that_took_the_job_over() {
        runtime().block_on(async {
            let done = Rc::new(Cell::new(false));
            let d = done.clone();
            let job = Box::pin(async move {
                monoio::time::sleep(Duration::from_millis(20)).await;
                d.set(true);
            });
            let mut spare = None;
            assert!(run(job, &mut spare), "a sleeping job waits");
            assert!(spare.is_none(), "its forwarder went with it");
            let waited = std::time::Instant::now();
            // The block_on task's own timer is a second one, far later: only the job's timer
            // can end this loop before it fires.
            let mut limit = std::pin::pin!(monoio::time::sleep(Duration::from_secs(5)));
            while !done.get() {
                monoio::select! {
                    _ = monoio::time::sleep(Duration::from_millis(5)) => {},
                    _ = limit.as_mut() => panic!("the job was never woken"),
                }
            }
            assert!(waited.elapsed() < Duration::from_secs(5));
        });
    }

    #[test]
    fn a_job_that_ends_in_place_keeps_its_forwarder_for_the_next() {
        runtime().block_on(async {
            let ran = Rc::new(Cell::new(0));
            let mut spare = None;
            for _ in 0..2 {
                let r = ran.clone();
                assert!(!run(Box::pin(async move { r.set(r.get() + 1) }), &mut spare));
                assert!(spare.is_some());
            }
            assert_eq!(ran.get(), 2);
        });
    }
}
