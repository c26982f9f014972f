//! The message the relay publishes for each event: the stored row, whole, as MessagePack.
//! Carrying the hash fields lets any consumer verify the chain without the database.

use chrono::DateTime;
use ledger_core::{EventId, TenantId};
use schema::store::{Position, RecordedEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventEnvelope {
    pub event_id: Uuid,
    pub tenant_id: Uuid,
    pub tenant_sequence: i64,
    pub stream_id: String,
    pub version: i32,
    pub event_type: String,
    pub type_version: i16,
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub metadata: Vec<u8>,
    pub recorded_at_micros: i64,
    #[serde(with = "serde_bytes")]
    pub previous_hash: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub hash: Vec<u8>,
    pub transaction_id: i64,
    pub global_position: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("cannot encode envelope: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    #[error("cannot decode envelope: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
    #[error("envelope field out of range: {0}")]
    Field(&'static str),
}

impl EventEnvelope {
    pub fn from_recorded(event: &RecordedEvent) -> Self {
        let position = event.position.unwrap_or_default();
        EventEnvelope {
            event_id: event.event_id.as_uuid(),
            tenant_id: event.tenant_id.as_uuid(),
            tenant_sequence: event.tenant_sequence,
            stream_id: event.stream_id.clone(),
            version: event.version,
            event_type: event.event_type.clone(),
            type_version: event.type_version,
            payload: event.payload.clone(),
            metadata: event.metadata.clone(),
            recorded_at_micros: event.recorded_at.timestamp_micros(),
            previous_hash: event.previous_hash.to_vec(),
            hash: event.hash.to_vec(),
            transaction_id: position.transaction_id,
            global_position: position.global_position,
        }
    }

    pub fn encode(&self) -> Result<Vec<u8>, EnvelopeError> {
        Ok(rmp_serde::to_vec_named(self)?)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        Ok(rmp_serde::from_slice(bytes)?)
    }

    pub fn into_recorded(self) -> Result<RecordedEvent, EnvelopeError> {
        let hash = |bytes: Vec<u8>, name| {
            <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| EnvelopeError::Field(name))
        };
        Ok(RecordedEvent {
            event_id: EventId::from_uuid(self.event_id),
            tenant_id: TenantId::from_uuid(self.tenant_id),
            tenant_sequence: self.tenant_sequence,
            stream_id: self.stream_id,
            version: self.version,
            event_type: self.event_type,
            type_version: self.type_version,
            payload: self.payload,
            metadata: self.metadata,
            recorded_at: DateTime::from_timestamp_micros(self.recorded_at_micros)
                .ok_or(EnvelopeError::Field("recorded_at_micros"))?,
            previous_hash: hash(self.previous_hash, "previous_hash")?,
            hash: hash(self.hash, "hash")?,
            position: Some(Position {
                transaction_id: self.transaction_id,
                global_position: self.global_position,
            }),
        })
    }
}
