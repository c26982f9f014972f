//! What to do after a refused send (pure): retry later, send the template instead, or give
//! up; and how long to wait before the next try.
//!
//! Keyed on Meta's `code` first (the reference, §5.4: do not branch on the HTTP status),
//! then on the HTTP status for an answer without a code.

use crate::meta::SendError;
use std::time::Duration;

/// What a refused send leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Transient: queue it again with backoff (until the attempts run out).
    Retry,
    /// Outside the 24-hour window (131047): send the number's template instead, once.
    Template,
    /// Permanent: the row fails with the code.
    Fail,
}

/// Codes a later try can succeed on: throughput (130429), pair rate (131056), generic
/// (131000), service unavailable (131016), Graph's unknown (1) and temporary (2) errors.
pub const RETRYABLE_CODES: [u32; 6] = [130429, 131056, 131000, 131016, 1, 2];
/// Codes no retry can fix: undeliverable (131026), marketing opt-out (131050), invalid
/// parameter (100), bad token (190), policy block (368).
pub const PERMANENT_CODES: [u32; 5] = [131026, 131050, 100, 190, 368];
/// Outside the customer-service window.
pub const OUTSIDE_WINDOW_CODE: u32 = 131047;

pub fn classify(error: &SendError) -> Decision {
    match error {
        SendError::Timeout | SendError::Connection(_) => Decision::Retry,
        SendError::Meta {
            code, http_status, ..
        } => classify_code(*code, *http_status),
        SendError::Unexpected { http_status } => classify_status(*http_status),
    }
}

pub fn classify_code(code: u32, http_status: u16) -> Decision {
    if code == OUTSIDE_WINDOW_CODE {
        Decision::Template
    } else if RETRYABLE_CODES.contains(&code) {
        Decision::Retry
    } else if PERMANENT_CODES.contains(&code) {
        Decision::Fail
    } else {
        classify_status(http_status)
    }
}

/// Any 5xx and 429 are transient; any other status is not.
fn classify_status(http_status: u16) -> Decision {
    if http_status >= 500 || http_status == 429 {
        Decision::Retry
    } else {
        Decision::Fail
    }
}

/// How retries are spaced and when they stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first wait (before jitter).
    pub base: Duration,
    /// No wait is longer.
    pub cap: Duration,
    /// Attempts in all, the first included; a row that fails its last one is `failed`.
    pub attempts_max: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(300),
            attempts_max: 8,
        }
    }
}

impl Backoff {
    /// The wait after failed attempt number `attempt` (1-based): `base·2^(attempt-1)`
    /// capped, with "equal jitter": half of it fixed, the other half scaled by
    /// `jitter` ∈ [0, 1]. So each wait is in [ceiling/2, ceiling], never 0, and retries of
    /// many rows refused at once spread out.
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let exponent = attempt.saturating_sub(1).min(32);
        let ceiling = self
            .base
            .checked_mul(1u32 << exponent.min(31))
            .unwrap_or(self.cap)
            .min(self.cap);
        let half = ceiling / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }
}

/// A jitter in [0, 1] from the standard library's randomly keyed hasher (no extra
/// dependency; not for secrets).
pub fn random_jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(code: u32, http_status: u16) -> SendError {
        SendError::Meta {
            http_status,
            code,
            subcode: None,
            title: String::new(),
        }
    }

    #[test]
    fn every_code_of_the_issue_is_classified() {
        let table: [(u32, u16, Decision); 16] = [
            (130429, 400, Decision::Retry),
            (130429, 429, Decision::Retry),
            (131056, 400, Decision::Retry),
            (131000, 500, Decision::Retry),
            (131016, 503, Decision::Retry),
            (1, 500, Decision::Retry),
            (2, 503, Decision::Retry),
            (131047, 400, Decision::Template),
            (131026, 400, Decision::Fail),
            (131050, 400, Decision::Fail),
            (100, 400, Decision::Fail),
            (190, 401, Decision::Fail),
            (368, 400, Decision::Fail),
            // Unknown codes: by the HTTP status.
            (131051, 400, Decision::Fail),
            (999_999, 502, Decision::Retry),
            (999_999, 404, Decision::Fail),
        ];
        for (code, status, expected) in table {
            assert_eq!(classify(&meta(code, status)), expected, "code {code}");
        }
        assert_eq!(classify(&SendError::Timeout), Decision::Retry);
        assert_eq!(
            classify(&SendError::Connection("refused".into())),
            Decision::Retry
        );
        assert_eq!(
            classify(&SendError::Unexpected { http_status: 503 }),
            Decision::Retry
        );
        assert_eq!(
            classify(&SendError::Unexpected { http_status: 200 }),
            Decision::Fail
        );
    }

    #[test]
    fn backoff_doubles_within_bounds_and_is_capped() {
        let backoff = Backoff::default();
        for attempt in 1..=40 {
            let ceiling = Duration::from_secs(1)
                .saturating_mul(1u32 << (attempt - 1).min(31))
                .min(Duration::from_secs(300));
            for jitter in [0.0, 0.3, 0.999, 1.0, -5.0, 7.0] {
                let delay = backoff.delay(attempt, jitter);
                assert!(delay >= ceiling / 2, "attempt {attempt}: {delay:?}");
                assert!(delay <= ceiling, "attempt {attempt}: {delay:?}");
                assert!(delay <= Duration::from_secs(300));
            }
        }
        assert_eq!(backoff.delay(1, 0.0), Duration::from_millis(500));
        assert_eq!(backoff.delay(1, 1.0), Duration::from_secs(1));
        assert_eq!(backoff.delay(3, 1.0), Duration::from_secs(4));
        assert_eq!(backoff.delay(0, 1.0), Duration::from_secs(1));
        assert_eq!(backoff.delay(u32::MAX, 1.0), Duration::from_secs(300));
    }

    #[test]
    fn jitter_is_a_fraction() {
        for _ in 0..1000 {
            let jitter = random_jitter();
            assert!((0.0..=1.0).contains(&jitter));
        }
    }
}
