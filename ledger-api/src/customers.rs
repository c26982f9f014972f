//! Customers: `POST /v1/customers` (enrol, optionally with a birthday and a friend's
//! referral code), `GET /v1/customers` (find by phone, or list), `GET /v1/customers/{id}`
//! (balance, open lots, referral code and personal data), `PUT
//! /v1/customers/{id}/birthday` (set, change or clear the birthday).
//!
//! The balance is read from the balances read model (`projection.customer_balances` and
//! `projection.point_lots`), which the balances projector keeps up to date from the event
//! stream: it may lag the ledger by milliseconds, so a GET right after a purchase can show
//! the balance before it. The purchase's own response always has the new balance
//! (read-your-writes). A customer the projector has not reached yet (just enrolled) is
//! folded from the event store instead, so a fresh enrolment is never answered 404.
//!
//! Personal data (phone number, name) is sealed here, at the edge, before the command goes
//! to the writer, and opened here when shown (see [`crate::personal`]); the ledger, the read
//! models and the logs only ever hold ciphertext, a keyed blind index and ids. Every read
//! runs in a transaction scoped to the caller's tenant (row-level security).

use crate::auth::Caller;
use crate::body::{self, JsonObject};
use crate::commands;
use crate::idempotency::IdempotencyKey;
use crate::personal::{self, PersonalView};
use crate::problem::ApiError;
use crate::scoped;
use crate::{render, ApiState};
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use ledger_core::redemption_code::CODE_RANDOM_BYTES;
use ledger_core::{
    Birthday, Command, CustomerId, CustomerState, LotId, PhoneNumber, ReferralCode, StreamId,
    TenantId,
};
use schema::accounts::Permission;
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;
use uuid::Uuid;
use vault::{PersonalData, Vault};

/// Most open lots listed by `GET /v1/customers/{id}` (soonest-expiring first): the balance
/// always counts all of them; the list is for display.
pub const LOTS_LISTED_MAX: i64 = 500;
/// Events read per round trip when folding a customer from the event store.
const STREAM_PAGE_EVENTS: i64 = 1_000;
/// Longest customer name accepted, in characters.
pub const NAME_CHARS_MAX: usize = 100;
pub const LIST_LIMIT_DEFAULT: i64 = 50;
pub const LIST_LIMIT_MAX: i64 = 200;
/// The fields an enrolment body may have; any other is refused (422).
pub const ENROLMENT_FIELDS: [&str; 4] = ["phone", "name", "birthday", "referral_code"];
/// The fields of a `PUT /v1/customers/{id}/birthday` body.
pub const BIRTHDAY_FIELDS: [&str; 1] = ["birthday"];
/// The fields a search body may have.
pub const SEARCH_FIELDS: [&str; 1] = ["phone"];

/// An enrolment as a client may send it. Built only by [`EnrolmentRequest::parse`].
#[derive(Clone, PartialEq, Eq)]
pub struct EnrolmentRequest {
    pub phone: PhoneNumber,
    pub name: Option<String>,
    /// Month and day (`MM-DD`).
    pub birthday: Option<Birthday>,
    /// The referral code of the customer who referred this one (not this customer's own
    /// code, which is drawn at enrolment).
    pub referral_code: Option<ReferralCode>,
}

impl std::fmt::Debug for EnrolmentRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EnrolmentRequest(<personal data>)")
    }
}

impl EnrolmentRequest {
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let object = JsonObject::parse(body)?;
        object.deny_unknown(&ENROLMENT_FIELDS)?;
        let phone = object.required("phone", parse_phone)?;
        let name = object.optional("name", |value| {
            body::text(value, 1, NAME_CHARS_MAX).map(|name| name.trim().to_owned())
        })?;
        let birthday = object.optional("birthday", parse_birthday)?;
        let referral_code = object.optional("referral_code", |value| {
            let raw = crate::accounts::string_field(value)?;
            ReferralCode::parse(raw).map_err(|e| format!("is invalid: {e}"))
        })?;
        Ok(EnrolmentRequest {
            phone,
            name,
            birthday,
            referral_code,
        })
    }

    /// The command, with the personal data sealed under a new data key of the customer and
    /// the phone number replaced by its blind index.
    ///
    /// `referred_by` is the customer `referral_code` names (looked up by the caller: see
    /// [`referrer`]); the customer's own referral code is drawn here.
    pub fn into_command(
        self,
        vault: &Vault,
        tenant_id: TenantId,
        customer_id: CustomerId,
        referred_by: Option<CustomerId>,
        at: DateTime<Utc>,
    ) -> Result<Command, ApiError> {
        let phone_index = vault.phone_index(tenant_id, &self.phone);
        let (data_key, wrapped) = vault
            .new_data_key(tenant_id, customer_id)
            .map_err(personal::vault_failed)?;
        let personal_data = PersonalData {
            phone: self.phone,
            name: self.name,
        };
        let sealed = vault
            .seal(&data_key, tenant_id, customer_id, &personal_data)
            .map_err(personal::vault_failed)?;
        Ok(Command::EnrolCustomer {
            customer_id,
            phone_index,
            personal_data: sealed,
            data_key: wrapped,
            birthday: self.birthday,
            referral_code: new_referral_code()?,
            referred_by,
            at,
        })
    }
}

/// A fresh referral code: 40 bits from the operating system's CSPRNG. A code the tenant
/// already has fails the enrolment's transaction (503, nothing written); a retry draws anew.
pub fn new_referral_code() -> Result<ReferralCode, ApiError> {
    let mut bytes = [0u8; CODE_RANDOM_BYTES];
    getrandom::fill(&mut bytes)
        .map_err(|e| ApiError::Internal(format!("no randomness for a referral code: {e}")))?;
    Ok(ReferralCode::from_random_bytes(bytes))
}

/// The customer of the caller's tenant whose referral code `code` is; an unknown code is
/// 422 naming `referral_code`.
pub async fn referrer(
    state: &ApiState,
    tenant_id: TenantId,
    code: &ReferralCode,
) -> Result<CustomerId, ApiError> {
    let mut client = state.client().await?;
    let transaction = scoped(&mut client, tenant_id).await?;
    schema::referrals::referrer_of(&*transaction, tenant_id, code)
        .await
        .map_err(|e| ApiError::Unavailable(format!("looking a referral code up: {e}")))?
        .ok_or_else(|| {
            ApiError::invalid_field(
                "referral_code",
                "referral_code is not the referral code of a customer of this vendor",
            )
        })
}

/// A birthday as `MM-DD` (month and day, no year).
fn parse_birthday(value: &serde_json::Value) -> Result<Birthday, String> {
    let raw = crate::accounts::string_field(value)?;
    Birthday::parse(raw).map_err(|e| format!("is invalid: {e}"))
}

/// A phone number from a body or a query. The error never echoes the number: phone numbers
/// stay out of logs and error bodies.
fn parse_phone(value: &serde_json::Value) -> Result<PhoneNumber, String> {
    match value {
        serde_json::Value::String(raw) => {
            PhoneNumber::parse(raw).map_err(|e| format!("is invalid: {e}"))
        }
        _ => Err("must be a string in E.164 form, e.g. +2348012345678".to_owned()),
    }
}

#[utoipa::path(
    post,
    path = "/v1/customers",
    tag = "customers",
    params(
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[\\x21-\\x7E]+$",
            description = "Optional. 1 to 255 visible ASCII characters, scoped to the tenant: a retry with the same key and the same request gets the first answer, byte for byte; the same key with another request is 422 `idempotency-key-reused`."),
    ),
    request_body(content = crate::openapi::EnrolmentRequestSchema, content_type = "application/json"),
    responses(
        (status = 201, description = "Enrolled. The phone number is not echoed: this body is stored under the idempotency key, and personal data is stored only encrypted.",
            body = crate::render::EnrolmentResponse, headers(("Idempotent-Replayed" = String, description = "`true` when this is the stored answer to an earlier request with the same `Idempotency-Key`."))),
        (status = 400, description = "`idempotency-key-invalid` (with `header`) or `malformed-json`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
        (status = 404, description = "`tenant-not-registered`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`phone-already-enrolled` (with `field` and the enrolled `customer_id`) or `customer-already-enrolled`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 422, description = "`invalid-field` (with `field`) or `idempotency-key-reused`.", body = crate::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ("user_token" = []))
)]
#[tracing::instrument(name = "enrol_customer", skip_all, fields(tenant_id = %caller.tenant_id))]
pub async fn enrol(
    caller: Caller,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    caller.authorize(Permission::EnrolCustomer)?;
    let key = IdempotencyKey::optional(&req)?;
    let body = body::read_json(&req, payload, state.body_bytes_max).await?;
    let request = EnrolmentRequest::parse(&body)?;
    let referred_by = match &request.referral_code {
        Some(code) => Some(referrer(&state, caller.tenant_id, code).await?),
        None => None,
    };
    let command = request.into_command(
        &state.vault,
        caller.tenant_id,
        CustomerId::from_uuid(Uuid::now_v7()),
        referred_by,
        commands::now(),
    )?;
    let claim = key.map(|key| key.claim(req.method().as_str(), req.path(), &body));
    let submission = caller.submission(command, claim, render::enrolment);
    commands::submit(&state, submission).await
}

/// `200` body of `GET /v1/customers/{id}`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CustomerView {
    #[schema(value_type = uuid::Uuid)]
    pub customer_id: CustomerId,
    /// `null` once the customer's personal data was erased.
    #[schema(required = true)]
    pub phone: Option<String>,
    #[schema(required = true)]
    pub name: Option<String>,
    #[schema(required = true)]
    pub erased_at: Option<DateTime<Utc>>,
    /// Posted points the customer owns (pending excluded, held included; negative only
    /// when a refund left a debt the tenant's policy allows).
    pub balance: i64,
    /// Points inside their return window: not spendable yet.
    pub pending: i64,
    /// Points reserved by open reward holds.
    pub held: i64,
    /// What the customer can spend: `balance − held`.
    pub available: i64,
    /// Points refunds took back beyond what the customer had; later points pay it first.
    pub debt: i64,
    pub earned: i64,
    pub redeemed: i64,
    pub expired: i64,
    /// Points taken back by refunds.
    pub reversed: i64,
    /// Net of manual adjustments (signed).
    pub adjusted: i64,
    pub purchases: i64,
    /// The tier reached (an id of the ladder, `GET /v1/tiers`); `null` = the ladder's base
    /// (or no ladder).
    #[schema(required = true)]
    pub tier: Option<String>,
    /// When the tier is next reviewed (downgraded if the window falls short).
    #[schema(required = true)]
    pub tier_review_at: Option<DateTime<Utc>>,
    /// `MM-DD`; `null` when not given, once erased, and for roles that do not see personal
    /// data.
    #[schema(required = true, example = "03-31")]
    pub birthday: Option<String>,
    /// The customer's own referral code, to share; `null` for customers enrolled before
    /// referral codes.
    #[schema(required = true, example = "04HMASW9")]
    pub referral_code: Option<String>,
    pub enrolled_at: DateTime<Utc>,
    /// Points of the open lots (pending and held included) and what they are worth at
    /// each lot's own point value: the customer's share of the tenant's liability.
    pub outstanding: crate::books::WorthView,
    /// Open lots (points remaining), soonest-expiring first.
    pub lots: Vec<LotView>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LotView {
    #[schema(value_type = uuid::Uuid)]
    pub lot_id: LotId,
    pub points: i64,
    pub remaining: i64,
    /// Of `remaining`, the points reserved by open holds.
    pub reserved: i64,
    /// Set while the lot is pending: when it becomes spendable.
    #[schema(required = true)]
    pub pending_until: Option<DateTime<Utc>>,
    pub earned_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// The tenant's point value when the lot opened (minor units per point); `null` when
    /// none was set then.
    #[schema(required = true)]
    pub point_value_minor: Option<i64>,
}

/// A customer id from the path. Not a UUID means no such customer: 404, like an unknown id.
pub fn customer_in_path(raw: &str) -> Result<CustomerId, ApiError> {
    CustomerId::parse(raw).map_err(|_| ApiError::CustomerNotFound)
}

#[utoipa::path(
    get,
    path = "/v1/customers/{customer_id}",
    tag = "customers",
    params(
        ("customer_id" = uuid::Uuid, Path, description = "The customer's id. An unknown id, another tenant's customer and a malformed id are all 404 `customer-not-found`."),
    ),
    responses(
        (status = 200, description = "The customer's balance and open lots from the balances read model (which may trail the ledger by milliseconds), and their personal data unless erased.",
            body = CustomerView),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
        (status = 404, description = "`customer-not-found`.", body = crate::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ("user_token" = []))
)]
#[tracing::instrument(name = "show_customer", skip_all, fields(tenant_id = %caller.tenant_id))]
pub async fn show(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    caller.authorize(Permission::ReadCustomer)?;
    let customer_id = customer_in_path(&path)?;
    let mut client = state.client().await?;
    let transaction = scoped(&mut client, caller.tenant_id).await?;
    let view = customer_view(
        &transaction,
        opener(&caller, &state),
        caller.tenant_id,
        customer_id,
    )
    .await?
    .ok_or(ApiError::CustomerNotFound)?;
    Ok(HttpResponse::Ok().json(view))
}

#[utoipa::path(
    put,
    path = "/v1/customers/{customer_id}/birthday",
    tag = "customers",
    params(
        ("customer_id" = uuid::Uuid, Path, description = "The customer."),
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[\\x21-\\x7E]+$",
            description = "Optional: a retry with the same key and body gets the first answer."),
    ),
    request_body(content = crate::openapi::BirthdayRequestSchema, content_type = "application/json"),
    responses(
        (status = 200, description = "Set (or cleared). The birthday bonus rule and the `birthday_month` broadcast segment use it from now on.", body = crate::render::BirthdayResponse,
            headers(("Idempotent-Replayed" = String, description = "`true` when this is the stored answer to an earlier request with the same `Idempotency-Key`."))),
        (status = 400, description = "`idempotency-key-invalid` or `malformed-json`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 403, description = "`forbidden`: owners and staff only.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "`customer-not-found`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 410, description = "`customer-erased`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 422, description = "`invalid-field` (with `field`) or `idempotency-key-reused`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
    ),
    security(("api_key" = []), ("user_token" = []))
)]
#[tracing::instrument(name = "set_birthday", skip_all, fields(tenant_id = %caller.tenant_id))]
pub async fn set_birthday(
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    // Whoever may enrol a customer (owners, staff) may record the birthday later.
    caller.authorize(Permission::EnrolCustomer)?;
    let customer_id = customer_in_path(&path)?;
    let key = IdempotencyKey::optional(&req)?;
    let body = body::read_json(&req, payload, state.body_bytes_max).await?;
    let birthday = parse_birthday_body(&body)?;
    let command = Command::SetBirthday {
        customer_id,
        birthday,
        at: commands::now(),
    };
    let claim = key.map(|key| key.claim(req.method().as_str(), req.path(), &body));
    let submission = caller.submission(command, claim, render::birthday);
    commands::submit(&state, submission).await
}

/// `{"birthday": "MM-DD"}` sets it, `{"birthday": null}` clears it; the field is required.
fn parse_birthday_body(body: &[u8]) -> Result<Option<Birthday>, ApiError> {
    let object = JsonObject::parse(body)?;
    object.deny_unknown(&BIRTHDAY_FIELDS)?;
    if !object.is_present("birthday") {
        return Err(ApiError::invalid_field(
            "birthday",
            "missing field `birthday` (MM-DD, or null to clear it)",
        ));
    }
    object.optional("birthday", parse_birthday)
}

/// The vault when the caller's role may see personal data in the clear (owner, staff);
/// auditors and analysts get the same views with `phone` and `name` left `null`.
fn opener<'a>(caller: &Caller, state: &'a ApiState) -> Option<&'a Vault> {
    caller
        .role
        .allows(Permission::ReadPersonalData)
        .then_some(&*state.vault)
}

/// The customer with balance, lots and (unless erased, or `vault` is `None`) personal data;
/// `None` when the tenant has no such customer.
async fn customer_view(
    transaction: &deadpool_postgres::Transaction<'_>,
    vault: Option<&Vault>,
    tenant_id: TenantId,
    customer_id: CustomerId,
) -> Result<Option<CustomerView>, ApiError> {
    let view = match projected(transaction, tenant_id, customer_id).await? {
        Some(view) => Some(view),
        None => folded_from_events(transaction, tenant_id, customer_id).await?,
    };
    let Some(mut view) = view else {
        return Ok(None);
    };
    view.referral_code = schema::referrals::code_of(&**transaction, tenant_id, customer_id)
        .await
        .map_err(|e| ApiError::Unavailable(format!("reading the referral code: {e}")))?;
    let Some(vault) = vault else {
        view.birthday = None;
        return Ok(Some(view));
    };
    let PersonalView { personal, .. } =
        personal::read(transaction, vault, tenant_id, customer_id).await?;
    if let Some(personal) = personal {
        view.phone = Some(personal.phone.as_str().to_owned());
        view.name = personal.name;
    }
    Ok(Some(view))
}

#[derive(Debug, Deserialize)]
pub struct CustomersQuery {
    /// Kept as text so a bad value gets our problem, naming the parameter.
    limit: Option<String>,
    after: Option<String>,
}

/// `200` body of `GET /v1/customers` and `POST /v1/customers/search`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CustomerList {
    pub customers: Vec<CustomerView>,
    /// Pass as `after` for the next page; `null` on the last page (and for a search).
    #[schema(value_type = Option<uuid::Uuid>, required = true)]
    pub next_after: Option<CustomerId>,
}

/// `GET /v1/customers?limit=&after=`: the tenant's customers by id, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/customers",
    tag = "customers",
    params(
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 200, description = "Customers per page: 1 to 200, default 50."),
        ("after" = Option<uuid::Uuid>, Query, description = "`next_after` of the previous page."),
    ),
    responses(
        (status = 200, description = "A page of the tenant's customers, ordered by id.", body = CustomerList),
        (status = 400, description = "`invalid-query` (with `parameter`).", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
    ),
    security(("api_key" = []), ("user_token" = []))
)]
#[tracing::instrument(name = "list_customers", skip_all, fields(tenant_id = %caller.tenant_id))]
pub async fn list(
    caller: Caller,
    query: web::Query<CustomersQuery>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    caller.authorize(Permission::ReadCustomer)?;
    let limit = crate::history::parse_limit_within(
        query.limit.as_deref(),
        LIST_LIMIT_DEFAULT,
        LIST_LIMIT_MAX,
    )?;
    let after = match query.after.as_deref() {
        None => Uuid::nil(),
        Some(raw) => Uuid::parse_str(raw).map_err(|_| ApiError::InvalidQuery {
            parameter: "after".into(),
            detail: "after must be a customer id from a previous page".into(),
        })?,
    };
    let mut client = state.client().await?;
    let transaction = scoped(&mut client, caller.tenant_id).await?;
    let rows = transaction
        .query(
            "SELECT customer_id FROM projection.customer_balances \
             WHERE tenant_id = $1 AND customer_id > $2 ORDER BY customer_id LIMIT $3",
            &[&caller.tenant_id.as_uuid(), &after, &(limit + 1)],
        )
        .await
        .map_err(read_failed)?;
    let mut ids: Vec<Uuid> = rows
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()
        .map_err(column_failed)?;
    let page_size = usize::try_from(limit).unwrap_or(usize::MAX);
    let next_after = (ids.len() > page_size)
        .then(|| ids.get(page_size - 1).copied().map(CustomerId::from_uuid))
        .flatten();
    ids.truncate(page_size);
    let customers = views(
        &transaction,
        opener(&caller, &state),
        caller.tenant_id,
        &ids,
    )
    .await?;
    Ok(HttpResponse::Ok().json(CustomerList {
        customers,
        next_after,
    }))
}

/// `POST /v1/customers/search` with `{"phone": "+234…"}`: the customer with this number, if
/// any, found through the blind index (the number itself is not stored). A POST body, not a
/// query string, because URLs end up in access logs, proxies and browser histories.
#[utoipa::path(
    post,
    path = "/v1/customers/search",
    tag = "customers",
    request_body(content = crate::openapi::CustomerSearchSchema, content_type = "application/json"),
    responses(
        (status = 200, description = "The customer with this phone number (none or one); `next_after` is `null`.", body = CustomerList),
        (status = 400, description = "`malformed-json`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 422, description = "`invalid-field` (with `field`).", body = crate::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ("user_token" = []))
)]
#[tracing::instrument(name = "search_customers", skip_all, fields(tenant_id = %caller.tenant_id))]
pub async fn search(
    caller: Caller,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    caller.authorize(Permission::ReadPersonalData)?;
    let body = body::read_json(&req, payload, state.body_bytes_max).await?;
    let object = JsonObject::parse(&body)?;
    object.deny_unknown(&SEARCH_FIELDS)?;
    let phone = object.required("phone", parse_phone)?;
    let index = state.vault.phone_index(caller.tenant_id, &phone);
    let mut client = state.client().await?;
    let transaction = scoped(&mut client, caller.tenant_id).await?;
    let row = transaction
        .query_opt(
            "SELECT customer_id FROM customer_phone_index WHERE tenant_id = $1 AND phone_index = $2",
            &[&caller.tenant_id.as_uuid(), &index.0.as_slice()],
        )
        .await
        .map_err(read_failed)?;
    let ids: Vec<Uuid> = row
        .map(|row| row.try_get(0))
        .transpose()
        .map_err(column_failed)?
        .into_iter()
        .collect();
    let customers = views(&transaction, Some(&state.vault), caller.tenant_id, &ids).await?;
    Ok(HttpResponse::Ok().json(CustomerList {
        customers,
        next_after: None,
    }))
}

async fn views(
    transaction: &deadpool_postgres::Transaction<'_>,
    vault: Option<&Vault>,
    tenant_id: TenantId,
    ids: &[Uuid],
) -> Result<Vec<CustomerView>, ApiError> {
    let mut customers = Vec::with_capacity(ids.len());
    for id in ids {
        let customer_id = CustomerId::from_uuid(*id);
        if let Some(view) = customer_view(transaction, vault, tenant_id, customer_id).await? {
            customers.push(view);
        }
    }
    Ok(customers)
}

/// The customer from the read model, always filtered by the caller's tenant: another
/// tenant's customer is not found.
async fn projected(
    client: &deadpool_postgres::Transaction<'_>,
    tenant_id: TenantId,
    customer_id: CustomerId,
) -> Result<Option<CustomerView>, ApiError> {
    let ids: [&(dyn tokio_postgres::types::ToSql + Sync); 2] =
        [&customer_id.as_uuid(), &tenant_id.as_uuid()];
    let row = client
        .query_opt(
            "SELECT customer_id, erased_at, balance, earned, redeemed, expired, purchases, \
                    enrolled_at, pending, held, debt, reversed, adjusted, tier, tier_review_at, \
                    birth_month, birth_day \
             FROM projection.customer_balances WHERE customer_id = $1 AND tenant_id = $2",
            &ids,
        )
        .await
        .map_err(read_failed)?;
    let Some(row) = row else {
        return Ok(None);
    };
    let lot_rows = client
        .query(
            "SELECT lot_id, points, remaining, earned_at, expires_at, reserved, pending_until, \
                    point_value_minor \
             FROM projection.point_lots \
             WHERE customer_id = $1 AND tenant_id = $2 AND remaining > 0 \
             ORDER BY expires_at, earned_at, lot_id LIMIT $3",
            &[ids[0], ids[1], &LOTS_LISTED_MAX],
        )
        .await
        .map_err(read_failed)?;
    let lots = lot_rows
        .iter()
        .map(lot_from_row)
        .collect::<Result<_, _>>()
        .map_err(column_failed)?;
    // Summed over every open lot, not only the ones listed.
    let worth = client
        .query_one(
            "SELECT coalesce(sum(remaining), 0)::bigint, \
                    coalesce(sum(remaining::numeric * point_value_minor), 0)::text, \
                    coalesce(sum(remaining) FILTER (WHERE point_value_minor IS NULL), 0)::bigint \
             FROM projection.point_lots \
             WHERE customer_id = $1 AND tenant_id = $2 AND remaining > 0",
            &ids,
        )
        .await
        .map_err(read_failed)?;
    let value_minor: String = worth.try_get(1).map_err(column_failed)?;
    let outstanding = crate::books::WorthView {
        points: worth.try_get(0).map_err(column_failed)?,
        value_minor: value_minor.parse().map_err(|e| {
            ApiError::Internal(format!(
                "the lots' value {value_minor:?} is not a whole number: {e}"
            ))
        })?,
        unvalued_points: worth.try_get(2).map_err(column_failed)?,
    };
    view_from_row(&row, lots, outstanding)
        .map(Some)
        .map_err(column_failed)
}

fn view_from_row(
    row: &Row,
    lots: Vec<LotView>,
    outstanding: crate::books::WorthView,
) -> Result<CustomerView, tokio_postgres::Error> {
    let balance: i64 = row.try_get(2)?;
    let held: i64 = row.try_get(9)?;
    Ok(CustomerView {
        customer_id: CustomerId::from_uuid(row.try_get(0)?),
        phone: None,
        name: None,
        erased_at: row.try_get(1)?,
        balance,
        pending: row.try_get(8)?,
        held,
        available: balance - held,
        debt: row.try_get(10)?,
        earned: row.try_get(3)?,
        redeemed: row.try_get(4)?,
        expired: row.try_get(5)?,
        reversed: row.try_get(11)?,
        adjusted: row.try_get(12)?,
        purchases: i64::from(row.try_get::<_, i32>(6)?),
        tier: row.try_get(13)?,
        tier_review_at: row.try_get(14)?,
        birthday: birthday_from_columns(row.try_get(15)?, row.try_get(16)?),
        referral_code: None,
        enrolled_at: row.try_get(7)?,
        outstanding,
        lots,
    })
}

/// `MM-DD` from the read model's month and day columns.
fn birthday_from_columns(month: Option<i16>, day: Option<i16>) -> Option<String> {
    let month = u8::try_from(month?).ok()?;
    let day = u8::try_from(day?).ok()?;
    Birthday::new(month, day).ok().map(|b| b.to_string())
}

fn lot_from_row(row: &Row) -> Result<LotView, tokio_postgres::Error> {
    Ok(LotView {
        lot_id: LotId::from_uuid(row.try_get(0)?),
        points: row.try_get(1)?,
        remaining: row.try_get(2)?,
        reserved: row.try_get(5)?,
        pending_until: row.try_get(6)?,
        earned_at: row.try_get(3)?,
        expires_at: row.try_get(4)?,
        point_value_minor: row.try_get(7)?,
    })
}

/// The customer folded from its own stream: the answer for a customer enrolled a moment
/// ago, before the projector has written its row. `None` when there is no such stream or it
/// belongs to another tenant.
pub(crate) async fn folded_from_events(
    client: &deadpool_postgres::Transaction<'_>,
    tenant_id: TenantId,
    customer_id: CustomerId,
) -> Result<Option<CustomerView>, ApiError> {
    use crate::books::{customer_as_of, AsOf};
    match customer_as_of(client, tenant_id, customer_id, AsOf::Now).await {
        Ok((state, _)) => Ok(view_from_state(&state)),
        Err(ApiError::CustomerNotFound) => Ok(None),
        Err(error) => Err(error),
    }
}

/// Every event of a customer's stream, oldest first, a page at a time.
pub async fn whole_stream(
    transaction: &deadpool_postgres::Transaction<'_>,
    customer_id: CustomerId,
) -> Result<Vec<schema::RecordedEvent>, ApiError> {
    let stream = StreamId::Customer(customer_id);
    let mut all: Vec<schema::RecordedEvent> = Vec::new();
    loop {
        let after = all.last().map_or(0, |e| e.version);
        let page = schema::store::read_stream(&**transaction, stream, after, STREAM_PAGE_EVENTS)
            .await
            .map_err(|e| ApiError::Unavailable(format!("reading {stream}: {e}")))?;
        let done = page.len() < usize::try_from(STREAM_PAGE_EVENTS).unwrap_or(usize::MAX);
        all.extend(page);
        if done {
            return Ok(all);
        }
    }
}

/// A stored event, decoded; one that does not decode is the server's fault, not the client's.
pub fn decoded(recorded: &schema::RecordedEvent) -> Result<ledger_core::Event, ApiError> {
    recorded.decode().map_err(|e| {
        ApiError::Internal(format!("event {} does not decode: {e}", recorded.event_id))
    })
}

/// The customer as `state` has them (no personal data: callers add it when allowed).
pub fn view_from_state(state: &CustomerState) -> Option<CustomerView> {
    let profile = state.profile.as_ref()?;
    let mut lots: Vec<LotView> = state
        .lots
        .iter()
        .filter(|lot| lot.remaining.is_positive())
        .map(|lot| LotView {
            lot_id: lot.lot_id,
            points: lot.points.value(),
            remaining: lot.remaining.value(),
            reserved: lot.reserved.value(),
            pending_until: lot.pending_until,
            earned_at: lot.earned_at,
            expires_at: lot.expires_at,
            point_value_minor: lot.point_value.map(|v| v.value()),
        })
        .collect();
    lots.sort_by_key(|lot| (lot.expires_at, lot.earned_at, lot.lot_id));
    lots.truncate(usize::try_from(LOTS_LISTED_MAX).unwrap_or(usize::MAX));
    Some(CustomerView {
        customer_id: profile.customer_id,
        phone: None,
        name: None,
        erased_at: profile.erased_at,
        balance: state.balance.value(),
        pending: state.pending.value(),
        held: state.held.value(),
        available: state.available().value(),
        debt: state.debt.value(),
        earned: state.earned.value(),
        redeemed: state.redeemed.value(),
        expired: state.expired.value(),
        reversed: state.reversed.value(),
        adjusted: state.adjusted.value(),
        purchases: i64::from(state.purchases),
        tier: state.tier.clone(),
        tier_review_at: state.tier_review_at,
        birthday: state.birthday.map(|b| b.to_string()),
        referral_code: None,
        enrolled_at: profile.enrolled_at,
        outstanding: ledger_core::books::outstanding(state).into(),
        lots,
    })
}

fn read_failed(error: tokio_postgres::Error) -> ApiError {
    ApiError::Unavailable(format!("reading the balances read model: {error}"))
}

fn column_failed(error: tokio_postgres::Error) -> ApiError {
    ApiError::Internal(format!(
        "unexpected column in the balances read model: {error}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn parse(body: &str) -> Result<EnrolmentRequest, (u16, String, String)> {
        EnrolmentRequest::parse(body.as_bytes()).map_err(|error| {
            let problem = error.problem();
            let field = problem
                .extensions
                .get("field")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            (problem.status, field, problem.detail)
        })
    }

    #[test]
    fn an_enrolment_needs_one_e164_phone() {
        let request = parse(r#"{"phone":"+234 801 234 5678"}"#).unwrap();
        assert_eq!(request.phone.as_str(), "+2348012345678");

        for body in [
            r#"{"phone":"08012345678"}"#,
            r#"{"phone":"+234"}"#,
            r#"{"phone":2348012345678}"#,
            r#"{"phone":""}"#,
            r#"{"phone":null}"#,
            r#"{}"#,
        ] {
            let (status, field, detail) = parse(body).unwrap_err();
            assert_eq!((status, field.as_str()), (422, "phone"), "{body}");
            assert!(
                !detail.contains("0801234"),
                "the number is not echoed: {detail}"
            );
        }
        assert_eq!(
            parse(r#"{"phone":"+2348012345678","nickname":"Ada"}"#)
                .unwrap_err()
                .1,
            "nickname"
        );
        assert_eq!(parse("phone=+2348012345678").unwrap_err().0, 400);
    }

    #[test]
    fn an_enrolment_may_carry_a_name_of_1_to_100_characters() {
        let request = parse(r#"{"phone":"+2348012345678","name":" Ada Obi "}"#).unwrap();
        assert_eq!(request.name.as_deref(), Some("Ada Obi"));
        assert_eq!(parse(r#"{"phone":"+2348012345678"}"#).unwrap().name, None);
        let long = "a".repeat(NAME_CHARS_MAX + 1);
        for body in [
            r#"{"phone":"+2348012345678","name":""}"#.to_owned(),
            r#"{"phone":"+2348012345678","name":42}"#.to_owned(),
            r#"{"phone":"+2348012345678","name":"tab\there"}"#.to_owned(),
            format!(r#"{{"phone":"+2348012345678","name":"{long}"}}"#),
        ] {
            let (status, field, _) = parse(&body).unwrap_err();
            assert_eq!((status, field.as_str()), (422, "name"), "{body}");
        }
    }

    #[test]
    fn path_ids_that_are_not_uuids_are_not_found() {
        assert!(customer_in_path("01900000-0000-7000-8000-000000000001").is_ok());
        for bad in [
            "",
            "42",
            "not-a-uuid",
            "01900000-0000-7000-8000-00000000000g",
        ] {
            assert!(
                matches!(customer_in_path(bad), Err(ApiError::CustomerNotFound)),
                "{bad}"
            );
        }
    }
}
