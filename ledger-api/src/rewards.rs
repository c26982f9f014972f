//! The reward catalogue: `POST /v1/rewards` (create), `GET /v1/rewards` (list, active and
//! retired), `POST /v1/rewards/{reward_id}/retire`. Creating and retiring are commands on
//! the tenant's stream; the list folds that stream (`schema::rewards::tenant_state`), so it
//! shows a reward as soon as its creation was answered.

use crate::auth::Caller;
use crate::body::{self, JsonObject};
use crate::commands;
use crate::idempotency::IdempotencyKey;
use crate::problem::ApiError;
use crate::{render, scoped, ApiState};
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use ledger_core::command::REWARD_NAME_CHARS_MAX;
use ledger_core::{AmountError, Command, Points, Reward, RewardId};
use schema::accounts::Permission;
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

/// The fields of `POST /v1/rewards`; any other is refused (422).
pub const REWARD_FIELDS: [&str; 2] = ["name", "points_cost"];
/// The longest reward name, in characters (the ledger's own limit).
pub const NAME_CHARS_MAX: usize = REWARD_NAME_CHARS_MAX;

/// A new reward as a client may send it. Built only by [`RewardRequest::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewardRequest {
    pub name: String,
    pub points_cost: Points,
}

impl RewardRequest {
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let object = JsonObject::parse(body)?;
        object.deny_unknown(&REWARD_FIELDS)?;
        Ok(RewardRequest {
            name: object.required("name", name)?,
            points_cost: object.required("points_cost", points_cost)?,
        })
    }

    pub fn into_command(self, reward_id: RewardId, at: DateTime<Utc>) -> Command {
        Command::CreateReward {
            reward_id,
            name: self.name,
            points_cost: self.points_cost,
            at,
        }
    }
}

/// 1 to 60 characters after trimming, no control characters.
fn name(value: &Value) -> Result<String, String> {
    let Value::String(raw) = value else {
        return Err("must be a string".to_owned());
    };
    body::text(&Value::String(raw.trim().to_owned()), 1, NAME_CHARS_MAX)
        .map_err(|message| format!("{message} (after trimming)"))
}

fn points_cost(value: &Value) -> Result<Points, String> {
    Points::parse_positive(body::integer(value)?).map_err(|error| match error {
        AmountError::Zero => "must be greater than zero".to_owned(),
        AmountError::Negative => "must not be negative".to_owned(),
        _ => format!("must be at most {}", Points::COMMAND_MAX),
    })
}

/// One reward of the catalogue: the `201` of creation, the `200` of retirement, and a row of
/// the list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RewardView {
    #[schema(value_type = uuid::Uuid)]
    pub reward_id: RewardId,
    pub name: String,
    pub points_cost: i64,
    /// `false` once retired: it can no longer be redeemed.
    pub active: bool,
    pub created_at: DateTime<Utc>,
    #[schema(required = true)]
    pub retired_at: Option<DateTime<Utc>>,
}

impl From<&Reward> for RewardView {
    fn from(reward: &Reward) -> Self {
        RewardView {
            reward_id: reward.reward_id,
            name: reward.name.clone(),
            points_cost: reward.points_cost.value(),
            active: reward.is_active(),
            created_at: reward.created_at,
            retired_at: reward.retired_at,
        }
    }
}

/// `200` body of `GET /v1/rewards`: every reward, oldest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RewardList {
    pub rewards: Vec<RewardView>,
}

pub fn reward_in_path(raw: &str) -> Result<RewardId, ApiError> {
    RewardId::parse(raw).map_err(|_| ApiError::RewardNotFound)
}

#[utoipa::path(
    post,
    path = "/v1/rewards",
    tag = "rewards",
    params(
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[\\x21-\\x7E]+$",
            description = "Optional. 1 to 255 visible ASCII characters, scoped to the tenant: a retry with the same key and the same request gets the first answer, byte for byte (without a key, a retry creates a second reward); the same key with another request is 422 `idempotency-key-reused`."),
    ),
    request_body(content = crate::openapi::RewardRequestSchema, content_type = "application/json"),
    responses(
        (status = 201, description = "Created, active.", body = RewardView,
            headers(("Idempotent-Replayed" = String, description = "`true` when this is the stored answer to an earlier request with the same `Idempotency-Key`."))),
        (status = 400, description = "`idempotency-key-invalid` (with `header`) or `malformed-json`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 403, description = "`forbidden`: only owners manage the catalogue.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
        (status = 404, description = "`tenant-not-registered`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 422, description = "`invalid-field` (with `field`), `amount-not-positive` or `idempotency-key-reused`.", body = crate::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ("user_token" = []))
)]
#[tracing::instrument(name = "create_reward", skip_all, fields(tenant_id = %caller.tenant_id))]
pub async fn create(
    caller: Caller,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    caller.authorize(Permission::ManageRewards)?;
    let key = IdempotencyKey::optional(&req)?;
    let body = body::read_json(&req, payload, state.body_bytes_max).await?;
    let request = RewardRequest::parse(&body)?;
    let command = request.into_command(RewardId::from_uuid(Uuid::now_v7()), commands::now());
    let claim = key.map(|key| key.claim(req.method().as_str(), req.path(), &body));
    let submission = caller.submission(command, claim, render::reward_created);
    commands::submit(&state, submission).await
}

#[utoipa::path(
    get,
    path = "/v1/rewards",
    tag = "rewards",
    responses(
        (status = 200, description = "The catalogue, active and retired rewards, oldest first.", body = RewardList),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
    ),
    security(("api_key" = []), ("user_token" = []))
)]
#[tracing::instrument(name = "list_rewards", skip_all, fields(tenant_id = %caller.tenant_id))]
pub async fn list(caller: Caller, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    caller.authorize(Permission::ReadRewards)?;
    let mut client = state.client().await?;
    let transaction = scoped(&mut client, caller.tenant_id).await?;
    let tenant = schema::rewards::tenant_state(&*transaction, caller.tenant_id)
        .await
        .map_err(|e| ApiError::Unavailable(format!("reading the catalogue: {e}")))?;
    Ok(HttpResponse::Ok().json(RewardList {
        rewards: tenant.rewards.values().map(RewardView::from).collect(),
    }))
}

#[utoipa::path(
    post,
    path = "/v1/rewards/{reward_id}/retire",
    tag = "rewards",
    params(
        ("reward_id" = uuid::Uuid, Path, description = "The reward's id. An unknown id, another tenant's reward and a malformed id are all 404 `reward-not-found`."),
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[\\x21-\\x7E]+$",
            description = "Optional. A retry with the same key gets the first answer, byte for byte; without one, a retry after success is 409 `reward-retired`."),
    ),
    responses(
        (status = 200, description = "Retired: no longer redeemable. Redemptions already made can still be fulfilled.", body = RewardView,
            headers(("Idempotent-Replayed" = String, description = "`true` when this is the stored answer to an earlier request with the same `Idempotency-Key`."))),
        (status = 400, description = "`idempotency-key-invalid` (with `header`).", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 403, description = "`forbidden`: only owners manage the catalogue.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
        (status = 404, description = "`reward-not-found`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`reward-retired`: already retired.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "`idempotency-key-reused`.", body = crate::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ("user_token" = []))
)]
#[tracing::instrument(name = "retire_reward", skip_all, fields(tenant_id = %caller.tenant_id))]
pub async fn retire(
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    caller.authorize(Permission::ManageRewards)?;
    let reward_id = reward_in_path(&path)?;
    let key = IdempotencyKey::optional(&req)?;
    let command = Command::RetireReward {
        reward_id,
        at: commands::now(),
    };
    let claim = key.map(|key| key.claim(req.method().as_str(), req.path(), b""));
    let submission = caller.submission(command, claim, render::reward_retired);
    commands::submit(&state, submission).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<RewardRequest, (u16, String)> {
        RewardRequest::parse(body.as_bytes()).map_err(|error| {
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
    fn a_reward_parses_with_its_name_trimmed() {
        let request = parse(r#"{"name":"  Jollof rice ","points_cost":50}"#).unwrap();
        assert_eq!(request.name, "Jollof rice");
        assert_eq!(request.points_cost, Points::new(50));
        let longest = format!(r#"{{"name":"{}","points_cost":1}}"#, "é".repeat(60));
        assert_eq!(parse(&longest).unwrap().name.chars().count(), 60);
    }

    #[test]
    fn bad_rewards_are_refused_naming_the_field() {
        let too_long = format!(r#"{{"name":"{}","points_cost":1}}"#, "n".repeat(61));
        let too_costly = format!(
            r#"{{"name":"x","points_cost":{}}}"#,
            Points::COMMAND_MAX + 1
        );
        let cases: Vec<(String, u16, &str)> = vec![
            (r#"{"points_cost":1}"#.into(), 422, "name"),
            (r#"{"name":"","points_cost":1}"#.into(), 422, "name"),
            (r#"{"name":"   ","points_cost":1}"#.into(), 422, "name"),
            (r#"{"name":"a\u0007b","points_cost":1}"#.into(), 422, "name"),
            (r#"{"name":5,"points_cost":1}"#.into(), 422, "name"),
            (too_long, 422, "name"),
            (r#"{"name":"x"}"#.into(), 422, "points_cost"),
            (r#"{"name":"x","points_cost":0}"#.into(), 422, "points_cost"),
            (
                r#"{"name":"x","points_cost":-1}"#.into(),
                422,
                "points_cost",
            ),
            (
                r#"{"name":"x","points_cost":1.5}"#.into(),
                422,
                "points_cost",
            ),
            (
                r#"{"name":"x","points_cost":"5"}"#.into(),
                422,
                "points_cost",
            ),
            (too_costly, 422, "points_cost"),
            (
                r#"{"name":"x","points_cost":1,"stock":3}"#.into(),
                422,
                "stock",
            ),
            (r#"{"name":"x""#.into(), 400, ""),
        ];
        for (body, status, field) in cases {
            assert_eq!(
                parse(&body).map(|_| ()),
                Err((status, field.to_owned())),
                "{body}"
            );
        }
    }

    #[test]
    fn malformed_reward_ids_in_paths_are_not_found() {
        assert!(matches!(
            reward_in_path("nope"),
            Err(ApiError::RewardNotFound)
        ));
        let id = Uuid::now_v7();
        assert_eq!(
            reward_in_path(&id.to_string()).unwrap(),
            RewardId::from_uuid(id)
        );
    }
}
