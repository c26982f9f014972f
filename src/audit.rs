//! Signed chain heads (issue #6, item 1): every tenant whose chain grew since its last
//! signature gets its head — `(tenant, sequence, hash, signed_at)` — signed with the
//! platform's Ed25519 audit key (`vault::audit`) and stored in `signed_chain_heads`.
//!
//! One runner at a time (advisory transaction lock [`LOCK_KEY`]; another instance skips its
//! turn) and idempotent: a head already signed is not signed again (the run selects heads
//! past the last signed sequence, and the primary key `(tenant, sequence)` refuses a second
//! row anyway). The head is read from `tenant_heads`, which the writer moves in the
//! transaction of each append, so a signed head always names a committed event.

pub mod export;
pub mod verify;

use chrono::{DateTime, Utc};
use ledger_core::chain::signed_head_message;
use ledger_core::TenantId;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;
use vault::audit::AuditSigningKey;

/// Advisory-lock key of the signing run.
pub const LOCK_KEY: i64 = 7_319_013;
/// Tenants signed per run at most; the rest are signed by the next run.
const TENANTS_PER_RUN_MAX: i64 = 10_000;

/// One run as of `at`: the number of heads signed, or `None` when another runner holds the
/// lock.
pub async fn run_once(
    platform_pool: &schema::Pool,
    key: &AuditSigningKey,
    at: DateTime<Utc>,
) -> anyhow::Result<Option<u64>> {
    let mut client = platform_pool.get().await?;
    let transaction = client.transaction().await?;
    let locked: bool = transaction
        .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await?
        .get(0);
    if !locked {
        return Ok(None);
    }
    let heads = transaction
        .query(
            "SELECT h.tenant_id, h.sequence, h.head_hash FROM tenant_heads h \
             WHERE h.sequence > coalesce((SELECT max(s.sequence) FROM signed_chain_heads s \
                                           WHERE s.tenant_id = h.tenant_id), 0) \
             ORDER BY h.tenant_id LIMIT $1",
            &[&TENANTS_PER_RUN_MAX],
        )
        .await?;
    // Microseconds, as stored: the signed time must read back exactly.
    let signed_at = DateTime::<Utc>::from_timestamp_micros(at.timestamp_micros()).unwrap_or(at);
    let (mut tenants, mut sequences, mut hashes, mut signatures) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for row in &heads {
        let tenant: Uuid = row.try_get(0)?;
        let sequence: i64 = row.try_get(1)?;
        let hash: Vec<u8> = row.try_get(2)?;
        let head: [u8; 32] = hash
            .as_slice()
            .try_into()
            .map_err(|_| anyhow::anyhow!("tenant {tenant}: a head hash of {} bytes", hash.len()))?;
        let message = signed_head_message(
            TenantId::from_uuid(tenant),
            u64::try_from(sequence)?,
            &head,
            signed_at.timestamp_micros(),
        );
        tenants.push(tenant);
        sequences.push(sequence);
        hashes.push(hash);
        signatures.push(key.sign(&message).to_vec());
    }
    let signed = transaction
        .execute(
            "INSERT INTO signed_chain_heads \
                 (tenant_id, sequence, head_hash, signed_at, key_id, signature) \
             SELECT t, s, h, $5, $6, g \
             FROM unnest($1::uuid[], $2::bigint[], $3::bytea[], $4::bytea[]) AS n(t, s, h, g) \
             ON CONFLICT DO NOTHING",
            &[
                &tenants,
                &sequences,
                &hashes,
                &signatures,
                &signed_at,
                &key.key_id(),
            ],
        )
        .await?;
    transaction.commit().await?;
    Ok(Some(signed))
}

/// Signs every `interval` until shutdown, starting now.
pub async fn schedule(
    platform_pool: schema::Pool,
    key: Arc<AuditSigningKey>,
    interval: Duration,
    mut shutdown: projections::Shutdown,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = projections::stopped(&mut shutdown) => return,
        }
        match run_once(&platform_pool, &key, Utc::now()).await {
            Ok(Some(signed)) if signed > 0 => tracing::info!(signed, "chain heads signed"),
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, "signing chain heads failed; will retry at the next tick")
            }
        }
    }
}
