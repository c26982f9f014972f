//! The facts of the ledger. An event records results (points computed, rule-set version,
//! breakdown, lots consumed), never inputs to be re-evaluated, so a replay is exact even
//! after the tenant's configuration has changed.
//!
//! These structs are the MessagePack wire format (see [`crate::codec`]): changing one is a
//! compatibility decision. Add a new version and an upcaster; never edit a published shape.

use crate::amounts::{Currency, MinorUnits, Points};
use crate::ids::{CustomerId, EventId, LotId, PurchaseId, RedemptionId, RewardId, TenantId};
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
        }
    }

    /// The signed change this event makes to a customer's balance.
    pub fn points_delta(&self) -> Points {
        match self {
            Event::PointsEarned(e) => e.points,
            Event::RewardRedeemed(e) => Points::new(-e.points.value()),
            Event::PointsExpired(e) => Points::new(-e.points.value()),
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

/// Current shape (version 2). Version 1 carried the phone number in plain text; it is read as
/// version 2 without personal data (only development databases from before the tenancy
/// issue hold any).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerEnrolled {
    pub customer_id: CustomerId,
    pub personal_data: Option<SealedPersonalData>,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub enrolled_at: DateTime<Utc>,
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewardCreated {
    pub reward_id: RewardId,
    pub name: String,
    pub points_cost: Points,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub created_at: DateTime<Utc>,
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
