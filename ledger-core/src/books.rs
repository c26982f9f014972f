//! A tenant's books: the ledger folded in tenant-sequence order into every customer's state,
//! the points outstanding and what they are worth, and the movements that brought them
//! there. The offline verifier, the point-in-time answers and the monthly statements all
//! fold with this one type, so they cannot disagree.
//!
//! # What is counted
//!
//! - **Outstanding** points are the remainders of every open lot, pending lots included
//!   (the vendor owes them once the return window passes) and held points included (a hold
//!   is not a redemption until the hand-over). A customer's debt is not netted off: it is a
//!   claim on points not yet earned, shown apart.
//! - **Worth**: each lot carries the tenant's point value in force when it opened
//!   (`point_value`, minor units per point, never revalued). Points of lots opened with no
//!   value set are counted in `unvalued_points` and add nothing to `minor`.
//! - **Movements** are the changes of lot remainders, so `closing = opening + issued +
//!   adjusted − redeemed − expired − reversed` holds in points and in money by
//!   construction, for any span:
//!   - issued: lots opened by purchases (`PointsEarned`) and referral bonuses;
//!   - redeemed: lots debited by redemptions and hand-overs of holds;
//!   - expired (breakage): lots debited by expiry;
//!   - reversed: lots debited by refunds, and later points that paid a refund's debt;
//!   - adjusted (signed): lots opened or debited by manual adjustments.

use crate::aggregate::{Aggregate, CustomerState, TenantState};
use crate::events::{Event, LotDebit};
use crate::ids::{CustomerId, LotId, StreamId};
use crate::{MinorUnits, Points};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::ops::{AddAssign, Sub};

/// Points and what they are worth.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Worth {
    pub points: i64,
    /// Minor units of the tenant's currency, over the valued points only.
    pub minor: i128,
    /// Points of lots opened while the tenant had no point value set (worth unknown).
    pub unvalued_points: i64,
}

impl Worth {
    /// What `points` of a lot valued at `point_value` are worth.
    pub fn of_lot(points: i64, point_value: Option<i64>) -> Worth {
        match point_value {
            Some(value) => Worth {
                points,
                minor: i128::from(points) * i128::from(value),
                unvalued_points: 0,
            },
            None => Worth {
                points,
                minor: 0,
                unvalued_points: points,
            },
        }
    }

    fn negated(self) -> Worth {
        Worth::default() - self
    }
}

impl AddAssign for Worth {
    fn add_assign(&mut self, other: Worth) {
        self.points += other.points;
        self.minor += other.minor;
        self.unvalued_points += other.unvalued_points;
    }
}

impl Sub for Worth {
    type Output = Worth;
    fn sub(self, other: Worth) -> Worth {
        Worth {
            points: self.points - other.points,
            minor: self.minor - other.minor,
            unvalued_points: self.unvalued_points - other.unvalued_points,
        }
    }
}

/// What a customer's open lots are worth now.
pub fn outstanding(customer: &CustomerState) -> Worth {
    let mut worth = Worth::default();
    for lot in &customer.lots {
        worth += Worth::of_lot(
            lot.remaining.value(),
            lot.point_value.map(|value| value.value()),
        );
    }
    worth
}

/// The movements of outstanding points over a span, each as a positive amount except
/// `adjusted`, which is signed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Movements {
    pub issued: Worth,
    pub redeemed: Worth,
    pub expired: Worth,
    pub reversed: Worth,
    pub adjusted: Worth,
}

impl Movements {
    /// `opening` moved by these movements.
    pub fn close(&self, opening: Worth) -> Worth {
        let mut closing = opening;
        closing += self.issued;
        closing += self.adjusted;
        closing = closing - self.redeemed - self.expired - self.reversed;
        closing
    }

    fn record(&mut self, kind: MovementKind, change: Worth) {
        match kind {
            MovementKind::Issued => self.issued += change,
            MovementKind::Adjusted => self.adjusted += change,
            MovementKind::Redeemed => self.redeemed += change.negated(),
            MovementKind::Expired => self.expired += change.negated(),
            MovementKind::Reversed => self.reversed += change.negated(),
        }
    }
}

impl Sub for Movements {
    type Output = Movements;
    fn sub(self, other: Movements) -> Movements {
        Movements {
            issued: self.issued - other.issued,
            redeemed: self.redeemed - other.redeemed,
            expired: self.expired - other.expired,
            reversed: self.reversed - other.reversed,
            adjusted: self.adjusted - other.adjusted,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MovementKind {
    Issued,
    Redeemed,
    Expired,
    Reversed,
    Adjusted,
}

/// The movement `event` makes and what it does to the worth of `customer`'s lots, read from
/// the lots it names before it is applied: the lots it opens at their own value, the debits
/// at the values of the lots they come from. This is what `evolve` does to the lots'
/// remainders, without summing every open lot before and after (the verifier's hot path);
/// the property tests hold it equal to [`outstanding`] of the evolved state at every step.
/// Events that only reserve, mark pending or record facts are no movement (`None`).
fn movement(customer: &CustomerState, event: &Event) -> Option<(MovementKind, Worth)> {
    let value = |lot_id: LotId| {
        customer
            .lots
            .iter()
            .find(|lot| lot.lot_id == lot_id)
            .and_then(|lot| lot.point_value)
            .map(|value| value.value())
    };
    let taken = |debits: &[LotDebit]| {
        let mut worth = Worth::default();
        for debit in debits {
            worth += Worth::of_lot(debit.points.value(), value(debit.lot_id));
        }
        worth.negated()
    };
    let opened = |points: Points, point_value: Option<MinorUnits>| {
        Worth::of_lot(points.value(), point_value.map(|v| v.value()))
    };
    let debited =
        |lot_id: LotId, points: Points| Worth::of_lot(points.value(), value(lot_id)).negated();
    let (kind, change) = match event {
        Event::PointsEarned(e) => (MovementKind::Issued, opened(e.points, e.point_value)),
        Event::ReferralBonusAwarded(e) => (MovementKind::Issued, opened(e.points, e.point_value)),
        Event::PointsAdjusted(e) => {
            let mut change = taken(&e.consumed);
            if let Some(lot) = &e.lot {
                change += opened(e.points, lot.point_value);
            }
            (MovementKind::Adjusted, change)
        }
        Event::RewardRedeemed(e) => (MovementKind::Redeemed, taken(&e.consumed)),
        Event::HoldFulfilled(e) => (MovementKind::Redeemed, taken(&e.consumed)),
        Event::PointsExpired(e) => (MovementKind::Expired, debited(e.lot_id, e.points)),
        Event::DebtSettled(e) => (MovementKind::Reversed, debited(e.lot_id, e.points)),
        Event::PurchaseRefunded(e) => {
            let reversal = &e.reversal;
            let mut change = taken(&reversal.from_lots);
            // The points still pending come from the purchase's own lot (as `evolve` does).
            let own_lot = customer
                .purchase_records
                .get(&e.purchase_id)
                .and_then(|record| record.lot_id);
            if let (true, Some(lot_id)) = (reversal.from_pending.is_positive(), own_lot) {
                change += debited(lot_id, reversal.from_pending);
            }
            (MovementKind::Reversed, change)
        }
        Event::TenantRegistered(_)
        | Event::RuleSetPublished(_)
        | Event::CustomerEnrolled(_)
        | Event::CustomerErased(_)
        | Event::BirthdaySet(_)
        | Event::ReferralQualified(_)
        | Event::PurchaseLogged(_)
        | Event::PointsPending(_)
        | Event::PointsActivated(_)
        | Event::RewardHeld(_)
        | Event::HoldReleased(_)
        | Event::RedemptionFulfilled(_)
        | Event::RewardCreated(_)
        | Event::RewardUpdated(_)
        | Event::RewardRetired(_)
        | Event::ProgrammeSettingsChanged(_)
        | Event::TierSchemePublished(_)
        | Event::TierChanged(_)
        | Event::TierRetained(_) => return None,
    };
    Some((kind, change))
}

/// A tenant's ledger folded event by event (in tenant-sequence order).
#[derive(Debug, Default, Clone)]
pub struct Books {
    pub tenant: TenantState,
    customers: HashMap<CustomerId, CustomerState>,
    outstanding: Worth,
    movements: Movements,
    events: u64,
}

/// A whole tenant's position at one point of its ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TenantPosition {
    pub events: u64,
    pub customers: u64,
    /// Σ balance (spendable points net of debt), Σ pending, Σ held, Σ debt.
    pub balance: i64,
    pub pending: i64,
    pub held: i64,
    pub debt: i64,
    pub outstanding: Worth,
    /// Movements since the ledger began.
    pub movements: Movements,
    /// Customers per tier id; the ladder's base (no tier reached) is `""`.
    pub tiers: BTreeMap<String, u64>,
}

impl Books {
    pub fn new() -> Books {
        Books::default()
    }

    /// Folds one more event of the tenant's ledger.
    pub fn apply(&mut self, stream: StreamId, event: &Event) {
        self.events += 1;
        // In place (`Aggregate::apply`, what `evolve` does) rather than by moving states.
        match stream {
            StreamId::Tenant(_) => self.tenant.apply(event),
            StreamId::Customer(customer_id) => {
                let state = self.customers.entry(customer_id).or_default();
                if let Some((kind, change)) = movement(state, event) {
                    self.outstanding += change;
                    self.movements.record(kind, change);
                }
                state.apply(event);
            }
        }
    }

    pub fn events(&self) -> u64 {
        self.events
    }

    /// Outstanding points and their worth (kept as a running sum of the movements).
    pub fn outstanding(&self) -> Worth {
        self.outstanding
    }

    /// Movements since the ledger began.
    pub fn movements(&self) -> Movements {
        self.movements
    }

    pub fn customer(&self, customer_id: CustomerId) -> Option<&CustomerState> {
        self.customers.get(&customer_id)
    }

    pub fn customers(&self) -> impl Iterator<Item = (&CustomerId, &CustomerState)> {
        self.customers.iter()
    }

    /// The tenant's totals now.
    pub fn position(&self) -> TenantPosition {
        let mut position = TenantPosition {
            events: self.events,
            customers: 0,
            balance: 0,
            pending: 0,
            held: 0,
            debt: 0,
            outstanding: self.outstanding,
            movements: self.movements,
            tiers: BTreeMap::new(),
        };
        for state in self.customers.values() {
            if state.profile.is_none() {
                continue;
            }
            position.customers += 1;
            position.balance += state.balance.value();
            position.pending += state.pending.value();
            position.held += state.held.value();
            position.debt += state.debt.value();
            *position
                .tiers
                .entry(state.tier.clone().unwrap_or_default())
                .or_default() += 1;
        }
        position
    }
}

/// One month of a tenant's statement (months of the tenant's time zone, by when events
/// were recorded: a closed month's figures never change).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MonthStatement {
    /// `YYYY-MM`.
    pub month: String,
    pub opening: Worth,
    pub issued: Worth,
    pub redeemed: Worth,
    pub expired: Worth,
    pub reversed: Worth,
    pub adjusted: Worth,
    pub closing: Worth,
}

impl MonthStatement {
    fn new(month: (i32, u32), opening: Worth, movements: Movements) -> MonthStatement {
        MonthStatement {
            month: format!("{:04}-{:02}", month.0, month.1),
            opening,
            issued: movements.issued,
            redeemed: movements.redeemed,
            expired: movements.expired,
            reversed: movements.reversed,
            adjusted: movements.adjusted,
            closing: movements.close(opening),
        }
    }
}

/// Folds a tenant's ledger into monthly statements, each month's closing the next one's
/// opening, and months without events included (nothing moved).
#[derive(Debug)]
pub struct StatementBuilder {
    books: Books,
    time_zone: chrono_tz::Tz,
    months: Vec<MonthStatement>,
    /// The month being folded, its opening and the movements before it.
    current: Option<((i32, u32), Worth, Movements)>,
}

impl StatementBuilder {
    pub fn new(time_zone: chrono_tz::Tz) -> StatementBuilder {
        StatementBuilder {
            books: Books::new(),
            time_zone,
            months: Vec::new(),
            current: None,
        }
    }

    fn month_of(&self, at: chrono::DateTime<chrono::Utc>) -> (i32, u32) {
        use chrono::Datelike;
        let local = crate::rules::local_time(self.time_zone, at);
        (local.year(), local.month())
    }

    /// Closes months up to (not including) `month`, opening each following one.
    fn advance_to(&mut self, month: (i32, u32)) {
        let Some((mut current, opening, before)) = self.current else {
            self.current = Some((month, self.books.outstanding(), self.books.movements()));
            return;
        };
        if month <= current {
            return;
        }
        let moved = self.books.movements() - before;
        let mut statement = MonthStatement::new(current, opening, moved);
        loop {
            let closing = statement.closing;
            self.months.push(statement);
            current = next_month(current);
            if current >= month {
                break;
            }
            statement = MonthStatement::new(current, closing, Movements::default());
        }
        self.current = Some((current, self.books.outstanding(), self.books.movements()));
    }

    /// Folds one more event, recorded at `recorded_at`. An event recorded earlier than the
    /// month being folded (clocks are not perfectly monotonic) counts in that month.
    pub fn apply(
        &mut self,
        stream: StreamId,
        event: &Event,
        recorded_at: chrono::DateTime<chrono::Utc>,
    ) {
        let month = self.month_of(recorded_at);
        self.advance_to(month);
        self.books.apply(stream, event);
    }

    /// The statements from the first event's month through `until`'s month (or the last
    /// event's, if later), and the books at the end.
    pub fn finish(mut self, until: chrono::DateTime<chrono::Utc>) -> (Vec<MonthStatement>, Books) {
        let Some((current, _, _)) = self.current else {
            return (Vec::new(), self.books);
        };
        let last = self.month_of(until).max(current);
        self.advance_to(next_month(last));
        (self.months, self.books)
    }
}

fn next_month((year, month): (i32, u32)) -> (i32, u32) {
    if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    }
}

#[cfg(test)]
mod tests;
