//! Phone numbers in E.164 form.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A phone number in E.164: `+`, a country code starting 1–9, 8 to 15 digits in all.
/// Spaces, hyphens, dots and parentheses a person types are removed before the check.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneNumber(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("phone number must be in E.164 form, e.g. +2348012345678")]
pub struct InvalidPhoneNumber;

impl PhoneNumber {
    /// Longest input we even look at, so a client cannot make us scan a megabyte.
    const RAW_BYTES_MAX: usize = 32;

    pub fn parse(raw: &str) -> Result<Self, InvalidPhoneNumber> {
        if raw.len() > Self::RAW_BYTES_MAX {
            return Err(InvalidPhoneNumber);
        }
        let compact: String = raw
            .trim()
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
            .collect();
        let digits = compact.strip_prefix('+').ok_or(InvalidPhoneNumber)?;
        let valid = (8..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        if !valid {
            return Err(InvalidPhoneNumber);
        }
        Ok(PhoneNumber(compact))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PhoneNumber {
    type Error = InvalidPhoneNumber;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        PhoneNumber::parse(&value)
    }
}

impl From<PhoneNumber> for String {
    fn from(value: PhoneNumber) -> Self {
        value.0
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_normalises_e164() {
        let cases = [
            ("+2348012345678", "+2348012345678"),
            ("+234 801 234 5678", "+2348012345678"),
            ("+1 (415) 555-0100", "+14155550100"),
            (" +447911123456 ", "+447911123456"),
        ];
        for (raw, expected) in cases {
            assert_eq!(PhoneNumber::parse(raw).unwrap().as_str(), expected, "{raw}");
        }
    }

    #[test]
    fn rejects_what_is_not_e164() {
        for raw in [
            "",
            "2348012345678",
            "+0348012345678",
            "+234801",
            "+2348012345678901234",
            "+234801234567a",
            "++2348012345678",
            "+234\u{0661}8012345678",
            "+2348012345678                                  ",
        ] {
            assert_eq!(PhoneNumber::parse(raw), Err(InvalidPhoneNumber), "{raw:?}");
        }
    }
}
