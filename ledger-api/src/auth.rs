//! Who is calling: `Authorization: Bearer ll_<64 hex>` → SHA-256 → an active API key → the
//! tenant every query and command of the request is scoped to.
//!
//! Successful look-ups are cached in memory for [`API_KEY_CACHE_TTL`] so the hot path does
//! not ask the database on every request. **Revocation delay:** a revoked key keeps working
//! on a process that has it cached for at most 60 seconds after `revoked_at` is set (each
//! API process has its own cache). Unknown keys are not cached, so a new key works at once.
//!
//! Only the key's hash is kept in memory and nothing of the key is ever logged.

use crate::cache::BoundedCache;
use crate::problem::ApiError;
use crate::ApiState;
use actix_web::dev::Payload;
use actix_web::http::header::{HeaderValue, AUTHORIZATION};
use actix_web::{web, FromRequest, HttpRequest};
use ledger_core::events::{Actor, EventMetadata};
use ledger_core::{Command, TenantId};
use schema::{IdempotencyClaim, Render, Submission};
use sha2::{Digest, Sha256};
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How long a successful look-up is trusted; also the longest a revoked key keeps working.
pub const API_KEY_CACHE_TTL: Duration = Duration::from_secs(60);
/// Most keys remembered per process.
pub const API_KEY_CACHE_ENTRIES_MAX: usize = 10_000;

const KEY_PREFIX: &str = schema::api_keys::PREFIX;
const KEY_HEX_DIGITS: usize = 64;

pub type ApiKeyCache = BoundedCache<[u8; 32], Caller>;

pub fn new_cache() -> ApiKeyCache {
    BoundedCache::new(Some(API_KEY_CACHE_TTL), API_KEY_CACHE_ENTRIES_MAX)
}

/// An authenticated caller: a vendor system holding an active API key of `tenant_id`.
/// Handlers take it as their first argument, so nothing runs for an unauthenticated request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub tenant_id: TenantId,
    pub api_key_id: Uuid,
}

impl Caller {
    /// A command of this caller, ready for the writer.
    pub fn submission(
        &self,
        command: Command,
        idempotency: Option<IdempotencyClaim>,
        render: Render,
    ) -> Submission {
        Submission {
            tenant_id: self.tenant_id,
            command,
            metadata: EventMetadata {
                actor: Actor::ApiKey(self.api_key_id),
                correlation_id: Uuid::now_v7(),
                causation_id: None,
            },
            idempotency,
            render,
        }
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Caller, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let presented = presented_key_hash(req.headers().get(AUTHORIZATION));
        let state = req.app_data::<web::Data<ApiState>>().cloned();
        Box::pin(async move {
            let key_hash = presented?;
            let state =
                state.ok_or_else(|| ApiError::Internal("ApiState is not registered".into()))?;
            let caller = authenticate(&state, key_hash).await?;
            state.check_principal_rate(caller.api_key_id)?;
            Ok(caller)
        })
    }
}

async fn authenticate(state: &ApiState, key_hash: [u8; 32]) -> Result<Caller, ApiError> {
    if let Some(caller) = state.api_keys.get(&key_hash, Instant::now()) {
        return Ok(caller);
    }
    let client = state.pool.get().await.map_err(|e| {
        ApiError::Unavailable(format!(
            "no database connection for the API key look-up: {e}"
        ))
    })?;
    let found = schema::api_keys::find_active(&**client, &key_hash)
        .await
        .map_err(|e| ApiError::Unavailable(format!("API key look-up failed: {e}")))?;
    let key = found.ok_or(ApiError::Unauthenticated)?;
    let caller = Caller {
        tenant_id: key.tenant_id,
        api_key_id: key.api_key_id,
    };
    state.api_keys.insert(key_hash, caller, Instant::now());
    Ok(caller)
}

/// The SHA-256 of a well-formed bearer key, or 401 without asking the database: a header
/// that cannot hold a key we issued is refused on its shape.
pub fn presented_key_hash(header: Option<&HeaderValue>) -> Result<[u8; 32], ApiError> {
    let value = header
        .and_then(|h| h.to_str().ok())
        .ok_or(ApiError::Unauthenticated)?;
    let (scheme, token) = value
        .trim()
        .split_once(' ')
        .ok_or(ApiError::Unauthenticated)?;
    // RFC 9110 §11.1: the scheme is case-insensitive.
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::Unauthenticated);
    }
    let token = token.trim();
    if !is_well_formed_key(token) {
        return Err(ApiError::Unauthenticated);
    }
    Ok(Sha256::digest(token.as_bytes()).into())
}

/// `ll_` and 64 lower-case hex digits: the only shape `schema::api_keys::create` issues.
fn is_well_formed_key(token: &str) -> bool {
    token.strip_prefix(KEY_PREFIX).is_some_and(|hex| {
        hex.len() == KEY_HEX_DIGITS && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ll_00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    fn check(header: Option<&str>) -> Result<[u8; 32], ()> {
        let value = header.map(|h| HeaderValue::from_str(h).unwrap());
        presented_key_hash(value.as_ref()).map_err(|_| ())
    }

    #[test]
    fn well_formed_bearer_keys_hash_like_the_store() {
        let expected = schema::api_keys::hash_key(KEY);
        for header in [
            format!("Bearer {KEY}"),
            format!("bearer {KEY}"),
            format!("BEARER  {KEY} "),
        ] {
            assert_eq!(check(Some(&header)), Ok(expected), "{header}");
        }
    }

    #[test]
    fn malformed_headers_are_refused_without_a_look_up() {
        let upper = KEY.to_uppercase();
        let cases = [
            None,
            Some(String::new()),
            Some("Bearer".to_owned()),
            Some(KEY.to_owned()),
            Some(format!("Basic {KEY}")),
            Some(format!("Token {KEY}")),
            Some(format!("Bearer {}", &KEY[..KEY.len() - 1])),
            Some(format!("Bearer {KEY}0")),
            Some(format!("Bearer {}", KEY.replacen("ll_", "xx_", 1))),
            Some(format!("Bearer ll_{}", &upper[3..])),
            Some(format!("Bearer {}", KEY.replacen('a', "g", 1))),
            Some(format!("Bearer {KEY} extra")),
        ];
        for header in cases {
            assert_eq!(check(header.as_deref()), Err(()), "{header:?}");
        }
    }
}
