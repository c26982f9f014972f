//! The tenant scope of a transaction: which tenants' rows `loyalty_app` may see and write.
//!
//! Every tenant-owned table has a row-level-security policy admitting only rows whose
//! `tenant_id` is in `tenancy.current_tenants()`, read from the transaction-local setting
//! `loyalty.tenant_ids`. The scope is set with `set_config(..., true)`, so it ends with the
//! transaction and can never leak to the next user of a pooled connection; a statement run
//! outside a scoped transaction sees no tenant's rows at all.

use deadpool_postgres::GenericClient;
use ledger_core::TenantId;

/// The transaction-local setting the policies read.
pub const TENANTS_SETTING: &str = "loyalty.tenant_ids";

/// Scopes the current transaction to `tenants`. Must run inside a transaction: outside one,
/// `set_config(..., true)` lasts only for this statement and the scope would be empty.
pub async fn set_scope(
    transaction: &impl GenericClient,
    tenants: &[TenantId],
) -> Result<(), tokio_postgres::Error> {
    let joined = tenants
        .iter()
        .map(|t| t.as_uuid().to_string())
        .collect::<Vec<_>>()
        .join(",");
    let statement = transaction
        .prepare_cached("SELECT set_config('loyalty.tenant_ids', $1, true)")
        .await?;
    transaction.execute(&statement, &[&joined]).await?;
    Ok(())
}

/// Begins a transaction scoped to one tenant: the way every tenant-facing read and write
/// outside the group-commit writer starts.
pub async fn begin(
    client: &mut deadpool_postgres::Client,
    tenant: TenantId,
) -> Result<deadpool_postgres::Transaction<'_>, tokio_postgres::Error> {
    let transaction = client.transaction().await?;
    set_scope(&transaction, &[tenant]).await?;
    Ok(transaction)
}

/// Begins a `REPEATABLE READ, READ ONLY` transaction scoped to one tenant: one snapshot
/// for every page of a long read (a dry-run), and no way for it to write.
pub async fn begin_read_only_snapshot(
    client: &mut deadpool_postgres::Client,
    tenant: TenantId,
) -> Result<deadpool_postgres::Transaction<'_>, tokio_postgres::Error> {
    let transaction = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    set_scope(&transaction, &[tenant]).await?;
    Ok(transaction)
}
