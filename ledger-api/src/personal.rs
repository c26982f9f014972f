//! Personal data under data protection law (GDPR, Nigeria's NDPA): reading it back, the
//! export of everything held about one customer, and erasure.
//!
//! - **Read**: a customer's phone number and name live only inside their `CustomerEnrolled`
//!   event, sealed with their data key; the key lives in `customer_keys`, wrapped by a master
//!   key. Opening needs both, and the vault's master keys.
//! - **Erasure** (`POST /v1/customers/{id}/erasure`) is a ledger command: the writer records
//!   `CustomerErased` and, in the same transaction, deletes the data key and the phone's
//!   blind-index row. The sealed bytes stay in the append-only event table (the hash chain
//!   still verifies, balances and history still replay) but nobody can open them any more,
//!   and the phone number may enrol again as a new customer.
//! - **Export** (`GET /v1/customers/{id}/export`) returns what is held: the personal data
//!   (while it exists), the key's metadata, the balance and lots folded from the ledger, and
//!   every event of the customer's stream with its actor.

use crate::auth::Caller;
use crate::commands;
use crate::customers::{customer_in_path, decoded, whole_stream};
use crate::history::{self, tenant_currency};
use crate::idempotency::IdempotencyKey;
use crate::problem::ApiError;
use crate::scoped;
use crate::{render, ApiState};
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use ledger_core::aggregate::Aggregate;
use ledger_core::command::WrappedDataKey;
use ledger_core::events::Actor;
use ledger_core::{Command, CustomerId, CustomerState, Event, StreamId, TenantId};
use schema::accounts::Permission;
use schema::RecordedEvent;
use serde::Serialize;
use vault::{PersonalData, Vault, VaultError};

/// What is held of a customer's personal data.
pub struct PersonalView {
    /// `None` when erased (or enrolled before personal data was sealed).
    pub personal: Option<PersonalData>,
    /// The wrapped data key's metadata, while the key exists.
    pub data_key: Option<DataKeyView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DataKeyView {
    pub master_key_id: String,
    pub created_at: DateTime<Utc>,
}

/// A vault failure is the server's (a missing master key, no randomness, bytes that do not
/// open), never the client's: logged with its cause, answered with a fixed sentence.
pub fn vault_failed(error: VaultError) -> ApiError {
    ApiError::Internal(format!("personal data protection: {error}"))
}

/// Opens a customer's personal data, inside the caller's tenant-scoped transaction.
pub async fn read(
    transaction: &deadpool_postgres::Transaction<'_>,
    vault: &Vault,
    tenant_id: TenantId,
    customer_id: CustomerId,
) -> Result<PersonalView, ApiError> {
    let key_row = transaction
        .query_opt(
            "SELECT master_key_id, wrapped_key, created_at FROM customer_keys \
             WHERE customer_id = $1 AND tenant_id = $2",
            &[&customer_id.as_uuid(), &tenant_id.as_uuid()],
        )
        .await
        .map_err(|e| ApiError::Unavailable(format!("reading a data key: {e}")))?;
    let Some(key_row) = key_row else {
        return Ok(PersonalView {
            personal: None,
            data_key: None,
        });
    };
    let column = |e: tokio_postgres::Error| ApiError::Internal(format!("customer_keys: {e}"));
    let wrapped = WrappedDataKey {
        master_key_id: key_row.try_get(0).map_err(column)?,
        bytes: key_row.try_get(1).map_err(column)?,
    };
    let data_key_view = DataKeyView {
        master_key_id: wrapped.master_key_id.clone(),
        created_at: key_row.try_get(2).map_err(column)?,
    };
    let first = schema::store::read_stream(&**transaction, StreamId::Customer(customer_id), 0, 1)
        .await
        .map_err(|e| ApiError::Unavailable(format!("reading an enrolment: {e}")))?;
    let sealed = match first.first().map(RecordedEvent::decode).transpose() {
        Ok(Some(Event::CustomerEnrolled(enrolled))) => enrolled.personal_data,
        Ok(_) => None,
        Err(e) => {
            return Err(ApiError::Internal(format!(
                "an enrolment does not decode: {e}"
            )))
        }
    };
    let personal = match sealed {
        None => None,
        Some(sealed) => {
            let data_key = vault
                .unwrap(&wrapped, tenant_id, customer_id)
                .map_err(vault_failed)?;
            Some(
                vault
                    .open(&data_key, tenant_id, customer_id, &sealed)
                    .map_err(vault_failed)?,
            )
        }
    };
    Ok(PersonalView {
        personal,
        data_key: Some(data_key_view),
    })
}

#[utoipa::path(
    post,
    path = "/v1/customers/{customer_id}/erasure",
    tag = "personal data",
    params(
        ("customer_id" = uuid::Uuid, Path, description = "The customer's id. An unknown id, another tenant's customer and a malformed id are all 404 `customer-not-found`."),
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[\\x21-\\x7E]+$",
            description = "Optional. 1 to 255 visible ASCII characters, scoped to the tenant: a retry with the same key and the same request gets the first answer, byte for byte; the same key with another request is 422 `idempotency-key-reused`."),
    ),
    responses(
        (status = 200, description = "Erased: the customer's data key is destroyed, so their sealed personal data can no longer be opened; balances and history remain.",
            body = crate::render::ErasureResponse, headers(("Idempotent-Replayed" = String, description = "`true` when this is the stored answer to an earlier request with the same `Idempotency-Key`."))),
        (status = 400, description = "`idempotency-key-invalid` (with `header`).", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
        (status = 404, description = "`customer-not-found` (or `tenant-not-registered`).", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 410, description = "`customer-erased`: already erased.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "`idempotency-key-reused`.", body = crate::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ("user_token" = []))
)]
#[tracing::instrument(name = "erase_customer", skip_all, fields(tenant_id = %caller.tenant_id))]
pub async fn erase(
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    caller.authorize(Permission::ManagePersonalData)?;
    let customer_id = customer_in_path(&path)?;
    let key = IdempotencyKey::optional(&req)?;
    let claim = key.map(|key| key.claim(req.method().as_str(), req.path(), &[]));
    let command = Command::EraseCustomer {
        customer_id,
        at: commands::now(),
    };
    let submission = caller.submission(command, claim, render::erasure);
    commands::submit(&state, submission).await
}

/// `200` body of `GET /v1/customers/{id}/export`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CustomerExport {
    #[schema(value_type = uuid::Uuid)]
    pub customer_id: CustomerId,
    pub exported_at: DateTime<Utc>,
    /// `null` once erased.
    #[schema(required = true)]
    pub personal_data: Option<ExportedPersonalData>,
    #[schema(required = true)]
    pub erased_at: Option<DateTime<Utc>>,
    /// Metadata of the customer's data key while it exists (never the key).
    #[schema(required = true)]
    pub data_key: Option<DataKeyView>,
    pub enrolled_at: DateTime<Utc>,
    pub balance: i64,
    pub earned: i64,
    pub redeemed: i64,
    pub expired: i64,
    pub purchases: u32,
    /// `MM-DD`; `null` when not given or once erased.
    #[schema(required = true, example = "03-31")]
    pub birthday: Option<String>,
    /// The customer's own referral code (not personal data: kept after erasure).
    #[schema(required = true, example = "04HMASW9")]
    pub referral_code: Option<String>,
    /// The customer whose referral code this customer enrolled with.
    #[schema(value_type = Option<uuid::Uuid>, required = true)]
    pub referred_by: Option<CustomerId>,
    /// Every event of the customer's stream, oldest first.
    pub events: Vec<ExportedEvent>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExportedPersonalData {
    pub phone: String,
    #[schema(required = true)]
    pub name: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExportedEvent {
    pub sequence: i64,
    pub version: i32,
    #[serde(rename = "type")]
    pub event_type: String,
    pub points: i64,
    pub reason: String,
    pub recorded_at: DateTime<Utc>,
    /// Who caused it: `{"api_key": id}`, `{"user": id}`, `{"customer": id}` or `{"system": name}`.
    #[schema(value_type = crate::openapi::Actor)]
    pub actor: Actor,
    pub correlation_id: uuid::Uuid,
}

#[utoipa::path(
    get,
    path = "/v1/customers/{customer_id}/export",
    tag = "personal data",
    params(
        ("customer_id" = uuid::Uuid, Path, description = "The customer's id. An unknown id, another tenant's customer and a malformed id are all 404 `customer-not-found`."),
    ),
    responses(
        (status = 200, description = "Everything held about the customer: personal data (unless erased), the data key's metadata, balances folded from the ledger, and every event of their stream.",
            body = CustomerExport),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
        (status = 404, description = "`customer-not-found`.", body = crate::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ("user_token" = []))
)]
#[tracing::instrument(name = "export_customer", skip_all, fields(tenant_id = %caller.tenant_id))]
pub async fn export(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    caller.authorize(Permission::ManagePersonalData)?;
    let customer_id = customer_in_path(&path)?;
    let mut client = state.client().await?;
    let transaction = scoped(&mut client, caller.tenant_id).await?;
    let recorded = whole_stream(&transaction, customer_id).await?;
    if recorded.is_empty() {
        return Err(ApiError::CustomerNotFound);
    }
    let currency = tenant_currency(&transaction, caller.tenant_id).await?;
    let mut state_folded = CustomerState::default();
    let mut events = Vec::with_capacity(recorded.len());
    for event in &recorded {
        let decoded = decoded(event)?;
        let metadata = event.decode_metadata().map_err(|e| {
            ApiError::Internal(format!(
                "metadata of {} does not decode: {e}",
                event.event_id
            ))
        })?;
        state_folded.apply(&decoded);
        events.push(ExportedEvent {
            sequence: event.tenant_sequence,
            version: event.version,
            event_type: event.event_type.clone(),
            points: decoded.points_delta().value(),
            reason: history::reason(&decoded, &currency),
            recorded_at: event.recorded_at,
            actor: metadata.actor,
            correlation_id: metadata.correlation_id,
        });
    }
    let profile = state_folded
        .profile
        .as_ref()
        .ok_or(ApiError::CustomerNotFound)?;
    let held = read(&transaction, &state.vault, caller.tenant_id, customer_id).await?;
    Ok(HttpResponse::Ok().json(CustomerExport {
        customer_id,
        exported_at: Utc::now(),
        personal_data: held.personal.map(|p| ExportedPersonalData {
            phone: p.phone.as_str().to_owned(),
            name: p.name,
        }),
        erased_at: profile.erased_at,
        data_key: held.data_key,
        enrolled_at: profile.enrolled_at,
        balance: state_folded.balance.value(),
        earned: state_folded.earned.value(),
        redeemed: state_folded.redeemed.value(),
        expired: state_folded.expired.value(),
        purchases: state_folded.purchases,
        birthday: state_folded.birthday.map(|b| b.to_string()),
        referral_code: state_folded.referral_code.clone(),
        referred_by: state_folded.referred_by,
        events,
    }))
}
