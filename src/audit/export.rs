//! `loyalty audit export`: a tenant's whole ledger as JSON Lines (docs/AUDIT.md), read as
//! the platform role (policy `platform_reads_all`) a page at a time inside one REPEATABLE
//! READ transaction, so the file is one consistent snapshot and memory stays bounded.

use super::verify::{EventLine, Header, SignedHeadLine, Trailer, FORMAT, FORMAT_VERSION};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use chrono::{DateTime, Utc};
use ledger_core::TenantId;
use schema::store::RecordedEvent;
use std::io::Write;
use uuid::Uuid;

/// Events read per query.
pub const PAGE_SIZE: i64 = 1_000;

/// What an export wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exported {
    pub events: u64,
    /// The signed head's sequence, if any.
    pub signed_sequence: Option<u64>,
}

pub fn event_line(event: &RecordedEvent) -> EventLine {
    EventLine {
        event_id: event.event_id.as_uuid(),
        tenant_sequence: u64::try_from(event.tenant_sequence).unwrap_or(0),
        stream_id: event.stream_id.clone(),
        version: u32::try_from(event.version).unwrap_or(0),
        event_type: event.event_type.clone(),
        type_version: u16::try_from(event.type_version).unwrap_or(0),
        recorded_at_micros: event.recorded_at.timestamp_micros(),
        metadata: BASE64.encode(&event.metadata),
        payload: BASE64.encode(&event.payload),
        previous_hash: hex::encode(event.previous_hash),
        hash: hex::encode(event.hash),
    }
}

fn write_line(out: &mut impl Write, value: &impl serde::Serialize) -> anyhow::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    out.write_all(b"\n")?;
    Ok(())
}

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
    write_line(
        out,
        &Header {
            format: FORMAT.into(),
            version: FORMAT_VERSION,
            tenant_id: tenant.as_uuid(),
        },
    )?;
    let mut after = 0i64;
    loop {
        let page = schema::store::read_tenant_page(&*transaction, tenant, after, page_size).await?;
        for event in &page {
            write_line(out, &event_line(event))?;
        }
        match page.last() {
            Some(last) if page.len() as i64 == page_size => after = last.tenant_sequence,
            Some(last) => {
                after = last.tenant_sequence;
                break;
            }
            None => break,
        }
    }
    let head = transaction
        .query_opt(
            "SELECT sequence, head_hash, signed_at, key_id, signature FROM signed_chain_heads \
             WHERE tenant_id = $1 ORDER BY sequence DESC LIMIT 1",
            &[&tenant.as_uuid()],
        )
        .await?;
    let signed_head = match head {
        None => None,
        Some(row) => {
            let sequence: i64 = row.try_get(0)?;
            let hash: Vec<u8> = row.try_get(1)?;
            let signed_at: DateTime<Utc> = row.try_get(2)?;
            let signature: Vec<u8> = row.try_get(4)?;
            Some(SignedHeadLine {
                tenant_id: tenant.as_uuid(),
                sequence: u64::try_from(sequence)?,
                head_hash: hex::encode(hash),
                signed_at_micros: signed_at.timestamp_micros(),
                key_id: row.try_get(3)?,
                signature: BASE64.encode(signature),
            })
        }
    };
    transaction.commit().await?;
    let exported = Exported {
        events: u64::try_from(after)?,
        signed_sequence: signed_head.as_ref().map(|h| h.sequence),
    };
    write_line(
        out,
        &Trailer {
            events: exported.events,
            signed_head,
        },
    )?;
    out.flush()?;
    Ok(exported)
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
