//! `POST /v1/customers/{id}/redemptions`: spend a customer's points. The balance check is
//! the ledger's (`decide`, inside the writer's transaction), so two concurrent redemptions
//! can never both spend the same points.

use crate::auth::Caller;
use crate::body::{self, JsonObject};
use crate::commands;
use crate::customers::customer_in_path;
use crate::idempotency::IdempotencyKey;
use crate::problem::ApiError;
use crate::{render, ApiState};
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use ledger_core::{AmountError, Command, CustomerId, Points, RedemptionId};
use serde_json::Value;
use uuid::Uuid;

pub const DESCRIPTION_CHARS_MAX: usize = 200;
/// The fields a redemption body may have; any other is refused (422).
pub const REDEMPTION_FIELDS: [&str; 2] = ["points", "description"];

/// A redemption as a client may send it. Built only by [`RedemptionRequest::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedemptionRequest {
    pub points: Points,
    pub description: String,
}

impl RedemptionRequest {
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let object = JsonObject::parse(body)?;
        object.deny_unknown(&REDEMPTION_FIELDS)?;
        Ok(RedemptionRequest {
            points: object.required("points", positive_points)?,
            description: object.required("description", description)?,
        })
    }

    pub fn into_command(
        self,
        customer_id: CustomerId,
        redemption_id: RedemptionId,
        at: DateTime<Utc>,
    ) -> Command {
        Command::RedeemPoints {
            customer_id,
            redemption_id,
            points: self.points,
            description: self.description,
            at,
        }
    }
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
    request_body(content = crate::openapi::RedemptionRequestSchema, content_type = "application/json"),
    responses(
        (status = 201, description = "Redeemed: the points spent and the balance after them.",
            body = crate::render::RedemptionResponse, headers(("Idempotent-Replayed" = String, description = "`true` when this is the stored answer to an earlier request with the same `Idempotency-Key`."))),
        (status = 400, description = "`idempotency-key-missing`, `idempotency-key-invalid` (with `header`) or `malformed-json`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
        (status = 404, description = "`customer-not-found` (or `tenant-not-registered`).", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`insufficient-points` (with `available` and `requested`).", body = crate::problem::Problem, content_type = "application/problem+json"),
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
    let command = request.into_command(
        customer_id,
        RedemptionId::from_uuid(Uuid::now_v7()),
        commands::now(),
    );
    let claim = key.claim(req.method().as_str(), req.path(), &body);
    let submission = caller.submission(command, Some(claim), render::redemption);
    commands::submit(&state, submission).await
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
        assert_eq!(request.points, Points::new(100));
        assert_eq!(request.description, "Free coffee");
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
