//! Identifiers. Every id is a UUID chosen by the shell (UUIDv7 in practice, so ids sort by
//! creation time); this crate never generates one, because generating needs a clock and a
//! random source.

use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            pub const fn from_uuid(uuid: Uuid) -> Self {
                $name(uuid)
            }

            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }

            /// Parses the hyphenated text form a client sends.
            pub fn parse(raw: &str) -> Result<Self, uuid::Error> {
                Uuid::parse_str(raw).map($name)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

uuid_id!(
    /// A vendor (tenant) of the platform.
    TenantId
);
uuid_id!(
    /// A customer of one tenant. The same person at two vendors has two ids.
    CustomerId
);
uuid_id!(
    /// The id of one recorded event; also the `Nats-Msg-Id` the relay publishes it with.
    EventId
);
uuid_id!(
    /// A logged purchase.
    PurchaseId
);
uuid_id!(
    /// A lot of points opened by one `PointsEarned`.
    LotId
);
uuid_id!(
    /// One redemption of points.
    RedemptionId
);
uuid_id!(
    /// One reward of a tenant's catalogue.
    RewardId
);
uuid_id!(
    /// One refund of a logged purchase (full or partial).
    RefundId
);
uuid_id!(
    /// One manual adjustment of a customer's points.
    AdjustmentId
);

/// The stream an event belongs to. A stream is the unit of ordering and of optimistic
/// concurrency: its events have versions 1, 2, 3, … with no gaps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StreamId {
    /// The tenant's own facts: registration and rule sets.
    Tenant(TenantId),
    /// One customer's facts: enrolment, purchases, lots, redemptions, expiries.
    Customer(CustomerId),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a stream id: {0:?}")]
pub struct InvalidStreamId(pub String);

impl StreamId {
    pub fn parse(raw: &str) -> Result<Self, InvalidStreamId> {
        let invalid = || InvalidStreamId(raw.to_owned());
        let (kind, id) = raw.split_once('-').ok_or_else(invalid)?;
        let uuid = Uuid::parse_str(id).map_err(|_| invalid())?;
        match kind {
            "tenant" => Ok(StreamId::Tenant(TenantId(uuid))),
            "customer" => Ok(StreamId::Customer(CustomerId(uuid))),
            _ => Err(invalid()),
        }
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamId::Tenant(id) => write!(f, "tenant-{id}"),
            StreamId::Customer(id) => write!(f, "customer-{id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_id_round_trips_through_text() {
        let uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001);
        for stream in [
            StreamId::Tenant(TenantId::from_uuid(uuid)),
            StreamId::Customer(CustomerId::from_uuid(uuid)),
        ] {
            assert_eq!(StreamId::parse(&stream.to_string()), Ok(stream));
        }
        assert!(StreamId::parse("account-x").is_err());
        assert!(StreamId::parse("tenant").is_err());
        assert!(StreamId::parse("robot-00000000-0000-0000-0000-000000000000").is_err());
    }
}
