//! `POST /v1/customers` (enrol) and `GET /v1/customers/{id}` (balance and open lots).
//!
//! The balance is read from the balances read model (`projection.customer_balances` and
//! `projection.point_lots`), which the balances projector keeps up to date from the event
//! stream: it may lag the ledger by milliseconds, so a GET right after a purchase can show
//! the balance before it. The purchase's own response always has the new balance
//! (read-your-writes). A customer the projector has not reached yet (just enrolled) is
//! folded from the event store instead, so a fresh enrolment is never answered 404.

use crate::auth::Caller;
use crate::body::{self, JsonObject};
use crate::commands;
use crate::idempotency::IdempotencyKey;
use crate::problem::ApiError;
use crate::{render, ApiState};
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use ledger_core::aggregate::Aggregate;
use ledger_core::{Command, CustomerId, CustomerState, LotId, PhoneNumber, StreamId, TenantId};
use serde::Serialize;
use tokio_postgres::Row;
use uuid::Uuid;

/// Most open lots listed by `GET /v1/customers/{id}` (soonest-expiring first): the balance
/// always counts all of them; the list is for display.
pub const LOTS_LISTED_MAX: i64 = 500;
/// Events read per round trip when folding a customer from the event store.
const STREAM_PAGE_EVENTS: i64 = 1_000;

/// An enrolment as a client may send it. Built only by [`EnrolmentRequest::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrolmentRequest {
    pub phone: PhoneNumber,
}

impl EnrolmentRequest {
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let object = JsonObject::parse(body)?;
        object.deny_unknown(&["phone"])?;
        let phone = object.required("phone", |value| match value {
            // The error never echoes the number: phone numbers stay out of logs.
            serde_json::Value::String(raw) => {
                PhoneNumber::parse(raw).map_err(|e| format!("is invalid: {e}"))
            }
            _ => Err("must be a string in E.164 form, e.g. +2348012345678".to_owned()),
        })?;
        Ok(EnrolmentRequest { phone })
    }

    pub fn into_command(self, customer_id: CustomerId, at: DateTime<Utc>) -> Command {
        Command::EnrolCustomer {
            customer_id,
            phone: self.phone,
            at,
        }
    }
}

#[tracing::instrument(name = "enrol_customer", skip_all, fields(tenant_id = %caller.tenant_id))]
pub async fn enrol(
    caller: Caller,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    caller.authorize(schema::accounts::Permission::EnrolCustomer)?;
    let key = IdempotencyKey::optional(&req)?;
    let body = body::read_json(&req, payload, state.body_bytes_max).await?;
    let request = EnrolmentRequest::parse(&body)?;
    let command = request.into_command(CustomerId::from_uuid(Uuid::now_v7()), commands::now());
    let claim = key.map(|key| key.claim(req.method().as_str(), req.path(), &body));
    let submission = caller.submission(command, claim, render::enrolment);
    commands::submit(&state, submission).await
}

/// `200` body of `GET /v1/customers/{id}`.
#[derive(Debug, Serialize)]
pub struct CustomerView {
    pub customer_id: CustomerId,
    pub phone: String,
    pub balance: i64,
    pub earned: i64,
    pub redeemed: i64,
    pub expired: i64,
    pub purchases: i64,
    pub enrolled_at: DateTime<Utc>,
    /// Open lots (points remaining), soonest-expiring first.
    pub lots: Vec<LotView>,
}

#[derive(Debug, Serialize)]
pub struct LotView {
    pub lot_id: LotId,
    pub points: i64,
    pub remaining: i64,
    pub earned_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A customer id from the path. Not a UUID means no such customer: 404, like an unknown id.
pub fn customer_in_path(raw: &str) -> Result<CustomerId, ApiError> {
    CustomerId::parse(raw).map_err(|_| ApiError::CustomerNotFound)
}

#[tracing::instrument(name = "show_customer", skip_all, fields(tenant_id = %caller.tenant_id))]
pub async fn show(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    caller.authorize(schema::accounts::Permission::ReadCustomer)?;
    let customer_id = customer_in_path(&path)?;
    let client = state.client().await?;
    let view = match projected(&client, caller.tenant_id, customer_id).await? {
        Some(view) => view,
        None => folded_from_events(&client, caller.tenant_id, customer_id)
            .await?
            .ok_or(ApiError::CustomerNotFound)?,
    };
    Ok(HttpResponse::Ok().json(view))
}

/// The customer from the read model, always filtered by the caller's tenant: another
/// tenant's customer is not found.
async fn projected(
    client: &tokio_postgres::Client,
    tenant_id: TenantId,
    customer_id: CustomerId,
) -> Result<Option<CustomerView>, ApiError> {
    let ids: [&(dyn tokio_postgres::types::ToSql + Sync); 2] =
        [&customer_id.as_uuid(), &tenant_id.as_uuid()];
    let row = client
        .query_opt(
            "SELECT customer_id, phone, balance, earned, redeemed, expired, purchases, enrolled_at \
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
            "SELECT lot_id, points, remaining, earned_at, expires_at FROM projection.point_lots \
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
    view_from_row(&row, lots).map(Some).map_err(column_failed)
}

fn view_from_row(row: &Row, lots: Vec<LotView>) -> Result<CustomerView, tokio_postgres::Error> {
    Ok(CustomerView {
        customer_id: CustomerId::from_uuid(row.try_get(0)?),
        phone: row.try_get(1)?,
        balance: row.try_get(2)?,
        earned: row.try_get(3)?,
        redeemed: row.try_get(4)?,
        expired: row.try_get(5)?,
        purchases: i64::from(row.try_get::<_, i32>(6)?),
        enrolled_at: row.try_get(7)?,
        lots,
    })
}

fn lot_from_row(row: &Row) -> Result<LotView, tokio_postgres::Error> {
    Ok(LotView {
        lot_id: LotId::from_uuid(row.try_get(0)?),
        points: row.try_get(1)?,
        remaining: row.try_get(2)?,
        earned_at: row.try_get(3)?,
        expires_at: row.try_get(4)?,
    })
}

/// The customer folded from its own stream: the answer for a customer enrolled a moment
/// ago, before the projector has written its row. `None` when there is no such stream or it
/// belongs to another tenant.
async fn folded_from_events(
    client: &tokio_postgres::Client,
    tenant_id: TenantId,
    customer_id: CustomerId,
) -> Result<Option<CustomerView>, ApiError> {
    let stream = StreamId::Customer(customer_id);
    let mut state = CustomerState::default();
    let mut version = 0;
    loop {
        let page = schema::store::read_stream(client, stream, version, STREAM_PAGE_EVENTS)
            .await
            .map_err(|e| ApiError::Unavailable(format!("reading {stream}: {e}")))?;
        let Some(last) = page.last() else {
            break;
        };
        version = last.version;
        for recorded in &page {
            if recorded.tenant_id != tenant_id {
                return Ok(None);
            }
            let event = recorded.decode().map_err(|e| {
                ApiError::Internal(format!("event {} does not decode: {e}", recorded.event_id))
            })?;
            state.apply(&event);
        }
    }
    Ok(view_from_state(&state))
}

fn view_from_state(state: &CustomerState) -> Option<CustomerView> {
    let profile = state.profile.as_ref()?;
    let mut lots: Vec<LotView> = state
        .lots
        .iter()
        .filter(|lot| lot.remaining.is_positive())
        .map(|lot| LotView {
            lot_id: lot.lot_id,
            points: lot.points.value(),
            remaining: lot.remaining.value(),
            earned_at: lot.earned_at,
            expires_at: lot.expires_at,
        })
        .collect();
    lots.sort_by_key(|lot| (lot.expires_at, lot.earned_at, lot.lot_id));
    lots.truncate(usize::try_from(LOTS_LISTED_MAX).unwrap_or(usize::MAX));
    Some(CustomerView {
        customer_id: profile.customer_id,
        phone: profile.phone.as_str().to_owned(),
        balance: state.balance.value(),
        earned: state.earned.value(),
        redeemed: state.redeemed.value(),
        expired: state.expired.value(),
        purchases: i64::from(state.purchases),
        enrolled_at: profile.enrolled_at,
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
            parse(r#"{"phone":"+2348012345678","name":"Ada"}"#)
                .unwrap_err()
                .1,
            "name"
        );
        assert_eq!(parse("phone=+2348012345678").unwrap_err().0, 400);
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
