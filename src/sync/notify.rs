//! A single-threaded wake-up: tasks on one shard wait on [`Notify::notified`] until someone calls
//! [`Notify::notify`]. No atomics, no locks: it never leaves the shard's thread.
//!
//! Each waiting future owns one slot in a slab and frees it when dropped, so futures abandoned by a
//! `select!` (an idle read racing shutdown, for one) leave nothing behind: the slab holds exactly
//! the live waiters, and `notify` costs O(live waiters).

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

#[derive(Default)]
struct Inner {
    generation: u64,
    slots: Vec<Option<Waker>>,
    free: Vec<usize>,
}

/// Wakes every task waiting at the time of the call.
#[derive(Clone, Default)]
pub struct Notify {
    inner: Rc<RefCell<Inner>>,
}

impl Notify {
    /// A notify with no waiters.
    pub fn new() -> Self {
        Notify::default()
    }

    /// Wakes all current waiters.
    pub fn notify(&self) {
        let wakers: Vec<Waker> = {
            let mut inner = self.inner.borrow_mut();
            inner.generation += 1;
            inner.slots.iter_mut().filter_map(Option::take).collect()
        };
        for w in wakers {
            w.wake();
        }
    }

    /// Resolves at the first `notify` after this call.
    pub fn notified(&self) -> Notified {
        let generation = self.inner.borrow().generation;
        Notified {
            inner: self.inner.clone(),
            generation,
            slot: None,
        }
    }

    #[cfg(test)]
    fn slots_in_use(&self) -> usize {
        let inner = self.inner.borrow();
        inner.slots.len() - inner.free.len()
    }
}

/// Future returned by [`Notify::notified`].
pub struct Notified {
    inner: Rc<RefCell<Inner>>,
    generation: u64,
    slot: Option<usize>,
}

impl Future for Notified {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let mut inner = this.inner.borrow_mut();
        if inner.generation != this.generation {
            return Poll::Ready(());
        }
        match this.slot {
            Some(i) => inner.slots[i] = Some(cx.waker().clone()),
            None => {
                let waker = Some(cx.waker().clone());
                let i = match inner.free.pop() {
                    Some(i) => {
                        inner.slots[i] = waker;
                        i
                    }
                    None => {
                        inner.slots.push(waker);
                        inner.slots.len() - 1
                    }
                };
                this.slot = Some(i);
            }
        }
        Poll::Pending
    }
}

impl Drop for Notified {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            let mut inner = self.inner.borrow_mut();
            inner.slots[i] = None;
            inner.free.push(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Wake;

    struct Count(std::sync::atomic::AtomicUsize);
    impl Wake for Count {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    #[test]
    fn wakes_waiters_and_frees_abandoned_slots() {
        let n = Notify::new();
        let count = std::sync::Arc::new(Count(Default::default()));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        for _ in 0..1000 {
            let mut f = Box::pin(n.notified());
            assert!(f.as_mut().poll(&mut cx).is_pending());
        } // each dropped unresolved
        assert_eq!(n.slots_in_use(), 0);
        let mut a = Box::pin(n.notified());
        let mut b = Box::pin(n.notified());
        assert!(a.as_mut().poll(&mut cx).is_pending());
        assert!(b.as_mut().poll(&mut cx).is_pending());
        n.notify();
        assert_eq!(count.0.load(std::sync::atomic::Ordering::Relaxed), 2);
        assert!(a.as_mut().poll(&mut cx).is_ready());
        assert!(b.as_mut().poll(&mut cx).is_ready());
        // A future created after the notify waits for the next one.
        let mut c = Box::pin(n.notified());
        assert!(c.as_mut().poll(&mut cx).is_pending());
    }
}
