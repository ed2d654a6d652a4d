//! Request state: what each request's status and result are, owned by the shard its id maps to.
//! `state` holds the lifecycle rules, `table` one shard's map of states with expiry, `slots` the
//! storage of the states of ids the shard minted, `expiry` the queue of their deadlines.

pub mod expiry;
pub mod slots;
pub mod state;
pub mod table;

pub use state::{Outcome, RequestState, Status};
pub use table::{StateTable, UpdateError};
