//! `decide` and `evolve`: the whole of the ledger's behaviour as two pure functions.
//!
//! There are two kinds of stream. The tenant stream holds the tenant's profile and rule
//! set; a customer stream holds one customer's purchases and lots. A customer command is
//! decided against both: the tenant's rules and the customer's lots.

use crate::amounts::{MinorUnits, Points};
use crate::command::{Command, Rejection, REWARD_NAME_CHARS_MAX};
use crate::command::{
    HOLD_DAYS_MAX, REASON_CHARS_MAX, REWARD_DESCRIPTION_CHARS_MAX, REWARD_IMAGE_URL_CHARS_MAX,
    REWARD_PER_CUSTOMER_LIMIT_MAX, REWARD_STOCK_MAX,
};
use crate::events::{
    AdjustmentLot, BirthdaySet, CustomerEnrolled, CustomerErased, DebtSettled, Event,
    HoldFulfilled, HoldReleaseReason, HoldReleased, LineItem, LotDebit, PointsActivated,
    PointsAdjusted, PointsEarned, PointsExpired, PointsPending, ProgrammeSettings,
    ProgrammeSettingsChanged, PurchaseLogged, PurchaseRefunded, RedemptionFulfilled,
    ReferralBonusAwarded, ReferralQualified, RefundPolicy, Reversal, RewardCreated, RewardHeld,
    RewardRedeemed, RewardRetired, RewardTerms, RewardUpdated, RuleSetPublished, TenantRegistered,
    TierChanged, TierDirection, TierRetained, TierSchemePublished,
};
use crate::ids::{
    AdjustmentId, CustomerId, LotId, PurchaseId, RedemptionId, RefundId, RewardId, TenantId,
};
use crate::people::Birthday;
use crate::rules::{local_day, local_time, KindName, PurchaseFacts, RuleSet};
use crate::tiers::{qualifying_value, Qualifying, TierScheme};
use crate::Currency;
use chrono::{DateTime, Datelike, Duration, Utc};
use std::collections::{BTreeMap, BTreeSet};
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
    pub settings: ProgrammeSettings,
    pub tier_scheme: Option<TierScheme>,
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

    /// The tenant's time zone (settings are validated when changed; Lagos otherwise).
    pub fn time_zone(&self) -> chrono_tz::Tz {
        self.settings
            .time_zone
            .parse()
            .unwrap_or(crate::rules::DEFAULT_TIME_ZONE)
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
///
/// Catalogue rules (checked by `decide` on `RedeemReward`, in this order, after the reward
/// is found and active):
///
/// 1. validity: redeemable only at `valid_from <= at < valid_until` (either bound optional);
/// 2. stock: with a `stock`, redeemable only while fewer units are used than the stock,
///    counting every open or fulfilled hold of the reward across customers (a released
///    hold gives its unit back) — an input of the decision ([`RewardStock`]), since no one
///    customer's stream knows it;
/// 3. per-customer limit: with a `per_customer_limit`, redeemable only while the customer
///    has fewer open or fulfilled holds of it ([`CustomerState::units_of`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reward {
    pub reward_id: RewardId,
    pub name: String,
    pub points_cost: Points,
    pub terms: RewardTerms,
    pub created_at: DateTime<Utc>,
    /// When the owner last changed it (`RewardUpdated`).
    pub updated_at: Option<DateTime<Utc>>,
    /// `Some` once retired: no longer redeemable.
    pub retired_at: Option<DateTime<Utc>>,
}

impl Reward {
    pub fn is_active(&self) -> bool {
        self.retired_at.is_none()
    }

    /// Whether the validity window admits a redemption at `at`.
    pub fn check_valid_at(&self, at: DateTime<Utc>) -> Result<(), Rejection> {
        if let Some(valid_from) = self.terms.valid_from {
            if at < valid_from {
                return Err(Rejection::RewardNotYetValid { valid_from });
            }
        }
        if let Some(valid_until) = self.terms.valid_until {
            if at >= valid_until {
                return Err(Rejection::RewardNoLongerValid { valid_until });
            }
        }
        Ok(())
    }

    /// Active and inside its validity window at `at`.
    pub fn is_offered_at(&self, at: DateTime<Utc>) -> bool {
        self.is_active() && self.check_valid_at(at).is_ok()
    }

    /// Units left: `None` when the reward has no stock (unlimited).
    pub fn stock_remaining(&self, stock: &RewardStock) -> Option<u32> {
        self.terms
            .stock
            .map(|units| units.saturating_sub(stock.used(self.reward_id)))
    }
}

/// Units of each reward in use across all the tenant's customers: open and fulfilled holds.
///
/// Stock is the one catalogue rule no single stream can decide: a customer's stream knows
/// only that customer's holds, and the tenant stream none. The shell supplies the count as
/// an input of the decision: the group-commit writer reads it from `reward_stock` under the
/// tenant's lock and writes the change [`stock_changes`] computes in the same transaction as
/// the events, so the count and the holds cannot disagree, across processes or a crash.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RewardStock {
    used: BTreeMap<RewardId, u32>,
}

/// No unit of any reward used: for callers that decide nothing about stock (tests, tools).
pub static NO_STOCK_USED: RewardStock = RewardStock::new();

impl RewardStock {
    pub const fn new() -> Self {
        RewardStock {
            used: BTreeMap::new(),
        }
    }

    pub fn from_used(used: impl IntoIterator<Item = (RewardId, u32)>) -> Self {
        RewardStock {
            used: used.into_iter().collect(),
        }
    }

    pub fn used(&self, reward_id: RewardId) -> u32 {
        self.used.get(&reward_id).copied().unwrap_or(0)
    }

    /// Applies a change from [`stock_changes`]; saturates at 0 and `u32::MAX`.
    pub fn apply(&mut self, reward_id: RewardId, delta: i64) {
        let used = i64::from(self.used(reward_id)).saturating_add(delta);
        let used = u32::try_from(used.max(0)).unwrap_or(u32::MAX);
        self.used.insert(reward_id, used);
    }
}

/// How a decision's `events` change the units used of each reward: `+1` per `RewardHeld`,
/// `-1` per `HoldReleased` (the reward found in `customer_before`, the customer's state
/// before the events, or in an earlier event of the same decision). A fulfilment keeps its
/// unit. Only holds count: redemptions debited at once (before holds) are not stock.
pub fn stock_changes(customer_before: &CustomerState, events: &[Event]) -> Vec<(RewardId, i64)> {
    let mut held_now: BTreeMap<RedemptionId, RewardId> = BTreeMap::new();
    let mut changes = Vec::new();
    for event in events {
        match event {
            Event::RewardHeld(e) => {
                held_now.insert(e.redemption_id, e.reward_id);
                changes.push((e.reward_id, 1));
            }
            Event::HoldReleased(e) => {
                let reward = held_now.get(&e.redemption_id).copied().or_else(|| {
                    customer_before
                        .redemptions
                        .get(&e.redemption_id)
                        .filter(|r| r.hold.is_some())
                        .map(|r| r.reward_id)
                });
                if let Some(reward_id) = reward {
                    changes.push((reward_id, -1));
                }
            }
            _ => {}
        }
    }
    changes
}

/// The checks of a reward's terms, shared by creation and update. The API parses each
/// field with the same functions, so its 422 names the field before the ledger sees it.
pub fn check_reward_terms(terms: &RewardTerms) -> Result<(), Rejection> {
    let invalid = |field, reason| Rejection::InvalidRewardTerms { field, reason };
    if let Some(description) = &terms.description {
        check_reward_description(description).map_err(|r| invalid("description", r))?;
    }
    if let Some(url) = &terms.image_url {
        check_reward_image_url(url).map_err(|r| invalid("image_url", r))?;
    }
    if let (Some(from), Some(until)) = (terms.valid_from, terms.valid_until) {
        if from >= until {
            return Err(invalid("valid_until", "must be later than valid_from"));
        }
    }
    if terms.stock.is_some_and(|stock| stock > REWARD_STOCK_MAX) {
        return Err(invalid("stock", "must be at most 1000000000"));
    }
    if let Some(limit) = terms.per_customer_limit {
        if !(1..=REWARD_PER_CUSTOMER_LIMIT_MAX).contains(&limit) {
            return Err(invalid("per_customer_limit", "must be 1 to 1000"));
        }
    }
    Ok(())
}

/// 1 to [`REWARD_DESCRIPTION_CHARS_MAX`] characters, one line, not only blanks.
pub fn check_reward_description(description: &str) -> Result<(), &'static str> {
    let chars = description.chars().count();
    if chars == 0 || description.trim().is_empty() {
        return Err("must not be blank");
    }
    if chars > REWARD_DESCRIPTION_CHARS_MAX {
        return Err("must be at most 72 characters (a WhatsApp list row's description)");
    }
    if description.chars().any(char::is_control) {
        return Err("must be one line without control characters");
    }
    Ok(())
}

/// An absolute `https` URL with a host, of visible ASCII characters (percent-encode the
/// rest), at most [`REWARD_IMAGE_URL_CHARS_MAX`] characters.
pub fn check_reward_image_url(url: &str) -> Result<(), &'static str> {
    if url.len() > REWARD_IMAGE_URL_CHARS_MAX {
        return Err("must be at most 2048 characters");
    }
    if !url.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be visible ASCII characters only (percent-encode the rest)");
    }
    let Some(rest) = url.strip_prefix("https://") else {
        return Err("must be an https:// URL");
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    let host = host.split(':').next().unwrap_or("");
    if host.is_empty() || authority.contains('@') {
        return Err("must name a host (and no user name or password)");
    }
    Ok(())
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
                    settings: ProgrammeSettings::default(),
                    tier_scheme: None,
                    rule_sets: Arc::new(vec![PublishedRuleSet {
                        published_at: e.registered_at,
                        rule_set: e.rule_set.clone(),
                    }]),
                });
            }
            Event::TierSchemePublished(e) => {
                if let Some(profile) = &mut self.profile {
                    profile.tier_scheme = Some(e.scheme.clone());
                }
            }
            Event::ProgrammeSettingsChanged(e) => {
                if let Some(profile) = &mut self.profile {
                    profile.settings = e.settings.clone();
                }
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
                        terms: e.terms.clone(),
                        created_at: e.created_at,
                        updated_at: None,
                        retired_at: None,
                    },
                );
            }
            Event::RewardUpdated(e) => {
                if let Some(reward) = Arc::make_mut(&mut self.rewards).get_mut(&e.reward_id) {
                    reward.name = e.name.clone();
                    reward.points_cost = e.points_cost;
                    reward.terms = e.terms.clone();
                    reward.updated_at = Some(e.updated_at);
                }
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

/// A lot: points earned together (by one purchase or one positive adjustment), spent and
/// expired together. While `pending_until` is set the lot is pending (not in the balance,
/// not spendable). `reserved` is the part held for open reward holds: still in the
/// balance, not available, and never expired while held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lot {
    pub lot_id: LotId,
    /// The purchase that earned it; `None` for a lot opened by an adjustment.
    pub purchase_id: Option<PurchaseId>,
    pub points: Points,
    pub remaining: Points,
    pub reserved: Points,
    pub pending_until: Option<DateTime<Utc>>,
    pub earned_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Minor units per point, fixed when the lot opened; `None`: the tenant had set none.
    pub point_value: Option<MinorUnits>,
}

impl Lot {
    pub fn is_pending(&self) -> bool {
        self.pending_until.is_some()
    }

    /// What of the lot can be spent, expired or taken back: the remainder not held.
    pub fn free(&self) -> Points {
        Points::new(self.remaining.value() - self.reserved.value())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerProfile {
    pub customer_id: CustomerId,
    /// Sealed under the customer's data key; unreadable after erasure.
    pub personal_data: Option<crate::events::SealedPersonalData>,
    pub enrolled_at: DateTime<Utc>,
    pub erased_at: Option<DateTime<Utc>>,
}

/// One customer's ledger, in the balance vocabulary every screen uses:
///
/// - `balance`: the points the customer owns, posted — `Σ remaining of non-pending lots −
///   debt`. Open holds are still in it.
/// - `pending`: points inside their return window — `Σ remaining of pending lots`; never
///   spendable, never in `balance`.
/// - `held`: points reserved by open reward holds — `Σ lots.reserved`.
/// - `available`: what can be spent now — `balance − held` (less lots past their date
///   that the expiry run has not reached yet; see [`CustomerState::available_at`]).
///
/// Invariants (checked by the property tests after every step): the sums above, and
/// `balance == earned − pending − redeemed − expired − reversed + adjusted`;
/// `balance ≥ −debt limit`, and `balance ≥ 0` when the tenant allows no debt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustomerState {
    pub profile: Option<CustomerProfile>,
    pub purchases: u32,
    /// Lots with points remaining, in the order they were opened. Emptied lots are dropped.
    pub lots: Vec<Lot>,
    pub balance: Points,
    pub pending: Points,
    pub held: Points,
    /// Points refunds took back beyond what the customer had (tenant policy `allow_debt`).
    pub debt: Points,
    /// Lifetime counters.
    pub earned: Points,
    pub redeemed: Points,
    pub expired: Points,
    pub reversed: Points,
    /// Net of manual adjustments (signed).
    pub adjusted: Points,
    /// Redemptions of catalogue rewards (those with a code), by id: what a vendor can
    /// fulfil or cancel. Redemptions of a number of points have nothing to hand over and
    /// are not kept.
    pub redemptions: BTreeMap<RedemptionId, Redemption>,
    /// Every logged purchase, for refunds and tier qualification.
    pub purchase_records: BTreeMap<PurchaseId, PurchaseRecord>,
    /// The tier reached (an id of the tenant's ladder); `None` = the ladder's base.
    pub tier: Option<String>,
    /// When the tier is next reviewed; `None` at the base (nothing to lose).
    pub tier_review_at: Option<DateTime<Utc>>,
    /// Month and day; forgotten on erasure.
    pub birthday: Option<Birthday>,
    /// When each birthday bonus was earned (`earned_at` of a `PointsEarned` with a
    /// `birthday` breakdown line): the rule gives one per local year.
    pub birthday_bonuses: Vec<DateTime<Utc>>,
    /// The customer's own referral code (canonical form); `None` for customers enrolled
    /// before referral codes.
    pub referral_code: Option<String>,
    /// The customer whose referral code this customer enrolled with.
    pub referred_by: Option<CustomerId>,
    /// Referees whose referral bonus this customer (as referrer) was already awarded.
    pub referees_rewarded: BTreeSet<CustomerId>,
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
    /// `Some` for a hold (`RewardHeld`); `None` for a redemption debited at once
    /// (`RewardRedeemed`, streams from before holds).
    pub hold: Option<Hold>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub reserved: Vec<LotDebit>,
    pub expires_at: DateTime<Utc>,
    pub released: Option<(DateTime<Utc>, HoldReleaseReason)>,
}

impl Redemption {
    /// A hold neither fulfilled nor released.
    pub fn is_open_hold(&self) -> bool {
        self.fulfilled_at.is_none() && self.hold.as_ref().is_some_and(|h| h.released.is_none())
    }
}

/// What a refund needs to know about a purchase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurchaseRecord {
    pub occurred_at: DateTime<Utc>,
    pub amount: MinorUnits,
    pub refunded: MinorUnits,
    pub lot_id: Option<LotId>,
    pub points: Points,
    /// Points of this purchase already accounted for by refunds (`Reversal::due` summed).
    pub reversal_accounted: Points,
    /// Points of the purchase's lot that expired, and how many of them refunds forgave.
    pub lot_expired: Points,
    pub waived: Points,
}

impl CustomerState {
    /// What the customer can spend: `balance − held` (negative while a refund's debt is
    /// owed). Lots past their date still count until the expiry run reaches them; decisions
    /// use [`CustomerState::available_at`], which leaves them out.
    pub fn available(&self) -> Points {
        Points::new(self.balance.value().saturating_sub(self.held.value()))
    }

    /// Points that could be spent at `at`: free points of non-pending lots not yet past
    /// their date, less debt. Equals `balance − held` when no lot is past its date.
    pub fn available_at(&self, at: DateTime<Utc>) -> Points {
        let free: i64 = self
            .lots
            .iter()
            .filter(|lot| !lot.is_pending() && lot.expires_at > at)
            .map(|lot| lot.free().value())
            .sum();
        Points::new(free - self.debt.value())
    }

    /// Open holds, oldest first.
    pub fn open_holds(&self) -> impl Iterator<Item = &Redemption> {
        self.redemptions.values().filter(|r| r.is_open_hold())
    }

    /// The customer's units of a reward for its per-customer limit: redemptions of it not
    /// released (open holds, fulfilled holds, and redemptions debited at once).
    pub fn units_of(&self, reward_id: RewardId) -> u32 {
        let units = self
            .redemptions
            .values()
            .filter(|r| r.reward_id == reward_id)
            .filter(|r| r.hold.as_ref().is_none_or(|h| h.released.is_none()))
            .count();
        u32::try_from(units).unwrap_or(u32::MAX)
    }

    fn lot_mut(&mut self, lot_id: LotId) -> Option<&mut Lot> {
        self.lots.iter_mut().find(|lot| lot.lot_id == lot_id)
    }

    fn debit_lot(&mut self, lot_id: LotId, points: Points) {
        if let Some(lot) = self.lot_mut(lot_id) {
            lot.remaining = sub(lot.remaining, points);
        }
        self.lots.retain(|lot| lot.remaining.is_positive());
    }

    fn reserve(&mut self, reservations: &[LotDebit], sign: i64) {
        for r in reservations {
            if let Some(lot) = self.lot_mut(r.lot_id) {
                lot.reserved =
                    Points::new(lot.reserved.value().saturating_add(sign * r.points.value()));
            }
        }
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
                self.birthday = e.birthday;
                self.referral_code = e.referral_code.clone();
                self.referred_by = e.referred_by;
            }
            Event::CustomerErased(e) => {
                if let Some(profile) = &mut self.profile {
                    profile.personal_data = None;
                    profile.erased_at = Some(e.erased_at);
                }
                self.birthday = None;
            }
            Event::BirthdaySet(e) => {
                self.birthday = e.birthday;
            }
            // The referee's fact; the referrer's credit is `ReferralBonusAwarded`.
            Event::ReferralQualified(_) => {}
            Event::ReferralBonusAwarded(e) => {
                self.lots.push(Lot {
                    lot_id: e.lot_id,
                    purchase_id: None,
                    points: e.points,
                    remaining: e.points,
                    reserved: Points::ZERO,
                    pending_until: None,
                    earned_at: e.awarded_at,
                    expires_at: e.expires_at,
                    point_value: e.point_value,
                });
                self.earned = add(self.earned, e.points);
                self.balance = add(self.balance, e.points);
                self.referees_rewarded.insert(e.referee);
            }
            Event::PurchaseLogged(e) => {
                self.purchases = self.purchases.max(e.purchase_number);
                self.purchase_records.insert(
                    e.purchase_id,
                    PurchaseRecord {
                        occurred_at: e.occurred_at,
                        amount: e.amount,
                        refunded: MinorUnits::ZERO,
                        lot_id: None,
                        points: Points::ZERO,
                        reversal_accounted: Points::ZERO,
                        lot_expired: Points::ZERO,
                        waived: Points::ZERO,
                    },
                );
            }
            Event::PointsEarned(e) => {
                self.lots.push(Lot {
                    lot_id: e.lot_id,
                    purchase_id: Some(e.purchase_id),
                    points: e.points,
                    remaining: e.points,
                    reserved: Points::ZERO,
                    pending_until: None,
                    earned_at: e.earned_at,
                    expires_at: e.expires_at,
                    point_value: e.point_value,
                });
                if let Some(record) = self.purchase_records.get_mut(&e.purchase_id) {
                    record.lot_id = Some(e.lot_id);
                    record.points = e.points;
                }
                self.earned = add(self.earned, e.points);
                self.balance = add(self.balance, e.points);
                if e.breakdown
                    .iter()
                    .any(|line| line.kind == KindName::Birthday)
                {
                    self.birthday_bonuses.push(e.earned_at);
                }
            }
            Event::PointsPending(e) => {
                if let Some(lot) = self.lot_mut(e.lot_id) {
                    lot.pending_until = Some(e.pending_until);
                }
                self.balance = sub(self.balance, e.points);
                self.pending = add(self.pending, e.points);
            }
            Event::PointsActivated(e) => {
                if let Some(lot) = self.lot_mut(e.lot_id) {
                    lot.pending_until = None;
                }
                self.pending = sub(self.pending, e.points);
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
                            hold: None,
                        },
                    );
                }
            }
            Event::RewardHeld(e) => {
                self.reserve(&e.reserved, 1);
                self.held = add(self.held, e.points);
                self.redemptions.insert(
                    e.redemption_id,
                    Redemption {
                        redemption_id: e.redemption_id,
                        reward_id: e.reward_id,
                        code: e.code.clone(),
                        points: e.points,
                        redeemed_at: e.held_at,
                        fulfilled_at: None,
                        hold: Some(Hold {
                            reserved: e.reserved.clone(),
                            expires_at: e.expires_at,
                            released: None,
                        }),
                    },
                );
            }
            Event::HoldFulfilled(e) => {
                self.reserve(&e.consumed, -1);
                for debit in &e.consumed {
                    self.debit_lot(debit.lot_id, debit.points);
                }
                self.held = sub(self.held, e.points);
                self.redeemed = add(self.redeemed, e.points);
                self.balance = sub(self.balance, e.points);
                if let Some(redemption) = self.redemptions.get_mut(&e.redemption_id) {
                    redemption.fulfilled_at = Some(e.fulfilled_at);
                }
            }
            Event::HoldReleased(e) => {
                self.reserve(&e.released, -1);
                self.held = sub(self.held, e.points);
                if let Some(hold) = self
                    .redemptions
                    .get_mut(&e.redemption_id)
                    .and_then(|r| r.hold.as_mut())
                {
                    hold.released = Some((e.released_at, e.reason));
                }
            }
            Event::RedemptionFulfilled(e) => {
                if let Some(redemption) = self.redemptions.get_mut(&e.redemption_id) {
                    redemption.fulfilled_at = Some(e.fulfilled_at);
                }
            }
            Event::PointsExpired(e) => {
                let purchase = self
                    .lots
                    .iter()
                    .find(|lot| lot.lot_id == e.lot_id)
                    .and_then(|lot| lot.purchase_id);
                if let Some(record) = purchase.and_then(|p| self.purchase_records.get_mut(&p)) {
                    record.lot_expired = add(record.lot_expired, e.points);
                }
                self.debit_lot(e.lot_id, e.points);
                self.expired = add(self.expired, e.points);
                self.balance = sub(self.balance, e.points);
            }
            Event::PurchaseRefunded(e) => {
                if let Some(record) = self.purchase_records.get_mut(&e.purchase_id) {
                    record.refunded =
                        MinorUnits::new(record.refunded.value().saturating_add(e.amount.value()));
                    record.reversal_accounted = add(record.reversal_accounted, e.reversal.due);
                    record.waived = add(record.waived, e.reversal.waived_expired);
                }
                let reversal = &e.reversal;
                if reversal.from_pending.is_positive() {
                    let own = self
                        .purchase_records
                        .get(&e.purchase_id)
                        .and_then(|r| r.lot_id);
                    if let Some(lot_id) = own {
                        self.debit_lot(lot_id, reversal.from_pending);
                    }
                    self.pending = sub(self.pending, reversal.from_pending);
                }
                for debit in &reversal.from_lots {
                    self.debit_lot(debit.lot_id, debit.points);
                }
                self.debt = add(self.debt, reversal.debt);
                self.balance = sub(self.balance, reversal.from_balance());
                self.reversed = add(self.reversed, reversal.reversed());
            }
            Event::PointsAdjusted(e) => {
                if let Some(lot) = &e.lot {
                    self.lots.push(Lot {
                        lot_id: lot.lot_id,
                        purchase_id: None,
                        points: e.points,
                        remaining: e.points,
                        reserved: Points::ZERO,
                        pending_until: None,
                        earned_at: e.adjusted_at,
                        expires_at: lot.expires_at,
                        point_value: lot.point_value,
                    });
                }
                for debit in &e.consumed {
                    self.debit_lot(debit.lot_id, debit.points);
                }
                self.adjusted = Points::new(self.adjusted.value().saturating_add(e.points.value()));
                self.balance = Points::new(self.balance.value().saturating_add(e.points.value()));
            }
            Event::DebtSettled(e) => {
                self.debit_lot(e.lot_id, e.points);
                self.debt = sub(self.debt, e.points);
            }
            Event::TierChanged(e) => {
                self.tier = Some(e.to.clone());
                self.tier_review_at = e.review_at;
            }
            Event::TierRetained(e) => {
                self.tier_review_at = Some(e.review_at);
            }
            Event::TenantRegistered(_)
            | Event::RuleSetPublished(_)
            | Event::RewardCreated(_)
            | Event::RewardUpdated(_)
            | Event::RewardRetired(_)
            | Event::ProgrammeSettingsChanged(_)
            | Event::TierSchemePublished(_) => {}
        }
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
    /// Units used of the tenant's rewards, across customers (see [`RewardStock`]).
    pub stock: &'a RewardStock,
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
            birthday,
            referral_code,
            referred_by,
            at,
            ..
        } => {
            tenant(state)?;
            if state.customer.profile.is_some() {
                return Err(Rejection::CustomerAlreadyEnrolled);
            }
            if *referred_by == Some(*customer_id) {
                return Err(Rejection::SelfReferral);
            }
            Ok(vec![Event::CustomerEnrolled(CustomerEnrolled {
                customer_id: *customer_id,
                personal_data: Some(personal_data.clone()),
                enrolled_at: *at,
                birthday: *birthday,
                referral_code: Some(referral_code.to_string()),
                referred_by: *referred_by,
            })])
        }
        Command::SetBirthday { birthday, at, .. } => {
            tenant(state)?;
            active_customer(state)?;
            Ok(vec![Event::BirthdaySet(BirthdaySet {
                birthday: *birthday,
                set_at: *at,
            })])
        }
        Command::AwardReferralBonus {
            referee,
            points,
            lot_id,
            at,
            ..
        } => {
            let profile = tenant(state)?;
            // The referrer earned the bonus before any erasure: it is credited like any
            // points already owed (an erased customer's balance stays a fact).
            customer(state)?;
            decide_referral_award(state.customer, profile, *referee, *points, *lot_id, *at)
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
            take_available(state.customer, *points, *at, |consumed| {
                Event::RewardRedeemed(RewardRedeemed {
                    redemption_id: *redemption_id,
                    points: *points,
                    description: description.clone(),
                    consumed,
                    redeemed_at: *at,
                    reward_id: None,
                    code: None,
                })
            })
        }
        Command::CreateReward {
            reward_id,
            name,
            points_cost,
            terms,
            at,
        } => {
            tenant(state)?;
            check_reward(name, *points_cost, terms)?;
            if state.tenant.rewards.contains_key(reward_id) {
                return Err(Rejection::RewardAlreadyExists);
            }
            Ok(vec![Event::RewardCreated(RewardCreated {
                reward_id: *reward_id,
                name: name.clone(),
                points_cost: *points_cost,
                terms: terms.clone(),
                created_at: *at,
            })])
        }
        Command::UpdateReward {
            reward_id,
            name,
            points_cost,
            terms,
            at,
        } => {
            tenant(state)?;
            active_reward(state, *reward_id)?;
            check_reward(name, *points_cost, terms)?;
            let used = state.stock.used(*reward_id);
            if let Some(stock) = terms.stock.filter(|stock| *stock < used) {
                return Err(Rejection::StockBelowUsed { stock, used });
            }
            Ok(vec![Event::RewardUpdated(RewardUpdated {
                reward_id: *reward_id,
                name: name.clone(),
                points_cost: *points_cost,
                terms: terms.clone(),
                updated_at: *at,
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
            let profile = tenant(state)?;
            active_customer(state)?;
            let reward = active_reward(state, *reward_id)?;
            check_catalogue_rules(state, reward, *at)?;
            let expires_at = at
                .checked_add_signed(Duration::days(i64::from(profile.settings.hold_days)))
                .ok_or(Rejection::Overflow)?;
            take_available(state.customer, reward.points_cost, *at, |reserved| {
                Event::RewardHeld(RewardHeld {
                    redemption_id: *redemption_id,
                    reward_id: *reward_id,
                    description: reward.name.clone(),
                    code: code.to_string(),
                    points: reward.points_cost,
                    reserved,
                    held_at: *at,
                    expires_at,
                })
            })
        }
        Command::FulfilRedemption {
            redemption_id, at, ..
        } => {
            tenant(state)?;
            // An erased customer's redemption is still handed over: the points were spent
            // (or held) before the erasure, and the code carries no personal data.
            customer(state)?;
            let redemption = state
                .customer
                .redemptions
                .get(redemption_id)
                .ok_or(Rejection::RedemptionNotFound)?;
            if redemption.fulfilled_at.is_some() {
                return Err(Rejection::AlreadyFulfilled);
            }
            let Some(hold) = &redemption.hold else {
                return Ok(vec![Event::RedemptionFulfilled(RedemptionFulfilled {
                    redemption_id: *redemption_id,
                    fulfilled_at: *at,
                })]);
            };
            if hold.released.is_some() {
                return Err(Rejection::HoldReleased);
            }
            if *at >= hold.expires_at {
                return Err(Rejection::HoldExpired);
            }
            Ok(vec![Event::HoldFulfilled(HoldFulfilled {
                redemption_id: *redemption_id,
                points: redemption.points,
                consumed: hold.reserved.clone(),
                fulfilled_at: *at,
            })])
        }
        Command::CancelHold {
            redemption_id, at, ..
        } => {
            tenant(state)?;
            customer(state)?;
            let redemption = state
                .customer
                .redemptions
                .get(redemption_id)
                .ok_or(Rejection::RedemptionNotFound)?;
            let hold = redemption.hold.as_ref().ok_or(Rejection::NotAHold)?;
            if redemption.fulfilled_at.is_some() {
                return Err(Rejection::AlreadyFulfilled);
            }
            if hold.released.is_some() {
                return Err(Rejection::HoldReleased);
            }
            Ok(vec![Event::HoldReleased(HoldReleased {
                redemption_id: *redemption_id,
                points: redemption.points,
                released: hold.reserved.clone(),
                reason: HoldReleaseReason::Cancelled,
                released_at: *at,
            })])
        }
        Command::ExpireHolds { at, .. } => {
            customer(state)?;
            Ok(state
                .customer
                .open_holds()
                .filter_map(|r| Some((r, r.hold.as_ref()?)))
                .filter(|(_, hold)| hold.expires_at <= *at)
                .map(|(r, hold)| {
                    Event::HoldReleased(HoldReleased {
                        redemption_id: r.redemption_id,
                        points: r.points,
                        released: hold.reserved.clone(),
                        reason: HoldReleaseReason::Expired,
                        released_at: *at,
                    })
                })
                .collect())
        }
        Command::ExpirePoints { at, .. } => {
            customer(state)?;
            Ok(expire_due_lots(state.customer, *at))
        }
        Command::ActivatePendingPoints { at, .. } => {
            customer(state)?;
            let mut debt = state.customer.debt;
            let mut events = Vec::new();
            for lot in &state.customer.lots {
                if lot.pending_until.is_some_and(|until| until <= *at) {
                    events.push(Event::PointsActivated(PointsActivated {
                        lot_id: lot.lot_id,
                        points: lot.remaining,
                        activated_at: *at,
                    }));
                    events.extend(settle_debt(
                        &mut debt,
                        lot.lot_id,
                        lot.remaining,
                        lot.expires_at,
                        *at,
                    ));
                }
            }
            Ok(events)
        }
        Command::PublishTierScheme { scheme, at } => {
            tenant(state)?;
            scheme.check()?;
            Ok(vec![Event::TierSchemePublished(TierSchemePublished {
                scheme: scheme.clone(),
                published_at: *at,
            })])
        }
        Command::ReviewTier { at, .. } => {
            let profile = tenant(state)?;
            customer(state)?;
            Ok(review_tier(state.customer, profile, *at))
        }
        Command::ChangeProgrammeSettings { settings, at } => {
            let profile = tenant(state)?;
            check_settings(settings, profile.expiry_days)?;
            Ok(vec![Event::ProgrammeSettingsChanged(
                ProgrammeSettingsChanged {
                    settings: settings.clone(),
                    changed_at: *at,
                },
            )])
        }
        Command::RefundPurchase {
            refund_id,
            purchase_id,
            amount,
            reference,
            at,
            ..
        } => {
            let profile = tenant(state)?;
            // A refund is the vendor's fact about a past purchase: it is recorded for an
            // erased customer too.
            customer(state)?;
            decide_refund(
                state.customer,
                &profile.settings,
                RefundInput {
                    refund_id: *refund_id,
                    purchase_id: *purchase_id,
                    amount: *amount,
                    reference,
                    at: *at,
                },
            )
        }
        Command::AdjustPoints {
            adjustment_id,
            lot_id,
            points,
            reason,
            at,
            ..
        } => {
            let profile = tenant(state)?;
            active_customer(state)?;
            decide_adjustment(
                state.customer,
                profile,
                AdjustmentInput {
                    adjustment_id: *adjustment_id,
                    lot_id: *lot_id,
                    points: *points,
                    reason,
                    at: *at,
                },
            )
        }
    }
}

fn check_reward(name: &str, points_cost: Points, terms: &RewardTerms) -> Result<(), Rejection> {
    let chars = name.chars().count();
    if chars == 0 || chars > REWARD_NAME_CHARS_MAX || name.trim().is_empty() {
        return Err(Rejection::InvalidRewardName);
    }
    if !points_cost.is_positive() {
        return Err(Rejection::AmountNotPositive);
    }
    check_reward_terms(terms)
}

/// Validity, stock and the per-customer limit, in the order documented on [`Reward`].
fn check_catalogue_rules(
    state: LedgerState<'_>,
    reward: &Reward,
    at: DateTime<Utc>,
) -> Result<(), Rejection> {
    reward.check_valid_at(at)?;
    if let Some(stock) = reward.terms.stock {
        if state.stock.used(reward.reward_id) >= stock {
            return Err(Rejection::OutOfStock { stock });
        }
    }
    if let Some(limit) = reward.terms.per_customer_limit {
        if state.customer.units_of(reward.reward_id) >= limit {
            return Err(Rejection::PerCustomerLimitReached { limit });
        }
    }
    Ok(())
}

fn check_settings(settings: &ProgrammeSettings, expiry_days: u32) -> Result<(), Rejection> {
    if settings.time_zone.parse::<chrono_tz::Tz>().is_err() {
        return Err(Rejection::InvalidSettings(
            "time_zone must be an IANA time zone name such as Africa/Lagos",
        ));
    }
    if settings.pending_days > 0 && settings.pending_days >= expiry_days {
        return Err(Rejection::InvalidSettings(
            "pending_days must be shorter than the points' lifetime (expiry_days)",
        ));
    }
    if !(1..=HOLD_DAYS_MAX).contains(&settings.hold_days) {
        return Err(Rejection::InvalidSettings("hold_days must be 1 to 365"));
    }
    if settings.point_value.is_some_and(|v| v.value() < 0) {
        return Err(Rejection::InvalidSettings(
            "point_value must not be negative",
        ));
    }
    if let RefundPolicy::AllowDebt { limit } = settings.refund_policy {
        if !(0..=Points::COMMAND_MAX).contains(&limit.value()) {
            return Err(Rejection::InvalidSettings(
                "the debt limit must be 0 to 1000000000000 points",
            ));
        }
    }
    Ok(())
}

/// Newly spendable points of lot `lot_id` pay the debt first. Points already past their
/// date (`expires_at <= at`: a back-dated purchase, a lot activated late) are not
/// spendable and pay nothing: they expire, like any points due to expire.
fn settle_debt(
    debt: &mut Points,
    lot_id: LotId,
    points: Points,
    expires_at: DateTime<Utc>,
    at: DateTime<Utc>,
) -> Option<Event> {
    let settled = debt.value().min(points.value());
    if settled <= 0 || expires_at <= at {
        return None;
    }
    *debt = Points::new(debt.value() - settled);
    Some(Event::DebtSettled(DebtSettled {
        lot_id,
        points: Points::new(settled),
        settled_at: at,
    }))
}

struct RefundInput<'a> {
    refund_id: RefundId,
    purchase_id: PurchaseId,
    amount: MinorUnits,
    reference: &'a Option<String>,
    at: DateTime<Utc>,
}

/// The points a purchase's refunds owe in total once `refunded` of `amount` is refunded:
/// `floor(points × refunded / amount)`. Rounding down on the cumulative figure means a
/// partial refund never takes back more than its share, and the refund that completes the
/// purchase takes back exactly what is left: the refunds of a purchase add up to its points.
pub fn reversal_due(points: Points, refunded: MinorUnits, amount: MinorUnits) -> Points {
    if amount.value() <= 0 {
        return Points::ZERO;
    }
    let due =
        i128::from(points.value()) * i128::from(refunded.value()) / i128::from(amount.value());
    Points::new(i64::try_from(due).unwrap_or(i64::MAX))
}

/// Refunds `input.amount` of a purchase and takes back the points it owes, in the order
/// documented on [`Reversal`].
///
/// Points held for open reward holds are still the customer's (they are in the balance),
/// so a refund must not forgive them or put the customer in debt while they exist: when
/// the free points do not cover what is due, the refund first cancels the holds that
/// reserve points it can take (`HoldReleased`, reason `Cancelled`, before the
/// `PurchaseRefunded`): those reserving the purchase's own lot first, then the oldest, one
/// by one until the due is covered. Otherwise a hold placed before the refund and cancelled
/// after it would hand the refunded points back.
fn decide_refund(
    customer: &CustomerState,
    settings: &ProgrammeSettings,
    input: RefundInput<'_>,
) -> Result<Vec<Event>, Rejection> {
    if input.amount.value() <= 0 {
        return Err(Rejection::AmountNotPositive);
    }
    let record = customer
        .purchase_records
        .get(&input.purchase_id)
        .ok_or(Rejection::PurchaseNotFound)?;
    let refundable = MinorUnits::new(record.amount.value() - record.refunded.value());
    if input.amount > refundable {
        return Err(Rejection::RefundExceedsPurchase { refundable });
    }
    let refunded_after = MinorUnits::new(record.refunded.value() + input.amount.value());
    let due = Points::new(
        reversal_due(record.points, refunded_after, record.amount).value()
            - record.reversal_accounted.value(),
    );
    let mut events = Vec::new();
    let mut basis = std::borrow::Cow::Borrowed(customer);
    let mut taken = take_back(&basis, record, due, input.at);
    for (redemption_id, points) in holds_a_refund_may_cancel(customer, record.lot_id, input.at) {
        if taken.uncovered == 0 {
            break;
        }
        let released = customer
            .redemptions
            .get(&redemption_id)
            .and_then(|r| r.hold.as_ref())
            .map(|h| h.reserved.clone())
            .unwrap_or_default();
        let release = Event::HoldReleased(HoldReleased {
            redemption_id,
            points,
            released,
            reason: HoldReleaseReason::Cancelled,
            released_at: input.at,
        });
        basis.to_mut().apply(&release);
        events.push(release);
        taken = take_back(&basis, record, due, input.at);
    }
    let still = taken.uncovered;
    let debt = match settings.refund_policy {
        RefundPolicy::ClampAtZero => 0,
        RefundPolicy::AllowDebt { limit } => {
            still.min((limit.value() - customer.debt.value()).max(0))
        }
    };
    let clamped = still - debt;
    events.push(Event::PurchaseRefunded(PurchaseRefunded {
        refund_id: input.refund_id,
        purchase_id: input.purchase_id,
        amount: input.amount,
        reference: input.reference.clone(),
        refunded_at: input.at,
        reversal: Reversal {
            due,
            from_pending: Points::new(taken.from_pending),
            from_lots: taken.from_lots,
            waived_expired: Points::new(taken.waived_expired),
            debt: Points::new(debt),
            clamped: Points::new(clamped),
            policy: settings.refund_policy,
        },
    }));
    Ok(events)
}

/// What a refund can take back from the customer's points, before debt and clamping.
struct TakenBack {
    from_pending: i64,
    from_lots: Vec<LotDebit>,
    waived_expired: i64,
    /// What is left of the due: debt or clamped, by policy.
    uncovered: i64,
}

/// The purchase's own lot (its free points, pending or not), then what of that lot expired
/// and was not yet forgiven, then the free points of the other open lots, soonest-expiring
/// first.
fn take_back(
    customer: &CustomerState,
    record: &PurchaseRecord,
    due: Points,
    at: DateTime<Utc>,
) -> TakenBack {
    let mut still = due.value();
    let own_lot = record
        .lot_id
        .and_then(|id| customer.lots.iter().find(|lot| lot.lot_id == id));
    let mut from_pending = 0;
    let mut from_lots = Vec::new();
    if let Some(lot) = own_lot {
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
    let waived_expired = still
        .min(record.lot_expired.value() - record.waived.value())
        .max(0);
    still -= waived_expired;
    if still > 0 {
        let others: Vec<&Lot> = customer
            .lots
            .iter()
            .filter(|lot| Some(lot.lot_id) != record.lot_id && is_open(lot, at))
            .collect();
        let taken = consume_soonest_expiring(&others, Points::new(still));
        still -= taken.iter().map(|d| d.points.value()).sum::<i64>();
        from_lots.extend(taken);
    }
    TakenBack {
        from_pending,
        from_lots,
        waived_expired,
        uncovered: still,
    }
}

/// A lot whose free points can be spent (or taken back) at `at`.
fn is_open(lot: &Lot, at: DateTime<Utc>) -> bool {
    !lot.is_pending() && lot.expires_at > at
}

/// The open holds whose cancellation frees points a refund of the purchase with lot
/// `own_lot` can take (in its own lot, whatever its date, or in an open lot), in the order
/// a refund cancels them: those reserving the own lot first, then the oldest.
fn holds_a_refund_may_cancel(
    customer: &CustomerState,
    own_lot: Option<LotId>,
    at: DateTime<Utc>,
) -> Vec<(RedemptionId, Points)> {
    let takeable = |lot_id: LotId| {
        Some(lot_id) == own_lot
            || customer
                .lots
                .iter()
                .any(|lot| lot.lot_id == lot_id && is_open(lot, at))
    };
    let mut holds: Vec<(bool, RedemptionId, Points)> = customer
        .open_holds()
        .filter_map(|r| {
            let reserved = &r.hold.as_ref()?.reserved;
            if !reserved.iter().any(|d| takeable(d.lot_id)) {
                return None;
            }
            let reserves_own = reserved.iter().any(|d| Some(d.lot_id) == own_lot);
            Some((!reserves_own, r.redemption_id, r.points))
        })
        .collect();
    // Own-lot holds first (`false` sorts first), then by id: UUIDv7, creation order.
    holds.sort();
    holds
        .into_iter()
        .map(|(_, redemption_id, points)| (redemption_id, points))
        .collect()
}

struct AdjustmentInput<'a> {
    adjustment_id: AdjustmentId,
    lot_id: LotId,
    points: Points,
    reason: &'a str,
    at: DateTime<Utc>,
}

fn decide_adjustment(
    customer: &CustomerState,
    profile: &TenantProfile,
    input: AdjustmentInput<'_>,
) -> Result<Vec<Event>, Rejection> {
    let chars = input.reason.chars().count();
    if chars == 0 || chars > REASON_CHARS_MAX || input.reason.trim().is_empty() {
        return Err(Rejection::InvalidReason);
    }
    let points = input.points.value();
    if points == 0 {
        return Err(Rejection::AdjustmentZero);
    }
    if points.unsigned_abs() > Points::COMMAND_MAX.unsigned_abs() {
        return Err(Rejection::Overflow);
    }
    let adjusted = |lot, consumed| {
        Event::PointsAdjusted(PointsAdjusted {
            adjustment_id: input.adjustment_id,
            points: input.points,
            reason: input.reason.to_owned(),
            lot,
            consumed,
            adjusted_at: input.at,
        })
    };
    if points < 0 {
        return take_available(customer, Points::new(-points), input.at, |consumed| {
            adjusted(None, consumed)
        });
    }
    customer
        .balance
        .checked_add(input.points)
        .ok_or(Rejection::Overflow)?;
    customer
        .adjusted
        .checked_add(input.points)
        .ok_or(Rejection::Overflow)?;
    let expires_at = input
        .at
        .checked_add_signed(Duration::days(i64::from(profile.expiry_days)))
        .ok_or(Rejection::Overflow)?;
    let mut debt = customer.debt;
    let mut events = vec![adjusted(
        Some(AdjustmentLot {
            lot_id: input.lot_id,
            expires_at,
            point_value: profile.settings.point_value,
        }),
        Vec::new(),
    )];
    events.extend(settle_debt(
        &mut debt,
        input.lot_id,
        input.points,
        expires_at,
        input.at,
    ));
    Ok(events)
}

/// The referrer's bonus for one referee: refused when already awarded (the referral
/// process treats that refusal as done), else a lot like a positive adjustment's, counted
/// as earned, that pays any debt first.
fn decide_referral_award(
    customer: &CustomerState,
    profile: &TenantProfile,
    referee: CustomerId,
    points: Points,
    lot_id: LotId,
    at: DateTime<Utc>,
) -> Result<Vec<Event>, Rejection> {
    if customer.referees_rewarded.contains(&referee) {
        return Err(Rejection::ReferralAlreadyAwarded);
    }
    if customer.profile.as_ref().map(|p| p.customer_id) == Some(referee) {
        return Err(Rejection::SelfReferral);
    }
    if !points.is_positive() {
        return Err(Rejection::AmountNotPositive);
    }
    if points.value() > Points::COMMAND_MAX {
        return Err(Rejection::Overflow);
    }
    customer
        .balance
        .checked_add(points)
        .ok_or(Rejection::Overflow)?;
    customer
        .earned
        .checked_add(points)
        .ok_or(Rejection::Overflow)?;
    let expires_at = at
        .checked_add_signed(Duration::days(i64::from(profile.expiry_days)))
        .ok_or(Rejection::Overflow)?;
    let mut debt = customer.debt;
    let mut events = vec![Event::ReferralBonusAwarded(ReferralBonusAwarded {
        referee,
        lot_id,
        points,
        awarded_at: at,
        expires_at,
        point_value: profile.settings.point_value,
    })];
    events.extend(settle_debt(&mut debt, lot_id, points, expires_at, at));
    Ok(events)
}

/// Whether the purchase's local date is the customer's birthday, and whether a birthday
/// bonus was already earned in the purchase's local year (both in the tenant's time zone
/// as it is now).
fn birthday_facts(
    customer: &CustomerState,
    tz: chrono_tz::Tz,
    local: chrono::NaiveDateTime,
) -> (bool, bool) {
    let today = customer
        .birthday
        .is_some_and(|birthday| birthday.falls_on(local.date()));
    let this_year = customer
        .birthday_bonuses
        .iter()
        .any(|earned_at| local_time(tz, *earned_at).year() == local.year());
    (today, this_year)
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
    let tz = profile.time_zone();
    let local = local_time(tz, input.occurred_at);
    // The tier before this purchase (its own upgrade applies from the next one); a customer
    // without one is at the ladder's base.
    let base_tier = profile
        .tier_scheme
        .as_ref()
        .map(|scheme| scheme.tiers[0].id.as_str());
    let tier = state.customer.tier.as_deref().or(base_tier);
    // Only a daily cap reads what was earned today, and folding the customer's purchases is
    // the purchase path's one O(purchases) step: skipped for sets without one. The day's
    // instants once, then a comparison per purchase, rather than a time-zone conversion of
    // every earlier purchase on the single writer task.
    let has_daily_cap = rule_set
        .rules()
        .iter()
        .any(|rule| matches!(rule.kind, crate::rules::RuleKind::DailyCap { .. }));
    let earned_today = if has_daily_cap {
        let today = local_day(tz, local.date());
        state
            .customer
            .purchase_records
            .values()
            .filter(|r| today.contains(&r.occurred_at))
            .fold(Points::ZERO, |sum, r| {
                Points::new(sum.value().saturating_add(r.points.value()))
            })
    } else {
        Points::ZERO
    };
    let (birthday_today, birthday_bonus_this_year) = birthday_facts(state.customer, tz, local);
    let facts = PurchaseFacts {
        amount: input.amount,
        purchase_number,
        local_time: local,
        line_items: input.line_items,
        tier,
        earned_today,
        birthday_today,
        birthday_bonus_this_year,
        referred: state.customer.referred_by.is_some(),
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
            point_value: profile.settings.point_value,
        }));
        let pending_days = profile.settings.pending_days;
        if pending_days > 0 {
            let pending_until = input
                .occurred_at
                .checked_add_signed(Duration::days(i64::from(pending_days)))
                .ok_or(Rejection::Overflow)?;
            events.push(Event::PointsPending(PointsPending {
                lot_id: input.lot_id,
                points: earning.total,
                pending_until,
            }));
        } else {
            let mut debt = state.customer.debt;
            events.extend(settle_debt(
                &mut debt,
                input.lot_id,
                earning.total,
                expires_at,
                input.at,
            ));
        }
    }
    if let Some(referrer) = state.customer.referred_by {
        if earning.referrer_bonus.is_positive() {
            events.push(Event::ReferralQualified(ReferralQualified {
                referrer,
                referrer_bonus: earning.referrer_bonus,
                purchase_id: input.purchase_id,
                qualified_at: input.at,
            }));
        }
    }
    if let Some(scheme) = &profile.tier_scheme {
        let this_purchase = Qualifying {
            occurred_at: input.occurred_at,
            net_amount: input.amount,
            net_points: earning.total.value(),
        };
        events.extend(upgrade(
            state.customer,
            scheme,
            profile.time_zone(),
            this_purchase,
            input.at,
        ));
    }
    Ok(events)
}

fn qualifying(customer: &CustomerState) -> impl Iterator<Item = Qualifying> + '_ {
    customer.purchase_records.values().map(|r| Qualifying {
        occurred_at: r.occurred_at,
        net_amount: MinorUnits::new(r.amount.value() - r.refunded.value()),
        net_points: r.points.value() - r.reversal_accounted.value(),
    })
}

/// The upgrade a purchase earns, if its window (ending now, this purchase included) reaches
/// a tier above the customer's.
fn upgrade(
    customer: &CustomerState,
    scheme: &TierScheme,
    tz: chrono_tz::Tz,
    this_purchase: Qualifying,
    at: DateTime<Utc>,
) -> Option<Event> {
    let end = at.max(this_purchase.occurred_at);
    let value = qualifying_value(
        scheme.basis,
        qualifying(customer).chain(std::iter::once(this_purchase)),
        scheme.window_start(end, tz),
        end,
    );
    let reached = scheme.qualified_rank(value);
    if reached <= scheme.rank(customer.tier.as_deref()) {
        return None;
    }
    Some(Event::TierChanged(TierChanged {
        from: customer.tier.clone(),
        to: scheme.tiers[reached].id.clone(),
        to_name: scheme.tiers[reached].name.clone(),
        direction: TierDirection::Upgrade,
        qualifying_value: value,
        review_at: Some(scheme.review_after(at, tz)),
        changed_at: at,
    }))
}

/// The reviews due at `at`: each period that ended (plus grace) keeps the tier or lowers it
/// to what the period's window qualifies for. Several missed periods give one event each.
fn review_tier(customer: &CustomerState, profile: &TenantProfile, at: DateTime<Utc>) -> Vec<Event> {
    let Some(scheme) = &profile.tier_scheme else {
        return Vec::new();
    };
    let tz = profile.time_zone();
    let grace = Duration::days(i64::from(scheme.grace_days));
    let mut tier = customer.tier.clone();
    let mut review_at = customer.tier_review_at;
    let mut events = Vec::new();
    // A bound on periods reviewed at once: a customer unseen for 50 periods is reviewed
    // over several runs rather than in one unbounded decision.
    for _ in 0..50 {
        let Some(due) = review_at.filter(|due| *due + grace <= at) else {
            break;
        };
        let value = qualifying_value(
            scheme.basis,
            qualifying(customer),
            scheme.window_start(due, tz),
            due,
        );
        let reached = scheme.qualified_rank(value);
        let current = scheme.rank(tier.as_deref());
        let next_review = scheme.review_after(due, tz);
        if reached < current {
            let to = scheme.tiers[reached].id.clone();
            let next = (reached > 0).then_some(next_review);
            events.push(Event::TierChanged(TierChanged {
                from: tier.clone(),
                to: to.clone(),
                to_name: scheme.tiers[reached].name.clone(),
                direction: TierDirection::Downgrade,
                qualifying_value: value,
                review_at: next,
                changed_at: at,
            }));
            tier = Some(to);
            review_at = next;
        } else {
            let kept = tier
                .clone()
                .unwrap_or_else(|| scheme.tiers[current].id.clone());
            events.push(Event::TierRetained(TierRetained {
                tier: kept,
                qualifying_value: value,
                review_at: next_review,
                reviewed_at: at,
            }));
            review_at = Some(next_review);
        }
    }
    events
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

/// Takes `points` of what is available at `at`, for a redemption, a hold or a negative
/// adjustment: lots already past their date are not available, so they expire first, in
/// the same decision (the customer never spends points that were due to expire); then the
/// free points of the soonest-expiring lots are taken. `taken` builds the event from the
/// debits (or reservations).
fn take_available(
    customer: &CustomerState,
    points: Points,
    at: DateTime<Utc>,
    taken: impl FnOnce(Vec<LotDebit>) -> Event,
) -> Result<Vec<Event>, Rejection> {
    let available = customer.available_at(at);
    if available < points {
        return Err(Rejection::InsufficientPoints {
            available: Points::new(available.value().max(0)),
            requested: points,
        });
    }
    let open: Vec<&Lot> = customer
        .lots
        .iter()
        .filter(|lot| !lot.is_pending() && lot.expires_at > at)
        .collect();
    let mut events = expire_due_lots(customer, at);
    events.push(taken(consume_soonest_expiring(&open, points)));
    Ok(events)
}

/// Expires the free part of every non-pending lot whose date has passed. Points held for
/// an open hold do not expire while held; once the hold is released they expire at the
/// next run.
fn expire_due_lots(customer: &CustomerState, at: DateTime<Utc>) -> Vec<Event> {
    customer
        .lots
        .iter()
        .filter(|lot| !lot.is_pending() && lot.expires_at <= at && lot.free().is_positive())
        .map(|lot| {
            Event::PointsExpired(PointsExpired {
                lot_id: lot.lot_id,
                points: lot.free(),
                expired_at: at,
            })
        })
        .collect()
}

/// Takes `points` from the free points of the lots that expire soonest; among lots
/// expiring together, the oldest first. Takes at most what the lots hold.
fn consume_soonest_expiring(lots: &[&Lot], points: Points) -> Vec<LotDebit> {
    let mut order: Vec<(usize, &Lot)> = lots.iter().copied().enumerate().collect();
    order.sort_by_key(|(index, lot)| (lot.expires_at, *index));
    let mut still_needed = points.value();
    let mut debits = Vec::new();
    for (_, lot) in order {
        if still_needed == 0 {
            break;
        }
        let taken = still_needed.min(lot.free().value());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{PhoneIndex, WrappedDataKey};
    use crate::events::SealedPersonalData;
    use crate::ids::{RefundId, RewardId};
    use crate::rules::Rule;
    use crate::rules::RuleKind;
    use crate::RedemptionCode;
    use chrono::TimeZone;
    use uuid::Uuid;

    struct Ledger {
        tenant: TenantState,
        customer: CustomerState,
        /// Kept in step like the writer keeps `reward_stock`.
        stock: RewardStock,
        at: DateTime<Utc>,
    }

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    const CUSTOMER: u128 = 2;
    const REWARD: u128 = 3;

    impl Ledger {
        /// A tenant paying one point per 300 minor units, clamping refunds at zero, with a
        /// reward of 10 points, and one enrolled customer.
        fn new() -> Ledger {
            let mut ledger = Ledger {
                tenant: TenantState::default(),
                customer: CustomerState::default(),
                stock: RewardStock::new(),
                at: Utc.with_ymd_and_hms(2026, 6, 1, 10, 0, 0).unwrap(),
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
            let at = ledger.at;
            ledger.run(Command::RegisterTenant {
                tenant_id: TenantId::from_uuid(id(1)),
                name: "Suya Spot".into(),
                currency: Currency::NGN,
                expiry_days: 30,
                rule_set,
                at,
            });
            ledger.run(Command::CreateReward {
                reward_id: RewardId::from_uuid(id(REWARD)),
                name: "Jollof".into(),
                points_cost: Points::new(10),
                terms: RewardTerms::default(),
                at,
            });
            ledger.run(Command::EnrolCustomer {
                customer_id: CustomerId::from_uuid(id(CUSTOMER)),
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
                referral_code: crate::ReferralCode::from_random_bytes([0; 5]),
                referred_by: None,
                at,
            });
            ledger
        }

        fn decide(&self, command: &Command) -> Result<Vec<Event>, Rejection> {
            decide(
                LedgerState {
                    tenant: &self.tenant,
                    customer: &self.customer,
                    stock: &self.stock,
                },
                command,
            )
        }

        fn run(&mut self, command: Command) -> Vec<Event> {
            let events = self.decide(&command).expect("accepted");
            for (reward_id, delta) in stock_changes(&self.customer, &events) {
                self.stock.apply(reward_id, delta);
            }
            for event in &events {
                self.tenant.apply(event);
                self.customer.apply(event);
            }
            events
        }

        /// A purchase of 3000 minor units (10 points) with purchase id `n` and lot `n + 1`.
        fn buy(&mut self, n: u128) {
            self.run(Command::LogPurchase {
                customer_id: CustomerId::from_uuid(id(CUSTOMER)),
                purchase_id: PurchaseId::from_uuid(id(n)),
                lot_id: LotId::from_uuid(id(n + 1)),
                amount: MinorUnits::new(3000),
                line_items: Vec::new(),
                reference: None,
                occurred_at: None,
                at: self.at,
            });
        }

        fn hold(&mut self, redemption: u128) {
            self.run(Command::RedeemReward {
                customer_id: CustomerId::from_uuid(id(CUSTOMER)),
                redemption_id: RedemptionId::from_uuid(id(redemption)),
                reward_id: RewardId::from_uuid(id(REWARD)),
                code: RedemptionCode::from_random_bytes([1, 2, 3, 4, 5]),
                at: self.at,
            });
        }

        fn refund_in_full(&self, purchase: u128) -> Command {
            Command::RefundPurchase {
                customer_id: CustomerId::from_uuid(id(CUSTOMER)),
                refund_id: RefundId::from_uuid(id(purchase + 50)),
                purchase_id: PurchaseId::from_uuid(id(purchase)),
                amount: MinorUnits::new(3000),
                reference: None,
                at: self.at,
            }
        }

        fn cancel(&self, redemption: u128) -> Command {
            Command::CancelHold {
                customer_id: CustomerId::from_uuid(id(CUSTOMER)),
                redemption_id: RedemptionId::from_uuid(id(redemption)),
                at: self.at,
            }
        }
    }

    /// Regression: the points of a purchase held for a reward used to survive the
    /// purchase's refund (clamped, "forgiven", although still in the balance) and came
    /// back spendable when the hold was cancelled. The refund now cancels the hold and
    /// takes the points.
    #[test]
    fn a_refund_cancels_the_hold_on_the_refunded_points_instead_of_forgiving_them() {
        let mut ledger = Ledger::new();
        ledger.buy(10);
        ledger.hold(20);
        let events = ledger.run(ledger.refund_in_full(10));
        let [Event::HoldReleased(released), Event::PurchaseRefunded(refunded)] = &events[..] else {
            panic!("the hold is released, then the purchase refunded: {events:#?}");
        };
        assert_eq!(released.redemption_id, RedemptionId::from_uuid(id(20)));
        assert_eq!(released.reason, HoldReleaseReason::Cancelled);
        assert_eq!(released.points, Points::new(10));
        assert_eq!(refunded.reversal.from_lots_total(), Points::new(10));
        assert_eq!(refunded.reversal.clamped, Points::ZERO);
        assert_eq!(
            (ledger.customer.balance, ledger.customer.held),
            (Points::ZERO, Points::ZERO)
        );
        assert_eq!(
            ledger.decide(&ledger.cancel(20)),
            Err(Rejection::HoldReleased)
        );
        assert_eq!(ledger.customer.available_at(ledger.at), Points::ZERO);
    }

    /// Regression: points already past their date (here a purchase back-dated beyond the
    /// points' lifetime) used to pay the customer's debt, so expired points bought something.
    /// They now pay nothing and expire.
    #[test]
    fn points_past_their_date_do_not_settle_debt() {
        let mut ledger = Ledger::new();
        let at = ledger.at;
        ledger.run(Command::ChangeProgrammeSettings {
            settings: ProgrammeSettings {
                refund_policy: RefundPolicy::AllowDebt {
                    limit: Points::new(10),
                },
                ..ProgrammeSettings::default()
            },
            at,
        });
        ledger.buy(10);
        ledger.run(Command::RedeemPoints {
            customer_id: CustomerId::from_uuid(id(CUSTOMER)),
            redemption_id: RedemptionId::from_uuid(id(20)),
            points: Points::new(10),
            description: "airtime".into(),
            at,
        });
        ledger.run(ledger.refund_in_full(10));
        assert_eq!(ledger.customer.debt, Points::new(10));

        let back_dated = |purchase: u128, days: i64| Command::LogPurchase {
            customer_id: CustomerId::from_uuid(id(CUSTOMER)),
            purchase_id: PurchaseId::from_uuid(id(purchase)),
            lot_id: LotId::from_uuid(id(purchase + 1)),
            amount: MinorUnits::new(3000),
            line_items: Vec::new(),
            reference: None,
            occurred_at: Some(at - Duration::days(days)),
            at,
        };
        // 30 days old: the lot is born at its expiry date.
        let events = ledger.run(back_dated(30, 30));
        assert!(
            !events.iter().any(|e| matches!(e, Event::DebtSettled(_))),
            "expired points settled debt: {events:#?}"
        );
        assert_eq!(ledger.customer.debt, Points::new(10));
        // 29 days old: still spendable for a day, so it pays.
        let events = ledger.run(back_dated(40, 29));
        assert!(events.iter().any(|e| matches!(e, Event::DebtSettled(_))));
        assert_eq!(ledger.customer.debt, Points::ZERO);
    }

    /// A hold the refund does not need is left alone: free points are taken first.
    #[test]
    fn a_refund_covered_by_free_points_leaves_holds_open() {
        let mut ledger = Ledger::new();
        ledger.buy(10);
        ledger.buy(30);
        ledger.hold(20); // reserves lot 11, the first to expire (opened first)
        let events = ledger.run(ledger.refund_in_full(10));
        let [Event::PurchaseRefunded(refunded)] = &events[..] else {
            panic!("no hold is cancelled: {events:#?}");
        };
        assert_eq!(
            refunded.reversal.from_lots,
            vec![LotDebit {
                lot_id: LotId::from_uuid(id(31)),
                points: Points::new(10),
            }]
        );
        assert_eq!(ledger.customer.held, Points::new(10));
        assert_eq!(ledger.customer.balance, Points::new(10));
    }

    impl Ledger {
        fn update(&self, terms: RewardTerms) -> Command {
            Command::UpdateReward {
                reward_id: RewardId::from_uuid(id(REWARD)),
                name: "Jollof".into(),
                points_cost: Points::new(10),
                terms,
                at: self.at,
            }
        }

        fn redeem(&self, redemption: u128) -> Command {
            Command::RedeemReward {
                customer_id: CustomerId::from_uuid(id(CUSTOMER)),
                redemption_id: RedemptionId::from_uuid(id(redemption)),
                reward_id: RewardId::from_uuid(id(REWARD)),
                code: RedemptionCode::from_random_bytes([1, 2, 3, 4, 5]),
                at: self.at,
            }
        }
    }

    mod catalogue {
        use super::*;

        #[test]
        fn a_reward_outside_its_validity_window_is_refused_either_side() {
            let mut ledger = Ledger::new();
            ledger.buy(10);
            let from = ledger.at + Duration::days(1);
            let until = ledger.at + Duration::days(2);
            ledger.run(ledger.update(RewardTerms {
                valid_from: Some(from),
                valid_until: Some(until),
                ..RewardTerms::default()
            }));
            assert_eq!(
                ledger.decide(&ledger.redeem(20)),
                Err(Rejection::RewardNotYetValid { valid_from: from })
            );
            ledger.at = until;
            assert_eq!(
                ledger.decide(&ledger.redeem(20)),
                Err(Rejection::RewardNoLongerValid { valid_until: until })
            );
            ledger.at = from;
            ledger.run(ledger.redeem(20));
            assert_eq!(ledger.customer.held, Points::new(10));
        }

        #[test]
        fn the_per_customer_limit_counts_open_and_fulfilled_holds_not_released_ones() {
            let mut ledger = Ledger::new();
            for purchase in [10, 30, 50, 70] {
                ledger.buy(purchase);
            }
            ledger.run(ledger.update(RewardTerms {
                per_customer_limit: Some(2),
                ..RewardTerms::default()
            }));
            ledger.run(ledger.redeem(100));
            ledger.run(ledger.redeem(101));
            let limit = Err(Rejection::PerCustomerLimitReached { limit: 2 });
            assert_eq!(ledger.decide(&ledger.redeem(102)), limit);
            ledger.run(Command::FulfilRedemption {
                customer_id: CustomerId::from_uuid(id(CUSTOMER)),
                redemption_id: RedemptionId::from_uuid(id(100)),
                at: ledger.at,
            });
            assert_eq!(ledger.decide(&ledger.redeem(102)), limit);
            ledger.run(ledger.cancel(101));
            assert_eq!(ledger.customer.units_of(RewardId::from_uuid(id(REWARD))), 1);
            ledger.run(ledger.redeem(102));
        }

        #[test]
        fn stock_counts_holds_across_customers_and_a_released_hold_returns_its_unit() {
            let mut ledger = Ledger::new();
            for purchase in [10, 30, 50] {
                ledger.buy(purchase);
            }
            let reward = RewardId::from_uuid(id(REWARD));
            ledger.run(ledger.update(RewardTerms {
                stock: Some(2),
                ..RewardTerms::default()
            }));
            // A unit used by another customer, as the writer would supply it.
            ledger.stock.apply(reward, 1);
            ledger.run(ledger.redeem(100));
            assert_eq!(ledger.stock.used(reward), 2);
            assert_eq!(
                ledger.decide(&ledger.redeem(101)),
                Err(Rejection::OutOfStock { stock: 2 })
            );
            ledger.run(ledger.cancel(100));
            assert_eq!(ledger.stock.used(reward), 1);
            ledger.run(ledger.redeem(101));
            // Fulfilment keeps the unit.
            ledger.run(Command::FulfilRedemption {
                customer_id: CustomerId::from_uuid(id(CUSTOMER)),
                redemption_id: RedemptionId::from_uuid(id(101)),
                at: ledger.at,
            });
            assert_eq!(ledger.stock.used(reward), 2);
            let tenant_reward = &ledger.tenant.rewards[&reward];
            assert_eq!(tenant_reward.stock_remaining(&ledger.stock), Some(0));
        }

        #[test]
        fn an_expired_or_refund_cancelled_hold_returns_its_unit() {
            let mut ledger = Ledger::new();
            ledger.buy(10);
            let reward = RewardId::from_uuid(id(REWARD));
            ledger.hold(20);
            assert_eq!(ledger.stock.used(reward), 1);
            ledger.run(ledger.refund_in_full(10));
            assert_eq!(ledger.stock.used(reward), 0);
            ledger.buy(30);
            ledger.hold(40);
            ledger.at += Duration::days(15);
            ledger.run(Command::ExpireHolds {
                customer_id: CustomerId::from_uuid(id(CUSTOMER)),
                at: ledger.at,
            });
            assert_eq!(ledger.stock.used(reward), 0);
        }

        #[test]
        fn an_update_may_not_set_the_stock_below_the_units_used() {
            let mut ledger = Ledger::new();
            ledger.buy(10);
            ledger.buy(30);
            ledger.hold(20);
            ledger.hold(40);
            let stock = |units| RewardTerms {
                stock: Some(units),
                ..RewardTerms::default()
            };
            assert_eq!(
                ledger.decide(&ledger.update(stock(1))),
                Err(Rejection::StockBelowUsed { stock: 1, used: 2 })
            );
            ledger.run(ledger.update(stock(2)));
            let reward = &ledger.tenant.rewards[&RewardId::from_uuid(id(REWARD))];
            assert_eq!(reward.terms.stock, Some(2));
            assert!(reward.updated_at.is_some());
        }

        #[test]
        fn an_update_of_a_retired_or_unknown_reward_is_refused() {
            let mut ledger = Ledger::new();
            let mut unknown = ledger.update(RewardTerms::default());
            if let Command::UpdateReward { reward_id, .. } = &mut unknown {
                *reward_id = RewardId::from_uuid(id(999));
            }
            assert_eq!(ledger.decide(&unknown), Err(Rejection::RewardNotFound));
            let at = ledger.at;
            ledger.run(Command::RetireReward {
                reward_id: RewardId::from_uuid(id(REWARD)),
                at,
            });
            assert_eq!(
                ledger.decide(&ledger.update(RewardTerms::default())),
                Err(Rejection::RewardRetired)
            );
        }

        #[test]
        fn bad_terms_are_refused_naming_the_field() {
            let ledger = Ledger::new();
            let at = ledger.at;
            let cases: Vec<(RewardTerms, &str)> = vec![
                (
                    RewardTerms {
                        description: Some("x".repeat(73)),
                        ..RewardTerms::default()
                    },
                    "description",
                ),
                (
                    RewardTerms {
                        description: Some("  ".into()),
                        ..RewardTerms::default()
                    },
                    "description",
                ),
                (
                    RewardTerms {
                        description: Some("two\nlines".into()),
                        ..RewardTerms::default()
                    },
                    "description",
                ),
                (
                    RewardTerms {
                        image_url: Some("http://example.com/a.jpg".into()),
                        ..RewardTerms::default()
                    },
                    "image_url",
                ),
                (
                    RewardTerms {
                        image_url: Some("https:///a.jpg".into()),
                        ..RewardTerms::default()
                    },
                    "image_url",
                ),
                (
                    RewardTerms {
                        image_url: Some(format!("https://example.com/{}", "a".repeat(2048))),
                        ..RewardTerms::default()
                    },
                    "image_url",
                ),
                (
                    RewardTerms {
                        valid_from: Some(at),
                        valid_until: Some(at),
                        ..RewardTerms::default()
                    },
                    "valid_until",
                ),
                (
                    RewardTerms {
                        stock: Some(REWARD_STOCK_MAX + 1),
                        ..RewardTerms::default()
                    },
                    "stock",
                ),
                (
                    RewardTerms {
                        per_customer_limit: Some(0),
                        ..RewardTerms::default()
                    },
                    "per_customer_limit",
                ),
            ];
            for (terms, field) in cases {
                let Err(Rejection::InvalidRewardTerms { field: named, .. }) =
                    ledger.decide(&ledger.update(terms.clone()))
                else {
                    panic!("accepted: {terms:?}");
                };
                assert_eq!(named, field, "{terms:?}");
            }
            let longest = RewardTerms {
                description: Some("é".repeat(72)),
                image_url: Some(format!("https://example.com/{}", "a".repeat(2028))),
                stock: Some(0),
                per_customer_limit: Some(REWARD_PER_CUSTOMER_LIMIT_MAX),
                ..RewardTerms::default()
            };
            assert!(ledger.decide(&ledger.update(longest)).is_ok());
        }
    }
}
