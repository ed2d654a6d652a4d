//! The primitives a shard's tasks synchronise with. They never leave the shard's thread; all but
//! `forward` (a waker must be `Send + Sync`) are single-threaded (`Rc`, `Cell`). `notify` wakes waiting tasks, `oneshot` hands one value to one
//! waiter, `deadline` bounds a future with a reusable timer, `forward` is a waker that follows
//! the task polling, `shutdown` is the shard's stop flag.

pub mod deadline;
pub mod forward;
pub mod notify;
pub mod oneshot;
pub mod shutdown;
