//! The state of one request and the rules for moving it: `PENDING → PROCESSING → COMPLETED |
//! FAILED | TIMEOUT`, or `PENDING → CANCELLED` (a client cancelled it before it started). A final state is never left, so a late or duplicate writer (a redelivery, a
//! slot that finished after its deadline) cannot move a request backwards.

use bytes::Bytes;

use crate::clock::Timestamp;

/// Where a request is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Accepted and queued, not yet picked up by a worker slot.
    Pending,
    /// A worker slot holds it (also while it waits for a retry).
    Processing,
    /// Processed successfully; the result is stored.
    Completed,
    /// Failed for good, after its retries (and sent to the dead-letter queue).
    Failed,
    /// Processing ran past the request's deadline.
    Timeout,
    /// Cancelled by the client before a worker took it; never processed.
    Cancelled,
}

impl Status {
    /// The API's spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "PENDING",
            Status::Processing => "PROCESSING",
            Status::Completed => "COMPLETED",
            Status::Failed => "FAILED",
            Status::Timeout => "TIMEOUT",
            Status::Cancelled => "CANCELLED",
        }
    }

    /// Final states are never left.
    pub const fn is_final(self) -> bool {
        matches!(
            self,
            Status::Completed | Status::Failed | Status::Timeout | Status::Cancelled
        )
    }

    /// Whether the state machine allows `self → to`. Re-entering `Processing` is allowed
    /// (redelivery, retries); nothing leaves a final state.
    pub const fn may_become(self, to: Status) -> bool {
        match (self, to) {
            (Status::Pending, Status::Pending) => false,
            (Status::Pending, _) => true,
            (Status::Processing, Status::Pending | Status::Cancelled) => false,
            (Status::Processing, _) => true,
            _ => false,
        }
    }
}

/// What processing produced, kept once the request is final.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The result object as JSON text (`{"output": ..., "processed_at": ...}`), if any.
    pub result: Option<Bytes>,
    /// Response headers from the processor as a JSON object text, if any.
    pub headers: Option<Bytes>,
    /// The processor's status code (200 for the built-in operations), if any.
    pub status_code: Option<u16>,
    /// The error message for `FAILED` and `TIMEOUT`.
    pub error: Option<String>,
    /// Wall time of the last processing attempt.
    pub processing_time_ms: u64,
    /// When the request became final.
    pub completed_at: Timestamp,
}

/// The state of one request as status and response lookups see it.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestState {
    /// Current phase.
    pub status: Status,
    /// When it was accepted.
    pub submitted_at: Timestamp,
    /// When the state last changed.
    pub updated_at: Timestamp,
    /// Set once the request is final (boxed: most states in a busy table are small).
    pub outcome: Option<Box<Outcome>>,
}

/// A transition the state machine refused; the state is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// The state the request was in.
    pub from: Status,
    /// The state that was asked for.
    pub to: Status,
}

impl RequestState {
    /// A freshly accepted request.
    pub fn pending(now: Timestamp) -> Self {
        RequestState {
            status: Status::Pending,
            submitted_at: now,
            updated_at: now,
            outcome: None,
        }
    }

    /// A request submitted at `submitted_at` that a worker slot took at `now`.
    pub fn processing(submitted_at: Timestamp, now: Timestamp) -> Self {
        RequestState {
            status: Status::Processing,
            submitted_at,
            updated_at: now,
            outcome: None,
        }
    }

    /// A worker slot took the request.
    pub fn start(&mut self, now: Timestamp) -> Result<(), Refused> {
        self.advance(Status::Processing, now)?;
        Ok(())
    }

    /// The request is final with `outcome`; `to` must be a final status.
    pub fn finish(&mut self, to: Status, outcome: Outcome) -> Result<(), Refused> {
        debug_assert!(to.is_final());
        self.advance(to, outcome.completed_at)?;
        self.outcome = Some(Box::new(outcome));
        Ok(())
    }

    fn advance(&mut self, to: Status, now: Timestamp) -> Result<(), Refused> {
        if !self.status.may_become(to) {
            return Err(Refused {
                from: self.status,
                to,
            });
        }
        self.status = to;
        self.updated_at = now;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Status::*;

    fn outcome(at: u64) -> Outcome {
        Outcome {
            result: Some(Bytes::from_static(b"{\"output\":1}")),
            headers: None,
            status_code: Some(200),
            error: None,
            processing_time_ms: 1,
            completed_at: Timestamp(at),
        }
    }

    #[test]
    fn transition_table() {
        let all = [Pending, Processing, Completed, Failed, Timeout];
        let allowed = [
            (Pending, Processing),
            (Pending, Completed),
            (Pending, Failed),
            (Pending, Timeout),
            (Processing, Processing),
            (Processing, Completed),
            (Processing, Failed),
            (Processing, Timeout),
        ];
        for from in all {
            for to in all {
                assert_eq!(
                    from.may_become(to),
                    allowed.contains(&(from, to)),
                    "{from:?} -> {to:?}"
                );
            }
        }
    }

    #[test]
    fn lifecycle_updates_timestamps() {
        let mut s = RequestState::pending(Timestamp(10));
        s.start(Timestamp(20)).unwrap();
        assert_eq!((s.status, s.updated_at), (Processing, Timestamp(20)));
        s.start(Timestamp(25)).unwrap(); // redelivery
        s.finish(Completed, outcome(30)).unwrap();
        assert_eq!(
            (s.status, s.updated_at, s.submitted_at),
            (Completed, Timestamp(30), Timestamp(10))
        );
    }

    #[test]
    fn final_states_are_never_left() {
        for fin in [Completed, Failed, Timeout] {
            let mut s = RequestState::pending(Timestamp(1));
            s.finish(fin, outcome(2)).unwrap();
            let before = s.clone();
            assert_eq!(
                s.start(Timestamp(3)),
                Err(Refused {
                    from: fin,
                    to: Processing
                })
            );
            assert!(s.finish(Completed, outcome(4)).is_err());
            assert_eq!(s, before);
        }
    }
}
