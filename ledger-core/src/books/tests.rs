//! Hand-computed books: lots valued at different point values, every kind of movement, and
//! statements across months (one of them empty).

use super::*;
use crate::events::{
    AdjustmentLot, LotDebit, PointsAdjusted, PointsEarned, PointsExpired, PurchaseRefunded,
    RefundPolicy, Reversal, RewardRedeemed,
};
use crate::ids::{AdjustmentId, LotId, PurchaseId, RedemptionId, RefundId, TenantId};
use crate::{MinorUnits, Points};
use chrono::{DateTime, TimeZone, Utc};
use uuid::Uuid;

fn at(month: u32, day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, month, day, 12, 0, 0).unwrap()
}

fn lot(n: u128) -> LotId {
    LotId::from_uuid(Uuid::from_u128(n))
}

fn customer() -> StreamId {
    StreamId::Customer(CustomerId::from_uuid(Uuid::from_u128(7)))
}

fn earned(lot_n: u128, points: i64, value: Option<i64>, when: DateTime<Utc>) -> Event {
    Event::PointsEarned(PointsEarned {
        lot_id: lot(lot_n),
        purchase_id: PurchaseId::from_uuid(Uuid::from_u128(100 + lot_n)),
        points: Points::new(points),
        rule_set_version: 1,
        breakdown: vec![],
        earned_at: when,
        expires_at: when + chrono::Duration::days(180),
        point_value: value.map(MinorUnits::new),
    })
}

fn debit(lot_n: u128, points: i64) -> LotDebit {
    LotDebit {
        lot_id: lot(lot_n),
        points: Points::new(points),
    }
}

/// January: 100 points at 10 and 50 at 20 (a value change between). February: nothing.
/// March: 30 redeemed from the first lot, its other 70 expire, a refund takes 10 of the
/// second, and an adjustment adds 5 points while no value is set.
fn ledger() -> Vec<(Event, DateTime<Utc>)> {
    vec![
        (earned(1, 100, Some(10), at(1, 5)), at(1, 5)),
        (earned(2, 50, Some(20), at(1, 20)), at(1, 20)),
        (
            Event::RewardRedeemed(RewardRedeemed {
                redemption_id: RedemptionId::from_uuid(Uuid::from_u128(9)),
                points: Points::new(30),
                description: "coffee".into(),
                consumed: vec![debit(1, 30)],
                redeemed_at: at(3, 2),
                reward_id: None,
                code: None,
            }),
            at(3, 2),
        ),
        (
            Event::PointsExpired(PointsExpired {
                lot_id: lot(1),
                points: Points::new(70),
                expired_at: at(3, 3),
            }),
            at(3, 3),
        ),
        (
            Event::PurchaseRefunded(PurchaseRefunded {
                refund_id: RefundId::from_uuid(Uuid::from_u128(11)),
                purchase_id: PurchaseId::from_uuid(Uuid::from_u128(102)),
                amount: MinorUnits::new(1_000),
                reference: None,
                refunded_at: at(3, 4),
                reversal: Reversal {
                    due: Points::new(10),
                    from_pending: Points::ZERO,
                    from_lots: vec![debit(2, 10)],
                    waived_expired: Points::ZERO,
                    debt: Points::ZERO,
                    clamped: Points::ZERO,
                    policy: RefundPolicy::ClampAtZero,
                },
            }),
            at(3, 4),
        ),
        (
            Event::PointsAdjusted(PointsAdjusted {
                adjustment_id: AdjustmentId::from_uuid(Uuid::from_u128(12)),
                points: Points::new(5),
                reason: "goodwill".into(),
                lot: Some(AdjustmentLot {
                    lot_id: lot(3),
                    expires_at: at(9, 1),
                    point_value: None,
                }),
                consumed: vec![],
                adjusted_at: at(3, 5),
            }),
            at(3, 5),
        ),
    ]
}

fn worth(points: i64, minor: i128, unvalued_points: i64) -> Worth {
    Worth {
        points,
        minor,
        unvalued_points,
    }
}

#[test]
fn each_lot_is_worth_its_own_point_value_and_every_movement_is_counted() {
    let mut books = Books::new();
    for (event, _) in ledger() {
        books.apply(customer(), &event);
    }
    let movements = books.movements();
    assert_eq!(movements.issued, worth(150, 100 * 10 + 50 * 20, 0));
    assert_eq!(movements.redeemed, worth(30, 300, 0));
    assert_eq!(movements.expired, worth(70, 700, 0));
    assert_eq!(movements.reversed, worth(10, 200, 0));
    assert_eq!(movements.adjusted, worth(5, 0, 5));
    // 40 points left of the lot valued at 20, and 5 points with no value.
    assert_eq!(books.outstanding(), worth(45, 800, 5));
    assert_eq!(movements.close(Worth::default()), books.outstanding());
    let state = books
        .customer(CustomerId::from_uuid(Uuid::from_u128(7)))
        .unwrap();
    assert_eq!(outstanding(state), books.outstanding());
    assert_eq!(books.events(), 6);
}

#[test]
fn monthly_statements_open_on_the_last_close_and_include_empty_months() {
    let mut builder = StatementBuilder::new(chrono_tz::Africa::Lagos);
    for (event, recorded_at) in ledger() {
        builder.apply(customer(), &event, recorded_at);
    }
    let (months, books) = builder.finish(at(4, 15));
    let names: Vec<&str> = months.iter().map(|m| m.month.as_str()).collect();
    assert_eq!(names, ["2026-01", "2026-02", "2026-03", "2026-04"]);
    assert_eq!(months[0].opening, Worth::default());
    assert_eq!(months[0].issued, worth(150, 2_000, 0));
    assert_eq!(months[0].closing, worth(150, 2_000, 0));
    assert_eq!(months[1].opening, months[0].closing);
    assert_eq!(months[1].issued, Worth::default());
    assert_eq!(months[1].closing, months[0].closing);
    assert_eq!(months[2].redeemed, worth(30, 300, 0));
    assert_eq!(months[2].expired, worth(70, 700, 0));
    assert_eq!(months[2].reversed, worth(10, 200, 0));
    assert_eq!(months[2].adjusted, worth(5, 0, 5));
    assert_eq!(months[2].closing, worth(45, 800, 5));
    assert_eq!(months[3].opening, months[3].closing);
    assert_eq!(months[3].closing, books.outstanding());
}

#[test]
fn months_follow_the_tenant_time_zone() {
    // 23:30 UTC on 31 January is 00:30 on 1 February in Lagos (UTC+1).
    let late = Utc.with_ymd_and_hms(2026, 1, 31, 23, 30, 0).unwrap();
    let mut builder = StatementBuilder::new(chrono_tz::Africa::Lagos);
    builder.apply(customer(), &earned(1, 10, Some(1), late), late);
    let (months, _) = builder.finish(late);
    assert_eq!(months.len(), 1);
    assert_eq!(months[0].month, "2026-02");
    let mut utc = StatementBuilder::new(chrono_tz::UTC);
    utc.apply(customer(), &earned(1, 10, Some(1), late), late);
    assert_eq!(utc.finish(late).0[0].month, "2026-01");
}

#[test]
fn a_tenant_position_counts_customers_by_tier() {
    let mut books = Books::new();
    let tenant = TenantId::from_uuid(Uuid::from_u128(1));
    books.apply(
        StreamId::Tenant(tenant),
        &Event::ProgrammeSettingsChanged(crate::events::ProgrammeSettingsChanged {
            settings: crate::events::ProgrammeSettings::default(),
            changed_at: at(1, 1),
        }),
    );
    for n in 0..3u128 {
        let id = CustomerId::from_uuid(Uuid::from_u128(50 + n));
        books.apply(
            StreamId::Customer(id),
            &Event::CustomerEnrolled(crate::events::CustomerEnrolled {
                customer_id: id,
                personal_data: None,
                enrolled_at: at(1, 1),
                birthday: None,
                referral_code: None,
                referred_by: None,
            }),
        );
        books.apply(
            StreamId::Customer(id),
            &earned(n + 1, 10, Some(5), at(1, 2)),
        );
    }
    let position = books.position();
    assert_eq!(position.customers, 3);
    assert_eq!(position.balance, 30);
    assert_eq!(position.outstanding, worth(30, 150, 0));
    assert_eq!(position.tiers.get(""), Some(&3));
    assert_eq!(position.events, 7);
}
