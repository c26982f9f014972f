//! The short code a customer shows at the counter to collect a reward.
//!
//! Eight characters of Crockford's base32 (`0-9`, `A-Z` without `I`, `L`, `O`, `U`): 40
//! bits, read aloud or typed without ambiguity. The shell draws the 5 bytes from a CSPRNG
//! ([`RedemptionCode::from_random_bytes`]); this crate never generates randomness. Typed
//! codes are normalised ([`RedemptionCode::parse`]): case, spaces and hyphens are ignored,
//! and the letters Crockford reads as digits (`O` → `0`, `I`/`L` → `1`) are mapped.

use std::fmt;

/// Crockford's base32 alphabet: no I, L, O or U.
pub const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Characters in a code.
pub const CODE_CHARS: usize = 8;
/// Random bytes behind a code: 8 characters × 5 bits.
pub const CODE_RANDOM_BYTES: usize = 5;
/// The longest text [`RedemptionCode::parse`] looks at (separators included).
pub const CODE_INPUT_CHARS_MAX: usize = 32;

/// A redemption code in its canonical form (8 upper-case Crockford characters).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RedemptionCode(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a redemption code is 8 characters of 0-9 and A-Z (without I, L, O and U)")]
pub struct InvalidRedemptionCode;

impl RedemptionCode {
    /// The code spelled by 40 random bits, 5 bits per character, most significant first.
    pub fn from_random_bytes(bytes: [u8; CODE_RANDOM_BYTES]) -> Self {
        let bits = bytes
            .iter()
            .fold(0u64, |acc, byte| (acc << 8) | u64::from(*byte));
        let code = (0..CODE_CHARS)
            .rev()
            .map(|index| ALPHABET[((bits >> (5 * index)) & 0x1f) as usize] as char)
            .collect();
        RedemptionCode(code)
    }

    /// Reads a code as a person typed it: any case, with spaces or hyphens, `O` for `0`,
    /// `I` or `L` for `1`.
    pub fn parse(raw: &str) -> Result<Self, InvalidRedemptionCode> {
        if raw.chars().count() > CODE_INPUT_CHARS_MAX {
            return Err(InvalidRedemptionCode);
        }
        let mut code = String::with_capacity(CODE_CHARS);
        for c in raw.chars() {
            let c = match c.to_ascii_uppercase() {
                ' ' | '-' => continue,
                'O' => '0',
                'I' | 'L' => '1',
                c if c.is_ascii() && ALPHABET.contains(&(c as u8)) => c,
                _ => return Err(InvalidRedemptionCode),
            };
            code.push(c);
        }
        if code.len() != CODE_CHARS {
            return Err(InvalidRedemptionCode);
        }
        Ok(RedemptionCode(code))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RedemptionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_bytes_spell_eight_crockford_characters() {
        assert_eq!(
            RedemptionCode::from_random_bytes([0; 5]).as_str(),
            "00000000"
        );
        assert_eq!(
            RedemptionCode::from_random_bytes([0xff; 5]).as_str(),
            "ZZZZZZZZ"
        );
        // 0x0123456789 = 00000 00100 10001 10100 01010 11001 11100 01001
        assert_eq!(
            RedemptionCode::from_random_bytes([0x01, 0x23, 0x45, 0x67, 0x89]).as_str(),
            "04HMASW9"
        );
        for byte in 0..=255u8 {
            let code = RedemptionCode::from_random_bytes([byte, byte ^ 0x5a, 7, byte, 200]);
            assert_eq!(code.as_str().len(), CODE_CHARS);
            assert!(!code.as_str().contains(['I', 'L', 'O', 'U']));
            assert_eq!(RedemptionCode::parse(code.as_str()), Ok(code));
        }
    }

    #[test]
    fn typed_codes_are_normalised() {
        let canonical = RedemptionCode::parse("04HMASW9").unwrap();
        for typed in ["04hmasw9", "04HM-ASW9", " 04hm asw9 ", "o4HMASW9"] {
            assert_eq!(
                RedemptionCode::parse(typed),
                Ok(canonical.clone()),
                "{typed}"
            );
        }
        assert_eq!(
            RedemptionCode::parse("i1L00000").unwrap().as_str(),
            "11100000"
        );
    }

    #[test]
    fn malformed_codes_are_refused() {
        for bad in [
            "",
            "0000000",
            "000000000",
            "0000000U",
            "0000000!",
            "00000é00",
            &"-".repeat(40),
        ] {
            assert_eq!(
                RedemptionCode::parse(bad),
                Err(InvalidRedemptionCode),
                "{bad}"
            );
        }
    }
}
