//! Small, pure helpers for the `loadgen` binary (kept here so they can be unit-tested).
//!
//! Money is never a float here: amounts are integer minor units. Floats are used only for
//! rates and for latency shown in milliseconds.

/// SplitMix64: a tiny, fast, non-cryptographic PRNG. Each load task seeds its own from
/// the OS (via a v4 UUID), so tasks do not share state and need no locking.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Seeded from the operating system's random source.
    pub fn from_os() -> Self {
        let bytes = uuid::Uuid::new_v4().into_bytes();
        let mut seed = [0u8; 8];
        seed.copy_from_slice(&bytes[..8]);
        Self(u64::from_le_bytes(seed))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi` (Lemire's multiply-shift; the bias is < 2^-40 for the
    /// ranges used here, irrelevant for load generation).
    pub fn range_inclusive(&mut self, lo: u64, hi: u64) -> u64 {
        assert!(lo <= hi, "empty range {lo}..={hi}");
        let span = hi - lo;
        if span == u64::MAX {
            return self.next_u64();
        }
        let n = span + 1;
        lo + ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform index in `0..len` (`len` > 0).
    pub fn index(&mut self, len: usize) -> usize {
        assert!(len > 0, "index into an empty set");
        self.range_inclusive(0, (len - 1) as u64) as usize
    }
}

/// `count` distinct Nigerian-style E.164 numbers `+23480XXXXXXXX` (8 random digits).
pub fn unique_phones(rng: &mut SplitMix64, count: usize) -> Vec<String> {
    assert!(
        count <= 10_000_000,
        "at most 10^7 distinct phones are generated"
    );
    let mut seen = std::collections::HashSet::with_capacity(count);
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let n = rng.range_inclusive(0, 99_999_999);
        if seen.insert(n) {
            out.push(format!("+23480{n:08}"));
        }
    }
    out
}

/// Nearest-rank percentile of an ascending-sorted slice; `per_mille` is 500 for p50,
/// 990 for p99, 1000 for the maximum. `None` for an empty slice.
pub fn percentile(sorted: &[u32], per_mille: u64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    assert!(per_mille <= 1000);
    let n = sorted.len() as u64;
    // rank = ceil(p * n), 1-based, clamped to [1, n]
    let rank = (per_mille * n).div_ceil(1000).clamp(1, n);
    Some(sorted[(rank - 1) as usize])
}

/// Exact latency summary in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencySummary {
    pub count: usize,
    pub p50_us: u32,
    pub p90_us: u32,
    pub p99_us: u32,
    pub p999_us: u32,
    pub max_us: u32,
}

impl LatencySummary {
    /// Sorts `samples` in place and summarizes them; `None` when empty.
    pub fn from_samples(samples: &mut [u32]) -> Option<Self> {
        samples.sort_unstable();
        Some(Self {
            count: samples.len(),
            p50_us: percentile(samples, 500)?,
            p90_us: percentile(samples, 900)?,
            p99_us: percentile(samples, 990)?,
            p999_us: percentile(samples, 999)?,
            max_us: percentile(samples, 1000)?,
        })
    }
}

/// Microseconds as milliseconds for display.
pub fn us_to_ms(us: u32) -> f64 {
    f64::from(us) / 1000.0
}

/// Purchase request body: one line item whose price equals the amount.
pub fn purchase_body(customer_id: &str, amount_minor: u64) -> String {
    serde_json::json!({
        "customer_id": customer_id,
        "amount_minor": amount_minor,
        "line_items": [{"sku": "BENCH-1", "quantity": 1, "unit_price_minor": amount_minor}],
    })
    .to_string()
}

/// User + system CPU seconds used by this process so far (Linux `/proc/self/stat`,
/// clock ticks assumed to be 100 Hz, as on every mainstream Linux). `None` elsewhere.
pub fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_nearest_rank() {
        let mut v: Vec<u32> = (1..=100).rev().collect();
        let s = LatencySummary::from_samples(&mut v).unwrap();
        assert_eq!(s.count, 100);
        assert_eq!(s.p50_us, 50);
        assert_eq!(s.p90_us, 90);
        assert_eq!(s.p99_us, 99);
        assert_eq!(s.p999_us, 100);
        assert_eq!(s.max_us, 100);
        assert_eq!(percentile(&[7], 0), Some(7));
        assert_eq!(percentile(&[7], 1000), Some(7));
        assert_eq!(percentile(&[], 500), None);
        assert!(LatencySummary::from_samples(&mut []).is_none());
    }

    #[test]
    fn ranges_stay_in_bounds() {
        let mut rng = SplitMix64::new(42);
        for _ in 0..100_000 {
            let x = rng.range_inclusive(100, 5_000_000);
            assert!((100..=5_000_000).contains(&x));
            assert!(rng.index(3) < 3);
        }
        assert_eq!(rng.range_inclusive(5, 5), 5);
    }

    #[test]
    fn phones_are_unique_e164() {
        let mut rng = SplitMix64::new(7);
        let phones = unique_phones(&mut rng, 5_000);
        let set: std::collections::HashSet<_> = phones.iter().collect();
        assert_eq!(set.len(), 5_000);
        for p in &phones {
            assert_eq!(p.len(), 14, "{p}");
            assert!(p.starts_with("+23480"));
            assert!(p[1..].bytes().all(|b| b.is_ascii_digit()));
        }
    }

    #[test]
    fn body_is_integer_money() {
        let body: serde_json::Value = serde_json::from_str(&purchase_body(
            "c0ffee00-0000-4000-8000-000000000000",
            250_000,
        ))
        .unwrap();
        assert_eq!(body["amount_minor"], serde_json::json!(250_000));
        assert_eq!(
            body["line_items"][0]["unit_price_minor"],
            serde_json::json!(250_000)
        );
        assert!(body["amount_minor"].is_u64());
    }

    #[test]
    fn cpu_seconds_readable_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(process_cpu_seconds().is_some());
        }
    }
}
