//! Birthdays and referrals, decided by the ledger: the birthday bonus on the customer's
//! local birthday once per local year (29 February on 28 February in other years), the
//! referral bonus on the referee's first purchase only, no self-referral, and the
//! referrer's award once per referee.
//!
//! Rules: `birthday` 200 points, `referral` 100 for the referee and 50 for the referrer.
//! No per-amount rule, so a purchase's points are exactly the bonuses.

use chrono::{DateTime, TimeZone, Utc};
use ledger_core::command::{PhoneIndex, WrappedDataKey};
use ledger_core::events::{ProgrammeSettings, SealedPersonalData};
use ledger_core::rules::{KindName, RuleKind};
use ledger_core::{
    decide, evolve, Birthday, Command, Currency, CustomerId, CustomerState, Event, LedgerState,
    LotId, MinorUnits, Points, PurchaseId, ReferralCode, Rejection, Rule, RuleSet, TenantId,
    TenantState,
};
use uuid::Uuid;

const REFERRER: u128 = 9;

struct Ledger {
    tenant: TenantState,
    customer: CustomerState,
    customer_id: CustomerId,
    counter: u128,
}

fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
}

fn enrol(customer_id: CustomerId, birthday: Option<&str>, referred_by: Option<u128>) -> Command {
    Command::EnrolCustomer {
        customer_id,
        phone_index: PhoneIndex([0; 32]),
        personal_data: SealedPersonalData {
            nonce: vec![0; 12],
            ciphertext: vec![1],
        },
        data_key: WrappedDataKey {
            master_key_id: "k".into(),
            bytes: vec![0],
        },
        birthday: birthday.map(|b| Birthday::parse(b).unwrap()),
        referral_code: ReferralCode::from_random_bytes([1, 2, 3, 4, 5]),
        referred_by: referred_by.map(|n| CustomerId::from_uuid(Uuid::from_u128(n))),
        at: at(2020, 1, 1, 0, 0),
    }
}

impl Ledger {
    /// A tenant in `time_zone` with the birthday and referral rules, and one customer.
    fn new(time_zone: &str, birthday: Option<&str>, referred_by: Option<u128>) -> Ledger {
        let start = at(2020, 1, 1, 0, 0);
        let mut ledger = Ledger {
            tenant: TenantState::default(),
            customer: CustomerState::default(),
            customer_id: CustomerId::from_uuid(Uuid::from_u128(1)),
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
        ledger.run(Command::PublishRuleSet {
            rules: vec![
                Rule::new(
                    "birthday",
                    RuleKind::Birthday {
                        bonus: Points::new(200),
                    },
                ),
                Rule::new(
                    "referral",
                    RuleKind::Referral {
                        referee_bonus: Points::new(100),
                        referrer_bonus: Points::new(50),
                    },
                ),
            ],
            at: start,
        });
        ledger.run(Command::ChangeProgrammeSettings {
            settings: ProgrammeSettings {
                time_zone: time_zone.into(),
                ..ProgrammeSettings::default()
            },
            at: start,
        });
        let customer_id = ledger.customer_id;
        ledger.run(enrol(customer_id, birthday, referred_by));
        ledger
    }

    fn id(&mut self) -> Uuid {
        self.counter += 1;
        Uuid::from_u128(self.counter)
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

    fn run(&mut self, command: Command) -> Vec<Event> {
        let events = self
            .decide(&command)
            .unwrap_or_else(|rejection| panic!("{command:?} refused: {rejection}"));
        for event in &events {
            self.tenant = evolve(std::mem::take(&mut self.tenant), event);
            self.customer = evolve(std::mem::take(&mut self.customer), event);
        }
        events
    }

    fn buy(&mut self, when: DateTime<Utc>) -> Vec<Event> {
        let purchase_id = PurchaseId::from_uuid(self.id());
        let lot_id = LotId::from_uuid(self.id());
        self.run(Command::LogPurchase {
            customer_id: self.customer_id,
            purchase_id,
            lot_id,
            amount: MinorUnits::new(1_000),
            line_items: Vec::new(),
            reference: None,
            occurred_at: Some(when),
            at: when,
        })
    }
}

/// Points of `kind` in the purchase's `PointsEarned`, 0 when there is none.
fn earned_by(events: &[Event], kind: KindName) -> i64 {
    events
        .iter()
        .filter_map(|e| match e {
            Event::PointsEarned(earned) => Some(earned),
            _ => None,
        })
        .flat_map(|earned| &earned.breakdown)
        .filter(|line| line.kind == kind)
        .map(|line| line.points.value())
        .sum()
}

#[test]
fn the_birthday_bonus_is_given_on_the_local_birthday_once_a_local_year() {
    type Case = (
        &'static str,
        &'static str,
        &'static str,
        Vec<(DateTime<Utc>, i64)>,
    );
    let cases: Vec<Case> = vec![
        (
            "Lagos, 23:30 UTC the day before is already the birthday",
            "Africa/Lagos",
            "06-15",
            vec![(at(2026, 6, 14, 23, 30), 200)],
        ),
        (
            "Lagos, 23:00 UTC on the birthday is the next local day",
            "Africa/Lagos",
            "06-15",
            vec![(at(2026, 6, 15, 23, 0), 0)],
        ),
        (
            "UTC, 23:30 the day before is not the birthday",
            "UTC",
            "06-15",
            vec![(at(2026, 6, 14, 23, 30), 0)],
        ),
        (
            "once per local year: the second purchase that day earns nothing",
            "Africa/Lagos",
            "06-15",
            vec![(at(2026, 6, 15, 9, 0), 200), (at(2026, 6, 15, 18, 0), 0)],
        ),
        (
            "and again the next year",
            "Africa/Lagos",
            "06-15",
            vec![(at(2026, 6, 15, 9, 0), 200), (at(2027, 6, 15, 9, 0), 200)],
        ),
        (
            "the local year turns at local midnight (31 Dec 23:30 UTC is 1 Jan in Lagos)",
            "Africa/Lagos",
            "01-01",
            vec![(at(2026, 12, 31, 23, 30), 200), (at(2027, 1, 1, 12, 0), 0)],
        ),
        (
            "29 February: on 28 February in a year without one",
            "Africa/Lagos",
            "02-29",
            vec![(at(2027, 2, 28, 10, 0), 200), (at(2027, 3, 1, 10, 0), 0)],
        ),
        (
            "29 February: on the day itself in a leap year, not on the 28th",
            "Africa/Lagos",
            "02-29",
            vec![(at(2028, 2, 28, 10, 0), 0), (at(2028, 2, 29, 10, 0), 200)],
        ),
    ];
    for (name, time_zone, birthday, purchases) in cases {
        let mut ledger = Ledger::new(time_zone, Some(birthday), None);
        for (when, expected) in purchases {
            let events = ledger.buy(when);
            assert_eq!(
                earned_by(&events, KindName::Birthday),
                expected,
                "{name}: purchase at {when}"
            );
        }
    }
}

#[test]
fn a_birthday_can_be_set_changed_and_cleared_and_is_forgotten_on_erasure() {
    let mut ledger = Ledger::new("Africa/Lagos", None, None);
    assert_eq!(
        earned_by(&ledger.buy(at(2026, 3, 3, 10, 0)), KindName::Birthday),
        0
    );
    let customer_id = ledger.customer_id;
    ledger.run(Command::SetBirthday {
        customer_id,
        birthday: Some(Birthday::parse("03-04").unwrap()),
        at: at(2026, 3, 3, 11, 0),
    });
    assert_eq!(
        earned_by(&ledger.buy(at(2026, 3, 4, 10, 0)), KindName::Birthday),
        200
    );
    ledger.run(Command::SetBirthday {
        customer_id,
        birthday: None,
        at: at(2026, 3, 5, 11, 0),
    });
    assert_eq!(ledger.customer.birthday, None);
    ledger.run(Command::SetBirthday {
        customer_id,
        birthday: Some(Birthday::parse("07-01").unwrap()),
        at: at(2026, 3, 5, 11, 0),
    });
    ledger.run(Command::EraseCustomer {
        customer_id,
        at: at(2026, 3, 6, 0, 0),
    });
    assert_eq!(ledger.customer.birthday, None);
    assert_eq!(
        ledger.decide(&Command::SetBirthday {
            customer_id,
            birthday: Some(Birthday::parse("07-01").unwrap()),
            at: at(2026, 3, 7, 0, 0),
        }),
        Err(Rejection::CustomerErased)
    );
}

#[test]
fn the_referee_is_rewarded_on_the_first_purchase_only() {
    let mut ledger = Ledger::new("Africa/Lagos", None, Some(REFERRER));
    assert_eq!(
        ledger.customer.referred_by,
        Some(CustomerId::from_uuid(Uuid::from_u128(REFERRER)))
    );
    let first = ledger.buy(at(2026, 5, 1, 10, 0));
    assert_eq!(earned_by(&first, KindName::Referral), 100);
    let qualified: Vec<_> = first
        .iter()
        .filter_map(|e| match e {
            Event::ReferralQualified(q) => Some(q),
            _ => None,
        })
        .collect();
    assert_eq!(qualified.len(), 1);
    assert_eq!(
        qualified[0].referrer,
        CustomerId::from_uuid(Uuid::from_u128(REFERRER))
    );
    assert_eq!(qualified[0].referrer_bonus, Points::new(50));

    let second = ledger.buy(at(2026, 5, 2, 10, 0));
    assert_eq!(earned_by(&second, KindName::Referral), 0);
    assert!(!second
        .iter()
        .any(|e| matches!(e, Event::ReferralQualified(_))));
}

#[test]
fn a_customer_not_referred_earns_no_referral_bonus() {
    let mut ledger = Ledger::new("Africa/Lagos", None, None);
    let first = ledger.buy(at(2026, 5, 1, 10, 0));
    assert_eq!(earned_by(&first, KindName::Referral), 0);
    assert!(!first
        .iter()
        .any(|e| matches!(e, Event::ReferralQualified(_))));
}

#[test]
fn a_customer_cannot_be_their_own_referrer() {
    let ledger = Ledger::new("Africa/Lagos", None, None);
    let newcomer = CustomerId::from_uuid(Uuid::from_u128(77));
    let fresh = Ledger {
        tenant: ledger.tenant.clone(),
        customer: CustomerState::default(),
        customer_id: newcomer,
        counter: 0,
    };
    assert_eq!(
        fresh.decide(&enrol(newcomer, None, Some(77))),
        Err(Rejection::SelfReferral)
    );
    assert!(fresh.decide(&enrol(newcomer, None, Some(78))).is_ok());
}

#[test]
fn the_referrer_award_is_given_once_per_referee() {
    let mut referrer = Ledger::new("Africa/Lagos", None, None);
    let referrer_id = referrer.customer_id;
    let award = |referee: u128, lot: u128| Command::AwardReferralBonus {
        customer_id: referrer_id,
        referee: CustomerId::from_uuid(Uuid::from_u128(referee)),
        points: Points::new(50),
        lot_id: LotId::from_uuid(Uuid::from_u128(lot)),
        at: at(2026, 5, 1, 12, 0),
    };
    let events = referrer.run(award(40, 500));
    assert!(matches!(
        events.as_slice(),
        [Event::ReferralBonusAwarded(a)] if a.points == Points::new(50)
    ));
    assert_eq!(referrer.customer.balance, Points::new(50));
    assert_eq!(referrer.customer.earned, Points::new(50));
    assert_eq!(referrer.customer.lots.len(), 1);
    // The same referee again (a redelivered ReferralQualified), even with a new lot id.
    assert_eq!(
        referrer.decide(&award(40, 501)),
        Err(Rejection::ReferralAlreadyAwarded)
    );
    // Another referee is another award.
    referrer.run(award(41, 502));
    assert_eq!(referrer.customer.balance, Points::new(100));
    // Never to oneself.
    assert_eq!(
        referrer.decide(&award(1, 503)),
        Err(Rejection::SelfReferral)
    );
}
