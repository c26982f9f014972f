//! The analytics read model (docs/ANALYTICS.md) against real PostgreSQL and JetStream: exact
//! figures for a small hand-computed case through the API (JSON and CSV), a rebuild equal to
//! what the live projector wrote, redelivered and out-of-order events counted once, the
//! analyst database role confined to its tenant's views, and the WhatsApp figures (live
//! refresher = rebuild).

use crate::helpers::{
    admin_client, dbname, phone, sign_up_owner, vendor_code, wait_for, Chat, TestApp,
};
use chrono::{Duration as Days, NaiveDate, Utc};
use ledger_core::analytics::TenantFold;
use projections::analytics::Analytics;
use projections::runner::{self, Projection};
use schema::store::{self, Position};
use serde_json::{json, Value};
use std::time::Duration;
use uuid::Uuid;

const TABLES: [&str; 6] = [
    "SELECT row(t.*)::text FROM analytics.tenants t ORDER BY tenant_id",
    "SELECT row(t.*)::text FROM analytics.daily t ORDER BY tenant_id, day",
    "SELECT row(t.*)::text FROM analytics.customers t ORDER BY customer_id",
    "SELECT row(t.*)::text FROM analytics.customer_months t ORDER BY tenant_id, customer_id, month",
    "SELECT row(t.*)::text FROM analytics.rewards t ORDER BY tenant_id, reward_id",
    "SELECT row(t.*)::text FROM analytics.reward_redemptions t ORDER BY redemption_id",
];

const VIEWS: [&str; 7] = [
    "daily_activity",
    "active_customers",
    "reward_popularity",
    "cohort_retention",
    "tier_distribution",
    "redemption_rate",
    "whatsapp_activity",
];

/// Every row of the event-fed analytics tables, as text, in a stable order.
async fn snapshot(client: &impl tokio_postgres::GenericClient) -> Vec<String> {
    let mut rows = Vec::new();
    for query in TABLES {
        for row in client.query(query, &[]).await.unwrap() {
            rows.push(row.get::<_, String>(0));
        }
    }
    rows
}

/// Waits until every tenant's analytics reflect its whole sequence.
pub(crate) async fn wait_until_analysed(app: &TestApp) {
    let client = admin_client(&dbname(&app.database_url)).await;
    wait_for(
        Duration::from_secs(30),
        "the analytics projection to catch up",
        || async {
            client
                .query_one(
                    "SELECT NOT EXISTS (SELECT 1 FROM tenant_heads h \
                     LEFT JOIN analytics.tenants a ON a.tenant_id = h.tenant_id \
                     WHERE coalesce(a.applied_sequence, 0) < h.sequence)",
                    &[],
                )
                .await
                .unwrap()
                .get(0)
        },
    )
    .await;
}

/// A signed-in user of one tenant.
struct Vendor<'a> {
    app: &'a TestApp,
    tenant: Uuid,
    token: String,
}

impl<'a> Vendor<'a> {
    async fn sign_up(app: &'a TestApp) -> Vendor<'a> {
        let (tenant, token) = sign_up_owner(&app.http, &app.address).await;
        Vendor {
            app,
            tenant: tenant.as_uuid(),
            token,
        }
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .app
            .http
            .request(method.clone(), self.app.url(path))
            .bearer_auth(&self.token)
            .header("Idempotency-Key", Uuid::new_v4().to_string());
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{method} {path}: {status} {body}");
        body
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    async fn customer(&self) -> Uuid {
        let body = self
            .post("/v1/customers", json!({ "phone": phone() }))
            .await;
        Uuid::parse_str(body["customer_id"].as_str().unwrap()).unwrap()
    }

    async fn purchase(&self, customer: Uuid, amount_minor: i64, occurred_at: &str) -> Uuid {
        let body = self
            .post(
                "/v1/purchases",
                json!({ "customer_id": customer, "amount_minor": amount_minor,
                        "occurred_at": occurred_at }),
            )
            .await;
        Uuid::parse_str(body["purchase_id"].as_str().unwrap()).unwrap()
    }

    async fn reward(&self, name: &str, points_cost: i64) -> Uuid {
        let body = self
            .post(
                "/v1/rewards",
                json!({ "name": name, "points_cost": points_cost }),
            )
            .await;
        Uuid::parse_str(body["reward_id"].as_str().unwrap()).unwrap()
    }

    async fn hold(&self, customer: Uuid, reward: Uuid) -> String {
        let body = self
            .post(
                &format!("/v1/customers/{customer}/redemptions"),
                json!({ "reward_id": reward }),
            )
            .await;
        body["code"].as_str().unwrap().to_owned()
    }

    async fn get(&self, path: &str, accept: Option<&str>) -> reqwest::Response {
        let mut request = self
            .app
            .http
            .get(self.app.url(path))
            .bearer_auth(&self.token);
        if let Some(accept) = accept {
            request = request.header("Accept", accept);
        }
        request.send().await.unwrap()
    }

    async fn json(&self, path: &str) -> Value {
        let response = self.get(path, None).await;
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.unwrap()
    }

    /// The CSV answer, parsed, with `?format=csv` and with `Accept: text/csv` (the same).
    async fn csv(&self, path: &str) -> Vec<Vec<String>> {
        let separator = if path.contains('?') { '&' } else { '?' };
        let by_query = self
            .get(&format!("{path}{separator}format=csv"), None)
            .await;
        assert_eq!(by_query.status(), 200);
        assert_eq!(
            by_query.headers()["content-type"],
            "text/csv; charset=utf-8"
        );
        let by_query = by_query.text().await.unwrap();
        let by_accept = self.get(path, Some("text/csv")).await.text().await.unwrap();
        assert_eq!(by_query, by_accept);
        parse_csv(&by_query)
    }

    /// An API key of another role, created by this (owner) user.
    async fn key(&self, role: &str) -> String {
        let body = self
            .post(
                "/v1/api-keys",
                json!({ "label": format!("{role} key"), "role": role }),
            )
            .await;
        body["api_key"].as_str().unwrap().to_owned()
    }
}

/// RFC 4180: quoted cells may hold commas, doubled quotes and line breaks; lines end CRLF.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut cell = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                cell.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => cell.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut cell)),
            (false, '\r') => {
                assert_eq!(chars.next(), Some('\n'), "lines end with CRLF");
                row.push(std::mem::take(&mut cell));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => cell.push(c),
        }
    }
    assert!(
        cell.is_empty() && row.is_empty(),
        "the last line ends with CRLF"
    );
    rows
}

/// The JSON rows as CSV would render them: header = the CSV's, cells from the JSON values.
fn json_as_cells(header: &[String], rows: &[Value]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|row| {
            header
                .iter()
                .map(|column| match &row[column.as_str()] {
                    Value::Null => String::new(),
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect()
        })
        .collect()
}

/// The CSV of `path` says exactly what its JSON (the array under `key`) says.
async fn csv_matches_json(vendor: &Vendor<'_>, path: &str, key: Option<&str>) {
    let json = vendor.json(path).await;
    let rows: Vec<Value> = match key {
        Some(key) => json[key].as_array().unwrap().clone(),
        None => vec![json],
    };
    let csv = vendor.csv(path).await;
    let (header, body) = csv.split_first().unwrap();
    let mut json_keys: Vec<String> = rows
        .first()
        .map(|r| r.as_object().unwrap().keys().cloned().collect())
        .unwrap_or_else(|| header.to_vec());
    json_keys.sort();
    let mut sorted_header = header.to_vec();
    sorted_header.sort();
    assert_eq!(
        sorted_header, json_keys,
        "{path}: CSV columns = JSON fields"
    );
    assert_eq!(
        body,
        json_as_cells(header, &rows),
        "{path}: CSV rows = JSON rows"
    );
}

fn day(value: &str) -> NaiveDate {
    NaiveDate::parse_from_str(value, "%Y-%m-%d").unwrap()
}

fn first_of_month(date: NaiveDate) -> NaiveDate {
    ledger_core::analytics::first_of_month(date)
}

async fn run_due_work(app: &TestApp, at: chrono::DateTime<Utc>) {
    app.wait_until_projected().await;
    let (writer, _task) = schema::writer::spawn_standalone(app.pool.clone(), app.settings.writer());
    loyalty::expiry::run_once(&app.platform_pool, &writer, at)
        .await
        .unwrap()
        .expect("no other runner holds the lock");
}

/// Two tenants' workloads; tenant A's figures computed by hand, checked through the API
/// (JSON = CSV), then rebuild = live, redelivery and reordering counted once, and the
/// analyst role and the API's roles confined to their tenant.
#[tokio::test]
async fn hand_computed_figures_rebuild_equals_live_and_each_event_counts_once() {
    let app = TestApp::spawn().await;
    let a = Vendor::sign_up(&app).await;
    let b = Vendor::sign_up(&app).await;
    let lagos = TenantFold::new("Africa/Lagos");
    let today = lagos.local_date(Utc::now());

    // Tenant A. A tier ladder first, so that purchases can change tiers.
    a.send(
        reqwest::Method::PUT,
        "/v1/tiers",
        Some(json!({
            "basis": "spend",
            "window": { "kind": "rolling_days", "days": 365 },
            "grace_days": 0,
            "tiers": [
                { "id": "member", "name": "Member", "threshold": 0 },
                { "id": "silver", "name": "Silver", "threshold": 700_000 },
            ],
        })),
    )
    .await;
    let (c1, c2, c3) = (a.customer().await, a.customer().await, a.customer().await);
    // 1 point per 10,000 minor units. The third purchase is 23:30 UTC: the next day in Lagos.
    a.purchase(c1, 500_000, "2026-10-05T10:00:00Z").await; // 50 points
    a.purchase(c1, 300_000, "2026-11-20T10:00:00Z").await; // 30 points; silver (800,000)
    let p3 = a.purchase(c2, 200_000, "2026-11-20T23:30:00Z").await; // 20 points
    let suya = a.reward("Suya", 40).await;
    let chapman = a.reward("Chapman, large", 10).await;
    let code = a.hold(c1, suya).await;
    a.send(
        reqwest::Method::POST,
        &format!("/v1/redemptions/{code}/fulfil"),
        None,
    )
    .await;
    let code = a.hold(c1, chapman).await;
    a.send(
        reqwest::Method::POST,
        &format!("/v1/redemptions/{code}/cancel"),
        None,
    )
    .await;
    a.hold(c2, chapman).await; // left open; expires at the due-work run below
    let refund = a
        .post(
            &format!("/v1/customers/{c2}/refunds"),
            json!({ "purchase_id": p3, "amount_minor": 100_000 }),
        )
        .await;
    assert_eq!(refund["points_due"], 10);
    a.post(
        &format!("/v1/customers/{c3}/adjustments"),
        json!({ "points": 5, "reason": "Goodwill" }),
    )
    .await;

    // Tenant B: a little of everything, which A must never see.
    let d1 = b.customer().await;
    b.purchase(d1, 990_000, "2026-11-20T10:00:00Z").await;
    let cake = b.reward("Cake", 20).await;
    b.hold(d1, cake).await;

    // 200 days on: the open hold expires, then every lot with points left (each lot lives
    // 180 days): c1's October lot (50 − 40 fulfilled = 10) and November lot (30), c2's lot
    // (20 − 10 refunded = 10), c3's adjustment lot (5).
    let later = Utc::now() + Days::days(200);
    let later_day = lagos.local_date(later);
    run_due_work(&app, later).await;
    wait_until_analysed(&app).await;

    // Daily figures, exact.
    let daily = a.json("/v1/analytics/daily").await;
    let zero = json!({
        "points_issued": 0, "points_redeemed": 0, "points_expired": 0, "points_reversed": 0,
        "points_adjusted": 0, "purchases": 0, "purchase_amount_minor": 0, "refunds": 0,
        "refund_amount_minor": 0, "redemptions": 0, "holds": 0, "holds_released": 0,
        "enrolments": 0,
    });
    let row = |date: NaiveDate, fields: Value| {
        let mut row = zero.clone();
        row["day"] = json!(date.to_string());
        for (k, v) in fields.as_object().unwrap() {
            row[k] = v.clone();
        }
        row
    };
    assert_eq!(
        daily,
        json!({ "days": [
            row(day("2026-10-05"), json!({ "purchases": 1, "purchase_amount_minor": 500_000,
                                            "points_issued": 50 })),
            row(day("2026-11-20"), json!({ "purchases": 1, "purchase_amount_minor": 300_000,
                                            "points_issued": 30 })),
            row(day("2026-11-21"), json!({ "purchases": 1, "purchase_amount_minor": 200_000,
                                            "points_issued": 20 })),
            row(today, json!({ "enrolments": 3, "holds": 3, "redemptions": 1,
                               "points_redeemed": 40, "holds_released": 1, "refunds": 1,
                               "refund_amount_minor": 100_000, "points_reversed": 10,
                               "points_adjusted": 5 })),
            row(later_day, json!({ "points_expired": 55, "holds_released": 1 })),
        ]})
    );
    let window = a
        .json("/v1/analytics/daily?from=2026-11-20&to=2026-11-21")
        .await;
    assert_eq!(window["days"].as_array().unwrap().len(), 2);

    let active = a.json("/v1/analytics/active-customers").await;
    assert_eq!(
        active,
        json!({ "as_of": today.to_string(), "customers": 3, "active_7d": 2, "active_30d": 2,
                "active_90d": 2 })
    );

    let rewards = a.json("/v1/analytics/rewards").await;
    assert_eq!(
        rewards,
        json!({ "rewards": [
            { "reward_id": chapman, "name": "Chapman, large", "points_cost": 10, "retired": false,
              "redemptions": 2, "holds": 2, "holds_open": 0, "holds_fulfilled": 0,
              "holds_cancelled": 1, "holds_expired": 1, "direct_redemptions": 0,
              "points_redeemed": 0, "points_held": 0 },
            { "reward_id": suya, "name": "Suya", "points_cost": 40, "retired": false,
              "redemptions": 1, "holds": 1, "holds_open": 0, "holds_fulfilled": 1,
              "holds_cancelled": 0, "holds_expired": 0, "direct_redemptions": 0,
              "points_redeemed": 40, "points_held": 0 },
        ]})
    );

    let tiers = a.json("/v1/analytics/tiers").await;
    assert_eq!(
        tiers,
        json!({ "tiers": [ { "tier": null, "customers": 2 }, { "tier": "silver", "customers": 1 } ] })
    );

    // Everyone enrolled this month; c1 was active in October (purchase), November
    // (purchase) and now (holds); c2 in November and now; c3 never (an adjustment is not
    // the customer's act).
    let cohort = first_of_month(today);
    let months_since = |m: NaiveDate| {
        use chrono::Datelike;
        (m.year() - cohort.year()) * 12 + m.month() as i32 - cohort.month() as i32
    };
    let cell = |m: NaiveDate, active: i64| {
        json!({ "cohort_month": cohort.to_string(), "activity_month": m.to_string(),
                "months_since_enrolment": months_since(m), "cohort_size": 3,
                "active_customers": active })
    };
    assert_eq!(
        a.json("/v1/analytics/cohorts").await,
        json!({ "cohorts": [
            cell(day("2026-10-01"), 1),
            cell(day("2026-11-01"), 2),
            cell(cohort, 2),
        ]})
    );

    let rates = a.json("/v1/analytics/redemption-rate").await;
    let months = rates["months"].as_array().unwrap();
    let month = |m: &str| {
        months
            .iter()
            .find(|r| r["month"] == m)
            .unwrap_or_else(|| panic!("no month {m} in {rates}"))
            .clone()
    };
    assert_eq!(
        month("2026-10-01"),
        json!({ "month": "2026-10-01", "points_redeemed": 0, "points_issued": 50,
                "points_rate_bps": 0, "customers_redeemed": 0, "customers_earned": 1,
                "customers_rate_bps": 0 })
    );
    assert_eq!(
        month("2026-11-01"),
        json!({ "month": "2026-11-01", "points_redeemed": 0, "points_issued": 50,
                "points_rate_bps": 0, "customers_redeemed": 0, "customers_earned": 2,
                "customers_rate_bps": 0 })
    );
    let this_month = month(&cohort.to_string());
    assert_eq!(this_month["points_redeemed"], 40);
    assert_eq!(this_month["customers_redeemed"], 1);
    let redeemed: i64 = months
        .iter()
        .map(|m| m["points_redeemed"].as_i64().unwrap())
        .sum();
    let issued: i64 = months
        .iter()
        .map(|m| m["points_issued"].as_i64().unwrap())
        .sum();
    assert_eq!((redeemed, issued), (40, 100));

    // CSV = JSON, on every endpoint.
    for (path, key) in [
        ("/v1/analytics/daily", Some("days")),
        ("/v1/analytics/daily?from=2026-11-20", Some("days")),
        ("/v1/analytics/active-customers", None),
        ("/v1/analytics/rewards", Some("rewards")),
        ("/v1/analytics/cohorts", Some("cohorts")),
        ("/v1/analytics/tiers", Some("tiers")),
        ("/v1/analytics/redemption-rate", Some("months")),
        ("/v1/analytics/whatsapp", Some("days")),
    ] {
        csv_matches_json(&a, path, key).await;
    }
    let rewards_csv = a.csv("/v1/analytics/rewards").await;
    assert_eq!(
        rewards_csv[1][1], "Chapman, large",
        "quoted, read back whole"
    );

    // B sees its own figures only; an analyst key reads; staff may not.
    let b_daily = b.json("/v1/analytics/daily").await;
    let b_issued: i64 = b_daily["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["points_issued"].as_i64().unwrap())
        .sum();
    assert_eq!(b_issued, 99);
    let analyst = Vendor {
        app: &app,
        tenant: a.tenant,
        token: a.key("analyst").await,
    };
    assert_eq!(analyst.json("/v1/analytics/daily").await, daily);
    let staff = Vendor {
        app: &app,
        tenant: a.tenant,
        token: a.key("staff").await,
    };
    let refused = staff.get("/v1/analytics/daily", None).await;
    assert_eq!(refused.status(), 403);
    for bad in [
        "/v1/analytics/daily?from=2026-13-01",
        "/v1/analytics/daily?from=2026-11-21&to=2026-11-20",
        "/v1/analytics/daily?format=xml",
        "/v1/analytics/daily?limit=3",
        "/v1/analytics/tiers?from=2026-01-01",
        "/v1/analytics/rewards?format=csv&format=csv",
    ] {
        let response = a.get(bad, None).await;
        assert_eq!(response.status(), 400, "{bad}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{bad}"
        );
        let problem: Value = response.json().await.unwrap();
        assert!(
            problem["type"].as_str().unwrap().ends_with("invalid-query"),
            "{bad}: {problem}"
        );
    }

    // Rebuild = live.
    let live = snapshot(&**app.platform_db().await).await;
    assert!(live.len() > 20, "the workload filled the tables");
    let events = runner::rebuild(&Analytics, &app.platform_pool)
        .await
        .unwrap();
    assert_eq!(events as i64, app.event_count().await);
    assert_eq!(snapshot(&**app.platform_db().await).await, live);

    // Redelivery: the whole stream again, and a tail of it again, change nothing. Then,
    // from empty, the events delivered tail first (the missing head is read from the event
    // table) and the whole stream after: the same tables.
    let mut client = app.platform_pool.get().await.unwrap();
    let all = store::read_after(&**client, Position::default(), 100_000)
        .await
        .unwrap();
    let transaction = client.transaction().await.unwrap();
    Analytics.apply(&transaction, &all).await.unwrap();
    Analytics
        .apply(&transaction, &all[all.len() / 2..])
        .await
        .unwrap();
    assert_eq!(
        snapshot(&*transaction).await,
        live,
        "redelivery counted twice"
    );
    Analytics.reset(&transaction).await.unwrap();
    Analytics
        .apply(&transaction, &all[all.len() / 3..])
        .await
        .unwrap();
    Analytics.apply(&transaction, &all).await.unwrap();
    assert_eq!(
        snapshot(&*transaction).await,
        live,
        "reordering changed the figures"
    );
    transaction.rollback().await.unwrap();

    analyst_role_sees_only_its_tenants_views(&app, a.tenant, b.tenant).await;
    app.stop().await;
}

/// As `loyalty_analyst` (what a BI tool logs in as), with tenant A named: every view shows
/// A's rows only; without a tenant, nothing; the tables behind the views, the event table,
/// personal data and the other schemas are refused.
async fn analyst_role_sees_only_its_tenants_views(app: &TestApp, a: Uuid, b: Uuid) {
    let mut admin = admin_client(&dbname(&app.database_url)).await;
    for view in VIEWS {
        let (mine, others): (i64, i64) = {
            let transaction = admin.transaction().await.unwrap();
            transaction
                .batch_execute("SET LOCAL ROLE loyalty_analyst")
                .await
                .unwrap();
            transaction
                .execute(
                    "SELECT set_config('loyalty.tenant_ids', $1, true)",
                    &[&a.to_string()],
                )
                .await
                .unwrap();
            let row = transaction
                .query_one(
                    &format!(
                        "SELECT count(*) FILTER (WHERE tenant_id = $1), \
                                count(*) FILTER (WHERE tenant_id <> $1) FROM analytics.{view}"
                    ),
                    &[&a],
                )
                .await
                .unwrap();
            transaction.rollback().await.unwrap();
            (row.get(0), row.get(1))
        };
        assert_eq!(others, 0, "{view} shows another tenant's rows");
        if view != "whatsapp_activity" {
            assert!(mine > 0, "{view} shows tenant A's rows");
        }
        let transaction = admin.transaction().await.unwrap();
        transaction
            .batch_execute("SET LOCAL ROLE loyalty_analyst")
            .await
            .unwrap();
        let unscoped: i64 = transaction
            .query_one(&format!("SELECT count(*) FROM analytics.{view}"), &[])
            .await
            .unwrap()
            .get(0);
        transaction.rollback().await.unwrap();
        assert_eq!(unscoped, 0, "{view} without a tenant shows nothing");
    }
    // B's analyst sees B's.
    let transaction = admin.transaction().await.unwrap();
    transaction
        .batch_execute(&format!(
            "SET LOCAL ROLE loyalty_analyst; SET LOCAL loyalty.tenant_ids = '{b}'"
        ))
        .await
        .unwrap();
    let b_rows: i64 = transaction
        .query_one(
            "SELECT count(*) FROM analytics.daily_activity WHERE tenant_id = $1",
            &[&b],
        )
        .await
        .unwrap()
        .get(0);
    transaction.rollback().await.unwrap();
    assert!(b_rows > 0);

    for refused in [
        "SELECT 1 FROM events",
        "SELECT 1 FROM customer_keys",
        "SELECT 1 FROM customer_phone_index",
        "SELECT 1 FROM users",
        "SELECT 1 FROM tenants",
        "SELECT 1 FROM whatsapp_outbox",
        "SELECT 1 FROM whatsapp_inbox",
        "SELECT 1 FROM whatsapp_conversations",
        "SELECT 1 FROM projection.customer_balances",
        "SELECT 1 FROM analytics.daily",
        "SELECT 1 FROM analytics.customers",
        "SELECT 1 FROM analytics.customer_months",
        "SELECT 1 FROM tenancy.tenant_by_vendor_code('X')",
        "INSERT INTO analytics.daily (tenant_id, day) VALUES (gen_random_uuid(), now())",
    ] {
        let transaction = admin.transaction().await.unwrap();
        transaction
            .batch_execute(&format!(
                "SET LOCAL ROLE loyalty_analyst; SET LOCAL loyalty.tenant_ids = '{a}'"
            ))
            .await
            .unwrap();
        let error = transaction
            .query(refused, &[])
            .await
            .expect_err(&format!("the analyst must not run: {refused}"));
        assert_eq!(
            error.code(),
            Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
            "{refused}: {error}"
        );
        transaction.rollback().await.unwrap();
    }
}

/// WhatsApp traffic of two tenants on the shared number, sent through the sandbox with its
/// delivery statuses: the live refresher's figures, exact for the counts, equal a rebuild;
/// each tenant sees its own.
#[tokio::test]
async fn whatsapp_figures_are_per_tenant_and_rebuild_equals_live() {
    let app = TestApp::spawn_whatsapp(|_| {}).await;
    let other = Vendor::sign_up(&app).await;
    let chat = Chat::shared(&app);
    let (ada, bola, chidi) = (phone(), phone(), phone());
    let code = vendor_code(&app, app.tenant_id).await;
    let other_code = vendor_code(&app, ledger_core::TenantId::from_uuid(other.tenant)).await;
    chat.say(&ada, &format!("JOIN {code}")).await;
    chat.reply(&ada, 1).await;
    chat.say(&ada, "POINTS").await;
    chat.reply(&ada, 2).await;
    chat.say(&bola, &format!("JOIN {code}")).await;
    chat.reply(&bola, 1).await;
    chat.say(&chidi, &format!("JOIN {other_code}")).await;
    chat.reply(&chidi, 1).await;

    // Every message sent and its statuses in (the sandbox reports sent, delivered, read).
    let admin = admin_client(&dbname(&app.database_url)).await;
    wait_for(
        Duration::from_secs(30),
        "every reply to be read",
        || async {
            admin
                .query_one(
                    "SELECT count(*) = 4 AND bool_and(state = 'read') FROM whatsapp_outbox",
                    &[],
                )
                .await
                .unwrap()
                .get::<_, Option<bool>>(0)
                .unwrap_or(false)
        },
    )
    .await;
    let today = TenantFold::new("Africa/Lagos")
        .local_date(Utc::now())
        .to_string();
    let expected = |inbound: i64, outbound: i64| {
        json!({ "days": [ {
            "day": today, "inbound": inbound, "outbound": outbound,
            "outbound_replies": outbound, "outbound_notifications": 0, "outbound_broadcasts": 0,
            "pending": 0, "sent": outbound, "delivered": outbound, "read": outbound,
            "failed": 0, "withdrawn": 0,
        } ] })
    };
    // The app's own API key is a staff key: no analytics.
    let staff = Vendor {
        app: &app,
        tenant: app.tenant_id.as_uuid(),
        token: app.api_key.clone(),
    };
    assert_eq!(
        staff.get("/v1/analytics/whatsapp", None).await.status(),
        403
    );
    let other_analyst = Vendor {
        app: &app,
        tenant: other.tenant,
        token: other.key("analyst").await,
    };
    // The refresher runs every second in the tests.
    let expected_other = expected(1, 1);
    wait_for(Duration::from_secs(30), "the refresher", || async {
        other_analyst.json("/v1/analytics/whatsapp").await == expected_other
    })
    .await;
    csv_matches_json(&other_analyst, "/v1/analytics/whatsapp", Some("days")).await;

    // The app's tenant, as its analyst role in the database.
    let mut scoped = admin_client(&dbname(&app.database_url)).await;
    let transaction = scoped.transaction().await.unwrap();
    transaction
        .batch_execute(&format!(
            "SET LOCAL ROLE loyalty_analyst; SET LOCAL loyalty.tenant_ids = '{}'",
            app.tenant_id.as_uuid()
        ))
        .await
        .unwrap();
    let mine = transaction
        .query(
            "SELECT inbound, outbound, read, failed FROM analytics.whatsapp_activity",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(
        (
            mine[0].get::<_, i64>(0),
            mine[0].get::<_, i64>(1),
            mine[0].get::<_, i64>(2),
            mine[0].get::<_, i64>(3)
        ),
        (3, 3, 3, 0),
        "ada's two messages and bola's one, a reply each, all read"
    );
    transaction.rollback().await.unwrap();

    let live = whatsapp_rows(&app).await;
    assert_eq!(live.len(), 2, "one day of each tenant");
    let written = projections::whatsapp_analytics::rebuild(&app.platform_pool)
        .await
        .unwrap();
    assert_eq!(written, 2);
    assert_eq!(whatsapp_rows(&app).await, live, "rebuild = live");
    // A window refresh leaves the days before its window as they were.
    let after_today = Utc::now().date_naive() + Days::days(2);
    projections::whatsapp_analytics::refresh(&app.platform_pool, Some(after_today))
        .await
        .unwrap();
    assert_eq!(whatsapp_rows(&app).await, live);
    app.stop().await;
}

async fn whatsapp_rows(app: &TestApp) -> Vec<String> {
    admin_client(&dbname(&app.database_url))
        .await
        .query(
            "SELECT row(w.*)::text FROM analytics.whatsapp_daily w ORDER BY tenant_id, day",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect()
}

/// `loyalty project rebuild analytics | analytics-whatsapp`: the binary's commands run and
/// say what they rebuilt.
#[tokio::test]
async fn the_rebuild_commands_run_by_name() {
    let database_url = crate::helpers::fresh_database().await;
    for (name, said) in [
        ("analytics", "rebuilt from 0 events"),
        (
            "analytics-whatsapp",
            "rebuilt 0 tenant-days from the WhatsApp tables",
        ),
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_loyalty"))
            .args(["project", "rebuild", name])
            .env("DATABASE_URL", &database_url)
            .env("RUST_LOG", "warn")
            .output()
            .expect("running the loyalty binary");
        assert!(output.status.success(), "{name}: {output:?}");
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), said);
    }
}

/// A randomized workload over three tenants (back-dated purchases, point redemptions,
/// reward holds fulfilled or cancelled, refunds, adjustments, expiry): per tenant, the daily
/// figures add up to the balances projection's counters, an independent fold of the same
/// events; and a rebuild equals the live tables.
#[tokio::test]
async fn a_random_workload_agrees_with_the_balances_projection_and_rebuilds_the_same() {
    let app = TestApp::spawn().await;
    let (mut rng, seed) = crate::helpers::Rng::seeded();
    eprintln!("workload seed (TEST_SEED): {seed}");
    let vendors = [
        Vendor::sign_up(&app).await,
        Vendor::sign_up(&app).await,
        Vendor::sign_up(&app).await,
    ];
    let mut customers = Vec::new();
    let mut rewards = Vec::new();
    for (v, vendor) in vendors.iter().enumerate() {
        rewards.push(vendor.reward("Prize", 5).await);
        for _ in 0..4 {
            customers.push((v, vendor.customer().await, Vec::<(Uuid, i64)>::new()));
        }
    }
    for _ in 0..120 {
        let slot = rng.range(0, customers.len() as i64) as usize;
        let (v, customer) = (customers[slot].0, customers[slot].1);
        let vendor = &vendors[v];
        let post = |path: String, body: Value| async move {
            let request = vendor
                .app
                .http
                .post(vendor.app.url(&path))
                .bearer_auth(&vendor.token)
                .header("Idempotency-Key", Uuid::new_v4().to_string());
            // Fulfilment and cancellation take no body.
            let request = if body.is_null() {
                request
            } else {
                request.json(&body)
            };
            request.send().await.unwrap()
        };
        match rng.range(0, 10) {
            0..=4 => {
                let when = Utc::now() - Days::hours(rng.range(0, 24 * 300));
                let amount = rng.range(10_000, 900_000);
                let id = vendor.purchase(customer, amount, &when.to_rfc3339()).await;
                customers[slot].2.push((id, amount));
            }
            5 => {
                let response = post(
                    format!("/v1/customers/{customer}/redemptions"),
                    json!({ "points": rng.range(1, 30), "description": "Discount" }),
                )
                .await;
                assert!(matches!(response.status().as_u16(), 201 | 409));
            }
            6 | 7 => {
                let response = post(
                    format!("/v1/customers/{customer}/redemptions"),
                    json!({ "reward_id": rewards[v] }),
                )
                .await;
                if response.status() == 201 {
                    let body: Value = response.json().await.unwrap();
                    let code = body["code"].as_str().unwrap().to_owned();
                    let action = if rng.range(0, 2) == 0 {
                        "fulfil"
                    } else {
                        "cancel"
                    };
                    if rng.range(0, 3) > 0 {
                        let done =
                            post(format!("/v1/redemptions/{code}/{action}"), json!(null)).await;
                        assert_eq!(done.status(), 200, "{action}");
                    }
                }
            }
            8 => {
                if let Some(&(purchase, amount)) = customers[slot].2.first() {
                    let response = post(
                        format!("/v1/customers/{customer}/refunds"),
                        json!({ "purchase_id": purchase, "amount_minor": rng.range(1, amount / 2 + 2) }),
                    )
                    .await;
                    assert!(matches!(response.status().as_u16(), 201 | 409));
                }
            }
            _ => {
                let response = post(
                    format!("/v1/customers/{customer}/adjustments"),
                    json!({ "points": rng.range(-5, 20).max(1), "reason": "Goodwill" }),
                )
                .await;
                assert_eq!(response.status(), 201);
            }
        }
    }
    run_due_work(&app, Utc::now() + Days::days(150)).await;
    app.wait_until_projected().await;
    wait_until_analysed(&app).await;

    let admin = admin_client(&dbname(&app.database_url)).await;
    let per_tenant = |sql: &'static str| {
        let admin = &admin;
        async move {
            admin
                .query(sql, &[])
                .await
                .unwrap()
                .iter()
                .map(|r| {
                    (
                        r.get::<_, Uuid>(0),
                        (0..7).map(|i| r.get::<_, i64>(i + 1)).collect::<Vec<_>>(),
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    let analytics = per_tenant(
        "SELECT tenant_id, sum(points_issued)::bigint, sum(points_redeemed)::bigint, \
                sum(points_expired)::bigint, sum(points_reversed)::bigint, \
                sum(points_adjusted)::bigint, sum(purchases)::bigint, sum(enrolments)::bigint \
         FROM analytics.daily GROUP BY 1 ORDER BY 1",
    )
    .await;
    let balances = per_tenant(
        "SELECT tenant_id, sum(earned)::bigint, sum(redeemed)::bigint, sum(expired)::bigint, \
                sum(reversed)::bigint, sum(adjusted)::bigint, sum(purchases)::bigint, \
                count(*)::bigint \
         FROM projection.customer_balances GROUP BY 1 ORDER BY 1",
    )
    .await;
    assert_eq!(analytics.len(), 3, "the three tenants with customers");
    assert_eq!(analytics, balances, "analytics ≠ balances (seed {seed})");
    assert!(
        analytics.iter().all(|(_, v)| v[0] > 0 && v[5] > 0),
        "every tenant issued points and logged purchases"
    );

    let live = snapshot(&**app.platform_db().await).await;
    runner::rebuild(&Analytics, &app.platform_pool)
        .await
        .unwrap();
    assert_eq!(
        snapshot(&**app.platform_db().await).await,
        live,
        "rebuild ≠ live (seed {seed})"
    );
    app.stop().await;
}

/// The WhatsApp figures' attribution and counting, exact, on rows written by hand: a
/// tenant's own number, the shared number through the first reply, messages nobody owns,
/// every outbound kind and state, each tenant's own time zone; and a window refresh that
/// recomputes its days and leaves the older ones alone.
#[tokio::test]
async fn whatsapp_rows_are_attributed_and_counted_by_local_day() {
    let app = TestApp::spawn_with(loyalty::app::Components::NONE).await;
    let admin = admin_client(&dbname(&app.database_url)).await;
    let (lagos, new_york) = (Uuid::new_v4(), Uuid::new_v4());
    admin
        .execute(
            "INSERT INTO analytics.tenants VALUES ($1, 0, 'Africa/Lagos'), \
             ($2, 0, 'America/New_York')",
            &[&lagos, &new_york],
        )
        .await
        .unwrap();
    admin
        .execute(
            "INSERT INTO whatsapp_numbers (phone_number_id, tenant_id, display_phone_number) \
             VALUES ('pn-own', $1, '+2340000000001'), ('pn-shared', NULL, '+2340000000002')",
            &[&lagos],
        )
        .await
        .unwrap();
    // (kind, dedupe key, number, received at)
    for (kind, key, number, at) in [
        // Lagos' own number, 23:30 UTC: the next day in Lagos.
        ("message", "msg:own", "pn-own", "2026-11-20T23:30:00Z"),
        // The shared number, answered for New York: New York's.
        ("message", "msg:a", "pn-shared", "2026-11-20T12:00:00Z"),
        // The shared number, never answered for a tenant: nobody's.
        ("message", "msg:b", "pn-shared", "2026-11-20T12:00:00Z"),
        // Not a message.
        (
            "status",
            "status:own:read",
            "pn-own",
            "2026-11-20T23:40:00Z",
        ),
    ] {
        admin
            .execute(
                "INSERT INTO whatsapp_inbox (kind, dedupe_key, phone_number_id, received_at, \
                     master_key_id, wrapped_key, sealed) \
                 VALUES ($1, $2, $3, $4::text::timestamptz, 'k', '\\x00', '\\x00')",
                &[&kind, &key, &number, &at],
            )
            .await
            .unwrap();
    }
    // (dedupe key, tenant, kind, state, queued at)
    let rows: [(&str, Option<Uuid>, &str, &str, &str); 7] = [
        (
            "reply:msg:own:0",
            Some(lagos),
            "reply",
            "read",
            "2026-11-20T23:30:00Z",
        ),
        (
            "notify:1",
            Some(lagos),
            "notification",
            "failed",
            "2026-11-20T23:31:00Z",
        ),
        (
            "broadcast:1",
            Some(lagos),
            "broadcast",
            "withdrawn",
            "2026-11-20T23:32:00Z",
        ),
        (
            "reply:msg:own:1",
            Some(lagos),
            "reply",
            "queued",
            "2026-11-20T23:33:00Z",
        ),
        // 03:00 UTC on the 21st is 22:00 on the 20th in New York.
        (
            "reply:msg:a:0",
            Some(new_york),
            "reply",
            "delivered",
            "2026-11-21T03:00:00Z",
        ),
        (
            "reply:msg:b:0",
            None,
            "reply",
            "sent",
            "2026-11-20T12:00:00Z",
        ),
        (
            "notify:2",
            Some(new_york),
            "notification",
            "sending",
            "2026-11-22T15:00:00Z",
        ),
    ];
    for (key, tenant, kind, state, at) in rows {
        let broadcast = (kind == "broadcast").then(Uuid::new_v4);
        admin
            .execute(
                "INSERT INTO whatsapp_outbox (message_id, dedupe_key, tenant_id, phone_number_id, \
                     customer_digest, master_key_id, wrapped_key, sealed_recipient, kind, body, \
                     state, queued_at, broadcast_id) \
                 VALUES ($1, $2, $3, 'pn-own', decode(repeat('00', 32), 'hex'), 'k', '\\x00', \
                     '\\x00', $4, '{}', $5, $6::text::timestamptz, $7)",
                &[
                    &Uuid::new_v4(),
                    &key,
                    &tenant,
                    &kind,
                    &state,
                    &at,
                    &broadcast,
                ],
            )
            .await
            .unwrap();
    }
    let figures = || async {
        admin
            .query(
                "SELECT tenant_id, day::text, ARRAY[inbound, outbound, outbound_replies, \
                     outbound_notifications, outbound_broadcasts, pending, sent, delivered, \
                     read, failed, withdrawn] \
                 FROM analytics.whatsapp_daily ORDER BY tenant_id = $1 DESC, day",
                &[&lagos],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r.get::<_, Uuid>(0),
                    r.get::<_, String>(1),
                    r.get::<_, Vec<i64>>(2),
                )
            })
            .collect::<Vec<_>>()
    };
    let written = projections::whatsapp_analytics::rebuild(&app.platform_pool)
        .await
        .unwrap();
    assert_eq!(written, 3);
    //            inbound outbound replies notif. broadc. pending sent deliv. read failed withdrawn
    let lagos_day = vec![1, 4, 2, 1, 1, 1, 1, 1, 1, 1, 1];
    let expected = vec![
        (lagos, "2026-11-21".to_owned(), lagos_day),
        (
            new_york,
            "2026-11-20".to_owned(),
            vec![1, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0],
        ),
        (
            new_york,
            "2026-11-22".to_owned(),
            vec![0, 1, 0, 1, 0, 1, 0, 0, 0, 0, 0],
        ),
    ];
    assert_eq!(figures().await, expected);

    // The pending reply is read; a refresh of the window from the 21st picks it up and
    // leaves New York's 20th alone (even after its row is changed behind the window).
    admin
        .batch_execute(
            "UPDATE whatsapp_outbox SET state = 'read' WHERE dedupe_key = 'reply:msg:own:1'; \
             UPDATE whatsapp_outbox SET state = 'read' WHERE dedupe_key = 'reply:msg:a:0'",
        )
        .await
        .unwrap();
    projections::whatsapp_analytics::refresh(&app.platform_pool, Some(day("2026-11-21")))
        .await
        .unwrap();
    let mut after = expected.clone();
    after[0].2 = vec![1, 4, 2, 1, 1, 0, 2, 2, 2, 1, 1];
    assert_eq!(figures().await, after);
    // A rebuild recomputes every day: New York's 20th too.
    projections::whatsapp_analytics::rebuild(&app.platform_pool)
        .await
        .unwrap();
    after[1].2 = vec![1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0];
    assert_eq!(figures().await, after);
    app.stop().await;
}
