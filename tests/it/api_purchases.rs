//! The vendor API: enrolment, purchases with idempotency keys, read-your-writes, and bad
//! input that gets a clear 4xx and writes nothing.

use crate::helpers::{phone, purchase, TestApp};
use serde_json::{json, Value};
use uuid::Uuid;

fn is_problem(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/problem+json"))
}

#[tokio::test]
async fn a_purchase_earns_points_and_answers_with_the_new_balance() {
    let app = TestApp::spawn().await;
    let customer = app.enrolled_customer(&phone()).await;

    let first = app.post_purchase("p-1", &purchase(customer, 250_000)).await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["points_earned"], 25);
    assert_eq!(first["balance"], 25);
    assert_eq!(first["rule_set_version"], 1);
    assert_eq!(first["breakdown"][0]["rule"], "per_amount_spent");
    assert_eq!(first["lot"]["points"], 25);

    let second: Value = app
        .post_purchase("p-2", &purchase(customer, 19_999))
        .await
        .json()
        .await
        .unwrap();
    // Read-your-writes: the balance comes from the command, not from the projection.
    assert_eq!(second["points_earned"], 1);
    assert_eq!(second["balance"], 26);
    assert!(second["lot"].is_object());

    app.wait_until_projected().await;
    let view: Value = app.get_json(&format!("/v1/customers/{customer}")).await;
    assert_eq!(view["balance"], 26);
    assert_eq!(view["lots"].as_array().unwrap().len(), 2);

    let history: Value = app
        .get_json(&format!("/v1/customers/{customer}/history"))
        .await;
    let entries = history["entries"].as_array().unwrap();
    // Enrolled, 2 × (PurchaseLogged, PointsEarned).
    assert_eq!(entries.len(), 5);
    assert!(entries
        .iter()
        .all(|e| e["reason"].as_str().is_some_and(|r| !r.is_empty())));
    app.stop().await;
}

#[tokio::test]
async fn the_same_key_and_body_return_the_first_response_byte_for_byte_and_append_nothing() {
    let app = TestApp::spawn().await;
    let customer = app.enrolled_customer(&phone()).await;
    let body = purchase(customer, 1_000_000);

    let first = app.post_purchase("same-key", &body).await;
    assert_eq!(first.status(), 201);
    let first_bytes = first.bytes().await.unwrap();
    let events_after_first = app.event_count().await;

    for _ in 0..3 {
        let again = app.post_purchase("same-key", &body).await;
        assert_eq!(again.status(), 201);
        assert_eq!(again.bytes().await.unwrap(), first_bytes);
    }
    assert_eq!(app.event_count().await, events_after_first);

    let different = app
        .post_purchase("same-key", &purchase(customer, 1_000_001))
        .await;
    assert_eq!(different.status(), 422);
    assert!(is_problem(&different));
    assert_eq!(app.event_count().await, events_after_first);
    app.stop().await;
}

#[tokio::test]
async fn concurrent_retries_of_one_key_append_once() {
    let app = TestApp::spawn().await;
    let customer = app.enrolled_customer(&phone()).await;
    let body = purchase(customer, 500_000);
    let before = app.event_count().await;
    let responses =
        futures_util::future::join_all((0..20).map(|_| app.post_purchase("racing-key", &body)))
            .await;
    let mut bodies = Vec::new();
    for response in responses {
        assert_eq!(response.status(), 201);
        bodies.push(response.bytes().await.unwrap());
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]));
    // One PurchaseLogged and one PointsEarned.
    assert_eq!(app.event_count().await, before + 2);
    app.stop().await;
}

#[tokio::test]
async fn an_enrolled_phone_cannot_be_enrolled_twice() {
    let app = TestApp::spawn().await;
    let number = phone();
    let customer = app.enrolled_customer(&number).await;
    let again = app.enrol(&number).await;
    assert_eq!(again.status(), 409);
    assert!(is_problem(&again));
    let body: Value = again.json().await.unwrap();
    assert_eq!(body["customer_id"], customer.to_string());
    app.stop().await;
}

#[tokio::test]
async fn redemption_spends_points_and_never_overdraws() {
    let app = TestApp::spawn().await;
    let customer = app.enrolled_customer(&phone()).await;
    app.post_purchase("earn", &purchase(customer, 1_000_000))
        .await; // 100 points

    let too_much = app.redeem("r-1", customer, 101).await;
    assert_eq!(too_much.status(), 409);
    let ok = app.redeem("r-2", customer, 60).await;
    assert_eq!(ok.status(), 201);
    let ok: Value = ok.json().await.unwrap();
    assert_eq!(ok["balance"], 40);

    // 10 concurrent redemptions of 10 against 40 points: exactly 4 succeed.
    let results = futures_util::future::join_all((0..10).map(|i| {
        let app = &app;
        async move {
            app.redeem(&format!("c-{i}"), customer, 10)
                .await
                .status()
                .as_u16()
        }
    }))
    .await;
    assert_eq!(
        results.iter().filter(|s| **s == 201).count(),
        4,
        "{results:?}"
    );
    assert_eq!(
        results.iter().filter(|s| **s == 409).count(),
        6,
        "{results:?}"
    );
    app.stop().await;
}

/// name, content type, idempotency key, body, acceptable statuses.
type BadCase<'a> = (
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    Vec<u8>,
    &'a [u16],
);

/// Every kind of bad input gets a 4xx problem+json and leaves the event table unchanged.
#[tokio::test]
async fn bad_input_gets_a_problem_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let customer = app.enrolled_customer(&phone()).await;
    let json_type = Some("application/json");
    let cases: Vec<BadCase> = vec![
        ("malformed JSON", json_type, Some("k1"), b"{\"customer_id\":".to_vec(), &[400]),
        ("not an object", json_type, Some("k2"), b"[1,2,3]".to_vec(), &[400, 422]),
        (
            "negative amount",
            json_type,
            Some("k3"),
            json!({"customer_id": customer, "amount_minor": -5}).to_string().into_bytes(),
            &[422],
        ),
        (
            "zero amount",
            json_type,
            Some("k4"),
            json!({"customer_id": customer, "amount_minor": 0}).to_string().into_bytes(),
            &[422],
        ),
        (
            "amount overflowing i64",
            json_type,
            Some("k5"),
            format!("{{\"customer_id\":\"{customer}\",\"amount_minor\":9223372036854775808}}").into_bytes(),
            &[400, 422],
        ),
        (
            "fractional amount",
            json_type,
            Some("k6"),
            format!("{{\"customer_id\":\"{customer}\",\"amount_minor\":12.5}}").into_bytes(),
            &[400, 422],
        ),
        (
            "amount as a string",
            json_type,
            Some("k7"),
            format!("{{\"customer_id\":\"{customer}\",\"amount_minor\":\"100\"}}").into_bytes(),
            &[400, 422],
        ),
        (
            "unknown field",
            json_type,
            Some("k8"),
            json!({"customer_id": customer, "amount_minor": 100, "amount": 5}).to_string().into_bytes(),
            &[400, 422],
        ),
        (
            "unknown customer",
            json_type,
            Some("k9"),
            json!({"customer_id": Uuid::new_v4(), "amount_minor": 100}).to_string().into_bytes(),
            &[404],
        ),
        (
            "not a uuid",
            json_type,
            Some("k10"),
            json!({"customer_id": "bob", "amount_minor": 100}).to_string().into_bytes(),
            &[400, 422],
        ),
        (
            "line items that do not add up",
            json_type,
            Some("k11"),
            json!({"customer_id": customer, "amount_minor": 100,
                   "line_items": [{"sku": "A", "quantity": 1, "unit_price_minor": 99}]})
            .to_string()
            .into_bytes(),
            &[422],
        ),
        (
            "wrong content type",
            Some("text/plain"),
            Some("k12"),
            json!({"customer_id": customer, "amount_minor": 100}).to_string().into_bytes(),
            &[415],
        ),
        (
            "no content type",
            None,
            Some("k13"),
            json!({"customer_id": customer, "amount_minor": 100}).to_string().into_bytes(),
            &[415],
        ),
        (
            "missing idempotency key",
            json_type,
            None,
            json!({"customer_id": customer, "amount_minor": 100}).to_string().into_bytes(),
            &[400],
        ),
        (
            "oversize body",
            json_type,
            Some("k14"),
            format!(
                "{{\"customer_id\":\"{customer}\",\"amount_minor\":100,\"reference\":\"{}\"}}",
                "x".repeat(100_000)
            )
            .into_bytes(),
            &[413],
        ),
        ("empty body", json_type, Some("k15"), Vec::new(), &[400]),
        (
            "future purchase",
            json_type,
            Some("k16"),
            json!({"customer_id": customer, "amount_minor": 100, "occurred_at": "2999-01-01T00:00:00Z"})
                .to_string()
                .into_bytes(),
            &[422],
        ),
    ];
    let before = app.event_count().await;
    for (name, content_type, key, body, expected) in cases {
        let response = app.post_raw("/v1/purchases", content_type, key, body).await;
        let status = response.status().as_u16();
        assert!(
            expected.contains(&status),
            "{name}: got {status}, expected {expected:?}"
        );
        assert!(is_problem(&response), "{name}: not problem+json");
        let problem: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(problem["status"], status, "{name}: problem body status");
        assert_eq!(app.event_count().await, before, "{name}: wrote events");
    }

    let bad_phones = ["12345", "+0123456789", "not a phone", ""];
    for bad in bad_phones {
        let response = app.enrol(bad).await;
        assert_eq!(response.status(), 422, "phone {bad:?}");
        assert!(is_problem(&response));
    }
    assert_eq!(app.event_count().await, before);
    app.stop().await;
}

#[tokio::test]
async fn requests_without_a_valid_api_key_are_refused() {
    let app = TestApp::spawn().await;
    for header in [
        None,
        Some("Bearer nope"),
        Some("Bearer ll_0000000000000000000000000000000000000000000000000000000000000000"),
        Some("Basic abc"),
    ] {
        let mut request = app
            .http
            .get(app.url(&format!("/v1/customers/{}", Uuid::new_v4())));
        if let Some(header) = header {
            request = request.header("Authorization", header);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{header:?}");
        assert!(is_problem(&response));
    }
    app.stop().await;
}

#[tokio::test]
async fn unknown_routes_and_bad_path_ids_are_problems_not_500s() {
    let app = TestApp::spawn().await;
    for path in [
        "/v1/nothing",
        "/v1/customers/not-a-uuid",
        "/v1/customers/not-a-uuid/history",
    ] {
        let response = app.get(path).await;
        let status = response.status().as_u16();
        assert!(status == 404 || status == 400, "{path}: {status}");
        assert!(is_problem(&response), "{path}");
    }
    let health = app.http.get(app.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = app.http.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    app.enrolled_customer(&phone()).await;
    let metrics = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    let committed = text
        .lines()
        .find_map(|l| l.strip_prefix("loyalty_writer_commands_total "))
        .expect("writer counters are exported");
    assert!(committed.parse::<u64>().unwrap() >= 1, "{text}");
    // Fan-out progress: the relay's cursor reaches the newest event.
    let metric = |text: &str, name: &str| -> i64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("{name} missing from /metrics"))
    };
    let scrape = || async {
        let response = app.http.get(app.url("/metrics")).send().await.unwrap();
        response.text().await.unwrap()
    };
    crate::helpers::wait_for(
        std::time::Duration::from_secs(30),
        "the relay to reach the newest event",
        || async {
            let text = scrape().await;
            let last = metric(&text, "loyalty_events_last_position ");
            last >= 2 && metric(&text, "loyalty_relay_position ") == last
        },
    )
    .await;
    app.wait_until_projected().await;
    let text = scrape().await;
    assert!(
        metric(
            &text,
            "loyalty_projector_applied_total{projection=\"balances\"} "
        ) >= 1
    );
    app.stop().await;
}

#[tokio::test]
async fn another_tenants_customer_is_not_found() {
    let app = TestApp::spawn().await;
    let customer = app.enrolled_customer(&phone()).await;
    let (_, other_key) = crate::helpers::create_tenant(&app.pool, &app.settings).await;
    let as_other = |path: String| app.http.get(app.url(&path)).bearer_auth(&other_key).send();
    app.wait_until_projected().await;
    assert_eq!(
        as_other(format!("/v1/customers/{customer}"))
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        as_other(format!("/v1/customers/{customer}/history"))
            .await
            .unwrap()
            .status(),
        404
    );
    let purchase = app
        .http
        .post(app.url("/v1/purchases"))
        .bearer_auth(&other_key)
        .header("Idempotency-Key", "x")
        .json(&purchase(customer, 100_000))
        .send()
        .await
        .unwrap();
    assert_eq!(purchase.status(), 404);
    app.stop().await;
}
