//! The API's SQL of broadcasts (migration V9): create with the recipients resolved from the
//! segment, show with progress, list, and change state. Every function runs in a
//! transaction scoped to exactly one tenant (`tenancy::begin`): row-level security keeps
//! other tenants' broadcasts out, and the WhatsApp tables are reached only through V9's
//! definer functions, which take the tenant from that scope.
//!
//! Reading order: [`create`] (idempotency, then the segment's SQL in [`segment_predicate`]),
//! [`get`] / [`list`] (with [`Progress`]), [`change_state`].
//!
//! The feeder that moves recipients into the outbox is the platform's
//! (`loyalty::broadcasts`); this module never writes `whatsapp_outbox` but through the
//! withdraw and restore functions.

use chrono::{DateTime, Utc};
use ledger_core::broadcast::{
    BroadcastState, BroadcastTemplate, Segment, StateChange, StateChangeRefused,
};
use ledger_core::events::Actor;
use ledger_core::TenantId;
use std::collections::HashMap;
use tokio_postgres::types::ToSql;
use tokio_postgres::GenericClient;
use uuid::Uuid;

/// Advisory-lock namespace of a tenant's idempotency key (two identical requests at once
/// wait for each other instead of racing to the unique index).
const KEY_LOCK_NAMESPACE: i32 = 7_319_010;
/// The unique constraint that makes an idempotency key one broadcast per tenant.
pub const IDEMPOTENCY_CONSTRAINT: &str = "broadcasts_idempotency_key_unique";

/// A broadcast to create (already parsed: every part is valid).
pub struct NewBroadcast<'a> {
    pub broadcast_id: Uuid,
    pub tenant_id: TenantId,
    pub idempotency_key: &'a str,
    pub request_hash: [u8; 32],
    pub name: &'a str,
    pub segment: &'a Segment,
    pub template: &'a BroadcastTemplate,
    pub actor: &'a Actor,
    pub correlation_id: Uuid,
}

/// What [`create`] did.
#[derive(Debug)]
pub enum Created {
    /// A new broadcast, running.
    New(BroadcastView),
    /// The key was used before with the same request: that broadcast.
    Existing(BroadcastView),
    /// The key was used before with another request: nothing changed.
    KeyReused,
    /// The segment has more than the limit of recipients: nothing changed.
    TooManyRecipients { limit: i64 },
}

#[derive(Debug, thiserror::Error)]
pub enum BroadcastError {
    #[error(transparent)]
    Database(#[from] tokio_postgres::Error),
    /// A stored row that does not read back (a bug or a manual edit).
    #[error("stored broadcast {0} does not read back: {1}")]
    Corrupt(Uuid, String),
}

/// How far a broadcast has come. `sent`, `delivered` and `read` are cumulative (a read
/// message was also delivered and sent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// Every customer of the segment at creation: the fixed denominator.
    pub recipients: i64,
    pub skipped_opted_out: i64,
    pub skipped_no_whatsapp: i64,
    /// Not yet in the outbox (the feeder has not reached them).
    pub waiting: i64,
    /// In the outbox, in any state.
    pub enqueued: i64,
    /// In the outbox, not yet accepted by the Cloud API (queued or being sent).
    pub sending: i64,
    pub sent: i64,
    pub delivered: i64,
    pub read: i64,
    pub failed: i64,
    /// Withdrawn by a pause (sent after a resume) or a cancel (never sent).
    pub withdrawn: i64,
}

/// A broadcast as stored, with its progress.
#[derive(Debug, Clone)]
pub struct BroadcastView {
    pub broadcast_id: Uuid,
    pub name: String,
    pub segment: Segment,
    pub template: BroadcastTemplate,
    pub state: BroadcastState,
    pub created_by: Actor,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub progress: Progress,
}

fn actor_columns(actor: &Actor) -> (&'static str, Option<Uuid>) {
    match actor {
        Actor::User(id) => ("user", Some(*id)),
        Actor::ApiKey(id) => ("api_key", Some(*id)),
        Actor::Customer(_) | Actor::System(_) => ("system", None),
    }
}

fn actor_from_columns(kind: &str, id: Option<Uuid>) -> Actor {
    match (kind, id) {
        ("user", Some(id)) => Actor::User(id),
        ("api_key", Some(id)) => Actor::ApiKey(id),
        _ => Actor::System("broadcast".into()),
    }
}

/// The SQL condition selecting `segment`'s customers from the `universe` CTE of
/// [`insert_recipients`] (`opted_in` NULL for a customer with no WhatsApp link; `balance`,
/// `held`, `tier`, `enrolled_at`, `birth_month` from the balances read model) and its parameters, numbered from `$4`.
/// Dates are UTC days.
fn segment_predicate(
    segment: &Segment,
    at: DateTime<Utc>,
) -> (&'static str, Vec<Box<dyn ToSql + Sync + Send>>) {
    match segment {
        Segment::AllOptedIn => ("u.opted_in IS NOT NULL", Vec::new()),
        Segment::InactiveDays { days } => {
            let since = at - chrono::Duration::days(i64::from(*days));
            (
                "u.enrolled_at <= $4 \
                 AND NOT EXISTS (SELECT 1 FROM events e \
                     WHERE e.stream_id = 'customer-' || u.customer_id::text \
                       AND e.event_type = 'PurchaseLogged' AND e.recorded_at > $4)",
                vec![Box::new(since)],
            )
        }
        // What the customer can spend: held points are promised to a reward already.
        Segment::BalanceAtLeast { points } => ("u.balance - u.held >= $4", vec![Box::new(*points)]),
        Segment::Tier {
            tier,
            includes_untiered,
        } => (
            "(u.tier = $4 OR ($5 AND u.tier IS NULL AND u.enrolled_at IS NOT NULL))",
            vec![Box::new(tier.clone()), Box::new(*includes_untiered)],
        ),
        Segment::BirthdayMonth { month } => {
            ("u.birth_month = $4", vec![Box::new(i16::from(*month))])
        }
        Segment::JoinedBetween { from, to } => {
            let utc = |date: chrono::NaiveDate| date.and_time(chrono::NaiveTime::MIN).and_utc();
            let after_to = to.succ_opt().map_or(DateTime::<Utc>::MAX_UTC, utc);
            (
                "u.enrolled_at >= $4 AND u.enrolled_at < $5",
                vec![Box::new(utc(*from)), Box::new(after_to)],
            )
        }
    }
}

/// Creates a broadcast and resolves its recipients, or returns the broadcast the key was
/// first used for. At most `recipients_max` recipients; more refuse the broadcast.
#[tracing::instrument(skip_all, fields(tenant_id = %new.tenant_id, broadcast_id = %new.broadcast_id))]
pub async fn create(
    transaction: &impl GenericClient,
    new: &NewBroadcast<'_>,
    at: DateTime<Utc>,
    recipients_max: i64,
) -> Result<Created, BroadcastError> {
    let tenant = new.tenant_id.as_uuid();
    transaction
        .execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2::uuid::text || ':' || $3))",
            &[&KEY_LOCK_NAMESPACE, &tenant, &new.idempotency_key],
        )
        .await?;
    if let Some(row) = transaction
        .query_opt(
            "SELECT broadcast_id, request_hash FROM broadcasts \
             WHERE tenant_id = $1 AND idempotency_key = $2",
            &[&tenant, &new.idempotency_key],
        )
        .await?
    {
        let existing: Uuid = row.get(0);
        let hash: &[u8] = row.get(1);
        if hash != new.request_hash.as_slice() {
            return Ok(Created::KeyReused);
        }
        return match get(transaction, existing).await? {
            Some(view) => Ok(Created::Existing(view)),
            None => Err(BroadcastError::Corrupt(existing, "vanished".into())),
        };
    }
    let (actor_kind, actor_id) = actor_columns(new.actor);
    let segment = serde_json::to_string(new.segment)
        .map_err(|e| BroadcastError::Corrupt(new.broadcast_id, e.to_string()))?;
    let template = serde_json::to_string(new.template)
        .map_err(|e| BroadcastError::Corrupt(new.broadcast_id, e.to_string()))?;
    transaction
        .execute(
            "INSERT INTO broadcasts (broadcast_id, tenant_id, idempotency_key, request_hash, \
                 name, segment, template, created_by_kind, created_by_id, correlation_id, \
                 created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6::text::jsonb, $7::text::jsonb, $8, $9, $10, $11, $11)",
            &[
                &new.broadcast_id,
                &tenant,
                &new.idempotency_key,
                &new.request_hash.as_slice(),
                &new.name,
                &segment,
                &template,
                &actor_kind,
                &actor_id,
                &new.correlation_id,
                &at,
            ],
        )
        .await?;
    let inserted = insert_recipients(transaction, new, at, recipients_max).await?;
    if inserted > recipients_max {
        return Ok(Created::TooManyRecipients {
            limit: recipients_max,
        });
    }
    match get(transaction, new.broadcast_id).await? {
        Some(view) => Ok(Created::New(view)),
        None => Err(BroadcastError::Corrupt(
            new.broadcast_id,
            "not inserted".into(),
        )),
    }
}

/// The segment's customers, each `queued` or skipped by reason, in one statement. The
/// universe is the tenant's customers of the balances read model (erased ones left out)
/// together with its WhatsApp members (a member the read model has not caught up with yet
/// still counts for `all_opted_in`). Returns how many rows were inserted (at most
/// `recipients_max + 1`, so the caller can tell the segment was too large).
async fn insert_recipients(
    transaction: &impl GenericClient,
    new: &NewBroadcast<'_>,
    at: DateTime<Utc>,
    recipients_max: i64,
) -> Result<i64, tokio_postgres::Error> {
    let (predicate, extra) = segment_predicate(new.segment, at);
    let sql = format!(
        "WITH audience AS (SELECT customer_id, opted_in FROM tenancy.broadcast_audience()), \
         universe AS ( \
           SELECT coalesce(b.customer_id, a.customer_id) AS customer_id, a.opted_in, \
                  b.balance, b.held, b.tier, b.enrolled_at, b.erased_at, b.birth_month \
             FROM (SELECT customer_id, balance, held, tier, enrolled_at, erased_at, birth_month \
                     FROM projection.customer_balances WHERE tenant_id = $2) b \
             FULL JOIN audience a ON a.customer_id = b.customer_id) \
         INSERT INTO broadcast_recipients (broadcast_id, customer_id, tenant_id, state) \
         SELECT $1, u.customer_id, $2, \
                CASE WHEN u.opted_in IS NULL THEN 'skipped_no_whatsapp' \
                     WHEN NOT u.opted_in THEN 'skipped_opted_out' ELSE 'queued' END \
           FROM universe u \
          WHERE u.erased_at IS NULL AND ({predicate}) \
          ORDER BY u.customer_id \
          LIMIT $3"
    );
    let tenant = new.tenant_id.as_uuid();
    let limit = recipients_max.saturating_add(1);
    let mut parameters: Vec<&(dyn ToSql + Sync)> = vec![&new.broadcast_id, &tenant, &limit];
    parameters.extend(extra.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)));
    let inserted = transaction.execute(&sql, &parameters).await?;
    Ok(i64::try_from(inserted).unwrap_or(i64::MAX))
}

/// One broadcast of the scope's tenant, or `None` (unknown or another tenant's).
pub async fn get(
    client: &impl GenericClient,
    broadcast_id: Uuid,
) -> Result<Option<BroadcastView>, BroadcastError> {
    let rows = client
        .query(
            &format!("{SELECT_BROADCASTS} WHERE broadcast_id = $1"),
            &[&broadcast_id],
        )
        .await?;
    Ok(views(client, &rows).await?.pop())
}

/// The scope's tenant's broadcasts, newest first, at most `limit`.
pub async fn list(
    client: &impl GenericClient,
    limit: i64,
) -> Result<Vec<BroadcastView>, BroadcastError> {
    let rows = client
        .query(
            &format!("{SELECT_BROADCASTS} ORDER BY created_at DESC, broadcast_id DESC LIMIT $1"),
            &[&limit],
        )
        .await?;
    views(client, &rows).await
}

const SELECT_BROADCASTS: &str = "SELECT broadcast_id, name, segment::text, template::text, state, \
     created_by_kind, created_by_id, created_at, updated_at, completed_at FROM broadcasts";

async fn views(
    client: &impl GenericClient,
    rows: &[tokio_postgres::Row],
) -> Result<Vec<BroadcastView>, BroadcastError> {
    let ids: Vec<Uuid> = rows.iter().map(|row| row.get(0)).collect();
    let mut progress = progress(client, &ids).await?;
    rows.iter()
        .map(|row| {
            let broadcast_id: Uuid = row.get(0);
            let corrupt = |e: String| BroadcastError::Corrupt(broadcast_id, e);
            let segment: Segment =
                serde_json::from_str(row.get::<_, &str>(2)).map_err(|e| corrupt(e.to_string()))?;
            let template: BroadcastTemplate =
                serde_json::from_str(row.get::<_, &str>(3)).map_err(|e| corrupt(e.to_string()))?;
            let state = BroadcastState::parse(row.get::<_, &str>(4))
                .ok_or_else(|| corrupt("state".into()))?;
            Ok(BroadcastView {
                broadcast_id,
                name: row.get(1),
                segment,
                template,
                state,
                created_by: actor_from_columns(row.get(5), row.get(6)),
                created_at: row.get(7),
                updated_at: row.get(8),
                completed_at: row.get(9),
                progress: progress.remove(&broadcast_id).unwrap_or_default(),
            })
        })
        .collect()
}

/// The progress of these broadcasts: recipients by state, outbox rows by state.
async fn progress(
    client: &impl GenericClient,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Progress>, tokio_postgres::Error> {
    let mut progress: HashMap<Uuid, Progress> = HashMap::new();
    if ids.is_empty() {
        return Ok(progress);
    }
    let recipients = client
        .query(
            "SELECT broadcast_id, state, count(*) FROM broadcast_recipients \
             WHERE broadcast_id = ANY($1) GROUP BY broadcast_id, state",
            &[&ids],
        )
        .await?;
    for row in &recipients {
        let entry = progress.entry(row.get(0)).or_default();
        let count: i64 = row.get(2);
        entry.recipients += count;
        match row.get::<_, &str>(1) {
            "queued" => entry.waiting += count,
            "skipped_opted_out" => entry.skipped_opted_out += count,
            "skipped_no_whatsapp" => entry.skipped_no_whatsapp += count,
            _ => {}
        }
    }
    let outbox = client
        .query(
            "SELECT broadcast_id, state, messages FROM tenancy.broadcast_outbox_counts($1)",
            &[&ids],
        )
        .await?;
    for row in &outbox {
        let entry = progress.entry(row.get(0)).or_default();
        let count: i64 = row.get(2);
        entry.enqueued += count;
        match row.get::<_, &str>(1) {
            "queued" | "sending" => entry.sending += count,
            "sent" => entry.sent += count,
            "delivered" => {
                entry.sent += count;
                entry.delivered += count;
            }
            "read" => {
                entry.sent += count;
                entry.delivered += count;
                entry.read += count;
            }
            "failed" => entry.failed += count,
            "withdrawn" => entry.withdrawn += count,
            _ => {}
        }
    }
    Ok(progress)
}

/// What [`change_state`] did.
#[derive(Debug)]
pub enum Changed {
    /// The broadcast after the change (unchanged when it was already in that state).
    Done(Box<BroadcastView>),
    NotFound,
    Refused(StateChangeRefused),
}

/// Pauses, resumes or cancels one broadcast of the scope's tenant. The row is locked first,
/// so a feeder run that is filling the outbox for it finishes before this withdraws (and a
/// run after this sees the new state). Pausing and cancelling withdraw the rows no notifier
/// has claimed; resuming queues them again.
#[tracing::instrument(skip_all, fields(%broadcast_id, ?change))]
pub async fn change_state(
    transaction: &impl GenericClient,
    broadcast_id: Uuid,
    change: StateChange,
) -> Result<Changed, BroadcastError> {
    let Some(row) = transaction
        .query_opt(
            "SELECT state FROM broadcasts WHERE broadcast_id = $1 FOR UPDATE",
            &[&broadcast_id],
        )
        .await?
    else {
        return Ok(Changed::NotFound);
    };
    let current = BroadcastState::parse(row.get::<_, &str>(0))
        .ok_or_else(|| BroadcastError::Corrupt(broadcast_id, "state".into()))?;
    let next = match current.apply(change) {
        Ok(next) => next,
        Err(refused) => return Ok(Changed::Refused(refused)),
    };
    if next != current {
        transaction
            .execute(
                "UPDATE broadcasts SET state = $2, updated_at = now() WHERE broadcast_id = $1",
                &[&broadcast_id, &next.as_str()],
            )
            .await?;
    }
    match next {
        BroadcastState::Paused | BroadcastState::Cancelled => {
            transaction
                .execute(
                    "SELECT tenancy.broadcast_outbox_withdraw($1)",
                    &[&broadcast_id],
                )
                .await?;
        }
        BroadcastState::Running => {
            transaction
                .execute(
                    "SELECT tenancy.broadcast_outbox_restore($1)",
                    &[&broadcast_id],
                )
                .await?;
        }
        BroadcastState::Completed => {}
    }
    match get(transaction, broadcast_id).await? {
        Some(view) => Ok(Changed::Done(Box::new(view))),
        None => Ok(Changed::NotFound),
    }
}

/// One recipient of a broadcast and where its message is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientView {
    pub customer_id: Uuid,
    /// `waiting` (not yet handed to the notifier), `enqueued`, `skipped_opted_out` or
    /// `skipped_no_whatsapp`.
    pub state: &'static str,
    /// The outbox row's state once enqueued (`queued`, `sending`, `sent`, `delivered`,
    /// `read`, `failed`, `withdrawn`).
    pub message_state: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// A page of a broadcast's recipients by customer id (after `after`, at most `limit`), or
/// `None` when the scope's tenant has no such broadcast.
pub async fn recipients(
    client: &impl GenericClient,
    broadcast_id: Uuid,
    after: Uuid,
    limit: i64,
) -> Result<Option<Vec<RecipientView>>, BroadcastError> {
    let exists = client
        .query_opt(
            "SELECT 1 FROM broadcasts WHERE broadcast_id = $1",
            &[&broadcast_id],
        )
        .await?
        .is_some();
    if !exists {
        return Ok(None);
    }
    let rows = client
        .query(
            "SELECT customer_id, state, dedupe_key, updated_at FROM broadcast_recipients \
             WHERE broadcast_id = $1 AND customer_id > $2 ORDER BY customer_id LIMIT $3",
            &[&broadcast_id, &after, &limit],
        )
        .await?;
    let keys: Vec<String> = rows
        .iter()
        .filter_map(|row| row.get::<_, Option<String>>(2))
        .collect();
    let states: HashMap<String, String> = client
        .query(
            "SELECT dedupe_key, state FROM tenancy.broadcast_message_states($1)",
            &[&keys],
        )
        .await?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    rows.iter()
        .map(|row| {
            let state = match row.get::<_, &str>(1) {
                "queued" => "waiting",
                "enqueued" => "enqueued",
                "skipped_opted_out" => "skipped_opted_out",
                "skipped_no_whatsapp" => "skipped_no_whatsapp",
                other => {
                    return Err(BroadcastError::Corrupt(
                        broadcast_id,
                        format!("recipient state {other}"),
                    ))
                }
            };
            let dedupe_key: Option<String> = row.get(2);
            Ok(RecipientView {
                customer_id: row.get(0),
                state,
                message_state: dedupe_key.and_then(|key| states.get(&key).cloned()),
                updated_at: row.get(3),
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}
