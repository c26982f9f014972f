//! Broadcasts against real PostgreSQL, NATS and the WhatsApp sandbox: customers join
//! through signed webhooks (so they are WhatsApp members the way production makes them),
//! the vendor broadcasts through the API, the feeder queues the recipients and the notifier
//! sends them to the sandbox, whose record is what the customers received.
//!
//! Where a test needs to stop between steps, it runs without the in-process feeder (or
//! notifier) and calls `loyalty::broadcasts::run_once` itself.

use crate::helpers::{
    admin_client, count, dbname, member, phone, vendor_code, wa_id, wait_for, Chat, Owner, TestApp,
    WAIT,
};
use loyalty::app::Components;
use loyalty::broadcasts::{run_once, FeederSettings};
use serde_json::{json, Value};
use std::time::Duration;
use uuid::Uuid;
use whatsapp_sandbox::{After, RecordedMessage};

/// The WhatsApp pipeline with the sandbox; `feeder` and `notifier` say whether the broadcast
/// feeder and the notifier run in the process.
async fn spawn(feeder: bool, notifier: bool) -> TestApp {
    spawn_adjusted(feeder, notifier, |_| {}).await
}

async fn spawn_adjusted(
    feeder: bool,
    notifier: bool,
    adjust: impl FnOnce(&mut loyalty::settings::Settings),
) -> TestApp {
    TestApp::spawn_whatsapp_components(
        adjust,
        Components {
            expiry_schedule: false,
            notifications_projector: false,
            expiry_reminders: false,
            broadcasts: feeder,
            notifier,
            ..Components::ALL
        },
    )
    .await
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

/// `phone` says STOP (its `replies_so_far`-th message gets the answer).
async fn opts_out(app: &TestApp, phone: &str, replies_so_far: usize) {
    let chat = Chat::shared(app);
    chat.say(phone, "STOP").await;
    chat.reply(phone, replies_so_far + 1).await;
}

fn broadcast_body(segment: Value) -> Value {
    json!({
        "name": "Spring offer",
        "segment": segment,
        "template": {"name": "spring_offer", "language": "en_US", "parameters": ["20%"]},
    })
}

/// `POST /v1/broadcasts` as `owner`: the status and the body.
async fn post_broadcast(owner: &Owner<'_>, key: Option<&str>, body: &Value) -> (u16, Value) {
    let mut request = owner
        .app
        .http
        .post(owner.app.url("/v1/broadcasts"))
        .bearer_auth(&owner.token)
        .json(body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.expect("POST /v1/broadcasts");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn create(owner: &Owner<'_>, segment: Value) -> Value {
    let (status, body) = post_broadcast(
        owner,
        Some(&format!("bc-{}", Uuid::new_v4())),
        &broadcast_body(segment),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body
}

/// `GET` or `POST` a broadcast path as `owner`: the status and the body.
async fn call(owner: &Owner<'_>, post: bool, path: &str) -> (u16, Value) {
    let url = owner.app.url(path);
    let request = if post {
        owner.app.http.post(url)
    } else {
        owner.app.http.get(url)
    };
    let response = request.bearer_auth(&owner.token).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn show(owner: &Owner<'_>, id: &str) -> Value {
    let (status, body) = call(owner, false, &format!("/v1/broadcasts/{id}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

fn id_of(broadcast: &Value) -> String {
    broadcast["broadcast_id"].as_str().unwrap().to_owned()
}

/// Every template message the sandbox accepted for `phone`.
async fn templates_to(app: &TestApp, phone: &str) -> Vec<RecordedMessage> {
    whatsapp_sandbox::simulator::recorded_messages(
        &app.http,
        &app.sandbox_address,
        phone,
        After::Sequence(0),
    )
    .await
    .expect("reading the sandbox")
    .into_iter()
    .filter(|m| {
        m.message_type.as_deref() == Some("template")
            && m.outcome == whatsapp_sandbox::Outcome::Accepted
    })
    .collect()
}

/// Waits until the broadcast is `state` and `condition` holds of it; returns it.
async fn wait_for_broadcast(
    owner: &Owner<'_>,
    id: &str,
    what: &str,
    condition: impl Fn(&Value) -> bool,
) -> Value {
    wait_for(WAIT, what, || async { condition(&show(owner, id).await) }).await;
    show(owner, id).await
}

fn progress(broadcast: &Value, field: &str) -> i64 {
    broadcast["progress"][field]
        .as_i64()
        .unwrap_or_else(|| panic!("progress.{field}: {broadcast}"))
}

fn feeder(chunk_max: i64) -> FeederSettings {
    FeederSettings {
        chunk_max,
        ..FeederSettings::default()
    }
}

#[tokio::test]
async fn a_broadcast_reaches_each_opted_in_member_of_its_segment_once_as_a_template() {
    let app = spawn(true, true).await;
    let owner = Owner::sign_up(&app).await;
    let (ada, bola, chi, dayo) = (phone(), phone(), phone(), phone());
    let ada_id = joined(&app, &owner, &ada).await;
    let bola_id = joined(&app, &owner, &bola).await;
    let chi_id = joined(&app, &owner, &chi).await;
    joined(&app, &owner, &dayo).await;
    opts_out(&app, &chi, 1).await;
    // A customer enrolled at the counter, with no WhatsApp conversation.
    let counter = owner
        .post("/v1/customers", None, json!({ "phone": phone() }))
        .await;
    let counter_id = Uuid::parse_str(counter["customer_id"].as_str().unwrap()).unwrap();
    for (customer, amount) in [
        (ada_id, 1_000_000),
        (bola_id, 2_000_000),
        (chi_id, 2_000_000),
        (counter_id, 3_000_000),
    ] {
        owner.purchase(customer, amount).await;
    }
    app.wait_until_projected().await;

    // Balance ≥ 150: bola (sent), chi (opted out), the counter customer (no WhatsApp).
    let created = create(&owner, json!({"kind": "balance_at_least", "points": 150})).await;
    assert_eq!(created["state"], "running");
    assert_eq!(progress(&created, "recipients"), 3, "{created}");
    assert_eq!(progress(&created, "skipped_opted_out"), 1);
    assert_eq!(progress(&created, "skipped_no_whatsapp"), 1);
    assert_eq!(progress(&created, "waiting"), 1);
    let id = id_of(&created);
    let done = wait_for_broadcast(
        &owner,
        &id,
        "the broadcast to complete and be delivered",
        |b| b["state"] == "completed" && progress(b, "delivered") == 1,
    )
    .await;
    assert!(done["completed_at"].is_string(), "{done}");

    let sent = templates_to(&app, &bola).await;
    assert_eq!(sent.len(), 1, "{sent:#?}");
    let template = &sent[0].body["template"];
    assert_eq!(template["name"], "spring_offer");
    assert_eq!(template["language"]["code"], "en_US");
    assert_eq!(
        template["components"][0]["parameters"][0]["text"], "20%",
        "{template}"
    );
    assert_eq!(sent[0].recipient.as_deref(), Some(wa_id(&bola).as_str()));
    for other in [&ada, &chi, &dayo] {
        assert!(templates_to(&app, other).await.is_empty(), "{other}");
    }
    // The progress is the sandbox's record: one accepted, one delivered, nothing failed.
    assert_eq!(progress(&done, "enqueued"), 1);
    assert_eq!(progress(&done, "sent"), 1);
    assert_eq!(progress(&done, "failed"), 0);
    assert_eq!(progress(&done, "waiting"), 0);
    assert_eq!(progress(&done, "sending"), 0);

    // Each recipient's state, a page at a time.
    let (status, page) = call(&owner, false, &format!("/v1/broadcasts/{id}/recipients")).await;
    assert_eq!(status, 200, "{page}");
    let mut states: Vec<(String, String, Value)> = page["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["customer_id"].as_str().unwrap().to_owned(),
                r["state"].as_str().unwrap().to_owned(),
                r["message_state"].clone(),
            )
        })
        .collect();
    states.sort_by(|a, b| a.0.cmp(&b.0));
    let mut expected = vec![
        (bola_id.to_string(), "enqueued".to_owned()),
        (chi_id.to_string(), "skipped_opted_out".to_owned()),
        (counter_id.to_string(), "skipped_no_whatsapp".to_owned()),
    ];
    expected.sort();
    assert_eq!(
        states
            .iter()
            .map(|(c, s, _)| (c.clone(), s.clone()))
            .collect::<Vec<_>>(),
        expected
    );
    for (customer, _, message_state) in &states {
        if *customer == bola_id.to_string() {
            assert!(
                *message_state == json!("delivered") || *message_state == json!("read"),
                "{message_state}"
            );
        } else {
            assert_eq!(*message_state, Value::Null);
        }
    }
    assert_eq!(page["next_after"], Value::Null);
    let (_, first) = call(
        &owner,
        false,
        &format!("/v1/broadcasts/{id}/recipients?limit=2"),
    )
    .await;
    assert_eq!(first["recipients"].as_array().unwrap().len(), 2);
    let after = first["next_after"].as_str().unwrap().to_owned();
    let (_, rest) = call(
        &owner,
        false,
        &format!("/v1/broadcasts/{id}/recipients?limit=2&after={after}"),
    )
    .await;
    assert_eq!(rest["recipients"].as_array().unwrap().len(), 1, "{rest}");
    assert_eq!(rest["next_after"], Value::Null);

    // A second segment of the same vendor: every member, the opted-out one skipped.
    let everyone = create(&owner, json!({"kind": "all_opted_in"})).await;
    assert_eq!(progress(&everyone, "recipients"), 4, "{everyone}");
    assert_eq!(progress(&everyone, "skipped_opted_out"), 1);
    assert_eq!(progress(&everyone, "skipped_no_whatsapp"), 0);
    let everyone = wait_for_broadcast(&owner, &id_of(&everyone), "all sent", |b| {
        b["state"] == "completed" && progress(b, "sent") == 3
    })
    .await;
    let mut accepted = 0;
    for (customer, expected) in [(&ada, 1), (&bola, 2), (&chi, 0), (&dayo, 1)] {
        let templates = templates_to(&app, customer).await;
        assert_eq!(templates.len(), expected, "{customer}: {templates:#?}");
        accepted += templates.len();
    }
    assert_eq!(
        accepted as i64,
        progress(&done, "sent") + progress(&everyone, "sent")
    );
    let (status, list) = call(&owner, false, "/v1/broadcasts").await;
    assert_eq!(status, 200);
    let listed: Vec<&str> = list["broadcasts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["broadcast_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        vec![everyone["broadcast_id"].as_str().unwrap(), id.as_str()]
    );
    app.stop().await;
}

#[tokio::test]
async fn the_same_idempotency_key_sends_once_and_another_body_with_it_is_refused() {
    let app = spawn(true, true).await;
    let owner = Owner::sign_up(&app).await;
    let (ada, bola) = (phone(), phone());
    joined(&app, &owner, &ada).await;
    joined(&app, &owner, &bola).await;
    let body = broadcast_body(json!({"kind": "all_opted_in"}));
    // Twice at once, then once more: one broadcast.
    let (first, second) = tokio::join!(
        post_broadcast(&owner, Some("spring-2026"), &body),
        post_broadcast(&owner, Some("spring-2026"), &body)
    );
    let (third_status, third) = post_broadcast(&owner, Some("spring-2026"), &body).await;
    for (status, answer) in [&first, &second, &(third_status, third.clone())] {
        assert_eq!(*status, 201, "{answer}");
        assert_eq!(answer["broadcast_id"], first.1["broadcast_id"]);
    }
    let other = broadcast_body(json!({"kind": "balance_at_least", "points": 1}));
    let (status, problem) = post_broadcast(&owner, Some("spring-2026"), &other).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(
        problem["type"],
        "https://loyalty-ledger.dev/problems/idempotency-key-reused"
    );
    let id = id_of(&first.1);
    wait_for_broadcast(&owner, &id, "both sent", |b| {
        b["state"] == "completed" && progress(b, "sent") == 2
    })
    .await;
    // A retry after completion still answers with the same broadcast and sends nothing.
    let (status, again) = post_broadcast(&owner, Some("spring-2026"), &body).await;
    assert_eq!(status, 201);
    assert_eq!(id_of(&again), id);
    assert_eq!(again["state"], "completed");
    for customer in [&ada, &bola] {
        assert_eq!(templates_to(&app, customer).await.len(), 1, "{customer}");
    }
    assert_eq!(count(&app, "SELECT count(*) FROM broadcasts").await, 1);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM whatsapp_outbox WHERE kind = 'broadcast'"
        )
        .await,
        2
    );
    app.stop().await;
}

#[tokio::test]
async fn pause_withdraws_what_is_not_sent_and_stops_feeding_and_resume_finishes() {
    // No feeder and no notifier: the test runs the feeder by hand and starts a notifier
    // when it wants sends.
    let app = spawn(false, false).await;
    let owner = Owner::sign_up(&app).await;
    let customers: Vec<String> = (0..4).map(|_| phone()).collect();
    for customer in &customers {
        joined(&app, &owner, customer).await;
    }
    let created = create(&owner, json!({"kind": "all_opted_in"})).await;
    let id = id_of(&created);
    assert_eq!(progress(&created, "waiting"), 4);
    let vault = crate::helpers::test_vault();
    let report = run_once(&app.platform_pool, &vault, &feeder(2))
        .await
        .unwrap()
        .expect("the lock");
    assert_eq!(report.enqueued, 2);

    let (status, paused) = call(&owner, true, &format!("/v1/broadcasts/{id}/pause")).await;
    assert_eq!(status, 200, "{paused}");
    assert_eq!(paused["state"], "paused");
    assert_eq!(progress(&paused, "withdrawn"), 2, "{paused}");
    assert_eq!(progress(&paused, "waiting"), 2);
    // Pausing again changes nothing; the feeder feeds nothing of a paused broadcast.
    let (status, again) = call(&owner, true, &format!("/v1/broadcasts/{id}/pause")).await;
    assert_eq!((status, &again["state"]), (200, &json!("paused")));
    let report = run_once(&app.platform_pool, &vault, &feeder(10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.enqueued, 0);

    // A notifier now sends everything it may: the join replies, not the withdrawn rows.
    let notifier = loyalty::app::start(
        &app.settings,
        Components {
            notifier: true,
            ..Components::NONE
        },
    )
    .await
    .unwrap();
    wait_for(WAIT, "the replies sent", || async {
        count(
            &app,
            "SELECT count(*) FROM whatsapp_outbox WHERE kind = 'reply' AND state <> 'sent' \
               AND state <> 'delivered' AND state <> 'read'",
        )
        .await
            == 0
    })
    .await;
    for customer in &customers {
        assert!(templates_to(&app, customer).await.is_empty(), "{customer}");
    }
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM whatsapp_outbox WHERE kind = 'broadcast' AND state = 'withdrawn'"
        )
        .await,
        2
    );

    let (status, resumed) = call(&owner, true, &format!("/v1/broadcasts/{id}/resume")).await;
    assert_eq!(status, 200, "{resumed}");
    assert_eq!(resumed["state"], "running");
    assert_eq!(progress(&resumed, "withdrawn"), 0);
    // The feeder (by hand, as often as it takes) finishes the broadcast.
    wait_for(WAIT, "the broadcast to complete", || async {
        run_once(&app.platform_pool, &vault, &feeder(2))
            .await
            .unwrap();
        show(&owner, &id).await["state"] == "completed"
    })
    .await;
    let done = show(&owner, &id).await;
    assert_eq!(progress(&done, "sent"), 4, "{done}");
    for customer in &customers {
        assert_eq!(templates_to(&app, customer).await.len(), 1, "{customer}");
    }
    // A completed broadcast cannot be paused, resumed or cancelled: 409, nothing changed.
    for action in ["pause", "resume", "cancel"] {
        let (status, problem) = call(&owner, true, &format!("/v1/broadcasts/{id}/{action}")).await;
        assert_eq!(status, 409, "{action}: {problem}");
        assert_eq!(
            problem["type"],
            "https://loyalty-ledger.dev/problems/broadcast-state-conflict"
        );
    }
    assert_eq!(show(&owner, &id).await["state"], "completed");
    notifier.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn cancel_withdraws_for_good_and_two_feeders_at_once_enqueue_each_recipient_once() {
    let app = spawn(false, false).await;
    let owner = Owner::sign_up(&app).await;
    let customers: Vec<String> = (0..5).map(|_| phone()).collect();
    for customer in &customers {
        joined(&app, &owner, customer).await;
    }
    let vault = crate::helpers::test_vault();

    // Segments by enrolment date and inactivity, resolved from the balances read model.
    app.wait_until_projected().await;
    let today = chrono::Utc::now().date_naive().to_string();
    let joined_today = create(
        &owner,
        json!({"kind": "joined_between", "from": today, "to": today}),
    )
    .await;
    assert_eq!(progress(&joined_today, "recipients"), 5, "{joined_today}");
    let joined_last_year = create(
        &owner,
        json!({"kind": "joined_between", "from": "2025-01-01", "to": "2025-12-31"}),
    )
    .await;
    assert_eq!(progress(&joined_last_year, "recipients"), 0);
    // Enrolled today: nobody has been a customer for a day without buying.
    let inactive = create(&owner, json!({"kind": "inactive_days", "days": 1})).await;
    assert_eq!(progress(&inactive, "recipients"), 0, "{inactive}");
    for done in [&joined_today, &joined_last_year, &inactive] {
        let (status, _) = call(
            &owner,
            true,
            &format!("/v1/broadcasts/{}/cancel", id_of(done)),
        )
        .await;
        assert_eq!(status, 200);
    }

    // Two feeders side by side, one recipient per run each, until nothing waits.
    let fed = create(&owner, json!({"kind": "all_opted_in"})).await;
    let fed_id = id_of(&fed);
    let mut enqueued = 0;
    let mut turns_skipped = 0;
    let one_at_a_time = feeder(1);
    for _ in 0..50 {
        let (a, b) = tokio::join!(
            run_once(&app.platform_pool, &vault, &one_at_a_time),
            run_once(&app.platform_pool, &vault, &one_at_a_time)
        );
        for report in [a.unwrap(), b.unwrap()] {
            match report {
                Some(report) => enqueued += report.enqueued,
                None => turns_skipped += 1,
            }
        }
        if progress(&show(&owner, &fed_id).await, "waiting") == 0 {
            break;
        }
    }
    assert_eq!(enqueued, 5, "skipped turns: {turns_skipped}");
    let per_recipient = admin_client(&dbname(&app.database_url))
        .await
        .query(
            "SELECT customer_digest, count(*) FROM whatsapp_outbox \
              WHERE kind = 'broadcast' GROUP BY customer_digest",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(per_recipient.len(), 5);
    assert!(per_recipient.iter().all(|row| row.get::<_, i64>(1) == 1));

    // Cancel: the queued rows are withdrawn for good; resume is refused.
    let (status, cancelled) = call(&owner, true, &format!("/v1/broadcasts/{fed_id}/cancel")).await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["state"], "cancelled");
    assert_eq!(progress(&cancelled, "withdrawn"), 5);
    let (status, _) = call(&owner, true, &format!("/v1/broadcasts/{fed_id}/resume")).await;
    assert_eq!(status, 409);
    let (status, again) = call(&owner, true, &format!("/v1/broadcasts/{fed_id}/cancel")).await;
    assert_eq!((status, &again["state"]), (200, &json!("cancelled")));
    let report = run_once(&app.platform_pool, &vault, &feeder(10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.enqueued, 0);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM whatsapp_outbox WHERE kind = 'broadcast' AND state = 'queued'"
        )
        .await,
        0
    );
    app.stop().await;
}

#[tokio::test]
async fn replies_are_claimed_before_broadcast_rows_queued_earlier() {
    let app = spawn(false, false).await;
    let owner = Owner::sign_up(&app).await;
    let other = Owner::sign_up(&app).await;
    for _ in 0..3 {
        joined(&app, &owner, &phone()).await;
    }
    let eve = phone();
    joined(&app, &other, &eve).await;
    let db = admin_client(&dbname(&app.database_url)).await;
    // The join replies count as sent long ago (no notifier ran).
    db.execute(
        "UPDATE whatsapp_outbox SET state = 'sent', sent_at = now() - interval '1 hour'",
        &[],
    )
    .await
    .unwrap();
    create(&owner, json!({"kind": "all_opted_in"})).await;
    let vault = crate::helpers::test_vault();
    run_once(&app.platform_pool, &vault, &feeder(10))
        .await
        .unwrap()
        .unwrap();
    // Eve (another vendor's customer) writes after the broadcast rows were queued.
    Chat::shared(&app).say(&eve, "HELP").await;
    Chat::shared(&app).reply(&eve, 2).await;

    let platform = app.platform_db().await;
    let first = whatsapp_notifier::outbox::claim(&**platform, 1, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    assert!(!first[0].broadcast, "the reply goes first: {first:?}");
    assert!(
        first[0].dedupe_key.starts_with("reply:"),
        "{}",
        first[0].dedupe_key
    );
    let rest = whatsapp_notifier::outbox::claim(&**platform, 10, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(rest.len(), 3);
    assert!(rest.iter().all(|m| m.broadcast));
    app.stop().await;
}

#[tokio::test]
async fn bad_input_is_a_problem_and_changes_nothing() {
    let app = spawn(true, false).await;
    let owner = Owner::sign_up(&app).await;
    let other = Owner::sign_up(&app).await;
    let theirs = create(&other, json!({"kind": "all_opted_in"})).await;
    let theirs_id = id_of(&theirs);
    let before = count(&app, "SELECT count(*) FROM broadcasts").await;
    let recipients_before = count(&app, "SELECT count(*) FROM broadcast_recipients").await;

    let template = json!({"name": "spring_offer"});
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"segment": {"kind": "everyone"}, "template": template, "name": "x"}),
            "segment.kind",
        ),
        (
            json!({"segment": {"kind": "tier", "tier": "gold"}, "template": template, "name": "x"}),
            "segment.tier",
        ),
        (
            json!({"segment": {"kind": "birthday_month", "month": 13}, "template": template, "name": "x"}),
            "segment.month",
        ),
        (
            json!({"segment": {"kind": "inactive_days", "days": -3}, "template": template, "name": "x"}),
            "segment.days",
        ),
        (
            json!({"segment": {"kind": "balance_at_least", "points": -1}, "template": template, "name": "x"}),
            "segment.points",
        ),
        (
            json!({"segment": {"kind": "joined_between", "from": "2026-02-01", "to": "2026-01-01"}, "template": template, "name": "x"}),
            "segment.to",
        ),
        (
            json!({"segment": {"kind": "all_opted_in"}, "template": {"name": "Bad Name"}, "name": "x"}),
            "template.name",
        ),
        (
            json!({"segment": {"kind": "all_opted_in"}, "template": {"name": "ok", "parameters": ["a\nb"]}, "name": "x"}),
            "template.parameters",
        ),
        (
            json!({"segment": {"kind": "all_opted_in"}, "template": template}),
            "name",
        ),
    ];
    for (body, field) in cases {
        let (status, problem) =
            post_broadcast(&owner, Some(&format!("bad-{}", Uuid::new_v4())), &body).await;
        assert_eq!(status, 422, "{body}: {problem}");
        assert_eq!(problem["field"], field, "{body}: {problem}");
    }
    let valid = broadcast_body(json!({"kind": "all_opted_in"}));
    let (status, problem) = post_broadcast(&owner, None, &valid).await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(problem["header"], "Idempotency-Key");
    // Unknown, malformed and another tenant's ids are all 404, and the other tenant's
    // broadcast is untouched.
    for id in [
        Uuid::new_v4().to_string(),
        "not-a-uuid".to_owned(),
        theirs_id.clone(),
    ] {
        let (status, problem) = call(&owner, false, &format!("/v1/broadcasts/{id}")).await;
        assert_eq!(status, 404, "{id}: {problem}");
        assert_eq!(
            problem["type"],
            "https://loyalty-ledger.dev/problems/broadcast-not-found"
        );
        for action in ["pause", "resume", "cancel"] {
            let (status, _) = call(&owner, true, &format!("/v1/broadcasts/{id}/{action}")).await;
            assert_eq!(status, 404, "{action} {id}");
        }
        let (status, _) = call(&owner, false, &format!("/v1/broadcasts/{id}/recipients")).await;
        assert_eq!(status, 404, "recipients {id}");
    }
    let (status, problem) = call(
        &other,
        false,
        &format!("/v1/broadcasts/{theirs_id}/recipients?limit=0"),
    )
    .await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(problem["parameter"], "limit");
    let (_, mine) = call(&owner, false, "/v1/broadcasts").await;
    assert_eq!(mine["broadcasts"], json!([]));
    assert_eq!(
        show(&other, &theirs_id).await["broadcast_id"],
        theirs["broadcast_id"]
    );
    assert_eq!(count(&app, "SELECT count(*) FROM broadcasts").await, before);
    assert_eq!(
        count(&app, "SELECT count(*) FROM broadcast_recipients").await,
        recipients_before
    );
    app.stop().await;
}

/// `loyalty broadcasts --once`, the feeder for cron in split deployments: one run, what it
/// did on stdout, and nothing twice.
#[tokio::test]
async fn the_feeder_runs_once_from_the_command_line_and_a_second_run_queues_nothing() {
    let app = spawn(false, false).await;
    let owner = Owner::sign_up(&app).await;
    for _ in 0..2 {
        joined(&app, &owner, &phone()).await;
    }
    let id = id_of(&create(&owner, json!({"kind": "all_opted_in"})).await);
    let run = || {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_loyalty"))
            .args(["broadcasts", "--once"])
            .env("DATABASE_URL", &app.database_url)
            .env("RUST_LOG", "warn")
            .envs(crate::helpers::key_env())
            .output()
            .expect("running the loyalty binary");
        assert!(output.status.success(), "{output:?}");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };
    let first = run();
    assert!(first.contains("messages queued: 2"), "{first}");
    let second = run();
    assert!(second.contains("messages queued: 0"), "{second}");
    let shown = show(&owner, &id).await;
    assert_eq!(progress(&shown, "enqueued"), 2, "{shown}");
    assert_eq!(progress(&shown, "waiting"), 0);
    app.stop().await;
}

/// The notifier's per-number token bucket paces a broadcast like any other send: at 4 sends
/// a second (a burst of 1), 8 templates take at least 7 intervals of 250 ms.
#[tokio::test]
async fn a_broadcast_is_paced_by_the_numbers_send_limit() {
    let app = spawn_adjusted(true, true, |settings| {
        settings.notifier.whatsapp_number_sends_per_second = 4;
    })
    .await;
    let owner = Owner::sign_up(&app).await;
    let customers: Vec<String> = (0..8).map(|_| phone()).collect();
    for customer in &customers {
        joined(&app, &owner, customer).await;
    }
    let id = id_of(&create(&owner, json!({"kind": "all_opted_in"})).await);
    wait_for_broadcast(&owner, &id, "all eight sent", |b| {
        b["state"] == "completed" && progress(b, "sent") == 8
    })
    .await;
    let mut sent_at = Vec::new();
    for customer in &customers {
        let templates = templates_to(&app, customer).await;
        assert_eq!(templates.len(), 1, "{customer}");
        sent_at.push(templates[0].received_at);
    }
    sent_at.sort();
    let span = sent_at[7] - sent_at[0];
    assert!(
        span >= chrono::Duration::milliseconds(1_500),
        "8 sends at 4/s within {span:?}"
    );
    app.stop().await;
}

/// A customer erased after the broadcast was created is not sent to: the WhatsApp link
/// outlives the erasure, so the feeder checks it.
#[tokio::test]
async fn a_customer_erased_after_creation_is_skipped() {
    let app = spawn(false, false).await;
    let owner = Owner::sign_up(&app).await;
    let kept = joined(&app, &owner, &phone()).await;
    let erased = joined(&app, &owner, &phone()).await;
    let id = id_of(&create(&owner, json!({"kind": "all_opted_in"})).await);
    let response = app
        .http
        .post(app.url(&format!("/v1/customers/{erased}/erasure")))
        .bearer_auth(&owner.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    app.wait_until_projected().await;
    let report = run_once(
        &app.platform_pool,
        &crate::helpers::test_vault(),
        &feeder(10),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!((report.enqueued, report.skipped_no_whatsapp), (1, 1));
    let (_, page) = call(&owner, false, &format!("/v1/broadcasts/{id}/recipients")).await;
    for recipient in page["recipients"].as_array().unwrap() {
        let expected = if recipient["customer_id"] == json!(kept) {
            "enqueued"
        } else {
            "skipped_no_whatsapp"
        };
        assert_eq!(recipient["state"], expected, "{recipient}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_tier_segment_reaches_the_tiers_members_and_the_base_includes_the_untiered() {
    let app = spawn(false, false).await;
    let owner = Owner::sign_up(&app).await;
    let ladder = app
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
    assert_eq!(ladder.status(), 200);
    let (gold, small, none) = (phone(), phone(), phone());
    let gold_customer = joined(&app, &owner, &gold).await;
    let small_customer = joined(&app, &owner, &small).await;
    joined(&app, &owner, &none).await;
    owner.purchase(gold_customer, 1_000_000).await;
    owner.purchase(small_customer, 10_000).await;
    app.wait_until_projected().await;

    let to_gold = create(&owner, json!({"kind": "tier", "tier": "gold"})).await;
    assert_eq!(progress(&to_gold, "recipients"), 1, "{to_gold}");
    let to_members = create(&owner, json!({"kind": "tier", "tier": "member"})).await;
    assert_eq!(progress(&to_members, "recipients"), 2, "{to_members}");
    let (status, problem) = post_broadcast(
        &owner,
        Some("unknown-tier"),
        &broadcast_body(json!({"kind": "tier", "tier": "platinum"})),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(problem["field"], "segment.tier");
    app.stop().await;
}
