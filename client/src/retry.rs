//! Bounded retries of idempotent requests across node failover.
//!
//! [`Backoff`] is the sans-I/O schedule (the caller measures time and sleeps);
//! [`with_retries`] drives it around one request attempt.

use crate::ClientError;
use shoal_protocol::ErrorCode;
use std::time::Duration;

/// Total time an idempotent request (create, list, get, cancel, send before `Accepted`)
/// keeps retrying after failover errors, and how long a follow keeps reconnecting without
/// delivering an event, in ms. No new attempt starts after it; the last error is returned.
pub const RETRY_BUDGET_MS: u64 = 20_000;
/// Wait before the first retry of a request, in ms (doubles per retry).
pub const RETRY_BACKOFF_MIN_MS: u64 = 100;
/// Longest wait between two retries of a request, in ms.
pub const RETRY_BACKOFF_MAX_MS: u64 = 1_000;

/// Exponential backoff bounded by a total time budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backoff {
    min_ms: u64,
    max_ms: u64,
    budget_ms: u64,
    failures: u32,
}

impl Backoff {
    /// A schedule waiting `min_ms`, doubling up to `max_ms`, while within `budget_ms`.
    pub(crate) fn new(min_ms: u64, max_ms: u64, budget_ms: u64) -> Self {
        Backoff {
            min_ms,
            max_ms,
            budget_ms,
            failures: 0,
        }
    }

    /// Records a failure `elapsed_ms` after the first attempt started. Returns the wait
    /// before the next attempt, or `None` when that attempt would start past the budget.
    pub(crate) fn next_delay_ms(&mut self, elapsed_ms: u64) -> Option<u64> {
        let doublings = self.failures.min(16);
        let delay_ms = self.min_ms.saturating_mul(1 << doublings).min(self.max_ms);
        if elapsed_ms.saturating_add(delay_ms) > self.budget_ms {
            return None;
        }
        self.failures += 1;
        Some(delay_ms)
    }

    /// Retries scheduled so far.
    pub(crate) fn retries(&self) -> u32 {
        self.failures
    }
}

/// Whether a failed idempotent request should be sent again, probably to another node: the
/// connection broke, no node could be reached, or the node asked to retry shortly (an
/// election or a leadership move is under way).
pub(crate) fn is_failover_error(err: &ClientError) -> bool {
    match err {
        ClientError::ConnectionLost(_) | ClientError::Connect { .. } => true,
        ClientError::Server(wire) | ClientError::Rejected(wire) => {
            wire.code == ErrorCode::Unavailable
        }
        _ => false,
    }
}

/// Runs `attempt` until it succeeds, fails with an error that is not a failover error, or
/// [`RETRY_BUDGET_MS`] is spent; then returns its last result. Every attempt must carry
/// the same request (and request id), so the node can deduplicate.
pub(crate) async fn with_retries<T, F, Fut>(
    what: &'static str,
    mut attempt: F,
) -> Result<T, ClientError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    let started = tokio::time::Instant::now();
    let mut backoff = Backoff::new(RETRY_BACKOFF_MIN_MS, RETRY_BACKOFF_MAX_MS, RETRY_BUDGET_MS);
    loop {
        let err = match attempt().await {
            Ok(value) => return Ok(value),
            Err(err) => err,
        };
        if !is_failover_error(&err) {
            return Err(err);
        }
        let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let Some(delay_ms) = backoff.next_delay_ms(elapsed_ms) else {
            tracing::debug!(what, retries = backoff.retries(), elapsed_ms, error = %err, "retry budget spent; giving up");
            return Err(err);
        };
        tracing::debug!(what, retry = backoff.retries(), delay_ms, error = %err, "retrying");
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_protocol::WireError;

    #[test]
    fn backoff_doubles_from_100_ms_to_1_s() {
        let mut backoff = Backoff::new(RETRY_BACKOFF_MIN_MS, RETRY_BACKOFF_MAX_MS, RETRY_BUDGET_MS);
        let delays: Vec<u64> = (0..7).filter_map(|_| backoff.next_delay_ms(0)).collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1_000, 1_000, 1_000]);
        assert_eq!(backoff.retries(), 7);
    }

    #[test]
    fn no_retry_starts_past_the_budget() {
        let mut backoff = Backoff::new(100, 1_000, 20_000);
        assert_eq!(backoff.next_delay_ms(19_900), Some(100));
        assert_eq!(backoff.next_delay_ms(19_850), None);
        // Refusing does not count as a retry.
        assert_eq!(backoff.retries(), 1);
        assert_eq!(backoff.next_delay_ms(25_000), None);
        assert_eq!(backoff.next_delay_ms(u64::MAX), None);
    }

    #[test]
    fn many_failures_do_not_overflow() {
        let mut backoff = Backoff::new(100, 1_000, u64::MAX);
        for _ in 0..100 {
            assert!(backoff.next_delay_ms(0).is_some_and(|d| d <= 1_000));
        }
    }

    #[test]
    fn only_failover_errors_are_retried() {
        let lost = ClientError::ConnectionLost("reset".into());
        let connect = ClientError::Connect {
            address: "a:1".into(),
            message: "refused".into(),
        };
        let unavailable = ClientError::Server(WireError::new(ErrorCode::Unavailable, "election"));
        let not_ready = ClientError::Rejected(WireError::new(ErrorCode::Unavailable, "starting"));
        for err in [&lost, &connect, &unavailable, &not_ready] {
            assert!(is_failover_error(err), "{err}");
        }
        let not_found = ClientError::Server(WireError::not_found("gone"));
        let busy = ClientError::Server(WireError::new(ErrorCode::Busy, "a turn is running"));
        let bad_token = ClientError::Rejected(WireError::unauthorized("expired"));
        let timeout = ClientError::Timeout {
            what: "x",
            after_ms: 1,
        };
        for err in [&not_found, &busy, &bad_token, &timeout] {
            assert!(!is_failover_error(err), "{err}");
        }
    }

    #[tokio::test]
    async fn with_retries_returns_the_last_error_of_a_non_failover_failure() {
        let mut calls = 0u32;
        let result: Result<(), _> = with_retries("test", || {
            calls += 1;
            let err = if calls < 3 {
                ClientError::Server(WireError::new(ErrorCode::Unavailable, "election"))
            } else {
                ClientError::Server(WireError::not_found("gone"))
            };
            async move { Err(err) }
        })
        .await;
        assert_eq!(calls, 3);
        assert_eq!(
            result.err().and_then(|e| e.code()),
            Some(ErrorCode::NotFound)
        );
    }

    #[test]
    fn a_request_that_keeps_failing_retries_for_20_s_then_stops() {
        // Attempts that fail at once: the schedule alone spends the budget.
        let mut backoff = Backoff::new(RETRY_BACKOFF_MIN_MS, RETRY_BACKOFF_MAX_MS, RETRY_BUDGET_MS);
        let mut elapsed_ms = 0;
        while let Some(delay_ms) = backoff.next_delay_ms(elapsed_ms) {
            elapsed_ms += delay_ms;
        }
        // 100 + 200 + 400 + 800 = 1500 ms, then 1 s each while within 20 s: 18 more.
        assert_eq!(backoff.retries(), 4 + 18);
        assert_eq!(elapsed_ms, 19_500);
    }
}
