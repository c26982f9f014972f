//! The audit export's format (docs/AUDIT.md) and its offline verification (issue #6,
//! items 2 and 3): no database, no IO — [`verify_lines`] takes the file's lines and a
//! signature check, so the command and the tests share it.
//!
//! What is checked, in file order, stopping at the first failure: the header; each event
//! line's fields, its sequence (1, 2, 3… without gaps), its link to the previous line and
//! its hash over its own contents (`ledger_core::chain`); its payload decodes
//! (`ledger_core::codec`). Then the trailer: the count of events, and the signed head — its
//! tenant, that it names an event of the file with that event's hash, and its Ed25519
//! signature over `signed_head_message`. Events after the signed head are reported as not
//! covered by a signature, which is not a failure. Customer streams are replayed through
//! `evolve` for the summary.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use ledger_core::chain::{
    signed_head_message, ChainBreak, ChainFields, ChainHash, ChainVerifier, StoredLink,
};
use ledger_core::{evolve, CustomerState, EventId, Points, StreamId, TenantId};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use uuid::Uuid;

/// The `format` of the header line.
pub const FORMAT: &str = "loyalty-ledger-export";
/// The `version` of the header line this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;

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

/// The first failure found. Messages start with the first bad sequence when there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("line {line}: {message}")]
    Malformed { line: usize, message: String },
    #[error("header: {0}")]
    Header(String),
    #[error("sequence {sequence}: {message}")]
    Event { sequence: u64, message: String },
    #[error("trailer: {0}")]
    Trailer(String),
    #[error("sequence {sequence}: missing from the file: the signed head names sequence {signed} but the file ends at {last}")]
    Truncated {
        sequence: u64,
        signed: u64,
        last: u64,
    },
    #[error("sequence {sequence}: the signed head {message}")]
    SignedHead { sequence: u64, message: String },
}

impl VerifyError {
    /// The first bad sequence, when the failure is at an event.
    pub fn sequence(&self) -> Option<u64> {
        match self {
            VerifyError::Event { sequence, .. }
            | VerifyError::Truncated { sequence, .. }
            | VerifyError::SignedHead { sequence, .. } => Some(*sequence),
            _ => None,
        }
    }

    fn event(sequence: u64, message: impl Into<String>) -> Self {
        VerifyError::Event {
            sequence,
            message: message.into(),
        }
    }
}

/// What a successful verification found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub tenant_id: Uuid,
    pub events: u64,
    /// The signed head's sequence (0 when none is signed): events up to it are covered by
    /// the signature, those after it only by the chain.
    pub signed_sequence: u64,
    pub key_id: Option<String>,
    pub customers: u64,
    pub earned: i64,
    pub redeemed: i64,
    pub expired: i64,
    pub reversed: i64,
    pub adjusted: i64,
    pub pending: i64,
    /// Σ customers' balances.
    pub outstanding: i64,
}

impl Summary {
    pub fn not_covered(&self) -> u64 {
        self.events - self.signed_sequence
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "tenant: {}", self.tenant_id)?;
        writeln!(f, "events: {} (chain intact)", self.events)?;
        match &self.key_id {
            Some(key_id) => writeln!(
                f,
                "signed head: sequence {} by {key_id} (signature valid)",
                self.signed_sequence
            )?,
            None => writeln!(f, "signed head: none")?,
        }
        if self.not_covered() > 0 {
            writeln!(
                f,
                "not covered by a signature: {} event(s) after sequence {}",
                self.not_covered(),
                self.signed_sequence
            )?;
        }
        writeln!(f, "customers: {}", self.customers)?;
        writeln!(f, "points issued (earned): {}", self.earned)?;
        writeln!(f, "points redeemed: {}", self.redeemed)?;
        writeln!(f, "points expired: {}", self.expired)?;
        writeln!(f, "points reversed: {}", self.reversed)?;
        writeln!(f, "points adjusted (net): {}", self.adjusted)?;
        writeln!(f, "points pending: {}", self.pending)?;
        write!(f, "outstanding balance: {}", self.outstanding)
    }
}

fn hash_from_hex(text: &str) -> Option<ChainHash> {
    let bytes = hex::decode(text).ok()?;
    ChainHash::try_from(bytes.as_slice()).ok()
}

/// Verifies an export given its lines (without their line ends) and a signature check
/// `(message, signature) -> valid` (`vault::audit::verify` with the auditor's public key).
///
/// Memory: 32 bytes per event (the hashes, to find the signed head's) and the replayed
/// customer states.
pub fn verify_lines<I, S, E>(
    lines: I,
    signature_valid: impl Fn(&[u8], &[u8]) -> bool,
) -> Result<Summary, VerifyError>
where
    I: IntoIterator<Item = Result<S, E>>,
    S: AsRef<str>,
    E: std::fmt::Display,
{
    let mut lines = lines.into_iter().enumerate().map(|(index, line)| {
        line.map_err(|e| VerifyError::Malformed {
            line: index + 1,
            message: format!("cannot be read: {e}"),
        })
        .map(|text| (index + 1, text))
    });

    let header: Header = match lines.next() {
        None => return Err(VerifyError::Header("the file is empty".into())),
        Some(line) => {
            let (_, text) = line?;
            serde_json::from_str(text.as_ref())
                .map_err(|e| VerifyError::Header(format!("not a header line: {e}")))?
        }
    };
    if header.format != FORMAT {
        return Err(VerifyError::Header(format!(
            "format {:?}, expected {FORMAT:?}",
            header.format
        )));
    }
    if header.version != FORMAT_VERSION {
        return Err(VerifyError::Header(format!(
            "version {} is not supported (this verifier reads {FORMAT_VERSION})",
            header.version
        )));
    }
    let tenant_id = TenantId::from_uuid(header.tenant_id);

    let mut chain = ChainVerifier::default();
    let mut hashes: Vec<ChainHash> = Vec::new();
    let mut customers: HashMap<String, CustomerState> = HashMap::new();
    let mut trailer: Option<Trailer> = None;

    for line in lines {
        let (number, text) = line?;
        let text = text.as_ref();
        if trailer.is_some() {
            return Err(VerifyError::Trailer(format!(
                "line {number} follows the trailer"
            )));
        }
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| VerifyError::Malformed {
                line: number,
                message: format!("not JSON: {e}"),
            })?;
        if value.get("signed_head").is_some() {
            trailer =
                Some(serde_json::from_value(value).map_err(|e| {
                    VerifyError::Trailer(format!("line {number} is malformed: {e}"))
                })?);
            continue;
        }
        let expected = chain.head().0 + 1;
        let event: EventLine =
            serde_json::from_value(value).map_err(|e| VerifyError::Malformed {
                line: number,
                message: format!("not an event line (sequence {expected} expected): {e}"),
            })?;
        let sequence = event.tenant_sequence;
        let bad = |message: &str| VerifyError::event(sequence, message);
        let metadata = BASE64
            .decode(&event.metadata)
            .map_err(|_| bad("metadata is not base64"))?;
        let payload = BASE64
            .decode(&event.payload)
            .map_err(|_| bad("payload is not base64"))?;
        let previous_hash = hash_from_hex(&event.previous_hash)
            .ok_or_else(|| bad("previous_hash is not 32 bytes of hex"))?;
        let hash = hash_from_hex(&event.hash).ok_or_else(|| bad("hash is not 32 bytes of hex"))?;
        let fields = ChainFields {
            tenant_id,
            tenant_sequence: sequence,
            event_id: EventId::from_uuid(event.event_id),
            stream_id: &event.stream_id,
            version: event.version,
            event_type: &event.event_type,
            type_version: event.type_version,
            recorded_at_micros: event.recorded_at_micros,
            metadata: &metadata,
            payload: &payload,
        };
        chain
            .push(StoredLink {
                fields,
                previous_hash: &previous_hash,
                hash: &hash,
            })
            .map_err(|broken| match broken {
                ChainBreak::Sequence { previous, found } => VerifyError::event(
                    previous + 1,
                    format!("missing or out of order (the next line has sequence {found})"),
                ),
                ChainBreak::PreviousHash { sequence } => VerifyError::event(
                    sequence,
                    "previous_hash is not the hash of the event before it",
                ),
                ChainBreak::Hash { sequence } => {
                    VerifyError::event(sequence, "hash does not match its contents")
                }
            })?;
        hashes.push(hash);
        let decoded = ledger_core::codec::decode(&event.event_type, event.type_version, &payload)
            .map_err(|e| {
            VerifyError::event(sequence, format!("payload does not decode: {e}"))
        })?;
        match StreamId::parse(&event.stream_id) {
            Ok(StreamId::Customer(_)) => {
                let state = customers.remove(&event.stream_id).unwrap_or_default();
                customers.insert(event.stream_id, evolve(state, &decoded));
            }
            Ok(StreamId::Tenant(id)) if id == tenant_id => {}
            Ok(StreamId::Tenant(_)) => {
                return Err(bad("is in another tenant's stream"));
            }
            Err(_) => return Err(bad("stream_id is not a stream id")),
        }
    }

    let (last, _) = chain.head();
    let trailer = trailer.ok_or_else(|| {
        VerifyError::Trailer(format!(
            "missing: the file ends after sequence {last} (truncated?)"
        ))
    })?;
    if trailer.events != last {
        return Err(VerifyError::Trailer(format!(
            "counts {} events but the file holds {last}",
            trailer.events
        )));
    }
    let mut summary = Summary {
        tenant_id: header.tenant_id,
        events: last,
        ..Summary::default()
    };
    if let Some(head) = trailer.signed_head {
        let sequence = head.sequence;
        let fail = |message: &str| VerifyError::SignedHead {
            sequence,
            message: message.into(),
        };
        if head.tenant_id != header.tenant_id {
            return Err(fail("is another tenant's"));
        }
        if sequence == 0 {
            return Err(fail("names sequence 0"));
        }
        if sequence > last {
            return Err(VerifyError::Truncated {
                sequence: last + 1,
                signed: sequence,
                last,
            });
        }
        let head_hash =
            hash_from_hex(&head.head_hash).ok_or_else(|| fail("hash is not 32 bytes of hex"))?;
        let index = usize::try_from(sequence - 1).map_err(|_| fail("is out of range"))?;
        if hashes[index] != head_hash {
            return Err(fail("hash is not the hash of the event at that sequence"));
        }
        let signature = BASE64
            .decode(&head.signature)
            .map_err(|_| fail("signature is not base64"))?;
        let message = signed_head_message(tenant_id, sequence, &head_hash, head.signed_at_micros);
        if !signature_valid(&message, &signature) {
            return Err(fail(&format!(
                "signature does not verify with the public key given (signed by {})",
                head.key_id
            )));
        }
        summary.signed_sequence = sequence;
        summary.key_id = Some(head.key_id);
    }

    let total =
        |f: fn(&CustomerState) -> Points| -> i64 { customers.values().map(|c| f(c).value()).sum() };
    summary.customers = customers.len() as u64;
    summary.earned = total(|c| c.earned);
    summary.redeemed = total(|c| c.redeemed);
    summary.expired = total(|c| c.expired);
    summary.reversed = total(|c| c.reversed);
    summary.adjusted = total(|c| c.adjusted);
    summary.pending = total(|c| c.pending);
    summary.outstanding = total(|c| c.balance);
    Ok(summary)
}
