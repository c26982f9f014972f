//! The edge against the real server: the per-API-key rate limit refuses one key with a 429
//! that says when to retry, does not touch another tenant's key behind the same address,
//! and lets the first key back in once the wait is over.

use crate::helpers::{create_tenant, phone, TestApp};
use serde_json::Value;
use std::time::Duration;
use uuid::Uuid;

/// Per key: 2 a second, bursts of 3; per address: far more, so only the key limit bites.
const PRINCIPAL_PER_SECOND: u32 = 2;
const PRINCIPAL_BURST: u32 = 3;
const REQUESTS_MAX: usize = 50;

#[tokio::test]
async fn one_api_key_over_its_limit_is_refused_alone_and_served_again_after_retry_after() {
    let app = TestApp::spawn_with_settings(|settings| {
        settings.edge.rate_limit_principal_per_second = PRINCIPAL_PER_SECOND;
        settings.edge.rate_limit_principal_burst = PRINCIPAL_BURST;
        settings.edge.rate_limit_ip_per_second = 1_000;
        settings.edge.rate_limit_ip_burst = 1_000;
    })
    .await;
    let unknown_customer = format!("/v1/customers/{}", Uuid::now_v7());

    let mut served = 0;
    let refusal = loop {
        let response = app.get(&unknown_customer).await;
        if response.status() == 429 {
            break response;
        }
        assert_eq!(response.status(), 404, "served before the limit");
        served += 1;
        assert!(
            served < REQUESTS_MAX,
            "no 429 after {REQUESTS_MAX} requests"
        );
    };
    assert!(
        served >= PRINCIPAL_BURST as usize,
        "a burst of {PRINCIPAL_BURST} is allowed, got {served}"
    );
    let retry_after: u64 = refusal
        .headers()
        .get("retry-after")
        .expect("a Retry-After header")
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in whole seconds");
    assert!(retry_after >= 1, "Retry-After: {retry_after}");
    assert_eq!(
        refusal.headers().get("content-type").unwrap(),
        "application/problem+json"
    );
    assert_eq!(
        refusal.headers().get("x-content-type-options").unwrap(),
        "nosniff"
    );
    let problem: Value = refusal.json().await.unwrap();
    assert_eq!(
        problem["type"],
        "https://loyalty-ledger.dev/problems/rate-limited"
    );
    assert_eq!(problem["status"], 429);

    // Another tenant's key, from the same address, has its own quota.
    let (_, other_key) = create_tenant(&app.pool, &app.settings).await;
    let enrolment = app
        .http
        .post(app.url("/v1/customers"))
        .bearer_auth(&other_key)
        .json(&serde_json::json!({ "phone": phone() }))
        .send()
        .await
        .expect("POST /v1/customers");
    assert_eq!(enrolment.status(), 201);

    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    let again = app.get(&unknown_customer).await;
    assert_eq!(again.status(), 404, "served again after Retry-After");
    app.stop().await;
}
