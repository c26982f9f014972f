//! The balances read model: one row per customer (balance and its parts) and one row per
//! lot (points and what remains), in the `projection` schema.
//!
//! A batch is folded in memory first, then written with a fixed number of statements
//! whatever its size. Every customer row carries the version of the customer's stream it
//! reflects: an event at or below it is a duplicate and skipped; versions missing between it
//! and the batch's events are read from the event table (see [`continue_stream`]).

use crate::runner::{Projection, ProjectionError};
use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient as _, Transaction};
use ledger_core::{Event, StreamId};
use schema::store::RecordedEvent;
use std::collections::HashMap;
use uuid::Uuid;

pub struct Balances;

pub const NAME: &str = "balances";

#[derive(Debug, Default)]
struct CustomerChange {
    tenant_id: Uuid,
    enrolled: Option<DateTime<Utc>>,
    erased: Option<DateTime<Utc>>,
    version: i32,
    balance: i64,
    pending: i64,
    held: i64,
    debt: i64,
    earned: i64,
    redeemed: i64,
    expired: i64,
    reversed: i64,
    adjusted: i64,
    purchases: i32,
    /// The tier after the batch, when the batch changed it or its review date.
    tier: Option<TierUpdate>,
    /// The birthday after the batch, when the batch set, cleared or erased it.
    birthday: Option<Option<ledger_core::Birthday>>,
    updated_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
struct TierUpdate {
    tier: String,
    review_at: Option<DateTime<Utc>>,
}

struct NewLot {
    customer_id: Uuid,
    lot_id: Uuid,
    tenant_id: Uuid,
    purchase_id: Option<Uuid>,
    points: i64,
    earned_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    /// Minor units per point, fixed when the lot opened.
    point_value: Option<i64>,
}

struct OpenedHold {
    customer_id: Uuid,
    redemption_id: Uuid,
    tenant_id: Uuid,
    points: i64,
    expires_at: DateTime<Utc>,
}

/// (customer, lot) — or (customer, purchase) for refunds from a pending lot.
type LotKey = (Uuid, Uuid);

#[derive(Default)]
struct Fold {
    /// Each customer the batch changes, in the order first seen (writes are deterministic).
    customers: Vec<(Uuid, CustomerChange)>,
    new_lots: Vec<NewLot>,
    /// Per (customer, lot): points taken from `remaining`, and the change of `reserved`.
    lot_debits: HashMap<(Uuid, Uuid), i64>,
    lot_reserved: HashMap<(Uuid, Uuid), i64>,
    /// Per (customer, lot): the lot's pending state at the end of the batch.
    lot_pending: HashMap<(Uuid, Uuid), Option<DateTime<Utc>>>,
    /// Per (customer, purchase): points a refund took from the purchase's pending lot (the
    /// event names the purchase; its lot is the one with that purchase id).
    pending_refunds: HashMap<(Uuid, Uuid), i64>,
    opened_holds: Vec<OpenedHold>,
    closed_holds: Vec<(Uuid, Uuid)>,
}

impl Projection for Balances {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn apply(
        &self,
        transaction: &Transaction<'_>,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let by_customer = group_by_customer(events);
        if by_customer.is_empty() {
            return Ok(());
        }
        let customer_ids: Vec<Uuid> = by_customer.iter().map(|(id, _)| *id).collect();
        let applied = applied_versions(transaction, &customer_ids).await?;
        let mut fold = Fold::default();
        for (customer_id, customer_events) in by_customer {
            let applied_version = applied.get(&customer_id).copied().unwrap_or(0);
            let continuation =
                continue_stream(transaction, customer_id, applied_version, customer_events).await?;
            fold.customer(customer_id, applied_version, &continuation)?;
        }
        write(transaction, &fold).await
    }

    async fn reset(&self, transaction: &Transaction<'_>) -> Result<(), ProjectionError> {
        transaction
            .batch_execute(
                "TRUNCATE projection.customer_balances, projection.point_lots, \
                 projection.open_holds",
            )
            .await?;
        Ok(())
    }
}

/// The batch's customer events, grouped by customer (in order of first appearance) and
/// sorted by version within each customer.
fn group_by_customer(events: &[RecordedEvent]) -> Vec<(Uuid, Vec<&RecordedEvent>)> {
    let mut groups: Vec<(Uuid, Vec<&RecordedEvent>)> = Vec::new();
    let mut index: HashMap<Uuid, usize> = HashMap::new();
    for event in events {
        let Ok(StreamId::Customer(customer)) = StreamId::parse(&event.stream_id) else {
            continue;
        };
        let slot = *index.entry(customer.as_uuid()).or_insert_with(|| {
            groups.push((customer.as_uuid(), Vec::new()));
            groups.len() - 1
        });
        groups[slot].1.push(event);
    }
    for (_, group) in &mut groups {
        group.sort_by_key(|e| e.version);
        group.dedup_by_key(|e| e.version);
    }
    groups
}

/// The events that continue a customer's stream from `applied_version` up to the newest
/// version in the batch, in version order.
///
/// JetStream redelivers unacknowledged messages after `ack_wait` and naked ones after their
/// delay, so a batch can hold version 22 of a stream while 20 and 21 are still to come. The
/// event table is the source of truth: the missing versions are read from it, which makes
/// the read model independent of delivery order (a later redelivery of 20 and 21 is then a
/// duplicate and skipped).
async fn continue_stream(
    transaction: &Transaction<'_>,
    customer_id: Uuid,
    applied_version: i32,
    events: Vec<&RecordedEvent>,
) -> Result<Vec<RecordedEvent>, ProjectionError> {
    let fresh: Vec<&RecordedEvent> = events
        .into_iter()
        .filter(|e| e.version > applied_version)
        .collect();
    let Some(newest) = fresh.last().map(|e| e.version) else {
        return Ok(Vec::new());
    };
    let contiguous = (applied_version + 1..=newest).eq(fresh.iter().map(|e| e.version));
    if contiguous {
        return Ok(fresh.into_iter().cloned().collect());
    }
    let missing = i64::from(newest - applied_version);
    Ok(schema::store::read_stream(
        &**transaction,
        StreamId::Customer(ledger_core::CustomerId::from_uuid(customer_id)),
        applied_version,
        missing,
    )
    .await?)
}

/// The stream version each customer row reflects, locked for the rest of the transaction.
async fn applied_versions(
    transaction: &Transaction<'_>,
    customer_ids: &[Uuid],
) -> Result<HashMap<Uuid, i32>, ProjectionError> {
    let rows = transaction
        .query(
            &transaction
                .prepare_cached(
                    "SELECT customer_id, stream_version FROM projection.customer_balances \
             WHERE customer_id = ANY($1) ORDER BY customer_id FOR UPDATE",
                )
                .await?,
            &[&customer_ids],
        )
        .await?;
    rows.iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect()
}

impl Fold {
    /// Folds one customer's events, in version order, continuing from `applied_version`.
    fn customer(
        &mut self,
        customer_id: Uuid,
        applied_version: i32,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let Some(first) = events.first() else {
            return Ok(());
        };
        let mut change = CustomerChange {
            tenant_id: first.tenant_id.as_uuid(),
            version: applied_version,
            ..CustomerChange::default()
        };
        for recorded in events {
            if recorded.version <= change.version {
                continue; // already applied: a redelivery or a replay
            }
            if recorded.version != change.version + 1 {
                return Err(ProjectionError::Gap {
                    stream: recorded.stream_id.clone(),
                    applied: change.version,
                    found: recorded.version,
                });
            }
            change.version = recorded.version;
            change.updated_at = Some(recorded.recorded_at);
            self.event(customer_id, &mut change, recorded.decode()?);
        }
        self.customers.push((customer_id, change));
        Ok(())
    }

    fn event(&mut self, customer_id: Uuid, change: &mut CustomerChange, event: Event) {
        match event {
            Event::CustomerEnrolled(e) => {
                change.enrolled = Some(e.enrolled_at);
                if e.birthday.is_some() {
                    change.birthday = Some(e.birthday);
                }
            }
            Event::CustomerErased(e) => {
                change.erased = Some(e.erased_at);
                change.birthday = Some(None);
            }
            Event::BirthdaySet(e) => {
                change.birthday = Some(e.birthday);
            }
            Event::ReferralBonusAwarded(e) => {
                change.balance += e.points.value();
                change.earned += e.points.value();
                self.new_lots.push(NewLot {
                    customer_id,
                    lot_id: e.lot_id.as_uuid(),
                    tenant_id: change.tenant_id,
                    purchase_id: None,
                    points: e.points.value(),
                    earned_at: e.awarded_at,
                    expires_at: e.expires_at,
                    point_value: e.point_value.map(|v| v.value()),
                });
            }
            Event::PurchaseLogged(e) => {
                change.purchases = change
                    .purchases
                    .max(i32::try_from(e.purchase_number).unwrap_or(i32::MAX));
            }
            Event::PointsEarned(e) => {
                change.balance += e.points.value();
                change.earned += e.points.value();
                self.new_lots.push(NewLot {
                    customer_id,
                    lot_id: e.lot_id.as_uuid(),
                    tenant_id: change.tenant_id,
                    purchase_id: Some(e.purchase_id.as_uuid()),
                    points: e.points.value(),
                    earned_at: e.earned_at,
                    expires_at: e.expires_at,
                    point_value: e.point_value.map(|v| v.value()),
                });
            }
            Event::PointsPending(e) => {
                change.balance -= e.points.value();
                change.pending += e.points.value();
                self.lot_pending
                    .insert((customer_id, e.lot_id.as_uuid()), Some(e.pending_until));
            }
            Event::PointsActivated(e) => {
                change.pending -= e.points.value();
                change.balance += e.points.value();
                self.lot_pending
                    .insert((customer_id, e.lot_id.as_uuid()), None);
            }
            Event::RewardRedeemed(e) => {
                change.balance -= e.points.value();
                change.redeemed += e.points.value();
                for debit in &e.consumed {
                    self.debit(customer_id, debit.lot_id.as_uuid(), debit.points.value());
                }
            }
            Event::RewardHeld(e) => {
                change.held += e.points.value();
                for r in &e.reserved {
                    *self
                        .lot_reserved
                        .entry((customer_id, r.lot_id.as_uuid()))
                        .or_default() += r.points.value();
                }
                self.opened_holds.push(OpenedHold {
                    customer_id,
                    redemption_id: e.redemption_id.as_uuid(),
                    tenant_id: change.tenant_id,
                    points: e.points.value(),
                    expires_at: e.expires_at,
                });
            }
            Event::HoldFulfilled(e) => {
                change.held -= e.points.value();
                change.balance -= e.points.value();
                change.redeemed += e.points.value();
                for debit in &e.consumed {
                    *self
                        .lot_reserved
                        .entry((customer_id, debit.lot_id.as_uuid()))
                        .or_default() -= debit.points.value();
                    self.debit(customer_id, debit.lot_id.as_uuid(), debit.points.value());
                }
                self.closed_holds
                    .push((customer_id, e.redemption_id.as_uuid()));
            }
            Event::HoldReleased(e) => {
                change.held -= e.points.value();
                for r in &e.released {
                    *self
                        .lot_reserved
                        .entry((customer_id, r.lot_id.as_uuid()))
                        .or_default() -= r.points.value();
                }
                self.closed_holds
                    .push((customer_id, e.redemption_id.as_uuid()));
            }
            Event::PointsExpired(e) => {
                change.balance -= e.points.value();
                change.expired += e.points.value();
                self.debit(customer_id, e.lot_id.as_uuid(), e.points.value());
            }
            Event::PurchaseRefunded(e) => {
                let r = &e.reversal;
                change.pending -= r.from_pending.value();
                change.balance -= r.from_balance().value();
                change.debt += r.debt.value();
                change.reversed += r.reversed().value();
                if r.from_pending.is_positive() {
                    *self
                        .pending_refunds
                        .entry((customer_id, e.purchase_id.as_uuid()))
                        .or_default() += r.from_pending.value();
                }
                for debit in &r.from_lots {
                    self.debit(customer_id, debit.lot_id.as_uuid(), debit.points.value());
                }
            }
            Event::PointsAdjusted(e) => {
                change.balance += e.points.value();
                change.adjusted += e.points.value();
                if let Some(lot) = &e.lot {
                    self.new_lots.push(NewLot {
                        customer_id,
                        lot_id: lot.lot_id.as_uuid(),
                        tenant_id: change.tenant_id,
                        purchase_id: None,
                        points: e.points.value(),
                        earned_at: e.adjusted_at,
                        expires_at: lot.expires_at,
                        point_value: lot.point_value.map(|v| v.value()),
                    });
                }
                for debit in &e.consumed {
                    self.debit(customer_id, debit.lot_id.as_uuid(), debit.points.value());
                }
            }
            Event::DebtSettled(e) => {
                change.debt -= e.points.value();
                self.debit(customer_id, e.lot_id.as_uuid(), e.points.value());
            }
            Event::TierChanged(e) => {
                change.tier = Some(TierUpdate {
                    tier: e.to,
                    review_at: e.review_at,
                });
            }
            Event::TierRetained(e) => {
                change.tier = Some(TierUpdate {
                    tier: e.tier,
                    review_at: Some(e.review_at),
                });
            }
            // Catalogue and settings changes are tenant facts; a fulfilment of a redemption
            // debited when it was made moves no points.
            Event::TenantRegistered(_)
            | Event::RuleSetPublished(_)
            | Event::RewardCreated(_)
            | Event::RewardUpdated(_)
            | Event::RewardRetired(_)
            | Event::ProgrammeSettingsChanged(_)
            | Event::TierSchemePublished(_)
            | Event::RedemptionFulfilled(_)
            | Event::ReferralQualified(_) => {}
        }
    }

    fn debit(&mut self, customer_id: Uuid, lot_id: Uuid, points: i64) {
        *self.lot_debits.entry((customer_id, lot_id)).or_default() += points;
    }
}

async fn write(transaction: &Transaction<'_>, fold: &Fold) -> Result<(), ProjectionError> {
    insert_enrolled(transaction, fold).await?;
    insert_lots(transaction, fold).await?;
    update_customers(transaction, fold).await?;
    debit_lots(transaction, fold).await?;
    update_lot_states(transaction, fold).await?;
    update_holds(transaction, fold).await?;
    update_tiers(transaction, fold).await?;
    update_birthdays(transaction, fold).await
}

/// The birth month and day of customers whose birthday the batch set, cleared or erased.
async fn update_birthdays(
    transaction: &Transaction<'_>,
    fold: &Fold,
) -> Result<(), ProjectionError> {
    let updates: Vec<(Uuid, Option<ledger_core::Birthday>)> = fold
        .customers
        .iter()
        .filter_map(|(id, change)| Some((*id, change.birthday?)))
        .collect();
    if updates.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = updates.iter().map(|(id, _)| *id).collect();
    let months: Vec<Option<i16>> = updates
        .iter()
        .map(|(_, b)| b.map(|b| i16::from(b.month())))
        .collect();
    let days: Vec<Option<i16>> = updates
        .iter()
        .map(|(_, b)| b.map(|b| i16::from(b.day())))
        .collect();
    transaction
        .execute(
            &transaction
                .prepare_cached(
                    "UPDATE projection.customer_balances b \
                     SET birth_month = d.month, birth_day = d.day \
                     FROM unnest($1::uuid[], $2::smallint[], $3::smallint[]) \
                         AS d(id, month, day) \
                     WHERE b.customer_id = d.id",
                )
                .await?,
            &[&ids, &months, &days],
        )
        .await?;
    Ok(())
}

async fn update_tiers(transaction: &Transaction<'_>, fold: &Fold) -> Result<(), ProjectionError> {
    let updates: Vec<(Uuid, &TierUpdate)> = fold
        .customers
        .iter()
        .filter_map(|(id, change)| Some((*id, change.tier.as_ref()?)))
        .collect();
    if updates.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = updates.iter().map(|(id, _)| *id).collect();
    let tiers: Vec<&str> = updates.iter().map(|(_, t)| t.tier.as_str()).collect();
    let reviews: Vec<Option<DateTime<Utc>>> = updates.iter().map(|(_, t)| t.review_at).collect();
    transaction
        .execute(
            &transaction
                .prepare_cached(
                    "UPDATE projection.customer_balances b \
                     SET tier = d.tier, tier_review_at = d.review_at \
                     FROM unnest($1::uuid[], $2::text[], $3::timestamptz[]) \
                         AS d(id, tier, review_at) \
                     WHERE b.customer_id = d.id",
                )
                .await?,
            &[&ids, &tiers, &reviews],
        )
        .await?;
    Ok(())
}

/// Reservations, pending states and refunds from pending lots.
async fn update_lot_states(
    transaction: &Transaction<'_>,
    fold: &Fold,
) -> Result<(), ProjectionError> {
    update_by_pairs(
        transaction,
        &fold.lot_reserved,
        "UPDATE projection.point_lots l SET reserved = l.reserved + d.delta \
         FROM unnest($1::uuid[], $2::uuid[], $3::bigint[]) AS d(customer_id, lot_id, delta) \
         WHERE l.customer_id = d.customer_id AND l.lot_id = d.lot_id",
    )
    .await?;
    if !fold.lot_pending.is_empty() {
        let mut rows: Vec<LotKey> = fold.lot_pending.keys().copied().collect();
        rows.sort_unstable();
        let customers: Vec<Uuid> = rows.iter().map(|(c, _)| *c).collect();
        let lots: Vec<Uuid> = rows.iter().map(|(_, l)| *l).collect();
        let until: Vec<Option<DateTime<Utc>>> =
            rows.iter().map(|key| fold.lot_pending[key]).collect();
        transaction
            .execute(
                &transaction
                    .prepare_cached(
                        "UPDATE projection.point_lots l SET pending_until = d.until \
                 FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[]) AS d(customer_id, lot_id, until) \
                 WHERE l.customer_id = d.customer_id AND l.lot_id = d.lot_id",
                    )
                    .await?,
                &[&customers, &lots, &until],
            )
            .await?;
    }
    update_by_pairs(
        transaction,
        &fold.pending_refunds,
        "UPDATE projection.point_lots l SET remaining = l.remaining - d.points \
         FROM unnest($1::uuid[], $2::uuid[], $3::bigint[]) AS d(customer_id, purchase_id, points) \
         WHERE l.customer_id = d.customer_id AND l.purchase_id = d.purchase_id",
    )
    .await?;
    Ok(())
}

/// Opens and closes rows of `projection.open_holds`; a hold opened and resolved in the
/// same batch is inserted and deleted, in that order.
async fn update_holds(transaction: &Transaction<'_>, fold: &Fold) -> Result<(), ProjectionError> {
    if !fold.opened_holds.is_empty() {
        let holds = &fold.opened_holds;
        let customers: Vec<Uuid> = holds.iter().map(|h| h.customer_id).collect();
        let redemptions: Vec<Uuid> = holds.iter().map(|h| h.redemption_id).collect();
        let tenants: Vec<Uuid> = holds.iter().map(|h| h.tenant_id).collect();
        let points: Vec<i64> = holds.iter().map(|h| h.points).collect();
        let expires: Vec<DateTime<Utc>> = holds.iter().map(|h| h.expires_at).collect();
        transaction
            .execute(
                &transaction
                    .prepare_cached(
                        "INSERT INTO projection.open_holds \
                     (customer_id, redemption_id, tenant_id, points, expires_at) \
                 SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::bigint[], \
                     $5::timestamptz[]) ON CONFLICT DO NOTHING",
                    )
                    .await?,
                &[&customers, &redemptions, &tenants, &points, &expires],
            )
            .await?;
    }
    if !fold.closed_holds.is_empty() {
        let customers: Vec<Uuid> = fold.closed_holds.iter().map(|(c, _)| *c).collect();
        let redemptions: Vec<Uuid> = fold.closed_holds.iter().map(|(_, r)| *r).collect();
        transaction
            .execute(
                &transaction
                    .prepare_cached(
                        "DELETE FROM projection.open_holds h \
                 USING unnest($1::uuid[], $2::uuid[]) AS d(customer_id, redemption_id) \
                 WHERE h.customer_id = d.customer_id AND h.redemption_id = d.redemption_id",
                    )
                    .await?,
                &[&customers, &redemptions],
            )
            .await?;
    }
    Ok(())
}

async fn insert_enrolled(
    transaction: &Transaction<'_>,
    fold: &Fold,
) -> Result<(), ProjectionError> {
    let mut ids = Vec::new();
    let mut tenants = Vec::new();
    let mut enrolled_at = Vec::new();
    for (id, change) in &fold.customers {
        if let Some(at) = change.enrolled {
            ids.push(*id);
            tenants.push(change.tenant_id);
            enrolled_at.push(at);
        }
    }
    if ids.is_empty() {
        return Ok(());
    }
    transaction
        .execute(
            &transaction.prepare_cached("INSERT INTO projection.customer_balances (customer_id, tenant_id, \
                 stream_version, balance, earned, redeemed, expired, purchases, enrolled_at, updated_at) \
             SELECT id, tenant, 0, 0, 0, 0, 0, 0, at, at \
             FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[]) AS n(id, tenant, at)").await?,
            &[&ids, &tenants, &enrolled_at],
        )
        .await?;
    Ok(())
}

async fn insert_lots(transaction: &Transaction<'_>, fold: &Fold) -> Result<(), ProjectionError> {
    if fold.new_lots.is_empty() {
        return Ok(());
    }
    let column = |f: fn(&NewLot) -> Uuid| fold.new_lots.iter().map(f).collect::<Vec<_>>();
    let customers = column(|l| l.customer_id);
    let lots = column(|l| l.lot_id);
    let tenants = column(|l| l.tenant_id);
    let purchases: Vec<Option<Uuid>> = fold.new_lots.iter().map(|l| l.purchase_id).collect();
    let points: Vec<i64> = fold.new_lots.iter().map(|l| l.points).collect();
    let earned_at: Vec<DateTime<Utc>> = fold.new_lots.iter().map(|l| l.earned_at).collect();
    let expires_at: Vec<DateTime<Utc>> = fold.new_lots.iter().map(|l| l.expires_at).collect();
    let point_values: Vec<Option<i64>> = fold.new_lots.iter().map(|l| l.point_value).collect();
    transaction
        .execute(
            &transaction.prepare_cached("INSERT INTO projection.point_lots (customer_id, lot_id, tenant_id, purchase_id, \
                 points, remaining, earned_at, expires_at, point_value_minor) \
             SELECT c, l, t, p, pts, pts, e, x, v \
             FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::bigint[], \
                 $6::timestamptz[], $7::timestamptz[], $8::bigint[]) AS n(c, l, t, p, pts, e, x, v)").await?,
            &[
                &customers,
                &lots,
                &tenants,
                &purchases,
                &points,
                &earned_at,
                &expires_at,
                &point_values,
            ],
        )
        .await?;
    Ok(())
}

async fn update_customers(
    transaction: &Transaction<'_>,
    fold: &Fold,
) -> Result<(), ProjectionError> {
    let changes: Vec<(&Uuid, &CustomerChange)> = fold
        .customers
        .iter()
        .map(|(id, change)| (id, change))
        .filter(|(_, c)| c.updated_at.is_some())
        .collect();
    if changes.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = changes.iter().map(|(id, _)| **id).collect();
    let versions: Vec<i32> = changes.iter().map(|(_, c)| c.version).collect();
    let counter =
        |f: fn(&CustomerChange) -> i64| changes.iter().map(|(_, c)| f(c)).collect::<Vec<i64>>();
    let balance = counter(|c| c.balance);
    let earned = counter(|c| c.earned);
    let redeemed = counter(|c| c.redeemed);
    let expired = counter(|c| c.expired);
    let pending = counter(|c| c.pending);
    let held = counter(|c| c.held);
    let debt = counter(|c| c.debt);
    let reversed = counter(|c| c.reversed);
    let adjusted = counter(|c| c.adjusted);
    let purchases: Vec<i32> = changes.iter().map(|(_, c)| c.purchases).collect();
    let updated_at: Vec<DateTime<Utc>> = changes
        .iter()
        .map(|(_, c)| c.updated_at.unwrap_or_default())
        .collect();
    let erased_at: Vec<Option<DateTime<Utc>>> = changes.iter().map(|(_, c)| c.erased).collect();
    transaction
        .execute(
            &transaction
                .prepare_cached(
                    "UPDATE projection.customer_balances b SET stream_version = d.version, \
                 balance = b.balance + d.balance, earned = b.earned + d.earned, \
                 redeemed = b.redeemed + d.redeemed, expired = b.expired + d.expired, \
                 purchases = greatest(b.purchases, d.purchases), updated_at = d.updated_at, \
                 erased_at = coalesce(d.erased_at, b.erased_at), \
                 pending = b.pending + d.pending, held = b.held + d.held, \
                 debt = b.debt + d.debt, reversed = b.reversed + d.reversed, \
                 adjusted = b.adjusted + d.adjusted \
             FROM unnest($1::uuid[], $2::int[], $3::bigint[], $4::bigint[], $5::bigint[], \
                 $6::bigint[], $7::int[], $8::timestamptz[], $9::timestamptz[], \
                 $10::bigint[], $11::bigint[], $12::bigint[], $13::bigint[], $14::bigint[]) \
                 AS d(id, version, balance, earned, redeemed, expired, purchases, updated_at, \
                      erased_at, pending, held, debt, reversed, adjusted) \
             WHERE b.customer_id = d.id",
                )
                .await?,
            &[
                &ids,
                &versions,
                &balance,
                &earned,
                &redeemed,
                &expired,
                &purchases,
                &updated_at,
                &erased_at,
                &pending,
                &held,
                &debt,
                &reversed,
                &adjusted,
            ],
        )
        .await?;
    Ok(())
}

async fn debit_lots(transaction: &Transaction<'_>, fold: &Fold) -> Result<(), ProjectionError> {
    update_by_pairs(
        transaction,
        &fold.lot_debits,
        "UPDATE projection.point_lots l SET remaining = l.remaining - d.amount \
         FROM unnest($1::uuid[], $2::uuid[], $3::bigint[]) AS d(customer_id, lot_id, amount) \
         WHERE l.customer_id = d.customer_id AND l.lot_id = d.lot_id",
    )
    .await
}

/// One set-based statement for amounts keyed by `(customer, other id)`: `sql` reads the
/// customers as `$1`, the other ids as `$2` and the amounts as `$3`. Rows go in key order,
/// so concurrent batches lock rows in the same order.
async fn update_by_pairs(
    transaction: &Transaction<'_>,
    amounts: &HashMap<LotKey, i64>,
    sql: &str,
) -> Result<(), ProjectionError> {
    if amounts.is_empty() {
        return Ok(());
    }
    let mut rows: Vec<(&LotKey, &i64)> = amounts.iter().collect();
    rows.sort_unstable();
    let customers: Vec<Uuid> = rows.iter().map(|((c, _), _)| *c).collect();
    let others: Vec<Uuid> = rows.iter().map(|((_, o), _)| *o).collect();
    let values: Vec<i64> = rows.iter().map(|(_, v)| **v).collect();
    transaction
        .execute(
            &transaction.prepare_cached(sql).await?,
            &[&customers, &others, &values],
        )
        .await?;
    Ok(())
}

/// Customers with scheduled work due at `at`, by the read model, as `(tenant_id,
/// customer_id)`: a lot past its date with free points, a pending lot whose return window
/// has passed, an open hold past its window, or a tier whose review date has passed (its
/// grace period is the decision's to apply). The scheduled run decides on the ledger
/// itself, so a lagging read model only makes it look at a customer with nothing due.
pub async fn due_customers(
    client: &impl tokio_postgres::GenericClient,
    at: DateTime<Utc>,
    after_customer: Uuid,
    limit: i64,
) -> Result<Vec<(Uuid, Uuid)>, ProjectionError> {
    let rows = client
        .query(
            "SELECT tenant_id, customer_id FROM ( \
                 SELECT tenant_id, customer_id FROM projection.point_lots \
                 WHERE remaining > 0 AND expires_at <= $1 AND remaining > reserved \
                   AND pending_until IS NULL AND customer_id > $2 \
                 UNION \
                 SELECT tenant_id, customer_id FROM projection.point_lots \
                 WHERE pending_until <= $1 AND customer_id > $2 \
                 UNION \
                 SELECT tenant_id, customer_id FROM projection.open_holds \
                 WHERE expires_at <= $1 AND customer_id > $2 \
                 UNION \
                 SELECT tenant_id, customer_id FROM projection.customer_balances \
                 WHERE tier_review_at <= $1 AND customer_id > $2 \
             ) due ORDER BY customer_id LIMIT $3",
            &[&at, &after_customer, &limit],
        )
        .await?;
    rows.iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect()
}
