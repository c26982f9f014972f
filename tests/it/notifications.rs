//! Notifications from the ledger against real PostgreSQL and NATS: customers join through
//! signed webhooks to the real ingest (so they are WhatsApp members the way production makes
//! them), vendors log purchases, redeem and fulfil through the API, and the notifications
//! projector and the expiry-reminder job queue `kind = 'notification'` rows, read here from
//! `whatsapp_outbox` with each sealed recipient opened and checked.

use crate::helpers::{
    admin_client, dbname, digest, member, phone, vendor_code, wa_id, wait_for, Chat, Owner,
    TestApp, WAIT,
};
use chrono::Utc;
use loyalty::app::Components;
use loyalty::conversations::outbox_seal_context;
use loyalty::notifications::{reminders, Notifications};
use serde_json::{json, Value};
use std::sync::Arc;
use uuid::Uuid;
use vault::SealedRecord;

/// The app with the notifications projector (not the notifier, nor the schedules: the
/// reminder job is run by hand, as often as a test likes).
async fn spawn() -> TestApp {
    TestApp::spawn_with(Components {
        expiry_schedule: false,
        notifier: false,
        expiry_reminders: false,
        ..Components::ALL
    })
    .await
}

/// A queued notification, recipient checked.
#[derive(Debug)]
struct Notification {
    dedupe_key: String,
    text: String,
}

/// Every notification queued for `phone`, in queue order, each recipient opened under the
/// outbox context and checked to be `phone`'s wa_id.
async fn notifications_to(app: &TestApp, phone: &str) -> Vec<Notification> {
    let rows = app
        .platform_db()
        .await
        .query(
            "SELECT dedupe_key, body::text, master_key_id, wrapped_key, sealed_recipient \
             FROM whatsapp_outbox WHERE customer_digest = $1 AND kind = 'notification' \
             ORDER BY message_id",
            &[&digest(phone)],
        )
        .await
        .unwrap();
    let vault = crate::helpers::test_vault();
    rows.iter()
        .map(|row| {
            let dedupe_key: String = row.get(0);
            let recipient = vault
                .open_record(
                    &outbox_seal_context(&dedupe_key),
                    &SealedRecord {
                        master_key_id: row.get(2),
                        wrapped_key: row.get(3),
                        sealed: row.get(4),
                    },
                )
                .expect("the recipient opens under the outbox context");
            assert_eq!(String::from_utf8(recipient).unwrap(), wa_id(phone));
            let body: Value = serde_json::from_str(row.get::<_, &str>(1)).unwrap();
            Notification {
                dedupe_key,
                text: body
                    .pointer("/text/body")
                    .or_else(|| body.pointer("/body"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            }
        })
        .collect()
}

/// Waits until `phone` has at least `count` notifications, then returns them all.
async fn wait_for_notifications(app: &TestApp, phone: &str, count: usize) -> Vec<Notification> {
    wait_for(WAIT, &format!("{count} notifications"), || async {
        notifications_to(app, phone).await.len() >= count
    })
    .await;
    notifications_to(app, phone).await
}

/// A customer of `owner` who joined on the shared number with the vendor code.
async fn joined(app: &TestApp, owner: &Owner<'_>, phone: &str) -> Uuid {
    let chat = Chat::shared(app);
    chat.say(
        phone,
        &format!("JOIN {}", vendor_code(app, owner.tenant).await),
    )
    .await;
    chat.reply(phone, 1).await;
    member(app, owner.tenant, phone).await.expect("a member")
}

/// The id of the newest event of `event_type` in `customer`'s stream.
async fn newest_event(app: &TestApp, customer: Uuid, event_type: &str) -> Uuid {
    admin_client(&dbname(&app.database_url))
        .await
        .query_one(
            "SELECT event_id FROM events WHERE stream_id = $1 AND event_type = $2 \
             ORDER BY version DESC LIMIT 1",
            &[&format!("customer-{customer}"), &event_type],
        )
        .await
        .unwrap()
        .get(0)
}

/// Events the notifications projector has applied, redeliveries included.
async fn applied_total(app: &TestApp) -> i64 {
    admin_client(&dbname(&app.database_url))
        .await
        .query_opt(
            "SELECT applied_total FROM projector_checkpoints WHERE name = $1",
            &[&loyalty::notifications::NAME],
        )
        .await
        .unwrap()
        .map_or(0, |row| row.get(0))
}

async fn notification_rows(app: &TestApp) -> i64 {
    admin_client(&dbname(&app.database_url))
        .await
        .query_one(
            "SELECT count(*) FROM whatsapp_outbox WHERE kind = 'notification'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_members_purchase_queues_one_receipt_with_points_and_balance_however_often_replayed() {
    let app = spawn().await;
    let owner = Owner::sign_up(&app).await;
    let ada = phone();
    let customer = joined(&app, &owner, &ada).await;

    assert_eq!(owner.purchase(customer, 1_000_000).await, 100);
    let first = wait_for_notifications(&app, &ada, 1).await;
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(
        first[0]
            .text
            .contains("You earned 100 points at Owner's Shop. Balance: 100 points."),
        "{first:?}"
    );
    let earned = newest_event(&app, customer, "PointsEarned").await;
    assert_eq!(first[0].dedupe_key, format!("notify:{earned}"));

    // The balance is the one right after each event, not the projection's.
    assert_eq!(owner.purchase(customer, 500_000).await, 150);
    let both = wait_for_notifications(&app, &ada, 2).await;
    assert!(
        both[1]
            .text
            .contains("You earned 50 points at Owner's Shop. Balance: 150 points."),
        "{both:?}"
    );

    // Every event offered again: by a rebuild (it reads the whole table), twice, and by
    // JetStream, to a restarted projector whose durable consumer was deleted so that the
    // stream is delivered again from its first message.
    let projection = Notifications::new(Arc::new(crate::helpers::test_vault()));
    for _ in 0..2 {
        projections::runner::rebuild(&projection, &app.platform_pool)
            .await
            .unwrap();
    }
    let applied_before = applied_total(&app).await;
    let events = app.event_count().await;
    let jetstream =
        async_nats::jetstream::new(async_nats::connect(&app.settings.nats_url).await.unwrap());
    jetstream
        .get_stream(&app.settings.nats_stream)
        .await
        .unwrap()
        .delete_consumer(loyalty::notifications::NAME)
        .await
        .unwrap();
    let restarted = loyalty::app::start(
        &app.settings,
        Components {
            notifications_projector: true,
            ..Components::NONE
        },
    )
    .await
    .unwrap();
    wait_for(WAIT, "the stream delivered again", || async {
        applied_total(&app).await >= applied_before + events
    })
    .await;
    restarted.stop().await;
    assert_eq!(notifications_to(&app, &ada).await.len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn a_purchase_of_a_customer_without_whatsapp_queues_nothing() {
    let app = spawn().await;
    let owner = Owner::sign_up(&app).await;
    let response = owner
        .app
        .http
        .post(app.url("/v1/customers"))
        .bearer_auth(&owner.token)
        .json(&json!({ "phone": phone() }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let outsider: Value = response.json().await.unwrap();
    let outsider = Uuid::parse_str(outsider["customer_id"].as_str().unwrap()).unwrap();
    assert_eq!(owner.purchase(outsider, 1_000_000).await, 100);

    // A member's purchase after it: once its receipt is queued, the outsider's earlier
    // event has been through the projector too.
    let ada = phone();
    let customer = joined(&app, &owner, &ada).await;
    owner.purchase(customer, 1_000_000).await;
    wait_for_notifications(&app, &ada, 1).await;
    assert_eq!(
        notification_rows(&app).await,
        1,
        "only the member's receipt"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_lot_is_reminded_once_days_before_it_expires_however_often_the_job_runs() {
    let app = spawn().await;
    let owner = Owner::sign_up(&app).await;
    let ada = phone();
    let customer = joined(&app, &owner, &ada).await;
    owner.purchase(customer, 1_000_000).await;
    wait_for_notifications(&app, &ada, 1).await;
    app.wait_until_projected().await;
    let (lot, expires_at): (Uuid, chrono::DateTime<Utc>) = {
        let row = app
            .platform_db()
            .await
            .query_one(
                "SELECT lot_id, expires_at FROM projection.point_lots WHERE customer_id = $1",
                &[&customer],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    let vault = crate::helpers::test_vault();

    // Thirty days before the lot expires: outside the 7-day window, nothing.
    let early = expires_at - chrono::Duration::days(30);
    let report = reminders::run_once(&app.platform_pool, &vault, early, 7)
        .await
        .unwrap();
    assert_eq!(report, Some(reminders::ReminderReport::default()));
    assert_eq!(notifications_to(&app, &ada).await.len(), 1);

    // Three days before: two runners at once queue one reminder between them (one waits
    // its turn or finds the lot recorded), and three more runs add nothing.
    let due = expires_at - chrono::Duration::days(3);
    let (a, b) = tokio::join!(
        reminders::run_once(&app.platform_pool, &vault, due, 7),
        reminders::run_once(&app.platform_pool, &vault, due, 7),
    );
    let together: u64 = [a.unwrap(), b.unwrap()]
        .iter()
        .flatten()
        .map(|r| r.queued)
        .sum();
    assert_eq!(together, 1);
    let mut queued = Vec::new();
    for _ in 0..3 {
        let report = reminders::run_once(&app.platform_pool, &vault, due, 7)
            .await
            .unwrap()
            .expect("no other runner");
        queued.push(report.queued);
    }
    assert_eq!(queued, [0, 0, 0]);
    // And again the next day: still the one.
    reminders::run_once(
        &app.platform_pool,
        &vault,
        due + chrono::Duration::days(1),
        7,
    )
    .await
    .unwrap();
    let all = notifications_to(&app, &ada).await;
    let reminders: Vec<&Notification> = all
        .iter()
        .filter(|n| n.dedupe_key.starts_with("reminder:"))
        .collect();
    assert_eq!(reminders.len(), 1, "{all:?}");
    assert_eq!(reminders[0].dedupe_key, format!("reminder:{lot}"));
    let date = expires_at.date_naive().format("%-d %b %Y").to_string();
    assert!(
        reminders[0].text.contains(&format!(
            "100 points at Owner's Shop expire on {date}. Send POINTS to see your balance."
        )),
        "{reminders:?}"
    );

    // Nothing personal in the new rows.
    let dump = std::process::Command::new("pg_dump")
        .arg("--data-only")
        .arg("--table=whatsapp_expiry_reminders")
        .arg("--table=whatsapp_outbox")
        .arg(crate::helpers::url_for(&dbname(&app.database_url)))
        .output()
        .expect("running pg_dump");
    assert!(dump.status.success());
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(
        dump.contains(&lot.to_string()),
        "the dump covers the reminders"
    );
    let digits = wa_id(&ada);
    for spelling in [ada.as_str(), digits.as_str(), &digits[3..]] {
        assert!(!dump.contains(spelling), "`{spelling}` is in the dump");
    }
    app.stop().await;
}

/// Fulfils the redemption `code` at the counter.
async fn fulfil(owner: &Owner<'_>, code: &str) {
    let response = owner
        .app
        .http
        .post(owner.app.url(&format!("/v1/redemptions/{code}/fulfil")))
        .bearer_auth(&owner.token)
        .header("Idempotency-Key", format!("fulfil-{}", Uuid::new_v4()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_counter_redemption_and_its_fulfilment_each_queue_one_message() {
    let app = spawn().await;
    let owner = Owner::sign_up(&app).await;
    let ada = phone();
    let customer = joined(&app, &owner, &ada).await;
    owner.purchase(customer, 1_000_000).await;
    let coffee = owner.create_reward("Free coffee", 30).await;

    let redeemed = owner
        .post(
            &format!("/v1/customers/{customer}/redemptions"),
            Some("redeem-1"),
            json!({ "reward_id": coffee }),
        )
        .await;
    let code = redeemed["code"].as_str().unwrap().to_owned();
    let messages = wait_for_notifications(&app, &ada, 2).await;
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert!(
        messages[1].text.contains(&format!(
            "You redeemed Free coffee for 30 points. Your code: *{code}*. Balance: 70 points."
        )),
        "{messages:?}"
    );

    fulfil(&owner, &code).await;
    let messages = wait_for_notifications(&app, &ada, 3).await;
    assert_eq!(messages.len(), 3, "{messages:?}");
    assert!(
        messages[2]
            .text
            .contains("Your reward Free coffee was handed over. Enjoy!"),
        "{messages:?}"
    );
    let fulfilled = newest_event(&app, customer, "HoldFulfilled").await;
    assert_eq!(messages[2].dedupe_key, format!("notify:{fulfilled}"));
    app.stop().await;
}

#[tokio::test]
async fn a_redemption_in_the_conversation_carries_its_code_in_exactly_one_message() {
    let app = spawn().await;
    let owner = Owner::sign_up(&app).await;
    let coffee = owner.create_reward("Free coffee", 30).await;
    let chat = Chat::shared(&app);
    let ada = phone();
    let customer = joined(&app, &owner, &ada).await;
    owner.purchase(customer, 1_000_000).await;

    chat.say(&ada, "rewards").await;
    chat.reply(&ada, 2).await;
    chat.pick(&ada, &format!("reward:{coffee}")).await;
    chat.reply(&ada, 3).await;
    chat.tap(&ada, &format!("confirm:{coffee}")).await;
    let redeemed = chat.reply(&ada, 4).await;
    let code: String = admin_client(&dbname(&app.database_url))
        .await
        .query_one("SELECT code FROM redemption_codes", &[])
        .await
        .unwrap()
        .get(0);
    assert!(redeemed.text().contains(&format!("*{code}*")));

    // The fulfilment follows the redemption in the stream: once its message is queued, the
    // projector has seen the redemption too.
    fulfil(&owner, &code).await;
    let messages = wait_for_notifications(&app, &ada, 2).await;
    assert!(
        messages[1].text.contains("Free coffee was handed over"),
        "{messages:?}"
    );
    let carrying_code: i64 = admin_client(&dbname(&app.database_url))
        .await
        .query_one(
            "SELECT count(*) FROM whatsapp_outbox \
             WHERE customer_digest = $1 AND strpos(body::text, $2) > 0",
            &[&digest(&ada), &code],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        carrying_code, 1,
        "the conversation's reply, and nothing else"
    );
    assert_eq!(messages.len(), 2, "receipt and fulfilment: {messages:?}");
    app.stop().await;
}

#[tokio::test]
async fn a_tier_upgrade_is_told_on_whatsapp_and_points_show_the_tier() {
    let app = spawn().await;
    let owner = Owner::sign_up(&app).await;
    let response = app
        .http
        .put(app.url("/v1/tiers"))
        .bearer_auth(&owner.token)
        .json(&json!({
            "basis": "points_earned",
            "window": { "kind": "calendar_year" },
            "tiers": [
                { "id": "member", "name": "Member", "threshold": 0 },
                { "id": "gold", "name": "Gold", "threshold": 100 },
            ],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let ada = phone();
    let customer = joined(&app, &owner, &ada).await;
    owner.purchase(customer, 1_000_000).await;
    // The receipt, then the upgrade the same purchase earned.
    let messages = wait_for_notifications(&app, &ada, 2).await;
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert!(
        messages[1]
            .text
            .contains("Congratulations! You are now Gold at Owner's Shop."),
        "{messages:?}"
    );
    let chat = Chat::shared(&app);
    chat.say(&ada, "points").await;
    let points = chat.reply(&ada, 2).await;
    assert!(points.text().contains("Tier: Gold."), "{points:?}");
    app.stop().await;
}
