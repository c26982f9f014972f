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

#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    responses(
        (status = 200, description = "Liveness: the process answers. Not rate-limited.", body = crate::openapi::HealthBody),
    )
)]
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

#[utoipa::path(
    get,
    path = "/ready",
    tag = "operations",
    responses(
        (status = 200, description = "Readiness: PostgreSQL and NATS answer. Not rate-limited.", body = crate::openapi::ReadyBody),
        (status = 503, description = "`not-ready`: `checks` names what did not answer.", body = crate::problem::Problem, content_type = "application/problem+json"),
    )
)]
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

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "Prometheus text exposition.", body = String, content_type = "text/plain; version=0.0.4"),
        (status = 429, response = crate::openapi::RateLimited),
    )
)]
pub async fn metrics(state: web::Data<ApiState>) -> HttpResponse {
    let mut text = String::with_capacity(4096);
    state.metrics.render(&mut text);
    metrics::render_writer(&state.writer.stats(), &mut text);
    fan_out_metrics(&state, &mut text).await;
    HttpResponse::Ok()
        .content_type(metrics::CONTENT_TYPE)
        .body(text)
}

/// Fan-out progress, read from the database so that it is right whichever process runs the
/// relay and the projectors: the newest event's position, the relay's cursor (their
/// difference approximates the events not yet on JetStream; positions can skip numbers)
/// and what the relay and each projector have done in total.
async fn fan_out_metrics(state: &ApiState, out: &mut String) {
    let query = async {
        let client = state.pool.get().await.map_err(|e| e.to_string())?;
        let head = client
            .query_one(
                "SELECT tenancy.newest_event_position(), \
                        (SELECT coalesce(min(last_global_position), 0) FROM relay_cursors), \
                        (SELECT coalesce(sum(published_total), 0) FROM relay_cursors)::bigint",
                &[],
            )
            .await
            .map_err(|e| e.to_string())?;
        let projectors = client
            .query(
                "SELECT name, applied_total, last_stream_sequence FROM projector_checkpoints ORDER BY name",
                &[],
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((head, projectors))
    };
    let (head, projectors) = match tokio::time::timeout(READY_DATABASE_TIMEOUT, query).await {
        Ok(Ok(rows)) => rows,
        Ok(Err(error)) => {
            tracing::warn!(%error, "metrics: fan-out progress unavailable");
            return;
        }
        Err(_) => return,
    };
    let position_gauges = [
        (
            "loyalty_events_last_position",
            "Global position of the newest event.",
            0,
        ),
        (
            "loyalty_relay_position",
            "Global position up to which the relay has published.",
            1,
        ),
    ];
    for (name, help, column) in position_gauges {
        metrics::family(out, name, "gauge", help);
        metrics::sample(out, name, "", head.get::<_, i64>(column));
    }
    let published = "loyalty_relay_published_total";
    metrics::family(
        out,
        published,
        "counter",
        "Events the relay has published to JetStream.",
    );
    metrics::sample(out, published, "", head.get::<_, i64>(2));
    let per_projector = [
        (
            "loyalty_projector_applied_total",
            "counter",
            "Events offered to each projector and committed (duplicates included).",
            1,
        ),
        (
            "loyalty_projector_stream_sequence",
            "gauge",
            "Last JetStream sequence each projector committed.",
            2,
        ),
    ];
    for (name, kind, help, column) in per_projector {
        metrics::family(out, name, kind, help);
        for row in &projectors {
            let projection: String = row.get(0);
            let labels = format!("projection=\"{projection}\"");
            metrics::sample(out, name, &labels, row.get::<_, i64>(column));
        }
    }
}

/// `200` body of `/.well-known/loyalty-ledger/audit-keys`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct AuditKeys {
    /// The keys chain-head signatures are checked with; empty while the platform signs
    /// nothing (no key configured).
    pub keys: Vec<AuditKey>,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct AuditKey {
    /// As stored beside each signature (`ed25519:` and 16 hex digits).
    pub key_id: String,
    #[schema(example = "Ed25519")]
    pub algorithm: &'static str,
    /// The 32-byte public key, base64: what `loyalty audit verify --public-key` takes.
    pub public_key: String,
}

#[utoipa::path(
    get,
    path = "/.well-known/loyalty-ledger/audit-keys",
    tag = "operations",
    responses(
        (status = 200, description = "The platform's public audit keys (Ed25519), which sign each tenant's chain head. No authentication.", body = AuditKeys),
        (status = 429, response = crate::openapi::RateLimited),
    )
)]
pub async fn audit_keys(state: web::Data<crate::ApiState>) -> HttpResponse {
    let keys = state
        .audit_public_key
        .iter()
        .map(|(key_id, public_key)| AuditKey {
            key_id: key_id.clone(),
            algorithm: "Ed25519",
            public_key: public_key.clone(),
        })
        .collect();
    HttpResponse::Ok().json(AuditKeys { keys })
}
