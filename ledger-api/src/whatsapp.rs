//! The tenant's own WhatsApp number (owners only): `PUT /v1/whatsapp/number` registers or
//! updates it with the tenant's Cloud API access token, `GET` shows it (never the token),
//! `DELETE` detaches it. docs/WHATSAPP.md (`## Own numbers`) has the contract.
//!
//! Reading order: [`NumberRequest::parse`] (every rule a client's input must meet), then the
//! handlers. The token is sealed here, in the handler, with the vault
//! (`schema::whatsapp_numbers::token_seal_context`: bound to the number and the tenant) and
//! only the sealed bytes go further; the SQL is `schema::whatsapp_numbers`, whose definer
//! functions take the tenant from the transaction's scope, so a tenant can reach no other
//! tenant's number and never the shared one.

use crate::accounts::{database, json_response, string_field};
use crate::auth::Caller;
use crate::body::{self, JsonObject};
use crate::problem::ApiError;
use crate::ApiState;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use schema::accounts::Permission;
use schema::whatsapp_numbers::{self, NumberView, OwnNumber, PutOutcome};
use serde::Serialize;
use serde_json::Value;

/// The fields of `PUT /v1/whatsapp/number` (also the properties of its OpenAPI schema).
pub const NUMBER_FIELDS: [&str; 5] = [
    "phone_number_id",
    "display_phone_number",
    "access_token",
    "fallback_template",
    "template_language",
];
/// Meta's phone number ids are 15 or 16 digits today; leave room, refuse nonsense.
pub const PHONE_NUMBER_ID_DIGITS_MIN: usize = 5;
pub const PHONE_NUMBER_ID_DIGITS_MAX: usize = 32;
/// E.164: at most 15 digits; 7 is the shortest real national number with country code.
pub const DISPLAY_DIGITS_MIN: usize = 7;
pub const DISPLAY_DIGITS_MAX: usize = 15;
/// System-user tokens are a few hundred characters; 2048 leaves room for longer formats.
pub const ACCESS_TOKEN_CHARS_MAX: usize = 2048;
/// Meta's limit on a template name.
pub const TEMPLATE_NAME_CHARS_MAX: usize = 512;
pub const TEMPLATE_DEFAULT: &str = "loyalty_update";
pub const LANGUAGE_DEFAULT: &str = "en";

/// The tenant's access token as sent: `Debug` never prints it.
pub struct PlainToken(String);

impl std::fmt::Debug for PlainToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PlainToken(<redacted>)")
    }
}

/// A valid `PUT /v1/whatsapp/number` body. Built only by [`NumberRequest::parse`].
#[derive(Debug)]
pub struct NumberRequest {
    pub phone_number_id: String,
    /// Digits only.
    pub display_phone_number: String,
    pub access_token: PlainToken,
    pub fallback_template: String,
    pub template_language: String,
}

impl NumberRequest {
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let object = JsonObject::parse(body)?;
        object.deny_unknown(&NUMBER_FIELDS)?;
        Ok(NumberRequest {
            phone_number_id: object.required("phone_number_id", phone_number_id)?,
            display_phone_number: object.required("display_phone_number", display_number)?,
            access_token: object.required("access_token", access_token)?,
            fallback_template: object
                .optional("fallback_template", template_name)?
                .unwrap_or_else(|| TEMPLATE_DEFAULT.to_owned()),
            template_language: object
                .optional("template_language", language_code)?
                .unwrap_or_else(|| LANGUAGE_DEFAULT.to_owned()),
        })
    }
}

fn phone_number_id(value: &Value) -> Result<String, String> {
    let raw = string_field(value)?;
    let digits = raw.len();
    if !(PHONE_NUMBER_ID_DIGITS_MIN..=PHONE_NUMBER_ID_DIGITS_MAX).contains(&digits)
        || !raw.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(format!(
            "must be {PHONE_NUMBER_ID_DIGITS_MIN} to {PHONE_NUMBER_ID_DIGITS_MAX} digits: the \
             phone number ID shown in WhatsApp Manager (not the phone number itself)"
        ));
    }
    Ok(raw.to_owned())
}

/// The number customers see: an optional `+`, digits, and spaces or hyphens between them;
/// stored as digits.
fn display_number(value: &Value) -> Result<String, String> {
    let raw = string_field(value)?;
    let rest = raw.trim().strip_prefix('+').unwrap_or(raw.trim());
    let invalid = || {
        format!(
            "must be a phone number in international form, {DISPLAY_DIGITS_MIN} to \
             {DISPLAY_DIGITS_MAX} digits with an optional leading +, e.g. +2348012345678"
        )
    };
    if !rest
        .chars()
        .all(|c| c.is_ascii_digit() || c == ' ' || c == '-')
    {
        return Err(invalid());
    }
    let digits: String = rest.chars().filter(char::is_ascii_digit).collect();
    if !(DISPLAY_DIGITS_MIN..=DISPLAY_DIGITS_MAX).contains(&digits.len()) {
        return Err(invalid());
    }
    Ok(digits)
}

/// Trimmed, not blank, visible ASCII only. The messages never echo the token.
fn access_token(value: &Value) -> Result<PlainToken, String> {
    let raw = string_field(value)?.trim();
    if raw.is_empty() {
        return Err(
            "must not be blank: the access token of a system user with access to this number"
                .to_owned(),
        );
    }
    if raw.chars().count() > ACCESS_TOKEN_CHARS_MAX {
        return Err(format!(
            "must be at most {ACCESS_TOKEN_CHARS_MAX} characters long"
        ));
    }
    if !raw.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be visible ASCII characters without spaces".to_owned());
    }
    Ok(PlainToken(raw.to_owned()))
}

/// Meta's template names: lower-case letters, digits and underscores.
fn template_name(value: &Value) -> Result<String, String> {
    let raw = string_field(value)?;
    let valid = (1..=TEMPLATE_NAME_CHARS_MAX).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !valid {
        return Err(format!(
            "must be 1 to {TEMPLATE_NAME_CHARS_MAX} lower-case letters, digits or underscores \
             (an approved template's name)"
        ));
    }
    Ok(raw.to_owned())
}

/// A template language code as Meta writes them: `en`, `en_US`, `pt_BR`, `zh_HK`.
fn language_code(value: &Value) -> Result<String, String> {
    let raw = string_field(value)?;
    let (language, region) = match raw.split_once('_') {
        Some((language, region)) => (language, Some(region)),
        None => (raw, None),
    };
    let language_ok =
        (2..=3).contains(&language.len()) && language.bytes().all(|b| b.is_ascii_lowercase());
    let region_ok = region
        .is_none_or(|r| (2..=4).contains(&r.len()) && r.bytes().all(|b| b.is_ascii_alphanumeric()));
    if !(language_ok && region_ok) {
        return Err("must be a template language code such as en, en_US or pt_BR".to_owned());
    }
    Ok(raw.to_owned())
}

/// The tenant's number as shown: `200` of `GET`, `201`/`200` of `PUT`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WhatsAppNumberView {
    pub phone_number_id: String,
    /// Digits only.
    pub display_phone_number: String,
    /// Sent instead of free-form text outside the 24-hour customer-service window.
    pub fallback_template: String,
    pub template_language: String,
    /// Whether an access token is stored (sealed). The token itself is never shown.
    pub access_token_set: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<NumberView> for WhatsAppNumberView {
    fn from(view: NumberView) -> Self {
        WhatsAppNumberView {
            phone_number_id: view.phone_number_id,
            display_phone_number: view.display_phone_number,
            fallback_template: view.fallback_template,
            template_language: view.template_language,
            access_token_set: view.access_token_set,
            created_at: view.created_at,
            updated_at: view.updated_at,
        }
    }
}

/// `200` body of `DELETE /v1/whatsapp/number`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DetachedNumberResponse {
    pub phone_number_id: String,
    /// Messages to customers on this number that were still queued and are now `failed`.
    pub queued_messages_failed: i32,
}

#[utoipa::path(
    put,
    path = "/v1/whatsapp/number",
    tag = "whatsapp",
    request_body(content = crate::openapi::WhatsAppNumberRequestSchema, content_type = "application/json"),
    responses(
        (status = 201, description = "Registered: messages to this number reach this tenant, and replies are sent from it with this token.", body = WhatsAppNumberView),
        (status = 200, description = "Updated (display number, template, token). A different `phone_number_id` replaces the tenant's earlier number, which is detached as by `DELETE`.", body = WhatsAppNumberView),
        (status = 400, description = "`malformed-json`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 403, description = "`forbidden`: only owners manage the WhatsApp number.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`whatsapp-number-taken` (with `field`): the platform's shared number, another tenant's, or one with another tenant's customers. Nothing changed.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 422, description = "`invalid-field` (with `field`): a missing or unknown field, an id that is not 5 to 32 digits, a display number that is not 7 to 15 digits, a blank token, a template name or language that Meta would refuse. Nothing changed.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
    ),
    security(("api_key" = []), ("user_token" = []))
)]
#[tracing::instrument(name = "put_whatsapp_number", skip_all, fields(tenant_id = %caller.tenant_id))]
pub async fn put(
    caller: Caller,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    caller.authorize(Permission::ManageWhatsApp)?;
    let body = body::read_json(&req, payload, state.body_bytes_max).await?;
    let request = NumberRequest::parse(&body)?;
    if state.shared_whatsapp_number.as_deref() == Some(request.phone_number_id.as_str()) {
        return Err(ApiError::WhatsAppNumberTaken);
    }
    let context = whatsapp_numbers::token_seal_context(&request.phone_number_id, caller.tenant_id);
    let sealed_access_token = state
        .vault
        .seal_record(&context, request.access_token.0.as_bytes())
        .map_err(|e| ApiError::Internal(format!("sealing the access token: {e}")))?;
    let number = OwnNumber {
        phone_number_id: request.phone_number_id,
        display_phone_number: request.display_phone_number,
        fallback_template: request.fallback_template,
        template_language: request.template_language,
        sealed_access_token,
    };
    let mut client = state.client().await?;
    let transaction = crate::scoped(&mut client, caller.tenant_id).await?;
    let outcome = whatsapp_numbers::put(
        &*transaction,
        &number,
        &caller.actor(),
        caller.correlation_id,
    )
    .await
    .map_err(database)?;
    let status = match outcome {
        PutOutcome::Created => StatusCode::CREATED,
        PutOutcome::Updated => StatusCode::OK,
        PutOutcome::Taken => return Err(ApiError::WhatsAppNumberTaken),
    };
    let view = whatsapp_numbers::get(&*transaction)
        .await
        .map_err(database)?
        .ok_or_else(|| ApiError::Internal("the number just written is not there".to_owned()))?;
    transaction.commit().await.map_err(database)?;
    tracing::info!(phone_number_id = %view.phone_number_id, ?outcome, "WhatsApp number saved");
    Ok(json_response(status, &WhatsAppNumberView::from(view)))
}

#[utoipa::path(
    get,
    path = "/v1/whatsapp/number",
    tag = "whatsapp",
    responses(
        (status = 200, description = "The tenant's own number; never the token (`access_token_set` says whether one is stored).", body = WhatsAppNumberView),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 403, description = "`forbidden`: only owners manage the WhatsApp number.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "`whatsapp-number-not-found`: the tenant uses the shared number.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
    ),
    security(("api_key" = []), ("user_token" = []))
)]
#[tracing::instrument(name = "get_whatsapp_number", skip_all, fields(tenant_id = %caller.tenant_id))]
pub async fn get(caller: Caller, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    caller.authorize(Permission::ManageWhatsApp)?;
    let mut client = state.client().await?;
    let transaction = crate::scoped(&mut client, caller.tenant_id).await?;
    let view = whatsapp_numbers::get(&*transaction)
        .await
        .map_err(database)?
        .ok_or(ApiError::WhatsAppNumberNotFound)?;
    transaction.commit().await.map_err(database)?;
    Ok(json_response(
        StatusCode::OK,
        &WhatsAppNumberView::from(view),
    ))
}

#[utoipa::path(
    delete,
    path = "/v1/whatsapp/number",
    tag = "whatsapp",
    responses(
        (status = 200, description = "Detached: the number and its sealed token are deleted, messages to it are no longer routed to this tenant, its still-queued messages are failed, and the tenant's customers reach it on the shared number (JOIN <vendor code>).", body = DetachedNumberResponse),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 403, description = "`forbidden`: only owners manage the WhatsApp number.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "`whatsapp-number-not-found`: the tenant has no number of its own.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
    ),
    security(("api_key" = []), ("user_token" = []))
)]
#[tracing::instrument(name = "detach_whatsapp_number", skip_all, fields(tenant_id = %caller.tenant_id))]
pub async fn detach(caller: Caller, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    caller.authorize(Permission::ManageWhatsApp)?;
    let mut client = state.client().await?;
    let transaction = crate::scoped(&mut client, caller.tenant_id).await?;
    let detached = whatsapp_numbers::detach(&*transaction, &caller.actor(), caller.correlation_id)
        .await
        .map_err(database)?
        .ok_or(ApiError::WhatsAppNumberNotFound)?;
    transaction.commit().await.map_err(database)?;
    tracing::info!(
        phone_number_id = %detached.phone_number_id,
        queued_messages_failed = detached.outbox_failed,
        "WhatsApp number detached"
    );
    Ok(json_response(
        StatusCode::OK,
        &DetachedNumberResponse {
            phone_number_id: detached.phone_number_id,
            queued_messages_failed: detached.outbox_failed,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(overrides: Value) -> Vec<u8> {
        let mut value = json!({
            "phone_number_id": "106540352242922",
            "display_phone_number": "+234 801-234-5678",
            "access_token": "EAAG-token_123",
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
    fn a_valid_body_is_normalised_with_the_defaults() {
        let request = NumberRequest::parse(&body(json!({}))).unwrap();
        assert_eq!(request.phone_number_id, "106540352242922");
        assert_eq!(request.display_phone_number, "2348012345678");
        assert_eq!(request.fallback_template, TEMPLATE_DEFAULT);
        assert_eq!(request.template_language, LANGUAGE_DEFAULT);
        assert_eq!(
            format!("{:?}", request.access_token),
            "PlainToken(<redacted>)"
        );
        assert!(!format!("{request:?}").contains("EAAG"));
        let request = NumberRequest::parse(&body(json!({
            "fallback_template": "points_news", "template_language": "pt_BR",
            "access_token": "  padded  "
        })))
        .unwrap();
        assert_eq!(request.fallback_template, "points_news");
        assert_eq!(request.template_language, "pt_BR");
        assert_eq!(request.access_token.0, "padded");
    }

    #[test]
    fn bad_input_names_its_field_and_never_echoes_the_token() {
        let long_token = "x".repeat(ACCESS_TOKEN_CHARS_MAX + 1);
        let cases = [
            (json!({"phone_number_id": null}), "phone_number_id"),
            (json!({"phone_number_id": "1234"}), "phone_number_id"),
            (json!({"phone_number_id": "12345a"}), "phone_number_id"),
            (
                json!({"phone_number_id": 106540352242922u64}),
                "phone_number_id",
            ),
            (
                json!({"phone_number_id": "1".repeat(33)}),
                "phone_number_id",
            ),
            (
                json!({"display_phone_number": "12345"}),
                "display_phone_number",
            ),
            (
                json!({"display_phone_number": "+1 (555) 1234567"}),
                "display_phone_number",
            ),
            (
                json!({"display_phone_number": "1234567890123456"}),
                "display_phone_number",
            ),
            (json!({"access_token": null}), "access_token"),
            (json!({"access_token": "   "}), "access_token"),
            (json!({"access_token": "sec ret"}), "access_token"),
            (json!({"access_token": "sécret"}), "access_token"),
            (json!({"access_token": long_token}), "access_token"),
            (
                json!({"fallback_template": "Points News"}),
                "fallback_template",
            ),
            (json!({"fallback_template": ""}), "fallback_template"),
            (json!({"template_language": "english"}), "template_language"),
            (json!({"template_language": "EN"}), "template_language"),
            (json!({"token": "x"}), "token"),
        ];
        for (overrides, field) in cases {
            let error = NumberRequest::parse(&body(overrides.clone())).unwrap_err();
            match &error {
                ApiError::InvalidField { field: f, detail } => {
                    assert_eq!(f, field, "{overrides}");
                    assert!(
                        !detail.contains("sec ret") && !detail.contains("xxxx"),
                        "{detail}"
                    );
                }
                other => panic!("{overrides}: {other:?}"),
            }
        }
        assert!(matches!(
            NumberRequest::parse(b"{not json"),
            Err(ApiError::MalformedJson(_))
        ));
    }
}
