//! The HTTP surface without a database: routing, authentication, header and body checks,
//! and the problems they answer with. The database is unreachable on purpose, so anything
//! that gets as far as Postgres must answer 503 (never 500, never a leak of the cause).
//! Behaviour with a real database is tested by the root crate's integration tests.

use super::*;
use crate::auth::CachedKey;
use actix_web::http::header::{HeaderValue, CONTENT_TYPE};
use actix_web::http::{Method, StatusCode};
use actix_web::test::{self, TestRequest};
use ledger_core::{CustomerId, TenantId};
use schema::accounts::Role;
use schema::{DbSettings, WriterConfig};
use serde_json::Value;
use std::time::Duration;
use uuid::Uuid;

mod openapi;

const KEY: &str = "ll_00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const UNKNOWN_KEY: &str = "ll_ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";
const BODY_BYTES_MAX: usize = 1024;

fn tenant() -> TenantId {
    TenantId::from_uuid(Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001))
}

fn customer() -> CustomerId {
    CustomerId::from_uuid(Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0002))
}

/// State whose database refuses connections (port 1), with `KEY` already cached as an
/// active key of `tenant()` and `customer()` known to belong to it.
/// A vault with random keys: unit tests never open anything sealed by another run.
pub(crate) fn test_vault() -> Arc<vault::Vault> {
    let vault = vault::Vault::from_config(
        &format!("test:{}", vault::generate_key_base64().unwrap()),
        &vault::generate_key_base64().unwrap(),
    )
    .unwrap();
    Arc::new(vault)
}

fn state() -> web::Data<ApiState> {
    let pool = schema::db::pool(&DbSettings {
        url: "postgres://nobody:secret-password@127.0.0.1:1/nowhere".into(),
        pool_size_max: 2,
        login_role: None,
    })
    .expect("a pool builds without connecting");
    let config = WriterConfig {
        batch_size_max: 8,
        batch_wait_max: Duration::from_micros(100),
        queue_capacity: 8,
        cached_streams_max: 8,
    };
    let (writer, _task) =
        schema::writer::spawn(pool.clone(), config, Arc::new(tokio::sync::Notify::new()));
    let state = ApiState::new(
        pool,
        writer,
        Arc::new(|| false),
        BODY_BYTES_MAX,
        test_vault(),
    );
    let key = CachedKey {
        tenant_id: tenant(),
        api_key_id: Uuid::from_u128(3),
        role: Role::Staff,
    };
    state
        .api_keys
        .insert(schema::api_keys::hash_key(KEY), key, Instant::now());
    web::Data::new(state)
}

struct Answer {
    status: StatusCode,
    content_type: String,
    headers: actix_web::http::header::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// Checks the answer is an RFC 9457 problem with this status and type slug.
    fn assert_problem(&self, status: u16, slug: &str) -> Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(self.content_type, "application/problem+json");
        let problem = self.json();
        assert_eq!(
            problem["type"],
            format!("https://loyalty-ledger.dev/problems/{slug}")
        );
        assert_eq!(problem["status"], status);
        assert!(problem["title"].is_string() && problem["detail"].is_string());
        problem
    }
}

async fn call(state: web::Data<ApiState>, request: TestRequest) -> Answer {
    let app = test::init_service(app(state)).await;
    let response = test::call_service(&app, request.to_request()).await;
    let status = response.status();
    let headers = response.headers().clone();
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = test::read_body(response).await.to_vec();
    Answer {
        status,
        content_type,
        headers,
        body,
    }
}

fn post(path: &str, body: &str) -> TestRequest {
    TestRequest::post()
        .uri(path)
        .insert_header(("Authorization", format!("Bearer {KEY}")))
        .insert_header(("Content-Type", "application/json"))
        .insert_header(("Idempotency-Key", "key-1"))
        .set_payload(body.to_owned())
}

fn purchase_body() -> String {
    format!(
        r#"{{"customer_id":"{}","amount_minor":250000}}"#,
        customer()
    )
}

#[actix_web::test]
async fn health_answers_ok() {
    let answer = call(state(), TestRequest::get().uri("/health")).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json(), serde_json::json!({"status": "ok"}));
}

#[actix_web::test]
async fn unknown_routes_and_methods_are_problems() {
    call(state(), TestRequest::get().uri("/v2/nothing"))
        .await
        .assert_problem(404, "not-found");
    call(state(), TestRequest::get().uri("/v1/purchases"))
        .await
        .assert_problem(405, "method-not-allowed");
    call(
        state(),
        TestRequest::default()
            .method(Method::DELETE)
            .uri("/v1/customers"),
    )
    .await
    .assert_problem(405, "method-not-allowed");
}

#[actix_web::test]
async fn missing_or_malformed_keys_are_401_with_a_bearer_challenge() {
    for authorization in [
        None,
        Some("Bearer nope".to_owned()),
        Some(format!("Basic {KEY}")),
    ] {
        let mut request = TestRequest::post()
            .uri("/v1/purchases")
            .insert_header(("Content-Type", "application/json"))
            .insert_header(("Idempotency-Key", "k"))
            .set_payload(purchase_body());
        if let Some(value) = &authorization {
            request = request.insert_header(("Authorization", value.as_str()));
        }
        let answer = call(state(), request).await;
        answer.assert_problem(401, "unauthenticated");
        assert_eq!(
            answer.headers.get("WWW-Authenticate"),
            Some(&HeaderValue::from_static("Bearer"))
        );
    }
}

#[actix_web::test]
async fn a_database_outage_is_503_with_retry_after_and_no_leak() {
    let request = TestRequest::get()
        .uri(&format!("/v1/customers/{}", customer()))
        .insert_header(("Authorization", format!("Bearer {UNKNOWN_KEY}")));
    let answer = call(state(), request).await;
    answer.assert_problem(503, "unavailable");
    assert_eq!(
        answer.headers.get("Retry-After"),
        Some(&HeaderValue::from_static("1"))
    );
    let body = String::from_utf8_lossy(&answer.body);
    assert!(
        !body.contains("secret-password") && !body.contains("127.0.0.1"),
        "{body}"
    );
}

#[actix_web::test]
async fn a_valid_purchase_with_the_writer_unavailable_is_503() {
    let state = state();
    let answer = call(state.clone(), post("/v1/purchases", &purchase_body())).await;
    answer.assert_problem(503, "unavailable");
    assert_eq!(
        answer.headers.get("Retry-After"),
        Some(&HeaderValue::from_static("1"))
    );
    let metrics = call(state, TestRequest::get().uri("/metrics")).await;
    let text = String::from_utf8(metrics.body).unwrap();
    assert!(
        text.contains("loyalty_commands_total{outcome=\"unavailable\"} 1"),
        "{text}"
    );
}

#[actix_web::test]
async fn purchases_need_a_valid_idempotency_key() {
    let request = TestRequest::post()
        .uri("/v1/purchases")
        .insert_header(("Authorization", format!("Bearer {KEY}")))
        .insert_header(("Content-Type", "application/json"))
        .set_payload(purchase_body());
    let problem = call(state(), request)
        .await
        .assert_problem(400, "idempotency-key-missing");
    assert_eq!(problem["header"], "Idempotency-Key");

    let request =
        post("/v1/purchases", &purchase_body()).insert_header(("Idempotency-Key", "has space"));
    call(state(), request)
        .await
        .assert_problem(400, "idempotency-key-invalid");
}

#[actix_web::test]
async fn bodies_must_be_json_within_the_limit() {
    let request =
        post("/v1/purchases", &purchase_body()).insert_header(("Content-Type", "text/plain"));
    call(state(), request)
        .await
        .assert_problem(415, "unsupported-media-type");

    let request = post("/v1/purchases", &purchase_body())
        .insert_header(("Content-Type", "application/json; charset=utf-8"));
    call(state(), request)
        .await
        .assert_problem(503, "unavailable");

    let oversize = format!(r#"{{"reference":"{}"}}"#, "x".repeat(BODY_BYTES_MAX));
    let problem = call(state(), post("/v1/purchases", &oversize))
        .await
        .assert_problem(413, "payload-too-large");
    assert_eq!(problem["limit_bytes"], BODY_BYTES_MAX);

    call(state(), post("/v1/purchases", "{not json"))
        .await
        .assert_problem(400, "malformed-json");

    let problem = call(
        state(),
        post(
            "/v1/purchases",
            &format!(r#"{{"customer_id":"{}","amount_minor":12.5}}"#, customer()),
        ),
    )
    .await
    .assert_problem(422, "invalid-field");
    assert_eq!(problem["field"], "amount_minor");
}

#[actix_web::test]
async fn bad_path_ids_and_queries_are_problems() {
    let authorized = |uri: &str| {
        TestRequest::get()
            .uri(uri)
            .insert_header(("Authorization", format!("Bearer {KEY}")))
    };
    call(state(), authorized("/v1/customers/not-a-uuid"))
        .await
        .assert_problem(404, "customer-not-found");
    call(state(), authorized("/v1/customers/not-a-uuid/history"))
        .await
        .assert_problem(404, "customer-not-found");
    let problem = call(
        state(),
        authorized(&format!("/v1/customers/{}/history?limit=0", customer())),
    )
    .await
    .assert_problem(400, "invalid-query");
    assert_eq!(problem["parameter"], "limit");
}

#[actix_web::test]
async fn not_ready_names_what_failed() {
    let answer = call(state(), TestRequest::get().uri("/ready")).await;
    let problem = answer.assert_problem(503, "not-ready");
    assert_eq!(problem["checks"]["postgres"], "failed");
    assert_eq!(problem["checks"]["nats"], "failed");
}

#[actix_web::test]
async fn metrics_are_prometheus_text() {
    let state = state();
    call(state.clone(), TestRequest::get().uri("/health")).await;
    call(state.clone(), TestRequest::get().uri("/nowhere")).await;
    let answer = call(state, TestRequest::get().uri("/metrics")).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.content_type, "text/plain; version=0.0.4");
    let text = String::from_utf8(answer.body).unwrap();
    assert!(
        text.contains("loyalty_http_requests_total{status_class=\"2xx\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("loyalty_http_requests_total{status_class=\"4xx\"} 1"),
        "{text}"
    );
}

#[test]
fn stored_responses_keep_their_bytes_and_get_a_content_type_by_status() {
    let created = commands::stored_response(
        schema::StoredResponse {
            status: 201,
            body: b"{\"a\":1}".to_vec(),
        },
        true,
    );
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(
        created.headers().get(CONTENT_TYPE).unwrap(),
        "application/json"
    );
    assert_eq!(
        created.headers().get("Idempotent-Replayed").unwrap(),
        "true"
    );
    let refused = commands::stored_response(
        schema::StoredResponse {
            status: 409,
            body: b"{}".to_vec(),
        },
        false,
    );
    assert_eq!(
        refused.headers().get(CONTENT_TYPE).unwrap(),
        "application/problem+json"
    );
    assert!(refused.headers().get("Idempotent-Replayed").is_none());
}
