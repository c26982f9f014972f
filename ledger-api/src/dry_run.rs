//! `POST /v1/rules/dry-run`: what a proposed rule set would have earned over the tenant's
//! purchases in a date range, beside what they actually earned. Nothing is written: the
//! handler reads in one `REPEATABLE READ, READ ONLY` transaction scoped to the tenant and
//! folds the events through the pure `ledger_core::dry_run` (whose module doc is the
//! reference for what is and is not modelled).
//!
//! Reading order: [`DryRunRequest::parse`] (the body: the rules as `PUT /v1/rules` takes
//! them, and the range), [`dry_run`] (the handler), [`DryRunView`] (the answer).

use crate::auth::Caller;
use crate::body::{self, JsonObject};
use crate::problem::ApiError;
use crate::rules::parse_rules;
use crate::ApiState;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Duration, Utc};
use ledger_core::aggregate::PURCHASE_CLOCK_SKEW_MAX;
use ledger_core::dry_run::{DryRun, DryRunReport};
use ledger_core::rules::Rule;
use ledger_core::{RuleSet, StreamId, TenantProfile};
use schema::accounts::Permission;
use serde::Serialize;

pub const DRY_RUN_FIELDS: [&str; 3] = ["rules", "from", "to"];
/// The longest range a dry-run covers: a year and a bit, so "last year" fits and a request
/// cannot ask for the whole history of a large tenant.
pub const DRY_RUN_RANGE_DAYS_MAX: i64 = 400;
/// Events read per page: the fold's memory is its per-customer state plus one page.
pub const DRY_RUN_PAGE_EVENTS: i64 = 1_000;

/// A parsed dry-run body: rules that parse, and a range `from < to` of at most
/// [`DRY_RUN_RANGE_DAYS_MAX`] days. Whether the rules make a valid set is checked against
/// the tenant's current version, exactly like `PUT /v1/rules`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DryRunRequest {
    pub rules: Vec<Rule>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl DryRunRequest {
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let object = JsonObject::parse(body)?;
        object.deny_unknown(&DRY_RUN_FIELDS)?;
        let rules = parse_rules(&object)?;
        let from = object.required("from", body::timestamp)?;
        let to = object.required("to", body::timestamp)?;
        if to <= from {
            return Err(ApiError::invalid_field("to", "`to` must be after `from`"));
        }
        if to - from > Duration::days(DRY_RUN_RANGE_DAYS_MAX) {
            return Err(ApiError::invalid_field(
                "to",
                format!("the range may cover at most {DRY_RUN_RANGE_DAYS_MAX} days"),
            ));
        }
        Ok(DryRunRequest { rules, from, to })
    }
}

/// Points of one rule of the proposed set over the range.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RulePointsView {
    pub rule_id: String,
    #[schema(example = "promotion")]
    pub kind: &'static str,
    /// Negative for exclusions, multipliers below 100 % and caps; 0 when it never applied.
    pub points: i64,
}

/// `200` body of `POST /v1/rules/dry-run`. Nothing was written.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DryRunView {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// The tenant's time zone, in which windows and days were judged.
    #[schema(example = "Africa/Lagos")]
    pub time_zone: String,
    /// Purchases whose `occurred_at` is in `from..to` (from inclusive, to exclusive).
    pub purchases_evaluated: u64,
    /// Customers with at least one of them.
    pub customers_evaluated: u64,
    /// Customers whose points over the range would differ under the proposed set.
    pub customers_affected: u64,
    /// What those purchases earned when they were logged (before any later refund).
    pub points_actual: i64,
    /// What they would have earned under the proposed set.
    pub points_proposed: i64,
    /// `points_proposed − points_actual`: the change in points liability.
    pub points_difference: i64,
    /// Every rule of the proposed set, in the set's order.
    pub points_by_rule: Vec<RulePointsView>,
    /// ISO 4217 code of the money figures.
    #[schema(example = "NGN")]
    pub currency: String,
    /// The programme's stated value of one point in minor units; `null` when not stated.
    #[schema(required = true)]
    pub point_value_minor: Option<i64>,
    /// `points_difference × point_value_minor`; `null` when no point value is stated (set
    /// one with `PUT /v1/programme/settings`), never an invented value.
    #[schema(required = true)]
    pub liability_difference_minor: Option<i64>,
}

impl DryRunView {
    fn new(request: &DryRunRequest, profile: &TenantProfile, report: DryRunReport) -> Self {
        DryRunView {
            from: request.from,
            to: request.to,
            time_zone: profile.time_zone().name().to_owned(),
            purchases_evaluated: report.purchases_evaluated,
            customers_evaluated: report.customers_evaluated,
            customers_affected: report.customers_affected,
            points_actual: report.points_actual.value(),
            points_proposed: report.points_proposed.value(),
            points_difference: report.points_difference.value(),
            points_by_rule: report
                .points_by_rule
                .into_iter()
                .map(|line| RulePointsView {
                    rule_id: line.rule_id,
                    kind: line.kind.as_str(),
                    points: line.points.value(),
                })
                .collect(),
            currency: profile.currency.as_str().to_owned(),
            point_value_minor: profile.settings.point_value.map(|value| value.value()),
            liability_difference_minor: report.liability_difference_minor.map(|m| m.value()),
        }
    }
}

#[utoipa::path(
    post,
    path = "/v1/rules/dry-run",
    tag = "rules",
    request_body(content = crate::openapi::DryRunRequestSchema, content_type = "application/json"),
    responses(
        (status = 200, description = "What the proposed set would have earned over the purchases in `from..to`, beside what they earned. Nothing is written.", body = DryRunView),
        (status = 400, description = "`malformed-json`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 403, description = "`forbidden`: owners and analysts only.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 422, description = "`invalid-field` (with `field`: `rules[2]` when a rule does not parse, `from` or `to` for a bad range: not RFC 3339, `to` not after `from`, or longer than 400 days) or `invalid-rule-set` (with `rule` and `field`, exactly as `PUT /v1/rules`).", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
    ),
    security(("api_key" = []), ("user_token" = []))
)]
#[tracing::instrument(name = "dry_run_rules", skip_all, fields(tenant_id = %caller.tenant_id))]
pub async fn dry_run(
    caller: Caller,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    caller.authorize(Permission::DryRunRules)?;
    let body = body::read_json(&req, payload, state.body_bytes_max).await?;
    let request = DryRunRequest::parse(&body)?;
    let mut client = state.client().await?;
    let transaction = schema::tenancy::begin_read_only_snapshot(&mut client, caller.tenant_id)
        .await
        .map_err(|e| ApiError::Unavailable(format!("beginning the dry-run's snapshot: {e}")))?;
    let tenant = crate::read_tenant(&transaction, caller.tenant_id).await?;
    let profile = tenant
        .profile
        .ok_or_else(|| ApiError::Internal("an authenticated tenant without a profile".into()))?;
    // Validated as `PUT /v1/rules` would publish it: the next version.
    let version = profile.rule_set.version().saturating_add(1);
    let rule_set =
        RuleSet::new(version, request.rules.clone()).map_err(ApiError::InvalidRuleSet)?;
    let base_tier = profile
        .tier_scheme
        .as_ref()
        .and_then(|scheme| scheme.tiers.first())
        .map(|tier| tier.id.clone());
    let mut fold = DryRun::new(
        &rule_set,
        profile.time_zone(),
        base_tier,
        request.from,
        request.to,
    );
    let events_read =
        fold_tenant_events(&*transaction, caller.tenant_id, &request, &mut fold).await?;
    transaction
        .commit()
        .await
        .map_err(|e| ApiError::Unavailable(format!("ending the dry-run's snapshot: {e}")))?;
    let report = fold
        .finish(profile.settings.point_value)
        .map_err(|e| ApiError::Internal(format!("dry-run: {e}")))?;
    tracing::info!(
        events_read,
        purchases = report.purchases_evaluated,
        "dry-run evaluated"
    );
    Ok(HttpResponse::Ok().json(DryRunView::new(&request, &profile, report)))
}

/// Feeds the tenant's purchases, points and tier changes to `fold`, page by page in
/// tenant-sequence order (version order within each customer's stream). Returns how many
/// events were read.
async fn fold_tenant_events(
    client: &impl tokio_postgres::GenericClient,
    tenant_id: ledger_core::TenantId,
    request: &DryRunRequest,
    fold: &mut DryRun<'_>,
) -> Result<u64, ApiError> {
    // A purchase is recorded no earlier than `occurred_at` minus the skew the ledger allows.
    let recorded_from = request.from - PURCHASE_CLOCK_SKEW_MAX;
    let mut after_sequence = 0;
    let mut events_read = 0_u64;
    loop {
        let page = schema::store::read_dry_run_page(
            client,
            tenant_id,
            after_sequence,
            recorded_from,
            DRY_RUN_PAGE_EVENTS,
        )
        .await
        .map_err(|e| ApiError::Unavailable(format!("reading the tenant's events: {e}")))?;
        for recorded in &page {
            after_sequence = recorded.tenant_sequence;
            events_read += 1;
            let StreamId::Customer(customer) = recorded
                .stream()
                .map_err(|e| ApiError::Internal(format!("dry-run: {e}")))?
            else {
                continue;
            };
            let event = recorded
                .decode()
                .map_err(|e| ApiError::Internal(format!("dry-run: decoding an event: {e}")))?;
            fold.apply(customer, &event)
                .map_err(|e| ApiError::Internal(format!("dry-run: {e}")))?;
        }
        if (page.len() as i64) < DRY_RUN_PAGE_EVENTS {
            return Ok(events_read);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(body: &str) -> String {
        match DryRunRequest::parse(body.as_bytes()) {
            Err(ApiError::InvalidField { field, .. }) => field,
            other => panic!("{body}: {other:?}"),
        }
    }

    #[test]
    fn a_body_parses_into_rules_and_a_range() {
        let request = DryRunRequest::parse(
            br#"{"rules":[{"id":"visit","kind":{"per_purchase":{"points":5}}}],
                "from":"2026-07-01T00:00:00+01:00","to":"2026-10-01T00:00:00+01:00"}"#,
        )
        .unwrap();
        assert_eq!(request.rules.len(), 1);
        assert_eq!(request.from.to_rfc3339(), "2026-06-30T23:00:00+00:00");
        assert_eq!(request.to - request.from, Duration::days(92));
    }

    #[test]
    fn bad_bodies_are_refused_naming_the_field() {
        let rules = r#""rules":[{"id":"visit","kind":{"per_purchase":{"points":5}}}]"#;
        let cases = [
            (
                format!(r#"{{{rules},"to":"2026-10-01T00:00:00Z"}}"#),
                "from",
            ),
            (
                format!(r#"{{{rules},"from":"2026-07-01T00:00:00Z"}}"#),
                "to",
            ),
            (
                format!(r#"{{{rules},"from":"last quarter","to":"2026-10-01T00:00:00Z"}}"#),
                "from",
            ),
            (
                format!(r#"{{{rules},"from":"2026-10-01T00:00:00Z","to":"2026-10-01T00:00:00Z"}}"#),
                "to",
            ),
            (
                format!(r#"{{{rules},"from":"2026-10-01T00:00:00Z","to":"2026-07-01T00:00:00Z"}}"#),
                "to",
            ),
            (
                format!(r#"{{{rules},"from":"2025-01-01T00:00:00Z","to":"2026-02-05T00:00:01Z"}}"#),
                "to",
            ),
            (
                r#"{"rules":{},"from":"2026-07-01T00:00:00Z","to":"2026-10-01T00:00:00Z"}"#
                    .to_owned(),
                "rules",
            ),
            (
                format!(
                    r#"{{{rules},"from":"2026-07-01T00:00:00Z","to":"2026-10-01T00:00:00Z","version":3}}"#
                ),
                "version",
            ),
        ];
        for (body, field) in cases {
            assert_eq!(field_of(&body), field, "{body}");
        }
        // Exactly 400 days is allowed.
        let longest =
            format!(r#"{{{rules},"from":"2025-01-01T00:00:00Z","to":"2026-02-05T00:00:00Z"}}"#);
        assert!(DryRunRequest::parse(longest.as_bytes()).is_ok());
    }
}
