//! What the programme knows about a customer beyond points: a birthday (month and day, no
//! year) and a referral code. Both are built only by `parse` (or, for a code, from random
//! bytes the shell draws), so a value held is valid.
//!
//! Privacy (docs/PROGRAMME.md, "Birthdays and referrals"): a month-day without a year is
//! stored in clear in the events because the rules and the broadcast segment need it; the
//! customer state forgets it on erasure and the read model's column is nulled, and with the
//! phone number and name crypto-shredded a month-day alone identifies nobody.

use crate::redemption_code::{RedemptionCode, CODE_RANDOM_BYTES};
use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A birthday: month and day, no year. 29 February is a valid birthday; in a year that has
/// no 29 February it falls on 28 February ([`Birthday::falls_on`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "BirthdayFields", into = "BirthdayFields")]
pub struct Birthday {
    month: u8,
    day: u8,
}

/// The wire shape of a [`Birthday`], checked on the way in.
#[derive(Serialize, Deserialize)]
struct BirthdayFields {
    month: u8,
    day: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a birthday is a month and day as MM-DD, e.g. 03-31 (no year)")]
pub struct InvalidBirthday;

impl Birthday {
    /// A month (1–12) and a day that exists in that month in a leap year.
    pub fn new(month: u8, day: u8) -> Result<Self, InvalidBirthday> {
        // 2000 is a leap year: 29 February exists.
        NaiveDate::from_ymd_opt(2000, u32::from(month), u32::from(day)).ok_or(InvalidBirthday)?;
        Ok(Birthday { month, day })
    }

    /// Reads `MM-DD` (two digits each).
    pub fn parse(raw: &str) -> Result<Self, InvalidBirthday> {
        let bytes = raw.as_bytes();
        if bytes.len() != 5 || bytes[2] != b'-' {
            return Err(InvalidBirthday);
        }
        let two = |s: &str| -> Result<u8, InvalidBirthday> {
            if s.bytes().all(|b| b.is_ascii_digit()) {
                s.parse().map_err(|_| InvalidBirthday)
            } else {
                Err(InvalidBirthday)
            }
        };
        Birthday::new(two(&raw[0..2])?, two(&raw[3..5])?)
    }

    pub fn month(self) -> u8 {
        self.month
    }

    pub fn day(self) -> u8 {
        self.day
    }

    /// Whether `date` is this birthday: the same month and day, or 28 February in a year
    /// without a 29 February for a birthday on 29 February.
    pub fn falls_on(self, date: NaiveDate) -> bool {
        let (month, day) = (u32::from(self.month), u32::from(self.day));
        if date.month() == month && date.day() == day {
            return true;
        }
        let leap = NaiveDate::from_ymd_opt(date.year(), 2, 29).is_some();
        month == 2 && day == 29 && !leap && date.month() == 2 && date.day() == 28
    }
}

impl TryFrom<BirthdayFields> for Birthday {
    type Error = InvalidBirthday;
    fn try_from(fields: BirthdayFields) -> Result<Self, Self::Error> {
        Birthday::new(fields.month, fields.day)
    }
}

impl From<Birthday> for BirthdayFields {
    fn from(birthday: Birthday) -> Self {
        BirthdayFields {
            month: birthday.month,
            day: birthday.day,
        }
    }
}

impl fmt::Display for Birthday {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}-{:02}", self.month, self.day)
    }
}

/// A customer's referral code: the same alphabet and length as a redemption code (8
/// characters of Crockford's base32), drawn by the shell at enrolment and kept unique per
/// tenant by the writer (`referral_codes`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReferralCode(RedemptionCode);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a referral code is 8 characters of 0-9 and A-Z (without I, L, O and U)")]
pub struct InvalidReferralCode;

impl ReferralCode {
    pub fn from_random_bytes(bytes: [u8; CODE_RANDOM_BYTES]) -> Self {
        ReferralCode(RedemptionCode::from_random_bytes(bytes))
    }

    /// Reads a code as a person typed it (see [`RedemptionCode::parse`]).
    pub fn parse(raw: &str) -> Result<Self, InvalidReferralCode> {
        RedemptionCode::parse(raw)
            .map(ReferralCode)
            .map_err(|_| InvalidReferralCode)
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Display for ReferralCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn birthdays_parse_as_month_and_day() {
        let cases: &[(&str, Option<(u8, u8)>)] = &[
            ("03-31", Some((3, 31))),
            ("02-29", Some((2, 29))),
            ("12-01", Some((12, 1))),
            ("04-31", None),
            ("02-30", None),
            ("13-01", None),
            ("00-10", None),
            ("3-31", None),
            ("03/31", None),
            ("1990-03-31", None),
            ("+3-01", None),
            ("", None),
        ];
        for (raw, expected) in cases {
            let parsed = Birthday::parse(raw).ok().map(|b| (b.month(), b.day()));
            assert_eq!(parsed, *expected, "{raw}");
        }
        assert_eq!(Birthday::parse("02-09").unwrap().to_string(), "02-09");
    }

    #[test]
    fn the_29th_of_february_falls_on_the_28th_in_other_years() {
        let leap_day = Birthday::new(2, 29).unwrap();
        let cases = [
            (date(2024, 2, 29), true),
            (date(2024, 2, 28), false),
            (date(2025, 2, 28), true),
            (date(2025, 3, 1), false),
            (date(2100, 2, 28), true),
        ];
        for (on, expected) in cases {
            assert_eq!(leap_day.falls_on(on), expected, "{on}");
        }
        let ordinary = Birthday::new(2, 28).unwrap();
        assert!(ordinary.falls_on(date(2024, 2, 28)));
        assert!(!ordinary.falls_on(date(2024, 2, 29)));
    }

    #[test]
    fn a_stored_birthday_is_checked_when_read() {
        let bytes = rmp_serde::to_vec_named(&BirthdayFields { month: 4, day: 31 }).unwrap();
        assert!(rmp_serde::from_slice::<Birthday>(&bytes).is_err());
        let good = Birthday::new(4, 30).unwrap();
        let bytes = rmp_serde::to_vec_named(&good).unwrap();
        assert_eq!(rmp_serde::from_slice::<Birthday>(&bytes).unwrap(), good);
    }
}
