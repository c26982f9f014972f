//! The OpenAPI 3.1 description of the API, generated from the code and served at
//! `GET /openapi.json`.
//!
//! Reading order: [`ApiDoc`] (the document: which operations, the reusable responses, the
//! security schemes), then the handlers' `#[utoipa::path(...)]` annotations (one per
//! operation, beside the handler), then the schema-only request bodies below.
//!
//! Where each part comes from:
//! - **operations**: each handler's `#[utoipa::path(...)]`; the tests check that the
//!   documented (method, path) pairs are exactly those of [`crate::route_table`], from which
//!   the server registers its routes, so the document cannot miss a route or describe one
//!   the server lacks;
//! - **response bodies**: `#[derive(ToSchema)]` on the types the handlers serialise
//!   ([`crate::render`], [`crate::customers`], [`crate::history`], [`crate::personal`],
//!   [`crate::accounts`], [`crate::users`], [`crate::api_keys`]);
//! - **request bodies**: the handlers read their bodies field by field from raw bytes (the
//!   idempotency fingerprint is over those bytes; see `body`), so there is no request type to
//!   derive from. The schema-only structs here mirror what the parsers accept; the tests
//!   check their property sets against the parsers' own field lists
//!   (e.g. [`crate::purchases::PURCHASE_FIELDS`]) and their limits against the parsers'
//!   constants;
//! - **errors**: one [`Problem`] schema (RFC 9457, `application/problem+json`), referenced by
//!   every error response.

use crate::problem::{Problem, JSON_CONTENT_TYPE, PROBLEM_TYPE_BASE};
use actix_web::HttpResponse;
use chrono::{DateTime, Utc};
use std::borrow::Cow;
use std::sync::LazyLock;
use utoipa::openapi::schema::{
    AdditionalProperties, KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::RefOr;
use utoipa::{Modify, OpenApi, ToResponse, ToSchema};
use uuid::Uuid;

/// The security scheme of vendor systems: `Authorization: Bearer ll_<64 hex>`.
pub const API_KEY_SCHEME: &str = "api_key";
/// The security scheme of signed-in users: `Authorization: Bearer <JWT access token>`.
pub const USER_TOKEN_SCHEME: &str = "user_token";

/// The document. `paths(...)` lists every documented handler; the route tests fail when it
/// and [`crate::route_table`] disagree.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "loyalty-ledger vendor API",
        description = "Event-sourced loyalty points for vendors. Amounts are integers in minor \
            units, points are integers. Every error is an RFC 9457 problem \
            (`application/problem+json`, schema `Problem`)."
    ),
    paths(
        crate::ops::health,
        crate::ops::ready,
        crate::ops::metrics,
        crate::ops::audit_keys,
        openapi_json,
        crate::customers::enrol,
        crate::customers::list,
        crate::customers::search,
        crate::purchases::log_purchase,
        crate::customers::show,
        crate::history::history,
        crate::redemptions::redeem,
        crate::rewards::create,
        crate::rewards::list,
        crate::rewards::update,
        crate::rewards::retire,
        crate::redemptions::fulfil,
        crate::programme::cancel_hold,
        crate::programme::refund,
        crate::programme::adjust,
        crate::customers::set_birthday,
        crate::programme::get_settings,
        crate::programme::put_settings,
        crate::programme::get_tiers,
        crate::programme::put_tiers,
        crate::books::position,
        crate::books::customer_position,
        crate::books::statements,
        crate::rules::show,
        crate::rules::publish,
        crate::dry_run::dry_run,
        crate::analytics::daily,
        crate::analytics::active_customers,
        crate::analytics::rewards,
        crate::analytics::cohorts,
        crate::analytics::tiers,
        crate::analytics::redemption_rate,
        crate::analytics::whatsapp,
        crate::audit::export,
        crate::personal::export,
        crate::personal::erase,
        crate::accounts::signup,
        crate::accounts::login,
        crate::accounts::refresh,
        crate::accounts::logout,
        crate::accounts::me,
        crate::accounts::accept_invitation,
        crate::users::create,
        crate::users::list,
        crate::users::disable,
        crate::api_keys::create,
        crate::api_keys::list,
        crate::api_keys::revoke,
        crate::whatsapp::put,
        crate::whatsapp::get,
        crate::whatsapp::detach,
        crate::broadcasts::create,
        crate::broadcasts::list,
        crate::broadcasts::show,
        crate::broadcasts::recipients,
        crate::broadcasts::pause,
        crate::broadcasts::resume,
        crate::broadcasts::cancel,
    ),
    components(
        schemas(Problem),
        responses(
            Unauthenticated,
            RateLimited,
            Unavailable,
            InternalError,
            UnsupportedMediaType,
            PayloadTooLarge
        )
    ),
    modifiers(&SecuritySchemes),
    tags(
        (name = "customers", description = "Enrol, find and show customers"),
        (name = "purchases", description = "Log purchases and earn points"),
        (name = "redemptions", description = "Spend points or redeem a reward; fulfil a redemption by its code"),
        (name = "rewards", description = "The reward catalogue: create, list (with the stock left), update, retire (owners manage it)"),
        (name = "rules", description = "The points rules: the set in force and its versions; publish a new set (owners only); dry-run a proposed set over past purchases (owners and analysts)"),
        (name = "books", description = "What the tenant owed, in points and money, as of any time or sequence, and monthly liability statements (owners, auditors, analysts; a customer's position: owners, staff, auditors). Folded from the events."),
        (name = "personal data", description = "Export and erasure of a customer's personal data"),
        (name = "accounts", description = "Sign up, log in, refresh and log out, accept an invitation, and who is calling"),
        (name = "users", description = "The tenant's users (owners only): invite, list, disable"),
        (name = "api keys", description = "The tenant's API keys (owners only): create, list, revoke"),
        (name = "programme", description = "The programme's settings: time zone, return window, refund policy, hold window, point value"),
        (name = "whatsapp", description = "The tenant's own WhatsApp number and its access token (owners only): register or update, show, detach"),
        (name = "broadcasts", description = "A template message to a segment of the tenant's customers (owners and staff): create, list, show with progress, list recipients, pause, resume, cancel"),
        (name = "analytics", description = "The tenant's aggregate figures (owners and analysts), as JSON or CSV: daily ledger activity, active customers, reward popularity, cohort retention, tiers, redemption rate, WhatsApp traffic (docs/ANALYTICS.md)"),
        (name = "audit", description = "The tenant's whole ledger with its signed chain head, for an offline audit (auditors and owners)"),
        (name = "operations", description = "Probes, metrics and this document; no authentication"),
    )
)]
pub struct ApiDoc;

/// The document as JSON, generated once per process.
static DOCUMENT: LazyLock<Result<String, String>> =
    LazyLock::new(|| ApiDoc::openapi().to_json().map_err(|e| e.to_string()));

/// `GET /openapi.json`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses(
        (status = 200, description = "This OpenAPI 3.1 document.", content_type = "application/json", body = Object),
        (status = 429, response = RateLimited),
        (status = 500, response = InternalError),
    )
)]
pub async fn openapi_json() -> Result<HttpResponse, crate::problem::ApiError> {
    match &*DOCUMENT {
        Ok(json) => Ok(HttpResponse::Ok()
            .content_type(JSON_CONTENT_TYPE)
            .body(json.as_str())),
        Err(error) => Err(crate::problem::ApiError::Internal(format!(
            "the OpenAPI document did not serialise: {error}"
        ))),
    }
}

/// Declares the two bearer schemes that vendor endpoints accept.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            API_KEY_SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("ll_<64 hex>")
                    .description(Some(
                        "An API key of a vendor system: `Authorization: Bearer ll_` followed by \
                         64 lower-case hex digits, created by `loyalty tenant create`. Stored \
                         as a SHA-256; a revoked key may keep working for up to 60 seconds.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            USER_TOKEN_SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A signed-in user's JWT access token (user login). Accepted on the same \
                         endpoints as an API key, scoped to the user's tenant.",
                    ))
                    .build(),
            ),
        );
    }
}

// The problem schema, written by hand: `Problem` carries its extension members in a
// flattened map, and the schema should name the ones the API uses.

impl utoipa::PartialSchema for Problem {
    fn schema() -> RefOr<Schema> {
        let string = |description: &str| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some(description))
        };
        let integer = |description: &str| {
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                .description(Some(description))
        };
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "An RFC 9457 problem details object, sent as `application/problem+json`. \
                 `type` identifies the problem; extension members sit beside the standard ones.",
            ))
            .property(
                "type",
                string(&format!(
                    "`{PROBLEM_TYPE_BASE}<slug>`, e.g. `{PROBLEM_TYPE_BASE}insufficient-points`"
                ))
                .format(Some(SchemaFormat::Custom("uri".into()))),
            )
            .property("title", string("A short summary of the problem type."))
            .property(
                "status",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int32)))
                    .minimum(Some(400))
                    .maximum(Some(599))
                    .description(Some("The HTTP status code.")),
            )
            .property("detail", string("What went wrong, for a person to read."))
            .property(
                "field",
                string(
                    "The request field at fault, e.g. `amount_minor` or `line_items[2].quantity`.",
                ),
            )
            .property(
                "header",
                string("The request header at fault, e.g. `Idempotency-Key`."),
            )
            .property(
                "parameter",
                string("The query parameter at fault, e.g. `limit`."),
            )
            .property(
                "limit_bytes",
                integer("The largest request body accepted (413)."),
            )
            .property(
                "retry_after_seconds",
                integer("Seconds to wait before retrying; also in `Retry-After` (429)."),
            )
            .property(
                "customer_id",
                string("The customer already enrolled with this phone number (409).")
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid))),
            )
            .property(
                "available",
                integer("Points available (409 `insufficient-points`)."),
            )
            .property(
                "requested",
                integer("Points requested (409 `insufficient-points`)."),
            )
            .property(
                "line_items_total_minor",
                integer("The sum of the line items (422 `line-items-do-not-add-up`)."),
            )
            .property(
                "amount_minor",
                integer("The purchase amount (422 `line-items-do-not-add-up`)."),
            )
            .property(
                "checks",
                ObjectBuilder::new()
                    .schema_type(Type::Object)
                    .additional_properties(Some(AdditionalProperties::RefOr(RefOr::T(
                        Schema::Object(string("`ok` or `failed`").build()),
                    ))))
                    .description(Some(
                        "Each dependency and whether it answered (503 `not-ready`).",
                    )),
            )
            .required("type")
            .required("title")
            .required("status")
            .required("detail")
            .additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(true)))
            .into()
    }
}

impl ToSchema for Problem {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Problem")
    }
}

// Reusable responses: the problems every authenticated operation (or every rate-limited one)
// can answer with, described once.

/// 401 `unauthenticated`: the API key is missing, malformed, unknown or revoked.
#[derive(ToResponse)]
#[response(
    description = "`unauthenticated`: the credentials are missing, malformed, unknown or revoked.",
    content_type = "application/problem+json",
    headers(("WWW-Authenticate" = String, description = "`Bearer`"))
)]
pub struct Unauthenticated(pub Problem);

/// 429 `rate-limited`: over the limit of the client address or of the API key.
#[derive(ToResponse)]
#[response(
    description = "`rate-limited`: over the rate limit of the client address or of the \
        credentials. Nothing was executed: retry after `Retry-After` seconds with the same \
        `Idempotency-Key`.",
    content_type = "application/problem+json",
    headers(("Retry-After" = u32, description = "Whole seconds to wait (at least 1)."))
)]
pub struct RateLimited(pub Problem);

/// 503 `unavailable`: the database or the writer could not be reached.
#[derive(ToResponse)]
#[response(
    description = "`unavailable`: the ledger is temporarily unavailable. Nothing was stored: \
        retry with the same `Idempotency-Key`.",
    content_type = "application/problem+json",
    headers(("Retry-After" = u32, description = "Seconds to wait: `1`."))
)]
pub struct Unavailable(pub Problem);

/// 500 `internal`: a bug or corrupt data, logged; never caused by client input.
#[derive(ToResponse)]
#[response(
    description = "`internal`: an unexpected error, logged on the server. No client input \
        produces it.",
    content_type = "application/problem+json"
)]
pub struct InternalError(pub Problem);

/// 415 `unsupported-media-type`.
#[derive(ToResponse)]
#[response(
    description = "`unsupported-media-type`: the body must be sent with \
        `Content-Type: application/json` (optionally `; charset=utf-8`).",
    content_type = "application/problem+json"
)]
pub struct UnsupportedMediaType(pub Problem);

/// 413 `payload-too-large`.
#[derive(ToResponse)]
#[response(
    description = "`payload-too-large`: the body is larger than the server's limit \
        (`limit_bytes`).",
    content_type = "application/problem+json"
)]
pub struct PayloadTooLarge(pub Problem);

// Request bodies, schema only. Each mirrors one parser: the same fields (the tests compare
// them with the parser's field list), the same types and limits. `deny_unknown_fields`
// renders as `additionalProperties: false`, as the parsers refuse unknown fields (422).

/// `POST /v1/purchases`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct PurchaseRequestSchema {
    /// The customer who bought.
    customer_id: Uuid,
    /// The amount paid, in minor units (kobo for NGN).
    #[schema(minimum = 1, maximum = 1000000000000000_i64)]
    amount_minor: i64,
    /// What was bought; when present, quantity × unit price must add up to `amount_minor`.
    #[schema(max_items = 100)]
    line_items: Option<Vec<LineItemSchema>>,
    /// When the purchase happened (RFC 3339 with an offset); not more than 5 minutes ahead.
    occurred_at: Option<DateTime<Utc>>,
    /// The vendor's own reference, e.g. a till receipt number.
    #[schema(max_length = 128)]
    reference: Option<String>,
}

/// `POST /v1/customers/{customer_id}/refunds`: a full or partial refund of one purchase.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct RefundRequestSchema {
    /// The purchase refunded (from the purchase's answer).
    purchase_id: Uuid,
    /// How much is refunded, in minor units: at most what of the purchase is not refunded yet.
    #[schema(minimum = 1, maximum = 1000000000000000_i64)]
    amount_minor: i64,
    /// The vendor's own reference, e.g. a return slip number.
    #[schema(max_length = 128)]
    reference: Option<String>,
}

/// `POST /v1/customers/{customer_id}/adjustments`: points added or taken by hand.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct AdjustmentRequestSchema {
    /// Signed, not 0: positive adds a lot of points (expiring like a purchase's), negative
    /// takes from what is available.
    #[schema(minimum = -1000000000000_i64, maximum = 1000000000000_i64)]
    points: i64,
    /// Why: shown in the customer's history, with who made the adjustment.
    #[schema(min_length = 1, max_length = 200)]
    reason: String,
}

/// One line of a purchase.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct LineItemSchema {
    #[schema(min_length = 1, max_length = 64)]
    sku: String,
    /// The product's category, which the points rules' item multipliers can match.
    #[schema(min_length = 1, max_length = 64)]
    category: Option<String>,
    #[schema(minimum = 1, maximum = 4294967295_i64)]
    quantity: u32,
    /// In minor units.
    #[schema(minimum = 0, maximum = 1000000000000000_i64)]
    unit_price_minor: i64,
}

/// `POST /v1/customers/{customer_id}/redemptions`: exactly one of the two forms.
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum RedemptionRequestSchema {
    Points(PointsRedemptionSchema),
    Reward(RewardRedemptionSchema),
}

/// A redemption of a number of points.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct PointsRedemptionSchema {
    /// Points to spend.
    #[schema(minimum = 1, maximum = 1000000000000_i64)]
    points: i64,
    /// What the customer gets for them, shown on receipts and in the history; not only blanks.
    #[schema(min_length = 1, max_length = 200)]
    description: String,
}

/// A redemption of a catalogue reward, for its cost; the answer carries the code.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct RewardRedemptionSchema {
    /// An active reward of the tenant's catalogue.
    reward_id: Uuid,
}

/// `POST /v1/rewards` and `PUT /v1/rewards/{reward_id}` (which replaces every field: an
/// optional field left out is cleared).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct RewardRequestSchema {
    /// Shown to customers; trimmed, 1 to 60 characters, not only blanks.
    #[schema(min_length = 1, max_length = 60, example = "Jollof rice")]
    name: String,
    /// What the reward costs, in points.
    #[schema(minimum = 1, maximum = 1000000000000_i64)]
    points_cost: i64,
    /// One line for customers, shown as the reward's row description in the WhatsApp list
    /// (whose limit is 72 characters); trimmed, not only blanks, no control characters.
    #[schema(
        min_length = 1,
        max_length = 72,
        example = "Party jollof with chicken and plantain"
    )]
    description: Option<String>,
    /// A picture of the reward: an `https://` URL with a host, visible ASCII only.
    #[schema(
        max_length = 2048,
        pattern = "^https://[\x21-\x7E]+$",
        example = "https://cdn.example.com/jollof.jpg"
    )]
    image_url: Option<String>,
    /// Redeemable from this instant on (RFC 3339). A redemption before it is 409
    /// `reward-not-yet-valid`.
    valid_from: Option<chrono::DateTime<chrono::Utc>>,
    /// Redeemable until this instant, exclusive (RFC 3339; later than `valid_from`). A
    /// redemption from then on is 409 `reward-no-longer-valid`.
    valid_until: Option<chrono::DateTime<chrono::Utc>>,
    /// Total units: every open or fulfilled hold of the reward uses one, a released hold
    /// gives it back. Absent: unlimited. A redemption with none left is 409 `out-of-stock`.
    #[schema(minimum = 0, maximum = 1000000000)]
    stock: Option<u32>,
    /// Most units one customer may have (open and fulfilled holds). Absent: no limit. A
    /// redemption beyond it is 409 `per-customer-limit-reached`.
    #[schema(minimum = 1, maximum = 1000)]
    per_customer_limit: Option<u32>,
}

/// `PUT /v1/rules`: the whole new rule set, without a version (the ledger gives it).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct RuleSetRequestSchema {
    /// At most 32 rules, each `{"id", "priority"?, "stacking"?, "when"?, "kind"}`: `id` 1 to
    /// 40 characters of a-z, 0-9, `_`, `-`, unique; `priority` 0 to 65535, lower first
    /// (default 0); `stacking` `"stack"` (default) or `{"exclusive": {"group": "..."}}`;
    /// `when` `{"from"?: date, "to"?: date, "weekdays"?: ["Sat", ...], "hours"?: {"start",
    /// "end"}}` in the tenant's local time (Africa/Lagos); `kind` one of
    /// `{"per_amount_spent": {"amount_step", "points_per_step", "minimum_purchase"}}`,
    /// `{"per_purchase": {"points"}}`, `{"milestone": {"every_nth_purchase", "bonus"}}`,
    /// `{"first_purchase": {"bonus"}}`, `{"birthday": {"bonus"}}`, `{"referral":
    /// {"referee_bonus", "referrer_bonus"}}`, `{"item_multiplier": {"match": {"skus"?,
    /// "categories"?}, "percent"}}`, `{"promotion": {"percent", "applies_to":
    /// "all_base_rules" | {"rules": [ids]}}}`, `{"tier_multiplier": {"tier", "percent"}}`,
    /// `{"purchase_cap": {"max"}}`, `{"daily_cap": {"max"}}`. Percent is at most 1000 (200 =
    /// x2, 0 = exclusion); points at most 1000000000000.
    #[schema(value_type = Vec<Object>, max_items = 32)]
    rules: Vec<serde_json::Value>,
}

/// `POST /v1/rules/dry-run`: a proposed rule set and the range of past purchases to run it
/// over. Nothing is published or written.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct DryRunRequestSchema {
    /// The proposed rules, in the shape `PUT /v1/rules` takes (see `RuleSetRequestSchema`),
    /// checked exactly as a publication would be.
    #[schema(value_type = Vec<Object>, max_items = 32)]
    rules: Vec<serde_json::Value>,
    /// First instant of the range (inclusive): purchases whose `occurred_at` is at or after it.
    #[schema(example = "2026-07-01T00:00:00+01:00")]
    from: chrono::DateTime<chrono::Utc>,
    /// End of the range (exclusive), after `from` and at most 400 days later.
    #[schema(example = "2026-10-01T00:00:00+01:00")]
    to: chrono::DateTime<chrono::Utc>,
}

/// `PUT /v1/whatsapp/number`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct WhatsAppNumberRequestSchema {
    /// The number's id in the Cloud API (WhatsApp Manager → phone numbers): webhooks carry
    /// it as `metadata.phone_number_id` and sends go to `/{version}/{phone_number_id}/messages`.
    #[schema(
        min_length = 5,
        max_length = 32,
        pattern = "^[0-9]{5,32}$",
        example = "106540352242922"
    )]
    phone_number_id: String,
    /// The number customers write to: an optional `+`, 7 to 15 digits, spaces or hyphens
    /// between them; stored as digits.
    #[schema(max_length = 40, example = "+2348012345678")]
    display_phone_number: String,
    /// A system user's Cloud API access token with access to this number's WhatsApp
    /// Business Account. Stored sealed (AES-256-GCM under the vault's master key), used only
    /// in the `Authorization` header of this number's sends, never shown again. A PUT with a
    /// new token rotates it; the notifier uses it from its next send.
    #[schema(min_length = 1, max_length = 2048, format = Password)]
    access_token: String,
    /// The approved template sent outside the 24-hour window; default `loyalty_update`.
    #[schema(min_length = 1, max_length = 512, pattern = "^[a-z0-9_]+$")]
    fallback_template: Option<String>,
    /// The template's language code; default `en`.
    #[schema(min_length = 2, max_length = 8, example = "en_US")]
    template_language: Option<String>,
}

/// `POST /v1/broadcasts`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct BroadcastRequestSchema {
    /// The vendor's label for the broadcast (never sent to customers).
    #[schema(min_length = 1, max_length = 120, example = "Spring offer")]
    name: String,
    segment: BroadcastSegmentSchema,
    template: BroadcastTemplateSchema,
}

/// Who receives the broadcast, resolved once when it is created. `kind` is one of
/// `all_opted_in` (every WhatsApp member; the opted-out are counted as skipped),
/// `inactive_days` (with `days`, 1 to 3650: enrolled at least that long ago and no purchase
/// since), `balance_at_least` (with `points`, 0 or more: the balances read model),
/// `joined_between` (with `from` and `to`, dates included, UTC). Each kind takes only its
/// own fields. `tier` (with `tier`, an id of the ladder) and `birthday_month` (with an
/// optional `month`, 1–12; without it, the current month in the tenant's time zone when
/// the broadcast is created; 29 February birthdays are in February).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct BroadcastSegmentSchema {
    #[schema(example = "inactive_days")]
    kind: String,
    #[schema(minimum = 1, maximum = 3650)]
    days: Option<u32>,
    #[schema(minimum = 0)]
    points: Option<i64>,
    #[schema(format = Date, example = "2026-01-01")]
    from: Option<String>,
    #[schema(format = Date, example = "2026-01-31")]
    to: Option<String>,
    #[schema(min_length = 1, max_length = 30, example = "gold")]
    tier: Option<String>,
    #[schema(minimum = 1, maximum = 12, example = 3)]
    month: Option<u8>,
}

/// An approved WhatsApp message template. Broadcasts are marketing, so they are always sent
/// as this template, inside the 24-hour window or not.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct BroadcastTemplateSchema {
    #[schema(
        min_length = 1,
        max_length = 512,
        pattern = "^[a-z0-9_]+$",
        example = "spring_offer"
    )]
    name: String,
    /// Default `en`.
    #[schema(min_length = 2, max_length = 8, example = "en_US")]
    language: Option<String>,
    /// The body's text parameters in order (`{{1}}`, `{{2}}`, …), at most 10, each 1 to
    /// 1024 characters without newlines, tabs or more than four spaces in a row.
    #[schema(max_items = 10)]
    parameters: Option<Vec<String>>,
}

/// `POST /v1/customers`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct EnrolmentRequestSchema {
    /// E.164, e.g. `+2348012345678` (spaces, dashes, dots and brackets are ignored).
    #[schema(max_length = 32, example = "+2348012345678")]
    phone: String,
    /// The customer's name, trimmed.
    #[schema(min_length = 1, max_length = 100)]
    name: Option<String>,
    /// Month and day of the customer's birthday, `MM-DD` (no year). 29 February counts on 28
    /// February in other years.
    #[schema(pattern = "^[0-9]{2}-[0-9]{2}$", example = "03-31")]
    birthday: Option<String>,
    /// The referral code of the customer who referred this one (8 characters of Crockford
    /// base32; case, spaces and hyphens ignored). Unknown codes are 422.
    #[schema(max_length = 32, example = "04HMASW9")]
    referral_code: Option<String>,
}

/// `PUT /v1/customers/{customer_id}/birthday`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct BirthdayRequestSchema {
    /// `MM-DD`, or `null` to clear it. Required.
    #[schema(pattern = "^[0-9]{2}-[0-9]{2}$", example = "03-31", required = true)]
    birthday: Option<String>,
}

/// `POST /v1/customers/search`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct CustomerSearchSchema {
    /// E.164, e.g. `+2348012345678`. In the body, not the URL, so it stays out of access logs.
    #[schema(max_length = 32, example = "+2348012345678")]
    phone: String,
}

/// `POST /v1/signup`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct SignupRequestSchema {
    /// The vendor's public code: 3 to 20 letters A–Z or digits 0–9, any case (stored
    /// upper-case, so unique whatever the case).
    #[schema(
        min_length = 3,
        max_length = 20,
        pattern = "^[A-Za-z0-9]{3,20}$",
        example = "shop1"
    )]
    vendor_code: String,
    /// The business's name, trimmed; not only blanks.
    #[schema(min_length = 1, max_length = 120)]
    business_name: String,
    /// The owner's login, trimmed and lower-cased; 409 `email-taken` when already registered.
    #[schema(format = Email, min_length = 3, max_length = 254)]
    owner_email: String,
    /// 12 to 256 characters, any but control characters; no composition rules.
    #[schema(format = Password, min_length = 12, max_length = 256)]
    owner_password: String,
    /// The tenant's currency, ISO 4217 in upper case. Default `NGN`.
    #[schema(pattern = "^[A-Z]{3}$", example = "NGN")]
    currency: Option<String>,
    /// How many days earned points remain spendable. Default 180.
    #[schema(minimum = 1, maximum = 3650, example = 180)]
    expiry_days: Option<u32>,
}

/// `POST /v1/auth/login`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct LoginRequestSchema {
    /// Compared after trimming and lower-casing.
    #[schema(format = Email, min_length = 3, max_length = 254)]
    email: String,
    /// As chosen (only its length is bounded here: the policy applies when a password is
    /// chosen, not when one is presented).
    #[schema(format = Password, min_length = 1, max_length = 256)]
    password: String,
}

/// `POST /v1/auth/refresh` and `POST /v1/auth/logout`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct RefreshTokenRequestSchema {
    /// The `refresh_token` of the session. A token of another shape is 401
    /// `invalid-refresh-token`, like an unknown one.
    #[schema(format = Password, pattern = "^lr_[0-9a-f]{64}$")]
    refresh_token: String,
}

/// `POST /v1/invitations/accept`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct InvitationAcceptanceSchema {
    /// The invitation's `token` (from `POST /v1/users`). A token of another shape is 404
    /// `invitation-not-found`, like an unknown one.
    #[schema(format = Password, pattern = "^li_[0-9a-f]{64}$")]
    token: String,
    /// The password the invited user chooses: 12 to 256 characters, any but control
    /// characters.
    #[schema(format = Password, min_length = 12, max_length = 256)]
    password: String,
}

/// `POST /v1/users`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct NewUserRequestSchema {
    /// The invited user's login, trimmed and lower-cased; 409 `email-taken` when already
    /// registered.
    #[schema(format = Email, min_length = 3, max_length = 254)]
    email: String,
    role: UserRole,
    /// Default: empty.
    #[schema(max_length = 120)]
    display_name: Option<String>,
}

/// `POST /v1/api-keys`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct NewApiKeyRequestSchema {
    /// What the key is for, e.g. `till 1`.
    #[schema(min_length = 1, max_length = 100)]
    label: String,
    role: ApiKeyRole,
}

/// A user's role: `owner` may do everything; `staff` enrols customers, logs purchases,
/// redeems and reads customers (with their personal data) and history; `auditor` reads
/// customers and history; `analyst` reads customers.
#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum UserRole {
    Owner,
    Staff,
    Auditor,
    Analyst,
}

/// An API key's role: any role but `owner` (keys belong to systems).
#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum ApiKeyRole {
    Staff,
    Auditor,
    Analyst,
}

// Bodies of the operator endpoints, which build their JSON inline.

/// `200` body of `GET /health`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct HealthBody {
    /// Always `ok`.
    #[schema(example = "ok")]
    status: String,
}

/// `200` body of `GET /ready`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ReadyBody {
    /// Always `ready`.
    #[schema(example = "ready")]
    status: String,
    checks: ReadyChecks,
}

/// Each dependency and whether it answered.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ReadyChecks {
    /// `ok` or `failed`.
    postgres: String,
    /// `ok` or `failed`.
    nats: String,
}

/// Who caused an event, as exported: exactly one member.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum Actor {
    ApiKey(Uuid),
    User(Uuid),
    Customer(Uuid),
    /// A component of the platform, by name (e.g. `expiry`, `cli`).
    System(String),
}

#[cfg(test)]
mod tests;
