//! The reward catalogue: `POST /v1/rewards` (create), `GET /v1/rewards` (list, active and
//! retired, with the stock left), `PUT /v1/rewards/{reward_id}` (replace a reward's fields),
//! `POST /v1/rewards/{reward_id}/retire`. Creating, updating and retiring are commands on
//! the tenant's stream; the list folds that stream (`schema::rewards::tenant_state`), so it
//! shows a reward as soon as its creation was answered, and reads the units used from
//! `reward_stock`.
//!
//! The update is a `PUT`, not a `PATCH`: its body is the same as creation's and replaces
//! every field (an absent optional field is cleared), as the `RewardUpdated` event does. A
//! client that changes one field sends the reward back as `GET` showed it, with that field
//! changed; there is no merge whose meaning for `null` a client could misread.

use crate::auth::Caller;
use crate::body::{self, JsonObject};
use crate::commands;
use crate::idempotency::IdempotencyKey;
use crate::problem::ApiError;
use crate::{render, scoped, ApiState};
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use ledger_core::aggregate::{check_reward_description, check_reward_image_url};
use ledger_core::command::{
    REWARD_NAME_CHARS_MAX, REWARD_PER_CUSTOMER_LIMIT_MAX, REWARD_STOCK_MAX,
};
use ledger_core::events::RewardTerms;
use ledger_core::{AmountError, Command, Points, Reward, RewardId, RewardStock};
use schema::accounts::Permission;
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

/// The fields of `POST /v1/rewards` and `PUT /v1/rewards/{reward_id}`; any other is refused
/// (422). `name` and `points_cost` are required.
pub const REWARD_FIELDS: [&str; 8] = [
    "name",
    "points_cost",
    "description",
    "image_url",
    "valid_from",
    "valid_until",
    "stock",
    "per_customer_limit",
];
/// The required ones.
pub const REWARD_REQUIRED_FIELDS: [&str; 2] = ["name", "points_cost"];
/// The longest reward name, in characters (the ledger's own limit).
pub const NAME_CHARS_MAX: usize = REWARD_NAME_CHARS_MAX;

/// A reward as a client may send it. Built only by [`RewardRequest::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewardRequest {
    pub name: String,
    pub points_cost: Points,
    pub terms: RewardTerms,
}

impl RewardRequest {
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let object = JsonObject::parse(body)?;
        object.deny_unknown(&REWARD_FIELDS)?;
        let terms = RewardTerms {
            description: object.optional("description", description)?,
            image_url: object.optional("image_url", image_url)?,
            valid_from: object.optional("valid_from", body::timestamp)?,
            valid_until: object.optional("valid_until", body::timestamp)?,
            stock: object.optional("stock", stock)?,
            per_customer_limit: object.optional("per_customer_limit", per_customer_limit)?,
        };
        if let (Some(from), Some(until)) = (terms.valid_from, terms.valid_until) {
            if from >= until {
                return Err(ApiError::invalid_field(
                    "valid_until",
                    "valid_until must be later than valid_from",
                ));
            }
        }
        Ok(RewardRequest {
            name: object.required("name", name)?,
            points_cost: object.required("points_cost", points_cost)?,
            terms,
        })
    }

    pub fn into_command(self, reward_id: RewardId, at: DateTime<Utc>) -> Command {
        Command::CreateReward {
            reward_id,
            name: self.name,
            points_cost: self.points_cost,
            terms: self.terms,
            at,
        }
    }

    pub fn into_update(self, reward_id: RewardId, at: DateTime<Utc>) -> Command {
        Command::UpdateReward {
            reward_id,
            name: self.name,
            points_cost: self.points_cost,
            terms: self.terms,
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

/// Trimmed; the ledger's rule (1 to 72 characters, one line).
fn description(value: &Value) -> Result<String, String> {
    let Value::String(raw) = value else {
        return Err("must be a string".to_owned());
    };
    let trimmed = raw.trim().to_owned();
    check_reward_description(&trimmed).map_err(str::to_owned)?;
    Ok(trimmed)
}

/// The ledger's rule: an `https` URL with a host, visible ASCII, at most 2048 characters.
fn image_url(value: &Value) -> Result<String, String> {
    let Value::String(url) = value else {
        return Err("must be a string".to_owned());
    };
    check_reward_image_url(url).map_err(str::to_owned)?;
    Ok(url.clone())
}

fn stock(value: &Value) -> Result<u32, String> {
    whole_in(value, 0, REWARD_STOCK_MAX)
}

fn per_customer_limit(value: &Value) -> Result<u32, String> {
    whole_in(value, 1, REWARD_PER_CUSTOMER_LIMIT_MAX)
}

fn whole_in(value: &Value, min: u32, max: u32) -> Result<u32, String> {
    let out_of_range = || format!("must be {min} to {max}");
    let integer = body::integer(value).map_err(|_| out_of_range())?;
    u32::try_from(integer)
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(out_of_range)
}

/// One reward of the catalogue: the `201` of creation, the `200` of an update or a
/// retirement, and a row of the list. Absent terms are `null`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RewardView {
    #[schema(value_type = uuid::Uuid)]
    pub reward_id: RewardId,
    pub name: String,
    pub points_cost: i64,
    /// One line for customers (the WhatsApp list row's description).
    #[schema(required = true)]
    pub description: Option<String>,
    #[schema(required = true)]
    pub image_url: Option<String>,
    /// Redeemable from (inclusive).
    #[schema(required = true)]
    pub valid_from: Option<DateTime<Utc>>,
    /// Redeemable until (exclusive).
    #[schema(required = true)]
    pub valid_until: Option<DateTime<Utc>>,
    /// Total units; `null` for unlimited.
    #[schema(required = true)]
    pub stock: Option<u32>,
    /// Units not used by open or fulfilled holds; `null` for unlimited.
    #[schema(required = true)]
    pub stock_remaining: Option<u32>,
    /// Most units one customer may have (open and fulfilled holds); `null` for no limit.
    #[schema(required = true)]
    pub per_customer_limit: Option<u32>,
    /// `false` once retired: it can no longer be redeemed.
    pub active: bool,
    pub created_at: DateTime<Utc>,
    #[schema(required = true)]
    pub updated_at: Option<DateTime<Utc>>,
    #[schema(required = true)]
    pub retired_at: Option<DateTime<Utc>>,
}

impl RewardView {
    /// The reward with what is left of its stock, given the units used.
    pub fn new(reward: &Reward, stock: &RewardStock) -> Self {
        let terms = &reward.terms;
        RewardView {
            reward_id: reward.reward_id,
            name: reward.name.clone(),
            points_cost: reward.points_cost.value(),
            description: terms.description.clone(),
            image_url: terms.image_url.clone(),
            valid_from: terms.valid_from,
            valid_until: terms.valid_until,
            stock: terms.stock,
            stock_remaining: reward.stock_remaining(stock),
            per_customer_limit: terms.per_customer_limit,
            active: reward.is_active(),
            created_at: reward.created_at,
            updated_at: reward.updated_at,
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
        (status = 422, description = "`invalid-field` (with `field`: any field of the body, e.g. `description` over 72 characters, `image_url` not https, `valid_until` not after `valid_from`), `amount-not-positive` or `idempotency-key-reused`.", body = crate::problem::Problem, content_type = "application/problem+json"),
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
    let (tenant, stock) = tokio::try_join!(
        schema::rewards::tenant_state(&*transaction, caller.tenant_id),
        schema::rewards::stock_used(&*transaction, caller.tenant_id),
    )
    .map_err(|e| ApiError::Unavailable(format!("reading the catalogue: {e}")))?;
    Ok(HttpResponse::Ok().json(RewardList {
        rewards: tenant
            .rewards
            .values()
            .map(|reward| RewardView::new(reward, &stock))
            .collect(),
    }))
}

#[utoipa::path(
    put,
    path = "/v1/rewards/{reward_id}",
    tag = "rewards",
    params(
        ("reward_id" = uuid::Uuid, Path, description = "The reward's id. An unknown id, another tenant's reward and a malformed id are all 404 `reward-not-found`."),
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[\\x21-\\x7E]+$",
            description = "Optional. A retry with the same key and the same request gets the first answer, byte for byte; the same key with another request is 422 `idempotency-key-reused`."),
    ),
    request_body(content = crate::openapi::RewardRequestSchema, content_type = "application/json",
        description = "The reward's whole new set of fields, as for creation: an optional field left out is cleared. Holds already made keep their points."),
    responses(
        (status = 200, description = "Updated.", body = RewardView,
            headers(("Idempotent-Replayed" = String, description = "`true` when this is the stored answer to an earlier request with the same `Idempotency-Key`."))),
        (status = 400, description = "`idempotency-key-invalid` (with `header`) or `malformed-json`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 403, description = "`forbidden`: only owners manage the catalogue.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "`reward-not-found`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`reward-retired`, or `stock-below-used` (with `field` `stock` and `used`): the stock may not be set below the units already held or handed over.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 422, description = "`invalid-field` (with `field`), `amount-not-positive` or `idempotency-key-reused`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
    ),
    security(("api_key" = []), ("user_token" = []))
)]
#[tracing::instrument(name = "update_reward", skip_all, fields(tenant_id = %caller.tenant_id))]
pub async fn update(
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    caller.authorize(Permission::ManageRewards)?;
    let reward_id = reward_in_path(&path)?;
    let key = IdempotencyKey::optional(&req)?;
    let body = body::read_json(&req, payload, state.body_bytes_max).await?;
    let command = RewardRequest::parse(&body)?.into_update(reward_id, commands::now());
    let claim = key.map(|key| key.claim(req.method().as_str(), req.path(), &body));
    let submission = caller.submission(command, claim, render::reward_updated);
    commands::submit(&state, submission).await
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
                r#"{"name":"x","points_cost":1,"colour":"red"}"#.into(),
                422,
                "colour",
            ),
            (with_term(r#""description":"""#), 422, "description"),
            (with_term(r#""description":"   ""#), 422, "description"),
            (
                with_term(&format!(r#""description":"{}""#, "d".repeat(73))),
                422,
                "description",
            ),
            (with_term(r#""description":"a\nb""#), 422, "description"),
            (with_term(r#""description":7"#), 422, "description"),
            (
                with_term(r#""image_url":"http://x.example/a.jpg""#),
                422,
                "image_url",
            ),
            (with_term(r#""image_url":"https://""#), 422, "image_url"),
            (
                with_term(r#""image_url":"https://x.example/a b.jpg""#),
                422,
                "image_url",
            ),
            (
                with_term(&format!(
                    r#""image_url":"https://x.example/{}""#,
                    "a".repeat(2040)
                )),
                422,
                "image_url",
            ),
            (with_term(r#""valid_from":"tomorrow""#), 422, "valid_from"),
            (with_term(r#""valid_until":1700000000"#), 422, "valid_until"),
            (
                with_term(
                    r#""valid_from":"2026-02-01T00:00:00Z","valid_until":"2026-01-01T00:00:00Z""#,
                ),
                422,
                "valid_until",
            ),
            (
                with_term(
                    r#""valid_from":"2026-01-01T00:00:00Z","valid_until":"2026-01-01T00:00:00Z""#,
                ),
                422,
                "valid_until",
            ),
            (with_term(r#""stock":-1"#), 422, "stock"),
            (with_term(r#""stock":1.5"#), 422, "stock"),
            (with_term(r#""stock":1000000001"#), 422, "stock"),
            (with_term(r#""stock":"5""#), 422, "stock"),
            (
                with_term(r#""per_customer_limit":0"#),
                422,
                "per_customer_limit",
            ),
            (
                with_term(r#""per_customer_limit":1001"#),
                422,
                "per_customer_limit",
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

    fn with_term(term: &str) -> String {
        format!(r#"{{"name":"x","points_cost":1,{term}}}"#)
    }

    #[test]
    fn the_catalogue_terms_parse_and_null_or_absent_means_none() {
        let request = parse(&with_term(
            r#""description":" Party jollof, chicken and plantain ","image_url":"https://cdn.example.com/j.jpg?w=600","valid_from":"2026-01-01T00:00:00+01:00","valid_until":"2026-02-01T00:00:00Z","stock":0,"per_customer_limit":2"#,
        ))
        .unwrap();
        let terms = request.terms;
        assert_eq!(
            terms.description.as_deref(),
            Some("Party jollof, chicken and plantain")
        );
        assert_eq!(
            terms.image_url.as_deref(),
            Some("https://cdn.example.com/j.jpg?w=600")
        );
        assert_eq!(
            terms.valid_from.map(|at| at.to_rfc3339()).as_deref(),
            Some("2025-12-31T23:00:00+00:00")
        );
        assert_eq!((terms.stock, terms.per_customer_limit), (Some(0), Some(2)));
        let longest = format!(r#""description":"{}""#, "é".repeat(72));
        assert!(parse(&with_term(&longest)).is_ok());
        let bare = parse(&with_term(r#""description":null,"stock":null"#)).unwrap();
        assert_eq!(bare.terms, RewardTerms::default());
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
