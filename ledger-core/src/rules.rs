//! The points-rules engine (v2): a published, versioned [`RuleSet`] applied to the facts of
//! one purchase. This module doc is the reference for what a rule set means.
//!
//! Reading order: [`Rule`] and [`RuleKind`] (what a vendor writes), [`RuleSet::new`] (what
//! is refused), [`PurchaseFacts`] (what the rules look at), then [`RuleSet::evaluate`].
//!
//! # A rule
//!
//! Every rule has an `id` (1 to 40 characters of `a-z`, `0-9`, `_`, `-`, unique in its set),
//! a `priority` (lower is evaluated first; ties are broken by position in the set), a
//! `stacking` (`stack`, or `exclusive` in a named group) and an optional `when` window that
//! gates it: a rule whose window does not hold at the purchase's local time does not apply
//! at all. A window holds when every part it states holds: a date range `from..=to` of
//! local dates (both inclusive), a set of weekdays, and hours `start..end` of local time
//! (start inclusive, end exclusive, 0 to 24).
//!
//! Unknown fields are refused when a rule is read (a misspelt `when` must not make a
//! promotion apply all the time).
//!
//! Local time is the purchase's `occurred_at` in the tenant's time zone ([`local_time`];
//! the tenant's `ProgrammeSettings::time_zone`, [`DEFAULT_TIME_ZONE`] Africa/Lagos — UTC+1
//! all year round — unless the vendor chose another).
//!
//! # Evaluation, in four phases
//!
//! 1. **Base earners** — `per_amount_spent`, `per_purchase`, `milestone` (every Nth
//!    purchase, counting the current one), `first_purchase` (purchase number 1),
//!    `birthday` (the purchase falls on the customer's birthday, local date, and no
//!    birthday bonus was given yet this local year — the facts say both), `referral` (the
//!    referee's first purchase, when the customer was referred: `referee_bonus` is earned
//!    here and `referrer_bonus` is returned apart, in [`Earning::referrer_bonus`], for the
//!    referral process to credit to the referrer; self-referral is refused by `decide`).
//!    `per_amount_spent` earns `floor(eligible spend / amount_step) × points_per_step` when
//!    the purchase amount is at least `minimum_purchase` (inclusive); its breakdown entry is
//!    computed on the unweighted spend (the purchase amount, or the sum of its lines).
//! 2. **Line items** — `item_multiplier` rules weight the spend the `per_amount_spent`
//!    rules earn on: weighted spend = Σ over line items of `floor(line × percent / 100)`
//!    where `line = quantity × unit_price` and `percent` is that of the *first* matching
//!    multiplier in evaluation order (priority, then position), 100 when none matches. A
//!    multiplier matches an item by SKU or by category (either list may be empty, not
//!    both). Percent 0 is an exclusion. Choosing the first match rather than the highest
//!    keeps priority the one explicit knob: a vendor who wants an exclusion to win puts it
//!    first. A purchase without line items is weighted at 100 as a whole. Each multiplier's
//!    breakdown entry is the difference it makes to the per-amount points (negative for an
//!    exclusion): with multipliers `m1..mk` in order, `mi` shows
//!    `PA(spend with m1..mi) − PA(spend with m1..m(i−1))`, which adds up to the weighted
//!    total. Excluding every item takes the per-amount points to 0.
//! 3. **Multipliers on the base** — `promotion` (on all base rules, or on listed base rule
//!    ids) and `tier_multiplier` (when the customer's tier equals `tier`). The base of a
//!    multiplier is the points of the base rules it applies to after line-item weighting.
//!    Multipliers are additive, not compounding: each adds `floor(base × (percent − 100) /
//!    100)` (floor toward −∞, so a percent below 100 takes points away), computed on the
//!    same base; a multiplier never takes the running total below zero.
//! 4. **Caps**, last: every `purchase_cap` (the purchase's total ≤ `max`), then every
//!    `daily_cap` (points earned by the customer on the purchase's local day, this purchase
//!    included, ≤ `max`; the facts give what was already earned that day). A cap that bites
//!    appears in the breakdown as a negative entry; the total never goes below zero.
//!
//! **Stacking.** Rules of `stack` all apply. Among the applicable rules of one `exclusive`
//! group only the one giving the most points applies (ties: lower priority, then earlier
//! position). A group is resolved within its phase, on each rule's own points: a base
//! rule's breakdown points, an item multiplier's difference as if it were the only one, a
//! multiplier's addition. A group may not span phases, and caps cannot be exclusive (all
//! caps apply; the tightest wins by construction), so both are refused at validation.
//!
//! **Rounding.** Floor at every step (whole steps only, each weighted line, each
//! multiplier's addition); there are no floats anywhere. Intermediate sums are `i128`; an
//! entry or total that does not fit an `i64` is [`EarningOverflow`], never wrapped.
//!
//! **Breakdown.** One entry per rule that changed the points (zero entries are left out),
//! in phase order and, within a phase, in evaluation order. It always adds up to the total.
//! Events record the breakdown and the set's version, so a replay never re-runs the rules.
//!
//! **Older shapes.** Rule sets of the first engine (events before v2, see [`crate::codec`])
//! are read as rules `rule-1`, `rule-2`… in position order, priority = position, stacking,
//! no window: exactly what that engine computed. Their breakdown lines are read with the
//! kind's name as the rule id.
//!
//! **Where the facts come from** (`aggregate::decide_purchase`): the tier and what was
//! earned that local day from the customer state; `birthday_today` and
//! `birthday_bonus_this_year` from the customer's birthday and the birthday bonuses already
//! earned, judged in the tenant's time zone (docs/PROGRAMME.md); `referred` when the
//! customer enrolled with a referral code.

use crate::amounts::{MinorUnits, Points};
use crate::events::LineItem;
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Timelike, Utc, Weekday};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The time zone of every tenant until the tenant's setting exists.
pub const DEFAULT_TIME_ZONE: chrono_tz::Tz = chrono_tz::Africa::Lagos;

/// `at` as a wall-clock reading in `tz`: what windows, birthdays and days are judged on.
pub fn local_time(tz: chrono_tz::Tz, at: DateTime<Utc>) -> NaiveDateTime {
    at.with_timezone(&tz).naive_local()
}

/// The instants of local date `date` in `tz`, as `start..end` (end excluded): to select
/// what happened on a local day by comparing instants, without converting each one.
pub fn local_day(tz: chrono_tz::Tz, date: chrono::NaiveDate) -> std::ops::Range<DateTime<Utc>> {
    use chrono::TimeZone;
    let start_of = |day: chrono::NaiveDate| {
        let midnight = day.and_time(chrono::NaiveTime::MIN);
        // A zone whose clocks skip midnight starts the day at the first instant that exists.
        tz.from_local_datetime(&midnight)
            .earliest()
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|| midnight.and_utc())
    };
    let next = date.succ_opt().unwrap_or(date);
    start_of(date)..start_of(next)
}

/// One rule of a set: who it is, when it is evaluated, how it stacks, when it applies, and
/// what it does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub id: String,
    #[serde(default)]
    pub priority: u16,
    #[serde(default)]
    pub stacking: Stacking,
    #[serde(default)]
    pub when: Option<Window>,
    pub kind: RuleKind,
}

impl Rule {
    /// A stacking rule of priority 0 that always applies.
    pub fn new(id: impl Into<String>, kind: RuleKind) -> Self {
        Rule {
            id: id.into(),
            priority: 0,
            stacking: Stacking::Stack,
            when: None,
            kind,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stacking {
    #[default]
    Stack,
    Exclusive {
        group: String,
    },
}

/// When a rule applies, in local time. Every part that is stated must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// First local date, inclusive.
    #[serde(default)]
    pub from: Option<NaiveDate>,
    /// Last local date, inclusive.
    #[serde(default)]
    pub to: Option<NaiveDate>,
    #[serde(default)]
    pub weekdays: Option<Vec<Weekday>>,
    #[serde(default)]
    pub hours: Option<Hours>,
}

/// Local hours `start..end`: start inclusive, end exclusive (`0..24` is the whole day).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hours {
    pub start: u8,
    pub end: u8,
}

impl Window {
    pub fn holds(&self, local: NaiveDateTime) -> bool {
        let date = local.date();
        self.from.is_none_or(|from| from <= date)
            && self.to.is_none_or(|to| date <= to)
            && self
                .weekdays
                .as_ref()
                .is_none_or(|days| days.contains(&date.weekday()))
            && self.hours.is_none_or(|hours| {
                let hour = local.hour();
                u32::from(hours.start) <= hour && hour < u32::from(hours.end)
            })
    }
}

/// Which line items an item multiplier matches: by SKU or by category.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemMatch {
    #[serde(default)]
    pub skus: Vec<String>,
    #[serde(default)]
    pub categories: Vec<String>,
}

impl ItemMatch {
    fn matches(&self, item: &LineItem) -> bool {
        self.skus.contains(&item.sku)
            || item
                .category
                .as_ref()
                .is_some_and(|category| self.categories.contains(category))
    }
}

/// What a promotion multiplies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppliesTo {
    AllBaseRules,
    Rules(Vec<String>),
}

/// What a rule does. See the module doc for the phases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RuleKind {
    PerAmountSpent {
        amount_step: MinorUnits,
        points_per_step: Points,
        minimum_purchase: MinorUnits,
    },
    PerPurchase {
        points: Points,
    },
    Milestone {
        every_nth_purchase: u32,
        bonus: Points,
    },
    FirstPurchase {
        bonus: Points,
    },
    Birthday {
        bonus: Points,
    },
    Referral {
        referee_bonus: Points,
        referrer_bonus: Points,
    },
    ItemMultiplier {
        #[serde(rename = "match")]
        item_match: ItemMatch,
        percent: u32,
    },
    Promotion {
        percent: u32,
        applies_to: AppliesTo,
    },
    TierMultiplier {
        tier: String,
        percent: u32,
    },
    PurchaseCap {
        max: Points,
    },
    DailyCap {
        max: Points,
    },
}

/// The four phases of evaluation, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Base,
    Item,
    Multiplier,
    Cap,
}

impl RuleKind {
    pub fn name(&self) -> KindName {
        match self {
            RuleKind::PerAmountSpent { .. } => KindName::PerAmountSpent,
            RuleKind::PerPurchase { .. } => KindName::PerPurchase,
            RuleKind::Milestone { .. } => KindName::Milestone,
            RuleKind::FirstPurchase { .. } => KindName::FirstPurchase,
            RuleKind::Birthday { .. } => KindName::Birthday,
            RuleKind::Referral { .. } => KindName::Referral,
            RuleKind::ItemMultiplier { .. } => KindName::ItemMultiplier,
            RuleKind::Promotion { .. } => KindName::Promotion,
            RuleKind::TierMultiplier { .. } => KindName::TierMultiplier,
            RuleKind::PurchaseCap { .. } => KindName::PurchaseCap,
            RuleKind::DailyCap { .. } => KindName::DailyCap,
        }
    }

    fn phase(&self) -> Phase {
        match self {
            RuleKind::PerAmountSpent { .. }
            | RuleKind::PerPurchase { .. }
            | RuleKind::Milestone { .. }
            | RuleKind::FirstPurchase { .. }
            | RuleKind::Birthday { .. }
            | RuleKind::Referral { .. } => Phase::Base,
            RuleKind::ItemMultiplier { .. } => Phase::Item,
            RuleKind::Promotion { .. } | RuleKind::TierMultiplier { .. } => Phase::Multiplier,
            RuleKind::PurchaseCap { .. } | RuleKind::DailyCap { .. } => Phase::Cap,
        }
    }
}

/// The name of a rule's kind, as the breakdown records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KindName {
    PerAmountSpent,
    PerPurchase,
    Milestone,
    FirstPurchase,
    Birthday,
    Referral,
    ItemMultiplier,
    Promotion,
    TierMultiplier,
    PurchaseCap,
    DailyCap,
}

impl KindName {
    pub fn as_str(self) -> &'static str {
        match self {
            KindName::PerAmountSpent => "per_amount_spent",
            KindName::PerPurchase => "per_purchase",
            KindName::Milestone => "milestone",
            KindName::FirstPurchase => "first_purchase",
            KindName::Birthday => "birthday",
            KindName::Referral => "referral",
            KindName::ItemMultiplier => "item_multiplier",
            KindName::Promotion => "promotion",
            KindName::TierMultiplier => "tier_multiplier",
            KindName::PurchaseCap => "purchase_cap",
            KindName::DailyCap => "daily_cap",
        }
    }
}

/// Why a rule set was refused. `rule` is the id of the faulty rule as given; `field` names
/// the field (dotted for nested ones), so the API can point at it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRuleSet {
    #[error("a rule set version starts at 1")]
    VersionZero,
    #[error("a rule set holds at most {max} rules", max = RuleSet::RULES_MAX)]
    TooManyRules,
    #[error("rule {rule:?}: {field} {reason}")]
    InvalidField {
        rule: String,
        field: &'static str,
        reason: &'static str,
    },
    #[error("rule {rule:?}: the id is used by an earlier rule")]
    DuplicateId { rule: String },
    #[error("rule {rule:?}: applies_to names {target:?}, which is not a base rule of the set")]
    NotABaseRule { rule: String, target: String },
    #[error("rule {rule:?}: exclusive group {group:?} already holds rules of another phase")]
    GroupSpansPhases { rule: String, group: String },
}

impl InvalidRuleSet {
    /// The id of the faulty rule, when one is at fault.
    pub fn rule(&self) -> Option<&str> {
        match self {
            InvalidRuleSet::VersionZero | InvalidRuleSet::TooManyRules => None,
            InvalidRuleSet::InvalidField { rule, .. }
            | InvalidRuleSet::DuplicateId { rule }
            | InvalidRuleSet::NotABaseRule { rule, .. }
            | InvalidRuleSet::GroupSpansPhases { rule, .. } => Some(rule),
        }
    }

    /// The faulty field of that rule.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            InvalidRuleSet::VersionZero | InvalidRuleSet::TooManyRules => None,
            InvalidRuleSet::InvalidField { field, .. } => Some(field),
            InvalidRuleSet::DuplicateId { .. } => Some("id"),
            InvalidRuleSet::NotABaseRule { .. } => Some("kind.applies_to"),
            InvalidRuleSet::GroupSpansPhases { .. } => Some("stacking.group"),
        }
    }
}

/// A versioned, validated set of rules. Built only through [`RuleSet::new`] (or read back
/// from a stored event, which was validated when it was decided).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSet {
    version: u32,
    rules: Vec<Rule>,
}

/// The facts of one purchase that the rules look at. Borrowed, so cheap to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PurchaseFacts<'a> {
    pub amount: MinorUnits,
    /// 1 for the customer's first purchase at this tenant, counting the current one.
    pub purchase_number: u32,
    /// The purchase's `occurred_at` in the tenant's time zone ([`local_time`]).
    pub local_time: NaiveDateTime,
    pub line_items: &'a [LineItem],
    pub tier: Option<&'a str>,
    /// Points the customer already earned on the purchase's local day (for `daily_cap`).
    pub earned_today: Points,
    /// The purchase's local date is the customer's birthday.
    pub birthday_today: bool,
    /// A birthday bonus was already given in the purchase's local year.
    pub birthday_bonus_this_year: bool,
    /// The customer enrolled with someone's referral code.
    pub referred: bool,
}

impl<'a> PurchaseFacts<'a> {
    /// Facts with neutral values for everything but the amount, number and time.
    pub fn new(amount: MinorUnits, purchase_number: u32, local_time: NaiveDateTime) -> Self {
        PurchaseFacts {
            amount,
            purchase_number,
            local_time,
            line_items: &[],
            tier: None,
            earned_today: Points::ZERO,
            birthday_today: false,
            birthday_bonus_this_year: false,
            referred: false,
        }
    }
}

/// One line of an earning's breakdown: which rule changed the points, and by how much
/// (negative for an exclusion, a multiplier below 100 % or a cap).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RulePoints {
    pub rule_id: String,
    pub kind: KindName,
    pub points: Points,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Earning {
    pub total: Points,
    /// Each rule that changed the points, in phase then evaluation order; adds up to `total`.
    pub breakdown: Vec<RulePoints>,
    /// What the referrer earns for this purchase (not part of `total`): the shell credits
    /// it to the referrer.
    pub referrer_bonus: Points,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the points for this purchase overflow")]
pub struct EarningOverflow;

impl RuleSet {
    pub const RULES_MAX: usize = 32;
    pub const ID_CHARS_MAX: usize = 40;
    pub const PERCENT_MAX: u32 = 1000;
    /// As long as a SKU or category may be on a purchase.
    pub const MATCH_CHARS_MAX: usize = 64;
    pub const MATCH_ENTRIES_MAX: usize = 100;

    pub fn new(version: u32, rules: Vec<Rule>) -> Result<Self, InvalidRuleSet> {
        if version == 0 {
            return Err(InvalidRuleSet::VersionZero);
        }
        if rules.len() > Self::RULES_MAX {
            return Err(InvalidRuleSet::TooManyRules);
        }
        let mut groups: BTreeMap<&str, Phase> = BTreeMap::new();
        for (index, rule) in rules.iter().enumerate() {
            check_rule(rule)?;
            if rules[..index].iter().any(|earlier| earlier.id == rule.id) {
                return Err(InvalidRuleSet::DuplicateId {
                    rule: rule.id.clone(),
                });
            }
            if let Stacking::Exclusive { group } = &rule.stacking {
                let phase = *groups.entry(group).or_insert(rule.kind.phase());
                if phase != rule.kind.phase() {
                    return Err(InvalidRuleSet::GroupSpansPhases {
                        rule: rule.id.clone(),
                        group: group.clone(),
                    });
                }
            }
        }
        for rule in &rules {
            if let RuleKind::Promotion {
                applies_to: AppliesTo::Rules(targets),
                ..
            } = &rule.kind
            {
                for target in targets {
                    let is_base = rules
                        .iter()
                        .any(|r| r.id == *target && r.kind.phase() == Phase::Base);
                    if !is_base {
                        return Err(InvalidRuleSet::NotABaseRule {
                            rule: rule.id.clone(),
                            target: target.clone(),
                        });
                    }
                }
            }
        }
        Ok(RuleSet { version, rules })
    }

    /// A set read back from a stored event (or upcast from an older shape): it was
    /// validated when it was decided, and a replay must never refuse a stored fact.
    pub(crate) fn from_stored(version: u32, rules: Vec<Rule>) -> Self {
        RuleSet { version, rules }
    }

    /// The default for a new tenant: 1 point per ₦100 (10,000 kobo) spent.
    pub fn starter() -> Self {
        RuleSet {
            version: 1,
            rules: vec![Rule::new(
                "rule-1",
                RuleKind::PerAmountSpent {
                    amount_step: MinorUnits::new(10_000),
                    points_per_step: Points::new(1),
                    minimum_purchase: MinorUnits::ZERO,
                },
            )],
        }
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }
}

fn invalid(rule: &Rule, field: &'static str, reason: &'static str) -> InvalidRuleSet {
    InvalidRuleSet::InvalidField {
        rule: rule.id.clone(),
        field,
        reason,
    }
}

fn is_name(text: &str) -> bool {
    (1..=RuleSet::ID_CHARS_MAX).contains(&text.chars().count())
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

fn check_rule(rule: &Rule) -> Result<(), InvalidRuleSet> {
    const NAME: &str = "must be 1 to 40 characters of a-z, 0-9, '_' and '-'";
    if !is_name(&rule.id) {
        return Err(invalid(rule, "id", NAME));
    }
    if let Stacking::Exclusive { group } = &rule.stacking {
        if !is_name(group) {
            return Err(invalid(rule, "stacking.group", NAME));
        }
        if rule.kind.phase() == Phase::Cap {
            return Err(invalid(rule, "stacking", "a cap cannot be exclusive"));
        }
    }
    if let Some(window) = &rule.when {
        check_window(rule, window)?;
    }
    check_kind(rule)
}

fn check_window(rule: &Rule, window: &Window) -> Result<(), InvalidRuleSet> {
    if let (Some(from), Some(to)) = (window.from, window.to) {
        if from > to {
            return Err(invalid(rule, "when.to", "must not be before when.from"));
        }
    }
    if window.weekdays.as_ref().is_some_and(Vec::is_empty) {
        return Err(invalid(rule, "when.weekdays", "must name at least one day"));
    }
    if let Some(hours) = window.hours {
        if hours.end > 24 {
            return Err(invalid(rule, "when.hours.end", "must be at most 24"));
        }
        if hours.start >= hours.end {
            return Err(invalid(rule, "when.hours", "start must be before end"));
        }
    }
    Ok(())
}

fn check_kind(rule: &Rule) -> Result<(), InvalidRuleSet> {
    const POINTS: &str = "must be between 0 and 1000000000000";
    const PERCENT: &str = "must be at most 1000";
    let points = |field, value: Points| {
        if (0..=Points::COMMAND_MAX).contains(&value.value()) {
            Ok(())
        } else {
            Err(invalid(rule, field, POINTS))
        }
    };
    let percent = |value: u32| {
        if value <= RuleSet::PERCENT_MAX {
            Ok(())
        } else {
            Err(invalid(rule, "kind.percent", PERCENT))
        }
    };
    match &rule.kind {
        RuleKind::PerAmountSpent {
            amount_step,
            points_per_step,
            minimum_purchase,
        } => {
            if !(1..=MinorUnits::AMOUNT_MAX).contains(&amount_step.value()) {
                return Err(invalid(
                    rule,
                    "kind.amount_step",
                    "must be between 1 and the largest amount",
                ));
            }
            points("kind.points_per_step", *points_per_step)?;
            if !(0..=MinorUnits::AMOUNT_MAX).contains(&minimum_purchase.value()) {
                return Err(invalid(
                    rule,
                    "kind.minimum_purchase",
                    "must be between 0 and the largest amount",
                ));
            }
            Ok(())
        }
        RuleKind::PerPurchase { points: value } => points("kind.points", *value),
        RuleKind::Milestone {
            every_nth_purchase,
            bonus,
        } => {
            if *every_nth_purchase == 0 {
                return Err(invalid(
                    rule,
                    "kind.every_nth_purchase",
                    "must be at least 1",
                ));
            }
            points("kind.bonus", *bonus)
        }
        RuleKind::FirstPurchase { bonus } | RuleKind::Birthday { bonus } => {
            points("kind.bonus", *bonus)
        }
        RuleKind::Referral {
            referee_bonus,
            referrer_bonus,
        } => {
            points("kind.referee_bonus", *referee_bonus)?;
            points("kind.referrer_bonus", *referrer_bonus)
        }
        RuleKind::ItemMultiplier {
            item_match,
            percent: value,
        } => {
            check_item_match(rule, item_match)?;
            percent(*value)
        }
        RuleKind::Promotion {
            percent: value,
            applies_to,
        } => {
            if let AppliesTo::Rules(ids) = applies_to {
                if ids.is_empty() || ids.len() > RuleSet::RULES_MAX {
                    return Err(invalid(
                        rule,
                        "kind.applies_to",
                        "must list 1 to 32 rule ids",
                    ));
                }
            }
            percent(*value)
        }
        RuleKind::TierMultiplier {
            tier,
            percent: value,
        } => {
            let chars = tier.chars().count();
            if chars == 0 || chars > RuleSet::ID_CHARS_MAX || tier.trim().is_empty() {
                return Err(invalid(rule, "kind.tier", "must be 1 to 40 characters"));
            }
            percent(*value)
        }
        RuleKind::PurchaseCap { max } | RuleKind::DailyCap { max } => points("kind.max", *max),
    }
}

fn check_item_match(rule: &Rule, item_match: &ItemMatch) -> Result<(), InvalidRuleSet> {
    let entries = item_match.skus.len() + item_match.categories.len();
    if entries == 0 || entries > RuleSet::MATCH_ENTRIES_MAX {
        return Err(invalid(
            rule,
            "kind.match",
            "must list 1 to 100 SKUs and categories",
        ));
    }
    let sane = |text: &String| (1..=RuleSet::MATCH_CHARS_MAX).contains(&text.chars().count());
    if !item_match.skus.iter().all(sane) {
        return Err(invalid(
            rule,
            "kind.match.skus",
            "must be 1 to 64 characters",
        ));
    }
    if !item_match.categories.iter().all(sane) {
        return Err(invalid(
            rule,
            "kind.match.categories",
            "must be 1 to 64 characters",
        ));
    }
    Ok(())
}

impl RuleSet {
    /// Applies the set to one purchase (see the module doc for the phases and rounding).
    pub fn evaluate(&self, facts: PurchaseFacts<'_>) -> Result<Earning, EarningOverflow> {
        let applicable = self.applicable_in_order(facts.local_time);
        let of_phase = |phase: Phase| -> Vec<&Rule> {
            applicable
                .iter()
                .copied()
                .filter(|rule| rule.kind.phase() == phase)
                .collect()
        };
        let base = base_phase(&of_phase(Phase::Base), facts);
        let items = item_phase(&of_phase(Phase::Item), &base, facts);
        let mut running: i128 = base.lines.iter().map(|(_, points)| points).sum::<i128>()
            + items.lines.iter().map(|(_, points)| points).sum::<i128>();
        let multiplier_lines = multiplier_phase(
            &of_phase(Phase::Multiplier),
            &base,
            items.weighted_spend,
            facts,
            &mut running,
        );
        let cap_lines = cap_phase(&of_phase(Phase::Cap), facts, &mut running);

        let referrer_bonus: i128 = base
            .lines
            .iter()
            .filter_map(|(rule, _)| match rule.kind {
                RuleKind::Referral { referrer_bonus, .. } => {
                    Some(i128::from(referrer_bonus.value()))
                }
                _ => None,
            })
            .sum();
        let breakdown = base
            .lines
            .into_iter()
            .chain(items.lines)
            .chain(multiplier_lines)
            .chain(cap_lines)
            .filter(|&(_, points)| points != 0)
            .map(|(rule, points)| {
                Ok(RulePoints {
                    rule_id: rule.id.clone(),
                    kind: rule.kind.name(),
                    points: to_points(points)?,
                })
            })
            .collect::<Result<Vec<_>, EarningOverflow>>()?;
        let earning = Earning {
            total: to_points(running)?,
            breakdown,
            referrer_bonus: to_points(referrer_bonus)?,
        };
        // Postconditions: never negative, and the breakdown adds up.
        debug_assert!(!earning.total.value().is_negative());
        debug_assert_eq!(
            earning
                .breakdown
                .iter()
                .map(|line| i128::from(line.points.value()))
                .sum::<i128>(),
            running
        );
        Ok(earning)
    }

    /// The rules whose window holds at `local`, in evaluation order: priority, then
    /// position.
    fn applicable_in_order(&self, local: NaiveDateTime) -> Vec<&Rule> {
        let mut order: Vec<usize> = (0..self.rules.len()).collect();
        order.sort_by_key(|&index| (self.rules[index].priority, index));
        order
            .into_iter()
            .map(|index| &self.rules[index])
            .filter(|rule| rule.when.as_ref().is_none_or(|window| window.holds(local)))
            .collect()
    }
}

/// A breakdown line before it is checked to fit: the rule and the points it changed.
type Line<'r> = (&'r Rule, i128);

/// Phase 1: the base earners that apply, each on its own, exclusive groups resolved.
struct Base<'r> {
    lines: Vec<Line<'r>>,
    /// `(amount_step, points_per_step)` of the `per_amount_spent` rules among them.
    per_amount: Vec<(i128, i128)>,
}

impl Base<'_> {
    /// What the per-amount rules earn on `spend`.
    fn per_amount_points(&self, spend: i128) -> i128 {
        self.per_amount
            .iter()
            .map(|&(step, points_per_step)| spend / step * points_per_step)
            .sum()
    }
}

fn base_phase<'r>(rules: &[&'r Rule], facts: PurchaseFacts<'_>) -> Base<'r> {
    let lines = exclusive_winners(
        rules
            .iter()
            .filter_map(|&rule| base_points(rule, facts).map(|points| (rule, points)))
            .collect(),
    );
    let per_amount = lines
        .iter()
        .filter_map(|(rule, _)| per_amount_terms(rule))
        .collect();
    Base { lines, per_amount }
}

/// Phase 2: the line-item multipliers that apply, each showing the difference it makes.
struct Items<'r> {
    lines: Vec<Line<'r>>,
    /// The spend with every applied multiplier.
    weighted_spend: i128,
}

fn item_phase<'r>(rules: &[&'r Rule], base: &Base<'_>, facts: PurchaseFacts<'_>) -> Items<'r> {
    let unweighted_points = base.per_amount_points(weighted_spend(facts, &[]));
    let winners = exclusive_winners(
        rules
            .iter()
            .map(|&rule| {
                let alone = base.per_amount_points(weighted_spend(facts, &[rule]));
                (rule, alone - unweighted_points)
            })
            .collect(),
    );
    let mut lines = Vec::with_capacity(winners.len());
    let mut weighting: Vec<&Rule> = Vec::with_capacity(winners.len());
    let mut previous = unweighted_points;
    for (rule, _) in winners {
        weighting.push(rule);
        let now = base.per_amount_points(weighted_spend(facts, &weighting));
        lines.push((rule, now - previous));
        previous = now;
    }
    Items {
        lines,
        weighted_spend: weighted_spend(facts, &weighting),
    }
}

/// Phase 3: promotions and tier multipliers on the weighted base, additive, never taking
/// `running` below zero.
fn multiplier_phase<'r>(
    rules: &[&'r Rule],
    base: &Base<'_>,
    spend: i128,
    facts: PurchaseFacts<'_>,
    running: &mut i128,
) -> Vec<Line<'r>> {
    let weighted_base = |applies: &dyn Fn(&Rule) -> bool| -> i128 {
        base.lines
            .iter()
            .filter(|(rule, _)| applies(rule))
            .map(|&(rule, points)| match per_amount_terms(rule) {
                Some((step, points_per_step)) => spend / step * points_per_step,
                None => points,
            })
            .sum()
    };
    let candidates = rules
        .iter()
        .filter_map(|&rule| {
            let (percent, base_points) = match &rule.kind {
                RuleKind::Promotion {
                    percent,
                    applies_to: AppliesTo::AllBaseRules,
                } => (*percent, weighted_base(&|_| true)),
                RuleKind::Promotion {
                    percent,
                    applies_to: AppliesTo::Rules(ids),
                } => (*percent, weighted_base(&|r: &Rule| ids.contains(&r.id))),
                RuleKind::TierMultiplier { tier, percent } if facts.tier == Some(tier.as_str()) => {
                    (*percent, weighted_base(&|_| true))
                }
                _ => return None,
            };
            let addition = (base_points * (i128::from(percent) - 100)).div_euclid(100);
            Some((rule, addition))
        })
        .collect();
    let mut lines = Vec::new();
    for (rule, addition) in exclusive_winners(candidates) {
        // Never below zero: a multiplier under 100 % takes at most what is there.
        let addition = addition.max(-*running);
        *running += addition;
        lines.push((rule, addition));
    }
    lines
}

/// Phase 4: every purchase cap, then every daily cap, each as a negative line when it
/// bites.
fn cap_phase<'r>(
    rules: &[&'r Rule],
    facts: PurchaseFacts<'_>,
    running: &mut i128,
) -> Vec<Line<'r>> {
    let purchase_caps = rules
        .iter()
        .filter(|rule| matches!(rule.kind, RuleKind::PurchaseCap { .. }));
    let daily_caps = rules
        .iter()
        .filter(|rule| matches!(rule.kind, RuleKind::DailyCap { .. }));
    let mut lines = Vec::new();
    for &rule in purchase_caps.chain(daily_caps) {
        let limit = match rule.kind {
            RuleKind::PurchaseCap { max } => i128::from(max.value()),
            RuleKind::DailyCap { max } => {
                (i128::from(max.value()) - i128::from(facts.earned_today.value())).max(0)
            }
            _ => continue,
        };
        if *running > limit {
            lines.push((rule, limit - *running));
            *running = limit;
        }
    }
    lines
}

fn to_points(value: i128) -> Result<Points, EarningOverflow> {
    i64::try_from(value)
        .map(Points::new)
        .map_err(|_| EarningOverflow)
}

/// A base earner's points for this purchase (unweighted for `per_amount_spent`), or `None`
/// when it does not apply.
fn base_points(rule: &Rule, facts: PurchaseFacts<'_>) -> Option<i128> {
    let points = |p: Points| Some(i128::from(p.value()));
    match rule.kind {
        RuleKind::PerAmountSpent {
            minimum_purchase, ..
        } => {
            if facts.amount < minimum_purchase {
                return None;
            }
            let (step, points_per_step) = per_amount_terms(rule)?;
            Some(weighted_spend(facts, &[]) / step * points_per_step)
        }
        RuleKind::PerPurchase { points: p } => points(p),
        RuleKind::Milestone {
            every_nth_purchase,
            bonus,
        } => {
            let reached = facts.purchase_number > 0
                && every_nth_purchase > 0
                && facts.purchase_number.is_multiple_of(every_nth_purchase);
            reached.then_some(i128::from(bonus.value()))
        }
        RuleKind::FirstPurchase { bonus } => {
            (facts.purchase_number == 1).then_some(i128::from(bonus.value()))
        }
        RuleKind::Birthday { bonus } => (facts.birthday_today && !facts.birthday_bonus_this_year)
            .then_some(i128::from(bonus.value())),
        RuleKind::Referral { referee_bonus, .. } => (facts.referred && facts.purchase_number == 1)
            .then_some(i128::from(referee_bonus.value())),
        _ => None,
    }
}

/// `(amount_step, points_per_step)` of a `per_amount_spent` rule.
fn per_amount_terms(rule: &Rule) -> Option<(i128, i128)> {
    match rule.kind {
        RuleKind::PerAmountSpent {
            amount_step,
            points_per_step,
            ..
        } if amount_step.value() > 0 => Some((
            i128::from(amount_step.value()),
            i128::from(points_per_step.value()),
        )),
        _ => None,
    }
}

/// The spend the per-amount rules earn on: each line weighted by the first matching item
/// multiplier of `multipliers` (100 % when none matches), floored per line. A purchase
/// without line items counts as a whole at 100 %.
fn weighted_spend(facts: PurchaseFacts<'_>, multipliers: &[&Rule]) -> i128 {
    if facts.line_items.is_empty() {
        return i128::from(facts.amount.value().max(0));
    }
    facts
        .line_items
        .iter()
        .map(|item| {
            let line = (i128::from(item.unit_price.value()) * i128::from(item.quantity)).max(0);
            let percent = multipliers
                .iter()
                .find_map(|rule| match &rule.kind {
                    RuleKind::ItemMultiplier {
                        item_match,
                        percent,
                    } if item_match.matches(item) => Some(i128::from(*percent)),
                    _ => None,
                })
                .unwrap_or(100);
            line * percent / 100
        })
        .sum()
}

/// Keeps every stacking rule and, of each exclusive group, the one giving the most points
/// (the first in evaluation order on a tie). `candidates` are in evaluation order, and so
/// is the result.
fn exclusive_winners<'r>(candidates: Vec<Line<'r>>) -> Vec<Line<'r>> {
    let mut best: BTreeMap<&str, usize> = BTreeMap::new();
    for (index, (rule, points)) in candidates.iter().enumerate() {
        if let Stacking::Exclusive { group } = &rule.stacking {
            let holder = best.entry(group.as_str()).or_insert(index);
            if *points > candidates[*holder].1 {
                *holder = index;
            }
        }
    }
    candidates
        .iter()
        .enumerate()
        .filter(|(index, (rule, _))| match &rule.stacking {
            Stacking::Stack => true,
            Stacking::Exclusive { group } => best.get(group.as_str()) == Some(index),
        })
        .map(|(_, &candidate)| candidate)
        .collect()
}

#[cfg(test)]
mod tests;
