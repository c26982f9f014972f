//! The shell around the group-commit writer: what every command handler does after parsing.
//!
//! [`submit`] sends a [`Submission`] and turns the writer's [`Outcome`] into an HTTP
//! response. (The writer itself refuses a command on another tenant's customer: to a
//! tenant, another tenant's customer does not exist.)

use crate::metrics::CommandOutcome;
use crate::problem::{ApiError, JSON_CONTENT_TYPE, PROBLEM_CONTENT_TYPE};
use crate::ApiState;
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use chrono::{DateTime, SubsecRound, Utc};
use schema::{Outcome, StoredResponse, Submission};

/// The clock reading a command carries, at the microsecond the ledger stores, so what a
/// response shows equals what a later read returns.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// Sends a command to the writer and answers with its outcome.
pub async fn submit(state: &ApiState, submission: Submission) -> Result<HttpResponse, ApiError> {
    match state.writer.submit(submission).await {
        Ok(Outcome::Decided { response, .. }) => {
            let outcome = if response.status < 400 {
                CommandOutcome::Committed
            } else {
                CommandOutcome::Refused
            };
            state.metrics.count_command(outcome);
            Ok(stored_response(response, false))
        }
        Ok(Outcome::Replayed(response)) => {
            state.metrics.count_command(CommandOutcome::Replayed);
            Ok(stored_response(response, true))
        }
        Ok(Outcome::KeyReusedWithDifferentRequest) => {
            state.metrics.count_command(CommandOutcome::KeyReused);
            Err(ApiError::IdempotencyKeyReused)
        }
        Err(error) => {
            state.metrics.count_command(CommandOutcome::Unavailable);
            Err(ApiError::Unavailable(error.to_string()))
        }
    }
}

/// A stored response, byte for byte. Its content type follows from its status, since only
/// status and body are stored. A replay is marked with `Idempotent-Replayed: true` (as
/// Stripe does) so a client can tell, though the body is identical.
pub fn stored_response(response: StoredResponse, replayed: bool) -> HttpResponse {
    let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let content_type = if status.as_u16() >= 400 {
        PROBLEM_CONTENT_TYPE
    } else {
        JSON_CONTENT_TYPE
    };
    let mut builder = HttpResponse::build(status);
    builder.content_type(content_type);
    if replayed {
        builder.insert_header(("Idempotent-Replayed", "true"));
    }
    builder.body(response.body)
}
