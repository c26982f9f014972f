//! `POST /v1/purchases`: a vendor system logs a purchase and learns, in the same answer,
//! the points earned and the customer's new balance.

use crate::auth::Caller;
use crate::body::{self, JsonObject};
use crate::commands;
use crate::idempotency::IdempotencyKey;
use crate::problem::ApiError;
use crate::{render, ApiState};
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use ledger_core::events::LineItem;
use ledger_core::{AmountError, Command, CustomerId, LotId, MinorUnits, PurchaseId};
use serde_json::Value;
use uuid::Uuid;

pub const LINE_ITEMS_MAX: usize = 100;
pub const SKU_CHARS_MAX: usize = 64;
pub const REFERENCE_CHARS_MAX: usize = 128;
/// The fields a purchase body may have; any other is refused (422). Shared with the OpenAPI
/// schema, whose properties the tests compare with this list.
pub const PURCHASE_FIELDS: [&str; 5] = [
    "customer_id",
    "amount_minor",
    "line_items",
    "occurred_at",
    "reference",
];
/// The fields a line item may have.
pub const LINE_ITEM_FIELDS: [&str; 4] = ["sku", "category", "quantity", "unit_price_minor"];

/// A purchase as a client may send it, fully validated. Built only by [`PurchaseRequest::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurchaseRequest {
    pub customer_id: CustomerId,
    pub amount: MinorUnits,
    pub line_items: Vec<LineItem>,
    pub occurred_at: Option<DateTime<Utc>>,
    pub reference: Option<String>,
}

impl PurchaseRequest {
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let object = JsonObject::parse(body)?;
        object.deny_unknown(&PURCHASE_FIELDS)?;
        Ok(PurchaseRequest {
            customer_id: object
                .required("customer_id", |v| body::uuid(v).map(CustomerId::from_uuid))?,
            amount: object.required("amount_minor", positive_amount)?,
            line_items: object
                .optional_objects("line_items", LINE_ITEMS_MAX, line_item)?
                .unwrap_or_default(),
            occurred_at: object.optional("occurred_at", body::timestamp)?,
            reference: object.optional("reference", |v| body::text(v, 0, REFERENCE_CHARS_MAX))?,
        })
    }

    /// The command, with the ids of what it creates chosen here (UUIDv7, so they sort by time).
    pub fn into_command(
        self,
        purchase_id: PurchaseId,
        lot_id: LotId,
        at: DateTime<Utc>,
    ) -> Command {
        Command::LogPurchase {
            customer_id: self.customer_id,
            purchase_id,
            lot_id,
            amount: self.amount,
            line_items: self.line_items,
            reference: self.reference,
            occurred_at: self.occurred_at,
            at,
        }
    }
}

fn line_item(item: JsonObject) -> Result<LineItem, ApiError> {
    item.deny_unknown(&LINE_ITEM_FIELDS)?;
    Ok(LineItem {
        sku: item.required("sku", |v| body::text(v, 1, SKU_CHARS_MAX))?,
        // Same limits as a SKU: category multipliers of the points rules match on it.
        category: item.optional("category", |v| body::text(v, 1, SKU_CHARS_MAX))?,
        quantity: item.required("quantity", quantity)?,
        unit_price: item.required("unit_price_minor", |v| {
            MinorUnits::parse_non_negative(body::integer(v)?).map_err(amount_message)
        })?,
    })
}

fn positive_amount(value: &Value) -> Result<MinorUnits, String> {
    MinorUnits::parse_positive(body::integer(value)?).map_err(amount_message)
}

fn quantity(value: &Value) -> Result<u32, String> {
    let quantity = body::integer(value)?;
    match u32::try_from(quantity) {
        Ok(q) if q >= 1 => Ok(q),
        _ => Err(format!("must be a whole number from 1 to {}", u32::MAX)),
    }
}

fn amount_message(error: AmountError) -> String {
    match error {
        AmountError::Negative => "must not be negative".to_owned(),
        AmountError::Zero => "must be greater than zero".to_owned(),
        AmountError::TooLarge => format!("must be at most {}", MinorUnits::AMOUNT_MAX),
        AmountError::InvalidCurrency => error.to_string(),
    }
}

#[utoipa::path(
    post,
    path = "/v1/purchases",
    tag = "purchases",
    params(
        ("Idempotency-Key" = String, Header, min_length = 1, max_length = 255, pattern = "^[\\x21-\\x7E]+$",
            description = "Required. 1 to 255 visible ASCII characters, scoped to the tenant: a retry with the same key and the same request gets the first answer, byte for byte; the same key with another request is 422 `idempotency-key-reused`."),
    ),
    request_body(content = crate::openapi::PurchaseRequestSchema, content_type = "application/json"),
    responses(
        (status = 201, description = "Logged: the points earned and the customer's new balance, from this decision (read-your-writes).",
            body = crate::render::PurchaseResponse, headers(("Idempotent-Replayed" = String, description = "`true` when this is the stored answer to an earlier request with the same `Idempotency-Key`."))),
        (status = 400, description = "`idempotency-key-missing`, `idempotency-key-invalid` (with `header`) or `malformed-json`.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
        (status = 404, description = "`customer-not-found` (or `tenant-not-registered`).", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 410, description = "`customer-erased`: the customer's personal data was erased; they may enrol again.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 422, description = "`invalid-field` (with `field`), `line-items-do-not-add-up`, `purchase-in-future`, `amount-not-positive`, `overflow` or `idempotency-key-reused`.", body = crate::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ("user_token" = []))
)]
#[tracing::instrument(name = "log_purchase", skip_all, fields(tenant_id = %caller.tenant_id))]
pub async fn log_purchase(
    caller: Caller,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    caller.authorize(schema::accounts::Permission::LogPurchase)?;
    let key = IdempotencyKey::required(&req)?;
    let body = body::read_json(&req, payload, state.body_bytes_max).await?;
    let request = PurchaseRequest::parse(&body)?;
    let command = request.into_command(
        PurchaseId::from_uuid(Uuid::now_v7()),
        LotId::from_uuid(Uuid::now_v7()),
        commands::now(),
    );
    let claim = key.claim(req.method().as_str(), req.path(), &body);
    let submission = caller.submission(command, Some(claim), render::purchase);
    commands::submit(&state, submission).await
}

#[cfg(test)]
mod tests {
    use super::*;

    const CUSTOMER: &str = "01900000-0000-7000-8000-000000000001";

    fn parse(body: &str) -> Result<PurchaseRequest, (u16, String)> {
        PurchaseRequest::parse(body.as_bytes()).map_err(|error| {
            let problem = error.problem();
            let field = problem
                .extensions
                .get("field")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            (problem.status, field)
        })
    }

    fn with_amount(amount: &str) -> String {
        format!(r#"{{"customer_id":"{CUSTOMER}","amount_minor":{amount}}}"#)
    }

    #[test]
    fn a_full_purchase_parses_into_a_command() {
        let request = parse(&format!(
            r#"{{"customer_id":"{CUSTOMER}","amount_minor":250000,
                "line_items":[{{"sku":"A1","category":"mains","quantity":2,"unit_price_minor":125000}}],
                "occurred_at":"2025-01-31T14:05:00+01:00","reference":"till-7/0042"}}"#
        ))
        .unwrap();
        assert_eq!(request.customer_id.to_string(), CUSTOMER);
        assert_eq!(request.amount, MinorUnits::new(250_000));
        assert_eq!(
            request.line_items,
            vec![LineItem {
                sku: "A1".into(),
                category: Some("mains".into()),
                quantity: 2,
                unit_price: MinorUnits::new(125_000)
            }]
        );
        assert_eq!(
            request.occurred_at.unwrap().to_rfc3339(),
            "2025-01-31T13:05:00+00:00"
        );
        assert_eq!(request.reference.as_deref(), Some("till-7/0042"));

        let at = DateTime::parse_from_rfc3339("2025-02-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let ids = (
            PurchaseId::from_uuid(Uuid::from_u128(1)),
            LotId::from_uuid(Uuid::from_u128(2)),
        );
        match request.into_command(ids.0, ids.1, at) {
            Command::LogPurchase {
                purchase_id,
                lot_id,
                amount,
                at: command_at,
                ..
            } => {
                assert_eq!((purchase_id, lot_id), ids);
                assert_eq!(amount, MinorUnits::new(250_000));
                assert_eq!(command_at, at);
            }
            other => panic!("not a purchase: {other:?}"),
        }
    }

    #[test]
    fn optional_fields_may_be_absent_or_null() {
        let request = parse(&format!(
            r#"{{"customer_id":"{CUSTOMER}","amount_minor":1,"line_items":null,"occurred_at":null,"reference":null}}"#
        ))
        .unwrap();
        assert!(request.line_items.is_empty());
        assert_eq!(request.occurred_at, None);
        assert_eq!(request.reference, None);
    }

    /// One line per case: the body, then the status and the field the problem names.
    #[test]
    fn bad_purchases_are_refused_naming_the_field() {
        let max_plus_one = (MinorUnits::AMOUNT_MAX + 1).to_string();
        let too_many_items = format!(
            r#"{{"customer_id":"{CUSTOMER}","amount_minor":101,"line_items":[{}]}}"#,
            vec![r#"{"sku":"A","quantity":1,"unit_price_minor":1}"#; 101].join(",")
        );
        let long_sku = format!(
            r#"{{"customer_id":"{CUSTOMER}","amount_minor":1,"line_items":[{{"sku":"{}","quantity":1,"unit_price_minor":1}}]}}"#,
            "s".repeat(65)
        );
        let long_reference = format!(
            r#"{{"customer_id":"{CUSTOMER}","amount_minor":1,"reference":"{}"}}"#,
            "r".repeat(129)
        );
        let item = |json: &str| {
            format!(r#"{{"customer_id":"{CUSTOMER}","amount_minor":1,"line_items":[{json}]}}"#)
        };
        let cases: Vec<(String, u16, &str)> = vec![
            (with_amount("0"), 422, "amount_minor"),
            (with_amount("-1"), 422, "amount_minor"),
            (with_amount("12.5"), 422, "amount_minor"),
            (with_amount("1.0"), 422, "amount_minor"),
            (with_amount("1e3"), 422, "amount_minor"),
            (with_amount("\"100\""), 422, "amount_minor"),
            (with_amount("null"), 422, "amount_minor"),
            (with_amount("9223372036854775807"), 422, "amount_minor"),
            (with_amount("9223372036854775808"), 422, "amount_minor"),
            (with_amount("-9223372036854775809"), 422, "amount_minor"),
            (with_amount(&max_plus_one), 422, "amount_minor"),
            (with_amount("true"), 422, "amount_minor"),
            (
                format!(r#"{{"customer_id":"{CUSTOMER}"}}"#),
                422,
                "amount_minor",
            ),
            (r#"{"amount_minor":1}"#.to_owned(), 422, "customer_id"),
            (
                r#"{"customer_id":"not-a-uuid","amount_minor":1}"#.to_owned(),
                422,
                "customer_id",
            ),
            (
                r#"{"customer_id":42,"amount_minor":1}"#.to_owned(),
                422,
                "customer_id",
            ),
            (
                format!(r#"{{"customer_id":"{CUSTOMER}","amount_minor":1,"points":5}}"#),
                422,
                "points",
            ),
            (
                format!(r#"{{"customer_id":"{CUSTOMER}","amount_minor":1,"line_items":{{}}}}"#),
                422,
                "line_items",
            ),
            (too_many_items, 422, "line_items"),
            (item("1"), 422, "line_items[0]"),
            (
                item(r#"{"sku":"A","quantity":0,"unit_price_minor":1}"#),
                422,
                "line_items[0].quantity",
            ),
            (
                item(r#"{"sku":"A","quantity":-1,"unit_price_minor":1}"#),
                422,
                "line_items[0].quantity",
            ),
            (
                item(r#"{"sku":"A","quantity":4294967296,"unit_price_minor":1}"#),
                422,
                "line_items[0].quantity",
            ),
            (
                item(r#"{"sku":"A","quantity":1,"unit_price_minor":-1}"#),
                422,
                "line_items[0].unit_price_minor",
            ),
            (
                item(r#"{"sku":"","quantity":1,"unit_price_minor":1}"#),
                422,
                "line_items[0].sku",
            ),
            (
                item(r#"{"quantity":1,"unit_price_minor":1}"#),
                422,
                "line_items[0].sku",
            ),
            (
                item(r#"{"sku":"A","quantity":1,"unit_price_minor":1,"colour":"red"}"#),
                422,
                "line_items[0].colour",
            ),
            (long_sku, 422, "line_items[0].sku"),
            (
                item(r#"{"sku":"A","category":"","quantity":1,"unit_price_minor":1}"#),
                422,
                "line_items[0].category",
            ),
            (
                item(&format!(
                    r#"{{"sku":"A","category":"{}","quantity":1,"unit_price_minor":1}}"#,
                    "c".repeat(65)
                )),
                422,
                "line_items[0].category",
            ),
            (
                item(r#"{"sku":"A","category":7,"quantity":1,"unit_price_minor":1}"#),
                422,
                "line_items[0].category",
            ),
            (
                format!(
                    r#"{{"customer_id":"{CUSTOMER}","amount_minor":1,"occurred_at":"yesterday"}}"#
                ),
                422,
                "occurred_at",
            ),
            (long_reference, 422, "reference"),
            ("{".to_owned(), 400, ""),
            ("".to_owned(), 400, ""),
            ("[]".to_owned(), 400, ""),
            (
                format!(r#"{{"customer_id":"{CUSTOMER}","amount_minor":1}} trailing"#),
                400,
                "",
            ),
            ("{\"amount_minor\":1e400}".to_owned(), 400, ""),
        ];
        for (body, status, field) in cases {
            assert_eq!(
                parse(&body).map(|_| ()),
                Err((status, field.to_owned())),
                "{body}"
            );
        }
    }

    #[test]
    fn amounts_at_the_limits() {
        assert!(parse(&with_amount("1")).is_ok());
        assert!(parse(&with_amount(&MinorUnits::AMOUNT_MAX.to_string())).is_ok());
        let reference_at_limit = format!(
            r#"{{"customer_id":"{CUSTOMER}","amount_minor":1,"reference":"{}"}}"#,
            "r".repeat(128)
        );
        assert!(parse(&reference_at_limit).is_ok());
    }
}
