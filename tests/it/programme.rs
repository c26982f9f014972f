//! The programme through the HTTP API against real PostgreSQL: settings, pending points and
//! their activation, refunds (proportional, idempotent, never past the purchase, debt by
//! policy), manual adjustments with reason and actor, and reward holds (cancel, expiry).
//! The scheduled work runs through `loyalty::expiry::run_once` at a chosen time.

use crate::helpers::TestApp;
use crate::rewards::{problem_type, Owner};
use chrono::{Duration as Days, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

impl Owner<'_> {
    async fn put_settings(&self, body: &Value) -> reqwest::Response {
        self.app
            .http
            .put(self.app.url("/v1/programme/settings"))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .expect("PUT")
    }

    /// Logs a purchase; answers its id and the points it earned.
    async fn purchase(&self, customer: Uuid, amount_minor: i64) -> (Uuid, i64) {
        let response = self
            .post(
                "/v1/purchases",
                Some(&format!("buy-{}", Uuid::new_v4())),
                Some(json!({ "customer_id": customer, "amount_minor": amount_minor })),
            )
            .await;
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        let id = Uuid::parse_str(body["purchase_id"].as_str().unwrap()).unwrap();
        (id, body["points_earned"].as_i64().unwrap())
    }

    async fn refund(&self, key: &str, customer: Uuid, body: Value) -> reqwest::Response {
        self.post(
            &format!("/v1/customers/{customer}/refunds"),
            Some(key),
            Some(body),
        )
        .await
    }

    async fn adjust(&self, key: &str, customer: Uuid, body: Value) -> reqwest::Response {
        self.post(
            &format!("/v1/customers/{customer}/adjustments"),
            Some(key),
            Some(body),
        )
        .await
    }

    async fn customer(&self, customer: Uuid) -> Value {
        self.app.wait_until_projected().await;
        self.get(&format!("/v1/customers/{customer}")).await
    }
}

fn settings(pending_days: u32, refund_policy: Value) -> Value {
    json!({
        "time_zone": "Africa/Lagos",
        "pending_days": pending_days,
        "refund_policy": refund_policy,
        "hold_days": 7,
        "point_value_minor": 100,
    })
}

/// Runs the scheduled due work as of `at` (holds, activation, expiry).
async fn run_due_work(app: &TestApp, at: chrono::DateTime<Utc>) -> loyalty::expiry::ExpiryReport {
    app.wait_until_projected().await;
    let (writer, _task) = schema::writer::spawn_standalone(app.pool.clone(), app.settings.writer());
    loyalty::expiry::run_once(&app.platform_pool, &writer, at)
        .await
        .unwrap()
        .expect("no other runner holds the lock")
}

#[tokio::test]
async fn settings_are_read_replaced_whole_and_bad_ones_change_nothing() {
    let app = TestApp::spawn().await;
    let owner = Owner::sign_up(&app).await;
    let defaults = owner.get("/v1/programme/settings").await;
    assert_eq!(
        defaults,
        json!({
            "time_zone": "Africa/Lagos",
            "pending_days": 0,
            "refund_policy": { "kind": "clamp_at_zero", "debt_limit": null },
            "hold_days": 14,
            "point_value_minor": null,
        })
    );
    let wanted = settings(14, json!({ "kind": "allow_debt", "debt_limit": 500 }));
    let response = owner.put_settings(&wanted).await;
    assert_eq!(response.status(), 200);
    let answered: Value = response.json().await.unwrap();
    assert_eq!(answered["refund_policy"]["debt_limit"], 500);
    assert_eq!(owner.get("/v1/programme/settings").await, answered);

    let events = app.event_count().await;
    let mut bad = wanted.clone();
    bad["time_zone"] = json!("Mars/Olympus");
    let response = owner.put_settings(&bad).await;
    assert_eq!(response.status(), 422);
    assert_eq!(problem_type(response).await, "invalid-field");
    // A return window as long as the points' lifetime (180 days) is the ledger's refusal.
    let response = owner
        .put_settings(&settings(180, json!({ "kind": "clamp_at_zero" })))
        .await;
    assert_eq!(response.status(), 422);
    assert_eq!(problem_type(response).await, "invalid-settings");
    assert_eq!(app.event_count().await, events, "refusals append nothing");
    assert_eq!(owner.get("/v1/programme/settings").await, answered);

    // Staff (the test app's API key) read the settings but may not change them.
    let staff = app.get("/v1/programme/settings").await;
    assert_eq!(staff.status(), 200);
    let forbidden = app
        .http
        .put(app.url("/v1/programme/settings"))
        .bearer_auth(&app.api_key)
        .json(&wanted)
        .send()
        .await
        .unwrap();
    assert_eq!(forbidden.status(), 403);
    app.stop().await;
}

#[tokio::test]
async fn pending_points_are_not_spendable_until_activated_and_a_refund_inside_the_window_cancels_them(
) {
    let app = TestApp::spawn().await;
    let owner = Owner::sign_up(&app).await;
    let put = owner
        .put_settings(&settings(14, json!({ "kind": "clamp_at_zero" })))
        .await;
    assert_eq!(put.status(), 200);
    let customer = owner.customer_with(0).await;
    let reward = owner.create_reward("Chapman", 30).await;
    let (_, points) = owner.purchase(customer, 500_000).await;
    assert_eq!(points, 50);
    let (returned, _) = owner.purchase(customer, 200_000).await;

    let view = owner.customer(customer).await;
    assert_eq!(
        (view["pending"].as_i64(), view["balance"].as_i64()),
        (Some(70), Some(0))
    );
    assert_eq!(view["available"], 0);
    let refused = owner.redeem_reward("too-early", customer, reward).await;
    assert_eq!(refused.status(), 409);
    assert_eq!(problem_type(refused).await, "insufficient-points");

    // The second purchase comes back inside the window: its pending points are cancelled.
    let refund = owner
        .refund(
            "return-1",
            customer,
            json!({ "purchase_id": returned, "amount_minor": 200_000 }),
        )
        .await;
    assert_eq!(refund.status(), 201);
    let body: Value = refund.json().await.unwrap();
    assert_eq!(body["from_pending"], 20);
    assert_eq!(body["pending"], 50);
    assert_eq!(body["balance"], 0);

    // Not yet: the window has 14 days.
    let early = run_due_work(&app, Utc::now() + Days::days(13)).await;
    assert_eq!(early.lots_activated, 0);
    let due = run_due_work(&app, Utc::now() + Days::days(15)).await;
    assert_eq!(due.lots_activated, 1);
    let again = run_due_work(&app, Utc::now() + Days::days(15)).await;
    assert_eq!(again.lots_activated, 0, "activation happens once");
    let view = owner.customer(customer).await;
    assert_eq!(
        (view["pending"].as_i64(), view["balance"].as_i64()),
        (Some(0), Some(50))
    );
    assert_eq!(
        owner.redeem_reward("now", customer, reward).await.status(),
        201
    );
    app.stop().await;
}

#[tokio::test]
async fn refunds_reverse_points_proportionally_once_and_never_past_the_purchase() {
    let app = TestApp::spawn().await;
    let owner = Owner::sign_up(&app).await;
    let customer = owner.customer_with(0).await;
    let (purchase, points) = owner.purchase(customer, 1_000_000).await;
    assert_eq!(points, 100);

    let third = json!({ "purchase_id": purchase, "amount_minor": 333_333, "reference": "slip-1" });
    let first = owner.refund("r-1", customer, third.clone()).await;
    assert_eq!(first.status(), 201);
    let first_bytes = first.bytes().await.unwrap();
    let body: Value = serde_json::from_slice(&first_bytes).unwrap();
    // floor(100 × 333,333 / 1,000,000) = 33.
    assert_eq!(body["points_due"], 33);
    assert_eq!(body["from_balance"], 33);
    assert_eq!(body["balance"], 67);

    // A retry is the first answer, byte for byte, and appends nothing.
    let events = app.event_count().await;
    let retry = owner.refund("r-1", customer, third).await;
    assert_eq!(retry.status(), 201);
    assert_eq!(retry.headers()["Idempotent-Replayed"], "true");
    assert_eq!(retry.bytes().await.unwrap(), first_bytes);
    assert_eq!(app.event_count().await, events);

    // More than what is left of the purchase: refused, nothing changes.
    let too_much = owner
        .refund(
            "r-2",
            customer,
            json!({ "purchase_id": purchase, "amount_minor": 666_668 }),
        )
        .await;
    assert_eq!(too_much.status(), 409);
    let problem: Value = too_much.json().await.unwrap();
    assert_eq!(problem["refundable_minor"], 666_667);
    let unknown = owner
        .refund(
            "r-3",
            customer,
            json!({ "purchase_id": Uuid::now_v7(), "amount_minor": 1 }),
        )
        .await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(problem_type(unknown).await, "purchase-not-found");
    for (key, bad) in [
        ("b-1", json!({ "purchase_id": purchase, "amount_minor": 0 })),
        (
            "b-2",
            json!({ "purchase_id": purchase, "amount_minor": 1.5 }),
        ),
        ("b-3", json!({ "purchase_id": "nope", "amount_minor": 1 })),
        (
            "b-4",
            json!({ "purchase_id": purchase, "amount_minor": 1, "extra": 1 }),
        ),
    ] {
        let response = owner.refund(key, customer, bad).await;
        assert_eq!(response.status(), 422, "{key}");
    }
    assert_eq!(app.event_count().await, events, "refusals append nothing");

    // The rest of the purchase: exactly the rest of its points, 67 (the refunds add up).
    let rest = owner
        .refund(
            "r-4",
            customer,
            json!({ "purchase_id": purchase, "amount_minor": 666_667 }),
        )
        .await;
    let body: Value = rest.json().await.unwrap();
    assert_eq!(body["points_due"], 67);
    assert_eq!(body["balance"], 0);
    let view = owner.customer(customer).await;
    assert_eq!(
        (view["reversed"].as_i64(), view["balance"].as_i64()),
        (Some(100), Some(0))
    );
    app.stop().await;
}

#[tokio::test]
async fn a_refund_of_spent_points_clamps_or_goes_into_debt_by_policy_and_later_points_pay_it() {
    let app = TestApp::spawn().await;
    let owner = Owner::sign_up(&app).await;
    let put = owner
        .put_settings(&settings(
            0,
            json!({ "kind": "allow_debt", "debt_limit": 20 }),
        ))
        .await;
    assert_eq!(put.status(), 200);
    let customer = owner.customer_with(0).await;
    let (purchase, _) = owner.purchase(customer, 1_000_000).await;
    let spent = owner
        .post(
            &format!("/v1/customers/{customer}/redemptions"),
            Some("spend-all"),
            Some(json!({ "points": 100, "description": "Party tray" })),
        )
        .await;
    assert_eq!(spent.status(), 201);

    let refund = owner
        .refund(
            "r-1",
            customer,
            json!({ "purchase_id": purchase, "amount_minor": 1_000_000 }),
        )
        .await;
    let body: Value = refund.json().await.unwrap();
    assert_eq!(body["debt"], 20, "{body}");
    assert_eq!(body["clamped"], 80, "{body}");
    assert_eq!(body["balance"], -20);
    assert_eq!(body["debt_total"], 20);

    // The next 30 points pay the 20 owed first.
    owner.purchase(customer, 300_000).await;
    let view = owner.customer(customer).await;
    assert_eq!(
        (view["balance"].as_i64(), view["debt"].as_i64()),
        (Some(10), Some(0))
    );
    let history = owner
        .get(&format!("/v1/customers/{customer}/history"))
        .await;
    let reasons: Vec<&str> = history["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert!(
        reasons.contains(&"20 points paid back owed points"),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(
            &"Refund of 10000.00 NGN: 20 points taken back, 20 points owed, 80 points forgiven (beyond the debt limit or expired)"
        ),
        "{reasons:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn adjustments_carry_a_reason_and_the_actor_and_bad_ones_change_nothing() {
    let app = TestApp::spawn().await;
    let owner = Owner::sign_up(&app).await;
    let customer = owner.customer_with(10).await;
    let added = owner
        .adjust(
            "a-1",
            customer,
            json!({ "points": 50, "reason": "Goodwill: late order" }),
        )
        .await;
    assert_eq!(added.status(), 201);
    let body: Value = added.json().await.unwrap();
    assert_eq!(body["balance"], 60);
    assert!(body["lot_id"].is_string() && body["expires_at"].is_string());
    let taken = owner
        .adjust(
            "a-2",
            customer,
            json!({ "points": -15, "reason": "Double scan" }),
        )
        .await;
    let body: Value = taken.json().await.unwrap();
    assert_eq!(body["balance"], 45);

    let events = app.event_count().await;
    for (key, bad, status) in [
        ("b-1", json!({ "points": -46, "reason": "Too much" }), 409),
        ("b-2", json!({ "points": 0, "reason": "Nothing" }), 422),
        ("b-3", json!({ "points": 5, "reason": "   " }), 422),
        ("b-4", json!({ "points": 5 }), 422),
        (
            "b-5",
            json!({ "points": 5, "reason": "x".repeat(201) }),
            422,
        ),
        (
            "b-6",
            json!({ "points": 10_000_000_000_000_i64, "reason": "Huge" }),
            422,
        ),
    ] {
        let response = owner.adjust(key, customer, bad).await;
        assert_eq!(response.status(), status, "{key}");
    }
    assert_eq!(app.event_count().await, events, "refusals append nothing");

    let me = owner.get("/v1/me").await;
    let user = me["id"].as_str().unwrap().to_owned();
    let history = owner
        .get(&format!("/v1/customers/{customer}/history"))
        .await;
    let entries = history["entries"].as_array().unwrap();
    let goodwill = entries
        .iter()
        .find(|e| e["reason"] == "Adjusted +50: Goodwill: late order")
        .expect("the adjustment is in the history");
    assert_eq!(goodwill["points"], 50);
    assert_eq!(goodwill["actor"], format!("user:{user}"));
    assert!(entries
        .iter()
        .any(|e| e["reason"] == "Adjusted -15: Double scan" && e["points"] == -15));

    // A till (staff API key) may not adjust.
    let staff_customer = app.enrolled_customer(&crate::helpers::phone()).await;
    let forbidden = app
        .post_raw(
            &format!("/v1/customers/{staff_customer}/adjustments"),
            Some("application/json"),
            Some("s-1"),
            json!({ "points": 5, "reason": "Free points" })
                .to_string()
                .into_bytes(),
        )
        .await;
    assert_eq!(forbidden.status(), 403);
    app.stop().await;
}

#[tokio::test]
async fn a_hold_is_cancelled_or_expires_exactly_once_and_its_points_come_back() {
    let app = TestApp::spawn().await;
    let owner = Owner::sign_up(&app).await;
    let customer = owner.customer_with(100).await;
    let reward = owner.create_reward("Suya", 40).await;

    let held: Value = owner
        .redeem_reward("h-1", customer, reward)
        .await
        .json()
        .await
        .unwrap();
    let code = held["code"].as_str().unwrap().to_owned();
    assert_eq!(held["available"], 60);
    let cancelled = owner
        .post(&format!("/v1/redemptions/{code}/cancel"), Some("c-1"), None)
        .await;
    assert_eq!(cancelled.status(), 200);
    let body: Value = cancelled.json().await.unwrap();
    assert_eq!(
        (body["points_released"].as_i64(), body["available"].as_i64()),
        (Some(40), Some(100))
    );
    let again = owner
        .post(&format!("/v1/redemptions/{code}/cancel"), Some("c-2"), None)
        .await;
    assert_eq!(again.status(), 409);
    assert_eq!(problem_type(again).await, "hold-released");
    let fulfil = owner.fulfil("f-1", &code).await;
    assert_eq!(fulfil.status(), 409);
    assert_eq!(problem_type(fulfil).await, "hold-released");
    let unknown = owner
        .post("/v1/redemptions/ZZZZZZZZ/cancel", Some("c-3"), None)
        .await;
    assert_eq!(unknown.status(), 404);

    // A second hold is not collected within the 14 days: the run frees it, once.
    let second: Value = owner
        .redeem_reward("h-2", customer, reward)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(second["available"], 60);
    let not_yet = run_due_work(&app, Utc::now() + Days::days(13)).await;
    assert_eq!(not_yet.holds_released, 0);
    let due = run_due_work(&app, Utc::now() + Days::days(15)).await;
    assert_eq!(due.holds_released, 1);
    let again = run_due_work(&app, Utc::now() + Days::days(15)).await;
    assert_eq!(again.holds_released, 0, "a hold is released once");
    assert_eq!(owner.available(customer).await, 100);
    assert_eq!(owner.balance(customer).await, 100);
    let late = owner.fulfil("f-2", second["code"].as_str().unwrap()).await;
    assert_eq!(late.status(), 409);
    assert_eq!(problem_type(late).await, "hold-released");
    app.stop().await;
}

#[tokio::test]
async fn a_tier_ladder_upgrades_at_the_purchase_and_downgrades_only_at_its_review() {
    let app = TestApp::spawn().await;
    let owner = Owner::sign_up(&app).await;
    let missing = app
        .http
        .get(app.url("/v1/tiers"))
        .bearer_auth(&owner.token)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(problem_type(missing).await, "no-tier-scheme");

    let ladder = json!({
        "basis": "spend",
        "window": { "kind": "rolling_days", "days": 30 },
        "grace_days": 0,
        "tiers": [
            { "id": "member", "name": "Member", "threshold": 0 },
            { "id": "silver", "name": "Silver", "threshold": 1_000_000 },
        ],
    });
    let put = |body: Value| {
        let owner = &owner;
        async move {
            owner
                .app
                .http
                .put(owner.app.url("/v1/tiers"))
                .bearer_auth(&owner.token)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let events = app.event_count().await;
    let mut bad = ladder.clone();
    bad["tiers"][1]["threshold"] = json!(0);
    let refused = put(bad).await;
    assert_eq!(refused.status(), 422);
    assert_eq!(problem_type(refused).await, "invalid-tier-scheme");
    let mut bad = ladder.clone();
    bad["window"] = json!({ "kind": "rolling_days" });
    let refused = put(bad).await;
    assert_eq!(refused.status(), 422);
    assert_eq!(problem_type(refused).await, "invalid-field");
    assert_eq!(app.event_count().await, events, "refusals append nothing");
    assert_eq!(put(ladder.clone()).await.status(), 200);
    assert_eq!(owner.get("/v1/tiers").await["tiers"][1]["name"], "Silver");

    let customer = owner.customer_with(0).await;
    owner.purchase(customer, 600_000).await;
    assert_eq!(owner.customer(customer).await["tier"], Value::Null);
    owner.purchase(customer, 400_000).await;
    let view = owner.customer(customer).await;
    assert_eq!(
        view["tier"], "silver",
        "up at the purchase that reaches the threshold"
    );
    assert!(view["tier_review_at"].is_string());

    // A refund lowers the qualifying spend, not the tier: only a review does.
    let (third, _) = owner.purchase(customer, 1_500_000).await;
    let refund = owner
        .refund(
            "r-1",
            customer,
            json!({ "purchase_id": third, "amount_minor": 400_000 }),
        )
        .await;
    assert_eq!(refund.status(), 201);
    assert_eq!(owner.customer(customer).await["tier"], "silver");
    let early = run_due_work(&app, Utc::now() + Days::days(29)).await;
    assert_eq!(early.tiers_reviewed, 0);
    // At the review the window [review − 30 days, review] holds the purchases since the
    // upgrade: 400,000 + 1,500,000 − 400,000 refunded ≥ 1,000,000, so the tier is kept.
    let kept = run_due_work(&app, Utc::now() + Days::days(31)).await;
    assert_eq!(kept.tiers_reviewed, 1);
    assert_eq!(owner.customer(customer).await["tier"], "silver");
    // The next review, 30 days later, finds nothing: down to the base.
    let down = run_due_work(&app, Utc::now() + Days::days(61)).await;
    assert_eq!(down.tiers_reviewed, 1);
    let view = owner.customer(customer).await;
    assert_eq!(view["tier"], "member");
    assert_eq!(view["tier_review_at"], Value::Null);
    let again = run_due_work(&app, Utc::now() + Days::days(61)).await;
    assert_eq!(again.tiers_reviewed, 0, "a review happens once");
    app.stop().await;
}

/// Two instances running the due work at the same moment: one runs (the other finds the
/// lock taken and skips), and however they interleave every hold is released exactly once.
#[tokio::test]
async fn two_due_work_runs_at_once_release_each_expired_hold_once() {
    const CUSTOMERS: usize = 20;
    let app = TestApp::spawn().await;
    let owner = Owner::sign_up(&app).await;
    let reward = owner.create_reward("Puff-puff", 5).await;
    for n in 0..CUSTOMERS {
        let customer = owner.customer_with(10).await;
        let held = owner
            .redeem_reward(&format!("hold-{n}"), customer, reward)
            .await;
        assert_eq!(held.status(), 201);
    }
    app.wait_until_projected().await;
    let at = Utc::now() + Days::days(15);
    let (first_writer, _first) =
        schema::writer::spawn_standalone(app.pool.clone(), app.settings.writer());
    let (second_writer, _second) =
        schema::writer::spawn_standalone(app.pool.clone(), app.settings.writer());
    let (first, second) = tokio::join!(
        loyalty::expiry::run_once(&app.platform_pool, &first_writer, at),
        loyalty::expiry::run_once(&app.platform_pool, &second_writer, at),
    );
    let released: u64 = [first.unwrap(), second.unwrap()]
        .iter()
        .flatten()
        .map(|report| report.holds_released)
        .sum();
    assert_eq!(released, CUSTOMERS as u64);
    let events: i64 = crate::helpers::admin_client(&crate::helpers::dbname(&app.database_url))
        .await
        .query_one(
            "SELECT count(*) FROM events WHERE event_type = 'HoldReleased'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(events, CUSTOMERS as i64, "each hold released once");
    // And a third run afterwards finds nothing left to do.
    let third = run_due_work(&app, at).await;
    assert_eq!(third.holds_released, 0);
    app.stop().await;
}
