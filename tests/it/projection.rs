//! The balances projection: a rebuild from the event table equals the live read model, and
//! a redelivered batch changes nothing.

use crate::helpers::{admin_client, dbname, phone, purchase, Rng, TestApp};
use chrono::{Duration as Days, Utc};
use ledger_core::aggregate::{evolve, CustomerState};
use ledger_core::StreamId;
use projections::balances::Balances;
use projections::runner::{self, Projection};
use schema::store::{self, Position};
use serde_json::json;
use std::collections::BTreeMap;
use uuid::Uuid;

/// Every row of the read model, as text, in a stable order.
pub async fn snapshot(app: &TestApp) -> Vec<String> {
    let client = admin_client(&dbname(&app.database_url)).await;
    let mut rows = Vec::new();
    for query in [
        "SELECT row(b.*)::text FROM projection.customer_balances b ORDER BY customer_id",
        "SELECT row(l.*)::text FROM projection.point_lots l ORDER BY customer_id, lot_id",
    ] {
        for row in client.query(query, &[]).await.unwrap() {
            rows.push(row.get::<_, String>(0));
        }
    }
    rows
}

/// Every customer's state, replayed from the event table through ledger-core.
async fn replayed_states(app: &TestApp) -> BTreeMap<Uuid, CustomerState> {
    let client = app.platform_db().await;
    let mut states: BTreeMap<Uuid, CustomerState> = BTreeMap::new();
    let mut position = Position::default();
    loop {
        let page = store::read_after(&**client, position, 1_000).await.unwrap();
        let Some(last) = page.last().and_then(|e| e.position) else {
            break;
        };
        for event in &page {
            if let Ok(StreamId::Customer(customer)) = StreamId::parse(&event.stream_id) {
                let state = states.remove(&customer.as_uuid()).unwrap_or_default();
                states.insert(customer.as_uuid(), evolve(state, &event.decode().unwrap()));
            }
        }
        position = last;
    }
    states
}

/// Balances by replaying each customer's events through ledger-core.
async fn replayed_balances(app: &TestApp) -> BTreeMap<Uuid, i64> {
    replayed_states(app)
        .await
        .into_iter()
        .map(|(id, s)| (id, s.balance.value()))
        .collect()
}

async fn projected_balances(app: &TestApp) -> BTreeMap<Uuid, i64> {
    let client = admin_client(&dbname(&app.database_url)).await;
    client
        .query(
            "SELECT customer_id, balance FROM projection.customer_balances",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

#[tokio::test]
async fn rebuild_equals_live_after_a_randomized_workload() {
    let app = TestApp::spawn().await;
    let (mut rng, seed) = Rng::seeded();
    eprintln!("workload seed (TEST_SEED): {seed}");
    let (writer, _writer_task) =
        schema::writer::spawn_standalone(app.pool.clone(), app.settings.writer());
    let mut customers = Vec::new();
    for _ in 0..8 {
        customers.push(app.enrolled_customer(&phone()).await);
    }
    let (mut purchases, mut redemptions, mut refusals, mut expiries) = (0, 0, 0, 0);
    for step in 0..160 {
        let customer = customers[rng.range(0, customers.len() as i64) as usize];
        match rng.range(0, 10) {
            0..=5 => {
                // Some purchases are back-dated past the 180-day lifetime of a lot.
                let days_ago = if rng.range(0, 4) == 0 {
                    rng.range(0, 400)
                } else {
                    0
                };
                let occurred_at = (Utc::now() - Days::days(days_ago)).to_rfc3339();
                let body = json!({
                    "customer_id": customer,
                    "amount_minor": rng.range(1, 2_000_000),
                    "occurred_at": occurred_at,
                });
                let response = app.post_purchase(&format!("p-{step}"), &body).await;
                assert_eq!(response.status(), 201);
                purchases += 1;
            }
            6..=8 => {
                let response = app
                    .redeem(&format!("r-{step}"), customer, rng.range(1, 150))
                    .await;
                match response.status().as_u16() {
                    201 => redemptions += 1,
                    409 => refusals += 1,
                    other => panic!("redemption answered {other}"),
                }
            }
            _ => {
                app.wait_until_projected().await;
                let report = loyalty::expiry::run_once(&app.platform_pool, &writer, Utc::now())
                    .await
                    .unwrap()
                    .expect("no other runner holds the lock");
                expiries += report.lots_expired;
            }
        }
    }
    eprintln!("{purchases} purchases, {redemptions} redemptions, {refusals} refused, {expiries} lots expired");
    assert!(
        purchases > 0 && redemptions > 0,
        "the workload exercised too little"
    );

    app.wait_until_projected().await;
    let live = snapshot(&app).await;
    assert_eq!(
        projected_balances(&app).await,
        replayed_balances(&app).await,
        "live != replay"
    );
    let events = runner::rebuild(&Balances, &app.platform_pool)
        .await
        .unwrap();
    assert_eq!(events as i64, app.event_count().await);
    let rebuilt = snapshot(&app).await;
    assert_eq!(live.len(), rebuilt.len());
    assert_eq!(live, rebuilt, "rebuild differs from the live projection");
    app.stop().await;
}

#[tokio::test]
async fn applying_the_same_events_twice_changes_nothing() {
    let app = TestApp::spawn().await;
    let customer = app.enrolled_customer(&phone()).await;
    for i in 0..5 {
        app.post_purchase(&format!("k{i}"), &purchase(customer, 123_456))
            .await;
    }
    app.redeem("r", customer, 30).await;
    app.wait_until_projected().await;
    let before = snapshot(&app).await;

    let mut client = app.platform_pool.get().await.unwrap();
    let all = store::read_after(&**client, Position::default(), 10_000)
        .await
        .unwrap();
    let transaction = client.transaction().await.unwrap();
    Balances.apply(&transaction, &all).await.unwrap();
    Balances.apply(&transaction, &all[3..]).await.unwrap();
    transaction.commit().await.unwrap();

    assert_eq!(snapshot(&app).await, before);
    app.stop().await;
}

#[tokio::test]
async fn events_delivered_out_of_order_are_completed_from_the_event_table() {
    let app = TestApp::spawn_with(loyalty::app::Components {
        api: true,
        ..loyalty::app::Components::NONE
    })
    .await;
    let customer = app.enrolled_customer(&phone()).await;
    for i in 0..4 {
        app.post_purchase(&format!("k{i}"), &purchase(customer, 250_000))
            .await;
    }
    app.redeem("r", customer, 40).await;
    let mut client = app.platform_pool.get().await.unwrap();
    let stream = format!("customer-{customer}");
    // The safe-position reader shows a committed event only once every older transaction
    // of the cluster has finished (other tests' included), so wait for all ten.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    let customer_events = loop {
        let all = store::read_after(&**client, Position::default(), 10_000)
            .await
            .unwrap();
        let mine: Vec<_> = all
            .iter()
            .filter(|e| e.stream_id == stream)
            .cloned()
            .collect();
        if mine.len() >= 10 || tokio::time::Instant::now() > deadline {
            break mine;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(customer_events.len(), 10);

    // Only the newest event arrives first, then everything again in reverse order.
    let transaction = client.transaction().await.unwrap();
    Balances
        .apply(&transaction, &customer_events[9..])
        .await
        .unwrap();
    transaction.commit().await.unwrap();
    let after_newest = snapshot(&app).await;
    let reversed: Vec<_> = customer_events.iter().rev().cloned().collect();
    let transaction = client.transaction().await.unwrap();
    Balances.apply(&transaction, &reversed).await.unwrap();
    transaction.commit().await.unwrap();
    assert_eq!(
        snapshot(&app).await,
        after_newest,
        "redelivered events changed the read model"
    );

    let view = admin_client(&dbname(&app.database_url))
        .await
        .query_one(
            "SELECT balance, stream_version FROM projection.customer_balances WHERE customer_id = $1",
            &[&customer],
        )
        .await
        .unwrap();
    assert_eq!(view.get::<_, i64>(0), 4 * 25 - 40);
    assert_eq!(view.get::<_, i32>(1), 10);
    app.stop().await;
}

/// Every programme column of the read model against a replay of the ledger, as
/// `(balance, pending, held, debt, reversed, adjusted, tier)`.
type ProgrammeRow = (i64, i64, i64, i64, i64, i64, Option<String>);

async fn replayed_programme(app: &TestApp) -> BTreeMap<Uuid, ProgrammeRow> {
    replayed_states(app)
        .await
        .into_iter()
        .map(|(id, s)| {
            let row = (
                s.balance.value(),
                s.pending.value(),
                s.held.value(),
                s.debt.value(),
                s.reversed.value(),
                s.adjusted.value(),
                s.tier.clone(),
            );
            (id, row)
        })
        .collect()
}

async fn projected_programme(app: &TestApp) -> BTreeMap<Uuid, ProgrammeRow> {
    let client = admin_client(&dbname(&app.database_url)).await;
    client
        .query(
            "SELECT customer_id, balance, pending, held, debt, reversed, adjusted, tier \
             FROM projection.customer_balances",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| {
            let values = (
                row.get(1),
                row.get(2),
                row.get(3),
                row.get(4),
                row.get(5),
                row.get(6),
                row.get(7),
            );
            (row.get(0), values)
        })
        .collect()
}

/// The programme's events (pending points, refunds with debt, adjustments, holds fulfilled,
/// cancelled and expired, tier changes) keep the live read model equal to a replay, and a
/// rebuild equal to the live model, open holds included.
#[tokio::test]
async fn rebuild_equals_live_after_a_randomized_programme_workload() {
    use crate::rewards::Owner;
    let app = TestApp::spawn().await;
    let owner = Owner::sign_up(&app).await;
    let (mut rng, seed) = Rng::seeded();
    eprintln!("workload seed (TEST_SEED): {seed}");
    let put = |path: &'static str, body: serde_json::Value| {
        let owner = &owner;
        async move {
            let response = owner
                .app
                .http
                .put(owner.app.url(path))
                .bearer_auth(&owner.token)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "PUT {path}");
        }
    };
    put(
        "/v1/programme/settings",
        json!({"time_zone": "Africa/Lagos", "pending_days": 3,
               "refund_policy": {"kind": "allow_debt", "debt_limit": 40},
               "hold_days": 2, "point_value_minor": 100}),
    )
    .await;
    put(
        "/v1/tiers",
        json!({"basis": "points_earned", "window": {"kind": "rolling_days", "days": 5},
               "tiers": [{"id": "base", "name": "Base", "threshold": 0},
                         {"id": "gold", "name": "Gold", "threshold": 150}]}),
    )
    .await;
    let reward = owner.create_reward("Zobo", 15).await;
    let mut customers = Vec::new();
    for _ in 0..6 {
        customers.push(owner.customer_with(0).await);
    }
    let mut purchases: Vec<(Uuid, Uuid, i64)> = Vec::new();
    let mut codes: Vec<String> = Vec::new();
    let mut clock_days = 0;
    let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
    for step in 0..150 {
        let customer = customers[rng.range(0, customers.len() as i64) as usize];
        let key = format!("k-{step}");
        let (kind, status) = match rng.range(0, 12) {
            0..=3 => {
                let amount = rng.range(10_000, 1_500_000);
                let response = owner
                    .post(
                        "/v1/purchases",
                        Some(&key),
                        Some(json!({"customer_id": customer, "amount_minor": amount})),
                    )
                    .await;
                let status = response.status().as_u16();
                let body: serde_json::Value = response.json().await.unwrap();
                let id = Uuid::parse_str(body["purchase_id"].as_str().unwrap()).unwrap();
                purchases.push((customer, id, amount));
                ("purchase", status)
            }
            4 | 5 if !purchases.is_empty() => {
                let (customer, id, amount) =
                    purchases[rng.range(0, purchases.len() as i64) as usize];
                let body = json!({"purchase_id": id, "amount_minor": rng.range(1, amount)});
                let response = owner
                    .post(
                        &format!("/v1/customers/{customer}/refunds"),
                        Some(&key),
                        Some(body),
                    )
                    .await;
                ("refund", response.status().as_u16())
            }
            6 => {
                let points = rng.range(-30, 30);
                let body =
                    json!({"points": if points == 0 { 1 } else { points }, "reason": "test"});
                let response = owner
                    .post(
                        &format!("/v1/customers/{customer}/adjustments"),
                        Some(&key),
                        Some(body),
                    )
                    .await;
                ("adjust", response.status().as_u16())
            }
            7 | 8 => {
                let response = owner.redeem_reward(&key, customer, reward).await;
                let status = response.status().as_u16();
                if status == 201 {
                    let body: serde_json::Value = response.json().await.unwrap();
                    codes.push(body["code"].as_str().unwrap().to_owned());
                }
                ("hold", status)
            }
            9 if !codes.is_empty() => {
                let code = codes.swap_remove(rng.range(0, codes.len() as i64) as usize);
                let path = if rng.range(0, 2) == 0 {
                    "fulfil"
                } else {
                    "cancel"
                };
                let response = owner
                    .post(&format!("/v1/redemptions/{code}/{path}"), Some(&key), None)
                    .await;
                (path, response.status().as_u16())
            }
            _ => {
                clock_days += rng.range(0, 3);
                let report = {
                    app.wait_until_projected().await;
                    let (writer, _task) =
                        schema::writer::spawn_standalone(app.pool.clone(), app.settings.writer());
                    loyalty::expiry::run_once(
                        &app.platform_pool,
                        &writer,
                        Utc::now() + Days::days(clock_days),
                    )
                    .await
                    .unwrap()
                    .expect("no other runner")
                };
                *counts.entry("holds_released").or_default() += report.holds_released as u32;
                *counts.entry("lots_activated").or_default() += report.lots_activated as u32;
                *counts.entry("tiers_reviewed").or_default() += report.tiers_reviewed as u32;
                ("due_work", 200)
            }
        };
        assert!(status < 500, "{kind} answered {status}");
        *counts.entry(kind).or_default() += 1;
    }
    eprintln!("{counts:?}");
    for kind in ["purchase", "refund", "adjust", "hold", "lots_activated"] {
        assert!(
            counts.get(kind).copied().unwrap_or(0) > 0,
            "no {kind}: {counts:?}"
        );
    }

    app.wait_until_projected().await;
    assert_eq!(
        projected_programme(&app).await,
        replayed_programme(&app).await,
        "live != replay"
    );
    let client = admin_client(&dbname(&app.database_url)).await;
    let holds_live: Vec<String> = client
        .query(
            "SELECT row(h.*)::text FROM projection.open_holds h ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let live = snapshot(&app).await;
    runner::rebuild(&Balances, &app.platform_pool)
        .await
        .unwrap();
    let holds_rebuilt: Vec<String> = client
        .query(
            "SELECT row(h.*)::text FROM projection.open_holds h ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        live,
        snapshot(&app).await,
        "rebuild differs from the live projection"
    );
    assert_eq!(
        holds_live, holds_rebuilt,
        "open holds differ after the rebuild"
    );
    app.stop().await;
}
