//! The wire format of events: MessagePack (named fields, so an auditor's decoder needs no
//! schema) with a type name and a version per event type, stored beside the payload.
//!
//! Reading an old version goes through an upcaster to the current shape; writing always
//! uses the current version. Current versions are listed in [`current_version`].

use crate::amounts::Currency;
use crate::amounts::MinorUnits;
use crate::amounts::Points;
use crate::events::LineItem;
use crate::events::{
    BirthdaySet, CustomerEnrolled, CustomerErased, DebtSettled, Event, EventMetadata,
    HoldFulfilled, HoldReleased, LotDebit, PointsActivated, PointsAdjusted, PointsEarned,
    PointsExpired, PointsPending, ProgrammeSettingsChanged, PurchaseLogged, PurchaseRefunded,
    RedemptionFulfilled, ReferralBonusAwarded, ReferralQualified, RewardCreated, RewardHeld,
    RewardRedeemed, RewardRetired, RewardTerms, RewardUpdated, RuleSetPublished, TenantRegistered,
    TierChanged, TierRetained, TierSchemePublished,
};
use crate::ids::{CustomerId, LotId, PurchaseId, RedemptionId, RewardId, TenantId};
use crate::rules::{KindName, Rule, RuleKind, RulePoints, RuleSet};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("unknown event type {event_type:?} version {type_version}")]
    UnknownType {
        event_type: String,
        type_version: u16,
    },
    #[error("cannot decode {event_type} v{type_version}: {source}")]
    Decode {
        event_type: String,
        type_version: u16,
        source: rmp_serde::decode::Error,
    },
    #[error("cannot encode: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    #[error("cannot decode metadata: {0}")]
    Metadata(rmp_serde::decode::Error),
}

/// An event as stored: its type, the version of that type's shape, and the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedEvent {
    pub event_type: &'static str,
    pub type_version: u16,
    pub payload: Vec<u8>,
}

/// The version every event type is written with today.
pub fn current_version(event_type: &str) -> Option<u16> {
    match event_type {
        "PurchaseLogged" | "CustomerEnrolled" | "PointsEarned" => Some(3),
        "RewardRedeemed"
        | "TenantRegistered"
        | "RuleSetPublished"
        | "RewardCreated"
        | "PointsAdjusted"
        | "ReferralBonusAwarded" => Some(2),
        "PointsExpired"
        | "CustomerErased"
        | "RewardUpdated"
        | "RewardRetired"
        | "RedemptionFulfilled"
        | "ProgrammeSettingsChanged"
        | "PointsPending"
        | "PointsActivated"
        | "PurchaseRefunded"
        | "DebtSettled"
        | "RewardHeld"
        | "HoldFulfilled"
        | "HoldReleased"
        | "TierSchemePublished"
        | "TierChanged"
        | "TierRetained"
        | "BirthdaySet"
        | "ReferralQualified" => Some(1),
        _ => None,
    }
}

pub fn encode(event: &Event) -> Result<EncodedEvent, CodecError> {
    let payload = match event {
        Event::TenantRegistered(e) => rmp_serde::to_vec_named(e)?,
        Event::RuleSetPublished(e) => rmp_serde::to_vec_named(e)?,
        Event::CustomerEnrolled(e) => rmp_serde::to_vec_named(e)?,
        Event::PurchaseLogged(e) => rmp_serde::to_vec_named(e)?,
        Event::PointsEarned(e) => rmp_serde::to_vec_named(e)?,
        Event::RewardRedeemed(e) => rmp_serde::to_vec_named(e)?,
        Event::PointsExpired(e) => rmp_serde::to_vec_named(e)?,
        Event::CustomerErased(e) => rmp_serde::to_vec_named(e)?,
        Event::RewardCreated(e) => rmp_serde::to_vec_named(e)?,
        Event::RewardRetired(e) => rmp_serde::to_vec_named(e)?,
        Event::RedemptionFulfilled(e) => rmp_serde::to_vec_named(e)?,
        Event::ProgrammeSettingsChanged(e) => rmp_serde::to_vec_named(e)?,
        Event::PointsPending(e) => rmp_serde::to_vec_named(e)?,
        Event::PointsActivated(e) => rmp_serde::to_vec_named(e)?,
        Event::PurchaseRefunded(e) => rmp_serde::to_vec_named(e)?,
        Event::PointsAdjusted(e) => rmp_serde::to_vec_named(e)?,
        Event::DebtSettled(e) => rmp_serde::to_vec_named(e)?,
        Event::RewardHeld(e) => rmp_serde::to_vec_named(e)?,
        Event::HoldFulfilled(e) => rmp_serde::to_vec_named(e)?,
        Event::HoldReleased(e) => rmp_serde::to_vec_named(e)?,
        Event::TierSchemePublished(e) => rmp_serde::to_vec_named(e)?,
        Event::TierChanged(e) => rmp_serde::to_vec_named(e)?,
        Event::TierRetained(e) => rmp_serde::to_vec_named(e)?,
        Event::RewardUpdated(e) => rmp_serde::to_vec_named(e)?,
        Event::BirthdaySet(e) => rmp_serde::to_vec_named(e)?,
        Event::ReferralQualified(e) => rmp_serde::to_vec_named(e)?,
        Event::ReferralBonusAwarded(e) => rmp_serde::to_vec_named(e)?,
    };
    let event_type = event.type_name();
    let type_version = current_version(event_type).unwrap_or(1);
    Ok(EncodedEvent {
        event_type,
        type_version,
        payload,
    })
}

pub fn decode(event_type: &str, type_version: u16, payload: &[u8]) -> Result<Event, CodecError> {
    let fail = |source| CodecError::Decode {
        event_type: event_type.to_owned(),
        type_version,
        source,
    };
    let event = match (event_type, type_version) {
        ("TenantRegistered", 1) => Event::TenantRegistered(
            rmp_serde::from_slice::<TenantRegisteredV1>(payload)
                .map_err(fail)?
                .upcast(),
        ),
        ("TenantRegistered", 2) => Event::TenantRegistered(
            rmp_serde::from_slice::<TenantRegistered>(payload).map_err(fail)?,
        ),
        ("RuleSetPublished", 1) => Event::RuleSetPublished(
            rmp_serde::from_slice::<RuleSetPublishedV1>(payload)
                .map_err(fail)?
                .upcast(),
        ),
        ("RuleSetPublished", 2) => Event::RuleSetPublished(
            rmp_serde::from_slice::<RuleSetPublished>(payload).map_err(fail)?,
        ),
        ("CustomerEnrolled", 1) => Event::CustomerEnrolled(
            rmp_serde::from_slice::<CustomerEnrolledV1>(payload)
                .map_err(fail)?
                .upcast(),
        ),
        // Version 2 lacks the birthday and the referral fields: they default to absent.
        ("CustomerEnrolled", 2 | 3) => Event::CustomerEnrolled(
            rmp_serde::from_slice::<CustomerEnrolled>(payload).map_err(fail)?,
        ),
        ("CustomerErased", 1) => {
            Event::CustomerErased(rmp_serde::from_slice::<CustomerErased>(payload).map_err(fail)?)
        }
        ("PurchaseLogged", 1) => Event::PurchaseLogged(
            rmp_serde::from_slice::<PurchaseLoggedV1>(payload)
                .map_err(fail)?
                .upcast(),
        ),
        ("PurchaseLogged", 2) => Event::PurchaseLogged(
            rmp_serde::from_slice::<PurchaseLoggedV2>(payload)
                .map_err(fail)?
                .upcast(),
        ),
        ("PurchaseLogged", 3) => {
            Event::PurchaseLogged(rmp_serde::from_slice::<PurchaseLogged>(payload).map_err(fail)?)
        }
        ("PointsEarned", 1) => Event::PointsEarned(
            rmp_serde::from_slice::<PointsEarnedV1>(payload)
                .map_err(fail)?
                .upcast(),
        ),
        // Version 2 lacks the lot's point value: it reads as not valued.
        ("PointsEarned", 2 | 3) => {
            Event::PointsEarned(rmp_serde::from_slice::<PointsEarned>(payload).map_err(fail)?)
        }
        ("RewardRedeemed", 1) => Event::RewardRedeemed(
            rmp_serde::from_slice::<RewardRedeemedV1>(payload)
                .map_err(fail)?
                .upcast(),
        ),
        ("RewardRedeemed", 2) => {
            Event::RewardRedeemed(rmp_serde::from_slice::<RewardRedeemed>(payload).map_err(fail)?)
        }
        ("RewardCreated", 1) => Event::RewardCreated(
            rmp_serde::from_slice::<RewardCreatedV1>(payload)
                .map_err(fail)?
                .upcast(),
        ),
        ("RewardCreated", 2) => {
            Event::RewardCreated(rmp_serde::from_slice::<RewardCreated>(payload).map_err(fail)?)
        }
        ("RewardUpdated", 1) => {
            Event::RewardUpdated(rmp_serde::from_slice::<RewardUpdated>(payload).map_err(fail)?)
        }
        ("RewardRetired", 1) => {
            Event::RewardRetired(rmp_serde::from_slice::<RewardRetired>(payload).map_err(fail)?)
        }
        ("RedemptionFulfilled", 1) => Event::RedemptionFulfilled(
            rmp_serde::from_slice::<RedemptionFulfilled>(payload).map_err(fail)?,
        ),
        ("PointsExpired", 1) => {
            Event::PointsExpired(rmp_serde::from_slice::<PointsExpired>(payload).map_err(fail)?)
        }
        ("ProgrammeSettingsChanged", 1) => Event::ProgrammeSettingsChanged(
            rmp_serde::from_slice::<ProgrammeSettingsChanged>(payload).map_err(fail)?,
        ),
        ("PointsPending", 1) => {
            Event::PointsPending(rmp_serde::from_slice::<PointsPending>(payload).map_err(fail)?)
        }
        ("PointsActivated", 1) => {
            Event::PointsActivated(rmp_serde::from_slice::<PointsActivated>(payload).map_err(fail)?)
        }
        ("PurchaseRefunded", 1) => Event::PurchaseRefunded(
            rmp_serde::from_slice::<PurchaseRefunded>(payload).map_err(fail)?,
        ),
        // Version 1 lacks the new lot's point value: it reads as not valued.
        ("PointsAdjusted", 1 | 2) => {
            Event::PointsAdjusted(rmp_serde::from_slice::<PointsAdjusted>(payload).map_err(fail)?)
        }
        ("DebtSettled", 1) => {
            Event::DebtSettled(rmp_serde::from_slice::<DebtSettled>(payload).map_err(fail)?)
        }
        ("RewardHeld", 1) => {
            Event::RewardHeld(rmp_serde::from_slice::<RewardHeld>(payload).map_err(fail)?)
        }
        ("HoldFulfilled", 1) => {
            Event::HoldFulfilled(rmp_serde::from_slice::<HoldFulfilled>(payload).map_err(fail)?)
        }
        ("HoldReleased", 1) => {
            Event::HoldReleased(rmp_serde::from_slice::<HoldReleased>(payload).map_err(fail)?)
        }
        ("TierSchemePublished", 1) => Event::TierSchemePublished(
            rmp_serde::from_slice::<TierSchemePublished>(payload).map_err(fail)?,
        ),
        ("TierChanged", 1) => {
            Event::TierChanged(rmp_serde::from_slice::<TierChanged>(payload).map_err(fail)?)
        }
        ("TierRetained", 1) => {
            Event::TierRetained(rmp_serde::from_slice::<TierRetained>(payload).map_err(fail)?)
        }
        ("BirthdaySet", 1) => {
            Event::BirthdaySet(rmp_serde::from_slice::<BirthdaySet>(payload).map_err(fail)?)
        }
        ("ReferralQualified", 1) => Event::ReferralQualified(
            rmp_serde::from_slice::<ReferralQualified>(payload).map_err(fail)?,
        ),
        // Version 1 lacks the lot's point value: it reads as not valued.
        ("ReferralBonusAwarded", 1 | 2) => Event::ReferralBonusAwarded(
            rmp_serde::from_slice::<ReferralBonusAwarded>(payload).map_err(fail)?,
        ),
        _ => {
            return Err(CodecError::UnknownType {
                event_type: event_type.to_owned(),
                type_version,
            })
        }
    };
    Ok(event)
}

pub fn encode_metadata(metadata: &EventMetadata) -> Result<Vec<u8>, CodecError> {
    Ok(rmp_serde::to_vec_named(metadata)?)
}

pub fn decode_metadata(bytes: &[u8]) -> Result<EventMetadata, CodecError> {
    rmp_serde::from_slice(bytes).map_err(CodecError::Metadata)
}

/// `CustomerEnrolled` as first published, with the phone number in plain text. Read without
/// it: the number is not carried into the current shape, so no reader can show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerEnrolledV1 {
    pub customer_id: CustomerId,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub enrolled_at: DateTime<Utc>,
}

impl CustomerEnrolledV1 {
    fn upcast(self) -> CustomerEnrolled {
        CustomerEnrolled {
            customer_id: self.customer_id,
            personal_data: None,
            enrolled_at: self.enrolled_at,
            birthday: None,
            referral_code: None,
            referred_by: None,
        }
    }
}

/// `PurchaseLogged` as first published: no line items, no reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurchaseLoggedV1 {
    pub purchase_id: PurchaseId,
    pub amount: MinorUnits,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub occurred_at: DateTime<Utc>,
    pub purchase_number: u32,
}

impl PurchaseLoggedV1 {
    fn upcast(self) -> PurchaseLogged {
        PurchaseLogged {
            purchase_id: self.purchase_id,
            amount: self.amount,
            line_items: Vec::new(),
            reference: None,
            occurred_at: self.occurred_at,
            purchase_number: self.purchase_number,
        }
    }
}

/// `RewardRedeemed` as first published: points only, no reward and no code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewardRedeemedV1 {
    pub redemption_id: RedemptionId,
    pub points: Points,
    pub description: String,
    pub consumed: Vec<LotDebit>,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub redeemed_at: DateTime<Utc>,
}

impl RewardRedeemedV1 {
    fn upcast(self) -> RewardRedeemed {
        RewardRedeemed {
            redemption_id: self.redemption_id,
            points: self.points,
            description: self.description,
            consumed: self.consumed,
            redeemed_at: self.redeemed_at,
            reward_id: None,
            code: None,
        }
    }
}

/// A rule of the first rules engine (`TenantRegistered` and `RuleSetPublished` v1): three
/// kinds, no ids, every rule stacking, evaluated in position order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleV1 {
    PerAmountSpent {
        amount_step: MinorUnits,
        points_per_step: Points,
        minimum_purchase: MinorUnits,
    },
    PerPurchase {
        points: Points,
    },
    Milestone {
        every_nth_purchase: u32,
        bonus: Points,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSetV1 {
    pub version: u32,
    pub rules: Vec<RuleV1>,
}

impl RuleSetV1 {
    /// The rule at position `i` (from 0) becomes `rule-{i+1}` of priority `i`, stacking, with
    /// no window: the v1 engine evaluated every rule, in position order, and added them up,
    /// which is what the v2 engine does with these rules.
    fn upcast(self) -> RuleSet {
        let rules = self
            .rules
            .into_iter()
            .enumerate()
            .map(|(index, rule)| {
                let kind = match rule {
                    RuleV1::PerAmountSpent {
                        amount_step,
                        points_per_step,
                        minimum_purchase,
                    } => RuleKind::PerAmountSpent {
                        amount_step,
                        points_per_step,
                        minimum_purchase,
                    },
                    RuleV1::PerPurchase { points } => RuleKind::PerPurchase { points },
                    RuleV1::Milestone {
                        every_nth_purchase,
                        bonus,
                    } => RuleKind::Milestone {
                        every_nth_purchase,
                        bonus,
                    },
                };
                Rule {
                    priority: u16::try_from(index).unwrap_or(u16::MAX),
                    ..Rule::new(format!("rule-{}", index + 1), kind)
                }
            })
            .collect();
        RuleSet::from_stored(self.version, rules)
    }
}

/// `TenantRegistered` with a rule set of the first engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantRegisteredV1 {
    pub tenant_id: TenantId,
    pub name: String,
    pub currency: Currency,
    pub expiry_days: u32,
    pub rule_set: RuleSetV1,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub registered_at: DateTime<Utc>,
}

impl TenantRegisteredV1 {
    fn upcast(self) -> TenantRegistered {
        TenantRegistered {
            tenant_id: self.tenant_id,
            name: self.name,
            currency: self.currency,
            expiry_days: self.expiry_days,
            rule_set: self.rule_set.upcast(),
            registered_at: self.registered_at,
        }
    }
}

/// `RuleSetPublished` with a rule set of the first engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSetPublishedV1 {
    pub rule_set: RuleSetV1,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub published_at: DateTime<Utc>,
}

impl RuleSetPublishedV1 {
    fn upcast(self) -> RuleSetPublished {
        RuleSetPublished {
            rule_set: self.rule_set.upcast(),
            published_at: self.published_at,
        }
    }
}

/// A breakdown line of `PointsEarned` v1: the kind only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RulePointsV1 {
    pub rule: KindName,
    pub points: Points,
}

/// `PointsEarned` v1. Its lines are read with the kind's name as the rule id: the v1 rules
/// had no ids, and the line cannot be tied back to a position reliably.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointsEarnedV1 {
    pub lot_id: LotId,
    pub purchase_id: PurchaseId,
    pub points: Points,
    pub rule_set_version: u32,
    pub breakdown: Vec<RulePointsV1>,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub earned_at: DateTime<Utc>,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub expires_at: DateTime<Utc>,
}

impl PointsEarnedV1 {
    fn upcast(self) -> PointsEarned {
        PointsEarned {
            lot_id: self.lot_id,
            purchase_id: self.purchase_id,
            points: self.points,
            rule_set_version: self.rule_set_version,
            breakdown: self
                .breakdown
                .into_iter()
                .map(|line| RulePoints {
                    rule_id: line.rule.as_str().to_owned(),
                    kind: line.rule,
                    points: line.points,
                })
                .collect(),
            earned_at: self.earned_at,
            expires_at: self.expires_at,
            point_value: None,
        }
    }
}

/// A line item of `PurchaseLogged` v2: no category.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineItemV2 {
    pub sku: String,
    pub quantity: u32,
    pub unit_price: MinorUnits,
}

/// `PurchaseLogged` v2: line items without a category.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurchaseLoggedV2 {
    pub purchase_id: PurchaseId,
    pub amount: MinorUnits,
    pub line_items: Vec<LineItemV2>,
    pub reference: Option<String>,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub occurred_at: DateTime<Utc>,
    pub purchase_number: u32,
}

impl PurchaseLoggedV2 {
    fn upcast(self) -> PurchaseLogged {
        PurchaseLogged {
            purchase_id: self.purchase_id,
            amount: self.amount,
            line_items: self
                .line_items
                .into_iter()
                .map(|item| LineItem {
                    sku: item.sku,
                    category: None,
                    quantity: item.quantity,
                    unit_price: item.unit_price,
                })
                .collect(),
            reference: self.reference,
            occurred_at: self.occurred_at,
            purchase_number: self.purchase_number,
        }
    }
}

/// `RewardCreated` as first published: a name and a cost, no catalogue terms. Read with
/// every term absent: no description or image, always valid, unlimited stock and per
/// customer, which is how such a reward behaved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewardCreatedV1 {
    pub reward_id: RewardId,
    pub name: String,
    pub points_cost: Points,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub created_at: DateTime<Utc>,
}

impl RewardCreatedV1 {
    fn upcast(self) -> RewardCreated {
        RewardCreated {
            reward_id: self.reward_id,
            name: self.name,
            points_cost: self.points_cost,
            terms: RewardTerms::default(),
            created_at: self.created_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::*;
    use crate::ids::*;
    use crate::rules::RuleSet;
    use crate::Points;
    use chrono::TimeZone;
    use uuid::Uuid;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 10, 30, 0).unwrap()
    }

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn one_of_each() -> Vec<Event> {
        vec![
            Event::TenantRegistered(TenantRegistered {
                tenant_id: TenantId::from_uuid(id(1)),
                name: "Mama Put".into(),
                currency: crate::Currency::NGN,
                expiry_days: 180,
                rule_set: RuleSet::starter(),
                registered_at: at(),
            }),
            Event::RuleSetPublished(RuleSetPublished {
                rule_set: RuleSet::starter(),
                published_at: at(),
            }),
            Event::CustomerEnrolled(CustomerEnrolled {
                customer_id: CustomerId::from_uuid(id(2)),
                personal_data: Some(SealedPersonalData {
                    nonce: vec![7; 12],
                    ciphertext: vec![1, 2, 3, 4],
                }),
                enrolled_at: at(),
                birthday: Some(crate::Birthday::new(2, 29).unwrap()),
                referral_code: Some("04HMASW9".into()),
                referred_by: Some(CustomerId::from_uuid(id(20))),
            }),
            Event::PurchaseLogged(PurchaseLogged {
                purchase_id: PurchaseId::from_uuid(id(3)),
                amount: MinorUnits::new(250_000),
                line_items: vec![LineItem {
                    sku: "JOLLOF".into(),
                    category: Some("mains".into()),
                    quantity: 2,
                    unit_price: MinorUnits::new(125_000),
                }],
                reference: Some("till-7".into()),
                occurred_at: at(),
                purchase_number: 4,
            }),
            Event::PointsEarned(PointsEarned {
                lot_id: LotId::from_uuid(id(4)),
                purchase_id: PurchaseId::from_uuid(id(3)),
                points: Points::new(25),
                rule_set_version: 1,
                breakdown: vec![RulePoints {
                    rule_id: "rule-1".into(),
                    kind: KindName::PerAmountSpent,
                    points: Points::new(25),
                }],
                earned_at: at(),
                expires_at: at() + chrono::Duration::days(180),
                point_value: Some(MinorUnits::new(40)),
            }),
            Event::RewardRedeemed(RewardRedeemed {
                redemption_id: RedemptionId::from_uuid(id(5)),
                points: Points::new(10),
                description: "Free drink".into(),
                consumed: vec![LotDebit {
                    lot_id: LotId::from_uuid(id(4)),
                    points: Points::new(10),
                }],
                redeemed_at: at(),
                reward_id: Some(RewardId::from_uuid(id(6))),
                code: Some("04HMASW9".into()),
            }),
            Event::PointsExpired(PointsExpired {
                lot_id: LotId::from_uuid(id(4)),
                points: Points::new(15),
                expired_at: at(),
            }),
            Event::CustomerErased(CustomerErased {
                customer_id: CustomerId::from_uuid(id(2)),
                erased_at: at(),
            }),
            Event::RewardCreated(RewardCreated {
                reward_id: RewardId::from_uuid(id(6)),
                name: "Free drink".into(),
                points_cost: Points::new(10),
                terms: full_terms(),
                created_at: at(),
            }),
            Event::RewardUpdated(RewardUpdated {
                reward_id: RewardId::from_uuid(id(6)),
                name: "Free cold drink".into(),
                points_cost: Points::new(12),
                terms: RewardTerms {
                    stock: Some(3),
                    ..RewardTerms::default()
                },
                updated_at: at(),
            }),
            Event::RewardRetired(RewardRetired {
                reward_id: RewardId::from_uuid(id(6)),
                retired_at: at(),
            }),
            Event::RedemptionFulfilled(RedemptionFulfilled {
                redemption_id: RedemptionId::from_uuid(id(5)),
                fulfilled_at: at(),
            }),
            Event::ProgrammeSettingsChanged(ProgrammeSettingsChanged {
                settings: ProgrammeSettings {
                    refund_policy: RefundPolicy::AllowDebt {
                        limit: Points::new(500),
                    },
                    point_value: Some(MinorUnits::new(50)),
                    ..ProgrammeSettings::default()
                },
                changed_at: at(),
            }),
            Event::PointsPending(PointsPending {
                lot_id: LotId::from_uuid(id(4)),
                points: Points::new(25),
                pending_until: at(),
            }),
            Event::PointsActivated(PointsActivated {
                lot_id: LotId::from_uuid(id(4)),
                points: Points::new(25),
                activated_at: at(),
            }),
            Event::PurchaseRefunded(PurchaseRefunded {
                refund_id: RefundId::from_uuid(id(7)),
                purchase_id: PurchaseId::from_uuid(id(3)),
                amount: MinorUnits::new(100_000),
                reference: Some("return-1".into()),
                refunded_at: at(),
                reversal: Reversal {
                    due: Points::new(10),
                    from_pending: Points::ZERO,
                    from_lots: vec![LotDebit {
                        lot_id: LotId::from_uuid(id(4)),
                        points: Points::new(6),
                    }],
                    waived_expired: Points::new(1),
                    debt: Points::new(2),
                    clamped: Points::new(1),
                    policy: RefundPolicy::AllowDebt {
                        limit: Points::new(2),
                    },
                },
            }),
            Event::PointsAdjusted(PointsAdjusted {
                adjustment_id: AdjustmentId::from_uuid(id(8)),
                points: Points::new(-3),
                reason: "double scan".into(),
                lot: None,
                consumed: vec![LotDebit {
                    lot_id: LotId::from_uuid(id(4)),
                    points: Points::new(3),
                }],
                adjusted_at: at(),
            }),
            Event::DebtSettled(DebtSettled {
                lot_id: LotId::from_uuid(id(4)),
                points: Points::new(2),
                settled_at: at(),
            }),
            Event::RewardHeld(RewardHeld {
                redemption_id: RedemptionId::from_uuid(id(9)),
                reward_id: RewardId::from_uuid(id(6)),
                description: "Free drink".into(),
                code: "04HMASW9".into(),
                points: Points::new(10),
                reserved: vec![LotDebit {
                    lot_id: LotId::from_uuid(id(4)),
                    points: Points::new(10),
                }],
                held_at: at(),
                expires_at: at() + chrono::Duration::days(14),
            }),
            Event::HoldFulfilled(HoldFulfilled {
                redemption_id: RedemptionId::from_uuid(id(9)),
                points: Points::new(10),
                consumed: vec![LotDebit {
                    lot_id: LotId::from_uuid(id(4)),
                    points: Points::new(10),
                }],
                fulfilled_at: at(),
            }),
            Event::HoldReleased(HoldReleased {
                redemption_id: RedemptionId::from_uuid(id(9)),
                points: Points::new(10),
                released: vec![LotDebit {
                    lot_id: LotId::from_uuid(id(4)),
                    points: Points::new(10),
                }],
                reason: HoldReleaseReason::Expired,
                released_at: at(),
            }),
            Event::TierSchemePublished(TierSchemePublished {
                scheme: crate::tiers::TierScheme {
                    basis: crate::tiers::TierBasis::PointsEarned,
                    window: crate::tiers::TierWindow::RollingDays { days: 365 },
                    grace_days: 30,
                    tiers: vec![
                        crate::tiers::Tier {
                            id: "member".into(),
                            name: "Member".into(),
                            threshold: 0,
                        },
                        crate::tiers::Tier {
                            id: "gold".into(),
                            name: "Gold".into(),
                            threshold: 1_000,
                        },
                    ],
                },
                published_at: at(),
            }),
            Event::TierChanged(TierChanged {
                from: None,
                to: "gold".into(),
                to_name: "Gold".into(),
                direction: TierDirection::Upgrade,
                qualifying_value: 1_200,
                review_at: Some(at() + chrono::Duration::days(365)),
                changed_at: at(),
            }),
            Event::TierRetained(TierRetained {
                tier: "gold".into(),
                qualifying_value: 1_500,
                review_at: at() + chrono::Duration::days(730),
                reviewed_at: at(),
            }),
            Event::BirthdaySet(BirthdaySet {
                birthday: Some(crate::Birthday::new(12, 31).unwrap()),
                set_at: at(),
            }),
            Event::BirthdaySet(BirthdaySet {
                birthday: None,
                set_at: at(),
            }),
            Event::ReferralQualified(ReferralQualified {
                referrer: CustomerId::from_uuid(id(20)),
                referrer_bonus: Points::new(50),
                purchase_id: PurchaseId::from_uuid(id(3)),
                qualified_at: at(),
            }),
            Event::ReferralBonusAwarded(ReferralBonusAwarded {
                referee: CustomerId::from_uuid(id(2)),
                lot_id: LotId::from_uuid(id(21)),
                points: Points::new(50),
                awarded_at: at(),
                expires_at: at() + chrono::Duration::days(180),
                point_value: None,
            }),
        ]
    }

    fn full_terms() -> RewardTerms {
        RewardTerms {
            description: Some("A chilled 50cl soft drink of your choice".into()),
            image_url: Some("https://cdn.example.com/drink.jpg".into()),
            valid_from: Some(at()),
            valid_until: Some(at() + chrono::Duration::days(30)),
            stock: Some(100),
            per_customer_limit: Some(2),
        }
    }

    #[test]
    fn reward_created_v1_is_upcast_with_every_term_absent() {
        let v1 = RewardCreatedV1 {
            reward_id: RewardId::from_uuid(id(6)),
            name: "Free drink".into(),
            points_cost: Points::new(10),
            created_at: at(),
        };
        let bytes = rmp_serde::to_vec_named(&v1).unwrap();
        assert_eq!(
            decode("RewardCreated", 1, &bytes).unwrap(),
            Event::RewardCreated(RewardCreated {
                reward_id: RewardId::from_uuid(id(6)),
                name: "Free drink".into(),
                points_cost: Points::new(10),
                terms: RewardTerms::default(),
                created_at: at(),
            })
        );
    }

    #[test]
    fn reward_redeemed_v1_is_upcast_without_reward_or_code() {
        let v1 = RewardRedeemedV1 {
            redemption_id: RedemptionId::from_uuid(id(5)),
            points: Points::new(10),
            description: "Free drink".into(),
            consumed: vec![LotDebit {
                lot_id: LotId::from_uuid(id(4)),
                points: Points::new(10),
            }],
            redeemed_at: at(),
        };
        let bytes = rmp_serde::to_vec_named(&v1).unwrap();
        let Event::RewardRedeemed(redeemed) = decode("RewardRedeemed", 1, &bytes).unwrap() else {
            panic!("wrong type");
        };
        assert_eq!(redeemed.reward_id, None);
        assert_eq!(redeemed.code, None);
        assert_eq!(redeemed.points, Points::new(10));
        assert_eq!(redeemed.consumed, v1.consumed);
    }

    #[test]
    fn every_event_type_round_trips_at_its_current_version() {
        for event in one_of_each() {
            let encoded = encode(&event).unwrap();
            assert_eq!(
                Some(encoded.type_version),
                current_version(encoded.event_type)
            );
            let decoded =
                decode(encoded.event_type, encoded.type_version, &encoded.payload).unwrap();
            assert_eq!(decoded, event);
        }
    }

    #[test]
    fn purchase_logged_v1_is_upcast_to_the_current_shape() {
        let v1 = PurchaseLoggedV1 {
            purchase_id: PurchaseId::from_uuid(id(9)),
            amount: MinorUnits::new(5_000),
            occurred_at: at(),
            purchase_number: 1,
        };
        let bytes = rmp_serde::to_vec_named(&v1).unwrap();
        let decoded = decode("PurchaseLogged", 1, &bytes).unwrap();
        assert_eq!(
            decoded,
            Event::PurchaseLogged(PurchaseLogged {
                purchase_id: PurchaseId::from_uuid(id(9)),
                amount: MinorUnits::new(5_000),
                line_items: vec![],
                reference: None,
                occurred_at: at(),
                purchase_number: 1,
            })
        );
    }

    fn v1_rules() -> RuleSetV1 {
        RuleSetV1 {
            version: 3,
            rules: vec![
                RuleV1::PerAmountSpent {
                    amount_step: MinorUnits::new(10_000),
                    points_per_step: Points::new(2),
                    minimum_purchase: MinorUnits::new(5_000),
                },
                RuleV1::PerPurchase {
                    points: Points::new(5),
                },
                RuleV1::Milestone {
                    every_nth_purchase: 10,
                    bonus: Points::new(100),
                },
            ],
        }
    }

    /// What `v1_rules` reads as: ids by position from 1, priority = position, stacking.
    fn v1_rules_upcast() -> Vec<crate::rules::Rule> {
        let rule = |n: u16, kind| crate::rules::Rule {
            priority: n - 1,
            ..crate::rules::Rule::new(format!("rule-{n}"), kind)
        };
        vec![
            rule(
                1,
                RuleKind::PerAmountSpent {
                    amount_step: MinorUnits::new(10_000),
                    points_per_step: Points::new(2),
                    minimum_purchase: MinorUnits::new(5_000),
                },
            ),
            rule(
                2,
                RuleKind::PerPurchase {
                    points: Points::new(5),
                },
            ),
            rule(
                3,
                RuleKind::Milestone {
                    every_nth_purchase: 10,
                    bonus: Points::new(100),
                },
            ),
        ]
    }

    #[test]
    fn tenant_registered_v1_is_upcast_with_rule_ids_by_position() {
        let v1 = TenantRegisteredV1 {
            tenant_id: TenantId::from_uuid(id(1)),
            name: "Mama Put".into(),
            currency: crate::Currency::NGN,
            expiry_days: 180,
            rule_set: v1_rules(),
            registered_at: at(),
        };
        let bytes = rmp_serde::to_vec_named(&v1).unwrap();
        let Event::TenantRegistered(registered) = decode("TenantRegistered", 1, &bytes).unwrap()
        else {
            panic!("wrong type");
        };
        assert_eq!(registered.rule_set.version(), 3);
        assert_eq!(registered.rule_set.rules(), &v1_rules_upcast()[..]);
        assert_eq!(registered.registered_at, at());
        // The upcast set is one the v2 validation accepts as well.
        assert!(RuleSet::new(3, v1_rules_upcast()).is_ok());
    }

    #[test]
    fn rule_set_published_v1_is_upcast_with_rule_ids_by_position() {
        let v1 = RuleSetPublishedV1 {
            rule_set: v1_rules(),
            published_at: at(),
        };
        let bytes = rmp_serde::to_vec_named(&v1).unwrap();
        assert_eq!(
            decode("RuleSetPublished", 1, &bytes).unwrap(),
            Event::RuleSetPublished(RuleSetPublished {
                rule_set: RuleSet::new(3, v1_rules_upcast()).unwrap(),
                published_at: at(),
            })
        );
    }

    /// Lots written before they carried a point value read as not valued, and the
    /// current versions keep the value.
    #[test]
    fn lots_written_before_point_values_read_as_not_valued() {
        #[derive(Serialize)]
        struct PointsEarnedV2 {
            lot_id: LotId,
            purchase_id: PurchaseId,
            points: Points,
            rule_set_version: u32,
            breakdown: Vec<RulePoints>,
            #[serde(with = "chrono::serde::ts_microseconds")]
            earned_at: DateTime<Utc>,
            #[serde(with = "chrono::serde::ts_microseconds")]
            expires_at: DateTime<Utc>,
        }
        let Some(Event::PointsEarned(mut earned)) = one_of_each()
            .into_iter()
            .find(|e| matches!(e, Event::PointsEarned(_)))
        else {
            panic!("no PointsEarned sample");
        };
        assert_eq!(earned.point_value, Some(MinorUnits::new(40)));
        let v2 = PointsEarnedV2 {
            lot_id: earned.lot_id,
            purchase_id: earned.purchase_id,
            points: earned.points,
            rule_set_version: earned.rule_set_version,
            breakdown: earned.breakdown.clone(),
            earned_at: earned.earned_at,
            expires_at: earned.expires_at,
        };
        let bytes = rmp_serde::to_vec_named(&v2).unwrap();
        let Event::PointsEarned(read) = decode("PointsEarned", 2, &bytes).unwrap() else {
            panic!("wrong type");
        };
        earned.point_value = None;
        assert_eq!(read, earned);
    }

    #[test]
    fn points_earned_v1_lines_are_read_with_the_kind_as_the_rule_id() {
        let v1 = PointsEarnedV1 {
            lot_id: LotId::from_uuid(id(4)),
            purchase_id: PurchaseId::from_uuid(id(3)),
            points: Points::new(30),
            rule_set_version: 1,
            breakdown: vec![
                RulePointsV1 {
                    rule: KindName::PerAmountSpent,
                    points: Points::new(25),
                },
                RulePointsV1 {
                    rule: KindName::PerPurchase,
                    points: Points::new(5),
                },
            ],
            earned_at: at(),
            expires_at: at(),
        };
        let bytes = rmp_serde::to_vec_named(&v1).unwrap();
        let Event::PointsEarned(earned) = decode("PointsEarned", 1, &bytes).unwrap() else {
            panic!("wrong type");
        };
        assert_eq!(
            earned.breakdown,
            vec![
                RulePoints {
                    rule_id: "per_amount_spent".into(),
                    kind: KindName::PerAmountSpent,
                    points: Points::new(25),
                },
                RulePoints {
                    rule_id: "per_purchase".into(),
                    kind: KindName::PerPurchase,
                    points: Points::new(5),
                },
            ]
        );
        assert_eq!(earned.points, Points::new(30));
    }

    #[test]
    fn purchase_logged_v2_line_items_are_read_without_a_category() {
        let v2 = PurchaseLoggedV2 {
            purchase_id: PurchaseId::from_uuid(id(3)),
            amount: MinorUnits::new(250_000),
            line_items: vec![LineItemV2 {
                sku: "JOLLOF".into(),
                quantity: 2,
                unit_price: MinorUnits::new(125_000),
            }],
            reference: Some("till-7".into()),
            occurred_at: at(),
            purchase_number: 4,
        };
        let bytes = rmp_serde::to_vec_named(&v2).unwrap();
        let Event::PurchaseLogged(logged) = decode("PurchaseLogged", 2, &bytes).unwrap() else {
            panic!("wrong type");
        };
        assert_eq!(
            logged.line_items,
            vec![LineItem {
                sku: "JOLLOF".into(),
                category: None,
                quantity: 2,
                unit_price: MinorUnits::new(125_000),
            }]
        );
        assert_eq!(logged.reference.as_deref(), Some("till-7"));
    }

    #[test]
    fn a_rule_set_using_every_feature_round_trips() {
        use crate::rules::{AppliesTo, Hours, ItemMatch, Rule, Stacking, Window};
        let rules = vec![
            Rule::new(
                "base",
                RuleKind::PerAmountSpent {
                    amount_step: MinorUnits::new(100),
                    points_per_step: Points::new(1),
                    minimum_purchase: MinorUnits::ZERO,
                },
            ),
            Rule {
                priority: 3,
                stacking: Stacking::Exclusive {
                    group: "weekend".into(),
                },
                when: Some(Window {
                    from: chrono::NaiveDate::from_ymd_opt(2026, 12, 1),
                    to: chrono::NaiveDate::from_ymd_opt(2026, 12, 31),
                    weekdays: Some(vec![chrono::Weekday::Sat, chrono::Weekday::Sun]),
                    hours: Some(Hours { start: 8, end: 20 }),
                }),
                ..Rule::new(
                    "double-weekend",
                    RuleKind::Promotion {
                        percent: 200,
                        applies_to: AppliesTo::Rules(vec!["base".into()]),
                    },
                )
            },
            Rule::new(
                "drinks",
                RuleKind::ItemMultiplier {
                    item_match: ItemMatch {
                        skus: vec!["ZOBO".into()],
                        categories: vec!["drinks".into()],
                    },
                    percent: 0,
                },
            ),
            Rule::new(
                "gold",
                RuleKind::TierMultiplier {
                    tier: "gold".into(),
                    percent: 150,
                },
            ),
            Rule::new(
                "cap",
                RuleKind::DailyCap {
                    max: Points::new(500),
                },
            ),
        ];
        let event = Event::RuleSetPublished(RuleSetPublished {
            rule_set: RuleSet::new(2, rules).unwrap(),
            published_at: at(),
        });
        let encoded = encode(&event).unwrap();
        assert_eq!(encoded.type_version, 2);
        assert_eq!(
            decode(encoded.event_type, encoded.type_version, &encoded.payload).unwrap(),
            event
        );
    }

    #[test]
    fn customer_enrolled_v1_is_read_without_its_plain_phone_number() {
        #[derive(Serialize)]
        struct PublishedV1 {
            customer_id: CustomerId,
            phone: String,
            #[serde(with = "chrono::serde::ts_microseconds")]
            enrolled_at: DateTime<Utc>,
        }
        let bytes = rmp_serde::to_vec_named(&PublishedV1 {
            customer_id: CustomerId::from_uuid(id(2)),
            phone: "+2348012345678".into(),
            enrolled_at: at(),
        })
        .unwrap();
        assert_eq!(
            decode("CustomerEnrolled", 1, &bytes).unwrap(),
            Event::CustomerEnrolled(CustomerEnrolled {
                customer_id: CustomerId::from_uuid(id(2)),
                personal_data: None,
                enrolled_at: at(),
                birthday: None,
                referral_code: None,
                referred_by: None,
            })
        );
    }

    #[test]
    fn customer_enrolled_v2_is_read_without_birthday_or_referral() {
        #[derive(Serialize)]
        struct PublishedV2 {
            customer_id: CustomerId,
            personal_data: Option<SealedPersonalData>,
            #[serde(with = "chrono::serde::ts_microseconds")]
            enrolled_at: DateTime<Utc>,
        }
        let bytes = rmp_serde::to_vec_named(&PublishedV2 {
            customer_id: CustomerId::from_uuid(id(2)),
            personal_data: None,
            enrolled_at: at(),
        })
        .unwrap();
        assert_eq!(
            decode("CustomerEnrolled", 2, &bytes).unwrap(),
            Event::CustomerEnrolled(CustomerEnrolled {
                customer_id: CustomerId::from_uuid(id(2)),
                personal_data: None,
                enrolled_at: at(),
                birthday: None,
                referral_code: None,
                referred_by: None,
            })
        );
    }

    #[test]
    fn sealed_personal_data_is_stored_as_binary_not_as_an_array_of_numbers() {
        let event = &one_of_each()[2];
        let encoded = encode(event).unwrap();
        // bin 8 header (0xc4) + length 12 + the nonce bytes: compact and unambiguous.
        let nonce_as_bin = [&[0xc4, 12][..], &[7u8; 12][..]].concat();
        assert!(encoded
            .payload
            .windows(nonce_as_bin.len())
            .any(|w| w == nonce_as_bin.as_slice()));
    }

    #[test]
    fn a_v2_payload_read_as_v1_still_decodes_its_common_fields() {
        // Named fields make old readers tolerant of added fields.
        let event = &one_of_each()[3];
        let encoded = encode(event).unwrap();
        let Event::PurchaseLogged(p) = decode("PurchaseLogged", 1, &encoded.payload).unwrap()
        else {
            panic!("wrong type");
        };
        assert_eq!(p.amount, MinorUnits::new(250_000));
    }

    #[test]
    fn unknown_types_versions_and_garbage_are_errors_not_panics() {
        assert!(matches!(
            decode("Nope", 1, &[]),
            Err(CodecError::UnknownType { .. })
        ));
        assert!(matches!(
            decode("PointsEarned", 99, &[]),
            Err(CodecError::UnknownType { .. })
        ));
        assert!(matches!(
            decode("PointsEarned", 1, &[0xc1, 0xff, 0x00]),
            Err(CodecError::Decode { .. })
        ));
        assert!(decode_metadata(&[0x92]).is_err());
    }

    #[test]
    fn metadata_round_trips() {
        let metadata = EventMetadata {
            actor: Actor::ApiKey(id(7)),
            correlation_id: id(8),
            causation_id: Some(EventId::from_uuid(id(6))),
        };
        let bytes = encode_metadata(&metadata).unwrap();
        assert_eq!(decode_metadata(&bytes).unwrap(), metadata);
    }
}
