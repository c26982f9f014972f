//! The reward catalogue and counter fulfilment, through the HTTP API against real
//! PostgreSQL: create, list and retire rewards (owners only); redeem a reward for a code;
//! fulfil it by its code exactly once; refusals change nothing; codes are per tenant; and a
//! hundred concurrent redemptions on one balance never overdraw it.

use crate::helpers::{admin_client, dbname, phone, sign_up_owner, TestApp};
use ledger_core::RedemptionCode;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use uuid::Uuid;

/// A tenant's owner (signed up through the API): may manage the catalogue, enrol, log
/// purchases, redeem and fulfil.
pub(crate) struct Owner<'a> {
    pub(crate) app: &'a TestApp,
    pub(crate) token: String,
}

impl<'a> Owner<'a> {
    pub(crate) async fn sign_up(app: &'a TestApp) -> Owner<'a> {
        let (_, token) = sign_up_owner(&app.http, &app.address).await;
        Owner { app, token }
    }

    pub(crate) async fn post(
        &self,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut request = self
            .app
            .http
            .post(self.app.url(path))
            .bearer_auth(&self.token);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("POST")
    }

    pub(crate) async fn get(&self, path: &str) -> Value {
        let response = self
            .app
            .http
            .get(self.app.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.unwrap()
    }

    /// A customer with `points` points (the starter rule set: 1 point per 10,000 minor units);
    /// with 0, a customer without purchases.
    pub(crate) async fn customer_with(&self, points: i64) -> Uuid {
        let enrolled = self
            .post("/v1/customers", None, Some(json!({ "phone": phone() })))
            .await;
        assert_eq!(enrolled.status(), 201);
        let body: Value = enrolled.json().await.unwrap();
        let customer = Uuid::parse_str(body["customer_id"].as_str().unwrap()).unwrap();
        if points == 0 {
            return customer;
        }
        let bought = self
            .post(
                "/v1/purchases",
                Some(&format!("buy-{customer}")),
                Some(json!({ "customer_id": customer, "amount_minor": points * 10_000 })),
            )
            .await;
        assert_eq!(bought.status(), 201);
        let body: Value = bought.json().await.unwrap();
        assert_eq!(body["balance"], points);
        customer
    }

    pub(crate) async fn create_reward(&self, name: &str, points_cost: i64) -> Uuid {
        let created = self
            .post(
                "/v1/rewards",
                None,
                Some(json!({ "name": name, "points_cost": points_cost })),
            )
            .await;
        assert_eq!(created.status(), 201);
        let body: Value = created.json().await.unwrap();
        assert_eq!(body["name"], name.trim());
        assert_eq!(body["points_cost"], points_cost);
        assert_eq!(body["active"], true);
        Uuid::parse_str(body["reward_id"].as_str().unwrap()).unwrap()
    }

    pub(crate) async fn redeem_reward(
        &self,
        key: &str,
        customer: Uuid,
        reward: Uuid,
    ) -> reqwest::Response {
        self.post(
            &format!("/v1/customers/{customer}/redemptions"),
            Some(key),
            Some(json!({ "reward_id": reward })),
        )
        .await
    }

    pub(crate) async fn fulfil(&self, key: &str, code: &str) -> reqwest::Response {
        self.post(&format!("/v1/redemptions/{code}/fulfil"), Some(key), None)
            .await
    }

    pub(crate) async fn balance(&self, customer: Uuid) -> i64 {
        self.customer_field(customer, "balance").await
    }

    pub(crate) async fn available(&self, customer: Uuid) -> i64 {
        self.customer_field(customer, "available").await
    }

    pub(crate) async fn customer_field(&self, customer: Uuid, field: &str) -> i64 {
        // The read model lags the ledger, so wait for it.
        self.app.wait_until_projected().await;
        self.get(&format!("/v1/customers/{customer}")).await[field]
            .as_i64()
            .unwrap()
    }
}

pub(crate) async fn problem_type(response: reqwest::Response) -> String {
    let body: Value = response.json().await.unwrap();
    body["type"]
        .as_str()
        .unwrap_or_default()
        .trim_start_matches("https://loyalty-ledger.dev/problems/")
        .to_owned()
}

#[tokio::test]
async fn the_catalogue_is_created_listed_and_retired_by_owners() {
    let app = TestApp::spawn().await;
    let owner = Owner::sign_up(&app).await;
    let jollof = owner.create_reward("  Jollof rice ", 50).await;
    let drink = owner.create_reward("Free drink", 20).await;

    let list = owner.get("/v1/rewards").await;
    let rewards = list["rewards"].as_array().unwrap();
    assert_eq!(rewards.len(), 2);
    assert_eq!(rewards[0]["reward_id"], jollof.to_string());
    assert_eq!(rewards[0]["name"], "Jollof rice", "trimmed");
    assert_eq!(rewards[1]["reward_id"], drink.to_string());
    assert!(rewards.iter().all(|r| r["active"] == true));

    let retired = owner
        .post(&format!("/v1/rewards/{drink}/retire"), None, None)
        .await;
    assert_eq!(retired.status(), 200);
    let retired: Value = retired.json().await.unwrap();
    assert_eq!(retired["active"], false);
    assert!(retired["retired_at"].is_string());
    let again = owner
        .post(&format!("/v1/rewards/{drink}/retire"), None, None)
        .await;
    assert_eq!(again.status(), 409);
    assert_eq!(problem_type(again).await, "reward-retired");
    for unknown in [Uuid::now_v7().to_string(), "not-a-uuid".to_owned()] {
        let missing = owner
            .post(&format!("/v1/rewards/{unknown}/retire"), None, None)
            .await;
        assert_eq!(missing.status(), 404);
        assert_eq!(problem_type(missing).await, "reward-not-found");
    }
    let list = owner.get("/v1/rewards").await;
    let active: Vec<bool> = list["rewards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["active"].as_bool().unwrap())
        .collect();
    assert_eq!(active, vec![true, false], "retired rewards stay listed");

    let invalid = owner
        .post(
            "/v1/rewards",
            None,
            Some(json!({ "name": "x".repeat(61), "points_cost": 5 })),
        )
        .await;
    assert_eq!(invalid.status(), 422);
    let body: Value = invalid.json().await.unwrap();
    assert_eq!(body["field"], "name");
    let free = owner
        .post(
            "/v1/rewards",
            None,
            Some(json!({ "name": "Free", "points_cost": 0 })),
        )
        .await;
    assert_eq!(free.status(), 422);

    // A till's API key (staff) reads its own tenant's catalogue but may not change it, and
    // another tenant's reward does not exist for it.
    let staff_list = app.get_json("/v1/rewards").await;
    assert_eq!(staff_list["rewards"], json!([]));
    let refused = app
        .http
        .post(app.url("/v1/rewards"))
        .bearer_auth(&app.api_key)
        .json(&json!({ "name": "Free car", "points_cost": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    app.stop().await;
}

#[tokio::test]
async fn a_reward_is_redeemed_for_a_code_and_fulfilled_exactly_once() {
    let app = TestApp::spawn().await;
    let owner = Owner::sign_up(&app).await;
    let customer = owner.customer_with(100).await;
    let reward = owner.create_reward("Jollof rice", 30).await;

    let redeemed = owner.redeem_reward("redeem-1", customer, reward).await;
    assert_eq!(redeemed.status(), 201);
    let redeemed: Value = redeemed.json().await.unwrap();
    assert_eq!(redeemed["reward_id"], reward.to_string());
    assert_eq!(redeemed["points"], 30);
    // A hold: the points leave what is available now and the balance at the hand-over.
    assert_eq!(redeemed["available"], 70);
    assert_eq!(redeemed["held"], 30);
    assert_eq!(redeemed["balance"], 100);
    assert_eq!(owner.balance(customer).await, 100);
    assert_eq!(owner.available(customer).await, 70);
    let code = redeemed["code"].as_str().unwrap().to_owned();
    assert_eq!(RedemptionCode::parse(&code).unwrap().as_str(), code);

    // Typed at the counter: lower case, with a hyphen.
    let typed = format!("{}-{}", &code[..4], &code[4..]).to_lowercase();
    let fulfilled = owner.fulfil("fulfil-1", &typed).await;
    assert_eq!(fulfilled.status(), 200);
    let first_bytes = fulfilled.bytes().await.unwrap();
    let body: Value = serde_json::from_slice(&first_bytes).unwrap();
    assert_eq!(body["redemption_id"], redeemed["redemption_id"]);
    assert_eq!(body["customer_id"], customer.to_string());
    assert_eq!(body["reward_id"], reward.to_string());
    assert!(body["fulfilled_at"].is_string());

    // The same request again (a lost answer) gets the first answer back; a second
    // fulfilment is a clear 409.
    let replayed = owner.fulfil("fulfil-1", &code).await;
    assert_eq!(replayed.status(), 200);
    assert_eq!(replayed.headers()["Idempotent-Replayed"], "true");
    assert_eq!(replayed.bytes().await.unwrap(), first_bytes);
    let events = app.event_count().await;
    let second = owner.fulfil("fulfil-2", &code).await;
    assert_eq!(second.status(), 409);
    assert_eq!(problem_type(second).await, "already-fulfilled");
    assert_eq!(app.event_count().await, events, "a refusal appends nothing");

    // Fulfilment needs an Idempotency-Key, like every redemption.
    let keyless = owner
        .post(&format!("/v1/redemptions/{code}/fulfil"), None, None)
        .await;
    assert_eq!(keyless.status(), 400);

    let history = owner
        .get(&format!("/v1/customers/{customer}/history"))
        .await;
    let reasons: Vec<String> = history["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("30 points reserved for Jollof rice until ")),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&"Reward handed over: 30 points spent".to_owned()),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().all(|r| !r.contains(&code)),
        "the code is not in the history"
    );
    assert_eq!(owner.balance(customer).await, 70);
    assert_eq!(owner.available(customer).await, 70);
    app.stop().await;
}

#[tokio::test]
async fn unaffordable_retired_unknown_and_mixed_redemptions_are_refused_and_change_nothing() {
    let app = TestApp::spawn().await;
    let owner = Owner::sign_up(&app).await;
    let customer = owner.customer_with(40).await;
    let feast = owner.create_reward("Feast", 41).await;
    let drink = owner.create_reward("Drink", 10).await;
    let retired = owner
        .post(&format!("/v1/rewards/{drink}/retire"), None, None)
        .await;
    assert_eq!(retired.status(), 200);
    let events = app.event_count().await;

    let unaffordable = owner.redeem_reward("r-1", customer, feast).await;
    assert_eq!(unaffordable.status(), 409);
    let body: Value = unaffordable.json().await.unwrap();
    assert_eq!(
        body["type"],
        "https://loyalty-ledger.dev/problems/insufficient-points"
    );
    assert_eq!(body["available"], 40);
    assert_eq!(body["requested"], 41);
    // The refusal is stored under its key: a retry is refused the same way.
    let retried = owner.redeem_reward("r-1", customer, feast).await;
    assert_eq!(retried.status(), 409);
    assert_eq!(retried.headers()["Idempotent-Replayed"], "true");

    let from_retired = owner.redeem_reward("r-2", customer, drink).await;
    assert_eq!(from_retired.status(), 409);
    assert_eq!(problem_type(from_retired).await, "reward-retired");

    let unknown = owner.redeem_reward("r-3", customer, Uuid::now_v7()).await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(problem_type(unknown).await, "reward-not-found");

    let mixed = owner
        .post(
            &format!("/v1/customers/{customer}/redemptions"),
            Some("r-4"),
            Some(json!({ "reward_id": feast, "points": 5, "description": "x" })),
        )
        .await;
    assert_eq!(mixed.status(), 422);
    let body: Value = mixed.json().await.unwrap();
    assert_eq!(body["field"], "reward_id");

    assert_eq!(
        app.event_count().await,
        events,
        "no refusal appended anything"
    );
    let admin = admin_client(&dbname(&app.database_url)).await;
    let codes: i64 = admin
        .query_one("SELECT count(*) FROM redemption_codes", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(codes, 0, "no code for a refused redemption");
    assert_eq!(owner.balance(customer).await, 40);

    // The points form still works beside the reward form, without a code.
    let points = owner
        .post(
            &format!("/v1/customers/{customer}/redemptions"),
            Some("r-5"),
            Some(json!({ "points": 15, "description": "Discount" })),
        )
        .await;
    assert_eq!(points.status(), 201);
    let body: Value = points.json().await.unwrap();
    assert_eq!(body["balance"], 25);
    assert_eq!(body["code"], Value::Null);
    assert_eq!(body["reward_id"], Value::Null);
    app.stop().await;
}

#[tokio::test]
async fn a_code_is_unknown_to_every_other_tenant() {
    let app = TestApp::spawn().await;
    let shop = Owner::sign_up(&app).await;
    let other = Owner::sign_up(&app).await;
    let customer = shop.customer_with(50).await;
    let reward = shop.create_reward("Suya", 20).await;
    let redeemed: Value = shop
        .redeem_reward("r-1", customer, reward)
        .await
        .json()
        .await
        .unwrap();
    let code = redeemed["code"].as_str().unwrap().to_owned();

    // Another tenant's owner, with every permission, cannot see or fulfil it; neither its
    // reward nor its customer exists for them.
    for (key, path_code) in [("o-1", code.as_str()), ("o-2", "ZZZZZZZZ"), ("o-3", "bad!")] {
        let answer = other.fulfil(key, path_code).await;
        assert_eq!(answer.status(), 404, "{path_code}");
        assert_eq!(problem_type(answer).await, "redemption-not-found");
    }
    assert_eq!(other.get("/v1/rewards").await["rewards"], json!([]));
    let foreign = other.redeem_reward("o-4", customer, reward).await;
    assert_eq!(foreign.status(), 404);
    let retire = other
        .post(&format!("/v1/rewards/{reward}/retire"), None, None)
        .await;
    assert_eq!(retire.status(), 404);

    // The code table is tenant-scoped in the database too: the app's role sees no row
    // outside a scoped transaction, and the platform role may not read it at all.
    let admin = admin_client(&dbname(&app.database_url)).await;
    let held: i64 = admin
        .query_one("SELECT count(*) FROM redemption_codes", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(held, 1);
    let app_role = app.db().await;
    let seen: i64 = app_role
        .query_one("SELECT count(*) FROM redemption_codes", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(seen, 0, "loyalty_app saw codes with no tenant set");
    let platform = app.platform_db().await;
    assert!(platform
        .query_one("SELECT count(*) FROM redemption_codes", &[])
        .await
        .is_err());

    // Its own tenant still fulfils it.
    assert_eq!(shop.fulfil("s-1", &code).await.status(), 200);
    app.stop().await;
}

/// The available points are checked by the ledger under the writer's tenant lock: of 200
/// concurrent redemptions (each its own request and Idempotency-Key) of a reward costing 27
/// against 1,000 points, exactly ⌊1000 / 27⌋ = 37 succeed (each a hold with its own code),
/// and the rest are refused.
#[tokio::test]
async fn two_hundred_concurrent_reward_redemptions_never_overdraw_one_balance() {
    const BALANCE: i64 = 1_000;
    const COST: i64 = 27;
    const ATTEMPTS: usize = 200;
    let app = TestApp::spawn().await;
    let owner = Owner::sign_up(&app).await;
    let customer = owner.customer_with(BALANCE).await;
    let reward = owner.create_reward("Plate of rice", COST).await;

    let answers = futures_util::future::join_all((0..ATTEMPTS).map(|i| {
        let owner = &owner;
        async move {
            let response = owner
                .redeem_reward(&format!("race-{i}"), customer, reward)
                .await;
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    }))
    .await;

    let successes: Vec<&Value> = answers
        .iter()
        .filter(|(status, _)| *status == 201)
        .map(|(_, body)| body)
        .collect();
    let refusals = answers
        .iter()
        .filter(|(status, body)| {
            *status == 409
                && body["type"] == "https://loyalty-ledger.dev/problems/insufficient-points"
        })
        .count();
    let expected = usize::try_from(BALANCE / COST).unwrap();
    assert_eq!(
        successes.len(),
        expected,
        "statuses: {:?}",
        answers.iter().map(|(s, _)| s).collect::<Vec<_>>()
    );
    assert_eq!(
        refusals,
        ATTEMPTS - expected,
        "every other attempt is refused"
    );

    let codes: BTreeSet<&str> = successes
        .iter()
        .map(|body| body["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes.len(), expected, "every success has its own code");
    // The available points the answers report are distinct and step down by the cost.
    let mut balances: Vec<i64> = successes
        .iter()
        .map(|body| body["available"].as_i64().unwrap())
        .collect();
    balances.sort_unstable();
    let steps: Vec<i64> = (1..=BALANCE / COST)
        .map(|n| BALANCE - n * COST)
        .rev()
        .collect();
    assert_eq!(balances, steps);

    let remaining = BALANCE - COST * i64::try_from(expected).unwrap();
    assert!(remaining >= 0);
    assert_eq!(owner.available(customer).await, remaining);
    // Held, not spent: the balance moves when a reward is handed over.
    assert_eq!(owner.balance(customer).await, BALANCE);
    let first_code = successes[0]["code"].as_str().unwrap();
    assert_eq!(owner.fulfil("race-fulfil", first_code).await.status(), 200);
    assert_eq!(owner.balance(customer).await, BALANCE - COST);
    assert_eq!(owner.available(customer).await, remaining);
    let admin = admin_client(&dbname(&app.database_url)).await;
    let stored: i64 = admin
        .query_one("SELECT count(DISTINCT code) FROM redemption_codes", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, i64::try_from(expected).unwrap());
    eprintln!(
        "{ATTEMPTS} concurrent redemptions of {COST} against {BALANCE}: {} succeeded, {refusals} refused, available {remaining}, balance {BALANCE} until a hand-over",
        successes.len()
    );
    app.stop().await;
}
