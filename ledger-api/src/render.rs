//! The render functions handed to the group-commit writer with each command.
//!
//! The writer calls one inside the batch, right after `decide`, so the response is stored
//! with the idempotency key in the same transaction as the events, and a retry gets exactly
//! these bytes back. An accepted command's response is computed from what was just decided
//! (the new events and the customer's state after them), never from a projection: the
//! caller reads its own write.

use crate::problem::{self, internal_problem, Problem};
use crate::rewards::RewardView;
use actix_web::http::StatusCode;
use chrono::{DateTime, Utc};
use ledger_core::command::Target;
use ledger_core::{Command, CustomerId, Event, LotId, PurchaseId, RedemptionId, RewardId};
use schema::{Refusal, StoredResponse, Submission, Verdict};
use serde::Serialize;

/// `201` body of `POST /v1/customers`. It does not echo the phone number: this body is
/// stored under the idempotency key, and personal data is stored only encrypted.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EnrolmentResponse {
    #[schema(value_type = uuid::Uuid)]
    pub customer_id: CustomerId,
    pub enrolled_at: DateTime<Utc>,
    /// The customer's own referral code, to share: a friend who enrols with it is referred.
    #[schema(required = true, example = "04HMASW9")]
    pub referral_code: Option<String>,
    /// The customer whose referral code this customer enrolled with.
    #[schema(value_type = Option<uuid::Uuid>, required = true)]
    pub referred_by: Option<CustomerId>,
}

/// `200` body of `PUT /v1/customers/{id}/birthday`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BirthdayResponse {
    #[schema(value_type = uuid::Uuid)]
    pub customer_id: CustomerId,
    /// `MM-DD`, or `null` when cleared.
    #[schema(required = true, example = "03-31")]
    pub birthday: Option<String>,
    pub set_at: DateTime<Utc>,
}

/// `200` body of `POST /v1/customers/{id}/erasure`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErasureResponse {
    #[schema(value_type = uuid::Uuid)]
    pub customer_id: CustomerId,
    pub erased_at: DateTime<Utc>,
}

/// `201` body of `POST /v1/purchases`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PurchaseResponse {
    #[schema(value_type = uuid::Uuid)]
    pub purchase_id: PurchaseId,
    #[schema(value_type = uuid::Uuid)]
    pub customer_id: CustomerId,
    pub amount_minor: i64,
    pub points_earned: i64,
    pub balance: i64,
    pub rule_set_version: u32,
    pub breakdown: Vec<RuleShare>,
    /// `None` (JSON `null`) when the purchase earned nothing, so no lot was opened.
    #[schema(required = true)]
    pub lot: Option<OpenedLot>,
}

/// One line of the breakdown: the rule (its id in the rule set) and what it changed (negative
/// for an exclusion, a multiplier below 100 % or a cap). The lines add up to `points_earned`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RuleShare {
    pub rule_id: String,
    /// The rule's kind, e.g. `per_amount_spent`.
    #[schema(value_type = String)]
    pub kind: &'static str,
    /// The kind again, as the first API version named it; prefer `kind`.
    #[schema(value_type = String, deprecated)]
    pub rule: &'static str,
    pub points: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OpenedLot {
    #[schema(value_type = uuid::Uuid)]
    pub lot_id: LotId,
    pub points: i64,
    pub expires_at: DateTime<Utc>,
}

/// `201` body of `POST /v1/customers/{id}/redemptions`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RedemptionResponse {
    #[schema(value_type = uuid::Uuid)]
    pub redemption_id: RedemptionId,
    #[schema(value_type = uuid::Uuid)]
    pub customer_id: CustomerId,
    pub points: i64,
    /// The posted balance after the redemption. A reward's points stay in it, held, until
    /// the reward is handed over; a redemption of a number of points leaves it at once.
    pub balance: i64,
    /// What the customer can still spend: `balance − held`.
    pub available: i64,
    /// Points reserved by the customer's open holds, this one included.
    pub held: i64,
    /// For a reward: when the hold expires (and its points become available again) if the
    /// reward is not handed over first. `null` for a redemption of a number of points.
    #[schema(required = true)]
    pub hold_expires_at: Option<DateTime<Utc>>,
    /// The catalogue reward redeemed; `null` for a redemption of a number of points.
    #[schema(value_type = Option<uuid::Uuid>, required = true)]
    pub reward_id: Option<RewardId>,
    /// What the customer shows at the counter to collect the reward: 8 characters of
    /// Crockford base32. `null` for a redemption of a number of points.
    #[schema(
        required = true,
        pattern = "^[0-9A-HJKMNP-TV-Z]{8}$",
        example = "04HMASW9"
    )]
    pub code: Option<String>,
}

/// `200` body of `POST /v1/redemptions/{code}/fulfil`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FulfilmentResponse {
    #[schema(value_type = uuid::Uuid)]
    pub redemption_id: RedemptionId,
    #[schema(value_type = uuid::Uuid)]
    pub customer_id: CustomerId,
    #[schema(value_type = uuid::Uuid)]
    pub reward_id: RewardId,
    pub fulfilled_at: DateTime<Utc>,
}

pub fn enrolment(_: &Submission, verdict: &Verdict<'_>) -> StoredResponse {
    let events = match verdict {
        Verdict::Refused(refusal) => return refused(refusal),
        Verdict::Accepted { events, .. } => events,
    };
    let enrolled = events.iter().find_map(|event| match event {
        Event::CustomerEnrolled(enrolled) => Some(enrolled),
        _ => None,
    });
    match enrolled {
        Some(enrolled) => created(&EnrolmentResponse {
            customer_id: enrolled.customer_id,
            enrolled_at: enrolled.enrolled_at,
            referral_code: enrolled.referral_code.clone(),
            referred_by: enrolled.referred_by,
        }),
        None => inconsistent("an accepted enrolment without CustomerEnrolled"),
    }
}

pub fn birthday(submission: &Submission, verdict: &Verdict<'_>) -> StoredResponse {
    let events = match verdict {
        Verdict::Refused(refusal) => return refused(refusal),
        Verdict::Accepted { events, .. } => events,
    };
    let set = events.iter().find_map(|event| match event {
        Event::BirthdaySet(set) => Some(set),
        _ => None,
    });
    let customer_id = match submission.command.target() {
        Target::Customer(customer_id) => Some(customer_id),
        Target::Tenant => None,
    };
    match (set, customer_id) {
        (Some(set), Some(customer_id)) => StoredResponse {
            status: StatusCode::OK.as_u16(),
            body: json_bytes(&BirthdayResponse {
                customer_id,
                birthday: set.birthday.map(|b| b.to_string()),
                set_at: set.set_at,
            }),
        },
        _ => inconsistent("an accepted birthday change without BirthdaySet"),
    }
}

pub fn erasure(_: &Submission, verdict: &Verdict<'_>) -> StoredResponse {
    let events = match verdict {
        Verdict::Refused(refusal) => return refused(refusal),
        Verdict::Accepted { events, .. } => events,
    };
    let erased = events.iter().find_map(|event| match event {
        Event::CustomerErased(erased) => Some(erased),
        _ => None,
    });
    match erased {
        Some(erased) => StoredResponse {
            status: StatusCode::OK.as_u16(),
            body: json_bytes(&ErasureResponse {
                customer_id: erased.customer_id,
                erased_at: erased.erased_at,
            }),
        },
        None => inconsistent("an accepted erasure without CustomerErased"),
    }
}

pub fn purchase(submission: &Submission, verdict: &Verdict<'_>) -> StoredResponse {
    let (events, tenant, customer) = match verdict {
        Verdict::Refused(refusal) => return refused(refusal),
        Verdict::Accepted {
            events,
            tenant,
            customer,
            ..
        } => (events, tenant, customer),
    };
    let logged = events.iter().find_map(|event| match event {
        Event::PurchaseLogged(logged) => Some(logged),
        _ => None,
    });
    let earned = events.iter().find_map(|event| match event {
        Event::PointsEarned(earned) => Some(earned),
        _ => None,
    });
    let (Some(logged), Some(customer_id)) = (logged, customer_of(&submission.command)) else {
        return inconsistent("an accepted purchase without PurchaseLogged");
    };
    // A purchase that earned nothing still tells which rule set judged it.
    let rule_set_version = earned
        .map(|e| e.rule_set_version)
        .or_else(|| tenant.profile.as_ref().map(|p| p.rule_set.version()));
    created(&PurchaseResponse {
        purchase_id: logged.purchase_id,
        customer_id,
        amount_minor: logged.amount.value(),
        points_earned: earned.map_or(0, |e| e.points.value()),
        balance: customer.balance.value(),
        rule_set_version: rule_set_version.unwrap_or_default(),
        breakdown: earned.map_or_else(Vec::new, |e| {
            e.breakdown
                .iter()
                .map(|share| RuleShare {
                    rule_id: share.rule_id.clone(),
                    kind: share.kind.as_str(),
                    rule: share.kind.as_str(),
                    points: share.points.value(),
                })
                .collect()
        }),
        lot: earned.map(|e| OpenedLot {
            lot_id: e.lot_id,
            points: e.points.value(),
            expires_at: e.expires_at,
        }),
    })
}

pub fn redemption(submission: &Submission, verdict: &Verdict<'_>) -> StoredResponse {
    let (events, customer) = match verdict {
        Verdict::Refused(refusal) => return refused(refusal),
        Verdict::Accepted {
            events, customer, ..
        } => (events, customer),
    };
    // The same decision may first expire lots past their date; the redemption is the last
    // event: a hold for a reward, a debit for a number of points.
    let redeemed = events.iter().find_map(|event| match event {
        Event::RewardRedeemed(r) => {
            Some((r.redemption_id, r.points, r.reward_id, r.code.clone(), None))
        }
        Event::RewardHeld(h) => Some((
            h.redemption_id,
            h.points,
            Some(h.reward_id),
            Some(h.code.clone()),
            Some(h.expires_at),
        )),
        _ => None,
    });
    let (Some((redemption_id, points, reward_id, code, hold_expires_at)), Some(customer_id)) =
        (redeemed, customer_of(&submission.command))
    else {
        return inconsistent("an accepted redemption without RewardRedeemed or RewardHeld");
    };
    created(&RedemptionResponse {
        redemption_id,
        customer_id,
        points: points.value(),
        balance: customer.balance.value(),
        available: customer.available().value(),
        held: customer.held.value(),
        hold_expires_at,
        reward_id,
        code,
    })
}

pub fn fulfilment(submission: &Submission, verdict: &Verdict<'_>) -> StoredResponse {
    let (events, customer) = match verdict {
        Verdict::Refused(refusal) => return refused(refusal),
        Verdict::Accepted {
            events, customer, ..
        } => (events, customer),
    };
    let fulfilled = events.iter().find_map(|event| match event {
        Event::RedemptionFulfilled(f) => Some((f.redemption_id, f.fulfilled_at)),
        Event::HoldFulfilled(f) => Some((f.redemption_id, f.fulfilled_at)),
        _ => None,
    });
    let redemption = fulfilled.and_then(|(id, _)| customer.redemptions.get(&id));
    let (Some((redemption_id, fulfilled_at)), Some(redemption), Some(customer_id)) =
        (fulfilled, redemption, customer_of(&submission.command))
    else {
        return inconsistent("an accepted fulfilment without its redemption");
    };
    ok(&FulfilmentResponse {
        redemption_id,
        customer_id,
        reward_id: redemption.reward_id,
        fulfilled_at,
    })
}

/// The reward a catalogue event names, as it stands after the decision, with what is left
/// of its stock (a new reward has used none).
fn reward_after(verdict: &Verdict<'_>) -> Result<RewardView, StoredResponse> {
    let (events, tenant, stock) = match verdict {
        Verdict::Refused(refusal) => return Err(refused(refusal)),
        Verdict::Accepted {
            events,
            tenant,
            stock,
            ..
        } => (events, tenant, stock),
    };
    events
        .iter()
        .find_map(|event| match event {
            Event::RewardCreated(e) => tenant.rewards.get(&e.reward_id),
            Event::RewardUpdated(e) => tenant.rewards.get(&e.reward_id),
            Event::RewardRetired(e) => tenant.rewards.get(&e.reward_id),
            _ => None,
        })
        .map(|reward| RewardView::new(reward, stock))
        .ok_or_else(|| inconsistent("an accepted catalogue command without its event"))
}

pub fn reward_created(_: &Submission, verdict: &Verdict<'_>) -> StoredResponse {
    reward_after(verdict).map_or_else(|response| response, |view| created(&view))
}

pub fn reward_updated(_: &Submission, verdict: &Verdict<'_>) -> StoredResponse {
    reward_after(verdict).map_or_else(|response| response, |view| ok(&view))
}

pub fn rule_set_published(_: &Submission, verdict: &Verdict<'_>) -> StoredResponse {
    let events = match verdict {
        Verdict::Refused(refusal) => return refused(refusal),
        Verdict::Accepted { events, .. } => events,
    };
    let published = events.iter().find_map(|event| match event {
        Event::RuleSetPublished(published) => Some(published),
        _ => None,
    });
    match published {
        Some(published) => ok(&crate::rules::RuleSetView {
            version: published.rule_set.version(),
            published_at: published.published_at,
            rules: published.rule_set.rules().to_vec(),
        }),
        None => inconsistent("an accepted publication without RuleSetPublished"),
    }
}

pub fn reward_retired(_: &Submission, verdict: &Verdict<'_>) -> StoredResponse {
    reward_after(verdict).map_or_else(|response| response, |view| ok(&view))
}

/// Serialises a response body. Our response types always serialise; should one ever not,
/// the caller gets a 500 problem rather than a panic or an empty body.
pub fn json_bytes<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_else(|error| {
        tracing::error!(%error, "a response body did not serialise");
        br#"{"type":"https://loyalty-ledger.dev/problems/internal","title":"Internal error","status":500,"detail":"an unexpected error occurred; it has been logged"}"#.to_vec()
    })
}

pub(crate) fn customer_of(command: &Command) -> Option<CustomerId> {
    match command.target() {
        Target::Customer(customer_id) => Some(customer_id),
        Target::Tenant => None,
    }
}

pub(crate) fn ok<T: Serialize>(body: &T) -> StoredResponse {
    StoredResponse {
        status: StatusCode::OK.as_u16(),
        body: json_bytes(body),
    }
}

pub(crate) fn created<T: Serialize>(body: &T) -> StoredResponse {
    StoredResponse {
        status: StatusCode::CREATED.as_u16(),
        body: json_bytes(body),
    }
}

pub(crate) fn refused(refusal: &Refusal) -> StoredResponse {
    stored(&problem::refusal(refusal))
}

/// A render function was handed a verdict its command cannot produce: a bug, answered 500.
pub(crate) fn inconsistent(what: &str) -> StoredResponse {
    tracing::error!(what, "render function received an inconsistent verdict");
    stored(&internal_problem())
}

fn stored(problem: &Problem) -> StoredResponse {
    StoredResponse {
        status: problem.status,
        body: problem.to_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use ledger_core::aggregate::Aggregate;
    use ledger_core::command::{PhoneIndex, WrappedDataKey};
    use ledger_core::events::{Actor, EventMetadata, LineItem, SealedPersonalData};
    use ledger_core::{
        decide, Currency, CustomerState, LedgerState, MinorUnits, Points, Rejection, RuleSet,
        TenantId, TenantProfile, TenantState,
    };
    use serde_json::Value;
    use uuid::Uuid;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap()
    }

    fn reward_id() -> RewardId {
        RewardId::from_uuid(Uuid::from_u128(400))
    }

    /// A registered tenant whose catalogue holds one reward: "Jollof rice" for 10 points.
    fn tenant() -> TenantState {
        let mut tenant = TenantState {
            profile: Some(TenantProfile {
                tenant_id: TenantId::from_uuid(Uuid::from_u128(1)),
                name: "Shop".into(),
                currency: Currency::NGN,
                expiry_days: 180,
                rule_set: RuleSet::starter(),
                settings: Default::default(),
                tier_scheme: None,
                // Empty: a purchase falls back on `rule_set`.
                rule_sets: Default::default(),
            }),
            ..TenantState::default()
        };
        tenant.apply(&Event::RewardCreated(ledger_core::events::RewardCreated {
            reward_id: reward_id(),
            name: "Jollof rice".into(),
            points_cost: Points::new(10),
            terms: Default::default(),
            created_at: at(),
        }));
        tenant
    }

    fn submission(command: Command, render: schema::Render) -> Submission {
        Submission {
            tenant_id: TenantId::from_uuid(Uuid::from_u128(1)),
            command,
            metadata: EventMetadata {
                actor: Actor::System("test".into()),
                correlation_id: Uuid::from_u128(9),
                causation_id: None,
            },
            idempotency: None,
            render,
        }
    }

    /// Decides `commands` in order the way the writer does and renders the last one.
    fn decide_and_render(commands: Vec<Command>, render: schema::Render) -> (u16, Value) {
        let tenant = tenant();
        let mut customer = CustomerState::default();
        let mut last = None;
        for command in commands {
            let decision = decide(
                LedgerState {
                    tenant: &tenant,
                    customer: &customer,
                    stock: &ledger_core::aggregate::NO_STOCK_USED,
                },
                &command,
            );
            let sub = submission(command, render);
            let response = match decision {
                Ok(events) => {
                    for event in &events {
                        customer.apply(event);
                    }
                    render(
                        &sub,
                        &Verdict::Accepted {
                            events: &events,
                            tenant: &tenant,
                            customer: &customer,
                            stock: &ledger_core::aggregate::NO_STOCK_USED,
                        },
                    )
                }
                Err(rejection) => render(&sub, &Verdict::Refused(&Refusal::Rejected(rejection))),
            };
            last = Some(response);
        }
        let response = last.unwrap();
        (
            response.status,
            serde_json::from_slice(&response.body).unwrap(),
        )
    }

    fn customer_id() -> CustomerId {
        CustomerId::from_uuid(Uuid::from_u128(2))
    }

    fn enrol() -> Command {
        Command::EnrolCustomer {
            customer_id: customer_id(),
            phone_index: PhoneIndex([1; 32]),
            personal_data: SealedPersonalData {
                nonce: vec![0; 12],
                ciphertext: vec![1, 2, 3],
            },
            data_key: WrappedDataKey {
                master_key_id: "k1".into(),
                bytes: vec![4; 60],
            },
            birthday: None,
            referral_code: ledger_core::ReferralCode::from_random_bytes([0; 5]),
            referred_by: None,
            at: at(),
        }
    }

    fn purchase_of(amount: i64, n: u128) -> Command {
        Command::LogPurchase {
            customer_id: customer_id(),
            purchase_id: PurchaseId::from_uuid(Uuid::from_u128(100 + n)),
            lot_id: LotId::from_uuid(Uuid::from_u128(200 + n)),
            amount: MinorUnits::new(amount),
            line_items: vec![LineItem {
                sku: "A1".into(),
                category: None,
                quantity: 1,
                unit_price: MinorUnits::new(amount),
            }],
            reference: None,
            occurred_at: None,
            at: at(),
        }
    }

    #[test]
    fn an_enrolment_answers_201_with_the_customer() {
        let (status, body) = decide_and_render(vec![enrol()], enrolment);
        assert_eq!(status, 201);
        assert_eq!(body["customer_id"], customer_id().to_string());
        assert!(
            body.get("phone").is_none(),
            "no personal data in a stored body"
        );
        assert_eq!(body["enrolled_at"], "2025-03-01T12:00:00Z");
    }

    #[test]
    fn a_purchase_answers_with_points_balance_and_lot_from_the_decision() {
        let (status, body) = decide_and_render(
            vec![enrol(), purchase_of(250_000, 1), purchase_of(250_000, 2)],
            purchase,
        );
        assert_eq!(status, 201);
        assert_eq!(
            body["purchase_id"],
            PurchaseId::from_uuid(Uuid::from_u128(102)).to_string()
        );
        assert_eq!(body["amount_minor"], 250_000);
        assert_eq!(body["points_earned"], 25);
        assert_eq!(
            body["balance"], 50,
            "read-your-writes: both purchases count"
        );
        assert_eq!(body["rule_set_version"], 1);
        assert_eq!(
            body["breakdown"],
            serde_json::json!([{
                "rule_id": "rule-1",
                "kind": "per_amount_spent",
                "rule": "per_amount_spent",
                "points": 25
            }])
        );
        assert_eq!(
            body["lot"]["lot_id"],
            LotId::from_uuid(Uuid::from_u128(202)).to_string()
        );
        assert_eq!(body["lot"]["points"], 25);
        assert_eq!(body["lot"]["expires_at"], "2025-08-28T12:00:00Z");
    }

    #[test]
    fn a_purchase_that_earns_nothing_has_a_null_lot() {
        let (status, body) = decide_and_render(vec![enrol(), purchase_of(9_999, 1)], purchase);
        assert_eq!(status, 201);
        assert_eq!(body["points_earned"], 0);
        assert_eq!(body["lot"], Value::Null);
        assert_eq!(body["breakdown"], serde_json::json!([]));
        assert_eq!(body["rule_set_version"], 1);
    }

    fn redeem_ten() -> Command {
        Command::RedeemPoints {
            customer_id: customer_id(),
            redemption_id: RedemptionId::from_uuid(Uuid::from_u128(300)),
            points: Points::new(10),
            description: "Free drink".into(),
            at: at(),
        }
    }

    #[test]
    fn a_redemption_answers_with_the_balance_after_it() {
        let redeem = redeem_ten();
        let (status, body) =
            decide_and_render(vec![enrol(), purchase_of(250_000, 1), redeem], redemption);
        assert_eq!(status, 201);
        assert_eq!(body["points"], 10);
        assert_eq!(body["balance"], 15);
        assert_eq!(body["customer_id"], customer_id().to_string());
    }

    fn redeem_reward() -> Command {
        Command::RedeemReward {
            customer_id: customer_id(),
            redemption_id: RedemptionId::from_uuid(Uuid::from_u128(301)),
            reward_id: reward_id(),
            code: ledger_core::RedemptionCode::parse("04HMASW9").unwrap(),
            at: at(),
        }
    }

    fn fulfil() -> Command {
        Command::FulfilRedemption {
            customer_id: customer_id(),
            redemption_id: RedemptionId::from_uuid(Uuid::from_u128(301)),
            at: at(),
        }
    }

    #[test]
    fn a_reward_redemption_answers_with_the_reward_and_the_code() {
        let (status, body) = decide_and_render(
            vec![enrol(), purchase_of(250_000, 1), redeem_reward()],
            redemption,
        );
        assert_eq!(status, 201);
        assert_eq!(body["points"], 10);
        // A reward is held: still in the balance, out of what is available.
        assert_eq!(body["balance"], 25);
        assert_eq!(body["held"], 10);
        assert_eq!(body["available"], 15);
        assert_eq!(body["hold_expires_at"], "2025-03-15T12:00:00Z");
        assert_eq!(body["reward_id"], reward_id().to_string());
        assert_eq!(body["code"], "04HMASW9");
        // A redemption of points says so with nulls.
        let (_, body) = decide_and_render(
            vec![enrol(), purchase_of(250_000, 1), redeem_ten()],
            redemption,
        );
        assert_eq!(body["reward_id"], Value::Null);
        assert_eq!(body["code"], Value::Null);
        assert_eq!(body["hold_expires_at"], Value::Null);
        assert_eq!(body["balance"], 15);
        assert_eq!(body["available"], 15);
    }

    #[test]
    fn a_fulfilment_answers_once_then_already_fulfilled() {
        let before = vec![enrol(), purchase_of(250_000, 1), redeem_reward()];
        let mut once = before.clone();
        once.push(fulfil());
        let (status, body) = decide_and_render(once.clone(), fulfilment);
        assert_eq!(status, 200);
        assert_eq!(
            body["redemption_id"],
            RedemptionId::from_uuid(Uuid::from_u128(301)).to_string()
        );
        assert_eq!(body["customer_id"], customer_id().to_string());
        assert_eq!(body["reward_id"], reward_id().to_string());
        assert_eq!(body["fulfilled_at"], "2025-03-01T12:00:00Z");
        once.push(fulfil());
        let (status, body) = decide_and_render(once, fulfilment);
        assert_eq!(status, 409);
        assert_eq!(
            body["type"],
            "https://loyalty-ledger.dev/problems/already-fulfilled"
        );
        let (status, _) = decide_and_render(vec![enrol(), fulfil()], fulfilment);
        assert_eq!(status, 404);
    }

    #[test]
    fn an_unaffordable_reward_is_insufficient_points() {
        let (status, body) = decide_and_render(vec![enrol(), redeem_reward()], redemption);
        assert_eq!(status, 409);
        assert_eq!(body["available"], 0);
        assert_eq!(body["requested"], 10);
    }

    #[test]
    fn catalogue_changes_answer_with_the_reward() {
        let tenant = tenant();
        let reward = tenant.rewards.get(&reward_id()).unwrap();
        let sub = submission(fulfil(), reward_created);
        let created = Event::RewardCreated(ledger_core::events::RewardCreated {
            reward_id: reward_id(),
            name: reward.name.clone(),
            points_cost: reward.points_cost,
            terms: Default::default(),
            created_at: at(),
        });
        let customer = CustomerState::default();
        let response = reward_created(
            &sub,
            &Verdict::Accepted {
                events: &[created],
                tenant: &tenant,
                customer: &customer,
                stock: &ledger_core::aggregate::NO_STOCK_USED,
            },
        );
        assert_eq!(response.status, 201);
        let body: Value = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(body["name"], "Jollof rice");
        assert_eq!(body["points_cost"], 10);
        assert_eq!(body["active"], true);
        assert_eq!(body["retired_at"], Value::Null);
        let refused = reward_retired(
            &sub,
            &Verdict::Refused(&Refusal::Rejected(Rejection::RewardRetired)),
        );
        assert_eq!(refused.status, 409);
    }

    #[test]
    fn a_refusal_is_rendered_as_its_problem() {
        let redeem = redeem_ten();
        let (status, body) = decide_and_render(vec![enrol(), redeem], redemption);
        assert_eq!(status, 409);
        assert_eq!(
            body["type"],
            "https://loyalty-ledger.dev/problems/insufficient-points"
        );
        assert_eq!(body["available"], 0);
        assert_eq!(body["requested"], 10);

        let sub = submission(enrol(), enrolment);
        let response = enrolment(
            &sub,
            &Verdict::Refused(&Refusal::PhoneAlreadyEnrolled(customer_id())),
        );
        assert_eq!(response.status, 409);
        let body: Value = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(body["customer_id"], customer_id().to_string());

        let refused = purchase(
            &sub,
            &Verdict::Refused(&Refusal::Rejected(Rejection::CustomerNotEnrolled)),
        );
        assert_eq!(refused.status, 404);
    }

    #[test]
    fn a_verdict_the_command_cannot_produce_is_a_500_not_a_panic() {
        let sub = submission(enrol(), purchase);
        let tenant = tenant();
        let customer = CustomerState::default();
        let response = purchase(
            &sub,
            &Verdict::Accepted {
                events: &[],
                tenant: &tenant,
                customer: &customer,
                stock: &ledger_core::aggregate::NO_STOCK_USED,
            },
        );
        assert_eq!(response.status, 500);
    }
}
