//! What travels through a backend: a job (a queued request) and its deliveries to worker slots.

use std::time::Duration;

use bytes::Bytes;

use crate::clock::Timestamp;
use crate::auth::Owner;
use crate::id::{CorrelationId, IdMinter};

/// Per-request options from the submit body's `metadata`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// 0..=9.
    pub priority: u8,
    /// Processing deadline.
    pub timeout: Duration,
    /// Client-declared retry count (informational).
    pub retry_count: u32,
    /// The processor (or, in proxy mode, the upstream endpoint) to run the job; `None` runs the
    /// default one.
    pub endpoint: Option<String>,
    /// Proxy-mode HTTP method.
    pub method: Option<String>,
}

/// A queued request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Its id.
    pub id: CorrelationId,
    /// The `payload` object, byte for byte as the client sent it.
    pub payload: Bytes,
    /// The `headers` object as JSON text, if given.
    pub headers: Option<Bytes>,
    /// Options.
    pub metadata: Metadata,
    /// When it was accepted.
    pub submitted_at: Timestamp,
    /// When its first attempt started (`None` before it): `metadata.timeout` bounds all
    /// attempts together from then.
    pub first_started_at: Option<Timestamp>,
}

/// A job handed to a worker slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The job.
    pub job: Job,
    /// 1 on the first delivery, +1 per retry.
    pub attempt: u32,
    /// The stream entry id (Redis), acknowledged when the delivery is finished.
    pub entry_id: Option<Bytes>,
    /// The entry may have been delivered before (Redis: read again from a pending list, or
    /// taken over from another consumer); a first delivery of an entry is not.
    pub redelivered: bool,
}

impl NewJob {
    /// A fresh id for this job from `minter`, carrying its owner's tag.
    pub fn new_id(&self, minter: &mut IdMinter) -> CorrelationId {
        let id = minter.mint();
        self.owner.map_or(id, |o| o.stamp(id))
    }

    /// The job to queue once the backend has given it `id` at `now`.
    pub fn into_job(self, id: CorrelationId, now: Timestamp) -> Job {
        Job {
            id,
            payload: self.payload,
            headers: self.headers,
            metadata: self.metadata,
            submitted_at: now,
            first_started_at: None,
        }
    }
}

/// A request as submit hands it to a backend: the backend gives it an id and a submit time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    /// The `payload` object, byte for byte as the client sent it.
    pub payload: Bytes,
    /// The `headers` object as JSON text, if given.
    pub headers: Option<Bytes>,
    /// Options.
    pub metadata: Metadata,
    /// The API key it belongs to, stamped into its id (`None` with API keys off).
    pub owner: Option<Owner>,
}
