//! End to end, as `loyalty all` runs on a local machine: real PostgreSQL and NATS, the
//! vendor API, the webhook ingest, the conversation processor, the notifier, the relay and
//! the balances projector, and the WhatsApp sandbox in the same process standing in for
//! Meta (`TestApp::spawn_whatsapp`). The customer writes signed webhooks to the ingest (the
//! sandbox's simulator, as Meta would); what the customer receives is what the sandbox
//! recorded (`wait_for_replies`). The whole journey from JOIN to a fulfilled code, a webhook
//! delivered five times, statuses out of order, NATS restarted mid-conversation, throughput
//! refusals, a closed customer-service window, and a forged signature.

use crate::helpers::{
    admin_client, count, dbname, free_port, fresh_database, key_env, phone, sign_up_owner,
    test_settings, test_vault, unique_vendor_code, vendor_code, wait_for, TestApp,
    WHATSAPP_APP_SECRET,
};
use crate::relay::PrivateNats;
use ledger_core::TenantId;
use loyalty::conversations::CUSTOMER_DIGEST_PURPOSE;
use serde_json::{json, Value};
use std::time::Duration;
use uuid::Uuid;
use whatsapp_sandbox::{After, AppSecret, BusinessNumber, Outcome, RecordedMessage, Simulator};

/// Longest wait for one reply to reach the sandbox.
const REPLY_WAIT: Duration = Duration::from_secs(10);
/// Longest wait for a state the pipeline reaches on its own (statuses, projection).
const WAIT: Duration = Duration::from_secs(15);

/// A customer of the app, on the shared number, and what reaches them at the sandbox.
struct Customer<'a> {
    app: &'a TestApp,
    phone: String,
    simulator: Simulator,
}

impl<'a> Customer<'a> {
    /// `reports_to_sandbox`: the simulator tells the sandbox the customer wrote (its
    /// 24-hour window); without it the sandbox believes the window closed.
    fn new(app: &'a TestApp, reports_to_sandbox: bool) -> Customer<'a> {
        let business = BusinessNumber {
            phone_number_id: app.settings.whatsapp_shared_phone_number_id.clone(),
            display_phone_number: app.settings.whatsapp_shared_display_number.clone(),
            waba_id: "100000000000000".into(),
            access_token: None,
        };
        let mut simulator = Simulator::new(
            format!("{}/webhooks/whatsapp", app.ingest_address),
            AppSecret::new(WHATSAPP_APP_SECRET.as_str()).unwrap(),
            business,
        )
        .with_profile_name("Ada Lovelace");
        if reports_to_sandbox {
            simulator = simulator.with_sandbox(app.sandbox_address.clone());
        }
        Customer {
            app,
            phone: phone(),
            simulator,
        }
    }

    fn wa_id(&self) -> &str {
        self.phone.trim_start_matches('+')
    }

    /// Writes `text`, then returns the one message the sandbox accepted for the customer
    /// since (and asserts it is one).
    async fn says(&self, text: &str) -> RecordedMessage {
        let since = After::Time(chrono::Utc::now());
        self.simulator
            .say(&self.phone, text)
            .await
            .expect("posting a message");
        self.one_reply(since).await
    }

    /// Taps a reply button or picks a list row with this id.
    async fn chooses(&self, id: &str, button: bool) -> RecordedMessage {
        let since = After::Time(chrono::Utc::now());
        if button {
            self.simulator
                .say_button(&self.phone, None, id, "Tap")
                .await
                .expect("posting a button reply");
        } else {
            self.simulator
                .say_list_reply(&self.phone, None, id, "Row", None)
                .await
                .expect("posting a list reply");
        }
        self.one_reply(since).await
    }

    async fn one_reply(&self, since: After) -> RecordedMessage {
        let mut replies = self.replies(since).await;
        assert_eq!(replies.len(), 1, "one reply: {replies:#?}");
        replies.pop().unwrap()
    }

    /// What the sandbox accepted for the customer after `since`, once it settles.
    async fn replies(&self, since: After) -> Vec<RecordedMessage> {
        whatsapp_sandbox::wait_for_replies(
            &self.app.sandbox_address,
            &self.phone,
            since,
            REPLY_WAIT,
        )
        .await
        .expect("reading the sandbox")
    }

    /// Every send the sandbox recorded for the customer, refused ones included.
    async fn every_send(&self) -> Vec<RecordedMessage> {
        whatsapp_sandbox::simulator::recorded_messages(
            &reqwest::Client::new(),
            &self.app.sandbox_address,
            &self.phone,
            After::Sequence(0),
        )
        .await
        .expect("reading the sandbox")
    }
}

/// The text a customer reads in a send: its body, or an interactive message's body.
fn text(message: &RecordedMessage) -> String {
    message
        .body
        .pointer("/text/body")
        .or_else(|| message.body.pointer("/interactive/body/text"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// Every button and row id an interactive send offers.
fn choice_ids(message: &RecordedMessage) -> Vec<String> {
    let action = &message.body["interactive"]["action"];
    let buttons = action["buttons"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b.pointer("/reply/id").and_then(Value::as_str));
    let rows = action["sections"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["rows"].as_array().into_iter().flatten())
        .filter_map(|r| r["id"].as_str());
    buttons.chain(rows).map(str::to_owned).collect()
}

async fn sandbox_options(app: &TestApp, patch: Value) {
    let response = app
        .http
        .put(format!("{}/sandbox/options", app.sandbox_address))
        .json(&patch)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

async fn sandbox_fault(app: &TestApp, fault: Value) {
    let response = app
        .http
        .post(format!("{}/sandbox/faults", app.sandbox_address))
        .json(&fault)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{:?}", response.text().await);
}

/// A tenant's owner: rewards, purchases and fulfilment through the vendor API.
struct Vendor<'a> {
    app: &'a TestApp,
    tenant: TenantId,
    token: String,
}

impl<'a> Vendor<'a> {
    async fn sign_up(app: &'a TestApp) -> Vendor<'a> {
        let (tenant, token) = sign_up_owner(&app.http, &app.address).await;
        Vendor { app, tenant, token }
    }

    async fn post(&self, path: &str, body: Option<Value>) -> reqwest::Response {
        let mut request = self
            .app
            .http
            .post(self.app.url(path))
            .bearer_auth(&self.token)
            .header("Idempotency-Key", Uuid::new_v4().to_string());
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("POST")
    }

    async fn create_reward(&self, name: &str, points_cost: i64) -> Uuid {
        let response = self
            .post(
                "/v1/rewards",
                Some(json!({ "name": name, "points_cost": points_cost })),
            )
            .await;
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        Uuid::parse_str(body["reward_id"].as_str().unwrap()).unwrap()
    }

    /// The one member the processor enrolled at this tenant.
    async fn member(&self) -> Uuid {
        self.app
            .platform_db()
            .await
            .query_one(
                "SELECT customer_id FROM whatsapp_members WHERE tenant_id = $1",
                &[&self.tenant.as_uuid()],
            )
            .await
            .unwrap()
            .get(0)
    }

    async fn purchase(&self, customer: Uuid, amount_minor: i64) {
        let response = self
            .post(
                "/v1/purchases",
                Some(json!({ "customer_id": customer, "amount_minor": amount_minor })),
            )
            .await;
        assert_eq!(response.status(), 201);
    }
}

#[tokio::test]
async fn join_points_rewards_confirm_a_code_arrives_the_vendor_fulfils_it_once_and_history_shows_it(
) {
    let app = TestApp::spawn_whatsapp(|_| {}).await;
    let vendor = Vendor::sign_up(&app).await;
    let code = vendor_code(&app, vendor.tenant).await;
    let coffee = vendor.create_reward("Free coffee", 30).await;
    let ada = Customer::new(&app, true);

    let welcome = ada.says(&format!("JOIN {code}")).await;
    assert!(text(&welcome).contains("Owner's Shop"), "{welcome:?}");
    vendor.purchase(vendor.member().await, 1_000_000).await;

    let points = ada.says("POINTS").await;
    assert!(text(&points).contains("you have 100 points"), "{points:?}");

    let list = ada.says("rewards").await;
    assert_eq!(list.body["interactive"]["type"], "list", "{list:?}");
    let reward_row = format!("reward:{coffee}");
    assert!(choice_ids(&list).contains(&reward_row), "{list:?}");

    let confirm = ada.chooses(&reward_row, false).await;
    let confirm_id = format!("confirm:{coffee}");
    assert!(choice_ids(&confirm).contains(&confirm_id), "{confirm:?}");

    let done = ada.chooses(&confirm_id, true).await;
    let redemption_code: String = admin_client(&dbname(&app.database_url))
        .await
        .query_one("SELECT code FROM redemption_codes", &[])
        .await
        .unwrap()
        .get(0);
    let done_text = text(&done);
    assert!(
        done_text.contains(&format!("*{redemption_code}*")),
        "{done_text}"
    );
    assert!(done_text.contains("70 points left"), "{done_text}");

    // The vendor hands the coffee over by the code the customer shows: once.
    let fulfilled = vendor
        .post(&format!("/v1/redemptions/{redemption_code}/fulfil"), None)
        .await;
    assert_eq!(fulfilled.status(), 200);
    let again = vendor
        .post(&format!("/v1/redemptions/{redemption_code}/fulfil"), None)
        .await;
    assert_eq!(again.status(), 409);

    let history = ada.says("history").await;
    assert!(
        text(&history).contains(&format!("-30  Free coffee (code {redemption_code})")),
        "{history:?}"
    );
    assert!(text(&history).contains("+100  Purchase"), "{history:?}");
    app.stop().await;
}

/// Ledger notifications reach the customer through the same notifier: a purchase at the
/// counter brings a receipt with the points and the balance, a reward handed over brings a
/// message, and a redemption in the chat brings exactly one message with its code.
#[tokio::test]
async fn a_purchase_receipt_and_a_hand_over_reach_the_customer_once() {
    let app = TestApp::spawn_whatsapp_with_notifications(|_| {}).await;
    let vendor = Vendor::sign_up(&app).await;
    let code = vendor_code(&app, vendor.tenant).await;
    let coffee = vendor.create_reward("Free coffee", 30).await;
    let ada = Customer::new(&app, true);
    ada.says(&format!("JOIN {code}")).await;

    let since = After::Time(chrono::Utc::now());
    vendor.purchase(vendor.member().await, 1_000_000).await;
    let receipt = ada.one_reply(since).await;
    assert!(
        text(&receipt).contains("You earned 100 points at Owner's Shop"),
        "{receipt:?}"
    );
    assert!(
        text(&receipt).contains("Balance: 100 points"),
        "{receipt:?}"
    );

    ada.says("rewards").await;
    ada.chooses(&format!("reward:{coffee}"), false).await;
    // The chat's own answer carries the code; the ledger sends nothing more for it.
    let done = ada.chooses(&format!("confirm:{coffee}"), true).await;
    let redemption_code: String = admin_client(&dbname(&app.database_url))
        .await
        .query_one("SELECT code FROM redemption_codes", &[])
        .await
        .unwrap()
        .get(0);
    assert!(text(&done).contains(&redemption_code), "{done:?}");

    let since = After::Time(chrono::Utc::now());
    let fulfilled = vendor
        .post(&format!("/v1/redemptions/{redemption_code}/fulfil"), None)
        .await;
    assert_eq!(fulfilled.status(), 200);
    let handed_over = ada.one_reply(since).await;
    assert!(
        text(&handed_over).contains("Free coffee was handed over"),
        "{handed_over:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_webhook_delivered_five_times_gets_exactly_one_reply() {
    let app = TestApp::spawn_whatsapp(|_| {}).await;
    let code = vendor_code(&app, app.tenant_id).await;
    let ada = Customer::new(&app, true);
    let since = After::Time(chrono::Utc::now());
    let inbound = ada
        .simulator
        .say(&ada.phone, &format!("JOIN {code}"))
        .await
        .unwrap();
    let client = reqwest::Client::new();
    for _ in 0..4 {
        let status = whatsapp_sandbox::simulator::post_signed(
            &client,
            &format!("{}/webhooks/whatsapp", app.ingest_address),
            inbound.body.clone(),
            &inbound.signature,
        )
        .await
        .unwrap();
        assert_eq!(status, 200);
    }
    let replies = ada.replies(since).await;
    assert_eq!(replies.len(), 1, "{replies:#?}");
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM whatsapp_inbox WHERE kind = 'message'"
        )
        .await,
        1
    );
    assert_eq!(count(&app, "SELECT count(*) FROM whatsapp_outbox").await, 1);
    app.stop().await;
}

#[tokio::test]
async fn statuses_out_of_order_leave_the_reply_at_read() {
    let app = TestApp::spawn_whatsapp(|_| {}).await;
    sandbox_options(&app, json!({ "status_order": "read_before_delivered" })).await;
    let code = vendor_code(&app, app.tenant_id).await;
    let ada = Customer::new(&app, true);
    ada.says(&format!("JOIN {code}")).await;
    let message_id: Uuid = app
        .platform_db()
        .await
        .query_one("SELECT message_id FROM whatsapp_outbox", &[])
        .await
        .unwrap()
        .get(0);
    let log = || async {
        app.platform_db()
            .await
            .query(
                "SELECT outcome FROM whatsapp_outbox_log WHERE message_id = $1 ORDER BY log_id",
                &[&message_id],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>()
    };
    wait_for(WAIT, "the late `delivered` to be logged", || async {
        log().await.contains(&"delivered".to_owned())
    })
    .await;
    assert_eq!(log().await, ["attempt", "sent", "read", "delivered"]);
    let state: String = app
        .platform_db()
        .await
        .query_one(
            "SELECT state FROM whatsapp_outbox WHERE message_id = $1",
            &[&message_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(state, "read");
    app.stop().await;
}

#[tokio::test]
async fn nats_restarted_mid_conversation_loses_no_reply_and_the_balances_catch_up() {
    let mut nats = PrivateNats::start();
    nats.wait_listening().await;
    let url = nats.url();
    let app = TestApp::spawn_whatsapp(|settings| settings.nats_url = url).await;
    let vendor = Vendor::sign_up(&app).await;
    let code = vendor_code(&app, vendor.tenant).await;
    vendor.create_reward("Free coffee", 30).await;
    let ada = Customer::new(&app, true);
    ada.says(&format!("JOIN {code}")).await;
    let customer = vendor.member().await;
    vendor.purchase(customer, 500_000).await;
    app.wait_until_projected().await;

    // NATS goes away: the chat does not need it; the ledger's fan-out waits for it.
    nats.kill();
    vendor.purchase(customer, 500_000).await;
    let points = ada.says("POINTS").await;
    assert!(text(&points).contains("you have 100 points"), "{points:?}");
    let list = ada.says("REWARDS").await;
    assert_eq!(list.body["interactive"]["type"], "list", "{list:?}");
    nats.spawn();
    nats.wait_listening().await;
    let history = ada.says("HISTORY").await;
    assert!(text(&history).contains("+50  Purchase"), "{history:?}");

    app.wait_until_projected().await;
    let balance: i64 = admin_client(&dbname(&app.database_url))
        .await
        .query_one(
            "SELECT balance FROM projection.customer_balances WHERE customer_id = $1",
            &[&customer],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(balance, 100);
    assert_eq!(ada.every_send().await.len(), 4, "one send per message");
    app.stop().await;
    drop(nats);
}

#[tokio::test]
async fn throughput_refusals_twice_are_retried_and_the_reply_delivered_once() {
    let app = TestApp::spawn_whatsapp(|_| {}).await;
    let code = vendor_code(&app, app.tenant_id).await;
    let ada = Customer::new(&app, true);
    sandbox_fault(
        &app,
        json!({ "code": 130429, "times": 2, "to": ada.wa_id() }),
    )
    .await;
    ada.says(&format!("JOIN {code}")).await;
    let sends = ada.every_send().await;
    let refused: Vec<_> = sends
        .iter()
        .filter(|s| s.outcome == Outcome::Refused)
        .map(|s| s.error.as_ref().unwrap().code)
        .collect();
    assert_eq!(refused, [130429, 130429], "{sends:#?}");
    assert_eq!(sends.len(), 3, "{sends:#?}");
    app.stop().await;
}

#[tokio::test]
async fn a_closed_window_gets_the_template_instead() {
    let app = TestApp::spawn_whatsapp(|_| {}).await;
    sandbox_options(&app, json!({ "enforce_window": true })).await;
    let code = vendor_code(&app, app.tenant_id).await;
    // The sandbox never hears that the customer wrote: to Meta, the window is closed.
    let ada = Customer::new(&app, false);
    let delivered = ada.says(&format!("JOIN {code}")).await;
    assert_eq!(delivered.body["type"], "template", "{delivered:?}");
    let sends = ada.every_send().await;
    assert_eq!(sends.len(), 2, "{sends:#?}");
    assert_eq!(sends[0].outcome, Outcome::Refused);
    assert_eq!(sends[0].error.as_ref().unwrap().code, 131047);
    app.stop().await;
}

#[tokio::test]
async fn a_forged_signature_changes_nothing() {
    let app = TestApp::spawn_whatsapp(|_| {}).await;
    let code = vendor_code(&app, app.tenant_id).await;
    let ada = Customer::new(&app, true);
    let events_before = app.event_count().await;
    let business = BusinessNumber {
        phone_number_id: app.settings.whatsapp_shared_phone_number_id.clone(),
        display_phone_number: app.settings.whatsapp_shared_display_number.clone(),
        waba_id: "100000000000000".into(),
        access_token: None,
    };
    let body = whatsapp_sandbox::simulator::inbound_webhook(
        &business,
        ada.wa_id(),
        "Mallory",
        json!({
            "from": ada.wa_id(),
            "id": format!("wamid.forged{}", Uuid::new_v4().simple()),
            "timestamp": chrono::Utc::now().timestamp().to_string(),
            "type": "text",
            "text": { "body": format!("JOIN {code}") },
        }),
    );
    let forged = AppSecret::new("not-the-app-secret").unwrap();
    let bytes = serde_json::to_vec(&body).unwrap();
    let signature = webhook_ingest::signature::sign(&forged, &bytes);
    let response = app
        .http
        .post(format!("{}/webhooks/whatsapp", app.ingest_address))
        .header("content-type", "application/json")
        .header(webhook_ingest::signature::HEADER_NAME, signature)
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM whatsapp_inbox WHERE kind = 'message'"
        )
        .await,
        0
    );
    assert_eq!(app.event_count().await, events_before);
    // A genuine customer after it is answered: by then a reply to the forgery would be due.
    let genuine = Customer::new(&app, true);
    genuine.says(&format!("JOIN {code}")).await;
    assert!(ada.every_send().await.is_empty());
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM whatsapp_inbox WHERE kind = 'message'"
        )
        .await,
        1
    );
    assert_eq!(count(&app, "SELECT count(*) FROM whatsapp_outbox").await, 1);
    let forged_member = app
        .platform_db()
        .await
        .query_opt(
            "SELECT 1 FROM whatsapp_members WHERE customer_digest = $1",
            &[&test_vault()
                .keyed_digest(CUSTOMER_DIGEST_PURPOSE, ada.wa_id().as_bytes())
                .to_vec()],
        )
        .await
        .unwrap();
    assert!(forged_member.is_none(), "no member for the forged sender");
    app.stop().await;
}

/// The README's demo, through the binary: `loyalty all` (sandbox on by default when the base
/// URL is its address) and `loyalty sandbox say` as a customer in another process, with no
/// app secret in its environment but `.local/keys.env` in its working directory.
#[tokio::test]
async fn loyalty_all_starts_the_sandbox_and_sandbox_say_prints_the_reply() {
    let database_url = fresh_database().await;
    let settings = test_settings(&database_url);
    let (http_port, ingest_port, sandbox_port) = (free_port(), free_port(), free_port());
    let sandbox_addr = format!("127.0.0.1:{sandbox_port}");
    let ingest_url = format!("http://127.0.0.1:{ingest_port}/webhooks/whatsapp");
    let mut env = key_env();
    env.extend([
        ("DATABASE_URL".to_owned(), database_url.clone()),
        ("NATS_URL".to_owned(), settings.nats_url.clone()),
        (
            "LOYALTY_NATS_STREAM".to_owned(),
            settings.nats_stream.clone(),
        ),
        (
            "LOYALTY_NATS_SUBJECT_PREFIX".to_owned(),
            settings.nats_subject_prefix.clone(),
        ),
        (
            "LOYALTY_HTTP_ADDR".to_owned(),
            format!("127.0.0.1:{http_port}"),
        ),
        (
            "LOYALTY_INGEST_ADDR".to_owned(),
            format!("127.0.0.1:{ingest_port}"),
        ),
        ("LOYALTY_SANDBOX_ADDR".to_owned(), sandbox_addr.clone()),
        ("LOYALTY_SANDBOX_ENABLED".to_owned(), "true".to_owned()),
        (
            "LOYALTY_WHATSAPP_API_BASE_URL".to_owned(),
            format!("http://{sandbox_addr}"),
        ),
        ("RUST_LOG".to_owned(), "warn".to_owned()),
    ]);
    let loyalty = || {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_loyalty"));
        command
            .envs(env.iter().cloned())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        command
    };
    let code = unique_vendor_code();
    let created = loyalty()
        .args([
            "tenant",
            "create",
            "--name",
            "Demo Shop",
            "--vendor-code",
            &code,
        ])
        .output()
        .await
        .unwrap();
    assert!(created.status.success(), "{created:?}");
    let mut all = loyalty()
        .arg("all")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawning loyalty all");
    let http = reqwest::Client::new();
    wait_for(WAIT, "loyalty all and its sandbox to answer", || async {
        http.get(format!("http://{sandbox_addr}/sandbox/health"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;

    // `say` as the README runs it: the app secret only in ./.local/keys.env.
    let workdir = std::env::temp_dir().join(format!("loyalty-say-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(workdir.join(".local")).unwrap();
    std::fs::write(
        workdir.join(".local/keys.env"),
        format!(
            "LOYALTY_WHATSAPP_APP_SECRET={}\n",
            WHATSAPP_APP_SECRET.as_str()
        ),
    )
    .unwrap();
    let said = tokio::process::Command::new(env!("CARGO_BIN_EXE_loyalty"))
        .current_dir(&workdir)
        .env_clear()
        .env("LOYALTY_SANDBOX_ADDR", &sandbox_addr)
        .env("LOYALTY_SANDBOX_WEBHOOK_URL", &ingest_url)
        .args([
            "sandbox",
            "say",
            "--from",
            &phone(),
            &format!("JOIN {code}"),
        ])
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&said.stdout);
    assert!(said.status.success(), "{said:?}");
    assert!(stdout.contains("ingest answered 200"), "{stdout}");
    assert!(
        stdout.contains("<- Welcome to Demo Shop's loyalty programme!"),
        "{stdout}"
    );
    std::fs::remove_dir_all(&workdir).unwrap();
    let _ = all.start_kill();
    let _ = all.wait().await;
    crate::helpers::delete_stream(&settings.nats_url, &settings.nats_stream).await;
}
