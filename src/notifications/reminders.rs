//! Expiry reminders: one message per lot, some days before the lot expires.
//!
//! The job reads open lots (`projection.point_lots`, `remaining > 0`) expiring within
//! `days_ahead` of `at`, of customers with a `whatsapp_members` row, and for each lot not yet
//! in `whatsapp_expiry_reminders` queues "N points at SHOP expire on DATE" (dedupe key
//! `reminder:<lot id>`) and records the lot, in one transaction. A lot is therefore reminded
//! once however often the job runs (every run after the first finds it recorded), and one
//! runner works at a time: the run holds a transaction-level advisory lock and a second
//! runner that cannot take it skips its turn.
//!
//! The lots come from the balances read model, which may lag the ledger by the projector's
//! delay: a lot spent a moment ago may still be reminded with its old remainder. The
//! reminder says "send POINTS", whose answer is read from the ledger itself.

use super::{members, queue, Queued, VendorNames};
use chrono::{DateTime, Utc};
use ledger_core::{CustomerId, Points, TenantId};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;
use vault::Vault;

/// Advisory-lock key of the reminder run (one runner at a time).
const LOCK_KEY: i64 = 7_319_006;
/// Lots handled per run at most; the rest are found by the next run.
const LOTS_PER_RUN_MAX: i64 = 10_000;

#[derive(Debug, Clone)]
pub struct ReminderSettings {
    /// Remind this many days before a lot expires.
    pub days_ahead: u32,
    /// How often `loyalty all` runs the job.
    pub interval: Duration,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReminderReport {
    /// Lots due and not reminded before.
    pub lots_due: u64,
    /// Reminders queued by this run.
    pub queued: u64,
}

/// One run as of `at`. `None` when another runner holds the lock (nothing was done).
pub async fn run_once(
    platform_pool: &schema::Pool,
    vault: &Vault,
    at: DateTime<Utc>,
    days_ahead: u32,
) -> anyhow::Result<Option<ReminderReport>> {
    let mut client = platform_pool.get().await?;
    let transaction = client.transaction().await?;
    let locked: bool = transaction
        .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await?
        .get(0);
    if !locked {
        return Ok(None);
    }
    let horizon = at + chrono::Duration::days(i64::from(days_ahead));
    let due = transaction
        .query(
            "SELECT l.tenant_id, l.customer_id, l.lot_id, l.remaining, l.expires_at \
             FROM projection.point_lots l \
             JOIN whatsapp_members m \
               ON m.tenant_id = l.tenant_id AND m.customer_id = l.customer_id \
             WHERE l.remaining > 0 AND l.expires_at > $1 AND l.expires_at <= $2 \
               AND NOT EXISTS (SELECT 1 FROM whatsapp_expiry_reminders r \
                               WHERE r.customer_id = l.customer_id AND r.lot_id = l.lot_id) \
             ORDER BY l.expires_at LIMIT $3",
            &[&at, &horizon, &LOTS_PER_RUN_MAX],
        )
        .await?;
    let mut report = ReminderReport {
        lots_due: due.len() as u64,
        queued: 0,
    };
    let customers: Vec<(TenantId, CustomerId)> = due
        .iter()
        .map(|row| {
            (
                TenantId::from_uuid(row.get(0)),
                CustomerId::from_uuid(row.get(1)),
            )
        })
        .collect();
    let members = members(&*transaction, &customers).await?;
    let mut vendor_names = VendorNames::default();
    for (row, (tenant, customer)) in due.iter().zip(customers) {
        let lot_id: Uuid = row.get(2);
        let remaining = Points::new(row.get(3));
        let expires_at: DateTime<Utc> = row.get(4);
        let Some(member) = members.get(&(tenant, customer)) else {
            continue;
        };
        let vendor = vendor_names.get(&*transaction, tenant).await?;
        let body = ledger_core::conversation::render::render_expiry_reminder(
            remaining,
            &vendor,
            expires_at.date_naive(),
        );
        let dedupe_key = format!("reminder:{lot_id}");
        let queued = queue(&*transaction, vault, &dedupe_key, tenant, member, &body).await?;
        if queued == Queued::Skipped {
            continue;
        }
        if matches!(queued, Queued::New(_)) {
            report.queued += 1;
        }
        transaction
            .execute(
                "INSERT INTO whatsapp_expiry_reminders (customer_id, lot_id, tenant_id, expires_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                &[&customer.as_uuid(), &lot_id, &tenant.as_uuid(), &expires_at],
            )
            .await?;
    }
    if report.queued > 0 {
        // Wakes the notifier when the reminders commit.
        transaction
            .execute(schema::wake::NOTIFY_OUTBOX_SQL, &[])
            .await?;
    }
    transaction.commit().await?;
    Ok(Some(report))
}

/// Runs the reminders every `settings.interval` until shutdown, starting now.
pub async fn schedule(
    platform_pool: schema::Pool,
    vault: Arc<Vault>,
    settings: ReminderSettings,
    mut shutdown: projections::Shutdown,
) {
    let mut ticker = tokio::time::interval(settings.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = projections::stopped(&mut shutdown) => return,
        }
        match run_once(&platform_pool, &vault, Utc::now(), settings.days_ahead).await {
            Ok(Some(report)) => tracing::info!(?report, "expiry reminders queued"),
            Ok(None) => tracing::debug!("expiry reminders: another runner has the turn"),
            Err(error) => {
                tracing::warn!(%error, "expiry reminders failed; will retry at the next tick")
            }
        }
    }
}
