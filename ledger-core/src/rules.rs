//! The points-rules engine: a published [`RuleSet`] applied to the facts of one purchase.
//!
//! Rounding: `per_amount_spent` counts whole steps only (floor of amount / step); a partial
//! step earns nothing. All rules that apply stack (their points add up), in the order the
//! rule set lists them; the breakdown records each rule's share so a replay never has to
//! re-run the rules.

use crate::amounts::{MinorUnits, Points};
use serde::{Deserialize, Serialize};

/// One earning rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// `points_per_step` for every whole `amount_step` spent, when the purchase is at least
    /// `minimum_purchase` (inclusive).
    PerAmountSpent {
        amount_step: MinorUnits,
        points_per_step: Points,
        minimum_purchase: MinorUnits,
    },
    /// A flat number of points for every purchase.
    PerPurchase { points: Points },
    /// `bonus` on every `every_nth_purchase`-th purchase, counting the current one: with
    /// N = 5 the 5th, 10th, 15th… purchases earn the bonus.
    Milestone {
        every_nth_purchase: u32,
        bonus: Points,
    },
}

impl Rule {
    pub fn kind(&self) -> RuleKind {
        match self {
            Rule::PerAmountSpent { .. } => RuleKind::PerAmountSpent,
            Rule::PerPurchase { .. } => RuleKind::PerPurchase,
            Rule::Milestone { .. } => RuleKind::Milestone,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    PerAmountSpent,
    PerPurchase,
    Milestone,
}

impl RuleKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::PerAmountSpent => "per_amount_spent",
            RuleKind::PerPurchase => "per_purchase",
            RuleKind::Milestone => "milestone",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRuleSet {
    #[error("a rule set version starts at 1")]
    VersionZero,
    #[error("a rule set holds at most {max} rules", max = RuleSet::RULES_MAX)]
    TooManyRules,
    #[error("rule {index}: amount_step must be greater than zero")]
    ZeroAmountStep { index: usize },
    #[error("rule {index}: points must not be negative or larger than {max}", max = Points::COMMAND_MAX)]
    PointsOutOfRange { index: usize },
    #[error("rule {index}: minimum_purchase must not be negative")]
    NegativeMinimum { index: usize },
    #[error("rule {index}: every_nth_purchase must be at least 1")]
    ZeroMilestone { index: usize },
}

/// A versioned, validated set of rules. Built only through [`RuleSet::new`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSet {
    version: u32,
    rules: Vec<Rule>,
}

/// The facts of one purchase that the rules look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PurchaseFacts {
    pub amount: MinorUnits,
    /// 1 for the customer's first purchase at this tenant, counting the current one.
    pub purchase_number: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RulePoints {
    pub rule: RuleKind,
    pub points: Points,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Earning {
    pub total: Points,
    /// Each rule that gave points, in rule-set order.
    pub breakdown: Vec<RulePoints>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the points for this purchase overflow")]
pub struct EarningOverflow;

impl RuleSet {
    pub const RULES_MAX: usize = 32;

    pub fn new(version: u32, rules: Vec<Rule>) -> Result<Self, InvalidRuleSet> {
        if version == 0 {
            return Err(InvalidRuleSet::VersionZero);
        }
        if rules.len() > Self::RULES_MAX {
            return Err(InvalidRuleSet::TooManyRules);
        }
        let points_in_range = |p: Points| (0..=Points::COMMAND_MAX).contains(&p.value());
        for (index, rule) in rules.iter().enumerate() {
            match *rule {
                Rule::PerAmountSpent {
                    amount_step,
                    points_per_step,
                    minimum_purchase,
                } => {
                    if amount_step.value() <= 0 {
                        return Err(InvalidRuleSet::ZeroAmountStep { index });
                    }
                    if !points_in_range(points_per_step) {
                        return Err(InvalidRuleSet::PointsOutOfRange { index });
                    }
                    if minimum_purchase.value() < 0 {
                        return Err(InvalidRuleSet::NegativeMinimum { index });
                    }
                }
                Rule::PerPurchase { points } => {
                    if !points_in_range(points) {
                        return Err(InvalidRuleSet::PointsOutOfRange { index });
                    }
                }
                Rule::Milestone {
                    every_nth_purchase,
                    bonus,
                } => {
                    if every_nth_purchase == 0 {
                        return Err(InvalidRuleSet::ZeroMilestone { index });
                    }
                    if !points_in_range(bonus) {
                        return Err(InvalidRuleSet::PointsOutOfRange { index });
                    }
                }
            }
        }
        Ok(RuleSet { version, rules })
    }

    /// The default for a new tenant: 1 point per ₦100 (10,000 kobo) spent.
    pub fn starter() -> Self {
        RuleSet {
            version: 1,
            rules: vec![Rule::PerAmountSpent {
                amount_step: MinorUnits::new(10_000),
                points_per_step: Points::new(1),
                minimum_purchase: MinorUnits::ZERO,
            }],
        }
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Applies every rule to one purchase and adds up what they give.
    pub fn evaluate(&self, facts: PurchaseFacts) -> Result<Earning, EarningOverflow> {
        let mut total = Points::ZERO;
        let mut breakdown = Vec::new();
        for rule in &self.rules {
            let points = rule_points(rule, facts)?;
            if points.is_positive() {
                total = total.checked_add(points).ok_or(EarningOverflow)?;
                breakdown.push(RulePoints {
                    rule: rule.kind(),
                    points,
                });
            }
        }
        Ok(Earning { total, breakdown })
    }
}

fn rule_points(rule: &Rule, facts: PurchaseFacts) -> Result<Points, EarningOverflow> {
    match *rule {
        Rule::PerAmountSpent {
            amount_step,
            points_per_step,
            minimum_purchase,
        } => {
            if facts.amount < minimum_purchase {
                return Ok(Points::ZERO);
            }
            // Floor division: only whole steps earn. Both operands are positive here.
            let whole_steps = facts.amount.value() / amount_step.value();
            points_per_step
                .checked_mul(whole_steps)
                .ok_or(EarningOverflow)
        }
        Rule::PerPurchase { points } => Ok(points),
        Rule::Milestone {
            every_nth_purchase,
            bonus,
        } => {
            let reached = facts.purchase_number > 0
                && facts.purchase_number.is_multiple_of(every_nth_purchase);
            Ok(if reached { bonus } else { Points::ZERO })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn per_amount(step: i64, points: i64, minimum: i64) -> Rule {
        Rule::PerAmountSpent {
            amount_step: MinorUnits::new(step),
            points_per_step: Points::new(points),
            minimum_purchase: MinorUnits::new(minimum),
        }
    }

    fn milestone(n: u32, bonus: i64) -> Rule {
        Rule::Milestone {
            every_nth_purchase: n,
            bonus: Points::new(bonus),
        }
    }

    /// One line per scenario: rules, amount, purchase number (counting this one), points.
    #[test]
    fn scenarios() {
        let flat = |p| Rule::PerPurchase {
            points: Points::new(p),
        };
        let table: Vec<(&str, Vec<Rule>, i64, u32, i64)> = vec![
            ("no rules earn nothing", vec![], 50_000, 1, 0),
            (
                "whole steps only",
                vec![per_amount(10_000, 1, 0)],
                25_999,
                1,
                2,
            ),
            (
                "exactly one step",
                vec![per_amount(10_000, 1, 0)],
                10_000,
                1,
                1,
            ),
            (
                "below one step",
                vec![per_amount(10_000, 1, 0)],
                9_999,
                1,
                0,
            ),
            (
                "configured step and points are used",
                vec![per_amount(500, 3, 0)],
                2_000,
                1,
                12,
            ),
            (
                "exact minimum earns",
                vec![per_amount(100, 1, 5_000)],
                5_000,
                1,
                50,
            ),
            (
                "one below minimum earns nothing",
                vec![per_amount(100, 1, 5_000)],
                4_999,
                1,
                0,
            ),
            ("per purchase is flat", vec![flat(10)], 1, 1, 10),
            (
                "milestone on the 5th counting the current",
                vec![milestone(5, 100)],
                1,
                5,
                100,
            ),
            ("milestone not on the 4th", vec![milestone(5, 100)], 1, 4, 0),
            ("milestone on the 10th", vec![milestone(5, 100)], 1, 10, 100),
            ("milestone every purchase", vec![milestone(1, 7)], 1, 1, 7),
            (
                "rules stack",
                vec![per_amount(10_000, 1, 0), flat(5), milestone(3, 50)],
                30_000,
                3,
                58,
            ),
        ];
        for (name, rules, amount, number, expected) in table {
            let set = RuleSet::new(1, rules).unwrap();
            let earning = set
                .evaluate(PurchaseFacts {
                    amount: MinorUnits::new(amount),
                    purchase_number: number,
                })
                .unwrap();
            assert_eq!(earning.total.value(), expected, "{name}");
            let sum: i64 = earning.breakdown.iter().map(|r| r.points.value()).sum();
            assert_eq!(sum, expected, "{name}: breakdown adds up");
        }
    }

    #[test]
    fn breakdown_names_each_rule() {
        let set = RuleSet::new(2, vec![per_amount(100, 1, 0), milestone(1, 9)]).unwrap();
        let earning = set
            .evaluate(PurchaseFacts {
                amount: MinorUnits::new(300),
                purchase_number: 1,
            })
            .unwrap();
        assert_eq!(
            earning.breakdown,
            vec![
                RulePoints {
                    rule: RuleKind::PerAmountSpent,
                    points: Points::new(3)
                },
                RulePoints {
                    rule: RuleKind::Milestone,
                    points: Points::new(9)
                },
            ]
        );
    }

    #[test]
    fn invalid_rule_sets_are_refused() {
        assert_eq!(RuleSet::new(0, vec![]), Err(InvalidRuleSet::VersionZero));
        assert_eq!(
            RuleSet::new(1, vec![per_amount(0, 1, 0)]),
            Err(InvalidRuleSet::ZeroAmountStep { index: 0 })
        );
        assert_eq!(
            RuleSet::new(1, vec![per_amount(1, -1, 0)]),
            Err(InvalidRuleSet::PointsOutOfRange { index: 0 })
        );
        assert_eq!(
            RuleSet::new(1, vec![per_amount(1, 1, -1)]),
            Err(InvalidRuleSet::NegativeMinimum { index: 0 })
        );
        assert_eq!(
            RuleSet::new(1, vec![milestone(0, 1)]),
            Err(InvalidRuleSet::ZeroMilestone { index: 0 })
        );
        assert_eq!(
            RuleSet::new(1, vec![milestone(1, 1); 33]),
            Err(InvalidRuleSet::TooManyRules)
        );
    }

    #[test]
    fn overflow_is_reported_not_wrapped() {
        let set = RuleSet::new(1, vec![per_amount(1, Points::COMMAND_MAX, 0)]).unwrap();
        let result = set.evaluate(PurchaseFacts {
            amount: MinorUnits::new(MinorUnits::AMOUNT_MAX),
            purchase_number: 1,
        });
        assert_eq!(result, Err(EarningOverflow));
    }
}
