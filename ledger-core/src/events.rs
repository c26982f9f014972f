//! The facts of the ledger. An event records results (points computed, rule-set version,
//! breakdown, lots consumed), never inputs to be re-evaluated, so a replay is exact even
//! after the tenant's configuration has changed.
//!
//! These structs are the MessagePack wire format (see [`crate::codec`]): changing one is a
//! compatibility decision. Add a new version and an upcaster; never edit a published shape.

use crate::amounts::{Currency, MinorUnits, Points};
use crate::ids::{
    AdjustmentId, CustomerId, EventId, LotId, PurchaseId, RedemptionId, RefundId, RewardId,
    TenantId,
};
use crate::people::Birthday;
use crate::rules::{RulePoints, RuleSet};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    TenantRegistered(TenantRegistered),
    RuleSetPublished(RuleSetPublished),
    CustomerEnrolled(CustomerEnrolled),
    PurchaseLogged(PurchaseLogged),
    PointsEarned(PointsEarned),
    RewardRedeemed(RewardRedeemed),
    PointsExpired(PointsExpired),
    CustomerErased(CustomerErased),
    RewardCreated(RewardCreated),
    RewardRetired(RewardRetired),
    RedemptionFulfilled(RedemptionFulfilled),
    ProgrammeSettingsChanged(ProgrammeSettingsChanged),
    PointsPending(PointsPending),
    PointsActivated(PointsActivated),
    PurchaseRefunded(PurchaseRefunded),
    PointsAdjusted(PointsAdjusted),
    DebtSettled(DebtSettled),
    RewardHeld(RewardHeld),
    HoldFulfilled(HoldFulfilled),
    HoldReleased(HoldReleased),
    TierSchemePublished(TierSchemePublished),
    TierChanged(TierChanged),
    TierRetained(TierRetained),
    RewardUpdated(RewardUpdated),
    BirthdaySet(BirthdaySet),
    ReferralQualified(ReferralQualified),
    ReferralBonusAwarded(ReferralBonusAwarded),
}

impl Event {
    /// The stable type name stored beside the payload.
    pub fn type_name(&self) -> &'static str {
        match self {
            Event::TenantRegistered(_) => "TenantRegistered",
            Event::RuleSetPublished(_) => "RuleSetPublished",
            Event::CustomerEnrolled(_) => "CustomerEnrolled",
            Event::PurchaseLogged(_) => "PurchaseLogged",
            Event::PointsEarned(_) => "PointsEarned",
            Event::RewardRedeemed(_) => "RewardRedeemed",
            Event::PointsExpired(_) => "PointsExpired",
            Event::CustomerErased(_) => "CustomerErased",
            Event::RewardCreated(_) => "RewardCreated",
            Event::RewardRetired(_) => "RewardRetired",
            Event::RedemptionFulfilled(_) => "RedemptionFulfilled",
            Event::ProgrammeSettingsChanged(_) => "ProgrammeSettingsChanged",
            Event::PointsPending(_) => "PointsPending",
            Event::PointsActivated(_) => "PointsActivated",
            Event::PurchaseRefunded(_) => "PurchaseRefunded",
            Event::PointsAdjusted(_) => "PointsAdjusted",
            Event::DebtSettled(_) => "DebtSettled",
            Event::RewardHeld(_) => "RewardHeld",
            Event::HoldFulfilled(_) => "HoldFulfilled",
            Event::HoldReleased(_) => "HoldReleased",
            Event::TierSchemePublished(_) => "TierSchemePublished",
            Event::TierChanged(_) => "TierChanged",
            Event::TierRetained(_) => "TierRetained",
            Event::RewardUpdated(_) => "RewardUpdated",
            Event::BirthdaySet(_) => "BirthdaySet",
            Event::ReferralQualified(_) => "ReferralQualified",
            Event::ReferralBonusAwarded(_) => "ReferralBonusAwarded",
        }
    }

    /// The signed change this event makes to a customer's posted balance (what the
    /// customer owns, pending points excluded, open holds included). A lot that opens
    /// pending is followed by its `PointsPending`, which takes the points back out.
    pub fn points_delta(&self) -> Points {
        let minus = |p: Points| Points::new(-p.value());
        match self {
            Event::PointsEarned(e) => e.points,
            Event::PointsPending(e) => minus(e.points),
            Event::PointsActivated(e) => e.points,
            Event::RewardRedeemed(e) => minus(e.points),
            Event::HoldFulfilled(e) => minus(e.points),
            Event::PointsExpired(e) => minus(e.points),
            Event::PurchaseRefunded(e) => minus(e.reversal.from_balance()),
            Event::PointsAdjusted(e) => e.points,
            Event::ReferralBonusAwarded(e) => e.points,
            _ => Points::ZERO,
        }
    }
}

/// Current shape (version 2): the rule set is of the v2 rules engine (rules with ids,
/// priorities, stacking and windows); version 1 held the three kinds of the first engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantRegistered {
    pub tenant_id: TenantId,
    pub name: String,
    pub currency: Currency,
    /// Lifetime of a lot, in days from the purchase.
    pub expiry_days: u32,
    pub rule_set: RuleSet,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub registered_at: DateTime<Utc>,
}

/// Current shape (version 2), like [`TenantRegistered`]'s rule set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSetPublished {
    pub rule_set: RuleSet,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub published_at: DateTime<Utc>,
}

/// A customer's personal data (phone number, name) encrypted under the customer's own data
/// key (AES-256-GCM, see the `vault` crate). The ledger never sees the plaintext: it stores
/// and replays these bytes, and destroying the data key (erasure) makes them unreadable
/// everywhere they were copied (event table, JetStream, backups) at once.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedPersonalData {
    #[serde(with = "serde_bytes")]
    pub nonce: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for SealedPersonalData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealedPersonalData({} bytes)", self.ciphertext.len())
    }
}

/// Current shape (version 3): with the birthday given at enrolment, the customer's own
/// referral code and the referrer whose code the customer enrolled with. Version 2 had none
/// of the three (read with all absent); version 1 carried the phone number in plain text
/// and is read as version 2 without personal data (only development databases from before
/// the tenancy issue hold any).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerEnrolled {
    pub customer_id: CustomerId,
    pub personal_data: Option<SealedPersonalData>,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub enrolled_at: DateTime<Utc>,
    /// Month and day, no year (see docs/PROGRAMME.md for why it is in clear).
    #[serde(default)]
    pub birthday: Option<Birthday>,
    /// The customer's own referral code, canonical form (`people::ReferralCode`).
    #[serde(default)]
    pub referral_code: Option<String>,
    /// The customer whose referral code this customer enrolled with.
    #[serde(default)]
    pub referred_by: Option<CustomerId>,
}

/// The customer's birthday was set, changed or (`None`) cleared (customer stream).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BirthdaySet {
    pub birthday: Option<Birthday>,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub set_at: DateTime<Utc>,
}

/// A referred customer's first purchase qualified the referral (referee's stream): the
/// referrer is owed `referrer_bonus`, which the referral process credits to the referrer's
/// own stream (`ReferralBonusAwarded`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReferralQualified {
    pub referrer: CustomerId,
    pub referrer_bonus: Points,
    pub purchase_id: PurchaseId,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub qualified_at: DateTime<Utc>,
}

/// The referrer's bonus for one referee (referrer's stream): opens a lot like a positive
/// adjustment and counts as earned. At most one per referee.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReferralBonusAwarded {
    pub referee: CustomerId,
    pub lot_id: LotId,
    pub points: Points,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub awarded_at: DateTime<Utc>,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub expires_at: DateTime<Utc>,
    /// The tenant's point value when the lot opened (minor units of its currency per
    /// point; `None` when no value was set). A lot keeps the value of its day: a later
    /// change of the setting does not revalue points already issued.
    #[serde(default)]
    pub point_value: Option<MinorUnits>,
}

/// The customer's personal data was erased (right to erasure): their data key was destroyed
/// in the same transaction, so the `personal_data` of their `CustomerEnrolled` can no longer
/// be read. The balance and history remain, as facts about an anonymous customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerErased {
    pub customer_id: CustomerId,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub erased_at: DateTime<Utc>,
}

/// One line of a purchase. `category` came with version 3 of `PurchaseLogged` (the
/// points rules can weight a category); lines of earlier versions have none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineItem {
    pub sku: String,
    pub category: Option<String>,
    pub quantity: u32,
    pub unit_price: MinorUnits,
}

/// Current shape (version 3): version 1 had neither line items nor a reference; version 2
/// had line items without a category.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurchaseLogged {
    pub purchase_id: PurchaseId,
    pub amount: MinorUnits,
    pub line_items: Vec<LineItem>,
    pub reference: Option<String>,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub occurred_at: DateTime<Utc>,
    /// 1 for the customer's first purchase, counting this one.
    pub purchase_number: u32,
}

/// Opens a lot. `rule_set_version` is the version in force when the purchase happened.
///
/// Current shape (version 2): each breakdown line names the rule's id and kind; version 1
/// lines named the kind only (read with the kind's name as the id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointsEarned {
    pub lot_id: LotId,
    pub purchase_id: PurchaseId,
    pub points: Points,
    pub rule_set_version: u32,
    pub breakdown: Vec<RulePoints>,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub earned_at: DateTime<Utc>,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub expires_at: DateTime<Utc>,
    /// The tenant's point value when the lot opened (minor units of its currency per
    /// point; `None` when no value was set). A lot keeps the value of its day: a later
    /// change of the setting does not revalue points already issued.
    #[serde(default)]
    pub point_value: Option<MinorUnits>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LotDebit {
    pub lot_id: LotId,
    pub points: Points,
}

/// Points spent, taken from lots soonest-expiring first; `consumed` says which.
///
/// Current shape (version 2): a redemption of a catalogue reward names the reward and the
/// code the customer collects it with; a redemption of a number of points (version 1, and
/// `RedeemPoints` today) has neither. `description` is the reward's name at the time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewardRedeemed {
    pub redemption_id: RedemptionId,
    pub points: Points,
    pub description: String,
    pub consumed: Vec<LotDebit>,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub redeemed_at: DateTime<Utc>,
    pub reward_id: Option<RewardId>,
    /// The redemption code, canonical form (see [`crate::redemption_code`]).
    pub code: Option<String>,
}

/// A reward joins the tenant's catalogue (tenant stream).
///
/// Current shape (version 2): with the reward's catalogue terms. Version 1 had none; it is
/// read with every term absent (no description, always valid, unlimited).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewardCreated {
    pub reward_id: RewardId,
    pub name: String,
    pub points_cost: Points,
    pub terms: RewardTerms,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub created_at: DateTime<Utc>,
}

/// The owner changed a reward: the whole new set of its fields, replacing the previous one
/// (tenant stream). Holds already made keep the points they reserved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewardUpdated {
    pub reward_id: RewardId,
    pub name: String,
    pub points_cost: Points,
    pub terms: RewardTerms,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub updated_at: DateTime<Utc>,
}

/// What the catalogue says about a reward beyond its name and cost. Every term is optional;
/// an absent one does not restrict (see `aggregate::Reward` for the rules).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewardTerms {
    /// One line for customers, at most `command::REWARD_DESCRIPTION_CHARS_MAX` characters
    /// (the WhatsApp list row's description limit).
    pub description: Option<String>,
    /// An `https` URL of a picture of the reward, at most
    /// `command::REWARD_IMAGE_URL_CHARS_MAX` characters.
    pub image_url: Option<String>,
    /// Redeemable from this instant on (inclusive).
    #[serde(with = "chrono::serde::ts_microseconds_option")]
    pub valid_from: Option<DateTime<Utc>>,
    /// Redeemable until this instant (exclusive).
    #[serde(with = "chrono::serde::ts_microseconds_option")]
    pub valid_until: Option<DateTime<Utc>>,
    /// Total units: every open or fulfilled hold of the reward uses one.
    pub stock: Option<u32>,
    /// Units one customer may hold at once or have had handed over (open and fulfilled
    /// holds).
    pub per_customer_limit: Option<u32>,
}

/// A reward leaves the catalogue: it can no longer be redeemed; redemptions already made
/// can still be fulfilled (tenant stream).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewardRetired {
    pub reward_id: RewardId,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub retired_at: DateTime<Utc>,
}

/// The vendor handed the reward of a redemption over at the counter (customer stream).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedemptionFulfilled {
    pub redemption_id: RedemptionId,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub fulfilled_at: DateTime<Utc>,
}

/// What was left of one lot when it passed its expiry date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointsExpired {
    pub lot_id: LotId,
    pub points: Points,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub expired_at: DateTime<Utc>,
}

/// The programme's settings (tenant stream). Each event carries the whole set and replaces
/// the previous one; a tenant without one runs on [`ProgrammeSettings::default`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgrammeSettingsChanged {
    pub settings: ProgrammeSettings,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub changed_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgrammeSettings {
    /// IANA name of the tenant's time zone: local dates and hours (promotions, birthdays,
    /// daily caps) are read in it.
    pub time_zone: String,
    /// The return window: points of a purchase stay pending (not spendable) this many days
    /// after the purchase; 0 makes them spendable at once.
    pub pending_days: u32,
    /// What a refund does when the purchase's points were already spent.
    pub refund_policy: RefundPolicy,
    /// How long a reward hold waits for fulfilment before it expires and frees its points.
    pub hold_days: u32,
    /// The money value of one point, in the currency's minor units; `None` until the
    /// vendor states it (money figures are then not given).
    pub point_value: Option<MinorUnits>,
}

impl Default for ProgrammeSettings {
    fn default() -> Self {
        ProgrammeSettings {
            time_zone: "Africa/Lagos".to_owned(),
            pending_days: 0,
            refund_policy: RefundPolicy::ClampAtZero,
            hold_days: 14,
            point_value: None,
        }
    }
}

/// When a refund must take back points the customer no longer has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum RefundPolicy {
    /// Take what the balance holds and forgive the rest (recorded as `clamped`).
    ClampAtZero,
    /// Let the balance go negative down to `-limit`; beyond that, clamp. Points earned
    /// later settle the debt first.
    AllowDebt { limit: Points },
}

/// The points of lot `lot_id` (opened by the `PointsEarned` just before) are pending until
/// `pending_until`: counted apart from the balance and not spendable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointsPending {
    pub lot_id: LotId,
    pub points: Points,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub pending_until: DateTime<Utc>,
}

/// A pending lot's return window has passed: what is left of it joins the balance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointsActivated {
    pub lot_id: LotId,
    pub points: Points,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub activated_at: DateTime<Utc>,
}

/// A full or partial refund of a logged purchase, and the points it takes back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurchaseRefunded {
    pub refund_id: RefundId,
    pub purchase_id: PurchaseId,
    pub amount: MinorUnits,
    pub reference: Option<String>,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub refunded_at: DateTime<Utc>,
    pub reversal: Reversal,
}

/// Where the points a refund takes back came from. `due` is what the refund owes in
/// points (see `aggregate::reversal_due`); it is covered, in this order, by the
/// purchase's own lot while pending (`from_pending`) or open (`from_lots`, first entry),
/// by forgiving what of that lot already expired (`waived_expired`), by other open lots
/// (`from_lots`, soonest-expiring first), by debt within the policy's limit (`debt`), and
/// what is left is forgiven (`clamped`). `due` = the sum of all six. Points held for open
/// reward holds are never forgiven or turned into debt: when the free points fall short,
/// the refund first cancels holds (`HoldReleased` events just before this one) and takes
/// the points they reserved (see `aggregate::decide_refund`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reversal {
    pub due: Points,
    pub from_pending: Points,
    pub from_lots: Vec<LotDebit>,
    pub waived_expired: Points,
    pub debt: Points,
    pub clamped: Points,
    pub policy: RefundPolicy,
}

impl Reversal {
    pub fn from_lots_total(&self) -> Points {
        Points::new(self.from_lots.iter().map(|d| d.points.value()).sum())
    }

    /// Points taken from the posted balance: open lots and new debt.
    pub fn from_balance(&self) -> Points {
        Points::new(self.from_lots_total().value() + self.debt.value())
    }

    /// Points actually reversed (the `reversed` counter): all but what was forgiven.
    pub fn reversed(&self) -> Points {
        Points::new(self.from_balance().value() + self.from_pending.value())
    }
}

/// A manual adjustment by the vendor, with a reason (the actor is in the metadata).
/// A positive one opens lot `lot` (expiring like a purchase's); a negative one takes
/// `consumed` from the open lots, soonest-expiring first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointsAdjusted {
    pub adjustment_id: AdjustmentId,
    /// Signed: positive adds, negative takes away.
    pub points: Points,
    pub reason: String,
    pub lot: Option<AdjustmentLot>,
    pub consumed: Vec<LotDebit>,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub adjusted_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdjustmentLot {
    pub lot_id: LotId,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub expires_at: DateTime<Utc>,
    /// The tenant's point value when the lot opened (minor units of its currency per
    /// point; `None` when no value was set). A lot keeps the value of its day: a later
    /// change of the setting does not revalue points already issued.
    #[serde(default)]
    pub point_value: Option<MinorUnits>,
}

/// Points that just became spendable (lot `lot_id`) pay back the customer's debt first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DebtSettled {
    pub lot_id: LotId,
    pub points: Points,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub settled_at: DateTime<Utc>,
}

/// A reward is held for the customer: its cost is reserved in `reserved` lots (still in
/// the balance, no longer available) and the code issued. Fulfilment posts it
/// ([`HoldFulfilled`]); cancellation or expiry frees it ([`HoldReleased`]). Exactly one of
/// the two follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewardHeld {
    pub redemption_id: RedemptionId,
    pub reward_id: RewardId,
    /// The reward's name at the time.
    pub description: String,
    /// The redemption code, canonical form (see [`crate::redemption_code`]).
    pub code: String,
    pub points: Points,
    pub reserved: Vec<LotDebit>,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub held_at: DateTime<Utc>,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub expires_at: DateTime<Utc>,
}

/// The vendor handed a held reward over: the reserved points are spent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldFulfilled {
    pub redemption_id: RedemptionId,
    pub points: Points,
    pub consumed: Vec<LotDebit>,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub fulfilled_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldReleaseReason {
    /// The vendor cancelled the hold.
    Cancelled,
    /// Not fulfilled within the tenant's hold window.
    Expired,
}

/// A hold ended without fulfilment: its reserved points are available again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldReleased {
    pub redemption_id: RedemptionId,
    pub points: Points,
    /// The reservations freed: the hold's `reserved`, repeated so that a reader of this
    /// event alone (a read model, an auditor) knows which lots it frees.
    pub released: Vec<LotDebit>,
    pub reason: HoldReleaseReason,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub released_at: DateTime<Utc>,
}

/// The tenant's tier ladder (tenant stream); replaces the previous one. Customers keep
/// their tier until its review; a tier id the new ladder lacks ranks as the base.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierSchemePublished {
    pub scheme: crate::tiers::TierScheme,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub published_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TierDirection {
    /// A purchase crossed a threshold: at once.
    Upgrade,
    /// At a review, the window fell short of the tier (after any grace period).
    Downgrade,
}

/// The customer moved to tier `to` (an id of the ladder in force).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierChanged {
    pub from: Option<String>,
    pub to: String,
    /// The new tier's name at the time, as customers read it.
    pub to_name: String,
    pub direction: TierDirection,
    /// The qualifying value (minor units or points, per the ladder's basis) that decided it.
    pub qualifying_value: i64,
    /// When the new tier is reviewed; `None` at the base tier (nothing to lose).
    #[serde(with = "chrono::serde::ts_microseconds_option")]
    pub review_at: Option<DateTime<Utc>>,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub changed_at: DateTime<Utc>,
}

/// A review found the customer still qualified: the tier is kept for another period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierRetained {
    pub tier: String,
    pub qualifying_value: i64,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub review_at: DateTime<Utc>,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub reviewed_at: DateTime<Utc>,
}

/// Who caused an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Actor {
    ApiKey(Uuid),
    User(Uuid),
    Customer(CustomerId),
    /// A component of the platform, by name (e.g. "expiry", "cli").
    System(String),
}

/// Stored beside each event's payload and covered by the hash chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMetadata {
    pub actor: Actor,
    pub correlation_id: Uuid,
    pub causation_id: Option<EventId>,
}
