//! `decide` and `evolve`: the whole of the ledger's behaviour as two pure functions.
//!
//! There are two kinds of stream. The tenant stream holds the tenant's profile and rule
//! set; a customer stream holds one customer's purchases and lots. A customer command is
//! decided against both: the tenant's rules and the customer's lots.

use crate::amounts::{MinorUnits, Points};
use crate::command::{Command, Rejection, REWARD_NAME_CHARS_MAX};
use crate::events::{
    CustomerEnrolled, CustomerErased, Event, LineItem, LotDebit, PointsEarned, PointsExpired,
    PurchaseLogged, RedemptionFulfilled, RewardCreated, RewardRedeemed, RewardRetired,
    RuleSetPublished, TenantRegistered,
};
use crate::ids::{CustomerId, LotId, PurchaseId, RedemptionId, RewardId, TenantId};
use crate::rules::{local_time, PurchaseFacts, RuleSet, DEFAULT_TIME_ZONE};
use crate::Currency;
use chrono::{DateTime, Duration, Utc};
use std::collections::BTreeMap;
use std::sync::Arc;

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
    /// The latest rule set published (the one a new set's version follows).
    pub rule_set: RuleSet,
    /// Every rule set ever published, the first (from `TenantRegistered`) included, in
    /// publication order: a purchase is earned under the set in force when it happened.
    /// Shared (`Arc`) for the same reason as the reward catalogue.
    pub rule_sets: Arc<Vec<PublishedRuleSet>>,
}

/// A rule set and when it came into force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedRuleSet {
    pub published_at: DateTime<Utc>,
    pub rule_set: RuleSet,
}

impl TenantProfile {
    /// The rule set in force at `at`: the latest published at or before it (on equal times,
    /// the later publication). A purchase dated before the first set uses the first.
    pub fn rule_set_at(&self, at: DateTime<Utc>) -> &RuleSet {
        self.rule_sets
            .iter()
            .enumerate()
            .filter(|(_, published)| published.published_at <= at)
            .max_by_key(|(index, published)| (published.published_at, *index))
            .or_else(|| self.rule_sets.iter().enumerate().next())
            .map_or(&self.rule_set, |(_, published)| &published.rule_set)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantState {
    pub profile: Option<TenantProfile>,
    /// The reward catalogue, retired rewards included, by id (UUIDv7: creation order). Shared
    /// (`Arc`) because every customer command is decided against a copy of the tenant's
    /// state; a catalogue change copies it once.
    pub rewards: Arc<BTreeMap<RewardId, Reward>>,
}

/// One reward of a tenant's catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reward {
    pub reward_id: RewardId,
    pub name: String,
    pub points_cost: Points,
    pub created_at: DateTime<Utc>,
    /// `Some` once retired: no longer redeemable.
    pub retired_at: Option<DateTime<Utc>>,
}

impl Reward {
    pub fn is_active(&self) -> bool {
        self.retired_at.is_none()
    }
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
                    rule_sets: Arc::new(vec![PublishedRuleSet {
                        published_at: e.registered_at,
                        rule_set: e.rule_set.clone(),
                    }]),
                });
            }
            Event::RuleSetPublished(e) => {
                if let Some(profile) = &mut self.profile {
                    profile.rule_set = e.rule_set.clone();
                    Arc::make_mut(&mut profile.rule_sets).push(PublishedRuleSet {
                        published_at: e.published_at,
                        rule_set: e.rule_set.clone(),
                    });
                }
            }
            Event::RewardCreated(e) => {
                Arc::make_mut(&mut self.rewards).insert(
                    e.reward_id,
                    Reward {
                        reward_id: e.reward_id,
                        name: e.name.clone(),
                        points_cost: e.points_cost,
                        created_at: e.created_at,
                        retired_at: None,
                    },
                );
            }
            Event::RewardRetired(e) => {
                if let Some(reward) = Arc::make_mut(&mut self.rewards).get_mut(&e.reward_id) {
                    reward.retired_at = Some(e.retired_at);
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
    /// Redemptions of catalogue rewards (those with a code), by id: what a vendor can
    /// fulfil. Redemptions of a number of points have nothing to hand over and are not kept.
    pub redemptions: BTreeMap<RedemptionId, Redemption>,
}

/// A reward redeemed by the customer, to be handed over at the counter once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redemption {
    pub redemption_id: RedemptionId,
    pub reward_id: RewardId,
    pub code: String,
    pub points: Points,
    pub redeemed_at: DateTime<Utc>,
    pub fulfilled_at: Option<DateTime<Utc>>,
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
                if let (Some(reward_id), Some(code)) = (e.reward_id, &e.code) {
                    self.redemptions.insert(
                        e.redemption_id,
                        Redemption {
                            redemption_id: e.redemption_id,
                            reward_id,
                            code: code.clone(),
                            points: e.points,
                            redeemed_at: e.redeemed_at,
                            fulfilled_at: None,
                        },
                    );
                }
            }
            Event::RedemptionFulfilled(e) => {
                if let Some(redemption) = self.redemptions.get_mut(&e.redemption_id) {
                    redemption.fulfilled_at = Some(e.fulfilled_at);
                }
            }
            Event::PointsExpired(e) => {
                self.debit_lot(e.lot_id, e.points);
                self.expired = add(self.expired, e.points);
                self.balance = sub(self.balance, e.points);
            }
            Event::TenantRegistered(_)
            | Event::RuleSetPublished(_)
            | Event::RewardCreated(_)
            | Event::RewardRetired(_) => {}
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
            spend(state.customer, *points, *at, |consumed| RewardRedeemed {
                redemption_id: *redemption_id,
                points: *points,
                description: description.clone(),
                consumed,
                redeemed_at: *at,
                reward_id: None,
                code: None,
            })
        }
        Command::CreateReward {
            reward_id,
            name,
            points_cost,
            at,
        } => {
            tenant(state)?;
            let chars = name.chars().count();
            if chars == 0 || chars > REWARD_NAME_CHARS_MAX || name.trim().is_empty() {
                return Err(Rejection::InvalidRewardName);
            }
            if !points_cost.is_positive() {
                return Err(Rejection::AmountNotPositive);
            }
            if state.tenant.rewards.contains_key(reward_id) {
                return Err(Rejection::RewardAlreadyExists);
            }
            Ok(vec![Event::RewardCreated(RewardCreated {
                reward_id: *reward_id,
                name: name.clone(),
                points_cost: *points_cost,
                created_at: *at,
            })])
        }
        Command::RetireReward { reward_id, at } => {
            tenant(state)?;
            active_reward(state, *reward_id)?;
            Ok(vec![Event::RewardRetired(RewardRetired {
                reward_id: *reward_id,
                retired_at: *at,
            })])
        }
        Command::RedeemReward {
            redemption_id,
            reward_id,
            code,
            at,
            ..
        } => {
            tenant(state)?;
            active_customer(state)?;
            let reward = active_reward(state, *reward_id)?;
            spend(state.customer, reward.points_cost, *at, |consumed| {
                RewardRedeemed {
                    redemption_id: *redemption_id,
                    points: reward.points_cost,
                    description: reward.name.clone(),
                    consumed,
                    redeemed_at: *at,
                    reward_id: Some(*reward_id),
                    code: Some(code.to_string()),
                }
            })
        }
        Command::FulfilRedemption {
            redemption_id, at, ..
        } => {
            tenant(state)?;
            // An erased customer's redemption is still handed over: the points were spent
            // before the erasure, and the code carries no personal data.
            customer(state)?;
            let redemption = state
                .customer
                .redemptions
                .get(redemption_id)
                .ok_or(Rejection::RedemptionNotFound)?;
            if redemption.fulfilled_at.is_some() {
                return Err(Rejection::AlreadyFulfilled);
            }
            Ok(vec![Event::RedemptionFulfilled(RedemptionFulfilled {
                redemption_id: *redemption_id,
                fulfilled_at: *at,
            })])
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
    let rule_set = profile.rule_set_at(input.occurred_at);
    let facts = PurchaseFacts {
        amount: input.amount,
        purchase_number,
        local_time: local_time(DEFAULT_TIME_ZONE, input.occurred_at),
        line_items: input.line_items,
        // TO WIRE (issue #5): the customer state does not know these facts yet. Neutral
        // values until it does: no tier, nothing earned earlier today (daily caps see this
        // purchase only), no birthday, not referred.
        tier: None,
        earned_today: Points::ZERO,
        birthday_today: false,
        birthday_bonus_this_year: false,
        referred: false,
    };
    let earning = rule_set.evaluate(facts).map_err(|_| Rejection::Overflow)?;
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
            rule_set_version: rule_set.version(),
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

/// A reward of the catalogue that may still be redeemed (or retired).
fn active_reward<'a>(state: LedgerState<'a>, reward_id: RewardId) -> Result<&'a Reward, Rejection> {
    let reward = state
        .tenant
        .rewards
        .get(&reward_id)
        .ok_or(Rejection::RewardNotFound)?;
    if !reward.is_active() {
        return Err(Rejection::RewardRetired);
    }
    Ok(reward)
}

/// Spends `points` at `at`: lots already past their date are not spendable, so they expire
/// first, in the same decision (the customer never spends points that were due to expire);
/// then the soonest-expiring lots are debited. `redeemed` builds the redemption event from
/// the debits.
fn spend(
    customer: &CustomerState,
    points: Points,
    at: DateTime<Utc>,
    redeemed: impl FnOnce(Vec<LotDebit>) -> RewardRedeemed,
) -> Result<Vec<Event>, Rejection> {
    let available = customer.spendable_at(at);
    if available < points {
        return Err(Rejection::InsufficientPoints {
            available,
            requested: points,
        });
    }
    let open: Vec<&Lot> = customer
        .lots
        .iter()
        .filter(|lot| lot.expires_at > at)
        .collect();
    let mut events = expire_due_lots(customer, at);
    events.push(Event::RewardRedeemed(redeemed(consume_soonest_expiring(
        &open, points,
    ))));
    Ok(events)
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
fn consume_soonest_expiring(lots: &[&Lot], points: Points) -> Vec<LotDebit> {
    let mut order: Vec<(usize, &Lot)> = lots.iter().copied().enumerate().collect();
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
