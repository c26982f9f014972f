//! Table tests of the dry-run fold, with expectations computed by hand in each comment.

use super::*;
use crate::events::{PointsEarned, PurchaseLogged, TierChanged, TierDirection};
use crate::ids::LotId;
use crate::rules::{AppliesTo, Rule, RuleKind, Window};
use chrono::{TimeZone, Weekday};
use uuid::Uuid;

fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
}

fn customer(n: u128) -> CustomerId {
    CustomerId::from_uuid(Uuid::from_u128(n))
}

/// One recorded purchase: what was logged and, when it earned, its `PointsEarned`.
struct Past {
    customer: CustomerId,
    occurred_at: DateTime<Utc>,
    amount: i64,
    purchase_number: u32,
    earned: i64,
}

fn events_of(past: &Past, n: u128) -> Vec<Event> {
    let purchase_id = PurchaseId::from_uuid(Uuid::from_u128(1_000 + n));
    let mut events = vec![Event::PurchaseLogged(PurchaseLogged {
        purchase_id,
        amount: MinorUnits::new(past.amount),
        line_items: vec![],
        reference: None,
        occurred_at: past.occurred_at,
        purchase_number: past.purchase_number,
    })];
    if past.earned > 0 {
        events.push(Event::PointsEarned(PointsEarned {
            lot_id: LotId::from_uuid(Uuid::from_u128(2_000 + n)),
            purchase_id,
            points: Points::new(past.earned),
            rule_set_version: 1,
            breakdown: vec![],
            earned_at: past.occurred_at,
            expires_at: past.occurred_at + chrono::Duration::days(365),
            point_value: None,
        }));
    }
    events
}

fn tier_changed(to: &str, changed_at: DateTime<Utc>) -> Event {
    Event::TierChanged(TierChanged {
        from: None,
        to: to.to_owned(),
        to_name: to.to_uppercase(),
        direction: TierDirection::Upgrade,
        qualifying_value: 0,
        review_at: None,
        changed_at,
    })
}

/// 1 point per 1,000 minor units.
fn base() -> Rule {
    Rule::new(
        "base",
        RuleKind::PerAmountSpent {
            amount_step: MinorUnits::new(1_000),
            points_per_step: Points::new(1),
            minimum_purchase: MinorUnits::ZERO,
        },
    )
}

fn double_weekends() -> RuleSet {
    let weekend = Rule {
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
    };
    RuleSet::new(2, vec![base(), weekend]).unwrap()
}

fn run(
    set: &RuleSet,
    base_tier: Option<&str>,
    range: (DateTime<Utc>, DateTime<Utc>),
    events: &[(CustomerId, Event)],
    point_value: Option<i64>,
) -> DryRunReport {
    let lagos = chrono_tz::Africa::Lagos;
    let mut dry_run = DryRun::new(set, lagos, base_tier.map(str::to_owned), range.0, range.1);
    for (customer, event) in events {
        dry_run.apply(*customer, event).unwrap();
    }
    dry_run.finish(point_value.map(MinorUnits::new)).unwrap()
}

fn logged(pasts: &[Past]) -> Vec<(CustomerId, Event)> {
    pasts
        .iter()
        .enumerate()
        .flat_map(|(n, past)| {
            events_of(past, n as u128)
                .into_iter()
                .map(|event| (past.customer, event))
        })
        .collect()
}

fn by_rule(report: &DryRunReport) -> Vec<(&str, i64)> {
    report
        .points_by_rule
        .iter()
        .map(|line| (line.rule_id.as_str(), line.points.value()))
        .collect()
}

/// Friday 2026-11-27 23:30 UTC is Saturday 00:30 in Lagos (UTC+1): doubled. Sunday
/// 2026-11-29 23:30 UTC is Monday 00:30 in Lagos: not doubled. A purchase before `from`
/// is not evaluated. Each purchase of 10,000 earned 10 under the old set.
#[test]
fn double_points_weekends_are_judged_in_the_tenants_local_time() {
    let (a, b) = (customer(1), customer(2));
    let past = [
        // Before the range: skipped.
        Past {
            customer: a,
            occurred_at: at(2026, 11, 20, 12, 0),
            amount: 10_000,
            purchase_number: 1,
            earned: 10,
        },
        // Sat 00:30 Lagos: base 10, weekend +10 = 20 (actual 10).
        Past {
            customer: a,
            occurred_at: at(2026, 11, 27, 23, 30),
            amount: 10_000,
            purchase_number: 2,
            earned: 10,
        },
        // Mon 00:30 Lagos: base 10 (actual 10): customer b is not affected.
        Past {
            customer: b,
            occurred_at: at(2026, 11, 29, 23, 30),
            amount: 10_000,
            purchase_number: 1,
            earned: 10,
        },
    ];
    let range = (at(2026, 11, 23, 0, 0), at(2026, 12, 1, 0, 0));
    let report = run(&double_weekends(), None, range, &logged(&past), Some(50));
    assert_eq!(
        report,
        DryRunReport {
            purchases_evaluated: 2,
            customers_evaluated: 2,
            customers_affected: 1,
            points_actual: Points::new(20),
            points_proposed: Points::new(30),
            points_difference: Points::new(10),
            points_by_rule: vec![
                RuleTotal {
                    rule_id: "base".into(),
                    kind: KindName::PerAmountSpent,
                    points: Points::new(20)
                },
                RuleTotal {
                    rule_id: "weekend".into(),
                    kind: KindName::Promotion,
                    points: Points::new(10)
                },
            ],
            // 10 points × 50 minor units.
            liability_difference_minor: Some(MinorUnits::new(500)),
        }
    );
    // Without a stated point value there is no money figure, not an invented one.
    let report = run(&double_weekends(), None, range, &logged(&past), None);
    assert_eq!(report.liability_difference_minor, None);
    assert_eq!(report.points_difference, Points::new(10));
}

/// The range is half-open: a purchase at `to` is out, one at `from` is in.
#[test]
fn the_range_includes_from_and_excludes_to() {
    let a = customer(1);
    let past = [
        Past {
            customer: a,
            occurred_at: at(2026, 11, 2, 9, 0),
            amount: 3_000,
            purchase_number: 1,
            earned: 3,
        },
        Past {
            customer: a,
            occurred_at: at(2026, 11, 3, 9, 0),
            amount: 5_000,
            purchase_number: 2,
            earned: 5,
        },
    ];
    let range = (at(2026, 11, 2, 9, 0), at(2026, 11, 3, 9, 0));
    let report = run(&double_weekends(), None, range, &logged(&past), Some(1));
    // Mon 2 Nov: 3 points, as earned.
    assert_eq!(report.purchases_evaluated, 1);
    assert_eq!(report.points_proposed, Points::new(3));
    assert_eq!(report.customers_affected, 0);
    assert_eq!(report.liability_difference_minor, Some(MinorUnits::ZERO));
}

/// 100 a visit, at most 150 a local day. Lagos day Tue 3 Nov: 10:00 UTC earns 100, 22:30
/// UTC (23:30 local) is capped to 50; 23:30 UTC is Wed 00:30 local, a new day: 100. Each
/// actually earned 100, so 300 actual, 250 proposed, −50 × 2 = −100 minor units.
#[test]
fn a_daily_cap_counts_what_the_proposed_set_gave_earlier_that_local_day() {
    let a = customer(1);
    let set = RuleSet::new(
        3,
        vec![
            Rule::new(
                "visit",
                RuleKind::PerPurchase {
                    points: Points::new(100),
                },
            ),
            Rule::new(
                "day",
                RuleKind::DailyCap {
                    max: Points::new(150),
                },
            ),
        ],
    )
    .unwrap();
    let past = [
        Past {
            customer: a,
            occurred_at: at(2026, 11, 3, 10, 0),
            amount: 1_000,
            purchase_number: 4,
            earned: 100,
        },
        Past {
            customer: a,
            occurred_at: at(2026, 11, 3, 22, 30),
            amount: 1_000,
            purchase_number: 5,
            earned: 100,
        },
        Past {
            customer: a,
            occurred_at: at(2026, 11, 3, 23, 30),
            amount: 1_000,
            purchase_number: 6,
            earned: 100,
        },
    ];
    let range = (at(2026, 11, 1, 0, 0), at(2026, 12, 1, 0, 0));
    let report = run(&set, None, range, &logged(&past), Some(2));
    assert_eq!(report.purchases_evaluated, 3);
    assert_eq!(report.points_actual, Points::new(300));
    assert_eq!(report.points_proposed, Points::new(250));
    assert_eq!(report.points_difference, Points::new(-50));
    assert_eq!(by_rule(&report), vec![("visit", 300), ("day", -50)]);
    assert_eq!(report.customers_affected, 1);
    assert_eq!(
        report.liability_difference_minor,
        Some(MinorUnits::new(-100))
    );
}

/// The recorded purchase number decides first-purchase bonuses and milestones (no earlier
/// purchase is needed); a purchase that earned nothing counts 0 actual points.
#[test]
fn purchase_numbers_come_from_the_recorded_purchases() {
    let (a, b) = (customer(1), customer(2));
    let set = RuleSet::new(
        2,
        vec![
            Rule::new(
                "welcome",
                RuleKind::FirstPurchase {
                    bonus: Points::new(50),
                },
            ),
            Rule::new(
                "third",
                RuleKind::Milestone {
                    every_nth_purchase: 3,
                    bonus: Points::new(30),
                },
            ),
        ],
    )
    .unwrap();
    let past = [
        Past {
            customer: a,
            occurred_at: at(2026, 11, 2, 9, 0),
            amount: 500,
            purchase_number: 1,
            earned: 0,
        },
        Past {
            customer: b,
            occurred_at: at(2026, 11, 2, 9, 0),
            amount: 500,
            purchase_number: 3,
            earned: 0,
        },
        Past {
            customer: b,
            occurred_at: at(2026, 11, 4, 9, 0),
            amount: 500,
            purchase_number: 4,
            earned: 0,
        },
    ];
    let range = (at(2026, 11, 1, 0, 0), at(2026, 12, 1, 0, 0));
    let report = run(&set, None, range, &logged(&past), None);
    assert_eq!(by_rule(&report), vec![("welcome", 50), ("third", 30)]);
    assert_eq!(report.points_actual, Points::ZERO);
    assert_eq!(report.points_proposed, Points::new(80));
    assert_eq!(report.customers_evaluated, 2);
    assert_eq!(report.customers_affected, 2);
}

/// The tier before each purchase: the ladder's base until a `TierChanged`, then its tier.
/// 10 points a purchase, gold earns 150 %: 10, then 15 once gold.
#[test]
fn tier_multipliers_see_the_tier_the_customer_had_at_the_time() {
    let a = customer(1);
    let set = RuleSet::new(
        2,
        vec![
            base(),
            Rule::new(
                "gold",
                RuleKind::TierMultiplier {
                    tier: "gold".into(),
                    percent: 150,
                },
            ),
            Rule::new(
                "bronze",
                RuleKind::TierMultiplier {
                    tier: "bronze".into(),
                    percent: 120,
                },
            ),
        ],
    )
    .unwrap();
    let first = Past {
        customer: a,
        occurred_at: at(2026, 11, 2, 9, 0),
        amount: 10_000,
        purchase_number: 1,
        earned: 10,
    };
    let second = Past {
        customer: a,
        occurred_at: at(2026, 11, 3, 9, 0),
        amount: 10_000,
        purchase_number: 2,
        earned: 15,
    };
    let mut events = logged(&[first]);
    events.push((a, tier_changed("gold", at(2026, 11, 2, 9, 0))));
    events.extend(events_of(&second, 7).into_iter().map(|event| (a, event)));
    let range = (at(2026, 11, 1, 0, 0), at(2026, 12, 1, 0, 0));
    let report = run(&set, Some("bronze"), range, &events, None);
    // Bronze first (10 + 2), gold second (10 + 5).
    assert_eq!(
        by_rule(&report),
        vec![("base", 20), ("gold", 5), ("bronze", 2)]
    );
    assert_eq!(report.points_proposed, Points::new(27));
    assert_eq!(report.points_actual, Points::new(25));
}

/// Customers' events may interleave (the shell reads in tenant-sequence order): each
/// customer's fold is its own.
#[test]
fn interleaved_customers_fold_separately() {
    let (a, b) = (customer(1), customer(2));
    let set = RuleSet::new(
        2,
        vec![
            Rule::new(
                "visit",
                RuleKind::PerPurchase {
                    points: Points::new(100),
                },
            ),
            Rule::new(
                "day",
                RuleKind::DailyCap {
                    max: Points::new(100),
                },
            ),
        ],
    )
    .unwrap();
    let past = [
        Past {
            customer: a,
            occurred_at: at(2026, 11, 3, 9, 0),
            amount: 1_000,
            purchase_number: 1,
            earned: 100,
        },
        Past {
            customer: b,
            occurred_at: at(2026, 11, 3, 9, 5),
            amount: 1_000,
            purchase_number: 1,
            earned: 100,
        },
        Past {
            customer: a,
            occurred_at: at(2026, 11, 3, 9, 10),
            amount: 1_000,
            purchase_number: 2,
            earned: 100,
        },
    ];
    let range = (at(2026, 11, 1, 0, 0), at(2026, 12, 1, 0, 0));
    let report = run(&set, None, range, &logged(&past), None);
    // a: 100 + 0 (capped), b: 100.
    assert_eq!(report.points_proposed, Points::new(200));
    assert_eq!(by_rule(&report), vec![("visit", 300), ("day", -100)]);
    assert_eq!(report.customers_affected, 1);
}
