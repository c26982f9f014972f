//! The conversation processor: tails the WhatsApp inbox, routes each inbound message to a
//! tenant, steps the pure conversation machine (`ledger_core::conversation`), executes its
//! effects and queues the replies in `whatsapp_outbox` for the notifier.
//!
//! Reading order: [`run`] (leadership, the loop), [`Processor::process`] (one inbox item:
//! open, route, load, step, effects, store), [`ledger`] (the commands and reads that need
//! the ledger). The tables are `V5__whatsapp_conversations.sql`'s.
//!
//! # Routing
//!
//! `whatsapp_numbers` maps a `phone_number_id` to a tenant (the tenant's own number) or to
//! NULL (the platform's shared number, seeded at start from the settings). A number that is
//! not in the table is never routed: the item is skipped, logged without content. On the
//! shared number the tenant is the conversation's current vendor, joined by vendor code.
//!
//! # Exactly once
//!
//! An inbox row is unique per wamid (the ingest's `dedupe_key`), however often Meta delivers
//! it. For each row, in this order:
//!
//! 1. ledger commands (enrolment, redemption) go through the group-commit writer with an
//!    idempotency key derived from the row (`wa:<dedupe key>:enrol|redeem`) and a request hash
//!    of what the customer asked; the reply is rendered from the writer's answer;
//! 2. ONE platform transaction stores the new conversation state, the member rows, the
//!    replies (`whatsapp_outbox`, `dedupe_key` `reply:<dedupe key>:<n>`, `ON CONFLICT DO
//!    NOTHING`) and advances the cursor past the row.
//!
//! A crash between 1 and 2 leaves the cursor before the row: the row is processed again from
//! the same stored state, so `step` asks for the same commands, the writer replays their
//! stored answers (the same customer, the same redemption code; nothing is written twice)
//! and the replies are the same. A crash after 2 never sees the row again. A reply therefore
//! is queued once and a command takes effect once; the only repeat is harmless reads. (If a
//! redemption's reward is retired between the crash and the replay, the replay still
//! answers with the stored code: the key, not the catalogue, decides.)
//!
//! One processor leads (a session advisory lock), so rows are handled in inbox order and a
//! customer's messages one after the other. Transient failures (database, writer) retry the
//! same row with backoff; a row that can never succeed (undecryptable, no sender, a corrupt
//! stored answer) is logged without content and skipped.

pub mod ledger;

use chrono::{DateTime, TimeZone, Utc};
use deadpool_postgres::Object;
use ledger::LedgerError;
use ledger_core::conversation::render::{self, PointsFacts, RewardsFacts};
use ledger_core::conversation::{
    self, Context, ConversationState, Effect, Inbound, Input, MarketingPreference, OutgoingMessage,
    Routing, Vendor,
};
use ledger_core::{CustomerId, TenantId};
use projections::Shutdown;
use schema::inbox::{InboxKind, InboxPosition, InboxRow};
use schema::writer::WriterHandle;
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;
use vault::{SealedRecord, Vault};

/// Name of the processor's row in `whatsapp_inbox_cursors`.
pub const CURSOR_NAME: &str = "conversations";
/// `keyed_digest` purpose of a customer's wa_id: `whatsapp_conversations.customer_digest`.
pub const CUSTOMER_DIGEST_PURPOSE: &str = "wa-customer";
/// Days ahead POINTS counts as "expiring soon".
pub const EXPIRY_WINDOW_DAYS: u32 = 30;
/// Advisory-lock key of the processor's leadership.
const LEADER_LOCK_KEY: i64 = 7_319_004;
/// Longest profile name kept for an enrolment.
const PROFILE_NAME_CHARS_MAX: usize = 100;

/// The context a reply's recipient is sealed under: the table and the row's dedupe key
/// (as the inbox does), so the notifier opens it with the same two facts.
pub fn outbox_seal_context(dedupe_key: &str) -> Vec<u8> {
    [b"whatsapp_outbox\0".as_slice(), dedupe_key.as_bytes()].concat()
}

/// The context a conversation's sealed wa_id is under: the table and its primary key.
pub fn conversation_seal_context(customer_digest: &[u8; 32], phone_number_id: &str) -> Vec<u8> {
    [
        b"whatsapp_conversations\0".as_slice(),
        customer_digest.as_slice(),
        b"\0",
        phone_number_id.as_bytes(),
    ]
    .concat()
}

/// Registers `phone_number_id` as `tenant`'s own number (messages to it go to that tenant,
/// and its first message enrols the sender) **without an access token**: the notifier sends
/// nothing from it until an owner sets one with `PUT /v1/whatsapp/number`. Returns `false`,
/// changing nothing, when the number is already the shared number or another tenant's: a
/// number is never moved between tenants silently. The SQL is
/// `schema::whatsapp_numbers::register_without_token`; the vendor API uses
/// `schema::whatsapp_numbers::put`.
pub async fn register_own_number(
    platform_pool: &schema::Pool,
    tenant: TenantId,
    phone_number_id: &str,
    display_phone_number: &str,
) -> Result<bool, ProcessError> {
    let client = platform_pool.get().await?;
    Ok(schema::whatsapp_numbers::register_without_token(
        &**client,
        tenant,
        phone_number_id,
        display_phone_number,
    )
    .await?)
}

#[derive(Debug, Clone)]
pub struct ProcessorSettings {
    /// The platform's shared number (`metadata.phone_number_id`), seeded into
    /// `whatsapp_numbers` with no tenant.
    pub shared_phone_number_id: String,
    /// Its digits, as webhooks show them (`display_phone_number`).
    pub shared_display_number: String,
    /// A menu position older than this goes back to the start.
    pub inactivity_timeout: chrono::Duration,
    pub batch_size_max: i64,
    /// How often to look at the inbox when idle.
    pub poll_interval: Duration,
    pub retry_delay_max: Duration,
}

impl ProcessorSettings {
    pub fn new(shared_phone_number_id: String, shared_display_number: String) -> Self {
        Self {
            shared_phone_number_id,
            shared_display_number,
            inactivity_timeout: chrono::Duration::minutes(
                conversation::INACTIVITY_TIMEOUT_DEFAULT_MINUTES,
            ),
            batch_size_max: 100,
            poll_interval: Duration::from_millis(50),
            retry_delay_max: Duration::from_secs(5),
        }
    }
}

/// Everything the processor needs: the vault (open the inbox, seal recipients, digests),
/// the writer (commands), the tenant-scoped pool (reads, vendor codes) and the platform pool
/// (inbox, conversations, outbox).
pub struct Processor {
    pub pool: schema::Pool,
    pub platform_pool: schema::Pool,
    pub writer: WriterHandle,
    pub vault: Arc<Vault>,
    pub settings: ProcessorSettings,
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("no database connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
}

/// Runs until `shutdown`: one leader at a time, retrying with backoff on failures.
pub async fn run(processor: Arc<Processor>, mut shutdown: Shutdown) {
    let mut delay = Duration::from_millis(100);
    let mut stop = shutdown.clone();
    while !*shutdown.borrow() {
        // Stopping may cut an item short at any await: safe, because the cursor moves only
        // in the item's final transaction and the ledger commands are idempotent.
        let led = tokio::select! {
            led = processor.lead(&mut shutdown) => led,
            _ = projections::stopped(&mut stop) => return,
        };
        match led {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "conversation processor interrupted");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = projections::stopped(&mut shutdown) => return,
                }
                delay = (delay * 2).min(processor.settings.retry_delay_max);
            }
        }
    }
}

/// What one item came to, for the loop and the tests' logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handled {
    Processed { replies: usize },
    Skipped(&'static str),
}

impl Processor {
    async fn lead(&self, shutdown: &mut Shutdown) -> Result<(), ProcessError> {
        // The lock lives as long as this session: the connection leaves the pool, so losing
        // it releases the lock instead of returning a lock-holding connection.
        let mut session = Object::take(self.platform_pool.get().await?);
        loop {
            let row = session
                .query_one("SELECT pg_try_advisory_lock($1)", &[&LEADER_LOCK_KEY])
                .await?;
            if row.try_get::<_, bool>(0)? {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = projections::stopped(shutdown) => return Ok(()),
            }
        }
        tracing::info!("conversation processor is the leader");
        self.seed_shared_number(&session).await?;
        let mut cursor = load_cursor(&session).await?;
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            let batch =
                schema::inbox::read_after(&*session, cursor, self.settings.batch_size_max).await?;
            if batch.is_empty() {
                tokio::select! {
                    _ = tokio::time::sleep(self.settings.poll_interval) => {}
                    _ = projections::stopped(shutdown) => return Ok(()),
                }
                continue;
            }
            // Rows with nothing to write (delivery statuses, most of the inbox under load)
            // do not each get a commit: the cursor moves past them with the next row that
            // has work, or once at the end of the batch. Re-reading them after a crash only
            // skips them again.
            let mut skipped_since_store = 0;
            for row in &batch {
                let work = match self.process(row).await {
                    Ok(work) => work,
                    Err(ProcessError::Ledger(LedgerError::Permanent(reason))) => {
                        tracing::error!(inbox_id = row.position.inbox_id, %reason, "inbox item skipped");
                        Work::skipped("permanent failure")
                    }
                    Err(error) => return Err(error),
                };
                let handled = work.handled;
                if work.conversation.is_some() {
                    self.store(&mut session, row.position, work, skipped_since_store + 1)
                        .await?;
                    skipped_since_store = 0;
                } else {
                    skipped_since_store += 1;
                }
                tracing::debug!(
                    inbox_id = row.position.inbox_id,
                    ?handled,
                    "inbox item handled"
                );
                cursor = row.position;
            }
            if skipped_since_store > 0 {
                self.store(
                    &mut session,
                    cursor,
                    Work::skipped("nothing to write"),
                    skipped_since_store,
                )
                .await?;
            }
        }
    }

    /// Registers the shared number (no tenant); never takes a number a tenant owns.
    async fn seed_shared_number(
        &self,
        client: &tokio_postgres::Client,
    ) -> Result<(), ProcessError> {
        client
            .execute(
                "INSERT INTO whatsapp_numbers (phone_number_id, tenant_id, display_phone_number) \
                 VALUES ($1, NULL, $2) \
                 ON CONFLICT (phone_number_id) DO UPDATE \
                   SET display_phone_number = EXCLUDED.display_phone_number \
                   WHERE whatsapp_numbers.tenant_id IS NULL",
                &[
                    &self.settings.shared_phone_number_id,
                    &self.settings.shared_display_number,
                ],
            )
            .await?;
        Ok(())
    }

    /// One inbox item up to (not including) its final transaction.
    async fn process(&self, row: &InboxRow) -> Result<Work, ProcessError> {
        if !matches!(row.kind, InboxKind::Message | InboxKind::Preference) {
            return Ok(Work::skipped("not a customer message"));
        }
        let Some(phone_number_id) = row.phone_number_id.clone() else {
            return Ok(Work::skipped("no business number"));
        };
        let routing = match self.route(&phone_number_id).await? {
            Some(routing) => routing,
            None => {
                tracing::warn!(
                    inbox_id = row.position.inbox_id,
                    %phone_number_id,
                    "message to an unknown business number skipped"
                );
                return Ok(Work::skipped("unknown business number"));
            }
        };
        let content = self
            .vault
            .open_record(
                &schema::inbox::seal_context(&row.dedupe_key),
                &SealedRecord {
                    master_key_id: row.master_key_id.clone(),
                    wrapped_key: row.wrapped_key.clone(),
                    sealed: row.sealed.clone(),
                },
            )
            .map_err(|e| LedgerError::Permanent(format!("opening the inbox item: {e}")))?;
        let content: Value = serde_json::from_slice(&content)
            .map_err(|e| LedgerError::Permanent(format!("inbox item is not JSON: {e}")))?;
        let at_fallback = row.occurred_at.unwrap_or(row.received_at);
        let Some(sender) = Sender::of(row.kind, &content, at_fallback) else {
            return Ok(Work::skipped("no sender or input"));
        };
        let digest = self
            .vault
            .keyed_digest(CUSTOMER_DIGEST_PURPOSE, sender.wa_id.as_bytes());
        let state = self.load_state(&digest, &phone_number_id).await?;
        let context = Context {
            routing,
            inactivity_timeout: self.settings.inactivity_timeout,
        };
        let mut turn = Turn {
            processor: self,
            row,
            sender: &sender,
            digest,
            customers: HashMap::new(),
            members: Vec::new(),
            replies: Vec::new(),
        };
        let state = turn.run(state, &context).await?;
        let Turn {
            members, replies, ..
        } = turn;
        Ok(Work {
            handled: Handled::Processed {
                replies: replies.len(),
            },
            conversation: Some(ConversationWrite {
                digest,
                phone_number_id,
                wa_id: sender.wa_id,
                state,
                last_inbound_at: at_fallback,
                members,
                replies,
                dedupe_key: row.dedupe_key.clone(),
            }),
        })
    }

    /// `Some` routing for a known business number; `None` for an unknown one.
    async fn route(&self, phone_number_id: &str) -> Result<Option<Routing>, ProcessError> {
        let client = self.platform_pool.get().await?;
        let row = client
            .query_opt(
                "SELECT tenant_id FROM whatsapp_numbers WHERE phone_number_id = $1",
                &[&phone_number_id],
            )
            .await?;
        let Some(row) = row else { return Ok(None) };
        let Some(tenant) = row.get::<_, Option<Uuid>>(0).map(TenantId::from_uuid) else {
            return Ok(Some(Routing::SharedNumber));
        };
        let state = ledger::tenant(&self.pool, tenant).await?;
        Ok(state.profile.map(|profile| Routing::OwnNumber {
            vendor: Vendor::new(tenant, &profile.name),
        }))
    }

    async fn load_state(
        &self,
        digest: &[u8; 32],
        phone_number_id: &str,
    ) -> Result<ConversationState, ProcessError> {
        let client = self.platform_pool.get().await?;
        let row = client
            .query_opt(
                "SELECT state::text FROM whatsapp_conversations \
                 WHERE customer_digest = $1 AND phone_number_id = $2",
                &[&digest.as_slice(), &phone_number_id],
            )
            .await?;
        Ok(row
            .and_then(|row| {
                serde_json::from_str::<ConversationState>(row.get::<_, &str>(0))
                    .inspect_err(|error| {
                        tracing::error!(%error, "stored conversation state unreadable; starting over")
                    })
                    .ok()
            })
            .unwrap_or_default())
    }

    /// The item's one transaction: state, members, replies, cursor (moved to `position`,
    /// past `rows` inbox rows: this one and the skipped ones before it).
    async fn store(
        &self,
        session: &mut deadpool_postgres::ClientWrapper,
        position: InboxPosition,
        work: Work,
        rows: i64,
    ) -> Result<(), ProcessError> {
        let transaction = session.transaction().await?;
        if let Some(write) = work.conversation {
            self.write_conversation(&transaction, write).await?;
        }
        transaction
            .execute(
                "UPDATE whatsapp_inbox_cursors SET last_transaction_id = $2::text::xid8, \
                     last_inbox_id = $3, processed_total = processed_total + $4, updated_at = now() \
                 WHERE name = $1",
                &[
                    &CURSOR_NAME,
                    &position.transaction_id.to_string(),
                    &position.inbox_id,
                    &rows,
                ],
            )
            .await?;
        transaction.commit().await?;
        Ok(())
    }

    async fn write_conversation(
        &self,
        transaction: &deadpool_postgres::Transaction<'_>,
        write: ConversationWrite,
    ) -> Result<(), ProcessError> {
        let sealed = self
            .vault
            .seal_record(
                &conversation_seal_context(&write.digest, &write.phone_number_id),
                write.wa_id.as_bytes(),
            )
            .map_err(|e| LedgerError::Unavailable(format!("sealing: {e}")))?;
        let state = serde_json::to_string(&write.state)
            .map_err(|e| LedgerError::Permanent(format!("state to JSON: {e}")))?;
        transaction
            .execute(
                "INSERT INTO whatsapp_conversations AS c \
                   (customer_digest, phone_number_id, state, master_key_id, wrapped_key, \
                    sealed_wa_id, last_inbound_at) \
                 VALUES ($1, $2, $3::text::jsonb, $4, $5, $6, $7) \
                 ON CONFLICT (customer_digest, phone_number_id) DO UPDATE SET \
                   state = EXCLUDED.state, master_key_id = EXCLUDED.master_key_id, \
                   wrapped_key = EXCLUDED.wrapped_key, sealed_wa_id = EXCLUDED.sealed_wa_id, \
                   last_inbound_at = greatest(c.last_inbound_at, EXCLUDED.last_inbound_at), \
                   updated_at = now()",
                &[
                    &write.digest.as_slice(),
                    &write.phone_number_id,
                    &state,
                    &sealed.master_key_id,
                    &sealed.wrapped_key,
                    &sealed.sealed,
                    &write.last_inbound_at,
                ],
            )
            .await?;
        for (tenant, customer) in &write.members {
            transaction
                .execute(
                    "INSERT INTO whatsapp_members \
                       (tenant_id, customer_id, customer_digest, phone_number_id) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, customer_id) DO NOTHING",
                    &[
                        &tenant.as_uuid(),
                        &customer.as_uuid(),
                        &write.digest.as_slice(),
                        &write.phone_number_id,
                    ],
                )
                .await?;
        }
        let tenant = write.state.current().map(|v| v.tenant().as_uuid());
        for (n, reply) in write.replies.iter().enumerate() {
            let dedupe_key = format!("reply:{}:{n}", write.dedupe_key);
            let recipient = self
                .vault
                .seal_record(&outbox_seal_context(&dedupe_key), write.wa_id.as_bytes())
                .map_err(|e| LedgerError::Unavailable(format!("sealing: {e}")))?;
            let body = serde_json::to_string(reply)
                .map_err(|e| LedgerError::Permanent(format!("reply to JSON: {e}")))?;
            transaction
                .execute(
                    "INSERT INTO whatsapp_outbox \
                       (message_id, dedupe_key, tenant_id, phone_number_id, customer_digest, \
                        master_key_id, wrapped_key, sealed_recipient, kind, body) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'reply', $9::text::jsonb) \
                     ON CONFLICT (dedupe_key) DO NOTHING",
                    &[
                        &Uuid::now_v7(),
                        &dedupe_key,
                        &tenant,
                        &write.phone_number_id,
                        &write.digest.as_slice(),
                        &recipient.master_key_id,
                        &recipient.wrapped_key,
                        &recipient.sealed,
                        &body,
                    ],
                )
                .await?;
        }
        Ok(())
    }
}

async fn load_cursor(session: &tokio_postgres::Client) -> Result<InboxPosition, ProcessError> {
    session
        .execute(
            "INSERT INTO whatsapp_inbox_cursors (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
            &[&CURSOR_NAME],
        )
        .await?;
    let row = session
        .query_one(
            "SELECT last_transaction_id::text, last_inbox_id FROM whatsapp_inbox_cursors \
             WHERE name = $1",
            &[&CURSOR_NAME],
        )
        .await?;
    let transaction_id: String = row.try_get(0)?;
    Ok(InboxPosition {
        transaction_id: transaction_id.parse().unwrap_or(0),
        inbox_id: row.try_get(1)?,
    })
}

/// What an item's final transaction writes.
struct Work {
    handled: Handled,
    conversation: Option<ConversationWrite>,
}

impl Work {
    fn skipped(why: &'static str) -> Work {
        Work {
            handled: Handled::Skipped(why),
            conversation: None,
        }
    }
}

struct ConversationWrite {
    digest: [u8; 32],
    phone_number_id: String,
    wa_id: String,
    state: ConversationState,
    last_inbound_at: DateTime<Utc>,
    members: Vec<(TenantId, CustomerId)>,
    replies: Vec<OutgoingMessage>,
    dedupe_key: String,
}

/// Logs (without content) that an item names its sender only by a business-scoped user id
/// (BSUID, reference §3.6): customers are keyed by their WhatsApp number (enrolment, the
/// conversation, the outbox's recipient), so such an item stays stored in the inbox and is
/// not answered. Sending to a BSUID (`recipient`) needs customers keyed by BSUID first
/// (docs/WHATSAPP.md, Known gaps).
fn only_a_user_id(item: &Value, user_id_field: &str) {
    if item.get(user_id_field).is_some_and(|id| !id.is_null()) {
        tracing::info!(
            "an item from a business-scoped user id without a phone number: kept in the inbox, \
             not answered (replies to user ids are not supported yet)"
        );
    }
}

/// Who wrote and what, from an opened inbox item.
struct Sender {
    /// Digits only, as `from` / `wa_id` carry it.
    wa_id: String,
    profile_name: Option<String>,
    inbound: Inbound,
}

impl Sender {
    fn of(kind: InboxKind, content: &Value, at_fallback: DateTime<Utc>) -> Option<Sender> {
        let (item, wa_id, input) = match kind {
            InboxKind::Message => {
                let message = content.get("message")?;
                let Some(wa_id) = message.get("from").and_then(Value::as_str) else {
                    only_a_user_id(message, "from_user_id");
                    return None;
                };
                (message, wa_id, message_input(message)?)
            }
            InboxKind::Preference => {
                let preference = content.get("user_preference")?;
                let Some(wa_id) = preference.get("wa_id").and_then(Value::as_str) else {
                    only_a_user_id(preference, "user_id");
                    return None;
                };
                let marketing = match preference.get("value")?.as_str()? {
                    "stop" => MarketingPreference::OptOut,
                    "resume" => MarketingPreference::OptIn,
                    _ => return None,
                };
                (preference, wa_id, Input::Preference { marketing })
            }
            _ => return None,
        };
        if wa_id.is_empty() || wa_id.len() > 20 || !wa_id.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let at = timestamp(item).unwrap_or(at_fallback);
        let profile_name = content
            .get("contacts")
            .and_then(Value::as_array)
            .and_then(|contacts| {
                contacts
                    .iter()
                    .find(|c| c.get("wa_id").and_then(Value::as_str) == Some(wa_id))
                    .or_else(|| contacts.first())
            })
            .and_then(|c| c.pointer("/profile/name"))
            .and_then(Value::as_str)
            .map(|n| n.chars().take(PROFILE_NAME_CHARS_MAX).collect());
        Some(Sender {
            wa_id: wa_id.to_owned(),
            profile_name,
            inbound: Inbound { at, input },
        })
    }
}

fn timestamp(item: &Value) -> Option<DateTime<Utc>> {
    let raw = item.get("timestamp")?;
    let seconds = match raw {
        Value::String(s) => s.parse::<i64>().ok()?,
        Value::Number(n) => n.as_i64()?,
        _ => return None,
    };
    Utc.timestamp_opt(seconds, 0).single()
}

/// The machine's input for a message: text, a button or list tap, a template quick reply,
/// or the kind of anything else.
fn message_input(message: &Value) -> Option<Input> {
    let kind = message
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    let text = |pointer: &str| {
        message
            .pointer(pointer)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    Some(match kind {
        "text" => Input::Text {
            body: text("/text/body")?,
        },
        "interactive" => match message.pointer("/interactive/type").and_then(Value::as_str) {
            Some("button_reply") => Input::ButtonReply {
                id: text("/interactive/button_reply/id")?,
            },
            Some("list_reply") => Input::ListReply {
                id: text("/interactive/list_reply/id")?,
            },
            _ => Input::Unsupported {
                kind: "interactive".to_owned(),
            },
        },
        "button" => Input::QuickReply {
            payload: text("/button/payload").or_else(|| text("/button/text"))?,
        },
        other => Input::Unsupported {
            kind: other.chars().take(40).collect(),
        },
    })
}

/// One inbound item's effects, executed in order.
struct Turn<'a> {
    processor: &'a Processor,
    row: &'a InboxRow,
    sender: &'a Sender,
    digest: [u8; 32],
    /// Customers known in this turn (enrolled or looked up), by tenant.
    customers: HashMap<TenantId, CustomerId>,
    members: Vec<(TenantId, CustomerId)>,
    replies: Vec<OutgoingMessage>,
}

impl Turn<'_> {
    async fn run(
        &mut self,
        state: ConversationState,
        context: &Context,
    ) -> Result<ConversationState, ProcessError> {
        let first = conversation::step(&state, &self.sender.inbound, context);
        let mut state = first.state;
        let mut effects: VecDeque<Effect> = first.effects.into();
        while let Some(effect) = effects.pop_front() {
            match effect {
                Effect::ResolveVendor { query } => {
                    let vendor = self.resolve(query.code.as_str()).await?;
                    let inbound = Inbound {
                        at: self.sender.inbound.at,
                        input: Input::VendorResolved { query, vendor },
                    };
                    let next = conversation::step(&state, &inbound, context);
                    state = next.state;
                    for effect in next.effects.into_iter().rev() {
                        effects.push_front(effect);
                    }
                }
                Effect::EnrolCustomer { tenant } => {
                    let customer = self.enrol(tenant).await?;
                    self.members.push((tenant, customer));
                }
                Effect::ShowPoints { tenant } => {
                    let reply = self.points(&state, tenant).await?;
                    self.replies.push(reply);
                }
                Effect::ShowRewards { tenant, page } => {
                    let reply = self.rewards(&state, tenant, page).await?;
                    self.replies.push(reply);
                }
                Effect::AskConfirmation { tenant, reward } => {
                    let reply = self.confirmation(tenant, reward).await?;
                    self.replies.push(reply);
                }
                Effect::Redeem { tenant, reward } => {
                    let customer = self.customer(tenant).await?;
                    let outcome = ledger::redeem(
                        &self.processor.writer,
                        &self.processor.vault,
                        tenant,
                        customer,
                        reward,
                        format!("wa:{}:redeem", self.row.dedupe_key),
                    )
                    .await?;
                    self.replies.push(render::render_redeemed(&outcome));
                }
                Effect::ShowHistory { tenant } => {
                    let customer = self.customer(tenant).await?;
                    let facts = ledger::customer(&self.processor.pool, tenant, customer).await?;
                    let name = vendor_name(&state, tenant);
                    self.replies
                        .push(render::render_history(&name, &facts.history));
                }
                Effect::SetBroadcastOptIn { opted_in } => {
                    // The flag lives in the conversation state (stored below); the ledger
                    // has no opt-in event yet.
                    tracing::debug!(opted_in, "broadcast opt-in changed");
                }
                Effect::Reply(message) => self.replies.push(message),
            }
        }
        Ok(state)
    }

    /// The tenant whose vendor code is exactly `code` (already upper-case).
    async fn resolve(&self, code: &str) -> Result<Option<Vendor>, ProcessError> {
        let client = self.processor.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT tenant_id, name FROM tenancy.tenant_by_vendor_code($1)",
                &[&code],
            )
            .await?;
        Ok(row.map(|row| Vendor::new(TenantId::from_uuid(row.get(0)), row.get::<_, &str>(1))))
    }

    async fn enrol(&mut self, tenant: TenantId) -> Result<CustomerId, ProcessError> {
        let customer = ledger::enrol(
            &self.processor.writer,
            &self.processor.vault,
            tenant,
            &self.sender.wa_id,
            self.sender.profile_name.as_deref(),
            format!("wa:{}:enrol", self.row.dedupe_key),
        )
        .await?;
        self.customers.insert(tenant, customer);
        Ok(customer)
    }

    /// The sender's customer id at `tenant`: from this turn, the members table, or (a member
    /// row missing, e.g. enrolled through the vendor API) an idempotent enrolment.
    async fn customer(&mut self, tenant: TenantId) -> Result<CustomerId, ProcessError> {
        if let Some(customer) = self.customers.get(&tenant) {
            return Ok(*customer);
        }
        let client = self.processor.platform_pool.get().await?;
        let row = client
            .query_opt(
                "SELECT customer_id FROM whatsapp_members \
                 WHERE tenant_id = $1 AND customer_digest = $2 LIMIT 1",
                &[&tenant.as_uuid(), &self.digest.as_slice()],
            )
            .await?;
        drop(client);
        if let Some(row) = row {
            let customer = CustomerId::from_uuid(row.get(0));
            self.customers.insert(tenant, customer);
            return Ok(customer);
        }
        let customer = self.enrol(tenant).await?;
        self.members.push((tenant, customer));
        Ok(customer)
    }

    async fn points(
        &mut self,
        state: &ConversationState,
        tenant: TenantId,
    ) -> Result<OutgoingMessage, ProcessError> {
        let customer = self.customer(tenant).await?;
        let facts = ledger::customer(&self.processor.pool, tenant, customer).await?;
        let (expiring, soonest) = facts.expiring(Utc::now(), EXPIRY_WINDOW_DAYS);
        Ok(render::render_points(&PointsFacts {
            vendor_name: vendor_name(state, tenant),
            balance: facts.state.balance,
            expiring_within_window: expiring,
            window_days: EXPIRY_WINDOW_DAYS,
            soonest_expiry: soonest,
            tier: None,
        }))
    }

    async fn rewards(
        &mut self,
        state: &ConversationState,
        tenant: TenantId,
        page: u16,
    ) -> Result<OutgoingMessage, ProcessError> {
        let customer = self.customer(tenant).await?;
        let facts = ledger::customer(&self.processor.pool, tenant, customer).await?;
        let catalogue = ledger::tenant(&self.processor.pool, tenant).await?;
        Ok(render::render_rewards(&RewardsFacts {
            vendor_name: vendor_name(state, tenant),
            rewards: ledger::active_rewards(&catalogue),
            page,
            balance: facts.state.balance,
        }))
    }

    async fn confirmation(
        &mut self,
        tenant: TenantId,
        reward: ledger_core::RewardId,
    ) -> Result<OutgoingMessage, ProcessError> {
        let catalogue = ledger::tenant(&self.processor.pool, tenant).await?;
        let Some(line) = ledger::active_reward(&catalogue, reward) else {
            return Ok(render::render_reward_unavailable());
        };
        let customer = self.customer(tenant).await?;
        let facts = ledger::customer(&self.processor.pool, tenant, customer).await?;
        Ok(render::render_confirmation(&line, facts.state.balance))
    }
}

fn vendor_name(state: &ConversationState, tenant: TenantId) -> String {
    state
        .vendors()
        .iter()
        .find(|v| v.tenant() == tenant)
        .map(|v| v.name().to_owned())
        .unwrap_or_default()
}
