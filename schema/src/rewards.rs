//! Reads for the rewards catalogue and counter fulfilment. Both run inside a transaction
//! scoped to the caller's tenant (`tenancy::begin`), so row-level security hides every other
//! tenant's rows whatever the queries say; they filter by tenant too.
//!
//! The catalogue is part of the tenant's stream (`RewardCreated`, `RewardRetired`), read and
//! folded here: the stream is small (registration, rule sets, rewards) and the answer is
//! current, without a projection to wait for. Codes are looked up in `redemption_codes`, the
//! index the group-commit writer keeps beside the events.

use crate::store::{self, StoreError};
use ledger_core::aggregate::Aggregate;
use ledger_core::{CustomerId, RedemptionCode, RedemptionId, StreamId, TenantId, TenantState};
use tokio_postgres::GenericClient;

/// Events read per round trip when folding the tenant's stream.
const TENANT_STREAM_PAGE_EVENTS: i64 = 1_000;

/// The tenant's state (profile, rule set, reward catalogue) as of the transaction's snapshot.
pub async fn tenant_state(
    client: &impl GenericClient,
    tenant_id: TenantId,
) -> Result<TenantState, StoreError> {
    let stream = StreamId::Tenant(tenant_id);
    let mut state = TenantState::default();
    let mut version = 0;
    loop {
        let page = store::read_stream(client, stream, version, TENANT_STREAM_PAGE_EVENTS).await?;
        for recorded in &page {
            state.apply(&recorded.decode()?);
            version = recorded.version;
        }
        if (page.len() as i64) < TENANT_STREAM_PAGE_EVENTS {
            return Ok(state);
        }
    }
}

/// The redemption a code names at this tenant: its customer and id, or `None` when the
/// tenant has no such code.
pub async fn redemption_by_code(
    client: &impl GenericClient,
    tenant_id: TenantId,
    code: &RedemptionCode,
) -> Result<Option<(CustomerId, RedemptionId)>, StoreError> {
    let row = client
        .query_opt(
            "SELECT customer_id, redemption_id FROM redemption_codes \
             WHERE tenant_id = $1 AND code = $2",
            &[&tenant_id.as_uuid(), &code.as_str()],
        )
        .await?;
    Ok(row.map(|row| {
        (
            CustomerId::from_uuid(row.get(0)),
            RedemptionId::from_uuid(row.get(1)),
        )
    }))
}
