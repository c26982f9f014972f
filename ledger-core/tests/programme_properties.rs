//! Property tests of the balance vocabulary (issue item 10): random sequences of every
//! customer command (earn, pending, activate, refund, adjust, redeem, hold, fulfil, cancel,
//! expire) under random, changing programme settings, with the ledger's invariants checked
//! after every step.
//!
//! Reading order: the configuration, what the generator produces ([`Scenario`], [`Op`]),
//! the strategies, then [`Harness`]: it decides each command against the live state, holds
//! the outcome to what the step was built to provoke ([`Expect`]: a success, or a named
//! rejection), applies accepted events with `evolve`, and after every step runs
//! [`check_invariants`] and the replay and codec checks. Unlike `properties.rs` there is no
//! oracle predicting every event: the properties are the identities, which any
//! correct ledger keeps whatever order it takes points in. The refund order itself is
//! pinned down case by case in `refunds.rs`.
//!
//! The run is seeded (`SEED`, or `PROPTEST_RNG_SEED` to explore); the property prints
//! how many commands of each kind were accepted and rejected, and fails if any kind was
//! never accepted or never rejected, so the generator cannot quietly stop reaching a branch.

use chrono::{DateTime, Duration, TimeZone, Utc};
use ledger_core::books::{outstanding, Books, StatementBuilder, Worth};
use ledger_core::codec::{current_version, decode, encode};
use ledger_core::command::{PhoneIndex, Target, WrappedDataKey};
use ledger_core::events::{
    HoldReleaseReason, HoldReleased, LotDebit, ProgrammeSettings, PurchaseRefunded, RefundPolicy,
    Reversal, SealedPersonalData, TierDirection,
};
use ledger_core::ids::{AdjustmentId, RefundId, StreamId};
use ledger_core::rules::RuleKind;
use ledger_core::tiers::{InvalidTierScheme, Tier, TierBasis, TierScheme, TierWindow};
use ledger_core::{
    decide, evolve, Command, Currency, CustomerId, CustomerState, Event, LedgerState, Lot, LotId,
    MinorUnits, Points, PurchaseId, RedemptionCode, RedemptionId, Rejection, RewardId, Rule,
    RuleSet, TenantId, TenantState,
};
use proptest::prelude::*;
use proptest::test_runner::{FileFailurePersistence, RngSeed, TestRunner};
use std::cell::RefCell;
use std::collections::BTreeMap;
use uuid::Uuid;

// ---------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------

/// The seed of every run unless `PROPTEST_RNG_SEED` is set.
const SEED: u64 = 0xBA1A_4CE5_EED5;
const CASES: u32 = 512;
const STEPS_MAX: usize = 80;

const HOUR_SECONDS: i64 = 3600;
const DAY_SECONDS: i64 = 24 * HOUR_SECONDS;
/// How far ahead of the clock a purchase may be dated (the crate's tolerance, written out
/// so that a change of it is a visible decision).
const SKEW_MAX_SECONDS: i64 = 5 * 60;

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
        rng_seed: if exploring {
            default.rng_seed
        } else {
            RngSeed::Fixed(SEED)
        },
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

fn clock_start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap()
}

// ---------------------------------------------------------------------------------------
// What the generator produces
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Scenario {
    /// Lifetime of a lot; at least 2 days so that a return window fits inside it.
    expiry_days: u32,
    /// `amount_step` and `points_per_step` of the tenant's one per-amount rule.
    rule: (i64, i64),
    settings: SettingsSpec,
    /// Costs of the rewards in the catalogue before the first step.
    rewards: Vec<i64>,
    enrolled_at_start: bool,
    steps: Vec<Step>,
}

#[derive(Debug, Clone)]
struct Step {
    advance: Advance,
    op: Op,
}

#[derive(Debug, Clone)]
enum Advance {
    Seconds(i64),
    /// To the next instant something falls due (a lot's expiry, a return window's end, a
    /// hold's expiry), so the boundaries are hit on purpose.
    ToNextBoundary,
}

#[derive(Debug, Clone)]
enum Op {
    Enrol,
    Erase,
    Purchase(PurchaseSpec),
    Activate,
    Refund {
        purchase: Pick,
        amount: RefundAmount,
    },
    Adjust(AdjustSpec),
    RedeemPoints(Share),
    CreateReward {
        name: NameSpec,
        cost: i64,
    },
    RedeemReward(Pick),
    Fulfil(Pick),
    CancelHold(Pick),
    ExpireHolds,
    ExpirePoints,
    ChangeSettings(SettingsSpec),
    /// Publishes a tier ladder: thresholds in points earned or spend, a rolling window of
    /// days or the calendar year, a grace period; `break_order` makes it invalid.
    PublishTiers(TierSpec),
    /// The scheduled tier review at the current clock.
    ReviewTier,
}

#[derive(Debug, Clone)]
struct TierSpec {
    spend: bool,
    window_days: Option<u32>,
    grace_days: u32,
    /// Increments between thresholds (the first threshold is 0).
    steps: Vec<i64>,
    break_order: bool,
}

#[derive(Debug, Clone, Copy)]
enum Pick {
    /// One of the things of its kind the run made (cyclically).
    Existing(usize),
    /// For holds: one still open, if any (else as `Existing`), so that fulfilments and
    /// cancellations are not mostly of holds already resolved.
    Open(usize),
    /// An id nobody has used.
    Unknown,
}

#[derive(Debug, Clone)]
struct PurchaseSpec {
    /// May be zero or negative: refused.
    amount: i64,
    when: When,
}

#[derive(Debug, Clone)]
enum When {
    Now,
    /// Back-dated: the return window or the lot may be over already.
    PastSeconds(i64),
    /// Further ahead than the tolerated skew: refused.
    BeyondSkewSeconds(i64),
}

#[derive(Debug, Clone)]
enum RefundAmount {
    /// What is left to refund (one minor unit if nothing is: refused).
    Rest,
    /// A third of the purchase (at least one minor unit): three of them refund it whole.
    Third,
    /// A share of what is left, in thousandths (at least one minor unit).
    ShareOfRest(u32),
    /// More than is left: refused.
    MoreThanRest(i64),
    /// Zero or negative: refused.
    NotPositive(i64),
}

#[derive(Debug, Clone)]
enum AdjustSpec {
    Add(i64),
    /// Takes away a share of what is available, in thousandths (at least one point).
    TakeShare(u32),
    /// Takes away more than is available: refused.
    TakeTooMuch(i64),
    Zero,
    BlankReason,
    EmptyReason,
}

/// A share of what is available, in thousandths; above 1000 asks for too much. Zero points
/// is refused.
#[derive(Debug, Clone)]
enum Share {
    Permille(u32),
    Zero,
}

#[derive(Debug, Clone)]
enum NameSpec {
    Valid,
    Blank,
    TooLong,
}

#[derive(Debug, Clone)]
struct SettingsSpec {
    /// `None`: no return window; `Some(n)`: a window of 1 to `expiry_days − 1` days.
    pending: Option<u32>,
    /// `None`: clamp at zero; `Some(limit)`: allow debt down to `−limit`.
    debt_limit: Option<i64>,
    hold_days: u32,
    point_value: Option<i64>,
    /// One thing wrong with the settings, or none.
    fault: Option<SettingsFault>,
}

#[derive(Debug, Clone, Copy)]
enum SettingsFault {
    UnknownTimeZone,
    PendingAsLongAsExpiry,
    HoldDaysZero,
    HoldDaysTooMany,
    NegativePointValue,
    NegativeDebtLimit,
    DebtLimitTooLarge,
}

impl SettingsSpec {
    fn settings(&self, expiry_days: u32) -> ProgrammeSettings {
        let mut settings = ProgrammeSettings {
            time_zone: "Africa/Lagos".into(),
            pending_days: self.pending.map_or(0, |n| 1 + n % (expiry_days - 1)),
            refund_policy: match self.debt_limit {
                None => RefundPolicy::ClampAtZero,
                Some(limit) => RefundPolicy::AllowDebt {
                    limit: Points::new(limit),
                },
            },
            hold_days: self.hold_days,
            point_value: self.point_value.map(MinorUnits::new),
        };
        match self.fault {
            None => {}
            Some(SettingsFault::UnknownTimeZone) => settings.time_zone = "Mars/Olympus_Mons".into(),
            Some(SettingsFault::PendingAsLongAsExpiry) => settings.pending_days = expiry_days,
            Some(SettingsFault::HoldDaysZero) => settings.hold_days = 0,
            Some(SettingsFault::HoldDaysTooMany) => settings.hold_days = 366,
            Some(SettingsFault::NegativePointValue) => {
                settings.point_value = Some(MinorUnits::new(-1))
            }
            Some(SettingsFault::NegativeDebtLimit) => {
                settings.refund_policy = RefundPolicy::AllowDebt {
                    limit: Points::new(-1),
                }
            }
            Some(SettingsFault::DebtLimitTooLarge) => {
                settings.refund_policy = RefundPolicy::AllowDebt {
                    limit: Points::new(Points::COMMAND_MAX + 1),
                }
            }
        }
        settings
    }
}

// ---------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![
        9 => any::<usize>().prop_map(Pick::Existing),
        1 => Just(Pick::Unknown),
    ]
}

fn hold_pick() -> impl Strategy<Value = Pick> {
    prop_oneof![
        6 => any::<usize>().prop_map(Pick::Open),
        3 => any::<usize>().prop_map(Pick::Existing),
        1 => Just(Pick::Unknown),
    ]
}

fn valid_settings() -> impl Strategy<Value = SettingsSpec> {
    let pending = prop_oneof![1 => Just(None), 1 => (0u32..=30).prop_map(Some)];
    let debt_limit = prop_oneof![
        1 => Just(None),
        1 => (0i64..=60).prop_map(Some),
        1 => prop_oneof![Just(0i64), Just(5), Just(Points::COMMAND_MAX)].prop_map(Some),
    ];
    let hold_days = prop_oneof![4 => 1u32..=30, 1 => Just(1u32), 1 => Just(365u32)];
    let point_value = prop_oneof![Just(None), (0i64..=500).prop_map(Some)];
    (pending, debt_limit, hold_days, point_value).prop_map(
        |(pending, debt_limit, hold_days, point_value)| SettingsSpec {
            pending,
            debt_limit,
            hold_days,
            point_value,
            fault: None,
        },
    )
}

fn any_settings() -> impl Strategy<Value = SettingsSpec> {
    let fault = prop_oneof![
        Just(SettingsFault::UnknownTimeZone),
        Just(SettingsFault::PendingAsLongAsExpiry),
        Just(SettingsFault::HoldDaysZero),
        Just(SettingsFault::HoldDaysTooMany),
        Just(SettingsFault::NegativePointValue),
        Just(SettingsFault::NegativeDebtLimit),
        Just(SettingsFault::DebtLimitTooLarge),
    ];
    (valid_settings(), prop::option::weighted(0.25, fault)).prop_map(|(mut spec, fault)| {
        spec.fault = fault;
        spec
    })
}

fn purchase() -> impl Strategy<Value = PurchaseSpec> {
    let amount = prop_oneof![
        12 => 1i64..=3_000,
        2 => 1i64..=30,
        1 => -2i64..=0,
    ];
    let when = prop_oneof![
        8 => Just(When::Now),
        3 => (1i64..=40 * DAY_SECONDS).prop_map(When::PastSeconds),
        1 => (SKEW_MAX_SECONDS + 1..=3 * DAY_SECONDS).prop_map(When::BeyondSkewSeconds),
    ];
    (amount, when).prop_map(|(amount, when)| PurchaseSpec { amount, when })
}

fn refund_amount() -> impl Strategy<Value = RefundAmount> {
    prop_oneof![
        4 => Just(RefundAmount::Rest),
        4 => Just(RefundAmount::Third),
        4 => (1u32..=1_000).prop_map(RefundAmount::ShareOfRest),
        1 => (1i64..=100).prop_map(RefundAmount::MoreThanRest),
        1 => (-3i64..=0).prop_map(RefundAmount::NotPositive),
    ]
}

fn adjust() -> impl Strategy<Value = AdjustSpec> {
    prop_oneof![
        4 => (1i64..=80).prop_map(AdjustSpec::Add),
        4 => (1u32..=1_000).prop_map(AdjustSpec::TakeShare),
        1 => (1i64..=20).prop_map(AdjustSpec::TakeTooMuch),
        1 => Just(AdjustSpec::Zero),
        1 => Just(AdjustSpec::BlankReason),
        1 => Just(AdjustSpec::EmptyReason),
    ]
}

fn share() -> impl Strategy<Value = Share> {
    prop_oneof![
        10 => (1u32..=1_300).prop_map(Share::Permille),
        1 => Just(Share::Zero),
    ]
}

fn create_reward() -> impl Strategy<Value = Op> {
    let name = prop_oneof![
        8 => Just(NameSpec::Valid),
        1 => Just(NameSpec::Blank),
        1 => Just(NameSpec::TooLong),
    ];
    let cost = prop_oneof![10 => 1i64..=60, 1 => -1i64..=0];
    (name, cost).prop_map(|(name, cost)| Op::CreateReward { name, cost })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => Just(Op::Enrol),
        // Rare: after it the customer can earn, spend and be adjusted no more.
        1 => Just(Op::Erase),
        60 => purchase().prop_map(Op::Purchase),
        15 => Just(Op::Activate),
        42 => (pick(), refund_amount())
            .prop_map(|(purchase, amount)| Op::Refund { purchase, amount }),
        24 => adjust().prop_map(Op::Adjust),
        18 => share().prop_map(Op::RedeemPoints),
        8 => create_reward(),
        30 => pick().prop_map(Op::RedeemReward),
        18 => hold_pick().prop_map(Op::Fulfil),
        10 => hold_pick().prop_map(Op::CancelHold),
        12 => Just(Op::ExpireHolds),
        15 => Just(Op::ExpirePoints),
        9 => any_settings().prop_map(Op::ChangeSettings),
        4 => tier_spec().prop_map(Op::PublishTiers),
        10 => Just(Op::ReviewTier),
    ]
}

fn tier_spec() -> impl Strategy<Value = TierSpec> {
    (
        any::<bool>(),
        prop_oneof![Just(None), (1u32..=60).prop_map(Some)],
        prop_oneof![Just(0u32), 1u32..=20],
        prop::collection::vec(1i64..=300, 1..=4),
        prop::bool::weighted(0.1),
    )
        .prop_map(
            |(spend, window_days, grace_days, steps, break_order)| TierSpec {
                spend,
                window_days,
                grace_days,
                steps,
                break_order,
            },
        )
}

fn step() -> impl Strategy<Value = Step> {
    let advance = prop_oneof![
        2 => Just(Advance::Seconds(0)),
        4 => (0i64..=6 * HOUR_SECONDS).prop_map(Advance::Seconds),
        4 => (0i64..=3 * DAY_SECONDS).prop_map(Advance::Seconds),
        1 => (DAY_SECONDS..=60 * DAY_SECONDS).prop_map(Advance::Seconds),
        2 => Just(Advance::ToNextBoundary),
    ];
    (advance, op()).prop_map(|(advance, op)| Step { advance, op })
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        prop_oneof![2u32..=10, 10u32..=120],
        (prop_oneof![Just(1i64), Just(10), Just(100)], 1i64..=3),
        valid_settings(),
        prop::collection::vec(1i64..=40, 0..=3),
        prop::bool::weighted(0.85),
        prop::collection::vec(step(), 1..=STEPS_MAX),
    )
        .prop_map(
            |(expiry_days, rule, settings, rewards, enrolled_at_start, steps)| Scenario {
                expiry_days,
                rule,
                settings,
                rewards,
                enrolled_at_start,
                steps,
            },
        )
}

// ---------------------------------------------------------------------------------------
// Counting: what the run exercised
// ---------------------------------------------------------------------------------------

/// Every command kind the generator must both get accepted and get refused at least once.
const KINDS: [&str; 12] = [
    "LogPurchase",
    "ActivatePendingPoints",
    "RefundPurchase",
    "AdjustPoints",
    "RedeemPoints",
    "RedeemReward",
    "FulfilRedemption",
    "CancelHold",
    "ExpireHolds",
    "ExpirePoints",
    "CreateReward",
    "ChangeProgrammeSettings",
];

fn kind(command: &Command) -> &'static str {
    match command {
        Command::RegisterTenant { .. } => "RegisterTenant",
        Command::PublishRuleSet { .. } => "PublishRuleSet",
        Command::EnrolCustomer { .. } => "EnrolCustomer",
        Command::EraseCustomer { .. } => "EraseCustomer",
        Command::LogPurchase { .. } => "LogPurchase",
        Command::RedeemPoints { .. } => "RedeemPoints",
        Command::CreateReward { .. } => "CreateReward",
        Command::UpdateReward { .. } => "UpdateReward",
        Command::RetireReward { .. } => "RetireReward",
        Command::RedeemReward { .. } => "RedeemReward",
        Command::FulfilRedemption { .. } => "FulfilRedemption",
        Command::ExpirePoints { .. } => "ExpirePoints",
        Command::ChangeProgrammeSettings { .. } => "ChangeProgrammeSettings",
        Command::RefundPurchase { .. } => "RefundPurchase",
        Command::AdjustPoints { .. } => "AdjustPoints",
        Command::ActivatePendingPoints { .. } => "ActivatePendingPoints",
        Command::CancelHold { .. } => "CancelHold",
        Command::ExpireHolds { .. } => "ExpireHolds",
        Command::PublishTierScheme { .. } => "PublishTierScheme",
        Command::ReviewTier { .. } => "ReviewTier",
        Command::SetBirthday { .. } => "SetBirthday",
        Command::AwardReferralBonus { .. } => "AwardReferralBonus",
    }
}

/// The variant name of a rejection, without its fields.
fn rejection_name(rejection: &Rejection) -> String {
    let debug = format!("{rejection:?}");
    debug
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[derive(Debug, Default)]
struct Stats {
    cases: u64,
    steps: u64,
    /// Per command kind: (accepted, rejected).
    commands: BTreeMap<&'static str, (u64, u64)>,
    rejections: BTreeMap<String, u64>,
    events: BTreeMap<&'static str, u64>,
    /// Which parts of a reversal refunds used.
    reversal_parts: BTreeMap<&'static str, u64>,
    /// Monthly statements checked, and those with some money valued.
    months: u64,
    valued_months: u64,
}

impl Stats {
    fn merge(&mut self, other: &Stats) {
        self.cases += other.cases;
        self.steps += other.steps;
        self.months += other.months;
        self.valued_months += other.valued_months;
        for (kind, (accepted, rejected)) in &other.commands {
            let entry = self.commands.entry(kind).or_default();
            entry.0 += accepted;
            entry.1 += rejected;
        }
        for (name, n) in &other.rejections {
            *self.rejections.entry(name.clone()).or_default() += n;
        }
        for (name, n) in &other.events {
            *self.events.entry(name).or_default() += n;
        }
        for (name, n) in &other.reversal_parts {
            *self.reversal_parts.entry(name).or_default() += n;
        }
    }

    fn count_reversal(&mut self, refund: &PurchaseRefunded, own_lot: Option<LotId>) {
        let r = &refund.reversal;
        let mut count = |part, used: bool| {
            if used {
                *self.reversal_parts.entry(part).or_default() += 1;
            }
        };
        count("due", r.due.is_positive());
        count("from_pending", r.from_pending.is_positive());
        count(
            "from_own_lot",
            r.from_lots.iter().any(|d| Some(d.lot_id) == own_lot),
        );
        count(
            "from_other_lots",
            r.from_lots.iter().any(|d| Some(d.lot_id) != own_lot),
        );
        count("waived_expired", r.waived_expired.is_positive());
        count("debt", r.debt.is_positive());
        count("clamped", r.clamped.is_positive());
    }
}

// ---------------------------------------------------------------------------------------
// The harness
// ---------------------------------------------------------------------------------------

/// What a step was built to provoke.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    Accept,
    Reject(Rejection),
    /// `InvalidSettings`, whatever the message.
    RejectSettings,
}

/// A purchase, as the accepted events tell it (not as the state keeps it).
#[derive(Debug, Clone)]
struct TrackedPurchase {
    purchase_id: PurchaseId,
    amount: i64,
    points: i64,
    lot_id: Option<LotId>,
    refunded: i64,
    due: i64,
    /// Points of its lot that expired, and how many of them refunds forgave.
    expired: i64,
    waived: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HoldStatus {
    Open,
    Fulfilled,
    Released,
}

#[derive(Debug, Clone)]
struct TrackedHold {
    redemption_id: RedemptionId,
    reward_id: RewardId,
    expires_at: DateTime<Utc>,
    status: HoldStatus,
    /// `HoldFulfilled` and `HoldReleased` events seen for it: at most one, ever.
    resolutions: u32,
}

struct Harness {
    tenant_id: TenantId,
    customer_id: CustomerId,
    expiry_days: u32,
    tenant: TenantState,
    customer: CustomerState,
    clock: DateTime<Utc>,
    next_id: u128,
    tenant_events: Vec<Event>,
    customer_events: Vec<Event>,
    enrolled: bool,
    erased: bool,
    purchases: Vec<TrackedPurchase>,
    rewards: Vec<(RewardId, i64)>,
    /// Per-customer limits of the rewards that have one.
    limits: BTreeMap<RewardId, u32>,
    holds: Vec<TrackedHold>,
    /// When each lot opened so far expires, from `PointsEarned` and `PointsAdjusted`.
    lot_expiry: BTreeMap<LotId, DateTime<Utc>>,
    /// Whether any settings in force so far allowed debt, and the largest limit.
    debt_ever_allowed: bool,
    debt_limit_max: i64,
    /// The ledger folded as auditors and statements fold it, and every event with its stream
    /// and the clock it was recorded at.
    books: Books,
    ledger: Vec<(StreamId, Event, DateTime<Utc>)>,
    stats: Stats,
}

impl Harness {
    fn run(scenario: &Scenario) -> Harness {
        let mut harness = Harness {
            tenant_id: TenantId::from_uuid(Uuid::from_u128(1)),
            customer_id: CustomerId::from_uuid(Uuid::from_u128(2)),
            expiry_days: scenario.expiry_days,
            tenant: TenantState::default(),
            customer: CustomerState::default(),
            clock: clock_start(),
            next_id: 0x1_0000,
            tenant_events: Vec::new(),
            customer_events: Vec::new(),
            enrolled: false,
            erased: false,
            purchases: Vec::new(),
            rewards: Vec::new(),
            limits: BTreeMap::new(),
            holds: Vec::new(),
            lot_expiry: BTreeMap::new(),
            debt_ever_allowed: false,
            debt_limit_max: 0,
            books: Books::new(),
            ledger: Vec::new(),
            stats: Stats {
                cases: 1,
                ..Stats::default()
            },
        };
        let (step, points) = scenario.rule;
        let rule_set = RuleSet::new(
            1,
            vec![Rule::new(
                "per-amount",
                RuleKind::PerAmountSpent {
                    amount_step: MinorUnits::new(step),
                    points_per_step: Points::new(points),
                    minimum_purchase: MinorUnits::ZERO,
                },
            )],
        )
        .expect("a valid rule");
        harness.execute(
            Command::RegisterTenant {
                tenant_id: harness.tenant_id,
                name: "Buka".into(),
                currency: Currency::NGN,
                expiry_days: scenario.expiry_days,
                rule_set,
                at: harness.clock,
            },
            Expect::Accept,
        );
        harness.change_settings(&scenario.settings);
        for &cost in &scenario.rewards {
            harness.create_reward(&NameSpec::Valid, cost);
        }
        if scenario.enrolled_at_start {
            harness.enrol();
        }
        for step in &scenario.steps {
            harness.advance(&step.advance);
            harness.stats.steps += 1;
            match &step.op {
                Op::Enrol => harness.enrol(),
                Op::Erase => harness.erase(),
                Op::Purchase(spec) => harness.purchase(spec),
                Op::Activate => harness.activate(),
                Op::Refund { purchase, amount } => harness.refund(*purchase, amount),
                Op::Adjust(spec) => harness.adjust(spec),
                Op::RedeemPoints(share) => harness.redeem_points(share),
                Op::CreateReward { name, cost } => harness.create_reward(name, *cost),
                Op::RedeemReward(pick) => harness.redeem_reward(*pick),
                Op::Fulfil(pick) => harness.fulfil(*pick),
                Op::CancelHold(pick) => harness.cancel_hold(*pick),
                Op::ExpireHolds => harness.expire_holds(),
                Op::ExpirePoints => harness.expire_points(),
                Op::ChangeSettings(spec) => harness.change_settings(spec),
                Op::PublishTiers(spec) => harness.publish_tiers(spec),
                Op::ReviewTier => harness.review_tier(),
            }
        }
        harness.check_statements();
        harness
    }

    fn advance(&mut self, advance: &Advance) {
        self.clock = match *advance {
            Advance::Seconds(seconds) => self.clock + Duration::seconds(seconds),
            Advance::ToNextBoundary => {
                let lots = self.customer.lots.iter();
                let expiries = lots.clone().map(|lot| lot.expires_at);
                let windows = lots.filter_map(|lot| lot.pending_until);
                let holds = self
                    .customer
                    .open_holds()
                    .filter_map(|r| r.hold.as_ref().map(|h| h.expires_at));
                expiries
                    .chain(windows)
                    .chain(holds)
                    .filter(|&at| at > self.clock)
                    .min()
                    .unwrap_or(self.clock)
            }
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

    fn settings(&self) -> &ProgrammeSettings {
        &self.tenant.profile.as_ref().expect("registered").settings
    }

    /// Who may act: `None` if the customer may, else the rejection. Erased customers are
    /// refused only the commands that record something new for them (`active`).
    fn who(&self, active: bool) -> Option<Rejection> {
        if !self.enrolled {
            Some(Rejection::CustomerNotEnrolled)
        } else if active && self.erased {
            Some(Rejection::CustomerErased)
        } else {
            None
        }
    }

    fn expect_who(&self, active: bool, otherwise: impl FnOnce() -> Expect) -> Expect {
        match self.who(active) {
            Some(rejection) => Expect::Reject(rejection),
            None => otherwise(),
        }
    }

    /// Decides `command`, holds the outcome to `expect`, and on success applies the events
    /// one by one with the per-event checks; then checks the invariants, the replay and the
    /// codec. Returns the events of a success.
    fn execute(&mut self, command: Command, expect: Expect) -> Option<Vec<Event>> {
        let before = (self.tenant.clone(), self.customer.clone());
        let outcome = self.decide(&command);
        let kind = kind(&command);
        let counts = self.stats.commands.entry(kind).or_default();
        let events = match (outcome, &expect) {
            (Ok(events), Expect::Accept) => {
                counts.0 += 1;
                events
            }
            (Err(rejection), Expect::Reject(expected)) if rejection == *expected => {
                counts.1 += 1;
                *self
                    .stats
                    .rejections
                    .entry(rejection_name(&rejection))
                    .or_default() += 1;
                // A refused command changes nothing: nothing is applied, and `decide` only
                // reads.
                assert_eq!((&self.tenant, &self.customer), (&before.0, &before.1));
                self.check_all();
                return None;
            }
            (Err(rejection @ Rejection::InvalidSettings(_)), Expect::RejectSettings) => {
                counts.1 += 1;
                *self
                    .stats
                    .rejections
                    .entry(rejection_name(&rejection))
                    .or_default() += 1;
                assert_eq!((&self.tenant, &self.customer), (&before.0, &before.1));
                self.check_all();
                return None;
            }
            (outcome, expect) => {
                panic!(
                    "{command:#?}\nat {}: got {outcome:#?}, expected {expect:?}\nstate: {:#?}",
                    self.clock, self.customer
                )
            }
        };
        for event in &events {
            check_codec(event);
            *self.stats.events.entry(event.type_name()).or_default() += 1;
            // Upgrades come only with a purchase; downgrades and retentions only at a review.
            match event {
                Event::TierChanged(c) if c.direction == TierDirection::Upgrade => {
                    assert_eq!(kind, "LogPurchase", "{event:?}");
                }
                Event::TierChanged(_) | Event::TierRetained(_) => {
                    assert_eq!(kind, "ReviewTier", "{event:?}");
                }
                _ => {}
            }
            let stream = match command.target() {
                Target::Tenant => {
                    self.tenant = evolve(std::mem::take(&mut self.tenant), event);
                    self.tenant_events.push(event.clone());
                    StreamId::Tenant(self.tenant_id)
                }
                Target::Customer(customer_id) => {
                    assert_eq!(customer_id, self.customer_id);
                    self.customer = evolve(std::mem::take(&mut self.customer), event);
                    self.customer_events.push(event.clone());
                    StreamId::Customer(customer_id)
                }
            };
            self.check_lot_value(event);
            self.books.apply(stream, event);
            self.ledger.push((stream, event.clone(), self.clock));
            self.track(event);
        }
        // `points_delta` (what read models add up) tells the balance's change exactly.
        let delta: i64 = events.iter().map(|e| e.points_delta().value()).sum();
        assert_eq!(
            self.customer.balance.value() - before.1.balance.value(),
            delta,
            "Σ points_delta of {events:#?}"
        );
        self.check_all();
        Some(events)
    }

    /// Follows the accepted events (independently of the state) and checks each one.
    fn track(&mut self, event: &Event) {
        match event {
            Event::CustomerEnrolled(_) => self.enrolled = true,
            Event::CustomerErased(_) => self.erased = true,
            Event::ProgrammeSettingsChanged(e) => {
                if let RefundPolicy::AllowDebt { limit } = e.settings.refund_policy {
                    self.debt_ever_allowed = true;
                    self.debt_limit_max = self.debt_limit_max.max(limit.value());
                }
            }
            Event::RewardCreated(e) => {
                self.rewards.push((e.reward_id, e.points_cost.value()));
                if let Some(limit) = e.terms.per_customer_limit {
                    self.limits.insert(e.reward_id, limit);
                }
            }
            Event::PurchaseLogged(e) => self.purchases.push(TrackedPurchase {
                purchase_id: e.purchase_id,
                amount: e.amount.value(),
                points: 0,
                lot_id: None,
                refunded: 0,
                due: 0,
                expired: 0,
                waived: 0,
            }),
            Event::PointsAdjusted(e) => {
                if let Some(lot) = &e.lot {
                    self.lot_expiry.insert(lot.lot_id, lot.expires_at);
                }
            }
            // Debt is paid with points the customer could spend: never with points already
            // past their date (those expire).
            Event::DebtSettled(e) => {
                let expires_at = self.lot_expiry[&e.lot_id];
                assert!(
                    e.settled_at < expires_at,
                    "debt settled with points past their date ({expires_at}): {e:#?}"
                );
            }
            Event::PointsEarned(e) => {
                self.lot_expiry.insert(e.lot_id, e.expires_at);
                let purchase = self.purchase_mut(e.purchase_id);
                purchase.points = e.points.value();
                purchase.lot_id = Some(e.lot_id);
            }
            Event::PointsExpired(e) => {
                let own = self
                    .purchases
                    .iter_mut()
                    .find(|p| p.lot_id == Some(e.lot_id));
                if let Some(purchase) = own {
                    purchase.expired += e.points.value();
                }
            }
            Event::PurchaseRefunded(e) => self.track_refund(e),
            Event::RewardHeld(e) => {
                assert_eq!(
                    e.expires_at,
                    e.held_at + Duration::days(i64::from(self.settings().hold_days))
                );
                self.holds.push(TrackedHold {
                    redemption_id: e.redemption_id,
                    reward_id: e.reward_id,
                    expires_at: e.expires_at,
                    status: HoldStatus::Open,
                    resolutions: 0,
                });
            }
            Event::HoldFulfilled(e) => {
                let hold = self.hold_mut(e.redemption_id);
                assert!(e.fulfilled_at < hold.expires_at, "fulfilled after expiry");
                hold.status = HoldStatus::Fulfilled;
                hold.resolutions += 1;
                assert_eq!(hold.resolutions, 1, "a hold resolved twice: {e:#?}");
            }
            Event::HoldReleased(e) => {
                let hold = self.hold_mut(e.redemption_id);
                if e.reason == HoldReleaseReason::Expired {
                    assert!(e.released_at >= hold.expires_at, "expired early: {e:#?}");
                }
                hold.status = HoldStatus::Released;
                hold.resolutions += 1;
                assert_eq!(hold.resolutions, 1, "a hold resolved twice: {e:#?}");
            }
            _ => {}
        }
    }

    /// A refund's parts add up to its `due`; the refunds of a purchase never exceed its
    /// amount, their dues are the floor of the cumulative share, and a purchase refunded
    /// in full has given back exactly its points. New debt stays within the limit in force.
    fn track_refund(&mut self, e: &PurchaseRefunded) {
        let r = &e.reversal;
        let parts = r.from_pending.value()
            + r.from_lots_total().value()
            + r.waived_expired.value()
            + r.debt.value()
            + r.clamped.value();
        assert_eq!(parts, r.due.value(), "reversal parts vs due: {e:#?}");
        for part in [r.from_pending, r.waived_expired, r.debt, r.clamped] {
            assert!(part.value() >= 0, "negative part: {e:#?}");
        }
        assert!(r.from_lots.iter().all(|d| d.points.is_positive()));
        assert_eq!(r.policy, self.settings().refund_policy, "policy in force");
        match r.policy {
            RefundPolicy::ClampAtZero => assert_eq!(r.debt, Points::ZERO),
            // Debt taken now stays within the limit now in force; debt taken under an
            // earlier, larger limit may exceed a lowered one, and then none is added.
            RefundPolicy::AllowDebt { limit } if r.debt.is_positive() => {
                assert!(self.customer.debt <= limit, "debt past the limit: {e:#?}")
            }
            RefundPolicy::AllowDebt { .. } => {}
        }
        let own_lot = {
            let purchase = self.purchase_mut(e.purchase_id);
            purchase.refunded += e.amount.value();
            purchase.due += r.due.value();
            purchase.waived += r.waived_expired.value();
            assert!(
                purchase.waived <= purchase.expired,
                "waived what never expired"
            );
            assert!(purchase.refunded <= purchase.amount, "over-refunded");
            let floor = i128::from(purchase.points) * i128::from(purchase.refunded)
                / i128::from(purchase.amount);
            assert_eq!(i128::from(purchase.due), floor, "Σ due is the floor share");
            if purchase.refunded == purchase.amount {
                assert_eq!(
                    purchase.due, purchase.points,
                    "a full refund gives all back"
                );
            }
            purchase.lot_id
        };
        self.stats.count_reversal(e, own_lot);
    }

    fn purchase_mut(&mut self, purchase_id: PurchaseId) -> &mut TrackedPurchase {
        self.purchases
            .iter_mut()
            .find(|p| p.purchase_id == purchase_id)
            .expect("a logged purchase")
    }

    fn hold_mut(&mut self, redemption_id: RedemptionId) -> &mut TrackedHold {
        self.holds
            .iter_mut()
            .find(|h| h.redemption_id == redemption_id)
            .expect("a hold that was placed")
    }

    /// The customer's units of a reward by the model: holds open or fulfilled.
    fn units_of(&self, reward_id: RewardId) -> u32 {
        let units = self
            .holds
            .iter()
            .filter(|h| h.reward_id == reward_id && h.status != HoldStatus::Released)
            .count();
        u32::try_from(units).expect("few holds")
    }

    /// The reward's limit, when the customer has reached it.
    fn limit_reached(&self, reward_id: RewardId) -> Option<u32> {
        self.limits
            .get(&reward_id)
            .copied()
            .filter(|limit| self.units_of(reward_id) >= *limit)
    }

    /// After every step, accepted or not.
    fn check_all(&self) {
        // The per-customer limit is never exceeded, and the ledger counts as the model does.
        for (reward_id, limit) in &self.limits {
            let units = self.units_of(*reward_id);
            assert!(
                units <= *limit,
                "{units} units of a reward limited to {limit}"
            );
            assert_eq!(self.customer.units_of(*reward_id), units);
        }
        check_invariants(
            &self.customer,
            self.clock,
            self.debt_ever_allowed,
            self.debt_limit_max,
        );
        // Events are the source of truth: a fresh fold gives the live states back.
        let tenant = self
            .tenant_events
            .iter()
            .fold(TenantState::default(), evolve);
        let customer = self
            .customer_events
            .iter()
            .fold(CustomerState::default(), evolve);
        assert_eq!(tenant, self.tenant, "tenant replay");
        assert_eq!(customer, self.customer, "customer replay");
        // The books' running liability is the open lots' worth, and the movements since the
        // start close on it.
        let worth = outstanding(&self.customer);
        assert_eq!(self.books.outstanding(), worth, "books against the lots");
        assert_eq!(self.books.movements().close(Worth::default()), worth);
        assert_eq!(
            worth.points,
            self.customer.balance.value()
                + self.customer.debt.value()
                + self.customer.pending.value(),
            "outstanding points = balance + debt + pending"
        );
    }

    /// A lot opens at the point value in force when it is decided.
    fn check_lot_value(&self, event: &Event) {
        let opened = match event {
            Event::PointsEarned(e) => Some(e.point_value),
            Event::ReferralBonusAwarded(e) => Some(e.point_value),
            Event::PointsAdjusted(e) => e.lot.as_ref().map(|lot| lot.point_value),
            _ => None,
        };
        if let Some(value) = opened {
            assert_eq!(value, self.settings().point_value, "{event:?}");
        }
    }

    /// Monthly statements over the whole run: each month opens on the last one's closing,
    /// opening + movements = closing, and the last month closes on the books.
    fn check_statements(&mut self) {
        let mut builder = StatementBuilder::new(chrono_tz::Africa::Lagos);
        for (stream, event, at) in &self.ledger {
            builder.apply(*stream, event, *at);
        }
        let (months, books) = builder.finish(self.clock);
        let mut opening = Worth::default();
        for month in &months {
            assert_eq!(month.opening, opening, "{}", month.month);
            let mut closing = month.opening;
            closing += month.issued;
            closing += month.adjusted;
            let closing = closing - month.redeemed - month.expired - month.reversed;
            assert_eq!(month.closing, closing, "{}", month.month);
            opening = month.closing;
        }
        assert_eq!(opening, books.outstanding());
        assert_eq!(books.movements(), self.books.movements());
        self.stats.months += months.len() as u64;
        self.stats.valued_months += months.iter().filter(|m| m.closing.minor > 0).count() as u64;
    }

    // --- the commands ------------------------------------------------------------------

    fn enrol(&mut self) {
        let command = Command::EnrolCustomer {
            customer_id: self.customer_id,
            phone_index: PhoneIndex([7; 32]),
            personal_data: SealedPersonalData {
                nonce: vec![0; 12],
                ciphertext: b"+2348012345678".to_vec(),
            },
            data_key: WrappedDataKey {
                master_key_id: "test".into(),
                bytes: vec![7; 60],
            },
            birthday: None,
            referral_code: ledger_core::ReferralCode::from_random_bytes([0; 5]),
            referred_by: None,
            at: self.clock,
        };
        let expect = if self.enrolled {
            Expect::Reject(Rejection::CustomerAlreadyEnrolled)
        } else {
            Expect::Accept
        };
        self.execute(command, expect);
    }

    fn erase(&mut self) {
        let command = Command::EraseCustomer {
            customer_id: self.customer_id,
            at: self.clock,
        };
        let expect = self.expect_who(true, || Expect::Accept);
        self.execute(command, expect);
    }

    fn purchase(&mut self, spec: &PurchaseSpec) {
        let at = self.clock;
        let occurred_at = match spec.when {
            When::Now => None,
            When::PastSeconds(s) => Some(at - Duration::seconds(s)),
            When::BeyondSkewSeconds(s) => Some(at + Duration::seconds(s)),
        };
        let command = Command::LogPurchase {
            customer_id: self.customer_id,
            purchase_id: PurchaseId::from_uuid(self.fresh_uuid()),
            lot_id: LotId::from_uuid(self.fresh_uuid()),
            amount: MinorUnits::new(spec.amount),
            line_items: Vec::new(),
            reference: None,
            occurred_at,
            at,
        };
        let expect = self.expect_who(true, || {
            if spec.amount <= 0 {
                Expect::Reject(Rejection::AmountNotPositive)
            } else if matches!(spec.when, When::BeyondSkewSeconds(_)) {
                Expect::Reject(Rejection::PurchaseInFuture)
            } else {
                Expect::Accept
            }
        });
        let debt_before = self.customer.debt;
        let pending_days = self.settings().pending_days;
        let Some(events) = self.execute(command, expect) else {
            return;
        };
        // With a return window the new lot is pending and pays no debt yet; without one
        // it pays the debt first, unless it is born past its date (back-dated).
        let earned = events.iter().find_map(|e| match e {
            Event::PointsEarned(earned) => Some(earned),
            _ => None,
        });
        let pending = events.iter().any(|e| matches!(e, Event::PointsPending(_)));
        assert_eq!(pending, earned.is_some() && pending_days > 0, "{events:#?}");
        let spendable = earned.is_some_and(|e| e.expires_at > at);
        if spendable && pending_days == 0 && debt_before.is_positive() {
            assert!(
                self.customer.debt < debt_before,
                "debt not settled: {events:#?}"
            );
        }
    }

    fn activate(&mut self) {
        let at = self.clock;
        let command = Command::ActivatePendingPoints {
            customer_id: self.customer_id,
            at,
        };
        let expect = self.expect_who(false, || Expect::Accept);
        if self.execute(command.clone(), expect).is_none() {
            return;
        }
        assert!(
            self.customer
                .lots
                .iter()
                .all(|lot| lot.pending_until.is_none_or(|until| until > at)),
            "a due pending lot survived activation"
        );
        assert_eq!(self.decide(&command), Ok(Vec::new()), "idempotent");
    }

    fn refund(&mut self, pick: Pick, amount: &RefundAmount) {
        let target = match pick {
            Pick::Existing(n) if !self.purchases.is_empty() => {
                Some(self.purchases[n % self.purchases.len()].clone())
            }
            _ => None,
        };
        let purchase_id = target.as_ref().map_or_else(
            || PurchaseId::from_uuid(self.fresh_uuid()),
            |p| p.purchase_id,
        );
        let rest = target.as_ref().map_or(0, |p| p.amount - p.refunded);
        let minor_units = match *amount {
            RefundAmount::Rest => rest.max(1),
            RefundAmount::Third => target.as_ref().map_or(1, |p| (p.amount / 3).max(1)),
            RefundAmount::ShareOfRest(permille) => (rest * i64::from(permille) / 1000).max(1),
            RefundAmount::MoreThanRest(more) => rest + more,
            RefundAmount::NotPositive(n) => n,
        };
        let command = Command::RefundPurchase {
            customer_id: self.customer_id,
            refund_id: RefundId::from_uuid(self.fresh_uuid()),
            purchase_id,
            amount: MinorUnits::new(minor_units),
            reference: Some("RF-1".into()),
            at: self.clock,
        };
        let expect = self.expect_who(false, || {
            if minor_units <= 0 {
                Expect::Reject(Rejection::AmountNotPositive)
            } else if target.is_none() {
                Expect::Reject(Rejection::PurchaseNotFound)
            } else if minor_units > rest {
                Expect::Reject(Rejection::RefundExceedsPurchase {
                    refundable: MinorUnits::new(rest),
                })
            } else {
                Expect::Accept
            }
        });
        let before = self.customer.clone();
        let policy = self.settings().refund_policy;
        let at = self.clock;
        let Some(events) = self.execute(command, expect) else {
            return;
        };
        let (Event::PurchaseRefunded(refunded), released) =
            events.split_last().expect("a refund emits events")
        else {
            panic!("a refund ends with its PurchaseRefunded: {events:#?}");
        };
        // Points held for open holds are the customer's: while free points fall short, the
        // refund cancels the holds that reserve points it can take (own lot's first, then
        // the oldest), one at a time, and only then goes into debt or clamps.
        let target = target.expect("accepted");
        let mut basis = before.clone();
        let mut expected = expected_reversal(&basis, &target, minor_units, at, policy);
        let mut expected_releases = Vec::new();
        for (redemption_id, points) in holds_a_refund_may_cancel(&before, target.lot_id, at) {
            if expected.debt.value() + expected.clamped.value() == 0 {
                break;
            }
            let released = before.redemptions[&redemption_id]
                .hold
                .as_ref()
                .expect("an open hold")
                .reserved
                .clone();
            let release = Event::HoldReleased(HoldReleased {
                redemption_id,
                points,
                released,
                reason: HoldReleaseReason::Cancelled,
                released_at: at,
            });
            basis = evolve(basis, &release);
            expected_releases.push(release);
            expected = expected_reversal(&basis, &target, minor_units, at, policy);
        }
        assert_eq!(released, &expected_releases[..], "holds a refund cancels");
        assert_eq!(refunded.reversal, expected, "the refund order");
        if !released.is_empty() {
            *self
                .stats
                .reversal_parts
                .entry("cancelled_holds")
                .or_default() += 1;
        }
    }

    fn available(&self) -> i64 {
        self.customer.available_at(self.clock).value()
    }

    fn insufficient(&self, requested: i64) -> Expect {
        Expect::Reject(Rejection::InsufficientPoints {
            available: Points::new(self.available().max(0)),
            requested: Points::new(requested),
        })
    }

    fn adjust(&mut self, spec: &AdjustSpec) {
        let available = self.available();
        let (points, reason) = match *spec {
            AdjustSpec::Add(points) => (points, "goodwill"),
            AdjustSpec::TakeShare(permille) => (
                -(available.max(0) * i64::from(permille) / 1000).max(1),
                "correction",
            ),
            AdjustSpec::TakeTooMuch(more) => (-(available.max(0) + more), "correction"),
            AdjustSpec::Zero => (0, "nothing"),
            AdjustSpec::BlankReason => (5, "  \t "),
            AdjustSpec::EmptyReason => (5, ""),
        };
        let command = Command::AdjustPoints {
            customer_id: self.customer_id,
            adjustment_id: AdjustmentId::from_uuid(self.fresh_uuid()),
            lot_id: LotId::from_uuid(self.fresh_uuid()),
            points: Points::new(points),
            reason: reason.into(),
            at: self.clock,
        };
        let expect = self.expect_who(true, || {
            if reason.trim().is_empty() {
                Expect::Reject(Rejection::InvalidReason)
            } else if points == 0 {
                Expect::Reject(Rejection::AdjustmentZero)
            } else if points < 0 && -points > available {
                self.insufficient(-points)
            } else {
                Expect::Accept
            }
        });
        self.execute(command, expect);
    }

    fn redeem_points(&mut self, share: &Share) {
        let available = self.available();
        let points = match *share {
            Share::Permille(permille) => (available.max(0) * i64::from(permille) / 1000).max(1),
            Share::Zero => 0,
        };
        let command = Command::RedeemPoints {
            customer_id: self.customer_id,
            redemption_id: RedemptionId::from_uuid(self.fresh_uuid()),
            points: Points::new(points),
            description: "airtime".into(),
            at: self.clock,
        };
        let expect = self.expect_who(true, || {
            if points <= 0 {
                Expect::Reject(Rejection::AmountNotPositive)
            } else if points > available {
                self.insufficient(points)
            } else {
                Expect::Accept
            }
        });
        self.execute(command, expect);
    }

    fn create_reward(&mut self, name: &NameSpec, cost: i64) {
        let name = match name {
            NameSpec::Valid => "Jollof rice".to_owned(),
            NameSpec::Blank => "   ".to_owned(),
            NameSpec::TooLong => "x".repeat(61),
        };
        let command = Command::CreateReward {
            reward_id: RewardId::from_uuid(self.fresh_uuid()),
            name: name.clone(),
            points_cost: Points::new(cost),
            // Rewards of odd cost have a per-customer limit of 1 to 3.
            terms: ledger_core::events::RewardTerms {
                per_customer_limit: (cost % 2 == 1)
                    .then(|| u32::try_from(cost % 3).unwrap_or(0) + 1),
                ..Default::default()
            },
            at: self.clock,
        };
        let expect = if name.trim().is_empty() || name.chars().count() > 60 {
            Expect::Reject(Rejection::InvalidRewardName)
        } else if cost <= 0 {
            Expect::Reject(Rejection::AmountNotPositive)
        } else {
            Expect::Accept
        };
        self.execute(command, expect);
    }

    fn redeem_reward(&mut self, pick: Pick) {
        let reward = match pick {
            Pick::Existing(n) if !self.rewards.is_empty() => {
                Some(self.rewards[n % self.rewards.len()])
            }
            _ => None,
        };
        let reward_id = reward.map_or_else(|| RewardId::from_uuid(self.fresh_uuid()), |r| r.0);
        let random = self.fresh_uuid();
        let bytes = random.as_bytes();
        let code = RedemptionCode::from_random_bytes([
            bytes[11], bytes[12], bytes[13], bytes[14], bytes[15],
        ]);
        let command = Command::RedeemReward {
            customer_id: self.customer_id,
            redemption_id: RedemptionId::from_uuid(self.fresh_uuid()),
            reward_id,
            code,
            at: self.clock,
        };
        let expect = self.expect_who(true, || match reward {
            None => Expect::Reject(Rejection::RewardNotFound),
            Some((id, _)) if self.limit_reached(id).is_some() => {
                let limit = self.limit_reached(id).expect("reached");
                Expect::Reject(Rejection::PerCustomerLimitReached { limit })
            }
            Some((_, cost)) if cost > self.available() => self.insufficient(cost),
            Some(_) => Expect::Accept,
        });
        let (balance, held) = (self.customer.balance, self.customer.held);
        let Some(events) = self.execute(command, expect) else {
            return;
        };
        // A hold takes nothing out of the balance (bar the expiries decided with it): it
        // only makes its cost unavailable.
        let expired: i64 = events.iter().map(|e| e.points_delta().value()).sum();
        assert_eq!(self.customer.balance.value(), balance.value() + expired);
        assert_eq!(
            self.customer.held.value(),
            held.value() + reward.expect("accepted").1
        );
    }

    fn picked_hold(&mut self, pick: Pick) -> (RedemptionId, Option<TrackedHold>) {
        let open: Vec<&TrackedHold> = self
            .holds
            .iter()
            .filter(|h| h.status == HoldStatus::Open)
            .collect();
        match pick {
            Pick::Open(n) if !open.is_empty() => {
                let hold = open[n % open.len()].clone();
                (hold.redemption_id, Some(hold))
            }
            Pick::Existing(n) | Pick::Open(n) if !self.holds.is_empty() => {
                let hold = self.holds[n % self.holds.len()].clone();
                (hold.redemption_id, Some(hold))
            }
            _ => (RedemptionId::from_uuid(self.fresh_uuid()), None),
        }
    }

    fn fulfil(&mut self, pick: Pick) {
        let (redemption_id, hold) = self.picked_hold(pick);
        let at = self.clock;
        let command = Command::FulfilRedemption {
            customer_id: self.customer_id,
            redemption_id,
            at,
        };
        let expect = self.expect_who(false, || match &hold {
            None => Expect::Reject(Rejection::RedemptionNotFound),
            Some(h) if h.status == HoldStatus::Fulfilled => {
                Expect::Reject(Rejection::AlreadyFulfilled)
            }
            Some(h) if h.status == HoldStatus::Released => Expect::Reject(Rejection::HoldReleased),
            Some(h) if at >= h.expires_at => Expect::Reject(Rejection::HoldExpired),
            Some(_) => Expect::Accept,
        });
        self.execute(command, expect);
    }

    fn cancel_hold(&mut self, pick: Pick) {
        let (redemption_id, hold) = self.picked_hold(pick);
        let command = Command::CancelHold {
            customer_id: self.customer_id,
            redemption_id,
            at: self.clock,
        };
        let expect = self.expect_who(false, || match &hold {
            None => Expect::Reject(Rejection::RedemptionNotFound),
            Some(h) if h.status == HoldStatus::Fulfilled => {
                Expect::Reject(Rejection::AlreadyFulfilled)
            }
            Some(h) if h.status == HoldStatus::Released => Expect::Reject(Rejection::HoldReleased),
            Some(_) => Expect::Accept,
        });
        self.execute(command, expect);
    }

    fn publish_tiers(&mut self, spec: &TierSpec) {
        let mut threshold = 0;
        let mut tiers = vec![Tier {
            id: "t0".into(),
            name: "Base".into(),
            threshold: 0,
        }];
        for (index, step) in spec.steps.iter().enumerate() {
            threshold += if spec.spend { step * 1_000 } else { *step };
            tiers.push(Tier {
                id: format!("t{}", index + 1),
                name: format!("Tier {}", index + 1),
                threshold,
            });
        }
        if spec.break_order {
            tiers[1].threshold = 0;
        }
        let scheme = TierScheme {
            basis: if spec.spend {
                TierBasis::Spend
            } else {
                TierBasis::PointsEarned
            },
            window: spec.window_days.map_or(TierWindow::CalendarYear, |days| {
                TierWindow::RollingDays { days }
            }),
            grace_days: spec.grace_days,
            tiers,
        };
        let expect = if spec.break_order {
            Expect::Reject(Rejection::InvalidTierScheme(
                InvalidTierScheme::ThresholdsNotAscending("t1".into()),
            ))
        } else {
            Expect::Accept
        };
        let command = Command::PublishTierScheme {
            scheme,
            at: self.clock,
        };
        self.execute(command, expect);
    }

    fn review_tier(&mut self) {
        let at = self.clock;
        let command = Command::ReviewTier {
            customer_id: self.customer_id,
            at,
        };
        let expect = self.expect_who(false, || Expect::Accept);
        if self.execute(command.clone(), expect).is_none() {
            return;
        }
        assert_eq!(
            self.decide(&command),
            Ok(Vec::new()),
            "a review is idempotent"
        );
        let customer = &self.customer;
        if let (Some(review_at), Some(scheme)) = (
            customer.tier_review_at,
            self.tenant
                .profile
                .as_ref()
                .and_then(|p| p.tier_scheme.as_ref()),
        ) {
            let grace = Duration::days(i64::from(scheme.grace_days));
            assert!(review_at + grace > at, "a due review survived the review");
        }
    }

    fn expire_holds(&mut self) {
        let at = self.clock;
        let command = Command::ExpireHolds {
            customer_id: self.customer_id,
            at,
        };
        let expect = self.expect_who(false, || Expect::Accept);
        if self.execute(command.clone(), expect).is_none() {
            return;
        }
        assert!(
            self.holds
                .iter()
                .all(|h| h.status != HoldStatus::Open || h.expires_at > at),
            "an open hold past its window survived the hold expiry run"
        );
        assert_eq!(self.decide(&command), Ok(Vec::new()), "idempotent");
    }

    fn expire_points(&mut self) {
        let at = self.clock;
        let command = Command::ExpirePoints {
            customer_id: self.customer_id,
            at,
        };
        let expect = self.expect_who(false, || Expect::Accept);
        if self.execute(command.clone(), expect).is_none() {
            return;
        }
        assert!(
            self.customer
                .lots
                .iter()
                .all(|lot| lot.is_pending() || lot.expires_at > at || lot.free() == Points::ZERO),
            "free points of a due lot survived the expiry run"
        );
        assert_eq!(self.decide(&command), Ok(Vec::new()), "idempotent");
    }

    fn change_settings(&mut self, spec: &SettingsSpec) {
        let command = Command::ChangeProgrammeSettings {
            settings: spec.settings(self.expiry_days),
            at: self.clock,
        };
        let expect = if spec.fault.is_some() {
            Expect::RejectSettings
        } else {
            Expect::Accept
        };
        self.execute(command, expect);
    }
}

// ---------------------------------------------------------------------------------------
// Checks on the ledger's own state and events
// ---------------------------------------------------------------------------------------

/// The identities, in the balance vocabulary of `CustomerState`.
fn check_invariants(
    customer: &CustomerState,
    now: DateTime<Utc>,
    debt_ever_allowed: bool,
    debt_limit_max: i64,
) {
    let sum = |pending: bool| -> i128 {
        customer
            .lots
            .iter()
            .filter(|lot| lot.is_pending() == pending)
            .map(|lot| i128::from(lot.remaining.value()))
            .sum()
    };
    let v = |p: Points| i128::from(p.value());
    let balance = v(customer.balance);
    let debt = v(customer.debt);
    assert_eq!(
        balance,
        sum(false) - debt,
        "balance vs lots − debt: {customer:#?}"
    );
    assert_eq!(
        v(customer.pending),
        sum(true),
        "pending vs lots: {customer:#?}"
    );

    let reserved: i128 = customer.lots.iter().map(|lot| v(lot.reserved)).sum();
    let open_holds: i128 = customer.open_holds().map(|r| v(r.points)).sum();
    assert_eq!(
        v(customer.held),
        reserved,
        "held vs Σ reserved: {customer:#?}"
    );
    assert_eq!(
        reserved, open_holds,
        "Σ reserved vs open holds: {customer:#?}"
    );
    for lot in &customer.lots {
        assert!(lot.remaining.is_positive(), "empty lot kept: {lot:#?}");
        assert!(lot.remaining <= lot.points, "lot overfull: {lot:#?}");
        assert!(
            (0..=lot.remaining.value()).contains(&lot.reserved.value()),
            "reserved out of bounds: {lot:#?}"
        );
        assert!(
            !lot.is_pending() || lot.reserved == Points::ZERO,
            "pending points held: {lot:#?}"
        );
    }

    let by_counters = v(customer.earned)
        - v(customer.pending)
        - v(customer.redeemed)
        - v(customer.expired)
        - v(customer.reversed)
        + v(customer.adjusted);
    assert_eq!(balance, by_counters, "balance vs counters: {customer:#?}");

    let available = v(customer.available_at(now));
    let any_due = customer
        .lots
        .iter()
        .any(|lot| !lot.is_pending() && lot.expires_at <= now);
    if any_due {
        assert!(
            available <= balance - v(customer.held),
            "available: {customer:#?}"
        );
    } else {
        assert_eq!(
            available,
            balance - v(customer.held),
            "available: {customer:#?}"
        );
    }

    assert!(debt >= 0, "negative debt: {customer:#?}");
    assert!(debt <= i128::from(debt_limit_max), "debt past every limit");
    if !debt_ever_allowed {
        assert_eq!(debt, 0, "debt without a policy allowing it");
        assert!(balance >= 0, "negative balance: {customer:#?}");
    }
}

/// The reversal a refund of `amount` of `purchase` owes at `at`, worked out from the state
/// before it in the documented order: the floor of the cumulative share, less what earlier
/// refunds owed; then the purchase's own lot (its free points, pending or not), what of that
/// lot expired and was not yet forgiven, the other open lots soonest-expiring first (ties:
/// opened first), debt within the limit, and the rest clamped.
fn expected_reversal(
    before: &CustomerState,
    purchase: &TrackedPurchase,
    amount: i64,
    at: DateTime<Utc>,
    policy: RefundPolicy,
) -> Reversal {
    let cumulative = i128::from(purchase.points) * i128::from(purchase.refunded + amount)
        / i128::from(purchase.amount);
    let due = i64::try_from(cumulative).unwrap() - purchase.due;
    let mut still = due;
    let mut from_pending = 0;
    let mut from_lots = Vec::new();
    let own = purchase
        .lot_id
        .and_then(|id| before.lots.iter().find(|lot| lot.lot_id == id));
    if let Some(lot) = own {
        let taken = still.min(lot.free().value());
        if lot.is_pending() {
            from_pending = taken;
        } else if taken > 0 {
            from_lots.push(LotDebit {
                lot_id: lot.lot_id,
                points: Points::new(taken),
            });
        }
        still -= taken;
    }
    let waived_expired = still.min(purchase.expired - purchase.waived);
    still -= waived_expired;
    let mut others: Vec<&Lot> = before
        .lots
        .iter()
        .filter(|lot| {
            Some(lot.lot_id) != purchase.lot_id
                && !lot.is_pending()
                && lot.expires_at > at
                && lot.free().is_positive()
        })
        .collect();
    others.sort_by_key(|lot| lot.expires_at); // stable: ties keep the opening order
    for lot in others {
        if still == 0 {
            break;
        }
        let taken = still.min(lot.free().value());
        from_lots.push(LotDebit {
            lot_id: lot.lot_id,
            points: Points::new(taken),
        });
        still -= taken;
    }
    let debt = match policy {
        RefundPolicy::ClampAtZero => 0,
        RefundPolicy::AllowDebt { limit } => {
            still.min((limit.value() - before.debt.value()).max(0))
        }
    };
    Reversal {
        due: Points::new(due),
        from_pending: Points::new(from_pending),
        from_lots,
        waived_expired: Points::new(waived_expired),
        debt: Points::new(debt),
        clamped: Points::new(still - debt),
        policy,
    }
}

/// The open holds whose points a refund of the purchase with lot `own_lot` could take: those
/// with a reservation in the own lot (whatever its date) or in a lot open at `at`; the ones
/// reserving the own lot first, then by id (creation order).
fn holds_a_refund_may_cancel(
    customer: &CustomerState,
    own_lot: Option<LotId>,
    at: DateTime<Utc>,
) -> Vec<(RedemptionId, Points)> {
    let open_at = |lot_id: LotId| {
        customer
            .lots
            .iter()
            .any(|lot| lot.lot_id == lot_id && !lot.is_pending() && lot.expires_at > at)
    };
    let mut own_first = Vec::new();
    let mut others = Vec::new();
    for redemption in customer.open_holds() {
        let reserved = &redemption.hold.as_ref().expect("open hold").reserved;
        let entry = (redemption.redemption_id, redemption.points);
        if reserved.iter().any(|d| Some(d.lot_id) == own_lot) {
            own_first.push(entry);
        } else if reserved.iter().any(|d| open_at(d.lot_id)) {
            others.push(entry);
        }
    }
    own_first.extend(others);
    own_first
}

/// Every accepted event survives the wire format exactly, at its type's current version.
fn check_codec(event: &Event) {
    let encoded = encode(event).expect("every event encodes");
    assert_eq!(
        Some(encoded.type_version),
        current_version(encoded.event_type)
    );
    let decoded = decode(encoded.event_type, encoded.type_version, &encoded.payload)
        .expect("what was encoded decodes");
    assert_eq!(&decoded, event);
}

// ---------------------------------------------------------------------------------------
// The properties
// ---------------------------------------------------------------------------------------

/// Runs `cases` scenarios with the fixed seed and returns what they exercised.
fn run_property(strategy: impl Strategy<Value = Scenario>) -> Stats {
    let total = RefCell::new(Stats::default());
    let mut runner = TestRunner::new(config());
    let result = runner.run(&strategy, |scenario| {
        let harness = Harness::run(&scenario);
        total.borrow_mut().merge(&harness.stats);
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
    total.into_inner()
}

/// Every step of every random sequence keeps the identities, a refused command
/// changes nothing, holds resolve once, refunds add up, and replay and codec agree. Prints
/// what the run exercised and fails if some command kind was never accepted or never
/// refused, or a part of the refund order was never used.
#[test]
fn every_step_keeps_the_balance_vocabulary_consistent() {
    let stats = run_property(scenario());
    eprintln!(
        "programme properties: {} cases, {} steps (seed {:#x} unless PROPTEST_RNG_SEED)",
        stats.cases, stats.steps, SEED
    );
    eprintln!("{:<26} {:>9} {:>9}", "command", "accepted", "rejected");
    for (kind, (accepted, rejected)) in &stats.commands {
        eprintln!("{kind:<26} {accepted:>9} {rejected:>9}");
    }
    eprintln!("rejections: {:?}", stats.rejections);
    eprintln!("events: {:?}", stats.events);
    eprintln!(
        "refunds using each reversal part: {:?}",
        stats.reversal_parts
    );
    eprintln!(
        "monthly statements checked: {} ({} with a valued closing)",
        stats.months, stats.valued_months
    );
    assert!(stats.valued_months > 0, "no statement ever valued a lot");

    for kind in KINDS {
        let (accepted, rejected) = stats.commands.get(kind).copied().unwrap_or_default();
        assert!(accepted > 0, "{kind} never accepted");
        assert!(rejected > 0, "{kind} never rejected");
    }
    for part in [
        "cancelled_holds",
        "from_pending",
        "from_own_lot",
        "from_other_lots",
        "waived_expired",
        "debt",
        "clamped",
    ] {
        assert!(
            stats.reversal_parts.get(part).is_some_and(|&n| n > 0),
            "no refund used {part}"
        );
    }
    for event in [
        "DebtSettled",
        "PointsActivated",
        "HoldFulfilled",
        "HoldReleased",
    ] {
        assert!(stats.events.contains_key(event), "no {event}");
    }
}
