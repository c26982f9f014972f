//! Tiers: a tenant's ladder of levels (e.g. Bronze, Silver, Gold) that customers climb by
//! what they spend, or by the points they earn, over a qualification window.
//!
//! - **Basis**: net spend (purchase amounts less refunds, minor units) or net points earned
//!   (points of purchases less what refunds took back). Adjustments and redemptions do not
//!   count: a tier measures custom, not balance (Open Loyalty's #131 promoted by balance).
//! - **Window**: the last N days (rolling) or the calendar year, in the tenant's time zone.
//! - **Upgrade** at once: the purchase that crosses a threshold emits `TierChanged` in the
//!   same decision.
//! - **Downgrade** only at the tier's review date: a tier is kept until the end of its
//!   period (the end of the calendar year it was reached in, or N days after it was
//!   reached), then reviewed against the window that ends at the review date, plus an
//!   optional grace period before a lower tier takes effect. A kept tier is reviewed again
//!   one period later (`TierRetained`). The scheduled run issues the reviews.
//!
//! The ladder's first tier has threshold 0: every enrolled customer is at least there.

use crate::amounts::MinorUnits;
use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};

/// The most tiers a ladder may have.
pub const TIERS_MAX: usize = 10;
/// The longest rolling window and grace period, in days.
pub const WINDOW_DAYS_MAX: u32 = 3_650;
pub const TIER_NAME_CHARS_MAX: usize = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TierBasis {
    /// Net spend in minor units.
    Spend,
    /// Net points earned by purchases.
    PointsEarned,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum TierWindow {
    RollingDays { days: u32 },
    CalendarYear,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tier {
    /// Stable id (`[a-z0-9_-]`, 1–30): what events and rules name.
    pub id: String,
    /// What customers read.
    pub name: String,
    /// The least qualifying value (minor units or points) to reach the tier.
    pub threshold: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierScheme {
    pub basis: TierBasis,
    pub window: TierWindow,
    /// Days after a review date before a downgrade takes effect.
    pub grace_days: u32,
    /// Ascending thresholds, the first 0.
    pub tiers: Vec<Tier>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidTierScheme {
    #[error("a tier scheme has 1 to {TIERS_MAX} tiers")]
    TierCount,
    #[error("the first tier's threshold must be 0")]
    FirstThresholdNotZero,
    #[error("tier {0:?}: thresholds must rise strictly from tier to tier")]
    ThresholdsNotAscending(String),
    #[error("tier {0:?}: an id is 1 to 30 characters of a-z, 0-9, _ and -, unique in the scheme")]
    InvalidId(String),
    #[error("tier {0:?}: a name is 1 to {TIER_NAME_CHARS_MAX} characters, not only blanks")]
    InvalidName(String),
    #[error("the window and the grace period are 1 to {WINDOW_DAYS_MAX} days (grace may be 0)")]
    DaysOutOfRange,
}

impl TierScheme {
    pub fn check(&self) -> Result<(), InvalidTierScheme> {
        if self.tiers.is_empty() || self.tiers.len() > TIERS_MAX {
            return Err(InvalidTierScheme::TierCount);
        }
        if self.tiers[0].threshold != 0 {
            return Err(InvalidTierScheme::FirstThresholdNotZero);
        }
        if let TierWindow::RollingDays { days } = self.window {
            if !(1..=WINDOW_DAYS_MAX).contains(&days) {
                return Err(InvalidTierScheme::DaysOutOfRange);
            }
        }
        if self.grace_days > WINDOW_DAYS_MAX {
            return Err(InvalidTierScheme::DaysOutOfRange);
        }
        for (index, tier) in self.tiers.iter().enumerate() {
            let id_ok = (1..=30).contains(&tier.id.len())
                && tier.id.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                })
                && self.tiers[..index].iter().all(|t| t.id != tier.id);
            if !id_ok {
                return Err(InvalidTierScheme::InvalidId(tier.id.clone()));
            }
            let chars = tier.name.chars().count();
            if chars == 0 || chars > TIER_NAME_CHARS_MAX || tier.name.trim().is_empty() {
                return Err(InvalidTierScheme::InvalidName(tier.id.clone()));
            }
            if index > 0 && tier.threshold <= self.tiers[index - 1].threshold {
                return Err(InvalidTierScheme::ThresholdsNotAscending(tier.id.clone()));
            }
        }
        Ok(())
    }

    /// The tier's place on the ladder; an id the scheme no longer has ranks as the base.
    pub fn rank(&self, id: Option<&str>) -> usize {
        id.and_then(|id| self.tiers.iter().position(|t| t.id == id))
            .unwrap_or(0)
    }

    pub fn tier(&self, id: &str) -> Option<&Tier> {
        self.tiers.iter().find(|t| t.id == id)
    }

    /// The highest tier `value` qualifies for.
    pub fn qualified_rank(&self, value: i64) -> usize {
        self.tiers
            .iter()
            .rposition(|t| value >= t.threshold)
            .unwrap_or(0)
    }

    /// The start of the window `[start, at]` that ends at `at` (both ends count, so the
    /// purchase that reached a tier still counts at the review one window later); `tz`
    /// gives the calendar year. A calendar window ending at a year's first instant (a review
    /// date) is the year that just ended: the year is that of the instant just before `at`.
    pub fn window_start(&self, at: DateTime<Utc>, tz: chrono_tz::Tz) -> DateTime<Utc> {
        match self.window {
            TierWindow::RollingDays { days } => at - Duration::days(i64::from(days)),
            TierWindow::CalendarYear => {
                let last_instant = at - Duration::microseconds(1);
                year_start(last_instant.with_timezone(&tz).year(), tz)
            }
        }
    }

    /// When a tier reached (or last reviewed) at `from` is reviewed: the end of its period.
    pub fn review_after(&self, from: DateTime<Utc>, tz: chrono_tz::Tz) -> DateTime<Utc> {
        match self.window {
            TierWindow::RollingDays { days } => from + Duration::days(i64::from(days)),
            TierWindow::CalendarYear => year_start(from.with_timezone(&tz).year() + 1, tz),
        }
    }
}

/// Local midnight of 1 January of `year`, as an instant.
fn year_start(year: i32, tz: chrono_tz::Tz) -> DateTime<Utc> {
    let midnight = NaiveDate::from_ymd_opt(year, 1, 1)
        .unwrap_or(NaiveDate::MIN)
        .and_hms_opt(0, 0, 0)
        .unwrap_or_default();
    tz.from_local_datetime(&midnight).earliest().map_or_else(
        || DateTime::<Utc>::from_naive_utc_and_offset(midnight, Utc),
        |t| t.with_timezone(&Utc),
    )
}

/// One purchase as the qualification sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Qualifying {
    pub occurred_at: DateTime<Utc>,
    pub net_amount: MinorUnits,
    pub net_points: i64,
}

/// The qualifying value of the purchases in `[start, end]`.
pub fn qualifying_value(
    basis: TierBasis,
    purchases: impl Iterator<Item = Qualifying>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> i64 {
    purchases
        .filter(|p| p.occurred_at >= start && p.occurred_at <= end)
        .map(|p| match basis {
            TierBasis::Spend => p.net_amount.value(),
            TierBasis::PointsEarned => p.net_points,
        })
        .fold(0_i64, i64::saturating_add)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scheme(window: TierWindow) -> TierScheme {
        TierScheme {
            basis: TierBasis::Spend,
            window,
            grace_days: 0,
            tiers: vec![
                Tier {
                    id: "bronze".into(),
                    name: "Bronze".into(),
                    threshold: 0,
                },
                Tier {
                    id: "silver".into(),
                    name: "Silver".into(),
                    threshold: 100_000,
                },
                Tier {
                    id: "gold".into(),
                    name: "Gold".into(),
                    threshold: 500_000,
                },
            ],
        }
    }

    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
    }

    #[test]
    fn the_qualified_tier_is_the_highest_threshold_reached() {
        let s = scheme(TierWindow::CalendarYear);
        assert_eq!(s.qualified_rank(0), 0);
        assert_eq!(s.qualified_rank(99_999), 0);
        assert_eq!(
            s.qualified_rank(100_000),
            1,
            "a threshold is reached exactly"
        );
        assert_eq!(s.qualified_rank(499_999), 1);
        assert_eq!(s.qualified_rank(10_000_000), 2);
        assert_eq!(s.rank(Some("gold")), 2);
        assert_eq!(s.rank(Some("gone")), 0);
        assert_eq!(s.rank(None), 0);
    }

    #[test]
    fn calendar_years_turn_at_lagos_midnight() {
        let s = scheme(TierWindow::CalendarYear);
        let lagos = chrono_tz::Africa::Lagos;
        // 23:30 UTC on 31 December is 00:30 on 1 January in Lagos (UTC+1, no DST).
        let new_year_in_lagos = utc(2026, 12, 31, 23, 30);
        assert_eq!(
            s.window_start(new_year_in_lagos, lagos),
            utc(2026, 12, 31, 23, 0)
        );
        assert_eq!(
            s.window_start(utc(2026, 12, 31, 22, 59), lagos),
            utc(2025, 12, 31, 23, 0)
        );
        // The review at the year's first instant looks at the year that ended.
        assert_eq!(
            s.window_start(utc(2026, 12, 31, 23, 0), lagos),
            utc(2025, 12, 31, 23, 0)
        );
        assert_eq!(
            s.review_after(utc(2026, 3, 1, 12, 0), lagos),
            utc(2026, 12, 31, 23, 0)
        );
        let rolling = scheme(TierWindow::RollingDays { days: 90 });
        assert_eq!(
            rolling.review_after(utc(2026, 3, 1, 12, 0), lagos),
            utc(2026, 5, 30, 12, 0)
        );
    }

    #[test]
    fn the_value_counts_the_window_only() {
        let at = utc(2026, 6, 1, 0, 0);
        let purchases = [
            (utc(2026, 5, 31, 0, 0), 10, 1),
            (utc(2026, 3, 3, 0, 0), 20, 2), // 90 days before `at` exactly: inside
            (utc(2026, 3, 2, 23, 59), 40, 4), // a minute earlier: outside
        ]
        .map(|(occurred_at, amount, points)| Qualifying {
            occurred_at,
            net_amount: MinorUnits::new(amount),
            net_points: points,
        });
        let start = at - Duration::days(90);
        assert_eq!(
            qualifying_value(TierBasis::Spend, purchases.iter().copied(), start, at),
            30
        );
        assert_eq!(
            qualifying_value(
                TierBasis::PointsEarned,
                purchases.iter().copied(),
                start,
                at
            ),
            3
        );
    }

    #[test]
    fn bad_schemes_are_refused() {
        let good = scheme(TierWindow::RollingDays { days: 365 });
        assert_eq!(good.check(), Ok(()));
        let mut s = good.clone();
        s.tiers[0].threshold = 1;
        assert_eq!(s.check(), Err(InvalidTierScheme::FirstThresholdNotZero));
        let mut s = good.clone();
        s.tiers[2].threshold = 100_000;
        assert_eq!(
            s.check(),
            Err(InvalidTierScheme::ThresholdsNotAscending("gold".into()))
        );
        let mut s = good.clone();
        s.tiers[1].id = "Silver".into();
        assert_eq!(
            s.check(),
            Err(InvalidTierScheme::InvalidId("Silver".into()))
        );
        let mut s = good.clone();
        s.tiers[2].id = "silver".into();
        assert_eq!(
            s.check(),
            Err(InvalidTierScheme::InvalidId("silver".into()))
        );
        let mut s = good.clone();
        s.tiers[1].name = "  ".into();
        assert_eq!(
            s.check(),
            Err(InvalidTierScheme::InvalidName("silver".into()))
        );
        let mut s = good.clone();
        s.window = TierWindow::RollingDays { days: 0 };
        assert_eq!(s.check(), Err(InvalidTierScheme::DaysOutOfRange));
        let mut s = good;
        s.tiers.clear();
        assert_eq!(s.check(), Err(InvalidTierScheme::TierCount));
    }
}
