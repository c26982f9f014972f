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
use ledger_core::{
    CustomerId, RedemptionCode, RedemptionId, RewardId, RewardStock, StreamId, TenantId,
    TenantState,
};
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

/// The units used of each of the tenant's rewards (`reward_stock`, kept by the writer in
/// the transactions of the holds), as of the transaction's snapshot: for showing what is
/// left. Deciding on stock is the writer's, under the tenant lock.
pub async fn stock_used(
    client: &impl GenericClient,
    tenant_id: TenantId,
) -> Result<RewardStock, StoreError> {
    let rows = client
        .query(
            "SELECT reward_id, used FROM reward_stock WHERE tenant_id = $1",
            &[&tenant_id.as_uuid()],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let used: i32 = row.try_get(1)?;
            let used = u32::try_from(used)
                .map_err(|_| StoreError::Malformed("a negative reward_stock count".into()))?;
            Ok((RewardId::from_uuid(row.try_get(0)?), used))
        })
        .collect::<Result<Vec<_>, StoreError>>()
        .map(RewardStock::from_used)
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
