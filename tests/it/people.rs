//! Birthdays and referrals through the HTTP API against real PostgreSQL and NATS: a
//! birthday given at enrolment earns the birthday bonus once on the (Lagos) birthday; a
//! referral code given at enrolment rewards the referee on the first purchase and, through
//! the referral process, the referrer exactly once, even when the process sees the event
//! twice; an unknown code is 422; the `birthday_month` broadcast segment; the read model
//! forgets the birthday on erasure.

use crate::helpers::{admin_client, dbname, phone, wait_for, Owner, TestApp, WAIT};
use chrono::{Datelike, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

async fn send(owner: &Owner<'_>, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
    let response = owner
        .app
        .http
        .request(method, owner.app.url(path))
        .bearer_auth(&owner.token)
        .header("Idempotency-Key", Uuid::now_v7().to_string())
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn get(owner: &Owner<'_>, path: &str) -> Value {
    let response = owner
        .app
        .http
        .get(owner.app.url(path))
        .bearer_auth(&owner.token)
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), 200, "GET {path}");
    response.json().await.unwrap()
}

/// Birthday bonus 200, referral 100 to the referee and 50 to the referrer, nothing else.
async fn publish_people_rules(owner: &Owner<'_>) {
    let (status, body) = send(
        owner,
        reqwest::Method::PUT,
        "/v1/rules",
        json!({ "rules": [
            { "id": "birthday", "kind": { "birthday": { "bonus": 200 } } },
            { "id": "referral", "kind": { "referral": { "referee_bonus": 100, "referrer_bonus": 50 } } },
        ] }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

async fn enrol(owner: &Owner<'_>, body: Value) -> Value {
    let (status, body) = send(owner, reqwest::Method::POST, "/v1/customers", body).await;
    assert_eq!(status, 201, "{body}");
    body
}

fn id_of(body: &Value, field: &str) -> Uuid {
    Uuid::parse_str(
        body[field]
            .as_str()
            .unwrap_or_else(|| panic!("{field}: {body}")),
    )
    .unwrap()
}

async fn buy(owner: &Owner<'_>, customer: Uuid) -> Value {
    buy_body(
        owner,
        json!({ "customer_id": customer, "amount_minor": 10_000 }),
    )
    .await
}

/// A purchase dated `at` (so a test is not at the mercy of local midnight).
async fn buy_at(owner: &Owner<'_>, customer: Uuid, at: chrono::DateTime<Utc>) -> Value {
    let body =
        json!({ "customer_id": customer, "amount_minor": 10_000, "occurred_at": at.to_rfc3339() });
    buy_body(owner, body).await
}

async fn buy_body(owner: &Owner<'_>, body: Value) -> Value {
    let (status, body) = send(owner, reqwest::Method::POST, "/v1/purchases", body).await;
    assert_eq!(status, 201, "{body}");
    body
}

/// Points of the breakdown lines of `kind` in a purchase's answer.
fn earned_by(purchase: &Value, kind: &str) -> i64 {
    purchase["breakdown"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|line| line["kind"] == kind)
        .map(|line| line["points"].as_i64().unwrap())
        .sum()
}

fn lagos_now() -> chrono::NaiveDateTime {
    ledger_core::rules::local_time(ledger_core::rules::DEFAULT_TIME_ZONE, Utc::now())
}

/// The date of `at` in Lagos (the tenant's default time zone), as `MM-DD`.
fn lagos_day(at: chrono::DateTime<Utc>) -> String {
    let day = ledger_core::rules::local_time(ledger_core::rules::DEFAULT_TIME_ZONE, at).date();
    format!("{:02}-{:02}", day.month(), day.day())
}

#[tokio::test]
async fn a_birthday_purchase_earns_the_bonus_once_and_erasure_forgets_the_birthday() {
    let app = TestApp::spawn().await;
    let owner = Owner::sign_up(&app).await;
    publish_people_rules(&owner).await;
    let at = Utc::now();
    let today = lagos_day(at);
    let enrolled = enrol(&owner, json!({ "phone": phone(), "birthday": today })).await;
    let customer = id_of(&enrolled, "customer_id");

    let first = buy_at(&owner, customer, at).await;
    assert_eq!(earned_by(&first, "birthday"), 200, "{first}");
    let second = buy_at(&owner, customer, at).await;
    assert_eq!(earned_by(&second, "birthday"), 0, "{second}");

    app.wait_until_projected().await;
    let view = get(&owner, &format!("/v1/customers/{customer}")).await;
    assert_eq!(view["birthday"], today.as_str(), "{view}");
    assert_eq!(view["earned"], 200, "{view}");

    // Changed, cleared, and refused when malformed.
    let path = format!("/v1/customers/{customer}/birthday");
    let (status, body) = send(
        &owner,
        reqwest::Method::PUT,
        &path,
        json!({ "birthday": "02-29" }),
    )
    .await;
    assert_eq!(
        (status, body["birthday"].clone()),
        (200, json!("02-29")),
        "{body}"
    );
    let (status, body) = send(
        &owner,
        reqwest::Method::PUT,
        &path,
        json!({ "birthday": "02-30" }),
    )
    .await;
    assert_eq!(
        (status, body["field"].clone()),
        (422, json!("birthday")),
        "{body}"
    );
    let (status, body) = send(&owner, reqwest::Method::PUT, &path, json!({})).await;
    assert_eq!(
        (status, body["field"].clone()),
        (422, json!("birthday")),
        "{body}"
    );
    let (status, body) = send(
        &owner,
        reqwest::Method::PUT,
        &path,
        json!({ "birthday": null }),
    )
    .await;
    assert_eq!(
        (status, body["birthday"].clone()),
        (200, Value::Null),
        "{body}"
    );
    let (status, _) = send(
        &owner,
        reqwest::Method::PUT,
        &path,
        json!({ "birthday": "07-01" }),
    )
    .await;
    assert_eq!(status, 200);
    app.wait_until_projected().await;

    let admin = admin_client(&dbname(&app.database_url)).await;
    let month = |admin: tokio_postgres::Client| async move {
        let row = admin
            .query_one(
                "SELECT birth_month, birth_day FROM projection.customer_balances WHERE customer_id = $1",
                &[&customer],
            )
            .await
            .unwrap();
        (row.get::<_, Option<i16>>(0), row.get::<_, Option<i16>>(1))
    };
    assert_eq!(month(admin).await, (Some(7), Some(1)));
    let export = get(&owner, &format!("/v1/customers/{customer}/export")).await;
    assert_eq!(export["birthday"], "07-01", "{export}");
    assert_eq!(
        export["referral_code"], enrolled["referral_code"],
        "{export}"
    );
    let (status, body) = send(
        &owner,
        reqwest::Method::POST,
        &format!("/v1/customers/{customer}/erasure"),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    app.wait_until_projected().await;
    let admin = admin_client(&dbname(&app.database_url)).await;
    assert_eq!(month(admin).await, (None, None));
    let export = get(&owner, &format!("/v1/customers/{customer}/export")).await;
    assert_eq!(export["birthday"], Value::Null, "{export}");
    app.stop().await;
}

/// The number of `event_type` events in the customer's stream.
async fn events_of(app: &TestApp, customer: Uuid, event_type: &str) -> i64 {
    let admin = admin_client(&dbname(&app.database_url)).await;
    admin
        .query_one(
            "SELECT count(*) FROM events WHERE stream_id = $1 AND event_type = $2",
            &[&format!("customer-{customer}"), &event_type],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_referral_rewards_both_sides_once_even_when_the_process_sees_it_twice() {
    let app = TestApp::spawn().await;
    let owner = Owner::sign_up(&app).await;
    publish_people_rules(&owner).await;
    let referrer = id_of(
        &enrol(&owner, json!({ "phone": phone() })).await,
        "customer_id",
    );
    let code = get(&owner, &format!("/v1/customers/{referrer}")).await["referral_code"]
        .as_str()
        .expect("a referral code")
        .to_owned();
    assert_eq!(code.len(), 8);

    // Typed in lower case with a hyphen, as a person would.
    let typed = format!("{}-{}", &code[..4], &code[4..]).to_lowercase();
    let enrolled = enrol(&owner, json!({ "phone": phone(), "referral_code": typed })).await;
    let referee = id_of(&enrolled, "customer_id");
    assert_eq!(id_of(&enrolled, "referred_by"), referrer);
    assert_ne!(enrolled["referral_code"], code.as_str());

    let first = buy(&owner, referee).await;
    assert_eq!(earned_by(&first, "referral"), 100, "{first}");
    let second = buy(&owner, referee).await;
    assert_eq!(earned_by(&second, "referral"), 0, "{second}");

    // The referral process credits the referrer.
    let admin = admin_client(&dbname(&app.database_url)).await;
    wait_for(WAIT, "the referrer's bonus", || async {
        let rows = admin
            .query(
                "SELECT earned FROM projection.customer_balances WHERE customer_id = $1",
                &[&referrer],
            )
            .await
            .unwrap();
        rows.first().is_some_and(|r| r.get::<_, i64>(0) == 50)
    })
    .await;

    // The process sees the same ReferralQualified again (a redelivery): nothing more.
    let recorded = schema::store::read_stream(
        &**app.platform_db().await,
        ledger_core::StreamId::Customer(ledger_core::CustomerId::from_uuid(referee)),
        0,
        100,
    )
    .await
    .unwrap();
    let qualified: Vec<_> = recorded
        .iter()
        .filter(|e| e.event_type == "ReferralQualified")
        .cloned()
        .collect();
    assert_eq!(qualified.len(), 1);
    let (writer, task) = schema::writer::spawn_standalone(
        app.pool.clone(),
        loyalty::settings::Settings::writer(&app.settings),
    );
    let award = loyalty::referrals::award(
        &writer,
        &qualified[0],
        ledger_core::CustomerId::from_uuid(referee),
        ledger_core::CustomerId::from_uuid(referrer),
        ledger_core::Points::new(50),
    )
    .await
    .unwrap();
    assert_eq!(award, loyalty::referrals::Award::AlreadyAwarded);
    drop(writer);
    let _ = task.await;
    assert_eq!(events_of(&app, referrer, "ReferralBonusAwarded").await, 1);
    app.wait_until_projected().await;
    let view = get(&owner, &format!("/v1/customers/{referrer}")).await;
    assert_eq!(
        (view["earned"].clone(), view["balance"].clone()),
        (json!(50), json!(50)),
        "{view}"
    );
    let view = get(&owner, &format!("/v1/customers/{referee}")).await;
    assert_eq!(view["earned"], 100, "{view}");
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_or_malformed_referral_code_is_refused_naming_the_field() {
    let app = TestApp::spawn().await;
    let owner = Owner::sign_up(&app).await;
    let events_before = app.event_count().await;
    for code in ["ZZZZZZZZ", "not a code"] {
        let (status, body) = send(
            &owner,
            reqwest::Method::POST,
            "/v1/customers",
            json!({ "phone": phone(), "referral_code": code }),
        )
        .await;
        assert_eq!(status, 422, "{code}: {body}");
        assert_eq!(body["field"], "referral_code", "{code}: {body}");
    }
    // Another vendor's code is unknown here.
    let other = Owner::sign_up(&app).await;
    let theirs = id_of(
        &enrol(&other, json!({ "phone": phone() })).await,
        "customer_id",
    );
    let code = get(&other, &format!("/v1/customers/{theirs}")).await["referral_code"].clone();
    let events_after_other = app.event_count().await;
    let (status, body) = send(
        &owner,
        reqwest::Method::POST,
        "/v1/customers",
        json!({ "phone": phone(), "referral_code": code }),
    )
    .await;
    assert_eq!(
        (status, body["field"].clone()),
        (422, json!("referral_code")),
        "{body}"
    );
    assert_eq!(app.event_count().await, events_after_other);
    assert!(events_after_other > events_before);
    app.stop().await;
}

#[tokio::test]
async fn the_birthday_month_segment_reaches_the_customers_born_that_month() {
    let app = TestApp::spawn().await;
    let owner = Owner::sign_up(&app).await;
    let this_month = lagos_now().month();
    let other_month = this_month % 12 + 1;
    let births = [
        format!("{this_month:02}-01"),
        format!("{this_month:02}-28"),
        format!("{other_month:02}-15"),
    ];
    for birthday in &births {
        enrol(&owner, json!({ "phone": phone(), "birthday": birthday })).await;
    }
    enrol(&owner, json!({ "phone": phone() })).await;
    let leap = enrol(&owner, json!({ "phone": phone(), "birthday": "02-29" })).await;
    app.wait_until_projected().await;

    let broadcast = |segment: Value| {
        json!({
            "name": "Birthdays",
            "segment": segment,
            "template": { "name": "birthday_offer" },
        })
    };
    let recipients = |body: &Value| body["progress"]["recipients"].as_i64().unwrap();
    let (status, body) = send(
        &owner,
        reqwest::Method::POST,
        "/v1/broadcasts",
        broadcast(json!({ "kind": "birthday_month" })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let expected_now = 2 + i64::from(this_month == 2);
    assert_eq!(recipients(&body), expected_now, "{body}");
    // The stored segment names the month it was resolved to.
    assert_eq!(body["segment"]["month"], this_month, "{body}");

    let (status, body) = send(
        &owner,
        reqwest::Method::POST,
        "/v1/broadcasts",
        broadcast(json!({ "kind": "birthday_month", "month": 2 })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let in_february = 1 + 2 * i64::from(this_month == 2) + i64::from(other_month == 2);
    assert_eq!(recipients(&body), in_february, "{body}");

    // An erased customer's birthday is forgotten: no longer in the segment.
    let leap_id = id_of(&leap, "customer_id");
    let (status, _) = send(
        &owner,
        reqwest::Method::POST,
        &format!("/v1/customers/{leap_id}/erasure"),
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    app.wait_until_projected().await;
    let (_, body) = send(
        &owner,
        reqwest::Method::POST,
        "/v1/broadcasts",
        broadcast(json!({ "kind": "birthday_month", "month": 2 })),
    )
    .await;
    assert_eq!(recipients(&body), in_february - 1, "{body}");
    app.stop().await;
}
