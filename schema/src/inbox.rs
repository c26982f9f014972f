//! The WhatsApp webhook inbox (`whatsapp_inbox`, migration V3): where the webhook ingest
//! appends every item of a signed body before answering 200, and where downstream readers
//! (tenant routing, the conversation, the notifier's delivery statuses) tail it.
//!
//! Rows arrive sealed (see the migration and `vault::Vault::seal_record`); this module only
//! stores and reads bytes. It is a platform table: use the `loyalty_platform` pool.

use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;

/// What an inbox row holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboxKind {
    /// An inbound message (`messages[]`).
    Message,
    /// A delivery status of a message we sent (`statuses[]`).
    Status,
    /// A marketing opt-out / opt-in (`user_preferences[]`).
    Preference,
    /// A change with no item the bot reads (template status, echoes, value-level errors…).
    Other,
    /// A signed body that is not a webhook we can parse, kept whole.
    Unparsed,
}

impl InboxKind {
    pub fn as_str(self) -> &'static str {
        match self {
            InboxKind::Message => "message",
            InboxKind::Status => "status",
            InboxKind::Preference => "preference",
            InboxKind::Other => "other",
            InboxKind::Unparsed => "unparsed",
        }
    }

    pub fn parse(raw: &str) -> Option<InboxKind> {
        Some(match raw {
            "message" => InboxKind::Message,
            "status" => InboxKind::Status,
            "preference" => InboxKind::Preference,
            "other" => InboxKind::Other,
            "unparsed" => InboxKind::Unparsed,
            _ => return None,
        })
    }
}

/// A row to append. The caller has sealed the content and digested every identifier.
#[derive(Clone, PartialEq, Eq)]
pub struct NewInboxItem {
    pub kind: InboxKind,
    pub dedupe_key: String,
    pub wamid_digest: Option<[u8; 32]>,
    pub phone_number_id: Option<String>,
    pub occurred_at: Option<DateTime<Utc>>,
    pub master_key_id: String,
    pub wrapped_key: Vec<u8>,
    pub sealed: Vec<u8>,
}

impl std::fmt::Debug for NewInboxItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewInboxItem")
            .field("kind", &self.kind)
            .field("dedupe_key", &self.dedupe_key)
            .field("phone_number_id", &self.phone_number_id)
            .field("sealed_bytes", &self.sealed.len())
            .finish_non_exhaustive()
    }
}

/// How an append went: rows stored now, and items already there (duplicates).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Appended {
    pub inserted: u64,
    pub duplicates: u64,
}

/// The channel [`append`] notifies (`pg_notify`, empty payload) in the transaction of every
/// append that stored at least one row: readers `LISTEN` on it and wake at the commit.
pub const NOTIFY_CHANNEL: &str = "loyalty_inbox";

/// Appends `items` with one statement (so in one transaction, all or nothing), skipping those
/// whose `dedupe_key` is already stored, including a key repeated within `items`. When at
/// least one row is stored, the same statement notifies [`NOTIFY_CHANNEL`] once.
pub async fn append(
    client: &impl deadpool_postgres::GenericClient,
    items: &[NewInboxItem],
) -> Result<Appended, tokio_postgres::Error> {
    let inserted = append_returning_keys(client, items).await?.len() as u64;
    Ok(Appended {
        inserted,
        duplicates: items.len() as u64 - inserted,
    })
}

/// [`append`], returning the `dedupe_key` of every row stored now (each once; the keys of
/// `items` not returned were already stored or repeated): how a caller that appends the
/// items of several requests at once tells each its own counts.
pub async fn append_returning_keys(
    client: &impl deadpool_postgres::GenericClient,
    items: &[NewInboxItem],
) -> Result<Vec<String>, tokio_postgres::Error> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let kinds: Vec<&str> = items.iter().map(|i| i.kind.as_str()).collect();
    let keys: Vec<&str> = items.iter().map(|i| i.dedupe_key.as_str()).collect();
    let digests: Vec<Option<&[u8]>> = items
        .iter()
        .map(|i| i.wamid_digest.as_ref().map(|d| d.as_slice()))
        .collect();
    let numbers: Vec<Option<&str>> = items.iter().map(|i| i.phone_number_id.as_deref()).collect();
    let occurred: Vec<Option<DateTime<Utc>>> = items.iter().map(|i| i.occurred_at).collect();
    let masters: Vec<&str> = items.iter().map(|i| i.master_key_id.as_str()).collect();
    let wrapped: Vec<&[u8]> = items.iter().map(|i| i.wrapped_key.as_slice()).collect();
    let sealed: Vec<&[u8]> = items.iter().map(|i| i.sealed.as_slice()).collect();
    // A cached prepared statement: parsing and planning this INSERT on every webhook was
    // among PostgreSQL's top costs in the ingest benchmark (docs/PERFORMANCE.md). The
    // aggregate is one row whatever was inserted, so `pg_notify` runs at most once, and only
    // when a row was stored (a batch of duplicates wakes nobody); being in the same statement,
    // the notification is delivered at this transaction's commit and never without it.
    let statement = client
        .prepare_cached(
            "WITH inserted AS ( \
               INSERT INTO whatsapp_inbox \
                 (kind, dedupe_key, wamid_digest, phone_number_id, occurred_at, \
                  master_key_id, wrapped_key, sealed) \
               SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::text[], \
                                    $5::timestamptz[], $6::text[], $7::bytea[], $8::bytea[]) \
               ON CONFLICT (dedupe_key) DO NOTHING \
               RETURNING dedupe_key), \
             stored AS (SELECT array_agg(dedupe_key) AS keys FROM inserted) \
             SELECT keys, \
                    CASE WHEN keys IS NOT NULL \
                         THEN pg_notify('loyalty_inbox', '')::text END AS notified \
             FROM stored",
        )
        .await?;
    let row = client
        .query_one(
            &statement,
            &[
                &kinds, &keys, &digests, &numbers, &occurred, &masters, &wrapped, &sealed,
            ],
        )
        .await?;
    let stored: Option<Vec<String>> = row.get(0);
    Ok(stored.unwrap_or_default())
}

/// A reader's place in the inbox: `(transaction_id, inbox_id)`, compared as a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct InboxPosition {
    pub transaction_id: i64,
    pub inbox_id: i64,
}

/// A stored inbox row.
#[derive(Clone, PartialEq, Eq)]
pub struct InboxRow {
    pub position: InboxPosition,
    pub kind: InboxKind,
    pub dedupe_key: String,
    pub wamid_digest: Option<Vec<u8>>,
    pub phone_number_id: Option<String>,
    pub received_at: DateTime<Utc>,
    pub occurred_at: Option<DateTime<Utc>>,
    pub master_key_id: String,
    pub wrapped_key: Vec<u8>,
    pub sealed: Vec<u8>,
}

impl std::fmt::Debug for InboxRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboxRow")
            .field("position", &self.position)
            .field("kind", &self.kind)
            .field("dedupe_key", &self.dedupe_key)
            .field("phone_number_id", &self.phone_number_id)
            .finish_non_exhaustive()
    }
}

/// Up to `limit` rows after `after` in `(transaction_id, inbox_id)` order, only from
/// transactions older than every one still running: a row committed late is never skipped
/// (the same safe-position rule as `store::read_after`).
pub async fn read_after(
    client: &impl GenericClient,
    after: InboxPosition,
    limit: i64,
) -> Result<Vec<InboxRow>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT inbox_id, transaction_id::text, kind, dedupe_key, wamid_digest, \
                    phone_number_id, received_at, occurred_at, master_key_id, wrapped_key, sealed \
             FROM whatsapp_inbox \
             WHERE (transaction_id, inbox_id) > ($1::text::xid8, $2) \
               AND transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
             ORDER BY transaction_id, inbox_id \
             LIMIT $3",
            &[&after.transaction_id.to_string(), &after.inbox_id, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| {
            let transaction_id: String = row.get(1);
            let kind: String = row.get(2);
            InboxRow {
                position: InboxPosition {
                    transaction_id: transaction_id.parse().unwrap_or(i64::MAX),
                    inbox_id: row.get(0),
                },
                // The CHECK constraint admits only the kinds above.
                kind: InboxKind::parse(&kind).unwrap_or(InboxKind::Unparsed),
                dedupe_key: row.get(3),
                wamid_digest: row.get(4),
                phone_number_id: row.get(5),
                received_at: row.get(6),
                occurred_at: row.get(7),
                master_key_id: row.get(8),
                wrapped_key: row.get(9),
                sealed: row.get(10),
            }
        })
        .collect())
}

/// The context a row's content is sealed under (`vault::Vault::seal_record`): the table and
/// the row's unique key, so a sealed value cannot be moved to another row and still open.
pub fn seal_context(dedupe_key: &str) -> Vec<u8> {
    [b"whatsapp_inbox\0".as_slice(), dedupe_key.as_bytes()].concat()
}
