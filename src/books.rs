//! `loyalty books position|statement`: the answers of `/v1/books/*` for any tenant, read
//! as the platform role in one REPEATABLE READ, READ ONLY snapshot (docs/BOOKS.md). The
//! reads are the API's own (`ledger_api::books`), so the command line and the API cannot
//! disagree.

use anyhow::Context;
use chrono::{DateTime, Utc};
use ledger_api::books::{
    AsOf, CustomerPositionView, StatementQuery, Statements, TenantPositionView,
};
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

/// The whole tenant's position.
pub async fn tenant_position(
    platform_pool: &schema::Pool,
    tenant: TenantId,
    as_of: AsOf,
) -> anyhow::Result<TenantPositionView> {
    let mut client = platform_pool.get().await?;
    let transaction = snapshot(&mut client).await?;
    let view = TenantPositionView::read(&transaction, tenant, as_of)
        .await
        .map_err(api_error)?;
    transaction.commit().await?;
    // Every registered tenant has a currency, even before its first event.
    anyhow::ensure!(!view.currency.is_empty(), "no such tenant: {tenant}");
    Ok(view)
}

/// One customer's position.
pub async fn customer_position(
    platform_pool: &schema::Pool,
    tenant: TenantId,
    customer: CustomerId,
    as_of: AsOf,
) -> anyhow::Result<CustomerPositionView> {
    let mut client = platform_pool.get().await?;
    let transaction = snapshot(&mut client).await?;
    let view = CustomerPositionView::read(&transaction, tenant, customer, as_of)
        .await
        .map_err(|e| {
            api_error(e).context(format!(
                "customer {customer} of tenant {tenant} at that point"
            ))
        })?;
    transaction.commit().await?;
    Ok(view)
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
    let request = StatementQuery::new(from, to, csv)
        .parse()
        .map_err(api_error)?;
    let mut client = platform_pool.get().await?;
    let transaction = snapshot(&mut client).await?;
    let statements = Statements::read(&transaction, tenant, &request)
        .await
        .map_err(api_error)?
        .with_context(|| format!("no such tenant: {tenant}"))?;
    transaction.commit().await?;
    if request.csv {
        return Ok(statements.csv());
    }
    Ok(serde_json::to_string_pretty(&statements.view())?)
}
