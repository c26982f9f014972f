//! Points and money. Integers only, minor units only, arithmetic that cannot overflow
//! silently: every operation that could overflow is `checked_*` and returns an `Option` or
//! an [`AmountError`].

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("amount must not be negative")]
    Negative,
    #[error("amount must be greater than zero")]
    Zero,
    #[error("amount is too large")]
    TooLarge,
    #[error("currency must be three upper-case ASCII letters (ISO 4217)")]
    InvalidCurrency,
}

/// A number of loyalty points. May be negative only as a delta inside the domain; balances
/// are kept non-negative by `decide`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Points(i64);

impl Points {
    pub const ZERO: Points = Points(0);

    /// Largest number of points a single command may move; keeps sums of many movements far
    /// from `i64::MAX`.
    pub const COMMAND_MAX: i64 = 1_000_000_000_000;

    pub const fn new(value: i64) -> Self {
        Points(value)
    }

    /// Parses a strictly positive number of points as a client may send it.
    pub fn parse_positive(value: i64) -> Result<Self, AmountError> {
        match value {
            v if v < 0 => Err(AmountError::Negative),
            0 => Err(AmountError::Zero),
            v if v > Self::COMMAND_MAX => Err(AmountError::TooLarge),
            v => Ok(Points(v)),
        }
    }

    pub const fn value(self) -> i64 {
        self.0
    }

    pub fn checked_add(self, other: Points) -> Option<Points> {
        self.0.checked_add(other.0).map(Points)
    }

    pub fn checked_sub(self, other: Points) -> Option<Points> {
        self.0.checked_sub(other.0).map(Points)
    }

    pub fn checked_mul(self, factor: i64) -> Option<Points> {
        self.0.checked_mul(factor).map(Points)
    }

    pub fn is_positive(self) -> bool {
        self.0 > 0
    }
}

impl fmt::Display for Points {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An amount of money in the minor unit of the tenant's currency (kobo for NGN).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct MinorUnits(i64);

impl MinorUnits {
    pub const ZERO: MinorUnits = MinorUnits(0);

    /// Largest single amount accepted: 10^15 minor units (10 trillion naira). Far beyond any
    /// real purchase, and small enough that sums over millions of purchases fit in i64.
    pub const AMOUNT_MAX: i64 = 1_000_000_000_000_000;

    pub const fn new(value: i64) -> Self {
        MinorUnits(value)
    }

    /// Parses a non-negative amount (zero allowed, e.g. a minimum purchase of zero).
    pub fn parse_non_negative(value: i64) -> Result<Self, AmountError> {
        match value {
            v if v < 0 => Err(AmountError::Negative),
            v if v > Self::AMOUNT_MAX => Err(AmountError::TooLarge),
            v => Ok(MinorUnits(v)),
        }
    }

    /// Parses a strictly positive amount, as a purchase total must be.
    pub fn parse_positive(value: i64) -> Result<Self, AmountError> {
        match Self::parse_non_negative(value)? {
            MinorUnits(0) => Err(AmountError::Zero),
            amount => Ok(amount),
        }
    }

    pub const fn value(self) -> i64 {
        self.0
    }

    pub fn checked_add(self, other: MinorUnits) -> Option<MinorUnits> {
        self.0.checked_add(other.0).map(MinorUnits)
    }

    pub fn checked_mul(self, factor: i64) -> Option<MinorUnits> {
        self.0.checked_mul(factor).map(MinorUnits)
    }
}

impl fmt::Display for MinorUnits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// ISO 4217 currency code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

impl Currency {
    pub const NGN: Currency = Currency(*b"NGN");

    pub fn parse(raw: &str) -> Result<Self, AmountError> {
        let bytes = raw.as_bytes();
        if bytes.len() != 3 || !bytes.iter().all(u8::is_ascii_uppercase) {
            return Err(AmountError::InvalidCurrency);
        }
        Ok(Currency([bytes[0], bytes[1], bytes[2]]))
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII upper-case letters are ever stored, so this cannot fail.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

impl TryFrom<String> for Currency {
    type Error = AmountError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Currency::parse(&value)
    }
}

impl From<Currency> for String {
    fn from(value: Currency) -> Self {
        value.as_str().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_parse_rejects_zero_negative_and_huge() {
        assert_eq!(Points::parse_positive(0), Err(AmountError::Zero));
        assert_eq!(Points::parse_positive(-1), Err(AmountError::Negative));
        assert_eq!(
            Points::parse_positive(Points::COMMAND_MAX + 1),
            Err(AmountError::TooLarge)
        );
        assert_eq!(Points::parse_positive(7).map(Points::value), Ok(7));
    }

    #[test]
    fn money_parse_bounds() {
        assert_eq!(MinorUnits::parse_positive(0), Err(AmountError::Zero));
        assert_eq!(MinorUnits::parse_non_negative(0), Ok(MinorUnits::ZERO));
        assert_eq!(
            MinorUnits::parse_non_negative(-5),
            Err(AmountError::Negative)
        );
        assert_eq!(
            MinorUnits::parse_positive(MinorUnits::AMOUNT_MAX + 1),
            Err(AmountError::TooLarge)
        );
    }

    #[test]
    fn checked_arithmetic_reports_overflow() {
        assert_eq!(Points::new(i64::MAX).checked_add(Points::new(1)), None);
        assert_eq!(Points::new(i64::MIN).checked_sub(Points::new(1)), None);
        assert_eq!(MinorUnits::new(i64::MAX).checked_mul(2), None);
    }

    #[test]
    fn currency_is_three_upper_case_letters() {
        assert_eq!(Currency::parse("NGN"), Ok(Currency::NGN));
        assert!(Currency::parse("ngn").is_err());
        assert!(Currency::parse("NG").is_err());
        assert!(Currency::parse("NGNN").is_err());
        assert!(Currency::parse("N1N").is_err());
    }
}
