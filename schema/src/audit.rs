//! The audit export (docs/AUDIT.md, issue #6 item 2): its line types and the paged reader
//! that writes them, shared by `loyalty audit export` (as `loyalty_platform`) and the API's
//! `GET /v1/audit/export` (as `loyalty_app`, scoped to the caller's tenant by row-level
//! security), so the two write the same bytes for the same snapshot.
//!
//! The reader ([`ExportCursor`]) runs inside a transaction its caller began, which must be
//! `REPEATABLE READ` (one snapshot for every page, so the signed head read at the end names
//! an event of the pages before it). It hands out one chunk of lines at a time: the header
//! with the first page, then a page per call, then the trailer; memory is one page.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use chrono::{DateTime, Utc};
use ledger_core::TenantId;
use serde::{Deserialize, Serialize};
use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::store::{read_tenant_page, RecordedEvent, StoreError};

/// The `format` of the header line.
pub const FORMAT: &str = "loyalty-ledger-export";
/// The `version` of the header line this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Events read per query by default.
pub const PAGE_SIZE: i64 = 1_000;

/// The first line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub format: String,
    pub version: u32,
    pub tenant_id: Uuid,
}

/// One line per event: every field the chain covers (the tenant's id is the header's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventLine {
    pub event_id: Uuid,
    pub tenant_sequence: u64,
    pub stream_id: String,
    pub version: u32,
    pub event_type: String,
    pub type_version: u16,
    pub recorded_at_micros: i64,
    /// Base64 (standard, padded).
    pub metadata: String,
    /// Base64 (standard, padded).
    pub payload: String,
    /// Hex, 64 digits.
    pub previous_hash: String,
    /// Hex, 64 digits.
    pub hash: String,
}

/// The last line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trailer {
    /// The number of event lines (catches an accidental truncation; only the signed head is
    /// proof).
    pub events: u64,
    /// The tenant's latest signed chain head when the export was taken, or `null`.
    pub signed_head: Option<SignedHeadLine>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedHeadLine {
    pub tenant_id: Uuid,
    pub sequence: u64,
    /// Hex, 64 digits.
    pub head_hash: String,
    pub signed_at_micros: i64,
    pub key_id: String,
    /// Base64 (standard, padded), 64 bytes.
    pub signature: String,
}

/// An event as its export line.
pub fn event_line(event: &RecordedEvent) -> EventLine {
    EventLine {
        event_id: event.event_id.as_uuid(),
        tenant_sequence: u64::try_from(event.tenant_sequence).unwrap_or(0),
        stream_id: event.stream_id.clone(),
        version: u32::try_from(event.version).unwrap_or(0),
        event_type: event.event_type.clone(),
        type_version: u16::try_from(event.type_version).unwrap_or(0),
        recorded_at_micros: event.recorded_at.timestamp_micros(),
        metadata: BASE64.encode(&event.metadata),
        payload: BASE64.encode(&event.payload),
        previous_hash: hex::encode(event.previous_hash),
        hash: hex::encode(event.hash),
    }
}

/// Appends `value` as one line (JSON, then `\n`).
pub fn push_line(out: &mut Vec<u8>, value: &impl Serialize) {
    // Serializing these plain structs into a Vec cannot fail (no maps with non-string keys,
    // no IO); a failure would be a bug in this module's types.
    serde_json::to_writer(&mut *out, value).expect("export lines serialize");
    out.push(b'\n');
}

/// The tenant's latest signed chain head, as its trailer field. Reads what the transaction's
/// role may see: all of them as `loyalty_platform`, the scoped tenant's as `loyalty_app`.
pub async fn latest_signed_head(
    client: &impl GenericClient,
    tenant: TenantId,
) -> Result<Option<SignedHeadLine>, StoreError> {
    let row = client
        .query_opt(
            "SELECT sequence, head_hash, signed_at, key_id, signature FROM signed_chain_heads \
             WHERE tenant_id = $1 ORDER BY sequence DESC LIMIT 1",
            &[&tenant.as_uuid()],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    let sequence: i64 = row.try_get(0)?;
    let hash: Vec<u8> = row.try_get(1)?;
    let signed_at: DateTime<Utc> = row.try_get(2)?;
    let signature: Vec<u8> = row.try_get(4)?;
    Ok(Some(SignedHeadLine {
        tenant_id: tenant.as_uuid(),
        sequence: u64::try_from(sequence)
            .map_err(|_| StoreError::Malformed(format!("signed head sequence {sequence}")))?,
        head_hash: hex::encode(hash),
        signed_at_micros: signed_at.timestamp_micros(),
        key_id: row.try_get(3)?,
        signature: BASE64.encode(signature),
    }))
}

/// What an export wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Exported {
    pub events: u64,
    /// The signed head's sequence, if any.
    pub signed_sequence: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Header,
    Events,
    Trailer,
    Done,
}

/// A tenant's export, a chunk of whole lines at a time (see the module's documentation).
#[derive(Debug)]
pub struct ExportCursor {
    tenant: TenantId,
    page_size: i64,
    after: i64,
    stage: Stage,
    exported: Exported,
}

impl ExportCursor {
    /// An export of `tenant`, `page_size` events per query (at least 1).
    pub fn new(tenant: TenantId, page_size: i64) -> ExportCursor {
        ExportCursor {
            tenant,
            page_size: page_size.max(1),
            after: 0,
            stage: Stage::Header,
            exported: Exported::default(),
        }
    }

    /// What has been written so far (all of it once [`ExportCursor::next_chunk`] returned
    /// `None`).
    pub fn exported(&self) -> Exported {
        self.exported
    }

    /// The next chunk of lines, or `None` after the trailer. `transaction` must be the same
    /// REPEATABLE READ transaction on every call.
    pub async fn next_chunk(
        &mut self,
        transaction: &impl GenericClient,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let mut out = Vec::new();
        if self.stage == Stage::Header {
            push_line(
                &mut out,
                &Header {
                    format: FORMAT.into(),
                    version: FORMAT_VERSION,
                    tenant_id: self.tenant.as_uuid(),
                },
            );
            self.stage = Stage::Events;
        }
        match self.stage {
            Stage::Header => unreachable!("the header is written above"),
            Stage::Events => {
                let page =
                    read_tenant_page(transaction, self.tenant, self.after, self.page_size).await?;
                for event in &page {
                    push_line(&mut out, &event_line(event));
                }
                if let Some(last) = page.last() {
                    self.after = last.tenant_sequence;
                    self.exported.events = u64::try_from(last.tenant_sequence).unwrap_or(0);
                }
                // A short page is the last; a full one may be followed by an empty one.
                if (page.len() as i64) < self.page_size {
                    self.stage = Stage::Trailer;
                }
                Ok(Some(out))
            }
            Stage::Trailer => {
                let signed_head = latest_signed_head(transaction, self.tenant).await?;
                self.exported.signed_sequence = signed_head.as_ref().map(|h| h.sequence);
                push_line(
                    &mut out,
                    &Trailer {
                        events: self.exported.events,
                        signed_head,
                    },
                );
                self.stage = Stage::Done;
                Ok(Some(out))
            }
            Stage::Done => Ok(None),
        }
    }
}
