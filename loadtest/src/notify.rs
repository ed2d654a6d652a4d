//! A single-task wake-up flag: one side sets it and wakes the waiter, the other awaits it. The
//! reader and writer halves of a connection run as two futures joined in one task, so this needs
//! no atomics or locks (it is `!Sync` on purpose).

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Set-and-wake flag.
#[derive(Default)]
pub struct Notify {
    set: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl Notify {
    /// Sets the flag and wakes whoever waits.
    pub fn notify(&self) {
        self.set.set(true);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Resolves once the flag is set (at once if it already is), clearing it.
    pub fn notified(&self) -> Notified<'_> {
        Notified(self)
    }
}

/// Future of [`Notify::notified`].
pub struct Notified<'a>(&'a Notify);

impl Future for Notified<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.set.replace(false) {
            Poll::Ready(())
        } else {
            self.0.waker.set(Some(cx.waker().clone()));
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn wakes_the_waiter_once_per_notify() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let n = Notify::default();
        let mut f = std::pin::pin!(n.notified());
        assert!(f.as_mut().poll(&mut cx).is_pending());
        n.notify();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(f.as_mut().poll(&mut cx).is_ready());
        // Cleared: the next wait waits again; a notify before the wait is kept.
        assert!(std::pin::pin!(n.notified()).poll(&mut cx).is_pending());
        n.notify();
        assert!(std::pin::pin!(n.notified()).poll(&mut cx).is_ready());
    }
}
