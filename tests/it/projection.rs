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

/// Balances by replaying each customer's events through ledger-core.
async fn replayed_balances(app: &TestApp) -> BTreeMap<Uuid, i64> {
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
