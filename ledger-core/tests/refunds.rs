//! Refund scenarios, one line each: the steps before, and the reversal each refund must
//! produce, part by part. They pin down the semantics stated on `Reversal` and
//! `aggregate::reversal_due`: the floor of the cumulative share; then the purchase's own lot
//! (pending or open), what of it expired (waived), other lots soonest-expiring first, debt
//! within the policy's limit, and the rest clamped; points held for a reward are taken too,
//! by cancelling the hold, before any debt or clamping.
//!
//! Every purchase is of 3000 minor units under a rule of one point per 300: 10 points.

use chrono::{DateTime, Duration, TimeZone, Utc};
use ledger_core::command::{PhoneIndex, WrappedDataKey};
use ledger_core::events::{
    DebtSettled, HoldReleaseReason, LotDebit, ProgrammeSettings, RefundPolicy, Reversal,
    SealedPersonalData,
};
use ledger_core::ids::RefundId;
use ledger_core::rules::RuleKind;
use ledger_core::{
    decide, evolve, Command, Currency, CustomerId, CustomerState, Event, LedgerState, LotId,
    MinorUnits, Points, PurchaseId, RedemptionCode, RedemptionId, RewardId, Rule, RuleSet,
    TenantId, TenantState,
};
use uuid::Uuid;

const PURCHASE_MINOR_UNITS: i64 = 3000;
const EXPIRY_DAYS: u32 = 30;
const REWARD: u128 = 3;

/// One step of a scenario. Purchases are named by a letter; their lot shares the name.
#[derive(Debug, Clone)]
enum Step {
    Buy(char),
    /// A purchase whose new points must pay `settled` of the debt at once.
    BuySettling(char, i64),
    Redeem(i64),
    /// A hold of the reward costing 10 points (redemption `n`).
    Hold(u128),
    Days(i64),
    ExpirePoints,
    Refund(char, i64, Expected),
}

/// The parts of the reversal one refund must produce.
#[derive(Debug, Clone)]
struct Expected {
    due: i64,
    from_pending: i64,
    from_lots: Vec<(char, i64)>,
    waived_expired: i64,
    debt: i64,
    clamped: i64,
    /// Reward holds the refund cancels first, to take the points they reserved.
    cancels: Vec<u128>,
}

fn due(due: i64) -> Expected {
    Expected {
        due,
        from_pending: 0,
        from_lots: Vec::new(),
        waived_expired: 0,
        debt: 0,
        clamped: 0,
        cancels: Vec::new(),
    }
}

impl Expected {
    fn pending(mut self, points: i64) -> Self {
        self.from_pending = points;
        self
    }
    fn lot(mut self, lot: char, points: i64) -> Self {
        self.from_lots.push((lot, points));
        self
    }
    fn waived(mut self, points: i64) -> Self {
        self.waived_expired = points;
        self
    }
    fn debt(mut self, points: i64) -> Self {
        self.debt = points;
        self
    }
    fn clamped(mut self, points: i64) -> Self {
        self.clamped = points;
        self
    }
    fn cancels(mut self, redemption: u128) -> Self {
        self.cancels.push(redemption);
        self
    }
}

fn clamp() -> RefundPolicy {
    RefundPolicy::ClampAtZero
}

fn debt_limit(limit: i64) -> RefundPolicy {
    RefundPolicy::AllowDebt {
        limit: Points::new(limit),
    }
}

/// `(name, refund policy, pending_days, steps)`.
type Scenario = (&'static str, RefundPolicy, u32, Vec<Step>);

fn scenarios() -> Vec<Scenario> {
    use Step::*;
    vec![
        (
            "full refund of an untouched lot",
            clamp(),
            0,
            vec![Buy('A'), Refund('A', 3000, due(10).lot('A', 10))],
        ),
        (
            "two partial refunds, 1/3 then 2/3 of 10 points: 3 then 7",
            clamp(),
            0,
            vec![
                Buy('A'),
                Refund('A', 1000, due(3).lot('A', 3)),
                Refund('A', 2000, due(7).lot('A', 7)),
            ],
        ),
        (
            "three refunds of a third each: 3, 3, 4 (the floor of the cumulative share)",
            clamp(),
            0,
            vec![
                Buy('A'),
                Refund('A', 1000, due(3).lot('A', 3)),
                Refund('A', 1000, due(3).lot('A', 3)),
                Refund('A', 1000, due(4).lot('A', 4)),
            ],
        ),
        (
            "refund of a pending lot",
            clamp(),
            7,
            vec![Buy('A'), Refund('A', 3000, due(10).pending(10))],
        ),
        (
            "refund after the points were spent, clamp at zero",
            clamp(),
            0,
            vec![Buy('A'), Redeem(10), Refund('A', 3000, due(10).clamped(10))],
        ),
        (
            "refund after the points were spent, debt allowed down to 5",
            debt_limit(5),
            0,
            vec![
                Buy('A'),
                Redeem(10),
                Refund('A', 3000, due(10).debt(5).clamped(5)),
            ],
        ),
        (
            "refund after the lot expired: waived",
            clamp(),
            0,
            vec![
                Buy('A'),
                Days(i64::from(EXPIRY_DAYS)),
                ExpirePoints,
                Refund('A', 3000, due(10).waived(10)),
            ],
        ),
        (
            "refund of a lot partly spent, then expired: the expired part waived, the spent clamped",
            clamp(),
            0,
            vec![
                Buy('A'),
                Redeem(4),
                Days(i64::from(EXPIRY_DAYS)),
                ExpirePoints,
                Refund('A', 3000, due(10).waived(6).clamped(4)),
            ],
        ),
        (
            "refund of a lot partly spent: its rest, then other lots soonest-expiring first",
            clamp(),
            0,
            vec![
                Buy('A'),
                Days(2),
                Buy('B'),
                Days(1),
                Buy('C'),
                // Spends 6 of A, the soonest to expire.
                Redeem(6),
                Refund('A', 3000, due(10).lot('A', 4).lot('B', 6)),
            ],
        ),
        (
            "refund of points held for a reward: the hold is cancelled, the points taken",
            clamp(),
            0,
            vec![
                Buy('A'),
                Hold(1),
                Refund('A', 3000, due(10).cancels(1).lot('A', 10)),
            ],
        ),
        (
            "refund of spent points while another purchase's points are held: that hold goes",
            debt_limit(5),
            0,
            vec![
                Buy('A'),
                Redeem(10),
                Buy('B'),
                Hold(1),
                Refund('A', 3000, due(10).cancels(1).lot('B', 10)),
            ],
        ),
        (
            "refund after a debt, then a purchase settles the debt",
            debt_limit(5),
            0,
            vec![
                Buy('A'),
                Redeem(10),
                Refund('A', 3000, due(10).debt(5).clamped(5)),
                BuySettling('B', 5),
            ],
        ),
    ]
}

fn lot_id(name: char) -> LotId {
    LotId::from_uuid(Uuid::from_u128(0x100 + u128::from(name)))
}

fn purchase_id(name: char) -> PurchaseId {
    PurchaseId::from_uuid(Uuid::from_u128(0x200 + u128::from(name)))
}

struct Ledger {
    tenant: TenantState,
    customer: CustomerState,
    customer_id: CustomerId,
    clock: DateTime<Utc>,
    next_id: u128,
}

impl Ledger {
    fn new(policy: RefundPolicy, pending_days: u32) -> Ledger {
        let mut ledger = Ledger {
            tenant: TenantState::default(),
            customer: CustomerState::default(),
            customer_id: CustomerId::from_uuid(Uuid::from_u128(2)),
            clock: Utc.with_ymd_and_hms(2026, 6, 1, 10, 0, 0).unwrap(),
            next_id: 0x1000,
        };
        let rule_set = RuleSet::new(
            1,
            vec![Rule::new(
                "per-amount",
                RuleKind::PerAmountSpent {
                    amount_step: MinorUnits::new(300),
                    points_per_step: Points::new(1),
                    minimum_purchase: MinorUnits::ZERO,
                },
            )],
        )
        .unwrap();
        ledger.run(Command::RegisterTenant {
            tenant_id: TenantId::from_uuid(Uuid::from_u128(1)),
            name: "Suya Spot".into(),
            currency: Currency::NGN,
            expiry_days: EXPIRY_DAYS,
            rule_set,
            at: ledger.clock,
        });
        ledger.run(Command::ChangeProgrammeSettings {
            settings: ProgrammeSettings {
                pending_days,
                refund_policy: policy,
                ..ProgrammeSettings::default()
            },
            at: ledger.clock,
        });
        ledger.run(Command::CreateReward {
            reward_id: RewardId::from_uuid(Uuid::from_u128(REWARD)),
            name: "Jollof".into(),
            points_cost: Points::new(10),
            terms: Default::default(),
            at: ledger.clock,
        });
        ledger.run(Command::EnrolCustomer {
            customer_id: ledger.customer_id,
            phone_index: PhoneIndex([1; 32]),
            personal_data: SealedPersonalData {
                nonce: vec![0; 12],
                ciphertext: vec![1; 14],
            },
            data_key: WrappedDataKey {
                master_key_id: "test".into(),
                bytes: vec![1; 60],
            },
            birthday: None,
            referral_code: ledger_core::ReferralCode::from_random_bytes([0; 5]),
            referred_by: None,
            at: ledger.clock,
        });
        ledger
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
        .unwrap_or_else(|rejection| panic!("{command:#?} refused: {rejection:?}"));
        for event in &events {
            self.tenant = evolve(std::mem::take(&mut self.tenant), event);
            self.customer = evolve(std::mem::take(&mut self.customer), event);
        }
        events
    }

    fn fresh_uuid(&mut self) -> Uuid {
        self.next_id += 1;
        Uuid::from_u128(self.next_id)
    }

    fn buy(&mut self, name: char) -> Vec<Event> {
        self.run(Command::LogPurchase {
            customer_id: self.customer_id,
            purchase_id: purchase_id(name),
            lot_id: lot_id(name),
            amount: MinorUnits::new(PURCHASE_MINOR_UNITS),
            line_items: Vec::new(),
            reference: None,
            occurred_at: None,
            at: self.clock,
        })
    }
}

fn expected_reversal(expected: &Expected, policy: RefundPolicy) -> Reversal {
    Reversal {
        due: Points::new(expected.due),
        from_pending: Points::new(expected.from_pending),
        from_lots: expected
            .from_lots
            .iter()
            .map(|&(lot, points)| LotDebit {
                lot_id: lot_id(lot),
                points: Points::new(points),
            })
            .collect(),
        waived_expired: Points::new(expected.waived_expired),
        debt: Points::new(expected.debt),
        clamped: Points::new(expected.clamped),
        policy,
    }
}

fn run_scenario((name, policy, pending_days, steps): &Scenario) {
    let mut ledger = Ledger::new(*policy, *pending_days);
    for step in steps {
        match step {
            Step::Buy(lot) => {
                ledger.buy(*lot);
            }
            Step::BuySettling(lot, settled) => {
                let events = ledger.buy(*lot);
                let settlement = events.iter().find_map(|e| match e {
                    Event::DebtSettled(settled) => Some(settled.clone()),
                    _ => None,
                });
                assert_eq!(
                    settlement,
                    Some(DebtSettled {
                        lot_id: lot_id(*lot),
                        points: Points::new(*settled),
                        settled_at: ledger.clock,
                    }),
                    "{name}: {events:#?}"
                );
                assert_eq!(ledger.customer.debt, Points::ZERO, "{name}: debt left");
            }
            Step::Redeem(points) => {
                let redemption_id = RedemptionId::from_uuid(ledger.fresh_uuid());
                ledger.run(Command::RedeemPoints {
                    customer_id: ledger.customer_id,
                    redemption_id,
                    points: Points::new(*points),
                    description: "airtime".into(),
                    at: ledger.clock,
                });
            }
            Step::Hold(redemption) => {
                ledger.run(Command::RedeemReward {
                    customer_id: ledger.customer_id,
                    redemption_id: RedemptionId::from_uuid(Uuid::from_u128(*redemption)),
                    reward_id: RewardId::from_uuid(Uuid::from_u128(REWARD)),
                    code: RedemptionCode::from_random_bytes([1, 2, 3, 4, 5]),
                    at: ledger.clock,
                });
            }
            Step::Days(days) => ledger.clock += Duration::days(*days),
            Step::ExpirePoints => {
                ledger.run(Command::ExpirePoints {
                    customer_id: ledger.customer_id,
                    at: ledger.clock,
                });
            }
            Step::Refund(purchase, amount, expected) => {
                let refund_id = RefundId::from_uuid(ledger.fresh_uuid());
                let events = ledger.run(Command::RefundPurchase {
                    customer_id: ledger.customer_id,
                    refund_id,
                    purchase_id: purchase_id(*purchase),
                    amount: MinorUnits::new(*amount),
                    reference: None,
                    at: ledger.clock,
                });
                let (Event::PurchaseRefunded(refunded), released) =
                    events.split_last().expect("events")
                else {
                    panic!("{name}: a PurchaseRefunded last expected: {events:#?}");
                };
                let cancelled: Vec<u128> = released
                    .iter()
                    .map(|event| match event {
                        Event::HoldReleased(released) => {
                            assert_eq!(released.reason, HoldReleaseReason::Cancelled);
                            released.redemption_id.as_uuid().as_u128()
                        }
                        other => panic!("{name}: only hold releases first: {other:#?}"),
                    })
                    .collect();
                assert_eq!(cancelled, expected.cancels, "{name}: cancelled holds");
                assert_eq!(
                    refunded.reversal,
                    expected_reversal(expected, *policy),
                    "{name}"
                );
            }
        }
        let c = &ledger.customer;
        let identity = c.earned.value()
            - c.pending.value()
            - c.redeemed.value()
            - c.expired.value()
            - c.reversed.value()
            + c.adjusted.value();
        assert_eq!(c.balance.value(), identity, "{name}: balance identity");
    }
}

#[test]
fn refund_scenarios_take_back_points_in_the_documented_order() {
    for scenario in scenarios() {
        run_scenario(&scenario);
    }
}
