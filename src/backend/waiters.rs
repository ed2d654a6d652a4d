//! Who waits for which request to become final, on the shard that owns it: a submit-and-wait or
//! a long-poll registers a [`Watch`] before it looks at the state, and the backend's final write
//! wakes every watch of that id. A watch is released when dropped (the client went away, or its
//! wait ended), so the table holds exactly the live waiters; it holds at most `max` of them.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use crate::id::CorrelationId;
use crate::sync::notify::{Notified, Notify};

/// One id's waiters: the wake-up they share and how many they are.
struct Entry {
    notify: Notify,
    watches: usize,
}

/// The live waiters of one shard.
pub struct Waiters {
    by_id: RefCell<HashMap<CorrelationId, Entry>>,
    live: Cell<usize>,
    max: usize,
}

impl Waiters {
    /// A table that holds at most `max` waiters at once.
    pub fn new(max: usize) -> Self {
        Waiters {
            by_id: RefCell::default(),
            live: Cell::new(0),
            max,
        }
    }

    /// Registers a waiter for `id`: it is woken by every [`Waiters::wake`] of `id` from now on.
    /// `None` when the table is full.
    pub fn watch(&self, id: &CorrelationId) -> Option<Watch<'_>> {
        if self.live.get() >= self.max {
            return None;
        }
        self.live.set(self.live.get() + 1);
        let mut by_id = self.by_id.borrow_mut();
        let entry = by_id.entry(*id).or_insert_with(|| Entry {
            notify: Notify::new(),
            watches: 0,
        });
        entry.watches += 1;
        Some(Watch {
            waiters: self,
            id: *id,
            woken: entry.notify.notified(),
        })
    }

    /// `id` is final: wakes its waiters. Costs nothing when nobody waits.
    pub fn wake(&self, id: &CorrelationId) {
        if self.live.get() == 0 {
            return;
        }
        let notify = self.by_id.borrow().get(id).map(|e| e.notify.clone());
        if let Some(n) = notify {
            n.notify();
        }
    }

    /// Waiters registered now.
    pub fn live(&self) -> usize {
        self.live.get()
    }

    fn release(&self, id: &CorrelationId) {
        self.live.set(self.live.get() - 1);
        let mut by_id = self.by_id.borrow_mut();
        if let Some(e) = by_id.get_mut(id) {
            e.watches -= 1;
            if e.watches == 0 {
                by_id.remove(id);
            }
        }
    }
}

/// One registered waiter; released when dropped.
pub struct Watch<'w> {
    waiters: &'w Waiters,
    id: CorrelationId,
    woken: Notified,
}

impl Watch<'_> {
    /// Resolves once the id was woken after this watch was registered (at once if it already
    /// was).
    pub async fn woken(&mut self) {
        (&mut self.woken).await
    }
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        self.waiters.release(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::ready;

    fn id(n: u8) -> CorrelationId {
        let mut bytes = [0; 16];
        bytes[0] = n;
        CorrelationId::from_bytes(bytes)
    }

    #[test]
    fn a_wake_before_the_wait_is_not_lost() {
        let w = Waiters::new(10);
        let mut watch = w.watch(&id(1)).unwrap();
        w.wake(&id(1));
        ready(watch.woken());
    }

    #[test]
    fn wakes_only_the_id_woken_and_every_waiter_of_it() {
        let w = Waiters::new(10);
        let mut a = w.watch(&id(1)).unwrap();
        let mut b = w.watch(&id(1)).unwrap();
        let mut other = w.watch(&id(2)).unwrap();
        w.wake(&id(1));
        ready(a.woken());
        ready(b.woken());
        assert!(crate::testing::pending(other.woken()), "id 2 was not woken");
    }

    #[test]
    fn dropped_watches_leave_nothing_and_the_bound_holds() {
        let w = Waiters::new(2);
        let a = w.watch(&id(1)).unwrap();
        let b = w.watch(&id(2)).unwrap();
        assert!(w.watch(&id(3)).is_none(), "full at 2");
        assert_eq!(w.live(), 2);
        drop(a);
        drop(b);
        assert_eq!(w.live(), 0);
        assert!(w.by_id.borrow().is_empty());
        assert!(w.watch(&id(3)).is_some());
    }
}
