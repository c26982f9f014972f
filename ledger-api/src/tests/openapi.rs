//! The served document and the route table against the running app: `/openapi.json` is
//! served, every route of the table is registered with the access it declares, and the
//! `Idempotency-Key` is read exactly where the document says.

use super::*;
use crate::accounts::AccountsConfig;
use crate::jwt::{Claims, JwtKeys};
use crate::openapi::ApiDoc;
use base64::{engine::general_purpose::STANDARD, Engine};
use schema::accounts::UserStatus;
use utoipa::OpenApi;

/// A request for one route of the table, with `{customer_id}` filled in.
fn request_for(method: &Method, path: &str) -> TestRequest {
    let uri = path
        .replace("{customer_id}", &customer().to_string())
        .replace("{reward_id}", &uuid::Uuid::from_u128(77).to_string())
        .replace("{code}", "04HMASW9");
    TestRequest::default().method(method.clone()).uri(&uri)
}

#[actix_web::test]
async fn the_openapi_document_is_served_without_credentials() {
    let answer = call(state(), TestRequest::get().uri("/openapi.json")).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.content_type, "application/json");
    let served = answer.json();
    let version = served["openapi"].as_str().expect("an openapi version");
    assert!(version.starts_with("3.1."), "{version}");
    assert_eq!(
        served,
        serde_json::to_value(ApiDoc::openapi()).unwrap(),
        "the served document is the generated one"
    );
    for (path, item) in served["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("a path item") {
            let responses = operation["responses"].as_object().expect("responses");
            assert!(!responses.is_empty(), "{method} {path}");
        }
    }
}

/// The server registers the table: each route answers (no 404 `not-found`, no 405), and a
/// vendor route refuses a request without credentials while a public route serves it.
#[actix_web::test]
async fn every_route_in_the_table_is_served_with_its_access() {
    for spec in route_table() {
        let answer = call(state(), request_for(&spec.method, spec.path)).await;
        let what = format!("{} {}", spec.method, spec.path);
        assert_ne!(answer.status, StatusCode::NOT_FOUND, "{what}");
        assert_ne!(answer.status, StatusCode::METHOD_NOT_ALLOWED, "{what}");
        match spec.access {
            Access::Vendor => {
                answer.assert_problem(401, "unauthenticated");
            }
            Access::Public => {
                assert_ne!(answer.status, StatusCode::UNAUTHORIZED, "{what}");
            }
        }
    }
}

/// A state like [`state`] that also accepts access tokens, and a token of an active owner
/// of `tenant()`: the one principal every vendor route authorizes (API keys never hold the
/// owner role, and erasure is for owners only).
fn owner_state() -> (web::Data<ApiState>, String) {
    let keys = JwtKeys::parse(&format!("t:{}", STANDARD.encode([7u8; 32]))).unwrap();
    let config = AccountsConfig {
        jwt_keys: keys.clone(),
        ..AccountsConfig::default()
    };
    let state = Arc::try_unwrap(state().into_inner())
        .unwrap_or_else(|_| panic!("a fresh state is not shared yet"))
        .with_accounts(config);
    let owner = Uuid::from_u128(4);
    state.user_statuses.insert(
        owner,
        Some(UserStatus {
            role: Role::Owner,
            active: true,
        }),
        Instant::now(),
    );
    let now = chrono::Utc::now().timestamp();
    let token = keys
        .sign(&Claims::access(owner, tenant(), Role::Owner.as_str(), now))
        .unwrap();
    (web::Data::new(state), token)
}

/// Where the document declares an `Idempotency-Key`, the handler reads it (a malformed key
/// is 400 `idempotency-key-invalid`; a missing one is 400 `idempotency-key-missing` exactly
/// where it is declared required); elsewhere the header is ignored. The caller is an owner,
/// so that no route refuses it (403) before reading the header.
#[actix_web::test]
async fn the_idempotency_key_is_read_where_the_document_declares_it() {
    let document = serde_json::to_value(ApiDoc::openapi()).unwrap();
    // The token only: each request gets a fresh state, so no rate limit is reached however
    // many routes there are.
    let (_, token) = owner_state();
    for spec in route_table() {
        if spec.access != Access::Vendor {
            continue;
        }
        let method = spec.method.as_str().to_lowercase();
        let declared = document["paths"][spec.path][&method]["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["in"] == "header" && p["name"] == "Idempotency-Key")
            .map(|p| p["required"] == true);
        let what = format!("{} {}", spec.method, spec.path);
        let authorised = |key: Option<&str>| {
            let mut request = request_for(&spec.method, spec.path)
                .insert_header(("Authorization", format!("Bearer {token}")))
                .insert_header(("Content-Type", "application/json"))
                .set_payload("{}");
            if let Some(key) = key {
                request = request.insert_header(("Idempotency-Key", key));
            }
            request
        };
        let malformed = call(owner_state().0, authorised(Some("has space"))).await;
        let missing = call(owner_state().0, authorised(None)).await;
        let slug = |answer: &Answer| {
            serde_json::from_slice::<Value>(&answer.body)
                .ok()
                .and_then(|v| v["type"].as_str().map(str::to_owned))
                .unwrap_or_default()
        };
        let invalid = format!(
            "{}idempotency-key-invalid",
            crate::problem::PROBLEM_TYPE_BASE
        );
        let required = format!(
            "{}idempotency-key-missing",
            crate::problem::PROBLEM_TYPE_BASE
        );
        match declared {
            Some(is_required) => {
                malformed.assert_problem(400, "idempotency-key-invalid");
                assert_eq!(slug(&missing) == required, is_required, "{what}");
            }
            None => {
                assert_ne!(slug(&malformed), invalid, "{what}");
                assert_ne!(slug(&missing), required, "{what}");
            }
        }
    }
}
