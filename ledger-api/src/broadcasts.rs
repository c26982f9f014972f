//! Broadcasts (owners and staff): `POST /v1/broadcasts` sends a template to a segment of the
//! tenant's customers, `GET /v1/broadcasts[/{id}]` shows them with their progress, and
//! `POST /v1/broadcasts/{id}/pause|resume|cancel` changes their state. docs/BROADCASTS.md
//! has the contract.
//!
//! Reading order: [`BroadcastRequest::parse`] (every rule a client's input must meet), then
//! the handlers. The SQL is `schema::broadcasts` (recipients resolved in the creating
//! transaction; the WhatsApp tables reached only through definer functions scoped to the
//! caller's tenant); sending is the feeder's and the notifier's.
//!
//! Idempotency: `Idempotency-Key` is required on create. It is stored on the broadcast with
//! the SHA-256 of method, path and body (`crate::idempotency::request_hash`): the same key
//! and body answer 201 with the first broadcast (as it is now) and `Idempotent-Replayed:
//! true`; the same key with another body is 422 `idempotency-key-reused`, nothing changed.
//! Pause, resume and cancel are idempotent by meaning (pausing a paused broadcast is a 200
//! that changes nothing) and take no key.

use crate::accounts::{database, json_response};
use crate::auth::Caller;
use crate::body::{self, JsonObject};
use crate::idempotency::{request_hash, IdempotencyKey};
use crate::problem::ApiError;
use crate::ApiState;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, NaiveDate, Utc};
use ledger_core::broadcast::{
    BroadcastTemplate, Segment, StateChange, TemplateLanguage, TemplateName, TemplateParameter,
    BROADCAST_NAME_CHARS_MAX, TEMPLATE_PARAMETERS_MAX,
};
use ledger_core::events::Actor;
use schema::accounts::Permission;
use schema::broadcasts::{self as store, BroadcastError, BroadcastView, Changed, Created};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

/// The fields of `POST /v1/broadcasts` (also the properties of its OpenAPI schema).
pub const BROADCAST_FIELDS: [&str; 3] = ["name", "segment", "template"];
/// The fields of `template`.
pub const TEMPLATE_FIELDS: [&str; 3] = ["name", "language", "parameters"];
/// Every field a segment may have; each kind accepts only its own.
pub const SEGMENT_FIELDS: [&str; 7] = ["kind", "days", "points", "from", "to", "tier", "month"];
/// The segment kinds accepted now.
pub const SEGMENT_KINDS: [&str; 6] = [
    "all_opted_in",
    "inactive_days",
    "balance_at_least",
    "joined_between",
    "tier",
    "birthday_month",
];
/// Recipients of one broadcast, at most: a larger segment is refused (split it).
pub const RECIPIENTS_MAX: i64 = 100_000;
/// The template language when the request names none.
pub const TEMPLATE_LANGUAGE_DEFAULT: &str = "en";
/// Broadcasts listed by `GET /v1/broadcasts`, newest first.
pub const BROADCASTS_LISTED_MAX: i64 = 100;

/// A valid `POST /v1/broadcasts` body. Built only by [`BroadcastRequest::parse`].
#[derive(Debug, Clone, PartialEq)]
pub struct BroadcastRequest {
    pub name: String,
    pub segment: Segment,
    pub template: BroadcastTemplate,
}

impl BroadcastRequest {
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let object = JsonObject::parse(body)?;
        object.deny_unknown(&BROADCAST_FIELDS)?;
        let name = object.required("name", |v| {
            let name = body::text(v, 1, BROADCAST_NAME_CHARS_MAX)?;
            if name.trim().is_empty() {
                return Err("must not be blank".to_owned());
            }
            Ok(name)
        })?;
        let segment = parse_segment(&object.required_object("segment")?)?;
        let template = parse_template(&object.required_object("template")?)?;
        Ok(BroadcastRequest {
            name,
            segment,
            template,
        })
    }
}

fn parse_segment(object: &JsonObject) -> Result<Segment, ApiError> {
    let kind = object.required("kind", |v| {
        let kind = crate::accounts::string_field(v)?;
        if !SEGMENT_KINDS.contains(&kind) {
            return Err(format!("must be one of: {}", SEGMENT_KINDS.join(", ")));
        }
        Ok(kind.to_owned())
    })?;
    let own_fields: &[&str] = match kind.as_str() {
        "inactive_days" => &["kind", "days"],
        "balance_at_least" => &["kind", "points"],
        "joined_between" => &["kind", "from", "to"],
        "tier" => &["kind", "tier"],
        "birthday_month" => &["kind", "month"],
        _ => &["kind"],
    };
    object.deny_unknown(own_fields)?;
    match kind.as_str() {
        "inactive_days" => {
            let days = object.required("days", |v| {
                let days = body::integer(v)?;
                let days = u32::try_from(days).map_err(|_| out_of_days())?;
                Segment::inactive_days(days).map_err(|_| out_of_days())
            })?;
            Ok(days)
        }
        "balance_at_least" => object.required("points", |v| {
            Segment::balance_at_least(body::integer(v)?).map_err(|e| e.to_string())
        }),
        "joined_between" => {
            let from = object.required("from", date)?;
            let to = object.required("to", date)?;
            Segment::joined_between(from, to)
                .map_err(|e| ApiError::invalid_field("segment.to", format!("segment.to: {e}")))
        }
        // Whether the tier exists (and is the base) is the ladder's to say: see `create`.
        "tier" => Ok(Segment::Tier {
            tier: object.required("tier", |v| body::text(v, 1, 30))?,
            includes_untiered: false,
        }),
        // Without a month: the current month in the tenant's time zone, filled in by
        // `resolve_birthday_segment` (month 0 stands for it until then).
        "birthday_month" => Ok(object
            .optional("month", |v| {
                let month = u8::try_from(body::integer(v)?).map_err(|_| out_of_months())?;
                Segment::birthday_month(month).map_err(|_| out_of_months())
            })?
            .unwrap_or(Segment::BirthdayMonth { month: 0 })),
        _ => Ok(Segment::AllOptedIn),
    }
}

fn out_of_months() -> String {
    "must be a month number from 1 to 12".to_owned()
}

/// A `birthday_month` segment without a month is for this month in the tenant's time zone
/// (`now` read there), resolved once, when the broadcast is created.
async fn resolve_birthday_segment(
    transaction: &deadpool_postgres::Transaction<'_>,
    tenant_id: ledger_core::TenantId,
    segment: Segment,
    now: chrono::DateTime<Utc>,
) -> Result<Segment, ApiError> {
    if segment != (Segment::BirthdayMonth { month: 0 }) {
        return Ok(segment);
    }
    let tenant = crate::read_tenant(transaction, tenant_id).await?;
    let time_zone = tenant
        .profile
        .map_or(ledger_core::rules::DEFAULT_TIME_ZONE, |p| p.time_zone());
    let month = chrono::Datelike::month(&ledger_core::rules::local_time(time_zone, now));
    Segment::birthday_month(u8::try_from(month).unwrap_or(1))
        .map_err(|e| ApiError::Internal(format!("the current month: {e}")))
}

/// A `tier` segment names a tier of the tenant's ladder; the ladder's base also holds the
/// customers who never moved from it.
async fn resolve_tier_segment(
    transaction: &deadpool_postgres::Transaction<'_>,
    tenant_id: ledger_core::TenantId,
    segment: Segment,
) -> Result<Segment, ApiError> {
    let Segment::Tier { tier, .. } = segment else {
        return Ok(segment);
    };
    let tenant = crate::read_tenant(transaction, tenant_id).await?;
    let scheme = tenant.profile.and_then(|p| p.tier_scheme).ok_or_else(|| {
        ApiError::invalid_field(
            "segment.tier",
            "segment.tier: the tenant has no tier ladder (PUT /v1/tiers)",
        )
    })?;
    if scheme.tier(&tier).is_none() {
        return Err(ApiError::invalid_field(
            "segment.tier",
            format!("segment.tier: `{tier}` is not a tier of the ladder"),
        ));
    }
    let includes_untiered = scheme.tiers[0].id == tier;
    Ok(Segment::Tier {
        tier,
        includes_untiered,
    })
}

fn out_of_days() -> String {
    format!(
        "must be a whole number of days from 1 to {}",
        ledger_core::broadcast::INACTIVE_DAYS_MAX
    )
}

/// A calendar date, `YYYY-MM-DD`.
fn date(value: &Value) -> Result<NaiveDate, String> {
    let text = crate::accounts::string_field(value)?;
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| "must be a date such as 2026-01-31".to_owned())
}

fn parse_template(object: &JsonObject) -> Result<BroadcastTemplate, ApiError> {
    object.deny_unknown(&TEMPLATE_FIELDS)?;
    let name = object.required("name", |v| {
        TemplateName::parse(crate::accounts::string_field(v)?).map_err(|e| e.to_string())
    })?;
    let language = match object.optional("language", |v| {
        TemplateLanguage::parse(crate::accounts::string_field(v)?).map_err(|e| e.to_string())
    })? {
        Some(language) => language,
        None => TemplateLanguage::parse(TEMPLATE_LANGUAGE_DEFAULT)
            .map_err(|e| ApiError::Internal(format!("the default language: {e}")))?,
    };
    let parameters = object
        .optional("parameters", |v| {
            let Value::Array(items) = v else {
                return Err("must be an array of strings".to_owned());
            };
            if items.len() > TEMPLATE_PARAMETERS_MAX {
                return Err(format!("must have at most {TEMPLATE_PARAMETERS_MAX} items"));
            }
            items
                .iter()
                .enumerate()
                .map(|(index, item)| {
                    let text = item
                        .as_str()
                        .ok_or_else(|| format!("[{index}] must be a string"))?;
                    TemplateParameter::parse(text).map_err(|e| format!("[{index}] {e}"))
                })
                .collect()
        })?
        .unwrap_or_default();
    Ok(BroadcastTemplate {
        name,
        language,
        parameters,
    })
}

/// How far a broadcast has come (all counts of recipients or of their messages).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProgressView {
    /// Customers of the segment when the broadcast was created: the fixed denominator.
    pub recipients: i64,
    /// Not sent because the customer opted out of broadcasts (STOP), at creation or since.
    pub skipped_opted_out: i64,
    /// Not sent because the customer has no WhatsApp conversation with the tenant.
    pub skipped_no_whatsapp: i64,
    /// Not yet handed to the notifier (the feeder tops the outbox up in bounded chunks).
    pub waiting: i64,
    /// Handed to the notifier (every message below).
    pub enqueued: i64,
    /// Handed over, not yet accepted by WhatsApp.
    pub sending: i64,
    /// Accepted by WhatsApp (cumulative: includes delivered and read).
    pub sent: i64,
    /// Delivered to the phone (cumulative: includes read).
    pub delivered: i64,
    pub read: i64,
    /// Refused by WhatsApp, or undeliverable.
    pub failed: i64,
    /// Taken back by a pause (sent after a resume) or a cancel (never sent).
    pub withdrawn: i64,
}

/// A broadcast: `201` of create, `200` of show, pause, resume and cancel.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BroadcastResponse {
    pub broadcast_id: Uuid,
    pub name: String,
    /// `running`, `paused`, `completed` or `cancelled`.
    #[schema(example = "running")]
    pub state: String,
    /// The segment as requested, e.g. `{"kind": "inactive_days", "days": 30}`.
    #[schema(value_type = Object)]
    pub segment: Value,
    /// The template as requested: `{"name", "language", "parameters"}`.
    #[schema(value_type = Object)]
    pub template: Value,
    #[schema(value_type = crate::openapi::Actor)]
    pub created_by: Actor,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When the last message was handed over and settled; `null` until then.
    #[schema(required = true)]
    pub completed_at: Option<DateTime<Utc>>,
    pub progress: ProgressView,
}

impl From<BroadcastView> for BroadcastResponse {
    fn from(view: BroadcastView) -> Self {
        let p = view.progress;
        BroadcastResponse {
            broadcast_id: view.broadcast_id,
            name: view.name,
            state: view.state.as_str().to_owned(),
            segment: serde_json::to_value(&view.segment).unwrap_or(Value::Null),
            template: serde_json::to_value(&view.template).unwrap_or(Value::Null),
            created_by: view.created_by,
            created_at: view.created_at,
            updated_at: view.updated_at,
            completed_at: view.completed_at,
            progress: ProgressView {
                recipients: p.recipients,
                skipped_opted_out: p.skipped_opted_out,
                skipped_no_whatsapp: p.skipped_no_whatsapp,
                waiting: p.waiting,
                enqueued: p.enqueued,
                sending: p.sending,
                sent: p.sent,
                delivered: p.delivered,
                read: p.read,
                failed: p.failed,
                withdrawn: p.withdrawn,
            },
        }
    }
}

/// `200` body of `GET /v1/broadcasts`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BroadcastList {
    /// Newest first, at most 100.
    pub broadcasts: Vec<BroadcastResponse>,
}

fn store_error(error: BroadcastError) -> ApiError {
    match error {
        BroadcastError::Database(e) => database(e),
        other => ApiError::Internal(other.to_string()),
    }
}

#[utoipa::path(
    post,
    path = "/v1/broadcasts",
    tag = "broadcasts",
    params(
        ("Idempotency-Key" = String, Header, min_length = 1, max_length = 255, pattern = "^[\\x21-\\x7E]+$",
            description = "Required. 1 to 255 visible ASCII characters, scoped to the tenant: the same key with the same body returns the first broadcast (and sends nothing again); the same key with another body is 422 `idempotency-key-reused`."),
    ),
    request_body(content = crate::openapi::BroadcastRequestSchema, content_type = "application/json"),
    responses(
        (status = 201, description = "Created and running: the segment's customers were resolved now (the recipients), and the feeder hands them to the notifier in bounded chunks, each as the template. Also the answer to a retry with the same key and body.", body = BroadcastResponse,
            headers(("Idempotent-Replayed" = String, description = "`true` when this is the broadcast of an earlier request with the same `Idempotency-Key`."))),
        (status = 400, description = "`idempotency-key-missing`, `idempotency-key-invalid` (with `header`) or `malformed-json`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 403, description = "`forbidden`: owners and staff send broadcasts.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 422, description = "`invalid-field` (with `field`): a missing or unknown field, an unknown segment kind, a `birthday_month` month outside 1–12, a negative or out-of-range number, a `from` after `to`, a template name, language or parameter Meta would refuse; `broadcast-too-large` (more than 100,000 recipients); `idempotency-key-reused`. Nothing changed.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
    ),
    security(("api_key" = []), ("user_token" = []))
)]
#[tracing::instrument(name = "create_broadcast", skip_all, fields(tenant_id = %caller.tenant_id))]
pub async fn create(
    caller: Caller,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    caller.authorize(Permission::SendBroadcasts)?;
    let key = IdempotencyKey::required(&req)?;
    let body = body::read_json(&req, payload, state.body_bytes_max).await?;
    let request = BroadcastRequest::parse(&body)?;
    let mut client = state.client().await?;
    let transaction = crate::scoped(&mut client, caller.tenant_id).await?;
    let now = Utc::now();
    let segment = resolve_tier_segment(&transaction, caller.tenant_id, request.segment).await?;
    let segment = resolve_birthday_segment(&transaction, caller.tenant_id, segment, now).await?;
    let new = store::NewBroadcast {
        broadcast_id: Uuid::now_v7(),
        tenant_id: caller.tenant_id,
        idempotency_key: key.as_str(),
        request_hash: request_hash("POST", req.path(), &body),
        name: &request.name,
        segment: &segment,
        template: &request.template,
        actor: &caller.actor(),
        correlation_id: caller.correlation_id,
    };
    let created = store::create(&*transaction, &new, now, RECIPIENTS_MAX)
        .await
        .map_err(store_error)?;
    let (view, replayed) = match created {
        Created::New(view) => (view, false),
        Created::Existing(view) => (view, true),
        Created::KeyReused => return Err(ApiError::IdempotencyKeyReused),
        Created::TooManyRecipients { limit } => return Err(ApiError::BroadcastTooLarge { limit }),
    };
    transaction.commit().await.map_err(database)?;
    if !replayed {
        tracing::info!(
            broadcast_id = %view.broadcast_id,
            segment = view.segment.kind(),
            recipients = view.progress.recipients,
            "broadcast created"
        );
    }
    let mut response = json_response(StatusCode::CREATED, &BroadcastResponse::from(view));
    if replayed {
        response.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static("idempotent-replayed"),
            actix_web::http::header::HeaderValue::from_static("true"),
        );
    }
    Ok(response)
}

#[utoipa::path(
    get,
    path = "/v1/broadcasts",
    tag = "broadcasts",
    responses(
        (status = 200, description = "The tenant's broadcasts, newest first (at most 100), each with its progress.", body = BroadcastList),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 403, description = "`forbidden`: owners and staff read broadcasts.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
    ),
    security(("api_key" = []), ("user_token" = []))
)]
#[tracing::instrument(name = "list_broadcasts", skip_all, fields(tenant_id = %caller.tenant_id))]
pub async fn list(caller: Caller, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    caller.authorize(Permission::ReadBroadcasts)?;
    let mut client = state.client().await?;
    let transaction = crate::scoped(&mut client, caller.tenant_id).await?;
    let views = store::list(&*transaction, BROADCASTS_LISTED_MAX)
        .await
        .map_err(store_error)?;
    transaction.commit().await.map_err(database)?;
    let broadcasts = views.into_iter().map(BroadcastResponse::from).collect();
    Ok(json_response(StatusCode::OK, &BroadcastList { broadcasts }))
}

#[utoipa::path(
    get,
    path = "/v1/broadcasts/{broadcast_id}",
    tag = "broadcasts",
    params(
        ("broadcast_id" = uuid::Uuid, Path, description = "The broadcast's id. An unknown id, another tenant's broadcast and a malformed id are all 404 `broadcast-not-found`."),
    ),
    responses(
        (status = 200, description = "The broadcast and its progress.", body = BroadcastResponse),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 403, description = "`forbidden`: owners and staff read broadcasts.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "`broadcast-not-found`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
    ),
    security(("api_key" = []), ("user_token" = []))
)]
#[tracing::instrument(name = "show_broadcast", skip_all, fields(tenant_id = %caller.tenant_id))]
pub async fn show(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    caller.authorize(Permission::ReadBroadcasts)?;
    let broadcast_id = broadcast_id(path)?;
    let mut client = state.client().await?;
    let transaction = crate::scoped(&mut client, caller.tenant_id).await?;
    let view = store::get(&*transaction, broadcast_id)
        .await
        .map_err(store_error)?
        .ok_or(ApiError::BroadcastNotFound)?;
    transaction.commit().await.map_err(database)?;
    Ok(json_response(
        StatusCode::OK,
        &BroadcastResponse::from(view),
    ))
}

/// Recipients per page of `GET /v1/broadcasts/{id}/recipients`: default and most.
pub const RECIPIENTS_PAGE_DEFAULT: i64 = 100;
pub const RECIPIENTS_PAGE_MAX: i64 = 500;

/// The query of `GET /v1/broadcasts/{id}/recipients`.
#[derive(Debug, serde::Deserialize)]
pub struct RecipientsQuery {
    limit: Option<String>,
    after: Option<String>,
}

/// One recipient and where its message is.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RecipientResponse {
    pub customer_id: Uuid,
    /// `waiting`, `enqueued`, `skipped_opted_out` or `skipped_no_whatsapp`.
    #[schema(example = "enqueued")]
    pub state: String,
    /// Once enqueued: `queued`, `sending`, `sent`, `delivered`, `read`, `failed` or
    /// `withdrawn`; `null` before (or when skipped).
    #[schema(required = true, example = "delivered")]
    pub message_state: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// `200` body of `GET /v1/broadcasts/{id}/recipients`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RecipientList {
    pub recipients: Vec<RecipientResponse>,
    /// Pass as `after` for the next page; `null` on the last page.
    #[schema(required = true)]
    pub next_after: Option<Uuid>,
}

#[utoipa::path(
    get,
    path = "/v1/broadcasts/{broadcast_id}/recipients",
    tag = "broadcasts",
    params(
        ("broadcast_id" = uuid::Uuid, Path, description = "The broadcast's id. An unknown id, another tenant's broadcast and a malformed id are all 404 `broadcast-not-found`."),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 500, description = "Recipients per page: 1 to 500, default 100."),
        ("after" = Option<uuid::Uuid>, Query, description = "`next_after` of the previous page."),
    ),
    responses(
        (status = 200, description = "The broadcast's recipients by customer id, a page at a time, each with its state and its message's (no personal data: ids and states).", body = RecipientList),
        (status = 400, description = "`invalid-query` (with `parameter`): a `limit` outside 1 to 500 or an `after` that is not a customer id.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 403, description = "`forbidden`: owners and staff read broadcasts.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "`broadcast-not-found`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
    ),
    security(("api_key" = []), ("user_token" = []))
)]
#[tracing::instrument(name = "list_broadcast_recipients", skip_all, fields(tenant_id = %caller.tenant_id))]
pub async fn recipients(
    caller: Caller,
    path: web::Path<String>,
    query: web::Query<RecipientsQuery>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    caller.authorize(Permission::ReadBroadcasts)?;
    let broadcast_id = broadcast_id(path)?;
    let limit = crate::history::parse_limit_within(
        query.limit.as_deref(),
        RECIPIENTS_PAGE_DEFAULT,
        RECIPIENTS_PAGE_MAX,
    )?;
    let after = match query.after.as_deref() {
        None => Uuid::nil(),
        Some(raw) => Uuid::parse_str(raw).map_err(|_| ApiError::InvalidQuery {
            parameter: "after".into(),
            detail: "after must be a customer id from a previous page".into(),
        })?,
    };
    let mut client = state.client().await?;
    let transaction = crate::scoped(&mut client, caller.tenant_id).await?;
    let mut page = store::recipients(&*transaction, broadcast_id, after, limit + 1)
        .await
        .map_err(store_error)?
        .ok_or(ApiError::BroadcastNotFound)?;
    transaction.commit().await.map_err(database)?;
    let page_size = usize::try_from(limit).unwrap_or(usize::MAX);
    let next_after = (page.len() > page_size)
        .then(|| page.get(page_size - 1).map(|r| r.customer_id))
        .flatten();
    page.truncate(page_size);
    let recipients = page
        .into_iter()
        .map(|r| RecipientResponse {
            customer_id: r.customer_id,
            state: r.state.to_owned(),
            message_state: r.message_state,
            updated_at: r.updated_at,
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &RecipientList {
            recipients,
            next_after,
        },
    ))
}

fn broadcast_id(path: web::Path<String>) -> Result<Uuid, ApiError> {
    Uuid::parse_str(&path.into_inner()).map_err(|_| ApiError::BroadcastNotFound)
}

/// Pause, resume and cancel: one state change in one scoped transaction.
async fn change(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<ApiState>,
    change: StateChange,
) -> Result<HttpResponse, ApiError> {
    caller.authorize(Permission::SendBroadcasts)?;
    let broadcast_id = broadcast_id(path)?;
    let mut client = state.client().await?;
    let transaction = crate::scoped(&mut client, caller.tenant_id).await?;
    let view = match store::change_state(&*transaction, broadcast_id, change)
        .await
        .map_err(store_error)?
    {
        Changed::Done(view) => *view,
        Changed::NotFound => return Err(ApiError::BroadcastNotFound),
        Changed::Refused(refused) => {
            return Err(ApiError::BroadcastStateConflict(refused.to_string()))
        }
    };
    transaction.commit().await.map_err(database)?;
    tracing::info!(%broadcast_id, ?change, state = view.state.as_str(), "broadcast state changed");
    Ok(json_response(
        StatusCode::OK,
        &BroadcastResponse::from(view),
    ))
}

#[utoipa::path(
    post,
    path = "/v1/broadcasts/{broadcast_id}/pause",
    tag = "broadcasts",
    params(("broadcast_id" = uuid::Uuid, Path, description = "The broadcast's id.")),
    responses(
        (status = 200, description = "Paused (or already paused): nothing more is handed to the notifier, and messages not yet taken by it are withdrawn (a message being sent at that moment still goes).", body = BroadcastResponse),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 403, description = "`forbidden`: owners and staff manage broadcasts.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "`broadcast-not-found`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`broadcast-state-conflict`: a completed or cancelled broadcast cannot be paused. Nothing changed.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
    ),
    security(("api_key" = []), ("user_token" = []))
)]
pub async fn pause(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    change(caller, path, state, StateChange::Pause).await
}

#[utoipa::path(
    post,
    path = "/v1/broadcasts/{broadcast_id}/resume",
    tag = "broadcasts",
    params(("broadcast_id" = uuid::Uuid, Path, description = "The broadcast's id.")),
    responses(
        (status = 200, description = "Running (or already running): withdrawn messages are queued again and the feeder goes on.", body = BroadcastResponse),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 403, description = "`forbidden`: owners and staff manage broadcasts.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "`broadcast-not-found`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`broadcast-state-conflict`: a completed or cancelled broadcast cannot be resumed. Nothing changed.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
    ),
    security(("api_key" = []), ("user_token" = []))
)]
pub async fn resume(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    change(caller, path, state, StateChange::Resume).await
}

#[utoipa::path(
    post,
    path = "/v1/broadcasts/{broadcast_id}/cancel",
    tag = "broadcasts",
    params(("broadcast_id" = uuid::Uuid, Path, description = "The broadcast's id.")),
    responses(
        (status = 200, description = "Cancelled (or already cancelled), for good: messages not yet taken by the notifier are withdrawn and never sent.", body = BroadcastResponse),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 403, description = "`forbidden`: owners and staff manage broadcasts.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "`broadcast-not-found`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`broadcast-state-conflict`: a completed broadcast cannot be cancelled. Nothing changed.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
    ),
    security(("api_key" = []), ("user_token" = []))
)]
pub async fn cancel(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    change(caller, path, state, StateChange::Cancel).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(overrides: Value) -> Vec<u8> {
        let mut value = json!({
            "name": "Spring offer",
            "segment": {"kind": "balance_at_least", "points": 100},
            "template": {"name": "spring_offer", "language": "en_US", "parameters": ["20%"]},
        });
        for (k, v) in overrides.as_object().unwrap() {
            if v.is_null() {
                value.as_object_mut().unwrap().remove(k);
            } else {
                value[k] = v.clone();
            }
        }
        serde_json::to_vec(&value).unwrap()
    }

    #[test]
    fn valid_bodies_parse_into_segments_and_templates() {
        let request = BroadcastRequest::parse(&body(json!({}))).unwrap();
        assert_eq!(request.segment, Segment::BalanceAtLeast { points: 100 });
        assert_eq!(request.template.name.as_str(), "spring_offer");
        assert_eq!(request.template.parameters.len(), 1);
        let cases = [
            (json!({"kind": "all_opted_in"}), Segment::AllOptedIn),
            (
                json!({"kind": "inactive_days", "days": 30}),
                Segment::InactiveDays { days: 30 },
            ),
            (
                json!({"kind": "joined_between", "from": "2026-01-01", "to": "2026-01-31"}),
                Segment::JoinedBetween {
                    from: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
                    to: NaiveDate::from_ymd_opt(2026, 1, 31).unwrap(),
                },
            ),
            (
                json!({"kind": "birthday_month", "month": 2}),
                Segment::BirthdayMonth { month: 2 },
            ),
            // This month, resolved against the tenant's time zone when created.
            (
                json!({"kind": "birthday_month"}),
                Segment::BirthdayMonth { month: 0 },
            ),
        ];
        for (segment, expected) in cases {
            let request = BroadcastRequest::parse(&body(json!({ "segment": segment }))).unwrap();
            assert_eq!(request.segment, expected);
        }
        let request =
            BroadcastRequest::parse(&body(json!({"template": {"name": "hello"}}))).unwrap();
        assert_eq!(request.template.language.as_str(), "en");
        assert!(request.template.parameters.is_empty());
    }

    #[test]
    fn bad_bodies_name_their_field() {
        let cases = [
            (json!({"name": null}), "name"),
            (json!({"name": "   "}), "name"),
            (json!({"extra": 1}), "extra"),
            (json!({"segment": null}), "segment"),
            (json!({"segment": "all"}), "segment"),
            (json!({"segment": {"kind": "everyone"}}), "segment.kind"),
            (json!({"segment": {"kind": "tier"}}), "segment.tier"),
            (
                json!({"segment": {"kind": "tier", "tier": ""}}),
                "segment.tier",
            ),
            (
                json!({"segment": {"kind": "tier", "tier": "gold", "days": 3}}),
                "segment.days",
            ),
            (
                json!({"segment": {"kind": "birthday_month", "month": 13}}),
                "segment.month",
            ),
            (
                json!({"segment": {"kind": "birthday_month", "month": 0}}),
                "segment.month",
            ),
            (
                json!({"segment": {"kind": "birthday_month", "days": 3}}),
                "segment.days",
            ),
            (
                json!({"segment": {"kind": "inactive_days"}}),
                "segment.days",
            ),
            (
                json!({"segment": {"kind": "inactive_days", "days": -1}}),
                "segment.days",
            ),
            (
                json!({"segment": {"kind": "inactive_days", "days": 0}}),
                "segment.days",
            ),
            (
                json!({"segment": {"kind": "inactive_days", "days": 1.5}}),
                "segment.days",
            ),
            (
                json!({"segment": {"kind": "balance_at_least", "points": -5}}),
                "segment.points",
            ),
            (
                json!({"segment": {"kind": "balance_at_least", "days": 5}}),
                "segment.days",
            ),
            (
                json!({"segment": {"kind": "all_opted_in", "points": 5}}),
                "segment.points",
            ),
            (
                json!({"segment": {"kind": "joined_between", "from": "2026-02-01", "to": "2026-01-01"}}),
                "segment.to",
            ),
            (
                json!({"segment": {"kind": "joined_between", "from": "yesterday", "to": "2026-01-01"}}),
                "segment.from",
            ),
            (
                json!({"template": {"name": "Spring Offer"}}),
                "template.name",
            ),
            (json!({"template": {"language": "en"}}), "template.name"),
            (
                json!({"template": {"name": "x", "language": "english"}}),
                "template.language",
            ),
            (
                json!({"template": {"name": "x", "parameters": "a"}}),
                "template.parameters",
            ),
            (
                json!({"template": {"name": "x", "parameters": [""]}}),
                "template.parameters",
            ),
            (
                json!({"template": {"name": "x", "parameters": [1]}}),
                "template.parameters",
            ),
            (
                json!({"template": {"name": "x", "parameters": vec!["a"; TEMPLATE_PARAMETERS_MAX + 1]}}),
                "template.parameters",
            ),
            (
                json!({"template": {"name": "x", "body": "hi"}}),
                "template.body",
            ),
        ];
        for (overrides, field) in cases {
            match BroadcastRequest::parse(&body(overrides.clone())) {
                Err(ApiError::InvalidField { field: f, .. }) => assert_eq!(f, field, "{overrides}"),
                other => panic!("{overrides}: {other:?}"),
            }
        }
        assert!(matches!(
            BroadcastRequest::parse(b"[1]"),
            Err(ApiError::MalformedJson(_))
        ));
    }
}
