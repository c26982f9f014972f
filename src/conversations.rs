//! The conversation processor: tails the WhatsApp inbox, routes each inbound message to a
//! tenant, steps the pure conversation machine (`ledger_core::conversation`), executes its
//! effects and queues the replies in `whatsapp_outbox` for the notifier.
//!
//! Reading order: [`run`] (leadership, the loop: woken by `loyalty_inbox` notifications,
//! a batch at a time), `Processor::process_batch` (open, route, group by conversation, run
//! conversations concurrently), `Turn::run` (one message: step, effects),
//! `Processor::store_batch` (the batch's one transaction), [`ledger`] (the commands and
//! reads that need the ledger). The tables are `V5__whatsapp_conversations.sql`'s.
//!
//! # Routing
//!
//! `whatsapp_numbers` maps a `phone_number_id` to a tenant (the tenant's own number) or to
//! NULL (the platform's shared number, seeded at start from the settings). A number that is
//! not in the table is never routed: the item is skipped, logged without content. On the
//! shared number the tenant is the conversation's current vendor, joined by vendor code.
//!
//! # Batches
//!
//! The loop reads up to `batch_size_max` `message`/`preference` rows (the cursor passes the
//! other kinds unread), groups them by conversation (customer digest, business number) and
//! runs different conversations concurrently (at most `concurrency`), while one
//! conversation's messages run strictly in inbox order, its state carried in memory from one
//! to the next. Routing and tenant folds are cached for the batch; the states are loaded in
//! one query.
//!
//! # Exactly once
//!
//! An inbox row is unique per wamid (the ingest's `dedupe_key`), however often Meta delivers
//! it. For each batch, in this order:
//!
//! 1. every row's ledger commands (enrolment, redemption) go through the group-commit writer
//!    with an idempotency key derived from the row (`wa:<dedupe key>:enrol|redeem`) and a
//!    request hash of what the customer asked; the reply is rendered from the writer's answer;
//! 2. ONE platform transaction stores every conversation's new state, the member rows, the
//!    replies (`whatsapp_outbox`, `dedupe_key` `reply:<dedupe key>:<n>`, `ON CONFLICT DO
//!    NOTHING`, and a `loyalty_outbox` notification) and advances the cursor past the batch.
//!
//! A crash between 1 and 2 (after any subset of the batch's commands: conversations run
//! concurrently) leaves the cursor before the batch and nothing of it stored: the batch is
//! processed again from the same stored states, each conversation's messages in the same
//! order, so `step` asks for the same commands, the writer replays their stored answers (the
//! same customer, the same redemption code; nothing is written twice) and the replies are
//! the same. Replaying a batch therefore repeats nothing. A crash after 2 never sees the
//! batch again. A reply is queued once and a command takes effect once; the only repeat is
//! harmless reads. (If a redemption's reward is retired between the crash and the replay, the
//! replay still answers with the stored code: the key, not the catalogue, decides.)
//!
//! One processor leads (a session advisory lock), so batches are handled in inbox order and
//! a customer's messages one after the other. Transient failures (database, writer) retry
//! the batch with backoff; a row that can never succeed (undecryptable, no sender, a corrupt
//! stored answer) is logged without content and skipped.

pub mod ledger;

use chrono::{DateTime, TimeZone, Utc};
use deadpool_postgres::Object;
use futures_util::{StreamExt, TryStreamExt};
use ledger::LedgerError;
use ledger_core::conversation::render::{self, PointsFacts, RewardsFacts};
use ledger_core::conversation::{
    self, Context, ConversationState, Effect, Inbound, Input, MarketingPreference, OutgoingMessage,
    Routing, Vendor,
};
use ledger_core::TenantState;
use ledger_core::{CustomerId, TenantId};
use projections::Shutdown;
use schema::inbox::{InboxKind, InboxPosition, InboxRow};
use schema::writer::WriterHandle;
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
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
    /// Conversations of a batch processed at the same time.
    pub concurrency: usize,
    /// How often to look at the inbox when idle and not woken (a fallback: the processor
    /// is woken by `Processor::wake`).
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
            concurrency: 16,
            poll_interval: Duration::from_millis(500),
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
    /// Wake-ups on `schema::wake::INBOX_CHANNEL` (or `Wake::none()`: poll only).
    pub wake: schema::wake::Wake,
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("database: {}", schema::db::error_text(.0))]
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

/// The kinds of inbox rows the processor acts on; the rest are read past, not read.
const KINDS: [InboxKind; 2] = [InboxKind::Message, InboxKind::Preference];

/// Retries of an empty read right after a wake-up (the woken-for row may be held back by an
/// older transaction still open), each after `WOKEN_RETRY_DELAY` × 2^n: 3 ms to 384 ms,
/// 765 ms in all. The safe position waits for every older transaction on the server, any
/// database's; with four retries (45 ms) a loaded server's longer transactions outlasted
/// them and the woken-for message waited for the next poll (seen in CI with the poll at an
/// hour: `a_processor_polling_once_an_hour_is_woken_by_each_message`). The retries end at
/// the first row, so a quiet server pays nothing for them.
const WOKEN_RETRIES: u32 = 8;
const WOKEN_RETRY_DELAY: Duration = Duration::from_millis(3);

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
        // Where the stored cursor is; the one in memory may be ahead (past rows of other
        // kinds), and is stored with the next batch or when idle.
        let mut stored = cursor;
        let mut woken_retries = WOKEN_RETRIES;
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            let read = schema::inbox::read_kinds_after(
                &session,
                cursor,
                &KINDS,
                self.settings.batch_size_max,
            )
            .await?;
            if read.rows.is_empty() {
                cursor = cursor.max(read.scanned_to);
                if woken_retries < WOKEN_RETRIES {
                    tokio::time::sleep(WOKEN_RETRY_DELAY * 2u32.pow(woken_retries)).await;
                    woken_retries += 1;
                    continue;
                }
                let woken = tokio::select! {
                    woken = self.wake.wait(self.settings.poll_interval) => woken,
                    _ = projections::stopped(shutdown) => return Ok(()),
                };
                if woken {
                    woken_retries = 0;
                } else if cursor > stored {
                    self.store_batch(&mut session, cursor, Vec::new(), 0)
                        .await?;
                    stored = cursor;
                }
                continue;
            }
            let rows = read.rows.len() as i64;
            let writes = self.process_batch(&read.rows).await?;
            self.store_batch(&mut session, read.scanned_to, writes, rows)
                .await?;
            cursor = read.scanned_to;
            stored = cursor;
            // More may be waiting (a full batch, or rows committed meanwhile): read again
            // at once.
            woken_retries = WOKEN_RETRIES;
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

    /// A batch of inbox rows up to (not including) its transaction: rows opened and
    /// grouped by conversation; conversations run concurrently (at most
    /// `settings.concurrency`), each one's messages strictly in inbox order with the state
    /// carried in memory. Returns one write per conversation with something to store.
    async fn process_batch(
        &self,
        rows: &[InboxRow],
    ) -> Result<Vec<ConversationWrite>, ProcessError> {
        let caches = BatchCaches::default();
        let mut groups: Vec<Group> = Vec::new();
        let mut index: HashMap<([u8; 32], String), usize> = HashMap::new();
        for row in rows {
            let prepared = match self.prepare(row, &caches).await {
                Ok(Ok(prepared)) => prepared,
                Ok(Err(why)) => {
                    tracing::debug!(inbox_id = row.position.inbox_id, why, "inbox item skipped");
                    continue;
                }
                Err(ProcessError::Ledger(LedgerError::Permanent(reason))) => {
                    tracing::error!(inbox_id = row.position.inbox_id, %reason, "inbox item skipped");
                    continue;
                }
                Err(error) => return Err(error),
            };
            let key = (prepared.digest, prepared.phone_number_id.clone());
            match index.get(&key) {
                Some(&at) => groups[at].items.push(prepared),
                None => {
                    index.insert(key, groups.len());
                    groups.push(Group {
                        state: ConversationState::default(),
                        items: vec![prepared],
                    });
                }
            }
        }
        if groups.is_empty() {
            return Ok(Vec::new());
        }
        let mut states = self.load_states(&groups).await?;
        for group in &mut groups {
            let first = &group.items[0];
            if let Some(state) = states.remove(&(first.digest, first.phone_number_id.clone())) {
                group.state = state;
            }
        }
        let caches = &caches;
        let writes: Vec<Option<ConversationWrite>> = futures_util::stream::iter(
            groups
                .into_iter()
                .map(|group| self.run_group(group, caches)),
        )
        .buffer_unordered(self.settings.concurrency.max(1))
        .try_collect()
        .await?;
        Ok(writes.into_iter().flatten().collect())
    }

    /// One conversation's messages of a batch, in order.
    async fn run_group(
        &self,
        group: Group,
        caches: &BatchCaches,
    ) -> Result<Option<ConversationWrite>, ProcessError> {
        let Group { mut state, items } = group;
        let mut customers = HashMap::new();
        let mut write: Option<ConversationWrite> = None;
        for item in items {
            let context = Context {
                routing: item.routing.clone(),
                inactivity_timeout: self.settings.inactivity_timeout,
            };
            let mut turn = Turn {
                processor: self,
                row: &item.row,
                sender: &item.sender,
                digest: item.digest,
                caches,
                customers: &mut customers,
                members: Vec::new(),
                replies: Vec::new(),
            };
            let next = match turn.run(state.clone(), &context).await {
                Ok(next) => next,
                Err(ProcessError::Ledger(LedgerError::Permanent(reason))) => {
                    tracing::error!(inbox_id = item.row.position.inbox_id, %reason, "inbox item skipped");
                    continue;
                }
                Err(error) => return Err(error),
            };
            let Turn {
                members, replies, ..
            } = turn;
            tracing::debug!(
                inbox_id = item.row.position.inbox_id,
                replies = replies.len(),
                "inbox item handled"
            );
            state = next;
            let write = write.get_or_insert_with(|| ConversationWrite {
                digest: item.digest,
                phone_number_id: item.phone_number_id.clone(),
                wa_id: item.sender.wa_id.clone(),
                state: state.clone(),
                last_inbound_at: item.at_fallback,
                members: Vec::new(),
                replies: Vec::new(),
            });
            write.state = state.clone();
            write.last_inbound_at = write.last_inbound_at.max(item.at_fallback);
            write.members.extend(members);
            let tenant = state.current().map(|v| v.tenant().as_uuid());
            for (n, reply) in replies.into_iter().enumerate() {
                write.replies.push(QueuedReply {
                    dedupe_key: format!("reply:{}:{n}", item.row.dedupe_key),
                    tenant,
                    message: reply,
                });
            }
        }
        Ok(write)
    }

    /// Opens and routes one inbox row; `Ok(Err(why))` when it is to be skipped.
    async fn prepare(
        &self,
        row: &InboxRow,
        caches: &BatchCaches,
    ) -> Result<Result<Prepared, &'static str>, ProcessError> {
        if !matches!(row.kind, InboxKind::Message | InboxKind::Preference) {
            return Ok(Err("not a customer message"));
        }
        let Some(phone_number_id) = row.phone_number_id.clone() else {
            return Ok(Err("no business number"));
        };
        let routing = match self.route(&phone_number_id, caches).await? {
            Some(routing) => routing,
            None => {
                tracing::warn!(
                    inbox_id = row.position.inbox_id,
                    %phone_number_id,
                    "message to an unknown business number skipped"
                );
                return Ok(Err("unknown business number"));
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
            return Ok(Err("no sender or input"));
        };
        let digest = self
            .vault
            .keyed_digest(CUSTOMER_DIGEST_PURPOSE, sender.wa_id.as_bytes());
        Ok(Ok(Prepared {
            row: row.clone(),
            phone_number_id,
            routing,
            sender,
            digest,
            at_fallback,
        }))
    }

    /// `Some` routing for a known business number; `None` for an unknown one (cached for
    /// the batch).
    async fn route(
        &self,
        phone_number_id: &str,
        caches: &BatchCaches,
    ) -> Result<Option<Routing>, ProcessError> {
        if let Some(routing) = lock(&caches.routes).get(phone_number_id) {
            return Ok(routing.clone());
        }
        let client = self.platform_pool.get().await?;
        let row = client
            .query_opt(
                "SELECT tenant_id FROM whatsapp_numbers WHERE phone_number_id = $1",
                &[&phone_number_id],
            )
            .await?;
        drop(client);
        let routing = match row {
            None => None,
            Some(row) => match row.get::<_, Option<Uuid>>(0).map(TenantId::from_uuid) {
                None => Some(Routing::SharedNumber),
                Some(tenant) => {
                    let state = caches.tenant(&self.pool, tenant).await?;
                    state.profile.as_ref().map(|profile| Routing::OwnNumber {
                        vendor: Vendor::new(tenant, &profile.name),
                    })
                }
            },
        };
        lock(&caches.routes).insert(phone_number_id.to_owned(), routing.clone());
        Ok(routing)
    }

    /// The stored states of the batch's conversations, in one query.
    async fn load_states(
        &self,
        groups: &[Group],
    ) -> Result<HashMap<([u8; 32], String), ConversationState>, ProcessError> {
        let digests: Vec<&[u8]> = groups
            .iter()
            .map(|g| g.items[0].digest.as_slice())
            .collect();
        let numbers: Vec<&str> = groups
            .iter()
            .map(|g| g.items[0].phone_number_id.as_str())
            .collect();
        let client = self.platform_pool.get().await?;
        let statement = client
            .prepare_cached(
                "SELECT c.customer_digest, c.phone_number_id, c.state::text \
                   FROM whatsapp_conversations c \
                   JOIN unnest($1::bytea[], $2::text[]) AS k(customer_digest, phone_number_id) \
                     ON c.customer_digest = k.customer_digest \
                    AND c.phone_number_id = k.phone_number_id",
            )
            .await?;
        let rows = client.query(&statement, &[&digests, &numbers]).await?;
        let mut states = HashMap::new();
        for row in rows {
            let Ok(digest) = <[u8; 32]>::try_from(row.get::<_, &[u8]>(0)) else {
                continue;
            };
            match serde_json::from_str::<ConversationState>(row.get::<_, &str>(2)) {
                Ok(state) => {
                    states.insert((digest, row.get::<_, String>(1)), state);
                }
                Err(error) => {
                    tracing::error!(%error, "stored conversation state unreadable; starting over")
                }
            }
        }
        Ok(states)
    }

    /// The batch's one transaction: every conversation's state, the member rows, the
    /// replies (and a wake-up of the notifier when there are any), and the cursor, moved
    /// to `position` past `rows` inbox rows.
    async fn store_batch(
        &self,
        session: &mut deadpool_postgres::ClientWrapper,
        position: InboxPosition,
        writes: Vec<ConversationWrite>,
        rows: i64,
    ) -> Result<(), ProcessError> {
        let mut conversations = ConversationRows::default();
        let mut members = MemberRows::default();
        let mut outbox = OutboxRows::default();
        for write in writes {
            conversations.push(&self.vault, &write)?;
            for (tenant, customer) in &write.members {
                members.tenants.push(tenant.as_uuid());
                members.customers.push(customer.as_uuid());
                members.digests.push(write.digest.to_vec());
                members.numbers.push(write.phone_number_id.clone());
            }
            for reply in &write.replies {
                outbox.push(&self.vault, &write, reply)?;
            }
        }
        let transaction = session.transaction().await?;
        let cursor = async {
            let statement = transaction
                .prepare_cached(
                    "UPDATE whatsapp_inbox_cursors SET last_transaction_id = $2::text::xid8, \
                         last_inbox_id = $3, processed_total = processed_total + $4, \
                         updated_at = now() \
                     WHERE name = $1",
                )
                .await?;
            transaction
                .execute(
                    &statement,
                    &[
                        &CURSOR_NAME,
                        &position.transaction_id.to_string(),
                        &position.inbox_id,
                        &rows,
                    ],
                )
                .await
        };
        // The statements are pipelined on the one connection (no round trip each).
        tokio::try_join!(
            cursor,
            conversations.store(&transaction),
            members.store(&transaction),
            outbox.store(&transaction),
        )?;
        transaction.commit().await?;
        Ok(())
    }
}

/// Locks a batch cache (a poisoned one is still a valid cache).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Look-ups shared by a batch's conversations: at most one per business number and one
/// tenant fold per tenant per batch (a batch is read and answered within milliseconds).
#[derive(Default)]
struct BatchCaches {
    routes: Mutex<HashMap<String, Option<Routing>>>,
    tenants: Mutex<HashMap<TenantId, Arc<TenantState>>>,
}

impl BatchCaches {
    async fn tenant(
        &self,
        pool: &schema::Pool,
        tenant: TenantId,
    ) -> Result<Arc<TenantState>, LedgerError> {
        if let Some(state) = lock(&self.tenants).get(&tenant) {
            return Ok(state.clone());
        }
        let state = Arc::new(ledger::tenant(pool, tenant).await?);
        lock(&self.tenants).insert(tenant, state.clone());
        Ok(state)
    }
}

/// One conversation's rows of a batch, in inbox order, and its state before them.
struct Group {
    state: ConversationState,
    items: Vec<Prepared>,
}

/// An inbox row opened and routed.
struct Prepared {
    row: InboxRow,
    phone_number_id: String,
    routing: Routing,
    sender: Sender,
    digest: [u8; 32],
    at_fallback: DateTime<Utc>,
}

#[derive(Default)]
struct ConversationRows {
    digests: Vec<Vec<u8>>,
    numbers: Vec<String>,
    states: Vec<String>,
    master_key_ids: Vec<String>,
    wrapped_keys: Vec<Vec<u8>>,
    sealed: Vec<Vec<u8>>,
    last_inbound: Vec<DateTime<Utc>>,
}

impl ConversationRows {
    fn push(&mut self, vault: &Vault, write: &ConversationWrite) -> Result<(), ProcessError> {
        let sealed = vault
            .seal_record(
                &conversation_seal_context(&write.digest, &write.phone_number_id),
                write.wa_id.as_bytes(),
            )
            .map_err(|e| LedgerError::Unavailable(format!("sealing: {e}")))?;
        let state = serde_json::to_string(&write.state)
            .map_err(|e| LedgerError::Permanent(format!("state to JSON: {e}")))?;
        self.digests.push(write.digest.to_vec());
        self.numbers.push(write.phone_number_id.clone());
        self.states.push(state);
        self.master_key_ids.push(sealed.master_key_id);
        self.wrapped_keys.push(sealed.wrapped_key);
        self.sealed.push(sealed.sealed);
        self.last_inbound.push(write.last_inbound_at);
        Ok(())
    }

    async fn store(
        &self,
        transaction: &deadpool_postgres::Transaction<'_>,
    ) -> Result<u64, tokio_postgres::Error> {
        if self.digests.is_empty() {
            return Ok(0);
        }
        let statement = transaction
            .prepare_cached(
                "INSERT INTO whatsapp_conversations AS c \
                   (customer_digest, phone_number_id, state, master_key_id, wrapped_key, \
                    sealed_wa_id, last_inbound_at) \
                 SELECT d, p, s::jsonb, m, w, x, l \
                   FROM unnest($1::bytea[], $2::text[], $3::text[], $4::text[], $5::bytea[], \
                               $6::bytea[], $7::timestamptz[]) AS r(d, p, s, m, w, x, l) \
                 ON CONFLICT (customer_digest, phone_number_id) DO UPDATE SET \
                   state = EXCLUDED.state, master_key_id = EXCLUDED.master_key_id, \
                   wrapped_key = EXCLUDED.wrapped_key, sealed_wa_id = EXCLUDED.sealed_wa_id, \
                   last_inbound_at = greatest(c.last_inbound_at, EXCLUDED.last_inbound_at), \
                   updated_at = now()",
            )
            .await?;
        transaction
            .execute(
                &statement,
                &[
                    &self.digests,
                    &self.numbers,
                    &self.states,
                    &self.master_key_ids,
                    &self.wrapped_keys,
                    &self.sealed,
                    &self.last_inbound,
                ],
            )
            .await
    }
}

#[derive(Default)]
struct MemberRows {
    tenants: Vec<Uuid>,
    customers: Vec<Uuid>,
    digests: Vec<Vec<u8>>,
    numbers: Vec<String>,
}

impl MemberRows {
    async fn store(
        &self,
        transaction: &deadpool_postgres::Transaction<'_>,
    ) -> Result<u64, tokio_postgres::Error> {
        if self.tenants.is_empty() {
            return Ok(0);
        }
        let statement = transaction
            .prepare_cached(
                "INSERT INTO whatsapp_members \
                   (tenant_id, customer_id, customer_digest, phone_number_id) \
                 SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::bytea[], $4::text[]) \
                 ON CONFLICT (tenant_id, customer_id) DO NOTHING",
            )
            .await?;
        transaction
            .execute(
                &statement,
                &[&self.tenants, &self.customers, &self.digests, &self.numbers],
            )
            .await
    }
}

#[derive(Default)]
struct OutboxRows {
    message_ids: Vec<Uuid>,
    dedupe_keys: Vec<String>,
    tenants: Vec<Option<Uuid>>,
    numbers: Vec<String>,
    digests: Vec<Vec<u8>>,
    master_key_ids: Vec<String>,
    wrapped_keys: Vec<Vec<u8>>,
    recipients: Vec<Vec<u8>>,
    bodies: Vec<String>,
}

impl OutboxRows {
    fn push(
        &mut self,
        vault: &Vault,
        write: &ConversationWrite,
        reply: &QueuedReply,
    ) -> Result<(), ProcessError> {
        let recipient = vault
            .seal_record(
                &outbox_seal_context(&reply.dedupe_key),
                write.wa_id.as_bytes(),
            )
            .map_err(|e| LedgerError::Unavailable(format!("sealing: {e}")))?;
        let body = serde_json::to_string(&reply.message)
            .map_err(|e| LedgerError::Permanent(format!("reply to JSON: {e}")))?;
        // v7 ids, made in reply order: the notifier sends one recipient's rows in
        // (queued_at, message_id) order, and queued_at is the same for the whole batch.
        self.message_ids.push(Uuid::now_v7());
        self.dedupe_keys.push(reply.dedupe_key.clone());
        self.tenants.push(reply.tenant);
        self.numbers.push(write.phone_number_id.clone());
        self.digests.push(write.digest.to_vec());
        self.master_key_ids.push(recipient.master_key_id);
        self.wrapped_keys.push(recipient.wrapped_key);
        self.recipients.push(recipient.sealed);
        self.bodies.push(body);
        Ok(())
    }

    /// The replies and, when there are any, the notifier's wake-up (delivered at commit).
    async fn store(
        &self,
        transaction: &deadpool_postgres::Transaction<'_>,
    ) -> Result<u64, tokio_postgres::Error> {
        if self.message_ids.is_empty() {
            return Ok(0);
        }
        let statement = transaction
            .prepare_cached(
                "WITH queued AS ( \
                   INSERT INTO whatsapp_outbox \
                     (message_id, dedupe_key, tenant_id, phone_number_id, customer_digest, \
                      master_key_id, wrapped_key, sealed_recipient, kind, body) \
                   SELECT i, k, t, p, d, m, w, r, 'reply', b::jsonb \
                     FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::bytea[], \
                                 $6::text[], $7::bytea[], $8::bytea[], $9::text[]) \
                          AS x(i, k, t, p, d, m, w, r, b) \
                   ON CONFLICT (dedupe_key) DO NOTHING \
                   RETURNING 1), \
                 counted AS (SELECT count(*) AS n FROM queued) \
                 SELECT n FROM counted \
                 LEFT JOIN LATERAL (SELECT pg_notify('loyalty_outbox', '') WHERE counted.n > 0) \
                   AS notified ON true",
            )
            .await?;
        let row = transaction
            .query_one(
                &statement,
                &[
                    &self.message_ids,
                    &self.dedupe_keys,
                    &self.tenants,
                    &self.numbers,
                    &self.digests,
                    &self.master_key_ids,
                    &self.wrapped_keys,
                    &self.recipients,
                    &self.bodies,
                ],
            )
            .await?;
        Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
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

/// What a batch's transaction writes for one conversation.
struct ConversationWrite {
    digest: [u8; 32],
    phone_number_id: String,
    wa_id: String,
    state: ConversationState,
    last_inbound_at: DateTime<Utc>,
    members: Vec<(TenantId, CustomerId)>,
    replies: Vec<QueuedReply>,
}

struct QueuedReply {
    /// `reply:<inbox dedupe key>:<n>`.
    dedupe_key: String,
    /// The current vendor after the message that caused it.
    tenant: Option<Uuid>,
    message: OutgoingMessage,
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
    caches: &'a BatchCaches,
    /// Customers known in this conversation's batch (enrolled or looked up), by tenant:
    /// a member row written by an earlier message of the batch is not committed yet.
    customers: &'a mut HashMap<TenantId, CustomerId>,
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
        let catalogue = self.caches.tenant(&self.processor.pool, tenant).await?;
        let tier = ledger::tier_name(&catalogue, facts.state.tier.as_deref());
        Ok(render::render_points(&PointsFacts {
            vendor_name: vendor_name(state, tenant),
            balance: facts.available(),
            pending: facts.state.pending,
            held: facts.state.held,
            expiring_within_window: expiring,
            window_days: EXPIRY_WINDOW_DAYS,
            soonest_expiry: soonest,
            tier,
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
        let catalogue = self.caches.tenant(&self.processor.pool, tenant).await?;
        let stock = ledger::reward_stock(&self.processor.pool, tenant).await?;
        let now = ledger_api::commands::now();
        Ok(render::render_rewards(&RewardsFacts {
            vendor_name: vendor_name(state, tenant),
            rewards: ledger::active_rewards(&catalogue, &stock, now),
            page,
            balance: facts.available(),
        }))
    }

    async fn confirmation(
        &mut self,
        tenant: TenantId,
        reward: ledger_core::RewardId,
    ) -> Result<OutgoingMessage, ProcessError> {
        let catalogue = self.caches.tenant(&self.processor.pool, tenant).await?;
        let stock = ledger::reward_stock(&self.processor.pool, tenant).await?;
        let now = ledger_api::commands::now();
        let Some(line) = ledger::active_reward(&catalogue, &stock, reward, now) else {
            return Ok(render::render_reward_unavailable());
        };
        let customer = self.customer(tenant).await?;
        let facts = ledger::customer(&self.processor.pool, tenant, customer).await?;
        Ok(render::render_confirmation(&line, facts.available()))
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
