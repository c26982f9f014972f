//! Requests to change the ledger, and why one may be refused.

use crate::amounts::{Currency, MinorUnits, Points};
use crate::events::{LineItem, ProgrammeSettings, RewardTerms, SealedPersonalData};
use crate::ids::{
    AdjustmentId, CustomerId, LotId, PurchaseId, RedemptionId, RefundId, RewardId, TenantId,
};
use crate::people::{Birthday, ReferralCode};
use crate::redemption_code::RedemptionCode;
use crate::rules::{InvalidRuleSet, Rule, RuleSet};
use chrono::{DateTime, Utc};

/// The keyed blind index of a phone number: HMAC-SHA256 under the blind-index key, so the
/// number can be looked up without being stored. Computed by the shell (`vault`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PhoneIndex(pub [u8; 32]);

impl std::fmt::Debug for PhoneIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PhoneIndex(..)")
    }
}

/// A customer's data key, encrypted under the master key named `master_key_id`.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedDataKey {
    pub master_key_id: String,
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for WrappedDataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WrappedDataKey(master {})", self.master_key_id)
    }
}

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
    /// Enrols a customer whose personal data the shell has already sealed. `phone_index` (the
    /// keyed blind index of the number) and `data_key` (the wrapped data key) are for the
    /// writer's phone index and key store; neither is written into an event, so erasing the
    /// key and the index leaves nothing in the ledger that links back to the person.
    ///
    /// `referral_code` is the customer's own code, drawn by the shell (the writer keeps it
    /// unique per tenant in `referral_codes`); `referred_by` is the customer whose code
    /// the new customer gave, looked up by the shell.
    EnrolCustomer {
        customer_id: CustomerId,
        phone_index: PhoneIndex,
        personal_data: SealedPersonalData,
        data_key: WrappedDataKey,
        birthday: Option<Birthday>,
        referral_code: ReferralCode,
        referred_by: Option<CustomerId>,
        at: DateTime<Utc>,
    },
    /// Sets, changes or (`None`) clears the customer's birthday.
    SetBirthday {
        customer_id: CustomerId,
        birthday: Option<Birthday>,
        at: DateTime<Utc>,
    },
    /// Credits the referrer (`customer_id`) with the bonus a referee's first purchase
    /// qualified (`ReferralQualified` in the referee's stream). Once per referee: a second
    /// award is [`Rejection::ReferralAlreadyAwarded`].
    AwardReferralBonus {
        customer_id: CustomerId,
        referee: CustomerId,
        points: Points,
        lot_id: LotId,
        at: DateTime<Utc>,
    },
    /// Erases the customer's personal data (crypto-shredding: the writer deletes the data key
    /// and the phone index in the same transaction as the `CustomerErased` event).
    EraseCustomer {
        customer_id: CustomerId,
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
    /// Adds a reward to the tenant's catalogue: a name of 1 to [`REWARD_NAME_CHARS_MAX`]
    /// characters (not only blanks), a cost of at least one point, and its terms (checked
    /// like [`Command::UpdateReward`]'s).
    CreateReward {
        reward_id: RewardId,
        name: String,
        points_cost: Points,
        terms: RewardTerms,
        at: DateTime<Utc>,
    },
    /// Replaces a reward's name, cost and terms as a whole (owner). Refused when the new
    /// `stock` is below the units already used (open and fulfilled holds), which the shell
    /// supplies (`aggregate::RewardStock`).
    UpdateReward {
        reward_id: RewardId,
        name: String,
        points_cost: Points,
        terms: RewardTerms,
        at: DateTime<Utc>,
    },
    /// Takes a reward out of the catalogue (it stays listed, as retired).
    RetireReward {
        reward_id: RewardId,
        at: DateTime<Utc>,
    },
    /// Spends the reward's cost from the customer's points, like `RedeemPoints` (due lots
    /// expire first, soonest-expiring lots are spent first), and records the code the
    /// customer collects the reward with. The shell draws the code at random and the writer
    /// keeps it unique per tenant (`redemption_codes`).
    RedeemReward {
        customer_id: CustomerId,
        redemption_id: RedemptionId,
        reward_id: RewardId,
        code: RedemptionCode,
        at: DateTime<Utc>,
    },
    /// The vendor hands a redeemed reward over; once per redemption.
    FulfilRedemption {
        customer_id: CustomerId,
        redemption_id: RedemptionId,
        at: DateTime<Utc>,
    },
    /// Expires what is left of every lot of the customer whose date has passed at `at`.
    /// Expiring nothing is a success with no events, which makes the expiry run idempotent.
    ExpirePoints {
        customer_id: CustomerId,
        at: DateTime<Utc>,
    },
    /// Replaces the programme's settings (time zone, return window, refund policy, hold
    /// window, point value) as a whole.
    ChangeProgrammeSettings {
        settings: ProgrammeSettings,
        at: DateTime<Utc>,
    },
    /// Refunds `amount` of a logged purchase (full or partial). The points go back in
    /// proportion; see `aggregate` for the rounding and the order the points come from
    /// (reward holds on points it must take back are cancelled first).
    RefundPurchase {
        customer_id: CustomerId,
        refund_id: RefundId,
        purchase_id: PurchaseId,
        amount: MinorUnits,
        reference: Option<String>,
        at: DateTime<Utc>,
    },
    /// A manual adjustment, positive (opens lot `lot_id`) or negative (takes from the
    /// available points), with a reason of 1 to [`REASON_CHARS_MAX`] characters.
    AdjustPoints {
        customer_id: CustomerId,
        adjustment_id: AdjustmentId,
        lot_id: LotId,
        points: Points,
        reason: String,
        at: DateTime<Utc>,
    },
    /// Activates every pending lot whose return window has passed at `at` (scheduled;
    /// nothing due is a success with no events).
    ActivatePendingPoints {
        customer_id: CustomerId,
        at: DateTime<Utc>,
    },
    /// The vendor cancels an open hold: its points become available again.
    CancelHold {
        customer_id: CustomerId,
        redemption_id: RedemptionId,
        at: DateTime<Utc>,
    },
    /// Releases every open hold whose window has passed at `at` (scheduled; idempotent).
    ExpireHolds {
        customer_id: CustomerId,
        at: DateTime<Utc>,
    },
    /// Publishes the tenant's tier ladder (replacing any before).
    PublishTierScheme {
        scheme: crate::tiers::TierScheme,
        at: DateTime<Utc>,
    },
    /// Reviews the customer's tier if its review date (plus grace) has passed at `at`
    /// (scheduled; nothing due is a success with no events).
    ReviewTier {
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
            Command::RegisterTenant { .. }
            | Command::PublishRuleSet { .. }
            | Command::CreateReward { .. }
            | Command::UpdateReward { .. }
            | Command::RetireReward { .. }
            | Command::ChangeProgrammeSettings { .. }
            | Command::PublishTierScheme { .. } => Target::Tenant,
            Command::EnrolCustomer { customer_id, .. }
            | Command::RedeemReward { customer_id, .. }
            | Command::FulfilRedemption { customer_id, .. }
            | Command::LogPurchase { customer_id, .. }
            | Command::RedeemPoints { customer_id, .. }
            | Command::ExpirePoints { customer_id, .. }
            | Command::EraseCustomer { customer_id, .. }
            | Command::RefundPurchase { customer_id, .. }
            | Command::AdjustPoints { customer_id, .. }
            | Command::ActivatePendingPoints { customer_id, .. }
            | Command::CancelHold { customer_id, .. }
            | Command::ExpireHolds { customer_id, .. }
            | Command::ReviewTier { customer_id, .. }
            | Command::SetBirthday { customer_id, .. }
            | Command::AwardReferralBonus { customer_id, .. } => Target::Customer(*customer_id),
        }
    }
}

/// The longest name a reward may have, in characters.
pub const REWARD_NAME_CHARS_MAX: usize = 60;
/// The longest reward description, in characters: a WhatsApp list row's description.
pub const REWARD_DESCRIPTION_CHARS_MAX: usize = 72;
/// The longest reward image URL, in characters.
pub const REWARD_IMAGE_URL_CHARS_MAX: usize = 2048;
/// The most units a reward's stock may state.
pub const REWARD_STOCK_MAX: u32 = 1_000_000_000;
/// The highest per-customer limit a reward may state.
pub const REWARD_PER_CUSTOMER_LIMIT_MAX: u32 = 1_000;
/// The longest reason an adjustment may give, in characters.
pub const REASON_CHARS_MAX: usize = 200;
/// The longest hold window a tenant may set, in days.
pub const HOLD_DAYS_MAX: u32 = 365;

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
    #[error("the customer's personal data was erased")]
    CustomerErased,
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
    #[error("a reward's name must be 1 to {REWARD_NAME_CHARS_MAX} characters, not only blanks")]
    InvalidRewardName,
    #[error("a reward with this id already exists")]
    RewardAlreadyExists,
    #[error("there is no reward with this id")]
    RewardNotFound,
    #[error("the reward is retired")]
    RewardRetired,
    #[error("there is no redemption of a reward with this id")]
    RedemptionNotFound,
    #[error("the redemption was already fulfilled")]
    AlreadyFulfilled,
    #[error("invalid settings: {0}")]
    InvalidSettings(&'static str),
    #[error("there is no purchase with this id")]
    PurchaseNotFound,
    #[error("the refund exceeds the purchase: at most {refundable} is left to refund")]
    RefundExceedsPurchase { refundable: MinorUnits },
    #[error("a reason must be 1 to {REASON_CHARS_MAX} characters, not only blanks")]
    InvalidReason,
    #[error("an adjustment must add or take away at least one point")]
    AdjustmentZero,
    #[error("the hold was already released (cancelled or expired)")]
    HoldReleased,
    #[error("the hold has expired")]
    HoldExpired,
    #[error("this redemption is not a hold")]
    NotAHold,
    #[error("invalid tier scheme: {0}")]
    InvalidTierScheme(#[from] crate::tiers::InvalidTierScheme),
    #[error("invalid reward {field}: {reason}")]
    InvalidRewardTerms {
        field: &'static str,
        reason: &'static str,
    },
    #[error("the reward cannot be redeemed before {valid_from}")]
    RewardNotYetValid { valid_from: DateTime<Utc> },
    #[error("the reward could only be redeemed until {valid_until}")]
    RewardNoLongerValid { valid_until: DateTime<Utc> },
    #[error("the reward is out of stock: all {stock} units are held or handed over")]
    OutOfStock { stock: u32 },
    #[error("the customer already has {limit} of this reward, the most one customer may have")]
    PerCustomerLimitReached { limit: u32 },
    #[error("the stock cannot be {stock}: {used} units are already held or handed over")]
    StockBelowUsed { stock: u32, used: u32 },
    #[error("a customer cannot be their own referrer")]
    SelfReferral,
    #[error("the referrer was already awarded the bonus for this referee")]
    ReferralAlreadyAwarded,
}
