//! Operator endpoints, without authentication: `/health` (liveness: the process answers),
//! `/ready` (readiness: Postgres and NATS answer; a load balancer stops sending traffic
//! while they do not) and `/metrics` (Prometheus).

use crate::problem::{Problem, PROBLEM_CONTENT_TYPE};
use crate::{metrics, ApiState};
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde_json::json;
use std::time::Duration;

/// Longest the readiness probe waits for Postgres.
pub const READY_DATABASE_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

pub async fn ready(state: web::Data<ApiState>) -> HttpResponse {
    let postgres = database_answers(&state).await;
    let nats = (state.nats_ready)();
    let checks = json!({
        "postgres": if postgres { "ok" } else { "failed" },
        "nats": if nats { "ok" } else { "failed" },
    });
    if postgres && nats {
        return HttpResponse::Ok().json(json!({"status": "ready", "checks": checks}));
    }
    let failed: Vec<&str> = [("postgres", postgres), ("nats", nats)]
        .into_iter()
        .filter(|(_, ok)| !ok)
        .map(|(name, _)| name)
        .collect();
    let problem = Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "not-ready",
        "Not ready",
        format!("not ready: {} did not answer", failed.join(" and ")),
    )
    .with("checks", checks);
    HttpResponse::ServiceUnavailable()
        .content_type(PROBLEM_CONTENT_TYPE)
        .body(problem.to_bytes())
}

/// Whether `SELECT 1` succeeds within [`READY_DATABASE_TIMEOUT`], connection included.
async fn database_answers(state: &ApiState) -> bool {
    let probe = async {
        let client = state.pool.get().await.map_err(|e| e.to_string())?;
        client
            .query_one("SELECT 1", &[])
            .await
            .map_err(|e| e.to_string())
    };
    match tokio::time::timeout(READY_DATABASE_TIMEOUT, probe).await {
        Ok(Ok(_)) => true,
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness: Postgres did not answer");
            false
        }
        Err(_) => {
            tracing::warn!("readiness: Postgres did not answer within {READY_DATABASE_TIMEOUT:?}");
            false
        }
    }
}

pub async fn metrics(state: web::Data<ApiState>) -> HttpResponse {
    let mut text = String::with_capacity(4096);
    state.metrics.render(&mut text);
    if let Some(source) = &state.extra_metrics {
        source(&mut text);
    }
    HttpResponse::Ok()
        .content_type(metrics::CONTENT_TYPE)
        .body(text)
}
