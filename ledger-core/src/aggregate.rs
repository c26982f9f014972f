//! `decide` and `evolve`: the whole of the ledger's behaviour as two pure functions.
//!
//! There are two kinds of stream. The tenant stream holds the tenant's profile and rule
//! set; a customer stream holds one customer's purchases and lots. A customer command is
//! decided against both: the tenant's rules and the customer's lots.

use crate::amounts::{MinorUnits, Points};
use crate::command::{Command, Rejection};
use crate::events::{
    CustomerEnrolled, CustomerErased, Event, LineItem, LotDebit, PointsEarned, PointsExpired,
    PurchaseLogged, RewardRedeemed, RuleSetPublished, TenantRegistered,
};
use crate::ids::{CustomerId, LotId, PurchaseId, TenantId};
use crate::rules::{PurchaseFacts, RuleSet};
use crate::Currency;
use chrono::{DateTime, Duration, Utc};

/// Folds one event into a state. Events are facts: applying one never fails, and an event
/// that does not concern this kind of state is ignored.
pub trait Aggregate {
    fn apply(&mut self, event: &Event);
}

/// `evolve(state, event) -> state`, for either kind of state.
pub fn evolve<A: Aggregate>(mut state: A, event: &Event) -> A {
    state.apply(event);
    state
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantProfile {
    pub tenant_id: TenantId,
    pub name: String,
    pub currency: Currency,
    pub expiry_days: u32,
    pub rule_set: RuleSet,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantState {
    pub profile: Option<TenantProfile>,
}

impl Aggregate for TenantState {
    fn apply(&mut self, event: &Event) {
        match event {
            Event::TenantRegistered(e) => {
                self.profile = Some(TenantProfile {
                    tenant_id: e.tenant_id,
                    name: e.name.clone(),
                    currency: e.currency,
                    expiry_days: e.expiry_days,
                    rule_set: e.rule_set.clone(),
                });
            }
            Event::RuleSetPublished(e) => {
                if let Some(profile) = &mut self.profile {
                    profile.rule_set = e.rule_set.clone();
                }
            }
            _ => {}
        }
    }
}

/// An open lot: points earned together, spent and expired together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lot {
    pub lot_id: LotId,
    pub purchase_id: PurchaseId,
    pub points: Points,
    pub remaining: Points,
    pub earned_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerProfile {
    pub customer_id: CustomerId,
    /// Sealed under the customer's data key; unreadable after erasure.
    pub personal_data: Option<crate::events::SealedPersonalData>,
    pub enrolled_at: DateTime<Utc>,
    pub erased_at: Option<DateTime<Utc>>,
}

/// One customer's ledger. Invariant (checked by the property tests after every step):
/// `balance == Σ lots.remaining == earned − redeemed − expired` and `balance ≥ 0`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustomerState {
    pub profile: Option<CustomerProfile>,
    pub purchases: u32,
    /// Lots with points remaining, in the order they were earned. Emptied lots are dropped.
    pub lots: Vec<Lot>,
    pub balance: Points,
    pub earned: Points,
    pub redeemed: Points,
    pub expired: Points,
}

impl CustomerState {
    /// Points that could be spent at `at`: the balance less lots already past their date.
    pub fn spendable_at(&self, at: DateTime<Utc>) -> Points {
        let due: i64 = self
            .lots
            .iter()
            .filter(|lot| lot.expires_at <= at)
            .map(|lot| lot.remaining.value())
            .sum();
        Points::new(self.balance.value() - due)
    }
}

// Arithmetic in `apply` saturates instead of panicking: `decide` has already proved with
// checked arithmetic that the numbers fit, so saturation is never reached in practice, and a
// replay must never crash on a stored fact.
impl Aggregate for CustomerState {
    fn apply(&mut self, event: &Event) {
        match event {
            Event::CustomerEnrolled(e) => {
                self.profile = Some(CustomerProfile {
                    customer_id: e.customer_id,
                    personal_data: e.personal_data.clone(),
                    enrolled_at: e.enrolled_at,
                    erased_at: None,
                });
            }
            Event::CustomerErased(e) => {
                if let Some(profile) = &mut self.profile {
                    profile.personal_data = None;
                    profile.erased_at = Some(e.erased_at);
                }
            }
            Event::PurchaseLogged(e) => {
                self.purchases = self.purchases.max(e.purchase_number);
            }
            Event::PointsEarned(e) => {
                self.lots.push(Lot {
                    lot_id: e.lot_id,
                    purchase_id: e.purchase_id,
                    points: e.points,
                    remaining: e.points,
                    earned_at: e.earned_at,
                    expires_at: e.expires_at,
                });
                self.earned = add(self.earned, e.points);
                self.balance = add(self.balance, e.points);
            }
            Event::RewardRedeemed(e) => {
                for debit in &e.consumed {
                    self.debit_lot(debit.lot_id, debit.points);
                }
                self.redeemed = add(self.redeemed, e.points);
                self.balance = sub(self.balance, e.points);
            }
            Event::PointsExpired(e) => {
                self.debit_lot(e.lot_id, e.points);
                self.expired = add(self.expired, e.points);
                self.balance = sub(self.balance, e.points);
            }
            Event::TenantRegistered(_) | Event::RuleSetPublished(_) => {}
        }
    }
}

impl CustomerState {
    fn debit_lot(&mut self, lot_id: LotId, points: Points) {
        if let Some(lot) = self.lots.iter_mut().find(|lot| lot.lot_id == lot_id) {
            lot.remaining = sub(lot.remaining, points);
        }
        self.lots.retain(|lot| lot.remaining.is_positive());
    }
}

fn add(a: Points, b: Points) -> Points {
    Points::new(a.value().saturating_add(b.value()))
}

fn sub(a: Points, b: Points) -> Points {
    Points::new(a.value().saturating_sub(b.value()))
}

/// The states a command is decided against.
#[derive(Debug, Clone, Copy)]
pub struct LedgerState<'a> {
    pub tenant: &'a TenantState,
    pub customer: &'a CustomerState,
}

/// How far in the future a purchase may be dated: tolerates POS clocks running fast.
pub const PURCHASE_CLOCK_SKEW_MAX: Duration = Duration::minutes(5);

/// `decide(state, command) -> events`: the only place that says yes or no.
pub fn decide(state: LedgerState<'_>, command: &Command) -> Result<Vec<Event>, Rejection> {
    match command {
        Command::RegisterTenant {
            tenant_id,
            name,
            currency,
            expiry_days,
            rule_set,
            at,
        } => {
            if state.tenant.profile.is_some() {
                return Err(Rejection::TenantAlreadyRegistered);
            }
            Ok(vec![Event::TenantRegistered(TenantRegistered {
                tenant_id: *tenant_id,
                name: name.clone(),
                currency: *currency,
                expiry_days: *expiry_days,
                rule_set: rule_set.clone(),
                registered_at: *at,
            })])
        }
        Command::PublishRuleSet { rules, at } => {
            let profile = tenant(state)?;
            let version = profile
                .rule_set
                .version()
                .checked_add(1)
                .ok_or(Rejection::Overflow)?;
            let rule_set = RuleSet::new(version, rules.clone())?;
            Ok(vec![Event::RuleSetPublished(RuleSetPublished {
                rule_set,
                published_at: *at,
            })])
        }
        Command::EnrolCustomer {
            customer_id,
            personal_data,
            at,
            ..
        } => {
            tenant(state)?;
            if state.customer.profile.is_some() {
                return Err(Rejection::CustomerAlreadyEnrolled);
            }
            Ok(vec![Event::CustomerEnrolled(CustomerEnrolled {
                customer_id: *customer_id,
                personal_data: Some(personal_data.clone()),
                enrolled_at: *at,
            })])
        }
        Command::EraseCustomer { customer_id, at } => {
            tenant(state)?;
            active_customer(state)?;
            Ok(vec![Event::CustomerErased(CustomerErased {
                customer_id: *customer_id,
                erased_at: *at,
            })])
        }
        Command::LogPurchase {
            purchase_id,
            lot_id,
            amount,
            line_items,
            reference,
            occurred_at,
            at,
            ..
        } => decide_purchase(
            state,
            PurchaseInput {
                purchase_id: *purchase_id,
                lot_id: *lot_id,
                amount: *amount,
                line_items,
                reference,
                occurred_at: occurred_at.unwrap_or(*at),
                at: *at,
            },
        ),
        Command::RedeemPoints {
            redemption_id,
            points,
            description,
            at,
            ..
        } => {
            tenant(state)?;
            active_customer(state)?;
            if !points.is_positive() {
                return Err(Rejection::AmountNotPositive);
            }
            // Lots already past their date are not spendable: they expire first, in the same
            // decision, so the customer never spends points that were due to expire.
            let mut events = expire_due_lots(state.customer, *at);
            let mut after_expiry = state.customer.clone();
            for event in &events {
                after_expiry.apply(event);
            }
            if after_expiry.balance < *points {
                return Err(Rejection::InsufficientPoints {
                    available: after_expiry.balance,
                    requested: *points,
                });
            }
            events.push(Event::RewardRedeemed(RewardRedeemed {
                redemption_id: *redemption_id,
                points: *points,
                description: description.clone(),
                consumed: consume_soonest_expiring(&after_expiry.lots, *points),
                redeemed_at: *at,
            }));
            Ok(events)
        }
        Command::ExpirePoints { at, .. } => {
            customer(state)?;
            Ok(expire_due_lots(state.customer, *at))
        }
    }
}

struct PurchaseInput<'a> {
    purchase_id: PurchaseId,
    lot_id: LotId,
    amount: MinorUnits,
    line_items: &'a [LineItem],
    reference: &'a Option<String>,
    occurred_at: DateTime<Utc>,
    at: DateTime<Utc>,
}

fn decide_purchase(
    state: LedgerState<'_>,
    input: PurchaseInput<'_>,
) -> Result<Vec<Event>, Rejection> {
    let profile = tenant(state)?;
    active_customer(state)?;
    if input.amount.value() <= 0 {
        return Err(Rejection::AmountNotPositive);
    }
    if input.occurred_at > input.at + PURCHASE_CLOCK_SKEW_MAX {
        return Err(Rejection::PurchaseInFuture);
    }
    check_line_items(input.line_items, input.amount)?;
    let purchase_number = state
        .customer
        .purchases
        .checked_add(1)
        .ok_or(Rejection::Overflow)?;
    let earning = profile
        .rule_set
        .evaluate(PurchaseFacts {
            amount: input.amount,
            purchase_number,
        })
        .map_err(|_| Rejection::Overflow)?;
    // Both the balance and the lifetime total must still fit; redeemed and expired can
    // never exceed earned, so they cannot overflow first.
    state
        .customer
        .balance
        .checked_add(earning.total)
        .ok_or(Rejection::Overflow)?;
    state
        .customer
        .earned
        .checked_add(earning.total)
        .ok_or(Rejection::Overflow)?;
    let mut events = vec![Event::PurchaseLogged(PurchaseLogged {
        purchase_id: input.purchase_id,
        amount: input.amount,
        line_items: input.line_items.to_vec(),
        reference: input.reference.clone(),
        occurred_at: input.occurred_at,
        purchase_number,
    })];
    if earning.total.is_positive() {
        let expires_at = input
            .occurred_at
            .checked_add_signed(Duration::days(i64::from(profile.expiry_days)))
            .ok_or(Rejection::Overflow)?;
        events.push(Event::PointsEarned(PointsEarned {
            lot_id: input.lot_id,
            purchase_id: input.purchase_id,
            points: earning.total,
            rule_set_version: profile.rule_set.version(),
            breakdown: earning.breakdown,
            earned_at: input.occurred_at,
            expires_at,
        }));
    }
    Ok(events)
}

fn check_line_items(line_items: &[LineItem], amount: MinorUnits) -> Result<(), Rejection> {
    if line_items.is_empty() {
        return Ok(());
    }
    let mut total = MinorUnits::ZERO;
    for item in line_items {
        let line = item
            .unit_price
            .checked_mul(i64::from(item.quantity))
            .ok_or(Rejection::Overflow)?;
        total = total.checked_add(line).ok_or(Rejection::Overflow)?;
    }
    if total != amount {
        return Err(Rejection::LineItemsDoNotAddUp {
            line_items_total: total,
            amount,
        });
    }
    Ok(())
}

fn tenant<'a>(state: LedgerState<'a>) -> Result<&'a TenantProfile, Rejection> {
    state
        .tenant
        .profile
        .as_ref()
        .ok_or(Rejection::TenantNotRegistered)
}

fn customer<'a>(state: LedgerState<'a>) -> Result<&'a CustomerProfile, Rejection> {
    state
        .customer
        .profile
        .as_ref()
        .ok_or(Rejection::CustomerNotEnrolled)
}

/// An enrolled customer who has not been erased. An erased customer's points still expire
/// (the scheduled run is not a choice of the customer's), but nothing new is recorded for
/// them: they may enrol again as a new customer.
fn active_customer<'a>(state: LedgerState<'a>) -> Result<&'a CustomerProfile, Rejection> {
    let profile = customer(state)?;
    if profile.erased_at.is_some() {
        return Err(Rejection::CustomerErased);
    }
    Ok(profile)
}

fn expire_due_lots(customer: &CustomerState, at: DateTime<Utc>) -> Vec<Event> {
    customer
        .lots
        .iter()
        .filter(|lot| lot.expires_at <= at && lot.remaining.is_positive())
        .map(|lot| {
            Event::PointsExpired(PointsExpired {
                lot_id: lot.lot_id,
                points: lot.remaining,
                expired_at: at,
            })
        })
        .collect()
}

/// Takes `points` from the lots that expire soonest; among lots expiring together, the
/// oldest first. The caller has checked that the lots hold enough.
fn consume_soonest_expiring(lots: &[Lot], points: Points) -> Vec<LotDebit> {
    let mut order: Vec<(usize, &Lot)> = lots.iter().enumerate().collect();
    order.sort_by_key(|(index, lot)| (lot.expires_at, *index));
    let mut still_needed = points.value();
    let mut debits = Vec::new();
    for (_, lot) in order {
        if still_needed == 0 {
            break;
        }
        let taken = still_needed.min(lot.remaining.value());
        if taken > 0 {
            debits.push(LotDebit {
                lot_id: lot.lot_id,
                points: Points::new(taken),
            });
            still_needed -= taken;
        }
    }
    debits
}
