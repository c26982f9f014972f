//! A tenant's own WhatsApp number and its sealed access token (`whatsapp_numbers`,
//! migrations V5 and V7).
//!
//! Reading order: [`token_seal_context`] (what a sealed token is bound to), then the
//! tenant-scoped calls the vendor API makes ([`put`], [`get`], [`detach`]: each runs in a
//! transaction scoped to one tenant and goes through a `tenancy.whatsapp_number_*` SECURITY
//! DEFINER function, which takes the tenant from that scope), then the platform-side
//! [`register_without_token`] (tests and operators).
//!
//! Architecture invariant: the API role never touches `whatsapp_numbers` directly; the
//! definer functions decide that a number is never taken from the shared pool or from
//! another tenant.

use chrono::{DateTime, Utc};
use ledger_core::events::Actor;
use ledger_core::TenantId;
use tokio_postgres::GenericClient;
use uuid::Uuid;
use vault::SealedRecord;

/// The associated data a number's token is sealed under: the table, the number and its
/// tenant, so a sealed token copied to another number or tenant does not open.
pub fn token_seal_context(phone_number_id: &str, tenant: TenantId) -> Vec<u8> {
    [
        b"whatsapp_numbers\0".as_slice(),
        phone_number_id.as_bytes(),
        b"\0",
        tenant.as_uuid().to_string().as_bytes(),
    ]
    .concat()
}

/// What an owner registers (already validated by the API's parser).
#[derive(Clone)]
pub struct OwnNumber {
    pub phone_number_id: String,
    /// Digits only.
    pub display_phone_number: String,
    pub fallback_template: String,
    pub template_language: String,
    /// The tenant's access token, sealed under [`token_seal_context`].
    pub sealed_access_token: SealedRecord,
}

impl std::fmt::Debug for OwnNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnNumber")
            .field("phone_number_id", &self.phone_number_id)
            .finish_non_exhaustive()
    }
}

/// The result of [`put`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    Created,
    Updated,
    /// The shared number, another tenant's, or one with another tenant's members: nothing
    /// changed.
    Taken,
}

/// The tenant's number as shown (never the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberView {
    pub phone_number_id: String,
    pub display_phone_number: String,
    pub fallback_template: String,
    pub template_language: String,
    pub access_token_set: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A detached number and how many of its queued messages were failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detached {
    pub phone_number_id: String,
    pub outbox_failed: i32,
}

/// The audit columns of an actor.
fn actor_columns(actor: &Actor) -> (&'static str, Option<Uuid>) {
    match actor {
        Actor::User(id) => ("user", Some(*id)),
        Actor::ApiKey(id) => ("api_key", Some(*id)),
        Actor::Customer(_) | Actor::System(_) => ("system", None),
    }
}

/// Registers or updates the scope's tenant's own number. `transaction` must be scoped to
/// exactly one tenant (`tenancy::begin`).
pub async fn put(
    transaction: &impl GenericClient,
    number: &OwnNumber,
    actor: &Actor,
    correlation_id: Uuid,
) -> Result<PutOutcome, tokio_postgres::Error> {
    let (actor_kind, actor_id) = actor_columns(actor);
    let token = &number.sealed_access_token;
    let row = transaction
        .query_one(
            "SELECT tenancy.whatsapp_number_put($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            &[
                &number.phone_number_id,
                &number.display_phone_number,
                &number.fallback_template,
                &number.template_language,
                &token.master_key_id,
                &token.wrapped_key,
                &token.sealed,
                &actor_kind,
                &actor_id,
                &correlation_id,
            ],
        )
        .await?;
    Ok(match row.get::<_, &str>(0) {
        "created" => PutOutcome::Created,
        "updated" => PutOutcome::Updated,
        _ => PutOutcome::Taken,
    })
}

/// The scope's tenant's own number, if it has one.
pub async fn get(
    transaction: &impl GenericClient,
) -> Result<Option<NumberView>, tokio_postgres::Error> {
    let row = transaction
        .query_opt(
            "SELECT phone_number_id, display_phone_number, fallback_template, template_language, \
                    access_token_set, created_at, updated_at FROM tenancy.whatsapp_number_get()",
            &[],
        )
        .await?;
    Ok(row.map(|row| NumberView {
        phone_number_id: row.get(0),
        display_phone_number: row.get(1),
        fallback_template: row.get(2),
        template_language: row.get(3),
        access_token_set: row.get(4),
        created_at: row.get(5),
        updated_at: row.get(6),
    }))
}

/// Detaches the scope's tenant's own number (row and sealed token deleted, its queued
/// messages failed); `None` when it has none.
pub async fn detach(
    transaction: &impl GenericClient,
    actor: &Actor,
    correlation_id: Uuid,
) -> Result<Option<Detached>, tokio_postgres::Error> {
    let (actor_kind, actor_id) = actor_columns(actor);
    let row = transaction
        .query_opt(
            "SELECT phone_number_id, outbox_failed FROM tenancy.whatsapp_number_detach($1, $2, $3)",
            &[&actor_kind, &actor_id, &correlation_id],
        )
        .await?;
    Ok(row.map(|row| Detached {
        phone_number_id: row.get(0),
        outbox_failed: row.get(1),
    }))
}

/// Platform side (`loyalty_platform`): registers `phone_number_id` as `tenant`'s own number
/// **without a token** (the notifier then refuses to send from it until an owner sets one
/// with `PUT /v1/whatsapp/number`). Returns `false`, changing nothing, when the number is
/// already the shared number or another tenant's: a number is never moved between tenants
/// silently. For tests and operators; the vendor API uses [`put`].
pub async fn register_without_token(
    client: &impl GenericClient,
    tenant: TenantId,
    phone_number_id: &str,
    display_phone_number: &str,
) -> Result<bool, tokio_postgres::Error> {
    let changed = client
        .execute(
            "INSERT INTO whatsapp_numbers (phone_number_id, tenant_id, display_phone_number) \
             VALUES ($1, $2, $3) \
             ON CONFLICT (phone_number_id) DO UPDATE \
               SET display_phone_number = EXCLUDED.display_phone_number, updated_at = now() \
               WHERE whatsapp_numbers.tenant_id = EXCLUDED.tenant_id",
            &[&phone_number_id, &tenant.as_uuid(), &display_phone_number],
        )
        .await?;
    Ok(changed == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seal_context_binds_number_and_tenant() {
        let a = TenantId::from_uuid(Uuid::from_u128(1));
        let b = TenantId::from_uuid(Uuid::from_u128(2));
        assert_ne!(token_seal_context("1", a), token_seal_context("1", b));
        assert_ne!(token_seal_context("1", a), token_seal_context("2", a));
        // The NUL separator keeps "12" + tenant apart from "1" + "2…".
        assert!(token_seal_context("12", a).starts_with(b"whatsapp_numbers\x0012\x00"));
    }
}
