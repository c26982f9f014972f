//! The points rules: `GET /v1/rules` (the set in force and every version published) and
//! `PUT /v1/rules` (publish a whole new set; owners only). Publishing is a command on the
//! tenant's stream; the set's meaning is documented in `ledger_core::rules`, and the JSON
//! of a rule is the serde shape of `ledger_core::rules::Rule`.
//!
//! A purchase earns under the set in force when it happened, so publishing never changes
//! what earlier purchases earned, and a purchase dated before the publication earns under
//! the set it was made under.

use crate::auth::Caller;
use crate::body::{self, JsonObject};
use crate::commands;
use crate::idempotency::IdempotencyKey;
use crate::problem::ApiError;
use crate::{render, scoped, ApiState};
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use ledger_core::rules::Rule;
use ledger_core::{Command, PublishedRuleSet};
use schema::accounts::Permission;
use serde::Serialize;
use serde_json::Value;

/// The fields of `PUT /v1/rules`; any other is refused (422). The version is the ledger's
/// to give (the current one plus one), so a client does not send it.
pub const RULE_SET_FIELDS: [&str; 1] = ["rules"];

/// A rule set as a client may send it: rules that parse. Whether they make a valid set
/// (`ledger_core::rules::RuleSet::new`) is decided by the ledger, which refuses an invalid
/// set with 422 `invalid-rule-set` naming the rule and the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSetRequest {
    pub rules: Vec<Rule>,
}

impl RuleSetRequest {
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let object = JsonObject::parse(body)?;
        object.deny_unknown(&RULE_SET_FIELDS)?;
        Ok(RuleSetRequest {
            rules: parse_rules(&object)?,
        })
    }

    pub fn into_command(self, at: DateTime<Utc>) -> Command {
        Command::PublishRuleSet {
            rules: self.rules,
            at,
        }
    }
}

/// The `rules` field of a body: an array of rules that each parse (`invalid-field` naming
/// `rules[i]` otherwise). Shared by `PUT /v1/rules` and `POST /v1/rules/dry-run`.
pub fn parse_rules(object: &JsonObject) -> Result<Vec<Rule>, ApiError> {
    let values = object.required("rules", |value| match value {
        Value::Array(values) => Ok(values.clone()),
        _ => Err("must be an array of rules".to_owned()),
    })?;
    let rules = values
        .into_iter()
        .enumerate()
        .map(|(index, value)| {
            let id = value.get("id").and_then(Value::as_str).map(str::to_owned);
            serde_json::from_value::<Rule>(value).map_err(|error| {
                let field = format!("rules[{index}]");
                let named = id.map_or_else(String::new, |id| format!(" (rule {id:?})"));
                ApiError::invalid_field(field.clone(), format!("{field}{named}: {error}"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rules)
}

/// One published rule set, with its rules in the shape `PUT /v1/rules` takes.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RuleSetView {
    pub version: u32,
    /// When it came into force: purchases that happened from then on (until the next
    /// version) earn under it.
    pub published_at: DateTime<Utc>,
    /// The rules; see `PUT /v1/rules` for their shape.
    #[schema(value_type = Vec<Object>)]
    pub rules: Vec<Rule>,
}

impl From<&PublishedRuleSet> for RuleSetView {
    fn from(published: &PublishedRuleSet) -> Self {
        RuleSetView {
            version: published.rule_set.version(),
            published_at: published.published_at,
            rules: published.rule_set.rules().to_vec(),
        }
    }
}

/// A version of the tenant's rule sets, and when it was published.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RuleSetVersion {
    pub version: u32,
    pub published_at: DateTime<Utc>,
}

/// `200` body of `GET /v1/rules`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RulesView {
    /// The latest set published.
    pub current: RuleSetView,
    /// Every version, oldest first (the first is the set the tenant registered with).
    pub versions: Vec<RuleSetVersion>,
}

#[utoipa::path(
    get,
    path = "/v1/rules",
    tag = "rules",
    responses(
        (status = 200, description = "The set in force and every version published, oldest first.", body = RulesView),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
    ),
    security(("api_key" = []), ("user_token" = []))
)]
#[tracing::instrument(name = "show_rules", skip_all, fields(tenant_id = %caller.tenant_id))]
pub async fn show(caller: Caller, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    caller.authorize(Permission::ReadRules)?;
    let mut client = state.client().await?;
    let transaction = scoped(&mut client, caller.tenant_id).await?;
    let tenant = crate::read_tenant(&transaction, caller.tenant_id).await?;
    let current = tenant
        .profile
        .as_ref()
        .and_then(|profile| profile.rule_sets.last())
        .ok_or_else(|| ApiError::Internal("an authenticated tenant without rule sets".into()))?;
    let versions = tenant
        .profile
        .iter()
        .flat_map(|profile| profile.rule_sets.iter())
        .map(|published| RuleSetVersion {
            version: published.rule_set.version(),
            published_at: published.published_at,
        })
        .collect();
    Ok(HttpResponse::Ok().json(RulesView {
        current: RuleSetView::from(current),
        versions,
    }))
}

#[utoipa::path(
    put,
    path = "/v1/rules",
    tag = "rules",
    params(
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[\\x21-\\x7E]+$",
            description = "Optional. A retry with the same key gets the first answer, byte for byte; without one, a retry publishes the same rules again as a new version."),
    ),
    request_body(content = crate::openapi::RuleSetRequestSchema, content_type = "application/json"),
    responses(
        (status = 200, description = "Published: the new set, in force from `published_at`, with its version (the previous one plus one).", body = RuleSetView,
            headers(("Idempotent-Replayed" = String, description = "`true` when this is the stored answer to an earlier request with the same `Idempotency-Key`."))),
        (status = 400, description = "`idempotency-key-invalid` (with `header`) or `malformed-json`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 403, description = "`forbidden`: only owners publish rules.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
        (status = 404, description = "`tenant-not-registered`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 422, description = "`invalid-field` (with `field`, e.g. `rules[2]`, when a rule does not parse), `invalid-rule-set` (with `rule`, the faulty rule's id, and `field`, e.g. `kind.amount_step`) or `idempotency-key-reused`. Nothing is published.", body = crate::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ("user_token" = []))
)]
#[tracing::instrument(name = "publish_rules", skip_all, fields(tenant_id = %caller.tenant_id))]
pub async fn publish(
    caller: Caller,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    caller.authorize(Permission::ManageRules)?;
    let key = IdempotencyKey::optional(&req)?;
    let body = body::read_json(&req, payload, state.body_bytes_max).await?;
    let request = RuleSetRequest::parse(&body)?;
    let command = request.into_command(commands::now());
    let claim = key.map(|key| key.claim(req.method().as_str(), req.path(), &body));
    let submission = caller.submission(command, claim, render::rule_set_published);
    commands::submit(&state, submission).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger_core::rules::RuleKind;
    use ledger_core::{MinorUnits, Points};

    #[test]
    fn a_rule_set_parses_with_defaults_for_priority_stacking_and_window() {
        let request = RuleSetRequest::parse(
            br#"{"rules":[{"id":"base","kind":{"per_amount_spent":
                {"amount_step":10000,"points_per_step":2,"minimum_purchase":0}}}]}"#,
        )
        .unwrap();
        assert_eq!(
            request.rules,
            vec![Rule::new(
                "base",
                RuleKind::PerAmountSpent {
                    amount_step: MinorUnits::new(10_000),
                    points_per_step: Points::new(2),
                    minimum_purchase: MinorUnits::ZERO,
                }
            )]
        );
    }

    /// Every kind, a window and an exclusive group, as documented in the OpenAPI schema;
    /// what `GET /v1/rules` shows is what was sent (defaults filled in).
    #[test]
    fn every_documented_shape_parses_and_reads_back_the_same() {
        let rules = serde_json::json!([
            {"id": "base", "priority": 0, "stacking": "stack", "when": null,
             "kind": {"per_amount_spent": {"amount_step": 10000, "points_per_step": 1, "minimum_purchase": 500}}},
            {"id": "visit", "priority": 1, "stacking": "stack", "when": null, "kind": {"per_purchase": {"points": 5}}},
            {"id": "tenth", "priority": 2, "stacking": "stack", "when": null, "kind": {"milestone": {"every_nth_purchase": 10, "bonus": 100}}},
            {"id": "welcome", "priority": 3, "stacking": {"exclusive": {"group": "welcome"}}, "when": null, "kind": {"first_purchase": {"bonus": 50}}},
            {"id": "birthday", "priority": 3, "stacking": "stack", "when": null, "kind": {"birthday": {"bonus": 200}}},
            {"id": "referral", "priority": 3, "stacking": {"exclusive": {"group": "welcome"}}, "when": null, "kind": {"referral": {"referee_bonus": 100, "referrer_bonus": 50}}},
            {"id": "no-drinks", "priority": 4, "stacking": "stack", "when": null, "kind": {"item_multiplier": {"match": {"skus": ["ZOBO"], "categories": ["drinks"]}, "percent": 0}}},
            {"id": "weekend", "priority": 5, "stacking": "stack",
             "when": {"from": "2026-12-01", "to": "2026-12-31", "weekdays": ["Sat", "Sun"], "hours": {"start": 8, "end": 20}},
             "kind": {"promotion": {"percent": 200, "applies_to": {"rules": ["base"]}}}},
            {"id": "all", "priority": 5, "stacking": "stack", "when": null, "kind": {"promotion": {"percent": 150, "applies_to": "all_base_rules"}}},
            {"id": "gold", "priority": 6, "stacking": "stack", "when": null, "kind": {"tier_multiplier": {"tier": "gold", "percent": 150}}},
            {"id": "cap", "priority": 7, "stacking": "stack", "when": null, "kind": {"purchase_cap": {"max": 1000}}},
            {"id": "day", "priority": 7, "stacking": "stack", "when": null, "kind": {"daily_cap": {"max": 2000}}},
        ]);
        let body = serde_json::json!({ "rules": rules }).to_string();
        let request = RuleSetRequest::parse(body.as_bytes()).unwrap();
        assert!(ledger_core::RuleSet::new(2, request.rules.clone()).is_ok());
        assert_eq!(serde_json::to_value(&request.rules).unwrap(), rules);
    }

    #[test]
    fn bad_bodies_are_refused_naming_the_field() {
        let cases: [(&[u8], &str); 7] = [
            (
                br#"{"rules":[{"id":"x","wehn":{},"kind":{"per_purchase":{"points":1}}}]}"#,
                "rules[0]",
            ),
            (
                br#"{"rules":[{"id":"x","kind":{"per_purchase":{"points":1,"bonus":2}}}]}"#,
                "rules[0]",
            ),
            (br#"{}"#, "rules"),
            (br#"{"rules":{}}"#, "rules"),
            (br#"{"rules":[],"version":2}"#, "version"),
            (br#"{"rules":[{"id":"x","kind":{"nope":{}}}]}"#, "rules[0]"),
            (
                br#"{"rules":[{"id":"a","kind":{"per_purchase":{"points":1}}},{"id":"b"}]}"#,
                "rules[1]",
            ),
        ];
        for (body, field) in cases {
            match RuleSetRequest::parse(body) {
                Err(ApiError::InvalidField { field: got, .. }) => {
                    assert_eq!(got, field, "{}", String::from_utf8_lossy(body))
                }
                other => panic!("{}: {other:?}", String::from_utf8_lossy(body)),
            }
        }
    }
}
