//! The conversation processor's side of the ledger: the two commands a customer causes
//! (enrolment, redemption) through the group-commit writer, and the tenant-scoped reads the
//! replies are rendered from.
//!
//! Commands carry an idempotency key derived from the inbox item (`wa:<dedupe key>:enrol`,
//! `wa:<dedupe key>:redeem`) and a request hash derived only from what the customer asked
//! (tenant, customer, reward), so processing the same item again, after a crash, gets the
//! first answer back (the same customer id, the same redemption code) instead of a second
//! enrolment or redemption. The answer is rendered by this module's own render functions into
//! a small JSON body that the writer stores with the key; the reply is built from that body,
//! whether it was decided now or replayed: read-your-writes, never a projection.
//!
//! Reads (points, history, rewards) fold the customer's and the tenant's streams inside a
//! transaction scoped to the tenant (`schema::tenancy::begin`), not the balances projection:
//! a reply right after a purchase or a redemption must show it, and the projection lags the
//! writer by the relay and the projector. A customer stream is small (one customer's
//! purchases); a tenant stream holds registration, rule sets and rewards.

use chrono::{DateTime, NaiveDate, Utc};
use ledger_api::customers::EnrolmentRequest;
use ledger_core::aggregate::Aggregate;
use ledger_core::conversation::render::{HistoryLine, RedemptionOutcome, RewardLine};
use ledger_core::events::{Actor, EventMetadata, HoldReleaseReason};
use ledger_core::{
    Command, CustomerId, CustomerState, Event, PhoneNumber, Points, RedemptionId, Rejection,
    Reward, RewardId, RewardStock, StreamId, TenantId, TenantState,
};
use schema::writer::{IdempotencyClaim, Refusal, Submission, Verdict, WriterHandle};
use schema::{Outcome, StoredResponse};
use serde_json::{json, Value};
use uuid::Uuid;
use vault::Vault;

/// Events read per round trip when folding a stream.
const STREAM_PAGE_EVENTS: i64 = 1_000;
/// `keyed_digest` purpose of the request hashes of the processor's commands.
const REQUEST_DIGEST_PURPOSE: &str = "whatsapp-command";

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The database or the writer is unavailable: try the item again later.
    #[error("the ledger is unavailable: {0}")]
    Unavailable(String),
    /// The item can never succeed (a corrupt stored answer, a vault failure): skip it.
    #[error("{0}")]
    Permanent(String),
}

impl From<tokio_postgres::Error> for LedgerError {
    fn from(error: tokio_postgres::Error) -> Self {
        LedgerError::Unavailable(schema::db::error_text(&error))
    }
}

impl From<schema::StoreError> for LedgerError {
    fn from(error: schema::StoreError) -> Self {
        LedgerError::Unavailable(error.to_string())
    }
}

impl From<deadpool_postgres::PoolError> for LedgerError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        LedgerError::Unavailable(error.to_string())
    }
}

/// A customer's balance, lots and recent transactions, as of now.
#[derive(Debug, Clone)]
pub struct CustomerFacts {
    pub state: CustomerState,
    /// Newest first, at most `render::HISTORY_LINES_MAX`.
    pub history: Vec<HistoryLine>,
}

impl CustomerFacts {
    /// What the customer can spend: the balance less open holds (never negative here: a
    /// debt shows as nothing to spend).
    pub fn available(&self) -> Points {
        Points::new(self.state.available().value().max(0))
    }

    /// Points of the lots expiring within `window_days` of `now`, and the soonest expiry.
    pub fn expiring(&self, now: DateTime<Utc>, window_days: u32) -> (Points, Option<NaiveDate>) {
        let horizon = now + chrono::Duration::days(i64::from(window_days));
        let expiring = self
            .state
            .lots
            .iter()
            .filter(|lot| !lot.is_pending() && lot.expires_at <= horizon)
            .fold(Points::ZERO, |sum, lot| {
                sum.checked_add(lot.free()).unwrap_or(sum)
            });
        let soonest = self
            .state
            .lots
            .iter()
            .map(|lot| lot.expires_at)
            .min()
            .map(|at| at.date_naive());
        (expiring, soonest)
    }
}

/// The tenant's state (profile and catalogue), read in a transaction scoped to it.
pub async fn tenant(pool: &schema::Pool, tenant_id: TenantId) -> Result<TenantState, LedgerError> {
    let mut client = pool.get().await?;
    let transaction = schema::tenancy::begin(&mut client, tenant_id).await?;
    let state = schema::rewards::tenant_state(&*transaction, tenant_id).await?;
    transaction.commit().await?;
    Ok(state)
}

/// The customer's state and last transactions, folded from their stream.
pub async fn customer(
    pool: &schema::Pool,
    tenant_id: TenantId,
    customer_id: CustomerId,
) -> Result<CustomerFacts, LedgerError> {
    let mut client = pool.get().await?;
    let transaction = schema::tenancy::begin(&mut client, tenant_id).await?;
    let stream = StreamId::Customer(customer_id);
    let mut state = CustomerState::default();
    let mut history = Vec::new();
    let mut version = 0;
    loop {
        let page =
            schema::store::read_stream(&*transaction, stream, version, STREAM_PAGE_EVENTS).await?;
        for recorded in &page {
            let event = recorded
                .decode()
                .map_err(|e| LedgerError::Permanent(format!("undecodable event: {e}")))?;
            state.apply(&event);
            if let Some(line) = history_line(&event) {
                history.push(line);
            }
            version = recorded.version;
        }
        if (page.len() as i64) < STREAM_PAGE_EVENTS {
            break;
        }
    }
    transaction.commit().await?;
    history.reverse();
    history.truncate(ledger_core::conversation::render::HISTORY_LINES_MAX);
    Ok(CustomerFacts { state, history })
}

fn history_line(event: &Event) -> Option<HistoryLine> {
    Some(match event {
        Event::PointsEarned(e) => HistoryLine {
            on: e.earned_at.date_naive(),
            points: e.points.value(),
            reason: "Purchase".to_owned(),
        },
        Event::RewardRedeemed(e) => HistoryLine {
            on: e.redeemed_at.date_naive(),
            points: -e.points.value(),
            reason: match &e.code {
                Some(code) => format!("{} (code {code})", e.description),
                None => e.description.clone(),
            },
        },
        Event::PointsExpired(e) => HistoryLine {
            on: e.expired_at.date_naive(),
            points: -e.points.value(),
            reason: "Expired".to_owned(),
        },
        // The customer's view is what they can spend: a hold takes the points out of it
        // now, its release gives them back, and the hand-over changes nothing more.
        Event::RewardHeld(e) => HistoryLine {
            on: e.held_at.date_naive(),
            points: -e.points.value(),
            reason: format!("{} (code {})", e.description, e.code),
        },
        Event::HoldReleased(e) => HistoryLine {
            on: e.released_at.date_naive(),
            points: e.points.value(),
            reason: match e.reason {
                HoldReleaseReason::Cancelled => "Reward cancelled".to_owned(),
                HoldReleaseReason::Expired => "Reward not collected in time".to_owned(),
            },
        },
        Event::PurchaseRefunded(e) => HistoryLine {
            on: e.refunded_at.date_naive(),
            points: -e.reversal.reversed().value(),
            reason: "Refund".to_owned(),
        },
        Event::PointsAdjusted(e) => HistoryLine {
            on: e.adjusted_at.date_naive(),
            points: e.points.value(),
            reason: format!("Adjustment: {}", e.reason),
        },
        _ => return None,
    })
}

/// The units used of the tenant's rewards, read in a transaction scoped to it. Not cached:
/// a list that offers a reward out of stock would invite a refusal.
pub async fn reward_stock(
    pool: &schema::Pool,
    tenant_id: TenantId,
) -> Result<RewardStock, LedgerError> {
    let mut client = pool.get().await?;
    let transaction = schema::tenancy::begin(&mut client, tenant_id).await?;
    let stock = schema::rewards::stock_used(&*transaction, tenant_id).await?;
    transaction.commit().await?;
    Ok(stock)
}

/// Whether the list offers `reward` at `at`: active, inside its validity window and not
/// out of stock. (The per-customer limit is left to the redemption's answer: the list is
/// the catalogue, and the reply says why.)
fn on_offer(reward: &Reward, stock: &RewardStock, at: DateTime<Utc>) -> bool {
    reward.is_offered_at(at) && reward.stock_remaining(stock) != Some(0)
}

fn line(reward: &Reward) -> RewardLine {
    RewardLine {
        id: reward.reward_id,
        name: reward.name.clone(),
        cost: reward.points_cost,
        description: reward.terms.description.clone(),
    }
}

/// A reward of the tenant's catalogue on offer now, or `None` (unknown, retired, not valid
/// now, out of stock, another tenant's: ids in buttons are replayable and forgeable).
pub fn active_reward(
    tenant: &TenantState,
    stock: &RewardStock,
    reward: RewardId,
    at: DateTime<Utc>,
) -> Option<RewardLine> {
    tenant
        .rewards
        .get(&reward)
        .filter(|r| on_offer(r, stock, at))
        .map(line)
}

/// The name of the customer's tier (`None` = the ladder's base), or `None` when the tenant
/// has no ladder.
pub fn tier_name(tenant: &TenantState, tier: Option<&str>) -> Option<String> {
    let scheme = tenant.profile.as_ref()?.tier_scheme.as_ref()?;
    let tier = tier
        .and_then(|id| scheme.tier(id))
        .unwrap_or(&scheme.tiers[0]);
    Some(tier.name.clone())
}

/// The rewards on offer now in display order (creation order).
pub fn active_rewards(
    tenant: &TenantState,
    stock: &RewardStock,
    at: DateTime<Utc>,
) -> Vec<RewardLine> {
    tenant
        .rewards
        .values()
        .filter(|r| on_offer(r, stock, at))
        .map(line)
        .collect()
}

/// Enrols the WhatsApp sender at `tenant_id` (or finds them: a number already enrolled there
/// answers with its customer id) and returns the customer id. Idempotent on `key`.
pub async fn enrol(
    writer: &WriterHandle,
    vault: &Vault,
    tenant_id: TenantId,
    wa_id: &str,
    profile_name: Option<&str>,
    key: String,
) -> Result<CustomerId, LedgerError> {
    let phone = PhoneNumber::parse(&format!("+{wa_id}"))
        .map_err(|_| LedgerError::Permanent("the sender's wa_id is no phone number".into()))?;
    let name = profile_name
        .map(|n| n.trim().chars().take(ledger_api::customers::NAME_CHARS_MAX))
        .map(|n| n.collect::<String>())
        .filter(|n| !n.is_empty());
    let customer_id = CustomerId::from_uuid(Uuid::now_v7());
    // A customer who joins on WhatsApp gives no birthday and no referral code (yet).
    let command = EnrolmentRequest {
        phone,
        name,
        birthday: None,
        referral_code: None,
    }
    .into_command(
        vault,
        tenant_id,
        customer_id,
        None,
        ledger_api::commands::now(),
    )
    .map_err(|e| LedgerError::Permanent(format!("sealing the enrolment: {e:?}")))?;
    // The hash names the tenant and the number (as a digest), not the fresh customer id or
    // the sealed data, so a replay of the same item matches it.
    let request_hash = vault.keyed_digest(
        REQUEST_DIGEST_PURPOSE,
        format!("enrol:{tenant_id}:{wa_id}").as_bytes(),
    );
    let submission = Submission {
        tenant_id,
        command,
        metadata: metadata(Actor::Customer(customer_id)),
        idempotency: Some(IdempotencyClaim { key, request_hash }),
        render: render_enrolment,
    };
    let body = answer(writer.submit(submission).await)?;
    body.get("customer_id")
        .and_then(Value::as_str)
        .and_then(|raw| CustomerId::parse(raw).ok())
        .ok_or_else(|| LedgerError::Permanent(format!("enrolment refused: {body}")))
}

/// Redeems `reward` for the customer with a fresh code; the outcome as the writer answered
/// it (now or, on a replay, the first time). Idempotent on `key`.
pub async fn redeem(
    writer: &WriterHandle,
    vault: &Vault,
    tenant_id: TenantId,
    customer_id: CustomerId,
    reward_id: RewardId,
    key: String,
) -> Result<RedemptionOutcome, LedgerError> {
    let code = ledger_api::redemptions::new_code()
        .map_err(|e| LedgerError::Unavailable(format!("no redemption code: {e:?}")))?;
    let command = Command::RedeemReward {
        customer_id,
        redemption_id: RedemptionId::from_uuid(Uuid::now_v7()),
        reward_id,
        code,
        at: ledger_api::commands::now(),
    };
    let request_hash = vault.keyed_digest(
        REQUEST_DIGEST_PURPOSE,
        format!("redeem:{tenant_id}:{customer_id}:{reward_id}").as_bytes(),
    );
    let submission = Submission {
        tenant_id,
        command,
        metadata: metadata(Actor::Customer(customer_id)),
        idempotency: Some(IdempotencyClaim { key, request_hash }),
        render: render_redemption,
    };
    let body = answer(writer.submit(submission).await)?;
    redemption_outcome(&body)
        .ok_or_else(|| LedgerError::Permanent(format!("unexpected redemption answer: {body}")))
}

fn metadata(actor: Actor) -> EventMetadata {
    EventMetadata {
        actor,
        correlation_id: Uuid::now_v7(),
        causation_id: None,
    }
}

/// The stored answer's JSON, decided now or replayed.
fn answer(outcome: Result<Outcome, schema::WriterError>) -> Result<Value, LedgerError> {
    let response = match outcome {
        Ok(Outcome::Decided { response, .. }) | Ok(Outcome::Replayed(response)) => response,
        Ok(Outcome::KeyReusedWithDifferentRequest) => {
            return Err(LedgerError::Permanent(
                "idempotency key reused with another request".into(),
            ))
        }
        Err(error) => return Err(LedgerError::Unavailable(error.to_string())),
    };
    serde_json::from_slice(&response.body)
        .map_err(|e| LedgerError::Permanent(format!("stored answer is not JSON: {e}")))
}

fn stored(status: u16, body: Value) -> StoredResponse {
    StoredResponse {
        status,
        body: body.to_string().into_bytes(),
    }
}

/// The enrolment's answer: the customer id, new or already enrolled.
fn render_enrolment(submission: &Submission, verdict: &Verdict<'_>) -> StoredResponse {
    match (verdict, &submission.command) {
        (Verdict::Accepted { .. }, Command::EnrolCustomer { customer_id, .. }) => {
            stored(201, json!({ "customer_id": customer_id.to_string() }))
        }
        (Verdict::Refused(Refusal::PhoneAlreadyEnrolled(customer_id)), _) => {
            stored(200, json!({ "customer_id": customer_id.to_string() }))
        }
        (Verdict::Refused(refusal), _) => stored(409, json!({ "refused": format!("{refusal:?}") })),
        _ => stored(500, json!({ "refused": "not an enrolment" })),
    }
}

/// The redemption's answer: what the reply needs, from the decision itself.
fn render_redemption(_: &Submission, verdict: &Verdict<'_>) -> StoredResponse {
    match verdict {
        Verdict::Accepted {
            events,
            tenant,
            customer,
            ..
        } => {
            let held = events.iter().find_map(|e| match e {
                Event::RewardHeld(h) => Some(h),
                _ => None,
            });
            let Some(held) = held else {
                return stored(500, json!({ "outcome": "no_event" }));
            };
            let reward_name = tenant
                .rewards
                .get(&held.reward_id)
                .map_or_else(|| held.description.clone(), |r| r.name.clone());
            stored(
                201,
                json!({
                    "outcome": "redeemed",
                    "reward_name": reward_name,
                    "code": held.code,
                    "points": held.points.value(),
                    // What the customer can still spend: the held points are out of it.
                    "balance": customer.available().value(),
                }),
            )
        }
        Verdict::Refused(Refusal::Rejected(Rejection::InsufficientPoints {
            available,
            requested,
        })) => stored(
            409,
            json!({ "outcome": "insufficient", "balance": available.value(), "cost": requested.value() }),
        ),
        Verdict::Refused(Refusal::Rejected(
            Rejection::RewardNotFound | Rejection::RewardRetired,
        )) => stored(409, json!({ "outcome": "unavailable" })),
        Verdict::Refused(Refusal::Rejected(Rejection::OutOfStock { .. })) => {
            stored(409, json!({ "outcome": "out_of_stock" }))
        }
        Verdict::Refused(Refusal::Rejected(Rejection::PerCustomerLimitReached { limit })) => {
            stored(409, json!({ "outcome": "limit_reached", "limit": limit }))
        }
        Verdict::Refused(Refusal::Rejected(
            Rejection::RewardNotYetValid { .. } | Rejection::RewardNoLongerValid { .. },
        )) => stored(409, json!({ "outcome": "not_valid_now" })),
        Verdict::Refused(refusal) => stored(
            409,
            json!({ "outcome": "refused", "refusal": format!("{refusal:?}") }),
        ),
    }
}

fn redemption_outcome(body: &Value) -> Option<RedemptionOutcome> {
    let points = |field: &str| body.get(field).and_then(Value::as_i64).map(Points::new);
    match body.get("outcome")?.as_str()? {
        "redeemed" => Some(RedemptionOutcome::Redeemed {
            reward_name: body.get("reward_name")?.as_str()?.to_owned(),
            code: body.get("code")?.as_str()?.to_owned(),
            points: points("points")?,
            balance: points("balance")?,
        }),
        "insufficient" => Some(RedemptionOutcome::Insufficient {
            balance: points("balance")?,
            cost: points("cost")?,
        }),
        "out_of_stock" => Some(RedemptionOutcome::OutOfStock),
        "limit_reached" => Some(RedemptionOutcome::LimitReached {
            limit: u32::try_from(body.get("limit")?.as_u64()?).ok()?,
        }),
        "not_valid_now" => Some(RedemptionOutcome::NotValidNow),
        // Unavailable, or refused for another reason (an erased customer): nothing was
        // deducted, and the reply says the reward cannot be had.
        _ => Some(RedemptionOutcome::RewardUnavailable),
    }
}
