//! Property tests of `decide` and `evolve` over random command sequences.
//!
//! Each case sets up one tenant (registered through `decide` + `evolve`, with a random valid
//! rule set and expiry) and one customer (enrolled at the start or not), then runs up to 60
//! random commands while a clock moves forward by random hours or days between them.
//!
//! Every command is decided against the live state and, independently, against [`Model`],
//! an oracle that keeps plain integers and its own copy of the lots. The model predicts the
//! rejection (exactly, variant and fields) or the success; on success the events are
//! checked against the properties the ledger promises, applied with `evolve`, and the
//! ledger invariants and the model are checked against the new state.
//!
//! The tenant's reward catalogue is part of the run: rewards are created (with names and
//! costs that may be invalid) and retired, the customer redeems them (the cost checked
//! against what is available, like a redemption of points) and the vendor fulfils those
//! redemptions, at most once each (counted over the accepted events). A redemption of a
//! reward is a hold: its cost is reserved in the lots (still in the balance, no longer
//! available, never expired while held) and only fulfilment debits it, before the hold's
//! window closes (`HoldExpired` after). The tenant keeps the default settings here (no
//! return window, no debt, 14-day holds); `programme_properties.rs` varies them.
//!
//! RuleKind parameters come at two [`Scale`]s: everyday ones, where no sum can get near
//! `i64::MAX`, and ones up to the largest a rule may hold, where overflow must be refused.
//! The replay and codec properties use the everyday scale, so they keep checking what they
//! are about while a near-the-limit failure is open.
//!
//! `a_purchase_that_would_overflow_lifetime_earned_is_refused` keeps, written out small,
//! the case the near-the-limit property once found (a purchase that fits the balance but
//! not the lifetime `earned` counter must be refused).
//!
//! The runs are seeded, so a failure reproduces; set `PROPTEST_RNG_SEED` (and
//! `PROPTEST_CASES`) to explore other sequences.

use chrono::{DateTime, Duration, TimeZone, Utc};
use ledger_core::codec::{current_version, decode, encode};
use ledger_core::command::{PhoneIndex, Target, WrappedDataKey};
use ledger_core::events::{
    CustomerEnrolled, CustomerErased, HoldFulfilled, LineItem, LotDebit, PointsExpired,
    ProgrammeSettings, PurchaseLogged, RewardCreated, RewardRetired, SealedPersonalData,
    TenantRegistered,
};
use ledger_core::rules::{InvalidRuleSet, KindName, Rule, RuleKind, RulePoints};
use ledger_core::{
    decide, evolve, Command, Currency, CustomerId, CustomerState, Event, LedgerState, Lot, LotId,
    MinorUnits, Points, PurchaseId, RedemptionCode, RedemptionId, Rejection, RewardId, RuleSet,
    TenantId, TenantState,
};
use proptest::prelude::*;
use proptest::test_runner::{FileFailurePersistence, RngSeed};
use uuid::Uuid;

// ---------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------

/// The seed of every run unless `PROPTEST_RNG_SEED` is set.
const SEED: u64 = 0x1EDD_E5C0_FFEE;
const CASES: u32 = 256;
const STEPS_MAX: usize = 60;

/// How far in the future a purchase may be dated. Written out here rather than taken from
/// the crate, so that a change of the tolerance is a visible decision.
const SKEW_MAX_MILLIS: i64 = 5 * 60 * 1000;
const DAY_MILLIS: i64 = 24 * 60 * 60 * 1000;
const RULES_MAX: usize = 32;

fn config() -> ProptestConfig {
    let default = ProptestConfig::default();
    let env_set = |name| std::env::var_os(name).is_some();
    let exploring = env_set("PROPTEST_RNG_SEED");
    ProptestConfig {
        cases: if env_set("PROPTEST_CASES") {
            default.cases
        } else {
            CASES
        },
        // Fixed unless asked otherwise, so that every run (and CI) sees the same sequences.
        rng_seed: if exploring {
            default.rng_seed
        } else {
            RngSeed::Fixed(SEED)
        },
        // With the fixed seed a failure comes back on every run anyway, so no regression
        // file is written; when exploring other seeds, failures are kept beside this file.
        failure_persistence: if exploring {
            Some(Box::new(FileFailurePersistence::WithSource(
                "proptest-regressions",
            )))
        } else {
            None
        },
        ..default
    }
}

const PHONES: [&str; 3] = ["+2348012345678", "+2348098765432", "+14155550100"];

/// Stands in for personal data sealed by the shell: the ledger treats it as opaque bytes.
fn sealed(phone: usize) -> SealedPersonalData {
    SealedPersonalData {
        nonce: vec![0; 12],
        ciphertext: PHONES[phone].as_bytes().to_vec(),
    }
}

fn clock_start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 5, 8, 0, 0).unwrap()
}

// ---------------------------------------------------------------------------------------
// What the generator produces: a plain description of a run, shrinkable by proptest
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Scenario {
    expiry_days: u32,
    /// The rule set the tenant registers with (version 1); always valid.
    rules: Vec<RuleKind>,
    enrolled_at_start: bool,
    steps: Vec<Step>,
}

#[derive(Debug, Clone)]
struct Step {
    advance: Advance,
    op: Op,
}

/// How the clock moves forward before a command. It never goes back.
#[derive(Debug, Clone)]
enum Advance {
    /// Zero is allowed, so several commands can share an instant (and lots can share an
    /// expiry date).
    Seconds(i64),
    /// To the exact instant the next open lot expires (or nowhere, if none is left), so the
    /// boundary `expires_at == at` (due, not spendable) is hit often rather than by luck.
    ToNextExpiry,
}

#[derive(Debug, Clone)]
enum Op {
    Enrol {
        phone: usize,
    },
    Purchase(PurchaseSpec),
    Redeem(RedeemSpec),
    Expire,
    /// May be invalid: the model predicts which rejection.
    Publish(Vec<RuleKind>),
    /// Erasure of the customer's personal data (crypto-shredding in the shell).
    Erase,
    /// A new catalogue reward; name and cost may be invalid.
    CreateReward {
        name: NameSpec,
        points_cost: i64,
    },
    /// Retires the `pick`-th reward (cyclically), or an unknown one.
    RetireReward(Pick),
    /// Redeems the `pick`-th reward (cyclically), or an unknown one.
    RedeemReward(Pick),
    /// Fulfils the `pick`-th reward redemption (cyclically), or an unknown one.
    Fulfil(Pick),
}

/// Which existing thing a command names: one of those the model knows (cyclically), or an
/// id nobody has used (also when none exists yet).
#[derive(Debug, Clone, Copy)]
enum Pick {
    Existing(usize),
    Unknown,
}

#[derive(Debug, Clone)]
enum NameSpec {
    /// Valid: `n` characters, 1 to 60, not only blanks (multi-byte ones included).
    Chars(usize),
    Empty,
    Blank,
    /// 61 characters.
    TooLong,
}

impl NameSpec {
    fn name(&self) -> String {
        match *self {
            NameSpec::Chars(n) => "é".repeat(n),
            NameSpec::Empty => String::new(),
            NameSpec::Blank => "   ".into(),
            NameSpec::TooLong => "x".repeat(61),
        }
    }
}

#[derive(Debug, Clone)]
struct PurchaseSpec {
    amount: AmountSpec,
    items: ItemsSpec,
    when: WhenSpec,
    with_reference: bool,
}

#[derive(Debug, Clone)]
enum AmountSpec {
    MinorUnits(i64),
    /// Right at a boundary of the per-amount rule in force (the `rule`-th one, cyclically):
    /// its minimum purchase, or a whole number of its steps, moved by `offset` (−1, 0, 1).
    /// Falls back to 1 when no such rule is in force.
    AtRuleMinimum {
        rule: usize,
        offset: i64,
    },
    AtRuleSteps {
        rule: usize,
        steps: i64,
        offset: i64,
    },
}

impl AmountSpec {
    fn minor_units(&self, rules: &[RuleKind]) -> i64 {
        let per_amount: Vec<(i64, i64)> = rules
            .iter()
            .filter_map(|rule| match *rule {
                RuleKind::PerAmountSpent {
                    amount_step,
                    minimum_purchase,
                    ..
                } => Some((amount_step.value(), minimum_purchase.value())),
                _ => None,
            })
            .collect();
        let nth = |n: usize| per_amount.get(n % per_amount.len().max(1)).copied();
        let amount = match *self {
            AmountSpec::MinorUnits(amount) => amount,
            AmountSpec::AtRuleMinimum { rule, offset } => {
                nth(rule).map_or(1, |(_, minimum)| minimum + offset)
            }
            AmountSpec::AtRuleSteps {
                rule,
                steps,
                offset,
            } => nth(rule).map_or(1, |(step, _)| step * steps + offset),
        };
        // A purchase is of at least one minor unit (the shell refuses less).
        amount.max(1)
    }
}

/// Line items as `(quantity, weight)`: each line takes a share of the amount by weight.
#[derive(Debug, Clone)]
enum ItemsSpec {
    None,
    AddingUp(Vec<(u32, u32)>),
    /// Like `AddingUp`, then the last line is moved by `delta` (down if it can stay positive
    /// and `down` is set, otherwise up), so the total misses the amount by exactly `delta`.
    NotAddingUp {
        lines: Vec<(u32, u32)>,
        delta: i64,
        down: bool,
    },
}

/// When the purchase says it happened, relative to the clock.
#[derive(Debug, Clone)]
enum WhenSpec {
    /// `occurred_at: None`, which means "at the clock reading".
    Now,
    /// Back-dated; may be so old that the lot is born already due to expire.
    Past { millis: i64 },
    /// Ahead of the clock but within the tolerated skew (the boundary included).
    WithinSkew { millis: i64 },
    /// Further ahead than the skew allows: refused.
    BeyondSkew { millis: i64 },
}

/// How many points to redeem. Some variants depend on what is spendable when the step runs,
/// so that exact-balance and one-too-many redemptions, and partial lots, are common.
#[derive(Debug, Clone)]
enum RedeemSpec {
    Points(i64),
    /// A share of what is spendable, in thousandths; above 1000 asks for too much.
    ShareOfSpendable {
        permille: u32,
    },
    AllSpendable,
    OneMoreThanSpendable,
}

impl WhenSpec {
    fn occurred_at(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match *self {
            WhenSpec::Now => None,
            WhenSpec::Past { millis } => Some(at - Duration::milliseconds(millis)),
            WhenSpec::WithinSkew { millis } | WhenSpec::BeyondSkew { millis } => {
                Some(at + Duration::milliseconds(millis))
            }
        }
    }
}

impl ItemsSpec {
    fn line_items(&self, amount: i64) -> Vec<LineItem> {
        match self {
            ItemsSpec::None => Vec::new(),
            ItemsSpec::AddingUp(lines) => items_adding_up_to(amount, lines),
            ItemsSpec::NotAddingUp { lines, delta, down } => {
                let mut items = items_adding_up_to(amount, lines);
                let last = items.last_mut().expect("at least one line");
                let price = last.unit_price.value();
                let moved = if *down && price > *delta {
                    price - delta
                } else {
                    price + delta
                };
                last.unit_price = MinorUnits::new(moved);
                items
            }
        }
    }
}

/// Splits `amount` into lines whose `quantity × unit_price` add up to it exactly: every line
/// but the last takes its weighted share rounded down to a whole unit price, and the last
/// line (quantity 1) takes the rest. The rest is at least 1, because the shares of the other
/// lines add up to strictly less than the amount. All prices are non-negative.
fn items_adding_up_to(amount: i64, lines: &[(u32, u32)]) -> Vec<LineItem> {
    let total_weight: i64 = lines.iter().map(|&(_, weight)| i64::from(weight)).sum();
    let (_, others) = lines.split_last().expect("at least one line");
    let mut items = Vec::new();
    let mut allotted = 0;
    for (index, &(quantity, weight)) in others.iter().enumerate() {
        let share = amount * i64::from(weight) / total_weight;
        let unit_price = share / i64::from(quantity);
        allotted += unit_price * i64::from(quantity);
        items.push(LineItem {
            sku: format!("SKU-{index}"),
            category: None,
            quantity,
            unit_price: MinorUnits::new(unit_price),
        });
    }
    items.push(LineItem {
        sku: "REST".into(),
        category: None,
        quantity: 1,
        unit_price: MinorUnits::new(amount - allotted),
    });
    items
}

impl RedeemSpec {
    fn points(&self, spendable: i128) -> i64 {
        let wanted = match *self {
            RedeemSpec::Points(points) => i128::from(points),
            RedeemSpec::ShareOfSpendable { permille } => spendable * i128::from(permille) / 1000,
            RedeemSpec::AllSpendable => spendable,
            RedeemSpec::OneMoreThanSpendable => spendable + 1,
        };
        // A redemption is of at least one point (the shell refuses zero).
        i64::try_from(wanted.max(1)).unwrap_or(i64::MAX)
    }
}

// ---------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------

/// How large the points of the rules get.
#[derive(Debug, Clone, Copy)]
enum Scale {
    /// Up to a million points per step, purchase or milestone: a run of 60 purchases stays
    /// far below `i64::MAX` (at most 32 rules × 10^6 × 10^9 per purchase), so no sum can
    /// overflow and every other property is checked undisturbed.
    Everyday,
    /// Up to `Points::COMMAND_MAX`, the largest a rule may hold: a single purchase can earn
    /// close to `i64::MAX`, so the overflow checks are exercised too.
    NearTheLimit,
}

/// Mostly modest rule parameters, sometimes large ones.
fn rule_points(scale: Scale) -> BoxedStrategy<i64> {
    match scale {
        Scale::Everyday => prop_oneof![
            6 => 0i64..=10,
            3 => 0i64..=1_000,
            1 => 0i64..=1_000_000,
        ]
        .boxed(),
        Scale::NearTheLimit => prop_oneof![
            6 => 0i64..=10,
            3 => 0i64..=1_000,
            1 => 0i64..=Points::COMMAND_MAX,
            1 => Just(Points::COMMAND_MAX),
        ]
        .boxed(),
    }
}

fn amount_step() -> impl Strategy<Value = i64> {
    prop_oneof![1i64..=100, 100i64..=100_000, 100_000i64..=1_000_000_000]
}

fn minimum_purchase() -> impl Strategy<Value = i64> {
    prop_oneof![Just(0i64), 0i64..=1_000_000, 0i64..=1_000_000_000]
}

fn per_amount(step: i64, points: i64, minimum: i64) -> RuleKind {
    RuleKind::PerAmountSpent {
        amount_step: MinorUnits::new(step),
        points_per_step: Points::new(points),
        minimum_purchase: MinorUnits::new(minimum),
    }
}

fn valid_rule(scale: Scale) -> impl Strategy<Value = RuleKind> {
    prop_oneof![
        (amount_step(), rule_points(scale), minimum_purchase())
            .prop_map(|(step, points, minimum)| per_amount(step, points, minimum)),
        rule_points(scale).prop_map(|points| RuleKind::PerPurchase {
            points: Points::new(points)
        }),
        (1u32..=10, rule_points(scale)).prop_map(|(every_nth_purchase, bonus)| {
            RuleKind::Milestone {
                every_nth_purchase,
                bonus: Points::new(bonus),
            }
        }),
    ]
}

/// A rule whose fields may each be out of range.
fn any_rule(scale: Scale) -> impl Strategy<Value = RuleKind> {
    let step = prop_oneof![3 => amount_step(), 1 => -10i64..=0];
    let points = || {
        prop_oneof![
            3 => rule_points(scale),
            1 => -10i64..=-1,
            1 => Points::COMMAND_MAX + 1..=Points::COMMAND_MAX + 10,
        ]
    };
    let minimum = prop_oneof![3 => minimum_purchase(), 1 => -10i64..=-1];
    let nth = prop_oneof![3 => 1u32..=10, 1 => Just(0u32)];
    prop_oneof![
        (step, points(), minimum)
            .prop_map(|(step, points, minimum)| per_amount(step, points, minimum)),
        points().prop_map(|points| RuleKind::PerPurchase {
            points: Points::new(points)
        }),
        (nth, points()).prop_map(|(every_nth_purchase, bonus)| RuleKind::Milestone {
            every_nth_purchase,
            bonus: Points::new(bonus),
        }),
    ]
}

fn valid_rules(scale: Scale) -> impl Strategy<Value = Vec<RuleKind>> {
    prop::collection::vec(valid_rule(scale), 0..=4)
}

fn published_rules(scale: Scale) -> impl Strategy<Value = Vec<RuleKind>> {
    prop_oneof![
        6 => valid_rules(scale),
        3 => prop::collection::vec(any_rule(scale), 1..=4),
        // Around the limit on the number of rules: 31 and 32 pass, 33 and 34 do not.
        1 => prop::collection::vec(valid_rule(scale), RULES_MAX - 1..=RULES_MAX + 2),
    ]
}

fn purchase() -> impl Strategy<Value = PurchaseSpec> {
    let amount = prop_oneof![
        6 => (1i64..=1_000_000_000).prop_map(AmountSpec::MinorUnits),
        4 => (1i64..=100_000).prop_map(AmountSpec::MinorUnits),
        1 => Just(AmountSpec::MinorUnits(1_000_000_000)),
        1 => (any::<usize>(), -1i64..=1)
            .prop_map(|(rule, offset)| AmountSpec::AtRuleMinimum { rule, offset }),
        1 => (any::<usize>(), 1i64..=3, -1i64..=1)
            .prop_map(|(rule, steps, offset)| AmountSpec::AtRuleSteps { rule, steps, offset }),
    ];
    let lines = || prop::collection::vec((1u32..=5, 1u32..=100), 1..=4);
    let items = prop_oneof![
        4 => Just(ItemsSpec::None),
        2 => lines().prop_map(ItemsSpec::AddingUp),
        1 => (lines(), 1i64..=1_000_000, any::<bool>())
            .prop_map(|(lines, delta, down)| ItemsSpec::NotAddingUp { lines, delta, down }),
    ];
    let when = prop_oneof![
        6 => Just(WhenSpec::Now),
        2 => (1i64..=400 * DAY_MILLIS).prop_map(|millis| WhenSpec::Past { millis }),
        1 => prop_oneof![Just(SKEW_MAX_MILLIS), 0i64..=SKEW_MAX_MILLIS]
            .prop_map(|millis| WhenSpec::WithinSkew { millis }),
        1 => prop_oneof![Just(SKEW_MAX_MILLIS + 1), SKEW_MAX_MILLIS + 1..=30 * DAY_MILLIS]
            .prop_map(|millis| WhenSpec::BeyondSkew { millis }),
    ];
    (amount, items, when, any::<bool>()).prop_map(|(amount, items, when, with_reference)| {
        PurchaseSpec {
            amount,
            items,
            when,
            with_reference,
        }
    })
}

fn redeem() -> impl Strategy<Value = RedeemSpec> {
    prop_oneof![
        3 => (1i64..=100).prop_map(RedeemSpec::Points),
        2 => (1i64..=1_000_000).prop_map(RedeemSpec::Points),
        1 => (1i64..=Points::COMMAND_MAX).prop_map(RedeemSpec::Points),
        3 => (1u32..=1_500).prop_map(|permille| RedeemSpec::ShareOfSpendable { permille }),
        1 => Just(RedeemSpec::AllSpendable),
        1 => Just(RedeemSpec::OneMoreThanSpendable),
    ]
}

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![
        8 => any::<usize>().prop_map(Pick::Existing),
        1 => Just(Pick::Unknown),
    ]
}

fn create_reward() -> impl Strategy<Value = Op> {
    let name = prop_oneof![
        8 => (1usize..=60).prop_map(NameSpec::Chars),
        1 => Just(NameSpec::Chars(60)),
        1 => Just(NameSpec::Empty),
        1 => Just(NameSpec::Blank),
        1 => Just(NameSpec::TooLong),
    ];
    let cost = prop_oneof![
        6 => 1i64..=100,
        3 => 1i64..=1_000_000,
        1 => -5i64..=0,
    ];
    (name, cost).prop_map(|(name, points_cost)| Op::CreateReward { name, points_cost })
}

fn op(scale: Scale) -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => create_reward(),
        1 => pick().prop_map(Op::RetireReward),
        8 => pick().prop_map(Op::RedeemReward),
        4 => pick().prop_map(Op::Fulfil),
        // Erasure is rare: after it every purchase and redemption is refused, so a common
        // erasure would leave little of a sequence to exercise the balance rules.
        4 => (0..PHONES.len()).prop_map(|phone| Op::Enrol { phone }),
        24 => purchase().prop_map(Op::Purchase),
        16 => redeem().prop_map(Op::Redeem),
        8 => Just(Op::Expire),
        4 => published_rules(scale).prop_map(Op::Publish),
        1 => Just(Op::Erase),
    ]
}

fn step(scale: Scale) -> impl Strategy<Value = Step> {
    const HOUR: i64 = 3600;
    const DAY: i64 = 24 * HOUR;
    let advance = prop_oneof![
        1 => Just(Advance::Seconds(0)),
        4 => (0i64..=6 * HOUR).prop_map(Advance::Seconds),
        3 => (0i64..=3 * DAY).prop_map(Advance::Seconds),
        1 => (DAY..=200 * DAY).prop_map(Advance::Seconds),
        1 => Just(Advance::ToNextExpiry),
    ];
    (advance, op(scale)).prop_map(|(advance, op)| Step { advance, op })
}

fn scenario(scale: Scale) -> impl Strategy<Value = Scenario> {
    (
        1u32..=400,
        valid_rules(scale),
        prop::bool::weighted(0.75),
        prop::collection::vec(step(scale), 1..=STEPS_MAX),
    )
        .prop_map(|(expiry_days, rules, enrolled_at_start, steps)| Scenario {
            expiry_days,
            rules,
            enrolled_at_start,
            steps,
        })
}

// ---------------------------------------------------------------------------------------
// The oracle: an independent, deliberately naive model of one customer at one tenant
// ---------------------------------------------------------------------------------------

/// A lot as the model sees it. Points are `i64` because events carry `i64`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ModelLot {
    lot_id: LotId,
    points: i64,
    remaining: i64,
    /// Held for open reward holds: in the balance, not available, not expired.
    reserved: i64,
    expires_at: DateTime<Utc>,
}

impl ModelLot {
    fn free(&self) -> i64 {
        self.remaining - self.reserved
    }
}

/// Counters are `i128` so that the model never saturates or wraps: if the ledger's `i64`
/// counters ever did, the comparison would show it.
#[derive(Debug, Clone)]
struct Model {
    expiry_days: u32,
    /// The tenant's hold window (the default settings' one: no command here changes it).
    hold_days: u32,
    rules: Vec<RuleKind>,
    rule_set_version: u32,
    /// Every rule set with when it was published (the clock only moves forward, so in
    /// order): purchases earn under the one in force when they happened.
    published: Vec<(DateTime<Utc>, u32, Vec<RuleKind>)>,
    enrolled: bool,
    erased: bool,
    purchases: u32,
    /// Lots with points left, in the order they were earned.
    lots: Vec<ModelLot>,
    earned: i128,
    redeemed: i128,
    expired: i128,
    /// The catalogue, in creation order.
    rewards: Vec<ModelReward>,
    /// Redemptions of rewards, in the order they were made.
    reward_redemptions: Vec<ModelRedemption>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ModelReward {
    reward_id: RewardId,
    name: String,
    points_cost: i64,
    retired: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ModelRedemption {
    redemption_id: RedemptionId,
    reward_id: RewardId,
    code: String,
    points: i64,
    /// The points the hold reserved, per lot; fulfilment debits exactly these.
    reserved: Vec<(LotId, i64)>,
    expires_at: DateTime<Utc>,
    fulfilled: bool,
}

/// What a successful redemption does, worked out by the model.
#[derive(Debug, Clone)]
struct RedemptionPlan {
    consumed: Vec<(LotId, i64)>,
}

impl Model {
    fn balance(&self) -> i128 {
        self.lots.iter().map(|lot| i128::from(lot.remaining)).sum()
    }

    fn held(&self) -> i128 {
        self.lots.iter().map(|lot| i128::from(lot.reserved)).sum()
    }

    fn is_due(lot: &ModelLot, at: DateTime<Utc>) -> bool {
        lot.expires_at <= at
    }

    /// The version and rules in force at `at`: the latest published at or before it, or the
    /// first for a purchase dated before every publication.
    fn rule_set_at(&self, at: DateTime<Utc>) -> (u32, &[RuleKind]) {
        let (_, version, rules) = self
            .published
            .iter()
            .rev()
            .find(|(published_at, _, _)| *published_at <= at)
            .unwrap_or(&self.published[0]);
        (*version, rules)
    }

    /// What is available: the free (not held) points of the lots not past their date.
    fn spendable_at(&self, at: DateTime<Utc>) -> i128 {
        self.lots
            .iter()
            .filter(|lot| !Self::is_due(lot, at))
            .map(|lot| i128::from(lot.free()))
            .sum()
    }

    /// Checks in the order the ledger documents: who, when, what, then whether it fits.
    fn predict_purchase(
        &self,
        amount: i64,
        line_items: &[LineItem],
        occurred_at: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<Vec<(String, KindName, i128)>, Rejection> {
        if !self.enrolled {
            return Err(Rejection::CustomerNotEnrolled);
        }
        if self.erased {
            return Err(Rejection::CustomerErased);
        }
        if occurred_at > at + Duration::milliseconds(SKEW_MAX_MILLIS) {
            return Err(Rejection::PurchaseInFuture);
        }
        if !line_items.is_empty() {
            // Generated prices and quantities are non-negative, so the i128 total is
            // beyond i64 exactly when some partial sum of the ledger's would overflow.
            let total: i128 = line_items
                .iter()
                .map(|item| i128::from(item.unit_price.value()) * i128::from(item.quantity))
                .sum();
            let total = i64::try_from(total).map_err(|_| Rejection::Overflow)?;
            if total != amount {
                return Err(Rejection::LineItemsDoNotAddUp {
                    line_items_total: MinorUnits::new(total),
                    amount: MinorUnits::new(amount),
                });
            }
        }
        let (_, rules) = self.rule_set_at(occurred_at);
        let earning = oracle_earning(rules, amount, self.purchases + 1);
        let total: i128 = earning.iter().map(|(_, _, points)| points).sum();
        // Points that would not fit the balance or the lifetime `earned` counter (which
        // bounds `redeemed` and `expired` too, since those never exceed it) are refused.
        let fits = |counter: i128| counter + total <= i128::from(i64::MAX);
        if !fits(self.balance()) || !fits(self.earned) {
            return Err(Rejection::Overflow);
        }
        Ok(earning)
    }

    fn record_purchase(&mut self, lot_id: LotId, points: i128, occurred_at: DateTime<Utc>) {
        self.purchases += 1;
        if points > 0 {
            let points = i64::try_from(points).expect("checked by predict_purchase");
            self.lots.push(ModelLot {
                lot_id,
                points,
                remaining: points,
                reserved: 0,
                expires_at: occurred_at + Duration::days(i64::from(self.expiry_days)),
            });
            self.earned += i128::from(points);
        }
    }

    fn predict_redemption(
        &self,
        points: i64,
        at: DateTime<Utc>,
    ) -> Result<RedemptionPlan, Rejection> {
        if !self.enrolled {
            return Err(Rejection::CustomerNotEnrolled);
        }
        if self.erased {
            return Err(Rejection::CustomerErased);
        }
        let spendable = self.spendable_at(at);
        if i128::from(points) > spendable {
            return Err(Rejection::InsufficientPoints {
                available: Points::new(i64::try_from(spendable).expect("a balance fits i64")),
                requested: Points::new(points),
            });
        }
        // Soonest-expiring first; among lots expiring together, the one earned first. Only
        // free points are taken: a lot wholly held is skipped.
        let mut open: Vec<&ModelLot> = self
            .lots
            .iter()
            .filter(|l| !Self::is_due(l, at) && l.free() > 0)
            .collect();
        open.sort_by_key(|lot| lot.expires_at); // stable: ties keep the earned order
        let mut needed = points;
        let mut consumed = Vec::new();
        for lot in open {
            if needed == 0 {
                break;
            }
            let taken = needed.min(lot.free());
            consumed.push((lot.lot_id, taken));
            needed -= taken;
        }
        Ok(RedemptionPlan { consumed })
    }

    fn lot_mut(&mut self, lot_id: LotId) -> &mut ModelLot {
        self.lots
            .iter_mut()
            .find(|lot| lot.lot_id == lot_id)
            .expect("the model knows the lot")
    }

    /// A redemption of points: due lots expire, then the plan is debited.
    fn record_redemption(&mut self, plan: &RedemptionPlan, at: DateTime<Utc>) {
        self.record_expiry(at);
        self.debit(&plan.consumed);
    }

    fn debit(&mut self, debits: &[(LotId, i64)]) {
        for &(lot_id, taken) in debits {
            self.lot_mut(lot_id).remaining -= taken;
            self.redeemed += i128::from(taken);
        }
        self.lots.retain(|lot| lot.remaining > 0);
    }

    /// A hold of a reward: due lots expire, then the plan is reserved (nothing debited).
    fn record_hold(&mut self, plan: &RedemptionPlan, at: DateTime<Utc>) {
        self.record_expiry(at);
        for &(lot_id, taken) in &plan.consumed {
            self.lot_mut(lot_id).reserved += taken;
        }
    }

    /// Fulfilment posts the hold: the reserved points are debited from the lots they
    /// were reserved in.
    fn record_fulfilment(&mut self, redemption_id: RedemptionId) {
        let index = self
            .reward_redemptions
            .iter()
            .position(|r| r.redemption_id == redemption_id)
            .expect("predicted found");
        self.reward_redemptions[index].fulfilled = true;
        let reserved = self.reward_redemptions[index].reserved.clone();
        for &(lot_id, points) in &reserved {
            self.lot_mut(lot_id).reserved -= points;
        }
        self.debit(&reserved);
    }

    fn predict_reward_creation(&self, name: &str, points_cost: i64) -> Result<(), Rejection> {
        let chars = name.chars().count();
        if !(1..=60).contains(&chars) || name.trim().is_empty() {
            return Err(Rejection::InvalidRewardName);
        }
        if points_cost <= 0 {
            return Err(Rejection::AmountNotPositive);
        }
        Ok(())
    }

    fn reward(&self, reward_id: RewardId) -> Result<&ModelReward, Rejection> {
        let reward = self
            .rewards
            .iter()
            .find(|reward| reward.reward_id == reward_id)
            .ok_or(Rejection::RewardNotFound)?;
        if reward.retired {
            return Err(Rejection::RewardRetired);
        }
        Ok(reward)
    }

    /// Who, then which reward, then whether the customer can afford it.
    fn predict_reward_redemption(
        &self,
        reward_id: RewardId,
        at: DateTime<Utc>,
    ) -> Result<(i64, RedemptionPlan), Rejection> {
        if !self.enrolled {
            return Err(Rejection::CustomerNotEnrolled);
        }
        if self.erased {
            return Err(Rejection::CustomerErased);
        }
        let cost = self.reward(reward_id)?.points_cost;
        Ok((cost, self.predict_redemption(cost, at)?))
    }

    fn predict_fulfilment(
        &self,
        redemption_id: RedemptionId,
        at: DateTime<Utc>,
    ) -> Result<(), Rejection> {
        if !self.enrolled {
            return Err(Rejection::CustomerNotEnrolled);
        }
        let redemption = self
            .reward_redemptions
            .iter()
            .find(|r| r.redemption_id == redemption_id)
            .ok_or(Rejection::RedemptionNotFound)?;
        if redemption.fulfilled {
            return Err(Rejection::AlreadyFulfilled);
        }
        // Nothing here releases a hold (cancel and the hold expiry run are exercised in
        // `programme_properties.rs`), but the window closes all the same.
        if at >= redemption.expires_at {
            return Err(Rejection::HoldExpired);
        }
        Ok(())
    }

    fn predict_expiry(&self) -> Result<(), Rejection> {
        if self.enrolled {
            Ok(())
        } else {
            Err(Rejection::CustomerNotEnrolled)
        }
    }

    /// Due lots lose their free points; what a hold reserved stays until the hold ends.
    fn record_expiry(&mut self, at: DateTime<Utc>) {
        for lot in &mut self.lots {
            if Self::is_due(lot, at) {
                self.expired += i128::from(lot.free());
                lot.remaining = lot.reserved;
            }
        }
        self.lots.retain(|lot| lot.remaining > 0);
    }
}

/// The rule id the harness gives the kind at `index`: the rule sets here are lists of kinds,
/// all stacking, of priority 0, with no window, so position is evaluation order.
fn rule_id(index: usize) -> String {
    format!("r{}", index + 1)
}

fn identified(kinds: &[RuleKind]) -> Vec<Rule> {
    kinds
        .iter()
        .enumerate()
        .map(|(index, kind)| Rule::new(rule_id(index), kind.clone()))
        .collect()
}

/// What a purchase earns: one entry per rule that gives points, in rule-set order, computed
/// in `i128` so an overflow is visible instead of wrapped.
fn oracle_earning(
    rules: &[RuleKind],
    amount: i64,
    purchase_number: u32,
) -> Vec<(String, KindName, i128)> {
    rules
        .iter()
        .enumerate()
        .filter_map(|(index, rule)| {
            let points = match *rule {
                RuleKind::PerAmountSpent {
                    amount_step,
                    points_per_step,
                    minimum_purchase,
                } => {
                    if amount >= minimum_purchase.value() {
                        // Whole steps only: floor(amount / step), both positive.
                        i128::from(amount / amount_step.value())
                            * i128::from(points_per_step.value())
                    } else {
                        0
                    }
                }
                RuleKind::PerPurchase { points } => i128::from(points.value()),
                RuleKind::Milestone {
                    every_nth_purchase,
                    bonus,
                } => {
                    if purchase_number.is_multiple_of(every_nth_purchase) {
                        i128::from(bonus.value())
                    } else {
                        0
                    }
                }
                _ => unreachable!("the harness generates the three kinds above only"),
            };
            (points > 0).then_some((rule_id(index), rule.name(), points))
        })
        .collect()
}

/// Which rejection a rule set earns. Several faults in one rule are reported in field
/// order (step, points, minimum), the first faulty rule wins, and the count comes first.
fn oracle_validation(rules: &[RuleKind]) -> Result<(), InvalidRuleSet> {
    if rules.len() > RULES_MAX {
        return Err(InvalidRuleSet::TooManyRules);
    }
    // The messages are the ledger's own wording: the oracle predicts the exact rejection.
    const POINTS: &str = "must be between 0 and 1000000000000";
    let in_range = |points: Points| (0..=Points::COMMAND_MAX).contains(&points.value());
    for (index, rule) in rules.iter().enumerate() {
        let invalid = |field: &'static str, reason: &'static str| {
            Err(InvalidRuleSet::InvalidField {
                rule: rule_id(index),
                field,
                reason,
            })
        };
        match *rule {
            RuleKind::PerAmountSpent {
                amount_step,
                points_per_step,
                minimum_purchase,
            } => {
                if amount_step.value() < 1 {
                    return invalid(
                        "kind.amount_step",
                        "must be between 1 and the largest amount",
                    );
                }
                if !in_range(points_per_step) {
                    return invalid("kind.points_per_step", POINTS);
                }
                if minimum_purchase.value() < 0 {
                    return invalid(
                        "kind.minimum_purchase",
                        "must be between 0 and the largest amount",
                    );
                }
            }
            RuleKind::PerPurchase { points } => {
                if !in_range(points) {
                    return invalid("kind.points", POINTS);
                }
            }
            RuleKind::Milestone {
                every_nth_purchase,
                bonus,
            } => {
                if every_nth_purchase == 0 {
                    return invalid("kind.every_nth_purchase", "must be at least 1");
                }
                if !in_range(bonus) {
                    return invalid("kind.bonus", POINTS);
                }
            }
            _ => unreachable!("the harness generates the three kinds above only"),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The harness: live states, the model, the clock, and every accepted event
// ---------------------------------------------------------------------------------------

struct Harness {
    tenant_id: TenantId,
    customer_id: CustomerId,
    tenant: TenantState,
    customer: CustomerState,
    model: Model,
    clock: DateTime<Utc>,
    next_id: u128,
    /// Accepted events per stream, and all of them in the order they were accepted.
    tenant_events: Vec<Event>,
    customer_events: Vec<Event>,
    accepted: Vec<Event>,
}

impl Harness {
    /// Registers the tenant (and enrols the customer if the scenario says so) through
    /// `decide` and `evolve`, like any other command.
    fn start(scenario: &Scenario) -> Self {
        let mut harness = Harness {
            tenant_id: TenantId::from_uuid(Uuid::from_u128(1)),
            customer_id: CustomerId::from_uuid(Uuid::from_u128(2)),
            tenant: TenantState::default(),
            customer: CustomerState::default(),
            model: Model {
                expiry_days: scenario.expiry_days,
                hold_days: ProgrammeSettings::default().hold_days,
                rules: scenario.rules.clone(),
                rule_set_version: 1,
                published: vec![(clock_start(), 1, scenario.rules.clone())],
                enrolled: false,
                erased: false,
                purchases: 0,
                lots: Vec::new(),
                earned: 0,
                redeemed: 0,
                expired: 0,
                rewards: Vec::new(),
                reward_redemptions: Vec::new(),
            },
            clock: clock_start(),
            // Well clear of the fixed tenant and customer ids.
            next_id: 0x1_0000,
            tenant_events: Vec::new(),
            customer_events: Vec::new(),
            accepted: Vec::new(),
        };

        // Nothing can happen for a customer before the tenant exists.
        let early = harness.enrol_command(0);
        assert_eq!(harness.decide(&early), Err(Rejection::TenantNotRegistered));

        let rule_set =
            RuleSet::new(1, identified(&scenario.rules)).expect("generated rules are valid");
        let register = Command::RegisterTenant {
            tenant_id: harness.tenant_id,
            name: "Mama Put".into(),
            currency: Currency::NGN,
            expiry_days: scenario.expiry_days,
            rule_set: rule_set.clone(),
            at: harness.clock,
        };
        let events = harness.decide(&register).expect("a new tenant registers");
        assert_eq!(
            events,
            vec![Event::TenantRegistered(TenantRegistered {
                tenant_id: harness.tenant_id,
                name: "Mama Put".into(),
                currency: Currency::NGN,
                expiry_days: scenario.expiry_days,
                rule_set,
                registered_at: harness.clock,
            })]
        );
        harness.apply(&register, &events);
        assert_eq!(
            harness.decide(&register),
            Err(Rejection::TenantAlreadyRegistered)
        );

        if scenario.enrolled_at_start {
            harness.enrol(0);
        }
        harness.check_after_success();
        harness
    }

    fn run(scenario: &Scenario) -> Self {
        let mut harness = Self::start(scenario);
        for step in &scenario.steps {
            harness.advance(&step.advance);
            match &step.op {
                Op::Enrol { phone } => harness.enrol(*phone),
                Op::Purchase(spec) => harness.log_purchase(spec),
                Op::Redeem(spec) => harness.redeem(spec),
                Op::Expire => harness.expire(),
                Op::Publish(rules) => harness.publish(rules),
                Op::Erase => harness.erase(),
                Op::CreateReward { name, points_cost } => {
                    harness.create_reward(&name.name(), *points_cost)
                }
                Op::RetireReward(pick) => harness.retire_reward(*pick),
                Op::RedeemReward(pick) => harness.redeem_reward(*pick),
                Op::Fulfil(pick) => harness.fulfil(*pick),
            }
        }
        harness
    }

    fn advance(&mut self, advance: &Advance) {
        self.clock = match *advance {
            Advance::Seconds(secs) => self.clock + Duration::seconds(secs),
            Advance::ToNextExpiry => self
                .customer
                .lots
                .iter()
                .map(|lot| lot.expires_at)
                .filter(|&expires_at| expires_at > self.clock)
                .min()
                .unwrap_or(self.clock),
        };
    }

    fn fresh_uuid(&mut self) -> Uuid {
        self.next_id += 1;
        Uuid::from_u128(self.next_id)
    }

    fn decide(&self, command: &Command) -> Result<Vec<Event>, Rejection> {
        decide(
            LedgerState {
                tenant: &self.tenant,
                customer: &self.customer,
                stock: &ledger_core::aggregate::NO_STOCK_USED,
            },
            command,
        )
    }

    /// Decides `command` and holds the outcome to the model's prediction: the same
    /// rejection (variant and fields), or a success. Returns the events of a success.
    fn decide_as_predicted<P: std::fmt::Debug>(
        &self,
        command: &Command,
        predicted: &Result<P, Rejection>,
    ) -> Option<Vec<Event>> {
        let before = (self.tenant.clone(), self.customer.clone());
        match (self.decide(command), predicted) {
            (Ok(events), Ok(_)) => Some(events),
            (Err(rejection), Err(expected)) => {
                assert_eq!(&rejection, expected, "wrong rejection of {command:#?}");
                // `decide` only reads the state and nothing was applied: a refused command
                // changes nothing.
                assert_eq!((&self.tenant, &self.customer), (&before.0, &before.1));
                None
            }
            (Ok(events), Err(expected)) => {
                panic!("accepted {command:#?} with {events:#?}; expected {expected:?}")
            }
            (Err(rejection), Ok(plan)) => {
                panic!("refused {command:#?} with {rejection:?}; expected success: {plan:?}")
            }
        }
    }

    /// Folds accepted events into the state of the stream the command writes to.
    fn apply(&mut self, command: &Command, events: &[Event]) {
        match command.target() {
            Target::Tenant => {
                for event in events {
                    self.tenant = evolve(std::mem::take(&mut self.tenant), event);
                }
                self.tenant_events.extend_from_slice(events);
            }
            Target::Customer(customer_id) => {
                assert_eq!(customer_id, self.customer_id);
                for event in events {
                    self.customer = evolve(std::mem::take(&mut self.customer), event);
                }
                self.customer_events.extend_from_slice(events);
            }
        }
        self.accepted.extend_from_slice(events);
    }

    // --- the commands ------------------------------------------------------------------

    fn enrol_command(&self, phone: usize) -> Command {
        Command::EnrolCustomer {
            customer_id: self.customer_id,
            phone_index: PhoneIndex([phone as u8; 32]),
            personal_data: sealed(phone),
            data_key: WrappedDataKey {
                master_key_id: "test".into(),
                bytes: vec![phone as u8; 60],
            },
            birthday: None,
            referral_code: ledger_core::ReferralCode::from_random_bytes([0; 5]),
            referred_by: None,
            at: self.clock,
        }
    }

    fn enrol(&mut self, phone: usize) {
        let command = self.enrol_command(phone);
        let predicted = if self.model.enrolled {
            Err(Rejection::CustomerAlreadyEnrolled)
        } else {
            Ok(())
        };
        let Some(events) = self.decide_as_predicted(&command, &predicted) else {
            return;
        };
        assert_eq!(
            events,
            vec![Event::CustomerEnrolled(CustomerEnrolled {
                customer_id: self.customer_id,
                personal_data: Some(sealed(phone)),
                enrolled_at: self.clock,
                birthday: None,
                referral_code: Some("00000000".into()),
                referred_by: None,
            })]
        );
        self.apply(&command, &events);
        self.model.enrolled = true;
        self.check_after_success();
    }

    fn log_purchase(&mut self, spec: &PurchaseSpec) {
        let at = self.clock;
        let purchase_id = PurchaseId::from_uuid(self.fresh_uuid());
        let lot_id = LotId::from_uuid(self.fresh_uuid());
        let amount = spec.amount.minor_units(&self.model.rules);
        let line_items = spec.items.line_items(amount);
        let reference = spec.with_reference.then(|| format!("till-{purchase_id}"));
        let command = Command::LogPurchase {
            customer_id: self.customer_id,
            purchase_id,
            lot_id,
            amount: MinorUnits::new(amount),
            line_items: line_items.clone(),
            reference: reference.clone(),
            occurred_at: spec.when.occurred_at(at),
            at,
        };
        let occurred_at = spec.when.occurred_at(at).unwrap_or(at);
        let predicted = self
            .model
            .predict_purchase(amount, &line_items, occurred_at, at);
        let Some(events) = self.decide_as_predicted(&command, &predicted) else {
            return;
        };
        let earning = predicted.unwrap();
        let purchase_number = self.model.purchases + 1;

        // The purchase is recorded as given, numbered by the successful purchases so far,
        // this one included.
        let (logged, earned) = match events.as_slice() {
            [Event::PurchaseLogged(logged)] => (logged, None),
            [Event::PurchaseLogged(logged), Event::PointsEarned(earned)] => (logged, Some(earned)),
            _ => panic!("a purchase emits PurchaseLogged, then maybe PointsEarned: {events:#?}"),
        };
        assert_eq!(
            logged,
            &PurchaseLogged {
                purchase_id,
                amount: MinorUnits::new(amount),
                line_items,
                reference,
                occurred_at,
                purchase_number,
            }
        );

        let breakdown = earned.map_or(&[][..], |earned| &earned.breakdown[..]);
        self.check_milestones(purchase_number, occurred_at, breakdown);

        // The points are the oracle's, under the rule set in force, and open a lot that
        // lives `expiry_days` from when the purchase happened.
        let total: i128 = earning.iter().map(|(_, _, points)| points).sum();
        match earned {
            None => assert_eq!(
                total, 0,
                "the rules give {earning:?} but nothing was earned"
            ),
            Some(earned) => {
                assert_eq!(i128::from(earned.points.value()), total);
                let expected_breakdown: Vec<RulePoints> = earning
                    .iter()
                    .map(|(rule_id, kind, points)| RulePoints {
                        rule_id: rule_id.clone(),
                        kind: *kind,
                        points: Points::new(i64::try_from(*points).unwrap()),
                    })
                    .collect();
                assert_eq!(earned.breakdown, expected_breakdown);
                // Under the set in force when the purchase happened, not the latest.
                assert_eq!(
                    earned.rule_set_version,
                    self.model.rule_set_at(occurred_at).0
                );
                assert_eq!(earned.lot_id, lot_id);
                assert_eq!(earned.purchase_id, purchase_id);
                assert_eq!(earned.earned_at, occurred_at);
                assert_eq!(
                    earned.expires_at,
                    occurred_at + Duration::days(i64::from(self.model.expiry_days))
                );
            }
        }

        self.apply(&command, &events);
        self.model.record_purchase(lot_id, total, occurred_at);
        self.check_after_success();
    }

    /// A milestone rule with `every_nth_purchase` N pays its bonus exactly on the purchases
    /// whose number is a multiple of N: the milestone lines of the breakdown are the bonuses
    /// of those rules (of the set in force at `occurred_at`), in rule-set order.
    fn check_milestones(
        &self,
        purchase_number: u32,
        occurred_at: DateTime<Utc>,
        breakdown: &[RulePoints],
    ) {
        let paid: Vec<Points> = breakdown
            .iter()
            .filter(|line| line.kind == KindName::Milestone)
            .map(|line| line.points)
            .collect();
        let due: Vec<Points> = self
            .model
            .rule_set_at(occurred_at)
            .1
            .iter()
            .filter_map(|rule| match *rule {
                RuleKind::Milestone {
                    every_nth_purchase,
                    bonus,
                } if purchase_number.is_multiple_of(every_nth_purchase) && bonus.is_positive() => {
                    Some(bonus)
                }
                _ => None,
            })
            .collect();
        assert_eq!(paid, due, "milestones of purchase #{purchase_number}");
    }

    fn redeem(&mut self, spec: &RedeemSpec) {
        let at = self.clock;
        let points = spec.points(self.model.spendable_at(at));
        let redemption_id = RedemptionId::from_uuid(self.fresh_uuid());
        let description = format!("reward {redemption_id}");
        let command = Command::RedeemPoints {
            customer_id: self.customer_id,
            redemption_id,
            points: Points::new(points),
            description: description.clone(),
            at,
        };
        let predicted = self.model.predict_redemption(points, at);
        let Some(events) = self.decide_as_predicted(&command, &predicted) else {
            return;
        };
        let plan = predicted.unwrap();

        let (last, expiries) = events.split_last().expect("a redemption emits events");
        let Event::RewardRedeemed(redeemed) = last else {
            panic!("RewardRedeemed comes last, after the expiries: {events:#?}");
        };
        // Lots already due expire in the same decision, before the redemption.
        check_expiries(&self.customer.lots, expiries, at);
        assert_eq!(redeemed.redemption_id, redemption_id);
        assert_eq!(redeemed.points, Points::new(points));
        assert_eq!(redeemed.description, description);
        assert_eq!(redeemed.redeemed_at, at);
        check_soonest_expiring_first(&self.customer.lots, redeemed.points, &redeemed.consumed, at);

        self.apply(&command, &events);
        self.model.record_redemption(&plan, at);
        self.check_after_success();
    }

    fn expire(&mut self) {
        let at = self.clock;
        let command = Command::ExpirePoints {
            customer_id: self.customer_id,
            at,
        };
        let predicted = self.model.predict_expiry();
        let Some(events) = self.decide_as_predicted(&command, &predicted) else {
            return;
        };
        check_expiries(&self.customer.lots, &events, at);

        self.apply(&command, &events);
        // Only what open holds reserved survives past its date.
        assert!(
            self.customer
                .lots
                .iter()
                .all(|lot| lot.expires_at > at || lot.free() == Points::ZERO),
            "free points of a due lot survived the expiry run at {at}: {:#?}",
            self.customer.lots
        );
        // The expiry run is a scheduled job that may run twice: the second run is a no-op.
        assert_eq!(
            self.decide(&command),
            Ok(Vec::new()),
            "expiry is idempotent"
        );

        self.model.record_expiry(at);
        self.check_after_success();
    }

    fn erase(&mut self) {
        let command = Command::EraseCustomer {
            customer_id: self.customer_id,
            at: self.clock,
        };
        let predicted = if !self.model.enrolled {
            Err(Rejection::CustomerNotEnrolled)
        } else if self.model.erased {
            Err(Rejection::CustomerErased)
        } else {
            Ok(())
        };
        let Some(events) = self.decide_as_predicted(&command, &predicted) else {
            return;
        };
        assert_eq!(
            events,
            vec![Event::CustomerErased(CustomerErased {
                customer_id: self.customer_id,
                erased_at: self.clock,
            })]
        );
        self.apply(&command, &events);
        self.model.erased = true;
        self.check_after_success();
    }

    fn publish(&mut self, rules: &[RuleKind]) {
        let command = Command::PublishRuleSet {
            rules: identified(rules),
            at: self.clock,
        };
        let predicted = oracle_validation(rules).map_err(Rejection::InvalidRuleSet);
        let Some(events) = self.decide_as_predicted(&command, &predicted) else {
            return;
        };
        let [Event::RuleSetPublished(published)] = events.as_slice() else {
            panic!("publishing emits one RuleSetPublished: {events:#?}");
        };
        assert_eq!(
            published.rule_set.version(),
            self.model.rule_set_version + 1
        );
        assert_eq!(published.rule_set.rules(), identified(rules));
        assert_eq!(published.published_at, self.clock);

        self.apply(&command, &events);
        self.model.rules = rules.to_vec();
        self.model.rule_set_version += 1;
        self.model
            .published
            .push((self.clock, self.model.rule_set_version, rules.to_vec()));
        self.check_after_success();
    }

    fn picked_reward(&mut self, pick: Pick) -> RewardId {
        match pick {
            Pick::Existing(n) if !self.model.rewards.is_empty() => {
                self.model.rewards[n % self.model.rewards.len()].reward_id
            }
            _ => RewardId::from_uuid(self.fresh_uuid()),
        }
    }

    fn create_reward(&mut self, name: &str, points_cost: i64) {
        let reward_id = RewardId::from_uuid(self.fresh_uuid());
        let command = Command::CreateReward {
            reward_id,
            name: name.to_owned(),
            points_cost: Points::new(points_cost),
            terms: Default::default(),
            at: self.clock,
        };
        let predicted = self.model.predict_reward_creation(name, points_cost);
        let Some(events) = self.decide_as_predicted(&command, &predicted) else {
            return;
        };
        assert_eq!(
            events,
            vec![Event::RewardCreated(RewardCreated {
                reward_id,
                name: name.to_owned(),
                points_cost: Points::new(points_cost),
                terms: Default::default(),
                created_at: self.clock,
            })]
        );
        self.apply(&command, &events);
        // The same id again is refused: ids are the shell's, and a reward is created once.
        assert_eq!(self.decide(&command), Err(Rejection::RewardAlreadyExists));
        self.model.rewards.push(ModelReward {
            reward_id,
            name: name.to_owned(),
            points_cost,
            retired: false,
        });
        self.check_after_success();
    }

    fn retire_reward(&mut self, pick: Pick) {
        let reward_id = self.picked_reward(pick);
        let command = Command::RetireReward {
            reward_id,
            at: self.clock,
        };
        let predicted = self.model.reward(reward_id).map(|_| ());
        let Some(events) = self.decide_as_predicted(&command, &predicted) else {
            return;
        };
        assert_eq!(
            events,
            vec![Event::RewardRetired(RewardRetired {
                reward_id,
                retired_at: self.clock,
            })]
        );
        self.apply(&command, &events);
        assert_eq!(self.decide(&command), Err(Rejection::RewardRetired));
        for reward in &mut self.model.rewards {
            if reward.reward_id == reward_id {
                reward.retired = true;
            }
        }
        self.check_after_success();
    }

    fn redeem_reward(&mut self, pick: Pick) {
        let at = self.clock;
        let reward_id = self.picked_reward(pick);
        let redemption_id = RedemptionId::from_uuid(self.fresh_uuid());
        let random = self.fresh_uuid();
        let bytes = random.as_bytes();
        let code = RedemptionCode::from_random_bytes([
            bytes[11], bytes[12], bytes[13], bytes[14], bytes[15],
        ]);
        let command = Command::RedeemReward {
            customer_id: self.customer_id,
            redemption_id,
            reward_id,
            code: code.clone(),
            at,
        };
        let predicted = self.model.predict_reward_redemption(reward_id, at);
        let Some(events) = self.decide_as_predicted(&command, &predicted) else {
            return;
        };
        let (cost, plan) = predicted.unwrap();
        let (last, expiries) = events.split_last().expect("a redemption emits events");
        let Event::RewardHeld(held) = last else {
            panic!("RewardHeld comes last, after the expiries: {events:#?}");
        };
        check_expiries(&self.customer.lots, expiries, at);
        let reward = self
            .model
            .reward(reward_id)
            .expect("predicted active")
            .clone();
        let expires_at = at + Duration::days(i64::from(self.model.hold_days));
        assert_eq!(held.redemption_id, redemption_id);
        assert_eq!(held.points, Points::new(cost));
        assert_eq!(held.description, reward.name);
        assert_eq!(held.reward_id, reward_id);
        assert_eq!(held.code, code.as_str());
        assert_eq!(held.held_at, at);
        assert_eq!(held.expires_at, expires_at);
        check_soonest_expiring_first(&self.customer.lots, held.points, &held.reserved, at);
        assert_eq!(debits(&held.reserved), plan.consumed, "reserved lots");

        let (balance, held_before) = (self.customer.balance, self.customer.held);
        self.apply(&command, &events);
        // A hold moves nothing out of the balance but the expiries before it.
        let expired: i64 = expiries.iter().map(|e| e.points_delta().value()).sum();
        assert_eq!(self.customer.balance.value(), balance.value() + expired);
        assert_eq!(self.customer.held.value(), held_before.value() + cost);
        self.model.record_hold(&plan, at);
        self.model.reward_redemptions.push(ModelRedemption {
            redemption_id,
            reward_id,
            code: code.to_string(),
            points: cost,
            reserved: plan.consumed,
            expires_at,
            fulfilled: false,
        });
        self.check_after_success();
    }

    fn fulfil(&mut self, pick: Pick) {
        let redemption_id = match pick {
            Pick::Existing(n) if !self.model.reward_redemptions.is_empty() => {
                let redemptions = &self.model.reward_redemptions;
                redemptions[n % redemptions.len()].redemption_id
            }
            _ => RedemptionId::from_uuid(self.fresh_uuid()),
        };
        let command = Command::FulfilRedemption {
            customer_id: self.customer_id,
            redemption_id,
            at: self.clock,
        };
        let predicted = self.model.predict_fulfilment(redemption_id, self.clock);
        let Some(events) = self.decide_as_predicted(&command, &predicted) else {
            return;
        };
        let redemption = self
            .model
            .reward_redemptions
            .iter()
            .find(|r| r.redemption_id == redemption_id)
            .expect("predicted found");
        assert_eq!(
            events,
            vec![Event::HoldFulfilled(HoldFulfilled {
                redemption_id,
                points: Points::new(redemption.points),
                consumed: redemption
                    .reserved
                    .iter()
                    .map(|&(lot_id, points)| LotDebit {
                        lot_id,
                        points: Points::new(points),
                    })
                    .collect(),
                fulfilled_at: self.clock,
            })]
        );
        self.apply(&command, &events);
        // A second fulfilment, at once, is refused: a reward is handed over once.
        assert_eq!(self.decide(&command), Err(Rejection::AlreadyFulfilled));
        self.model.record_fulfilment(redemption_id);
        self.check_after_success();
    }

    // --- after every accepted command -------------------------------------------------

    fn check_after_success(&self) {
        check_invariants(&self.customer);
        self.check_model_agrees();
        self.check_catalogue_and_redemptions();
    }

    /// The catalogue and the reward redemptions are the model's, and no redemption was ever
    /// fulfilled twice (counted over every accepted event, not from the state).
    fn check_catalogue_and_redemptions(&self) {
        let rewards: Vec<ModelReward> = self
            .tenant
            .rewards
            .values()
            .map(|reward| ModelReward {
                reward_id: reward.reward_id,
                name: reward.name.clone(),
                points_cost: reward.points_cost.value(),
                retired: !reward.is_active(),
            })
            .collect();
        let mut expected = self.model.rewards.clone();
        expected.sort_by_key(|reward| reward.reward_id);
        assert_eq!(rewards, expected, "catalogue");

        let redemptions: Vec<ModelRedemption> = self
            .customer
            .redemptions
            .values()
            .map(|r| {
                let hold = r.hold.as_ref().expect("every reward redemption is a hold");
                assert_eq!(hold.released, None, "nothing here releases a hold");
                ModelRedemption {
                    redemption_id: r.redemption_id,
                    reward_id: r.reward_id,
                    code: r.code.clone(),
                    points: r.points.value(),
                    reserved: debits(&hold.reserved),
                    expires_at: hold.expires_at,
                    fulfilled: r.fulfilled_at.is_some(),
                }
            })
            .collect();
        let mut expected = self.model.reward_redemptions.clone();
        expected.sort_by_key(|r| r.redemption_id);
        assert_eq!(redemptions, expected, "reward redemptions");

        let mut fulfilled: Vec<RedemptionId> = self
            .customer_events
            .iter()
            .filter_map(|event| match event {
                Event::RedemptionFulfilled(e) => Some(e.redemption_id),
                Event::HoldFulfilled(e) => Some(e.redemption_id),
                _ => None,
            })
            .collect();
        let count = fulfilled.len();
        fulfilled.sort();
        fulfilled.dedup();
        assert_eq!(fulfilled.len(), count, "a redemption fulfilled twice");
    }

    fn check_model_agrees(&self) {
        let model = &self.model;
        let profile = self.tenant.profile.as_ref().expect("registered");
        assert_eq!(profile.rule_set.version(), model.rule_set_version);
        assert_eq!(profile.rule_set.rules(), identified(&model.rules));
        assert_eq!(profile.rule_sets.len(), model.published.len());
        assert_eq!(profile.expiry_days, model.expiry_days);

        let customer = &self.customer;
        assert_eq!(customer.profile.is_some(), model.enrolled);
        if let Some(profile) = &customer.profile {
            assert_eq!(profile.erased_at.is_some(), model.erased);
            assert_eq!(profile.personal_data.is_none(), model.erased);
        }
        assert_eq!(customer.purchases, model.purchases);
        assert_eq!(i128::from(customer.earned.value()), model.earned, "earned");
        assert_eq!(
            i128::from(customer.redeemed.value()),
            model.redeemed,
            "redeemed"
        );
        assert_eq!(
            i128::from(customer.expired.value()),
            model.expired,
            "expired"
        );
        assert_eq!(
            i128::from(customer.balance.value()),
            model.balance(),
            "balance"
        );
        assert_eq!(i128::from(customer.held.value()), model.held(), "held");
        assert_eq!(
            i128::from(customer.available_at(self.clock).value()),
            model.spendable_at(self.clock),
            "spendable at {}",
            self.clock
        );
        let lots: Vec<ModelLot> = customer
            .lots
            .iter()
            .map(|lot| ModelLot {
                lot_id: lot.lot_id,
                points: lot.points.value(),
                remaining: lot.remaining.value(),
                reserved: lot.reserved.value(),
                expires_at: lot.expires_at,
            })
            .collect();
        assert_eq!(lots, model.lots, "lots");
    }
}

// ---------------------------------------------------------------------------------------
// Checks that look only at the ledger's own state and events
// ---------------------------------------------------------------------------------------

/// `balance == Σ lots.remaining == earned − redeemed − expired`, `balance ≥ 0`,
/// `held == Σ lots.reserved == Σ points of open holds`, and every lot kept has
/// `0 < remaining ≤ points` (so emptied lots are dropped) and `0 ≤ reserved ≤ remaining`.
/// (No pending points, refunds, adjustments or debt here: the default settings.)
fn check_invariants(customer: &CustomerState) {
    let balance = i128::from(customer.balance.value());
    let in_lots: i128 = customer
        .lots
        .iter()
        .map(|lot| i128::from(lot.remaining.value()))
        .sum();
    let by_counters = i128::from(customer.earned.value())
        - i128::from(customer.redeemed.value())
        - i128::from(customer.expired.value());
    assert_eq!(balance, in_lots, "balance vs lots: {customer:#?}");
    assert_eq!(balance, by_counters, "balance vs counters: {customer:#?}");
    assert!(balance >= 0, "negative balance: {customer:#?}");
    let reserved: i128 = customer
        .lots
        .iter()
        .map(|lot| i128::from(lot.reserved.value()))
        .sum();
    let open_holds: i128 = customer
        .open_holds()
        .map(|r| i128::from(r.points.value()))
        .sum();
    assert_eq!(i128::from(customer.held.value()), reserved, "held vs lots");
    assert_eq!(reserved, open_holds, "reserved vs open holds");
    for lot in &customer.lots {
        assert!(
            lot.remaining.is_positive() && lot.remaining <= lot.points,
            "lot out of bounds: {lot:#?}"
        );
        assert!(
            (0..=lot.remaining.value()).contains(&lot.reserved.value()),
            "reserved out of bounds: {lot:#?}"
        );
    }
}

fn debits(debits: &[LotDebit]) -> Vec<(LotId, i64)> {
    debits
        .iter()
        .map(|d| (d.lot_id, d.points.value()))
        .collect()
}

/// The expiry events of a decision at `at` are exactly one `PointsExpired` per lot due at
/// `at` (`expires_at <= at`) with free points, for its free points (what a hold reserved
/// does not expire while held), dated `at`. Order does not matter.
fn check_expiries(lots_before: &[Lot], events: &[Event], at: DateTime<Utc>) {
    let mut expired: Vec<(LotId, Points)> = events
        .iter()
        .map(|event| match event {
            Event::PointsExpired(PointsExpired {
                lot_id,
                points,
                expired_at,
            }) => {
                assert_eq!(*expired_at, at);
                (*lot_id, *points)
            }
            other => panic!("expected only PointsExpired here, got {other:#?}"),
        })
        .collect();
    let mut due: Vec<(LotId, Points)> = lots_before
        .iter()
        .filter(|lot| lot.expires_at <= at && lot.free().is_positive())
        .map(|lot| (lot.lot_id, lot.free()))
        .collect();
    expired.sort();
    due.sort();
    assert_eq!(expired, due, "expiries at {at}");
}

/// A redemption (or a hold) takes the free points of the soonest-expiring open lots first
/// (ties: the earliest earned), so its debits are a prefix of the open lots with free points
/// in that order, whole except maybe the last, adding up to the points redeemed; and it
/// never touches a lot past its date.
fn check_soonest_expiring_first(
    lots_before: &[Lot],
    points: Points,
    consumed: &[LotDebit],
    at: DateTime<Utc>,
) {
    let mut open: Vec<&Lot> = lots_before
        .iter()
        .filter(|lot| lot.expires_at > at && lot.free().is_positive())
        .collect();
    open.sort_by_key(|lot| lot.expires_at); // stable: ties keep the earned order

    let total: i128 = consumed.iter().map(|d| i128::from(d.points.value())).sum();
    assert_eq!(total, i128::from(points.value()), "Σ consumed");
    assert!(consumed.len() <= open.len(), "more debits than open lots");
    for (index, (debit, lot)) in consumed.iter().zip(&open).enumerate() {
        assert_eq!(
            debit.lot_id, lot.lot_id,
            "debit {index} is not the next soonest-expiring lot: {consumed:#?} from {open:#?}"
        );
        assert!(debit.points.is_positive(), "empty debit {index}");
        if index + 1 < consumed.len() {
            assert_eq!(
                debit.points,
                lot.free(),
                "only the last debit may be partial"
            );
        } else {
            assert!(
                debit.points <= lot.free(),
                "debit beyond what the lot has free"
            );
        }
    }
    for debit in consumed {
        let lot = lots_before
            .iter()
            .find(|lot| lot.lot_id == debit.lot_id)
            .expect("a debit names an open lot");
        assert!(lot.expires_at > at, "spent a lot past its date: {lot:#?}");
    }
}

// ---------------------------------------------------------------------------------------
// The properties
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    /// Every step: the right rejection or the right events, then the invariants and the
    /// model hold. All the checking happens inside `Harness::run`.
    #[test]
    fn every_step_keeps_the_ledger_consistent(scenario in scenario(Scale::Everyday)) {
        Harness::run(&scenario);
    }

    /// The same with rules that pay up to the largest amounts allowed, where a purchase
    /// can earn close to `i64::MAX`: sums that would not fit must be refused with
    /// `Overflow`, never saturated or wrapped.
    #[test]
    fn every_step_keeps_the_ledger_consistent_near_the_i64_limit(
        scenario in scenario(Scale::NearTheLimit)
    ) {
        Harness::run(&scenario);
    }

    /// Events are the source of truth: folding the accepted events into fresh states gives
    /// the live states back, per stream and from the interleaved log (each kind of state
    /// ignores the other's events).
    #[test]
    fn replaying_accepted_events_rebuilds_the_live_state(scenario in scenario(Scale::Everyday)) {
        let harness = Harness::run(&scenario);
        let tenant = harness.tenant_events.iter().fold(TenantState::default(), evolve);
        let customer = harness.customer_events.iter().fold(CustomerState::default(), evolve);
        prop_assert_eq!(&tenant, &harness.tenant);
        prop_assert_eq!(&customer, &harness.customer);
        let tenant = harness.accepted.iter().fold(TenantState::default(), evolve);
        let customer = harness.accepted.iter().fold(CustomerState::default(), evolve);
        prop_assert_eq!(&tenant, &harness.tenant);
        prop_assert_eq!(&customer, &harness.customer);
    }

    /// What is stored is what is read back: every accepted event survives the wire format
    /// exactly, written at its type's current version.
    #[test]
    fn every_accepted_event_round_trips_through_the_codec(scenario in scenario(Scale::Everyday)) {
        let harness = Harness::run(&scenario);
        for event in &harness.accepted {
            let encoded = encode(event).expect("every event encodes");
            prop_assert_eq!(Some(encoded.type_version), current_version(encoded.event_type));
            let decoded = decode(encoded.event_type, encoded.type_version, &encoded.payload)
                .expect("what was encoded decodes");
            prop_assert_eq!(&decoded, event);
        }
    }
}

/// The case the near-the-limit property finds, written out small: earn close to
/// `i64::MAX`, spend some, earn again. The second purchase fits the balance but would take
/// the lifetime `earned` counter past `i64::MAX`, so it must be refused with `Overflow`
/// rather than accepted with `earned` saturated (which breaks
/// `balance == earned − redeemed − expired`).
#[test]
fn a_purchase_that_would_overflow_lifetime_earned_is_refused() {
    let now = |op| Step {
        advance: Advance::Seconds(0),
        op,
    };
    let buy = |amount| {
        now(Op::Purchase(PurchaseSpec {
            amount: AmountSpec::MinorUnits(amount),
            items: ItemsSpec::None,
            when: WhenSpec::Now,
            with_reference: false,
        }))
    };
    let scenario = Scenario {
        expiry_days: 30,
        // 10^12 points per minor unit: 9·10^6 minor units earn 9·10^18 points.
        rules: vec![per_amount(1, Points::COMMAND_MAX, 0)],
        enrolled_at_start: true,
        steps: vec![
            buy(9_000_000),
            now(Op::Redeem(RedeemSpec::Points(1_000_000_000_000_000_000))),
            // Balance 8·10^18 + 10^18 fits; earned 9·10^18 + 10^18 does not.
            buy(1_000_000),
        ],
    };
    Harness::run(&scenario);
}
