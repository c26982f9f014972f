//! Rotating the personal-data keys (docs/SECURITY.md has the procedures).
//!
//! - **Master key**: prepend a new `id:key` to `LOYALTY_MASTER_KEYS` and restart (new data
//!   keys are wrapped by it, old ones still unwrap), run [`rewrap`] (every data key still
//!   wrapped by an older master key is unwrapped and wrapped again by the first one), then
//!   drop the old key from the setting.
//! - **Blind-index key**: with the API stopped (so no enrolment computes an index with the
//!   old key meanwhile), run [`reindex`] with the new key; it opens each customer's phone
//!   number and writes its index under the new key; then start with the new key.
//!
//! Both read and write across tenants, so they run on the schema owner's connection
//! (`DATABASE_URL`), the operator's, never the service's roles. Both are idempotent and can
//! be re-run after an interruption.

use ledger_core::command::{PhoneIndex, WrappedDataKey};
use ledger_core::{CustomerId, Event, StreamId, TenantId};
use tokio_postgres::Client;
use uuid::Uuid;
use vault::{Vault, VaultError};

/// Rows handled per round trip.
const PAGE_ROWS: i64 = 500;

#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("event store: {0}")]
    Store(#[from] schema::StoreError),
    #[error("customer {customer}: {source}")]
    Vault {
        customer: Uuid,
        #[source]
        source: VaultError,
    },
    #[error("customer {0} has a data key but no sealed enrolment")]
    NoSealedEnrolment(Uuid),
    #[error("the access token of WhatsApp number {phone_number_id}: {source}")]
    WhatsAppToken {
        phone_number_id: String,
        #[source]
        source: VaultError,
    },
}

/// Fresh keys in the environment's format, for a new deployment or a rotation.
pub fn generate(id_suffix: &str) -> Result<String, VaultError> {
    Ok(format!(
        "LOYALTY_MASTER_KEYS=m{id_suffix}:{}\nLOYALTY_BLIND_INDEX_KEY={}\nLOYALTY_JWT_KEYS=j{id_suffix}:{}\n",
        vault::generate_key_base64()?,
        vault::generate_key_base64()?,
        vault::generate_key_base64()?,
    ))
}

/// Wraps every data key again under the vault's current master key: the customers' data keys
/// and the sealed access tokens of tenants' own WhatsApp numbers. Returns how many were
/// re-wrapped.
pub async fn rewrap(owner: &Client, vault: &Vault) -> Result<u64, KeysError> {
    let customers = rewrap_customer_keys(owner, vault).await?;
    let tokens = rewrap_whatsapp_tokens(owner, vault).await?;
    Ok(customers + tokens)
}

/// Seals every WhatsApp number's access token (`whatsapp_numbers`, V7) still under an older
/// master key again under the current one (same context: the number and its tenant). Guarded
/// by the old sealed bytes, so a token rotated by a PUT meanwhile is left as the PUT wrote it.
pub async fn rewrap_whatsapp_tokens(owner: &Client, vault: &Vault) -> Result<u64, KeysError> {
    let current = vault.current_master_key_id().to_owned();
    let rows = owner
        .query(
            "SELECT phone_number_id, tenant_id, master_key_id, wrapped_key, sealed_access_token \
               FROM whatsapp_numbers \
              WHERE sealed_access_token IS NOT NULL AND master_key_id <> $1 \
              ORDER BY phone_number_id",
            &[&current],
        )
        .await?;
    let mut rewrapped = 0;
    for row in &rows {
        let phone_number_id: String = row.try_get(0)?;
        let tenant = TenantId::from_uuid(row.try_get(1)?);
        let old = vault::SealedRecord {
            master_key_id: row.try_get(2)?,
            wrapped_key: row.try_get(3)?,
            sealed: row.try_get(4)?,
        };
        let context = schema::whatsapp_numbers::token_seal_context(&phone_number_id, tenant);
        let vault_error = |source| KeysError::WhatsAppToken {
            phone_number_id: phone_number_id.clone(),
            source,
        };
        let token = vault.open_record(&context, &old).map_err(vault_error)?;
        let new = vault.seal_record(&context, &token).map_err(vault_error)?;
        rewrapped += owner
            .execute(
                "UPDATE whatsapp_numbers \
                    SET master_key_id = $1, wrapped_key = $2, sealed_access_token = $3 \
                  WHERE phone_number_id = $4 AND master_key_id = $5 AND sealed_access_token = $6",
                &[
                    &new.master_key_id,
                    &new.wrapped_key,
                    &new.sealed,
                    &phone_number_id,
                    &old.master_key_id,
                    &old.sealed,
                ],
            )
            .await?;
    }
    Ok(rewrapped)
}

/// Wraps every customer's data key again under the vault's current master key.
async fn rewrap_customer_keys(owner: &Client, vault: &Vault) -> Result<u64, KeysError> {
    let current = vault.current_master_key_id().to_owned();
    let mut rewrapped = 0;
    let mut after = Uuid::nil();
    loop {
        let rows = owner
            .query(
                "SELECT customer_id, tenant_id, master_key_id, wrapped_key FROM customer_keys \
                 WHERE master_key_id <> $1 AND customer_id > $2 ORDER BY customer_id LIMIT $3",
                &[&current, &after, &PAGE_ROWS],
            )
            .await?;
        let Some(last) = rows.last() else {
            return Ok(rewrapped);
        };
        after = last.try_get(0)?;
        for row in &rows {
            let customer: Uuid = row.try_get(0)?;
            let tenant = TenantId::from_uuid(row.try_get(1)?);
            let old = WrappedDataKey {
                master_key_id: row.try_get(2)?,
                bytes: row.try_get(3)?,
            };
            let customer_id = CustomerId::from_uuid(customer);
            let vault_error = |source| KeysError::Vault { customer, source };
            let data_key = vault
                .unwrap(&old, tenant, customer_id)
                .map_err(vault_error)?;
            let new = vault
                .wrap(&data_key, tenant, customer_id)
                .map_err(vault_error)?;
            // Guarded by the old wrapping: an erasure in between deletes the row and this
            // updates nothing, which is right.
            rewrapped += owner
                .execute(
                    "UPDATE customer_keys SET master_key_id = $1, wrapped_key = $2 \
                     WHERE customer_id = $3 AND master_key_id = $4 AND wrapped_key = $5",
                    &[
                        &new.master_key_id,
                        &new.bytes,
                        &customer,
                        &old.master_key_id,
                        &old.bytes,
                    ],
                )
                .await?;
        }
    }
}

/// Recomputes every phone index under `new_index_key`'s blind-index key, opening each
/// customer's phone number with `vault` (which must hold the master keys). Customers
/// without a data key (erased) have no index. Returns how many indexes were written.
pub async fn reindex(
    owner: &Client,
    vault: &Vault,
    new_index_key: &Vault,
) -> Result<u64, KeysError> {
    let mut reindexed = 0;
    let mut after = Uuid::nil();
    loop {
        let rows = owner
            .query(
                "SELECT customer_id, tenant_id, master_key_id, wrapped_key FROM customer_keys \
                 WHERE customer_id > $1 ORDER BY customer_id LIMIT $2",
                &[&after, &PAGE_ROWS],
            )
            .await?;
        let Some(last) = rows.last() else {
            return Ok(reindexed);
        };
        after = last.try_get(0)?;
        for row in &rows {
            let customer: Uuid = row.try_get(0)?;
            let tenant = TenantId::from_uuid(row.try_get(1)?);
            let wrapped = WrappedDataKey {
                master_key_id: row.try_get(2)?,
                bytes: row.try_get(3)?,
            };
            let customer_id = CustomerId::from_uuid(customer);
            let first =
                schema::store::read_stream(owner, StreamId::Customer(customer_id), 0, 1).await?;
            let sealed = match first.first().map(|e| e.decode()).transpose() {
                Ok(Some(Event::CustomerEnrolled(enrolled))) => enrolled.personal_data,
                _ => None,
            }
            .ok_or(KeysError::NoSealedEnrolment(customer))?;
            let vault_error = |source| KeysError::Vault { customer, source };
            let data_key = vault
                .unwrap(&wrapped, tenant, customer_id)
                .map_err(vault_error)?;
            let personal = vault
                .open(&data_key, tenant, customer_id, &sealed)
                .map_err(vault_error)?;
            let PhoneIndex(index) = new_index_key.phone_index(tenant, &personal.phone);
            reindexed += owner
                .execute(
                    "UPDATE customer_phone_index SET phone_index = $1 WHERE customer_id = $2",
                    &[&index.as_slice(), &customer],
                )
                .await?;
        }
    }
}
