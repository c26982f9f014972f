//! `GET /v1/analytics/*`: the tenant's analytics (docs/ANALYTICS.md), read from the
//! `analytics` views in a transaction scoped to the caller's tenant, as JSON or as CSV.
//!
//! CSV is chosen with `?format=csv` or, when `format` is absent, with an `Accept` header
//! naming `text/csv`. A CSV answer has a header line with the JSON field names, then one
//! line per JSON row, the cells rendered from the same JSON values (so the two cannot
//! disagree): numbers as written, `null` as an empty cell, text quoted when it holds a comma,
//! a quote or a line break (RFC 4180), lines ending in CRLF.
//!
//! Query parameters are checked strictly: an unknown or repeated parameter, a malformed date
//! or `from` after `to` is a 400 `invalid-query` naming the parameter.

use crate::accounts::{database, json_response};
use crate::auth::Caller;
use crate::problem::ApiError;
use crate::ApiState;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::NaiveDate;
use schema::accounts::Permission;
use serde::Serialize;
use tokio_postgres::Row;

pub const CSV_CONTENT_TYPE: &str = "text/csv; charset=utf-8";

/// How the caller wants the rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
}

/// The checked query: the output format and, where the endpoint takes them, the days.
#[derive(Debug, Default)]
struct Query {
    csv: Option<bool>,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
}

fn invalid(parameter: &str, detail: impl Into<String>) -> ApiError {
    ApiError::InvalidQuery {
        parameter: parameter.to_owned(),
        detail: detail.into(),
    }
}

/// Parses `pairs`, accepting `format` everywhere and `from`/`to` only when `dated`.
fn parse_query(pairs: &[(String, String)], dated: bool) -> Result<Query, ApiError> {
    let mut query = Query::default();
    let mut seen: Vec<&str> = Vec::new();
    for (name, value) in pairs {
        if seen.contains(&name.as_str()) {
            return Err(invalid(name, format!("{name} is given more than once")));
        }
        seen.push(name);
        match name.as_str() {
            "format" => {
                query.csv = Some(match value.as_str() {
                    "json" => false,
                    "csv" => true,
                    _ => return Err(invalid("format", "format must be json or csv")),
                })
            }
            "from" | "to" if dated => {
                let day = NaiveDate::parse_from_str(value, "%Y-%m-%d")
                    .map_err(|_| invalid(name, format!("{name} must be a date, YYYY-MM-DD")))?;
                if name == "from" {
                    query.from = Some(day);
                } else {
                    query.to = Some(day);
                }
            }
            _ => {
                let known = if dated {
                    "format, from and to"
                } else {
                    "format"
                };
                return Err(invalid(
                    name,
                    format!("unknown parameter {name}: this endpoint takes {known}"),
                ));
            }
        }
    }
    if let (Some(from), Some(to)) = (query.from, query.to) {
        if from > to {
            return Err(invalid("from", "from must not be after to"));
        }
    }
    Ok(query)
}

fn format_of(request: &HttpRequest, query: &Query) -> Format {
    let accepts_csv = || {
        request
            .headers()
            .get_all(actix_web::http::header::ACCEPT)
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|v| v.split(';').next().unwrap_or("").trim() == "text/csv")
    };
    match query.csv {
        Some(true) => Format::Csv,
        Some(false) => Format::Json,
        None if accepts_csv() => Format::Csv,
        None => Format::Json,
    }
}

/// A row type of an endpoint: its fields in CSV column order (the JSON field names).
pub trait CsvColumns: Serialize {
    const COLUMNS: &'static [&'static str];
}

/// One CSV cell from a JSON value.
fn csv_cell(value: &serde_json::Value) -> String {
    let text = match value {
        serde_json::Value::Null => return String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// The rows as CSV: a header line, then a line per row (CRLF line ends).
pub fn to_csv<T: CsvColumns>(rows: &[T]) -> String {
    let mut out = T::COLUMNS.join(",");
    out.push_str("\r\n");
    for row in rows {
        let value = serde_json::to_value(row).unwrap_or(serde_json::Value::Null);
        let cells: Vec<String> = T::COLUMNS
            .iter()
            .map(|column| csv_cell(value.get(column).unwrap_or(&serde_json::Value::Null)))
            .collect();
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    }
    out
}

/// The rows as CSV, or as the JSON body `wrap` makes of them.
fn answer<T: CsvColumns, B: Serialize>(
    format: Format,
    rows: Vec<T>,
    wrap: impl FnOnce(Vec<T>) -> B,
) -> HttpResponse {
    match format {
        Format::Csv => HttpResponse::Ok()
            .content_type(CSV_CONTENT_TYPE)
            .body(to_csv(&rows)),
        Format::Json => json_response(StatusCode::OK, &wrap(rows)),
    }
}

/// Runs `sql` (on an `analytics` view) in a transaction scoped to the caller's tenant.
async fn read_view(
    state: &ApiState,
    caller: &Caller,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<Row>, ApiError> {
    let mut client = state.client().await?;
    let transaction = crate::scoped(&mut client, caller.tenant_id).await?;
    let rows = transaction.query(sql, params).await.map_err(database)?;
    transaction.commit().await.map_err(database)?;
    Ok(rows)
}

fn column<T: for<'a> tokio_postgres::types::FromSql<'a>>(
    row: &Row,
    name: &str,
) -> Result<T, ApiError> {
    row.try_get(name).map_err(database)
}

fn pairs(query: web::Query<Vec<(String, String)>>) -> Vec<(String, String)> {
    query.into_inner()
}

// ---------------------------------------------------------------------------------------
// Daily figures
// ---------------------------------------------------------------------------------------

/// One local day of the tenant's ledger (`analytics.daily_activity`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DailyRow {
    /// The tenant's local date (its programme time zone).
    pub day: NaiveDate,
    pub points_issued: i64,
    pub points_redeemed: i64,
    pub points_expired: i64,
    pub points_reversed: i64,
    /// Signed: manual adjustments add or take away.
    pub points_adjusted: i64,
    pub purchases: i64,
    pub purchase_amount_minor: i64,
    pub refunds: i64,
    pub refund_amount_minor: i64,
    pub redemptions: i64,
    pub holds: i64,
    pub holds_released: i64,
    pub enrolments: i64,
}

impl CsvColumns for DailyRow {
    const COLUMNS: &'static [&'static str] = &[
        "day",
        "points_issued",
        "points_redeemed",
        "points_expired",
        "points_reversed",
        "points_adjusted",
        "purchases",
        "purchase_amount_minor",
        "refunds",
        "refund_amount_minor",
        "redemptions",
        "holds",
        "holds_released",
        "enrolments",
    ];
}

/// `200` body of `GET /v1/analytics/daily`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DailyList {
    /// Days with any activity, oldest first (days without any are absent).
    pub days: Vec<DailyRow>,
}

#[utoipa::path(
    get,
    path = "/v1/analytics/daily",
    tag = "analytics",
    params(
        ("from" = Option<String>, Query, format = Date, description = "First local day (YYYY-MM-DD), inclusive."),
        ("to" = Option<String>, Query, format = Date, description = "Last local day (YYYY-MM-DD), inclusive."),
        ("format" = Option<String>, Query, description = "`json` (default) or `csv`; without it, `Accept: text/csv` asks for CSV."),
    ),
    responses(
        (status = 200, description = "Points issued, redeemed, expired, reversed and adjusted, purchases, refunds, redemptions, holds and enrolments per local day. As CSV: the same fields, a header line first.", content((DailyList = "application/json"), (String = "text/csv"))),
        (status = 400, description = "`invalid-query` (with `parameter`): an unknown or repeated parameter, a malformed date, `from` after `to`, or a `format` other than json or csv.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 403, description = "`forbidden`: owners and analysts read analytics.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
    ),
    security(("api_key" = []), ("user_token" = []))
)]
#[tracing::instrument(name = "analytics_daily", skip_all, fields(tenant_id = %caller.tenant_id))]
pub async fn daily(
    caller: Caller,
    request: HttpRequest,
    query: web::Query<Vec<(String, String)>>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    caller.authorize(Permission::ReadAnalytics)?;
    let query = parse_query(&pairs(query), true)?;
    let rows = read_view(
        &state,
        &caller,
        "SELECT * FROM analytics.daily_activity \
         WHERE ($1::date IS NULL OR day >= $1) AND ($2::date IS NULL OR day <= $2) \
         ORDER BY day",
        &[&query.from, &query.to],
    )
    .await?;
    let days = rows
        .iter()
        .map(|row| {
            Ok(DailyRow {
                day: column(row, "day")?,
                points_issued: column(row, "points_issued")?,
                points_redeemed: column(row, "points_redeemed")?,
                points_expired: column(row, "points_expired")?,
                points_reversed: column(row, "points_reversed")?,
                points_adjusted: column(row, "points_adjusted")?,
                purchases: column(row, "purchases")?,
                purchase_amount_minor: column(row, "purchase_amount_minor")?,
                refunds: column(row, "refunds")?,
                refund_amount_minor: column(row, "refund_amount_minor")?,
                redemptions: column(row, "redemptions")?,
                holds: column(row, "holds")?,
                holds_released: column(row, "holds_released")?,
                enrolments: column(row, "enrolments")?,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(answer(format_of(&request, &query), days, |days| {
        DailyList { days }
    }))
}

// ---------------------------------------------------------------------------------------
// Active customers
// ---------------------------------------------------------------------------------------

/// `200` body of `GET /v1/analytics/active-customers` (`analytics.active_customers`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ActiveCustomers {
    /// The tenant's local date now: the windows end with it.
    pub as_of: NaiveDate,
    /// Customers enrolled (erased ones included: they are counted, not named).
    pub customers: i64,
    /// Customers whose last purchase or redemption is within the last 7 local days
    /// (`as_of` and the 6 before).
    pub active_7d: i64,
    pub active_30d: i64,
    pub active_90d: i64,
}

impl CsvColumns for ActiveCustomers {
    const COLUMNS: &'static [&'static str] = &[
        "as_of",
        "customers",
        "active_7d",
        "active_30d",
        "active_90d",
    ];
}

#[utoipa::path(
    get,
    path = "/v1/analytics/active-customers",
    tag = "analytics",
    params(
        ("format" = Option<String>, Query, description = "`json` (default) or `csv`; without it, `Accept: text/csv` asks for CSV."),
    ),
    responses(
        (status = 200, description = "Customers active in the last 7, 30 and 90 local days. As CSV: one line after the header.", content((ActiveCustomers = "application/json"), (String = "text/csv"))),
        (status = 400, description = "`invalid-query` (with `parameter`): an unknown or repeated parameter, or a `format` other than json or csv.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 403, description = "`forbidden`: owners and analysts read analytics.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
    ),
    security(("api_key" = []), ("user_token" = []))
)]
#[tracing::instrument(name = "analytics_active_customers", skip_all, fields(tenant_id = %caller.tenant_id))]
pub async fn active_customers(
    caller: Caller,
    request: HttpRequest,
    query: web::Query<Vec<(String, String)>>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    caller.authorize(Permission::ReadAnalytics)?;
    let query = parse_query(&pairs(query), false)?;
    // A tenant the projector has not seen yet has no row: zeros, as of today in the
    // default zone.
    let rows = read_view(
        &state,
        &caller,
        "SELECT as_of, customers, active_7d, active_30d, active_90d \
         FROM analytics.active_customers \
         UNION ALL \
         SELECT (now() AT TIME ZONE 'Africa/Lagos')::date, 0, 0, 0, 0 \
         WHERE NOT EXISTS (SELECT 1 FROM analytics.active_customers) \
         LIMIT 1",
        &[],
    )
    .await?;
    let row = rows
        .first()
        .ok_or_else(|| ApiError::Internal("the active-customers view gave no row".into()))?;
    let active = ActiveCustomers {
        as_of: column(row, "as_of")?,
        customers: column(row, "customers")?,
        active_7d: column(row, "active_7d")?,
        active_30d: column(row, "active_30d")?,
        active_90d: column(row, "active_90d")?,
    };
    Ok(answer(
        format_of(&request, &query),
        vec![active],
        |mut one| one.remove(0),
    ))
}

// ---------------------------------------------------------------------------------------
// Reward popularity
// ---------------------------------------------------------------------------------------

/// One catalogue reward and what became of its redemptions (`analytics.reward_popularity`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RewardRow {
    pub reward_id: uuid::Uuid,
    /// The reward's name as last created or updated.
    pub name: String,
    pub points_cost: i64,
    pub retired: bool,
    /// Holds and direct redemptions.
    pub redemptions: i64,
    pub holds: i64,
    pub holds_open: i64,
    pub holds_fulfilled: i64,
    pub holds_cancelled: i64,
    pub holds_expired: i64,
    /// Redemptions that spent the points at once (no hold; before holds existed).
    pub direct_redemptions: i64,
    /// Points spent on the reward: fulfilled holds and direct redemptions.
    pub points_redeemed: i64,
    /// Points reserved by open holds.
    pub points_held: i64,
}

impl CsvColumns for RewardRow {
    const COLUMNS: &'static [&'static str] = &[
        "reward_id",
        "name",
        "points_cost",
        "retired",
        "redemptions",
        "holds",
        "holds_open",
        "holds_fulfilled",
        "holds_cancelled",
        "holds_expired",
        "direct_redemptions",
        "points_redeemed",
        "points_held",
    ];
}

/// `200` body of `GET /v1/analytics/rewards`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RewardList {
    /// Most redeemed first (then by name).
    pub rewards: Vec<RewardRow>,
}

#[utoipa::path(
    get,
    path = "/v1/analytics/rewards",
    tag = "analytics",
    params(
        ("format" = Option<String>, Query, description = "`json` (default) or `csv`; without it, `Accept: text/csv` asks for CSV."),
    ),
    responses(
        (status = 200, description = "Reward popularity: each catalogue reward's holds by outcome, direct redemptions and points. As CSV: the same fields, a header line first.", content((RewardList = "application/json"), (String = "text/csv"))),
        (status = 400, description = "`invalid-query` (with `parameter`): an unknown or repeated parameter, or a `format` other than json or csv.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 403, description = "`forbidden`: owners and analysts read analytics.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
    ),
    security(("api_key" = []), ("user_token" = []))
)]
#[tracing::instrument(name = "analytics_rewards", skip_all, fields(tenant_id = %caller.tenant_id))]
pub async fn rewards(
    caller: Caller,
    request: HttpRequest,
    query: web::Query<Vec<(String, String)>>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    caller.authorize(Permission::ReadAnalytics)?;
    let query = parse_query(&pairs(query), false)?;
    let rows = read_view(
        &state,
        &caller,
        "SELECT * FROM analytics.reward_popularity ORDER BY redemptions DESC, name, reward_id",
        &[],
    )
    .await?;
    let rewards = rows
        .iter()
        .map(|row| {
            Ok(RewardRow {
                reward_id: column(row, "reward_id")?,
                name: column(row, "name")?,
                points_cost: column(row, "points_cost")?,
                retired: column(row, "retired")?,
                redemptions: column(row, "redemptions")?,
                holds: column(row, "holds")?,
                holds_open: column(row, "holds_open")?,
                holds_fulfilled: column(row, "holds_fulfilled")?,
                holds_cancelled: column(row, "holds_cancelled")?,
                holds_expired: column(row, "holds_expired")?,
                direct_redemptions: column(row, "direct_redemptions")?,
                points_redeemed: column(row, "points_redeemed")?,
                points_held: column(row, "points_held")?,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(answer(format_of(&request, &query), rewards, |rewards| {
        RewardList { rewards }
    }))
}

// ---------------------------------------------------------------------------------------
// Cohorts
// ---------------------------------------------------------------------------------------

/// One (enrolment month, activity month) cell (`analytics.cohort_retention`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CohortRow {
    /// First day of the local month the cohort's customers enrolled in.
    pub cohort_month: NaiveDate,
    /// First day of the local month of activity.
    pub activity_month: NaiveDate,
    /// 0 for the enrolment month itself.
    pub months_since_enrolment: i32,
    /// Customers enrolled in `cohort_month`.
    pub cohort_size: i64,
    /// Of them, customers who purchased, held or redeemed in `activity_month`.
    pub active_customers: i64,
}

impl CsvColumns for CohortRow {
    const COLUMNS: &'static [&'static str] = &[
        "cohort_month",
        "activity_month",
        "months_since_enrolment",
        "cohort_size",
        "active_customers",
    ];
}

/// `200` body of `GET /v1/analytics/cohorts`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CohortList {
    /// By cohort, then activity month; months without an active customer are absent.
    pub cohorts: Vec<CohortRow>,
}

#[utoipa::path(
    get,
    path = "/v1/analytics/cohorts",
    tag = "analytics",
    params(
        ("format" = Option<String>, Query, description = "`json` (default) or `csv`; without it, `Accept: text/csv` asks for CSV."),
    ),
    responses(
        (status = 200, description = "Cohort retention: customers by enrolment month, and how many of them were active in each later month. As CSV: the same fields, a header line first.", content((CohortList = "application/json"), (String = "text/csv"))),
        (status = 400, description = "`invalid-query` (with `parameter`): an unknown or repeated parameter, or a `format` other than json or csv.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 403, description = "`forbidden`: owners and analysts read analytics.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
    ),
    security(("api_key" = []), ("user_token" = []))
)]
#[tracing::instrument(name = "analytics_cohorts", skip_all, fields(tenant_id = %caller.tenant_id))]
pub async fn cohorts(
    caller: Caller,
    request: HttpRequest,
    query: web::Query<Vec<(String, String)>>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    caller.authorize(Permission::ReadAnalytics)?;
    let query = parse_query(&pairs(query), false)?;
    let rows = read_view(
        &state,
        &caller,
        "SELECT * FROM analytics.cohort_retention ORDER BY cohort_month, activity_month",
        &[],
    )
    .await?;
    let cohorts = rows
        .iter()
        .map(|row| {
            Ok(CohortRow {
                cohort_month: column(row, "cohort_month")?,
                activity_month: column(row, "activity_month")?,
                months_since_enrolment: column(row, "months_since_enrolment")?,
                cohort_size: column(row, "cohort_size")?,
                active_customers: column(row, "active_customers")?,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(answer(format_of(&request, &query), cohorts, |cohorts| {
        CohortList { cohorts }
    }))
}

// ---------------------------------------------------------------------------------------
// Tiers
// ---------------------------------------------------------------------------------------

/// Customers per current tier (`analytics.tier_distribution`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TierRow {
    /// The tier id of the ladder; `null` for customers who never changed tier (the base
    /// tier, or no ladder).
    #[schema(required = true)]
    pub tier: Option<String>,
    pub customers: i64,
}

impl CsvColumns for TierRow {
    const COLUMNS: &'static [&'static str] = &["tier", "customers"];
}

/// `200` body of `GET /v1/analytics/tiers`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TierList {
    /// By tier id, `null` first.
    pub tiers: Vec<TierRow>,
}

#[utoipa::path(
    get,
    path = "/v1/analytics/tiers",
    tag = "analytics",
    params(
        ("format" = Option<String>, Query, description = "`json` (default) or `csv`; without it, `Accept: text/csv` asks for CSV."),
    ),
    responses(
        (status = 200, description = "Tier distribution: customers per current tier. As CSV: the same fields, a header line first (an empty tier cell is `null`).", content((TierList = "application/json"), (String = "text/csv"))),
        (status = 400, description = "`invalid-query` (with `parameter`): an unknown or repeated parameter, or a `format` other than json or csv.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 403, description = "`forbidden`: owners and analysts read analytics.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
    ),
    security(("api_key" = []), ("user_token" = []))
)]
#[tracing::instrument(name = "analytics_tiers", skip_all, fields(tenant_id = %caller.tenant_id))]
pub async fn tiers(
    caller: Caller,
    request: HttpRequest,
    query: web::Query<Vec<(String, String)>>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    caller.authorize(Permission::ReadAnalytics)?;
    let query = parse_query(&pairs(query), false)?;
    let rows = read_view(
        &state,
        &caller,
        "SELECT tier, customers FROM analytics.tier_distribution ORDER BY tier NULLS FIRST",
        &[],
    )
    .await?;
    let tiers = rows
        .iter()
        .map(|row| {
            Ok(TierRow {
                tier: column(row, "tier")?,
                customers: column(row, "customers")?,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(answer(format_of(&request, &query), tiers, |tiers| {
        TierList { tiers }
    }))
}

// ---------------------------------------------------------------------------------------
// Redemption rate
// ---------------------------------------------------------------------------------------

/// One local month's redemption rate (`analytics.redemption_rate`): integer numerators and
/// denominators, and the rates in basis points (integer division, rounded down).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RedemptionRateRow {
    /// First day of the local month.
    pub month: NaiveDate,
    pub points_redeemed: i64,
    pub points_issued: i64,
    /// points_redeemed × 10000 / points_issued; `null` when nothing was issued.
    #[schema(required = true)]
    pub points_rate_bps: Option<i64>,
    /// Customers who spent points in the month.
    pub customers_redeemed: i64,
    /// Customers who were issued points in the month.
    pub customers_earned: i64,
    /// customers_redeemed × 10000 / customers_earned; `null` when nobody earned.
    #[schema(required = true)]
    pub customers_rate_bps: Option<i64>,
}

impl CsvColumns for RedemptionRateRow {
    const COLUMNS: &'static [&'static str] = &[
        "month",
        "points_redeemed",
        "points_issued",
        "points_rate_bps",
        "customers_redeemed",
        "customers_earned",
        "customers_rate_bps",
    ];
}

/// `200` body of `GET /v1/analytics/redemption-rate`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RedemptionRateList {
    /// Oldest month first.
    pub months: Vec<RedemptionRateRow>,
}

#[utoipa::path(
    get,
    path = "/v1/analytics/redemption-rate",
    tag = "analytics",
    params(
        ("format" = Option<String>, Query, description = "`json` (default) or `csv`; without it, `Accept: text/csv` asks for CSV."),
    ),
    responses(
        (status = 200, description = "Redemption rate per local month: points redeemed over points issued, customers who redeemed over customers who earned. As CSV: the same fields, a header line first.", content((RedemptionRateList = "application/json"), (String = "text/csv"))),
        (status = 400, description = "`invalid-query` (with `parameter`): an unknown or repeated parameter, or a `format` other than json or csv.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 403, description = "`forbidden`: owners and analysts read analytics.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
    ),
    security(("api_key" = []), ("user_token" = []))
)]
#[tracing::instrument(name = "analytics_redemption_rate", skip_all, fields(tenant_id = %caller.tenant_id))]
pub async fn redemption_rate(
    caller: Caller,
    request: HttpRequest,
    query: web::Query<Vec<(String, String)>>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    caller.authorize(Permission::ReadAnalytics)?;
    let query = parse_query(&pairs(query), false)?;
    let rows = read_view(
        &state,
        &caller,
        "SELECT * FROM analytics.redemption_rate ORDER BY month",
        &[],
    )
    .await?;
    let months = rows
        .iter()
        .map(|row| {
            Ok(RedemptionRateRow {
                month: column(row, "month")?,
                points_redeemed: column(row, "points_redeemed")?,
                points_issued: column(row, "points_issued")?,
                points_rate_bps: column(row, "points_rate_bps")?,
                customers_redeemed: column(row, "customers_redeemed")?,
                customers_earned: column(row, "customers_earned")?,
                customers_rate_bps: column(row, "customers_rate_bps")?,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(answer(format_of(&request, &query), months, |months| {
        RedemptionRateList { months }
    }))
}

// ---------------------------------------------------------------------------------------
// WhatsApp
// ---------------------------------------------------------------------------------------

/// One local day of WhatsApp traffic (`analytics.whatsapp_activity`). The outcome counts
/// are a funnel over the day's outbound messages by their current state: `sent` includes
/// the delivered and read ones, `delivered` the read ones.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WhatsAppRow {
    pub day: NaiveDate,
    /// Customers' messages to the business.
    pub inbound: i64,
    /// Messages queued to customers: replies, notifications and broadcast messages.
    pub outbound: i64,
    pub outbound_replies: i64,
    pub outbound_notifications: i64,
    pub outbound_broadcasts: i64,
    /// Not yet accepted by WhatsApp (queued or being sent).
    pub pending: i64,
    pub sent: i64,
    pub delivered: i64,
    pub read: i64,
    pub failed: i64,
    /// Broadcast messages withdrawn before sending (paused or cancelled broadcast).
    pub withdrawn: i64,
}

impl CsvColumns for WhatsAppRow {
    const COLUMNS: &'static [&'static str] = &[
        "day",
        "inbound",
        "outbound",
        "outbound_replies",
        "outbound_notifications",
        "outbound_broadcasts",
        "pending",
        "sent",
        "delivered",
        "read",
        "failed",
        "withdrawn",
    ];
}

/// `200` body of `GET /v1/analytics/whatsapp`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WhatsAppList {
    /// Days with any traffic, oldest first.
    pub days: Vec<WhatsAppRow>,
}

#[utoipa::path(
    get,
    path = "/v1/analytics/whatsapp",
    tag = "analytics",
    params(
        ("from" = Option<String>, Query, format = Date, description = "First local day (YYYY-MM-DD), inclusive."),
        ("to" = Option<String>, Query, format = Date, description = "Last local day (YYYY-MM-DD), inclusive."),
        ("format" = Option<String>, Query, description = "`json` (default) or `csv`; without it, `Accept: text/csv` asks for CSV."),
    ),
    responses(
        (status = 200, description = "WhatsApp message volumes and delivery outcomes per local day. As CSV: the same fields, a header line first.", content((WhatsAppList = "application/json"), (String = "text/csv"))),
        (status = 400, description = "`invalid-query` (with `parameter`): an unknown or repeated parameter, a malformed date, `from` after `to`, or a `format` other than json or csv.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 403, description = "`forbidden`: owners and analysts read analytics.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
    ),
    security(("api_key" = []), ("user_token" = []))
)]
#[tracing::instrument(name = "analytics_whatsapp", skip_all, fields(tenant_id = %caller.tenant_id))]
pub async fn whatsapp(
    caller: Caller,
    request: HttpRequest,
    query: web::Query<Vec<(String, String)>>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    caller.authorize(Permission::ReadAnalytics)?;
    let query = parse_query(&pairs(query), true)?;
    let rows = read_view(
        &state,
        &caller,
        "SELECT * FROM analytics.whatsapp_activity \
         WHERE ($1::date IS NULL OR day >= $1) AND ($2::date IS NULL OR day <= $2) \
         ORDER BY day",
        &[&query.from, &query.to],
    )
    .await?;
    let days = rows
        .iter()
        .map(|row| {
            Ok(WhatsAppRow {
                day: column(row, "day")?,
                inbound: column(row, "inbound")?,
                outbound: column(row, "outbound")?,
                outbound_replies: column(row, "outbound_replies")?,
                outbound_notifications: column(row, "outbound_notifications")?,
                outbound_broadcasts: column(row, "outbound_broadcasts")?,
                pending: column(row, "pending")?,
                sent: column(row, "sent")?,
                delivered: column(row, "delivered")?,
                read: column(row, "read")?,
                failed: column(row, "failed")?,
                withdrawn: column(row, "withdrawn")?,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(answer(format_of(&request, &query), days, |days| {
        WhatsAppList { days }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn parameter_of(error: ApiError) -> String {
        match error {
            ApiError::InvalidQuery { parameter, .. } => parameter,
            other => panic!("expected invalid-query, got {other:?}"),
        }
    }

    #[test]
    fn queries_are_checked_strictly() {
        let ok = parse_query(&q(&[("from", "2026-01-01"), ("to", "2026-01-31")]), true).unwrap();
        assert_eq!(ok.from, NaiveDate::from_ymd_opt(2026, 1, 1));
        assert_eq!(ok.csv, None);
        for (pairs, dated, parameter) in [
            (q(&[("from", "2026-13-01")]), true, "from"),
            (q(&[("to", "yesterday")]), true, "to"),
            (
                q(&[("from", "2026-02-01"), ("to", "2026-01-01")]),
                true,
                "from",
            ),
            (q(&[("format", "xml")]), true, "format"),
            (q(&[("format", "csv"), ("format", "json")]), false, "format"),
            (q(&[("from", "2026-01-01")]), false, "from"),
            (q(&[("limit", "5")]), true, "limit"),
        ] {
            assert_eq!(
                parameter_of(parse_query(&pairs, dated).unwrap_err()),
                parameter
            );
        }
        assert_eq!(
            parse_query(&q(&[("format", "csv")]), false).unwrap().csv,
            Some(true)
        );
    }

    #[derive(Serialize)]
    struct Sample {
        name: String,
        tier: Option<String>,
        count: i64,
    }

    impl CsvColumns for Sample {
        const COLUMNS: &'static [&'static str] = &["name", "tier", "count"];
    }

    #[test]
    fn csv_quotes_what_needs_quoting_and_leaves_null_empty() {
        let rows = vec![
            Sample {
                name: "Coffee, large".into(),
                tier: None,
                count: 3,
            },
            Sample {
                name: "The \"big\" one".into(),
                tier: Some("gold".into()),
                count: -1,
            },
        ];
        assert_eq!(
            to_csv(&rows),
            "name,tier,count\r\n\"Coffee, large\",,3\r\n\"The \"\"big\"\" one\",gold,-1\r\n"
        );
    }

    /// The CSV columns are exactly the JSON fields, for every row type.
    #[test]
    fn csv_columns_are_the_json_fields() {
        fn keys<T: CsvColumns>(row: &T) {
            let value = serde_json::to_value(row).unwrap();
            let mut json: Vec<&str> = value
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            let mut csv = T::COLUMNS.to_vec();
            json.sort_unstable();
            csv.sort_unstable();
            assert_eq!(json, csv);
        }
        let day = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
        keys(&DailyRow {
            day,
            points_issued: 0,
            points_redeemed: 0,
            points_expired: 0,
            points_reversed: 0,
            points_adjusted: 0,
            purchases: 0,
            purchase_amount_minor: 0,
            refunds: 0,
            refund_amount_minor: 0,
            redemptions: 0,
            holds: 0,
            holds_released: 0,
            enrolments: 0,
        });
        keys(&ActiveCustomers {
            as_of: day,
            customers: 0,
            active_7d: 0,
            active_30d: 0,
            active_90d: 0,
        });
        keys(&RewardRow {
            reward_id: uuid::Uuid::nil(),
            name: String::new(),
            points_cost: 0,
            retired: false,
            redemptions: 0,
            holds: 0,
            holds_open: 0,
            holds_fulfilled: 0,
            holds_cancelled: 0,
            holds_expired: 0,
            direct_redemptions: 0,
            points_redeemed: 0,
            points_held: 0,
        });
        keys(&CohortRow {
            cohort_month: day,
            activity_month: day,
            months_since_enrolment: 0,
            cohort_size: 0,
            active_customers: 0,
        });
        keys(&TierRow {
            tier: None,
            customers: 0,
        });
        keys(&RedemptionRateRow {
            month: day,
            points_redeemed: 0,
            points_issued: 0,
            points_rate_bps: None,
            customers_redeemed: 0,
            customers_earned: 0,
            customers_rate_bps: None,
        });
        keys(&WhatsAppRow {
            day,
            inbound: 0,
            outbound: 0,
            outbound_replies: 0,
            outbound_notifications: 0,
            outbound_broadcasts: 0,
            pending: 0,
            sent: 0,
            delivered: 0,
            read: 0,
            failed: 0,
            withdrawn: 0,
        });
    }
}
