//! Tier scenarios, one line each: purchases, refunds and reviews at given times, and the
//! tier the customer must hold after each step. They pin down the rules in
//! `ledger_core::tiers`: upgrade at once, downgrade only at a review (after grace), refunds
//! lowering the qualifying value but never the tier by themselves, calendar years turning
//! at Lagos midnight.
//!
//! Ladder (spend basis): member 0, silver 100,000, gold 500,000 minor units. One point per
//! 10,000 minor units.

use chrono::{DateTime, Duration, TimeZone, Utc};
use ledger_core::command::{PhoneIndex, WrappedDataKey};
use ledger_core::events::{SealedPersonalData, TierDirection};
use ledger_core::ids::RefundId;
use ledger_core::tiers::{Tier, TierBasis, TierScheme, TierWindow};
use ledger_core::{
    decide, evolve, Command, Currency, CustomerId, CustomerState, Event, LedgerState, LotId,
    MinorUnits, PurchaseId, Rejection, RuleSet, TenantId, TenantState,
};
use uuid::Uuid;

#[derive(Debug, Clone, Copy)]
enum Step {
    /// A purchase of this many minor units, `days` after the start (may be fractional via
    /// hours in `At`).
    Buy(i64),
    /// Refund this much of the purchase made at step index `usize`.
    Refund(usize, i64),
    Review,
}

struct Ledger {
    tenant: TenantState,
    customer: CustomerState,
    customer_id: CustomerId,
    purchases: Vec<PurchaseId>,
    counter: u128,
}

fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
}

fn ladder(window: TierWindow, grace_days: u32) -> TierScheme {
    let tier = |id: &str, threshold| Tier {
        id: id.into(),
        name: id.to_uppercase(),
        threshold,
    };
    TierScheme {
        basis: TierBasis::Spend,
        window,
        grace_days,
        tiers: vec![
            tier("member", 0),
            tier("silver", 100_000),
            tier("gold", 500_000),
        ],
    }
}

impl Ledger {
    fn new(scheme: TierScheme, start: DateTime<Utc>) -> Ledger {
        let mut ledger = Ledger {
            tenant: TenantState::default(),
            customer: CustomerState::default(),
            customer_id: CustomerId::from_uuid(Uuid::from_u128(1)),
            purchases: Vec::new(),
            counter: 100,
        };
        ledger.run(Command::RegisterTenant {
            tenant_id: TenantId::from_uuid(Uuid::from_u128(2)),
            name: "Shop".into(),
            currency: Currency::NGN,
            expiry_days: 3650,
            rule_set: RuleSet::starter(),
            at: start,
        });
        ledger.run(Command::PublishTierScheme { scheme, at: start });
        ledger.run(Command::EnrolCustomer {
            customer_id: ledger.customer_id,
            phone_index: PhoneIndex([0; 32]),
            personal_data: SealedPersonalData {
                nonce: vec![0; 12],
                ciphertext: vec![1],
            },
            data_key: WrappedDataKey {
                master_key_id: "k".into(),
                bytes: vec![0],
            },
            birthday: None,
            referral_code: ledger_core::ReferralCode::from_random_bytes([0; 5]),
            referred_by: None,
            at: start,
        });
        ledger
    }

    fn id(&mut self) -> Uuid {
        self.counter += 1;
        Uuid::from_u128(self.counter)
    }

    fn run(&mut self, command: Command) -> Vec<Event> {
        let events = decide(
            LedgerState {
                tenant: &self.tenant,
                customer: &self.customer,
                stock: &ledger_core::aggregate::NO_STOCK_USED,
            },
            &command,
        )
        .unwrap_or_else(|rejection| panic!("{command:?} refused: {rejection}"));
        for event in &events {
            self.tenant = evolve(std::mem::take(&mut self.tenant), event);
            self.customer = evolve(std::mem::take(&mut self.customer), event);
        }
        events
    }

    fn step(&mut self, step: Step, now: DateTime<Utc>) -> Vec<Event> {
        let customer_id = self.customer_id;
        match step {
            Step::Buy(amount) => {
                let purchase_id = PurchaseId::from_uuid(self.id());
                self.purchases.push(purchase_id);
                let lot_id = LotId::from_uuid(self.id());
                self.run(Command::LogPurchase {
                    customer_id,
                    purchase_id,
                    lot_id,
                    amount: MinorUnits::new(amount),
                    line_items: Vec::new(),
                    reference: None,
                    occurred_at: Some(now),
                    at: now,
                })
            }
            Step::Refund(purchase, amount) => {
                let refund_id = RefundId::from_uuid(self.id());
                self.run(Command::RefundPurchase {
                    customer_id,
                    refund_id,
                    purchase_id: self.purchases[purchase],
                    amount: MinorUnits::new(amount),
                    reference: None,
                    at: now,
                })
            }
            Step::Review => self.run(Command::ReviewTier {
                customer_id,
                at: now,
            }),
        }
    }
}

fn tier_events(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::TierChanged(c) => Some(format!(
                "{}:{}",
                match c.direction {
                    TierDirection::Upgrade => "up",
                    TierDirection::Downgrade => "down",
                },
                c.to
            )),
            Event::TierRetained(r) => Some(format!("kept:{}", r.tier)),
            _ => None,
        })
        .collect()
}

/// (name, window, grace, steps as (time, step, expected tier events, tier after)).
type Scenario = (
    &'static str,
    TierWindow,
    u32,
    Vec<(
        DateTime<Utc>,
        Step,
        &'static [&'static str],
        Option<&'static str>,
    )>,
);

#[test]
fn tier_scenarios() {
    let year = TierWindow::CalendarYear;
    let rolling = TierWindow::RollingDays { days: 90 };
    let scenarios: Vec<Scenario> = vec![
        (
            "below the first threshold nothing happens",
            year,
            0,
            vec![(at(2026, 3, 1, 12, 0), Step::Buy(99_999), &[], None)],
        ),
        (
            "the exact threshold upgrades at once",
            year,
            0,
            vec![(
                at(2026, 3, 1, 12, 0),
                Step::Buy(100_000),
                &["up:silver"],
                Some("silver"),
            )],
        ),
        (
            "purchases add up within the window; one purchase may skip a tier",
            year,
            0,
            vec![
                (at(2026, 3, 1, 12, 0), Step::Buy(60_000), &[], None),
                (
                    at(2026, 4, 1, 12, 0),
                    Step::Buy(40_000),
                    &["up:silver"],
                    Some("silver"),
                ),
                (
                    at(2026, 5, 1, 12, 0),
                    Step::Buy(400_000),
                    &["up:gold"],
                    Some("gold"),
                ),
            ],
        ),
        (
            "a refund lowers the value but never the tier before its review",
            year,
            0,
            vec![
                (
                    at(2026, 3, 1, 12, 0),
                    Step::Buy(150_000),
                    &["up:silver"],
                    Some("silver"),
                ),
                (
                    at(2026, 3, 2, 12, 0),
                    Step::Refund(0, 100_000),
                    &[],
                    Some("silver"),
                ),
                (at(2026, 12, 31, 22, 59), Step::Review, &[], Some("silver")),
                // The year ends at Lagos midnight (23:00 UTC): the window (50,000) falls short.
                (
                    at(2026, 12, 31, 23, 0),
                    Step::Review,
                    &["down:member"],
                    Some("member"),
                ),
                (at(2027, 6, 1, 0, 0), Step::Review, &[], Some("member")),
            ],
        ),
        (
            "a qualified customer keeps the tier for another year",
            year,
            0,
            vec![
                (
                    at(2026, 6, 1, 12, 0),
                    Step::Buy(600_000),
                    &["up:gold"],
                    Some("gold"),
                ),
                (
                    at(2027, 1, 2, 0, 0),
                    Step::Review,
                    &["kept:gold"],
                    Some("gold"),
                ),
                (at(2027, 1, 3, 0, 0), Step::Review, &[], Some("gold")),
                // 2027 has no purchases: down at the end of 2027, one step to what 2027 earned.
                (
                    at(2028, 1, 1, 0, 0),
                    Step::Review,
                    &["down:member"],
                    Some("member"),
                ),
            ],
        ),
        (
            "grace delays the downgrade",
            rolling,
            30,
            vec![
                (
                    at(2026, 1, 1, 0, 0),
                    Step::Buy(120_000),
                    &["up:silver"],
                    Some("silver"),
                ),
                // The review of 1 April (90 days) waits for its grace: decided on 1 May, kept
                // (both ends of the window count: the purchase of 1 January is in it).
                (at(2026, 4, 15, 0, 0), Step::Review, &[], Some("silver")),
                (
                    at(2026, 5, 1, 0, 0),
                    Step::Review,
                    &["kept:silver"],
                    Some("silver"),
                ),
                // The next, of 30 June, finds nothing since 1 April: down after grace, 30 July.
                (at(2026, 7, 29, 0, 0), Step::Review, &[], Some("silver")),
                (
                    at(2026, 7, 30, 0, 0),
                    Step::Review,
                    &["down:member"],
                    Some("member"),
                ),
            ],
        ),
        (
            "a rolling window that still qualifies keeps the tier",
            rolling,
            0,
            vec![
                (
                    at(2026, 1, 1, 0, 0),
                    Step::Buy(120_000),
                    &["up:silver"],
                    Some("silver"),
                ),
                (
                    at(2026, 3, 1, 0, 0),
                    Step::Buy(100_000),
                    &[],
                    Some("silver"),
                ),
                (
                    at(2026, 4, 1, 0, 0),
                    Step::Review,
                    &["kept:silver"],
                    Some("silver"),
                ),
                (
                    at(2026, 6, 30, 0, 0),
                    Step::Review,
                    &["down:member"],
                    Some("member"),
                ),
            ],
        ),
        (
            "gold reviewed below gold but above silver steps down to silver",
            rolling,
            0,
            vec![
                (
                    at(2026, 1, 2, 0, 0),
                    Step::Buy(500_000),
                    &["up:gold"],
                    Some("gold"),
                ),
                (
                    at(2026, 3, 15, 0, 0),
                    Step::Refund(0, 380_000),
                    &[],
                    Some("gold"),
                ),
                // Reviewed 90 days after 2 January: the window [2 Jan, 2 Apr] holds 120,000.
                (at(2026, 4, 1, 0, 0), Step::Review, &[], Some("gold")),
                (
                    at(2026, 4, 2, 0, 0),
                    Step::Review,
                    &["down:silver"],
                    Some("silver"),
                ),
            ],
        ),
        (
            "missed reviews are caught up one period each",
            rolling,
            0,
            vec![
                (
                    at(2026, 1, 1, 0, 0),
                    Step::Buy(500_000),
                    &["up:gold"],
                    Some("gold"),
                ),
                (at(2026, 3, 1, 0, 0), Step::Buy(500_000), &[], Some("gold")),
                // Reviews on 1 Apr (kept: 1,000,000 in the window) and 30 Jun (nothing since
                // 1 Apr... the window 1 Apr – 30 Jun holds no purchase): down to member.
                (
                    at(2026, 7, 1, 0, 0),
                    Step::Review,
                    &["kept:gold", "down:member"],
                    Some("member"),
                ),
            ],
        ),
    ];
    let mut lines = 0;
    for (name, window, grace, steps) in scenarios {
        let start = steps[0].0 - Duration::days(1);
        let mut ledger = Ledger::new(ladder(window, grace), start);
        for (index, (now, step, expected, tier_after)) in steps.into_iter().enumerate() {
            let events = ledger.step(step, now);
            assert_eq!(tier_events(&events), expected, "{name}, step {index}");
            assert_eq!(
                ledger.customer.tier.as_deref(),
                tier_after,
                "{name}, step {index}"
            );
            lines += 1;
        }
    }
    eprintln!("{lines} tier scenario steps");
}

#[test]
fn a_bad_ladder_is_refused_and_changes_nothing() {
    let start = at(2026, 1, 1, 0, 0);
    let ledger = Ledger::new(ladder(TierWindow::CalendarYear, 0), start);
    let mut bad = ladder(TierWindow::CalendarYear, 0);
    bad.tiers[1].threshold = 0;
    let refused = decide(
        LedgerState {
            tenant: &ledger.tenant,
            customer: &ledger.customer,
            stock: &ledger_core::aggregate::NO_STOCK_USED,
        },
        &Command::PublishTierScheme {
            scheme: bad,
            at: start,
        },
    );
    assert!(matches!(refused, Err(Rejection::InvalidTierScheme(_))));
}

/// The ledger feeds the rules what it knows: a gold customer's purchase earns the gold
/// multiplier (the tier held before the purchase), and the daily cap counts what the
/// customer earned earlier that local day (Lagos), not only this purchase.
#[test]
fn the_ledger_feeds_the_tier_and_the_points_earned_today_to_the_rules() {
    use ledger_core::rules::{Rule, RuleKind};
    use ledger_core::Points;
    let start = at(2026, 3, 1, 8, 0);
    let mut ledger = Ledger::new(ladder(TierWindow::CalendarYear, 0), start);
    let per_amount = Rule::new(
        "base",
        RuleKind::PerAmountSpent {
            amount_step: MinorUnits::new(10_000),
            points_per_step: Points::new(1),
            minimum_purchase: MinorUnits::ZERO,
        },
    );
    let gold = Rule::new(
        "gold-x2",
        RuleKind::TierMultiplier {
            tier: "gold".into(),
            percent: 200,
        },
    );
    let cap = Rule::new(
        "day",
        RuleKind::DailyCap {
            max: Points::new(120),
        },
    );
    ledger.run(Command::PublishRuleSet {
        rules: vec![per_amount, gold, cap],
        at: start,
    });
    let earned = |events: &[Event]| -> i64 {
        events
            .iter()
            .filter_map(|e| match e {
                Event::PointsEarned(p) => Some(p.points.value()),
                _ => None,
            })
            .sum()
    };
    // 300,000 reaches silver (30 points); 600,000 in the year reaches gold, but that
    // purchase is still a silver one's: 30.
    let first = ledger.step(Step::Buy(300_000), at(2026, 3, 1, 9, 0));
    assert_eq!(
        (tier_events(&first), earned(&first)),
        (vec!["up:silver".to_owned()], 30)
    );
    let second = ledger.step(Step::Buy(300_000), at(2026, 3, 1, 10, 0));
    assert_eq!(tier_events(&second), ["up:gold"]);
    assert_eq!(
        earned(&second),
        30,
        "the upgrade applies from the next purchase"
    );
    // Gold now: 30 × 2 = 60; 60 earned earlier today + 60 = the cap of 120 exactly.
    assert_eq!(
        earned(&ledger.step(Step::Buy(300_000), at(2026, 3, 1, 12, 0))),
        60
    );
    // 22:59 UTC is still 1 March in Lagos: the day is full.
    assert_eq!(
        earned(&ledger.step(Step::Buy(300_000), at(2026, 3, 1, 22, 59))),
        0
    );
    // 23:00 UTC is 2 March in Lagos: a new day, gold doubles again.
    assert_eq!(
        earned(&ledger.step(Step::Buy(300_000), at(2026, 3, 1, 23, 0))),
        60
    );
}
