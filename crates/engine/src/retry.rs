//! Retry policy: a pure function of the job's plan and the attempt so far.
//!
//! Owns: whether a failed attempt is retried and how long to wait first.
//! Must not: sleep, read the clock or touch state; the runner asks and
//! acts.

use jiff::{SignedDuration, Timestamp};

/// What the runner knows after a failed attempt.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Failed {
    /// Retries already made (0 after the first attempt).
    pub retries_used: u64,
    /// The job's `retries`.
    pub retries_allowed: u64,
    /// The job's epsilon: no retry starts later than this after `since`.
    pub epsilon: Option<SignedDuration>,
    /// The schedule point, or the start of the run when it has none.
    pub since: Timestamp,
    pub now: Timestamp,
    /// The job's `retry_delay` (doubled each retry).
    pub base_delay: Option<SignedDuration>,
    /// The engine's cap on one delay.
    pub max_delay: SignedDuration,
    /// The engine's floor on one delay.
    pub min_delay: SignedDuration,
}

/// `None`: give up. `Some(d)`: retry after `d`, never less than the
/// engine's minimum.
pub(crate) fn next_retry(f: Failed) -> Option<SignedDuration> {
    backoff(f).map(|d| d.max(f.min_delay))
}

fn backoff(f: Failed) -> Option<SignedDuration> {
    if f.retries_used >= f.retries_allowed {
        return None;
    }
    if let Some(eps) = f.epsilon
        && f.now.duration_since(f.since) > eps
    {
        return None;
    }
    let Some(base) = f.base_delay else {
        return Some(SignedDuration::ZERO);
    };
    let shift = u32::try_from(f.retries_used.min(30)).unwrap_or(30);
    let factor = 1i32.checked_shl(shift).unwrap_or(i32::MAX);
    Some(
        base.checked_mul(factor)
            .unwrap_or(f.max_delay)
            .min(f.max_delay),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(retries_used: u64) -> Failed {
        let t: Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
        Failed {
            retries_used,
            retries_allowed: 5,
            epsilon: None,
            since: t,
            now: t,
            base_delay: Some(SignedDuration::from_secs(10)),
            max_delay: SignedDuration::from_secs(60),
            min_delay: SignedDuration::ZERO,
        }
    }

    #[test]
    fn delays_double_up_to_the_cap() {
        let d: Vec<_> = (0..5)
            .map(|n| next_retry(failed(n)).map(|d| d.as_secs()))
            .collect();
        assert_eq!(d, [Some(10), Some(20), Some(40), Some(60), Some(60)]);
    }

    #[test]
    fn gives_up_after_the_allowed_retries_or_past_epsilon() {
        assert_eq!(next_retry(failed(5)), None);
        let late = Failed {
            epsilon: Some(SignedDuration::from_secs(30)),
            now: failed(0).since + SignedDuration::from_secs(31),
            ..failed(0)
        };
        assert_eq!(next_retry(late), None);
        let in_time = Failed {
            now: failed(0).since + SignedDuration::from_secs(30),
            ..late
        };
        assert!(next_retry(in_time).is_some());
    }

    #[test]
    fn the_engine_minimum_holds_without_a_job_delay() {
        let f = Failed {
            base_delay: None,
            min_delay: SignedDuration::from_millis(100),
            ..failed(0)
        };
        assert_eq!(next_retry(f), Some(SignedDuration::from_millis(100)));
        let longer = Failed {
            min_delay: SignedDuration::from_millis(100),
            ..failed(1)
        };
        assert_eq!(next_retry(longer), Some(SignedDuration::from_secs(20)));
    }

    #[test]
    fn no_delay_means_at_once_and_huge_counts_do_not_overflow() {
        let f = Failed {
            base_delay: None,
            ..failed(0)
        };
        assert_eq!(next_retry(f), Some(SignedDuration::ZERO));
        let big = Failed {
            retries_used: u64::MAX - 1,
            retries_allowed: u64::MAX,
            ..failed(0)
        };
        assert_eq!(next_retry(big), Some(SignedDuration::from_secs(60)));
    }
}
