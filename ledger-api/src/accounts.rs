//! Accounts over HTTP: signing up, logging in, refreshing and revoking sessions, accepting
//! invitations, and `GET /v1/me`. Users and API keys are managed in [`crate::users`] and
//! [`crate::api_keys`].
//!
//! A session is a pair: a 15-minute access token (a JWT, [`crate::jwt`]) and a 30-day
//! refresh token (`lr_…`, stored as a SHA-256). Each refresh replaces the refresh token with
//! a new one of the same family; presenting a used one revokes the family (theft detection).
//!
//! Login answers the same 401 body for an unknown email, a wrong password, a disabled user
//! and an invitation not yet accepted, and costs the same argon2 verification in each case.

use crate::auth::Caller;
use crate::body::{self, JsonObject};
use crate::jwt::{self, Claims, JwtKeys};
use crate::login_limiter::LimiterPolicy;
use crate::passwords::{self, Password};
use crate::problem::{ApiError, JSON_CONTENT_TYPE};
use crate::{scoped, ApiState};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use ledger_core::events::{Actor, EventMetadata};
use ledger_core::rules::RuleSet;
use ledger_core::{Currency, TenantId};
use schema::accounts::{
    self, AccountsError, Email, NewOwner, NewToken, RefreshVerdict, Registration, Role, VendorCode,
};
use serde::Serialize;
use serde_json::Value;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// The accounts part of the API's configuration.
#[derive(Debug, Clone)]
pub struct AccountsConfig {
    pub jwt_keys: JwtKeys,
    /// How long API keys and user statuses are cached: the revocation delay.
    pub auth_cache_ttl: Duration,
    pub login_limiter: LimiterPolicy,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        AccountsConfig {
            jwt_keys: JwtKeys::none(),
            auth_cache_ttl: crate::auth::AUTH_CACHE_TTL_DEFAULT,
            login_limiter: LimiterPolicy::default(),
        }
    }
}

pub const BUSINESS_NAME_CHARS_MAX: usize = 120;
pub const EXPIRY_DAYS_DEFAULT: u32 = 180;
pub const EXPIRY_DAYS_MAX: i64 = 3_650;

/// The fields of `POST /v1/signup` (also the properties of its OpenAPI schema).
pub const SIGNUP_FIELDS: [&str; 6] = [
    "vendor_code",
    "business_name",
    "owner_email",
    "owner_password",
    "currency",
    "expiry_days",
];
/// The fields of `POST /v1/auth/login`.
pub const LOGIN_FIELDS: [&str; 2] = ["email", "password"];
/// The fields of `POST /v1/auth/refresh` and `POST /v1/auth/logout`.
pub const REFRESH_TOKEN_FIELDS: [&str; 1] = ["refresh_token"];
/// The fields of `POST /v1/invitations/accept`.
pub const INVITATION_ACCEPTANCE_FIELDS: [&str; 2] = ["token", "password"];

// ---------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------

pub(crate) fn json_response<T: Serialize>(status: StatusCode, body: &T) -> HttpResponse {
    HttpResponse::build(status)
        .content_type(JSON_CONTENT_TYPE)
        .body(crate::render::json_bytes(body))
}

pub(crate) fn database(error: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable(format!("database: {error}"))
}

/// Maps a failure of the accounts store; `email_field` names the request field a duplicate
/// email came from.
pub(crate) fn accounts_error(error: AccountsError, email_field: &'static str) -> ApiError {
    match error {
        AccountsError::VendorCodeTaken => ApiError::VendorCodeTaken,
        AccountsError::EmailTaken => ApiError::EmailTaken { field: email_field },
        AccountsError::Db(e) => database(e),
        AccountsError::Store(schema::StoreError::Db(e)) => database(e),
        AccountsError::ApiKey(schema::api_keys::ApiKeyError::Db(e)) => database(e),
        other => ApiError::Internal(other.to_string()),
    }
}

pub(crate) fn string_field(value: &Value) -> Result<&str, String> {
    value.as_str().ok_or_else(|| "must be a string".to_owned())
}

pub(crate) fn email_field(value: &Value) -> Result<Email, String> {
    Email::parse(string_field(value)?).map_err(|e| e.to_string())
}

pub(crate) fn password_field(value: &Value) -> Result<Password, String> {
    Password::parse(string_field(value)?)
}

/// Issues a session for a user in the caller's transaction (scoped to `tenant_id`): a new
/// refresh token of `family_id` and a signed access token.
async fn issue_session(
    state: &ApiState,
    transaction: &deadpool_postgres::Transaction<'_>,
    tenant_id: TenantId,
    user_id: Uuid,
    role: Role,
    family_id: Uuid,
) -> Result<Session, ApiError> {
    let now = Utc::now();
    let refresh = accounts::issue_refresh_token(&**transaction, tenant_id, user_id, family_id, now)
        .await
        .map_err(|e| accounts_error(e, "email"))?;
    let claims = Claims::access(user_id, tenant_id, role.as_str(), now.timestamp());
    let access_token = state
        .accounts
        .jwt_keys
        .sign(&claims)
        .map_err(|e| ApiError::Internal(format!("signing an access token: {e}")))?;
    Ok(Session {
        access_token,
        refresh,
    })
}

struct Session {
    access_token: String,
    refresh: NewToken,
}

impl Session {
    fn response(self) -> SessionResponse {
        SessionResponse {
            access_token: self.access_token,
            token_type: TOKEN_TYPE,
            expires_in: jwt::ACCESS_TOKEN_SECONDS,
            refresh_token: self.refresh.plaintext,
        }
    }
}

/// `token_type` of every session.
pub const TOKEN_TYPE: &str = "Bearer";

// The session members appear in three bodies (login and refresh, signup, accepting an
// invitation); each body is one flat struct, so that its schema lists its keys exactly.

/// `200` body of `POST /v1/auth/login` and `POST /v1/auth/refresh`: a new session.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionResponse {
    /// A JWT access token, valid for `expires_in` seconds: send it as
    /// `Authorization: Bearer <access_token>`.
    #[schema(format = Password)]
    pub access_token: String,
    /// Always `Bearer`.
    #[schema(value_type = String, example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the access token expires (900).
    #[schema(example = 900)]
    pub expires_in: i64,
    /// `lr_` and 64 hex digits, valid for 30 days: exchange it once at `POST /v1/auth/refresh`
    /// for a new session, or revoke it at `POST /v1/auth/logout`.
    #[schema(format = Password, pattern = "^lr_[0-9a-f]{64}$")]
    pub refresh_token: String,
}

/// `201` body of `POST /v1/signup`: the new tenant and its owner, signed in.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SignupResponse {
    #[schema(value_type = uuid::Uuid)]
    pub tenant_id: TenantId,
    /// Upper-case, as stored.
    #[schema(example = "SHOP1")]
    pub vendor_code: String,
    /// The owner's user id.
    pub user_id: Uuid,
    /// Always `owner`.
    #[schema(value_type = crate::openapi::UserRole)]
    pub role: &'static str,
    /// As in `SessionResponse`.
    #[schema(format = Password)]
    pub access_token: String,
    /// Always `Bearer`.
    #[schema(value_type = String, example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the access token expires (900).
    #[schema(example = 900)]
    pub expires_in: i64,
    /// As in `SessionResponse`.
    #[schema(format = Password, pattern = "^lr_[0-9a-f]{64}$")]
    pub refresh_token: String,
}

/// `200` body of `POST /v1/invitations/accept`: the invited user, signed in.
#[derive(Serialize, utoipa::ToSchema)]
pub struct InvitationAcceptedResponse {
    pub user_id: Uuid,
    #[schema(value_type = uuid::Uuid)]
    pub tenant_id: TenantId,
    /// The role the invitation gave.
    #[schema(value_type = crate::openapi::UserRole)]
    pub role: &'static str,
    /// As in `SessionResponse`.
    #[schema(format = Password)]
    pub access_token: String,
    /// Always `Bearer`.
    #[schema(value_type = String, example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the access token expires (900).
    #[schema(example = 900)]
    pub expires_in: i64,
    /// As in `SessionResponse`.
    #[schema(format = Password, pattern = "^lr_[0-9a-f]{64}$")]
    pub refresh_token: String,
}

// ---------------------------------------------------------------------------------------
// POST /v1/signup
// ---------------------------------------------------------------------------------------

/// A signup as a client may send it. Built only by [`SignupRequest::parse`].
#[derive(Debug)]
pub struct SignupRequest {
    pub vendor_code: VendorCode,
    pub business_name: String,
    pub owner_email: Email,
    pub owner_password: Password,
    pub currency: Currency,
    pub expiry_days: u32,
}

impl SignupRequest {
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let object = JsonObject::parse(body)?;
        object.deny_unknown(&SIGNUP_FIELDS)?;
        Ok(SignupRequest {
            vendor_code: object.required("vendor_code", |v| {
                VendorCode::parse(string_field(v)?).map_err(|e| e.to_string())
            })?,
            business_name: object.required("business_name", |v| {
                body::text(v, 1, BUSINESS_NAME_CHARS_MAX).map(|name| name.trim().to_owned())
            })?,
            owner_email: object.required("owner_email", email_field)?,
            owner_password: object.required("owner_password", password_field)?,
            currency: object
                .optional("currency", |v| {
                    Currency::parse(string_field(v)?)
                        .map_err(|_| "must be an ISO 4217 code such as NGN".to_owned())
                })?
                .unwrap_or(Currency::NGN),
            expiry_days: object
                .optional("expiry_days", |v| {
                    let days = body::integer(v)?;
                    if (1..=EXPIRY_DAYS_MAX).contains(&days) {
                        Ok(days as u32)
                    } else {
                        Err(format!("must be 1 to {EXPIRY_DAYS_MAX}"))
                    }
                })?
                .unwrap_or(EXPIRY_DAYS_DEFAULT),
        })
    }
}

#[utoipa::path(
    post,
    path = "/v1/signup",
    tag = "accounts",
    request_body(content = crate::openapi::SignupRequestSchema, content_type = "application/json"),
    responses(
        (status = 201, description = "Signed up: the tenant exists with the starter rule set, and its owner is signed in.", body = SignupResponse),
        (status = 400, description = "`malformed-json`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`vendor-code-taken` or `email-taken` (with `field`).", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 422, description = "`invalid-field` (with `field`).", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
#[tracing::instrument(name = "signup", skip_all)]
pub async fn signup(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let body = body::read_json(&req, payload, state.body_bytes_max).await?;
    let request = SignupRequest::parse(&body)?;
    if request.business_name.is_empty() {
        return Err(ApiError::invalid_field(
            "business_name",
            "business_name must not be blank",
        ));
    }
    let password = request.owner_password.clone();
    let password_hash = passwords::off_the_runtime(move || passwords::hash(&password))
        .await?
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let tenant_id = TenantId::from_uuid(Uuid::now_v7());
    let owner_user_id = Uuid::now_v7();
    let correlation_id = crate::auth::CorrelationId::from_headers(req.headers()).0;
    let registration = Registration {
        tenant_id,
        vendor_code: request.vendor_code.clone(),
        name: request.business_name,
        currency: request.currency,
        expiry_days: request.expiry_days,
        rule_set: RuleSet::starter(),
        owner: Some(NewOwner {
            user_id: owner_user_id,
            email: request.owner_email,
            password_hash,
        }),
        first_api_key_label: None,
        metadata: EventMetadata {
            actor: Actor::User(owner_user_id),
            correlation_id,
            causation_id: None,
        },
        at: crate::commands::now(),
    };
    let mut client = state.client().await?;
    accounts::register_tenant(&mut client, registration)
        .await
        .map_err(|e| accounts_error(e, "owner_email"))?;
    tracing::info!(%tenant_id, "tenant signed up");
    let transaction = scoped(&mut client, tenant_id).await?;
    let session = issue_session(
        &state,
        &transaction,
        tenant_id,
        owner_user_id,
        Role::Owner,
        Uuid::now_v7(),
    )
    .await?;
    transaction.commit().await.map_err(database)?;
    let session = session.response();
    let body = SignupResponse {
        tenant_id,
        vendor_code: request.vendor_code.as_str().to_owned(),
        user_id: owner_user_id,
        role: Role::Owner.as_str(),
        access_token: session.access_token,
        token_type: session.token_type,
        expires_in: session.expires_in,
        refresh_token: session.refresh_token,
    };
    Ok(json_response(StatusCode::CREATED, &body))
}

// ---------------------------------------------------------------------------------------
// POST /v1/auth/login
// ---------------------------------------------------------------------------------------

#[derive(Debug)]
pub struct LoginRequest {
    pub email: Email,
    /// As typed: the policy applies when a password is chosen, not when one is presented.
    pub password: Password,
}

impl LoginRequest {
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let object = JsonObject::parse(body)?;
        object.deny_unknown(&LOGIN_FIELDS)?;
        let email = object.required("email", email_field)?;
        let password = object.required("password", |v| {
            let raw = string_field(v)?;
            if raw.is_empty() || raw.chars().count() > passwords::PASSWORD_CHARS_MAX {
                return Err(format!(
                    "must be 1 to {} characters long",
                    passwords::PASSWORD_CHARS_MAX
                ));
            }
            // Any presented password is checked (and fails) the same way; only its size is
            // bounded, so argon2 never hashes megabytes.
            Ok(Password::presented(raw))
        })?;
        Ok(LoginRequest { email, password })
    }
}

fn retry_after(wait: Duration) -> ApiError {
    ApiError::TooManyAttempts {
        retry_after_seconds: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
    }
}

#[utoipa::path(
    post,
    path = "/v1/auth/login",
    tag = "accounts",
    request_body(content = crate::openapi::LoginRequestSchema, content_type = "application/json"),
    responses(
        (status = 200, description = "Logged in: a new session.", body = SessionResponse),
        (status = 400, description = "`malformed-json`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 401, description = "`invalid-credentials`: one answer for an unknown email, a wrong password, a disabled user and an invitation not yet accepted.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 422, description = "`invalid-field` (with `field`).", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 429, description = "`too-many-attempts`: too many failed logins for this email or from this client address; or `rate-limited`: over the rate limit of the client address. Retry after `Retry-After` seconds.",
            body = crate::problem::Problem, content_type = "application/problem+json", headers(("Retry-After" = u32, description = "Whole seconds to wait (at least 1)."))),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
#[tracing::instrument(name = "login", skip_all)]
pub async fn login(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let body = body::read_json(&req, payload, state.body_bytes_max).await?;
    let request = LoginRequest::parse(&body)?;
    let ip = req.peer_addr().map(|address| address.ip());
    let email = request.email.as_str().to_owned();
    state
        .login_limiter
        .check(&email, ip, Instant::now())
        .map_err(retry_after)?;
    // The connection goes back to the pool before the slow password check.
    let candidate = {
        let client = state.client().await?;
        accounts::user_by_email(&**client, &request.email)
            .await
            .map_err(|e| accounts_error(e, "email"))?
    };
    let stored_hash = candidate
        .as_ref()
        .and_then(|c| c.password_hash.clone())
        .unwrap_or_else(|| passwords::dummy_hash().to_owned());
    let password = request.password;
    let matches =
        passwords::off_the_runtime(move || passwords::verify(password.expose(), &stored_hash))
            .await?;
    let user = match candidate {
        Some(user) if matches && !user.disabled && user.password_hash.is_some() => user,
        _ => {
            state
                .login_limiter
                .record_failure(&email, ip, Instant::now());
            return Err(ApiError::InvalidCredentials);
        }
    };
    state.login_limiter.record_success(&email);
    let mut client = state.client().await?;
    let transaction = scoped(&mut client, user.tenant_id).await?;
    let session = issue_session(
        &state,
        &transaction,
        user.tenant_id,
        user.user_id,
        user.role,
        Uuid::now_v7(),
    )
    .await?;
    transaction.commit().await.map_err(database)?;
    tracing::info!(tenant_id = %user.tenant_id, user_id = %user.user_id, "logged in");
    Ok(json_response(StatusCode::OK, &session.response()))
}

// ---------------------------------------------------------------------------------------
// POST /v1/auth/refresh and /v1/auth/logout
// ---------------------------------------------------------------------------------------

/// The hash of a presented refresh token; 401 for a token of the wrong shape (422 when the
/// field is missing or not a string).
fn refresh_token_hash(body: &[u8]) -> Result<[u8; 32], ApiError> {
    let object = JsonObject::parse(body)?;
    object.deny_unknown(&REFRESH_TOKEN_FIELDS)?;
    let token = object.required("refresh_token", |v| string_field(v).map(str::to_owned))?;
    if !accounts::is_well_formed_token(&token, accounts::REFRESH_TOKEN_PREFIX) {
        return Err(ApiError::InvalidRefreshToken);
    }
    Ok(accounts::hash_token(&token))
}

#[utoipa::path(
    post,
    path = "/v1/auth/refresh",
    tag = "accounts",
    request_body(content = crate::openapi::RefreshTokenRequestSchema, content_type = "application/json"),
    responses(
        (status = 200, description = "A new session; the presented refresh token is used up and replaced by the new one (same family).", body = SessionResponse),
        (status = 400, description = "`malformed-json`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 401, description = "`invalid-refresh-token` (with `field`): unknown, malformed, expired, revoked or already used (presenting a used token revokes its whole family), or its user is disabled. Log in again.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 422, description = "`invalid-field` (with `field`): `refresh_token` missing or not a string, or an unknown field.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
#[tracing::instrument(name = "refresh", skip_all)]
pub async fn refresh(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let body = body::read_json(&req, payload, state.body_bytes_max).await?;
    let token_hash = refresh_token_hash(&body)?;
    let mut client = state.client().await?;
    let stored = accounts::refresh_token_by_hash(&**client, &token_hash)
        .await
        .map_err(|e| accounts_error(e, "refresh_token"))?
        .ok_or(ApiError::InvalidRefreshToken)?;
    let now = Utc::now();
    let transaction = scoped(&mut client, stored.tenant_id).await?;
    let rotated = match stored.verdict(now) {
        RefreshVerdict::Rotate => {
            accounts::mark_refresh_token_used(&*transaction, stored.token_id, now)
                .await
                .map_err(|e| accounts_error(e, "refresh_token"))?
        }
        RefreshVerdict::ReuseDetected => false,
        RefreshVerdict::Revoked | RefreshVerdict::Expired => {
            return Err(ApiError::InvalidRefreshToken)
        }
    };
    if !rotated {
        // Used before (or by a concurrent request that won): whoever holds the successor
        // may be a thief, so nobody keeps this family.
        revoke_family(transaction, stored.family_id, now).await?;
        tracing::warn!(tenant_id = %stored.tenant_id, user_id = %stored.user_id,
            "refresh token reused: its family is revoked");
        return Err(ApiError::InvalidRefreshToken);
    }
    let status = accounts::user_status(&*transaction, stored.user_id)
        .await
        .map_err(|e| accounts_error(e, "refresh_token"))?;
    let role = match status {
        Some(status) if status.active => status.role,
        _ => {
            revoke_family(transaction, stored.family_id, now).await?;
            return Err(ApiError::InvalidRefreshToken);
        }
    };
    let session = issue_session(
        &state,
        &transaction,
        stored.tenant_id,
        stored.user_id,
        role,
        stored.family_id,
    )
    .await?;
    transaction.commit().await.map_err(database)?;
    Ok(json_response(StatusCode::OK, &session.response()))
}

async fn revoke_family(
    transaction: deadpool_postgres::Transaction<'_>,
    family_id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    accounts::revoke_refresh_family(&*transaction, family_id, now)
        .await
        .map_err(|e| accounts_error(e, "refresh_token"))?;
    transaction.commit().await.map_err(database)
}

#[utoipa::path(
    post,
    path = "/v1/auth/logout",
    tag = "accounts",
    request_body(content = crate::openapi::RefreshTokenRequestSchema, content_type = "application/json"),
    responses(
        (status = 204, description = "Logged out: every refresh token of the session's family is revoked (access tokens already issued expire on their own)."),
        (status = 400, description = "`malformed-json`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 401, description = "`invalid-refresh-token` (with `field`): unknown or malformed.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 422, description = "`invalid-field` (with `field`): `refresh_token` missing or not a string, or an unknown field.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
#[tracing::instrument(name = "logout", skip_all)]
pub async fn logout(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let body = body::read_json(&req, payload, state.body_bytes_max).await?;
    let token_hash = refresh_token_hash(&body)?;
    let mut client = state.client().await?;
    let stored = accounts::refresh_token_by_hash(&**client, &token_hash)
        .await
        .map_err(|e| accounts_error(e, "refresh_token"))?
        .ok_or(ApiError::InvalidRefreshToken)?;
    let transaction = scoped(&mut client, stored.tenant_id).await?;
    revoke_family(transaction, stored.family_id, Utc::now()).await?;
    Ok(HttpResponse::NoContent().finish())
}

// ---------------------------------------------------------------------------------------
// GET /v1/me
// ---------------------------------------------------------------------------------------

/// Which kind of principal is calling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    /// A signed-in user (access token).
    User,
    /// A vendor system (API key).
    ApiKey,
}

/// `200` body of `GET /v1/me`: who the credentials belong to.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MeResponse {
    pub kind: PrincipalKind,
    /// The user's id or the API key's id, as `kind` says.
    pub id: Uuid,
    #[schema(value_type = uuid::Uuid)]
    pub tenant_id: TenantId,
    #[schema(value_type = crate::openapi::UserRole)]
    pub role: &'static str,
}

#[utoipa::path(
    get,
    path = "/v1/me",
    tag = "accounts",
    responses(
        (status = 200, description = "Who the credentials belong to: a user or an API key, its tenant and role.", body = MeResponse),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
    ),
    security(("api_key" = []), ("user_token" = []))
)]
pub async fn me(caller: Caller) -> Result<HttpResponse, ApiError> {
    let (kind, id) = match caller.principal {
        crate::auth::Principal::User(id) => (PrincipalKind::User, id),
        crate::auth::Principal::ApiKey(id) => (PrincipalKind::ApiKey, id),
    };
    Ok(json_response(
        StatusCode::OK,
        &MeResponse {
            kind,
            id,
            tenant_id: caller.tenant_id,
            role: caller.role.as_str(),
        },
    ))
}

// ---------------------------------------------------------------------------------------
// POST /v1/invitations/accept
// ---------------------------------------------------------------------------------------

#[utoipa::path(
    post,
    path = "/v1/invitations/accept",
    tag = "accounts",
    request_body(content = crate::openapi::InvitationAcceptanceSchema, content_type = "application/json"),
    responses(
        (status = 200, description = "Accepted: the password is set and the invited user is signed in. An invitation works once.", body = InvitationAcceptedResponse),
        (status = 400, description = "`malformed-json`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "`invitation-not-found` (with `field`): unknown, malformed, expired or already accepted.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 422, description = "`invalid-field` (with `field`), e.g. a password outside the policy.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
#[tracing::instrument(name = "accept_invitation", skip_all)]
pub async fn accept_invitation(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let body = body::read_json(&req, payload, state.body_bytes_max).await?;
    let object = JsonObject::parse(&body)?;
    object.deny_unknown(&INVITATION_ACCEPTANCE_FIELDS)?;
    let token = object.required("token", |v| string_field(v).map(str::to_owned))?;
    let password = object.required("password", password_field)?;
    if !accounts::is_well_formed_token(&token, accounts::INVITATION_TOKEN_PREFIX) {
        return Err(ApiError::InvitationNotFound);
    }
    let invitation = {
        let client = state.client().await?;
        accounts::invitation_by_hash(&**client, &accounts::hash_token(&token))
            .await
            .map_err(|e| accounts_error(e, "token"))?
            .ok_or(ApiError::InvitationNotFound)?
    };
    let now = Utc::now();
    if invitation.accepted_at.is_some() || invitation.expires_at <= now {
        return Err(ApiError::InvitationNotFound);
    }
    let password_hash = passwords::off_the_runtime(move || passwords::hash(&password))
        .await?
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut client = state.client().await?;
    let transaction = scoped(&mut client, invitation.tenant_id).await?;
    let (user_id, role) =
        accounts::accept_invitation(&*transaction, invitation.invitation_id, &password_hash, now)
            .await
            .map_err(|e| accounts_error(e, "token"))?
            .ok_or(ApiError::InvitationNotFound)?;
    let session = issue_session(
        &state,
        &transaction,
        invitation.tenant_id,
        user_id,
        role,
        Uuid::now_v7(),
    )
    .await?;
    transaction.commit().await.map_err(database)?;
    let session = session.response();
    let body = InvitationAcceptedResponse {
        user_id,
        tenant_id: invitation.tenant_id,
        role: role.as_str(),
        access_token: session.access_token,
        token_type: session.token_type,
        expires_in: session.expires_in,
        refresh_token: session.refresh_token,
    };
    Ok(json_response(StatusCode::OK, &body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field_of(error: ApiError) -> String {
        match error {
            ApiError::InvalidField { field, .. } => field,
            other => panic!("expected an invalid field, got {other:?}"),
        }
    }

    const GOOD: &str = r#"{"vendor_code":"shop1","business_name":"Shop","owner_email":"a@b.co","owner_password":"long enough pw"}"#;

    #[test]
    fn signup_normalises_and_defaults() {
        let request = SignupRequest::parse(GOOD.as_bytes()).unwrap();
        assert_eq!(request.vendor_code.as_str(), "SHOP1");
        assert_eq!(request.owner_email.as_str(), "a@b.co");
        assert_eq!(request.currency, Currency::NGN);
        assert_eq!(request.expiry_days, EXPIRY_DAYS_DEFAULT);
    }

    #[test]
    fn signup_errors_name_the_field() {
        let with = |field: &str, value: Value| {
            let mut body: Value = serde_json::from_str(GOOD).unwrap();
            body[field] = value;
            serde_json::to_vec(&body).unwrap()
        };
        let without = |field: &str| {
            let mut body: Value = serde_json::from_str(GOOD).unwrap();
            body.as_object_mut().unwrap().remove(field);
            serde_json::to_vec(&body).unwrap()
        };
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (without("vendor_code"), "vendor_code"),
            (without("owner_email"), "owner_email"),
            (without("owner_password"), "owner_password"),
            (without("business_name"), "business_name"),
            (with("vendor_code", json!("ab")), "vendor_code"),
            (with("vendor_code", json!("bad-code")), "vendor_code"),
            (with("vendor_code", json!(123)), "vendor_code"),
            (with("owner_email", json!("nobody")), "owner_email"),
            (with("owner_password", json!("short")), "owner_password"),
            (
                with("owner_password", json!(12345678901234_i64)),
                "owner_password",
            ),
            (with("business_name", json!("")), "business_name"),
            (with("currency", json!("naira")), "currency"),
            (with("expiry_days", json!(0)), "expiry_days"),
            (with("expiry_days", json!("30")), "expiry_days"),
            (with("extra", json!(1)), "extra"),
        ];
        for (body, field) in cases {
            let error = SignupRequest::parse(&body).unwrap_err();
            assert_eq!(field_of(error), field, "{}", String::from_utf8_lossy(&body));
        }
    }

    #[test]
    fn login_bounds_the_password_but_applies_no_policy() {
        let ok = LoginRequest::parse(br#"{"email":"A@B.co","password":"x"}"#).unwrap();
        assert_eq!(ok.email.as_str(), "a@b.co");
        let long = format!(r#"{{"email":"a@b.co","password":"{}"}}"#, "x".repeat(257));
        assert_eq!(
            field_of(LoginRequest::parse(long.as_bytes()).unwrap_err()),
            "password"
        );
        assert_eq!(
            field_of(LoginRequest::parse(br#"{"email":"a@b.co"}"#).unwrap_err()),
            "password"
        );
    }

    #[test]
    fn refresh_tokens_of_the_wrong_shape_are_refused_without_a_look_up() {
        assert!(matches!(
            refresh_token_hash(br#"{"refresh_token":"lr_nothex"}"#),
            Err(ApiError::InvalidRefreshToken)
        ));
        assert_eq!(
            field_of(refresh_token_hash(br#"{"refresh_token":5}"#).unwrap_err()),
            "refresh_token"
        );
        let token = accounts::generate_token(accounts::REFRESH_TOKEN_PREFIX).unwrap();
        let body = format!(r#"{{"refresh_token":"{}"}}"#, token.plaintext);
        assert_eq!(refresh_token_hash(body.as_bytes()).unwrap(), token.hash);
    }
}
