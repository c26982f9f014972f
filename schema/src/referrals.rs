//! Referral codes: which customer a code names (`referral_codes`, the index the group-commit
//! writer keeps beside each `CustomerEnrolled`), and a customer's own code. Both run inside
//! a transaction scoped to the caller's tenant (`tenancy::begin`).

use crate::store::StoreError;
use ledger_core::{CustomerId, ReferralCode, TenantId};
use tokio_postgres::GenericClient;

/// The customer whose referral code `code` is, or `None` when the tenant has no such code.
pub async fn referrer_of(
    client: &impl GenericClient,
    tenant_id: TenantId,
    code: &ReferralCode,
) -> Result<Option<CustomerId>, StoreError> {
    let row = client
        .query_opt(
            "SELECT customer_id FROM referral_codes WHERE tenant_id = $1 AND code = $2",
            &[&tenant_id.as_uuid(), &code.as_str()],
        )
        .await?;
    Ok(row
        .map(|row| row.try_get(0))
        .transpose()?
        .map(CustomerId::from_uuid))
}

/// The customer's own referral code; `None` for a customer enrolled before codes existed.
pub async fn code_of(
    client: &impl GenericClient,
    tenant_id: TenantId,
    customer_id: CustomerId,
) -> Result<Option<String>, StoreError> {
    let row = client
        .query_opt(
            "SELECT code FROM referral_codes WHERE tenant_id = $1 AND customer_id = $2",
            &[&tenant_id.as_uuid(), &customer_id.as_uuid()],
        )
        .await?;
    Ok(row.map(|row| row.try_get(0)).transpose()?)
}
