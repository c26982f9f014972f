//! Slows down password guessing: failed logins are counted per email and per client IP, in
//! memory, per process.
//!
//! Policy: within a window of [`LimiterPolicy::window`], failures below the
//! `*_failures_free` count cost nothing; the failure that reaches it locks that email (or IP)
//! for `lockout_base`, and each one after doubles the lock, capped at `lockout_max` (with the
//! defaults: 4 free failures, the 5th locks for 30 s, then 60 s, 120 s … 15 min). While locked, attempts are answered 429 with
//! `Retry-After` before any password is checked (so a lock also saves the argon2 work). A
//! successful login clears its email's record; an IP's record only ages out, since one
//! address may serve many users. The IP limit is higher than the email limit because many
//! shops share one address behind NAT.
//!
//! Memory is bounded: at most `entries_max` records per map; when full, records whose window
//! has passed and whose lock has ended are dropped, and if that is not enough the map is
//! emptied (a flood of distinct emails costs the attacker an argon2 verification each, and
//! the IP limit still applies to it). With several API processes each counts on its own.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimiterPolicy {
    pub window: Duration,
    pub email_failures_free: u32,
    pub ip_failures_free: u32,
    pub lockout_base: Duration,
    pub lockout_max: Duration,
    pub entries_max: usize,
}

impl Default for LimiterPolicy {
    fn default() -> Self {
        LimiterPolicy {
            window: Duration::from_secs(15 * 60),
            email_failures_free: 5,
            ip_failures_free: 50,
            lockout_base: Duration::from_secs(30),
            lockout_max: Duration::from_secs(15 * 60),
            entries_max: 100_000,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Record {
    window_started: Instant,
    failures: u32,
    locked_until: Option<Instant>,
}

struct Counter<K> {
    records: Mutex<HashMap<K, Record>>,
    failures_free: u32,
}

impl<K: Eq + Hash> Counter<K> {
    fn new(failures_free: u32) -> Self {
        Counter {
            records: Mutex::new(HashMap::new()),
            failures_free,
        }
    }

    fn locked_for(&self, key: &K, now: Instant) -> Option<Duration> {
        let records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        let until = records.get(key)?.locked_until?;
        (until > now).then(|| until - now)
    }

    fn fail(&self, key: K, now: Instant, policy: &LimiterPolicy) {
        let mut records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        if records.len() >= policy.entries_max && !records.contains_key(&key) {
            records.retain(|_, r| !is_idle(r, now, policy));
            if records.len() >= policy.entries_max {
                records.clear();
            }
        }
        let record = records.entry(key).or_insert(Record {
            window_started: now,
            failures: 0,
            locked_until: None,
        });
        if now.saturating_duration_since(record.window_started) >= policy.window {
            *record = Record {
                window_started: now,
                failures: 0,
                locked_until: record.locked_until,
            };
        }
        record.failures = record.failures.saturating_add(1);
        if record.failures >= self.failures_free {
            let doublings = (record.failures - self.failures_free).min(16);
            let lockout = policy
                .lockout_base
                .saturating_mul(1u32 << doublings)
                .min(policy.lockout_max);
            record.locked_until = Some(now + lockout);
        }
    }

    fn clear(&self, key: &K) {
        let mut records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        records.remove(key);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

fn is_idle(record: &Record, now: Instant, policy: &LimiterPolicy) -> bool {
    now.saturating_duration_since(record.window_started) >= policy.window
        && record.locked_until.is_none_or(|until| until <= now)
}

/// The failed-login limiter of one API process.
pub struct LoginLimiter {
    policy: LimiterPolicy,
    by_email: Counter<String>,
    by_ip: Counter<IpAddr>,
}

impl LoginLimiter {
    pub fn new(policy: LimiterPolicy) -> Self {
        LoginLimiter {
            by_email: Counter::new(policy.email_failures_free),
            by_ip: Counter::new(policy.ip_failures_free),
            policy,
        }
    }

    /// `Err(wait)` when this email or IP is locked: answer 429 without checking anything.
    pub fn check(&self, email: &str, ip: Option<IpAddr>, now: Instant) -> Result<(), Duration> {
        let email_wait = self.by_email.locked_for(&email.to_owned(), now);
        let ip_wait = ip.and_then(|ip| self.by_ip.locked_for(&ip, now));
        match email_wait.max(ip_wait) {
            Some(wait) => Err(wait),
            None => Ok(()),
        }
    }

    pub fn record_failure(&self, email: &str, ip: Option<IpAddr>, now: Instant) {
        self.by_email.fail(email.to_owned(), now, &self.policy);
        if let Some(ip) = ip {
            self.by_ip.fail(ip, now, &self.policy);
        }
    }

    pub fn record_success(&self, email: &str) {
        self.by_email.clear(&email.to_owned());
    }
}

impl Default for LoginLimiter {
    fn default() -> Self {
        LoginLimiter::new(LimiterPolicy::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMAIL: &str = "ada@example.com";

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([192, 0, 2, last]))
    }

    fn seconds(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn the_fifth_failure_locks_the_email_with_a_growing_delay() {
        let limiter = LoginLimiter::default();
        let start = Instant::now();
        for n in 0..4 {
            limiter.record_failure(EMAIL, ip(1), start + seconds(n));
            assert_eq!(limiter.check(EMAIL, ip(1), start + seconds(n)), Ok(()));
        }
        limiter.record_failure(EMAIL, ip(1), start + seconds(4));
        assert_eq!(
            limiter.check(EMAIL, ip(2), start + seconds(4)),
            Err(seconds(30)),
            "locked for any IP"
        );
        assert_eq!(
            limiter.check("other@example.com", ip(1), start + seconds(4)),
            Ok(())
        );
        // After the lock, the next failure locks for twice as long, then four times.
        assert_eq!(limiter.check(EMAIL, ip(1), start + seconds(34)), Ok(()));
        limiter.record_failure(EMAIL, ip(1), start + seconds(34));
        assert_eq!(
            limiter.check(EMAIL, ip(1), start + seconds(34)),
            Err(seconds(60))
        );
        limiter.record_failure(EMAIL, ip(1), start + seconds(94));
        assert_eq!(
            limiter.check(EMAIL, ip(1), start + seconds(94)),
            Err(seconds(120))
        );
    }

    #[test]
    fn the_delay_is_capped() {
        let limiter = LoginLimiter::default();
        let start = Instant::now();
        for n in 0..40 {
            limiter.record_failure(EMAIL, None, start + seconds(n));
        }
        assert_eq!(
            limiter.check(EMAIL, None, start + seconds(39)),
            Err(seconds(15 * 60))
        );
    }

    #[test]
    fn success_clears_the_email_and_the_window_forgets() {
        let limiter = LoginLimiter::default();
        let start = Instant::now();
        for n in 0..4 {
            limiter.record_failure(EMAIL, None, start + seconds(n));
        }
        limiter.record_success(EMAIL);
        limiter.record_failure(EMAIL, None, start + seconds(5));
        assert_eq!(
            limiter.check(EMAIL, None, start + seconds(5)),
            Ok(()),
            "count restarted"
        );

        let limiter = LoginLimiter::default();
        for n in 0..4 {
            limiter.record_failure(EMAIL, None, start + seconds(n));
        }
        // Sixteen minutes later the old failures no longer count.
        limiter.record_failure(EMAIL, None, start + seconds(16 * 60));
        assert_eq!(limiter.check(EMAIL, None, start + seconds(16 * 60)), Ok(()));
    }

    #[test]
    fn an_ip_trying_many_emails_is_locked_too() {
        let limiter = LoginLimiter::default();
        let start = Instant::now();
        for n in 0..50 {
            let email = format!("user{n}@example.com");
            assert_eq!(limiter.check(&email, ip(9), start), Ok(()));
            limiter.record_failure(&email, ip(9), start);
        }
        assert_eq!(
            limiter.check("fresh@example.com", ip(9), start),
            Err(seconds(30))
        );
        assert_eq!(limiter.check("fresh@example.com", ip(10), start), Ok(()));
    }

    #[test]
    fn memory_is_bounded() {
        let limiter = LoginLimiter::new(LimiterPolicy {
            entries_max: 10,
            ..LimiterPolicy::default()
        });
        let start = Instant::now();
        for n in 0..1_000 {
            limiter.record_failure(&format!("u{n}@example.com"), None, start);
            assert!(limiter.by_email.len() <= 10);
        }
    }
}
