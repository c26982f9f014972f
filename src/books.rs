//! `loyalty books position|statement`: the answers of `/v1/books/*` for any tenant, read
//! as the platform role in one REPEATABLE READ, READ ONLY snapshot (docs/BOOKS.md). The
//! folds and the views are the API's own, so the command line and the API cannot disagree.

use anyhow::Context;
use chrono::{DateTime, Utc};
use ledger_api::books::{self, AsOf, CustomerPositionView, TenantPositionView};
use ledger_core::books::Books;
use ledger_core::{CustomerId, TenantId};

/// Where a command line asks the ledger to stop.
pub fn as_of(at: Option<DateTime<Utc>>, sequence: Option<i64>) -> anyhow::Result<AsOf> {
    match (at, sequence) {
        (Some(_), Some(_)) => anyhow::bail!("give --as-of or --sequence, not both"),
        (Some(at), None) => Ok(AsOf::Time(at)),
        (None, Some(sequence)) if sequence >= 0 => Ok(AsOf::Sequence(sequence)),
        (None, Some(sequence)) => anyhow::bail!("--sequence {sequence}: must be ≥ 0"),
        (None, None) => Ok(AsOf::Now),
    }
}

async fn snapshot(
    client: &mut deadpool_postgres::Object,
) -> anyhow::Result<deadpool_postgres::Transaction<'_>> {
    client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .context("beginning a snapshot of the ledger")
}

fn api_error(error: ledger_api::problem::ApiError) -> anyhow::Error {
    anyhow::anyhow!("{error}")
}

/// The whole tenant's position, as JSON.
pub async fn tenant_position(
    platform_pool: &schema::Pool,
    tenant: TenantId,
    as_of: AsOf,
) -> anyhow::Result<TenantPositionView> {
    let mut client = platform_pool.get().await?;
    let transaction = snapshot(&mut client).await?;
    let mut ledger = Books::new();
    let point = books::fold_ledger(&*transaction, tenant, as_of, |stream, event, _| {
        ledger.apply(stream, event)
    })
    .await
    .map_err(api_error)?;
    anyhow::ensure!(ledger.tenant.profile.is_some(), "no such tenant: {tenant}");
    let currency = ledger_api::history::tenant_currency(&transaction, tenant)
        .await
        .map_err(api_error)?;
    transaction.commit().await?;
    Ok(TenantPositionView::new(&ledger, point, currency))
}

/// One customer's position, as JSON.
pub async fn customer_position(
    platform_pool: &schema::Pool,
    tenant: TenantId,
    customer: CustomerId,
    as_of: AsOf,
) -> anyhow::Result<CustomerPositionView> {
    let mut client = platform_pool.get().await?;
    let transaction = snapshot(&mut client).await?;
    let (state, point) = books::customer_as_of(&transaction, tenant, customer, as_of)
        .await
        .map_err(api_error)?;
    transaction.commit().await?;
    let customer = ledger_api::customers::view_from_state(&state)
        .with_context(|| format!("no customer {customer} of tenant {tenant} at that point"))?;
    Ok(CustomerPositionView {
        as_of: point,
        customer,
    })
}

/// The tenant's monthly statements from `from` through `to` (`YYYY-MM`, both optional), as
/// CSV or JSON text.
pub async fn statements(
    platform_pool: &schema::Pool,
    tenant: TenantId,
    from: Option<String>,
    to: Option<String>,
    csv: bool,
) -> anyhow::Result<String> {
    let request = books::StatementQuery::new(from, to, csv)
        .parse()
        .map_err(api_error)?;
    let mut client = platform_pool.get().await?;
    let transaction = snapshot(&mut client).await?;
    let tenant_state = schema::rewards::tenant_state(&*transaction, tenant).await?;
    let profile = tenant_state
        .profile
        .with_context(|| format!("no such tenant: {tenant}"))?;
    let time_zone = profile.time_zone();
    let months = books::monthly_statements(&*transaction, tenant, time_zone)
        .await
        .map_err(api_error)?;
    transaction.commit().await?;
    let months = books::select_months(months, &request);
    let currency = profile.currency.as_str();
    if request.csv {
        return Ok(books::statement_csv(currency, &months));
    }
    Ok(serde_json::to_string_pretty(&books::StatementsView {
        currency: currency.to_owned(),
        time_zone: time_zone.name().to_owned(),
        months: months.iter().map(books::MonthStatementView::from).collect(),
    })?)
}
