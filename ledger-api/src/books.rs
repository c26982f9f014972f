//! The books: what a tenant owed in points and money at any moment of its ledger, and its
//! monthly liability statements.
//!
//! - `GET /v1/books/position?as_of=<RFC 3339>` or `?sequence=<n>`: the whole tenant.
//! - `GET /v1/customers/{id}/position?as_of=…` or `?sequence=…`: one customer.
//! - `GET /v1/books/statements?from=YYYY-MM&to=YYYY-MM[&format=csv]`.
//!
//! Every answer is folded from the events themselves (`ledger_core::books`), in one
//! REPEATABLE READ snapshot scoped to the caller's tenant: never from a read model, so it is
//! what the ledger said then, whatever the read models say now. "As of a time" means the
//! events recorded at or before it; "as of a sequence", the tenant's events up to that
//! tenant sequence. The fold reads the tenant's events page by page and keeps one state per
//! customer, so a request costs O(events) time and O(customers) memory.

use crate::auth::Caller;
use crate::customers::{customer_in_path, decoded, view_from_state, CustomerView};
use crate::problem::ApiError;
use crate::ApiState;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, NaiveDate, Utc};
use ledger_core::aggregate::Aggregate;
use ledger_core::books::{Books, MonthStatement, Movements, StatementBuilder, Worth};
use ledger_core::{CustomerId, CustomerState, StreamId, TenantId};
use schema::accounts::Permission;
use serde::{Deserialize, Serialize};

/// Events read per query.
const PAGE_EVENTS: i64 = 2_000;

/// Months one statement request may cover.
pub const STATEMENT_MONTHS_MAX: usize = 120;

/// Where in the ledger to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    /// Every event so far.
    Now,
    /// Events recorded at or before this instant.
    Time(DateTime<Utc>),
    /// Events up to this tenant sequence.
    Sequence(i64),
}

impl AsOf {
    fn includes(self, recorded: &schema::RecordedEvent) -> bool {
        match self {
            AsOf::Now => true,
            AsOf::Time(at) => recorded.recorded_at <= at,
            AsOf::Sequence(sequence) => recorded.tenant_sequence <= sequence,
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct PositionQuery {
    /// Kept as text so a bad value gets our problem, naming the parameter.
    as_of: Option<String>,
    sequence: Option<String>,
}

impl PositionQuery {
    pub fn parse(&self) -> Result<AsOf, ApiError> {
        let invalid = |parameter: &str, detail: &str| ApiError::InvalidQuery {
            parameter: parameter.into(),
            detail: detail.into(),
        };
        match (self.as_of.as_deref(), self.sequence.as_deref()) {
            (Some(_), Some(_)) => Err(invalid("sequence", "give as_of or sequence, not both")),
            (Some(raw), None) => DateTime::parse_from_rfc3339(raw)
                .map(|at| AsOf::Time(at.with_timezone(&Utc)))
                .map_err(|_| {
                    invalid(
                        "as_of",
                        "as_of must be an RFC 3339 time, e.g. 2026-11-30T23:00:00Z",
                    )
                }),
            (None, Some(raw)) => match raw.parse::<i64>() {
                Ok(sequence) if sequence >= 0 => Ok(AsOf::Sequence(sequence)),
                _ => Err(invalid("sequence", "sequence must be a whole number ≥ 0")),
            },
            (None, None) => Ok(AsOf::Now),
        }
    }
}

/// Points and their worth. `value_minor` covers the valued points only; points of lots
/// opened while the tenant had no point value set are counted in `unvalued_points`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct WorthView {
    pub points: i64,
    /// Minor units of the tenant's currency.
    #[schema(value_type = i64)]
    pub value_minor: i128,
    pub unvalued_points: i64,
}

impl From<Worth> for WorthView {
    fn from(worth: Worth) -> WorthView {
        WorthView {
            points: worth.points,
            value_minor: worth.minor,
            unvalued_points: worth.unvalued_points,
        }
    }
}

/// Movements of outstanding points, each positive except `adjusted` (signed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct MovementsView {
    /// Lots opened by purchases and referral bonuses.
    pub issued: WorthView,
    /// Points spent: redemptions and handed-over holds.
    pub redeemed: WorthView,
    /// Breakage: points that expired unspent.
    pub expired: WorthView,
    /// Points refunds took back (including later points that paid a refund's debt).
    pub reversed: WorthView,
    /// Manual adjustments, signed.
    pub adjusted: WorthView,
}

impl From<Movements> for MovementsView {
    fn from(movements: Movements) -> MovementsView {
        MovementsView {
            issued: movements.issued.into(),
            redeemed: movements.redeemed.into(),
            expired: movements.expired.into(),
            reversed: movements.reversed.into(),
            adjusted: movements.adjusted.into(),
        }
    }
}

/// The last event an answer includes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct LedgerPoint {
    /// Tenant sequence of the last event folded (0: none).
    pub sequence: i64,
    /// When it was recorded; `null` when no event was folded.
    #[schema(required = true)]
    pub recorded_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TierCount {
    /// Tier id; `null` for the ladder's base (no tier reached).
    #[schema(required = true)]
    pub tier: Option<String>,
    pub customers: u64,
}

/// `200` body of `GET /v1/books/position`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TenantPositionView {
    pub as_of: LedgerPoint,
    /// ISO 4217 code of `value_minor` amounts.
    pub currency: String,
    /// The point value in force then (minor units per point); `null` when none was set.
    #[schema(required = true)]
    pub point_value_minor: Option<i64>,
    pub events: u64,
    pub customers: u64,
    /// Σ of the customers' balances (posted points net of debt), pending, held and debt.
    pub balance: i64,
    pub pending: i64,
    pub held: i64,
    pub debt: i64,
    /// Points of open lots (pending and held included) and what they are worth: the
    /// liability.
    pub outstanding: WorthView,
    /// Movements since the ledger began.
    pub movements: MovementsView,
    pub tiers: Vec<TierCount>,
}

/// `200` body of `GET /v1/customers/{id}/position`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CustomerPositionView {
    pub as_of: LedgerPoint,
    /// The customer as the ledger had them then (personal data never shown here).
    pub customer: CustomerView,
}

/// One month of `GET /v1/books/statements`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MonthStatementView {
    /// `YYYY-MM`, in the tenant's time zone, by when events were recorded.
    pub month: String,
    pub opening: WorthView,
    pub issued: WorthView,
    pub redeemed: WorthView,
    pub expired: WorthView,
    pub reversed: WorthView,
    pub adjusted: WorthView,
    /// `opening + issued + adjusted − redeemed − expired − reversed`, exactly.
    pub closing: WorthView,
}

impl From<&MonthStatement> for MonthStatementView {
    fn from(month: &MonthStatement) -> MonthStatementView {
        MonthStatementView {
            month: month.month.clone(),
            opening: month.opening.into(),
            issued: month.issued.into(),
            redeemed: month.redeemed.into(),
            expired: month.expired.into(),
            reversed: month.reversed.into(),
            adjusted: month.adjusted.into(),
            closing: month.closing.into(),
        }
    }
}

/// `200` body of `GET /v1/books/statements` (JSON).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StatementsView {
    pub currency: String,
    /// The tenant's time zone, in which months are cut.
    pub time_zone: String,
    pub months: Vec<MonthStatementView>,
}

/// Folds the caller's ledger up to `as_of` into `fold`, a page at a time, in tenant-sequence
/// order. Returns the last event folded.
pub async fn fold_ledger(
    client: &impl tokio_postgres::GenericClient,
    tenant: TenantId,
    as_of: AsOf,
    mut fold: impl FnMut(StreamId, &ledger_core::Event, DateTime<Utc>),
) -> Result<LedgerPoint, ApiError> {
    let mut point = LedgerPoint {
        sequence: 0,
        recorded_at: None,
    };
    loop {
        let page = schema::store::read_tenant_page(client, tenant, point.sequence, PAGE_EVENTS)
            .await
            .map_err(|e| ApiError::Unavailable(format!("reading the tenant's events: {e}")))?;
        let full = page.len() as i64 == PAGE_EVENTS;
        for recorded in &page {
            // Recorded times follow the sequence closely but not exactly (two writers'
            // clocks), so a time cut-off filters instead of stopping.
            if !as_of.includes(recorded) {
                if let AsOf::Sequence(_) = as_of {
                    return Ok(point);
                }
                continue;
            }
            let stream = recorded
                .stream()
                .map_err(|e| ApiError::Internal(format!("event {}: {e}", recorded.event_id)))?;
            fold(stream, &decoded(recorded)?, recorded.recorded_at);
            point = LedgerPoint {
                sequence: recorded.tenant_sequence,
                recorded_at: Some(recorded.recorded_at),
            };
        }
        match page.last() {
            Some(last) if full => point.sequence = point.sequence.max(last.tenant_sequence),
            _ => return Ok(point),
        }
    }
}

#[utoipa::path(
    get,
    path = "/v1/books/position",
    tag = "books",
    params(
        ("as_of" = Option<String>, Query, description = "RFC 3339 time: the ledger as recorded at or before it."),
        ("sequence" = Option<i64>, Query, minimum = 0, description = "Tenant sequence: the ledger up to and including it. Give `as_of` or `sequence`, not both; neither means now."),
    ),
    responses(
        (status = 200, description = "The tenant's position then: points outstanding and their worth, balances, movements since the start, tiers. Folded from the events.", body = TenantPositionView),
        (status = 400, description = "`invalid-query` naming `as_of` or `sequence`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 403, description = "`forbidden`: owners, auditors and analysts only.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
    ),
    security(("api_key" = []), ("user_token" = []))
)]
#[tracing::instrument(name = "books_position", skip_all, fields(tenant_id = %caller.tenant_id))]
pub async fn position(
    caller: Caller,
    query: web::Query<PositionQuery>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    caller.authorize(Permission::ReadBooks)?;
    let as_of = query.parse()?;
    let mut client = state.client().await?;
    let transaction = snapshot(&mut client, caller.tenant_id).await?;
    let view = TenantPositionView::read(&transaction, caller.tenant_id, as_of).await?;
    end(transaction).await?;
    Ok(HttpResponse::Ok().json(view))
}

impl TenantPositionView {
    /// The tenant's position as of `as_of`, folded in `transaction` (the API's scoped
    /// snapshot, or the command line's platform one).
    pub async fn read(
        transaction: &deadpool_postgres::Transaction<'_>,
        tenant: TenantId,
        as_of: AsOf,
    ) -> Result<TenantPositionView, ApiError> {
        let mut books = Books::new();
        let point = fold_ledger(&**transaction, tenant, as_of, |stream, event, _| {
            books.apply(stream, event)
        })
        .await?;
        // Registration is the tenant's first event: once anything is folded, the currency
        // is in the books; only a position before it reads the stream.
        let currency = match &books.tenant.profile {
            Some(profile) => profile.currency.as_str().to_owned(),
            None => crate::history::tenant_currency(transaction, tenant).await?,
        };
        Ok(TenantPositionView::new(&books, point, currency))
    }

    fn new(books: &Books, as_of: LedgerPoint, currency: String) -> TenantPositionView {
        let position = books.position();
        let settings = books.tenant.profile.as_ref().map(|p| &p.settings);
        TenantPositionView {
            as_of,
            currency,
            point_value_minor: settings.and_then(|s| s.point_value).map(|v| v.value()),
            events: position.events,
            customers: position.customers,
            balance: position.balance,
            pending: position.pending,
            held: position.held,
            debt: position.debt,
            outstanding: position.outstanding.into(),
            movements: position.movements.into(),
            tiers: position
                .tiers
                .into_iter()
                .map(|(tier, customers)| TierCount {
                    tier: (!tier.is_empty()).then_some(tier),
                    customers,
                })
                .collect(),
        }
    }
}

#[utoipa::path(
    get,
    path = "/v1/customers/{customer_id}/position",
    tag = "books",
    params(
        ("customer_id" = uuid::Uuid, Path, description = "The customer's id. An unknown id, another tenant's customer, a malformed id and a customer not yet enrolled at that point are all 404 `customer-not-found`."),
        ("as_of" = Option<String>, Query, description = "RFC 3339 time: the ledger as recorded at or before it."),
        ("sequence" = Option<i64>, Query, minimum = 0, description = "Tenant sequence: the ledger up to and including it. Give `as_of` or `sequence`, not both; neither means now."),
    ),
    responses(
        (status = 200, description = "The customer then: balance, pending, held, debt, tier, open lots with their point value, and what they were worth. Folded from the customer's events.", body = CustomerPositionView),
        (status = 400, description = "`invalid-query` naming `as_of` or `sequence`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 403, description = "`forbidden`: owners, staff and auditors (who read the ledger).", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "`customer-not-found`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
    ),
    security(("api_key" = []), ("user_token" = []))
)]
#[tracing::instrument(name = "customer_position", skip_all, fields(tenant_id = %caller.tenant_id))]
pub async fn customer_position(
    caller: Caller,
    path: web::Path<String>,
    query: web::Query<PositionQuery>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    caller.authorize(Permission::ReadHistory)?;
    let customer_id = customer_in_path(&path)?;
    let as_of = query.parse()?;
    let mut client = state.client().await?;
    let transaction = snapshot(&mut client, caller.tenant_id).await?;
    let view =
        CustomerPositionView::read(&transaction, caller.tenant_id, customer_id, as_of).await?;
    end(transaction).await?;
    Ok(HttpResponse::Ok().json(view))
}

impl CustomerPositionView {
    /// One customer as of `as_of`; not enrolled by then (or another tenant's): not found.
    pub async fn read(
        transaction: &deadpool_postgres::Transaction<'_>,
        tenant: TenantId,
        customer_id: CustomerId,
        as_of: AsOf,
    ) -> Result<CustomerPositionView, ApiError> {
        let (state, as_of) = customer_as_of(transaction, tenant, customer_id, as_of).await?;
        let customer = view_from_state(&state).ok_or(ApiError::CustomerNotFound)?;
        Ok(CustomerPositionView { as_of, customer })
    }
}

/// One customer's state as of `as_of`, folded from their own stream only; another
/// tenant's stream is not found.
pub(crate) async fn customer_as_of(
    transaction: &deadpool_postgres::Transaction<'_>,
    tenant_id: TenantId,
    customer_id: CustomerId,
    as_of: AsOf,
) -> Result<(CustomerState, LedgerPoint), ApiError> {
    let mut state = CustomerState::default();
    let mut point = LedgerPoint {
        sequence: 0,
        recorded_at: None,
    };
    for recorded in crate::customers::whole_stream(transaction, customer_id).await? {
        // Row-level security hides other tenants' rows; this is the belt to its braces.
        if recorded.tenant_id != tenant_id {
            return Err(ApiError::CustomerNotFound);
        }
        if !as_of.includes(&recorded) {
            continue;
        }
        state.apply(&decoded(&recorded)?);
        point = LedgerPoint {
            sequence: recorded.tenant_sequence,
            recorded_at: Some(recorded.recorded_at),
        };
    }
    Ok((state, point))
}

#[derive(Debug, Deserialize)]
pub struct StatementQuery {
    from: Option<String>,
    to: Option<String>,
    format: Option<String>,
}

/// A statement request, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementRequest {
    /// First and last month (`YYYY-MM`), both included; `None`: from the first event's
    /// month, through the current month.
    pub from: Option<String>,
    pub to: Option<String>,
    pub csv: bool,
}

fn parse_month(parameter: &str, raw: &str) -> Result<String, ApiError> {
    NaiveDate::parse_from_str(&format!("{raw}-01"), "%Y-%m-%d")
        .ok()
        .filter(|_| raw.len() == 7)
        .map(|_| raw.to_owned())
        .ok_or_else(|| ApiError::InvalidQuery {
            parameter: parameter.into(),
            detail: format!("{parameter} must be a month written YYYY-MM"),
        })
}

impl StatementQuery {
    /// The query a command line gives (`format` is csv or json).
    pub fn new(from: Option<String>, to: Option<String>, csv: bool) -> StatementQuery {
        StatementQuery {
            from,
            to,
            format: Some(if csv { "csv" } else { "json" }.to_owned()),
        }
    }

    pub fn parse(&self) -> Result<StatementRequest, ApiError> {
        let from = self
            .from
            .as_deref()
            .map(|raw| parse_month("from", raw))
            .transpose()?;
        let to = self
            .to
            .as_deref()
            .map(|raw| parse_month("to", raw))
            .transpose()?;
        if let (Some(from), Some(to)) = (&from, &to) {
            if from > to {
                return Err(ApiError::InvalidQuery {
                    parameter: "to".into(),
                    detail: "to must not be before from".into(),
                });
            }
        }
        let csv = match self.format.as_deref() {
            None | Some("json") => false,
            Some("csv") => true,
            Some(_) => {
                return Err(ApiError::InvalidQuery {
                    parameter: "format".into(),
                    detail: "format must be json or csv".into(),
                })
            }
        };
        Ok(StatementRequest { from, to, csv })
    }
}

#[utoipa::path(
    get,
    path = "/v1/books/statements",
    tag = "books",
    params(
        ("from" = Option<String>, Query, description = "First month, `YYYY-MM` (default: the month of the first event)."),
        ("to" = Option<String>, Query, description = "Last month, `YYYY-MM` (default: this month). At most 120 months are returned, the latest ones."),
        ("format" = Option<String>, Query, description = "`json` (default) or `csv`."),
    ),
    responses(
        (status = 200, description = "Monthly liability statements in the tenant's time zone: opening, issued, redeemed, expired (breakage), reversed, adjusted and closing, in points and money; each closing = opening + movements, and each opening = the last closing. As CSV (`text/csv`, one row per month, header first) with `format=csv`.", body = StatementsView),
        (status = 400, description = "`invalid-query` naming `from`, `to` or `format`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 403, description = "`forbidden`: owners, auditors and analysts only.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
    ),
    security(("api_key" = []), ("user_token" = []))
)]
#[tracing::instrument(name = "books_statements", skip_all, fields(tenant_id = %caller.tenant_id))]
pub async fn statements(
    caller: Caller,
    query: web::Query<StatementQuery>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    caller.authorize(Permission::ReadBooks)?;
    let request = query.parse()?;
    let mut client = state.client().await?;
    let transaction = snapshot(&mut client, caller.tenant_id).await?;
    let statements = Statements::read(&transaction, caller.tenant_id, &request)
        .await?
        .ok_or_else(|| ApiError::Internal("an authenticated tenant without a profile".into()))?;
    end(transaction).await?;
    if request.csv {
        return Ok(HttpResponse::Ok()
            .content_type("text/csv; charset=utf-8")
            .body(statements.csv()));
    }
    Ok(HttpResponse::Ok().json(statements.view()))
}

/// The months a statement request selects, with the tenant's currency and time zone.
pub struct Statements {
    pub currency: String,
    pub time_zone: chrono_tz::Tz,
    pub months: Vec<MonthStatement>,
}

impl Statements {
    /// Folds the tenant's ledger in `transaction` into the months `request` selects; `None`
    /// when there is no such tenant.
    pub async fn read(
        transaction: &deadpool_postgres::Transaction<'_>,
        tenant: TenantId,
        request: &StatementRequest,
    ) -> Result<Option<Statements>, ApiError> {
        // Months are cut as events come, so the time zone is read first.
        let Some(profile) = crate::read_tenant(transaction, tenant).await?.profile else {
            return Ok(None);
        };
        let time_zone = profile.time_zone();
        let months = monthly_statements(&**transaction, tenant, time_zone).await?;
        Ok(Some(Statements {
            currency: profile.currency.as_str().to_owned(),
            time_zone,
            months: select_months(months, request),
        }))
    }

    pub fn csv(&self) -> String {
        statement_csv(&self.currency, &self.months)
    }

    pub fn view(&self) -> StatementsView {
        StatementsView {
            currency: self.currency.clone(),
            time_zone: self.time_zone.name().to_owned(),
            months: self.months.iter().map(MonthStatementView::from).collect(),
        }
    }
}

/// Every month of the tenant's ledger through the current one.
async fn monthly_statements(
    client: &impl tokio_postgres::GenericClient,
    tenant: TenantId,
    time_zone: chrono_tz::Tz,
) -> Result<Vec<MonthStatement>, ApiError> {
    let mut builder = StatementBuilder::new(time_zone);
    fold_ledger(client, tenant, AsOf::Now, |stream, event, at| {
        builder.apply(stream, event, at)
    })
    .await?;
    Ok(builder.finish(Utc::now()).0)
}

/// The requested months, the latest [`STATEMENT_MONTHS_MAX`] of them.
fn select_months(months: Vec<MonthStatement>, request: &StatementRequest) -> Vec<MonthStatement> {
    let mut selected: Vec<MonthStatement> = months
        .into_iter()
        .filter(|m| {
            request
                .from
                .as_deref()
                .is_none_or(|from| m.month.as_str() >= from)
        })
        .filter(|m| {
            request
                .to
                .as_deref()
                .is_none_or(|to| m.month.as_str() <= to)
        })
        .collect();
    let excess = selected.len().saturating_sub(STATEMENT_MONTHS_MAX);
    selected.drain(..excess);
    selected
}

/// The CSV columns: the month, the currency, then points, value and unvalued points of each
/// figure in statement order.
pub fn statement_csv(currency: &str, months: &[MonthStatement]) -> String {
    const FIGURES: [&str; 7] = [
        "opening", "issued", "redeemed", "expired", "reversed", "adjusted", "closing",
    ];
    let mut csv = String::from("month,currency");
    for figure in FIGURES {
        csv.push_str(&format!(
            ",{figure}_points,{figure}_value_minor,{figure}_unvalued_points"
        ));
    }
    csv.push_str("\r\n");
    for month in months {
        csv.push_str(&format!("{},{currency}", month.month));
        for worth in [
            month.opening,
            month.issued,
            month.redeemed,
            month.expired,
            month.reversed,
            month.adjusted,
            month.closing,
        ] {
            csv.push_str(&format!(
                ",{},{},{}",
                worth.points, worth.minor, worth.unvalued_points
            ));
        }
        csv.push_str("\r\n");
    }
    csv
}

async fn snapshot(
    client: &mut deadpool_postgres::Client,
    tenant: TenantId,
) -> Result<deadpool_postgres::Transaction<'_>, ApiError> {
    schema::tenancy::begin_read_only_snapshot(client, tenant)
        .await
        .map_err(|e| ApiError::Unavailable(format!("beginning a snapshot of the ledger: {e}")))
}

async fn end(transaction: deadpool_postgres::Transaction<'_>) -> Result<(), ApiError> {
    transaction
        .commit()
        .await
        .map_err(|e| ApiError::Unavailable(format!("ending the snapshot: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position(as_of: Option<&str>, sequence: Option<&str>) -> Result<AsOf, ApiError> {
        PositionQuery {
            as_of: as_of.map(str::to_owned),
            sequence: sequence.map(str::to_owned),
        }
        .parse()
    }

    fn statement(
        from: Option<&str>,
        to: Option<&str>,
        format: Option<&str>,
    ) -> Result<StatementRequest, ApiError> {
        StatementQuery {
            from: from.map(str::to_owned),
            to: to.map(str::to_owned),
            format: format.map(str::to_owned),
        }
        .parse()
    }

    fn parameter(result: Result<impl std::fmt::Debug, ApiError>) -> String {
        match result {
            Err(ApiError::InvalidQuery { parameter, .. }) => parameter,
            other => panic!("expected invalid-query, got {other:?}"),
        }
    }

    #[test]
    fn a_position_is_as_of_a_time_a_sequence_or_now() {
        assert_eq!(position(None, None).unwrap(), AsOf::Now);
        assert_eq!(position(None, Some("0")).unwrap(), AsOf::Sequence(0));
        assert_eq!(
            position(Some("2026-11-30T23:00:00+01:00"), None).unwrap(),
            AsOf::Time("2026-11-30T22:00:00Z".parse().unwrap())
        );
        assert_eq!(parameter(position(Some("2026-11-30"), None)), "as_of");
        assert_eq!(parameter(position(Some("yesterday"), None)), "as_of");
        assert_eq!(parameter(position(None, Some("-1"))), "sequence");
        assert_eq!(parameter(position(None, Some("1.5"))), "sequence");
        assert_eq!(
            parameter(position(None, Some("99999999999999999999"))),
            "sequence"
        );
        assert_eq!(
            parameter(position(Some("2026-11-30T23:00:00Z"), Some("4"))),
            "sequence"
        );
    }

    #[test]
    fn statement_months_are_checked() {
        assert_eq!(
            statement(Some("2026-01"), Some("2026-03"), Some("csv")).unwrap(),
            StatementRequest {
                from: Some("2026-01".into()),
                to: Some("2026-03".into()),
                csv: true
            }
        );
        assert!(!statement(None, None, None).unwrap().csv);
        assert_eq!(parameter(statement(Some("2026-13"), None, None)), "from");
        assert_eq!(parameter(statement(Some("2026-1"), None, None)), "from");
        assert_eq!(parameter(statement(None, Some("26-01"), None)), "to");
        assert_eq!(
            parameter(statement(Some("2026-04"), Some("2026-03"), None)),
            "to"
        );
        assert_eq!(parameter(statement(None, None, Some("xml"))), "format");
    }

    #[test]
    fn the_csv_has_a_header_and_one_row_per_month() {
        let worth = |points, minor| Worth {
            points,
            minor,
            unvalued_points: 0,
        };
        let month = MonthStatement {
            month: "2026-03".into(),
            opening: worth(150, 2_000),
            issued: Worth::default(),
            redeemed: worth(30, 300),
            expired: worth(70, 700),
            reversed: worth(10, 200),
            adjusted: Worth {
                points: 5,
                minor: 0,
                unvalued_points: 5,
            },
            closing: Worth {
                points: 45,
                minor: 800,
                unvalued_points: 5,
            },
        };
        let csv = statement_csv("NGN", &[month]);
        let lines: Vec<&str> = csv.split("\r\n").collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("month,currency,opening_points,opening_value_minor,"));
        assert_eq!(lines[0].split(',').count(), 2 + 7 * 3);
        assert_eq!(
            lines[1],
            "2026-03,NGN,150,2000,0,0,0,0,30,300,0,70,700,0,10,200,0,5,0,5,45,800,5"
        );
        assert_eq!(lines[2], "");
    }
}
