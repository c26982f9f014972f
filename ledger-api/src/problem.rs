//! Every error of the HTTP surface, rendered as an RFC 9457 problem (`application/problem+json`).
//!
//! [`ApiError`] is the one error type handlers return; [`refusal`] renders the ledger's own
//! refusals (which the writer stores under the idempotency key, so they are bytes, not an
//! `ApiError`). Both end in a [`Problem`], so a client sees one shape whatever went wrong.
//!
//! Unexpected failures (database down, a stored event that does not decode) are logged
//! here with their cause and shown to the client only as a fixed sentence.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use ledger_core::{Points, Rejection};
use schema::Refusal;
use serde::Serialize;
use serde_json::{Map, Value};

/// Problem `type` URIs are this prefix and a slug, e.g. `…/problems/insufficient-points`.
pub const PROBLEM_TYPE_BASE: &str = "https://loyalty-ledger.dev/problems/";
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";
pub const JSON_CONTENT_TYPE: &str = "application/json";

/// An RFC 9457 problem details object. Extension members (e.g. `field`, `customer_id`) sit
/// beside the standard ones.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    #[serde(flatten)]
    pub extensions: Map<String, Value>,
}

impl Problem {
    pub fn new(
        status: StatusCode,
        slug: &str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Problem {
            type_uri: format!("{PROBLEM_TYPE_BASE}{slug}"),
            title,
            status: status.as_u16(),
            detail: detail.into(),
            extensions: Map::new(),
        }
    }

    /// Adds an extension member.
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.extensions.insert(name.to_owned(), value.into());
        self
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        crate::render::json_bytes(self)
    }
}

/// The one error type of the HTTP surface. Each variant maps to one status and one problem
/// `type`; see [`ApiError::problem`].
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("a valid API key or access token is required: send `Authorization: Bearer <API key or access token>`")]
    Unauthenticated,
    /// Authenticated, but the caller's role does not allow this.
    #[error("your role ({role}) is not allowed to {action}")]
    Forbidden {
        role: &'static str,
        action: &'static str,
    },
    /// Login refused. One message for unknown email, wrong password, disabled user and
    /// invitation not accepted, so the answer does not tell which accounts exist.
    #[error("the email or password is incorrect")]
    InvalidCredentials,
    #[error("the refresh token is invalid, expired or revoked; log in again")]
    InvalidRefreshToken,
    #[error("the invitation is unknown, expired or already accepted")]
    InvitationNotFound,
    #[error("too many failed attempts; retry in {retry_after_seconds} seconds")]
    TooManyAttempts { retry_after_seconds: u64 },
    #[error("this vendor code is already taken")]
    VendorCodeTaken,
    #[error("this email address is already registered")]
    EmailTaken { field: &'static str },
    #[error("there is no user with this id")]
    UserNotFound,
    #[error("there is no API key with this id")]
    ApiKeyNotFound,
    /// The shared number, another tenant's, or one with another tenant's customers: which of
    /// them is not said, so the answer tells nothing about other tenants.
    #[error("this WhatsApp phone number id is not available: it is the platform's shared number or in use by another business")]
    WhatsAppNumberTaken,
    #[error("this tenant has no WhatsApp number of its own; its customers use the shared number")]
    WhatsAppNumberNotFound,
    #[error("you cannot disable your own account")]
    CannotDisableSelf,
    #[error("the tenant would be left without an active owner")]
    LastActiveOwner,
    #[error("the Idempotency-Key header is required for this request")]
    IdempotencyKeyMissing,
    #[error("the Idempotency-Key header must be 1 to 255 visible ASCII characters (0x21 to 0x7E)")]
    IdempotencyKeyInvalid,
    #[error("this Idempotency-Key was already used with a different request; use a new key for a new request")]
    IdempotencyKeyReused,
    #[error("the request body must be JSON, sent with `Content-Type: application/json`")]
    UnsupportedMediaType,
    #[error("the request body is larger than {limit_bytes} bytes")]
    PayloadTooLarge { limit_bytes: usize },
    #[error("the request body is not valid JSON: {0}")]
    MalformedJson(String),
    /// A field is missing, of the wrong type, out of range, or not known.
    #[error("{detail}")]
    InvalidField { field: String, detail: String },
    #[error("{detail}")]
    InvalidQuery { parameter: String, detail: String },
    /// A rule set that parses but is not a valid set: the same problem `PUT /v1/rules`
    /// answers (`invalid-rule-set`, naming the rule and the field).
    #[error("{0}")]
    InvalidRuleSet(ledger_core::rules::InvalidRuleSet),
    /// Unknown, or belonging to another tenant: the two are indistinguishable on purpose.
    #[error("there is no customer with this id")]
    CustomerNotFound,
    /// Unknown, malformed, or another tenant's: indistinguishable on purpose.
    #[error("there is no reward with this id")]
    RewardNotFound,
    /// Unknown, malformed, or another tenant's code: indistinguishable on purpose.
    #[error("there is no redemption with this code")]
    RedemptionNotFound,
    #[error("the tenant has not published a tier ladder (PUT /v1/tiers)")]
    NoTierScheme,
    /// Unknown, malformed, or another tenant's: indistinguishable on purpose.
    #[error("there is no broadcast with this id")]
    BroadcastNotFound,
    /// A completed or cancelled broadcast asked to change (the string says how).
    #[error("{0}")]
    BroadcastStateConflict(String),
    #[error("the segment has more than {limit} recipients; narrow it or split the broadcast")]
    BroadcastTooLarge { limit: i64 },
    #[error("there is no resource at this path")]
    RouteNotFound,
    #[error("this method is not allowed on this resource")]
    MethodNotAllowed,
    /// Over a rate limit (of the client address or of the API key); see `rate_limit`.
    #[error("too many requests; retry after {} s", crate::rate_limit::whole_seconds_rounded_up(*retry_after))]
    RateLimited { retry_after: std::time::Duration },
    /// A CORS preflight from an origin, or for a method or header, that is not allowed.
    #[error("{0}")]
    CorsPreflightRefused(String),
    /// The database or the writer could not be reached. The string is for the log only.
    #[error("the ledger is temporarily unavailable: {0}")]
    Unavailable(String),
    /// A bug or corrupt data. The string is for the log only.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn invalid_field(field: impl Into<String>, detail: impl Into<String>) -> Self {
        ApiError::InvalidField {
            field: field.into(),
            detail: detail.into(),
        }
    }

    pub fn problem(&self) -> Problem {
        use ApiError as E;
        let detail = self.to_string();
        match self {
            E::Unauthenticated => Problem::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "Unauthenticated",
                detail,
            ),
            E::Forbidden { .. } => {
                Problem::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail)
            }
            E::InvalidCredentials => Problem::new(
                StatusCode::UNAUTHORIZED,
                "invalid-credentials",
                "Invalid credentials",
                detail,
            ),
            E::InvalidRefreshToken => Problem::new(
                StatusCode::UNAUTHORIZED,
                "invalid-refresh-token",
                "Invalid refresh token",
                detail,
            )
            .with("field", "refresh_token"),
            E::InvitationNotFound => Problem::new(
                StatusCode::NOT_FOUND,
                "invitation-not-found",
                "Invitation not found",
                detail,
            )
            .with("field", "token"),
            E::TooManyAttempts { .. } => Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-attempts",
                "Too many attempts",
                detail,
            ),
            E::VendorCodeTaken => Problem::new(
                StatusCode::CONFLICT,
                "vendor-code-taken",
                "Vendor code taken",
                detail,
            )
            .with("field", "vendor_code"),
            E::EmailTaken { field } => {
                Problem::new(StatusCode::CONFLICT, "email-taken", "Email taken", detail)
                    .with("field", *field)
            }
            E::UserNotFound => Problem::new(
                StatusCode::NOT_FOUND,
                "user-not-found",
                "User not found",
                detail,
            ),
            E::ApiKeyNotFound => Problem::new(
                StatusCode::NOT_FOUND,
                "api-key-not-found",
                "API key not found",
                detail,
            ),
            E::WhatsAppNumberTaken => Problem::new(
                StatusCode::CONFLICT,
                "whatsapp-number-taken",
                "WhatsApp number not available",
                detail,
            )
            .with("field", "phone_number_id"),
            E::WhatsAppNumberNotFound => Problem::new(
                StatusCode::NOT_FOUND,
                "whatsapp-number-not-found",
                "No WhatsApp number",
                detail,
            ),
            E::CannotDisableSelf => Problem::new(
                StatusCode::CONFLICT,
                "cannot-disable-self",
                "Cannot disable yourself",
                detail,
            ),
            E::LastActiveOwner => Problem::new(
                StatusCode::CONFLICT,
                "last-active-owner",
                "Last active owner",
                detail,
            ),
            E::IdempotencyKeyMissing => Problem::new(
                StatusCode::BAD_REQUEST,
                "idempotency-key-missing",
                "Idempotency-Key required",
                detail,
            )
            .with("header", "Idempotency-Key"),
            E::IdempotencyKeyInvalid => Problem::new(
                StatusCode::BAD_REQUEST,
                "idempotency-key-invalid",
                "Invalid Idempotency-Key",
                detail,
            )
            .with("header", "Idempotency-Key"),
            E::IdempotencyKeyReused => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency-Key reused",
                detail,
            )
            .with("header", "Idempotency-Key"),
            E::UnsupportedMediaType => Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                detail,
            )
            .with("header", "Content-Type"),
            E::PayloadTooLarge { limit_bytes } => Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Request body too large",
                detail,
            )
            .with("limit_bytes", *limit_bytes),
            E::MalformedJson(_) => Problem::new(
                StatusCode::BAD_REQUEST,
                "malformed-json",
                "Malformed JSON",
                detail,
            ),
            E::InvalidRuleSet(error) => rejected(&Rejection::InvalidRuleSet(error.clone())),
            E::InvalidField { field, .. } => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-field",
                "Invalid field",
                detail,
            )
            .with("field", field.as_str()),
            E::InvalidQuery { parameter, .. } => Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-query",
                "Invalid query parameter",
                detail,
            )
            .with("parameter", parameter.as_str()),
            E::CustomerNotFound => Problem::new(
                StatusCode::NOT_FOUND,
                "customer-not-found",
                "Customer not found",
                detail,
            ),
            E::RewardNotFound => Problem::new(
                StatusCode::NOT_FOUND,
                "reward-not-found",
                "Reward not found",
                detail,
            ),
            E::RedemptionNotFound => Problem::new(
                StatusCode::NOT_FOUND,
                "redemption-not-found",
                "Redemption not found",
                detail,
            ),
            E::NoTierScheme => Problem::new(
                StatusCode::NOT_FOUND,
                "no-tier-scheme",
                "No tier ladder",
                detail,
            ),
            E::BroadcastNotFound => Problem::new(
                StatusCode::NOT_FOUND,
                "broadcast-not-found",
                "Broadcast not found",
                detail,
            ),
            E::BroadcastStateConflict(_) => Problem::new(
                StatusCode::CONFLICT,
                "broadcast-state-conflict",
                "Broadcast state conflict",
                detail,
            ),
            E::BroadcastTooLarge { .. } => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "broadcast-too-large",
                "Broadcast too large",
                detail,
            )
            .with("field", "segment"),
            E::RouteNotFound => {
                Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
            }
            E::MethodNotAllowed => Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
                detail,
            ),
            E::RateLimited { retry_after } => Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too many requests",
                detail,
            )
            .with(
                "retry_after_seconds",
                crate::rate_limit::whole_seconds_rounded_up(*retry_after),
            ),
            E::CorsPreflightRefused(_) => Problem::new(
                StatusCode::FORBIDDEN,
                "cors-preflight-refused",
                "Cross-origin request refused",
                detail,
            ),
            E::Unavailable(_) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Temporarily unavailable",
                "the ledger is temporarily unavailable; retry with the same Idempotency-Key",
            ),
            E::Internal(_) => internal_problem(),
        }
    }
}

/// The problem shown for a bug: a fixed sentence, never the cause.
pub fn internal_problem() -> Problem {
    Problem::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "Internal error",
        "an unexpected error occurred; it has been logged",
    )
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.problem().status_code()
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            ApiError::Unavailable(cause) => tracing::error!(%cause, "answering 503"),
            ApiError::Internal(cause) => tracing::error!(%cause, "answering 500"),
            _ => {}
        }
        let problem = self.problem();
        let mut response = HttpResponse::build(problem.status_code());
        response.content_type(PROBLEM_CONTENT_TYPE);
        match self {
            ApiError::Unauthenticated => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            ApiError::Unavailable(_) => {
                response.insert_header((header::RETRY_AFTER, "1"));
            }
            ApiError::RateLimited { retry_after } => {
                let seconds = crate::rate_limit::whole_seconds_rounded_up(*retry_after);
                response.insert_header((header::RETRY_AFTER, seconds));
            }
            ApiError::TooManyAttempts {
                retry_after_seconds,
            } => {
                response.insert_header((header::RETRY_AFTER, retry_after_seconds.to_string()));
            }
            _ => {}
        }
        response.body(problem.to_bytes())
    }
}

/// The ledger's refusal of a command, as the problem the caller gets (and gets again on
/// every retry with the same Idempotency-Key).
pub fn refusal(refusal: &Refusal) -> Problem {
    match refusal {
        Refusal::PhoneAlreadyEnrolled(customer_id) => Problem::new(
            StatusCode::CONFLICT,
            "phone-already-enrolled",
            "Phone number already enrolled",
            "this phone number is already enrolled at this vendor",
        )
        .with("field", "phone")
        .with("customer_id", customer_id.to_string()),
        Refusal::Rejected(rejection) => rejected(rejection),
    }
}

fn rejected(rejection: &Rejection) -> Problem {
    use Rejection as R;
    let detail = rejection.to_string();
    match rejection {
        R::CustomerNotEnrolled => Problem::new(
            StatusCode::NOT_FOUND,
            "customer-not-found",
            "Customer not found",
            detail,
        ),
        R::CustomerErased => Problem::new(
            StatusCode::GONE,
            "customer-erased",
            "Customer erased",
            "this customer's personal data was erased at their request; \
             they may enrol again as a new customer",
        ),
        R::TenantNotRegistered => Problem::new(
            StatusCode::NOT_FOUND,
            "tenant-not-registered",
            "Tenant not registered",
            detail,
        ),
        R::InsufficientPoints {
            available,
            requested,
        } => Problem::new(
            StatusCode::CONFLICT,
            "insufficient-points",
            "Insufficient points",
            detail,
        )
        .with("available", Points::value(*available))
        .with("requested", Points::value(*requested)),
        R::LineItemsDoNotAddUp {
            line_items_total,
            amount,
        } => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "line-items-do-not-add-up",
            "Line items do not add up",
            detail,
        )
        .with("field", "line_items")
        .with("line_items_total_minor", line_items_total.value())
        .with("amount_minor", amount.value()),
        // The API's own parsing refuses these first; the ledger checks again as its invariant.
        R::AmountNotPositive => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "amount-not-positive",
            "Amount not positive",
            detail,
        ),
        R::PurchaseInFuture => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "purchase-in-future",
            "Purchase dated in the future",
            detail,
        )
        .with("field", "occurred_at"),
        R::SelfReferral => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-field",
            "Invalid field",
            detail,
        )
        .with("field", "referral_code"),
        R::ReferralAlreadyAwarded => Problem::new(
            StatusCode::CONFLICT,
            "referral-already-awarded",
            "Referral already awarded",
            detail,
        ),
        R::CustomerAlreadyEnrolled => Problem::new(
            StatusCode::CONFLICT,
            "customer-already-enrolled",
            "Customer already enrolled",
            detail,
        ),
        R::TenantAlreadyRegistered => Problem::new(
            StatusCode::CONFLICT,
            "tenant-already-registered",
            "Tenant already registered",
            detail,
        ),
        R::InvalidRuleSet(error) => {
            let problem = Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-rule-set",
                "Invalid rule set",
                detail,
            );
            // Which rule (by id) and which of its fields, when one is at fault.
            let problem = match error.rule() {
                Some(rule) => problem.with("rule", rule),
                None => problem,
            };
            match error.field() {
                Some(field) => problem.with("field", field),
                None => problem.with("field", "rules"),
            }
        }
        R::Overflow => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "overflow",
            "Amount out of range",
            "the result would exceed the ledger's limits",
        ),
        // The API's parser refuses a bad name first; the ledger checks again.
        R::InvalidRewardName => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-field",
            "Invalid field",
            detail,
        )
        .with("field", "name"),
        R::RewardAlreadyExists => Problem::new(
            StatusCode::CONFLICT,
            "reward-already-exists",
            "Reward already exists",
            detail,
        ),
        R::RewardNotFound => Problem::new(
            StatusCode::NOT_FOUND,
            "reward-not-found",
            "Reward not found",
            detail,
        ),
        R::InvalidTierScheme(_) => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-tier-scheme",
            "Invalid tier scheme",
            detail,
        ),
        R::InvalidSettings(_) => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-settings",
            "Invalid settings",
            detail,
        ),
        R::PurchaseNotFound => Problem::new(
            StatusCode::NOT_FOUND,
            "purchase-not-found",
            "Purchase not found",
            detail,
        ),
        R::RefundExceedsPurchase { refundable } => Problem::new(
            StatusCode::CONFLICT,
            "refund-exceeds-purchase",
            "Refund exceeds the purchase",
            detail,
        )
        .with("field", "amount_minor")
        .with("refundable_minor", refundable.value()),
        R::InvalidReason => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-field",
            "Invalid field",
            detail,
        )
        .with("field", "reason"),
        R::AdjustmentZero => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-field",
            "Invalid field",
            detail,
        )
        .with("field", "points"),
        R::HoldReleased => Problem::new(
            StatusCode::CONFLICT,
            "hold-released",
            "Hold already released",
            detail,
        ),
        R::HoldExpired => Problem::new(
            StatusCode::CONFLICT,
            "hold-expired",
            "Hold expired",
            detail,
        ),
        R::NotAHold => Problem::new(
            StatusCode::CONFLICT,
            "not-a-hold",
            "Not a hold",
            "this redemption was debited when it was made (before holds existed); it can only be fulfilled",
        ),
        R::RewardRetired => Problem::new(
            StatusCode::CONFLICT,
            "reward-retired",
            "Reward retired",
            detail,
        ),
        R::RedemptionNotFound => Problem::new(
            StatusCode::NOT_FOUND,
            "redemption-not-found",
            "Redemption not found",
            detail,
        ),
        R::AlreadyFulfilled => Problem::new(
            StatusCode::CONFLICT,
            "already-fulfilled",
            "Already fulfilled",
            "this redemption was already fulfilled: the reward has been handed over",
        ),
        // The API's parser refuses bad terms first; the ledger checks again.
        R::InvalidRewardTerms { field, .. } => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-field",
            "Invalid field",
            detail,
        )
        .with("field", *field),
        R::RewardNotYetValid { valid_from } => Problem::new(
            StatusCode::CONFLICT,
            "reward-not-yet-valid",
            "Reward not valid yet",
            detail,
        )
        .with("valid_from", valid_from.to_rfc3339()),
        R::RewardNoLongerValid { valid_until } => Problem::new(
            StatusCode::CONFLICT,
            "reward-no-longer-valid",
            "Reward no longer valid",
            detail,
        )
        .with("valid_until", valid_until.to_rfc3339()),
        R::OutOfStock { stock } => Problem::new(
            StatusCode::CONFLICT,
            "out-of-stock",
            "Out of stock",
            detail,
        )
        .with("stock", *stock),
        R::PerCustomerLimitReached { limit } => Problem::new(
            StatusCode::CONFLICT,
            "per-customer-limit-reached",
            "Per-customer limit reached",
            detail,
        )
        .with("per_customer_limit", *limit),
        R::StockBelowUsed { used, .. } => Problem::new(
            StatusCode::CONFLICT,
            "stock-below-used",
            "Stock below the units used",
            detail,
        )
        .with("field", "stock")
        .with("used", *used),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger_core::rules::InvalidRuleSet;
    use ledger_core::{CustomerId, MinorUnits};
    use uuid::Uuid;

    fn status_and_type(problem: &Problem) -> (u16, &str) {
        (
            problem.status,
            problem
                .type_uri
                .strip_prefix(PROBLEM_TYPE_BASE)
                .unwrap_or("<no base>"),
        )
    }

    #[test]
    fn every_refusal_has_its_status_and_type() {
        let customer = CustomerId::from_uuid(Uuid::from_u128(7));
        let table: Vec<(Refusal, u16, &str)> = vec![
            (
                Refusal::PhoneAlreadyEnrolled(customer),
                409,
                "phone-already-enrolled",
            ),
            (
                Refusal::Rejected(Rejection::CustomerNotEnrolled),
                404,
                "customer-not-found",
            ),
            (
                Refusal::Rejected(Rejection::TenantNotRegistered),
                404,
                "tenant-not-registered",
            ),
            (
                Refusal::Rejected(Rejection::CustomerErased),
                410,
                "customer-erased",
            ),
            (
                Refusal::Rejected(Rejection::InsufficientPoints {
                    available: Points::new(5),
                    requested: Points::new(10),
                }),
                409,
                "insufficient-points",
            ),
            (
                Refusal::Rejected(Rejection::LineItemsDoNotAddUp {
                    line_items_total: MinorUnits::new(1),
                    amount: MinorUnits::new(2),
                }),
                422,
                "line-items-do-not-add-up",
            ),
            (
                Refusal::Rejected(Rejection::PurchaseInFuture),
                422,
                "purchase-in-future",
            ),
            (
                Refusal::Rejected(Rejection::AmountNotPositive),
                422,
                "amount-not-positive",
            ),
            (
                Refusal::Rejected(Rejection::CustomerAlreadyEnrolled),
                409,
                "customer-already-enrolled",
            ),
            (
                Refusal::Rejected(Rejection::TenantAlreadyRegistered),
                409,
                "tenant-already-registered",
            ),
            (
                Refusal::Rejected(Rejection::SelfReferral),
                422,
                "invalid-field",
            ),
            (
                Refusal::Rejected(Rejection::ReferralAlreadyAwarded),
                409,
                "referral-already-awarded",
            ),
            (
                Refusal::Rejected(Rejection::InvalidRuleSet(InvalidRuleSet::VersionZero)),
                422,
                "invalid-rule-set",
            ),
            (Refusal::Rejected(Rejection::Overflow), 422, "overflow"),
            (
                Refusal::Rejected(Rejection::InvalidRewardName),
                422,
                "invalid-field",
            ),
            (
                Refusal::Rejected(Rejection::RewardAlreadyExists),
                409,
                "reward-already-exists",
            ),
            (
                Refusal::Rejected(Rejection::RewardNotFound),
                404,
                "reward-not-found",
            ),
            (
                Refusal::Rejected(Rejection::RewardRetired),
                409,
                "reward-retired",
            ),
            (
                Refusal::Rejected(Rejection::RedemptionNotFound),
                404,
                "redemption-not-found",
            ),
            (
                Refusal::Rejected(Rejection::AlreadyFulfilled),
                409,
                "already-fulfilled",
            ),
            (
                Refusal::Rejected(Rejection::InvalidRewardTerms {
                    field: "image_url",
                    reason: "must be an https:// URL",
                }),
                422,
                "invalid-field",
            ),
            (
                Refusal::Rejected(Rejection::RewardNotYetValid {
                    valid_from: chrono::DateTime::UNIX_EPOCH,
                }),
                409,
                "reward-not-yet-valid",
            ),
            (
                Refusal::Rejected(Rejection::RewardNoLongerValid {
                    valid_until: chrono::DateTime::UNIX_EPOCH,
                }),
                409,
                "reward-no-longer-valid",
            ),
            (
                Refusal::Rejected(Rejection::OutOfStock { stock: 10 }),
                409,
                "out-of-stock",
            ),
            (
                Refusal::Rejected(Rejection::PerCustomerLimitReached { limit: 2 }),
                409,
                "per-customer-limit-reached",
            ),
            (
                Refusal::Rejected(Rejection::StockBelowUsed { stock: 1, used: 2 }),
                409,
                "stock-below-used",
            ),
        ];
        for (refusal_case, status, slug) in table {
            let problem = refusal(&refusal_case);
            assert_eq!(
                status_and_type(&problem),
                (status, slug),
                "{refusal_case:?}"
            );
            assert!(!problem.detail.is_empty());
        }
    }

    #[test]
    fn refusals_carry_their_extensions() {
        let customer = CustomerId::from_uuid(Uuid::from_u128(7));
        let problem = refusal(&Refusal::PhoneAlreadyEnrolled(customer));
        assert_eq!(problem.extensions["customer_id"], customer.to_string());

        let problem = refusal(&Refusal::Rejected(Rejection::InsufficientPoints {
            available: Points::new(5),
            requested: Points::new(10),
        }));
        assert_eq!(problem.extensions["available"], 5);
        assert_eq!(problem.extensions["requested"], 10);

        let problem = refusal(&Refusal::Rejected(Rejection::PurchaseInFuture));
        assert_eq!(problem.extensions["field"], "occurred_at");
    }

    #[test]
    fn api_errors_map_to_statuses() {
        let table: Vec<(ApiError, u16, &str)> = vec![
            (ApiError::Unauthenticated, 401, "unauthenticated"),
            (
                ApiError::Forbidden {
                    role: "staff",
                    action: "manage users",
                },
                403,
                "forbidden",
            ),
            (ApiError::InvalidCredentials, 401, "invalid-credentials"),
            (ApiError::InvalidRefreshToken, 401, "invalid-refresh-token"),
            (ApiError::InvitationNotFound, 404, "invitation-not-found"),
            (
                ApiError::TooManyAttempts {
                    retry_after_seconds: 30,
                },
                429,
                "too-many-attempts",
            ),
            (ApiError::VendorCodeTaken, 409, "vendor-code-taken"),
            (
                ApiError::InvalidRuleSet(ledger_core::rules::InvalidRuleSet::DuplicateId {
                    rule: "visit".into(),
                }),
                422,
                "invalid-rule-set",
            ),
            (ApiError::EmailTaken { field: "email" }, 409, "email-taken"),
            (ApiError::UserNotFound, 404, "user-not-found"),
            (ApiError::ApiKeyNotFound, 404, "api-key-not-found"),
            (ApiError::WhatsAppNumberTaken, 409, "whatsapp-number-taken"),
            (
                ApiError::WhatsAppNumberNotFound,
                404,
                "whatsapp-number-not-found",
            ),
            (ApiError::CannotDisableSelf, 409, "cannot-disable-self"),
            (ApiError::LastActiveOwner, 409, "last-active-owner"),
            (
                ApiError::IdempotencyKeyMissing,
                400,
                "idempotency-key-missing",
            ),
            (
                ApiError::IdempotencyKeyInvalid,
                400,
                "idempotency-key-invalid",
            ),
            (
                ApiError::IdempotencyKeyReused,
                422,
                "idempotency-key-reused",
            ),
            (
                ApiError::UnsupportedMediaType,
                415,
                "unsupported-media-type",
            ),
            (
                ApiError::PayloadTooLarge { limit_bytes: 10 },
                413,
                "payload-too-large",
            ),
            (ApiError::MalformedJson("x".into()), 400, "malformed-json"),
            (
                ApiError::invalid_field("amount_minor", "bad"),
                422,
                "invalid-field",
            ),
            (
                ApiError::InvalidQuery {
                    parameter: "limit".into(),
                    detail: "bad".into(),
                },
                400,
                "invalid-query",
            ),
            (ApiError::CustomerNotFound, 404, "customer-not-found"),
            (ApiError::RewardNotFound, 404, "reward-not-found"),
            (ApiError::RedemptionNotFound, 404, "redemption-not-found"),
            (ApiError::NoTierScheme, 404, "no-tier-scheme"),
            (ApiError::RouteNotFound, 404, "not-found"),
            (ApiError::MethodNotAllowed, 405, "method-not-allowed"),
            (ApiError::Unavailable("db down".into()), 503, "unavailable"),
            (ApiError::Internal("bug".into()), 500, "internal"),
        ];
        for (error, status, slug) in table {
            let problem = error.problem();
            assert_eq!(status_and_type(&problem), (status, slug), "{error:?}");
            assert_eq!(ResponseError::status_code(&error).as_u16(), status);
        }
    }

    #[test]
    fn internal_causes_never_reach_the_client() {
        for error in [
            ApiError::Unavailable("password=hunter2 host=db".into()),
            ApiError::Internal("password=hunter2".into()),
        ] {
            let body = String::from_utf8(error.problem().to_bytes()).unwrap();
            assert!(!body.contains("hunter2"), "{body}");
        }
    }

    #[test]
    fn problem_body_has_the_rfc_9457_members_and_extensions() {
        let body = ApiError::invalid_field("amount_minor", "amount_minor must be an integer")
            .problem()
            .to_bytes();
        let value: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            value["type"],
            "https://loyalty-ledger.dev/problems/invalid-field"
        );
        assert_eq!(value["title"], "Invalid field");
        assert_eq!(value["status"], 422);
        assert_eq!(value["detail"], "amount_minor must be an integer");
        assert_eq!(value["field"], "amount_minor");
    }

    #[test]
    fn a_rate_limit_refusal_says_when_to_retry_in_whole_seconds() {
        let error = ApiError::RateLimited {
            retry_after: std::time::Duration::from_millis(1_200),
        };
        let response = error.error_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers().get(header::RETRY_AFTER).unwrap(), "2");
        let problem = error.problem();
        assert_eq!(problem.type_uri, format!("{PROBLEM_TYPE_BASE}rate-limited"));
        assert_eq!(problem.extensions["retry_after_seconds"], 2);
        assert_eq!(problem.detail, "too many requests; retry after 2 s");
    }
}
