//! `GET /v1/customers/{id}/history?limit=N`: a customer's recent ledger entries, newest
//! first, read from the event table itself (not a projection), each with a sentence a
//! vendor or customer can read.

use crate::auth::Caller;
use crate::customers::customer_in_path;
use crate::problem::ApiError;
use crate::ApiState;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use ledger_core::events::{Actor, HoldReleaseReason, RefundPolicy, TierDirection};
use ledger_core::{CustomerId, Event, Points, StreamId, TenantId};
use schema::RecordedEvent;
use serde::{Deserialize, Serialize};

pub const LIMIT_DEFAULT: i64 = 50;
pub const LIMIT_MAX: i64 = 200;

#[derive(Debug, Deserialize)]
pub struct HistoryQuery {
    /// Kept as text so a bad value gets our problem, naming the parameter.
    limit: Option<String>,
}

/// `200` body of the history endpoint.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct History {
    #[schema(value_type = uuid::Uuid)]
    pub customer_id: CustomerId,
    pub entries: Vec<HistoryEntry>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HistoryEntry {
    /// The event's place in the tenant's gapless sequence.
    pub sequence: i64,
    /// The event's version in the customer's stream.
    pub version: i32,
    #[serde(rename = "type")]
    pub event_type: String,
    /// The signed change to the balance.
    pub points: i64,
    pub reason: String,
    /// Who caused the entry: `api_key:<id>`, `user:<id>`, `customer` or `system:<name>`.
    pub actor: String,
    pub recorded_at: DateTime<Utc>,
}

pub fn parse_limit(raw: Option<&str>) -> Result<i64, ApiError> {
    parse_limit_within(raw, LIMIT_DEFAULT, LIMIT_MAX)
}

/// A `limit` query parameter: `default` when absent, else a whole number from 1 to `max`.
pub fn parse_limit_within(raw: Option<&str>, default: i64, max: i64) -> Result<i64, ApiError> {
    let Some(raw) = raw else {
        return Ok(default);
    };
    match raw.parse::<i64>() {
        Ok(limit) if (1..=max).contains(&limit) => Ok(limit),
        _ => Err(ApiError::InvalidQuery {
            parameter: "limit".into(),
            detail: format!("limit must be a whole number from 1 to {max}"),
        }),
    }
}

#[utoipa::path(
    get,
    path = "/v1/customers/{customer_id}/history",
    tag = "customers",
    params(
        ("customer_id" = uuid::Uuid, Path, description = "The customer's id. An unknown id, another tenant's customer and a malformed id are all 404 `customer-not-found`."),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 200, description = "Entries: 1 to 200, default 50."),
    ),
    responses(
        (status = 200, description = "The customer's most recent ledger entries, newest first, from the event table.", body = History),
        (status = 400, description = "`invalid-query` (with `parameter`).", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
        (status = 404, description = "`customer-not-found`.", body = crate::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ("user_token" = []))
)]
#[tracing::instrument(name = "customer_history", skip_all, fields(tenant_id = %caller.tenant_id))]
pub async fn history(
    caller: Caller,
    path: web::Path<String>,
    query: web::Query<HistoryQuery>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    caller.authorize(schema::accounts::Permission::ReadHistory)?;
    let customer_id = customer_in_path(&path)?;
    let limit = parse_limit(query.limit.as_deref())?;
    let mut client = state.client().await?;
    let client = crate::scoped(&mut client, caller.tenant_id).await?;
    let recorded =
        schema::store::read_stream_backwards(&*client, StreamId::Customer(customer_id), limit)
            .await
            .map_err(|e| {
                ApiError::Unavailable(format!("reading the history of {customer_id}: {e}"))
            })?;
    // No stream, or another tenant's: the same 404, so ids of other vendors cannot be probed.
    if recorded.is_empty()
        || recorded
            .iter()
            .any(|event| event.tenant_id != caller.tenant_id)
    {
        return Err(ApiError::CustomerNotFound);
    }
    let currency = tenant_currency(&client, caller.tenant_id).await?;
    let entries = recorded
        .iter()
        .map(|event| entry(event, &currency))
        .collect::<Result<_, _>>()?;
    Ok(HttpResponse::Ok().json(History {
        customer_id,
        entries,
    }))
}

fn entry(recorded: &RecordedEvent, currency: &str) -> Result<HistoryEntry, ApiError> {
    let event = crate::customers::decoded(recorded)?;
    let metadata = recorded.decode_metadata().map_err(|e| {
        ApiError::Internal(format!(
            "the metadata of event {} does not decode: {e}",
            recorded.event_id
        ))
    })?;
    Ok(HistoryEntry {
        sequence: recorded.tenant_sequence,
        version: recorded.version,
        event_type: recorded.event_type.clone(),
        points: event.points_delta().value(),
        reason: reason(&event, currency),
        actor: actor_label(&metadata.actor),
        recorded_at: recorded.recorded_at,
    })
}

/// The tenant's currency code, from its registration (the first event of its stream).
pub async fn tenant_currency(
    client: &deadpool_postgres::Transaction<'_>,
    tenant_id: TenantId,
) -> Result<String, ApiError> {
    let first = schema::store::read_stream(&**client, StreamId::Tenant(tenant_id), 0, 1)
        .await
        .map_err(|e| ApiError::Unavailable(format!("reading the tenant stream: {e}")))?;
    let registered = first
        .first()
        .map(RecordedEvent::decode)
        .transpose()
        .map_err(|e| {
            ApiError::Internal(format!("the tenant's first event does not decode: {e}"))
        })?;
    Ok(match registered {
        Some(Event::TenantRegistered(registered)) => registered.currency.as_str().to_owned(),
        // Cannot happen for a tenant with customers; the amounts stay readable without it.
        _ => String::new(),
    })
}

/// Who caused an event, as the history shows it. Ids, never names: the history is shown to
/// auditors, and a user's name is personal data.
pub fn actor_label(actor: &Actor) -> String {
    match actor {
        Actor::ApiKey(id) => format!("api_key:{id}"),
        Actor::User(id) => format!("user:{id}"),
        Actor::Customer(_) => "customer".to_owned(),
        Actor::System(name) => format!("system:{name}"),
    }
}

/// One human sentence per event, e.g. "Purchase of 2500.00 NGN".
pub fn reason(event: &Event, currency: &str) -> String {
    match event {
        Event::CustomerEnrolled(_) => "Enrolled".to_owned(),
        Event::CustomerErased(_) => "Personal data erased at the customer's request".to_owned(),
        Event::PurchaseLogged(e) => {
            format!("Purchase of {} {currency}", minor_units(e.amount.value()))
                .trim_end()
                .to_owned()
        }
        Event::PointsEarned(e) => {
            let shares: Vec<String> = e
                .breakdown
                .iter()
                .map(|share| format!("{} {}", share.rule_id, share.points))
                .collect();
            format!(
                "Earned {} (rule set v{}: {})",
                points(e.points),
                e.rule_set_version,
                shares.join(", ")
            )
        }
        // Not the code: it collects the reward, and the history is shown to auditors too.
        Event::RewardRedeemed(e) => format!("Redeemed {}: {}", points(e.points), e.description),
        Event::RedemptionFulfilled(_) => "Reward handed over".to_owned(),
        Event::RewardCreated(e) => format!("Reward created: {}", e.name),
        Event::RewardUpdated(e) => format!("Reward updated: {}", e.name),
        Event::RewardRetired(_) => "Reward retired".to_owned(),
        Event::PointsExpired(e) => format!("{} expired", points(e.points)),
        Event::TenantRegistered(_) => "Vendor registered".to_owned(),
        Event::RuleSetPublished(e) => format!("Rule set v{} published", e.rule_set.version()),
        Event::ProgrammeSettingsChanged(_) => "Programme settings changed".to_owned(),
        Event::PointsPending(e) => format!(
            "{} pending until {} (return window)",
            points(e.points),
            e.pending_until.format("%Y-%m-%d")
        ),
        Event::PointsActivated(e) => format!("{} activated", points(e.points)),
        Event::PurchaseRefunded(e) => refund_reason(e, currency),
        Event::PointsAdjusted(e) => {
            let sign = if e.points.is_positive() { "+" } else { "" };
            format!("Adjusted {sign}{}: {}", e.points, e.reason)
        }
        Event::DebtSettled(e) => format!("{} paid back owed points", points(e.points)),
        Event::RewardHeld(e) => format!(
            "{} reserved for {} until {}",
            points(e.points),
            e.description,
            e.expires_at.format("%Y-%m-%d")
        ),
        Event::HoldFulfilled(e) => format!("Reward handed over: {} spent", points(e.points)),
        Event::TierSchemePublished(e) => {
            format!("Tier ladder published ({} tiers)", e.scheme.tiers.len())
        }
        Event::TierChanged(e) => match e.direction {
            TierDirection::Upgrade => format!("Tier up: {}", e.to),
            TierDirection::Downgrade => format!("Tier down at review: {}", e.to),
        },
        Event::TierRetained(e) => format!("Tier kept at review: {}", e.tier),
        // Not the date: the history is shown to auditors, who see no personal data.
        Event::BirthdaySet(e) => match e.birthday {
            Some(_) => "Birthday set".to_owned(),
            None => "Birthday cleared".to_owned(),
        },
        Event::ReferralQualified(e) => format!(
            "First purchase of a referred customer: the referrer earns {}",
            points(e.referrer_bonus)
        ),
        Event::ReferralBonusAwarded(e) => {
            format!(
                "Referral bonus {} (a referred customer's first purchase)",
                points(e.points)
            )
        }
        Event::HoldReleased(e) => match e.reason {
            HoldReleaseReason::Cancelled => {
                format!("Reward cancelled: {} available again", points(e.points))
            }
            HoldReleaseReason::Expired => format!(
                "Reward not collected in time: {} available again",
                points(e.points)
            ),
        },
    }
}

fn refund_reason(e: &ledger_core::events::PurchaseRefunded, currency: &str) -> String {
    let r = &e.reversal;
    let mut sentence = format!(
        "Refund of {} {currency}: {} taken back",
        minor_units(e.amount.value()),
        points(r.reversed())
    );
    if r.debt.is_positive() {
        sentence.push_str(&format!(", {} owed", points(r.debt)));
    }
    let forgiven = r.clamped.value() + r.waived_expired.value();
    if forgiven > 0 {
        let why = match r.policy {
            RefundPolicy::ClampAtZero => "already spent or expired",
            RefundPolicy::AllowDebt { .. } => "beyond the debt limit or expired",
        };
        sentence.push_str(&format!(
            ", {} forgiven ({why})",
            points(Points::new(forgiven))
        ));
    }
    sentence
}

/// Minor units as a decimal with two places, by integer arithmetic (no floats near money).
/// Two places fit NGN, the first market; a currency with another exponent needs the tenant's
/// exponent here.
pub fn minor_units(value: i64) -> String {
    let sign = if value < 0 { "-" } else { "" };
    let magnitude = value.unsigned_abs();
    format!("{sign}{}.{:02}", magnitude / 100, magnitude % 100)
}

fn points(points: Points) -> String {
    match points.value() {
        1 => "1 point".to_owned(),
        n => format!("{n} points"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use ledger_core::events::{
        CustomerEnrolled, PointsEarned, PointsExpired, PurchaseLogged, RewardRedeemed,
    };
    use ledger_core::rules::{KindName, RulePoints};
    use ledger_core::{LotId, MinorUnits, PurchaseId, RedemptionId};
    use uuid::Uuid;

    #[test]
    fn minor_units_format_with_two_places_without_floats() {
        let table = [
            (0, "0.00"),
            (5, "0.05"),
            (99, "0.99"),
            (100, "1.00"),
            (250_000, "2500.00"),
            (123_456_789, "1234567.89"),
            (-150, "-1.50"),
            (i64::MAX, "92233720368547758.07"),
            (i64::MIN, "-92233720368547758.08"),
        ];
        for (value, expected) in table {
            assert_eq!(minor_units(value), expected, "{value}");
        }
    }

    #[test]
    fn each_event_reads_as_a_sentence() {
        let at = Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap();
        let lot_id = LotId::from_uuid(Uuid::from_u128(1));
        let purchase_id = PurchaseId::from_uuid(Uuid::from_u128(2));
        let table = [
            (
                Event::CustomerEnrolled(CustomerEnrolled {
                    customer_id: CustomerId::from_uuid(Uuid::from_u128(3)),
                    personal_data: None,
                    enrolled_at: at,
                    birthday: None,
                    referral_code: None,
                    referred_by: None,
                }),
                "Enrolled",
            ),
            (
                Event::PurchaseLogged(PurchaseLogged {
                    purchase_id,
                    amount: MinorUnits::new(250_000),
                    line_items: vec![],
                    reference: None,
                    occurred_at: at,
                    purchase_number: 1,
                }),
                "Purchase of 2500.00 NGN",
            ),
            (
                Event::PointsEarned(PointsEarned {
                    lot_id,
                    purchase_id,
                    points: Points::new(25),
                    rule_set_version: 1,
                    breakdown: vec![RulePoints {
                        rule_id: "base".into(),
                        kind: KindName::PerAmountSpent,
                        points: Points::new(25),
                    }],
                    earned_at: at,
                    expires_at: at,
                    point_value: None,
                }),
                "Earned 25 points (rule set v1: base 25)",
            ),
            (
                Event::RewardRedeemed(RewardRedeemed {
                    redemption_id: RedemptionId::from_uuid(Uuid::from_u128(4)),
                    points: Points::new(10),
                    description: "Free drink".into(),
                    consumed: vec![],
                    redeemed_at: at,
                    reward_id: None,
                    code: None,
                }),
                "Redeemed 10 points: Free drink",
            ),
            (
                Event::RewardRedeemed(RewardRedeemed {
                    redemption_id: RedemptionId::from_uuid(Uuid::from_u128(4)),
                    points: Points::new(50),
                    description: "Jollof rice".into(),
                    consumed: vec![],
                    redeemed_at: at,
                    reward_id: Some(ledger_core::RewardId::from_uuid(Uuid::from_u128(5))),
                    code: Some("04HMASW9".into()),
                }),
                "Redeemed 50 points: Jollof rice",
            ),
            (
                Event::RedemptionFulfilled(ledger_core::events::RedemptionFulfilled {
                    redemption_id: RedemptionId::from_uuid(Uuid::from_u128(4)),
                    fulfilled_at: at,
                }),
                "Reward handed over",
            ),
            (
                Event::PointsExpired(PointsExpired {
                    lot_id,
                    points: Points::new(25),
                    expired_at: at,
                }),
                "25 points expired",
            ),
            (
                Event::PointsExpired(PointsExpired {
                    lot_id,
                    points: Points::new(1),
                    expired_at: at,
                }),
                "1 point expired",
            ),
        ];
        for (event, expected) in table {
            assert_eq!(reason(&event, "NGN"), expected);
        }
    }

    #[test]
    fn the_limit_defaults_to_50_and_stays_within_1_to_200() {
        assert_eq!(parse_limit(None).unwrap(), 50);
        assert_eq!(parse_limit(Some("1")).unwrap(), 1);
        assert_eq!(parse_limit(Some("200")).unwrap(), 200);
        for bad in ["0", "201", "-1", "ten", "", "1.5", "99999999999999999999"] {
            assert!(
                matches!(parse_limit(Some(bad)), Err(ApiError::InvalidQuery { .. })),
                "{bad}"
            );
        }
    }
}
