//! The WhatsApp notifier against a real PostgreSQL and the real sandbox (in-process, port 0),
//! whose status webhooks go to the app's ingest: outbox rows inserted directly (recipient
//! sealed with the test vault) → sends recorded by the sandbox, retries, the template
//! fallback, delivery statuses, two notifiers on one database, the limits, and logs.

use crate::helpers::{
    self, free_port, key_env, test_vault, TestApp, WHATSAPP_ACCESS_TOKEN, WHATSAPP_APP_SECRET,
};
use ledger_core::conversation::{Button, OutgoingMessage};
use loyalty::app::Components;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use uuid::Uuid;
use whatsapp_notifier::NotifierConfig;
use whatsapp_sandbox::{
    AppSecret, BusinessNumber, Outcome, RecordedMessage, SandboxConfig, SandboxOptions, StatusOrder,
};

const PHONE_NUMBER_ID: &str = "100000000000777";
const WAIT: Duration = Duration::from_secs(30);

struct Harness {
    app: TestApp,
    sandbox_url: String,
    sandbox: actix_web::dev::ServerHandle,
    http: reqwest::Client,
    config: Option<NotifierConfig>,
    shutdown: watch::Sender<bool>,
    notifiers: Vec<tokio::task::JoinHandle<()>>,
}

/// The app (ingest only), the sandbox posting statuses to it, and `loops` notifiers.
async fn harness(
    options: SandboxOptions,
    loops: usize,
    adjust: impl FnOnce(&mut NotifierConfig),
) -> Harness {
    let app = TestApp::spawn_with(Components {
        ingest: true,
        ..Components::NONE
    })
    .await;
    let (sandbox_url, sandbox) = start_sandbox(&app, options);
    register_platform_number(&app).await;
    let mut settings = app.settings.notifier.clone();
    settings.whatsapp_api_base_url = sandbox_url.clone();
    let mut config = settings.config().unwrap();
    adjust(&mut config);
    let mut harness = Harness {
        app,
        sandbox_url,
        sandbox,
        http: reqwest::Client::new(),
        config: Some(config),
        shutdown: watch::channel(false).0,
        notifiers: Vec::new(),
    };
    for _ in 0..loops {
        harness.spawn_notifier();
    }
    harness
}

/// The harness's number is a platform (shared) number, sent with the platform token: a number
/// not in whatsapp_numbers has no usable token (whatsapp_notifier::tokens).
async fn register_platform_number(app: &TestApp) {
    app.platform_db()
        .await
        .execute(
            "INSERT INTO whatsapp_numbers (phone_number_id, display_phone_number) \
             VALUES ($1, '15550007777')",
            &[&PHONE_NUMBER_ID],
        )
        .await
        .unwrap();
}

fn start_sandbox(app: &TestApp, options: SandboxOptions) -> (String, actix_web::dev::ServerHandle) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let mut config = SandboxConfig::new(
        AppSecret::new(WHATSAPP_APP_SECRET.as_str()).unwrap(),
        Some(format!("{}/webhooks/whatsapp", app.ingest_address)),
        vec![BusinessNumber {
            phone_number_id: PHONE_NUMBER_ID.into(),
            display_phone_number: "15550007777".into(),
            waba_id: "100000000000000".into(),
            access_token: Some(WHATSAPP_ACCESS_TOKEN.clone()),
        }],
    );
    config.options = options;
    let server = whatsapp_sandbox::serve(listener, config).unwrap();
    let handle = server.handle();
    tokio::spawn(server);
    (url, handle)
}

impl Harness {
    /// Starts one more notifier loop on the app's database.
    fn spawn_notifier(&mut self) {
        let config = self
            .config
            .clone()
            .expect("a harness with a notifier config");
        // Woken by the outbox's notifications, as `loyalty all` and `loyalty notify` are.
        let wake = schema::wake::Wake::listen(
            schema::db::config(&self.app.settings.platform_db()).unwrap(),
            schema::wake::OUTBOX_CHANNEL,
            self.shutdown.subscribe(),
        );
        self.notifiers
            .push(tokio::spawn(whatsapp_notifier::run_with_wake(
                self.app.platform_pool.clone(),
                Arc::new(test_vault()),
                config,
                wake,
                self.shutdown.subscribe(),
            )));
    }

    async fn stop(self) {
        let _ = self.shutdown.send(true);
        for task in self.notifiers {
            tokio::time::timeout(Duration::from_secs(15), task)
                .await
                .expect("the notifier stops on shutdown")
                .unwrap();
        }
        self.sandbox.stop(true).await;
        self.app.stop().await;
    }

    async fn fault(&self, fault: Value) {
        let response = self
            .http
            .post(format!("{}/sandbox/faults", self.sandbox_url))
            .json(&fault)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{:?}", response.text().await);
    }

    async fn sends_to(&self, wa_id: &str) -> Vec<RecordedMessage> {
        let body: Value = self
            .http
            .get(format!("{}/sandbox/messages?to={wa_id}", self.sandbox_url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        serde_json::from_value(body["messages"].clone()).unwrap()
    }

    async fn all_sends(&self) -> Vec<RecordedMessage> {
        let body: Value = self
            .http
            .get(format!("{}/sandbox/messages", self.sandbox_url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        serde_json::from_value(body["messages"].clone()).unwrap()
    }

    /// Queues `message` to `wa_id` as the conversation processor does: the recipient sealed
    /// under `whatsapp_outbox` + the dedupe key. `window_open`: the customer wrote in a
    /// minute ago (else no conversation row: the window is unknown, so closed).
    async fn queue(&self, wa_id: &str, message: &OutgoingMessage, window_open: bool) -> Uuid {
        let vault = test_vault();
        let dedupe_key = format!("test:{}", Uuid::new_v4());
        let digest = vault.keyed_digest("wa-customer", wa_id.as_bytes());
        let sealed = vault
            .seal_record(
                &whatsapp_notifier::outbox::seal_context(&dedupe_key),
                wa_id.as_bytes(),
            )
            .unwrap();
        let db = self.app.platform_db().await;
        if window_open {
            db.execute(
                "INSERT INTO whatsapp_conversations (customer_digest, phone_number_id, state, \
                   master_key_id, wrapped_key, sealed_wa_id, last_inbound_at) \
                 VALUES ($1, $2, '{}'::jsonb, 'x', '\\x00', '\\x00', now() - interval '1 minute') \
                 ON CONFLICT (customer_digest, phone_number_id) \
                 DO UPDATE SET last_inbound_at = EXCLUDED.last_inbound_at",
                &[&digest.as_slice(), &PHONE_NUMBER_ID],
            )
            .await
            .unwrap();
        }
        let message_id = Uuid::now_v7();
        let body = serde_json::to_string(message).unwrap();
        // As every queuer does: the notification in the statement that queues.
        db.execute(
            "WITH queued AS ( \
               INSERT INTO whatsapp_outbox (message_id, dedupe_key, phone_number_id, \
                 customer_digest, master_key_id, wrapped_key, sealed_recipient, kind, body) \
               VALUES ($1, $2, $3, $4, $5, $6, $7, 'reply', $8::text::jsonb) RETURNING 1) \
             SELECT pg_notify('loyalty_outbox', '') FROM queued",
            &[
                &message_id,
                &dedupe_key,
                &PHONE_NUMBER_ID,
                &digest.as_slice(),
                &sealed.master_key_id,
                &sealed.wrapped_key,
                &sealed.sealed,
                &body,
            ],
        )
        .await
        .unwrap();
        message_id
    }

    async fn state(&self, message_id: Uuid) -> (String, i32, Option<i32>) {
        let row = self
            .app
            .platform_db()
            .await
            .query_one(
                "SELECT state, attempts, last_error_code FROM whatsapp_outbox WHERE message_id = $1",
                &[&message_id],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1), row.get(2))
    }

    async fn wait_for_state(&self, message_id: Uuid, states: &[&str]) {
        helpers::wait_for(WAIT, &format!("the message to be {states:?}"), || async {
            states.contains(&self.state(message_id).await.0.as_str())
        })
        .await;
    }

    /// `(outcome, error_code)` of the message's log, in order.
    async fn log(&self, message_id: Uuid) -> Vec<(String, Option<i32>)> {
        self.app
            .platform_db()
            .await
            .query(
                "SELECT outcome, error_code FROM whatsapp_outbox_log WHERE message_id = $1 \
                 ORDER BY log_id",
                &[&message_id],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    }
}

fn wa_id() -> String {
    helpers::phone().trim_start_matches('+').to_owned()
}

fn menu() -> OutgoingMessage {
    OutgoingMessage::buttons(
        "You have 120 points. What next?",
        vec![
            Button::new("balance", "Balance").unwrap(),
            Button::new("rewards", "Rewards").unwrap(),
        ],
    )
    .unwrap()
}

fn outcomes(log: &[(String, Option<i32>)]) -> Vec<&str> {
    log.iter().map(|(o, _)| o.as_str()).collect()
}

fn count(sends: &[RecordedMessage], outcome: Outcome) -> usize {
    sends.iter().filter(|m| m.outcome == outcome).count()
}

#[tokio::test]
async fn a_queued_message_is_sent_once_with_metas_body_and_its_statuses_reach_read() {
    let h = harness(SandboxOptions::default(), 1, |_| {}).await;
    let to = wa_id();
    let message = menu();
    let id = h.queue(&to, &message, true).await;
    h.wait_for_state(id, &["read"]).await;

    let sends = h.sends_to(&to).await;
    assert_eq!(sends.len(), 1, "{sends:?}");
    let sent = &sends[0];
    assert_eq!(sent.outcome, Outcome::Accepted);
    assert_eq!(sent.phone_number_id, PHONE_NUMBER_ID);
    assert_eq!(sent.api_version, "v24.0");
    assert_eq!(
        sent.body,
        whatsapp_notifier::meta::message_body(&to, &message)
    );
    let wamid = sent.wamid.clone().unwrap();
    let digest: Vec<u8> = h
        .app
        .platform_db()
        .await
        .query_one(
            "SELECT wamid_digest FROM whatsapp_outbox WHERE message_id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        digest,
        webhook_ingest::inbox::wamid_digest(&test_vault(), &wamid).to_vec()
    );
    assert_eq!(
        outcomes(&h.log(id).await),
        ["attempt", "sent", "delivered", "read"]
    );
    assert_eq!(h.state(id).await.1, 1, "one attempt");
    h.stop().await;
}

/// The poll is an hour: only the outbox's notification can start the send.
#[tokio::test]
async fn a_notifier_polling_once_an_hour_is_woken_by_the_queued_row() {
    let harness = harness(SandboxOptions::default(), 1, |config| {
        config.poll_interval = Duration::from_secs(3_600);
    })
    .await;
    // Let the notifier make its first claim (nothing yet) and start waiting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let to = wa_id();
    let first = harness.queue(&to, &menu(), true).await;
    harness
        .wait_for_state(first, &["sent", "delivered", "read"])
        .await;
    // Again, now that it waits after a send.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let other = wa_id();
    let second = harness.queue(&other, &menu(), true).await;
    harness
        .wait_for_state(second, &["sent", "delivered", "read"])
        .await;
    assert_eq!(harness.sends_to(&to).await.len(), 1);
    assert_eq!(harness.sends_to(&other).await.len(), 1);
    harness.stop().await;
}

#[tokio::test]
async fn throughput_refusals_are_retried_with_backoff_and_the_message_sent_once() {
    let h = harness(SandboxOptions::default(), 1, |_| {}).await;
    let to = wa_id();
    h.fault(json!({"code": 130429, "times": 2, "to": to})).await;
    let id = h.queue(&to, &OutgoingMessage::text("Hello"), true).await;
    h.wait_for_state(id, &["sent", "delivered", "read"]).await;

    let sends = h.sends_to(&to).await;
    assert_eq!(count(&sends, Outcome::Refused), 2, "{sends:?}");
    assert_eq!(count(&sends, Outcome::Accepted), 1, "{sends:?}");
    // Backoff base 100 ms: the first wait is 50–100 ms, the second 100–200 ms.
    let gaps: Vec<i64> = sends
        .windows(2)
        .map(|w| (w[1].received_at - w[0].received_at).num_milliseconds())
        .collect();
    assert!(gaps[0] >= 50 && gaps[1] >= 100, "{gaps:?}");
    let log = h.log(id).await;
    let retries: Vec<_> = log.iter().filter(|(o, _)| o == "retry").collect();
    assert_eq!(retries.len(), 2, "{log:?}");
    assert!(retries.iter().all(|(_, code)| *code == Some(130429)));
    assert_eq!(h.state(id).await.1, 3, "three attempts");
    h.stop().await;
}

#[tokio::test]
async fn server_errors_are_retried() {
    let h = harness(SandboxOptions::default(), 1, |_| {}).await;
    let to = wa_id();
    h.fault(json!({"http_status": 503, "to": to})).await;
    h.fault(json!({"code": 4242, "http_status": 502, "to": to}))
        .await;
    let id = h.queue(&to, &OutgoingMessage::text("Hello"), true).await;
    h.wait_for_state(id, &["sent", "delivered", "read"]).await;
    let sends = h.sends_to(&to).await;
    assert_eq!(count(&sends, Outcome::Refused), 2, "{sends:?}");
    assert_eq!(count(&sends, Outcome::Accepted), 1, "{sends:?}");
    h.stop().await;
}

#[tokio::test]
async fn a_message_refused_on_every_attempt_fails_after_the_last() {
    let h = harness(SandboxOptions::default(), 1, |config| {
        config.backoff.attempts_max = 3;
    })
    .await;
    let to = wa_id();
    h.fault(json!({"code": 131016, "times": 5, "to": to})).await;
    let id = h.queue(&to, &OutgoingMessage::text("Hello"), true).await;
    h.wait_for_state(id, &["failed"]).await;
    assert_eq!(h.state(id).await, ("failed".into(), 3, Some(131016)));
    assert_eq!(
        outcomes(&h.log(id).await),
        ["attempt", "retry", "attempt", "retry", "attempt", "failed"]
    );
    assert_eq!(count(&h.sends_to(&to).await, Outcome::Refused), 3);
    h.stop().await;
}

/// The documented double-send window: Meta accepts, but the answer comes after the send
/// timeout, so the notifier retries and the customer gets the message twice.
#[tokio::test]
async fn a_send_that_times_out_after_meta_accepted_it_is_sent_again() {
    let h = harness(SandboxOptions::default(), 1, |config| {
        config.meta.send_timeout = Duration::from_millis(300);
    })
    .await;
    let to = wa_id();
    h.fault(json!({"delay_ms": 800, "to": to})).await;
    let id = h.queue(&to, &OutgoingMessage::text("Hello"), true).await;
    h.wait_for_state(id, &["sent", "delivered", "read"]).await;
    helpers::wait_for(WAIT, "the slow send to be recorded", || async {
        h.sends_to(&to).await.len() == 2
    })
    .await;
    let sends = h.sends_to(&to).await;
    assert_eq!(count(&sends, Outcome::Accepted), 2, "{sends:?}");
    let log = h.log(id).await;
    assert_eq!(log[1], ("retry".into(), None), "{log:?}");
    h.stop().await;
}

#[tokio::test]
async fn an_invalid_parameter_fails_the_message_without_a_retry() {
    let h = harness(SandboxOptions::default(), 1, |_| {}).await;
    let to = wa_id();
    h.fault(json!({"code": 100, "to": to})).await;
    let id = h.queue(&to, &OutgoingMessage::text("Hello"), true).await;
    h.wait_for_state(id, &["failed"]).await;
    // A later message to the same recipient is not blocked by the failed one and proves the
    // notifier went on (so a retry of the first would have happened by now).
    let next = h.queue(&to, &OutgoingMessage::text("Again"), true).await;
    h.wait_for_state(next, &["sent", "delivered", "read"]).await;
    assert_eq!(h.state(id).await, ("failed".into(), 1, Some(100)));
    let sends = h.sends_to(&to).await;
    assert_eq!(count(&sends, Outcome::Refused), 1, "{sends:?}");
    assert_eq!(count(&sends, Outcome::Accepted), 1, "{sends:?}");
    assert_eq!(outcomes(&h.log(id).await), ["attempt", "failed"]);
    h.stop().await;
}

#[tokio::test]
async fn outside_the_window_meta_refuses_and_the_template_is_sent_instead() {
    let options = SandboxOptions {
        enforce_window: true,
        ..SandboxOptions::default()
    };
    let h = harness(options, 1, |_| {}).await;
    let to = wa_id();
    // Our conversation row says the window is open; the sandbox knows better (131047).
    let id = h.queue(&to, &menu(), true).await;
    h.wait_for_state(id, &["sent", "delivered", "read"]).await;
    let sends = h.sends_to(&to).await;
    assert_eq!(sends.len(), 2, "{sends:?}");
    assert_eq!(sends[0].outcome, Outcome::Refused);
    assert_eq!(sends[0].error.as_ref().unwrap().code, 131047);
    assert_eq!(sends[1].outcome, Outcome::Accepted);
    assert_eq!(sends[1].body["type"], "template");
    assert_eq!(sends[1].body["template"]["name"], "loyalty_update");
    let log = h.log(id).await;
    assert!(
        log.contains(&("template_fallback".into(), Some(131047))),
        "{log:?}"
    );
    h.stop().await;
}

#[tokio::test]
async fn with_the_window_closed_the_template_goes_first_and_only() {
    let h = harness(SandboxOptions::default(), 1, |_| {}).await;
    let to = wa_id();
    h.app
        .platform_db()
        .await
        .execute(
            "UPDATE whatsapp_numbers SET fallback_template = 'points_news', \
               template_language = 'en_GB' WHERE phone_number_id = $1",
            &[&PHONE_NUMBER_ID],
        )
        .await
        .unwrap();
    let id = h.queue(&to, &menu(), false).await;
    h.wait_for_state(id, &["sent", "delivered", "read"]).await;
    let sends = h.sends_to(&to).await;
    assert_eq!(sends.len(), 1, "{sends:?}");
    assert_eq!(sends[0].body["type"], "template");
    assert_eq!(sends[0].body["template"]["name"], "points_news");
    assert_eq!(sends[0].body["template"]["language"]["code"], "en_GB");
    assert_eq!(
        &outcomes(&h.log(id).await)[..3],
        ["attempt", "template_fallback", "sent"]
    );
    h.stop().await;
}

#[tokio::test]
async fn statuses_out_of_order_never_move_a_message_backwards() {
    let options = SandboxOptions {
        status_order: StatusOrder::ReadBeforeDelivered,
        ..SandboxOptions::default()
    };
    let h = harness(options, 1, |_| {}).await;
    let to = wa_id();
    let id = h.queue(&to, &OutgoingMessage::text("Hi"), true).await;
    helpers::wait_for(WAIT, "the late `delivered` to be logged", || async {
        outcomes(&h.log(id).await).contains(&"delivered")
    })
    .await;
    assert_eq!(h.state(id).await.0, "read");
    assert_eq!(
        outcomes(&h.log(id).await),
        ["attempt", "sent", "read", "delivered"]
    );
    h.stop().await;
}

#[tokio::test]
async fn two_notifiers_on_one_database_send_each_message_once() {
    let h = harness(SandboxOptions::default(), 2, |_| {}).await;
    let mut ids = Vec::new();
    let mut recipients = Vec::new();
    for i in 0..24 {
        let to = wa_id();
        ids.push(
            h.queue(&to, &OutgoingMessage::text(&format!("message {i}")), true)
                .await,
        );
        recipients.push(to);
    }
    for id in &ids {
        h.wait_for_state(*id, &["sent", "delivered", "read"]).await;
    }
    let sends = h.all_sends().await;
    assert_eq!(sends.len(), 24, "{sends:?}");
    for to in &recipients {
        let to_them = sends
            .iter()
            .filter(|m| m.recipient.as_deref() == Some(to))
            .count();
        assert_eq!(to_them, 1, "one send to each recipient");
    }
    h.stop().await;
}

#[tokio::test]
async fn messages_to_one_recipient_go_in_queued_order_and_paced() {
    let h = harness(SandboxOptions::default(), 2, |config| {
        config.recipient_interval = Duration::from_millis(300);
    })
    .await;
    let to = wa_id();
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(
            h.queue(&to, &OutgoingMessage::text(&format!("part {i}")), true)
                .await,
        );
    }
    for id in &ids {
        h.wait_for_state(*id, &["sent", "delivered", "read"]).await;
    }
    let sends = h.sends_to(&to).await;
    let texts: Vec<&str> = sends
        .iter()
        .map(|m| m.body["text"]["body"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["part 0", "part 1", "part 2", "part 3"]);
    // Two notifiers, yet one recipient gets at most one message per 300 ms.
    for pair in sends.windows(2) {
        let gap = (pair[1].received_at - pair[0].received_at).num_milliseconds();
        assert!(gap >= 290, "messages {gap} ms apart");
    }
    h.stop().await;
}

/// The pause between two messages to one recipient counts from when the first was accepted,
/// not from its last delivery status: statuses (webhooks arriving seconds later) used to
/// restart it, and under load held each customer's next reply back again and again.
#[tokio::test]
async fn a_delivery_status_does_not_restart_a_recipients_pause() {
    let h = harness(SandboxOptions::default(), 0, |_| {}).await;
    let to = wa_id();
    let first = h.queue(&to, &OutgoingMessage::text("first"), true).await;
    let second = h.queue(&to, &OutgoingMessage::text("second"), true).await;
    let db = h.app.platform_db().await;
    let pause = Duration::from_secs(60);
    let claim = || async {
        let claimed = whatsapp_notifier::outbox::claim(&**db, 10, pause)
            .await
            .unwrap();
        claimed.iter().map(|c| c.message_id).collect::<Vec<Uuid>>()
    };
    // The first was accepted an hour ago and has just been read (a status moves updated_at).
    db.execute(
        "UPDATE whatsapp_outbox SET state = 'read', sent_at = now() - interval '1 hour', \
                updated_at = now() WHERE message_id = $1",
        &[&first],
    )
    .await
    .unwrap();
    assert_eq!(
        claim().await,
        [second],
        "the fresh status held the second message back"
    );
    // The second accepted just now: a third waits out the pause whatever its statuses.
    let sent = whatsapp_notifier::recorder::SentRecord {
        message_id: second,
        wamid_digest: [7; 32],
        detail: "free-form",
    };
    whatsapp_notifier::outbox::record_sent_many(&db, &[&sent])
        .await
        .unwrap();
    let third = h.queue(&to, &OutgoingMessage::text("third"), true).await;
    assert_eq!(
        claim().await,
        Vec::<Uuid>::new(),
        "claimed within the pause"
    );
    db.execute(
        "UPDATE whatsapp_outbox SET sent_at = now() - interval '2 minutes' WHERE message_id = $1",
        &[&second],
    )
    .await
    .unwrap();
    assert_eq!(claim().await, [third]);
    h.stop().await;
}

#[tokio::test]
async fn the_per_number_rate_limit_spaces_the_sends() {
    let h = harness(SandboxOptions::default(), 1, |config| {
        config.number_sends_per_second_max = 4;
    })
    .await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(h.queue(&wa_id(), &OutgoingMessage::text("Hi"), true).await);
    }
    for id in &ids {
        h.wait_for_state(*id, &["sent", "delivered", "read"]).await;
    }
    let mut times: Vec<_> = h.all_sends().await.iter().map(|m| m.received_at).collect();
    times.sort();
    assert_eq!(times.len(), 5);
    // 4 per second with a burst of 1: 250 ms apart, give or take an HTTP round trip.
    for pair in times.windows(2) {
        let gap = (pair[1] - pair[0]).num_milliseconds();
        assert!(gap >= 150, "sends {gap} ms apart: {times:?}");
    }
    let span = (times[4] - times[0]).num_milliseconds();
    assert!(span >= 900, "five sends within {span} ms: {times:?}");
    h.stop().await;
}

#[tokio::test]
async fn a_message_left_sending_by_a_crashed_notifier_is_requeued_and_sent() {
    // No notifier yet: the row is put in `sending` an hour ago, as a crash leaves it.
    let mut h = harness(SandboxOptions::default(), 0, |_| {}).await;
    let to = wa_id();
    let id = h.queue(&to, &OutgoingMessage::text("Hi"), true).await;
    h.app
        .platform_db()
        .await
        .execute(
            "UPDATE whatsapp_outbox SET state = 'sending', attempts = 1, \
                    updated_at = now() - interval '1 hour' WHERE message_id = $1",
            &[&id],
        )
        .await
        .unwrap();
    h.spawn_notifier();
    h.wait_for_state(id, &["sent", "delivered", "read"]).await;
    let log = h.log(id).await;
    assert!(log.iter().any(|(o, _)| o == "retry"), "{log:?}");
    h.stop().await;
}

/// `loyalty notify` as a child process with debug logs: neither the token nor the
/// recipient's number appears in them.
#[tokio::test]
async fn loyalty_notify_logs_neither_the_token_nor_the_phone_number() {
    let app = TestApp::spawn_with(Components {
        ingest: true,
        ..Components::NONE
    })
    .await;
    register_platform_number(&app).await;
    let (sandbox_url, sandbox) = start_sandbox(&app, SandboxOptions::default());
    let h = Harness {
        app,
        sandbox_url: sandbox_url.clone(),
        sandbox,
        http: reqwest::Client::new(),
        config: None,
        shutdown: watch::channel(false).0,
        notifiers: Vec::new(),
    };
    let to = wa_id();
    h.fault(json!({"code": 130429, "to": to})).await;
    let id = h.queue(&to, &OutgoingMessage::text("Hi"), true).await;

    let log_path = std::env::temp_dir().join(format!("notify-{}.log", Uuid::new_v4()));
    let log_file = std::fs::File::create(&log_path).unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_loyalty"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("LOYALTY_") {
            command.env_remove(name);
        }
    }
    let child = command
        .arg("notify")
        .env("DATABASE_URL", &h.app.database_url)
        .env("NATS_URL", helpers::nats_url())
        .env("RUST_LOG", "debug")
        .envs(key_env())
        .env("LOYALTY_HTTP_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("LOYALTY_WHATSAPP_API_BASE_URL", &sandbox_url)
        .env("LOYALTY_WHATSAPP_RETRY_BASE_MS", "50")
        .stdin(std::process::Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn()
        .expect("starting `loyalty notify`");
    let child = Some(child);
    h.wait_for_state(id, &["read"]).await;
    helpers::kill_child(child);
    let logs = std::fs::read_to_string(&log_path).unwrap();
    let _ = std::fs::remove_file(&log_path);
    assert!(logs.contains("sent"), "the debug log is empty: {logs}");
    assert!(logs.contains("retry"), "{logs}");
    assert!(
        !logs.contains(WHATSAPP_ACCESS_TOKEN.as_str()),
        "the token is in the notifier's log"
    );
    assert!(
        !logs.contains(&to),
        "the phone number is in the notifier's log"
    );
    h.stop().await;
}
