//! A single-threaded one-shot channel: one value from one task to another on the same shard.
//! Dropping the sender without sending closes it (the receiver gets `None`).

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

struct Slot<T> {
    value: Option<T>,
    closed: bool,
    waker: Option<Waker>,
}

/// Sends the one value.
pub struct Sender<T>(Rc<RefCell<Slot<T>>>);

/// Receives the one value; resolves to `None` if the sender was dropped without sending.
pub struct Receiver<T>(Rc<RefCell<Slot<T>>>);

/// A connected pair.
pub fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let slot = Rc::new(RefCell::new(Slot {
        value: None,
        closed: false,
        waker: None,
    }));
    (Sender(slot.clone()), Receiver(slot))
}

impl<T> Sender<T> {
    /// Sends `value`; gives it back if the receiver is gone.
    pub fn send(self, value: T) -> Result<(), T> {
        if Rc::strong_count(&self.0) == 1 {
            return Err(value);
        }
        let waker = {
            let mut slot = self.0.borrow_mut();
            slot.value = Some(value);
            slot.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut slot = self.0.borrow_mut();
            slot.closed = true;
            slot.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Future for Receiver<T> {
    type Output = Option<T>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut slot = self.0.borrow_mut();
        if let Some(v) = slot.value.take() {
            return Poll::Ready(Some(v));
        }
        if slot.closed {
            return Poll::Ready(None);
        }
        slot.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Wake;

    struct Noop;
    impl Wake for Noop {
        fn wake(self: std::sync::Arc<Self>) {}
    }

    #[test]
    fn send_receive_close() {
        let waker = Waker::from(std::sync::Arc::new(Noop));
        let mut cx = Context::from_waker(&waker);
        let (tx, mut rx) = channel();
        assert!(Pin::new(&mut rx).poll(&mut cx).is_pending());
        tx.send(5).unwrap();
        assert_eq!(Pin::new(&mut rx).poll(&mut cx), Poll::Ready(Some(5)));
        let (tx, mut rx) = channel::<u8>();
        drop(tx);
        assert_eq!(Pin::new(&mut rx).poll(&mut cx), Poll::Ready(None));
        let (tx, rx) = channel();
        drop(rx);
        assert_eq!(tx.send(1), Err(1));
    }
}
