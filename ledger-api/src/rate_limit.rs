//! An in-memory rate limiter: the generic cell rate algorithm (GCRA), keyed by anything
//! hashable (a client address, an API key id).
//!
//! GCRA is a token bucket kept as one instant per key, the *theoretical arrival time*
//! (TAT): the moment the key's bucket would be full again. A request at `now` is allowed
//! when, after adding one emission interval to the TAT, the TAT is at most `burst`
//! intervals ahead of `now`. All arithmetic is on [`Duration`]s and [`Instant`]s (integer
//! nanoseconds): no floats, no background refill task.
//!
//! The clock is an argument ([`RateLimiter::check`] takes `now`), so tests are exact.
//!
//! Memory is bounded: at most `keys_max` keys are remembered. A key whose TAT has passed
//! holds no debt and is forgotten first; when every remembered key is still in debt, the
//! stalest eighth (smallest TAT: the closest to having no debt) is forgotten in one go, so
//! the cost of eviction is spread over many insertions instead of paid on each. Forgetting
//! a key can only let that key through sooner: under an attack that rotates more keys than
//! fit, the limiter degrades towards no limit rather than growing without bound.
//!
//! Keys are spread over a few mutex-guarded shards (only when `keys_max` is large enough for
//! each shard to be useful), held for one hash-map operation and never across an await.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

const NANOS_PER_SECOND: u64 = 1_000_000_000;
/// Most shards a limiter splits its keys over.
const SHARDS_MAX: usize = 16;
/// Fewest keys a shard holds, so that small limiters (and their tests) stay one shard.
const KEYS_PER_SHARD_MIN: usize = 4_096;
/// When a full shard has no debt-free key to drop, one in this many keys is evicted.
const EVICTION_FRACTION: usize = 8;

/// How many requests a key may make: `per_second` sustained, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    per_second: u32,
    burst: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidQuota {
    #[error("the rate must be 1 to {NANOS_PER_SECOND} requests per second, got {0}")]
    Rate(u32),
    #[error("the burst must be at least 1 request")]
    Burst,
}

impl Quota {
    /// A quota of `per_second` requests a second (1 to 10^9, so that the interval between
    /// two requests is at least a nanosecond) with bursts of up to `burst` (≥ 1).
    pub const fn new(per_second: u32, burst: u32) -> Result<Quota, InvalidQuota> {
        if per_second == 0 || per_second as u64 > NANOS_PER_SECOND {
            return Err(InvalidQuota::Rate(per_second));
        }
        if burst == 0 {
            return Err(InvalidQuota::Burst);
        }
        Ok(Quota { per_second, burst })
    }

    pub const fn per_second(&self) -> u32 {
        self.per_second
    }

    pub const fn burst(&self) -> u32 {
        self.burst
    }

    /// Time between two requests at the sustained rate, rounded down to the nanosecond
    /// (so a rate that does not divide 10^9 is honoured slightly generously, never harshly).
    fn emission_interval(&self) -> Duration {
        Duration::from_nanos(NANOS_PER_SECOND / u64::from(self.per_second))
    }
}

/// A refusal: the key may try again after this long (exact, to the nanosecond).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

impl RetryAfter {
    /// The wait in whole seconds for a `Retry-After` header: rounded up (a client that waits
    /// this long is then allowed), and at least 1 (a `Retry-After: 0` invites a hot loop).
    pub fn whole_seconds(&self) -> u64 {
        whole_seconds_rounded_up(self.0)
    }
}

/// `duration` in whole seconds, rounded up, at least 1.
pub fn whole_seconds_rounded_up(duration: Duration) -> u64 {
    let partial_second = u64::from(duration.subsec_nanos() > 0);
    duration.as_secs().saturating_add(partial_second).max(1)
}

pub struct RateLimiter<K> {
    shards: Vec<Mutex<HashMap<K, Instant>>>,
    keys_per_shard_max: usize,
    shard_hasher: RandomState,
    emission_interval: Duration,
    /// How far ahead of `now` a key's TAT may run: `burst` emission intervals.
    burst_tolerance: Duration,
}

impl<K: Eq + Hash> RateLimiter<K> {
    /// A limiter that remembers at most `keys_max` keys (at least 1).
    pub fn new(quota: Quota, keys_max: usize) -> Self {
        let keys_max = keys_max.max(1);
        let shard_count = (keys_max / KEYS_PER_SHARD_MIN).clamp(1, SHARDS_MAX);
        let emission_interval = quota.emission_interval();
        RateLimiter {
            shards: (0..shard_count)
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
            // Rounded down, so the shards together never hold more than `keys_max`.
            keys_per_shard_max: keys_max / shard_count,
            shard_hasher: RandomState::new(),
            emission_interval,
            burst_tolerance: emission_interval.saturating_mul(quota.burst),
        }
    }

    /// Counts one request of `key` at `now`: `Ok` if the quota allows it, else how long the
    /// key must wait. A refused request does not count against the key.
    pub fn check(&self, key: K, now: Instant) -> Result<(), RetryAfter> {
        let mut shard = self.shard(&key);
        let theoretical_arrival = shard.get(&key).map_or(now, |&tat| tat.max(now));
        let next_arrival = theoretical_arrival + self.emission_interval;
        let ahead = next_arrival - now;
        if ahead > self.burst_tolerance {
            return Err(RetryAfter(ahead - self.burst_tolerance));
        }
        if shard.len() >= self.keys_per_shard_max && !shard.contains_key(&key) {
            evict(&mut shard, now, self.keys_per_shard_max);
        }
        shard.insert(key, next_arrival);
        Ok(())
    }

    /// Keys remembered across all shards.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|shard| lock(shard).len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard(&self, key: &K) -> MutexGuard<'_, HashMap<K, Instant>> {
        let index = if self.shards.len() == 1 {
            0
        } else {
            (self.shard_hasher.hash_one(key) % self.shards.len() as u64) as usize
        };
        lock(&self.shards[index])
    }
}

/// Makes room in a full shard: drops every key without debt (its TAT has passed, so it is
/// indistinguishable from a key never seen); if none has, drops the stalest eighth.
fn evict<K: Eq + Hash>(shard: &mut HashMap<K, Instant>, now: Instant, keys_max: usize) {
    shard.retain(|_, tat| *tat > now);
    if shard.len() < keys_max {
        return;
    }
    let evicted_count = (shard.len() / EVICTION_FRACTION).max(1);
    let mut arrivals: Vec<Instant> = shard.values().copied().collect();
    let (_, &mut threshold, _) = arrivals.select_nth_unstable(evicted_count - 1);
    // Keys tied at the threshold all go: at least `evicted_count` are dropped.
    shard.retain(|_, tat| *tat > threshold);
}

/// A panic while the lock was held cannot leave a key's instant half-written, so a poisoned
/// lock is used as is.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_second: u32, burst: u32) -> RateLimiter<&'static str> {
        RateLimiter::new(Quota::new(per_second, burst).unwrap(), 100)
    }

    fn millis(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn quotas_refuse_zero_and_rates_finer_than_a_nanosecond() {
        assert_eq!(Quota::new(0, 1), Err(InvalidQuota::Rate(0)));
        assert_eq!(Quota::new(10, 0), Err(InvalidQuota::Burst));
        assert!(Quota::new(1_000_000_000, 1).is_ok());
        assert!(Quota::new(u32::MAX, 1).is_err());
    }

    #[test]
    fn a_burst_is_allowed_then_refused() {
        let limiter = limiter(10, 3);
        let now = Instant::now();
        for request in 0..3 {
            assert_eq!(limiter.check("a", now), Ok(()), "request {request}");
        }
        assert_eq!(limiter.check("a", now), Err(RetryAfter(millis(100))));
        // A refusal is not counted: the wait does not grow by asking again.
        assert_eq!(limiter.check("a", now), Err(RetryAfter(millis(100))));
    }

    #[test]
    fn the_bucket_refills_at_the_rate() {
        let limiter = limiter(10, 3);
        let start = Instant::now();
        for _ in 0..3 {
            limiter.check("a", start).unwrap();
        }
        assert_eq!(
            limiter.check("a", start + millis(40)),
            Err(RetryAfter(millis(60)))
        );
        assert_eq!(limiter.check("a", start + millis(100)), Ok(()));
        assert!(limiter.check("a", start + millis(100)).is_err());
        // After a full refill (3 intervals of 100 ms) the whole burst is available again.
        let later = start + millis(100) + millis(300);
        for _ in 0..3 {
            assert_eq!(limiter.check("a", later), Ok(()));
        }
        assert!(limiter.check("a", later).is_err());
    }

    #[test]
    fn a_steady_rate_at_the_quota_is_always_allowed() {
        let limiter = limiter(1_000, 1);
        let start = Instant::now();
        for request in 0..10_000u32 {
            let at = start + Duration::from_millis(u64::from(request));
            assert_eq!(limiter.check("a", at), Ok(()), "request {request}");
        }
    }

    #[test]
    fn retry_after_is_exact_and_rounds_up_to_whole_seconds_for_the_header() {
        // 3 per second: the interval is 333,333,333 ns (rounded down, in the client's favour).
        let thirds = limiter(3, 1);
        let now = Instant::now();
        thirds.check("a", now).unwrap();
        let retry = thirds.check("a", now).unwrap_err();
        assert_eq!(retry, RetryAfter(Duration::from_nanos(333_333_333)));
        assert_eq!(retry.whole_seconds(), 1);
        assert_eq!(thirds.check("a", now + retry.0), Ok(()));

        let slow = limiter(1, 2);
        slow.check("b", now).unwrap();
        slow.check("b", now).unwrap();
        assert_eq!(
            slow.check("b", now),
            Err(RetryAfter(Duration::from_secs(1)))
        );
        assert_eq!(
            slow.check("b", now + millis(1)),
            Err(RetryAfter(millis(999)))
        );

        assert_eq!(whole_seconds_rounded_up(Duration::ZERO), 1);
        assert_eq!(whole_seconds_rounded_up(Duration::from_nanos(1)), 1);
        assert_eq!(whole_seconds_rounded_up(Duration::from_secs(1)), 1);
        assert_eq!(whole_seconds_rounded_up(millis(1_001)), 2);
        assert_eq!(whole_seconds_rounded_up(Duration::from_secs(7)), 7);
        assert_eq!(whole_seconds_rounded_up(Duration::MAX), u64::MAX);
    }

    #[test]
    fn keys_are_independent() {
        let limiter = limiter(1, 1);
        let now = Instant::now();
        assert_eq!(limiter.check("a", now), Ok(()));
        assert!(limiter.check("a", now).is_err());
        assert_eq!(limiter.check("b", now), Ok(()));
        assert!(limiter.check("b", now).is_err());
    }

    #[test]
    fn memory_stays_within_the_key_bound_and_the_stalest_key_goes_first() {
        let quota = Quota::new(1, 5).unwrap();
        let limiter = RateLimiter::new(quota, 3);
        let start = Instant::now();
        // "stale" made one request long ago; the others are deep in debt.
        limiter.check("stale", start).unwrap();
        let now = start + millis(500);
        for key in ["busy-1", "busy-2"] {
            for _ in 0..5 {
                limiter.check(key, now).unwrap();
            }
        }
        assert_eq!(limiter.len(), 3);
        limiter.check("new", now).unwrap();
        assert_eq!(limiter.len(), 3);
        // The busy keys are still remembered (and refused); the stale one was forgotten.
        assert!(limiter.check("busy-1", now).is_err());
        assert!(limiter.check("busy-2", now).is_err());
        for _ in 0..4 {
            limiter.check("new", now).unwrap();
        }
        assert!(limiter.check("new", now).is_err());

        let many = RateLimiter::new(quota, 1_000);
        for key in 0..50_000u32 {
            many.check(key, start).unwrap();
            assert!(many.len() <= 1_000);
        }
    }

    #[test]
    fn large_limiters_shard_and_still_keep_the_bound() {
        let keys_max = 40_000;
        let limiter = RateLimiter::new(Quota::new(1, 1).unwrap(), keys_max);
        assert!(limiter.shards.len() > 1);
        let now = Instant::now();
        for key in 0..100_000u32 {
            limiter.check(key, now).unwrap();
        }
        assert!(limiter.len() <= keys_max, "{}", limiter.len());
    }
}
