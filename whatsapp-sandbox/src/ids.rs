//! Fresh identifiers: message ids (`wamid.…`) and Graph trace ids, from the system CSPRNG.

use ring::rand::{SecureRandom, SystemRandom};

use std::sync::atomic::{AtomicU64, Ordering};

/// Mixed into every id, so ids stay distinct in one process even if the random source
/// ever failed (then the bytes are the clock and this counter).
static COUNTER: AtomicU64 = AtomicU64::new(0);

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    if SystemRandom::new().fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
            .to_le_bytes();
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = nanos[i % nanos.len()];
        }
    }
    let count = COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes();
    for (byte, c) in bytes.iter_mut().zip(count) {
        *byte ^= c;
    }
    bytes
}

/// A fresh WhatsApp message id: `wamid.` and 40 upper-case hex digits (Meta's are base64,
/// up to 128 characters; nothing may parse them).
pub fn wamid() -> String {
    format!("wamid.HBgL{}", hex::encode_upper(random_bytes::<20>()))
}

/// A fresh Graph `fbtrace_id`.
pub fn fbtrace_id() -> String {
    format!("A{}", hex::encode(random_bytes::<11>()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn wamids_are_distinct_and_short_enough() {
        let a = super::wamid();
        let b = super::wamid();
        assert_ne!(a, b);
        assert!(a.starts_with("wamid.") && a.len() <= 128);
    }
}
