//! The broadcast feeder: moves the recipients of running broadcasts into `whatsapp_outbox`.
//!
//! A broadcast (created by the API, `schema::broadcasts`) holds its recipients, resolved
//! once, in `broadcast_recipients`. Each run of the feeder, for every running broadcast
//! (oldest first), takes the next recipients still `queued` (at most
//! [`FeederSettings::chunk_max`], only as many as keep the tenant's unsent broadcast
//! rows in the outbox at most [`FeederSettings::tenant_unsent_max`], and at most
//! [`FeederSettings::run_rows_max`] in the whole run), re-checks each one's
//! WhatsApp link and broadcast opt-in at that moment, and queues one `kind = 'broadcast'`
//! row per recipient (body: the broadcast's template, dedupe key
//! `broadcast:<broadcast id>:<customer id>`, `ON CONFLICT DO NOTHING`), marking the
//! recipient `enqueued` or skipped in the same transaction. A broadcast with no recipient
//! left waiting and nothing of it left to send becomes `completed`.
//!
//! Throttling is the notifier's: its per-number token bucket and per-recipient pacing apply
//! to these rows like to any other, and its claim takes replies and notifications first.
//! The bound on unsent rows keeps a tenant's broadcast from filling the outbox, so a pause
//! has few rows to withdraw and other tenants' broadcasts get their turn.
//!
//! Safe with several instances: a run holds a transaction-level advisory lock
//! ([`LOCK_KEY`]); a runner that cannot take it skips its turn. Every run is idempotent by
//! construction: a recipient leaves `queued` in the transaction that queues its row, and the
//! dedupe key makes a second row for it impossible anyway. A run locks the broadcasts it
//! feeds (`FOR NO KEY UPDATE`), so a pause waits for the run's commit and then withdraws
//! what the run queued, and a run after the pause sees the new state.

use crate::notifications::{queue_row, Member, OutboxRow, Queued};
use ledger_core::TenantId;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;
use vault::{SealedRecord, Vault};

/// Advisory-lock key of the feeder (one runner at a time across instances).
pub const LOCK_KEY: i64 = 7_319_011;

#[derive(Debug, Clone)]
pub struct FeederSettings {
    /// How often `loyalty all` (or `loyalty broadcasts`) runs the feeder.
    pub interval: Duration,
    /// Recipients of one broadcast queued per run, at most.
    pub chunk_max: i64,
    /// A tenant's broadcast rows in the outbox not yet sent (queued or sending), at most.
    pub tenant_unsent_max: i64,
    /// Running broadcasts looked at per run, at most (the rest by the next runs).
    pub broadcasts_per_run_max: i64,
    /// Outbox rows queued per run, at most, across broadcasts: a run is one transaction, and
    /// a long one would hold back every xid8 safe-position reader of the cluster (the relay,
    /// the inbox tail) for as long as it lasts.
    pub run_rows_max: i64,
}

impl Default for FeederSettings {
    fn default() -> Self {
        FeederSettings {
            interval: Duration::from_secs(1),
            chunk_max: 200,
            tenant_unsent_max: 200,
            broadcasts_per_run_max: 100,
            run_rows_max: 1_000,
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FeedReport {
    /// Running broadcasts looked at.
    pub broadcasts: u64,
    /// Outbox rows queued by this run.
    pub enqueued: u64,
    pub skipped_opted_out: u64,
    pub skipped_no_whatsapp: u64,
    /// Broadcasts that became `completed`.
    pub completed: u64,
}

/// One run. `None` when another runner holds the lock (nothing was done).
pub async fn run_once(
    platform_pool: &schema::Pool,
    vault: &Vault,
    settings: &FeederSettings,
) -> anyhow::Result<Option<FeedReport>> {
    let mut client = platform_pool.get().await?;
    let transaction = client.transaction().await?;
    let locked: bool = transaction
        .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await?
        .get(0);
    if !locked {
        return Ok(None);
    }
    let running = transaction
        .query(
            "SELECT broadcast_id, tenant_id, template::text FROM broadcasts \
             WHERE state = 'running' ORDER BY created_at, broadcast_id LIMIT $1 \
             FOR NO KEY UPDATE",
            &[&settings.broadcasts_per_run_max.max(1)],
        )
        .await?;
    let mut report = FeedReport {
        broadcasts: running.len() as u64,
        ..FeedReport::default()
    };
    let mut unsent: HashMap<Uuid, i64> = HashMap::new();
    let mut budget = settings.run_rows_max.max(1);
    for row in &running {
        if budget <= 0 {
            break;
        }
        let broadcast = Broadcast {
            broadcast_id: row.get(0),
            tenant: TenantId::from_uuid(row.get(1)),
            template_json: row.get(2),
        };
        let tenant = broadcast.tenant.as_uuid();
        let tenant_unsent = match unsent.get(&tenant) {
            Some(count) => *count,
            None => unsent_rows(&*transaction, tenant).await?,
        };
        let room = (settings.tenant_unsent_max - tenant_unsent)
            .min(settings.chunk_max)
            .min(budget);
        if room <= 0 {
            unsent.insert(tenant, tenant_unsent);
            continue;
        }
        let fed = feed(&transaction, vault, &broadcast, room, &mut report).await?;
        unsent.insert(tenant, tenant_unsent + fed);
        budget -= fed;
    }
    if report.enqueued > 0 {
        // Wakes the notifier when the rows commit.
        transaction
            .execute(schema::wake::NOTIFY_OUTBOX_SQL, &[])
            .await?;
    }
    transaction.commit().await?;
    Ok(Some(report))
}

struct Broadcast {
    broadcast_id: Uuid,
    tenant: TenantId,
    template_json: String,
}

/// The tenant's broadcast rows in the outbox that are not yet sent.
async fn unsent_rows(
    client: &impl tokio_postgres::GenericClient,
    tenant: Uuid,
) -> Result<i64, tokio_postgres::Error> {
    Ok(client
        .query_one(
            "SELECT count(*) FROM whatsapp_outbox \
             WHERE tenant_id = $1 AND kind = 'broadcast' AND state IN ('queued', 'sending')",
            &[&tenant],
        )
        .await?
        .get(0))
}

/// Queues up to `room` waiting recipients of `broadcast` (or completes it when none is left
/// and nothing of it is unsent). Returns how many rows it queued.
async fn feed(
    transaction: &deadpool_postgres::Transaction<'_>,
    vault: &Vault,
    broadcast: &Broadcast,
    room: i64,
    report: &mut FeedReport,
) -> anyhow::Result<i64> {
    let waiting: Vec<Uuid> = transaction
        .query(
            "SELECT customer_id FROM broadcast_recipients \
             WHERE broadcast_id = $1 AND state = 'queued' ORDER BY customer_id LIMIT $2",
            &[&broadcast.broadcast_id, &room],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    if waiting.is_empty() {
        let completed = transaction
            .execute(
                "UPDATE broadcasts SET state = 'completed', completed_at = now(), \
                        updated_at = now() \
                  WHERE broadcast_id = $1 AND state = 'running' \
                    AND NOT EXISTS (SELECT 1 FROM whatsapp_outbox o \
                                     WHERE o.broadcast_id = $1 \
                                       AND o.state IN ('queued', 'sending', 'withdrawn'))",
                &[&broadcast.broadcast_id],
            )
            .await?;
        report.completed += completed;
        return Ok(0);
    }
    let audience = audience(&**transaction, broadcast.tenant, &waiting).await?;
    let mut customers = Vec::with_capacity(waiting.len());
    let mut states = Vec::with_capacity(waiting.len());
    let mut dedupe_keys: Vec<Option<String>> = Vec::with_capacity(waiting.len());
    let mut queued = 0;
    for customer in waiting {
        let (state, dedupe_key) = match audience.get(&customer) {
            None => {
                report.skipped_no_whatsapp += 1;
                ("skipped_no_whatsapp", None)
            }
            Some((_, false)) => {
                report.skipped_opted_out += 1;
                ("skipped_opted_out", None)
            }
            Some((member, true)) => {
                let dedupe_key = format!("broadcast:{}:{customer}", broadcast.broadcast_id);
                let row = OutboxRow {
                    dedupe_key: &dedupe_key,
                    tenant: broadcast.tenant,
                    kind: "broadcast",
                    body_json: &broadcast.template_json,
                    broadcast_id: Some(broadcast.broadcast_id),
                };
                match queue_row(&**transaction, vault, member, &row).await? {
                    Queued::New(_) => {
                        report.enqueued += 1;
                        queued += 1;
                        ("enqueued", Some(dedupe_key))
                    }
                    Queued::Duplicate => ("enqueued", Some(dedupe_key)),
                    // The recipient does not open (logged): no way to reach them.
                    Queued::Skipped => {
                        report.skipped_no_whatsapp += 1;
                        ("skipped_no_whatsapp", None)
                    }
                }
            }
        };
        customers.push(customer);
        states.push(state);
        dedupe_keys.push(dedupe_key);
    }
    transaction
        .execute(
            "UPDATE broadcast_recipients r SET state = n.state, dedupe_key = n.dedupe_key, \
                    updated_at = now() \
               FROM unnest($2::uuid[], $3::text[], $4::text[]) AS n(customer_id, state, dedupe_key) \
              WHERE r.broadcast_id = $1 AND r.customer_id = n.customer_id AND r.state = 'queued'",
            &[&broadcast.broadcast_id, &customers, &states, &dedupe_keys],
        )
        .await?;
    Ok(queued)
}

/// These customers' WhatsApp links and whether each accepts broadcasts now. A customer
/// erased since the broadcast was created has none (their personal data is gone; the
/// conversation's link outlives it today).
async fn audience(
    client: &impl tokio_postgres::GenericClient,
    tenant: TenantId,
    customers: &[Uuid],
) -> Result<HashMap<Uuid, (Member, bool)>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT m.customer_id, m.customer_digest, m.phone_number_id, c.master_key_id, \
                    c.wrapped_key, c.sealed_wa_id, \
                    coalesce(c.state ->> 'broadcasts', 'opted_in') = 'opted_in' \
               FROM whatsapp_members m \
               JOIN whatsapp_conversations c USING (customer_digest, phone_number_id) \
              WHERE m.tenant_id = $1 AND m.customer_id = ANY($2) \
                AND NOT EXISTS (SELECT 1 FROM projection.customer_balances b \
                                 WHERE b.customer_id = m.customer_id AND b.erased_at IS NOT NULL)",
            &[&tenant.as_uuid(), &customers],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| {
            let member = Member {
                customer_digest: row.get(1),
                phone_number_id: row.get(2),
                sealed_wa_id: SealedRecord {
                    master_key_id: row.get(3),
                    wrapped_key: row.get(4),
                    sealed: row.get(5),
                },
            };
            (row.get(0), (member, row.get(6)))
        })
        .collect())
}

/// Runs the feeder every `settings.interval` until shutdown, starting now.
pub async fn schedule(
    platform_pool: schema::Pool,
    vault: Arc<Vault>,
    settings: FeederSettings,
    mut shutdown: projections::Shutdown,
) {
    let mut ticker = tokio::time::interval(settings.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = projections::stopped(&mut shutdown) => return,
        }
        match run_once(&platform_pool, &vault, &settings).await {
            Ok(Some(report)) if report.enqueued > 0 || report.completed > 0 => {
                tracing::info!(?report, "broadcasts fed")
            }
            Ok(Some(_)) => {}
            Ok(None) => tracing::debug!("broadcast feeder: another runner has the turn"),
            Err(error) => {
                tracing::warn!(%error, "the broadcast feeder failed; will retry at the next tick")
            }
        }
    }
}
