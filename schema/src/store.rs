//! The event store: what a recorded event is, how readers tail the table without ever
//! missing a row committed out of order, and how one append checks the expected version.

use chrono::{DateTime, SubsecRound, Utc};
use deadpool_postgres::GenericClient as PooledClient;
use ledger_core::chain::{self, ChainFields, ChainHash};
use ledger_core::codec::{self, CodecError};
use ledger_core::events::EventMetadata;
use ledger_core::{Event, EventId, StreamId, TenantId};
use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("codec error: {0}")]
    Codec(#[from] CodecError),
    #[error("stored event is malformed: {0}")]
    Malformed(String),
    #[error("stream {stream} is at version {actual}, expected {expected}")]
    Conflict {
        stream: String,
        expected: i32,
        actual: i32,
    },
    #[error("tenant {0} has no chain head (not registered)")]
    UnknownTenant(TenantId),
}

/// An event as stored in the `events` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    pub event_id: EventId,
    pub tenant_id: TenantId,
    pub tenant_sequence: i64,
    pub stream_id: String,
    pub version: i32,
    pub event_type: String,
    pub type_version: i16,
    pub payload: Vec<u8>,
    pub metadata: Vec<u8>,
    pub recorded_at: DateTime<Utc>,
    pub previous_hash: ChainHash,
    pub hash: ChainHash,
    /// Where the event sits in the readers' order; `None` until it has been read back.
    pub position: Option<Position>,
}

/// A reader's place in the table: `(transaction_id, global_position)`, compared as a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    pub transaction_id: i64,
    pub global_position: i64,
}

impl RecordedEvent {
    pub fn decode(&self) -> Result<Event, CodecError> {
        let type_version = u16::try_from(self.type_version).unwrap_or(0);
        codec::decode(&self.event_type, type_version, &self.payload)
    }

    pub fn decode_metadata(&self) -> Result<EventMetadata, CodecError> {
        codec::decode_metadata(&self.metadata)
    }

    pub fn stream(&self) -> Result<StreamId, StoreError> {
        StreamId::parse(&self.stream_id).map_err(|e| StoreError::Malformed(e.to_string()))
    }

    pub fn chain_fields(&self) -> ChainFields<'_> {
        ChainFields {
            tenant_id: self.tenant_id,
            tenant_sequence: u64::try_from(self.tenant_sequence).unwrap_or(0),
            event_id: self.event_id,
            stream_id: &self.stream_id,
            version: u32::try_from(self.version).unwrap_or(0),
            event_type: &self.event_type,
            type_version: u16::try_from(self.type_version).unwrap_or(0),
            recorded_at_micros: self.recorded_at.timestamp_micros(),
            metadata: &self.metadata,
            payload: &self.payload,
        }
    }
}

/// The head of a tenant's sequence and hash chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantHead {
    pub sequence: i64,
    pub hash: ChainHash,
}

impl TenantHead {
    pub const GENESIS: TenantHead = TenantHead {
        sequence: 0,
        hash: chain::GENESIS,
    };

    /// Seals one event onto this head: assigns the next sequence, computes the hash link,
    /// and advances the head.
    #[allow(clippy::too_many_arguments)]
    pub fn seal(
        &mut self,
        tenant_id: TenantId,
        event_id: EventId,
        stream_id: String,
        version: i32,
        event: &Event,
        metadata: Vec<u8>,
        recorded_at: DateTime<Utc>,
    ) -> Result<RecordedEvent, CodecError> {
        let encoded = codec::encode(event)?;
        let mut recorded = RecordedEvent {
            event_id,
            tenant_id,
            tenant_sequence: self.sequence + 1,
            stream_id,
            version,
            event_type: encoded.event_type.to_owned(),
            type_version: i16::try_from(encoded.type_version).unwrap_or(i16::MAX),
            payload: encoded.payload,
            metadata,
            // Postgres keeps microseconds; the hash must cover exactly what is stored.
            recorded_at: recorded_at.trunc_subsecs(6),
            previous_hash: self.hash,
            hash: chain::GENESIS,
            position: None,
        };
        recorded.hash = chain::link(&self.hash, &recorded.chain_fields());
        self.sequence = recorded.tenant_sequence;
        self.hash = recorded.hash;
        Ok(recorded)
    }
}

pub(crate) const EVENT_COLUMNS: &str =
    "global_position, transaction_id::text, event_id, tenant_id, \
     tenant_sequence, stream_id, version, event_type, type_version, payload, metadata, \
     recorded_at, previous_hash, hash";

pub(crate) fn event_from_row(row: &Row) -> Result<RecordedEvent, StoreError> {
    let transaction_id: String = row.try_get(1)?;
    let transaction_id = transaction_id
        .parse::<i64>()
        .map_err(|_| StoreError::Malformed(format!("transaction id {transaction_id}")))?;
    let hash_of = |index: usize| -> Result<ChainHash, StoreError> {
        let bytes: Vec<u8> = row.try_get(index)?;
        ChainHash::try_from(bytes.as_slice())
            .map_err(|_| StoreError::Malformed("hash is not 32 bytes".into()))
    };
    Ok(RecordedEvent {
        position: Some(Position {
            transaction_id,
            global_position: row.try_get(0)?,
        }),
        event_id: EventId::from_uuid(row.try_get::<_, Uuid>(2)?),
        tenant_id: TenantId::from_uuid(row.try_get::<_, Uuid>(3)?),
        tenant_sequence: row.try_get(4)?,
        stream_id: row.try_get(5)?,
        version: row.try_get(6)?,
        event_type: row.try_get(7)?,
        type_version: row.try_get(8)?,
        payload: row.try_get(9)?,
        metadata: row.try_get(10)?,
        recorded_at: row.try_get(11)?,
        previous_hash: hash_of(12)?,
        hash: hash_of(13)?,
    })
}

/// Reads up to `limit` events after `after`, in `(transaction_id, global_position)` order,
/// and only those whose transaction is older than every transaction still running: a row
/// committed late by an older transaction is therefore never skipped, it is simply not yet
/// eligible. Per stream, this order is version order, because a tenant's appends lock the
/// tenant head first and so take their transaction ids in sequence.
pub async fn read_after(
    client: &impl GenericClient,
    after: Position,
    limit: i64,
) -> Result<Vec<RecordedEvent>, StoreError> {
    read_in_order(client, after, limit, true).await
}

/// Reads every event visible to the caller's snapshot after `after`, in the same order as
/// [`read_after`] but without waiting for older transactions. Only correct inside one
/// REPEATABLE READ transaction (one snapshot for all pages): there, each stream's visible
/// events form a gapless prefix, because a stream's next event is appended only after the
/// previous one committed. Rebuilds use this; tailing readers use [`read_after`].
pub async fn read_snapshot_after(
    client: &impl GenericClient,
    after: Position,
    limit: i64,
) -> Result<Vec<RecordedEvent>, StoreError> {
    read_in_order(client, after, limit, false).await
}

async fn read_in_order(
    client: &impl GenericClient,
    after: Position,
    limit: i64,
    only_safe: bool,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let safe = if only_safe {
        "AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())"
    } else {
        ""
    };
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events \
         WHERE (transaction_id, global_position) > ($1::text::xid8, $2) {safe} \
         ORDER BY transaction_id, global_position \
         LIMIT $3"
    );
    let rows = client
        .query(
            &sql,
            &[
                &after.transaction_id.to_string(),
                &after.global_position,
                &limit,
            ],
        )
        .await?;
    rows.iter().map(event_from_row).collect()
}

/// One stream's events after `after_version`, in version order.
pub async fn read_stream(
    client: &impl GenericClient,
    stream: StreamId,
    after_version: i32,
    limit: i64,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = $1 AND version > $2 \
         ORDER BY version LIMIT $3"
    );
    let rows = client
        .query(&sql, &[&stream.to_string(), &after_version, &limit])
        .await?;
    rows.iter().map(event_from_row).collect()
}

/// One page of a tenant's whole ledger after `after_sequence`, in tenant-sequence order
/// (the audit export). Walks `events_tenant_sequence_key`; page inside one REPEATABLE READ
/// transaction for a consistent export.
pub async fn read_tenant_page(
    client: &impl GenericClient,
    tenant: TenantId,
    after_sequence: i64,
    limit: i64,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE tenant_id = $1 AND tenant_sequence > $2 \
         ORDER BY tenant_sequence LIMIT $3"
    );
    let rows = client
        .query(&sql, &[&tenant.as_uuid(), &after_sequence, &limit])
        .await?;
    rows.iter().map(event_from_row).collect()
}

/// The event types a dry-run folds (`ledger_core::dry_run`).
pub const DRY_RUN_EVENT_TYPES: [&str; 3] = ["PurchaseLogged", "PointsEarned", "TierChanged"];

/// One page of a tenant's purchases, their points and its customers' tier changes, after
/// `after_sequence`, in tenant-sequence order (which is version order within each stream,
/// since a tenant's appends are serialised on its head row).
///
/// Walks the `events_tenant_sequence_key` index (`tenant_id, tenant_sequence`): one pass
/// over the tenant's own rows for the whole dry-run, never another tenant's and never a
/// scan per customer. `PurchaseLogged` and `PointsEarned` recorded before `recorded_from`
/// are filtered out (a purchase is recorded no earlier than its `occurred_at` minus the
/// clock skew allowed, so the caller passes `from` minus that skew); `TierChanged` is read
/// from the start, as a customer's tier at `from` may come from long before. Only correct
/// paged inside one REPEATABLE READ transaction.
pub async fn read_dry_run_page(
    client: &impl GenericClient,
    tenant: TenantId,
    after_sequence: i64,
    recorded_from: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events \
         WHERE tenant_id = $1 AND tenant_sequence > $2 AND event_type = ANY($3) \
           AND (event_type = 'TierChanged' OR recorded_at >= $4) \
         ORDER BY tenant_sequence LIMIT $5"
    );
    let types: Vec<&str> = DRY_RUN_EVENT_TYPES.to_vec();
    let rows = client
        .query(
            &sql,
            &[
                &tenant.as_uuid(),
                &after_sequence,
                &types,
                &recorded_from,
                &limit,
            ],
        )
        .await?;
    rows.iter().map(event_from_row).collect()
}

/// The most recent `limit` events of a stream, newest first.
pub async fn read_stream_backwards(
    client: &impl GenericClient,
    stream: StreamId,
    limit: i64,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = $1 ORDER BY version DESC LIMIT $2"
    );
    let rows = client.query(&sql, &[&stream.to_string(), &limit]).await?;
    rows.iter().map(event_from_row).collect()
}

pub async fn stream_version(
    client: &impl GenericClient,
    stream: StreamId,
) -> Result<i32, StoreError> {
    let row = client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM events WHERE stream_id = $1",
            &[&stream.to_string()],
        )
        .await?;
    Ok(row.try_get(0)?)
}

/// Inserts sealed events with one statement. A second writer of the same stream version
/// fails on `events_stream_version_key` and the whole transaction with it: a conflict is
/// an error, never swallowed.
pub async fn insert_events(
    client: &impl PooledClient,
    events: &[RecordedEvent],
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let column = |f: fn(&RecordedEvent) -> Uuid| events.iter().map(f).collect::<Vec<_>>();
    let event_ids = column(|e| e.event_id.as_uuid());
    let tenant_ids = column(|e| e.tenant_id.as_uuid());
    let sequences: Vec<i64> = events.iter().map(|e| e.tenant_sequence).collect();
    let streams: Vec<&str> = events.iter().map(|e| e.stream_id.as_str()).collect();
    let versions: Vec<i32> = events.iter().map(|e| e.version).collect();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    let type_versions: Vec<i16> = events.iter().map(|e| e.type_version).collect();
    let payloads: Vec<&[u8]> = events.iter().map(|e| e.payload.as_slice()).collect();
    let metadata: Vec<&[u8]> = events.iter().map(|e| e.metadata.as_slice()).collect();
    let recorded_at: Vec<DateTime<Utc>> = events.iter().map(|e| e.recorded_at).collect();
    let previous: Vec<&[u8]> = events.iter().map(|e| e.previous_hash.as_slice()).collect();
    let hashes: Vec<&[u8]> = events.iter().map(|e| e.hash.as_slice()).collect();
    let result = client
        .execute(
            &client.prepare_cached("INSERT INTO events (event_id, tenant_id, tenant_sequence, stream_id, version, \
                 event_type, type_version, payload, metadata, recorded_at, previous_hash, hash) \
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::text[], $5::int[], \
                 $6::text[], $7::smallint[], $8::bytea[], $9::bytea[], $10::timestamptz[], \
                 $11::bytea[], $12::bytea[])").await?,
            &[
                &event_ids,
                &tenant_ids,
                &sequences,
                &streams,
                &versions,
                &types,
                &type_versions,
                &payloads,
                &metadata,
                &recorded_at,
                &previous,
                &hashes,
            ],
        )
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(e) if crate::db::is_unique_violation(&e, "events_stream_version_key") => {
            Err(StoreError::Conflict {
                stream: streams.first().map(|s| s.to_string()).unwrap_or_default(),
                expected: -1,
                actual: -1,
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// Locks the heads of `tenants` (sorted, so two writers never deadlock) for the rest of the
/// transaction and returns them. Taking this lock is each append transaction's first write,
/// which is what makes transaction-id order equal sequence order within a tenant.
pub async fn lock_tenant_heads(
    client: &impl PooledClient,
    tenants: &[TenantId],
) -> Result<Vec<(TenantId, TenantHead)>, StoreError> {
    let mut ids: Vec<Uuid> = tenants.iter().map(TenantId::as_uuid).collect();
    ids.sort_unstable();
    ids.dedup();
    let rows = client
        .query(
            &client
                .prepare_cached(
                    "SELECT tenant_id, sequence, head_hash FROM tenant_heads \
             WHERE tenant_id = ANY($1) ORDER BY tenant_id FOR UPDATE",
                )
                .await?,
            &[&ids],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let hash: Vec<u8> = row.try_get(2)?;
            Ok((
                TenantId::from_uuid(row.try_get(0)?),
                TenantHead {
                    sequence: row.try_get(1)?,
                    hash: ChainHash::try_from(hash.as_slice())
                        .map_err(|_| StoreError::Malformed("head hash".into()))?,
                },
            ))
        })
        .collect()
}

/// Creates chain heads for tenants about to be registered (no-op for existing ones).
pub async fn create_tenant_heads(
    client: &impl PooledClient,
    tenants: &[TenantId],
) -> Result<(), StoreError> {
    if tenants.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = tenants.iter().map(TenantId::as_uuid).collect();
    client
        .execute(
            &client
                .prepare_cached(
                    "INSERT INTO tenant_heads (tenant_id, sequence, head_hash) \
             SELECT id, 0, $2 FROM unnest($1::uuid[]) AS t(id) ORDER BY id \
             ON CONFLICT (tenant_id) DO NOTHING",
                )
                .await?,
            &[&ids, &chain::GENESIS.as_slice()],
        )
        .await?;
    Ok(())
}

pub async fn save_tenant_heads(
    client: &impl PooledClient,
    heads: &[(TenantId, TenantHead)],
) -> Result<(), StoreError> {
    if heads.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = heads.iter().map(|(t, _)| t.as_uuid()).collect();
    let sequences: Vec<i64> = heads.iter().map(|(_, h)| h.sequence).collect();
    let hashes: Vec<&[u8]> = heads.iter().map(|(_, h)| h.hash.as_slice()).collect();
    client
        .execute(
            &client
                .prepare_cached(
                    "UPDATE tenant_heads h SET sequence = n.sequence, head_hash = n.hash \
             FROM unnest($1::uuid[], $2::bigint[], $3::bytea[]) AS n(tenant_id, sequence, hash) \
             WHERE h.tenant_id = n.tenant_id",
                )
                .await?,
            &[&ids, &sequences, &hashes],
        )
        .await?;
    Ok(())
}

/// What a caller of [`append`] expects the stream's current version to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// The stream must not exist yet.
    NoStream,
    /// The stream must be at exactly this version.
    Exact(i32),
}

/// Appends events to one stream in their own transaction, if the stream is at the expected
/// version. The group-commit writer is the fast path for commands; this is the plain
/// building block, used by tools and tests, with the same chain and the same checks.
pub async fn append(
    client: &mut deadpool_postgres::Client,
    tenant_id: TenantId,
    stream: StreamId,
    expected: ExpectedVersion,
    events: &[Event],
    metadata: &EventMetadata,
) -> Result<Vec<RecordedEvent>, StoreError> {
    // Scoped to the tenant, so it works for `loyalty_app` under row-level security.
    let transaction = crate::tenancy::begin(client, tenant_id).await?;
    let recorded = append_in(&transaction, tenant_id, stream, expected, events, metadata).await?;
    transaction.commit().await?;
    Ok(recorded)
}

/// [`append`] inside the caller's transaction, so events can be written atomically with
/// other rows (a tenant's registration writes its directory row, owner and first event
/// together). Locks the tenant head first, as every append must; the caller commits.
pub async fn append_in(
    transaction: &deadpool_postgres::Transaction<'_>,
    tenant_id: TenantId,
    stream: StreamId,
    expected: ExpectedVersion,
    events: &[Event],
    metadata: &EventMetadata,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let mut heads = lock_tenant_heads(transaction, &[tenant_id]).await?;
    let (_, head) = heads
        .first_mut()
        .ok_or(StoreError::UnknownTenant(tenant_id))?;
    let actual = stream_version(&**transaction, stream).await?;
    let expected_number = match expected {
        ExpectedVersion::NoStream => 0,
        ExpectedVersion::Exact(v) => v,
    };
    if actual != expected_number {
        return Err(StoreError::Conflict {
            stream: stream.to_string(),
            expected: expected_number,
            actual,
        });
    }
    let metadata = codec::encode_metadata(metadata)?;
    let now = Utc::now();
    let mut recorded = Vec::with_capacity(events.len());
    for (offset, event) in events.iter().enumerate() {
        let version = actual + 1 + i32::try_from(offset).unwrap_or(i32::MAX - actual - 1);
        recorded.push(head.seal(
            tenant_id,
            EventId::from_uuid(Uuid::now_v7()),
            stream.to_string(),
            version,
            event,
            metadata.clone(),
            now,
        )?);
    }
    insert_events(transaction, &recorded).await?;
    save_tenant_heads(transaction, &heads).await?;
    Ok(recorded)
}
