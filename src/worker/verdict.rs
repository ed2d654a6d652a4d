//! What the end of a run means for the request, as a pure function of the run's result, the
//! attempt and the retry policy: completed, retried later, dead-lettered or timed out. No clock,
//! no I/O: the worker measures, this decides.

use std::time::Duration;

use super::{Output, ProcessError};
use crate::backend::Settlement;
use crate::backoff::retry_delay;
use crate::clock::Timestamp;
use crate::metrics::DlqReason;
use crate::store::Outcome;

/// How a processor's run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ran {
    /// It produced an output.
    Done(Output),
    /// It failed.
    Failed(ProcessError),
    /// It ran past the job's deadline.
    TimedOut,
}

/// When retries are made and how far apart.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RetryPolicy {
    /// Retries after the first attempt before a retryable failure is dead-lettered.
    pub(crate) max_retries: u32,
    /// Delay before the first retry (doubling after each).
    pub(crate) delay_base: Duration,
    /// Longest delay.
    pub(crate) delay_max: Duration,
}

/// What a run's end means: the settlement to hand the backend (a dead letter carries its
/// reason).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Verdict {
    pub(crate) settlement: Settlement,
}

/// Timing of a finished run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timing {
    /// How long the run took.
    pub(crate) elapsed: Duration,
    /// When it ended (wall clock).
    pub(crate) ended_at: Timestamp,
}

/// Decides how delivery number `attempt` (1 for the first) of a job with `deadline` ends;
/// `budget_left` is what remains of the deadline over all attempts after this one (a retry due
/// later than that would start too late: the request times out instead). `jitter` in `[0, 1)`
/// spreads the retry delay.
#[allow(clippy::too_many_arguments)]
pub(crate) fn judge(
    ran: Ran,
    attempt: u32,
    deadline: Duration,
    budget_left: Duration,
    policy: &RetryPolicy,
    jitter: f64,
    timing: Timing,
) -> Verdict {
    let outcome = |error: Option<String>| Outcome {
        result: None,
        headers: None,
        status_code: None,
        error,
        processing_time_ms: timing.elapsed.as_millis() as u64,
        completed_at: timing.ended_at,
    };
    let settled = |settlement| Verdict { settlement };
    match ran {
        Ran::Done(output) => settled(Settlement::Completed(Outcome {
            result: Some(output.result),
            headers: output.headers,
            status_code: Some(output.status_code),
            ..outcome(None)
        })),
        Ran::Failed(ProcessError {
            message,
            retryable,
            retry_after,
            status_code,
        }) => {
            if retryable && attempt <= policy.max_retries {
                let backoff = retry_delay(attempt, policy.delay_base, policy.delay_max, jitter);
                // A processor's least delay counts up to an hour (or the longest backoff).
                let cap = policy.delay_max.max(Duration::from_secs(3600));
                let delay = retry_after.map_or(backoff, |least| least.min(cap).max(backoff));
                if delay < budget_left {
                    return settled(Settlement::RetryLater(delay));
                }
                return settled(Settlement::TimedOut(outcome(Some(deadline_message(deadline)))));
            }
            let reason = if retryable {
                DlqReason::MaxRetries
            } else {
                DlqReason::NonRetryable
            };
            // The proxy contract (docs/proxy.md): FAILED with the last status and error.
            let failed = Outcome {
                status_code,
                ..outcome(Some(message))
            };
            settled(Settlement::DeadLettered(failed, reason))
        }
        Ran::TimedOut => settled(Settlement::TimedOut(outcome(Some(deadline_message(
            deadline,
        ))))),
    }
}

fn deadline_message(deadline: Duration) -> String {
    format!(
        "Processing exceeded the deadline of {} s",
        deadline.as_secs_f64()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        max_retries: 3,
        delay_base: Duration::from_secs(1),
        delay_max: Duration::from_secs(60),
    };
    const DEADLINE: Duration = Duration::from_millis(1500);
    /// Plenty left of the deadline over all attempts.
    const BUDGET: Duration = Duration::from_secs(86_400);
    const TIMING: Timing = Timing {
        elapsed: Duration::from_millis(42),
        ended_at: Timestamp(1_700_000_000_000_000),
    };

    fn fail(retryable: bool) -> Ran {
        Ran::Failed(ProcessError {
            message: "boom".into(),
            retryable,
            retry_after: None,
            status_code: None,
        })
    }

    #[test]
    fn a_retry_after_is_the_least_delay() {
        let ran = Ran::Failed(ProcessError::retryable("busy").after(Duration::from_secs(30)));
        let v = judge(ran, 1, DEADLINE, BUDGET, &POLICY, 0.0, TIMING);
        assert_eq!(v.settlement, Settlement::RetryLater(Duration::from_secs(30)));
        // An endless one is capped.
        let ran = Ran::Failed(ProcessError::retryable("busy").after(Duration::MAX));
        let v = judge(ran, 1, DEADLINE, BUDGET, &POLICY, 0.0, TIMING);
        assert_eq!(v.settlement, Settlement::RetryLater(Duration::from_secs(3600)));
        // A shorter one does not shorten the backoff.
        let ran = Ran::Failed(ProcessError::retryable("busy").after(Duration::from_millis(1)));
        let v = judge(ran, 3, DEADLINE, BUDGET, &POLICY, 0.0, TIMING);
        assert_eq!(v.settlement, Settlement::RetryLater(Duration::from_secs(2)));
    }

    #[test]
    fn output_completes_with_its_result_and_timing() {
        let out = Output {
            result: "{\"a\":1}".into(),
            status_code: 201,
            headers: Some("{\"x\":\"y\"}".into()),
        };
        let v = judge(Ran::Done(out), 1, DEADLINE, BUDGET, &POLICY, 0.5, TIMING);
        let Settlement::Completed(o) = v.settlement else {
            panic!("{v:?}")
        };
        assert_eq!(o.result.as_deref(), Some(&b"{\"a\":1}"[..]));
        assert_eq!(o.status_code, Some(201));
        assert_eq!(o.headers.as_deref(), Some(&b"{\"x\":\"y\"}"[..]));
        assert_eq!(o.error, None);
        assert_eq!(o.processing_time_ms, 42);
        assert_eq!(o.completed_at, TIMING.ended_at);
    }

    #[test]
    fn retryable_failures_retry_with_growing_delays_then_dead_letter() {
        let mut last = Duration::ZERO;
        for attempt in 1..=POLICY.max_retries {
            // No jitter: the fixed half of the delay, which doubles per attempt.
            let v = judge(fail(true), attempt, DEADLINE, BUDGET, &POLICY, 0.0, TIMING);
            let Settlement::RetryLater(delay) = v.settlement else {
                panic!("attempt {attempt}: {v:?}")
            };
            assert!(delay > last, "attempt {attempt}: {delay:?} after {last:?}");
            assert!(delay <= POLICY.delay_max);
            last = delay;
        }
        let v = judge(
            fail(true),
            POLICY.max_retries + 1,
            DEADLINE,
            BUDGET,
            &POLICY,
            0.0,
            TIMING,
        );
        let Settlement::DeadLettered(o, DlqReason::MaxRetries) = v.settlement else {
            panic!("{v:?}")
        };
        assert_eq!(o.error.as_deref(), Some("boom"));
        assert_eq!(o.result, None);
    }

    #[test]
    fn a_failed_request_keeps_its_last_status_code() {
        let busy = || Ran::Failed(ProcessError::retryable("answered 503").with_status_code(503));
        let last = POLICY.max_retries + 1;
        let v = judge(busy(), last, DEADLINE, BUDGET, &POLICY, 0.0, TIMING);
        let Settlement::DeadLettered(o, DlqReason::MaxRetries) = v.settlement else {
            panic!("{v:?}")
        };
        assert_eq!((o.status_code, o.error.as_deref()), (Some(503), Some("answered 503")));
        // TIMEOUT names the deadline, not an attempt's status.
        let v = judge(busy(), 1, DEADLINE, Duration::ZERO, &POLICY, 0.0, TIMING);
        let Settlement::TimedOut(o) = v.settlement else {
            panic!("{v:?}")
        };
        assert_eq!(o.status_code, None);
        let v = judge(fail(false), 1, DEADLINE, BUDGET, &POLICY, 0.0, TIMING);
        let Settlement::DeadLettered(o, _) = v.settlement else {
            panic!("{v:?}")
        };
        assert_eq!(o.status_code, None, "no status without one");
    }

    #[test]
    fn permanent_failures_dead_letter_at_once() {
        let v = judge(fail(false), 1, DEADLINE, BUDGET, &POLICY, 0.3, TIMING);
        assert!(matches!(
            v.settlement,
            Settlement::DeadLettered(_, DlqReason::NonRetryable)
        ));
    }

    #[test]
    fn no_retries_configured_means_first_failure_is_final() {
        let none = RetryPolicy {
            max_retries: 0,
            ..POLICY
        };
        let v = judge(fail(true), 1, DEADLINE, BUDGET, &none, 0.3, TIMING);
        assert!(matches!(
            v.settlement,
            Settlement::DeadLettered(_, DlqReason::MaxRetries)
        ));
    }

    #[test]
    fn a_retry_that_would_start_past_the_deadline_times_out_instead() {
        // First retry: ~0.5-1 s of backoff, with 0.2 s of the deadline left.
        let v = judge(fail(true), 1, DEADLINE, Duration::from_millis(200), &POLICY, 0.0, TIMING);
        let Settlement::TimedOut(o) = v.settlement else {
            panic!("{v:?}")
        };
        assert_eq!(o.error.as_deref(), Some("Processing exceeded the deadline of 1.5 s"));
    }

    #[test]
    fn timeout_names_the_deadline() {
        let v = judge(Ran::TimedOut, 2, DEADLINE, BUDGET, &POLICY, 0.3, TIMING);
        let Settlement::TimedOut(o) = v.settlement else {
            panic!("{v:?}")
        };
        assert_eq!(
            o.error.as_deref(),
            Some("Processing exceeded the deadline of 1.5 s")
        );
        assert_eq!(o.processing_time_ms, 42);
    }
}
