//! Notifications from the ledger: receipts queued in `whatsapp_outbox` for the notifier.
//!
//! Reading order: [`Notifications`] (the projector: events → receipts), then
//! [`reminders`] (the scheduled job: lots about to expire → one reminder each).
//!
//! # The projector
//!
//! A [`Projection`] run by `projections::runner` as the durable consumer `notifications`
//! (role `loyalty_platform`: it reads the event table and the WhatsApp tables). For each
//! customer event that concerns the customer it queues one `kind = 'notification'` row:
//!
//! - `PointsEarned` → "You earned N points at SHOP. Balance: M";
//! - `RewardRedeemed` with a code → "You redeemed R for N points. Your code: X. Balance: M";
//! - `RedemptionFulfilled` → "Your reward R was handed over. Enjoy!".
//!
//! The balance is the customer's balance right after the event, folded from the customer's
//! stream up to the event's version (the ledger itself, not the balances projection, which
//! may lag). The vendor's name comes from the tenant's stream.
//!
//! Only customers with a `whatsapp_members` row are notified (others have no WhatsApp
//! link); the recipient is the conversation's sealed wa_id, opened and sealed again under
//! the outbox row's context. The dedupe key is `notify:<event id>` with `ON CONFLICT DO
//! NOTHING`, and the rows are written in the runner's transaction with the checkpoint: a
//! redelivered event, a restarted projector or a rebuild queues nothing twice.
//!
//! A redemption whose actor is the customer was made in the WhatsApp conversation, and the
//! conversation's reply already carries the code: the projector queues nothing for it, so
//! one redemption is one message. (The conversation processor is the only writer of
//! customer-actor redemptions; the vendor API's carry the API key or user.)
//!
//! Events recorded longer ago than [`Notifications::age_max`] are not notified: a consumer
//! created on an installation with history (or a long outage) must not send last month's
//! receipts.

pub mod reminders;

use chrono::Utc;
use deadpool_postgres::Transaction;
use ledger_core::aggregate::Aggregate;
use ledger_core::conversation::render;
use ledger_core::conversation::OutgoingMessage;
use ledger_core::events::Actor;
use ledger_core::{CustomerId, CustomerState, Event, StreamId, TenantId};
use projections::runner::{Projection, ProjectionError};
use schema::store::RecordedEvent;
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;
use vault::{SealedRecord, Vault};

/// Durable consumer and checkpoint name of the projector.
pub const NAME: &str = "notifications";
/// Event types the projector reads; every other event is passed over undecoded.
const NOTIFIED_TYPES: [&str; 7] = [
    "TierChanged",
    "PointsEarned",
    "RewardRedeemed",
    "RedemptionFulfilled",
    "RewardHeld",
    "HoldFulfilled",
    "HoldReleased",
];

pub struct Notifications {
    pub vault: Arc<Vault>,
    /// Events recorded longer ago than this are not notified.
    pub age_max: chrono::Duration,
}

impl Notifications {
    pub fn new(vault: Arc<Vault>) -> Self {
        Notifications {
            vault,
            age_max: chrono::Duration::hours(24),
        }
    }
}

/// A customer's WhatsApp link: where notifications go and the sealed wa_id.
pub(crate) struct Member {
    pub customer_digest: Vec<u8>,
    pub phone_number_id: String,
    pub sealed_wa_id: SealedRecord,
}

impl Projection for Notifications {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn apply(
        &self,
        transaction: &Transaction<'_>,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let oldest = Utc::now() - self.age_max;
        let mut by_customer: Vec<((TenantId, CustomerId), Vec<&RecordedEvent>)> = Vec::new();
        for event in events {
            if !NOTIFIED_TYPES.contains(&event.event_type.as_str()) || event.recorded_at < oldest {
                continue;
            }
            let Ok(StreamId::Customer(customer)) = StreamId::parse(&event.stream_id) else {
                continue;
            };
            let key = (event.tenant_id, customer);
            match by_customer.iter_mut().find(|(k, _)| *k == key) {
                Some((_, group)) => group.push(event),
                None => by_customer.push((key, vec![event])),
            }
        }
        let keys: Vec<(TenantId, CustomerId)> = by_customer.iter().map(|(k, _)| *k).collect();
        let members = members(&**transaction, &keys).await?;
        let mut vendor_names = VendorNames::default();
        let mut queued_any = false;
        for ((tenant, customer), wanted) in by_customer {
            let Some(member) = members.get(&(tenant, customer)) else {
                continue;
            };
            let messages = self.messages(transaction, customer, &wanted).await?;
            if messages.is_empty() {
                continue;
            }
            let vendor = vendor_names.get(&**transaction, tenant).await?;
            for (event_id, message) in messages {
                let body = message.render(&vendor);
                let dedupe_key = format!("notify:{event_id}");
                let queued = queue(
                    &**transaction,
                    &self.vault,
                    &dedupe_key,
                    tenant,
                    member,
                    &body,
                )
                .await?;
                queued_any |= matches!(queued, Queued::New(_));
            }
        }
        if queued_any {
            // Wakes the notifier when this batch's transaction commits.
            transaction
                .execute(schema::wake::NOTIFY_OUTBOX_SQL, &[])
                .await?;
        }
        Ok(())
    }

    /// Nothing to empty: the queued messages are the outbox's, and a rebuild queues nothing
    /// twice (dedupe keys; old events are past `age_max`).
    async fn reset(&self, _transaction: &Transaction<'_>) -> Result<(), ProjectionError> {
        Ok(())
    }
}

/// What one event tells the customer, before the vendor's name is known.
enum Notice {
    Earned {
        points: ledger_core::Points,
        balance: ledger_core::Points,
    },
    Redeemed {
        reward: String,
        points: ledger_core::Points,
        code: String,
        balance: ledger_core::Points,
    },
    EarnedPending {
        points: ledger_core::Points,
        until: chrono::NaiveDate,
        balance: ledger_core::Points,
    },
    Fulfilled {
        reward: String,
    },
    Released {
        reward: String,
        points: ledger_core::Points,
        expired: bool,
        balance: ledger_core::Points,
    },
    Tier {
        name: String,
        upgrade: bool,
    },
}

impl Notice {
    fn render(&self, vendor: &str) -> OutgoingMessage {
        match self {
            Notice::Earned { points, balance } => render::render_earned(vendor, *points, *balance),
            Notice::Redeemed {
                reward,
                points,
                code,
                balance,
            } => render::render_redemption_receipt(reward, *points, code, *balance),
            Notice::EarnedPending {
                points,
                until,
                balance,
            } => render::render_earned_pending(vendor, *points, *until, *balance),
            Notice::Fulfilled { reward } => render::render_fulfilled(reward),
            Notice::Released {
                reward,
                points,
                expired,
                balance,
            } => render::render_hold_released(reward, *points, *expired, *balance),
            Notice::Tier { name, upgrade } => render::render_tier_changed(vendor, name, *upgrade),
        }
    }
}

impl Notifications {
    /// The notices for `wanted` (events of one customer's stream), folding the stream from
    /// its start up to the newest of them so each balance is the one right after its event.
    async fn messages(
        &self,
        transaction: &Transaction<'_>,
        customer: CustomerId,
        wanted: &[&RecordedEvent],
    ) -> Result<Vec<(Uuid, Notice)>, ProjectionError> {
        let Some(newest) = wanted.iter().map(|e| e.version).max() else {
            return Ok(Vec::new());
        };
        // One event past the newest wanted: a `PointsEarned` is followed, in the same
        // decision, by its `PointsPending` when the tenant has a return window.
        let stream = schema::store::read_stream(
            &**transaction,
            StreamId::Customer(customer),
            0,
            i64::from(newest) + 1,
        )
        .await?;
        let decoded = stream
            .iter()
            .map(|recorded| Ok((recorded, recorded.decode()?)))
            .collect::<Result<Vec<_>, ProjectionError>>()?;
        let mut state = CustomerState::default();
        let mut rewards: HashMap<ledger_core::RedemptionId, String> = HashMap::new();
        let mut notices = Vec::new();
        // What the customer can spend: the receipts' "Balance".
        let available =
            |state: &CustomerState| ledger_core::Points::new(state.available().value().max(0));
        for (index, (recorded, event)) in decoded.iter().enumerate() {
            state.apply(event);
            match event {
                Event::RewardRedeemed(e) => {
                    rewards.insert(e.redemption_id, e.description.clone());
                }
                Event::RewardHeld(e) => {
                    rewards.insert(e.redemption_id, e.description.clone());
                }
                _ => {}
            }
            if !wanted.iter().any(|w| w.version == recorded.version) {
                continue;
            }
            let notice = match event {
                Event::PointsEarned(e) => match decoded.get(index + 1) {
                    Some((_, Event::PointsPending(p))) if p.lot_id == e.lot_id => {
                        Notice::EarnedPending {
                            points: e.points,
                            until: p.pending_until.date_naive(),
                            // The state after the pending event: without these points.
                            balance: ledger_core::Points::new(
                                available(&state).value() - p.points.value(),
                            ),
                        }
                    }
                    _ => Notice::Earned {
                        points: e.points,
                        balance: available(&state),
                    },
                },
                Event::RewardHeld(e) => {
                    if matches!(recorded.decode_metadata()?.actor, Actor::Customer(_)) {
                        // Held in the conversation, whose reply carries the code.
                        continue;
                    }
                    Notice::Redeemed {
                        reward: e.description.clone(),
                        points: e.points,
                        code: e.code.clone(),
                        balance: available(&state),
                    }
                }
                Event::HoldFulfilled(e) => Notice::Fulfilled {
                    reward: rewards.get(&e.redemption_id).cloned().unwrap_or_default(),
                },
                Event::TierChanged(e) => Notice::Tier {
                    name: e.to_name.clone(),
                    upgrade: e.direction == ledger_core::events::TierDirection::Upgrade,
                },
                Event::HoldReleased(e) => Notice::Released {
                    reward: rewards.get(&e.redemption_id).cloned().unwrap_or_default(),
                    points: e.points,
                    expired: e.reason == ledger_core::events::HoldReleaseReason::Expired,
                    balance: available(&state),
                },
                Event::RewardRedeemed(e) => {
                    let Some(code) = &e.code else { continue };
                    if matches!(recorded.decode_metadata()?.actor, Actor::Customer(_)) {
                        // Redeemed in the conversation, whose reply carries the code.
                        continue;
                    }
                    Notice::Redeemed {
                        reward: e.description.clone(),
                        points: e.points,
                        code: code.clone(),
                        balance: available(&state),
                    }
                }
                Event::RedemptionFulfilled(e) => Notice::Fulfilled {
                    reward: rewards.get(&e.redemption_id).cloned().unwrap_or_default(),
                },
                _ => continue,
            };
            notices.push((recorded.event_id.as_uuid(), notice));
        }
        Ok(notices)
    }
}

/// The WhatsApp links of these customers, in one query (the projector asks for every
/// customer of a batch, most of whom have none).
pub(crate) async fn members(
    client: &impl tokio_postgres::GenericClient,
    customers: &[(TenantId, CustomerId)],
) -> Result<HashMap<(TenantId, CustomerId), Member>, tokio_postgres::Error> {
    if customers.is_empty() {
        return Ok(HashMap::new());
    }
    let tenants: Vec<Uuid> = customers.iter().map(|(t, _)| t.as_uuid()).collect();
    let ids: Vec<Uuid> = customers.iter().map(|(_, c)| c.as_uuid()).collect();
    let rows = client
        .query(
            "SELECT m.tenant_id, m.customer_id, m.customer_digest, m.phone_number_id, \
                    c.master_key_id, c.wrapped_key, c.sealed_wa_id \
             FROM unnest($1::uuid[], $2::uuid[]) AS w(tenant_id, customer_id) \
             JOIN whatsapp_members m \
               ON m.tenant_id = w.tenant_id AND m.customer_id = w.customer_id \
             JOIN whatsapp_conversations c USING (customer_digest, phone_number_id)",
            &[&tenants, &ids],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| {
            let key = (
                TenantId::from_uuid(row.get(0)),
                CustomerId::from_uuid(row.get(1)),
            );
            let member = Member {
                customer_digest: row.get(2),
                phone_number_id: row.get(3),
                sealed_wa_id: SealedRecord {
                    master_key_id: row.get(4),
                    wrapped_key: row.get(5),
                    sealed: row.get(6),
                },
            };
            (key, member)
        })
        .collect())
}

/// Vendors' display names, read from each tenant's stream once per batch or run.
#[derive(Default)]
pub(crate) struct VendorNames(HashMap<TenantId, String>);

impl VendorNames {
    pub(crate) async fn get(
        &mut self,
        client: &impl tokio_postgres::GenericClient,
        tenant: TenantId,
    ) -> Result<String, schema::StoreError> {
        if let Some(name) = self.0.get(&tenant) {
            return Ok(name.clone());
        }
        let state = schema::rewards::tenant_state(client, tenant).await?;
        let name = state.profile.map(|p| p.name).unwrap_or_default();
        self.0.insert(tenant, name.clone());
        Ok(name)
    }
}

/// What [`queue`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Queued {
    New(Uuid),
    /// A row with the dedupe key exists already.
    Duplicate,
    /// The recipient or body could not be prepared (logged).
    Skipped,
}

/// Queues `body` for `member` as a notification under `dedupe_key` (nothing if a row with
/// that key exists). A
/// recipient that cannot be opened or sealed (a vault misconfiguration) is logged without
/// content and skipped: the ledger is unaffected, and wedging every notification on one
/// row would be worse.
pub(crate) async fn queue(
    client: &impl tokio_postgres::GenericClient,
    vault: &Vault,
    dedupe_key: &str,
    tenant: TenantId,
    member: &Member,
    body: &OutgoingMessage,
) -> Result<Queued, tokio_postgres::Error> {
    let body = match serde_json::to_string(body) {
        Ok(body) => body,
        Err(error) => {
            tracing::error!(%dedupe_key, %error, "notification skipped: body");
            return Ok(Queued::Skipped);
        }
    };
    let row = OutboxRow {
        dedupe_key,
        tenant,
        kind: "notification",
        body_json: &body,
        broadcast_id: None,
    };
    queue_row(client, vault, member, &row).await
}

/// One `whatsapp_outbox` row to queue: the body is JSON of the kind's type
/// (`OutgoingMessage` for replies and notifications, `BroadcastTemplate` for broadcasts).
pub(crate) struct OutboxRow<'a> {
    pub dedupe_key: &'a str,
    pub tenant: TenantId,
    pub kind: &'static str,
    pub body_json: &'a str,
    pub broadcast_id: Option<Uuid>,
}

/// Queues `row` for `member`, the recipient opened from the conversation and sealed again
/// under the row's context; nothing if a row with the dedupe key exists.
pub(crate) async fn queue_row(
    client: &impl tokio_postgres::GenericClient,
    vault: &Vault,
    member: &Member,
    row: &OutboxRow<'_>,
) -> Result<Queued, tokio_postgres::Error> {
    let dedupe_key = row.dedupe_key;
    let digest: [u8; 32] = match member.customer_digest.as_slice().try_into() {
        Ok(digest) => digest,
        Err(_) => return Ok(Queued::Skipped),
    };
    let context = crate::conversations::conversation_seal_context(&digest, &member.phone_number_id);
    let recipient = match vault
        .open_record(&context, &member.sealed_wa_id)
        .map_err(|e| e.to_string())
        .and_then(|wa_id| {
            vault
                .seal_record(
                    &crate::conversations::outbox_seal_context(dedupe_key),
                    &wa_id,
                )
                .map_err(|e| e.to_string())
        }) {
        Ok(recipient) => recipient,
        Err(error) => {
            tracing::error!(%dedupe_key, %error, kind = row.kind, "message skipped: recipient unavailable");
            return Ok(Queued::Skipped);
        }
    };
    let message_id = Uuid::now_v7();
    let inserted = client
        .execute(
            "INSERT INTO whatsapp_outbox \
               (message_id, dedupe_key, tenant_id, phone_number_id, customer_digest, \
                master_key_id, wrapped_key, sealed_recipient, kind, body, broadcast_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::text::jsonb, $11) \
             ON CONFLICT (dedupe_key) DO NOTHING",
            &[
                &message_id,
                &dedupe_key,
                &row.tenant.as_uuid(),
                &member.phone_number_id,
                &member.customer_digest,
                &recipient.master_key_id,
                &recipient.wrapped_key,
                &recipient.sealed,
                &row.kind,
                &row.body_json,
                &row.broadcast_id,
            ],
        )
        .await?;
    Ok(if inserted == 1 {
        Queued::New(message_id)
    } else {
        Queued::Duplicate
    })
}
