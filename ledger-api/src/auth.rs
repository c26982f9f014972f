//! Who is calling: `Authorization: Bearer <credential>`, where the credential is either
//! - an API key `ll_<64 hex>` of a vendor system → SHA-256 → an active key of a tenant, with
//!   the key's role (staff, auditor or analyst); or
//! - an access token (a JWT, see [`crate::jwt`]) of a vendor's user → its user, tenant and
//!   role, provided the user is still active.
//!
//! The result is a [`Caller`]: the tenant every query and command of the request is scoped
//! to, the role that [`Caller::authorize`] checks, the actor recorded in events, and the
//! request's correlation id.
//!
//! Caching: successful key look-ups and user statuses are cached in memory for the auth
//! cache TTL ([`AUTH_CACHE_TTL_DEFAULT`], 60 s; shorter in tests). **Revocation delay:** a
//! revoked key, or a disabled user's access token, keeps working on a process that has it
//! cached for at most that long (each API process has its own cache). Unknown keys are not
//! cached, so a new key works at once. A key's `last_used_at` is written at most once a
//! minute per key per process, off the request path.
//!
//! Only hashes of keys are kept in memory and nothing of a credential is ever logged.

use crate::cache::BoundedCache;
use crate::problem::ApiError;
use crate::ApiState;
use actix_web::dev::Payload;
use actix_web::http::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use ledger_core::events::{Actor, EventMetadata};
use ledger_core::{Command, TenantId};
use schema::accounts::{Permission, Role, UserStatus};
use schema::{IdempotencyClaim, Render, Submission};
use sha2::{Digest, Sha256};
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How long a successful key look-up or a user's status is trusted by default; also the
/// longest a revoked key or a disabled user's access token keeps working.
pub const AUTH_CACHE_TTL_DEFAULT: Duration = Duration::from_secs(60);
/// Most keys (and, separately, users) remembered per process.
pub const AUTH_CACHE_ENTRIES_MAX: usize = 10_000;
/// A key's `last_used_at` is written at most this often per process.
pub const LAST_USED_WRITE_INTERVAL: Duration = Duration::from_secs(60);

/// The headers a client may send its own correlation id in (a UUID), and the one the API
/// answers with.
pub const CORRELATION_ID_HEADERS: [&str; 2] = ["x-correlation-id", "x-request-id"];
pub const CORRELATION_ID_RESPONSE_HEADER: &str = "x-correlation-id";

const KEY_PREFIX: &str = schema::api_keys::PREFIX;
const KEY_HEX_DIGITS: usize = 64;

/// An active API key as cached: who it belongs to and what it may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachedKey {
    pub api_key_id: Uuid,
    pub tenant_id: TenantId,
    pub role: Role,
}

pub type ApiKeyCache = BoundedCache<[u8; 32], CachedKey>;
/// A user's status by user id; `None` for a user that does not exist (any more).
pub type UserStatusCache = BoundedCache<Uuid, Option<UserStatus>>;

/// Who acts: recorded as the events' actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal {
    ApiKey(Uuid),
    User(Uuid),
}

/// An authenticated caller. Handlers take it as their first argument, so nothing runs for
/// an unauthenticated request, and call [`Caller::authorize`] first thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub tenant_id: TenantId,
    pub role: Role,
    pub principal: Principal,
    /// The request's correlation id (the client's `X-Correlation-Id`/`X-Request-Id` when it
    /// is a UUID, else a fresh UUIDv7), recorded in the events' metadata.
    pub correlation_id: Uuid,
}

impl Caller {
    pub fn actor(&self) -> Actor {
        match self.principal {
            Principal::ApiKey(id) => Actor::ApiKey(id),
            Principal::User(id) => Actor::User(id),
        }
    }

    /// The user behind the request, when it is a user (not an API key).
    pub fn user_id(&self) -> Option<Uuid> {
        match self.principal {
            Principal::User(id) => Some(id),
            Principal::ApiKey(_) => None,
        }
    }

    /// 403 unless the caller's role allows `permission`.
    pub fn authorize(&self, permission: Permission) -> Result<(), ApiError> {
        if self.role.allows(permission) {
            Ok(())
        } else {
            Err(ApiError::Forbidden {
                role: self.role.as_str(),
                action: action(permission),
            })
        }
    }

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
                actor: self.actor(),
                correlation_id: self.correlation_id,
                causation_id: None,
            },
            idempotency,
            render,
        }
    }
}

fn action(permission: Permission) -> &'static str {
    match permission {
        Permission::EnrolCustomer => "enrol customers",
        Permission::LogPurchase => "log purchases",
        Permission::RedeemPoints => "redeem points",
        Permission::ReadCustomer => "read customers",
        Permission::ReadHistory => "read customer history",
        Permission::ManageUsers => "manage users",
        Permission::ManageApiKeys => "manage API keys",
        Permission::ReadPersonalData => "read customers' personal data",
        Permission::ManagePersonalData => "manage personal data",
        Permission::ManageRewards => "manage the reward catalogue",
        Permission::ReadRewards => "read the reward catalogue",
        Permission::FulfilRedemptions => "fulfil redemptions",
        Permission::ManageWhatsApp => "manage the WhatsApp number",
        Permission::ReadProgramme => "read the programme settings",
        Permission::ManageProgramme => "change the programme settings",
        Permission::RefundPurchases => "refund purchases",
        Permission::AdjustPoints => "adjust points by hand",
        Permission::CancelHolds => "cancel reward holds",
        Permission::ManageRules => "publish points rules",
        Permission::ReadRules => "read the points rules",
        Permission::DryRunRules => "dry-run points rules",
        Permission::SendBroadcasts => "send broadcasts",
        Permission::ReadBroadcasts => "read broadcasts",
        Permission::ReadBooks => "read the books (positions and statements)",
        Permission::ReadAnalytics => "read analytics",
        Permission::ExportLedger => "export the ledger for an audit",
    }
}

/// The request's correlation id, put in the request's extensions by the app's middleware.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CorrelationId(pub Uuid);

impl CorrelationId {
    /// The client's id when one of [`CORRELATION_ID_HEADERS`] holds a UUID, else a new one.
    pub fn from_headers(headers: &HeaderMap) -> CorrelationId {
        let presented = CORRELATION_ID_HEADERS.iter().find_map(|name| {
            headers
                .get(*name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| Uuid::parse_str(v.trim()).ok())
        });
        CorrelationId(presented.unwrap_or_else(Uuid::now_v7))
    }
}

fn correlation_id(req: &HttpRequest) -> Uuid {
    req.extensions()
        .get::<CorrelationId>()
        .copied()
        .unwrap_or_else(|| CorrelationId::from_headers(req.headers()))
        .0
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Caller, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let presented = presented_credential(req.headers().get(AUTHORIZATION));
        let state = req.app_data::<web::Data<ApiState>>().cloned();
        let correlation_id = correlation_id(req);
        Box::pin(async move {
            let credential = presented?;
            let state =
                state.ok_or_else(|| ApiError::Internal("ApiState is not registered".into()))?;
            let (tenant_id, role, principal) = match credential {
                Credential::ApiKey(key_hash) => {
                    let key = authenticate_key(&state, key_hash).await?;
                    (key.tenant_id, key.role, Principal::ApiKey(key.api_key_id))
                }
                Credential::AccessToken(token) => {
                    let (tenant_id, user_id, role) = authenticate_user(&state, &token).await?;
                    (tenant_id, role, Principal::User(user_id))
                }
            };
            let principal_id = match principal {
                Principal::ApiKey(id) | Principal::User(id) => id,
            };
            state.check_principal_rate(principal_id)?;
            Ok(Caller {
                tenant_id,
                role,
                principal,
                correlation_id,
            })
        })
    }
}

async fn authenticate_key(state: &ApiState, key_hash: [u8; 32]) -> Result<CachedKey, ApiError> {
    let key = match state.api_keys.get(&key_hash, Instant::now()) {
        Some(key) => key,
        None => {
            let key = look_up_key(state, &key_hash).await?;
            state.api_keys.insert(key_hash, key, Instant::now());
            key
        }
    };
    note_key_used(state, key);
    Ok(key)
}

async fn look_up_key(state: &ApiState, key_hash: &[u8; 32]) -> Result<CachedKey, ApiError> {
    let client = state.pool.get().await.map_err(|e| {
        ApiError::Unavailable(format!(
            "no database connection for the API key look-up: {e}"
        ))
    })?;
    let found = schema::api_keys::find_active(&**client, key_hash)
        .await
        .map_err(|e| ApiError::Unavailable(format!("API key look-up failed: {e}")))?;
    let key = found.ok_or(ApiError::Unauthenticated)?;
    // A key whose stored role is unknown (cannot happen under the table's CHECK) is refused
    // rather than given a guessed role.
    let role = Role::parse(&key.role).map_err(|_| ApiError::Unauthenticated)?;
    Ok(CachedKey {
        api_key_id: key.api_key_id,
        tenant_id: key.tenant_id,
        role,
    })
}

/// Writes `last_used_at` in the background, at most once per interval per key: best
/// effort, it never delays or fails the request.
fn note_key_used(state: &ApiState, key: CachedKey) {
    let now = Instant::now();
    if state.key_uses.get(&key.api_key_id, now).is_some() {
        return;
    }
    state.key_uses.insert(key.api_key_id, (), now);
    let pool = state.pool.clone();
    actix_web::rt::spawn(async move {
        let result = async {
            let mut client = pool.get().await.map_err(|e| e.to_string())?;
            let transaction = schema::tenancy::begin(&mut client, key.tenant_id)
                .await
                .map_err(|e| e.to_string())?;
            schema::accounts::touch_api_key(&*transaction, key.api_key_id)
                .await
                .map_err(|e| e.to_string())?;
            transaction.commit().await.map_err(|e| e.to_string())
        }
        .await;
        if let Err(error) = result {
            tracing::warn!(api_key_id = %key.api_key_id, %error, "could not record the key's last use");
        }
    });
}

async fn authenticate_user(
    state: &ApiState,
    token: &str,
) -> Result<(TenantId, Uuid, Role), ApiError> {
    let now_seconds = chrono::Utc::now().timestamp();
    let claims = state
        .accounts
        .jwt_keys
        .verify(token, now_seconds)
        .map_err(|reason| {
            tracing::debug!(%reason, "access token refused");
            ApiError::Unauthenticated
        })?;
    let tenant_id = TenantId::from_uuid(claims.tid);
    let status = user_status(state, tenant_id, claims.sub).await?;
    match status {
        Some(status) if status.active => Ok((tenant_id, claims.sub, status.role)),
        _ => Err(ApiError::Unauthenticated),
    }
}

/// The user's status, cached like API keys: the role in force is the stored one (a token's
/// `role` claim is informative), and a disabled user is refused within the cache TTL.
async fn user_status(
    state: &ApiState,
    tenant_id: TenantId,
    user_id: Uuid,
) -> Result<Option<UserStatus>, ApiError> {
    if let Some(status) = state.user_statuses.get(&user_id, Instant::now()) {
        return Ok(status);
    }
    let mut client = state.client().await?;
    let transaction = schema::tenancy::begin(&mut client, tenant_id)
        .await
        .map_err(|e| ApiError::Unavailable(format!("user status look-up: {e}")))?;
    let status = schema::accounts::user_status(&*transaction, user_id)
        .await
        .map_err(|e| ApiError::Unavailable(format!("user status look-up: {e}")))?;
    transaction
        .commit()
        .await
        .map_err(|e| ApiError::Unavailable(format!("user status look-up: {e}")))?;
    state.user_statuses.insert(user_id, status, Instant::now());
    Ok(status)
}

/// A credential as presented, checked for shape only.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// The SHA-256 of an API key.
    ApiKey([u8; 32]),
    /// An access token, to be verified.
    AccessToken(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::ApiKey(_) => f.write_str("ApiKey(<hash>)"),
            Credential::AccessToken(_) => f.write_str("AccessToken(<redacted>)"),
        }
    }
}

/// The credential of a bearer header, or 401 without asking the database: a header that
/// cannot hold a key or token we issued is refused on its shape.
pub fn presented_credential(header: Option<&HeaderValue>) -> Result<Credential, ApiError> {
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
    if token.starts_with(KEY_PREFIX) {
        return if is_well_formed_key(token) {
            Ok(Credential::ApiKey(Sha256::digest(token.as_bytes()).into()))
        } else {
            Err(ApiError::Unauthenticated)
        };
    }
    if is_jwt_shaped(token) {
        Ok(Credential::AccessToken(token.to_owned()))
    } else {
        Err(ApiError::Unauthenticated)
    }
}

/// `ll_` and 64 lower-case hex digits: the only shape `schema::api_keys::create` issues.
fn is_well_formed_key(token: &str) -> bool {
    token.strip_prefix(KEY_PREFIX).is_some_and(|hex| {
        hex.len() == KEY_HEX_DIGITS && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// Three base64url parts separated by dots, of a sane length (verified later).
fn is_jwt_shaped(token: &str) -> bool {
    token.len() <= crate::jwt::TOKEN_BYTES_MAX
        && token.bytes().filter(|b| *b == b'.').count() == 2
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ll_00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    fn check(header: Option<&str>) -> Result<Credential, ()> {
        let value = header.map(|h| HeaderValue::from_str(h).unwrap());
        presented_credential(value.as_ref()).map_err(|_| ())
    }

    #[test]
    fn well_formed_bearer_keys_hash_like_the_store() {
        let expected = Credential::ApiKey(schema::api_keys::hash_key(KEY));
        for header in [
            format!("Bearer {KEY}"),
            format!("bearer {KEY}"),
            format!("BEARER  {KEY} "),
        ] {
            assert_eq!(check(Some(&header)), Ok(expected.clone()), "{header}");
        }
    }

    #[test]
    fn jwt_shaped_tokens_are_passed_on_for_verification() {
        assert_eq!(
            check(Some("Bearer aGVhZA.Y2xhaW1z.c2ln-_")),
            Ok(Credential::AccessToken("aGVhZA.Y2xhaW1z.c2ln-_".into()))
        );
        // alg=none tokens have an empty signature part: passed on, refused by the verifier.
        assert!(check(Some("Bearer aGVhZA.Y2xhaW1z.")).is_ok());
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
            Some("Bearer a.b".to_owned()),
            Some("Bearer a.b.c.d".to_owned()),
            Some("Bearer a.b=.c".to_owned()),
            Some(format!("Bearer {}.b.c", "a".repeat(5000))),
        ];
        for header in cases {
            assert_eq!(check(header.as_deref()), Err(()), "{header:?}");
        }
    }

    #[test]
    fn authorize_follows_the_role() {
        let caller = |role| Caller {
            tenant_id: TenantId::from_uuid(Uuid::nil()),
            role,
            principal: Principal::ApiKey(Uuid::nil()),
            correlation_id: Uuid::nil(),
        };
        assert!(caller(Role::Staff)
            .authorize(Permission::LogPurchase)
            .is_ok());
        let refused = caller(Role::Auditor).authorize(Permission::LogPurchase);
        assert!(matches!(
            refused,
            Err(ApiError::Forbidden {
                role: "auditor",
                ..
            })
        ));
        assert!(caller(Role::Analyst)
            .authorize(Permission::ReadHistory)
            .is_err());
    }

    #[test]
    fn submissions_carry_the_actor_and_the_correlation_id() {
        let correlation_id = Uuid::now_v7();
        let user = Uuid::now_v7();
        let caller = Caller {
            tenant_id: TenantId::from_uuid(Uuid::nil()),
            role: Role::Owner,
            principal: Principal::User(user),
            correlation_id,
        };
        let command = Command::PublishRuleSet {
            rules: Vec::new(),
            at: chrono::Utc::now(),
        };
        let submission = caller.submission(command, None, schema::writer::render_status_only);
        assert_eq!(submission.metadata.actor, Actor::User(user));
        assert_eq!(submission.metadata.correlation_id, correlation_id);
    }

    #[test]
    fn correlation_ids_are_taken_from_the_client_only_when_they_are_uuids() {
        let mut headers = HeaderMap::new();
        let mine = Uuid::now_v7();
        headers.insert(
            actix_web::http::header::HeaderName::from_static("x-request-id"),
            HeaderValue::from_str(&mine.to_string()).unwrap(),
        );
        assert_eq!(CorrelationId::from_headers(&headers).0, mine);
        let mut bad = HeaderMap::new();
        bad.insert(
            actix_web::http::header::HeaderName::from_static("x-correlation-id"),
            HeaderValue::from_static("not-a-uuid"),
        );
        let generated = CorrelationId::from_headers(&bad).0;
        assert_eq!(generated.get_version_num(), 7);
    }
}
