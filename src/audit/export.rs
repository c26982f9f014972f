//! `loyalty audit export`: a tenant's whole ledger as JSON Lines (docs/AUDIT.md), read as
//! the platform role (policy `platform_reads_all`) a page at a time inside one REPEATABLE
//! READ transaction, so the file is one consistent snapshot and memory stays bounded. The
//! lines are written by `schema::audit::ExportCursor`, which the API's
//! `GET /v1/audit/export` shares.

use ledger_core::TenantId;
use std::io::Write;
use uuid::Uuid;

pub use schema::audit::{event_line, Exported, PAGE_SIZE};

/// Writes tenant `tenant`'s export to `out`, [`PAGE_SIZE`] events per query.
pub async fn export(
    platform_pool: &schema::Pool,
    tenant: TenantId,
    out: &mut impl Write,
) -> anyhow::Result<Exported> {
    export_paged(platform_pool, tenant, out, PAGE_SIZE).await
}

/// [`export`] with `page_size` events per query (tests use small pages).
pub async fn export_paged(
    platform_pool: &schema::Pool,
    tenant: TenantId,
    out: &mut impl Write,
    page_size: i64,
) -> anyhow::Result<Exported> {
    anyhow::ensure!(page_size > 0, "page size {page_size}");
    let mut client = platform_pool.get().await?;
    let transaction = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let mut cursor = schema::audit::ExportCursor::new(tenant, page_size);
    while let Some(chunk) = cursor.next_chunk(&*transaction).await? {
        out.write_all(&chunk)?;
    }
    transaction.commit().await?;
    out.flush()?;
    Ok(cursor.exported())
}

/// Whether a tenant exists (so a mistyped id is an error, not an empty export).
pub async fn tenant_exists(platform_pool: &schema::Pool, tenant: Uuid) -> anyhow::Result<bool> {
    let client = platform_pool.get().await?;
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM tenant_heads WHERE tenant_id = $1)",
            &[&tenant],
        )
        .await?;
    Ok(row.get(0))
}
