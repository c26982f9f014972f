//! The analytics fold: a tenant's events, in tenant-sequence order, turned into counter
//! deltas (per local day, per customer, per customer-month, per reward redemption). The
//! projector (`projections::analytics`) guards against duplicates, calls [`TenantFold::apply`]
//! for each new event and writes the deltas; nothing here knows SQL.
//!
//! Each figure is dated by the event's own timestamp (a back-dated purchase counts on the day
//! it happened), read as a local date in the tenant's time zone *at the time the event is
//! folded* (a programme-settings change moves later events, not earlier ones).

use crate::events::{Event, HoldReleaseReason};
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use std::collections::BTreeMap;
use uuid::Uuid;

/// The time zone of a tenant whose programme settings were never changed.
pub const DEFAULT_TIME_ZONE: &str = "Africa/Lagos";

/// Ledger figures of one local day. Points and minor units are integers; `points_adjusted`
/// is signed (a negative adjustment takes points away).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DailyCounts {
    /// Points of `PointsEarned` (pending ones included) and `ReferralBonusAwarded`.
    pub points_issued: i64,
    /// Points spent: direct redemptions and fulfilled holds.
    pub points_redeemed: i64,
    pub points_expired: i64,
    /// Points a refund took back (`Reversal::reversed`: not what it forgave).
    pub points_reversed: i64,
    pub points_adjusted: i64,
    pub purchases: i64,
    pub purchase_amount_minor: i64,
    pub refunds: i64,
    pub refund_amount_minor: i64,
    /// Direct redemptions and fulfilled holds (the events that spend points).
    pub redemptions: i64,
    /// Reward holds made.
    pub holds: i64,
    /// Holds released without fulfilment (cancelled or expired).
    pub holds_released: i64,
    pub enrolments: i64,
}

impl DailyCounts {
    /// Adds `other`, counter by counter (saturating: a counter never wraps).
    pub fn add(&mut self, other: &DailyCounts) {
        let DailyCounts {
            points_issued,
            points_redeemed,
            points_expired,
            points_reversed,
            points_adjusted,
            purchases,
            purchase_amount_minor,
            refunds,
            refund_amount_minor,
            redemptions,
            holds,
            holds_released,
            enrolments,
        } = other;
        self.points_issued = self.points_issued.saturating_add(*points_issued);
        self.points_redeemed = self.points_redeemed.saturating_add(*points_redeemed);
        self.points_expired = self.points_expired.saturating_add(*points_expired);
        self.points_reversed = self.points_reversed.saturating_add(*points_reversed);
        self.points_adjusted = self.points_adjusted.saturating_add(*points_adjusted);
        self.purchases = self.purchases.saturating_add(*purchases);
        self.purchase_amount_minor = self
            .purchase_amount_minor
            .saturating_add(*purchase_amount_minor);
        self.refunds = self.refunds.saturating_add(*refunds);
        self.refund_amount_minor = self
            .refund_amount_minor
            .saturating_add(*refund_amount_minor);
        self.redemptions = self.redemptions.saturating_add(*redemptions);
        self.holds = self.holds.saturating_add(*holds);
        self.holds_released = self.holds_released.saturating_add(*holds_released);
        self.enrolments = self.enrolments.saturating_add(*enrolments);
    }
}

/// What a batch says about one customer. Days are latest-wins (`max`), so applying deltas in
/// any order gives the same row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustomerDelta {
    pub enrolled_on: Option<NaiveDate>,
    pub last_purchase_on: Option<NaiveDate>,
    /// The last hold or direct redemption (the customer's act, not the hand-over).
    pub last_redemption_on: Option<NaiveDate>,
    /// The tier after the batch, when the batch changed it.
    pub tier: Option<String>,
}

/// What a customer did in one month (flags are or-ed together).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MonthFlags {
    /// Purchased, held a reward or redeemed one.
    pub active: bool,
    /// Was issued points.
    pub earned: bool,
    /// Spent points (direct redemption or fulfilled hold).
    pub redeemed: bool,
}

/// How a redemption of a catalogue reward ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A direct redemption (points spent at once, no hold).
    Redeemed,
    Fulfilled,
    Cancelled,
    Expired,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Redeemed => "redeemed",
            Outcome::Fulfilled => "fulfilled",
            Outcome::Cancelled => "cancelled",
            Outcome::Expired => "expired",
        }
    }
}

/// A redemption of a catalogue reward: a hold (`outcome` `None`) or a direct redemption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedemptionOpened {
    pub redemption_id: Uuid,
    pub reward_id: Uuid,
    pub points: i64,
    pub on: NaiveDate,
    pub outcome: Option<Outcome>,
}

/// A hold's resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedemptionResolved {
    pub redemption_id: Uuid,
    pub outcome: Outcome,
    pub on: NaiveDate,
}

/// A catalogue entry as created or last updated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewardEntry {
    pub name: String,
    pub points_cost: i64,
}

/// Everything a batch changes for one tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantDeltas {
    pub daily: BTreeMap<NaiveDate, DailyCounts>,
    pub customers: BTreeMap<Uuid, CustomerDelta>,
    /// Per (customer, first day of the local month).
    pub months: BTreeMap<(Uuid, NaiveDate), MonthFlags>,
    /// In event order: a hold opened and resolved in one batch is opened first.
    pub opened: Vec<RedemptionOpened>,
    pub resolved: Vec<RedemptionResolved>,
    /// Rewards created or updated (latest wins).
    pub rewards: BTreeMap<Uuid, RewardEntry>,
    /// Rewards retired.
    pub retired: Vec<Uuid>,
    /// Whether the tenant's time zone changed (the fold's `time_zone_name` is the new one).
    pub time_zone_changed: bool,
}

impl TenantDeltas {
    pub fn is_empty(&self) -> bool {
        *self == TenantDeltas::default()
    }
}

/// The state the fold carries for a tenant between events: its time zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantFold {
    time_zone_name: String,
    time_zone: chrono_tz::Tz,
}

impl TenantFold {
    /// A fold in the named zone; a name chrono-tz does not know reads as the default zone
    /// (the ledger refuses such settings, so only a corrupt row could hold one).
    pub fn new(time_zone: &str) -> TenantFold {
        match time_zone.parse::<chrono_tz::Tz>() {
            Ok(tz) => TenantFold {
                time_zone_name: time_zone.to_owned(),
                time_zone: tz,
            },
            Err(_) => TenantFold {
                time_zone_name: DEFAULT_TIME_ZONE.to_owned(),
                time_zone: chrono_tz::Africa::Lagos,
            },
        }
    }

    pub fn time_zone_name(&self) -> &str {
        &self.time_zone_name
    }

    /// The local date of `at` in the tenant's zone.
    pub fn local_date(&self, at: DateTime<Utc>) -> NaiveDate {
        at.with_timezone(&self.time_zone).date_naive()
    }

    /// Folds one event of the tenant into `deltas`. `customer` is the customer whose stream
    /// holds the event (`None` for the tenant stream).
    pub fn apply(&mut self, deltas: &mut TenantDeltas, customer: Option<Uuid>, event: &Event) {
        match event {
            Event::ProgrammeSettingsChanged(e) => {
                if e.settings.time_zone != self.time_zone_name {
                    *self = TenantFold::new(&e.settings.time_zone);
                    deltas.time_zone_changed = true;
                }
            }
            Event::RewardCreated(e) => {
                deltas.rewards.insert(
                    e.reward_id.as_uuid(),
                    RewardEntry {
                        name: e.name.clone(),
                        points_cost: e.points_cost.value(),
                    },
                );
            }
            Event::RewardUpdated(e) => {
                deltas.rewards.insert(
                    e.reward_id.as_uuid(),
                    RewardEntry {
                        name: e.name.clone(),
                        points_cost: e.points_cost.value(),
                    },
                );
            }
            Event::RewardRetired(e) => deltas.retired.push(e.reward_id.as_uuid()),
            _ => {
                if let Some(customer) = customer {
                    self.customer_event(deltas, customer, event);
                }
            }
        }
    }

    fn customer_event(&self, deltas: &mut TenantDeltas, customer: Uuid, event: &Event) {
        let day = |at: DateTime<Utc>| self.local_date(at);
        match event {
            Event::CustomerEnrolled(e) => {
                let on = day(e.enrolled_at);
                deltas.daily.entry(on).or_default().enrolments += 1;
                deltas.customers.entry(customer).or_default().enrolled_on = Some(on);
            }
            Event::PurchaseLogged(e) => {
                let on = day(e.occurred_at);
                let counts = deltas.daily.entry(on).or_default();
                counts.purchases += 1;
                counts.purchase_amount_minor = counts
                    .purchase_amount_minor
                    .saturating_add(e.amount.value());
                latest(
                    &mut deltas
                        .customers
                        .entry(customer)
                        .or_default()
                        .last_purchase_on,
                    on,
                );
                month(deltas, customer, on).active = true;
            }
            Event::PointsEarned(e) => {
                issue(deltas, customer, day(e.earned_at), e.points.value());
            }
            Event::ReferralBonusAwarded(e) => {
                issue(deltas, customer, day(e.awarded_at), e.points.value());
            }
            Event::RewardRedeemed(e) => {
                let on = day(e.redeemed_at);
                spend(deltas, customer, on, e.points.value());
                latest(
                    &mut deltas
                        .customers
                        .entry(customer)
                        .or_default()
                        .last_redemption_on,
                    on,
                );
                month(deltas, customer, on).active = true;
                if let Some(reward) = e.reward_id {
                    deltas.opened.push(RedemptionOpened {
                        redemption_id: e.redemption_id.as_uuid(),
                        reward_id: reward.as_uuid(),
                        points: e.points.value(),
                        on,
                        outcome: Some(Outcome::Redeemed),
                    });
                }
            }
            Event::RewardHeld(e) => {
                let on = day(e.held_at);
                deltas.daily.entry(on).or_default().holds += 1;
                latest(
                    &mut deltas
                        .customers
                        .entry(customer)
                        .or_default()
                        .last_redemption_on,
                    on,
                );
                month(deltas, customer, on).active = true;
                deltas.opened.push(RedemptionOpened {
                    redemption_id: e.redemption_id.as_uuid(),
                    reward_id: e.reward_id.as_uuid(),
                    points: e.points.value(),
                    on,
                    outcome: None,
                });
            }
            Event::HoldFulfilled(e) => {
                let on = day(e.fulfilled_at);
                spend(deltas, customer, on, e.points.value());
                deltas.resolved.push(RedemptionResolved {
                    redemption_id: e.redemption_id.as_uuid(),
                    outcome: Outcome::Fulfilled,
                    on,
                });
            }
            Event::HoldReleased(e) => {
                let on = day(e.released_at);
                deltas.daily.entry(on).or_default().holds_released += 1;
                deltas.resolved.push(RedemptionResolved {
                    redemption_id: e.redemption_id.as_uuid(),
                    outcome: match e.reason {
                        HoldReleaseReason::Cancelled => Outcome::Cancelled,
                        HoldReleaseReason::Expired => Outcome::Expired,
                    },
                    on,
                });
            }
            Event::PointsExpired(e) => {
                let counts = deltas.daily.entry(day(e.expired_at)).or_default();
                counts.points_expired = counts.points_expired.saturating_add(e.points.value());
            }
            Event::PurchaseRefunded(e) => {
                let counts = deltas.daily.entry(day(e.refunded_at)).or_default();
                counts.refunds += 1;
                counts.refund_amount_minor =
                    counts.refund_amount_minor.saturating_add(e.amount.value());
                counts.points_reversed = counts
                    .points_reversed
                    .saturating_add(e.reversal.reversed().value());
            }
            Event::PointsAdjusted(e) => {
                let counts = deltas.daily.entry(day(e.adjusted_at)).or_default();
                counts.points_adjusted = counts.points_adjusted.saturating_add(e.points.value());
            }
            Event::TierChanged(e) => {
                deltas.customers.entry(customer).or_default().tier = Some(e.to.clone());
            }
            _ => {}
        }
    }
}

fn latest(slot: &mut Option<NaiveDate>, on: NaiveDate) {
    *slot = Some(slot.map_or(on, |d| d.max(on)));
}

fn month(deltas: &mut TenantDeltas, customer: Uuid, on: NaiveDate) -> &mut MonthFlags {
    deltas
        .months
        .entry((customer, first_of_month(on)))
        .or_default()
}

fn issue(deltas: &mut TenantDeltas, customer: Uuid, on: NaiveDate, points: i64) {
    let counts = deltas.daily.entry(on).or_default();
    counts.points_issued = counts.points_issued.saturating_add(points);
    month(deltas, customer, on).earned = true;
}

fn spend(deltas: &mut TenantDeltas, customer: Uuid, on: NaiveDate, points: i64) {
    let counts = deltas.daily.entry(on).or_default();
    counts.points_redeemed = counts.points_redeemed.saturating_add(points);
    counts.redemptions += 1;
    month(deltas, customer, on).redeemed = true;
}

/// The first day of `on`'s month.
pub fn first_of_month(on: NaiveDate) -> NaiveDate {
    on.with_day(1).unwrap_or(on)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::*;
    use crate::ids::*;
    use crate::{MinorUnits, Points};
    use chrono::TimeZone;

    fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn purchase(amount: i64, occurred_at: DateTime<Utc>) -> Event {
        Event::PurchaseLogged(PurchaseLogged {
            purchase_id: PurchaseId::from_uuid(Uuid::from_u128(7)),
            amount: MinorUnits::new(amount),
            line_items: vec![],
            reference: None,
            occurred_at,
            purchase_number: 1,
        })
    }

    fn earned(points: i64, earned_at: DateTime<Utc>) -> Event {
        Event::PointsEarned(PointsEarned {
            lot_id: LotId::from_uuid(Uuid::from_u128(8)),
            purchase_id: PurchaseId::from_uuid(Uuid::from_u128(7)),
            points: Points::new(points),
            rule_set_version: 1,
            breakdown: vec![],
            earned_at,
            expires_at: earned_at,
            point_value: None,
        })
    }

    fn held(redemption: u128, reward: u128, points: i64, held_at: DateTime<Utc>) -> Event {
        Event::RewardHeld(RewardHeld {
            redemption_id: RedemptionId::from_uuid(Uuid::from_u128(redemption)),
            reward_id: RewardId::from_uuid(Uuid::from_u128(reward)),
            description: "Coffee".into(),
            code: "ABCD".into(),
            points: Points::new(points),
            reserved: vec![],
            held_at,
            expires_at: held_at,
        })
    }

    #[test]
    fn a_day_is_the_tenants_local_day() {
        // 23:30 UTC on 31 January is 00:30 on 1 February in Lagos (UTC+1).
        let mut fold = TenantFold::new(DEFAULT_TIME_ZONE);
        let mut deltas = TenantDeltas::default();
        let customer = Uuid::from_u128(1);
        let late = Utc.with_ymd_and_hms(2026, 1, 31, 23, 30, 0).unwrap();
        fold.apply(&mut deltas, Some(customer), &purchase(5_000, late));
        assert_eq!(deltas.daily.keys().collect::<Vec<_>>(), [&date(2026, 2, 1)]);
        assert_eq!(deltas.daily[&date(2026, 2, 1)].purchases, 1);
        assert_eq!(deltas.daily[&date(2026, 2, 1)].purchase_amount_minor, 5_000);
        assert!(deltas.months[&(customer, date(2026, 2, 1))].active);
        assert_eq!(
            deltas.customers[&customer].last_purchase_on,
            Some(date(2026, 2, 1))
        );
    }

    #[test]
    fn a_time_zone_change_moves_later_events_only() {
        let mut fold = TenantFold::new(DEFAULT_TIME_ZONE);
        let mut deltas = TenantDeltas::default();
        let customer = Uuid::from_u128(1);
        let late = Utc.with_ymd_and_hms(2026, 3, 10, 23, 30, 0).unwrap();
        fold.apply(&mut deltas, Some(customer), &earned(10, late));
        let settings = ProgrammeSettings {
            time_zone: "America/New_York".into(),
            ..ProgrammeSettings::default()
        };
        fold.apply(
            &mut deltas,
            None,
            &Event::ProgrammeSettingsChanged(ProgrammeSettingsChanged {
                settings,
                changed_at: late,
            }),
        );
        fold.apply(&mut deltas, Some(customer), &earned(3, late));
        assert!(deltas.time_zone_changed);
        assert_eq!(fold.time_zone_name(), "America/New_York");
        assert_eq!(deltas.daily[&date(2026, 3, 11)].points_issued, 10);
        assert_eq!(deltas.daily[&date(2026, 3, 10)].points_issued, 3);
    }

    #[test]
    fn holds_count_when_made_and_spend_when_fulfilled() {
        let mut fold = TenantFold::new("UTC");
        let mut deltas = TenantDeltas::default();
        let customer = Uuid::from_u128(1);
        fold.apply(
            &mut deltas,
            Some(customer),
            &held(50, 60, 40, at(2026, 4, 2, 9)),
        );
        fold.apply(
            &mut deltas,
            Some(customer),
            &Event::HoldFulfilled(HoldFulfilled {
                redemption_id: RedemptionId::from_uuid(Uuid::from_u128(50)),
                points: Points::new(40),
                consumed: vec![],
                fulfilled_at: at(2026, 5, 1, 9),
            }),
        );
        fold.apply(
            &mut deltas,
            Some(customer),
            &held(51, 60, 40, at(2026, 4, 3, 9)),
        );
        fold.apply(
            &mut deltas,
            Some(customer),
            &Event::HoldReleased(HoldReleased {
                redemption_id: RedemptionId::from_uuid(Uuid::from_u128(51)),
                points: Points::new(40),
                released: vec![],
                reason: HoldReleaseReason::Expired,
                released_at: at(2026, 4, 17, 9),
            }),
        );
        let april = &deltas.daily[&date(2026, 4, 2)];
        assert_eq!(
            (april.holds, april.points_redeemed, april.redemptions),
            (1, 0, 0)
        );
        let may = &deltas.daily[&date(2026, 5, 1)];
        assert_eq!((may.points_redeemed, may.redemptions), (40, 1));
        assert_eq!(deltas.daily[&date(2026, 4, 17)].holds_released, 1);
        assert_eq!(
            deltas.months[&(customer, date(2026, 4, 1))],
            MonthFlags {
                active: true,
                earned: false,
                redeemed: false
            }
        );
        assert!(deltas.months[&(customer, date(2026, 5, 1))].redeemed);
        assert_eq!(deltas.opened.len(), 2);
        assert_eq!(
            deltas
                .resolved
                .iter()
                .map(|r| (r.outcome, r.on))
                .collect::<Vec<_>>(),
            [
                (Outcome::Fulfilled, date(2026, 5, 1)),
                (Outcome::Expired, date(2026, 4, 17))
            ]
        );
        assert_eq!(
            deltas.customers[&customer].last_redemption_on,
            Some(date(2026, 4, 3))
        );
    }

    #[test]
    fn refunds_count_what_was_reversed_not_what_was_forgiven() {
        let mut fold = TenantFold::new("UTC");
        let mut deltas = TenantDeltas::default();
        let event = Event::PurchaseRefunded(PurchaseRefunded {
            refund_id: RefundId::from_uuid(Uuid::from_u128(9)),
            purchase_id: PurchaseId::from_uuid(Uuid::from_u128(7)),
            amount: MinorUnits::new(2_500),
            reference: None,
            refunded_at: at(2026, 6, 1, 12),
            reversal: Reversal {
                due: Points::new(10),
                from_pending: Points::new(2),
                from_lots: vec![LotDebit {
                    lot_id: LotId::from_uuid(Uuid::from_u128(8)),
                    points: Points::new(3),
                }],
                waived_expired: Points::new(1),
                debt: Points::new(1),
                clamped: Points::new(3),
                policy: RefundPolicy::ClampAtZero,
            },
        });
        fold.apply(&mut deltas, Some(Uuid::from_u128(1)), &event);
        let day = &deltas.daily[&date(2026, 6, 1)];
        assert_eq!(
            (day.refunds, day.refund_amount_minor, day.points_reversed),
            (1, 2_500, 6)
        );
    }

    #[test]
    fn later_days_win_whatever_the_order() {
        let mut fold = TenantFold::new("UTC");
        let mut deltas = TenantDeltas::default();
        let customer = Uuid::from_u128(1);
        fold.apply(&mut deltas, Some(customer), &purchase(1, at(2026, 6, 9, 1)));
        // A back-dated purchase logged later.
        fold.apply(&mut deltas, Some(customer), &purchase(1, at(2026, 5, 9, 1)));
        assert_eq!(
            deltas.customers[&customer].last_purchase_on,
            Some(date(2026, 6, 9))
        );
        assert_eq!(deltas.months.len(), 2);
    }

    #[test]
    fn an_unknown_zone_reads_as_the_default() {
        assert_eq!(
            TenantFold::new("Mars/Olympus").time_zone_name(),
            "Africa/Lagos"
        );
        assert_eq!(
            TenantFold::new("Europe/Paris").time_zone_name(),
            "Europe/Paris"
        );
    }

    #[test]
    fn tenant_events_without_a_customer_touch_only_the_catalogue() {
        let mut fold = TenantFold::new("UTC");
        let mut deltas = TenantDeltas::default();
        fold.apply(
            &mut deltas,
            None,
            &Event::RewardCreated(RewardCreated {
                reward_id: RewardId::from_uuid(Uuid::from_u128(60)),
                name: "Coffee".into(),
                points_cost: Points::new(40),
                terms: RewardTerms::default(),
                created_at: at(2026, 1, 1, 0),
            }),
        );
        fold.apply(&mut deltas, None, &purchase(1, at(2026, 1, 1, 0)));
        assert!(deltas.daily.is_empty());
        assert_eq!(deltas.rewards[&Uuid::from_u128(60)].points_cost, 40);
    }
}
