//! When to retry and for how long to wait: a pure decision, no sleeping here.
//!
//! This is the only module that touches the `backoff` crate (flagged unmaintained,
//! RUSTSEC-2025-0012), so it can be swapped without touching anything else.

use std::time::Duration;

use backoff::ExponentialBackoff;
use backoff::backoff::Backoff;

use crate::handler::ErrorClass;

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decision {
    /// Try again after this delay.
    Retry(Duration),
    /// Give up: write a dead letter.
    DeadLetter,
}

/// A retry policy that cannot be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The initial backoff is zero.
    #[error("the initial backoff must be greater than zero")]
    ZeroInitialBackoff,
    /// The maximum backoff is below the initial one.
    #[error("the maximum backoff ({max:?}) is below the initial backoff ({initial:?})")]
    CapBelowInitial {
        /// The initial backoff given.
        initial: Duration,
        /// The maximum backoff given.
        max: Duration,
    },
    /// The multiplier given is below 1, infinite or NaN.
    #[error("the multiplier must be a finite number of at least 1, got {0}")]
    BadMultiplier(f64),
    /// The jitter factor given is outside 0 to 1, or NaN.
    #[error("the jitter must be within 0..=1, got {0}")]
    BadJitter(f64),
}

/// Exponential backoff with a retry budget.
///
/// The default is the spec's: 3 retries after 1 s, 2 s and 4 s, capped at 30 s, no jitter.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    max_retries: u32,
    initial: Duration,
    multiplier: f64,
    max: Duration,
    jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 3,
            initial: Duration::from_secs(1),
            multiplier: 2.0,
            max: Duration::from_secs(30),
            jitter: 0.0,
        }
    }
}

impl RetryPolicy {
    /// `max_retries` retries, the first after `initial`, each next one `multiplier` times
    /// longer, never longer than `max`. Deterministic until [`with_jitter`](Self::with_jitter).
    pub fn new(
        max_retries: u32,
        initial: Duration,
        multiplier: f64,
        max: Duration,
    ) -> Result<Self, PolicyError> {
        if initial.is_zero() {
            return Err(PolicyError::ZeroInitialBackoff);
        }
        if max < initial {
            return Err(PolicyError::CapBelowInitial { initial, max });
        }
        if !multiplier.is_finite() || multiplier < 1.0 {
            return Err(PolicyError::BadMultiplier(multiplier));
        }
        Ok(Self {
            max_retries,
            initial,
            multiplier,
            max,
            jitter: 0.0,
        })
    }

    /// Spreads each delay uniformly over ±`factor` of its value (0.5: 50% below to 50% above),
    /// so that many consumers failing together do not retry together.
    pub fn with_jitter(mut self, factor: f64) -> Result<Self, PolicyError> {
        if !(0.0..=1.0).contains(&factor) {
            return Err(PolicyError::BadJitter(factor));
        }
        self.jitter = factor;
        Ok(self)
    }

    /// Retries allowed after a record's first failed attempt, for
    /// [`ErrorClass::Retryable`] failures.
    pub fn max_retries(&self) -> u32 {
        self.max_retries
    }

    /// The wait before the first retry, before jitter.
    pub fn initial_backoff(&self) -> Duration {
        self.initial
    }

    /// The cap on a wait, before jitter: a jittered wait may exceed it by up to the jitter
    /// factor.
    pub fn max_backoff(&self) -> Duration {
        self.max
    }

    /// How many times longer each wait is than the one before, until the cap.
    pub fn multiplier(&self) -> f64 {
        self.multiplier
    }

    /// Decides after the `failed_attempts`-th failed attempt (1 for the first) of a record.
    ///
    /// For [`ErrorClass::Unavailable`], `failed_attempts` counts the outage's attempts in a row
    /// instead: the answer is always to wait (capped backoff, no budget), never a dead letter.
    pub fn decide(&self, failed_attempts: u32, class: ErrorClass) -> Decision {
        let retries_made = failed_attempts.saturating_sub(1);
        match class {
            ErrorClass::Unavailable => Decision::Retry(self.delay(retries_made)),
            ErrorClass::Retryable if retries_made < self.max_retries => {
                Decision::Retry(self.delay(retries_made))
            }
            ErrorClass::Retryable | ErrorClass::Permanent => Decision::DeadLetter,
        }
    }

    /// The wait before retry number `retry` (0 for the first): `initial × multiplier^retry`,
    /// capped, jittered if asked. Also paces retries that have no budget, such as writing a
    /// dead letter while the sink is down.
    pub fn delay(&self, retry: u32) -> Duration {
        let mut schedule = ExponentialBackoff {
            current_interval: self.initial,
            initial_interval: self.initial,
            randomization_factor: self.jitter,
            multiplier: self.multiplier,
            max_interval: self.max,
            max_elapsed_time: None,
            ..ExponentialBackoff::default()
        };
        // Step the schedule to the wanted retry; once at the cap it stays there, so stop early.
        for _ in 0..retry {
            if schedule.current_interval >= self.max {
                break;
            }
            schedule.next_backoff();
        }
        // With no elapsed-time limit the schedule never ends; the cap is the safe fallback.
        schedule.next_backoff().unwrap_or(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn the_default_is_one_two_four_then_dead_letter() {
        let policy = RetryPolicy::default();
        let decisions: Vec<_> = (1..=4)
            .map(|n| policy.decide(n, ErrorClass::Retryable))
            .collect();
        assert_eq!(
            decisions,
            vec![
                Decision::Retry(secs(1)),
                Decision::Retry(secs(2)),
                Decision::Retry(secs(4)),
                Decision::DeadLetter
            ]
        );
    }

    #[test]
    fn permanent_failures_are_never_retried() {
        assert_eq!(
            RetryPolicy::default().decide(1, ErrorClass::Permanent),
            Decision::DeadLetter
        );
    }

    #[test]
    fn an_outage_is_waited_out_without_a_budget() {
        let policy = RetryPolicy::new(3, secs(1), 2.0, secs(30)).unwrap();
        let decisions: Vec<_> = [1, 2, 3, 4, 10, 1000, u32::MAX]
            .into_iter()
            .map(|n| policy.decide(n, ErrorClass::Unavailable))
            .collect();
        assert_eq!(
            decisions,
            [1, 2, 4, 8, 30, 30, 30].map(|s| Decision::Retry(secs(s)))
        );
    }

    #[test]
    fn delays_are_capped() {
        let policy = RetryPolicy::new(6, secs(1), 2.0, secs(3)).unwrap();
        let delays: Vec<_> = (0..6).map(|r| policy.delay(r)).collect();
        assert_eq!(
            delays,
            vec![secs(1), secs(2), secs(3), secs(3), secs(3), secs(3)]
        );
        assert_eq!(policy.delay(u32::MAX), secs(3));
    }

    #[test]
    fn zero_retries_dead_letters_on_the_first_failure() {
        let policy = RetryPolicy::new(0, secs(1), 2.0, secs(1)).unwrap();
        assert_eq!(
            policy.decide(1, ErrorClass::Retryable),
            Decision::DeadLetter
        );
    }

    #[test]
    fn fractional_multipliers_and_millisecond_delays_are_exact() {
        let policy = RetryPolicy::new(3, Duration::from_millis(10), 1.5, secs(1)).unwrap();
        let delays: Vec<_> = (0..3).map(|r| policy.delay(r)).collect();
        assert_eq!(
            delays,
            vec![
                Duration::from_millis(10),
                Duration::from_millis(15),
                Duration::from_micros(22_500)
            ]
        );
    }

    #[test]
    fn jitter_stays_within_its_band() {
        let policy = RetryPolicy::default().with_jitter(0.5).unwrap();
        for _ in 0..200 {
            let d = policy.delay(1);
            assert!(d >= Duration::from_millis(1000) && d <= Duration::from_millis(3001));
        }
    }

    #[test]
    fn invalid_policies_are_refused() {
        assert_eq!(
            RetryPolicy::new(3, Duration::ZERO, 2.0, secs(1)),
            Err(PolicyError::ZeroInitialBackoff)
        );
        assert!(matches!(
            RetryPolicy::new(3, secs(2), 2.0, secs(1)),
            Err(PolicyError::CapBelowInitial { .. })
        ));
        assert!(RetryPolicy::new(3, secs(1), 0.5, secs(1)).is_err());
        assert!(RetryPolicy::new(3, secs(1), f64::NAN, secs(1)).is_err());
        assert!(RetryPolicy::default().with_jitter(1.5).is_err());
    }
}
