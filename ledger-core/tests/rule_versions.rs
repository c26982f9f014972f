//! `decide` earns a purchase under the rule set in force when it happened (its
//! `occurred_at`), judged in the tenant's local time (Africa/Lagos for now), and records
//! that set's version: a table of purchase times, one line each.

use chrono::{DateTime, Duration, TimeZone, Utc, Weekday};
use ledger_core::command::{PhoneIndex, WrappedDataKey};
use ledger_core::events::{PointsEarned, SealedPersonalData};
use ledger_core::rules::{AppliesTo, Rule, RuleKind, Window};
use ledger_core::{
    decide, evolve, Command, Currency, CustomerId, CustomerState, Event, LedgerState, LotId,
    MinorUnits, Points, PurchaseId, RuleSet, TenantId, TenantState,
};
use uuid::Uuid;

fn utc(d: u32, h: u32, min: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, d, h, min, 0).unwrap()
}

/// Registered 1 December 00:00 UTC with the starter set (1 point per 10,000).
fn registered_at() -> DateTime<Utc> {
    utc(1, 0, 0)
}

/// v2, published 3 December 12:00 UTC: 1 point per 100.
fn v2_at() -> DateTime<Utc> {
    utc(3, 12, 0)
}

/// v3, published 4 December 12:00 UTC: v2 doubled on Saturdays and Sundays (local time).
fn v3_at() -> DateTime<Utc> {
    utc(4, 12, 0)
}

fn per_100() -> Rule {
    Rule::new(
        "base",
        RuleKind::PerAmountSpent {
            amount_step: MinorUnits::new(100),
            points_per_step: Points::new(1),
            minimum_purchase: MinorUnits::ZERO,
        },
    )
}

fn weekend_double() -> Rule {
    Rule {
        when: Some(Window {
            weekdays: Some(vec![Weekday::Sat, Weekday::Sun]),
            ..Window::default()
        }),
        ..Rule::new(
            "weekend",
            RuleKind::Promotion {
                percent: 200,
                applies_to: AppliesTo::AllBaseRules,
            },
        )
    }
}

fn run(tenant: &mut TenantState, customer: &mut CustomerState, command: Command) -> Vec<Event> {
    let events = decide(
        LedgerState {
            tenant,
            customer,
            stock: &ledger_core::aggregate::NO_STOCK_USED,
        },
        &command,
    )
    .unwrap_or_else(|rejection| panic!("{command:?}: {rejection}"));
    for event in &events {
        *tenant = evolve(std::mem::take(tenant), event);
        *customer = evolve(std::mem::take(customer), event);
    }
    events
}

/// A tenant with three versions and one enrolled customer.
fn ledger() -> (TenantState, CustomerState) {
    let mut tenant = TenantState::default();
    let mut customer = CustomerState::default();
    let commands = [
        Command::RegisterTenant {
            tenant_id: TenantId::from_uuid(Uuid::from_u128(1)),
            name: "Mama Put".into(),
            currency: Currency::NGN,
            expiry_days: 180,
            rule_set: RuleSet::starter(),
            at: registered_at(),
        },
        Command::PublishRuleSet {
            rules: vec![per_100()],
            at: v2_at(),
        },
        Command::PublishRuleSet {
            rules: vec![per_100(), weekend_double()],
            at: v3_at(),
        },
        Command::EnrolCustomer {
            customer_id: CustomerId::from_uuid(Uuid::from_u128(2)),
            phone_index: PhoneIndex([1; 32]),
            personal_data: SealedPersonalData {
                nonce: vec![0; 12],
                ciphertext: vec![1],
            },
            data_key: WrappedDataKey {
                master_key_id: "test".into(),
                bytes: vec![0; 60],
            },
            birthday: None,
            referral_code: ledger_core::ReferralCode::from_random_bytes([0; 5]),
            referred_by: None,
            at: registered_at(),
        },
    ];
    for command in commands {
        run(&mut tenant, &mut customer, command);
    }
    (tenant, customer)
}

fn earned(events: &[Event]) -> &PointsEarned {
    events
        .iter()
        .find_map(|event| match event {
            Event::PointsEarned(earned) => Some(earned),
            _ => None,
        })
        .expect("points earned")
}

#[test]
fn a_purchase_earns_under_the_set_in_force_when_it_happened() {
    let second = Duration::seconds(1);
    // (what, occurred_at, version, points for 10,000 minor units)
    let table = [
        (
            "before the registration: the first set",
            registered_at() - second,
            1,
            1,
        ),
        ("the second before v2", v2_at() - second, 1, 1),
        ("the instant v2 is published", v2_at(), 2, 100),
        ("between v2 and v3", v3_at() - second, 2, 100),
        ("v3 on a Friday afternoon in Lagos", v3_at(), 3, 100),
        (
            "Friday 22:59 UTC is still Friday in Lagos",
            utc(4, 22, 59),
            3,
            100,
        ),
        (
            "Friday 23:30 UTC is Saturday 00:30 in Lagos",
            utc(4, 23, 30),
            3,
            200,
        ),
        (
            "Sunday 22:59 UTC is Sunday 23:59 in Lagos",
            utc(6, 22, 59),
            3,
            200,
        ),
        (
            "Sunday 23:00 UTC is Monday 00:00 in Lagos",
            utc(6, 23, 0),
            3,
            100,
        ),
    ];
    let (tenant, customer) = ledger();
    // Every purchase is decided now, at the end of the week, on the same states: only its
    // `occurred_at` differs.
    let now = utc(8, 12, 0);
    for (what, occurred_at, version, points) in table {
        let command = Command::LogPurchase {
            customer_id: CustomerId::from_uuid(Uuid::from_u128(2)),
            purchase_id: PurchaseId::from_uuid(Uuid::from_u128(10)),
            lot_id: LotId::from_uuid(Uuid::from_u128(11)),
            amount: MinorUnits::new(10_000),
            line_items: Vec::new(),
            reference: None,
            occurred_at: Some(occurred_at),
            at: now,
        };
        let events = decide(
            LedgerState {
                tenant: &tenant,
                customer: &customer,
                stock: &ledger_core::aggregate::NO_STOCK_USED,
            },
            &command,
        )
        .unwrap();
        let earned = earned(&events);
        assert_eq!(earned.rule_set_version, version, "{what}");
        assert_eq!(earned.points, Points::new(points), "{what}");
    }
    let profile = tenant.profile.as_ref().unwrap();
    assert_eq!(profile.rule_set.version(), 3);
    let versions: Vec<u32> = profile
        .rule_sets
        .iter()
        .map(|p| p.rule_set.version())
        .collect();
    assert_eq!(versions, vec![1, 2, 3]);
}
