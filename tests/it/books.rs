//! The books (issue #6, items 4 and 5) against real PostgreSQL and NATS: answers as of a
//! past time or sequence, folded from the events afterwards, equal what the live read model
//! said at that moment; every lot keeps the point value of its day; monthly statements add
//! up; bad queries are refused and roles are enforced.

use crate::helpers::{admin_client, dbname, loyalty, Rng, TestApp};
use crate::rewards::{problem_type, Owner};
use chrono::{DateTime, Duration as Days, Utc};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use uuid::Uuid;

/// What the live read model said after one step of the workload, and where the ledger was.
struct LiveAnswer {
    step: usize,
    sequence: i64,
    at: DateTime<Utc>,
    customers: BTreeMap<Uuid, Value>,
    tenant: Value,
}

/// The customer fields the ledger decides (the live view adds personal data and the
/// referral code, which a position never shows).
fn ledger_fields(customer: &Value) -> Value {
    let mut fields = serde_json::Map::new();
    for name in [
        "customer_id",
        "balance",
        "pending",
        "held",
        "available",
        "debt",
        "earned",
        "redeemed",
        "expired",
        "reversed",
        "adjusted",
        "purchases",
        "tier",
        "tier_review_at",
        "enrolled_at",
        "erased_at",
        "outstanding",
        "lots",
    ] {
        fields.insert(name.into(), customer[name].clone());
    }
    Value::Object(fields)
}

/// The tenant's totals from the read model (what the projection says now).
async fn live_tenant(db: &tokio_postgres::Client, tenant: Uuid) -> Value {
    let totals = db
        .query_one(
            "SELECT count(*), coalesce(sum(balance), 0)::bigint, coalesce(sum(pending), 0)::bigint, \
                    coalesce(sum(held), 0)::bigint, coalesce(sum(debt), 0)::bigint \
             FROM projection.customer_balances WHERE tenant_id = $1",
            &[&tenant],
        )
        .await
        .unwrap();
    let worth = db
        .query_one(
            "SELECT coalesce(sum(remaining), 0)::bigint, \
                    coalesce(sum(remaining::numeric * point_value_minor), 0)::bigint, \
                    coalesce(sum(remaining) FILTER (WHERE point_value_minor IS NULL), 0)::bigint \
             FROM projection.point_lots WHERE tenant_id = $1 AND remaining > 0",
            &[&tenant],
        )
        .await
        .unwrap();
    let tiers: Vec<Value> = db
        .query(
            "SELECT tier, count(*) FROM projection.customer_balances WHERE tenant_id = $1 \
             GROUP BY tier ORDER BY coalesce(tier, '')",
            &[&tenant],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| json!({ "tier": row.get::<_, Option<String>>(0), "customers": row.get::<_, i64>(1) }))
        .collect();
    json!({
        "customers": totals.get::<_, i64>(0),
        "balance": totals.get::<_, i64>(1),
        "pending": totals.get::<_, i64>(2),
        "held": totals.get::<_, i64>(3),
        "debt": totals.get::<_, i64>(4),
        "outstanding": {
            "points": worth.get::<_, i64>(0),
            "value_minor": worth.get::<_, i64>(1),
            "unvalued_points": worth.get::<_, i64>(2),
        },
        "tiers": tiers,
    })
}

fn tenant_fields(position: &Value) -> Value {
    json!({
        "customers": position["customers"],
        "balance": position["balance"],
        "pending": position["pending"],
        "held": position["held"],
        "debt": position["debt"],
        "outstanding": position["outstanding"],
        "tiers": position["tiers"],
    })
}

async fn head_sequence(db: &tokio_postgres::Client, tenant: Uuid) -> i64 {
    db.query_one(
        "SELECT coalesce(max(tenant_sequence), 0) FROM events WHERE tenant_id = $1",
        &[&tenant],
    )
    .await
    .unwrap()
    .get(0)
}

async fn put(owner: &Owner<'_>, path: &str, body: &Value) -> reqwest::Response {
    owner
        .app
        .http
        .put(owner.app.url(path))
        .bearer_auth(&owner.token)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn get(owner: &Owner<'_>, path: &str) -> reqwest::Response {
    owner
        .app
        .http
        .get(owner.app.url(path))
        .bearer_auth(&owner.token)
        .send()
        .await
        .unwrap()
}

fn settings(point_value: Option<i64>) -> Value {
    json!({
        "time_zone": "Africa/Lagos",
        "pending_days": 0,
        "refund_policy": { "kind": "allow_debt", "debt_limit": 30 },
        "hold_days": 7,
        "point_value_minor": point_value,
    })
}

async fn run_due_work(app: &TestApp, at: DateTime<Utc>) {
    app.wait_until_projected().await;
    let (writer, _task) = schema::writer::spawn_standalone(app.pool.clone(), app.settings.writer());
    loyalty::expiry::run_once(&app.platform_pool, &writer, at)
        .await
        .unwrap()
        .expect("no other runner holds the lock");
}

/// A randomized workload (purchases, some back-dated past their lots' lifetime, point
/// redemptions, reward holds and hand-overs, partial refunds with debt allowed, signed
/// adjustments, point-value changes, tier moves, expiry runs). After every step the live
/// answers are recorded with the ledger's sequence and the time; afterwards every one of them
/// is asked again, by sequence and by time, and must come back the same.
#[tokio::test]
async fn answers_as_of_any_past_point_equal_what_the_live_read_model_said_then() {
    let app = TestApp::spawn().await;
    let owner = Owner::sign_up(&app).await;
    let (mut rng, seed) = Rng::seeded();
    eprintln!("workload seed (TEST_SEED): {seed}");
    let db = admin_client(&dbname(&app.database_url)).await;
    let tenant: Uuid = serde_json::from_value(owner.get("/v1/me").await["tenant_id"].clone())
        .expect("the owner's tenant");
    assert_eq!(
        put(&owner, "/v1/programme/settings", &settings(Some(100)))
            .await
            .status(),
        200
    );
    let ladder = json!({
        "basis": "spend",
        "window": { "kind": "rolling_days", "days": 30 },
        "grace_days": 0,
        "tiers": [
            { "id": "member", "name": "Member", "threshold": 0 },
            { "id": "gold", "name": "Gold", "threshold": 1_500_000 },
        ],
    });
    assert_eq!(put(&owner, "/v1/tiers", &ladder).await.status(), 200);
    let reward = {
        let created = owner
            .post(
                "/v1/rewards",
                None,
                Some(json!({ "name": "Tote", "points_cost": 15 })),
            )
            .await;
        assert_eq!(created.status(), 201);
        let body: Value = created.json().await.unwrap();
        Uuid::parse_str(body["reward_id"].as_str().unwrap()).unwrap()
    };
    let mut customers = Vec::new();
    for _ in 0..4 {
        customers.push(owner.customer_with(20).await);
    }
    let mut purchases: Vec<(Uuid, Uuid)> = Vec::new();
    let mut codes: Vec<String> = Vec::new();
    let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
    let mut answers: Vec<LiveAnswer> = Vec::new();
    const STEPS: usize = 80;
    let mut valued = true;
    for step in 0..STEPS {
        let customer = customers[rng.range(0, customers.len() as i64) as usize];
        let kind = match rng.range(0, 12) {
            0..=3 => {
                let days_ago = if rng.range(0, 4) == 0 { 200 } else { 0 };
                let occurred_at = (Utc::now() - Days::days(days_ago)).to_rfc3339();
                let response = owner
                    .post(
                        "/v1/purchases",
                        Some(&format!("p-{step}")),
                        Some(json!({
                            "customer_id": customer,
                            "amount_minor": rng.range(10_000, 900_000),
                            "occurred_at": occurred_at,
                        })),
                    )
                    .await;
                assert_eq!(response.status(), 201);
                let body: Value = response.json().await.unwrap();
                let purchase = Uuid::parse_str(body["purchase_id"].as_str().unwrap()).unwrap();
                purchases.push((customer, purchase));
                "purchase"
            }
            4 => {
                let response = owner
                    .post(
                        &format!("/v1/customers/{customer}/redemptions"),
                        Some(&format!("r-{step}")),
                        Some(json!({ "points": rng.range(1, 40), "description": "till" })),
                    )
                    .await;
                assert!([201, 409].contains(&response.status().as_u16()));
                "redeem points"
            }
            5 => {
                let response = owner
                    .redeem_reward(&format!("h-{step}"), customer, reward)
                    .await;
                assert!([201, 409].contains(&response.status().as_u16()));
                if response.status() == 201 {
                    let body: Value = response.json().await.unwrap();
                    codes.push(body["code"].as_str().unwrap().to_owned());
                }
                "hold"
            }
            6 if !codes.is_empty() => {
                let code = codes.swap_remove(rng.range(0, codes.len() as i64) as usize);
                let response = owner.fulfil(&format!("f-{step}"), &code).await;
                assert!([200, 201, 409].contains(&response.status().as_u16()));
                "hand-over"
            }
            7 if !purchases.is_empty() => {
                let (buyer, purchase) = purchases[rng.range(0, purchases.len() as i64) as usize];
                let response = owner
                    .post(
                        &format!("/v1/customers/{buyer}/refunds"),
                        Some(&format!("refund-{step}")),
                        Some(json!({ "purchase_id": purchase, "amount_minor": rng.range(5_000, 300_000) })),
                    )
                    .await;
                assert!([201, 409].contains(&response.status().as_u16()));
                "refund"
            }
            8 => {
                let points = if rng.range(0, 2) == 0 {
                    rng.range(1, 25)
                } else {
                    -rng.range(1, 25)
                };
                let response = owner
                    .post(
                        &format!("/v1/customers/{customer}/adjustments"),
                        Some(&format!("adjust-{step}")),
                        Some(json!({ "points": points, "reason": "stock count" })),
                    )
                    .await;
                assert!([201, 409].contains(&response.status().as_u16()));
                "adjustment"
            }
            9 => {
                // Every other change clears the value, so some lots open unvalued.
                valued = !valued;
                let value = valued.then(|| rng.range(1, 4) * 75);
                let response = put(&owner, "/v1/programme/settings", &settings(value)).await;
                assert_eq!(response.status(), 200);
                "point value"
            }
            _ => {
                run_due_work(&app, Utc::now()).await;
                "due work"
            }
        };
        *counts.entry(kind).or_default() += 1;
        app.wait_until_projected().await;
        let sequence = head_sequence(&db, tenant).await;
        let at = Utc::now();
        let mut live = BTreeMap::new();
        for &id in &customers {
            live.insert(
                id,
                ledger_fields(&owner.get(&format!("/v1/customers/{id}")).await),
            );
        }
        answers.push(LiveAnswer {
            step,
            sequence,
            at,
            customers: live,
            tenant: live_tenant(&db, tenant).await,
        });
    }
    eprintln!("workload: {counts:?}");
    let valued = answers
        .iter()
        .filter(|a| a.tenant["outstanding"]["value_minor"].as_i64() > Some(0))
        .count();
    let unvalued = answers
        .iter()
        .filter(|a| a.tenant["outstanding"]["unvalued_points"].as_i64() > Some(0))
        .count();
    assert!(valued > 0, "no step had valued points outstanding");

    let mut compared = 0;
    for answer in &answers {
        for query in [
            format!("sequence={}", answer.sequence),
            format!("as_of={}", answer.at.to_rfc3339().replace('+', "%2B")),
        ] {
            let position = owner.get(&format!("/v1/books/position?{query}")).await;
            assert_eq!(
                tenant_fields(&position),
                answer.tenant,
                "tenant at step {} ({query})",
                answer.step
            );
            assert_eq!(position["as_of"]["sequence"], answer.sequence, "{query}");
            compared += 1;
            for (id, live) in &answer.customers {
                let then = owner
                    .get(&format!("/v1/customers/{id}/position?{query}"))
                    .await;
                assert_eq!(
                    ledger_fields(&then["customer"]),
                    *live,
                    "customer {id} at step {} ({query})",
                    answer.step
                );
                compared += 1;
            }
        }
    }
    eprintln!(
        "point-in-time: {} steps, {} answers compared ({} steps with valued points, {} with unvalued ones)",
        answers.len(),
        compared,
        valued,
        unvalued
    );

    // Analytics date by the event's own time, the books by when it was recorded; summed
    // over the whole run they agree (reversals aside: the books count a debt when later
    // points pay it, analytics when the refund made it).
    crate::analytics::wait_until_analysed(&app).await;
    let analysed = db
        .query_one(
            "SELECT sum(points_issued)::bigint, sum(points_redeemed)::bigint, \
                    sum(points_expired)::bigint, sum(points_adjusted)::bigint \
             FROM analytics.daily WHERE tenant_id = $1",
            &[&tenant],
        )
        .await
        .unwrap();
    let now = owner.get("/v1/books/position").await;
    for (column, movement) in ["issued", "redeemed", "expired", "adjusted"]
        .iter()
        .enumerate()
    {
        assert_eq!(
            analysed.get::<_, i64>(column),
            now["movements"][movement]["points"].as_i64().unwrap(),
            "{movement}: analytics against the books"
        );
    }

    // The statements of the whole run add up and close on today's liability.
    let statements = owner.get("/v1/books/statements").await;
    let months = statements["months"].as_array().unwrap();
    let mut opening = json!({ "points": 0, "value_minor": 0, "unvalued_points": 0 });
    for month in months {
        assert_eq!(month["opening"], opening, "{}", month["month"]);
        for unit in ["points", "value_minor", "unvalued_points"] {
            let figure = |name: &str| month[name][unit].as_i64().unwrap();
            assert_eq!(
                figure("closing"),
                figure("opening") + figure("issued") + figure("adjusted")
                    - figure("redeemed")
                    - figure("expired")
                    - figure("reversed"),
                "{} {unit}",
                month["month"]
            );
        }
        opening = month["closing"].clone();
    }
    let last = answers.last().unwrap();
    assert_eq!(opening, last.tenant["outstanding"]);
    let csv = get(&owner, "/v1/books/statements?format=csv").await;
    assert_eq!(csv.status(), 200);
    assert!(csv.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let csv = csv.text().await.unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.len(), months.len() + 1);
    let closing_minor = rows.last().unwrap().split(',').nth(21).unwrap();
    assert_eq!(closing_minor, opening["value_minor"].to_string());
}

/// A lot keeps the point value of its day; the money moves with the lots that move.
#[tokio::test]
async fn each_lot_keeps_the_point_value_of_its_day() {
    let app = TestApp::spawn().await;
    let owner = Owner::sign_up(&app).await;
    assert_eq!(
        put(&owner, "/v1/programme/settings", &settings(Some(100)))
            .await
            .status(),
        200
    );
    // 20 points at 100 each.
    let customer = owner.customer_with(20).await;
    assert_eq!(
        put(&owner, "/v1/programme/settings", &settings(Some(250)))
            .await
            .status(),
        200
    );
    // 10 more at 250 each.
    let bought = owner
        .post(
            "/v1/purchases",
            Some("second"),
            Some(json!({ "customer_id": customer, "amount_minor": 100_000 })),
        )
        .await;
    assert_eq!(bought.status(), 201);
    // 5 points from the soonest-expiring lot: the first, worth 100 each.
    let spent = owner
        .post(
            &format!("/v1/customers/{customer}/redemptions"),
            Some("spend"),
            Some(json!({ "points": 5, "description": "till" })),
        )
        .await;
    assert_eq!(spent.status(), 201);
    app.wait_until_projected().await;
    let live = owner.get(&format!("/v1/customers/{customer}")).await;
    let values: Vec<Value> = live["lots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|lot| json!([lot["remaining"], lot["point_value_minor"]]))
        .collect();
    assert_eq!(values, [json!([15, 100]), json!([10, 250])]);
    assert_eq!(
        live["outstanding"],
        json!({ "points": 25, "value_minor": 15 * 100 + 10 * 250, "unvalued_points": 0 })
    );
    let position = owner.get("/v1/books/position").await;
    assert_eq!(position["point_value_minor"], 250);
    assert_eq!(
        position["movements"]["issued"],
        json!({ "points": 30, "value_minor": 20 * 100 + 10 * 250, "unvalued_points": 0 })
    );
    assert_eq!(
        position["movements"]["redeemed"],
        json!({ "points": 5, "value_minor": 500, "unvalued_points": 0 })
    );
    assert_eq!(position["outstanding"], live["outstanding"]);
    assert_eq!(position["currency"], "NGN");

    // The command line folds the same books (as the platform role).
    let tenant = owner.get("/v1/me").await["tenant_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let cli = loyalty(&app, &["books", "position", "--tenant", &tenant]);
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    let printed: Value = serde_json::from_slice(&cli.stdout).unwrap();
    assert_eq!(printed, position);
    let customer_id = customer.to_string();
    let cli = loyalty(
        &app,
        &[
            "books",
            "position",
            "--tenant",
            &tenant,
            "--customer",
            &customer_id,
        ],
    );
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    let printed: Value = serde_json::from_slice(&cli.stdout).unwrap();
    assert_eq!(
        ledger_fields(&printed["customer"]),
        ledger_fields(&live),
        "the command line's customer"
    );
    let api_csv = get(&owner, "/v1/books/statements?format=csv")
        .await
        .text()
        .await
        .unwrap();
    let cli = loyalty(
        &app,
        &["books", "statement", "--tenant", &tenant, "--format", "csv"],
    );
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    assert_eq!(String::from_utf8(cli.stdout).unwrap(), api_csv);
    let cli = loyalty(
        &app,
        &["books", "position", "--tenant", &tenant, "--sequence", "-4"],
    );
    assert!(!cli.status.success());
    let unknown = Uuid::new_v4().to_string();
    let cli = loyalty(&app, &["books", "position", "--tenant", &unknown]);
    assert!(!cli.status.success());
    assert!(String::from_utf8_lossy(&cli.stderr).contains("no such tenant"));
}

#[tokio::test]
async fn bad_queries_are_refused_and_roles_are_enforced() {
    let app = TestApp::spawn().await;
    let owner = Owner::sign_up(&app).await;
    let customer = owner.customer_with(20).await;
    for (path, parameter) in [
        ("/v1/books/position?as_of=yesterday", "as_of"),
        ("/v1/books/position?sequence=-1", "sequence"),
        (
            "/v1/books/position?sequence=1&as_of=2026-01-01T00:00:00Z",
            "sequence",
        ),
        ("/v1/books/statements?from=2026-13", "from"),
        ("/v1/books/statements?from=2026-05&to=2026-04", "to"),
        ("/v1/books/statements?format=xml", "format"),
    ] {
        let response = get(&owner, path).await;
        assert_eq!(response.status(), 400, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body["type"].as_str().unwrap().rsplit('/').next(),
            Some("invalid-query")
        );
        assert_eq!(body["parameter"], parameter, "{path}");
    }
    let response = get(
        &owner,
        &format!("/v1/customers/{}/position", Uuid::new_v4()),
    )
    .await;
    assert_eq!(response.status(), 404);
    assert_eq!(problem_type(response).await, "customer-not-found");
    // Before the customer existed: not found either.
    let response = get(
        &owner,
        &format!("/v1/customers/{customer}/position?sequence=1"),
    )
    .await;
    assert_eq!(response.status(), 404);

    // The tenant's till key (staff) reads a customer's position but not the books.
    let staff = |path: String| {
        app.http
            .get(app.url(&path))
            .bearer_auth(&app.api_key)
            .send()
    };
    assert_eq!(
        staff("/v1/books/position".into()).await.unwrap().status(),
        403
    );
    assert_eq!(
        staff("/v1/books/statements".into()).await.unwrap().status(),
        403
    );
    for role in ["auditor", "analyst"] {
        let created = owner
            .post(
                "/v1/api-keys",
                None,
                Some(json!({ "label": format!("{role} key"), "role": role })),
            )
            .await;
        assert_eq!(created.status(), 201);
        let key: Value = created.json().await.unwrap();
        let key = key["api_key"].as_str().unwrap().to_owned();
        let read = |path: String| app.http.get(app.url(&path)).bearer_auth(&key).send();
        assert_eq!(
            read("/v1/books/position".into()).await.unwrap().status(),
            200,
            "{role}"
        );
        assert_eq!(
            read("/v1/books/statements".into()).await.unwrap().status(),
            200,
            "{role}"
        );
        let expected = if role == "auditor" { 200 } else { 403 };
        assert_eq!(
            read(format!("/v1/customers/{customer}/position"))
                .await
                .unwrap()
                .status(),
            expected,
            "{role}"
        );
    }
}
