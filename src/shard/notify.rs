//! A single-threaded wake-up: tasks on one shard wait on [`Notify::notified`] until someone calls
//! [`Notify::notify`]. No atomics, no locks: it never leaves the shard's thread.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

#[derive(Default)]
struct Inner {
    generation: u64,
    waiters: Vec<Waker>,
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
        let waiters = {
            let mut inner = self.inner.borrow_mut();
            inner.generation += 1;
            std::mem::take(&mut inner.waiters)
        };
        for w in waiters {
            w.wake();
        }
    }

    /// Resolves at the first `notify` after this call.
    pub fn notified(&self) -> Notified {
        let generation = self.inner.borrow().generation;
        Notified { inner: self.inner.clone(), generation }
    }
}

/// Future returned by [`Notify::notified`].
pub struct Notified {
    inner: Rc<RefCell<Inner>>,
    generation: u64,
}

impl Future for Notified {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut inner = self.inner.borrow_mut();
        if inner.generation != self.generation {
            return Poll::Ready(());
        }
        if !inner.waiters.iter().any(|w| w.will_wake(cx.waker())) {
            inner.waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }
}
