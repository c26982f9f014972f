//! The tenant's API keys (owners only): create (the plaintext is shown once), list (never
//! a secret or a hash), revoke. Keys are for systems and never hold the owner role.
//!
//! Revocation delay: a revoked key keeps working for at most the auth cache TTL (60 s) on an
//! API process that has it cached; see [`crate::auth`].

use crate::accounts::{accounts_error, database, json_response, string_field};
use crate::auth::Caller;
use crate::body::{self, JsonObject};
use crate::problem::ApiError;
use crate::ApiState;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use schema::accounts::{self, ApiKeySummary, Permission, Role};
use serde::Serialize;
use uuid::Uuid;

pub const LABEL_CHARS_MAX: usize = 100;
pub const KEYS_LISTED_MAX: i64 = 1_000;
/// The fields of `POST /v1/api-keys` (also the properties of its OpenAPI schema).
pub const NEW_API_KEY_FIELDS: [&str; 2] = ["label", "role"];

#[derive(Debug)]
pub struct NewKeyRequest {
    pub label: String,
    pub role: Role,
}

impl NewKeyRequest {
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let object = JsonObject::parse(body)?;
        object.deny_unknown(&NEW_API_KEY_FIELDS)?;
        Ok(NewKeyRequest {
            label: object.required("label", |v| body::text(v, 1, LABEL_CHARS_MAX))?,
            role: object.required("role", |v| match Role::parse(string_field(v)?) {
                Ok(role) if role.may_hold_api_key() => Ok(role),
                _ => Err("must be one of: staff, auditor, analyst".to_owned()),
            })?,
        })
    }
}

/// `201` body of `POST /v1/api-keys`: the only time the key is shown.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedApiKeyResponse {
    pub api_key_id: Uuid,
    pub label: String,
    #[schema(value_type = crate::openapi::ApiKeyRole)]
    pub role: &'static str,
    /// `ll_` and 64 hex digits: send it as `Authorization: Bearer <api_key>`. Only its
    /// SHA-256 is stored, so it cannot be shown again.
    #[schema(format = Password, pattern = "^ll_[0-9a-f]{64}$")]
    pub api_key: String,
}

/// One API key of the tenant, as listed: never its secret or hash.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ApiKeyView {
    pub api_key_id: Uuid,
    pub label: String,
    #[schema(value_type = crate::openapi::ApiKeyRole)]
    pub role: &'static str,
    pub created_at: DateTime<Utc>,
    /// The user who created it; `null` for keys created by the operators' CLI.
    #[schema(required = true)]
    pub created_by: Option<Uuid>,
    /// Updated at most once a minute; `null` if never used.
    #[schema(required = true)]
    pub last_used_at: Option<DateTime<Utc>>,
    /// `null` while the key is active.
    #[schema(required = true)]
    pub revoked_at: Option<DateTime<Utc>>,
}

/// `200` body of `GET /v1/api-keys`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ApiKeyList {
    /// Newest first, at most 1000.
    pub api_keys: Vec<ApiKeyView>,
}

impl From<&ApiKeySummary> for ApiKeyView {
    fn from(key: &ApiKeySummary) -> Self {
        ApiKeyView {
            api_key_id: key.api_key_id,
            label: key.label.clone(),
            role: key.role.as_str(),
            created_at: key.created_at,
            created_by: key.created_by,
            last_used_at: key.last_used_at,
            revoked_at: key.revoked_at,
        }
    }
}

#[utoipa::path(
    post,
    path = "/v1/api-keys",
    tag = "api keys",
    request_body(content = crate::openapi::NewApiKeyRequestSchema, content_type = "application/json"),
    responses(
        (status = 201, description = "Created: the key is in `api_key`, shown this once.", body = CreatedApiKeyResponse),
        (status = 400, description = "`malformed-json`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 403, description = "`forbidden`: only owners manage API keys.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 422, description = "`invalid-field` (with `field`), e.g. the role `owner`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
    ),
    security(("api_key" = []), ("user_token" = []))
)]
#[tracing::instrument(name = "create_api_key", skip_all, fields(tenant_id = %caller.tenant_id))]
pub async fn create(
    caller: Caller,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    caller.authorize(Permission::ManageApiKeys)?;
    let body = body::read_json(&req, payload, state.body_bytes_max).await?;
    let request = NewKeyRequest::parse(&body)?;
    let mut client = state.client().await?;
    let transaction = crate::scoped(&mut client, caller.tenant_id).await?;
    let key = accounts::create_api_key(
        &*transaction,
        caller.tenant_id,
        &request.label,
        request.role,
        caller.user_id(),
    )
    .await
    .map_err(|e| accounts_error(e, "label"))?;
    transaction.commit().await.map_err(database)?;
    tracing::info!(api_key_id = %key.api_key_id, role = %request.role, "API key created");
    Ok(json_response(
        StatusCode::CREATED,
        &CreatedApiKeyResponse {
            api_key_id: key.api_key_id,
            label: request.label,
            role: request.role.as_str(),
            api_key: key.plaintext,
        },
    ))
}

#[utoipa::path(
    get,
    path = "/v1/api-keys",
    tag = "api keys",
    responses(
        (status = 200, description = "The tenant's API keys, newest first (at most 1000), revoked ones included; never a secret or a hash.", body = ApiKeyList),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 403, description = "`forbidden`: only owners manage API keys.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
    ),
    security(("api_key" = []), ("user_token" = []))
)]
#[tracing::instrument(name = "list_api_keys", skip_all, fields(tenant_id = %caller.tenant_id))]
pub async fn list(caller: Caller, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    caller.authorize(Permission::ManageApiKeys)?;
    let mut client = state.client().await?;
    let transaction = crate::scoped(&mut client, caller.tenant_id).await?;
    let keys = accounts::list_api_keys(&*transaction, KEYS_LISTED_MAX)
        .await
        .map_err(|e| accounts_error(e, "label"))?;
    transaction.commit().await.map_err(database)?;
    let api_keys = keys.iter().map(ApiKeyView::from).collect();
    Ok(json_response(StatusCode::OK, &ApiKeyList { api_keys }))
}

#[utoipa::path(
    delete,
    path = "/v1/api-keys/{api_key_id}",
    tag = "api keys",
    params(
        ("api_key_id" = uuid::Uuid, Path, description = "The key's id. An unknown id, another tenant's key and a malformed id are all 404 `api-key-not-found`."),
    ),
    responses(
        (status = 204, description = "Revoked (revoking a revoked key changes nothing): the key stops working within the auth cache TTL (60 s)."),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 403, description = "`forbidden`: only owners manage API keys.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "`api-key-not-found`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
    ),
    security(("api_key" = []), ("user_token" = []))
)]
#[tracing::instrument(name = "revoke_api_key", skip_all, fields(tenant_id = %caller.tenant_id))]
pub async fn revoke(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    caller.authorize(Permission::ManageApiKeys)?;
    let api_key_id = Uuid::parse_str(&path.into_inner()).map_err(|_| ApiError::ApiKeyNotFound)?;
    let mut client = state.client().await?;
    let transaction = crate::scoped(&mut client, caller.tenant_id).await?;
    let revoked = accounts::revoke_api_key(&*transaction, api_key_id, Utc::now())
        .await
        .map_err(|e| accounts_error(e, "label"))?;
    if !revoked {
        return Err(ApiError::ApiKeyNotFound);
    }
    transaction.commit().await.map_err(database)?;
    tracing::info!(%api_key_id, "API key revoked");
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_never_hold_the_owner_role() {
        let ok = NewKeyRequest::parse(br#"{"label":"till 1","role":"auditor"}"#).unwrap();
        assert_eq!(ok.role, Role::Auditor);
        for (body, field) in [
            (&br#"{"label":"till","role":"owner"}"#[..], "role"),
            (br#"{"label":"","role":"staff"}"#, "label"),
            (br#"{"role":"staff"}"#, "label"),
            (br#"{"label":"till","role":"staff","secret":"x"}"#, "secret"),
        ] {
            let error = NewKeyRequest::parse(body).unwrap_err();
            assert!(
                matches!(&error, ApiError::InvalidField { field: f, .. } if f == field),
                "{error:?}"
            );
        }
    }
}
