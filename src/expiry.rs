//! The scheduled run of the ledger's due work, per customer, in this order:
//!
//! 1. `ExpireHolds`: reward holds not fulfilled within the tenant's window are released;
//! 2. `ActivatePendingPoints`: pending lots whose return window has passed join the balance;
//! 3. `ExpirePoints`: what is free of every lot past its date expires;
//! 4. `ReviewTier`: a tier whose review date (plus grace) has passed is kept or lowered.
//!
//! Releasing first frees held points, so a lot past its date whose hold just lapsed expires
//! in the same run; activating before expiring keeps a lot that was pending when it reached
//! its date from waiting a run.
//!
//! Candidates come from the balances read model (`projections::balances::due_customers`);
//! the decisions are the ledger's own, through the writer, and each finds nothing to do when
//! its work is already done: running twice, two instances at once, or a lagging read model
//! changes nothing twice. On top of that one runner works at a time: the run holds a
//! transaction-level advisory lock ([`LOCK_KEY`]) for its duration, and an instance that
//! cannot take it skips its turn (`run_once` answers `None`). See docs/SCHEDULING.md.

use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use ledger_core::events::{Actor, EventMetadata};
use ledger_core::{Command, CustomerId, Event, TenantId};
use schema::writer::{Outcome, Submission, WriterHandle};
use std::time::Duration;
use uuid::Uuid;

/// Advisory-lock key of the run (one runner at a time across instances).
pub const LOCK_KEY: i64 = 7_319_007;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ExpiryReport {
    pub customers_checked: u64,
    pub holds_released: u64,
    pub lots_activated: u64,
    pub lots_expired: u64,
    /// Tier reviews decided (kept or lowered).
    pub tiers_reviewed: u64,
    pub points_expired: i64,
}

/// Customers handed to the writer at once: enough to fill group-commit batches.
const CONCURRENT_CUSTOMERS_MAX: usize = 256;
const PAGE: i64 = 1_000;

/// One run as of `at`; `None` when another runner holds the lock (nothing was done).
pub async fn run_once(
    pool: &schema::Pool,
    writer: &WriterHandle,
    at: DateTime<Utc>,
) -> anyhow::Result<Option<ExpiryReport>> {
    let mut lock_client = pool.get().await?;
    let lock = lock_client.transaction().await?;
    let locked: bool = lock
        .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await?
        .get(0);
    if !locked {
        return Ok(None);
    }
    let correlation_id = Uuid::now_v7();
    let mut report = ExpiryReport::default();
    let mut after = Uuid::nil();
    loop {
        let due = {
            let client = pool.get().await?;
            projections::balances::due_customers(&**client, at, after, PAGE).await?
        };
        let Some(&(_, last)) = due.last() else {
            break;
        };
        after = last;
        for chunk in due.chunks(CONCURRENT_CUSTOMERS_MAX) {
            let runs = chunk.iter().map(|(tenant, customer)| {
                customer_due_work(
                    writer,
                    TenantId::from_uuid(*tenant),
                    CustomerId::from_uuid(*customer),
                    at,
                    correlation_id,
                )
            });
            for outcome in join_all(runs).await {
                let customer = outcome?;
                report.customers_checked += 1;
                report.holds_released += customer.holds_released;
                report.lots_activated += customer.lots_activated;
                report.lots_expired += customer.lots_expired;
                report.tiers_reviewed += customer.tiers_reviewed;
                report.points_expired += customer.points_expired;
            }
        }
    }
    lock.commit().await?;
    Ok(Some(report))
}

/// The three decisions for one customer, in order.
async fn customer_due_work(
    writer: &WriterHandle,
    tenant_id: TenantId,
    customer_id: CustomerId,
    at: DateTime<Utc>,
    correlation_id: Uuid,
) -> anyhow::Result<ExpiryReport> {
    let mut report = ExpiryReport::default();
    for command in [
        Command::ExpireHolds { customer_id, at },
        Command::ActivatePendingPoints { customer_id, at },
        Command::ExpirePoints { customer_id, at },
        Command::ReviewTier { customer_id, at },
    ] {
        let submission = Submission {
            tenant_id,
            command,
            metadata: EventMetadata {
                actor: Actor::System("expiry".into()),
                correlation_id,
                causation_id: None,
            },
            idempotency: None,
            render: schema::writer::render_status_only,
        };
        if let Outcome::Decided { events, .. } = writer.submit(submission).await? {
            for event in events {
                match event.decode()? {
                    Event::HoldReleased(_) => report.holds_released += 1,
                    Event::TierChanged(_) | Event::TierRetained(_) => report.tiers_reviewed += 1,
                    Event::PointsActivated(_) => report.lots_activated += 1,
                    Event::PointsExpired(e) => {
                        report.lots_expired += 1;
                        report.points_expired += e.points.value();
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(report)
}

/// Runs the due work every `interval` until shutdown, starting now.
pub async fn schedule(
    pool: schema::Pool,
    writer: WriterHandle,
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
        match run_once(&pool, &writer, Utc::now()).await {
            Ok(Some(report)) => tracing::info!(?report, "due-work run finished"),
            Ok(None) => tracing::debug!("due-work run skipped: another instance is running it"),
            Err(error) => {
                tracing::warn!(%error, "due-work run failed; will retry at the next tick")
            }
        }
    }
}
