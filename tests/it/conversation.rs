//! The conversation processor against real PostgreSQL: customers write signed webhooks to
//! the real ingest (the sandbox's simulator, as Meta would), and the replies are read from
//! `whatsapp_outbox` (the notifier, which sends them, is not under test here), with each
//! sealed recipient opened to check it. Joining by code on the shared number, POINTS after a
//! purchase, REWARDS, choosing and confirming a redemption, a webhook delivered five times,
//! unknown codes and numbers, a tenant's own number, two vendors, STOP and the
//! `user_preferences` webhook, inactivity expiry, a processor restarted mid-stream, and no
//! phone number in plain text.

use crate::helpers::{
    admin_client, count, dbname, digest, member, phone, processed_everything, replies_to,
    test_settings, test_vault, vendor_code, wa_id, wait_for, Chat, Owner, TestApp,
    SHARED_DISPLAY_NUMBER, SHARED_PHONE_NUMBER_ID, WAIT,
};
use loyalty::app::{self, Components};
use loyalty::conversations::register_own_number;
use serde_json::{json, Value};
use uuid::Uuid;
use whatsapp_sandbox::BusinessNumber;

#[tokio::test]
async fn joining_by_code_on_the_shared_number_enrols_the_customer_in_any_spelling() {
    let app = TestApp::spawn().await;
    let chat = Chat::shared(&app);
    let code = vendor_code(&app, app.tenant_id).await;
    let (bare, joined) = (phone(), phone());

    chat.say(&bare, &code.to_lowercase()).await;
    let welcome = chat.reply(&bare, 1).await;
    assert!(
        welcome
            .text()
            .contains("Welcome to Test Shop's loyalty programme"),
        "{welcome:?}"
    );
    assert_eq!(welcome.tenant, Some(app.tenant_id.as_uuid()));
    assert!(welcome.ids().contains(&"menu:points".to_owned()));

    chat.say(&joined, &format!("jOiN {code}")).await;
    let welcome = chat.reply(&joined, 1).await;
    assert!(
        welcome.text().contains("Welcome to Test Shop"),
        "{welcome:?}"
    );

    let first = member(&app, app.tenant_id, &bare).await.expect("a member");
    let second = member(&app, app.tenant_id, &joined)
        .await
        .expect("a member");
    assert_ne!(first, second);
    // Enrolled in the ledger, through the writer, with the customer as actor.
    let enrolled = count(
        &app,
        "SELECT count(*) FROM events WHERE event_type = 'CustomerEnrolled'",
    )
    .await;
    assert_eq!(enrolled, 2);
    // Exactly the API's enrolment: the customer can be looked up by phone number.
    let found = app
        .http
        .post(app.url("/v1/customers/search"))
        .bearer_auth(&app.api_key)
        .json(&json!({ "phone": bare }))
        .send()
        .await
        .unwrap();
    assert_eq!(found.status(), 200);
    let found: Value = found.json().await.unwrap();
    assert_eq!(found["customers"][0]["customer_id"], first.to_string());
    app.stop().await;
}

#[tokio::test]
async fn points_rewards_choose_confirm_and_history_redeem_once_with_a_code_however_often_delivered()
{
    let app = TestApp::spawn().await;
    let owner = Owner::sign_up(&app).await;
    let code = vendor_code(&app, owner.tenant).await;
    let coffee = owner.create_reward("Free coffee", 30).await;
    for n in 0..11 {
        owner.create_reward(&format!("Mug {n}"), 500 + n).await;
    }
    let chat = Chat::shared(&app);
    let ada = phone();

    chat.say(&ada, &format!("JOIN {code}")).await;
    chat.reply(&ada, 1).await;
    let customer = member(&app, owner.tenant, &ada).await.expect("a member");
    assert_eq!(owner.purchase(customer, 1_000_000).await, 100);

    chat.say(&ada, "POINTS").await;
    let points = chat.reply(&ada, 2).await;
    assert!(
        points.text().contains("Owner's Shop: you have 100 points."),
        "{points:?}"
    );

    chat.say(&ada, "rewards").await;
    let list = chat.reply(&ada, 3).await;
    assert_eq!(list.body["type"], "list", "{list:?}");
    let ids = list.ids();
    assert!(ids.len() <= 10, "at most ten rows: {ids:?}");
    assert!(ids.contains(&format!("reward:{coffee}")), "{ids:?}");
    assert!(
        ids.iter().any(|id| id.starts_with("rewards:page:")),
        "{ids:?}"
    );

    chat.pick(&ada, &format!("reward:{coffee}")).await;
    let confirm = chat.reply(&ada, 4).await;
    assert_eq!(confirm.body["type"], "buttons", "{confirm:?}");
    assert!(confirm.ids().contains(&format!("confirm:{coffee}")));
    assert!(confirm.text().contains("Redeem Free coffee for 30 points?"));

    let tapped = chat.tap(&ada, &format!("confirm:{coffee}")).await;
    let redeemed = chat.reply(&ada, 5).await;
    let text = redeemed.text().to_owned();
    assert!(text.contains("Done! Free coffee redeemed"), "{text}");
    assert!(text.contains("You have 70 points left."), "{text}");
    let stored_code: String = admin_client(&dbname(&app.database_url))
        .await
        .query_one("SELECT code FROM redemption_codes", &[])
        .await
        .unwrap()
        .get(0);
    assert!(text.contains(&format!("*{stored_code}*")), "{text}");

    // Meta delivers the confirmation four more times: one set of replies, one redemption.
    let client = reqwest::Client::new();
    for _ in 0..4 {
        let status = whatsapp_sandbox::simulator::post_signed(
            &client,
            &format!("{}/webhooks/whatsapp", app.ingest_address),
            tapped.body.clone(),
            &tapped.signature,
        )
        .await
        .unwrap();
        assert_eq!(status, 200);
    }
    processed_everything(&app).await;
    assert_eq!(replies_to(&app, &ada).await.len(), 5);

    chat.say(&ada, "history").await;
    let history = chat.reply(&ada, 6).await;
    let lines: Vec<&str> = history.text().lines().collect();
    assert!(
        lines[0].contains("Owner's Shop: your last transactions"),
        "{lines:?}"
    );
    assert!(
        lines[2].contains(&format!("-30  Free coffee (code {stored_code})")),
        "newest first: {lines:?}"
    );
    assert!(lines[3].contains("+100  Purchase"), "{lines:?}");
    let redemptions = count(
        &app,
        "SELECT count(*) FROM events WHERE event_type = 'RewardHeld'",
    )
    .await;
    assert_eq!(redemptions, 1);
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_code_gets_a_clear_reply_and_an_unknown_number_gets_nothing() {
    let app = TestApp::spawn().await;
    let code = vendor_code(&app, app.tenant_id).await;
    let ada = phone();

    Chat::shared(&app).say(&ada, "NOSUCHSHOP42").await;
    let reply = Chat::shared(&app).reply(&ada, 1).await;
    assert!(
        reply
            .text()
            .contains("\"NOSUCHSHOP42\" is not a command or a shop code I know."),
        "{reply:?}"
    );
    assert_eq!(reply.tenant, None);

    let bob = phone();
    let stranger = Chat::on(&app, "999999999999999");
    stranger.say(&bob, &format!("JOIN {code}")).await;
    processed_everything(&app).await;
    assert!(replies_to(&app, &bob).await.is_empty());
    assert_eq!(member(&app, app.tenant_id, &bob).await, None);
    let conversations = count(
        &app,
        "SELECT count(*) FROM whatsapp_conversations WHERE phone_number_id = '999999999999999'",
    )
    .await;
    assert_eq!(conversations, 0);
    let enrolled = count(
        &app,
        "SELECT count(*) FROM events WHERE event_type = 'CustomerEnrolled'",
    )
    .await;
    assert_eq!(enrolled, 0, "no tenant was touched");
    app.stop().await;
}

#[tokio::test]
async fn a_customer_of_two_vendors_switches_between_them() {
    let app = TestApp::spawn().await;
    let owner = Owner::sign_up(&app).await;
    let (first, second) = (
        vendor_code(&app, app.tenant_id).await,
        vendor_code(&app, owner.tenant).await,
    );
    let chat = Chat::shared(&app);
    let ada = phone();

    chat.say(&ada, &first).await;
    assert!(chat.reply(&ada, 1).await.text().contains("Test Shop"));
    chat.say(&ada, &format!("join {second}")).await;
    let joined = chat.reply(&ada, 2).await;
    assert!(
        joined.text().contains("Welcome to Owner's Shop"),
        "{joined:?}"
    );
    assert_eq!(joined.tenant, Some(owner.tenant.as_uuid()));
    let at_second = member(&app, owner.tenant, &ada).await.unwrap();
    owner.purchase(at_second, 70_000).await;

    chat.say(&ada, "points").await;
    assert!(chat
        .reply(&ada, 3)
        .await
        .text()
        .contains("Owner's Shop: you have 7 points."));

    chat.say(&ada, "VENDORS").await;
    let vendors = chat.reply(&ada, 4).await;
    let ids = vendors.ids();
    assert!(
        ids.contains(&format!("vendor:{}", app.tenant_id)),
        "{ids:?}"
    );
    assert!(ids.contains(&format!("vendor:{}", owner.tenant)), "{ids:?}");

    chat.pick(&ada, &format!("vendor:{}", app.tenant_id)).await;
    let switched = chat.reply(&ada, 5).await;
    assert!(switched
        .text()
        .contains("You are now chatting with Test Shop."));
    chat.say(&ada, "points").await;
    let points = chat.reply(&ada, 6).await;
    assert!(
        points.text().contains("Test Shop: you have 0 points."),
        "{points:?}"
    );
    assert_eq!(points.tenant, Some(app.tenant_id.as_uuid()));
    assert_ne!(member(&app, app.tenant_id, &ada).await.unwrap(), at_second);
    app.stop().await;
}

#[tokio::test]
async fn stop_stores_the_opt_out_and_replies_still_work() {
    let app = TestApp::spawn().await;
    let code = vendor_code(&app, app.tenant_id).await;
    let chat = Chat::shared(&app);
    let ada = phone();
    chat.say(&ada, &code).await;
    chat.reply(&ada, 1).await;

    chat.say(&ada, "STOP").await;
    let stopped = chat.reply(&ada, 2).await;
    assert!(stopped.text().contains("You will no longer receive offers"));
    let state: String = app
        .platform_db()
        .await
        .query_one(
            "SELECT state::text FROM whatsapp_conversations WHERE customer_digest = $1",
            &[&digest(&ada)],
        )
        .await
        .unwrap()
        .get(0);
    let state: Value = serde_json::from_str(&state).unwrap();
    assert_eq!(state["broadcasts"], "opted_out", "{state}");

    chat.say(&ada, "Points").await;
    assert!(chat
        .reply(&ada, 3)
        .await
        .text()
        .contains("Test Shop: you have 0 points."));
    app.stop().await;
}

#[tokio::test]
async fn a_processor_restarted_mid_stream_loses_nothing_and_repeats_nothing() {
    // The ingest and the API run; the processor does not, so the inbox fills up.
    let app = TestApp::spawn_with(Components {
        expiry_schedule: false,
        conversations: false,
        ..Components::ALL
    })
    .await;
    let code = vendor_code(&app, app.tenant_id).await;
    let chat = Chat::shared(&app);
    let customers: Vec<String> = (0..8).map(|_| phone()).collect();
    for customer in &customers {
        chat.say(customer, &code).await;
        chat.say(customer, "points").await;
    }
    let items = 2 * customers.len();

    // Small batches (one customer's two messages each), so it can stop mid-stream.
    let mut settings = test_settings(&app.database_url);
    settings.whatsapp_processor_batch_max = 2;
    let only_processor = Components {
        conversations: true,
        ..Components::NONE
    };
    let first = app::start(&settings, only_processor).await.unwrap();
    wait_for(WAIT, "a few replies", || async {
        count(&app, "SELECT count(*) FROM whatsapp_outbox").await >= 3
    })
    .await;
    first.stop().await;
    let after_first = count(&app, "SELECT count(*) FROM whatsapp_outbox").await;
    assert!(after_first < items as i64, "stopped mid-stream");

    let second = app::start(&settings, only_processor).await.unwrap();
    processed_everything(&app).await;
    second.stop().await;

    let replies = count(&app, "SELECT count(*) FROM whatsapp_outbox").await;
    assert_eq!(replies, items as i64, "one reply per message");
    let enrolled = count(
        &app,
        "SELECT count(*) FROM events WHERE event_type = 'CustomerEnrolled'",
    )
    .await;
    assert_eq!(
        enrolled,
        customers.len() as i64,
        "one enrolment per customer"
    );
    for customer in &customers {
        let replies = replies_to(&app, customer).await;
        assert_eq!(replies.len(), 2);
        assert!(replies[0].text().contains("Welcome to Test Shop"));
        assert!(replies[1].text().contains("Test Shop: you have 0 points."));
    }
    app.stop().await;
}

#[tokio::test]
async fn no_phone_number_or_name_in_plain_text_in_the_database() {
    let app = TestApp::spawn().await;
    let code = vendor_code(&app, app.tenant_id).await;
    let chat = Chat::shared(&app);
    let ada = phone();
    chat.say(&ada, &code).await;
    chat.say(&ada, "points").await;
    chat.say(&ada, "STOP").await;
    chat.replies(&ada, 3).await;

    let dump = std::process::Command::new("pg_dump")
        .arg("--data-only")
        .arg(crate::helpers::url_for(&dbname(&app.database_url)))
        .output()
        .expect("running pg_dump");
    assert!(dump.status.success());
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(
        dump.contains("whatsapp_outbox"),
        "the dump covers the new tables"
    );
    let digits = wa_id(&ada);
    for spelling in [ada.as_str(), digits.as_str(), &digits[3..], "Ada Lovelace"] {
        assert!(!dump.contains(spelling), "`{spelling}` is in the dump");
    }
    app.stop().await;
}

fn shared_business() -> BusinessNumber {
    BusinessNumber {
        phone_number_id: SHARED_PHONE_NUMBER_ID.to_owned(),
        display_phone_number: SHARED_DISPLAY_NUMBER.to_owned(),
        waba_id: "100000000000000".to_owned(),
        access_token: None,
    }
}

#[tokio::test]
async fn a_tenants_own_number_enrols_on_the_first_message_and_is_never_taken_over() {
    let app = TestApp::spawn().await;
    let own = "200000000000002";
    assert!(
        register_own_number(&app.platform_pool, app.tenant_id, own, "15550002222")
            .await
            .unwrap()
    );
    let other = Owner::sign_up(&app).await;
    assert!(
        !register_own_number(&app.platform_pool, other.tenant, own, "15550002222")
            .await
            .unwrap(),
        "another tenant's number is refused"
    );
    // The shared number is seeded once the processor leads.
    wait_for(WAIT, "the shared number", || async {
        count(
            &app,
            "SELECT count(*) FROM whatsapp_numbers WHERE tenant_id IS NULL",
        )
        .await
            == 1
    })
    .await;
    assert!(
        !register_own_number(
            &app.platform_pool,
            other.tenant,
            SHARED_PHONE_NUMBER_ID,
            SHARED_DISPLAY_NUMBER
        )
        .await
        .unwrap(),
        "the shared number is refused"
    );

    let chat = Chat::on(&app, own);
    let ada = phone();
    chat.say(&ada, "hi").await;
    let welcome = chat.reply(&ada, 1).await;
    assert!(welcome.text().contains("Test Shop"), "{welcome:?}");
    assert_eq!(welcome.tenant, Some(app.tenant_id.as_uuid()));
    let customer = member(&app, app.tenant_id, &ada).await.expect("enrolled");
    assert_eq!(member(&app, other.tenant, &ada).await, None);

    chat.say(&ada, "points").await;
    assert!(chat
        .reply(&ada, 2)
        .await
        .text()
        .contains("Test Shop: you have 0 points."));
    // Enrolled once, as the API would have: the search by phone finds the same customer.
    let found: Value = app
        .http
        .post(app.url("/v1/customers/search"))
        .bearer_auth(&app.api_key)
        .json(&json!({ "phone": ada }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(found["customers"][0]["customer_id"], customer.to_string());
    app.stop().await;
}

#[tokio::test]
async fn a_user_preferences_stop_opts_out_without_a_reply() {
    let app = TestApp::spawn().await;
    let code = vendor_code(&app, app.tenant_id).await;
    let chat = Chat::shared(&app);
    let ada = phone();
    chat.say(&ada, &code).await;
    chat.reply(&ada, 1).await;

    let business = shared_business();
    app.post_webhook(&json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": business.waba_id,
            "changes": [{
                "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {
                        "display_phone_number": business.display_phone_number,
                        "phone_number_id": business.phone_number_id,
                    },
                    "user_preferences": [{
                        "wa_id": wa_id(&ada),
                        "detail": "User requested to stop marketing messages",
                        "category": "marketing_messages",
                        "value": "stop",
                        "timestamp": chrono::Utc::now().timestamp(),
                    }],
                },
                "field": "user_preferences",
            }],
        }],
    }))
    .await;
    processed_everything(&app).await;
    assert_eq!(
        replies_to(&app, &ada).await.len(),
        1,
        "no reply to a preference"
    );
    let state: String = app
        .platform_db()
        .await
        .query_one(
            "SELECT state::text FROM whatsapp_conversations WHERE customer_digest = $1",
            &[&digest(&ada)],
        )
        .await
        .unwrap()
        .get(0);
    let state: Value = serde_json::from_str(&state).unwrap();
    assert_eq!(state["broadcasts"], "opted_out", "{state}");
    app.stop().await;
}

#[tokio::test]
async fn a_pending_confirmation_expires_after_the_inactivity_timeout() {
    let app = TestApp::spawn().await;
    let owner = Owner::sign_up(&app).await;
    let code = vendor_code(&app, owner.tenant).await;
    let coffee = owner.create_reward("Free coffee", 10).await;
    let chat = Chat::shared(&app);
    let ada = phone();
    chat.say(&ada, &code).await;
    chat.reply(&ada, 1).await;
    let customer = member(&app, owner.tenant, &ada).await.unwrap();
    owner.purchase(customer, 100_000).await;
    chat.pick(&ada, &format!("reward:{coffee}")).await;
    assert!(chat
        .reply(&ada, 2)
        .await
        .ids()
        .contains(&format!("confirm:{coffee}")));

    // "yes", written 31 minutes later (the default timeout is 30).
    let later = chrono::Utc::now() + chrono::Duration::minutes(31);
    let message = json!({
        "from": wa_id(&ada),
        "id": format!("wamid.test-{}", Uuid::new_v4().simple()),
        "timestamp": later.timestamp().to_string(),
        "type": "text",
        "text": { "body": "yes" },
    });
    app.post_webhook(&whatsapp_sandbox::simulator::inbound_webhook(
        &shared_business(),
        &wa_id(&ada),
        "Ada Lovelace",
        message,
    ))
    .await;
    let reply = chat.reply(&ada, 3).await;
    assert!(
        reply
            .text()
            .contains("There is nothing waiting for your answer."),
        "{reply:?}"
    );
    let redemptions = count(
        &app,
        "SELECT count(*) FROM events WHERE event_type = 'RewardHeld'",
    )
    .await;
    assert_eq!(redemptions, 0);
    app.stop().await;
}

/// The crash window of the exactly-once argument: the processor ran the redemption through
/// the writer and died before its transaction. Simulated by running that very command (same
/// idempotency key, as the processor derives it) before the message is processed: the
/// processor must replay the stored answer, reply with that code, and redeem nothing more.
#[tokio::test]
async fn a_redemption_committed_before_a_crash_is_replayed_not_repeated() {
    let app = TestApp::spawn().await;
    let owner = Owner::sign_up(&app).await;
    let code = vendor_code(&app, owner.tenant).await;
    let coffee = owner.create_reward("Free coffee", 30).await;
    let chat = Chat::shared(&app);
    let ada = phone();
    chat.say(&ada, &code).await;
    chat.reply(&ada, 1).await;
    let customer = member(&app, owner.tenant, &ada).await.unwrap();
    owner.purchase(customer, 1_000_000).await;
    chat.pick(&ada, &format!("reward:{coffee}")).await;
    chat.reply(&ada, 2).await;

    let wamid = format!("wamid.test-{}", Uuid::new_v4().simple());
    let vault = test_vault();
    let dedupe_key = format!(
        "msg:{}",
        hex::encode(webhook_ingest::inbox::wamid_digest(&vault, &wamid))
    );
    let (writer, task) = schema::writer::spawn_standalone(app.pool.clone(), app.settings.writer());
    let first = loyalty::conversations::ledger::redeem(
        &writer,
        &vault,
        owner.tenant,
        ledger_core::CustomerId::from_uuid(customer),
        ledger_core::RewardId::from_uuid(coffee),
        format!("wa:{dedupe_key}:redeem"),
    )
    .await
    .unwrap();
    drop(writer);
    let _ = task.await;
    let ledger_core::conversation::render::RedemptionOutcome::Redeemed {
        code: first_code, ..
    } = first
    else {
        panic!("the first redemption was refused: {first:?}");
    };

    let message = json!({
        "from": wa_id(&ada),
        "id": wamid,
        "timestamp": chrono::Utc::now().timestamp().to_string(),
        "type": "interactive",
        "interactive": { "type": "button_reply",
                         "button_reply": { "id": format!("confirm:{coffee}"), "title": "Confirm" } },
    });
    app.post_webhook(&whatsapp_sandbox::simulator::inbound_webhook(
        &shared_business(),
        &wa_id(&ada),
        "Ada Lovelace",
        message,
    ))
    .await;
    let reply = chat.reply(&ada, 3).await;
    assert!(
        reply.text().contains(&format!("*{first_code}*")),
        "the stored code: {reply:?}"
    );
    assert!(
        reply.text().contains("You have 70 points left."),
        "{reply:?}"
    );
    let redemptions = count(
        &app,
        "SELECT count(*) FROM events WHERE event_type = 'RewardHeld'",
    )
    .await;
    assert_eq!(redemptions, 1);
    app.stop().await;
}

/// The processor polls once an hour: only the inbox's notification (LISTEN/NOTIFY) can make
/// it answer within the test's wait.
#[tokio::test]
async fn a_processor_polling_once_an_hour_is_woken_by_each_message() {
    let app = TestApp::spawn_with_settings(|settings| {
        settings.whatsapp_processor_poll_ms = 3_600_000;
    })
    .await;
    let code = vendor_code(&app, app.tenant_id).await;
    let chat = Chat::shared(&app);
    let ada = phone();
    // Let the processor lead, read the empty inbox and start waiting.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    chat.say(&ada, &code).await;
    let welcome = chat.reply(&ada, 1).await;
    assert!(
        welcome.text().contains("Welcome to Test Shop"),
        "{welcome:?}"
    );
    // Again, now that it waits after a batch.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    chat.say(&ada, "points").await;
    let points = chat.reply(&ada, 2).await;
    assert!(
        points.text().contains("Test Shop: you have 0 points."),
        "{points:?}"
    );
    app.stop().await;
}

/// Several customers' messages, interleaved in the inbox, processed in one go (the
/// processor starts after they are all stored): each customer's replies come in the order
/// of their messages, and each reply follows from the state the previous message left
/// (carried in memory within a batch, not re-read).
#[tokio::test]
async fn interleaved_customers_in_one_batch_get_replies_in_their_own_order() {
    let app = TestApp::spawn_with(Components {
        expiry_schedule: false,
        conversations: false,
        ..Components::ALL
    })
    .await;
    let owner = Owner::sign_up(&app).await;
    let code = vendor_code(&app, owner.tenant).await;
    let coffee = owner.create_reward("Free coffee", 30).await;
    let chat = Chat::shared(&app);
    let customers: Vec<String> = (0..4).map(|_| phone()).collect();
    for customer in &customers {
        chat.say(customer, &code).await;
    }
    for customer in &customers {
        chat.pick(customer, &format!("reward:{coffee}")).await;
    }
    for customer in &customers {
        chat.say(customer, "no").await;
    }
    for customer in &customers {
        chat.say(customer, "no").await;
    }

    let settings = test_settings(&app.database_url);
    let processor = app::start(
        &settings,
        Components {
            conversations: true,
            ..Components::NONE
        },
    )
    .await
    .unwrap();
    processed_everything(&app).await;
    processor.stop().await;

    for customer in &customers {
        let replies = replies_to(&app, customer).await;
        let texts: Vec<&str> = replies.iter().map(|r| r.text()).collect();
        assert_eq!(replies.len(), 4, "{texts:#?}");
        assert!(texts[0].contains("Welcome to Owner's Shop"), "{texts:#?}");
        assert!(
            texts[1].contains("Free coffee costs 30 points"),
            "{texts:#?}"
        );
        assert!(
            texts[2].contains("Cancelled: nothing was redeemed."),
            "{texts:#?}"
        );
        assert!(
            texts[3].contains("There is nothing waiting for your answer."),
            "{texts:#?}"
        );
    }
    let enrolled = count(
        &app,
        "SELECT count(*) FROM events WHERE event_type = 'CustomerEnrolled'",
    )
    .await;
    assert_eq!(enrolled, customers.len() as i64);
    app.stop().await;
}

/// A crash after a batch's ledger commands and before its transaction commits: the batch
/// is held at its commit (a test transaction locks the cursor row), the processor is
/// stopped there, and a new one processes the batch again. The enrolments are replayed by
/// their idempotency keys, not repeated; every reply is queued once, in order.
#[tokio::test]
async fn a_batch_cut_off_before_its_commit_is_replayed_without_repeating_anything() {
    let app = TestApp::spawn_with(Components {
        expiry_schedule: false,
        conversations: false,
        ..Components::ALL
    })
    .await;
    let code = vendor_code(&app, app.tenant_id).await;
    let chat = Chat::shared(&app);
    let customers: Vec<String> = (0..4).map(|_| phone()).collect();
    for customer in &customers {
        chat.say(customer, &code).await;
        chat.say(customer, "points").await;
    }
    let items = 2 * customers.len() as i64;

    let mut admin = admin_client(&dbname(&app.database_url)).await;
    admin
        .execute(
            "INSERT INTO whatsapp_inbox_cursors (name) VALUES ('conversations') \
             ON CONFLICT (name) DO NOTHING",
            &[],
        )
        .await
        .unwrap();
    let lock = admin.transaction().await.unwrap();
    lock.execute(
        "SELECT 1 FROM whatsapp_inbox_cursors WHERE name = 'conversations' FOR UPDATE",
        &[],
    )
    .await
    .unwrap();

    let settings = test_settings(&app.database_url);
    let only_processor = Components {
        conversations: true,
        ..Components::NONE
    };
    let first = app::start(&settings, only_processor).await.unwrap();
    // The batch's commands ran (every customer enrolled)…
    wait_for(WAIT, "the batch's enrolments", || async {
        count(
            &app,
            "SELECT count(*) FROM events WHERE event_type = 'CustomerEnrolled'",
        )
        .await
            == customers.len() as i64
    })
    .await;
    // …and its transaction waits for the cursor row: cut it off there.
    wait_for(
        WAIT,
        "the batch's transaction to wait for the lock",
        || async {
            count(
                &app,
                "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .await
                > 0
        },
    )
    .await;
    first.stop().await;
    lock.rollback().await.unwrap();
    assert_eq!(
        count(&app, "SELECT count(*) FROM whatsapp_outbox").await,
        0,
        "nothing of the cut-off batch was committed"
    );

    let second = app::start(&settings, only_processor).await.unwrap();
    processed_everything(&app).await;
    second.stop().await;

    assert_eq!(
        count(&app, "SELECT count(*) FROM whatsapp_outbox").await,
        items,
        "one reply per message"
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM events WHERE event_type = 'CustomerEnrolled'",
        )
        .await,
        customers.len() as i64,
        "the replayed batch enrolled nobody twice"
    );
    for customer in &customers {
        let replies = replies_to(&app, customer).await;
        assert_eq!(replies.len(), 2);
        assert!(replies[0].text().contains("Welcome to Test Shop"));
        assert!(replies[1].text().contains("Test Shop: you have 0 points."));
    }
    app.stop().await;
}

#[tokio::test]
async fn history_on_whatsapp_shows_adjustments_with_their_reason_and_refunds() {
    let app = TestApp::spawn().await;
    let owner = Owner::sign_up(&app).await;
    let code = vendor_code(&app, owner.tenant).await;
    let chat = Chat::shared(&app);
    let ada = phone();
    chat.say(&ada, &format!("JOIN {code}")).await;
    chat.reply(&ada, 1).await;
    let customer = member(&app, owner.tenant, &ada).await.expect("a member");
    let bought = owner
        .post(
            "/v1/purchases",
            Some("buy-1"),
            json!({ "customer_id": customer, "amount_minor": 1_000_000 }),
        )
        .await;
    owner
        .post(
            &format!("/v1/customers/{customer}/adjustments"),
            Some("adjust-1"),
            json!({ "points": 25, "reason": "Birthday cake voucher" }),
        )
        .await;
    owner
        .post(
            &format!("/v1/customers/{customer}/refunds"),
            Some("refund-1"),
            json!({ "purchase_id": bought["purchase_id"], "amount_minor": 500_000 }),
        )
        .await;

    chat.say(&ada, "history").await;
    let history = chat.reply(&ada, 2).await;
    let lines: Vec<&str> = history.text().lines().collect();
    assert!(lines[2].contains("-50  Refund"), "newest first: {lines:?}");
    assert!(
        lines[3].contains("+25  Adjustment: Birthday cake voucher"),
        "{lines:?}"
    );
    assert!(lines[4].contains("+100  Purchase"), "{lines:?}");
    chat.say(&ada, "points").await;
    let points = chat.reply(&ada, 3).await;
    assert!(points.text().contains("you have 75 points."), "{points:?}");
    app.stop().await;
}
