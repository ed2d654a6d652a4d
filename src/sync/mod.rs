//! The primitives a shard's tasks synchronise with. All are single-threaded (`Rc`, `Cell`): they
//! never leave the shard's thread. `notify` wakes waiting tasks, `oneshot` hands one value to one
//! waiter, `deadline` bounds a future with a reusable timer, `shutdown` is the shard's stop flag.

pub mod deadline;
pub mod notify;
pub mod oneshot;
pub mod shutdown;
