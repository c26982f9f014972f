//! Dry-run of a proposed rule set: what the tenant's past purchases in a date range would
//! have earned under it, beside what they actually earned. Nothing is decided or written;
//! this is a pure fold over recorded facts.
//!
//! Reading order: [`DryRun::new`] (the proposed set, the tenant's time zone and ladder, the
//! range), [`DryRun::apply`] (one recorded event of one customer), [`DryRun::finish`]
//! (the [`DryRunReport`]).
//!
//! # What is folded
//!
//! Each customer's events must arrive in stream (version) order; events of different
//! customers may interleave (the shell reads the tenant's events in tenant-sequence order,
//! which is version order within every stream). Only three kinds matter:
//!
//! - `PurchaseLogged` with `from <= occurred_at < to` (half-open range) is evaluated under
//!   the proposed set with facts rebuilt the way `decide_purchase` builds them: the local
//!   time in the tenant's time zone, the recorded `purchase_number` (so purchases before
//!   `from` need not be read), the customer's tier before the purchase, and for daily caps
//!   the points the *proposed* set gave the customer's purchases that were logged earlier
//!   on the same local day. Purchases outside the range are skipped.
//! - `PointsEarned` of an evaluated purchase is what actually happened (0 when the purchase
//!   earned nothing and no `PointsEarned` followed).
//! - `TierChanged` moves the customer's tier; before any, the customer is at the base of
//!   the tenant's current ladder (none without a ladder), as in `decide_purchase`.
//!
//! # What is not modelled
//!
//! - Birthday and referral facts are neutral (as in the ledger today, see [`crate::rules`]):
//!   those rules earn nothing here either.
//! - Refunds after a purchase are ignored on both sides: the figures compare what purchases
//!   earned when they were logged, gross of any later reversal.
//! - Daily caps count only purchases inside the range: a purchase before `from` on the same
//!   local day does not use up the proposed cap.
//! - Tiers are the customer's actual tiers; a proposed set does not change them, although
//!   a points-based ladder would have moved with the proposed points.
//!
//! # Arithmetic
//!
//! Integers only. Sums are `i128` and checked into `i64` at the end ([`DryRunOverflow`]);
//! the liability difference in money is `difference × point_value` (minor units), `None`
//! when the tenant has not stated a point value.

use crate::amounts::{MinorUnits, Points};
use crate::events::Event;
use crate::ids::{CustomerId, PurchaseId};
use crate::rules::{local_time, KindName, PurchaseFacts, RuleSet};
use chrono::{DateTime, NaiveDate, Utc};
use std::collections::BTreeMap;

/// Points of one rule of the proposed set over the whole range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleTotal {
    pub rule_id: String,
    pub kind: KindName,
    pub points: Points,
}

/// The answer of a dry-run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DryRunReport {
    pub purchases_evaluated: u64,
    /// Customers with at least one purchase in the range.
    pub customers_evaluated: u64,
    /// Customers whose total under the proposed set differs from what they earned.
    pub customers_affected: u64,
    pub points_actual: Points,
    pub points_proposed: Points,
    /// `points_proposed − points_actual`: the change in points liability.
    pub points_difference: Points,
    /// Every rule of the proposed set, in the set's order, with the points it changed over
    /// the range (0 when it never applied; negative for exclusions and caps).
    pub points_by_rule: Vec<RuleTotal>,
    /// `points_difference × point_value`, in minor units; `None` when the tenant has not
    /// stated what a point is worth.
    pub liability_difference_minor: Option<MinorUnits>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the dry-run's figures overflow")]
pub struct DryRunOverflow;

/// A dry-run in progress. See the module doc.
#[derive(Debug)]
pub struct DryRun<'a> {
    rule_set: &'a RuleSet,
    time_zone: chrono_tz::Tz,
    base_tier: Option<String>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    customers: BTreeMap<CustomerId, CustomerRun>,
    purchases_evaluated: u64,
    by_rule: BTreeMap<String, i128>,
}

/// What the fold keeps per customer.
#[derive(Debug, Default)]
struct CustomerRun {
    tier: Option<String>,
    /// The last evaluated purchase, waiting for its `PointsEarned`.
    awaiting: Option<PurchaseId>,
    /// Proposed points per local day (for daily caps).
    proposed_by_day: BTreeMap<NaiveDate, i128>,
    evaluated: bool,
    actual: i128,
    proposed: i128,
}

impl<'a> DryRun<'a> {
    /// `base_tier` is the first tier of the tenant's ladder, `None` without one.
    pub fn new(
        rule_set: &'a RuleSet,
        time_zone: chrono_tz::Tz,
        base_tier: Option<String>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Self {
        debug_assert!(from < to, "the shell checks the range");
        DryRun {
            rule_set,
            time_zone,
            base_tier,
            from,
            to,
            customers: BTreeMap::new(),
            purchases_evaluated: 0,
            by_rule: BTreeMap::new(),
        }
    }

    /// Folds one event of `customer`'s stream (in version order for that customer).
    pub fn apply(&mut self, customer: CustomerId, event: &Event) -> Result<(), DryRunOverflow> {
        match event {
            Event::TierChanged(changed) => {
                self.customers.entry(customer).or_default().tier = Some(changed.to.clone());
            }
            Event::PurchaseLogged(purchase) => {
                let run = self.customers.entry(customer).or_default();
                run.awaiting = None;
                if purchase.occurred_at < self.from || purchase.occurred_at >= self.to {
                    return Ok(());
                }
                let local = local_time(self.time_zone, purchase.occurred_at);
                let day = local.date();
                let earned_today = run.proposed_by_day.get(&day).copied().unwrap_or(0);
                let facts = PurchaseFacts {
                    line_items: &purchase.line_items,
                    tier: run.tier.as_deref().or(self.base_tier.as_deref()),
                    earned_today: Points::new(
                        i64::try_from(earned_today).map_err(|_| DryRunOverflow)?,
                    ),
                    ..PurchaseFacts::new(purchase.amount, purchase.purchase_number, local)
                };
                let earning = self.rule_set.evaluate(facts).map_err(|_| DryRunOverflow)?;
                let total = i128::from(earning.total.value());
                *run.proposed_by_day.entry(day).or_insert(0) += total;
                run.proposed += total;
                run.evaluated = true;
                run.awaiting = Some(purchase.purchase_id);
                for line in earning.breakdown {
                    *self.by_rule.entry(line.rule_id).or_insert(0) +=
                        i128::from(line.points.value());
                }
                self.purchases_evaluated += 1;
            }
            Event::PointsEarned(earned) => {
                if let Some(run) = self.customers.get_mut(&customer) {
                    if run.awaiting == Some(earned.purchase_id) {
                        run.actual += i128::from(earned.points.value());
                        run.awaiting = None;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    pub fn finish(self, point_value: Option<MinorUnits>) -> Result<DryRunReport, DryRunOverflow> {
        let evaluated = self.customers.values().filter(|run| run.evaluated);
        let (mut actual, mut proposed) = (0_i128, 0_i128);
        let (mut customers_evaluated, mut customers_affected) = (0_u64, 0_u64);
        for run in evaluated {
            actual += run.actual;
            proposed += run.proposed;
            customers_evaluated += 1;
            if run.actual != run.proposed {
                customers_affected += 1;
            }
        }
        let points = |value: i128| {
            i64::try_from(value)
                .map(Points::new)
                .map_err(|_| DryRunOverflow)
        };
        let difference = proposed - actual;
        let liability_difference_minor = point_value
            .map(|value| {
                i64::try_from(difference * i128::from(value.value()))
                    .map(MinorUnits::new)
                    .map_err(|_| DryRunOverflow)
            })
            .transpose()?;
        let points_by_rule = self
            .rule_set
            .rules()
            .iter()
            .map(|rule| {
                Ok(RuleTotal {
                    rule_id: rule.id.clone(),
                    kind: rule.kind.name(),
                    points: points(self.by_rule.get(&rule.id).copied().unwrap_or(0))?,
                })
            })
            .collect::<Result<Vec<_>, DryRunOverflow>>()?;
        // Postcondition: the per-rule figures add up to the proposed total.
        debug_assert_eq!(
            points_by_rule
                .iter()
                .map(|line| i128::from(line.points.value()))
                .sum::<i128>(),
            proposed
        );
        Ok(DryRunReport {
            purchases_evaluated: self.purchases_evaluated,
            customers_evaluated,
            customers_affected,
            points_actual: points(actual)?,
            points_proposed: points(proposed)?,
            points_difference: points(difference)?,
            points_by_rule,
            liability_difference_minor,
        })
    }
}

#[cfg(test)]
mod tests;
