//! The pure domain of loyalty-ledger.
//!
//! Reading order: [`amounts`], [`ids`], [`redemption_code`] and [`people`] (the newtypes every other
//! module speaks in),
//! [`rules`] (how a purchase becomes points; [`dry_run`] folds a proposed set over recorded
//! purchases), [`events`] and [`command`] (the facts and the
//! requests), [`aggregate`] (`decide` and `evolve`), then [`codec`] (the MessagePack wire
//! format with a version per event type) and [`chain`] (the per-tenant SHA-256 hash chain).
//! [`conversation`] is the WhatsApp conversation: a state machine over the customer's
//! messages whose effects the shell executes. [`broadcast`] is a vendor's template message
//! to a segment of its customers: segments, templates, and the broadcast's states.
//! [`analytics`] folds a tenant's events into counter deltas for the analytics read model.
//!
//! Architecture invariant: this crate does no IO. It has no tokio, postgres, nats, actix
//! or reqwest dependency and never reads the clock: time is an input of every command.

pub mod aggregate;
pub mod amounts;
pub mod analytics;
pub mod books;
pub mod broadcast;
pub mod chain;
pub mod codec;
pub mod command;
pub mod conversation;
pub mod dry_run;
pub mod events;
pub mod ids;
pub mod people;
pub mod phone;
pub mod redemption_code;
pub mod rules;
pub mod tiers;

pub use aggregate::{
    decide, evolve, CustomerState, LedgerState, Lot, PublishedRuleSet, Redemption, Reward,
    RewardStock, TenantProfile, TenantState,
};
pub use amounts::{AmountError, Currency, MinorUnits, Points};
pub use command::{Command, Rejection};
pub use events::Event;
pub use ids::{
    AdjustmentId, CustomerId, EventId, LotId, PurchaseId, RedemptionId, RefundId, RewardId,
    StreamId, TenantId,
};
pub use people::{Birthday, ReferralCode};
pub use phone::PhoneNumber;
pub use redemption_code::RedemptionCode;
pub use rules::{Rule, RuleSet};
