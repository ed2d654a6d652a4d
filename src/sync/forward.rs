//! A waker that wakes whichever task polled last. monoio's timers keep the waker of their first
//! poll (a timer registers one only when it has none, and drops it only when it fires), so a
//! timer polled by one task and later by another would wake the first. Polling a timer under a
//! [`Forward`]'s waker, and pointing the forwarder at the current task on every poll, makes it
//! wake the right one: a job's deadline armed in the dispatcher before the job got a task of its
//! own (`worker/in_place.rs`), a pooled upstream connection's timer used by one job after another
//! (`Deadline`).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Wake, Waker};

/// Where wakes go: nowhere (dropped) until a task is set, then to that task.
#[derive(Default)]
pub struct Forward(Mutex<Option<Waker>>);

impl Forward {
    /// A forwarder and the waker to poll with.
    pub fn new() -> (Arc<Forward>, Waker) {
        let forward = Arc::new(Forward::default());
        let waker = Waker::from(forward.clone());
        (forward, waker)
    }

    /// Wakes go to `task` from now on.
    pub fn follow(&self, task: &Waker) {
        let mut target = self.target();
        if !target.as_ref().is_some_and(|t| t.will_wake(task)) {
            *target = Some(task.clone());
        }
    }

    /// Wakes are dropped from now on (and the last task is no longer kept alive by this).
    pub fn release(&self) {
        self.target().take();
    }

    fn target(&self) -> MutexGuard<'_, Option<Waker>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Wake for Forward {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Cloned out of the lock: a task's wake may poll it in place and come back here.
        let task = self.target().clone();
        if let Some(task) = task {
            task.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn wakes_the_task_it_follows_and_none_after_release() {
        let (forward, waker) = Forward::new();
        waker.wake_by_ref();
        let (a, b) = (
            Arc::new(Count(AtomicUsize::new(0))),
            Arc::new(Count(AtomicUsize::new(0))),
        );
        forward.follow(&Waker::from(a.clone()));
        waker.wake_by_ref();
        forward.follow(&Waker::from(b.clone()));
        waker.wake_by_ref();
        forward.release();
        waker.wake();
        assert_eq!(
            (a.0.load(Ordering::SeqCst), b.0.load(Ordering::SeqCst)),
            (1, 1)
        );
    }
}
