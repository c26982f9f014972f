//! A small bounded in-memory cache, so the hot path does not ask the database the same
//! question on every request.
//!
//! Deliberately simple: one mutex (held for a hash-map operation, never across an await), an
//! optional time to live, and a size cap. When full, expired entries are dropped; if that is
//! not enough the whole cache is emptied: a burst of misses is cheaper than an eviction policy
//! with its own bugs, and the cap only matters under abuse.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

pub struct BoundedCache<K, V> {
    entries: Mutex<HashMap<K, (Instant, V)>>,
    /// `None`: entries never go stale (the cached fact is immutable).
    time_to_live: Option<Duration>,
    entries_max: usize,
}

impl<K: Eq + Hash, V: Clone> BoundedCache<K, V> {
    pub fn new(time_to_live: Option<Duration>, entries_max: usize) -> Self {
        BoundedCache {
            entries: Mutex::new(HashMap::new()),
            time_to_live,
            entries_max: entries_max.max(1),
        }
    }

    pub fn get(&self, key: &K, now: Instant) -> Option<V> {
        let mut entries = self.lock();
        let (stored_at, value) = entries.get(key)?;
        if self.is_stale(*stored_at, now) {
            entries.remove(key);
            return None;
        }
        Some(value.clone())
    }

    pub fn insert(&self, key: K, value: V, now: Instant) {
        let mut entries = self.lock();
        if entries.len() >= self.entries_max && !entries.contains_key(&key) {
            entries.retain(|_, (stored_at, _)| !self.is_stale(*stored_at, now));
            if entries.len() >= self.entries_max {
                entries.clear();
            }
        }
        entries.insert(key, (now, value));
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    fn is_stale(&self, stored_at: Instant, now: Instant) -> bool {
        self.time_to_live
            .is_some_and(|ttl| now.saturating_duration_since(stored_at) >= ttl)
    }

    /// A panic while the lock was held cannot leave a hash map half-updated in a way that
    /// matters here (the worst case is a missing entry), so a poisoned lock is used as is.
    fn lock(&self) -> MutexGuard<'_, HashMap<K, (Instant, V)>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_after_their_time_to_live() {
        let cache = BoundedCache::new(Some(Duration::from_secs(60)), 10);
        let start = Instant::now();
        cache.insert("key", 1, start);
        assert_eq!(cache.get(&"key", start + Duration::from_secs(59)), Some(1));
        assert_eq!(cache.get(&"key", start + Duration::from_secs(60)), None);
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn without_time_to_live_entries_stay() {
        let cache = BoundedCache::new(None, 10);
        let start = Instant::now();
        cache.insert(1, "a", start);
        assert_eq!(
            cache.get(&1, start + Duration::from_secs(1_000_000)),
            Some("a")
        );
    }

    #[test]
    fn the_size_cap_is_never_exceeded() {
        let cache = BoundedCache::new(None, 3);
        let now = Instant::now();
        for key in 0..10 {
            cache.insert(key, key, now);
            assert!(cache.len() <= 3);
            assert_eq!(cache.get(&key, now), Some(key), "the newest entry is kept");
        }
    }

    #[test]
    fn a_full_cache_drops_stale_entries_first() {
        let cache = BoundedCache::new(Some(Duration::from_secs(10)), 2);
        let start = Instant::now();
        cache.insert("old", 1, start);
        cache.insert("fresh", 2, start + Duration::from_secs(9));
        cache.insert("new", 3, start + Duration::from_secs(11));
        assert_eq!(
            cache.get(&"fresh", start + Duration::from_secs(11)),
            Some(2)
        );
        assert_eq!(cache.get(&"new", start + Duration::from_secs(11)), Some(3));
    }
}
