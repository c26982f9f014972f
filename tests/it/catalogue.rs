//! The catalogue's terms through the HTTP API and WhatsApp against real PostgreSQL: stock
//! shared by concurrent customers (50 race for 10 units), a released hold giving its unit
//! back, the per-customer limit, the validity window, `PUT /v1/rewards/{id}` refusing a
//! stock below the units used, and the WhatsApp list offering only what can be had now.

use crate::helpers::{self, admin_client, dbname, member, vendor_code, Chat, TestApp};
use crate::rewards::{problem_type, Owner};
use chrono::{Duration, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

impl Owner<'_> {
    async fn create_reward_with(&self, body: Value) -> Value {
        let created = self.post("/v1/rewards", None, Some(body)).await;
        assert_eq!(created.status(), 201);
        created.json().await.unwrap()
    }

    async fn put_reward(&self, reward: Uuid, body: Value) -> reqwest::Response {
        self.app
            .http
            .put(self.app.url(&format!("/v1/rewards/{reward}")))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .expect("PUT")
    }

    /// The reward as `GET /v1/rewards` lists it.
    async fn listed(&self, reward: Uuid) -> Value {
        let list = self.get("/v1/rewards").await;
        list["rewards"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["reward_id"] == reward.to_string())
            .cloned()
            .expect("listed")
    }

    async fn cancel(&self, key: &str, code: &str) -> reqwest::Response {
        self.post(&format!("/v1/redemptions/{code}/cancel"), Some(key), None)
            .await
    }
}

fn reward_id(body: &Value) -> Uuid {
    Uuid::parse_str(body["reward_id"].as_str().unwrap()).unwrap()
}

async fn stock_used(app: &TestApp, reward: Uuid) -> i32 {
    admin_client(&dbname(&app.database_url))
        .await
        .query_one(
            "SELECT used FROM reward_stock WHERE reward_id = $1",
            &[&reward],
        )
        .await
        .unwrap()
        .get(0)
}

/// Stock is across customers, decided by the writer under the tenant lock: of 50
/// customers redeeming a reward with a stock of 10 at once, exactly 10 get a hold and 40
/// are refused `out-of-stock`; the count is stored with the holds.
#[tokio::test]
async fn fifty_customers_racing_for_ten_units_get_exactly_ten_holds() {
    const CUSTOMERS: usize = 50;
    const STOCK: usize = 10;
    let app = TestApp::spawn().await;
    let owner = Owner::sign_up(&app).await;
    let created = owner
        .create_reward_with(json!({ "name": "Limited cake", "points_cost": 5, "stock": STOCK }))
        .await;
    assert_eq!(created["stock"], STOCK);
    assert_eq!(created["stock_remaining"], STOCK);
    let reward = reward_id(&created);
    let mut customers = Vec::new();
    for _ in 0..CUSTOMERS {
        customers.push(owner.customer_with(5).await);
    }

    let answers = futures_util::future::join_all(customers.iter().map(|customer| {
        let owner = &owner;
        async move {
            let response = owner
                .redeem_reward(&format!("race-{customer}"), *customer, reward)
                .await;
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    }))
    .await;
    let held = answers.iter().filter(|(status, _)| *status == 201).count();
    let out_of_stock = answers
        .iter()
        .filter(|(status, body)| {
            *status == 409 && body["type"] == "https://loyalty-ledger.dev/problems/out-of-stock"
        })
        .count();
    assert_eq!(
        (held, out_of_stock),
        (STOCK, CUSTOMERS - STOCK),
        "{answers:?}"
    );
    let listed = owner.listed(reward).await;
    assert_eq!(
        (listed["stock"].as_i64(), listed["stock_remaining"].as_i64()),
        (Some(10), Some(0))
    );
    assert_eq!(stock_used(&app, reward).await, 10);
    let holds = helpers::count(
        &app,
        "SELECT count(*) FROM events WHERE event_type = 'RewardHeld'",
    )
    .await;
    assert_eq!(holds, 10);
    app.stop().await;
}

/// A cancelled hold gives its unit back; a fulfilled one keeps it.
#[tokio::test]
async fn a_released_hold_returns_its_stock_unit() {
    let app = TestApp::spawn().await;
    let owner = Owner::sign_up(&app).await;
    let reward = reward_id(
        &owner
            .create_reward_with(json!({ "name": "Last slice", "points_cost": 5, "stock": 1 }))
            .await,
    );
    let (ada, bayo) = (owner.customer_with(10).await, owner.customer_with(10).await);
    let held: Value = owner
        .redeem_reward("ada-1", ada, reward)
        .await
        .json()
        .await
        .unwrap();
    let code = held["code"].as_str().unwrap().to_owned();
    let refused = owner.redeem_reward("bayo-1", bayo, reward).await;
    assert_eq!(refused.status(), 409);
    assert_eq!(problem_type(refused).await, "out-of-stock");

    assert_eq!(owner.cancel("cancel-ada", &code).await.status(), 200);
    assert_eq!(owner.listed(reward).await["stock_remaining"], 1);
    assert_eq!(stock_used(&app, reward).await, 0);
    let second: Value = owner
        .redeem_reward("bayo-2", bayo, reward)
        .await
        .json()
        .await
        .unwrap();
    let second_code = second["code"].as_str().unwrap().to_owned();
    assert_eq!(
        owner.fulfil("fulfil-bayo", &second_code).await.status(),
        200
    );
    assert_eq!(owner.listed(reward).await["stock_remaining"], 0);
    let again = owner.redeem_reward("ada-2", ada, reward).await;
    assert_eq!(problem_type(again).await, "out-of-stock");
    app.stop().await;
}

/// Open and fulfilled holds count towards the limit; a released one does not.
#[tokio::test]
async fn a_per_customer_limit_of_two_refuses_the_third() {
    let app = TestApp::spawn().await;
    let owner = Owner::sign_up(&app).await;
    let reward = reward_id(
        &owner
            .create_reward_with(
                json!({ "name": "Coffee", "points_cost": 5, "per_customer_limit": 2 }),
            )
            .await,
    );
    let (ada, bayo) = (owner.customer_with(50).await, owner.customer_with(50).await);
    let first: Value = owner
        .redeem_reward("a-1", ada, reward)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(owner.redeem_reward("a-2", ada, reward).await.status(), 201);
    let first_code = first["code"].as_str().unwrap().to_owned();
    assert_eq!(owner.fulfil("f-1", &first_code).await.status(), 200);
    let third = owner.redeem_reward("a-3", ada, reward).await;
    assert_eq!(third.status(), 409);
    let body: Value = third.json().await.unwrap();
    assert_eq!(
        body["type"],
        "https://loyalty-ledger.dev/problems/per-customer-limit-reached"
    );
    assert_eq!(body["per_customer_limit"], 2);
    // Another customer has a limit of their own.
    assert_eq!(owner.redeem_reward("b-1", bayo, reward).await.status(), 201);
    app.stop().await;
}

/// A redemption before `valid_from` or from `valid_until` on is refused, saying which.
#[tokio::test]
async fn a_redemption_outside_the_validity_window_is_refused() {
    let app = TestApp::spawn().await;
    let owner = Owner::sign_up(&app).await;
    let tomorrow = Utc::now() + Duration::days(1);
    let created = owner
        .create_reward_with(json!({
            "name": "Christmas hamper",
            "points_cost": 5,
            "valid_from": tomorrow.to_rfc3339(),
        }))
        .await;
    let reward = reward_id(&created);
    let customer = owner.customer_with(50).await;
    let early = owner.redeem_reward("early", customer, reward).await;
    assert_eq!(early.status(), 409);
    let body: Value = early.json().await.unwrap();
    assert_eq!(
        body["type"],
        "https://loyalty-ledger.dev/problems/reward-not-yet-valid"
    );
    assert!(body["valid_from"].is_string(), "{body}");

    let yesterday = Utc::now() - Duration::days(1);
    let ended = owner
        .put_reward(
            reward,
            json!({
                "name": "Christmas hamper",
                "points_cost": 5,
                "valid_from": (yesterday - Duration::days(1)).to_rfc3339(),
                "valid_until": yesterday.to_rfc3339(),
            }),
        )
        .await;
    assert_eq!(ended.status(), 200);
    let late = owner.redeem_reward("late", customer, reward).await;
    assert_eq!(problem_type(late).await, "reward-no-longer-valid");

    let open = owner
        .put_reward(
            reward,
            json!({
                "name": "Christmas hamper",
                "points_cost": 5,
                "valid_until": tomorrow.to_rfc3339(),
            }),
        )
        .await;
    assert_eq!(open.status(), 200);
    assert_eq!(
        owner
            .redeem_reward("in-time", customer, reward)
            .await
            .status(),
        201
    );
    app.stop().await;
}

/// `PUT` replaces every field; a stock below the units used is refused naming the field,
/// and bad input is a 4xx naming its field, never a 500.
#[tokio::test]
async fn an_update_refuses_a_stock_below_the_units_used() {
    let app = TestApp::spawn().await;
    let owner = Owner::sign_up(&app).await;
    let reward = reward_id(
        &owner
            .create_reward_with(json!({
                "name": "Suya",
                "points_cost": 5,
                "stock": 3,
                "description": "Beef suya with onions",
            }))
            .await,
    );
    let (ada, bayo) = (owner.customer_with(10).await, owner.customer_with(10).await);
    assert_eq!(owner.redeem_reward("a", ada, reward).await.status(), 201);
    assert_eq!(owner.redeem_reward("b", bayo, reward).await.status(), 201);

    let below = owner
        .put_reward(
            reward,
            json!({ "name": "Suya", "points_cost": 5, "stock": 1 }),
        )
        .await;
    assert_eq!(below.status(), 409);
    let body: Value = below.json().await.unwrap();
    assert_eq!(
        body["type"],
        "https://loyalty-ledger.dev/problems/stock-below-used"
    );
    assert_eq!(
        (body["field"].as_str(), body["used"].as_i64()),
        (Some("stock"), Some(2))
    );
    assert_eq!(
        owner.listed(reward).await["stock"],
        3,
        "a refusal changes nothing"
    );

    let updated = owner
        .put_reward(
            reward,
            json!({
                "name": "Suya platter",
                "points_cost": 6,
                "stock": 2,
                "image_url": "https://cdn.example.com/suya.jpg",
            }),
        )
        .await;
    assert_eq!(updated.status(), 200);
    let body: Value = updated.json().await.unwrap();
    assert_eq!(body["name"], "Suya platter");
    assert_eq!(
        (body["stock"].as_i64(), body["stock_remaining"].as_i64()),
        (Some(2), Some(0))
    );
    assert_eq!(
        body["description"],
        Value::Null,
        "PUT clears what it leaves out"
    );
    assert!(body["updated_at"].is_string());

    for (patch, field) in [
        (
            json!({ "name": "x", "points_cost": 1, "stock": -1 }),
            "stock",
        ),
        (
            json!({ "name": "x", "points_cost": 1, "image_url": "ftp://x" }),
            "image_url",
        ),
        (
            json!({ "name": "x", "points_cost": 1, "description": "d".repeat(73) }),
            "description",
        ),
        (json!({ "points_cost": 1 }), "name"),
    ] {
        let response = owner.put_reward(reward, patch).await;
        assert_eq!(response.status(), 422);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["field"], field, "{body}");
    }
    let unknown = owner
        .put_reward(Uuid::now_v7(), json!({ "name": "x", "points_cost": 1 }))
        .await;
    assert_eq!(problem_type(unknown).await, "reward-not-found");
    app.stop().await;
}

/// The WhatsApp list shows descriptions and offers only what can be had now: a reward out
/// of stock and one not valid yet are not listed; a confirmation overtaken by another
/// customer taking the last unit gets a clear reply and deducts nothing.
#[tokio::test]
async fn the_whatsapp_list_hides_rewards_out_of_stock_or_not_valid_now() {
    let app = TestApp::spawn().await;
    let owner = helpers::Owner::sign_up(&app).await;
    let api = Owner {
        app: &app,
        token: owner.token.clone(),
    };
    let code = vendor_code(&app, owner.tenant).await;
    let coffee = reward_id(
        &owner
            .post(
                "/v1/rewards",
                None,
                json!({ "name": "Free coffee", "points_cost": 10, "description": "Any size, any roast" }),
            )
            .await,
    );
    let cake = reward_id(
        &owner
            .post(
                "/v1/rewards",
                None,
                json!({ "name": "Last cake", "points_cost": 10, "stock": 1 }),
            )
            .await,
    );
    let hamper = reward_id(
        &owner
            .post(
                "/v1/rewards",
                None,
                json!({
                    "name": "Hamper",
                    "points_cost": 10,
                    "valid_from": (Utc::now() + Duration::days(1)).to_rfc3339(),
                }),
            )
            .await,
    );
    let chat = Chat::shared(&app);
    let ada = helpers::phone();
    chat.say(&ada, &format!("JOIN {code}")).await;
    chat.reply(&ada, 1).await;
    let customer = member(&app, owner.tenant, &ada).await.expect("a member");
    owner.purchase(customer, 1_000_000).await;

    chat.say(&ada, "rewards").await;
    let list = chat.reply(&ada, 2).await;
    let ids = list.ids();
    assert!(ids.contains(&format!("reward:{coffee}")), "{ids:?}");
    assert!(ids.contains(&format!("reward:{cake}")), "{ids:?}");
    assert!(
        !ids.contains(&format!("reward:{hamper}")),
        "not valid yet: {ids:?}"
    );
    assert!(
        list.body.to_string().contains("Any size, any roast"),
        "the description is the row's: {list:?}"
    );

    chat.pick(&ada, &format!("reward:{cake}")).await;
    let confirm = chat.reply(&ada, 3).await;
    assert!(
        confirm.ids().contains(&format!("confirm:{cake}")),
        "{confirm:?}"
    );
    // Someone else takes the last cake at the counter meanwhile.
    let bayo = api.customer_with(10).await;
    assert_eq!(
        api.redeem_reward("bayo-cake", bayo, cake).await.status(),
        201
    );
    chat.tap(&ada, &format!("confirm:{cake}")).await;
    let refused = chat.reply(&ada, 4).await;
    assert!(refused.text().contains("out of stock"), "{refused:?}");
    assert!(
        refused.text().contains("Nothing was deducted"),
        "{refused:?}"
    );

    chat.say(&ada, "rewards").await;
    let list = chat.reply(&ada, 5).await;
    let ids = list.ids();
    assert!(ids.contains(&format!("reward:{coffee}")), "{ids:?}");
    assert!(
        !ids.contains(&format!("reward:{cake}")),
        "out of stock: {ids:?}"
    );
    app.stop().await;
}
