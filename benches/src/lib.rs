//! Small, pure helpers for the `loadgen` and `webhook-loadgen` binaries (kept here so they
//! can be unit-tested).
//!
//! Money is never a float here: amounts are integer minor units. Floats are used only for
//! rates and for latency shown in milliseconds.

pub mod http1;

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

// ---- WhatsApp webhooks (`webhook-loadgen`) ------------------------------------------------------

/// The platform's shared business number as the sandbox and `loyalty all` know it by default.
pub fn shared_business_number() -> whatsapp_sandbox::BusinessNumber {
    whatsapp_sandbox::BusinessNumber {
        phone_number_id: "100000000000001".to_owned(),
        display_phone_number: "15550001234".to_owned(),
        waba_id: "100000000000000".to_owned(),
        access_token: None,
    }
}

/// A wamid unique per run and message: Meta's are opaque base64; the ingest only needs them
/// distinct, so the run id and a sequence number are enough.
pub fn bench_wamid(run_id: &str, sequence: u64) -> String {
    format!("wamid.BENCH{run_id}.{sequence:012}")
}

/// One text message from `wa_id` (digits) to `business`, wrapped the way Meta delivers it
/// (`whatsapp_sandbox::simulator::inbound_webhook`): the exact bytes to sign and post.
pub fn text_webhook_body(
    business: &whatsapp_sandbox::BusinessNumber,
    wa_id: &str,
    profile_name: &str,
    wamid: &str,
    unix_seconds: i64,
    text: &str,
) -> Vec<u8> {
    let message = serde_json::json!({
        "from": wa_id,
        "id": wamid,
        "timestamp": unix_seconds.to_string(),
        "type": "text",
        "text": { "body": text },
    });
    whatsapp_sandbox::simulator::inbound_webhook(business, wa_id, profile_name, message)
        .to_string()
        .into_bytes()
}

/// Microseconds since the Unix epoch of a wall-clock instant (the sandbox records replies in
/// wall-clock time, so end-to-end latency is measured on that clock; same machine).
pub fn unix_micros(time: std::time::SystemTime) -> i64 {
    match time.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX),
    }
}

/// When the `index`-th message of an open-loop schedule at `per_second` is due, from the start.
pub fn open_loop_offset(index: u64, per_second: u32) -> std::time::Duration {
    assert!(per_second > 0, "a rate of zero has no schedule");
    let nanos = u128::from(index) * 1_000_000_000 / u128::from(per_second);
    std::time::Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// What [`ReplyMatcher::on_reply`] made of one reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyMatch {
    /// The reply answers request `request`; `latency_us` = reply time − post time.
    Matched { request: u64, latency_us: u64 },
    /// No request of this recipient was waiting (a reply to the set-up, or a second reply).
    Unexpected,
}

/// Pairs replies with requests: per recipient, the oldest request still waiting whose post
/// time is not after the reply (the notifier sends a recipient's messages in queued order,
/// and each keyword here gets exactly one reply).
#[derive(Debug, Default)]
pub struct ReplyMatcher {
    waiting: std::collections::HashMap<String, std::collections::VecDeque<(u64, i64)>>,
    waiting_total: usize,
}

impl ReplyMatcher {
    /// Request `request` to `recipient` was posted at `posted_us` (Unix µs). Per recipient,
    /// calls must come in posting order.
    pub fn on_request(&mut self, recipient: &str, request: u64, posted_us: i64) {
        let queue = self.waiting.entry(recipient.to_owned()).or_default();
        debug_assert!(queue.back().is_none_or(|&(_, t)| t <= posted_us));
        queue.push_back((request, posted_us));
        self.waiting_total += 1;
    }

    /// A reply to `recipient` recorded by the sandbox at `received_us` (Unix µs).
    pub fn on_reply(&mut self, recipient: &str, received_us: i64) -> ReplyMatch {
        let Some(queue) = self.waiting.get_mut(recipient) else {
            return ReplyMatch::Unexpected;
        };
        match queue.front() {
            Some(&(request, posted_us)) if posted_us <= received_us => {
                queue.pop_front();
                self.waiting_total -= 1;
                let latency_us = u64::try_from(received_us - posted_us).unwrap_or(0);
                ReplyMatch::Matched {
                    request,
                    latency_us,
                }
            }
            _ => ReplyMatch::Unexpected,
        }
    }

    /// Requests still without a reply.
    pub fn waiting(&self) -> usize {
        self.waiting_total
    }

    /// Requests still without a reply posted before `cutoff_us`, i.e. missed if the reply
    /// timeout has passed since `cutoff_us`.
    pub fn waiting_posted_before(&self, cutoff_us: i64) -> usize {
        self.waiting
            .values()
            .map(|q| q.iter().take_while(|&&(_, t)| t < cutoff_us).count())
            .sum()
    }
}

/// Latency in µs clamped into the `u32` samples of [`LatencySummary`] (≈ 71 minutes).
pub fn latency_sample(us: u64) -> u32 {
    u32::try_from(us).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_body_is_meta_shaped_and_its_signature_verifies() {
        use webhook_ingest::signature::{sign, verify_signature, AppSecret, SignatureError};
        let business = shared_business_number();
        let wamid = bench_wamid("r1", 42);
        let body = text_webhook_body(
            &business,
            "2348012345678",
            "Ada",
            &wamid,
            1_764_000_000,
            "points",
        );
        let secret = AppSecret::new("bench-secret").unwrap();
        let signature = sign(&secret, &body);
        assert_eq!(verify_signature(&secret, &body, Some(&signature)), Ok(()));
        let other = AppSecret::new("another").unwrap();
        assert_eq!(
            verify_signature(&other, &body, Some(&signature)),
            Err(SignatureError::Mismatch)
        );
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["object"], "whatsapp_business_account");
        let value = &json["entry"][0]["changes"][0]["value"];
        assert_eq!(json["entry"][0]["changes"][0]["field"], "messages");
        assert_eq!(value["metadata"]["phone_number_id"], "100000000000001");
        assert_eq!(value["contacts"][0]["wa_id"], "2348012345678");
        let message = &value["messages"][0];
        assert_eq!(message["id"], wamid.as_str());
        assert_eq!(message["from"], "2348012345678");
        assert_eq!(message["timestamp"], "1764000000");
        assert_eq!(message["text"]["body"], "points");
        // The ingest's own parser accepts it as one text message.
        let parsed = webhook_ingest::payload::parse(&body).unwrap();
        let change = &parsed.entries[0].changes[0];
        assert_eq!(change.messages.len(), 1);
        let message = &change.messages[0].parsed;
        assert_eq!(message.id, wamid);
        assert_eq!(message.from.as_deref(), Some("2348012345678"));
        assert!(
            matches!(&message.kind, webhook_ingest::payload::MessageKind::Text { body } if body == "points")
        );
    }

    #[test]
    fn wamids_are_distinct() {
        let ids: std::collections::HashSet<_> = (0..1000).map(|i| bench_wamid("x", i)).collect();
        assert_eq!(ids.len(), 1000);
        assert_ne!(bench_wamid("a", 1), bench_wamid("b", 1));
    }

    #[test]
    fn open_loop_schedule() {
        assert_eq!(open_loop_offset(0, 500), std::time::Duration::ZERO);
        assert_eq!(
            open_loop_offset(1, 500),
            std::time::Duration::from_millis(2)
        );
        assert_eq!(
            open_loop_offset(500, 500),
            std::time::Duration::from_secs(1)
        );
        assert_eq!(
            open_loop_offset(10, 3),
            std::time::Duration::from_nanos(3_333_333_333)
        );
    }

    #[test]
    fn replies_match_the_oldest_waiting_request_of_their_recipient() {
        let mut m = ReplyMatcher::default();
        m.on_request("a", 0, 1_000);
        m.on_request("b", 1, 1_500);
        m.on_request("a", 2, 2_000);
        assert_eq!(m.waiting(), 3);
        // A reply recorded before any request of its recipient answers none of them.
        assert_eq!(m.on_reply("a", 900), ReplyMatch::Unexpected);
        assert_eq!(m.on_reply("c", 5_000), ReplyMatch::Unexpected);
        assert_eq!(
            m.on_reply("a", 1_700),
            ReplyMatch::Matched {
                request: 0,
                latency_us: 700
            }
        );
        assert_eq!(m.waiting_posted_before(1_600), 1, "b is still waiting");
        assert_eq!(
            m.on_reply("b", 1_600),
            ReplyMatch::Matched {
                request: 1,
                latency_us: 100
            }
        );
        assert_eq!(
            m.on_reply("a", 2_500),
            ReplyMatch::Matched {
                request: 2,
                latency_us: 500
            }
        );
        // A second reply to the same request is not counted twice.
        assert_eq!(m.on_reply("a", 2_600), ReplyMatch::Unexpected);
        assert_eq!(m.waiting(), 0);
        assert_eq!(latency_sample(u64::MAX), u32::MAX);
        assert_eq!(latency_sample(7), 7);
    }

    #[test]
    fn unix_micros_is_signed_and_exact() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_micros(1_764_000_000_123_456);
        assert_eq!(unix_micros(t), 1_764_000_000_123_456);
        assert_eq!(
            unix_micros(std::time::UNIX_EPOCH - std::time::Duration::from_micros(5)),
            -5
        );
    }

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
