//! `POST /v1/customers/{id}/redemptions`: spend a customer's points, either a number of
//! them or a catalogue reward's cost; and `POST /v1/redemptions/{code}/fulfil`: hand a
//! redeemed reward over at the counter. The balance check is the ledger's (`decide`, inside
//! the writer's transaction), so two concurrent redemptions can never both spend the same
//! points; a redemption is fulfilled once because the ledger refuses a second.

use crate::auth::Caller;
use crate::body::{self, JsonObject};
use crate::commands;
use crate::customers::customer_in_path;
use crate::idempotency::IdempotencyKey;
use crate::problem::ApiError;
use crate::{render, scoped, ApiState};
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use ledger_core::redemption_code::CODE_RANDOM_BYTES;
use ledger_core::{
    AmountError, Command, CustomerId, Points, RedemptionCode, RedemptionId, RewardId,
};
use serde_json::Value;
use uuid::Uuid;

pub const DESCRIPTION_CHARS_MAX: usize = 200;
/// The fields of a redemption of a number of points.
pub const POINTS_REDEMPTION_FIELDS: [&str; 2] = ["points", "description"];
/// The fields of a redemption of a catalogue reward.
pub const REWARD_REDEMPTION_FIELDS: [&str; 1] = ["reward_id"];
/// The fields a redemption body may have (either form); any other is refused (422).
pub const REDEMPTION_FIELDS: [&str; 3] = ["points", "description", "reward_id"];

/// A redemption as a client may send it: exactly one of the two forms. Built only by
/// [`RedemptionRequest::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedemptionRequest {
    Points { points: Points, description: String },
    Reward { reward_id: RewardId },
}

impl RedemptionRequest {
    /// `{reward_id}` redeems a catalogue reward, `{points, description}` a number of points;
    /// a body with `reward_id` and a field of the other form is refused naming `reward_id`.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let object = JsonObject::parse(body)?;
        object.deny_unknown(&REDEMPTION_FIELDS)?;
        if object.has("reward_id") {
            if POINTS_REDEMPTION_FIELDS
                .iter()
                .any(|field| object.has(field))
            {
                return Err(ApiError::invalid_field(
                    "reward_id",
                    "send either `reward_id` (a catalogue reward) or `points` and \
                     `description`, not both",
                ));
            }
            return Ok(RedemptionRequest::Reward {
                reward_id: object.required("reward_id", |value| {
                    body::uuid(value).map(RewardId::from_uuid)
                })?,
            });
        }
        Ok(RedemptionRequest::Points {
            points: object.required("points", positive_points)?,
            description: object.required("description", description)?,
        })
    }

    /// The command; `code` is used only by a reward redemption.
    pub fn into_command(
        self,
        customer_id: CustomerId,
        redemption_id: RedemptionId,
        code: impl FnOnce() -> Result<RedemptionCode, ApiError>,
        at: DateTime<Utc>,
    ) -> Result<Command, ApiError> {
        Ok(match self {
            RedemptionRequest::Points {
                points,
                description,
            } => Command::RedeemPoints {
                customer_id,
                redemption_id,
                points,
                description,
                at,
            },
            RedemptionRequest::Reward { reward_id } => Command::RedeemReward {
                customer_id,
                redemption_id,
                reward_id,
                code: code()?,
                at,
            },
        })
    }
}

/// A fresh redemption code: 40 bits from the operating system's CSPRNG.
pub fn new_code() -> Result<RedemptionCode, ApiError> {
    let mut bytes = [0u8; CODE_RANDOM_BYTES];
    getrandom::fill(&mut bytes)
        .map_err(|e| ApiError::Internal(format!("no randomness for a redemption code: {e}")))?;
    Ok(RedemptionCode::from_random_bytes(bytes))
}

fn positive_points(value: &Value) -> Result<Points, String> {
    Points::parse_positive(body::integer(value)?).map_err(|error| match error {
        AmountError::Zero => "must be greater than zero".to_owned(),
        AmountError::Negative => "must not be negative".to_owned(),
        _ => format!("must be at most {}", Points::COMMAND_MAX),
    })
}

/// What the customer gets for the points, shown on receipts and in the history: 1 to 200
/// characters, not only blanks.
fn description(value: &Value) -> Result<String, String> {
    let text = body::text(value, 1, DESCRIPTION_CHARS_MAX)?;
    if text.trim().is_empty() {
        return Err("must not be blank".to_owned());
    }
    Ok(text)
}

#[utoipa::path(
    post,
    path = "/v1/customers/{customer_id}/redemptions",
    tag = "redemptions",
    params(
        ("customer_id" = uuid::Uuid, Path, description = "The customer's id. An unknown id, another tenant's customer and a malformed id are all 404 `customer-not-found`."),
        ("Idempotency-Key" = String, Header, min_length = 1, max_length = 255, pattern = "^[\\x21-\\x7E]+$",
            description = "Required. 1 to 255 visible ASCII characters, scoped to the tenant: a retry with the same key and the same request gets the first answer, byte for byte; the same key with another request is 422 `idempotency-key-reused`."),
    ),
    request_body(content = crate::openapi::RedemptionRequestSchema, content_type = "application/json",
        description = "Either `{points, description}` (a number of points) or `{reward_id}` (a catalogue reward, for its cost); a mix is 422 naming `reward_id`."),
    responses(
        (status = 201, description = "Redeemed: the points spent and the balance after them; for a reward, its id and the code the customer collects it with (`null` for points).",
            body = crate::render::RedemptionResponse, headers(("Idempotent-Replayed" = String, description = "`true` when this is the stored answer to an earlier request with the same `Idempotency-Key`."))),
        (status = 400, description = "`idempotency-key-missing`, `idempotency-key-invalid` (with `header`) or `malformed-json`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
        (status = 404, description = "`customer-not-found`, `reward-not-found` (or `tenant-not-registered`).", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`insufficient-points` (with `available` and `requested`), `reward-retired`, `out-of-stock` (with `stock`), `per-customer-limit-reached` (with `per_customer_limit`), `reward-not-yet-valid` (with `valid_from`) or `reward-no-longer-valid` (with `valid_until`).", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 410, description = "`customer-erased`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 422, description = "`invalid-field` (with `field`), `amount-not-positive`, `overflow` or `idempotency-key-reused`.", body = crate::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ("user_token" = []))
)]
#[tracing::instrument(name = "redeem_points", skip_all, fields(tenant_id = %caller.tenant_id))]
pub async fn redeem(
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    caller.authorize(schema::accounts::Permission::RedeemPoints)?;
    let customer_id = customer_in_path(&path)?;
    let key = IdempotencyKey::required(&req)?;
    let body = body::read_json(&req, payload, state.body_bytes_max).await?;
    let request = RedemptionRequest::parse(&body)?;
    // A new code per request, also on a retry: the request hash covers the body, not the
    // code, so a retry after a (rare) code collision succeeds with another code.
    let command = request.into_command(
        customer_id,
        RedemptionId::from_uuid(Uuid::now_v7()),
        new_code,
        commands::now(),
    )?;
    let claim = key.claim(req.method().as_str(), req.path(), &body);
    let submission = caller.submission(command, Some(claim), render::redemption);
    commands::submit(&state, submission).await
}

#[utoipa::path(
    post,
    path = "/v1/redemptions/{code}/fulfil",
    tag = "redemptions",
    params(
        ("code" = String, Path, description = "The redemption code the customer shows: 8 characters of Crockford base32. Case, spaces and hyphens are ignored; `O` reads as `0`, `I` and `L` as `1`. An unknown code, another tenant's and a malformed one are all 404 `redemption-not-found`."),
        ("Idempotency-Key" = String, Header, min_length = 1, max_length = 255, pattern = "^[\\x21-\\x7E]+$",
            description = "Required. 1 to 255 visible ASCII characters, scoped to the tenant: a retry with the same key gets the first answer, byte for byte (a second fulfilment with a new key is 409 `already-fulfilled`)."),
    ),
    responses(
        (status = 200, description = "Fulfilled: hand the reward over.",
            body = crate::render::FulfilmentResponse, headers(("Idempotent-Replayed" = String, description = "`true` when this is the stored answer to an earlier request with the same `Idempotency-Key`."))),
        (status = 400, description = "`idempotency-key-missing` or `idempotency-key-invalid` (with `header`).", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 403, description = "`forbidden`: the role may not fulfil redemptions (auditors, analysts).", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
        (status = 404, description = "`redemption-not-found`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`already-fulfilled`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "`idempotency-key-reused`.", body = crate::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ("user_token" = []))
)]
#[tracing::instrument(name = "fulfil_redemption", skip_all, fields(tenant_id = %caller.tenant_id))]
pub async fn fulfil(
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    caller.authorize(schema::accounts::Permission::FulfilRedemptions)?;
    let key = IdempotencyKey::required(&req)?;
    let code = RedemptionCode::parse(&path).map_err(|_| ApiError::RedemptionNotFound)?;
    let (customer_id, redemption_id) = by_code(&state, caller.tenant_id, &code).await?;
    let command = Command::FulfilRedemption {
        customer_id,
        redemption_id,
        at: commands::now(),
    };
    // The path is hashed in its canonical form, so `/04hm-asw9/` and `/04HMASW9/` are one
    // request to the idempotency check.
    let canonical_path = format!("/v1/redemptions/{code}/fulfil");
    let claim = key.claim(req.method().as_str(), &canonical_path, b"");
    let submission = caller.submission(command, Some(claim), render::fulfilment);
    commands::submit(&state, submission).await
}

/// The customer and redemption of a code of the caller's tenant; any other code is 404.
pub(crate) async fn by_code(
    state: &ApiState,
    tenant_id: ledger_core::TenantId,
    code: &RedemptionCode,
) -> Result<(ledger_core::CustomerId, RedemptionId), ApiError> {
    let mut client = state.client().await?;
    let transaction = scoped(&mut client, tenant_id).await?;
    schema::rewards::redemption_by_code(&*transaction, tenant_id, code)
        .await
        .map_err(|e| ApiError::Unavailable(format!("looking up a redemption code: {e}")))?
        .ok_or(ApiError::RedemptionNotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<RedemptionRequest, (u16, String)> {
        RedemptionRequest::parse(body.as_bytes()).map_err(|error| {
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

    #[test]
    fn a_redemption_parses_into_a_command() {
        let request = parse(r#"{"points":100,"description":"Free coffee"}"#).unwrap();
        assert_eq!(
            request,
            RedemptionRequest::Points {
                points: Points::new(100),
                description: "Free coffee".into()
            }
        );
    }

    #[test]
    fn a_reward_redemption_parses_and_draws_a_code() {
        let reward = Uuid::from_u128(7);
        let request = parse(&format!(r#"{{"reward_id":"{reward}"}}"#)).unwrap();
        assert_eq!(
            request,
            RedemptionRequest::Reward {
                reward_id: RewardId::from_uuid(reward)
            }
        );
        // Null members of the other form count as absent.
        let with_nulls = format!(r#"{{"reward_id":"{reward}","points":null,"description":null}}"#);
        assert_eq!(parse(&with_nulls).unwrap(), request);
        let customer = CustomerId::from_uuid(Uuid::from_u128(1));
        let redemption = RedemptionId::from_uuid(Uuid::from_u128(2));
        let command = request
            .into_command(customer, redemption, new_code, Utc::now())
            .unwrap();
        let Command::RedeemReward { code, .. } = command else {
            panic!("not a reward redemption: {command:?}");
        };
        assert_eq!(RedemptionCode::parse(code.as_str()), Ok(code.clone()));
        // Fresh codes differ (40 random bits each: a repeat in 100 draws is ~5e-9).
        let mut codes: Vec<RedemptionCode> = (0..100).map(|_| new_code().unwrap()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), 100);
    }

    #[test]
    fn a_points_redemption_never_draws_a_code() {
        let request = parse(r#"{"points":1,"description":"x"}"#).unwrap();
        let command = request.into_command(
            CustomerId::from_uuid(Uuid::from_u128(1)),
            RedemptionId::from_uuid(Uuid::from_u128(2)),
            || Err(ApiError::Internal("drew a code".into())),
            Utc::now(),
        );
        assert!(matches!(command, Ok(Command::RedeemPoints { .. })));
    }

    #[test]
    fn bad_redemptions_are_refused_naming_the_field() {
        let long = format!(r#"{{"points":1,"description":"{}"}}"#, "d".repeat(201));
        let too_many = format!(
            r#"{{"points":{},"description":"x"}}"#,
            Points::COMMAND_MAX + 1
        );
        let cases: Vec<(String, u16, &str)> = vec![
            (r#"{"points":0,"description":"x"}"#.into(), 422, "points"),
            (r#"{"points":-5,"description":"x"}"#.into(), 422, "points"),
            (r#"{"points":2.5,"description":"x"}"#.into(), 422, "points"),
            (r#"{"points":"10","description":"x"}"#.into(), 422, "points"),
            (
                r#"{"points":9223372036854775808,"description":"x"}"#.into(),
                422,
                "points",
            ),
            (too_many, 422, "points"),
            (r#"{"description":"x"}"#.into(), 422, "points"),
            (r#"{"points":1}"#.into(), 422, "description"),
            (
                r#"{"points":1,"description":""}"#.into(),
                422,
                "description",
            ),
            (
                r#"{"points":1,"description":"   "}"#.into(),
                422,
                "description",
            ),
            (r#"{"points":1,"description":7}"#.into(), 422, "description"),
            (long, 422, "description"),
            (
                r#"{"points":1,"description":"x","reward_id":"r1"}"#.into(),
                422,
                "reward_id",
            ),
            (
                format!(r#"{{"points":1,"reward_id":"{}"}}"#, Uuid::nil()),
                422,
                "reward_id",
            ),
            (
                format!(r#"{{"description":"x","reward_id":"{}"}}"#, Uuid::nil()),
                422,
                "reward_id",
            ),
            (r#"{"reward_id":"not-a-uuid"}"#.into(), 422, "reward_id"),
            (r#"{"reward_id":7}"#.into(), 422, "reward_id"),
            (r#"{"reward":"x"}"#.into(), 422, "reward"),
            (r#"{}"#.into(), 422, "points"),
            (r#"{"points":1,"description":"x""#.into(), 400, ""),
        ];
        for (body, status, field) in cases {
            assert_eq!(
                parse(&body).map(|_| ()),
                Err((status, field.to_owned())),
                "{body}"
            );
        }
    }
}
