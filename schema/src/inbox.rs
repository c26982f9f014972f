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

/// Appends `items` with one statement (so in one transaction, all or nothing), skipping those
/// whose `dedupe_key` is already stored, including a key repeated within `items`. When at
/// least one message or preference is stored, the same statement notifies
/// [`crate::wake::INBOX_CHANNEL`] once (`pg_notify`, empty payload, delivered at commit).
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
    // when a message or a preference was stored: a batch of duplicates or of statuses wakes
    // nobody. PostgreSQL serializes the commits of notifying transactions (a global lock held
    // across the commit's WAL flush), and notifying for the ~3 statuses per reply collapsed
    // the ingest at 500 msg/s; no one waits on a status (the notifier's status loop polls).
    // Being in the same statement, the notification is delivered at this transaction's
    // commit and never without it.
    let statement = client
        .prepare_cached(
            "WITH inserted AS ( \
               INSERT INTO whatsapp_inbox \
                 (kind, dedupe_key, wamid_digest, phone_number_id, occurred_at, \
                  master_key_id, wrapped_key, sealed) \
               SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::text[], \
                                    $5::timestamptz[], $6::text[], $7::bytea[], $8::bytea[]) \
               ON CONFLICT (dedupe_key) DO NOTHING \
               RETURNING dedupe_key, kind), \
             stored AS (SELECT array_agg(dedupe_key) AS keys, \
                               count(*) FILTER (WHERE kind IN ('message', 'preference')) AS wake \
                          FROM inserted) \
             SELECT keys, \
                    CASE WHEN wake > 0 THEN pg_notify('loyalty_inbox', '')::text END AS notified \
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

/// What [`read_kinds_after`] found: the rows of the wanted kinds, and the position the
/// reader may move its cursor to (past every row it was shown, of any kind).
#[derive(Debug, Clone, Default)]
pub struct KindsRead {
    pub rows: Vec<InboxRow>,
    pub scanned_to: InboxPosition,
}

/// Like [`read_after`], but only rows of `kinds` (up to `limit`), with the same safe-position
/// rule; `scanned_to` is the last returned row when `limit` rows came back, else the newest
/// safe row of any kind (so a cursor skips the rows of other kinds without reading them).
/// One statement, so the rows and the horizon come from one snapshot: a row of a wanted
/// kind that became safe later cannot lie behind `scanned_to`.
pub async fn read_kinds_after(
    client: &deadpool_postgres::ClientWrapper,
    after: InboxPosition,
    kinds: &[InboxKind],
    limit: i64,
) -> Result<KindsRead, tokio_postgres::Error> {
    let kinds: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
    let statement = client
        .prepare_cached(
            "WITH safe AS MATERIALIZED (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin), \
             picked AS ( \
               SELECT i.inbox_id, i.transaction_id, i.kind, i.dedupe_key, i.wamid_digest, \
                      i.phone_number_id, i.received_at, i.occurred_at, i.master_key_id, \
                      i.wrapped_key, i.sealed \
                 FROM whatsapp_inbox i, safe \
                WHERE (i.transaction_id, i.inbox_id) > ($1::text::xid8, $2) \
                  AND i.transaction_id < safe.xmin AND i.kind = ANY($3::text[]) \
                ORDER BY i.transaction_id, i.inbox_id \
                LIMIT $4), \
             horizon AS ( \
               SELECT i.inbox_id, i.transaction_id FROM whatsapp_inbox i, safe \
                WHERE (i.transaction_id, i.inbox_id) > ($1::text::xid8, $2) \
                  AND i.transaction_id < safe.xmin \
                ORDER BY i.transaction_id DESC, i.inbox_id DESC \
                LIMIT 1) \
             SELECT false, inbox_id, transaction_id::text, kind, dedupe_key, wamid_digest, \
                    phone_number_id, received_at, occurred_at, master_key_id, wrapped_key, \
                    sealed FROM picked \
             UNION ALL \
             SELECT true, inbox_id, transaction_id::text, NULL, NULL, NULL, NULL, NULL, NULL, \
                    NULL, NULL, NULL FROM horizon",
        )
        .await?;
    let found = client
        .query(
            &statement,
            &[
                &after.transaction_id.to_string(),
                &after.inbox_id,
                &kinds,
                &limit,
            ],
        )
        .await?;
    let mut read = KindsRead {
        rows: Vec::new(),
        scanned_to: after,
    };
    let mut horizon = None;
    for row in &found {
        let transaction_id: String = row.get(2);
        let position = InboxPosition {
            transaction_id: transaction_id.parse().unwrap_or(i64::MAX),
            inbox_id: row.get(1),
        };
        if row.get::<_, bool>(0) {
            horizon = Some(position);
            continue;
        }
        let kind: String = row.get(3);
        read.rows.push(InboxRow {
            position,
            kind: InboxKind::parse(&kind).unwrap_or(InboxKind::Unparsed),
            dedupe_key: row.get(4),
            wamid_digest: row.get(5),
            phone_number_id: row.get(6),
            received_at: row.get(7),
            occurred_at: row.get(8),
            master_key_id: row.get(9),
            wrapped_key: row.get(10),
            sealed: row.get(11),
        });
    }
    read.rows.sort_by_key(|row| row.position);
    let last = read.rows.last().map(|row| row.position);
    read.scanned_to = if read.rows.len() as i64 >= limit {
        last.unwrap_or(after)
    } else {
        horizon.into_iter().chain(last).max().unwrap_or(after)
    };
    Ok(read)
}

/// The context a row's content is sealed under (`vault::Vault::seal_record`): the table and
/// the row's unique key, so a sealed value cannot be moved to another row and still open.
pub fn seal_context(dedupe_key: &str) -> Vec<u8> {
    [b"whatsapp_inbox\0".as_slice(), dedupe_key.as_bytes()].concat()
}
