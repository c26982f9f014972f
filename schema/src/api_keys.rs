//! API keys of vendor systems. A key is 32 random bytes shown once as `ll_<64 hex>`; only
//! its SHA-256 is stored (a fast hash is right here: the key has 256 bits of entropy, so
//! there is nothing to brute-force, unlike a password).

use sha2::{Digest, Sha256};
use tokio_postgres::GenericClient;
use uuid::Uuid;

use ledger_core::TenantId;

pub const PREFIX: &str = "ll_";

#[derive(Debug, thiserror::Error)]
pub enum ApiKeyError {
    #[error("database error: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("no randomness available: {0}")]
    Random(String),
}

/// A newly created key: the only time the plaintext exists.
pub struct NewApiKey {
    pub api_key_id: Uuid,
    pub plaintext: String,
}

impl std::fmt::Debug for NewApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewApiKey")
            .field("api_key_id", &self.api_key_id)
            .field("plaintext", &"<redacted>")
            .finish()
    }
}

pub fn hash_key(plaintext: &str) -> [u8; 32] {
    Sha256::digest(plaintext.as_bytes()).into()
}

/// Creates a key of `tenant_id` with `role` (`staff`, `auditor` or `analyst`). The caller's
/// transaction must be scoped to the tenant ([`crate::tenancy`]).
pub async fn create(
    client: &impl GenericClient,
    tenant_id: TenantId,
    label: &str,
    role: &str,
) -> Result<NewApiKey, ApiKeyError> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| ApiKeyError::Random(e.to_string()))?;
    let plaintext = format!("{PREFIX}{}", hex::encode(secret));
    let api_key_id = Uuid::now_v7();
    client
        .execute(
            "INSERT INTO api_keys (api_key_id, tenant_id, key_hash, label, role) \
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &api_key_id,
                &tenant_id.as_uuid(),
                &hash_key(&plaintext).as_slice(),
                &label,
                &role,
            ],
        )
        .await?;
    Ok(NewApiKey {
        api_key_id,
        plaintext,
    })
}

/// An active (not revoked) key, found by its hash before the tenant is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveKey {
    pub api_key_id: Uuid,
    pub tenant_id: TenantId,
    pub role: String,
}

/// The active key with this hash, through the `tenancy.api_key_by_hash` definer function
/// (the only way `loyalty_app` reads a key before its tenant is known).
pub async fn find_active(
    client: &impl GenericClient,
    key_hash: &[u8; 32],
) -> Result<Option<ActiveKey>, ApiKeyError> {
    let row = client
        .query_opt(
            "SELECT api_key_id, tenant_id, role FROM tenancy.api_key_by_hash($1)",
            &[&key_hash.as_slice()],
        )
        .await?;
    Ok(match row {
        Some(row) => Some(ActiveKey {
            api_key_id: row.try_get(0)?,
            tenant_id: TenantId::from_uuid(row.try_get(1)?),
            role: row.try_get(2)?,
        }),
        None => None,
    })
}
