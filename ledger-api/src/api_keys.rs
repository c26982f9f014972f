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
use chrono::Utc;
use schema::accounts::{self, ApiKeySummary, Permission, Role};
use serde_json::{json, Value};
use uuid::Uuid;

pub const LABEL_CHARS_MAX: usize = 100;
pub const KEYS_LISTED_MAX: i64 = 1_000;

#[derive(Debug)]
pub struct NewKeyRequest {
    pub label: String,
    pub role: Role,
}

impl NewKeyRequest {
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let object = JsonObject::parse(body)?;
        object.deny_unknown(&["label", "role"])?;
        Ok(NewKeyRequest {
            label: object.required("label", |v| body::text(v, 1, LABEL_CHARS_MAX))?,
            role: object.required("role", |v| match Role::parse(string_field(v)?) {
                Ok(role) if role.may_hold_api_key() => Ok(role),
                _ => Err("must be one of: staff, auditor, analyst".to_owned()),
            })?,
        })
    }
}

fn key_json(key: &ApiKeySummary) -> Value {
    json!({
        "api_key_id": key.api_key_id,
        "label": key.label,
        "role": key.role.as_str(),
        "created_at": key.created_at,
        "created_by": key.created_by,
        "last_used_at": key.last_used_at,
        "revoked_at": key.revoked_at,
    })
}

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
    let transaction = schema::tenancy::begin(&mut client, caller.tenant_id)
        .await
        .map_err(database)?;
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
        &json!({
            "api_key_id": key.api_key_id,
            "label": request.label,
            "role": request.role.as_str(),
            "api_key": key.plaintext,
        }),
    ))
}

#[tracing::instrument(name = "list_api_keys", skip_all, fields(tenant_id = %caller.tenant_id))]
pub async fn list(caller: Caller, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    caller.authorize(Permission::ManageApiKeys)?;
    let mut client = state.client().await?;
    let transaction = schema::tenancy::begin(&mut client, caller.tenant_id)
        .await
        .map_err(database)?;
    let keys = accounts::list_api_keys(&*transaction, KEYS_LISTED_MAX)
        .await
        .map_err(|e| accounts_error(e, "label"))?;
    transaction.commit().await.map_err(database)?;
    let keys: Vec<Value> = keys.iter().map(key_json).collect();
    Ok(json_response(StatusCode::OK, &json!({ "api_keys": keys })))
}

#[tracing::instrument(name = "revoke_api_key", skip_all, fields(tenant_id = %caller.tenant_id))]
pub async fn revoke(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    caller.authorize(Permission::ManageApiKeys)?;
    let api_key_id = Uuid::parse_str(&path.into_inner()).map_err(|_| ApiError::ApiKeyNotFound)?;
    let mut client = state.client().await?;
    let transaction = schema::tenancy::begin(&mut client, caller.tenant_id)
        .await
        .map_err(database)?;
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
