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

/// Base 1 point per 10,000 (as the starter set) and double points on Saturdays and
/// Sundays, local time.
fn double_weekends() -> Value {
    json!([
        { "id": "base", "kind": { "per_amount_spent":
            { "amount_step": 10_000, "points_per_step": 1, "minimum_purchase": 0 } } },
        { "id": "weekend", "when": { "weekdays": ["Sat", "Sun"] },
          "kind": { "promotion": { "percent": 200, "applies_to": "all_base_rules" } } },
    ])
}

/// The range of the dry-runs below: the week of Mon 24 Nov 2025 to Mon 8 Dec 2025, Lagos.
fn range() -> (&'static str, &'static str) {
    ("2025-11-24T00:00:00+01:00", "2025-12-08T00:00:00+01:00")
}

/// What a dry-run must leave untouched: the tenant's events, chain heads and balances.
async fn ledger_snapshot(app: &TestApp) -> (i64, Vec<(Uuid, i64)>, Vec<(Uuid, i64, i64)>) {
    let admin = crate::helpers::admin_client(&crate::helpers::dbname(&app.database_url)).await;
    let heads = admin
        .query(
            "SELECT tenant_id, sequence FROM tenant_heads ORDER BY tenant_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let balances = admin
        .query(
            "SELECT customer_id, balance, earned FROM projection.customer_balances \
             ORDER BY customer_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    (app.event_count().await, heads, balances)
}

async fn dry_run(app: &TestApp, token: &str, body: &Value) -> reqwest::Response {
    app.http
        .post(app.url("/v1/rules/dry-run"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("POST /v1/rules/dry-run")
}

async fn api_key(owner: &Owner<'_>, role: &str) -> String {
    let created = owner
        .send(
            reqwest::Method::POST,
            "/v1/api-keys",
            json!({ "label": format!("{role} key"), "role": role }),
        )
        .await;
    assert_eq!(created.status(), 201);
    let body: Value = created.json().await.unwrap();
    body["api_key"].as_str().unwrap().to_owned()
}

/// "What would double-points weekends have cost?" over purchases logged (back-dated) on
/// known dates, with the figures computed by hand, and proof that nothing was written.
#[tokio::test]
async fn a_dry_run_answers_what_a_proposed_set_would_have_cost_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let owner = Owner::sign_up(&app).await;
    let (a, b) = (owner.customer().await, owner.customer().await);
    let purchases = [
        // Before the range: not evaluated.
        (a, 40_000, "2025-11-20T12:00:00Z"),
        // Fri 23:30 UTC = Sat 00:30 Lagos: earned 3, would earn 3 + 3.
        (a, 30_000, "2025-11-28T23:30:00Z"),
        // Sun 23:30 UTC = Mon 00:30 Lagos: earned 2, would earn 2.
        (b, 20_000, "2025-11-30T23:30:00Z"),
    ];
    for (customer, amount, occurred_at) in purchases {
        owner
            .purchase(json!({ "customer_id": customer, "amount_minor": amount,
                              "occurred_at": occurred_at }))
            .await;
    }
    let (from, to) = range();
    let body = json!({ "rules": double_weekends(), "from": from, "to": to });

    // No point value stated yet: no money figure, and the answer says so with null.
    let answered = dry_run(&app, &owner.token, &body).await;
    assert_eq!(answered.status(), 200);
    let answer: Value = answered.json().await.unwrap();
    assert_eq!(answer["point_value_minor"], Value::Null);
    assert_eq!(answer["liability_difference_minor"], Value::Null);
    assert_eq!(answer["points_difference"], 3);

    // 50 minor units a point.
    let mut settings: Value = owner
        .app
        .http
        .get(app.url("/v1/programme/settings"))
        .bearer_auth(&owner.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    settings["point_value_minor"] = json!(50);
    let changed = owner
        .send(reqwest::Method::PUT, "/v1/programme/settings", settings)
        .await;
    assert_eq!(changed.status(), 200);

    app.wait_until_projected().await;
    let rules_before = owner.rules().await;
    let before = ledger_snapshot(&app).await;

    let analyst = api_key(&owner, "analyst").await;
    for token in [&owner.token, &analyst] {
        let answered = dry_run(&app, token, &body).await;
        assert_eq!(answered.status(), 200);
        let answer: Value = answered.json().await.unwrap();
        assert_eq!(
            answer,
            json!({
                "from": "2025-11-23T23:00:00Z",
                "to": "2025-12-07T23:00:00Z",
                "time_zone": "Africa/Lagos",
                "purchases_evaluated": 2,
                "customers_evaluated": 2,
                "customers_affected": 1,
                "points_actual": 5,
                "points_proposed": 8,
                "points_difference": 3,
                "points_by_rule": [
                    { "rule_id": "base", "kind": "per_amount_spent", "points": 5 },
                    { "rule_id": "weekend", "kind": "promotion", "points": 3 },
                ],
                "currency": answer["currency"],
                "point_value_minor": 50,
                "liability_difference_minor": 150,
            })
        );
    }

    app.wait_until_projected().await;
    assert_eq!(ledger_snapshot(&app).await, before, "nothing was written");
    let rules_after = owner.rules().await;
    assert_eq!(rules_after, rules_before);
    assert_eq!(rules_after["versions"].as_array().unwrap().len(), 1);
    assert_eq!(rules_after["current"]["version"], 1);
    app.stop().await;
}

/// Invalid sets are refused like `PUT /v1/rules`, bad ranges name their field, and only
/// owners and analysts may ask; none of it is a 500.
#[tokio::test]
async fn a_dry_run_refuses_bad_sets_bad_ranges_and_other_roles() {
    let app = TestApp::spawn().await;
    let owner = Owner::sign_up(&app).await;
    let (from, to) = range();
    let zero_step = json!([{ "id": "base", "kind": { "per_amount_spent":
        { "amount_step": 0, "points_per_step": 1, "minimum_purchase": 0 } } }]);
    let ghost = json!([{ "id": "double", "kind": { "promotion":
        { "percent": 200, "applies_to": { "rules": ["ghost"] } } } }]);
    let cases: Vec<(Value, &str, Option<&str>, &str)> = vec![
        (
            json!({ "rules": zero_step, "from": from, "to": to }),
            "invalid-rule-set",
            Some("base"),
            "kind.amount_step",
        ),
        (
            json!({ "rules": ghost, "from": from, "to": to }),
            "invalid-rule-set",
            Some("double"),
            "kind.applies_to",
        ),
        (
            json!({ "rules": [{ "id": "x", "kind": { "jackpot": {} } }], "from": from, "to": to }),
            "invalid-field",
            None,
            "rules[0]",
        ),
        (
            json!({ "rules": double_weekends(), "from": to, "to": from }),
            "invalid-field",
            None,
            "to",
        ),
        (
            json!({ "rules": double_weekends(), "from": "2024-01-01T00:00:00Z", "to": to }),
            "invalid-field",
            None,
            "to",
        ),
        (
            json!({ "rules": double_weekends(), "from": "last quarter", "to": to }),
            "invalid-field",
            None,
            "from",
        ),
        (
            json!({ "rules": double_weekends(), "to": to }),
            "invalid-field",
            None,
            "from",
        ),
    ];
    for (body, problem, rule, field) in cases {
        let refused = dry_run(&app, &owner.token, &body).await;
        assert_eq!(refused.status(), 422, "{body}");
        let answer: Value = refused.json().await.unwrap();
        assert!(
            answer["type"].as_str().unwrap().ends_with(problem),
            "{body}: {answer}"
        );
        assert_eq!(answer["field"], field, "{body}: {answer}");
        if let Some(rule) = rule {
            assert_eq!(answer["rule"], rule, "{body}: {answer}");
        }
    }

    let body = json!({ "rules": double_weekends(), "from": from, "to": to });
    for role in ["staff", "auditor"] {
        let key = api_key(&owner, role).await;
        let refused = dry_run(&app, &key, &body).await;
        assert_eq!(refused.status(), 403, "{role}");
    }
    app.stop().await;
}
