//! The expiry run: appends `PointsExpired` for what is left of every lot past its date.
//!
//! Candidates come from the balances read model; the decision is the ledger's own
//! (`ExpirePoints` through the writer), so running twice, or on a lagging read model,
//! expires nothing twice: the second run finds nothing left to expire.

use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use ledger_core::events::{Actor, EventMetadata};
use ledger_core::{Command, CustomerId, TenantId};
use schema::writer::{Outcome, Submission, WriterHandle};
use std::time::Duration;
use uuid::Uuid;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ExpiryReport {
    pub customers_checked: u64,
    pub lots_expired: u64,
    pub points_expired: i64,
}

/// Customers handed to the writer at once: enough to fill group-commit batches.
const CONCURRENT_COMMANDS_MAX: usize = 256;
const PAGE: i64 = 1_000;

pub async fn run_once(
    pool: &schema::Pool,
    writer: &WriterHandle,
    at: DateTime<Utc>,
) -> anyhow::Result<ExpiryReport> {
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
        for chunk in due.chunks(CONCURRENT_COMMANDS_MAX) {
            let submissions = chunk.iter().map(|(tenant, customer)| Submission {
                tenant_id: TenantId::from_uuid(*tenant),
                command: Command::ExpirePoints {
                    customer_id: CustomerId::from_uuid(*customer),
                    at,
                },
                metadata: EventMetadata {
                    actor: Actor::System("expiry".into()),
                    correlation_id,
                    causation_id: None,
                },
                idempotency: None,
                render: schema::writer::render_status_only,
            });
            for outcome in join_all(submissions.map(|s| writer.submit(s))).await {
                report.customers_checked += 1;
                if let Outcome::Decided { events, .. } = outcome? {
                    for event in events {
                        if let ledger_core::Event::PointsExpired(e) = event.decode()? {
                            report.lots_expired += 1;
                            report.points_expired += e.points.value();
                        }
                    }
                }
            }
        }
    }
    Ok(report)
}

/// Runs the expiry every `interval` until shutdown, starting now.
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
            Ok(report) => tracing::info!(?report, "expiry run finished"),
            Err(error) => tracing::warn!(%error, "expiry run failed; will retry at the next tick"),
        }
    }
}
