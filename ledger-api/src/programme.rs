//! The programme beyond earning and redeeming: its settings (`/v1/programme/settings`),
//! refunds of logged purchases, manual adjustments, and cancelling a reward hold.
//!
//! Every change is a command through the writer, decided by `ledger-core` (see
//! `aggregate.rs` for the semantics: refund rounding, where reversed points come from,
//! holds); this module parses, authorises and renders.

use crate::auth::Caller;
use crate::body::{self, JsonObject};
use crate::commands;
use crate::customers::customer_in_path;
use crate::idempotency::IdempotencyKey;
use crate::problem::ApiError;
use crate::render::{created, customer_of, inconsistent, ok, refused};
use crate::ApiState;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use ledger_core::command::{HOLD_DAYS_MAX, REASON_CHARS_MAX};
use ledger_core::events::{ProgrammeSettings, RefundPolicy};
use ledger_core::tiers::{
    Tier, TierBasis, TierScheme, TierWindow, TIERS_MAX, TIER_NAME_CHARS_MAX, WINDOW_DAYS_MAX,
};
use ledger_core::{
    AdjustmentId, Command, CustomerId, CustomerState, Event, LotId, MinorUnits, Points, PurchaseId,
    RedemptionCode, RedemptionId, RefundId,
};
use schema::accounts::Permission;
use schema::{StoredResponse, Submission, Verdict};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

/// Longest refund reference, like a purchase's.
pub const REFUND_REFERENCE_CHARS_MAX: usize = crate::purchases::REFERENCE_CHARS_MAX;
/// Longest return window a tenant may set, in days.
pub const PENDING_DAYS_MAX: u32 = 365;

pub const SETTINGS_FIELDS: [&str; 5] = [
    "time_zone",
    "pending_days",
    "refund_policy",
    "hold_days",
    "point_value_minor",
];
pub const REFUND_FIELDS: [&str; 3] = ["purchase_id", "amount_minor", "reference"];
pub const ADJUSTMENT_FIELDS: [&str; 2] = ["points", "reason"];

/// The programme's settings, as `GET` answers and `PUT` takes them (whole).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsView {
    /// IANA time zone: local dates and hours of promotions, birthdays and daily caps.
    #[schema(example = "Africa/Lagos")]
    pub time_zone: String,
    /// The return window: a purchase's points stay pending (not spendable) this many days;
    /// 0 = spendable at once. Shorter than the points' lifetime.
    pub pending_days: u32,
    pub refund_policy: RefundPolicyView,
    /// Days a reward hold waits to be handed over before its points are freed (1–365).
    pub hold_days: u32,
    /// The money value of one point, in minor units; `null` until stated.
    #[schema(required = true)]
    pub point_value_minor: Option<i64>,
}

/// What a refund does with points the customer already spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RefundPolicyView {
    /// `clamp_at_zero`: take what the balance has, forgive the rest. `allow_debt`: let the
    /// balance go negative down to `-debt_limit`; later points pay the debt first.
    #[schema(example = "clamp_at_zero")]
    pub kind: &'static str,
    /// For `allow_debt`: the most points a customer may owe.
    #[schema(required = true)]
    pub debt_limit: Option<i64>,
}

impl From<&ProgrammeSettings> for SettingsView {
    fn from(settings: &ProgrammeSettings) -> Self {
        SettingsView {
            time_zone: settings.time_zone.clone(),
            pending_days: settings.pending_days,
            refund_policy: match settings.refund_policy {
                RefundPolicy::ClampAtZero => RefundPolicyView {
                    kind: "clamp_at_zero",
                    debt_limit: None,
                },
                RefundPolicy::AllowDebt { limit } => RefundPolicyView {
                    kind: "allow_debt",
                    debt_limit: Some(limit.value()),
                },
            },
            hold_days: settings.hold_days,
            point_value_minor: settings.point_value.map(MinorUnits::value),
        }
    }
}

/// Parses a whole settings body. The ledger checks again what needs the tenant's state (a
/// return window shorter than the points' lifetime) and that the time zone exists.
pub fn parse_settings(body: &[u8]) -> Result<ProgrammeSettings, ApiError> {
    let object = JsonObject::parse(body)?;
    object.deny_unknown(&SETTINGS_FIELDS)?;
    let days = |max: u32, min: u32| {
        move |value: &Value| {
            let days = body::integer(value)?;
            match u32::try_from(days) {
                Ok(d) if (min..=max).contains(&d) => Ok(d),
                _ => Err(format!("must be a whole number from {min} to {max}")),
            }
        }
    };
    Ok(ProgrammeSettings {
        time_zone: object.required("time_zone", |v| {
            let name = body::text(v, 1, 64)?;
            name.parse::<chrono_tz::Tz>()
                .map(|_| name)
                .map_err(|_| "must be an IANA time zone name such as Africa/Lagos".to_owned())
        })?,
        pending_days: object.required("pending_days", days(PENDING_DAYS_MAX, 0))?,
        refund_policy: object.required("refund_policy", refund_policy)?,
        hold_days: object.required("hold_days", days(HOLD_DAYS_MAX, 1))?,
        point_value: object.optional("point_value_minor", |v| {
            MinorUnits::parse_non_negative(body::integer(v)?).map_err(|_| {
                format!(
                    "must be a whole number from 0 to {}",
                    MinorUnits::AMOUNT_MAX
                )
            })
        })?,
    })
}

fn refund_policy(value: &Value) -> Result<RefundPolicy, String> {
    let Value::Object(fields) = value else {
        return Err("must be an object with `kind`".to_owned());
    };
    if let Some(unknown) = fields
        .keys()
        .find(|k| !["kind", "debt_limit"].contains(&k.as_str()))
    {
        return Err(format!("has an unknown field `{unknown}`"));
    }
    let limit = fields.get("debt_limit").filter(|v| !v.is_null());
    match fields.get("kind").and_then(Value::as_str) {
        Some("clamp_at_zero") if limit.is_none() => Ok(RefundPolicy::ClampAtZero),
        Some("clamp_at_zero") => Err("has a debt_limit, which only allow_debt takes".to_owned()),
        Some("allow_debt") => {
            let limit = limit
                .ok_or("needs `debt_limit` with allow_debt")
                .map_err(str::to_owned)
                .and_then(body::integer)?;
            if !(0..=Points::COMMAND_MAX).contains(&limit) {
                return Err(format!(
                    "debt_limit must be a whole number from 0 to {}",
                    Points::COMMAND_MAX
                ));
            }
            Ok(RefundPolicy::AllowDebt {
                limit: Points::new(limit),
            })
        }
        _ => Err("kind must be `clamp_at_zero` or `allow_debt`".to_owned()),
    }
}

#[utoipa::path(
    get,
    path = "/v1/programme/settings",
    tag = "programme",
    responses(
        (status = 200, description = "The programme's settings in force.", body = SettingsView),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
    ),
    security(("api_key" = []), ("user_token" = []))
)]
#[tracing::instrument(name = "programme_settings", skip_all, fields(tenant_id = %caller.tenant_id))]
pub async fn get_settings(
    caller: Caller,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    caller.authorize(Permission::ReadProgramme)?;
    let mut client = state.client().await?;
    let transaction = crate::scoped(&mut client, caller.tenant_id).await?;
    let tenant = crate::read_tenant(&transaction, caller.tenant_id).await?;
    let settings = tenant.profile.map(|p| p.settings).unwrap_or_default();
    Ok(HttpResponse::Ok().json(SettingsView::from(&settings)))
}

#[utoipa::path(
    put,
    path = "/v1/programme/settings",
    tag = "programme",
    request_body(content = SettingsView, content_type = "application/json"),
    params(
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[\\x21-\\x7E]+$",
            description = "Optional: a retry with the same key gets the first answer."),
    ),
    responses(
        (status = 200, description = "Published: the settings now in force (from the next decision on).", body = SettingsView),
        (status = 400, description = "`malformed-json` or `idempotency-key-invalid`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 403, description = "`forbidden`: owners only.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 422, description = "`invalid-field` (with `field`), `invalid-settings` or `idempotency-key-reused`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
    ),
    security(("api_key" = []), ("user_token" = []))
)]
#[tracing::instrument(name = "change_programme_settings", skip_all, fields(tenant_id = %caller.tenant_id))]
pub async fn put_settings(
    caller: Caller,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    caller.authorize(Permission::ManageProgramme)?;
    let key = IdempotencyKey::optional(&req)?;
    let body = body::read_json(&req, payload, state.body_bytes_max).await?;
    let settings = parse_settings(&body)?;
    let command = Command::ChangeProgrammeSettings {
        settings,
        at: commands::now(),
    };
    let claim = key.map(|key| key.claim(req.method().as_str(), req.path(), &body));
    commands::submit(&state, caller.submission(command, claim, render_settings)).await
}

fn render_settings(_: &Submission, verdict: &Verdict<'_>) -> StoredResponse {
    match verdict {
        Verdict::Refused(refusal) => refused(refusal),
        Verdict::Accepted { tenant, .. } => match &tenant.profile {
            Some(profile) => ok(&SettingsView::from(&profile.settings)),
            None => inconsistent("accepted settings without a tenant profile"),
        },
    }
}

/// `201` body of a refund.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RefundResponse {
    #[schema(value_type = uuid::Uuid)]
    pub refund_id: RefundId,
    #[schema(value_type = uuid::Uuid)]
    pub purchase_id: PurchaseId,
    #[schema(value_type = uuid::Uuid)]
    pub customer_id: CustomerId,
    pub amount_minor: i64,
    /// Points this refund owes: `floor(points × refunded so far / amount)` less what the
    /// purchase's earlier refunds owed.
    pub points_due: i64,
    /// Of them: taken from the purchase's pending lot, taken from the balance, owed as debt
    /// (tenant policy `allow_debt`), forgiven because they had expired, forgiven because the
    /// customer no longer had them (beyond the debt limit, or `clamp_at_zero`).
    pub from_pending: i64,
    pub from_balance: i64,
    pub debt: i64,
    pub waived_expired: i64,
    pub clamped: i64,
    /// The customer after the refund.
    pub balance: i64,
    pub pending: i64,
    pub available: i64,
    pub debt_total: i64,
}

#[utoipa::path(
    post,
    path = "/v1/customers/{customer_id}/refunds",
    tag = "purchases",
    params(
        ("customer_id" = uuid::Uuid, Path, description = "The customer whose purchase is refunded."),
        ("Idempotency-Key" = String, Header, min_length = 1, max_length = 255, pattern = "^[\\x21-\\x7E]+$",
            description = "Required: a retry with the same key and body gets the first answer; a refund is never applied twice."),
    ),
    request_body(content = crate::openapi::RefundRequestSchema, content_type = "application/json"),
    responses(
        (status = 201, description = "Refunded: the points taken back and where they came from.", body = RefundResponse,
            headers(("Idempotent-Replayed" = String, description = "`true` when this is the stored answer to an earlier request with the same `Idempotency-Key`."))),
        (status = 400, description = "`idempotency-key-missing`, `idempotency-key-invalid` or `malformed-json`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 403, description = "`forbidden`: auditors and analysts cannot refund.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "`customer-not-found` or `purchase-not-found`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`refund-exceeds-purchase` (with `refundable_minor`).", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 422, description = "`invalid-field` (with `field`) or `idempotency-key-reused`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
    ),
    security(("api_key" = []), ("user_token" = []))
)]
#[tracing::instrument(name = "refund_purchase", skip_all, fields(tenant_id = %caller.tenant_id))]
pub async fn refund(
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    caller.authorize(Permission::RefundPurchases)?;
    let customer_id = customer_in_path(&path)?;
    let key = IdempotencyKey::required(&req)?;
    let body = body::read_json(&req, payload, state.body_bytes_max).await?;
    let object = JsonObject::parse(&body)?;
    object.deny_unknown(&REFUND_FIELDS)?;
    let command = Command::RefundPurchase {
        customer_id,
        refund_id: RefundId::from_uuid(Uuid::now_v7()),
        purchase_id: object
            .required("purchase_id", |v| body::uuid(v).map(PurchaseId::from_uuid))?,
        amount: object.required("amount_minor", |v| {
            MinorUnits::parse_positive(body::integer(v)?).map_err(|_| {
                format!(
                    "must be a whole number from 1 to {}",
                    MinorUnits::AMOUNT_MAX
                )
            })
        })?,
        reference: object.optional("reference", |v| {
            body::text(v, 0, REFUND_REFERENCE_CHARS_MAX)
        })?,
        at: commands::now(),
    };
    let claim = key.claim(req.method().as_str(), req.path(), &body);
    commands::submit(
        &state,
        caller.submission(command, Some(claim), render_refund),
    )
    .await
}

/// The accepted decision's event that `pick` finds, the customer after it and the customer's
/// id; or the stored answer to give instead (the refusal, or a 500 for a verdict the
/// command cannot produce).
fn accepted<'v, T>(
    submission: &Submission,
    verdict: &'v Verdict<'_>,
    what: &str,
    pick: impl Fn(&'v Event) -> Option<&'v T>,
) -> Result<(&'v T, &'v CustomerState, CustomerId), StoredResponse> {
    let (events, customer) = match verdict {
        Verdict::Refused(refusal) => return Err(refused(refusal)),
        Verdict::Accepted {
            events, customer, ..
        } => (events, customer),
    };
    match (
        events.iter().find_map(pick),
        customer_of(&submission.command),
    ) {
        (Some(event), Some(customer_id)) => Ok((event, customer, customer_id)),
        _ => Err(inconsistent(what)),
    }
}

fn render_refund(submission: &Submission, verdict: &Verdict<'_>) -> StoredResponse {
    let (r, customer, customer_id) = match accepted(
        submission,
        verdict,
        "an accepted refund without PurchaseRefunded",
        |event| match event {
            Event::PurchaseRefunded(e) => Some(e),
            _ => None,
        },
    ) {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    created(&RefundResponse {
        refund_id: r.refund_id,
        purchase_id: r.purchase_id,
        customer_id,
        amount_minor: r.amount.value(),
        points_due: r.reversal.due.value(),
        from_pending: r.reversal.from_pending.value(),
        from_balance: r.reversal.from_lots_total().value(),
        debt: r.reversal.debt.value(),
        waived_expired: r.reversal.waived_expired.value(),
        clamped: r.reversal.clamped.value(),
        balance: customer.balance.value(),
        pending: customer.pending.value(),
        available: customer.available().value(),
        debt_total: customer.debt.value(),
    })
}

/// `201` body of an adjustment.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AdjustmentResponse {
    #[schema(value_type = uuid::Uuid)]
    pub adjustment_id: AdjustmentId,
    #[schema(value_type = uuid::Uuid)]
    pub customer_id: CustomerId,
    /// Signed: added (positive) or taken (negative).
    pub points: i64,
    pub reason: String,
    /// The lot a positive adjustment opened (it expires like a purchase's points).
    #[schema(value_type = Option<uuid::Uuid>, required = true)]
    pub lot_id: Option<LotId>,
    #[schema(required = true)]
    pub expires_at: Option<DateTime<Utc>>,
    pub balance: i64,
    pub available: i64,
    pub debt_total: i64,
}

#[utoipa::path(
    post,
    path = "/v1/customers/{customer_id}/adjustments",
    tag = "customers",
    params(
        ("customer_id" = uuid::Uuid, Path, description = "The customer adjusted."),
        ("Idempotency-Key" = String, Header, min_length = 1, max_length = 255, pattern = "^[\\x21-\\x7E]+$",
            description = "Required: a retry with the same key and body gets the first answer."),
    ),
    request_body(content = crate::openapi::AdjustmentRequestSchema, content_type = "application/json"),
    responses(
        (status = 201, description = "Adjusted. The history shows the reason and who made it.", body = AdjustmentResponse,
            headers(("Idempotent-Replayed" = String, description = "`true` when this is the stored answer to an earlier request with the same `Idempotency-Key`."))),
        (status = 400, description = "`idempotency-key-missing`, `idempotency-key-invalid` or `malformed-json`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 403, description = "`forbidden`: owners only.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "`customer-not-found`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`insufficient-points`: a negative adjustment takes at most what is available.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 410, description = "`customer-erased`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 422, description = "`invalid-field` (with `field`), `overflow` or `idempotency-key-reused`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
    ),
    security(("api_key" = []), ("user_token" = []))
)]
#[tracing::instrument(name = "adjust_points", skip_all, fields(tenant_id = %caller.tenant_id))]
pub async fn adjust(
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    caller.authorize(Permission::AdjustPoints)?;
    let customer_id = customer_in_path(&path)?;
    let key = IdempotencyKey::required(&req)?;
    let body = body::read_json(&req, payload, state.body_bytes_max).await?;
    let object = JsonObject::parse(&body)?;
    object.deny_unknown(&ADJUSTMENT_FIELDS)?;
    let command = Command::AdjustPoints {
        customer_id,
        adjustment_id: AdjustmentId::from_uuid(Uuid::now_v7()),
        lot_id: LotId::from_uuid(Uuid::now_v7()),
        points: object.required("points", |v| {
            let points = body::integer(v)?;
            if points == 0 || points.unsigned_abs() > Points::COMMAND_MAX.unsigned_abs() {
                return Err(format!(
                    "must be a whole number from -{max} to {max}, not 0",
                    max = Points::COMMAND_MAX
                ));
            }
            Ok(Points::new(points))
        })?,
        reason: object.required("reason", |v| {
            let reason = body::text(v, 1, REASON_CHARS_MAX)?;
            if reason.trim().is_empty() {
                return Err("must not be only blanks".to_owned());
            }
            Ok(reason)
        })?,
        at: commands::now(),
    };
    let claim = key.claim(req.method().as_str(), req.path(), &body);
    commands::submit(
        &state,
        caller.submission(command, Some(claim), render_adjustment),
    )
    .await
}

fn render_adjustment(submission: &Submission, verdict: &Verdict<'_>) -> StoredResponse {
    let (a, customer, customer_id) = match accepted(
        submission,
        verdict,
        "an accepted adjustment without PointsAdjusted",
        |event| match event {
            Event::PointsAdjusted(e) => Some(e),
            _ => None,
        },
    ) {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    created(&AdjustmentResponse {
        adjustment_id: a.adjustment_id,
        customer_id,
        points: a.points.value(),
        reason: a.reason.clone(),
        lot_id: a.lot.as_ref().map(|l| l.lot_id),
        expires_at: a.lot.as_ref().map(|l| l.expires_at),
        balance: customer.balance.value(),
        available: customer.available().value(),
        debt_total: customer.debt.value(),
    })
}

/// `200` body of a cancelled hold.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CancellationResponse {
    #[schema(value_type = uuid::Uuid)]
    pub redemption_id: RedemptionId,
    #[schema(value_type = uuid::Uuid)]
    pub customer_id: CustomerId,
    /// Points the hold had reserved, available again.
    pub points_released: i64,
    pub available: i64,
}

#[utoipa::path(
    post,
    path = "/v1/redemptions/{code}/cancel",
    tag = "redemptions",
    params(
        ("code" = String, Path, description = "The redemption code, as for fulfilment. Unknown, another tenant's or malformed: 404 `redemption-not-found`."),
        ("Idempotency-Key" = String, Header, min_length = 1, max_length = 255, pattern = "^[\\x21-\\x7E]+$",
            description = "Required: a retry with the same key gets the first answer."),
    ),
    responses(
        (status = 200, description = "Cancelled: the reserved points are available again.", body = CancellationResponse,
            headers(("Idempotent-Replayed" = String, description = "`true` when this is the stored answer to an earlier request with the same `Idempotency-Key`."))),
        (status = 400, description = "`idempotency-key-missing` or `idempotency-key-invalid`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 403, description = "`forbidden`: auditors and analysts cannot cancel.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "`redemption-not-found`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`already-fulfilled`, `hold-released` or `not-a-hold`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "`idempotency-key-reused`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
    ),
    security(("api_key" = []), ("user_token" = []))
)]
#[tracing::instrument(name = "cancel_hold", skip_all, fields(tenant_id = %caller.tenant_id))]
pub async fn cancel_hold(
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    caller.authorize(Permission::CancelHolds)?;
    let key = IdempotencyKey::required(&req)?;
    let code = RedemptionCode::parse(&path).map_err(|_| ApiError::RedemptionNotFound)?;
    let (customer_id, redemption_id) =
        crate::redemptions::by_code(&state, caller.tenant_id, &code).await?;
    let command = Command::CancelHold {
        customer_id,
        redemption_id,
        at: commands::now(),
    };
    let canonical_path = format!("/v1/redemptions/{code}/cancel");
    let claim = key.claim(req.method().as_str(), &canonical_path, b"");
    commands::submit(
        &state,
        caller.submission(command, Some(claim), render_cancel),
    )
    .await
}

fn render_cancel(submission: &Submission, verdict: &Verdict<'_>) -> StoredResponse {
    let (r, customer, customer_id) = match accepted(
        submission,
        verdict,
        "an accepted cancellation without HoldReleased",
        |event| match event {
            Event::HoldReleased(e) => Some(e),
            _ => None,
        },
    ) {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    ok(&CancellationResponse {
        redemption_id: r.redemption_id,
        customer_id,
        points_released: r.points.value(),
        available: customer.available().value(),
    })
}

pub const TIER_SCHEME_FIELDS: [&str; 4] = ["basis", "window", "grace_days", "tiers"];
pub const TIER_FIELDS: [&str; 3] = ["id", "name", "threshold"];

/// The tier ladder, as `GET /v1/tiers` answers and `PUT` takes it (whole).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TierSchemeView {
    /// `spend` (net spend, minor units) or `points_earned` (net points of purchases).
    #[schema(example = "spend")]
    pub basis: &'static str,
    pub window: TierWindowView,
    /// Days after a review date before a downgrade takes effect (0–3650).
    pub grace_days: u32,
    /// 1 to 10 tiers, thresholds rising strictly, the first 0.
    pub tiers: Vec<TierView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TierWindowView {
    /// `rolling_days` (the last `days` days) or `calendar_year` (in the tenant's time zone).
    #[schema(example = "calendar_year")]
    pub kind: &'static str,
    #[schema(required = true)]
    pub days: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TierView {
    /// `[a-z0-9_-]`, 1–30 characters, unique: what rules (`tier_multiplier`) and segments name.
    pub id: String,
    pub name: String,
    pub threshold: i64,
}

impl From<&TierScheme> for TierSchemeView {
    fn from(scheme: &TierScheme) -> Self {
        TierSchemeView {
            basis: match scheme.basis {
                TierBasis::Spend => "spend",
                TierBasis::PointsEarned => "points_earned",
            },
            window: match scheme.window {
                TierWindow::RollingDays { days } => TierWindowView {
                    kind: "rolling_days",
                    days: Some(days),
                },
                TierWindow::CalendarYear => TierWindowView {
                    kind: "calendar_year",
                    days: None,
                },
            },
            grace_days: scheme.grace_days,
            tiers: scheme
                .tiers
                .iter()
                .map(|t| TierView {
                    id: t.id.clone(),
                    name: t.name.clone(),
                    threshold: t.threshold,
                })
                .collect(),
        }
    }
}

/// Parses a whole ladder; `TierScheme::check` (in the ledger) refuses what does not rise.
pub fn parse_tier_scheme(body: &[u8]) -> Result<TierScheme, ApiError> {
    let object = JsonObject::parse(body)?;
    object.deny_unknown(&TIER_SCHEME_FIELDS)?;
    Ok(TierScheme {
        basis: object.required("basis", |v| match v.as_str() {
            Some("spend") => Ok(TierBasis::Spend),
            Some("points_earned") => Ok(TierBasis::PointsEarned),
            _ => Err("must be `spend` or `points_earned`".to_owned()),
        })?,
        window: object.required("window", tier_window)?,
        grace_days: object
            .optional("grace_days", |v| {
                let days = body::integer(v)?;
                u32::try_from(days)
                    .ok()
                    .filter(|d| *d <= WINDOW_DAYS_MAX)
                    .ok_or_else(|| format!("must be a whole number from 0 to {WINDOW_DAYS_MAX}"))
            })?
            .unwrap_or(0),
        tiers: object
            .optional_objects("tiers", TIERS_MAX, |tier| {
                tier.deny_unknown(&TIER_FIELDS)?;
                Ok(Tier {
                    id: tier.required("id", |v| body::text(v, 1, 30))?,
                    name: tier.required("name", |v| body::text(v, 1, TIER_NAME_CHARS_MAX))?,
                    threshold: tier.required("threshold", |v| {
                        let threshold = body::integer(v)?;
                        if threshold < 0 {
                            return Err("must not be negative".to_owned());
                        }
                        Ok(threshold)
                    })?,
                })
            })?
            .unwrap_or_default(),
    })
}

fn tier_window(value: &Value) -> Result<TierWindow, String> {
    let Value::Object(fields) = value else {
        return Err("must be an object with `kind`".to_owned());
    };
    if let Some(unknown) = fields
        .keys()
        .find(|k| !["kind", "days"].contains(&k.as_str()))
    {
        return Err(format!("has an unknown field `{unknown}`"));
    }
    let days = fields.get("days").filter(|v| !v.is_null());
    match fields.get("kind").and_then(Value::as_str) {
        Some("calendar_year") if days.is_none() => Ok(TierWindow::CalendarYear),
        Some("calendar_year") => Err("has `days`, which only rolling_days takes".to_owned()),
        Some("rolling_days") => {
            let days = days
                .ok_or("needs `days` with rolling_days")
                .map_err(str::to_owned)
                .and_then(body::integer)?;
            match u32::try_from(days) {
                Ok(d) if (1..=WINDOW_DAYS_MAX).contains(&d) => {
                    Ok(TierWindow::RollingDays { days: d })
                }
                _ => Err(format!(
                    "days must be a whole number from 1 to {WINDOW_DAYS_MAX}"
                )),
            }
        }
        _ => Err("kind must be `rolling_days` or `calendar_year`".to_owned()),
    }
}

#[utoipa::path(
    get,
    path = "/v1/tiers",
    tag = "programme",
    responses(
        (status = 200, description = "The tier ladder in force.", body = TierSchemeView),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 404, description = "`no-tier-scheme`: the tenant has not published one.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
    ),
    security(("api_key" = []), ("user_token" = []))
)]
#[tracing::instrument(name = "tier_scheme", skip_all, fields(tenant_id = %caller.tenant_id))]
pub async fn get_tiers(
    caller: Caller,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    caller.authorize(Permission::ReadProgramme)?;
    let mut client = state.client().await?;
    let transaction = crate::scoped(&mut client, caller.tenant_id).await?;
    let tenant = crate::read_tenant(&transaction, caller.tenant_id).await?;
    match tenant.profile.and_then(|p| p.tier_scheme) {
        Some(scheme) => Ok(HttpResponse::Ok().json(TierSchemeView::from(&scheme))),
        None => Err(ApiError::NoTierScheme),
    }
}

#[utoipa::path(
    put,
    path = "/v1/tiers",
    tag = "programme",
    request_body(content = TierSchemeView, content_type = "application/json"),
    params(
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[\\x21-\\x7E]+$",
            description = "Optional: a retry with the same key gets the first answer."),
    ),
    responses(
        (status = 200, description = "Published: customers keep their tier until its review; upgrades follow the new ladder from the next purchase.", body = TierSchemeView),
        (status = 400, description = "`malformed-json` or `idempotency-key-invalid`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 403, description = "`forbidden`: owners only.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 422, description = "`invalid-field` (with `field`), `invalid-tier-scheme` or `idempotency-key-reused`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
    ),
    security(("api_key" = []), ("user_token" = []))
)]
#[tracing::instrument(name = "publish_tier_scheme", skip_all, fields(tenant_id = %caller.tenant_id))]
pub async fn put_tiers(
    caller: Caller,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    caller.authorize(Permission::ManageProgramme)?;
    let key = IdempotencyKey::optional(&req)?;
    let body = body::read_json(&req, payload, state.body_bytes_max).await?;
    let scheme = parse_tier_scheme(&body)?;
    let command = Command::PublishTierScheme {
        scheme,
        at: commands::now(),
    };
    let claim = key.map(|key| key.claim(req.method().as_str(), req.path(), &body));
    commands::submit(&state, caller.submission(command, claim, render_tiers)).await
}

fn render_tiers(_: &Submission, verdict: &Verdict<'_>) -> StoredResponse {
    match verdict {
        Verdict::Refused(refusal) => refused(refusal),
        Verdict::Accepted { tenant, .. } => {
            match tenant.profile.as_ref().and_then(|p| p.tier_scheme.as_ref()) {
                Some(scheme) => ok(&TierSchemeView::from(scheme)),
                None => inconsistent("an accepted tier scheme without a scheme"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<ProgrammeSettings, (u16, String)> {
        parse_settings(body.as_bytes()).map_err(|error| {
            let problem = error.problem();
            let field = problem
                .extensions
                .get("field")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            (problem.status, field)
        })
    }

    const GOOD: &str = r#"{"time_zone":"Africa/Lagos","pending_days":14,"refund_policy":{"kind":"allow_debt","debt_limit":500},"hold_days":7,"point_value_minor":50}"#;

    #[test]
    fn whole_settings_parse() {
        let settings = parse(GOOD).unwrap();
        assert_eq!(settings.pending_days, 14);
        assert_eq!(
            settings.refund_policy,
            RefundPolicy::AllowDebt {
                limit: Points::new(500)
            }
        );
        assert_eq!(settings.point_value, Some(MinorUnits::new(50)));
        let view = SettingsView::from(&settings);
        assert_eq!(view.refund_policy.kind, "allow_debt");
        assert_eq!(view.refund_policy.debt_limit, Some(500));
    }

    #[test]
    fn bad_settings_name_the_field() {
        let table = [
            (GOOD.replace("Africa/Lagos", "Mars/Olympus"), "time_zone"),
            (
                GOOD.replace("\"pending_days\":14", "\"pending_days\":-1"),
                "pending_days",
            ),
            (
                GOOD.replace("\"pending_days\":14", "\"pending_days\":366"),
                "pending_days",
            ),
            (
                GOOD.replace("\"hold_days\":7", "\"hold_days\":0"),
                "hold_days",
            ),
            (
                GOOD.replace("\"hold_days\":7", "\"hold_days\":7.5"),
                "hold_days",
            ),
            (
                GOOD.replace("\"debt_limit\":500", "\"debt_limit\":-5"),
                "refund_policy",
            ),
            (GOOD.replace("allow_debt", "forgive"), "refund_policy"),
            (GOOD.replace(",\"debt_limit\":500", ""), "refund_policy"),
            (GOOD.replace("allow_debt", "clamp_at_zero"), "refund_policy"),
            (
                GOOD.replace("\"point_value_minor\":50", "\"point_value_minor\":-1"),
                "point_value_minor",
            ),
            (GOOD.replace("\"hold_days\":7,", ""), "hold_days"),
            (GOOD.replace("\"hold_days\"", "\"hold_dayz\""), "hold_dayz"),
        ];
        for (body, field) in table {
            let (status, named) = parse(&body).expect_err(&body);
            assert_eq!(status, 422, "{body}");
            assert_eq!(named, field, "{body}");
        }
        assert_eq!(parse("[]").unwrap_err().0, 400);
    }
}
