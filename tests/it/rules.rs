//! The points rules through the HTTP API against real PostgreSQL: an owner publishes a
//! whole rule set (`PUT /v1/rules`), purchases earn under the set in force when they
//! happened (a back-dated purchase under the old one), and an invalid set is refused with
//! 422 naming the rule and the field while nothing changes.

use crate::helpers::{phone, sign_up_owner, TestApp};
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

/// A tenant's owner, signed up through the API (registered with the starter set: 1 point
/// per 10,000 minor units).
struct Owner<'a> {
    app: &'a TestApp,
    token: String,
}

impl<'a> Owner<'a> {
    async fn sign_up(app: &'a TestApp) -> Owner<'a> {
        let (_, token) = sign_up_owner(&app.http, &app.address).await;
        Owner { app, token }
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> reqwest::Response {
        self.app
            .http
            .request(method, self.app.url(path))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .expect("request")
    }

    async fn rules(&self) -> Value {
        let response = self
            .app
            .http
            .get(self.app.url("/v1/rules"))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("GET /v1/rules");
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    async fn publish(&self, rules: Value) -> reqwest::Response {
        self.send(reqwest::Method::PUT, "/v1/rules", json!({ "rules": rules }))
            .await
    }

    async fn customer(&self) -> Uuid {
        let enrolled = self
            .send(
                reqwest::Method::POST,
                "/v1/customers",
                json!({ "phone": phone() }),
            )
            .await;
        assert_eq!(enrolled.status(), 201);
        let body: Value = enrolled.json().await.unwrap();
        Uuid::parse_str(body["customer_id"].as_str().unwrap()).unwrap()
    }

    async fn purchase(&self, body: Value) -> Value {
        let response = self
            .app
            .http
            .post(self.app.url("/v1/purchases"))
            .bearer_auth(&self.token)
            .header("Idempotency-Key", Uuid::now_v7().to_string())
            .json(&body)
            .send()
            .await
            .expect("POST /v1/purchases");
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, 201, "{body}");
        body
    }
}

/// Version 2: 2 points per 10,000, drinks excluded, 5 points a visit.
fn version_two() -> Value {
    json!([
        { "id": "base", "kind": { "per_amount_spent":
            { "amount_step": 10_000, "points_per_step": 2, "minimum_purchase": 0 } } },
        { "id": "no-drinks", "kind": { "item_multiplier":
            { "match": { "categories": ["drinks"] }, "percent": 0 } } },
        { "id": "visit", "priority": 1, "kind": { "per_purchase": { "points": 5 } } },
    ])
}

fn lines() -> Value {
    json!([
        { "sku": "JOLLOF", "category": "mains", "quantity": 2, "unit_price_minor": 10_000 },
        { "sku": "ZOBO", "category": "drinks", "quantity": 1, "unit_price_minor": 10_000 },
    ])
}

fn breakdown(body: &Value) -> Vec<(String, i64)> {
    body["breakdown"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| {
            (
                line["rule_id"].as_str().unwrap().to_owned(),
                line["points"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn purchases_earn_under_the_rule_set_in_force_when_they_happened() {
    let app = TestApp::spawn().await;
    let owner = Owner::sign_up(&app).await;
    let before = owner.rules().await;
    assert_eq!(before["current"]["version"], 1);
    assert_eq!(before["versions"].as_array().unwrap().len(), 1);
    assert_eq!(before["current"]["rules"][0]["id"], "rule-1");

    let published = owner.publish(version_two()).await;
    assert_eq!(published.status(), 200);
    let published: Value = published.json().await.unwrap();
    assert_eq!(published["version"], 2);
    assert_eq!(published["rules"][1]["id"], "no-drinks");
    let published_at: DateTime<Utc> = published["published_at"].as_str().unwrap().parse().unwrap();

    let after = owner.rules().await;
    assert_eq!(after["current"]["version"], 2);
    assert_eq!(after["current"]["rules"], published["rules"]);
    let versions: Vec<i64> = after["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, vec![1, 2]);

    // Now: 30,000 of which 10,000 are drinks. Base 6 on the whole spend, drinks take 2
    // away, 5 for the visit.
    let customer = owner.customer().await;
    let now = owner
        .purchase(json!({ "customer_id": customer, "amount_minor": 30_000, "line_items": lines() }))
        .await;
    assert_eq!(now["rule_set_version"], 2);
    assert_eq!(now["points_earned"], 9);
    assert_eq!(
        breakdown(&now),
        vec![
            ("base".to_owned(), 6),
            ("visit".to_owned(), 5),
            ("no-drinks".to_owned(), -2)
        ]
    );
    assert_eq!(now["breakdown"][2]["kind"], "item_multiplier");

    // Back-dated to before the publication: the starter set, 3 points.
    let earlier = (published_at - Duration::seconds(1)).to_rfc3339();
    let back_dated = owner
        .purchase(json!({
            "customer_id": customer,
            "amount_minor": 30_000,
            "line_items": lines(),
            "occurred_at": earlier,
        }))
        .await;
    assert_eq!(back_dated["rule_set_version"], 1);
    assert_eq!(back_dated["points_earned"], 3);
    assert_eq!(breakdown(&back_dated), vec![("rule-1".to_owned(), 3)]);
    assert_eq!(back_dated["balance"], 12);
    app.stop().await;
}

#[tokio::test]
async fn an_invalid_rule_set_is_refused_naming_the_rule_and_field_and_nothing_changes() {
    let app = TestApp::spawn().await;
    let owner = Owner::sign_up(&app).await;
    let before = owner.rules().await;

    let zero_step = json!([{ "id": "base", "kind": { "per_amount_spent":
        { "amount_step": 0, "points_per_step": 1, "minimum_purchase": 0 } } }]);
    let duplicate = json!([
        { "id": "visit", "kind": { "per_purchase": { "points": 1 } } },
        { "id": "visit", "kind": { "per_purchase": { "points": 2 } } },
    ]);
    let bad_window = json!([{ "id": "lunch", "when": { "hours": { "start": 14, "end": 12 } },
        "kind": { "per_purchase": { "points": 1 } } }]);
    let ghost = json!([{ "id": "double", "kind": { "promotion":
        { "percent": 200, "applies_to": { "rules": ["ghost"] } } } }]);
    let too_many: Vec<Value> = (0..33)
        .map(|n| json!({ "id": format!("r{n}"), "kind": { "per_purchase": { "points": 1 } } }))
        .collect();
    let cases: Vec<(Value, &str, Option<&str>, &str)> = vec![
        (
            zero_step,
            "invalid-rule-set",
            Some("base"),
            "kind.amount_step",
        ),
        (duplicate, "invalid-rule-set", Some("visit"), "id"),
        (bad_window, "invalid-rule-set", Some("lunch"), "when.hours"),
        (ghost, "invalid-rule-set", Some("double"), "kind.applies_to"),
        (Value::Array(too_many), "invalid-rule-set", None, "rules"),
        (
            json!([{ "id": "x", "kind": { "jackpot": {} } }]),
            "invalid-field",
            None,
            "rules[0]",
        ),
        (
            json!([{ "id": "x", "kind": { "per_purchase": { "points": "many" } } }]),
            "invalid-field",
            None,
            "rules[0]",
        ),
    ];
    for (rules, problem, rule, field) in cases {
        let refused = owner.publish(rules.clone()).await;
        assert_eq!(refused.status(), 422, "{rules}");
        let body: Value = refused.json().await.unwrap();
        assert!(
            body["type"].as_str().unwrap().ends_with(problem),
            "{rules}: {body}"
        );
        assert_eq!(body["field"], field, "{rules}: {body}");
        if let Some(rule) = rule {
            assert_eq!(body["rule"], rule, "{rules}: {body}");
        }
    }
    assert_eq!(owner.rules().await, before, "nothing was published");

    // A till's API key (staff) reads its own tenant's rules but may not publish.
    let staff = app.get_json("/v1/rules").await;
    assert_eq!(staff["current"]["version"], 1);
    let refused = app
        .http
        .put(app.url("/v1/rules"))
        .bearer_auth(&app.api_key)
        .json(&json!({ "rules": version_two() }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    app.stop().await;
}
