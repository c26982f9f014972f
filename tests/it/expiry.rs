//! Expiry: the remainder of each lot past its date expires once, however often the run goes.

use crate::helpers::{phone, TestApp};
use chrono::{Duration as Days, Utc};
use serde_json::{json, Value};

#[tokio::test]
async fn the_expiry_run_expires_what_is_left_of_due_lots_once() {
    let app = TestApp::spawn().await;
    let (writer, _task) = schema::writer::spawn_standalone(app.pool.clone(), app.settings.writer());
    let customer = app.enrolled_customer(&phone()).await;
    // 40 points dated 200 days ago (lots live 180 days), then 10 fresh points.
    let old = json!({"customer_id": customer, "amount_minor": 400_000,
                     "occurred_at": (Utc::now() - Days::days(200)).to_rfc3339()});
    assert_eq!(app.post_purchase("old", &old).await.status(), 201);
    let fresh = json!({"customer_id": customer, "amount_minor": 100_000});
    let response: Value = app
        .post_purchase("fresh", &fresh)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(response["balance"], 50);
    app.wait_until_projected().await;

    let first = loyalty::expiry::run_once(&app.platform_pool, &writer, Utc::now())
        .await
        .unwrap()
        .expect("no other runner holds the lock");
    assert_eq!(first.lots_expired, 1);
    assert_eq!(first.points_expired, 40);
    app.wait_until_projected().await;
    let second = loyalty::expiry::run_once(&app.platform_pool, &writer, Utc::now())
        .await
        .unwrap()
        .expect("no other runner holds the lock");
    assert_eq!(
        second.lots_expired, 0,
        "the second run expired something again"
    );
    assert_eq!(second.points_expired, 0);

    let view: Value = app.get_json(&format!("/v1/customers/{customer}")).await;
    assert_eq!(view["balance"], 10);
    assert_eq!(view["expired"], 40);
    app.stop().await;
}

#[tokio::test]
async fn points_past_their_date_cannot_be_spent_even_before_the_run() {
    let app = TestApp::spawn().await;
    let customer = app.enrolled_customer(&phone()).await;
    let old = json!({"customer_id": customer, "amount_minor": 400_000,
                     "occurred_at": (Utc::now() - Days::days(181)).to_rfc3339()});
    app.post_purchase("old", &old).await;
    app.post_purchase(
        "fresh",
        &json!({"customer_id": customer, "amount_minor": 100_000}),
    )
    .await;
    // 50 on the books, but only 10 spendable: the redemption expires the due lot first.
    assert_eq!(app.redeem("too-much", customer, 11).await.status(), 409);
    let ok: Value = app.redeem("ok", customer, 10).await.json().await.unwrap();
    assert_eq!(ok["balance"], 0);
    app.stop().await;
}
