//! The tenant's users (owners only): invite, list, disable.
//!
//! An invited user exists without a password until they accept the invitation
//! (`POST /v1/invitations/accept`, see [`crate::accounts`]); until then they cannot log in.
//! Another tenant's user is indistinguishable from an unknown one (404).

use crate::accounts::{accounts_error, database, email_field, json_response, string_field};
use crate::auth::Caller;
use crate::body::{self, JsonObject};
use crate::problem::ApiError;
use crate::ApiState;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use schema::accounts::{self, DisableRefusal, Email, Permission, Role, UserSummary};
use serde_json::{json, Value};
use std::time::Instant;
use uuid::Uuid;

pub const DISPLAY_NAME_CHARS_MAX: usize = 120;
/// Most users listed (a shop has a handful).
pub const USERS_LISTED_MAX: i64 = 1_000;

#[derive(Debug)]
pub struct NewUserRequest {
    pub email: Email,
    pub role: Role,
    pub display_name: String,
}

impl NewUserRequest {
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let object = JsonObject::parse(body)?;
        object.deny_unknown(&["email", "role", "display_name"])?;
        Ok(NewUserRequest {
            email: object.required("email", email_field)?,
            role: object.required("role", |v| {
                Role::parse(string_field(v)?).map_err(|e| e.to_string())
            })?,
            display_name: object
                .optional("display_name", |v| body::text(v, 0, DISPLAY_NAME_CHARS_MAX))?
                .unwrap_or_default(),
        })
    }
}

fn user_json(user: &UserSummary) -> Value {
    json!({
        "user_id": user.user_id,
        "email": user.email,
        "display_name": user.display_name,
        "role": user.role.as_str(),
        "created_at": user.created_at,
        "created_by": user.created_by,
        "disabled_at": user.disabled_at,
        "invitation_pending": !user.has_password,
    })
}

#[tracing::instrument(name = "invite_user", skip_all, fields(tenant_id = %caller.tenant_id))]
pub async fn create(
    caller: Caller,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    caller.authorize(Permission::ManageUsers)?;
    let body = body::read_json(&req, payload, state.body_bytes_max).await?;
    let request = NewUserRequest::parse(&body)?;
    // Only users hold the owner role, so an authorized caller is a user.
    let invited_by = caller.user_id().ok_or(ApiError::Forbidden {
        role: caller.role.as_str(),
        action: "manage users",
    })?;
    let mut client = state.client().await?;
    let transaction = schema::tenancy::begin(&mut client, caller.tenant_id)
        .await
        .map_err(database)?;
    let invited = accounts::invite_user(
        &*transaction,
        caller.tenant_id,
        &request.email,
        &request.display_name,
        request.role,
        invited_by,
        Utc::now(),
    )
    .await
    .map_err(|e| accounts_error(e, "email"))?;
    transaction.commit().await.map_err(database)?;
    tracing::info!(user_id = %invited.user_id, role = %request.role, "user invited");
    Ok(json_response(
        StatusCode::CREATED,
        &json!({
            "user_id": invited.user_id,
            "email": request.email.as_str(),
            "role": request.role.as_str(),
            "display_name": request.display_name,
            "invitation": {
                "invitation_id": invited.invitation_id,
                "token": invited.token.plaintext,
                "expires_at": invited.expires_at,
            },
        }),
    ))
}

#[tracing::instrument(name = "list_users", skip_all, fields(tenant_id = %caller.tenant_id))]
pub async fn list(caller: Caller, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    caller.authorize(Permission::ManageUsers)?;
    let mut client = state.client().await?;
    let transaction = schema::tenancy::begin(&mut client, caller.tenant_id)
        .await
        .map_err(database)?;
    let users = accounts::list_users(&*transaction, USERS_LISTED_MAX)
        .await
        .map_err(|e| accounts_error(e, "email"))?;
    transaction.commit().await.map_err(database)?;
    let users: Vec<Value> = users.iter().map(user_json).collect();
    Ok(json_response(StatusCode::OK, &json!({ "users": users })))
}

#[tracing::instrument(name = "disable_user", skip_all, fields(tenant_id = %caller.tenant_id))]
pub async fn disable(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    caller.authorize(Permission::ManageUsers)?;
    let user_id = Uuid::parse_str(&path.into_inner()).map_err(|_| ApiError::UserNotFound)?;
    let mut client = state.client().await?;
    let transaction = schema::tenancy::begin(&mut client, caller.tenant_id)
        .await
        .map_err(database)?;
    let outcome = accounts::disable_user(&*transaction, caller.user_id(), user_id, Utc::now())
        .await
        .map_err(|e| accounts_error(e, "email"))?;
    match outcome {
        Ok(()) => {}
        Err(DisableRefusal::UnknownUser) => return Err(ApiError::UserNotFound),
        Err(DisableRefusal::OwnSelf) => return Err(ApiError::CannotDisableSelf),
        Err(DisableRefusal::LastActiveOwner) => return Err(ApiError::LastActiveOwner),
    }
    transaction.commit().await.map_err(database)?;
    // This process refuses the user's access tokens at once; others within the cache TTL.
    state.user_statuses.insert(user_id, None, Instant::now());
    tracing::info!(%user_id, "user disabled");
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_users_need_a_known_role_and_an_email() {
        let ok = NewUserRequest::parse(br#"{"email":"Staff@Shop.ng","role":"staff"}"#).unwrap();
        assert_eq!((ok.email.as_str(), ok.role), ("staff@shop.ng", Role::Staff));
        for (body, field) in [
            (&br#"{"email":"x@y.co","role":"admin"}"#[..], "role"),
            (br#"{"email":"x@y.co"}"#, "role"),
            (br#"{"email":"x","role":"staff"}"#, "email"),
            (
                br#"{"email":"x@y.co","role":"staff","display_name":7}"#,
                "display_name",
            ),
            (
                br#"{"email":"x@y.co","role":"staff","admin":true}"#,
                "admin",
            ),
        ] {
            let error = NewUserRequest::parse(body).unwrap_err();
            assert!(
                matches!(&error, ApiError::InvalidField { field: f, .. } if f == field),
                "{error:?}"
            );
        }
    }
}
