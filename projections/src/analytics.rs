//! The analytics read model (schema `analytics`, V16): per tenant, daily ledger figures,
//! customer activity and months, reward redemptions, the catalogue and the tier of each
//! customer. The views over it (docs/ANALYTICS.md) are what readers see.
//!
//! Effectively once by tenant sequence: `analytics.tenants.applied_sequence` is the last
//! event of the tenant folded in; events at or below it are duplicates and skipped, and
//! sequences missing between it and the batch's events are read from the event table (like
//! the balances projection does per customer stream), so the counters never depend on
//! delivery order. The fold is pure (`ledger_core::analytics`); this module reads the guard,
//! calls it and writes the deltas with a fixed number of set-based statements per batch.

use crate::runner::{Projection, ProjectionError};
use chrono::NaiveDate;
use deadpool_postgres::{GenericClient as _, Transaction};
use ledger_core::analytics::{TenantDeltas, TenantFold, DEFAULT_TIME_ZONE};
use ledger_core::{StreamId, TenantId};
use schema::store::RecordedEvent;
use std::collections::{BTreeMap, HashMap};
use uuid::Uuid;

pub struct Analytics;

pub const NAME: &str = "analytics";

/// One tenant's batch: where it starts, its fold state after the batch, and the deltas.
struct TenantBatch {
    tenant_id: Uuid,
    applied_sequence: i64,
    fold: TenantFold,
    deltas: TenantDeltas,
}

impl Projection for Analytics {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn apply(
        &self,
        transaction: &Transaction<'_>,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let by_tenant = group_by_tenant(events);
        if by_tenant.is_empty() {
            return Ok(());
        }
        let tenant_ids: Vec<Uuid> = by_tenant.keys().copied().collect();
        let progress = tenant_progress(transaction, &tenant_ids).await?;
        let mut batches = Vec::with_capacity(by_tenant.len());
        for (tenant_id, tenant_events) in by_tenant {
            let (applied, zone) = progress
                .get(&tenant_id)
                .cloned()
                .unwrap_or_else(|| (0, DEFAULT_TIME_ZONE.to_owned()));
            let continuation =
                continue_tenant(transaction, tenant_id, applied, tenant_events).await?;
            batches.push(fold_tenant(tenant_id, applied, &zone, &continuation)?);
        }
        write(transaction, &batches).await
    }

    async fn reset(&self, transaction: &Transaction<'_>) -> Result<(), ProjectionError> {
        transaction
            .batch_execute(
                "TRUNCATE analytics.tenants, analytics.daily, analytics.customers, \
                 analytics.customer_months, analytics.rewards, analytics.reward_redemptions",
            )
            .await?;
        Ok(())
    }
}

/// The batch's events per tenant (tenants in id order, so concurrent writers lock rows in
/// one order), each tenant's sorted by sequence without repeats.
fn group_by_tenant(events: &[RecordedEvent]) -> BTreeMap<Uuid, Vec<&RecordedEvent>> {
    let mut groups: BTreeMap<Uuid, Vec<&RecordedEvent>> = BTreeMap::new();
    for event in events {
        groups
            .entry(event.tenant_id.as_uuid())
            .or_default()
            .push(event);
    }
    for group in groups.values_mut() {
        group.sort_by_key(|e| e.tenant_sequence);
        group.dedup_by_key(|e| e.tenant_sequence);
    }
    groups
}

/// Each tenant's applied sequence and time zone, locked for the rest of the transaction.
async fn tenant_progress(
    transaction: &Transaction<'_>,
    tenant_ids: &[Uuid],
) -> Result<HashMap<Uuid, (i64, String)>, ProjectionError> {
    let rows = transaction
        .query(
            &transaction
                .prepare_cached(
                    "SELECT tenant_id, applied_sequence, time_zone FROM analytics.tenants \
                     WHERE tenant_id = ANY($1) ORDER BY tenant_id FOR UPDATE",
                )
                .await?,
            &[&tenant_ids],
        )
        .await?;
    rows.iter()
        .map(|row| Ok((row.try_get(0)?, (row.try_get(1)?, row.try_get(2)?))))
        .collect()
}

/// The events that continue a tenant from `applied` up to the newest sequence in the batch,
/// in sequence order; missing ones (a redelivery ahead of its predecessors) come from the
/// event table.
async fn continue_tenant(
    transaction: &Transaction<'_>,
    tenant_id: Uuid,
    applied: i64,
    events: Vec<&RecordedEvent>,
) -> Result<Vec<RecordedEvent>, ProjectionError> {
    let fresh: Vec<&RecordedEvent> = events
        .into_iter()
        .filter(|e| e.tenant_sequence > applied)
        .collect();
    let Some(newest) = fresh.last().map(|e| e.tenant_sequence) else {
        return Ok(Vec::new());
    };
    if (applied + 1..=newest).eq(fresh.iter().map(|e| e.tenant_sequence)) {
        return Ok(fresh.into_iter().cloned().collect());
    }
    Ok(schema::store::read_tenant_page(
        &**transaction,
        TenantId::from_uuid(tenant_id),
        applied,
        newest - applied,
    )
    .await?)
}

/// Folds a tenant's continuation (already in order, starting right after `applied`).
fn fold_tenant(
    tenant_id: Uuid,
    applied: i64,
    zone: &str,
    events: &[RecordedEvent],
) -> Result<TenantBatch, ProjectionError> {
    let mut batch = TenantBatch {
        tenant_id,
        applied_sequence: applied,
        fold: TenantFold::new(zone),
        deltas: TenantDeltas::default(),
    };
    for recorded in events {
        if recorded.tenant_sequence <= batch.applied_sequence {
            continue;
        }
        if recorded.tenant_sequence != batch.applied_sequence + 1 {
            return Err(ProjectionError::Gap {
                stream: format!("tenant {tenant_id}"),
                applied: i32::try_from(batch.applied_sequence).unwrap_or(i32::MAX),
                found: i32::try_from(recorded.tenant_sequence).unwrap_or(i32::MAX),
            });
        }
        batch.applied_sequence = recorded.tenant_sequence;
        let customer = match StreamId::parse(&recorded.stream_id) {
            Ok(StreamId::Customer(customer)) => Some(customer.as_uuid()),
            _ => None,
        };
        batch
            .fold
            .apply(&mut batch.deltas, customer, &recorded.decode()?);
    }
    Ok(batch)
}

async fn write(
    transaction: &Transaction<'_>,
    batches: &[TenantBatch],
) -> Result<(), ProjectionError> {
    write_daily(transaction, batches).await?;
    write_customers(transaction, batches).await?;
    write_months(transaction, batches).await?;
    write_catalogue(transaction, batches).await?;
    write_redemptions(transaction, batches).await?;
    write_progress(transaction, batches).await
}

async fn write_progress(
    transaction: &Transaction<'_>,
    batches: &[TenantBatch],
) -> Result<(), ProjectionError> {
    let tenants: Vec<Uuid> = batches.iter().map(|b| b.tenant_id).collect();
    let sequences: Vec<i64> = batches.iter().map(|b| b.applied_sequence).collect();
    let zones: Vec<&str> = batches.iter().map(|b| b.fold.time_zone_name()).collect();
    transaction
        .execute(
            &transaction
                .prepare_cached(
                    "INSERT INTO analytics.tenants (tenant_id, applied_sequence, time_zone) \
                     SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[]) \
                     ON CONFLICT (tenant_id) DO UPDATE SET \
                         applied_sequence = excluded.applied_sequence, \
                         time_zone = excluded.time_zone",
                )
                .await?,
            &[&tenants, &sequences, &zones],
        )
        .await?;
    Ok(())
}

async fn write_daily(
    transaction: &Transaction<'_>,
    batches: &[TenantBatch],
) -> Result<(), ProjectionError> {
    let rows: Vec<(Uuid, NaiveDate, &ledger_core::analytics::DailyCounts)> = batches
        .iter()
        .flat_map(|b| b.deltas.daily.iter().map(|(day, c)| (b.tenant_id, *day, c)))
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    let tenants: Vec<Uuid> = rows.iter().map(|r| r.0).collect();
    let days: Vec<NaiveDate> = rows.iter().map(|r| r.1).collect();
    let column = |f: fn(&ledger_core::analytics::DailyCounts) -> i64| {
        rows.iter().map(|r| f(r.2)).collect::<Vec<i64>>()
    };
    transaction
        .execute(
            &transaction
                .prepare_cached(
                    "INSERT INTO analytics.daily AS a (tenant_id, day, points_issued, \
                         points_redeemed, points_expired, points_reversed, points_adjusted, \
                         purchases, purchase_amount_minor, refunds, refund_amount_minor, \
                         redemptions, holds, holds_released, enrolments) \
                     SELECT * FROM unnest($1::uuid[], $2::date[], $3::bigint[], $4::bigint[], \
                         $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[], \
                         $10::bigint[], $11::bigint[], $12::bigint[], $13::bigint[], \
                         $14::bigint[], $15::bigint[]) \
                     ON CONFLICT (tenant_id, day) DO UPDATE SET \
                         points_issued = a.points_issued + excluded.points_issued, \
                         points_redeemed = a.points_redeemed + excluded.points_redeemed, \
                         points_expired = a.points_expired + excluded.points_expired, \
                         points_reversed = a.points_reversed + excluded.points_reversed, \
                         points_adjusted = a.points_adjusted + excluded.points_adjusted, \
                         purchases = a.purchases + excluded.purchases, \
                         purchase_amount_minor = \
                             a.purchase_amount_minor + excluded.purchase_amount_minor, \
                         refunds = a.refunds + excluded.refunds, \
                         refund_amount_minor = a.refund_amount_minor + excluded.refund_amount_minor, \
                         redemptions = a.redemptions + excluded.redemptions, \
                         holds = a.holds + excluded.holds, \
                         holds_released = a.holds_released + excluded.holds_released, \
                         enrolments = a.enrolments + excluded.enrolments",
                )
                .await?,
            &[
                &tenants,
                &days,
                &column(|c| c.points_issued),
                &column(|c| c.points_redeemed),
                &column(|c| c.points_expired),
                &column(|c| c.points_reversed),
                &column(|c| c.points_adjusted),
                &column(|c| c.purchases),
                &column(|c| c.purchase_amount_minor),
                &column(|c| c.refunds),
                &column(|c| c.refund_amount_minor),
                &column(|c| c.redemptions),
                &column(|c| c.holds),
                &column(|c| c.holds_released),
                &column(|c| c.enrolments),
            ],
        )
        .await?;
    Ok(())
}

async fn write_customers(
    transaction: &Transaction<'_>,
    batches: &[TenantBatch],
) -> Result<(), ProjectionError> {
    let rows: Vec<(Uuid, Uuid, &ledger_core::analytics::CustomerDelta)> = batches
        .iter()
        .flat_map(|b| b.deltas.customers.iter().map(|(c, d)| (*c, b.tenant_id, d)))
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    let customers: Vec<Uuid> = rows.iter().map(|r| r.0).collect();
    let tenants: Vec<Uuid> = rows.iter().map(|r| r.1).collect();
    let enrolled: Vec<Option<NaiveDate>> = rows.iter().map(|r| r.2.enrolled_on).collect();
    let purchased: Vec<Option<NaiveDate>> = rows.iter().map(|r| r.2.last_purchase_on).collect();
    let redeemed: Vec<Option<NaiveDate>> = rows.iter().map(|r| r.2.last_redemption_on).collect();
    let tiers: Vec<Option<&str>> = rows.iter().map(|r| r.2.tier.as_deref()).collect();
    // greatest() ignores NULLs: a delta without a day keeps the row's.
    transaction
        .execute(
            &transaction
                .prepare_cached(
                    "INSERT INTO analytics.customers AS c (customer_id, tenant_id, enrolled_on, \
                         last_purchase_on, last_redemption_on, tier) \
                     SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::date[], $4::date[], \
                         $5::date[], $6::text[]) \
                     ON CONFLICT (customer_id) DO UPDATE SET \
                         enrolled_on = coalesce(excluded.enrolled_on, c.enrolled_on), \
                         last_purchase_on = greatest(c.last_purchase_on, excluded.last_purchase_on), \
                         last_redemption_on = \
                             greatest(c.last_redemption_on, excluded.last_redemption_on), \
                         tier = coalesce(excluded.tier, c.tier)",
                )
                .await?,
            &[&customers, &tenants, &enrolled, &purchased, &redeemed, &tiers],
        )
        .await?;
    Ok(())
}

async fn write_months(
    transaction: &Transaction<'_>,
    batches: &[TenantBatch],
) -> Result<(), ProjectionError> {
    let rows: Vec<(Uuid, Uuid, NaiveDate, ledger_core::analytics::MonthFlags)> = batches
        .iter()
        .flat_map(|b| {
            b.deltas
                .months
                .iter()
                .map(|((customer, month), flags)| (b.tenant_id, *customer, *month, *flags))
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    let tenants: Vec<Uuid> = rows.iter().map(|r| r.0).collect();
    let customers: Vec<Uuid> = rows.iter().map(|r| r.1).collect();
    let months: Vec<NaiveDate> = rows.iter().map(|r| r.2).collect();
    let active: Vec<bool> = rows.iter().map(|r| r.3.active).collect();
    let earned: Vec<bool> = rows.iter().map(|r| r.3.earned).collect();
    let redeemed: Vec<bool> = rows.iter().map(|r| r.3.redeemed).collect();
    transaction
        .execute(
            &transaction
                .prepare_cached(
                    "INSERT INTO analytics.customer_months AS m (tenant_id, customer_id, month, \
                         active, earned, redeemed) \
                     SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::date[], $4::bool[], \
                         $5::bool[], $6::bool[]) \
                     ON CONFLICT (tenant_id, customer_id, month) DO UPDATE SET \
                         active = m.active OR excluded.active, \
                         earned = m.earned OR excluded.earned, \
                         redeemed = m.redeemed OR excluded.redeemed",
                )
                .await?,
            &[&tenants, &customers, &months, &active, &earned, &redeemed],
        )
        .await?;
    Ok(())
}

/// Rewards created or updated (one upsert), then retired (one update): a retirement in the
/// same batch as the creation finds its row.
async fn write_catalogue(
    transaction: &Transaction<'_>,
    batches: &[TenantBatch],
) -> Result<(), ProjectionError> {
    let entries: Vec<(Uuid, Uuid, &ledger_core::analytics::RewardEntry)> = batches
        .iter()
        .flat_map(|b| b.deltas.rewards.iter().map(|(r, e)| (b.tenant_id, *r, e)))
        .collect();
    if !entries.is_empty() {
        let tenants: Vec<Uuid> = entries.iter().map(|e| e.0).collect();
        let rewards: Vec<Uuid> = entries.iter().map(|e| e.1).collect();
        let names: Vec<&str> = entries.iter().map(|e| e.2.name.as_str()).collect();
        let costs: Vec<i64> = entries.iter().map(|e| e.2.points_cost).collect();
        transaction
            .execute(
                &transaction
                    .prepare_cached(
                        "INSERT INTO analytics.rewards (tenant_id, reward_id, name, points_cost) \
                         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::bigint[]) \
                         ON CONFLICT (tenant_id, reward_id) DO UPDATE SET \
                             name = excluded.name, points_cost = excluded.points_cost",
                    )
                    .await?,
                &[&tenants, &rewards, &names, &costs],
            )
            .await?;
    }
    let retired: Vec<(Uuid, Uuid)> = batches
        .iter()
        .flat_map(|b| b.deltas.retired.iter().map(|r| (b.tenant_id, *r)))
        .collect();
    if !retired.is_empty() {
        let tenants: Vec<Uuid> = retired.iter().map(|e| e.0).collect();
        let rewards: Vec<Uuid> = retired.iter().map(|e| e.1).collect();
        transaction
            .execute(
                &transaction
                    .prepare_cached(
                        "UPDATE analytics.rewards r SET retired = true \
                         FROM unnest($1::uuid[], $2::uuid[]) AS d(tenant_id, reward_id) \
                         WHERE r.tenant_id = d.tenant_id AND r.reward_id = d.reward_id",
                    )
                    .await?,
                &[&tenants, &rewards],
            )
            .await?;
    }
    Ok(())
}

/// Redemptions opened (one insert), then resolved (one update): a hold opened and resolved
/// in the same batch is inserted first.
async fn write_redemptions(
    transaction: &Transaction<'_>,
    batches: &[TenantBatch],
) -> Result<(), ProjectionError> {
    let opened: Vec<(Uuid, &ledger_core::analytics::RedemptionOpened)> = batches
        .iter()
        .flat_map(|b| b.deltas.opened.iter().map(|o| (b.tenant_id, o)))
        .collect();
    if !opened.is_empty() {
        let ids: Vec<Uuid> = opened.iter().map(|o| o.1.redemption_id).collect();
        let tenants: Vec<Uuid> = opened.iter().map(|o| o.0).collect();
        let rewards: Vec<Uuid> = opened.iter().map(|o| o.1.reward_id).collect();
        let points: Vec<i64> = opened.iter().map(|o| o.1.points).collect();
        let days: Vec<NaiveDate> = opened.iter().map(|o| o.1.on).collect();
        let outcomes: Vec<Option<&str>> = opened
            .iter()
            .map(|o| o.1.outcome.map(|x| x.as_str()))
            .collect();
        transaction
            .execute(
                &transaction
                    .prepare_cached(
                        "INSERT INTO analytics.reward_redemptions (redemption_id, tenant_id, \
                             reward_id, points, redeemed_on, outcome, resolved_on) \
                         SELECT id, t, r, p, d, o, CASE WHEN o IS NULL THEN NULL ELSE d END \
                         FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::bigint[], \
                             $5::date[], $6::text[]) AS n(id, t, r, p, d, o) \
                         ON CONFLICT (redemption_id) DO NOTHING",
                    )
                    .await?,
                &[&ids, &tenants, &rewards, &points, &days, &outcomes],
            )
            .await?;
    }
    let resolved: Vec<&ledger_core::analytics::RedemptionResolved> = batches
        .iter()
        .flat_map(|b| b.deltas.resolved.iter())
        .collect();
    if !resolved.is_empty() {
        let ids: Vec<Uuid> = resolved.iter().map(|r| r.redemption_id).collect();
        let outcomes: Vec<&str> = resolved.iter().map(|r| r.outcome.as_str()).collect();
        let days: Vec<NaiveDate> = resolved.iter().map(|r| r.on).collect();
        transaction
            .execute(
                &transaction
                    .prepare_cached(
                        "UPDATE analytics.reward_redemptions x \
                         SET outcome = d.outcome, resolved_on = d.day \
                         FROM unnest($1::uuid[], $2::text[], $3::date[]) AS d(id, outcome, day) \
                         WHERE x.redemption_id = d.id",
                    )
                    .await?,
                &[&ids, &outcomes, &days],
            )
            .await?;
    }
    Ok(())
}
