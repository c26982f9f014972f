//! The per-tenant hash chain, shared by the writer and every verifier.
//!
//! `hash(n) = SHA-256(hash(n-1) || canonical_bytes(event n))`, with `hash(0)` = 32 zero
//! bytes. The canonical bytes are a fixed binary layout (below) of every field of the
//! stored event that means something: changing, removing, reordering or moving an event to
//! another tenant or stream changes a hash.
//!
//! Layout, integers big-endian, variable fields prefixed by their u32 length:
//! `tenant_id(16) | tenant_sequence(u64) | event_id(16) | len stream_id | version(u32) |
//! len event_type | type_version(u16) | recorded_at_micros(i64) | len metadata | len payload`.

use crate::ids::{EventId, TenantId};
use sha2::{Digest, Sha256};

pub type ChainHash = [u8; 32];

/// The hash before a tenant's first event.
pub const GENESIS: ChainHash = [0; 32];

/// The fields of one stored event that the chain covers.
#[derive(Debug, Clone, Copy)]
pub struct ChainFields<'a> {
    pub tenant_id: TenantId,
    pub tenant_sequence: u64,
    pub event_id: EventId,
    pub stream_id: &'a str,
    pub version: u32,
    pub event_type: &'a str,
    pub type_version: u16,
    pub recorded_at_micros: i64,
    pub metadata: &'a [u8],
    pub payload: &'a [u8],
}

pub fn canonical_bytes(fields: &ChainFields<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        16 + 8
            + 16
            + 4
            + 2
            + 8
            + 16
            + fields.stream_id.len()
            + fields.event_type.len()
            + fields.metadata.len()
            + fields.payload.len(),
    );
    feed_canonical(fields, |bytes| out.extend_from_slice(bytes));
    out
}

/// The canonical bytes in order, piece by piece: [`link`] hashes them as they come, without
/// building the vector (the verifier's and the writer's path).
fn feed_canonical(fields: &ChainFields<'_>, mut put: impl FnMut(&[u8])) {
    let with_length = |put: &mut dyn FnMut(&[u8]), bytes: &[u8]| {
        // Stored fields are far below 4 GiB (request bodies are capped in kilobytes).
        let length = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        put(&length.to_be_bytes());
        put(bytes);
    };
    put(fields.tenant_id.as_uuid().as_bytes());
    put(&fields.tenant_sequence.to_be_bytes());
    put(fields.event_id.as_uuid().as_bytes());
    with_length(&mut put, fields.stream_id.as_bytes());
    put(&fields.version.to_be_bytes());
    with_length(&mut put, fields.event_type.as_bytes());
    put(&fields.type_version.to_be_bytes());
    put(&fields.recorded_at_micros.to_be_bytes());
    with_length(&mut put, fields.metadata);
    with_length(&mut put, fields.payload);
}

/// The hash of an event given the hash of its predecessor.
pub fn link(previous: &ChainHash, fields: &ChainFields<'_>) -> ChainHash {
    let mut hasher = Sha256::new();
    hasher.update(previous);
    feed_canonical(fields, |bytes| hasher.update(bytes));
    hasher.finalize().into()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    #[error("sequence {found} follows {previous}: events are missing or out of order")]
    Sequence { previous: u64, found: u64 },
    #[error("event at sequence {sequence} does not link to its predecessor")]
    PreviousHash { sequence: u64 },
    #[error("event at sequence {sequence} has been altered (hash mismatch)")]
    Hash { sequence: u64 },
}

/// One stored event as a verifier sees it: its fields and the two hashes stored with it.
#[derive(Debug, Clone, Copy)]
pub struct StoredLink<'a> {
    pub fields: ChainFields<'a>,
    pub previous_hash: &'a ChainHash,
    pub hash: &'a ChainHash,
}

/// Checks links one by one; remember the returned head to continue with the next batch.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    sequence: u64,
    head: ChainHash,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        ChainVerifier {
            sequence: 0,
            head: GENESIS,
        }
    }
}

impl ChainVerifier {
    pub fn push(&mut self, link_: StoredLink<'_>) -> Result<(), ChainBreak> {
        let sequence = link_.fields.tenant_sequence;
        if sequence != self.sequence + 1 {
            return Err(ChainBreak::Sequence {
                previous: self.sequence,
                found: sequence,
            });
        }
        if link_.previous_hash != &self.head {
            return Err(ChainBreak::PreviousHash { sequence });
        }
        let computed = link(&self.head, &link_.fields);
        if &computed != link_.hash {
            return Err(ChainBreak::Hash { sequence });
        }
        self.sequence = sequence;
        self.head = computed;
        Ok(())
    }

    pub fn head(&self) -> (u64, ChainHash) {
        (self.sequence, self.head)
    }
}

/// The bytes the platform signs for a tenant's chain head (issue #6): a fixed prefix naming
/// the format, then `tenant_id(16) | sequence(u64) | head hash(32) | signed_at_micros(i64)`,
/// integers big-endian. A verifier rebuilds them from an export's head and checks the
/// Ed25519 signature over them; the prefix keeps a signature of these bytes from meaning
/// anything in another protocol.
pub fn signed_head_message(
    tenant_id: TenantId,
    sequence: u64,
    head: &ChainHash,
    signed_at_micros: i64,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(SIGNED_HEAD_PREFIX.len() + 16 + 8 + 32 + 8);
    out.extend_from_slice(SIGNED_HEAD_PREFIX);
    out.extend_from_slice(tenant_id.as_uuid().as_bytes());
    out.extend_from_slice(&sequence.to_be_bytes());
    out.extend_from_slice(head);
    out.extend_from_slice(&signed_at_micros.to_be_bytes());
    out
}

/// The prefix of [`signed_head_message`], version 1.
pub const SIGNED_HEAD_PREFIX: &[u8] = b"loyalty-ledger signed chain head v1\n";

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    struct Owned {
        sequence: u64,
        payload: Vec<u8>,
        previous: ChainHash,
        hash: ChainHash,
    }

    fn fields(sequence: u64, payload: &[u8]) -> ChainFields<'_> {
        ChainFields {
            tenant_id: TenantId::from_uuid(Uuid::from_u128(1)),
            tenant_sequence: sequence,
            event_id: EventId::from_uuid(Uuid::from_u128(u128::from(sequence) + 100)),
            stream_id: "customer-00000000-0000-0000-0000-000000000002",
            version: u32::try_from(sequence).unwrap(),
            event_type: "PointsEarned",
            type_version: 1,
            recorded_at_micros: 1_700_000_000_000_000 + i64::try_from(sequence).unwrap(),
            metadata: b"meta",
            payload,
        }
    }

    fn build(n: u64) -> Vec<Owned> {
        let mut previous = GENESIS;
        (1..=n)
            .map(|sequence| {
                let payload = format!("payload {sequence}").into_bytes();
                let hash = link(&previous, &fields(sequence, &payload));
                let owned = Owned {
                    sequence,
                    payload,
                    previous,
                    hash,
                };
                previous = hash;
                owned
            })
            .collect()
    }

    fn verify(chain: &[Owned]) -> Result<(), ChainBreak> {
        let mut verifier = ChainVerifier::default();
        for e in chain {
            verifier.push(StoredLink {
                fields: fields(e.sequence, &e.payload),
                previous_hash: &e.previous,
                hash: &e.hash,
            })?;
        }
        Ok(())
    }

    #[test]
    fn an_intact_chain_verifies() {
        assert_eq!(verify(&build(10)), Ok(()));
    }

    #[test]
    fn a_changed_byte_is_detected() {
        let mut chain = build(10);
        chain[4].payload[0] ^= 1;
        assert_eq!(verify(&chain), Err(ChainBreak::Hash { sequence: 5 }));
    }

    #[test]
    fn a_deleted_event_is_detected() {
        let mut chain = build(10);
        chain.remove(6);
        assert_eq!(
            verify(&chain),
            Err(ChainBreak::Sequence {
                previous: 6,
                found: 8
            })
        );
    }

    #[test]
    fn swapped_events_are_detected() {
        let mut chain = build(10);
        chain.swap(2, 3);
        assert!(verify(&chain).is_err());
    }

    #[test]
    fn a_recomputed_hash_without_relinking_is_detected() {
        let mut chain = build(5);
        chain[1].payload = b"forged".to_vec();
        chain[1].hash = link(&chain[1].previous, &fields(2, &chain[1].payload));
        assert_eq!(
            verify(&chain),
            Err(ChainBreak::PreviousHash { sequence: 3 })
        );
    }

    #[test]
    fn every_field_is_covered() {
        let base = fields(1, b"p");
        let h = link(&GENESIS, &base);
        let variants = [
            ChainFields {
                tenant_id: TenantId::from_uuid(Uuid::from_u128(2)),
                ..base
            },
            ChainFields {
                event_id: EventId::from_uuid(Uuid::from_u128(9)),
                ..base
            },
            ChainFields {
                stream_id: "customer-x",
                ..base
            },
            ChainFields { version: 2, ..base },
            ChainFields {
                event_type: "PointsExpired",
                ..base
            },
            ChainFields {
                type_version: 2,
                ..base
            },
            ChainFields {
                recorded_at_micros: 0,
                ..base
            },
            ChainFields {
                metadata: b"other",
                ..base
            },
        ];
        for variant in variants {
            assert_ne!(link(&GENESIS, &variant), h);
        }
    }

    #[test]
    fn a_signed_head_message_covers_every_field() {
        let tenant = TenantId::from_uuid(uuid::Uuid::from_u128(7));
        let other = TenantId::from_uuid(uuid::Uuid::from_u128(8));
        let head = [5u8; 32];
        let message = signed_head_message(tenant, 42, &head, 1_000);
        assert!(message.starts_with(SIGNED_HEAD_PREFIX));
        assert_eq!(message.len(), SIGNED_HEAD_PREFIX.len() + 64);
        for variant in [
            signed_head_message(other, 42, &head, 1_000),
            signed_head_message(tenant, 43, &head, 1_000),
            signed_head_message(tenant, 42, &[6u8; 32], 1_000),
            signed_head_message(tenant, 42, &head, 1_001),
        ] {
            assert_ne!(variant, message);
        }
    }
}
