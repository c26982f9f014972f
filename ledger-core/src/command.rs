//! Requests to change the ledger, and why one may be refused.

use crate::amounts::{Currency, MinorUnits, Points};
use crate::events::LineItem;
use crate::ids::{CustomerId, LotId, PurchaseId, RedemptionId, TenantId};
use crate::phone::PhoneNumber;
use crate::rules::{InvalidRuleSet, Rule, RuleSet};
use chrono::{DateTime, Utc};

/// A command. Ids of things it creates are chosen by the caller (the shell), so a command
/// is a pure value and `decide` stays deterministic. `at` is the shell's clock reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    RegisterTenant {
        tenant_id: TenantId,
        name: String,
        currency: Currency,
        expiry_days: u32,
        rule_set: RuleSet,
        at: DateTime<Utc>,
    },
    /// Publishes a new rule set; its version is the current one plus one.
    PublishRuleSet { rules: Vec<Rule>, at: DateTime<Utc> },
    EnrolCustomer {
        customer_id: CustomerId,
        phone: PhoneNumber,
        at: DateTime<Utc>,
    },
    LogPurchase {
        customer_id: CustomerId,
        purchase_id: PurchaseId,
        lot_id: LotId,
        amount: MinorUnits,
        line_items: Vec<LineItem>,
        reference: Option<String>,
        /// When the purchase happened; `None` means now (`at`).
        occurred_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    },
    RedeemPoints {
        customer_id: CustomerId,
        redemption_id: RedemptionId,
        points: Points,
        description: String,
        at: DateTime<Utc>,
    },
    /// Expires what is left of every lot of the customer whose date has passed at `at`.
    /// Expiring nothing is a success with no events, which makes the expiry run idempotent.
    ExpirePoints {
        customer_id: CustomerId,
        at: DateTime<Utc>,
    },
}

/// Whose stream a command writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Tenant,
    Customer(CustomerId),
}

impl Command {
    pub fn target(&self) -> Target {
        match self {
            Command::RegisterTenant { .. } | Command::PublishRuleSet { .. } => Target::Tenant,
            Command::EnrolCustomer { customer_id, .. }
            | Command::LogPurchase { customer_id, .. }
            | Command::RedeemPoints { customer_id, .. }
            | Command::ExpirePoints { customer_id, .. } => Target::Customer(*customer_id),
        }
    }
}

/// Why `decide` refused a command. A refused command changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("the tenant is already registered")]
    TenantAlreadyRegistered,
    #[error("the tenant is not registered")]
    TenantNotRegistered,
    #[error("the customer is already enrolled")]
    CustomerAlreadyEnrolled,
    #[error("the customer is not enrolled")]
    CustomerNotEnrolled,
    #[error("insufficient points: balance {available}, requested {requested}")]
    InsufficientPoints {
        available: Points,
        requested: Points,
    },
    #[error("the line items add up to {line_items_total}, not to the amount {amount}")]
    LineItemsDoNotAddUp {
        line_items_total: MinorUnits,
        amount: MinorUnits,
    },
    #[error("the amount must be greater than zero")]
    AmountNotPositive,
    #[error("the purchase is dated in the future")]
    PurchaseInFuture,
    #[error("invalid rule set: {0}")]
    InvalidRuleSet(#[from] InvalidRuleSet),
    #[error("the result would overflow")]
    Overflow,
}
