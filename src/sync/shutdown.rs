//! A shard's shutdown flag: set once by the `Shutdown` message, awaited by the accept loop, idle
//! connections and the worker dispatcher.

use std::cell::Cell;
use std::rc::Rc;

use super::notify::Notify;

/// Set once; never cleared. Clones share the flag.
#[derive(Default, Clone)]
pub struct Shutdown {
    set: Rc<Cell<bool>>,
    notify: Notify,
}

impl std::fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Shutdown({})", if self.is_set() { "set" } else { "not set" })
    }
}

impl Shutdown {
    /// Starts the shutdown.
    pub fn trigger(&self) {
        if !self.set.replace(true) {
            self.notify.notify();
        }
    }

    /// Whether shutdown has started.
    pub fn is_set(&self) -> bool {
        self.set.get()
    }

    /// Resolves once shutdown has started.
    pub async fn wait(&self) {
        while !self.is_set() {
            self.notify.notified().await;
        }
    }
}
