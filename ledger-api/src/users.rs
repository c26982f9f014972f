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
use chrono::{DateTime, Utc};
use schema::accounts::{self, DisableRefusal, Email, Permission, Role, UserSummary};
use serde::Serialize;
use std::time::Instant;
use uuid::Uuid;

pub const DISPLAY_NAME_CHARS_MAX: usize = 120;
/// Most users listed (a shop has a handful).
pub const USERS_LISTED_MAX: i64 = 1_000;
/// The fields of `POST /v1/users` (also the properties of its OpenAPI schema).
pub const NEW_USER_FIELDS: [&str; 3] = ["email", "role", "display_name"];

#[derive(Debug)]
pub struct NewUserRequest {
    pub email: Email,
    pub role: Role,
    pub display_name: String,
}

impl NewUserRequest {
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let object = JsonObject::parse(body)?;
        object.deny_unknown(&NEW_USER_FIELDS)?;
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

/// `201` body of `POST /v1/users`: the invited user and their invitation.
#[derive(Serialize, utoipa::ToSchema)]
pub struct InvitedUserResponse {
    pub user_id: Uuid,
    /// Trimmed and lower-cased.
    #[schema(format = Email)]
    pub email: String,
    #[schema(value_type = crate::openapi::UserRole)]
    pub role: &'static str,
    /// Empty when none was given.
    pub display_name: String,
    pub invitation: InvitationView,
}

/// An invitation to choose a password, to be handed to the invited user.
#[derive(Serialize, utoipa::ToSchema)]
pub struct InvitationView {
    pub invitation_id: Uuid,
    /// `li_` and 64 hex digits, shown only here: the invited user sends it with a password
    /// to `POST /v1/invitations/accept`, once.
    #[schema(format = Password, pattern = "^li_[0-9a-f]{64}$")]
    pub token: String,
    /// 7 days after the invitation.
    pub expires_at: DateTime<Utc>,
}

/// One user of the tenant, as listed.
#[derive(Serialize, utoipa::ToSchema)]
pub struct UserView {
    pub user_id: Uuid,
    #[schema(format = Email)]
    pub email: String,
    pub display_name: String,
    #[schema(value_type = crate::openapi::UserRole)]
    pub role: &'static str,
    pub created_at: DateTime<Utc>,
    /// The user who invited them; `null` for the owner who signed up.
    #[schema(required = true)]
    pub created_by: Option<Uuid>,
    /// `null` while the user is active.
    #[schema(required = true)]
    pub disabled_at: Option<DateTime<Utc>>,
    /// `true` until the user accepts their invitation (they cannot log in before).
    pub invitation_pending: bool,
}

/// `200` body of `GET /v1/users`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct UserList {
    /// Oldest first, at most 1000.
    pub users: Vec<UserView>,
}

impl From<&UserSummary> for UserView {
    fn from(user: &UserSummary) -> Self {
        UserView {
            user_id: user.user_id,
            email: user.email.clone(),
            display_name: user.display_name.clone(),
            role: user.role.as_str(),
            created_at: user.created_at,
            created_by: user.created_by,
            disabled_at: user.disabled_at,
            invitation_pending: !user.has_password,
        }
    }
}

#[utoipa::path(
    post,
    path = "/v1/users",
    tag = "users",
    request_body(content = crate::openapi::NewUserRequestSchema, content_type = "application/json"),
    responses(
        (status = 201, description = "Invited: the user exists without a password until they accept the invitation, and cannot log in before.", body = InvitedUserResponse),
        (status = 400, description = "`malformed-json`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 403, description = "`forbidden`: only owners manage users.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`email-taken` (with `field`).", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 422, description = "`invalid-field` (with `field`).", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
    ),
    security(("api_key" = []), ("user_token" = []))
)]
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
    let transaction = crate::scoped(&mut client, caller.tenant_id).await?;
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
        &InvitedUserResponse {
            user_id: invited.user_id,
            email: request.email.as_str().to_owned(),
            role: request.role.as_str(),
            display_name: request.display_name,
            invitation: InvitationView {
                invitation_id: invited.invitation_id,
                token: invited.token.plaintext,
                expires_at: invited.expires_at,
            },
        },
    ))
}

#[utoipa::path(
    get,
    path = "/v1/users",
    tag = "users",
    responses(
        (status = 200, description = "The tenant's users, oldest first (at most 1000).", body = UserList),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 403, description = "`forbidden`: only owners manage users.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
    ),
    security(("api_key" = []), ("user_token" = []))
)]
#[tracing::instrument(name = "list_users", skip_all, fields(tenant_id = %caller.tenant_id))]
pub async fn list(caller: Caller, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    caller.authorize(Permission::ManageUsers)?;
    let mut client = state.client().await?;
    let transaction = crate::scoped(&mut client, caller.tenant_id).await?;
    let users = accounts::list_users(&*transaction, USERS_LISTED_MAX)
        .await
        .map_err(|e| accounts_error(e, "email"))?;
    transaction.commit().await.map_err(database)?;
    let users = users.iter().map(UserView::from).collect();
    Ok(json_response(StatusCode::OK, &UserList { users }))
}

#[utoipa::path(
    post,
    path = "/v1/users/{user_id}/disable",
    tag = "users",
    params(
        ("user_id" = uuid::Uuid, Path, description = "The user's id. An unknown id, another tenant's user and a malformed id are all 404 `user-not-found`."),
    ),
    responses(
        (status = 204, description = "Disabled: the user's refresh tokens are revoked and logins refused; their access tokens are refused within the auth cache TTL (60 s)."),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 403, description = "`forbidden`: only owners manage users.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "`user-not-found`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`cannot-disable-self` or `last-active-owner`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
    ),
    security(("api_key" = []), ("user_token" = []))
)]
#[tracing::instrument(name = "disable_user", skip_all, fields(tenant_id = %caller.tenant_id))]
pub async fn disable(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    caller.authorize(Permission::ManageUsers)?;
    let user_id = Uuid::parse_str(&path.into_inner()).map_err(|_| ApiError::UserNotFound)?;
    let mut client = state.client().await?;
    let transaction = crate::scoped(&mut client, caller.tenant_id).await?;
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
